import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';

export const RoleSchema = Type.Union([
  Type.Literal('owner'),
  Type.Literal('admin'),
  Type.Literal('member'),
  Type.Literal('viewer'),
]);
export const InvitableRole = Type.Union(
  [Type.Literal('admin'), Type.Literal('member'), Type.Literal('viewer')],
  {
    description: 'owner cannot be granted: ownership is transferred',
  },
);
export const ScopeSchema = Type.Union([
  Type.Literal('read'),
  Type.Literal('write'),
  Type.Literal('admin'),
  Type.Literal('queue'),
]);

const Email = Type.String({ format: 'email', maxLength: 254 });
const Password = Type.String({ minLength: 8, maxLength: 200, description: 'at least 8 characters' });
const PersonName = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' });
const TeamName = Type.String({ minLength: 1, maxLength: 128, pattern: '\\S' });

export const User = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.String(),
  is_admin: Type.Boolean({ description: 'platform admin (the first user of a server)' }),
  created_at: Timestamp,
});

export const Team = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String({ description: 'immutable; stays reserved after the team is deleted' }),
  role: Nullable(RoleSchema),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const Member = Type.Object({
  user_id: Type.String(),
  email: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  joined_at: Timestamp,
});

export const Session = Type.Object({
  id: Type.String(),
  team_id: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  ip_address: Nullable(Type.String()),
  created_at: Timestamp,
  last_seen_at: Timestamp,
  expires_at: Timestamp,
  current: Type.Boolean(),
});

export const SignedIn = Type.Object({
  user: User,
  team: Nullable(Team),
  role: Nullable(RoleSchema),
  session_token: Type.String({
    description: 'pds_…: also set as the paddock_session cookie; usable as a bearer token',
  }),
  csrf_token: Type.String({ description: 'echo in the X-CSRF-Token header on cookie-authenticated writes' }),
  expires_at: Timestamp,
});

export const Me = Type.Object({ user: User, team: Nullable(Team), role: Nullable(RoleSchema) });

export const SignupBody = Body({
  email: Email,
  password: Password,
  name: PersonName,
  invitation_token: Type.Optional(Type.String({ maxLength: 200 })),
});
export const LoginBody = Body({ email: Email, password: Type.String({ minLength: 1, maxLength: 200 }) });
export const EmailLinkStartBody = Body({ email: Email });
export const EmailLinkSent = Type.Object({
  status: Type.Literal('accepted'),
  message: Type.String({ description: 'the same whether or not an account has this address' }),
});
export const PasswordResetCompleteBody = Body({
  token: Type.String({ minLength: 1, maxLength: 200, description: 'pdpw_…, from the e-mail' }),
  password: Password,
});
export const MagicLinkVerifyBody = Body({
  token: Type.String({ minLength: 1, maxLength: 200, description: 'pdml_…, from the e-mail' }),
});
export const SwitchTeamBody = Body({ team_id: Type.String({ minLength: 1, maxLength: 100 }) });
export const UpdateMeBody = Body({
  name: Type.Optional(PersonName),
  password: Type.Optional(Password),
  current_password: Type.Optional(Type.String({ maxLength: 200 })),
});

export const CreateTeamBody = Body({ name: TeamName });
export const UpdateTeamBody = Body({ name: Type.Optional(TeamName) });
export const TeamParams = Type.Object({ id: Type.String({ maxLength: 100 }) });
export const MemberParams = Type.Object({
  id: Type.String({ maxLength: 100 }),
  user_id: Type.String({ maxLength: 100 }),
});
export const AddMemberBody = Body({ email: Email, role: Type.Optional(InvitableRole) });
export const UpdateMemberBody = Body({ role: InvitableRole });
export const TransferOwnershipBody = Body({ user_id: Type.String({ minLength: 1, maxLength: 100 }) });

export const InvitationStatus = Type.Union([
  Type.Literal('pending'),
  Type.Literal('accepted'),
  Type.Literal('revoked'),
  Type.Literal('expired'),
]);
export const Invitation = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  email: Type.String(),
  role: InvitableRole,
  status: InvitationStatus,
  invited_by: Type.String({ description: 'a user id, or api_key:<id>' }),
  expires_at: Timestamp,
  accepted_at: NullableTimestamp,
  created_at: Timestamp,
});
export const InvitationWithToken = Type.Object({
  ...Invitation.properties,
  token: Type.String({ description: 'pdi_…: shown only here; share it with the invitee' }),
});
export const CreateInvitationBody = Body({ email: Email, role: Type.Optional(InvitableRole) });
export const InvitationListQuery = Type.Object(
  {
    status: Type.Optional(InvitationStatus),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);
export const InvitationLookup = Type.Object({
  team: Type.Object({ id: Type.String(), name: Type.String() }),
  email: Type.String(),
  role: InvitableRole,
  invited_by: Nullable(Type.Object({ name: Type.String(), email: Type.String() })),
  expires_at: Timestamp,
  account_exists: Type.Boolean({
    description: 'true: log in and accept; false: accept with name and password',
  }),
});
export const AcceptInvitationBody = Body({
  token: Type.String({ minLength: 1, maxLength: 200 }),
  name: Type.Optional(PersonName),
  password: Type.Optional(Password),
});
export const AcceptedInvitation = Type.Object({
  team: Team,
  session: Nullable(SignedIn),
});

export const ApiKey = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  key_prefix: Type.String({ description: 'the first characters of the key, for recognising it' }),
  scopes: Type.Array(ScopeSchema),
  status: Type.Union([
    Type.Literal('active'),
    Type.Literal('disabled'),
    Type.Literal('revoked'),
    Type.Literal('expired'),
  ]),
  active: Type.Boolean(),
  expires_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
  previous_key_expires_at: Nullable(Timestamp),
  last_used_at: NullableTimestamp,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const ApiKeyWithSecret = Type.Object({
  ...ApiKey.properties,
  key: Type.String({ description: 'pdk_…: shown only in this response' }),
});
const KeyName = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' });
const Scopes = Type.Array(ScopeSchema, {
  minItems: 1,
  maxItems: 4,
  description:
    'read < write < admin; default ["write"]. queue: a worker key that only claims and completes work-queue jobs (write and admin include it)',
});
export const CreateApiKeyBody = Body({
  name: KeyName,
  description: Type.Optional(Type.String({ maxLength: 500 })),
  scopes: Type.Optional(Scopes),
  expires_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
});
export const UpdateApiKeyBody = Body({
  name: Type.Optional(KeyName),
  description: Type.Optional(Nullable(Type.String({ maxLength: 500 }))),
  scopes: Type.Optional(Scopes),
  active: Type.Optional(Type.Boolean({ description: 'false disables the key until set back to true' })),
  expires_at: Type.Optional(Nullable(Type.String({ format: 'date-time' }))),
});
export const RotateApiKeyBody = Body({
  grace_hours: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 720, description: 'how long the old key keeps working; default 24' }),
  ),
});
export const ApiKeyUsage = Type.Object({
  id: Type.String(),
  method: Type.String(),
  path: Type.String(),
  status_code: Type.Integer(),
  ip_address: Nullable(Type.String()),
  key_version: Type.Union([Type.Literal('current'), Type.Literal('previous')]),
  created_at: Timestamp,
});

export const Teams = Paginated(Team);
export const Members = Paginated(Member);
export const Sessions = Paginated(Session);
export const Invitations = Paginated(Invitation);
export const ApiKeys = Paginated(ApiKey);
export const ApiKeyUsages = Paginated(ApiKeyUsage);

export const DeleteMeBody = Body(
  { current_password: Type.String({ minLength: 1, maxLength: 200 }) },
  'your password, again: deleting an account cannot be undone',
);

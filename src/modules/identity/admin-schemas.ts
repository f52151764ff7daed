import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';
import { RoleSchema } from './schemas.ts';

const AccountStatus = Type.Union(
  [Type.Literal('active'), Type.Literal('deactivated'), Type.Literal('deleted')],
  {
    description:
      'deactivated: no sign-in, no session, the keys they created suspended; deleted: erased, the row kept anonymised',
  },
);

export const AdminUser = Type.Object({
  id: Type.String(),
  email: Type.String({ description: 'after a deletion, a placeholder at erased.invalid' }),
  name: Type.String(),
  is_admin: Type.Boolean({ description: 'platform admin' }),
  status: AccountStatus,
  deactivated_at: NullableTimestamp,
  deleted_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const AdminUserDetail = Type.Object({
  ...AdminUser.properties,
  teams: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      slug: Type.String(),
      role: RoleSchema,
      joined_at: Timestamp,
    }),
    { description: 'the live teams the user belongs to, oldest membership first' },
  ),
});

export const AdminTeam = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String(),
  member_count: Type.Integer(),
  owner: Nullable(Type.Object({ id: Type.String(), email: Type.String(), name: Type.String() })),
  limits: Type.Object({
    max_concurrent_tasks: Nullable(
      Type.Integer({ description: 'tasks running at once over all the team’s agents; null: no team limit' }),
    ),
  }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const page = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 400 })),
};
const search = (description: string) => Type.String({ minLength: 1, maxLength: 200, description });

export const AdminUserQuery = Type.Object(
  {
    q: Type.Optional(search('part of the e-mail address or the name, any case')),
    status: Type.Optional(AccountStatus),
    admin: Type.Optional(Type.Boolean({ description: 'true: platform admins only; false: everyone else' })),
    ...page,
  },
  { additionalProperties: false },
);

export const AdminTeamQuery = Type.Object(
  { q: Type.Optional(search('part of the name or slug, any case')), ...page },
  { additionalProperties: false },
);

export const AdminUsers = Paginated(AdminUser);
export const AdminTeams = Paginated(AdminTeam);

export const SetActiveBody = Body({
  active: Type.Boolean({ description: 'false deactivates the account, true reactivates it' }),
});
export const SetAdminBody = Body({
  admin: Type.Boolean({ description: 'true makes the user a platform admin, false takes it away' }),
});

export const UpdateTeamBody = Body({
  limits: Type.Optional(
    Body(
      {
        max_concurrent_tasks: Type.Optional(
          Nullable(
            Type.Integer({
              minimum: 1,
              maximum: 100_000,
              description: 'tasks the team runs at once, over all its agents; null removes the limit',
            }),
          ),
        ),
      },
      'limits sent are set, those left out kept',
    ),
  ),
});

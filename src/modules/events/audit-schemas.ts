import { Type } from 'typebox';
import { Nullable, Paginated, Timestamp } from '../../http/schemas.ts';
import { AUDIT_ACTOR_KINDS, AUDIT_OUTCOMES } from './audit-service.ts';

export const AuditEntry = Type.Object(
  {
    id: Type.String({ description: 'aud_…; ids order by when the entry was made' }),
    team_id: Nullable(Type.String({ description: 'none for a refused call of no team (a failed sign-in)' })),
    actor_kind: Type.String({ description: AUDIT_ACTOR_KINDS.join(', ') }),
    actor_id: Nullable(Type.String()),
    action: Type.String({
      description:
        'an event type (agent.created), governance.<code>, or METHOD /route for a call with no change',
    }),
    resource_id: Nullable(Type.String()),
    outcome: Type.String({ description: AUDIT_OUTCOMES.join(', ') }),
    status_code: Nullable(Type.Integer({ description: 'the HTTP answer, for a call’s own entry' })),
    ip_address: Nullable(Type.String()),
    request_id: Nullable(Type.String()),
    route: Nullable(Type.String({ description: 'METHOD /route of the request it came from' })),
    user_agent: Nullable(Type.String()),
    details: Type.Record(Type.String(), Type.Unknown(), {
      description: 'the change’s payload (never a secret)',
    }),
    created_at: Timestamp,
  },
  { $id: 'AuditEntry' },
);

export const AuditEntries = Paginated(AuditEntry);

/** An export's body: one AuditEntry as JSON a line. */
export const AuditLines = Type.String({
  description: 'JSON lines (application/x-ndjson): one audit entry a line',
});

const filters = {
  actor_kind: Type.Optional(Type.Union(AUDIT_ACTOR_KINDS.map((k) => Type.Literal(k)))),
  actor_id: Type.Optional(Type.String({ maxLength: 100 })),
  action: Type.Optional(
    Type.String({ maxLength: 200, description: 'exact, or a prefix ending in * (agent.*, governance.*)' }),
  ),
  resource_id: Type.Optional(Type.String({ maxLength: 100 })),
  outcome: Type.Optional(Type.Union(AUDIT_OUTCOMES.map((o) => Type.Literal(o)))),
  from: Type.Optional(Type.String({ maxLength: 40, description: 'ISO-8601: entries made at or after' })),
  to: Type.Optional(Type.String({ maxLength: 40, description: 'ISO-8601: entries made before' })),
};

export const AuditQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
    ...filters,
  },
  { additionalProperties: false },
);

export const AdminAuditQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
    team_id: Type.Optional(Type.String({ maxLength: 100, description: 'one team’s entries' })),
    ...filters,
  },
  { additionalProperties: false },
);

export const AuditExportQuery = Type.Object(filters, { additionalProperties: false });
export const AdminAuditExportQuery = Type.Object(
  { team_id: Type.Optional(Type.String({ maxLength: 100 })), ...filters },
  { additionalProperties: false },
);

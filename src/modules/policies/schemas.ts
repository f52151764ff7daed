import { Type } from 'typebox';
import { Body, Nullable, Paginated, Timestamp } from '../../http/schemas.ts';
import { PolicyDocumentProperties, PolicyFields } from './spec.ts';

/** Names travel in URLs (/by-name/{name}): no slashes, no blank ends. */
export const PolicyName = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[^\\s/](?:[^/]*[^\\s/])?$',
  description: 'unique among the team’s live policies; no "/"',
});

export const CreatePolicyBody = Body(
  { name: PolicyName, ...PolicyFields },
  'any subset of the policy document; omitted fields get their defaults',
);
export const UpdatePolicyBody = Body(
  { name: Type.Optional(PolicyName), ...PolicyFields },
  'deep-merged into the policy: objects merge, arrays and scalars replace, null clears a nullable field',
);
export const UpsertPolicyBody = Body(
  PolicyFields,
  'created with defaults, or deep-merged into the existing policy of that name',
);

export const Policy = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  ...PolicyDocumentProperties,
  version: Type.Integer({ description: 'bumped by every change; version 1 is the creation' }),
  created_by: Nullable(Type.String()),
  updated_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const Policies = Paginated(Policy);

export const PolicyVersion = Type.Object({
  id: Type.String(),
  policy_id: Type.String(),
  version: Type.Integer({ minimum: 1 }),
  snapshot: Type.Record(Type.String(), Type.Unknown(), {
    description: 'the whole policy (name and document) as of this version',
  }),
  changed_by: Nullable(Type.String({ description: 'a user id, api_key:<id>, or system' })),
  changed_fields: Type.Array(Type.String(), {
    description: 'top-level fields that changed; ["_created"] for version 1, ["_deleted"] for the deletion',
  }),
  created_at: Timestamp,
});
export const PolicyVersions = Paginated(PolicyVersion);

export const PolicyListQuery = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 128, description: 'substring, case-insensitive' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);

export const NameParams = Type.Object({ name: PolicyName });
export const VersionParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  n: Type.Integer({ minimum: 1, maximum: 2_147_483_647 }),
});

const Window = {
  since: Type.Optional(Type.String({ format: 'date-time', description: 'runs started at or after' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'runs started before' })),
};
export const StatsQuery = Type.Object(Window, { additionalProperties: false });
export const CostTrendQuery = Type.Object(
  { ...Window, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, description: 'default 100' })) },
  { additionalProperties: false },
);

const NullableNumber = Nullable(Type.Number());
export const PolicyStats = Type.Object({
  total_runs: Type.Integer(),
  total_spend_usd: Type.Number(),
  avg_cost_per_run_usd: NullableNumber,
  avg_steps_per_run: Nullable(Type.Integer()),
  avg_duration_ms: Nullable(Type.Integer({ description: 'over ended runs' })),
  success_rate: Nullable(
    Type.Number({
      description: 'ended runs whose outcome is success (or completed with no outcome) / ended runs',
    }),
  ),
  budget_utilization: Nullable(
    Type.Number({ description: 'mean of cost / hard_limit_usd over runs that had a hard limit' }),
  ),
});

export const CostTrend = Type.Object({
  data: Type.Array(
    Type.Object({
      run_id: Type.String(),
      name: Nullable(Type.String()),
      cost_usd: Type.Number(),
      step_count: Type.Integer(),
      started_at: Timestamp,
    }),
  ),
  total: Type.Integer({ description: 'ended runs in the window (data holds the latest `limit`)' }),
});

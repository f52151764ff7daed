import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';
import {
  Chain,
  FORBIDDEN_KEYS,
  LoadBalancing,
  ModelRoutes,
  ProviderSchema,
  RoutingPreference,
  TimeoutMs,
} from '../policies/spec.ts';
import { DefinitionFields, DefinitionSchema } from './definition.ts';

/** Names travel in URLs (/by-name/{name}): no slashes, no blank ends. */
export const AgentName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\s/](?:[^/]*[^\\s/])?$',
  description: 'unique among the team’s live agents; no "/"',
});
const Description = Nullable(Type.String({ maxLength: 2000 }));
const Id = Type.String({ minLength: 1, maxLength: 100 });
export const AgentStatus = Type.Enum(['active', 'disabled']);

const KeyBinding = Type.Union([
  Type.String({ minLength: 1, maxLength: 100, description: 'one provider key id' }),
  Type.Array(
    Type.Object(
      { key_id: Id, weight: Type.Integer({ minimum: 1, maximum: 100 }) },
      { additionalProperties: false },
    ),
    { minItems: 1, maxItems: 20, description: 'several keys, for load balancing (weighted or round robin)' },
  ),
]);
export const ProviderKeys = Type.Object(
  {
    anthropic: Type.Optional(KeyBinding),
    openai: Type.Optional(KeyBinding),
    openai_compatible: Type.Optional(KeyBinding),
  },
  { additionalProperties: false, description: 'provider → key id, or [{key_id, weight 1..100}]' },
);

export const RoutingOverride = Nullable(
  Type.Object(
    {
      default_chain: Type.Optional(Chain),
      model_routes: Type.Optional(ModelRoutes),
      load_balancing: Type.Optional(LoadBalancing),
      routing_preference: Type.Optional(RoutingPreference),
      timeout_ms: Type.Optional(TimeoutMs),
    },
    { additionalProperties: false, description: "beats the policy's routing for this agent's calls" },
  ),
);

const Metadata = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  maxProperties: 100,
  propertyNames: { not: { enum: FORBIDDEN_KEYS } },
  description: 'free-form; replaced as a whole on update',
} as Record<string, unknown>);

const AllowedPolicies = Nullable(
  Type.Array(Id, {
    maxItems: 100,
    description: 'policy ids the agent may choose per run; null = any (its own policy is always allowed)',
  }),
);

/** Orkosi's agents report idle, working or blocked; offline and paused are Paddock's to say. */
export const REPORTED_STATUSES = ['idle', 'working', 'blocked'] as const;
export const PRESENCE_STATUSES = [...REPORTED_STATUSES, 'offline', 'paused'] as const;
export const HEARTBEAT_INTERVAL = { min: 5, max: 3600, default: 30 } as const;
/** Silent for this many heartbeat intervals, an agent is offline (Orkosi does not say when one counts as gone). */
export const SILENT_INTERVALS = 3;
const HeartbeatIntervalSec = Type.Integer({
  minimum: HEARTBEAT_INTERVAL.min,
  maximum: HEARTBEAT_INTERVAL.max,
  description: 'how often the agent says it is there (default 30); silent for three intervals, it is offline',
});
const Hosted = Type.Boolean({
  description: 'false: the agent runs elsewhere (a laptop, a server, a CI runner) and sends heartbeats',
});

const fields = {
  ...DefinitionFields,
  hosted: Type.Optional(Hosted),
  heartbeat_interval_sec: Type.Optional(HeartbeatIntervalSec),
  description: Type.Optional(Description),
  allowed_policies: Type.Optional(AllowedPolicies),
  provider_keys: Type.Optional(ProviderKeys),
  routing_override: Type.Optional(RoutingOverride),
  metadata: Type.Optional(Metadata),
};

export const CreateAgentBody = Body({
  name: AgentName,
  policy_id: Id,
  ...fields,
});
export const UpdateAgentBody = Body({
  name: Type.Optional(AgentName),
  policy_id: Type.Optional(Id),
  status: Type.Optional(AgentStatus),
  ...fields,
});
export const UpsertAgentBody = Body(
  {
    policy_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'required when the agent is created' }),
    ),
    status: Type.Optional(AgentStatus),
    ...fields,
  },
  'creates the agent (policy_id required; status ignored, always active) or updates the fields sent',
);

export const Presence = Type.Object(
  {
    status: Nullable(Type.Enum([...PRESENCE_STATUSES])),
    last_heartbeat_at: NullableTimestamp,
    current_job: Nullable(Type.String()),
  },
  {
    description:
      'paused while paused; else offline when silent for 3 × heartbeat_interval_sec (or an external agent that never beat); ' +
      'else what its last heartbeat reported. null: a hosted agent that never beat',
  },
);

export const Agent = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  description: Description,
  status: AgentStatus,
  policy_id: Type.String(),
  allowed_policies: AllowedPolicies,
  provider_keys: ProviderKeys,
  routing_override: RoutingOverride,
  metadata: Type.Record(Type.String(), Type.Unknown()),
  api_key_prefix: Type.String({ description: 'the first characters of the agent key, for recognising it' }),
  version: Type.Integer({ description: 'the current version of its definition' }),
  hosted: Hosted,
  heartbeat_interval_sec: HeartbeatIntervalSec,
  paused_at: Type.Union([Timestamp, Type.Null()], {
    description: 'set while paused: its queue claims get nothing and its queued tasks wait',
  }),
  presence: Presence,
  ...DefinitionSchema.properties,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const AgentWithKey = Type.Object({
  ...Agent.properties,
  api_key: Type.String({ description: 'pda_…: shown only in this response' }),
  note: Type.Optional(Type.String({ description: 'set when the name was taken and a suffix was added' })),
});
export const Agents = Paginated(Agent);
export const RotatedKey = Type.Object({
  api_key: Type.String({ description: 'pda_…: shown only here; the old key stopped working' }),
  api_key_prefix: Type.String(),
});

export const AgentListQuery = Type.Object(
  {
    status: Type.Optional(AgentStatus),
    presence: Type.Optional(
      Type.Enum([...PRESENCE_STATUSES, 'online'], {
        description: 'online: not paused, beating within 3 intervals (idle, working or blocked)',
      }),
    ),
    policy_id: Type.Optional(Id),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);
export const AgentNameParams = Type.Object({ name: AgentName });

export const AgentVersionParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  n: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
});
export const AgentVersion = Type.Object({
  agent_id: Type.String(),
  version: Type.Integer(),
  ...DefinitionSchema.properties,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
});
export const AgentVersions = Paginated(AgentVersion);
export const VersionsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);
export const DiffQuery = Type.Object(
  {
    from: Type.String({ pattern: '^[1-9][0-9]{0,6}$', description: 'a version number' }),
    to: Type.String({ pattern: '^[1-9][0-9]{0,6}$', description: 'a version number' }),
  },
  { additionalProperties: false },
);
export const AgentVersionDiff = Type.Object({
  agent_id: Type.String(),
  from: Type.Integer(),
  to: Type.Integer(),
  changes: Type.Array(Type.Object({ field: Type.String(), from: Type.Unknown(), to: Type.Unknown() })),
});
export const ForkAgentBody = Body({ name: Type.Optional(AgentName) });

export const AgentMe = Type.Object(
  {
    kind: Type.Literal('agent'),
    id: Type.String(),
    team_id: Type.String(),
    name: Type.String(),
    description: Nullable(Type.String()),
    status: AgentStatus,
    policy_id: Type.String(),
    policy_name: Nullable(Type.String()),
    hourly_cost_limit_usd: Nullable(Type.Number()),
    budget_hard_limit_usd: Nullable(Type.Number()),
    budget_hard_limit_tokens: Nullable(Type.Number()),
    max_steps_per_run: Nullable(Type.Integer()),
    allowed_models: Nullable(Type.Array(Type.String())),
    model_override: Nullable(Type.String()),
  },
  { description: 'GET /v1/me with an agent key: the agent and its default policy’s limits' },
);

export const AgentModel = Type.Object({
  id: Type.String({ description: 'the full model id, as the provider names it' }),
  provider: ProviderSchema,
  provider_key_id: Type.String({ description: 'the agent’s provider key that can call it' }),
  aliases: Type.Array(Type.String(), {
    description: 'the family aliases (sonnet, gpt-4o, …) an agent definition may name for this id',
  }),
  source: Type.Enum(['provider', 'catalog'], {
    description:
      'provider: from the provider’s own model list; catalog: the price table’s models, served while that list cannot be fetched',
  }),
});
export const AgentModels = Paginated(AgentModel);

export const HeartbeatBody = Body({
  status: Type.Enum([...REPORTED_STATUSES]),
  current_job: Type.Optional(
    Nullable(
      Type.String({ maxLength: 200, description: 'a queue job id, or what it is doing in words (≤ 200)' }),
    ),
  ),
});
export const HeartbeatAnswer = Type.Object(
  {
    agent_id: Type.String(),
    paused: Type.Boolean({
      description: 'true: stop claiming (claims get nothing until the agent is resumed)',
    }),
    heartbeat_interval_sec: HeartbeatIntervalSec,
    presence: Presence,
  },
  { description: 'the agent’s presence after this heartbeat' },
);

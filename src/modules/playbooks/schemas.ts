import { type Static, Type } from 'typebox';
import { DECISIONS, FIRED_BY, NOTIFY_ON, RUN_STATUSES, TRIGGER_TYPES } from '../../db/schema/playbooks.ts';
import { Body, ListQuery, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';

export const PROMPT_MAX_CHARS = 100_000;
/** Longest webhook body handed to the agent (bytes of JSON). */
export const HOOK_BODY_MAX_BYTES = 64 * 1024;

const ChainConfigInput = Type.Object(
  {
    max_chains: Type.Optional(Type.Integer()),
    budget_cap_usd: Type.Optional(Type.Number()),
    chain_delay_ms: Type.Optional(Type.Integer()),
    max_turns_per_chain: Type.Optional(Type.Integer()),
    allowed_tools: Type.Optional(
      Nullable(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 })),
    ),
    timeout_per_chain_seconds: Type.Optional(Type.Integer()),
  },
  {
    additionalProperties: false,
    description: 'each number is clamped to its bounds (docs/playbooks.md), not refused',
  },
);

const Criterion = Type.Union([
  Type.Object(
    { type: Type.Literal('contains'), value: Type.String({ minLength: 1, maxLength: 1000 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('not_contains'), value: Type.String({ minLength: 1, maxLength: 1000 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('matches'), pattern: Type.String({ minLength: 1, maxLength: 500 }) },
    { additionalProperties: false },
  ),
]);

const fields = {
  name: Type.String({ minLength: 1, maxLength: 200, pattern: '\\S' }),
  description: Type.Optional(Nullable(Type.String({ maxLength: 2000 }))),
  prompt: Type.String({ minLength: 1, maxLength: PROMPT_MAX_CHARS, pattern: '\\S' }),
  trigger: Type.Optional(
    Type.Enum([...TRIGGER_TYPES], {
      description: 'cron (default when schedule is given), interval, manual, webhook',
    }),
  ),
  schedule: Type.Optional(
    Nullable(Type.String({ minLength: 9, maxLength: 200, description: '5-field cron expression' })),
  ),
  timezone: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, description: 'IANA zone, default UTC' }),
  ),
  interval_seconds: Type.Optional(Nullable(Type.Integer({ minimum: 60, maximum: 366 * 86_400 }))),
  enabled: Type.Optional(Type.Boolean({ description: 'default false' })),
  chain_config: Type.Optional(ChainConfigInput),
  success_criteria: Type.Optional(Nullable(Type.Array(Criterion, { maxItems: 20 }))),
  notify_on: Type.Optional(Type.Enum([...NOTIFY_ON], { description: 'default none' })),
  notification_channels: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 20, uniqueItems: true }),
  ),
};

export const CreatePlaybookBody = Body({
  agent_id: Type.String({ minLength: 1, maxLength: 100 }),
  ...fields,
});
export type CreatePlaybookInput = Static<typeof CreatePlaybookBody>;

export const UpdatePlaybookBody = Body({
  name: Type.Optional(fields.name),
  prompt: Type.Optional(fields.prompt),
  description: fields.description,
  trigger: fields.trigger,
  schedule: fields.schedule,
  timezone: fields.timezone,
  interval_seconds: fields.interval_seconds,
  enabled: fields.enabled,
  chain_config: fields.chain_config,
  success_criteria: fields.success_criteria,
  notify_on: fields.notify_on,
  notification_channels: fields.notification_channels,
});
export type UpdatePlaybookInput = Static<typeof UpdatePlaybookBody>;

export const ChainConfig = Type.Object({
  max_chains: Type.Integer(),
  budget_cap_usd: Type.Number(),
  chain_delay_ms: Type.Integer(),
  max_turns_per_chain: Type.Integer(),
  allowed_tools: Nullable(Type.Array(Type.String())),
  timeout_per_chain_seconds: Type.Integer(),
});

export const Playbook = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  agent_id: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  prompt: Type.String(),
  trigger: Type.Enum([...TRIGGER_TYPES]),
  schedule: Nullable(Type.String()),
  timezone: Type.String(),
  interval_seconds: Nullable(Type.Integer()),
  enabled: Type.Boolean(),
  chain_config: ChainConfig,
  success_criteria: Nullable(Type.Array(Type.Record(Type.String(), Type.Unknown()))),
  notify_on: Type.Enum([...NOTIFY_ON]),
  notification_channels: Type.Array(Type.String()),
  webhook_token_prefix: Nullable(
    Type.String({ description: 'the start of the webhook token, to tell tokens apart' }),
  ),
  webhook_token: Type.Optional(Type.String({ description: 'only in the answer to create and rotate-token' })),
  webhook_url: Type.Optional(Type.String({ description: 'the path to POST to, with the token' })),
  next_run_at: NullableTimestamp,
  last_run_at: NullableTimestamp,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const Playbooks = Paginated(Playbook);

export const PlaybookListQuery = ListQuery({
  agent_id: Type.Optional(Type.String({ maxLength: 100 })),
  enabled: Type.Optional(Type.Boolean()),
});
export type PlaybookListQueryType = Static<typeof PlaybookListQuery>;

export const PlaybookRun = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  playbook_id: Type.String(),
  agent_id: Type.String(),
  status: Type.Enum([...RUN_STATUSES]),
  decision: Nullable(Type.Enum([...DECISIONS])),
  fired_by: Type.Enum([...FIRED_BY]),
  slot_at: NullableTimestamp,
  task_id: Nullable(Type.String({ description: 'the task of the latest chain' })),
  workspace_id: Nullable(Type.String()),
  chains_used: Type.Integer(),
  turns: Type.Integer(),
  cost_usd: Type.Number(),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  result_summary: Nullable(Type.String()),
  created_at: Timestamp,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
  updated_at: Timestamp,
});
export const PlaybookRuns = Paginated(PlaybookRun);

export const RunListQuery = ListQuery({
  playbook_id: Type.Optional(Type.String({ maxLength: 100 })),
  status: Type.Optional(Type.Enum([...RUN_STATUSES])),
});
export type RunListQueryType = Static<typeof RunListQuery>;

export const SchedulerStatus = Type.Object({
  leader: Type.Boolean({ description: 'this server holds the scheduler lease' }),
  leader_elected: Type.Boolean({ description: 'some server holds an unexpired lease' }),
  paused: Type.Boolean({ description: "this team's playbooks are paused" }),
  last_tick_at: NullableTimestamp,
  due_count: Type.Integer({ description: "the team's enabled playbooks whose next_run_at has passed" }),
});

export const HookParams = Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) });

export const PlaybookDeleted = Type.Object({ status: Type.Literal('deleted'), playbook_id: Type.String() });

import { type Static, Type } from 'typebox';
import { STEP_TYPES } from '../../db/schema/index.ts';
import { Body, ListQuery, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';

export const RunStatus = Type.Enum(['running', 'completed', 'failed', 'budget_exceeded', 'force_stopped']);
export const Outcome = Type.Enum(['success', 'partial', 'failed']);
const NullableOutcome = Nullable(Outcome);
const Json = Type.Record(Type.String(), Type.Unknown());

const RunTokens = Type.Object({
  input: Type.Integer(),
  output: Type.Integer(),
  cache_read: Type.Integer(),
  cache_creation: Type.Integer(),
  total: Type.Integer({ description: 'input + output + cache_read + cache_creation' }),
});
const StepTokens = Type.Object({
  input: Type.Integer(),
  output: Type.Integer(),
  cache_read: Type.Integer(),
  cache_creation: Type.Integer(),
});

export const Run = Type.Object(
  {
    id: Type.String(),
    team_id: Type.String(),
    agent_id: Type.String(),
    name: Nullable(Type.String()),
    status: RunStatus,
    creation_method: Type.Enum(['explicit', 'implicit', 'sdk', 'task']),
    ended_reason: Nullable(Type.String()),
    completion_reason: Nullable(Type.String({ description: 'explicit | idle_timeout | server_restart' })),
    outcome: NullableOutcome,
    outcome_reason: Nullable(Type.String()),
    metadata: Json,
    policy_id: Type.String(),
    policy_name: Type.String(),
    policy_snapshot: Type.Record(Type.String(), Type.Unknown(), {
      description: 'the policy as it was when the run started; the run is governed by it',
    }),
    budget: Type.Object({
      hard_limit_usd: Nullable(Type.Number()),
      hard_limit_tokens: Nullable(Type.Integer()),
      alert_threshold_usd: Nullable(Type.Number()),
      alert_threshold_tokens: Nullable(Type.Integer()),
    }),
    alert_threshold_exceeded: Type.Boolean(),
    alert_sent_at: NullableTimestamp,
    cost_usd: Type.Number({ description: 'everything charged: model calls, tool costs and sandbox time' }),
    sandbox_cost_usd: Type.Number({ description: 'the part of cost_usd that is sandbox time' }),
    reserved_usd: Type.Number({ description: 'admitted calls not settled yet (their most possible cost)' }),
    tokens_used: RunTokens,
    step_count: Type.Integer(),
    primary_model: Nullable(Type.String({ description: 'the model most calls of the run used' })),
    has_governance_block: Type.Boolean(),
    had_failover: Type.Boolean(),
    force_stop_lifted_at: NullableTimestamp,
    task_id: Nullable(Type.String()),
    last_step_at: NullableTimestamp,
    started_at: Timestamp,
    ended_at: NullableTimestamp,
    updated_at: Timestamp,
  },
  { description: 'a run: the steps an agent took under one policy, with their cost' },
);
export const Runs = Paginated(Run);

export const Step = Type.Object(
  {
    id: Type.String(),
    run_id: Type.String(),
    agent_id: Type.String(),
    type: Type.Enum([...STEP_TYPES]),
    status: Type.Enum(['success', 'error', 'timeout', 'budget_blocked', 'policy_blocked']),
    name: Nullable(Type.String({ description: 'the tool (tool_call steps); the capsule (sandbox steps)' })),
    provider: Nullable(Type.String()),
    model: Nullable(Type.String()),
    provider_key_id: Nullable(Type.String()),
    streaming: Type.Boolean(),
    request: Type.Unknown(),
    response: Type.Unknown(),
    tokens: StepTokens,
    cost_usd: Type.Number(),
    latency_ms: Nullable(Type.Integer()),
    routed_from: Nullable(Type.String()),
    failover_attempts: Type.Integer(),
    failover_context: Type.Unknown({ description: 'failover_transition rows only' }),
    error_kind: Nullable(
      Type.String({
        description: 'failure kind; the governance code on blocked steps; unsettled_reservation',
      }),
    ),
    error_message: Nullable(Type.String()),
    created_at: Timestamp,
  },
  { description: 'one model call, tool call, blocked request, failover or interval of sandbox time' },
);
export const Steps = Paginated(Step);

export const LedgerEntry = Type.Object(
  {
    id: Type.String(),
    run_id: Type.String(),
    step_id: Type.String(),
    agent_id: Type.String(),
    kind: Type.Enum(['model', 'sandbox'], {
      description:
        'model: a model call or reported tool cost; sandbox: an interval of a task capsule’s running time',
    }),
    provider: Nullable(Type.String()),
    model: Nullable(Type.String()),
    provider_key_id: Nullable(Type.String()),
    tokens: Type.Union([StepTokens, Type.Null()], { description: 'null on sandbox entries' }),
    sandbox: Type.Union(
      [
        Type.Object({
          capsule_id: Type.String(),
          seconds: Type.Number({ description: 'the interval charged' }),
          vcpus: Type.Number(),
          memory_mb: Type.Integer(),
          vcpu_seconds: Type.Number({ description: 'seconds × vcpus' }),
          gb_seconds: Type.Number({ description: 'seconds × memory in GiB (memory_mb / 1024)' }),
        }),
        Type.Null(),
      ],
      { description: 'sandbox entries only: what the charge was priced from' },
    ),
    cost_usd: Type.Number(),
    created_at: Timestamp,
  },
  { description: 'the immutable cost record of one charged step: the run’s cost is the sum of its entries' },
);
export const Ledger = Paginated(LedgerEntry);

export const CompletionSummary = Type.Object(
  {
    id: Type.String(),
    name: Nullable(Type.String()),
    status: RunStatus,
    ended_at: NullableTimestamp,
    ended_reason: Nullable(Type.String()),
    completion_reason: Nullable(Type.String()),
    outcome: NullableOutcome,
    outcome_reason: Nullable(Type.String()),
    step_count: Type.Integer(),
    cost_usd: Type.Number(),
    tokens_used: RunTokens,
    duration_ms: Nullable(Type.Integer()),
    policy_name: Type.String(),
    primary_model: Nullable(Type.String()),
    governance_events: Type.Array(Type.Object({ type: Type.String(), count: Type.Integer() }), {
      description: 'governance blocks in the run by code, most frequent first',
    }),
    limits_hit: Type.Array(Type.String()),
  },
  { description: 'what a completed run did' },
);

export const CompleteAllResult = Type.Object({
  completed_count: Type.Integer(),
  completed_run_ids: Type.Array(Type.String()),
});

const Bool = Type.Boolean();
export const RunListQuery = ListQuery({
  agent_id: Type.Optional(Type.String({ maxLength: 100 })),
  policy_id: Type.Optional(Type.String({ maxLength: 100 })),
  status: Type.Optional(RunStatus),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'started at or after' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'started before' })),
  had_governance_block: Type.Optional(Bool),
  had_failover: Type.Optional(Bool),
});
export type RunListQueryType = Static<typeof RunListQuery>;

const RunName = Nullable(Type.String({ maxLength: 255 }));
const OutcomeReason = Nullable(Type.String({ maxLength: 1024 }));

export const UpdateRunBody = Body(
  {
    name: Type.Optional(RunName),
    outcome: Type.Optional(NullableOutcome),
    outcome_reason: Type.Optional(OutcomeReason),
  },
  'works in any status; null clears a field',
);
export type UpdateRunInput = Static<typeof UpdateRunBody>;

const EndedReason = Type.String({ minLength: 1, maxLength: 255 });
const Metadata = Type.Record(Type.String(), Type.Unknown(), {
  description: 'merged into the run’s metadata',
});

/**
 * POST /v1/runs/{id}/complete serves both sides: an admin sends `reason`
 * (default admin_completed), an agent sends `ended_reason` (default
 * agent_signaled); either may be used by either.
 */
export const CompleteRunBody = Body({
  reason: Type.Optional(EndedReason),
  ended_reason: Type.Optional(EndedReason),
  metadata: Type.Optional(Metadata),
  outcome: Type.Optional(Outcome),
  outcome_reason: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type CompleteRunInput = Static<typeof CompleteRunBody>;

export const CompleteAllBody = Body({ ended_reason: Type.Optional(EndedReason) });

// A step's token counts are summed into the run's bigint totals: bounded so the sums stay exact.
const StepTokenCount = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });

export const ToolStepBody = Body({
  type: Type.Literal('tool_call'),
  name: Type.String({ minLength: 1, maxLength: 255 }),
  status: Type.Enum(['success', 'error', 'timeout']),
  provider: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'default sdk' })),
  request: Type.Optional(Type.Unknown()),
  response: Type.Optional(Type.Unknown()),
  tokens: Type.Optional(
    Body({
      input: Type.Optional(StepTokenCount),
      output: Type.Optional(StepTokenCount),
      cache_read: Type.Optional(StepTokenCount),
      cache_creation: Type.Optional(StepTokenCount),
    }),
  ),
  cost_usd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000 })),
  latency_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
  error_message: Type.Optional(Nullable(Type.String({ maxLength: 10_000 }))),
});
export type ToolStepInput = Static<typeof ToolStepBody>;

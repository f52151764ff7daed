import { type TObject, type TProperties, Type } from 'typebox';
import { Body, Nullable, Timestamp } from '../../http/schemas.ts';

// Rungate's analytics (/api/analytics/…) under Paddock's conventions:
// /v1/analytics/…, from/to instead of since/until, snake_case throughout.

const Query = <T extends TProperties>(props: T) => Type.Object(props, { additionalProperties: false });

const range = {
  from: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'start (rounded down to the hour); default: to − 30 days',
    }),
  ),
  to: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'end, exclusive (rounded up to the hour); default: now',
    }),
  ),
};
const granularity = Type.Optional(
  Type.Union([Type.Literal('hour'), Type.Literal('day'), Type.Literal('week')], {
    description: 'gives each row a period (UTC; weeks start on Monday); without it period is null',
  }),
);
const groupBy = Type.Optional(
  Type.Union(
    [
      Type.Literal('agent'),
      Type.Literal('agent_version'),
      Type.Literal('provider'),
      Type.Literal('model'),
      Type.Literal('day'),
    ],
    { description: 'without it all rows fall in one group (null)' },
  ),
);
const filters = {
  agent_id: Type.Optional(Type.String({ maxLength: 100 })),
  provider: Type.Optional(Type.String({ maxLength: 100 })),
  model: Type.Optional(Type.String({ maxLength: 200 })),
};

export const ReportQuery = Query({ ...range, granularity, group_by: groupBy, ...filters });
export const ReliabilityQuery = Query({ ...range, agent_id: filters.agent_id });
export const RunsQuery = Query({ ...range, granularity, agent_id: filters.agent_id });
export const TasksQuery = Query({ ...range, agent_id: filters.agent_id });
export const TopQuery = Query({
  ...range,
  by: Type.Union([
    Type.Literal('cost'),
    Type.Literal('calls'),
    Type.Literal('tokens'),
    Type.Literal('errors'),
  ]),
  dimension: Type.Union([Type.Literal('agent'), Type.Literal('model'), Type.Literal('provider')]),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
  agent_id: filters.agent_id,
});
export const AgentsKpiQuery = Query({
  ...range,
  window: Type.Optional(
    Type.Union([Type.Literal('24h'), Type.Literal('7d'), Type.Literal('30d'), Type.Literal('90d')], {
      description: 'instead of from: the range is this long, ending at to',
    }),
  ),
  agent_id: filters.agent_id,
  sort: Type.Optional(
    Type.Union(
      [
        Type.Literal('tasks_done'),
        Type.Literal('success_rate'),
        Type.Literal('cost_per_task'),
        Type.Literal('tokens_per_task'),
        Type.Literal('queue_wait_p50'),
        Type.Literal('queue_wait_p95'),
        Type.Literal('last_active'),
        Type.Literal('total_cost'),
        Type.Literal('name'),
      ],
      { description: 'default tasks_done; agents without a figure come last either way' },
    ),
  ),
  order: Type.Optional(
    Type.Union([Type.Literal('desc'), Type.Literal('asc')], { description: 'default desc (name: asc)' }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
});
export const CleanupPreviewQuery = Query({
  before: Type.String({
    format: 'date-time',
    description: 'runs that ended before this lose their raw rows',
  }),
});
export const CleanupBody = Body({ before: CleanupPreviewQuery.properties.before });

const rowBase = { group: Nullable(Type.String()), period: Nullable(Timestamp) };

function Report<T extends TProperties>(fields: T): TObject {
  return Type.Object({
    data: Type.Array(Type.Object({ ...rowBase, ...fields })),
    from: Timestamp,
    to: Timestamp,
  });
}

const int = Type.Integer();
const num = Type.Number();

export const CostsReport = Report({
  total_cost_usd: num,
  model_cost_usd: num,
  sandbox_cost_usd: num,
  total_tokens: int,
  request_count: int,
});
export const LatencyReport = Report({
  p50_ms: Nullable(num),
  p95_ms: Nullable(num),
  p99_ms: Nullable(num),
  avg_ms: Nullable(num),
  request_count: int,
});
export const ErrorsReport = Report({
  total_requests: int,
  success_count: int,
  error_count: int,
  timeout_count: int,
  budget_blocked_count: int,
  policy_blocked_count: int,
  error_rate_pct: num,
  failover_count: int,
  avg_failover_attempts: num,
});
export const ThroughputReport = Report({
  request_count: int,
  input_tokens: int,
  output_tokens: int,
  cache_read_tokens: int,
  cache_creation_tokens: int,
  total_tokens: int,
  total_cost_usd: num,
});
export const ReliabilityReport = Type.Object({
  data: Type.Array(
    Type.Object({
      provider: Type.String(),
      total_requests: int,
      success_count: int,
      error_count: int,
      success_rate_pct: num,
      error_rate_pct: num,
      failover_count: int,
      failover_rate_pct: num,
      avg_latency_ms: Nullable(num),
      p50_latency_ms: Nullable(num),
      p95_latency_ms: Nullable(num),
      total_cost_usd: num,
    }),
  ),
  from: Timestamp,
  to: Timestamp,
});
export const RunsReport = Type.Object({
  data: Type.Array(
    Type.Object({
      period: Nullable(Timestamp),
      total_runs: int,
      completed_count: int,
      failed_count: int,
      budget_exceeded_count: int,
      force_stopped_count: int,
      running_count: int,
      completion_rate_pct: num,
      avg_duration_ms: Nullable(num),
      avg_steps_per_run: Nullable(num),
      avg_cost_per_run_usd: Nullable(num),
      total_cost_usd: num,
    }),
  ),
  from: Timestamp,
  to: Timestamp,
});
export const TopReport = Type.Object({
  data: Type.Array(Type.Object({ rank: int, entity: Type.String(), value: num })),
  from: Timestamp,
  to: Timestamp,
});
export const TasksReport = Type.Object({
  data: Type.Object({
    total_tasks: int,
    by_status: Type.Record(Type.String(), int),
    total_cost_usd: num,
    model_cost_usd: num,
    sandbox_cost_usd: num,
    avg_cost_per_task_usd: Nullable(num),
    avg_model_cost_per_task_usd: Nullable(num),
    avg_sandbox_cost_per_task_usd: Nullable(num),
    sandbox_seconds: num,
  }),
  from: Timestamp,
  to: Timestamp,
});
export const OverviewStats = Type.Object({
  data: Type.Object({
    active_agents: int,
    total_spend_today: num,
    total_runs_today: int,
    tokens_processed_today: int,
    spend_trend_pct: Nullable(num),
    runs_trend_pct: Nullable(num),
    completed_runs_today: int,
    completion_rate_pct: Nullable(num),
  }),
});
export const AgentsKpi = Type.Object({
  data: Type.Array(
    Type.Object({
      agent_id: Type.String(),
      name: Nullable(Type.String({ description: 'null once the agent is gone' })),
      tasks_total: int,
      tasks_done: Type.Integer({ description: 'ended: completed, failed or cancelled' }),
      completed_count: int,
      failed_count: int,
      cancelled_count: int,
      success_rate_pct: Nullable(Type.Number({ description: 'completed of done' })),
      total_cost_usd: Type.Number({ description: 'of the done tasks, model and sandbox' }),
      cost_per_task_usd: Nullable(num),
      model_cost_per_task_usd: Nullable(num),
      sandbox_cost_per_task_usd: Nullable(num),
      tokens_per_task: Nullable(num),
      queue_wait_p50_ms: Nullable(
        Type.Number({ description: 'created → started, of the tasks that started' }),
      ),
      queue_wait_p95_ms: Nullable(num),
      last_active_at: Nullable(Timestamp),
    }),
  ),
  from: Timestamp,
  to: Timestamp,
});
export const CleanupCounts = Type.Object({
  data: Type.Object({ runs: int, steps: int, ledger_entries: int }),
});

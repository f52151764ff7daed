import { LATENCY_BUCKET_BOUNDS_MS } from '../../db/rollups.ts';
import type { AgentKpiRow, RunsRow, TasksRow } from './records-repo.ts';
import type { RollupSums } from './repo.ts';

// The analytics rows as the API shows them: snake_case, USD, percentages.

const pct = (part: number, whole: number) => (whole === 0 ? 0 : round2((part / whole) * 100));
/** Money is stored in micro-dollars. */
const usdOf = (micros: number) => micros / 1_000_000;
const round2 = (x: number) => Math.round(x * 100) / 100;
const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function rangeView(r: { from: Date; to: Date }) {
  return { from: r.from.toISOString(), to: r.to.toISOString() };
}

/**
 * The latency at quantile q (nearest rank) read off a histogram: the
 * middle of the bucket holding that rank, so within half a bucket (about
 * 12 % above 8 ms, exact below) of the true value. Null without requests.
 */
export function percentileMs(hist: readonly number[], q: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let j = 0; j < hist.length; j++) {
    seen += hist[j]!;
    if (seen >= rank) return bucketMiddleMs(j);
  }
  return bucketMiddleMs(hist.length - 1);
}

/** Bucket j's representative value: 0 for bucket 0, the lower bound for the last, else the middle. */
export function bucketMiddleMs(j: number): number {
  const b = LATENCY_BUCKET_BOUNDS_MS;
  if (j === 0) return 0;
  if (j >= b.length) return b[b.length - 1]!;
  const lo = b[j - 1]!;
  const hi = b[j]! - 1;
  return (lo + hi) / 2;
}

const group = (r: RollupSums) => ({ group: r.group, period: iso(r.period) });
const tokens = (r: RollupSums) => r.inputTokens + r.outputTokens + r.cacheReadTokens + r.cacheCreationTokens;
const avgMs = (r: RollupSums) => (r.latencyCount === 0 ? null : round2(r.latencySumMs / r.latencyCount));

export function costRow(r: RollupSums) {
  return {
    ...group(r),
    total_cost_usd: usdOf(r.costMicros),
    model_cost_usd: usdOf(r.costMicros - r.sandboxCostMicros),
    sandbox_cost_usd: usdOf(r.sandboxCostMicros),
    total_tokens: tokens(r),
    request_count: r.requestCount,
  };
}

export function latencyRow(r: RollupSums) {
  const hist = r.latencyHist ?? [];
  return {
    ...group(r),
    p50_ms: percentileMs(hist, 0.5),
    p95_ms: percentileMs(hist, 0.95),
    p99_ms: percentileMs(hist, 0.99),
    avg_ms: avgMs(r),
    request_count: r.latencyCount,
  };
}

export function errorRow(r: RollupSums) {
  return {
    ...group(r),
    total_requests: r.requestCount,
    success_count: r.successCount,
    error_count: r.errorCount,
    timeout_count: r.timeoutCount,
    budget_blocked_count: r.budgetBlockedCount,
    policy_blocked_count: r.policyBlockedCount,
    error_rate_pct: pct(r.errorCount + r.timeoutCount, r.requestCount),
    failover_count: r.failoverCount,
    avg_failover_attempts: r.failoverCount === 0 ? 0 : round2(r.failoverAttempts / r.failoverCount),
  };
}

export function throughputRow(r: RollupSums) {
  return {
    ...group(r),
    request_count: r.requestCount,
    input_tokens: r.inputTokens,
    output_tokens: r.outputTokens,
    cache_read_tokens: r.cacheReadTokens,
    cache_creation_tokens: r.cacheCreationTokens,
    total_tokens: tokens(r),
    total_cost_usd: usdOf(r.costMicros),
  };
}

export function reliabilityRow(r: RollupSums) {
  const hist = r.latencyHist ?? [];
  return {
    provider: r.group!,
    total_requests: r.requestCount,
    success_count: r.successCount,
    error_count: r.errorCount + r.timeoutCount,
    success_rate_pct: pct(r.successCount, r.requestCount),
    error_rate_pct: pct(r.errorCount + r.timeoutCount, r.requestCount),
    failover_count: r.failoverCount,
    failover_rate_pct: pct(r.failoverCount, r.requestCount),
    avg_latency_ms: avgMs(r),
    p50_latency_ms: percentileMs(hist, 0.5),
    p95_latency_ms: percentileMs(hist, 0.95),
    total_cost_usd: usdOf(r.costMicros),
  };
}

export function topValue(by: 'cost' | 'calls' | 'tokens' | 'errors', r: RollupSums): number {
  if (by === 'cost') return usdOf(r.costMicros);
  if (by === 'calls') return r.requestCount;
  if (by === 'tokens') return tokens(r);
  return r.errorCount + r.timeoutCount;
}

export function runsRow(r: RunsRow) {
  const ended = r.totalRuns - r.running;
  return {
    period: iso(r.period),
    total_runs: r.totalRuns,
    completed_count: r.completed,
    failed_count: r.failed,
    budget_exceeded_count: r.budgetExceeded,
    force_stopped_count: r.forceStopped,
    running_count: r.running,
    completion_rate_pct: pct(r.completed, ended),
    avg_duration_ms: r.avgDurationMs === null ? null : Math.round(r.avgDurationMs),
    avg_steps_per_run: r.avgSteps === null ? null : round2(r.avgSteps),
    avg_cost_per_run_usd: r.totalRuns === 0 ? null : usdOf(Math.round(r.costMicros / r.totalRuns)),
    total_cost_usd: usdOf(r.costMicros),
  };
}

export function tasksSummary(rows: readonly TasksRow[]) {
  const total = rows.reduce((a, r) => a + r.count, 0);
  const cost = rows.reduce((a, r) => a + r.costMicros, 0);
  const sandbox = rows.reduce((a, r) => a + r.sandboxCostMicros, 0);
  const per = (micros: number) => (total === 0 ? null : usdOf(Math.round(micros / total)));
  return {
    total_tasks: total,
    by_status: Object.fromEntries(rows.map((r) => [r.status, r.count])),
    total_cost_usd: usdOf(cost),
    model_cost_usd: usdOf(cost - sandbox),
    sandbox_cost_usd: usdOf(sandbox),
    avg_cost_per_task_usd: per(cost),
    avg_model_cost_per_task_usd: per(cost - sandbox),
    avg_sandbox_cost_per_task_usd: per(sandbox),
    sandbox_seconds: rows.reduce((a, r) => a + r.sandboxMs, 0) / 1000,
  };
}

export function agentKpiRow(r: AgentKpiRow) {
  const per = (x: number) => (r.tasksDone === 0 ? null : x / r.tasksDone);
  const usdPer = (micros: number) => (r.tasksDone === 0 ? null : usdOf(Math.round(micros / r.tasksDone)));
  const ms = (x: number | null) => (x === null ? null : Math.round(x));
  const tokensPer = per(r.tokens);
  return {
    agent_id: r.agentId,
    name: r.name,
    tasks_total: r.tasks,
    tasks_done: r.tasksDone,
    completed_count: r.completed,
    failed_count: r.failed,
    cancelled_count: r.cancelled,
    success_rate_pct: r.tasksDone === 0 ? null : pct(r.completed, r.tasksDone),
    total_cost_usd: usdOf(r.costMicros),
    cost_per_task_usd: usdPer(r.costMicros),
    model_cost_per_task_usd: usdPer(r.costMicros - r.sandboxCostMicros),
    sandbox_cost_per_task_usd: usdPer(r.sandboxCostMicros),
    tokens_per_task: tokensPer === null ? null : round2(tokensPer),
    queue_wait_p50_ms: ms(r.waitP50Ms),
    queue_wait_p95_ms: ms(r.waitP95Ms),
    last_active_at: iso(r.lastActiveAt),
  };
}

const trend = (now: number, before: number) =>
  before === 0 ? null : round2(((now - before) / before) * 100);

export function overviewView(
  today: readonly RollupSums[],
  yesterday: readonly RollupSums[],
  runsToday: { total: number; completed: number },
  runsYesterday: { total: number; completed: number },
) {
  const spend = (rows: readonly RollupSums[]) => rows.reduce((a, r) => a + r.costMicros, 0);
  return {
    active_agents: today.filter((r) => r.requestCount > 0).length,
    total_spend_today: usdOf(spend(today)),
    total_runs_today: runsToday.total,
    tokens_processed_today: today.reduce((a, r) => a + tokens(r), 0),
    spend_trend_pct: trend(spend(today), spend(yesterday)),
    runs_trend_pct: trend(runsToday.total, runsYesterday.total),
    completed_runs_today: runsToday.completed,
    completion_rate_pct: runsToday.total === 0 ? null : pct(runsToday.completed, runsToday.total),
  };
}

export function cleanupView(c: { runs: number; steps: number; ledgerEntries: number }) {
  return { runs: c.runs, steps: c.steps, ledger_entries: c.ledgerEntries };
}

import { sql } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import { type Db, type DbOrTx, rawQuery } from '../../db/client.ts';
import type { Granularity } from './repo.ts';

// The analytics figures that come from runs and tasks rows rather than the
// rollups (a run's status and a task's outcome change after its steps), and
// the cleanup of raw steps and ledger entries. SQL only, scoped by team;
// each range query walks a (team_id, started_at | created_at) index.

const n = (v: unknown) => (v === null || v === undefined ? 0 : Number(v));

export interface RunsRow {
  period: Date | null;
  totalRuns: number;
  completed: number;
  failed: number;
  budgetExceeded: number;
  forceStopped: number;
  running: number;
  avgDurationMs: number | null;
  avgSteps: number | null;
  costMicros: number;
}

const PERIOD: Record<Granularity, string> = {
  hour: `date_trunc('hour', started_at, 'UTC')`,
  day: `date_trunc('day', started_at, 'UTC')`,
  week: `date_trunc('week', started_at, 'UTC')`,
};

/** Runs started in [from, to), per period. */
export async function runsReport(
  db: Db,
  q: { teamId: TeamId; from: Date; to: Date; granularity: Granularity | null; agentId?: string },
): Promise<RunsRow[]> {
  const params: unknown[] = [q.teamId, q.from.toISOString(), q.to.toISOString()];
  const agent = q.agentId === undefined ? '' : ` and agent_id = $${params.push(q.agentId)}`;
  const period = q.granularity ? PERIOD[q.granularity] : 'null::timestamptz';
  const rows = await rawQuery(
    db,
    `select ${period} as period, count(*) as total,
       count(*) filter (where status = 'completed') as completed,
       count(*) filter (where status = 'failed') as failed,
       count(*) filter (where status = 'budget_exceeded') as budget_exceeded,
       count(*) filter (where status = 'force_stopped') as force_stopped,
       count(*) filter (where status = 'running') as running,
       avg(extract(epoch from ended_at - started_at) * 1000) filter (where ended_at is not null) as avg_duration_ms,
       avg(step_count) as avg_steps, sum(cost_micros) as cost_micros
     from runs where team_id = $1 and started_at >= $2::timestamptz and started_at < $3::timestamptz${agent}
     group by 1 order by 1 nulls first`,
    params,
  );
  return rows.map((r) => ({
    period: r.period === null ? null : new Date(r.period as string),
    totalRuns: n(r.total),
    completed: n(r.completed),
    failed: n(r.failed),
    budgetExceeded: n(r.budget_exceeded),
    forceStopped: n(r.force_stopped),
    running: n(r.running),
    avgDurationMs: r.avg_duration_ms === null ? null : Number(r.avg_duration_ms),
    avgSteps: r.avg_steps === null ? null : Number(r.avg_steps),
    costMicros: n(r.cost_micros),
  }));
}

export interface TasksRow {
  status: string;
  count: number;
  costMicros: number;
  sandboxCostMicros: number;
  sandboxMs: number;
}

/** Which tasks a tasks figure covers: a team's created in [from, to), optionally one agent's. */
export interface TasksRange {
  teamId: TeamId;
  from: Date;
  to: Date;
  agentId?: string;
}

/**
 * The tasks of a range with their runs (`t`, `r`), as a FROM and WHERE
 * clause over $1… of `params`: what /v1/analytics/tasks and
 * /v1/overview/agents both sum. A run's cost and tokens are its ledger's
 * totals (kept by the runs module as entries settle, and kept when a
 * cleanup deletes the raw entries). Walks tasks_team_created_idx.
 */
function tasksWithRuns(q: TasksRange, params: unknown[]): string {
  const at = (v: unknown) => `$${params.push(v)}`;
  const team = at(q.teamId);
  const agent = q.agentId === undefined ? '' : ` and t.agent_id = ${at(q.agentId)}`;
  return `tasks t left join runs r on r.id = t.run_id and r.team_id = t.team_id
     where t.team_id = ${team} and t.created_at >= ${at(q.from.toISOString())}::timestamptz
       and t.created_at < ${at(q.to.toISOString())}::timestamptz${agent}`;
}

/** Tasks created in [from, to) per status, with their runs' cost (sandbox part apart) and sandbox time. */
export async function tasksReport(db: Db, q: TasksRange): Promise<TasksRow[]> {
  const params: unknown[] = [];
  const rows = await rawQuery(
    db,
    `select t.status, count(*) as count, coalesce(sum(r.cost_micros), 0) as cost_micros,
       coalesce(sum(r.sandbox_cost_micros), 0) as sandbox_cost_micros, coalesce(sum(t.sandbox_ms), 0) as sandbox_ms
     from ${tasksWithRuns(q, params)}
     group by t.status order by t.status`,
    params,
  );
  return rows.map((r) => ({
    status: String(r.status),
    count: n(r.count),
    costMicros: n(r.cost_micros),
    sandboxCostMicros: n(r.sandbox_cost_micros),
    sandboxMs: n(r.sandbox_ms),
  }));
}

/** Tasks that have ended: what per-task figures divide by. */
const DONE = `t.status in ('completed', 'failed', 'cancelled')`;

/** The KPI columns /v1/overview/agents sorts by, as SQL over agentsKpi's select. */
export const AGENT_KPI_ORDER = {
  tasks_done: 'tasks_done',
  success_rate: 'completed::float8 / nullif(tasks_done, 0)',
  cost_per_task: 'cost_micros::float8 / nullif(tasks_done, 0)',
  tokens_per_task: 'tokens::float8 / nullif(tasks_done, 0)',
  queue_wait_p50: 'wait_p50_ms',
  queue_wait_p95: 'wait_p95_ms',
  last_active: 'last_active_at',
  total_cost: 'cost_micros',
  name: 'lower(name)',
} as const;
export type AgentKpiSort = keyof typeof AGENT_KPI_ORDER;

export interface AgentKpiRow {
  agentId: string;
  name: string | null;
  tasks: number;
  tasksDone: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Of the done tasks' runs. */
  costMicros: number;
  sandboxCostMicros: number;
  tokens: number;
  /** Created → started, of the tasks that started. */
  waitP50Ms: number | null;
  waitP95Ms: number | null;
  lastActiveAt: Date | null;
}

/**
 * Per agent, its tasks created in the range (the rows tasksReport sums):
 * counts by outcome, the done tasks' cost and tokens, queue wait
 * percentiles, the latest time one of them was created, started or
 * finished. Sorted by a whitelisted column (nulls last, then by agent id).
 */
export async function agentsKpi(
  db: Db,
  q: TasksRange & { sort: AgentKpiSort; descending: boolean; limit: number },
): Promise<AgentKpiRow[]> {
  // tasksWithRuns binds the team first: it is $1 below too.
  const params: unknown[] = [];
  const wait = `extract(epoch from t.started_at - t.created_at) * 1000`;
  const direction = q.descending ? 'desc' : 'asc';
  const rows = await rawQuery(
    db,
    `with k as (
       select t.agent_id, count(*) as tasks,
         count(*) filter (where ${DONE}) as tasks_done,
         count(*) filter (where t.status = 'completed') as completed,
         count(*) filter (where t.status = 'failed') as failed,
         count(*) filter (where t.status = 'cancelled') as cancelled,
         coalesce(sum(r.cost_micros) filter (where ${DONE}), 0) as cost_micros,
         coalesce(sum(r.sandbox_cost_micros) filter (where ${DONE}), 0) as sandbox_cost_micros,
         coalesce(sum(r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_creation_tokens)
           filter (where ${DONE}), 0) as tokens,
         percentile_cont(0.5) within group (order by ${wait}) filter (where t.started_at is not null) as wait_p50_ms,
         percentile_cont(0.95) within group (order by ${wait}) filter (where t.started_at is not null) as wait_p95_ms,
         max(greatest(t.created_at, t.started_at, t.finished_at)) as last_active_at
       from ${tasksWithRuns(q, params)}
       group by t.agent_id)
     select k.*, a.name from k left join agents a on a.id = k.agent_id and a.team_id = $1
     order by ${AGENT_KPI_ORDER[q.sort]} ${direction} nulls last, k.agent_id
     limit ${Math.trunc(q.limit)}`,
    params,
  );
  return rows.map((r) => ({
    agentId: String(r.agent_id),
    name: r.name === null || r.name === undefined ? null : String(r.name),
    tasks: n(r.tasks),
    tasksDone: n(r.tasks_done),
    completed: n(r.completed),
    failed: n(r.failed),
    cancelled: n(r.cancelled),
    costMicros: n(r.cost_micros),
    sandboxCostMicros: n(r.sandbox_cost_micros),
    tokens: n(r.tokens),
    waitP50Ms: r.wait_p50_ms === null ? null : Number(r.wait_p50_ms),
    waitP95Ms: r.wait_p95_ms === null ? null : Number(r.wait_p95_ms),
    lastActiveAt: r.last_active_at === null ? null : new Date(r.last_active_at as string),
  }));
}

/** Runs started in [from, to) and how many of them completed. */
export async function countRuns(
  db: Db,
  teamId: TeamId,
  from: Date,
  to: Date,
): Promise<{ total: number; completed: number }> {
  const [row] = await rawQuery(
    db,
    `select count(*) as total, count(*) filter (where status = 'completed') as completed
     from runs where team_id = $1 and started_at >= $2::timestamptz and started_at < $3::timestamptz`,
    [teamId, from.toISOString(), to.toISOString()],
  );
  return { total: n(row?.total), completed: n(row?.completed) };
}

/**
 * The raw rows a cleanup would delete: the steps and ledger entries of runs
 * that ended before `before` (a running run is never touched, so a live
 * run's money figures stay whole; the run rows and the rollups stay).
 */
const ENDED_RUNS = `select id from runs where team_id = $1 and status <> 'running' and ended_at < $2::timestamptz`;

export async function cleanupPreview(
  db: Db,
  teamId: TeamId,
  before: Date,
): Promise<{ runs: number; steps: number; ledgerEntries: number }> {
  const [row] = await rawQuery(
    db,
    `with ended as (${ENDED_RUNS})
     select (select count(*) from ended e where exists (select 1 from steps s where s.run_id = e.id)) as runs,
       (select count(*) from steps s join ended e on e.id = s.run_id where s.team_id = $1) as steps,
       (select count(*) from ledger_entries l join ended e on e.id = l.run_id where l.team_id = $1) as ledger`,
    [teamId, before.toISOString()],
  );
  return { runs: n(row?.runs), steps: n(row?.steps), ledgerEntries: n(row?.ledger) };
}

/** Deletes what cleanupPreview counts, in one statement (inside the caller's transaction). */
export async function cleanup(
  tx: DbOrTx,
  teamId: TeamId,
  before: Date,
): Promise<{ runs: number; steps: number; ledgerEntries: number }> {
  const ended = sql`select id from runs where team_id = ${teamId} and status <> 'running' and ended_at < ${before.toISOString()}::timestamptz`;
  const result = await tx.execute(sql`
    with ended as (${ended}),
    l as (delete from ledger_entries where team_id = ${teamId} and run_id in (select id from ended) returning run_id),
    s as (delete from steps where team_id = ${teamId} and run_id in (select id from ended) returning run_id)
    select (select count(distinct run_id) from s) as runs, (select count(*) from s) as steps,
      (select count(*) from l) as ledger`);
  const [row] = (result as unknown as { rows: Array<Record<string, unknown>> }).rows;
  return { runs: n(row?.runs), steps: n(row?.steps), ledgerEntries: n(row?.ledger) };
}

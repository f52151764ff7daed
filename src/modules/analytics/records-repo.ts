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

/** Tasks created in [from, to) per status, with their runs' cost (sandbox part apart) and sandbox time. */
export async function tasksReport(
  db: Db,
  q: { teamId: TeamId; from: Date; to: Date; agentId?: string },
): Promise<TasksRow[]> {
  const params: unknown[] = [q.teamId, q.from.toISOString(), q.to.toISOString()];
  const agent = q.agentId === undefined ? '' : ` and t.agent_id = $${params.push(q.agentId)}`;
  const rows = await rawQuery(
    db,
    `select t.status, count(*) as count, coalesce(sum(r.cost_micros), 0) as cost_micros,
       coalesce(sum(r.sandbox_cost_micros), 0) as sandbox_cost_micros, coalesce(sum(t.sandbox_ms), 0) as sandbox_ms
     from tasks t left join runs r on r.id = t.run_id and r.team_id = t.team_id
     where t.team_id = $1 and t.created_at >= $2::timestamptz and t.created_at < $3::timestamptz${agent}
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

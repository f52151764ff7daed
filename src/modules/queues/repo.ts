import { and, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { deleteBatch } from '../../db/delete-batch.ts';
import { beforeCursor } from '../../db/query-parts.ts';
import { queueJobs } from '../../db/schema/index.ts';
import type { JobStatus } from './schemas.ts';

// The work queues' jobs: SQL only. Every statement names the team and the queue.

export type JobId = Id<'qjob'>;
export type JobRow = typeof queueJobs.$inferSelect;
export type JobInsert = typeof queueJobs.$inferInsert;

const iso = (d: Date) => d.toISOString();

/** A new job; with an idempotency key already used in this queue, nothing (the caller reads the existing one). */
export async function insertJob(db: DbOrTx, row: JobInsert): Promise<JobRow | undefined> {
  const [inserted] = await db
    .insert(queueJobs)
    .values(row)
    .onConflictDoNothing({ target: [queueJobs.teamId, queueJobs.queue, queueJobs.idempotencyKey] })
    .returning();
  return inserted;
}

export async function findByIdempotencyKey(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  key: string,
): Promise<JobRow | undefined> {
  const [row] = await db
    .select()
    .from(queueJobs)
    .where(and(eq(queueJobs.teamId, teamId), eq(queueJobs.queue, queue), eq(queueJobs.idempotencyKey, key)));
  return row;
}

export async function findJob(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  id: JobId,
): Promise<JobRow | undefined> {
  const [row] = await db
    .select()
    .from(queueJobs)
    .where(and(eq(queueJobs.teamId, teamId), eq(queueJobs.queue, queue), eq(queueJobs.id, id)));
  return row;
}

export function listJobs(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  filter: { status?: JobStatus | undefined; type?: string | undefined },
  beforeId: string | undefined,
  limit: number,
): Promise<JobRow[]> {
  return db
    .select()
    .from(queueJobs)
    .where(
      and(
        eq(queueJobs.teamId, teamId),
        eq(queueJobs.queue, queue),
        filter.status !== undefined ? eq(queueJobs.status, filter.status) : undefined,
        filter.type !== undefined ? eq(queueJobs.type, filter.type) : undefined,
        beforeCursor(queueJobs.id, beforeId),
      ),
    )
    .orderBy(desc(queueJobs.id))
    .limit(limit);
}

/**
 * This transaction's commit does not wait for its WAL to reach the disk.
 * For claims and completions only: a database crash may forget the last
 * moments of them, which puts those jobs back to be claimed again (at least
 * once, as a worker crash does); a submit or cancel is never forgotten.
 */
export async function relaxCommit(tx: DbOrTx): Promise<void> {
  await tx.execute(sql`set local synchronous_commit = off`);
}

/** Drizzle's rows from a raw statement's snake_case columns. */
function jobRows(result: unknown): JobRow[] {
  return (result as { rows: Record<string, unknown>[] }).rows.map((r) => ({
    id: r.id as JobId,
    teamId: r.team_id as TeamId,
    queue: r.queue as string,
    type: r.type as string,
    payload: r.payload as Record<string, unknown>,
    priority: Number(r.priority),
    status: r.status as string,
    attempts: Number(r.attempts),
    maxAttempts: Number(r.max_attempts),
    timeoutSec: Number(r.timeout_sec),
    runAt: new Date(r.run_at as string),
    leaseExpiresAt: r.lease_expires_at === null ? null : new Date(r.lease_expires_at as string),
    workerId: r.worker_id as string | null,
    idempotencyKey: r.idempotency_key as string | null,
    result: r.result ?? null,
    error: r.error as string | null,
    claimedAt: r.claimed_at === null ? null : new Date(r.claimed_at as string),
    endedAt: r.ended_at === null ? null : new Date(r.ended_at as string),
    createdAt: new Date(r.created_at as string),
    updatedAt: new Date(r.updated_at as string),
  }));
}

/** Jobs of `type` whose payload's `field` (text) is one of `values`: no claim takes them while so. */
export interface HeldBack {
  type: string;
  field: string;
  values: readonly string[];
}

/**
 * Takes up to `limit` due jobs of the queue for `workerId` in one statement:
 * higher priority first, then oldest. SKIP LOCKED passes over rows another
 * claim is taking this instant, so no job is handed to two workers and
 * claims never wait on each other. Each taken job gets a lease of its
 * timeout_sec. Answered in claim order.
 */
export async function claimJobs(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  workerId: string,
  types: readonly string[] | undefined,
  limit: number,
  now: Date,
  held: readonly HeldBack[] = [],
): Promise<JobRow[]> {
  const result = await db.execute(sql`
    with picked as (
      select id from queue_jobs
      where team_id = ${teamId} and queue = ${queue} and status = 'queued'
        and run_at <= ${iso(now)}::timestamptz
        ${
          types
            ? sql`and type in (${sql.join(
                types.map((t) => sql`${t}`),
                sql`, `,
              )})`
            : sql``
        }
        ${sql.join(
          held.map(
            (h) =>
              sql`and not (type = ${h.type} and payload ->> ${h.field} in (${sql.join(
                h.values.map((v) => sql`${v}`),
                sql`, `,
              )}))`,
          ),
          sql` `,
        )}
      order by priority desc nulls last, id
      limit ${limit}
      for update skip locked
    )
    update queue_jobs j set
      status = 'active',
      attempts = j.attempts + 1,
      worker_id = ${workerId},
      lease_expires_at = ${iso(now)}::timestamptz + make_interval(secs => j.timeout_sec),
      claimed_at = ${iso(now)}::timestamptz,
      updated_at = ${iso(now)}::timestamptz
    from picked where j.id = picked.id
    returning j.*`);
  return jobRows(result).sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1));
}

/** Claimed jobs put back as if never claimed (their attempt not counted), claimable from `runAt`. */
export async function unclaimJobs(
  db: DbOrTx,
  teamId: TeamId,
  ids: JobId[],
  runAt: Date,
  now: Date,
): Promise<void> {
  await db
    .update(queueJobs)
    .set({
      status: 'queued',
      attempts: sql`${queueJobs.attempts} - 1`,
      workerId: null,
      leaseExpiresAt: null,
      claimedAt: null,
      runAt,
      updatedAt: now,
    })
    .where(and(eq(queueJobs.teamId, teamId), inArray(queueJobs.id, ids), eq(queueJobs.status, 'active')));
}

/** The lease from now on, while `workerId` holds the active job. */
export async function extendLease(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  id: JobId,
  workerId: string,
  extendSec: number | undefined,
  now: Date,
): Promise<JobRow | undefined> {
  const result = await db.execute(sql`
    update queue_jobs set
      lease_expires_at = ${iso(now)}::timestamptz + make_interval(secs => coalesce(${extendSec ?? null}::int, timeout_sec)),
      updated_at = ${iso(now)}::timestamptz
    where team_id = ${teamId} and queue = ${queue} and id = ${id}
      and status = 'active' and worker_id = ${workerId}
    returning *`);
  return jobRows(result)[0];
}

/**
 * Ends active jobs `workerId` holds as completed, each with its result, in
 * one statement; jobs it does not hold (ended, queued again, another's) are
 * left as they are. Answers the rows it completed.
 */
export async function completeJobs(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  workerId: string,
  jobs: ReadonlyArray<{ id: JobId; result: unknown }>,
  now: Date,
): Promise<JobRow[]> {
  const given = JSON.stringify(jobs.map((j) => ({ id: j.id, result: j.result ?? null })));
  const result = await db.execute(sql`
    update queue_jobs j set
      status = 'completed',
      result = g.result,
      lease_expires_at = null,
      ended_at = ${iso(now)}::timestamptz,
      updated_at = ${iso(now)}::timestamptz
    from jsonb_to_recordset(${given}::jsonb) as g(id text, result jsonb)
    where j.id = g.id and j.team_id = ${teamId} and j.queue = ${queue}
      and j.status = 'active' and j.worker_id = ${workerId}
    returning j.*`);
  return jobRows(result);
}

/**
 * A failure the worker reports: queued again at `retryAt` while attempts
 * remain and `retryAt` is given, else failed for good.
 */
export async function failJob(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  id: JobId,
  workerId: string,
  error: string,
  retryAt: Date | null,
  now: Date,
): Promise<JobRow | undefined> {
  const retry = retryAt !== null;
  const result = await db.execute(sql`
    update queue_jobs set
      status = case when ${retry}::boolean and attempts < max_attempts then 'queued' else 'failed' end,
      run_at = case when ${retry}::boolean and attempts < max_attempts then ${iso(retryAt ?? now)}::timestamptz else run_at end,
      ended_at = case when ${retry}::boolean and attempts < max_attempts then null else ${iso(now)}::timestamptz end,
      error = ${error},
      lease_expires_at = null,
      updated_at = ${iso(now)}::timestamptz
    where team_id = ${teamId} and queue = ${queue} and id = ${id}
      and status = 'active' and worker_id = ${workerId}
    returning *`);
  return jobRows(result)[0];
}

/** Cancels a job that has not ended; undefined when it has (or is not there). */
export async function cancelJob(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  id: JobId,
  now: Date,
): Promise<JobRow | undefined> {
  const [row] = await db
    .update(queueJobs)
    .set({ status: 'cancelled', leaseExpiresAt: null, endedAt: now, updatedAt: now })
    .where(
      and(
        eq(queueJobs.teamId, teamId),
        eq(queueJobs.queue, queue),
        eq(queueJobs.id, id),
        inArray(queueJobs.status, ['queued', 'active']),
      ),
    )
    .returning();
  return row;
}

/**
 * System-only (the sweep, for every team): active jobs whose lease ran out
 * before `now`, up to `limit`, go back to the queue while attempts remain,
 * else fail. SKIP LOCKED: two servers sweeping take different rows, and a
 * worker completing a job this instant keeps it.
 */
export async function systemExpireLeases(db: DbOrTx, now: Date, limit: number): Promise<JobRow[]> {
  const result = await db.execute(sql`
    with expired as (
      select id from queue_jobs
      where status = 'active' and lease_expires_at <= ${iso(now)}::timestamptz
      order by lease_expires_at
      limit ${limit}
      for update skip locked
    )
    update queue_jobs j set
      status = case when j.attempts < j.max_attempts then 'queued' else 'failed' end,
      ended_at = case when j.attempts < j.max_attempts then null else ${iso(now)}::timestamptz end,
      error = 'lease expired: worker ' || j.worker_id || ' neither completed nor heartbeat the job within its lease',
      lease_expires_at = null,
      updated_at = ${iso(now)}::timestamptz
    from expired where j.id = expired.id
    returning j.*`);
  return jobRows(result);
}

/** System-only: deletes up to `limit` jobs that ended before `cutoff`; how many went. */
export async function systemDeleteEndedBefore(db: DbOrTx, cutoff: Date, limit: number): Promise<number> {
  const ended = and(
    inArray(queueJobs.status, ['completed', 'failed', 'cancelled']),
    lt(queueJobs.endedAt, cutoff),
  );
  return deleteBatch(db, queueJobs, queueJobs.id, ended, limit);
}

export interface StatusCounts {
  queued: number;
  active: number;
  completed: number;
  failed: number;
  cancelled: number;
}

const countColumns = sql`
  count(*) filter (where status = 'queued')::int as queued,
  count(*) filter (where status = 'active')::int as active,
  count(*) filter (where status = 'completed')::int as completed,
  count(*) filter (where status = 'failed')::int as failed,
  count(*) filter (where status = 'cancelled')::int as cancelled`;

function counts(r: Record<string, unknown>): StatusCounts {
  return {
    queued: Number(r.queued ?? 0),
    active: Number(r.active ?? 0),
    completed: Number(r.completed ?? 0),
    failed: Number(r.failed ?? 0),
    cancelled: Number(r.cancelled ?? 0),
  };
}

/** The team's queues (those holding a job) by name, after `afterName`, each with its jobs counted by status. */
export async function listQueues(
  db: DbOrTx,
  teamId: TeamId,
  afterName: string | undefined,
  limit: number,
): Promise<Array<{ name: string } & StatusCounts>> {
  const result = await db.execute(sql`
    select queue, ${countColumns}
    from queue_jobs
    where team_id = ${teamId} ${afterName !== undefined ? sql`and queue > ${afterName}` : sql``}
    group by queue
    order by queue
    limit ${limit}`);
  return (result as { rows: Record<string, unknown>[] }).rows.map((r) => ({
    name: r.queue as string,
    ...counts(r),
  }));
}

export interface QueueFigures extends StatusCounts {
  due: number;
  oldestDueAt: Date | null;
  completedSince: number;
  failedSince: number;
}

/** One queue's counts, its due jobs and the oldest, and what ended since `since`. */
export async function queueFigures(
  db: DbOrTx,
  teamId: TeamId,
  queue: string,
  now: Date,
  since: Date,
): Promise<QueueFigures> {
  const result = await db.execute(sql`
    select ${countColumns},
      count(*) filter (where status = 'queued' and run_at <= ${iso(now)}::timestamptz)::int as due,
      min(run_at) filter (where status = 'queued' and run_at <= ${iso(now)}::timestamptz) as oldest_due_at,
      count(*) filter (where status = 'completed' and ended_at >= ${iso(since)}::timestamptz)::int as completed_since,
      count(*) filter (where status = 'failed' and ended_at >= ${iso(since)}::timestamptz)::int as failed_since
    from queue_jobs
    where team_id = ${teamId} and queue = ${queue}`);
  const r = (result as { rows: Record<string, unknown>[] }).rows[0] ?? {};
  return {
    ...counts(r),
    due: Number(r.due ?? 0),
    oldestDueAt: r.oldest_due_at ? new Date(r.oldest_due_at as string) : null,
    completedSince: Number(r.completed_since ?? 0),
    failedSince: Number(r.failed_since ?? 0),
  };
}

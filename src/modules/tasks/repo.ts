import { and, asc, eq, gte, inArray, isNull, lt, lte, sql, type WithSubquery } from 'drizzle-orm';
import type { Id, RunId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { eqIfGiven } from '../../db/query-parts.ts';
import { type TaskStatus, type taskEvents, taskFiles, tasks } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';

export type TaskId = Id<'task'>;
export type TaskRow = typeof tasks.$inferSelect;
export type TaskEventRow = typeof taskEvents.$inferSelect;
export type TaskFileRow = typeof taskFiles.$inferSelect;
export type TaskPatch = Partial<Omit<TaskRow, 'id' | 'teamId' | 'createdAt' | 'eventSeq'>>;

/** The statuses a task ends in: nothing changes it after one of them. */
export const FINAL_STATUSES = ['completed', 'failed', 'cancelled'] as const satisfies readonly TaskStatus[];
/** The statuses of a task a worker holds. */
export const HELD_STATUSES = ['running', 'awaiting_approval'] as const satisfies readonly TaskStatus[];

/** A new task, with its outbox rows written by the same statement (EventsService.alongside). */
export function insertTask(
  db: DbOrTx,
  row: typeof tasks.$inferInsert,
  recorded: WithSubquery[],
): Promise<TaskRow> {
  return insertOne(db, tasks, row, recorded);
}

export function findTask(db: DbOrTx, teamId: TeamId, id: TaskId): Promise<TaskRow | undefined> {
  return findInTeam(db, tasks, teamId, id);
}

export interface TaskFilter {
  agentId?: string;
  status?: TaskStatus;
  createdAfter?: Date;
  createdBefore?: Date;
}

export function listTasks(
  db: DbOrTx,
  teamId: TeamId,
  f: TaskFilter,
  beforeId: string | undefined,
  limit: number,
) {
  const matching = and(
    eqIfGiven(tasks.agentId, f.agentId),
    eqIfGiven(tasks.status, f.status),
    f.createdAfter !== undefined ? gte(tasks.createdAt, f.createdAfter) : undefined,
    f.createdBefore !== undefined ? lte(tasks.createdAt, f.createdBefore) : undefined,
  );
  return pageInTeam(db, tasks, teamId, beforeId, limit, matching);
}

/** Serialises claims of the agent's tasks (its concurrency limit), until the transaction ends. */
export async function lockAgentTasks(tx: DbOrTx, teamId: TeamId, agentId: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tasks:${teamId}:${agentId}`}))`);
}

/** The totals of an attempt whose task already ended (a cancel): written whatever its status. */
export async function updateTotals(
  db: DbOrTx,
  teamId: TeamId,
  id: TaskId,
  attempt: number,
  patch: Pick<TaskPatch, 'turns' | 'inputTokens' | 'outputTokens' | 'costMicros' | 'sandboxMs' | 'updatedAt'>,
): Promise<void> {
  await db
    .update(tasks)
    .set(patch)
    .where(and(eq(tasks.teamId, teamId), eq(tasks.id, id), eq(tasks.attempt, attempt)));
}

/** Serialises claims of the team's tasks (its max_concurrent_tasks), taken after the agent's lock. */
export async function lockTeamTasks(tx: DbOrTx, teamId: TeamId): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tasks:${teamId}`}))`);
}

/** How many of the team's tasks are held now, over all its agents (its max_concurrent_tasks counts them). */
export async function countHeldOfTeam(db: DbOrTx, teamId: TeamId): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(tasks)
    .where(and(eq(tasks.teamId, teamId), inArray(tasks.status, HELD_STATUSES)));
  return row?.n ?? 0;
}

/** How many of the agent's tasks a worker holds now (its concurrency limit counts them). */
export async function countHeldOfAgent(db: DbOrTx, teamId: TeamId, agentId: string): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(tasks)
    .where(and(eq(tasks.teamId, teamId), eq(tasks.agentId, agentId), inArray(tasks.status, HELD_STATUSES)));
  return row?.n ?? 0;
}

/**
 * Changes a task that is not finished yet (and, with `onlyIf`, is as that
 * says): the row after the change, or undefined when it had ended (or did not
 * match). Every write after submission goes through here, so an ended task
 * stays as it ended.
 */
export function updateUnfinished(
  db: DbOrTx,
  teamId: TeamId,
  id: TaskId,
  patch: TaskPatch,
  onlyIf?: { statuses?: readonly TaskStatus[]; attempt?: number; silentSince?: Date },
): Promise<TaskRow | undefined> {
  return updateOne(
    db,
    tasks,
    and(
      eq(tasks.teamId, teamId),
      eq(tasks.id, id),
      inArray(tasks.status, onlyIf?.statuses ?? ['queued', ...HELD_STATUSES]),
      onlyIf?.attempt !== undefined ? eq(tasks.attempt, onlyIf.attempt) : undefined,
      onlyIf?.silentSince !== undefined ? lt(tasks.heartbeatAt, onlyIf.silentSince) : undefined,
    ),
    patch,
  );
}

/**
 * A worker takes the task: queued → running, its attempt counted. Undefined
 * when it is not queued (cancelled, or taken by another worker), or, with
 * `agentLimit`, when its agent already holds that many tasks (counted in the
 * same statement: countHeldOfAgent tells the two apart).
 */
export function claimTask(
  db: DbOrTx,
  teamId: TeamId,
  id: TaskId,
  now: Date,
  runId: RunId | null,
  agentLimit?: { agentId: string; limit: number },
): Promise<TaskRow | undefined> {
  const where = and(
    eq(tasks.teamId, teamId),
    eq(tasks.id, id),
    eq(tasks.status, 'queued'),
    agentLimit
      ? sql`(select count(*) from tasks held where held.team_id = ${teamId} and held.agent_id = ${agentLimit.agentId}
          and held.status in ${HELD_STATUSES}) < ${agentLimit.limit}`
      : undefined,
  );
  return updateOne(db, tasks, where, {
    status: 'running',
    runId: sql`coalesce(${tasks.runId}, ${runId})`,
    attempt: sql`${tasks.attempt} + 1`,
    heartbeatAt: now,
    startedAt: sql`coalesce(${tasks.startedAt}, ${now.toISOString()}::timestamptz)`,
    updatedAt: now,
  });
}

/** The worker of this attempt is alive: its heartbeat. False when the task is no longer its own. */
export async function beat(
  db: DbOrTx,
  teamId: TeamId,
  id: TaskId,
  attempt: number,
  now: Date,
): Promise<boolean> {
  const row = await updateUnfinished(
    db,
    teamId,
    id,
    { heartbeatAt: now },
    { statuses: HELD_STATUSES, attempt },
  );
  return row !== undefined;
}

/** System-only: tasks whose worker stopped beating before `before` (the sweep's); a queue's tasks follow their job instead. */
export function systemStaleTasks(db: DbOrTx, before: Date, limit: number): Promise<TaskRow[]> {
  return db
    .select()
    .from(tasks)
    .where(
      and(inArray(tasks.status, HELD_STATUSES), lt(tasks.heartbeatAt, before), isNull(tasks.runnerQueue)),
    )
    .orderBy(asc(tasks.heartbeatAt))
    .limit(limit);
}

/** System-only: queued tasks last touched before `before` (their job may have been lost: sent again). */
export function systemQueuedBefore(db: DbOrTx, before: Date, limit: number): Promise<TaskRow[]> {
  return db
    .select()
    .from(tasks)
    .where(and(eq(tasks.status, 'queued'), lt(tasks.updatedAt, before), isNull(tasks.runnerQueue)))
    .orderBy(asc(tasks.updatedAt))
    .limit(limit);
}

export async function insertTaskFile(db: DbOrTx, row: typeof taskFiles.$inferInsert): Promise<void> {
  await db.insert(taskFiles).values(row);
}

export function listTaskFiles(db: DbOrTx, teamId: TeamId, taskId: TaskId, kind: TaskFileRow['kind']) {
  return db
    .select()
    .from(taskFiles)
    .where(and(eq(taskFiles.teamId, teamId), eq(taskFiles.taskId, taskId), eq(taskFiles.kind, kind)))
    .orderBy(asc(taskFiles.path));
}

export async function findTaskFile(
  db: DbOrTx,
  teamId: TeamId,
  taskId: TaskId,
  fileId: string,
): Promise<TaskFileRow | undefined> {
  const [row] = await db
    .select()
    .from(taskFiles)
    .where(
      and(
        eq(taskFiles.teamId, teamId),
        eq(taskFiles.taskId, taskId),
        eq(taskFiles.fileId, fileId as Id<'file'>),
      ),
    );
  return row;
}

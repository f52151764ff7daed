import { and, asc, eq, gt, sql } from 'drizzle-orm';
import { type Id, idFloorAt, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { type TaskStatus, taskEvents, workspaceEvents } from '../../db/schema/index.ts';
import type { TaskId } from './repo.ts';

// The two event logs' statements (a task's own, and a workspace's, whose
// events name their turn's task): appends numbered in one statement, the
// reads that followers page through (event-log.ts), and the retention's
// delete.

export interface NewEvent {
  type: string;
  payload: Record<string, unknown>;
}

/** An event of either log (a task's own, or a workspace's, whose events name their turn's task). */
export interface LogEventRow {
  seq: number;
  teamId: TeamId;
  /** The task that wrote it (a workspace's own events: null). */
  taskId: string | null;
  type: string;
  payload: Record<string, unknown>;
  createdAt: Date;
}

/**
 * Appends events to the task's log in one statement: the task row hands out
 * the next numbers (its lock orders concurrent writers), the events take
 * them in order. Answers the rows as stored.
 */
interface StoredEvent {
  seq: number;
  team_id: TeamId;
  task_id: string | null;
  type: string;
  payload: Record<string, unknown>;
  created_at: string | Date;
}

function storedRows(result: unknown): LogEventRow[] {
  return (result as { rows: StoredEvent[] }).rows
    .map((r) => ({
      seq: Number(r.seq),
      teamId: r.team_id,
      taskId: r.task_id,
      type: r.type,
      payload: r.payload,
      createdAt: new Date(r.created_at),
    }))
    .sort((a, b) => a.seq - b.seq);
}

const recordset = (events: readonly NewEvent[]) =>
  JSON.stringify(events.map((e, i) => ({ i: i + 1, type: e.type, payload: e.payload })));

/**
 * The end both appends share: the events, numbered on from the counter the
 * statement's `numbered` step moved forward, inserted in order and answered
 * as stored.
 */
const numberedEvents = (events: readonly NewEvent[]) => sql`
    from numbered, jsonb_to_recordset(${recordset(events)}::jsonb) as e(i int, type text, payload jsonb)
    order by e.i
    returning task_id, seq, team_id, type, payload, created_at`;

export async function appendEvents(
  db: DbOrTx,
  teamId: TeamId,
  taskId: TaskId,
  events: readonly NewEvent[],
  at: Date,
  /** Only while this attempt holds the task (running or awaiting approval). */
  onlyFor?: { attempt: number },
): Promise<LogEventRow[]> {
  if (events.length === 0) return [];
  const result = await db.execute(sql`
    with numbered as (
      update tasks set event_seq = event_seq + ${events.length}
      where team_id = ${teamId} and id = ${taskId}
        and (${onlyFor === undefined}::boolean
          or (attempt = ${onlyFor?.attempt ?? 0} and status in ('running', 'awaiting_approval')))
      returning event_seq
    )
    insert into task_events (task_id, seq, team_id, type, payload, created_at)
    select ${taskId}, numbered.event_seq - ${events.length} + e.i, ${teamId}, e.type, e.payload, ${at.toISOString()}::timestamptz
    ${numberedEvents(events)}`);
  return storedRows(result);
}

/**
 * Appends events to a workspace's log, the workspace row handing out the
 * numbers. A turn's events name its task and are written only while that
 * task exists (and, with `onlyFor`, while this attempt holds it: the task
 * row is locked for the statement, as the task log's own append does).
 */
export async function appendWorkspaceEvents(
  db: DbOrTx,
  teamId: TeamId,
  workspaceId: string,
  taskId: TaskId | null,
  events: readonly NewEvent[],
  at: Date,
  onlyFor?: { attempt: number },
  /** The first `ownAhead` events are the workspace's own: tagged with no task. */
  ownAhead = 0,
): Promise<LogEventRow[]> {
  if (events.length === 0) return [];
  const result = await db.execute(sql`
    with held as (
      select 1 from tasks
      where team_id = ${teamId} and id = ${taskId} and workspace_id = ${workspaceId}
        and (${onlyFor === undefined}::boolean
          or (attempt = ${onlyFor?.attempt ?? 0} and status in ('running', 'awaiting_approval')))
      for update
    ), numbered as (
      update workspaces set event_seq = event_seq + ${events.length}
      where team_id = ${teamId} and id = ${workspaceId}
        and (${taskId === null}::boolean or exists (select 1 from held))
      returning event_seq
    )
    insert into workspace_events (workspace_id, seq, team_id, task_id, type, payload, created_at)
    select ${workspaceId}, numbered.event_seq - ${events.length} + e.i, ${teamId},
      case when e.i > ${ownAhead}::int then ${taskId}::text end, e.type, e.payload, ${at.toISOString()}::timestamptz
    ${numberedEvents(events)}`);
  return storedRows(result);
}

export async function eventsAfter(
  db: DbOrTx,
  teamId: TeamId,
  taskId: TaskId,
  afterSeq: number,
  limit: number,
): Promise<LogEventRow[]> {
  return db
    .select()
    .from(taskEvents)
    .where(and(eq(taskEvents.teamId, teamId), eq(taskEvents.taskId, taskId), gt(taskEvents.seq, afterSeq)))
    .orderBy(asc(taskEvents.seq))
    .limit(limit);
}

/** The reason on the status event of a task a stopping worker gave back. */
export const RELEASED_REASON = 'worker_stopped';
type LogOwnerRef = { id: TaskId; workspaceId: string | null };

/**
 * Attempts of the task that a stopping worker gave back (its `status` events
 * with reason `worker_stopped`): they are not lost ones, so they do not count
 * toward the runner's limit.
 */
export async function countReleases(db: DbOrTx, teamId: TeamId, task: LogOwnerRef): Promise<number> {
  const [row] = task.workspaceId
    ? await db
        .select({ n: sql<number>`count(*)::int` })
        .from(workspaceEvents)
        .where(
          and(
            eq(workspaceEvents.teamId, teamId),
            eq(workspaceEvents.workspaceId, task.workspaceId as Id<'ws'>),
            eq(workspaceEvents.taskId, task.id),
            eq(workspaceEvents.type, 'status'),
            sql`${workspaceEvents.payload}->>'reason' = ${RELEASED_REASON}`,
          ),
        )
    : await db
        .select({ n: sql<number>`count(*)::int` })
        .from(taskEvents)
        .where(
          and(
            eq(taskEvents.teamId, teamId),
            eq(taskEvents.taskId, task.id),
            eq(taskEvents.type, 'status'),
            sql`${taskEvents.payload}->>'reason' = ${RELEASED_REASON}`,
          ),
        );
  return row?.n ?? 0;
}

/** A workspace's events after `afterSeq`; with `taskId`, only that turn's. */
export async function workspaceEventsAfter(
  db: DbOrTx,
  teamId: TeamId,
  workspaceId: string,
  taskId: string | undefined,
  afterSeq: number,
  limit: number,
): Promise<LogEventRow[]> {
  return db
    .select({
      seq: workspaceEvents.seq,
      teamId: workspaceEvents.teamId,
      taskId: workspaceEvents.taskId,
      type: workspaceEvents.type,
      payload: workspaceEvents.payload,
      createdAt: workspaceEvents.createdAt,
    })
    .from(workspaceEvents)
    .where(
      and(
        eq(workspaceEvents.teamId, teamId),
        eq(workspaceEvents.workspaceId, workspaceId as Id<'ws'>),
        taskId !== undefined ? eq(workspaceEvents.taskId, taskId as TaskId) : undefined,
        gt(workspaceEvents.seq, afterSeq),
      ),
    )
    .orderBy(asc(workspaceEvents.seq))
    .limit(limit);
}

/**
 * A turn's events in its workspace's log after `afterSeq`, with the log's
 * head (the workspace's last seq) read in the same statement: when fewer
 * than `limit` rows come, every event up to the head that is not among them
 * belongs to another turn or to the workspace, so a follower knows where the
 * log stood without reading the other turns' events. And the turn's status,
 * as of the same read.
 */
export async function turnEventsAfter(
  db: DbOrTx,
  teamId: TeamId,
  workspaceId: string,
  taskId: TaskId,
  afterSeq: number,
  limit: number,
): Promise<{ rows: LogEventRow[]; head: number; status: TaskStatus | undefined }> {
  const result = await db.execute(sql`
    select w.event_seq as head,
      (select status from tasks t where t.team_id = ${teamId} and t.id = ${taskId}) as task_status,
      e.seq, e.team_id, e.task_id, e.type, e.payload, e.created_at
    from workspaces w
    left join (
      select seq, team_id, task_id, type, payload, created_at from workspace_events
      where team_id = ${teamId} and workspace_id = ${workspaceId} and task_id = ${taskId} and seq > ${afterSeq}
      order by seq
      limit ${limit}
    ) e on true
    where w.team_id = ${teamId} and w.id = ${workspaceId}`);
  const found = (
    result as unknown as {
      rows: Array<StoredEvent & { head: number | string; task_status: TaskStatus | null }>;
    }
  ).rows;
  return {
    rows: storedRows({ rows: found.filter((r) => r.seq !== null) }),
    head: found.length > 0 ? Number(found[0]?.head) : afterSeq,
    status: found[0]?.task_status ?? undefined,
  };
}

const deletedCount = (result: unknown) =>
  Number((result as { rows: Array<{ n: number | string }> }).rows[0]?.n ?? 0);

/**
 * The retention's statement (PADDOCK_TASK_EVENT_RETENTION_DAYS), for every
 * team: deletes up to `batch` events of tasks that finished before `cutoff`,
 * then of workspace turns that did (and a workspace's own events made before
 * it). A task still running keeps its log whatever its age. Ids sort by the
 * time they were made, so each statement walks only the primary key's range
 * of logs begun before the cutoff. Answers how many events went.
 */
export async function systemDeleteEventLogsBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  const at = cutoff.toISOString();
  const tasks = deletedCount(
    await db.execute(sql`
      with doomed as (
        select e.task_id, e.seq from task_events e join tasks t on t.id = e.task_id
        where e.task_id < ${idFloorAt('task', cutoff.getTime())} and t.finished_at < ${at}::timestamptz
        order by e.task_id, e.seq
        limit ${batch}
      ), gone as (
        delete from task_events e using doomed d where e.task_id = d.task_id and e.seq = d.seq returning 1
      )
      select count(*)::int as n from gone`),
  );
  if (tasks >= batch) return tasks;
  const workspaces = deletedCount(
    await db.execute(sql`
      with doomed as (
        select e.workspace_id, e.seq from workspace_events e left join tasks t on t.id = e.task_id
        where e.workspace_id < ${idFloorAt('ws', cutoff.getTime())} and e.created_at < ${at}::timestamptz
          and (e.task_id is null or t.finished_at < ${at}::timestamptz)
        order by e.workspace_id, e.seq
        limit ${batch - tasks}
      ), gone as (
        delete from workspace_events e using doomed d
        where e.workspace_id = d.workspace_id and e.seq = d.seq returning 1
      )
      select count(*)::int as n from gone`),
  );
  return tasks + workspaces;
}

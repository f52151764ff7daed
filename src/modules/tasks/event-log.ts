import type { Context } from '../../core/context.ts';
import type { TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import * as logRepo from './event-log-repo.ts';
import * as repo from './repo.ts';
import type { WorkspaceEvents } from './sessions.ts';

/** How often a follower asks the database when nothing was appended in this process (another server may be). */
const FOLLOW_POLL_MS = 1000;
const FOLLOW_PAGE = 200;

export type TaskEventType =
  | 'status'
  | 'capsule'
  | 'model_call'
  | 'text'
  /** Stream mode: a piece of the model's text as it arrives (the whole text is a `text` event after). */
  | 'text_delta'
  | 'tool_call'
  | 'tool_result'
  | 'approval'
  | 'output_files'
  | 'delegation'
  /** A memory the model saved (memory_save): its id, never its content. */
  | 'memory'
  | 'conversation';

/**
 * Which log a task writes to: its own, or (a session task, a turn of a
 * workspace) the workspace's one log, each event tagged with the task.
 */
export interface LogOwner {
  id: repo.TaskId;
  workspaceId: string | null;
}

type NewEvents = ReadonlyArray<{ type: string; payload: Record<string, unknown> }>;

/**
 * What a follower is told when a log it follows grew: the rows an append in
 * this process committed, or nothing (a transaction's appends, committed
 * since), which sends it to the database.
 */
type Listener = (rows?: readonly logRepo.LogEventRow[]) => void;

/** A page of a log as a follower reads it, and how far the log was read whole. */
interface FollowedPage {
  rows: logRepo.LogEventRow[];
  /** No event up to here is missing for this follower: those not in `rows` are not its own. */
  head: number;
  /** Whether the log's owner had ended, as of the same read (when the read tells; else `ended` is asked). */
  ended?: boolean;
}

/**
 * The event logs of tasks and workspaces: appends (numbered by the task's or
 * the workspace's row), reads after a seq, and followers that are handed
 * what an append in this process committed, and read the database otherwise
 * (a transaction's appends, a gap, and a poll for other servers' appends), so
 * a stream follows a log whichever server writes it. A session task's events
 * live in its workspace's log; reading the task's events reads that log
 * filtered to it.
 */
export class TaskEventLog {
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
  ) {}

  async append(
    db: DbOrTx,
    teamId: TeamId,
    task: LogOwner,
    events: ReadonlyArray<{ type: TaskEventType; payload: Record<string, unknown> }>,
    /** Only while the task is held by this attempt (a worker's own events); none are written otherwise. */
    onlyFor?: { attempt: number },
    /** The workspace's own events, written first in the same statement (a turn's begin: NextTurn). */
    ahead: WorkspaceEvents = [],
  ): Promise<logRepo.LogEventRow[]> {
    const now = this.ctx.clock.now();
    if (ahead.length > 0 && !task.workspaceId) throw new Error(`task ${task.id} has no workspace to log for`);
    const rows = task.workspaceId
      ? await logRepo.appendWorkspaceEvents(
          db,
          teamId,
          task.workspaceId,
          task.id,
          storable([...ahead, ...events]),
          now,
          onlyFor,
          ahead.length,
        )
      : await logRepo.appendEvents(db, teamId, task.id, storable(events), now, onlyFor);
    // Inside a transaction the rows are not visible yet: its caller wakes the followers after the commit.
    if (db === this.db && rows.length > 0) this.handOver(task.workspaceId ?? task.id, rows);
    return rows;
  }

  /** The workspace's own events (its status changes), tagged with no task. */
  async appendToWorkspace(db: DbOrTx, teamId: TeamId, workspaceId: string, events: NewEvents) {
    const rows = await logRepo.appendWorkspaceEvents(
      db,
      teamId,
      workspaceId,
      null,
      storable(events),
      this.ctx.clock.now(),
    );
    if (db === this.db && rows.length > 0) this.handOver(workspaceId, rows);
    return rows;
  }

  /**
   * Wakes the followers of a log after a commit that appended to it (a
   * task's, or its workspace's, which holds its events): they read what it
   * added from the database.
   */
  wake(owner: LogOwner | string): void {
    const key = typeof owner === 'string' ? owner : (owner.workspaceId ?? owner.id);
    for (const l of this.listeners.get(key) ?? []) l();
  }

  /** Gives the rows an append just committed to the log's followers in this process. */
  private handOver(key: string, rows: readonly logRepo.LogEventRow[]): void {
    for (const l of this.listeners.get(key) ?? []) l(rows);
  }

  read(teamId: TeamId, task: LogOwner, afterSeq: number, limit: number) {
    return task.workspaceId
      ? logRepo.workspaceEventsAfter(this.db, teamId, task.workspaceId, task.id, afterSeq, limit)
      : logRepo.eventsAfter(this.db, teamId, task.id, afterSeq, limit);
  }

  readWorkspace(teamId: TeamId, workspaceId: string, afterSeq: number, limit: number) {
    return logRepo.workspaceEventsAfter(this.db, teamId, workspaceId, undefined, afterSeq, limit);
  }

  /** A task's events as they come (follow), until it has ended. */
  followTask(
    teamId: TeamId,
    task: LogOwner,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ) {
    const workspaceId = task.workspaceId;
    if (workspaceId === null)
      return this.follow(
        task.id,
        async (seq, n) => wholePage(await logRepo.eventsAfter(this.db, teamId, task.id, seq, n), seq),
        () => true,
        afterSeq,
        ended,
        signal,
      );
    // A turn's events are among its workspace's: the follower is handed the whole log's appends and
    // keeps its own. Its read tells whether the turn has ended, so `ended` is not asked after it.
    return this.follow(
      workspaceId,
      async (seq, n) => {
        const page = await logRepo.turnEventsAfter(this.db, teamId, workspaceId, task.id, seq, n);
        return {
          ...page,
          ended: page.status === undefined || repo.FINAL_STATUSES.includes(page.status as never),
        };
      },
      (row) => row.taskId === task.id,
      afterSeq,
      ended,
      signal,
    );
  }

  /** A workspace's events as they come (follow), until `ended` (it expired or was terminated). */
  followWorkspace(
    teamId: TeamId,
    workspaceId: string,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ) {
    return this.follow(
      workspaceId,
      async (seq, n) => wholePage(await this.readWorkspace(teamId, workspaceId, seq, n), seq),
      () => true,
      afterSeq,
      ended,
      signal,
    );
  }

  /**
   * Every event after `afterSeq` that is `own`, as they come, until the log
   * is complete and its last event was given, or `signal` aborts. `ended`
   * reads whether the log's owner has ended (then the log is complete).
   *
   * Rows handed over by an append are given without a read when they carry
   * on exactly where the log was known whole (`head`): appends to one log
   * take their numbers under its row's lock, so nothing can commit in
   * between. Anything else (a gap, a wake with no rows, a poll) is read from
   * the database, and handed rows the read covered are dropped, so each
   * event is given once.
   */
  private async *follow(
    key: string,
    read: (afterSeq: number, limit: number) => Promise<FollowedPage>,
    own: (row: logRepo.LogEventRow) => boolean,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ): AsyncGenerator<logRepo.LogEventRow> {
    let seq = afterSeq;
    let head = afterSeq;
    const handed: logRepo.LogEventRow[] = [];
    let mustRead = true;
    let wake: (() => void) | undefined;
    const listener: Listener = (rows) => {
      // A follower whose client is behind holds no more than a page: the database has the rest.
      if (rows === undefined || handed.length + rows.length > FOLLOW_PAGE) {
        mustRead = true;
        handed.length = 0;
      } else handed.push(...rows);
      wake?.();
    };
    const set = this.listeners.get(key) ?? new Set<Listener>();
    this.listeners.set(key, set);
    set.add(listener);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      // Whether the log has ended is asked only when it was read to its end, and an end seen
      // then is followed by one more read, which holds the last events. An end is committed in
      // a transaction, whose wake sends the follower here, so handed rows need no such check.
      let done = false;
      while (!signal.aborted) {
        if (mustRead) {
          mustRead = false;
          const page = await read(seq, FOLLOW_PAGE);
          for (const r of page.rows) {
            seq = r.seq;
            yield r;
          }
          head = Math.max(head, page.head);
          if (page.rows.length === FOLLOW_PAGE) {
            mustRead = true;
            continue;
          }
          if (done) return;
          if (mustRead || handed.length > 0) continue;
          done = page.ended ?? (await ended());
          if (done) mustRead = true;
          continue;
        }
        const next = handed.shift();
        if (next !== undefined) {
          if (next.seq <= head) continue;
          if (next.seq !== head + 1) {
            mustRead = true;
            handed.length = 0;
            continue;
          }
          head = next.seq;
          if (own(next)) {
            seq = next.seq;
            yield next;
          }
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = this.ctx.timers.after(FOLLOW_POLL_MS, () => {
            mustRead = true;
            resolve();
          });
          wake = () => {
            timer.cancel();
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(key);
    }
  }
}

/** A page of a log read whole (no filter): it was read up to its last row, or nothing was there after `afterSeq`. */
function wholePage(rows: logRepo.LogEventRow[], afterSeq: number): FollowedPage {
  return { rows, head: rows.at(-1)?.seq ?? afterSeq };
}

// Tool output may hold NUL or half a surrogate pair (a cut emoji), which jsonb refuses.
function storable(events: NewEvents): logRepo.NewEvent[] {
  return events.map((e) => ({ type: e.type, payload: storableText(e.payload) }));
}

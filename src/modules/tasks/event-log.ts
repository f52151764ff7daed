import type { Context } from '../../core/context.ts';
import type { TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import * as repo from './repo.ts';

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
 * The event logs of tasks and workspaces: appends (numbered by the task's or
 * the workspace's row), reads after a seq, and followers that wake at once on
 * an append in this process and poll otherwise, so a stream follows a log
 * whichever server writes it. A session task's events live in its
 * workspace's log; reading the task's events reads that log filtered to it.
 */
export class TaskEventLog {
  private readonly listeners = new Map<string, Set<() => void>>();

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
  ): Promise<repo.LogEventRow[]> {
    const now = this.ctx.clock.now();
    const rows = task.workspaceId
      ? await repo.appendWorkspaceEvents(
          db,
          teamId,
          task.workspaceId,
          task.id,
          storable(events),
          now,
          onlyFor,
        )
      : await repo.appendEvents(db, teamId, task.id, storable(events), now, onlyFor);
    // Inside a transaction the rows are not visible yet: its caller wakes the followers after the commit.
    if (db === this.db) this.wake(task);
    return rows;
  }

  /** The workspace's own events (its status changes), tagged with no task. */
  async appendToWorkspace(db: DbOrTx, teamId: TeamId, workspaceId: string, events: NewEvents) {
    const rows = await repo.appendWorkspaceEvents(
      db,
      teamId,
      workspaceId,
      null,
      storable(events),
      this.ctx.clock.now(),
    );
    if (db === this.db) this.wake(workspaceId);
    return rows;
  }

  /** Wakes the followers of a log (after a commit that appended to it): a task's, and its workspace's. */
  wake(owner: LogOwner | string): void {
    const keys = typeof owner === 'string' ? [owner] : [owner.id, owner.workspaceId];
    for (const key of keys) for (const l of key ? (this.listeners.get(key) ?? []) : []) l();
  }

  read(teamId: TeamId, task: LogOwner, afterSeq: number, limit: number) {
    return task.workspaceId
      ? repo.workspaceEventsAfter(this.db, teamId, task.workspaceId, task.id, afterSeq, limit)
      : repo.eventsAfter(this.db, teamId, task.id, afterSeq, limit);
  }

  readWorkspace(teamId: TeamId, workspaceId: string, afterSeq: number, limit: number) {
    return repo.workspaceEventsAfter(this.db, teamId, workspaceId, undefined, afterSeq, limit);
  }

  /** A task's events as they come (follow), until it has ended. */
  followTask(
    teamId: TeamId,
    task: LogOwner,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ) {
    return this.follow(task.id, (seq, n) => this.read(teamId, task, seq, n), afterSeq, ended, signal);
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
      (seq, n) => this.readWorkspace(teamId, workspaceId, seq, n),
      afterSeq,
      ended,
      signal,
    );
  }

  /**
   * Every event after `afterSeq`, as they come, until the log is complete and
   * its last event was given, or `signal` aborts. `ended` reads whether the
   * log's owner has ended (then the log is complete).
   */
  private async *follow(
    key: string,
    read: (afterSeq: number, limit: number) => Promise<repo.LogEventRow[]>,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ): AsyncGenerator<repo.LogEventRow> {
    let seq = afterSeq;
    let wake: (() => void) | undefined;
    let woken = false;
    const listener = () => {
      woken = true;
      wake?.();
    };
    const set = this.listeners.get(key) ?? new Set<() => void>();
    this.listeners.set(key, set);
    set.add(listener);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      // The events are read first (a woken follower's new event goes out without waiting for a
      // second query); whether the log has ended is asked only when it was read to its end, and
      // an end seen then is followed by one more read, which holds the last events.
      let done = false;
      while (!signal.aborted) {
        woken = false;
        const rows = await read(seq, FOLLOW_PAGE);
        for (const r of rows) {
          seq = r.seq;
          yield r;
        }
        if (rows.length === FOLLOW_PAGE) continue;
        if (done) return;
        if (woken) continue;
        done = await ended();
        if (done || woken) continue;
        await new Promise<void>((resolve) => {
          const timer = this.ctx.timers.after(FOLLOW_POLL_MS, resolve);
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

// Tool output may hold NUL or half a surrogate pair (a cut emoji), which jsonb refuses.
function storable(events: NewEvents): repo.NewEvent[] {
  return events.map((e) => ({ type: e.type, payload: storableText(e.payload) }));
}

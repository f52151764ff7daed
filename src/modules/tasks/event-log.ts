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
  | 'memory';

/**
 * A task's event log: appends (numbered by the task row), reads after a seq,
 * and followers that wake at once on an append in this process and poll
 * otherwise, so a stream follows a task whichever server runs it.
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
    taskId: repo.TaskId,
    events: ReadonlyArray<{ type: TaskEventType; payload: Record<string, unknown> }>,
    /** Only while the task is held by this attempt (a worker's own events); none are written otherwise. */
    onlyFor?: { attempt: number },
  ): Promise<repo.TaskEventRow[]> {
    // Tool output may hold NUL or half a surrogate pair (a cut emoji), which jsonb refuses.
    const storable = events.map((e) => ({ type: e.type, payload: storableText(e.payload) }));
    const rows = await repo.appendEvents(db, teamId, taskId, storable, this.ctx.clock.now(), onlyFor);
    // Inside a transaction the rows are not visible yet: its caller wakes the followers after the commit.
    if (db === this.db) this.wake(taskId);
    return rows;
  }

  /** Wakes the followers of a task (after a commit that appended to it). */
  wake(taskId: string): void {
    for (const l of this.listeners.get(taskId) ?? []) l();
  }

  read(teamId: TeamId, taskId: repo.TaskId, afterSeq: number, limit: number) {
    return repo.eventsAfter(this.db, teamId, taskId, afterSeq, limit);
  }

  /**
   * Every event after `afterSeq`, as they come, until the task has ended and
   * its last event was given, or `signal` aborts. `ended` reads whether the
   * task has ended (then the log is complete).
   */
  async *follow(
    teamId: TeamId,
    taskId: repo.TaskId,
    afterSeq: number,
    ended: () => Promise<boolean>,
    signal: AbortSignal,
  ): AsyncGenerator<repo.TaskEventRow> {
    let seq = afterSeq;
    let wake: (() => void) | undefined;
    let woken = false;
    const listener = () => {
      woken = true;
      wake?.();
    };
    const set = this.listeners.get(taskId) ?? new Set<() => void>();
    this.listeners.set(taskId, set);
    set.add(listener);
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        woken = false;
        // Whether it had ended is read before the events: an end seen here has its last event in the read.
        const done = await ended();
        const rows = await this.read(teamId, taskId, seq, FOLLOW_PAGE);
        for (const r of rows) {
          seq = r.seq;
          yield r;
        }
        if (rows.length === FOLLOW_PAGE) continue;
        if (done) return;
        if (woken) continue;
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
      if (set.size === 0) this.listeners.delete(taskId);
    }
  }
}

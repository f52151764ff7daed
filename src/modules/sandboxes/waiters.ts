import type { Timers } from '../../core/context.ts';
import type { CapsuleId } from '../../core/ids.ts';

/**
 * Callers waiting for a capsule's status to change on this server (GET
 * …?wait_for=): the state machine wakes them on each move; a wait also ends
 * after its time (on the context's timers), or at once when the server stops.
 */
export class StatusWaiters {
  private readonly waiting = new Map<CapsuleId, Set<() => void>>();
  private stopped = false;

  constructor(private readonly timers: Timers) {}

  /** True once the server is stopping: long polls answer with what they have. */
  get closing(): boolean {
    return this.stopped;
  }

  wake(id: CapsuleId): void {
    const set = this.waiting.get(id);
    if (!set) return;
    this.waiting.delete(id);
    for (const w of set) w();
  }

  /** Resolves at the next status change of this capsule on this server, or after `ms`. */
  changed(id: CapsuleId, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiting.get(id) ?? new Set();
      this.waiting.set(id, set);
      const done = () => {
        timer.cancel();
        set.delete(done);
        if (set.size === 0 && this.waiting.get(id) === set) this.waiting.delete(id);
        resolve();
      };
      const timer = this.timers.after(ms, done);
      set.add(done);
    });
  }

  /** Every wait answers now, and later ones at once. */
  stop(): void {
    this.stopped = true;
    for (const id of [...this.waiting.keys()]) this.wake(id);
  }
}

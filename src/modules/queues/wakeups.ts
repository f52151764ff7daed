import type { Context } from '../../core/context.ts';
import type { TeamId } from '../../core/ids.ts';

type Waiter = () => void;

/**
 * Long polls' wake-ups on this server: a submit (or a job put back by the
 * sweep) wakes the claims waiting on its queue at once. Other servers'
 * submits are found by the poll, every `pollIntervalMs`.
 */
export class QueueWakeups {
  private readonly waiters = new Map<string, Set<Waiter>>();

  constructor(
    private readonly ctx: Context,
    private readonly pollIntervalMs: number,
  ) {}

  private key(teamId: TeamId, queue: string): string {
    return `${teamId}\u0000${queue}`;
  }

  wake(teamId: TeamId, queue: string): void {
    const set = this.waiters.get(this.key(teamId, queue));
    if (!set) return;
    for (const w of [...set]) w();
  }

  /** Resolves at the queue's next wake-up, after the poll interval, or when any of `ends` aborts. */
  wakeOrPoll(teamId: TeamId, queue: string, ends: AbortSignal[]): Promise<void> {
    const key = this.key(teamId, queue);
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (!set) {
        set = new Set();
        this.waiters.set(key, set);
      }
      const waiters = set;
      const done: Waiter = () => {
        timer.cancel();
        waiters.delete(done);
        if (waiters.size === 0 && this.waiters.get(key) === waiters) this.waiters.delete(key);
        for (const s of ends) s.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.ctx.timers.after(this.pollIntervalMs, done);
      waiters.add(done);
      for (const s of ends) s.addEventListener('abort', done, { once: true });
    });
  }
}

import type { Context, Timer } from '../core/context.ts';
import { randomBase62 } from '../core/crypto.ts';
import type { Db } from '../db/client.ts';
import { noteTick, readLease, releaseLease, takeLease } from '../db/leader-lease-repo.ts';

export interface LeaderTickerOptions {
  /** How often every server tries for the lease and the leader works. */
  tickEveryMs: number;
  /** How long a lease lasts without renewal: a leader that dies is replaced after this. */
  leaseMs: number;
}

/**
 * Work that one server at a time does on a schedule (the playbook scheduler,
 * the alert evaluator). Every server ticks; a tick first takes or renews the
 * lease row `name` (a conditional UPDATE: free, expired or already its own),
 * and only the lease's holder calls `work`. The lease is a row rather than
 * pg_try_advisory_lock because a session lock needs a connection held for the
 * leader's life, which a pool and PGlite's one connection do not give; the
 * row works the same on both. A paused process whose lease expired may lead
 * for a moment beside the new leader: `work` must itself be safe to run twice
 * (conditional moves), the lease only makes that rare.
 */
export class LeaderTicker {
  readonly me: string;
  private timer: Timer | undefined;
  private ticking: Promise<void> | undefined;
  private leading = false;
  /** Whether a tick has asked for the lease yet (before it, this server neither leads nor follows). */
  private ticked = false;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly name: string,
    private readonly options: LeaderTickerOptions,
    private readonly work: (now: Date) => Promise<void>,
    private readonly what: string,
  ) {
    this.me = `${name}_${randomBase62(16)}`;
  }

  start(): void {
    this.timer ??= this.ctx.timers.every(this.options.tickEveryMs, () => {
      void this.tick().catch((err: unknown) => this.ctx.log.warn({ err }, `the ${this.what}’s tick failed`));
    });
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    await this.ticking?.catch(() => undefined);
    if (this.leading) await releaseLease(this.db, this.name, this.me).catch(() => undefined);
    this.leading = false;
  }

  /** Whether this server led at its last tick; null before its first (GET /health). */
  get leads(): boolean | null {
    return this.ticked ? this.leading : null;
  }

  /** Resolves once the tick in flight (if any) has ended. */
  async settled(): Promise<void> {
    await this.ticking?.catch(() => undefined);
  }

  /** One tick (one at a time in this process); answers whether this server leads. */
  async tick(): Promise<boolean> {
    if (this.ticking) {
      await this.ticking;
      return this.leading;
    }
    this.ticking = this.tickOnce().finally(() => {
      this.ticking = undefined;
    });
    await this.ticking;
    return this.leading;
  }

  /** Who holds the lease now: whether it is held, by this server, and its last tick. */
  async status(): Promise<{ leader: boolean; leaderElected: boolean; lastTickAt: Date | null }> {
    const now = this.ctx.clock.now();
    const lease = await readLease(this.db, this.name);
    const held = !!lease?.leaderId && !!lease.leaseUntil && lease.leaseUntil > now;
    return {
      leader: held && lease?.leaderId === this.me,
      leaderElected: held,
      lastTickAt: lease?.lastTickAt ?? null,
    };
  }

  private async tickOnce(): Promise<void> {
    const now = this.ctx.clock.now();
    this.leading = await takeLease(
      this.db,
      this.name,
      this.me,
      now,
      new Date(now.getTime() + this.options.leaseMs),
    );
    this.ticked = true;
    if (!this.leading) return;
    await noteTick(this.db, this.name, this.me, now);
    await this.work(now);
  }
}

/**
 * Work a leader does each tick (the playbook scheduler, the alert evaluator):
 * `lead` is the work, and the ticker's start, stop, settled and tick are its own.
 */
export abstract class LeaderWork {
  protected readonly ticker: LeaderTicker;

  constructor(db: Db, ctx: Context, name: string, options: LeaderTickerOptions, what: string) {
    this.ticker = new LeaderTicker(db, ctx, name, options, (now) => this.lead(now), what);
  }

  /** The leader's work at `now` (safe to run twice: see LeaderTicker). */
  protected abstract lead(now: Date): Promise<void>;

  start(): void {
    this.ticker.start();
  }

  stop(): Promise<void> {
    return this.ticker.stop();
  }

  /** Resolves once the tick in flight (if any) has ended. */
  settled(): Promise<void> {
    return this.ticker.settled();
  }

  /** One tick (one at a time in this process); answers whether this server leads. */
  tick(): Promise<boolean> {
    return this.ticker.tick();
  }
}

import { type Clock, ManualClock, systemClock } from './clock.ts';
import type { Metrics } from './metrics.ts';
import { NOOP_TRACER, type Tracer } from './tracing.ts';

/**
 * What every long-lived object is built with: the time, the timers and the
 * log. Nothing in src/ reads Date.now(), calls setTimeout or writes to the
 * console for itself, so a test can hand in a ManualClock and ManualTimers,
 * move time on and watch a sweep, a backoff or a flush happen, with no real
 * sleep and no background work racing the test.
 */
export interface Context {
  clock: Clock;
  timers: Timers;
  log: Log;
  /** The app's own tracer (core/tracing.ts): NOOP_TRACER unless traces are exported. */
  tracer: Tracer;
  /** The server's Prometheus metrics (absent outside a server: `paddock host`, some tests). */
  metrics?: Metrics;
}

/** A scheduled callback; cancel() is safe to call twice or after it ran. */
export interface Timer {
  cancel(): void;
}

/**
 * Timers that never keep the process alive: background work stops with the
 * server, and a request's own socket keeps the process up while it waits.
 */
export interface Timers {
  /** Runs `fn` once, `ms` from now. */
  after(ms: number, fn: () => void): Timer;
  /** Runs `fn` every `ms`, first `ms` from now. */
  every(ms: number, fn: () => void): Timer;
  /** Resolves `ms` from now; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** pino's call shape, which Fastify's logger and `paddock host`'s share. */
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Log;
}

export const silentLog: Log = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLog,
};

function sleepWith(timers: Pick<Timers, 'after'>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = timers.after(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export const systemTimers: Timers = {
  after(ms, fn) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
  every(ms, fn) {
    const handle = setInterval(fn, ms);
    handle.unref();
    return { cancel: () => clearInterval(handle) };
  },
  sleep(ms, signal) {
    return sleepWith(systemTimers, ms, signal);
  },
};

export function systemContext(log: Log): Context {
  return { clock: systemClock, timers: systemTimers, log, tracer: NOOP_TRACER };
}

interface Scheduled {
  at: number;
  seq: number;
  every: number | null;
  fn: () => void;
}

/**
 * Timers driven by a ManualClock: nothing runs until the test calls
 * advance(), which moves the clock to each due timer in turn, runs it, and
 * lets the promises it started settle before going on.
 */
export class ManualTimers implements Timers {
  private readonly scheduled = new Set<Scheduled>();
  private seq = 0;

  constructor(readonly clock: ManualClock = new ManualClock()) {}

  after(ms: number, fn: () => void): Timer {
    return this.schedule(ms, null, fn);
  }

  every(ms: number, fn: () => void): Timer {
    return this.schedule(ms, Math.max(1, ms), fn);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** How many timers are waiting (a test can check that work stopped). */
  get pending(): number {
    return this.scheduled.size;
  }

  /** Moves time on by `ms`, running every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const until = this.clock.now().getTime() + ms;
    for (;;) {
      await settle();
      const next = this.nextDue(until);
      if (!next) break;
      this.clock.set(new Date(next.at));
      if (next.every === null) this.scheduled.delete(next);
      else next.at += next.every;
      next.fn();
    }
    this.clock.set(new Date(until));
    await settle();
  }

  private nextDue(until: number): Scheduled | undefined {
    let next: Scheduled | undefined;
    for (const s of this.scheduled) {
      if (s.at > until) continue;
      if (!next || s.at < next.at || (s.at === next.at && s.seq < next.seq)) next = s;
    }
    return next;
  }

  private schedule(ms: number, every: number | null, fn: () => void): Timer {
    const entry: Scheduled = { at: this.clock.now().getTime() + Math.max(0, ms), seq: this.seq++, every, fn };
    this.scheduled.add(entry);
    return { cancel: () => this.scheduled.delete(entry) };
  }
}

/** Lets promise chains started by a timer run (a few turns of the event loop, no time passing). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

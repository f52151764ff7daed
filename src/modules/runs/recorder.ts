/** Where the recorder reports what it could not write. */
export interface RecorderLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RecorderOptions {
  /** Attempts per write before giving up (a reservation left behind is then charged by the sweep). */
  maxAttempts: number;
  /** First retry delay; doubles each retry. */
  baseDelayMs: number;
}

interface Job {
  label: string;
  run: () => Promise<unknown>;
  attempts: number;
}

const TRANSIENT_PG_CLASSES = ['08', '40', '53', '57', '58'];
const TRANSIENT_NODE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/**
 * Worth retrying: a lost connection, a serialization failure or deadlock, a
 * server out of resources or shutting down (Postgres error classes 08, 40,
 * 53, 57, 58). Drizzle wraps driver errors, so the cause chain is walked.
 */
export function isTransientDbError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (code.length === 5 && TRANSIENT_PG_CLASSES.includes(code.slice(0, 2))) return true;
      if (TRANSIENT_NODE_CODES.has(code)) return true;
    }
    const message = (e as { message?: unknown }).message;
    if (
      typeof message === 'string' &&
      /connection (terminated|closed|ended)|Client has encountered a connection error/i.test(message)
    )
      return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Write-behind for steps: the proxy answers the client first and hands the
 * step to `enqueue`; writes run one at a time in the order they were given
 * (a failover row before the call it led to), transient errors are retried
 * with backoff, and `flush()` waits for the queue to drain (tests, shutdown).
 * Money is safe even if a write is lost: the reservation it would have
 * settled stays in the database and the sweep charges it in full.
 */
export class StepRecorder {
  private readonly queue: Job[] = [];
  private running = false;
  private draining: Promise<void> = Promise.resolve();
  private log: RecorderLog = {
    warn: (obj, msg) => console.warn(msg, obj),
    error: (obj, msg) => console.error(msg, obj),
  };

  constructor(private readonly options: RecorderOptions = { maxAttempts: 6, baseDelayMs: 50 }) {}

  useLog(log: RecorderLog): void {
    this.log = log;
  }

  /** Jobs waiting or in progress. */
  get pending(): number {
    return this.queue.length;
  }

  enqueue(label: string, run: () => Promise<unknown>): void {
    this.queue.push({ label, run, attempts: 0 });
    if (!this.running) {
      this.running = true;
      this.draining = this.drain();
    }
  }

  /** Resolves once every job given so far is written (or given up on). */
  async flush(): Promise<void> {
    while (this.running) await this.draining;
  }

  private async drain(): Promise<void> {
    // `running` drops in the same tick as the loop sees the queue empty (no await
    // in between), so a job enqueued at any later point starts a new drain.
    try {
      while (this.queue.length > 0) {
        const job = this.queue[0]!;
        try {
          job.attempts++;
          await job.run();
          this.queue.shift();
        } catch (err) {
          if (isTransientDbError(err) && job.attempts < this.options.maxAttempts) {
            const delayMs = this.options.baseDelayMs * 2 ** (job.attempts - 1);
            this.log.warn(
              { err, job: job.label, attempt: job.attempts, retry_in_ms: delayMs },
              'step write failed; retrying',
            );
            await sleep(delayMs);
            continue;
          }
          this.queue.shift();
          this.log.error({ err, job: job.label, attempts: job.attempts }, 'step write failed; giving up');
        }
      }
    } finally {
      this.running = false;
    }
  }
}

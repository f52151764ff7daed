import pg from 'pg';
import type { Context, Timer } from '../core/context.ts';
import type { SqlClient } from '../jobs/boss.ts';

/** The channel a sent job is announced on (its payload: the queue's name). */
const CHANNEL = 'paddock_jobs';
/** After the listening connection fails, how long before it connects again (the polls cover the gap). */
const RECONNECT_MS = 5000;

/** How the servers of one database tell each other a job was sent (jobs.ts). */
export interface JobWake {
  /** Tells every server (this one too) that `queue` has a job to start now. */
  notify(queue: string): void;
  /** Calls `onQueue` with each queue announced, until close(). */
  listen(onQueue: (queue: string) => void): Promise<void>;
  close(): Promise<void>;
}

/**
 * LISTEN/NOTIFY on Postgres: a job an api server sends wakes an idle worker
 * of its queue on every server at once, instead of at the queue's next look
 * (every 2 s). The listener holds a connection of its own, outside the pool;
 * when it drops, it connects again after a few seconds, and the polls
 * meanwhile still find every job.
 */
export class PostgresJobWake implements JobWake {
  private listener: pg.Client | undefined;
  private onQueue: ((queue: string) => void) | undefined;
  private retry: Timer | undefined;
  private closed = true;

  constructor(
    private readonly url: string,
    private readonly client: SqlClient,
    private readonly ctx: Pick<Context, 'log' | 'timers'>,
  ) {}

  notify(queue: string): void {
    this.client
      .query('select pg_notify($1, $2)', [CHANNEL, queue])
      .catch((err: unknown) =>
        this.ctx.log.warn({ err, queue }, 'could not announce a job; the polls find it'),
      );
  }

  async listen(onQueue: (queue: string) => void): Promise<void> {
    this.onQueue = onQueue;
    this.closed = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    const c = new pg.Client({ connectionString: this.url });
    c.on('notification', (m) => {
      if (m.channel === CHANNEL && m.payload) this.onQueue?.(m.payload);
    });
    c.on('error', (err) => {
      this.ctx.log.warn({ err }, 'the job announcements’ connection failed; connecting again');
      this.again(c);
    });
    c.on('end', () => this.again(c));
    this.listener = c;
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      this.ctx.log.warn({ err }, 'could not listen for job announcements; connecting again');
      this.again(c);
    }
  }

  /** The connection `c` is gone: another, later, unless closed (once per connection). */
  private again(c: pg.Client): void {
    if (this.listener !== c) return;
    this.listener = undefined;
    void c.end().catch(() => undefined);
    if (this.closed) return;
    this.retry = this.ctx.timers.after(RECONNECT_MS, () => void this.connect());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.retry?.cancel();
    const c = this.listener;
    this.listener = undefined;
    await c?.end().catch(() => undefined);
  }
}

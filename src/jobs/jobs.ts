import { setTimeout as sleep } from 'node:timers/promises';
import PgBoss from 'pg-boss';
import type { Log } from '../core/context.ts';
import { isDeadlock } from '../db/errors.ts';
import type { JobWake } from '../db/job-wake.ts';
import { bossDatabase, JOBS_SCHEMA, type SqlClient } from './boss.ts';

/** How a queue's jobs are retried and when a job a worker holds is given up on. */
export interface QueuePolicy {
  /** Attempts after the first (0: none). */
  retryLimit: number;
  /** Seconds before a retry. */
  retryDelaySec: number;
  /**
   * How long a worker may hold a job before it counts as lost (the worker
   * died or hung) and the job is retried, as pg-boss's expiration.
   */
  expireInSec: number;
}

export interface JobsOptions {
  /**
   * How often a queue is looked at for jobs other servers sent, or that came
   * due (this server's own wake a worker at once): one idle worker of the
   * queue looks, however many there are.
   */
  pollingIntervalSec: number;
  /** How often (at most, across all servers) expired jobs are found and retried, and old ones archived. */
  maintenanceIntervalSec: number;
}

interface WorkerSlot {
  id: string;
  busy: boolean;
  /** performance.now() when it was last woken for a job it has not fetched yet. */
  wokenAt: number;
}

/** A woken worker fetches within this; after it, one that found nothing may be woken again. */
const WOKEN_MS = 1000;
/** How often a queue's declaration is tried when it deadlocks with another server's. */
const DECLARE_ATTEMPTS = 5;
/**
 * Each worker's own polling, a safety net only: the queue's tick wakes one idle
 * worker every pollingIntervalSec, and a worker that found a job wakes the
 * next. With every worker polling on its own, sixteen idle task workers made
 * eight queries a second against the embedded database, each holding its one
 * connection for 10–15 ms.
 */
const WORKER_POLL_SEC = 60;

/** The reason a handler's signal aborts when its server stops: the job goes back to be retried. */
export class JobsStopping extends Error {
  constructor() {
    super('the server is stopping; the job will be retried');
  }
}

/**
 * A job's handler. When the job's time (the queue's `expireInSec`) runs out,
 * pg-boss stops waiting for the handler and retries the job; `signal` aborts
 * then, and the handler must stop, since the job may already run elsewhere.
 */
export type JobHandler<T> = (job: {
  id: string;
  data: T;
  retryCount: number;
  signal: AbortSignal;
}) => Promise<void>;

/**
 * Durable background jobs (task runs, webhook deliveries, builds) on pg-boss,
 * in the application's own database: a job survives a restart, is held by one
 * worker at a time (SKIP LOCKED), and is retried after a failure or after its
 * worker vanished. A job sent by this server wakes this server's worker at
 * once instead of waiting for the next poll.
 */
export class Jobs {
  private readonly boss: PgBoss;
  /** Each queue's workers on this server: whether one is in a handler, and when it was last woken. */
  private readonly workers = new Map<string, WorkerSlot[]>();
  private readonly declared = new Set<string>();
  private started: Promise<void> | undefined;
  /** Set once pg-boss has stopped: what its orphaned workers still send is not run (see bossDatabase). */
  private stopped = false;
  /** The signals of the handlers running now, aborted when the server stops. */
  private readonly inHand = new Set<AbortController>();
  /** Each worked queue's tick, which wakes one idle worker to look for jobs. */
  private readonly ticks = new Map<string, NodeJS.Timeout>();
  /** Work this server took on without a job (runHere), waited for when it stops. */
  private readonly here = new Set<Promise<void>>();
  /** Whether this server listens for the jobs other servers send (wake). */
  private listening = false;

  constructor(
    client: SqlClient,
    private readonly log: Log,
    private readonly options: JobsOptions,
    /** Other servers' sends, announced (Postgres): their jobs start here at once, not at the next poll. */
    private readonly wake?: JobWake,
  ) {
    this.boss = new PgBoss({
      db: bossDatabase(client, () => this.stopped),
      schema: JOBS_SCHEMA,
      // The schema comes with Paddock's migrations.
      migrate: false,
      supervise: true,
      schedule: false,
      maintenanceIntervalSeconds: options.maintenanceIntervalSec,
    } as PgBoss.ConstructorOptions);
    this.boss.on('error', (err) => this.log.warn({ err }, 'background jobs: pg-boss reported an error'));
  }

  private start(): Promise<void> {
    if (this.started === undefined) this.stopped = false;
    this.started ??= this.boss.start().then(() => undefined);
    return this.started;
  }

  /**
   * Declares a queue with its policy (idempotent). A job sent to a queue not
   * declared yet would be dropped by pg-boss: `send` refuses instead.
   */
  async declare(name: string, policy: QueuePolicy): Promise<void> {
    await this.start();
    if (this.declared.has(name)) return;
    const options = {
      name,
      retryLimit: policy.retryLimit,
      retryDelay: policy.retryDelaySec,
      expireInSeconds: policy.expireInSec,
    };
    // Servers started side by side on one Postgres declare the same queues at
    // once, and pg-boss's create_queue (a row, then a partition attached to the
    // job table) can deadlock with another server's: Postgres rolls one back
    // whole, and that one tries again a moment later (it then finds the queue).
    for (let attempt = 1; ; attempt++) {
      try {
        await this.boss.createQueue(name, options);
        break;
      } catch (err) {
        if (!isDeadlock(err) || attempt === DECLARE_ATTEMPTS) throw err;
        this.log.debug(
          { queue: name, attempt },
          'declaring a queue deadlocked with another server; trying again',
        );
        await sleep(attempt * 25 + Math.random() * 50);
      }
    }
    this.declared.add(name);
  }

  /** Declares the queue and works it on this server, one job at a time per call of `work`. */
  async work<T extends object>(name: string, policy: QueuePolicy, handler: JobHandler<T>): Promise<void> {
    await this.declare(name, policy);
    const slot: WorkerSlot = { id: '', busy: false, wokenAt: Number.NEGATIVE_INFINITY };
    const id = await this.boss.work<T>(
      name,
      {
        pollingIntervalSeconds: Math.max(WORKER_POLL_SEC, this.options.pollingIntervalSec),
        batchSize: 1,
        includeMetadata: true,
      },
      async ([job]) => {
        slot.wokenAt = Number.NEGATIVE_INFINITY;
        if (job === undefined) return;
        slot.busy = true;
        // It found one: more may be waiting (a burst another server sent), so the next idle worker looks too.
        this.wakeOne(name);
        const timeUp = new AbortController();
        const timer = setTimeout(
          () => timeUp.abort(new Error(`job ${job.id} of ${name} ran past its ${policy.expireInSec} s`)),
          policy.expireInSec * 1000,
        );
        timer.unref();
        this.inHand.add(timeUp);
        try {
          await handler({ id: job.id, data: job.data, retryCount: job.retryCount, signal: timeUp.signal });
        } finally {
          clearTimeout(timer);
          this.inHand.delete(timeUp);
          slot.busy = false;
          // More may be waiting: look at once rather than after the polling interval.
          this.boss.notifyWorker(slot.id);
        }
      },
    );
    slot.id = id;
    this.workers.set(name, [...(this.workers.get(name) ?? []), slot]);
    if (this.wake && !this.listening) {
      this.listening = true;
      await this.wake.listen((queue) => this.wakeOne(queue));
    }
    if (!this.ticks.has(name)) {
      const tick = setInterval(() => this.wakeOne(name), this.options.pollingIntervalSec * 1000);
      tick.unref();
      this.ticks.set(name, tick);
    }
  }

  /**
   * Sends a job to a queue this server declared (to start now, or after
   * `startAfterSec`); resolves with its id once it is stored. This server's
   * workers of the queue wake at once.
   */
  async send<T extends object>(name: string, data: T, options?: { startAfterSec?: number }): Promise<string> {
    await this.start();
    if (!this.declared.has(name)) throw new Error(`queue ${name} is not declared on this server`);
    const id = options?.startAfterSec
      ? await this.boss.send(name, data, { startAfter: options.startAfterSec })
      : await this.boss.send(name, data);
    if (id === null) throw new Error(`pg-boss did not store the job for ${name}`);
    // A job for later wakes nobody now; the workers' polling finds it when it is due.
    if (!options?.startAfterSec) {
      this.wakeOne(name);
      this.wake?.notify(name);
    }
    return id;
  }

  /**
   * Wakes one idle worker of the queue that was not just woken (each of them
   * would otherwise query for the one job, ahead of the one that gets it).
   * None idle: a worker looks again as soon as its job ends.
   */
  private wakeOne(name: string): void {
    const now = performance.now();
    const slot = (this.workers.get(name) ?? []).find((w) => !w.busy && now - w.wokenAt > WOKEN_MS);
    if (!slot) return;
    slot.wokenAt = now;
    this.boss.notifyWorker(slot.id);
  }

  /**
   * Runs work on this server now, without a job: for work whose own row is
   * its durable record (a sweep finds it again after a crash). Its signal
   * aborts (JobsStopping) when the server stops, as a job's handler's does;
   * a failure is logged.
   */
  runHere(what: string, work: (signal: AbortSignal) => Promise<void>): void {
    const stopping = new AbortController();
    this.inHand.add(stopping);
    const done: Promise<void> = work(stopping.signal)
      .catch((err: unknown) => this.log.warn({ err }, `background work failed: ${what}`))
      .finally(() => {
        this.inHand.delete(stopping);
        this.here.delete(done);
      });
    this.here.add(done);
  }

  /** A job's state, for tests and the operators' view. */
  async state(name: string, id: string): Promise<string | undefined> {
    await this.start();
    return (await this.boss.getJobById(name, id))?.state;
  }

  /**
   * Stops taking jobs. Handlers in hand see their signal abort (JobsStopping)
   * and have 10 s to give the job back (throw: it is retried); with
   * `graceful` false nothing is waited for, as when a process dies.
   */
  async stop(graceful = true): Promise<void> {
    if (this.started === undefined) return;
    await this.started.catch(() => undefined);
    for (const tick of this.ticks.values()) clearInterval(tick);
    this.ticks.clear();
    // Their pg-boss workers stop with it: a later work() starts new ones.
    this.workers.clear();
    if (this.listening) await this.wake?.close();
    this.listening = false;
    if (graceful) for (const held of this.inHand) held.abort(new JobsStopping());
    const here = graceful ? Promise.all(this.here) : Promise.resolve();
    await this.boss.stop({ graceful, wait: true, close: false, timeout: 10_000 });
    this.stopped = true;
    await Promise.race([here, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
    this.started = undefined;
  }
}

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Log } from './context.ts';
import { type BreakerState, GatewayMetrics, type Reservations } from './gateway-metrics.ts';

// One server's Prometheus metrics (docs/operations.md, "Metrics", lists each
// with its labels; the gateway's are in gateway-metrics.ts). Each app has its
// own Registry: prom-client's default one is a module global, and tests run
// several apps in one process. Label values are small fixed sets (providers,
// outcomes, states), never ids; models are the one open set, and are capped.

const PREFIX = 'paddock_';

const STATEMENT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
const START_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const WAIT_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const TASK_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21_600, 86_400];
/** A delivery's retries reach ten hours apart (webhooks/deliveries.ts). */
const LAG_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 7200, 21_600, 86_400];

/** One row of the database's counts at scrape time (system/metrics-repo.ts), each state present even at 0. */
export interface StateCount {
  kind: 'tasks' | 'capsules' | 'hosts' | 'webhook_deliveries' | 'work_queue_jobs';
  state: string;
  count: number;
  /** The oldest queued task, pending delivery, or remote host's last heartbeat in this state. */
  oldest: Date | null;
}

export interface PoolStats {
  inUse: number;
  idle: number;
  waiting: number;
}

/** What the gauges read at scrape time (app.ts supplies them once the services exist). */
export interface ScrapeSources {
  breakers(): Iterable<BreakerState>;
  reservations(): Reservations;
  pool(): PoolStats | undefined;
  /** The database's counts: one grouped statement. */
  states(): Promise<StateCount[]>;
}

/** One line of a family kept outside prom-client (below): its labels, and a suffix (`_bucket`…) if any. */
export interface Sample {
  labels: Record<string, string>;
  value: number;
  suffix?: string;
}

/** The metric constructors, each registering on one app's registry under the prefix. */
export interface Instruments {
  counter<L extends string>(name: string, help: string, labelNames?: readonly L[]): Counter<L>;
  gauge<L extends string>(name: string, help: string, labelNames?: readonly L[]): Gauge<L>;
  histogram<L extends string>(
    name: string,
    help: string,
    buckets: number[],
    labelNames?: readonly L[],
  ): Histogram<L>;
  /** A family whose numbers the caller keeps itself, read into samples at each scrape. */
  family(name: string, help: string, type: 'counter' | 'histogram', samples: () => Sample[]): void;
}

function instrumentsOn(registry: Registry): Instruments {
  const registers = [registry];
  return {
    counter: (name, help, labelNames = []) =>
      new Counter({ name: PREFIX + name, help, labelNames, registers }),
    gauge: (name, help, labelNames = []) => new Gauge({ name: PREFIX + name, help, labelNames, registers }),
    histogram: (name, help, buckets, labelNames = []) =>
      new Histogram({ name: PREFIX + name, help, buckets, labelNames, registers }),
    family: (name, help, type, samples) => {
      const full = PREFIX + name;
      const get = async () => ({
        name: full,
        help,
        type,
        aggregator: 'sum',
        values: samples().map((s) => ({
          labels: s.labels,
          value: s.value,
          metricName: full + (s.suffix ?? ''),
        })),
      });
      // The registry reads any object with a name and get() (the shape prom-client's own metrics have).
      registry.registerMetric({ name: full, help, type, get, reset() {} } as unknown as Gauge);
    },
  };
}

/**
 * A histogram's series kept in plain numbers: observing is a few comparisons
 * and additions, nothing allocated (prom-client's own builds a label hash on
 * every observation). For what is recorded per statement or per proxied call.
 */
export class Cells {
  /** Observations per bucket (not cumulative); past the last bound only `count` has them. */
  private readonly perBucket: number[];
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.perBucket = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.perBucket[i]!++;
        return;
      }
    }
  }

  /** The series in the exposition's form: cumulative buckets with `le`, then the sum and count. */
  samples(labels: Record<string, string>): Sample[] {
    const out: Sample[] = [];
    let cumulative = 0;
    this.bounds.forEach((bound, i) => {
      cumulative += this.perBucket[i]!;
      out.push({ labels: { le: String(bound), ...labels }, value: cumulative, suffix: '_bucket' });
    });
    out.push({ labels: { le: '+Inf', ...labels }, value: this.count, suffix: '_bucket' });
    out.push({ labels, value: this.sum, suffix: '_sum' });
    out.push({ labels, value: this.count, suffix: '_count' });
    return out;
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** The proxy's calls, circuits and reservations. */
  readonly gateway: GatewayMetrics;
  private sources: ScrapeSources | undefined;
  private processMetrics = false;

  private readonly tasks: Gauge<'status'>;
  private readonly taskQueueOldest: Gauge;
  private readonly taskWait: Histogram;
  private readonly taskDuration: Histogram<'status'>;
  private readonly workQueueJobs: Gauge<'status'>;

  private readonly capsules: Gauge<'state'>;
  private readonly capsuleStarts: Counter<'source' | 'outcome'>;
  private readonly capsuleStart: Histogram<'source' | 'outcome'>;
  private readonly hosts: Gauge<'state'>;
  private readonly heartbeatAge: Gauge<'state'>;
  private readonly heartbeats: Counter;

  private readonly webhookAttempts: Counter<'outcome'>;
  private readonly webhookDeliveries: Counter<'outcome'>;
  private readonly webhookLag: Histogram<'outcome'>;
  private readonly webhooksPending: Gauge;
  private readonly webhookOldestPending: Gauge;

  private readonly statementOk = new Cells(STATEMENT_BUCKETS);
  private readonly statementError = new Cells(STATEMENT_BUCKETS);
  private readonly poolConnections: Gauge<'state'>;
  private readonly poolWaiting: Gauge;
  private readonly databaseRead: Gauge;

  constructor(private readonly log: Log) {
    const instruments = instrumentsOn(this.registry);
    const { counter, gauge, histogram } = instruments;
    this.gateway = new GatewayMetrics(instruments);

    // -- tasks
    this.tasks = gauge('tasks', 'Tasks not yet ended, by status (all servers)', ['status']);
    this.taskQueueOldest = gauge(
      'task_queue_oldest_seconds',
      'How long the oldest queued task has waited (0: none; all servers)',
    );
    this.taskWait = histogram(
      'task_queue_wait_seconds',
      'From a task’s submission to its first start by this server’s runner',
      WAIT_BUCKETS,
    );
    this.taskDuration = histogram(
      'task_duration_seconds',
      'A task’s attempt on this server from its start to its end, by final status',
      TASK_BUCKETS,
      ['status'],
    );
    this.workQueueJobs = gauge('work_queue_jobs', 'Jobs of the work queues (/v1/queues) waiting or held', [
      'status',
    ]);

    // -- capsules and hosts
    this.capsules = gauge('capsules', 'Capsules not yet ended, by state (all servers)', ['state']);
    this.capsuleStarts = counter(
      'capsule_starts_total',
      'Capsule starts by this server, by source and outcome',
      ['source', 'outcome'],
    );
    this.capsuleStart = histogram(
      'capsule_start_seconds',
      'From a capsule’s create to running (or to its failure)',
      START_BUCKETS,
      ['source', 'outcome'],
    );
    this.hosts = gauge('hosts', 'Sandbox hosts by state', ['state']);
    this.heartbeatAge = gauge(
      'host_heartbeat_age_seconds',
      'The longest time since a remote host’s last heartbeat, by host state',
      ['state'],
    );
    this.heartbeats = counter('host_heartbeats_total', 'Heartbeats of remote sandbox hosts received');

    // -- webhooks
    this.webhookAttempts = counter('webhook_attempts_total', 'Webhook delivery attempts, by outcome', [
      'outcome',
    ]);
    this.webhookDeliveries = counter(
      'webhook_deliveries_total',
      'Webhook deliveries that ended, by outcome',
      ['outcome'],
    );
    this.webhookLag = histogram(
      'webhook_delivery_lag_seconds',
      'From a delivery’s creation to its end (retries included), by outcome',
      LAG_BUCKETS,
      ['outcome'],
    );
    this.webhooksPending = gauge(
      'webhook_deliveries_pending',
      'Webhook deliveries not yet ended (all servers)',
    );
    this.webhookOldestPending = gauge(
      'webhook_delivery_oldest_pending_seconds',
      'How long the oldest pending delivery has waited (0: none)',
    );

    // -- database
    instruments.family(
      'db_statement_duration_seconds',
      'Statements this server sent to the database, from sending to the answer',
      'histogram',
      () => [
        ...this.statementOk.samples({ outcome: 'ok' }),
        ...this.statementError.samples({ outcome: 'error' }),
      ],
    );
    this.poolConnections = gauge(
      'db_pool_connections',
      'Database connections of this server, in use or idle',
      ['state'],
    );
    this.poolWaiting = gauge('db_pool_waiting', 'Statements waiting for a database connection');
    this.databaseRead = gauge(
      'metrics_database_read_ok',
      'Whether this scrape read the database’s counts (0: the gauges from it are left out)',
    );
  }

  /** The gauges' sources (the services are made after the metrics they report to). */
  attach(sources: ScrapeSources): void {
    this.sources = sources;
  }

  // -- tasks

  taskStarted(waitMs: number): void {
    this.taskWait.observe(Math.max(0, waitMs) / 1000);
  }

  taskEnded(status: string, durationMs: number): void {
    this.taskDuration.observe({ status }, Math.max(0, durationMs) / 1000);
  }

  // -- capsules and hosts

  /** A capsule's start: `spare` (one started ahead) or `cold`, and whether it reached running. */
  capsuleStarted(source: 'spare' | 'cold', ok: boolean, ms: number): void {
    const outcome = ok ? 'started' : 'failed';
    this.capsuleStarts.inc({ source, outcome });
    this.capsuleStart.observe({ source, outcome }, Math.max(0, ms) / 1000);
  }

  hostHeartbeat(): void {
    this.heartbeats.inc();
  }

  // -- webhooks

  /** An attempt's outcome; `ended` when it ended its delivery, which took `lagMs` from its creation. */
  webhookAttempt(outcome: string, ended: { ok: boolean; lagMs: number } | undefined): void {
    this.webhookAttempts.inc({ outcome });
    if (!ended) return;
    const end = ended.ok ? 'succeeded' : 'failed';
    this.webhookDeliveries.inc({ outcome: end });
    this.webhookLag.observe({ outcome: end }, Math.max(0, ended.lagMs) / 1000);
  }

  // -- database

  statement(ms: number, ok: boolean): void {
    (ok ? this.statementOk : this.statementError).observe(ms / 1000);
  }

  // -- scrape

  /**
   * The text exposition: the gauges read first, each source on its own, so a
   * source that fails (the database down) leaves its gauges out and the rest
   * of the metrics still answer.
   */
  async render(now: Date): Promise<string> {
    // Process metrics start on the first scrape: each set keeps a GC observer and an event-loop
    // monitor for good, which an app that is never scraped (a test's) should not pay for.
    if (!this.processMetrics) {
      this.processMetrics = true;
      collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    }
    const sources = this.sources;
    if (sources) {
      this.read('circuit breakers', () => this.gateway.setBreakers(sources.breakers()));
      this.read('budget reservations', () => this.gateway.setReservations(sources.reservations()));
      this.read('database pool', () => {
        const p = sources.pool();
        if (!p) return;
        this.poolConnections.set({ state: 'in_use' }, p.inUse);
        this.poolConnections.set({ state: 'idle' }, p.idle);
        this.poolWaiting.set(p.waiting);
      });
      try {
        this.setStates(await sources.states(), now.getTime());
        this.databaseRead.set(1);
      } catch (err) {
        this.log.warn({ err }, 'metrics: the database counts could not be read; their gauges are left out');
        for (const g of [this.tasks, this.taskQueueOldest, this.workQueueJobs, this.capsules, this.hosts])
          g.reset();
        for (const g of [this.heartbeatAge, this.webhooksPending, this.webhookOldestPending]) g.reset();
        this.databaseRead.set(0);
      }
    }
    // Until the event-loop monitor has taken a sample (the first scrape after start) prom-client
    // reports its statistics as NaN, misspelt "Nan": a value no alert can compare, which some
    // parsers refuse. Those samples are left out of that scrape.
    return (await this.registry.metrics()).replace(/^[^#\n][^\n]* Nan\n/gm, '');
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private read(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.warn({ err, source: what }, 'metrics: a source could not be read');
    }
  }

  private setStates(rows: StateCount[], nowMs: number): void {
    const ageSec = (at: Date | null) => (at === null ? 0 : Math.max(0, nowMs - at.getTime()) / 1000);
    this.heartbeatAge.reset();
    for (const r of rows) {
      if (r.kind === 'tasks') {
        this.tasks.set({ status: r.state }, r.count);
        if (r.state === 'queued') this.taskQueueOldest.set(ageSec(r.oldest));
      } else if (r.kind === 'capsules') this.capsules.set({ state: r.state }, r.count);
      else if (r.kind === 'hosts') {
        this.hosts.set({ state: r.state }, r.count);
        if (r.oldest !== null) this.heartbeatAge.set({ state: r.state }, ageSec(r.oldest));
      } else if (r.kind === 'webhook_deliveries') {
        this.webhooksPending.set(r.count);
        this.webhookOldestPending.set(ageSec(r.oldest));
      } else this.workQueueJobs.set({ status: r.state }, r.count);
    }
  }
}

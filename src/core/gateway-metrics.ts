import type { Gauge } from 'prom-client';
import { Cells, type Instruments, type Sample } from './metrics.ts';

// The gateway's metrics. Recorded on every proxied call, so they are kept in
// plain numbers (prom-client builds a label hash on every increment): a
// record is a few map lookups and additions, with nothing allocated once a
// provider, model and outcome have been seen. The scrape reads them into
// samples.

/** Distinct model labels one server keeps: later ones count as "other" (a caller may name any model). */
const MAX_MODELS = 100;
const MAX_MODEL_LENGTH = 100;

/** From 50 ms to two minutes: a stream counts until its end. */
const CALL_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Paddock's own work on a call: a tenth of a millisecond to a second. */
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const BREAKER_STATES = ['closed', 'open', 'half_open'] as const;

/** A settled call, as its step's outcome says it (gateway/ports.ts StepOutcome). */
export interface CallOutcome {
  provider: string | null;
  model: string | null;
  status: string;
  usage: { input: number; output: number };
  costMicros: number;
  latencyMs: number;
}

export interface BreakerState {
  provider: string | null;
  state: string;
}

export interface Reservations {
  count: number;
  reservedMicros: number;
  oldestAgeMs: number;
}

interface Count {
  value: number;
}

/** A provider and model's numbers. */
interface ModelSeries {
  labels: { provider: string; model: string };
  /** Calls by outcome. */
  requests: Map<string, Count>;
  inputTokens: number;
  outputTokens: number;
  costMicros: number;
}

/** Values by two label values, made on first use. */
class ByTwo<T> {
  private readonly byFirst = new Map<string, Map<string, T>>();

  constructor(private readonly make: (a: string, b: string) => T) {}

  get(a: string, b: string): T {
    let inner = this.byFirst.get(a);
    if (!inner) {
      inner = new Map();
      this.byFirst.set(a, inner);
    }
    let value = inner.get(b);
    if (!value) {
      value = this.make(a, b);
      inner.set(b, value);
    }
    return value;
  }

  *entries(): Generator<[string, string, T]> {
    for (const [a, inner] of this.byFirst) for (const [b, value] of inner) yield [a, b, value];
  }
}

export class GatewayMetrics {
  private readonly models = new Set<string>();
  /** By provider and model. */
  private readonly series = new ByTwo<ModelSeries>((provider, model) => ({
    labels: { provider, model },
    requests: new Map(),
    inputTokens: 0,
    outputTokens: 0,
    costMicros: 0,
  }));
  /** By provider and outcome. */
  private readonly duration = new ByTwo(() => new Cells(CALL_BUCKETS));
  private readonly overheadSec = new Cells(OVERHEAD_BUCKETS);
  private readonly failovers = { resolved: 0, exhausted: 0 };
  /** By provider and failure kind. */
  private readonly failedAttempts = new ByTwo<Count>(() => ({ value: 0 }));
  private readonly breakers: Gauge<'provider' | 'state'>;
  private readonly reservations: Gauge;
  private readonly reservedUsd: Gauge;
  private readonly reservationAge: Gauge;

  constructor({ gauge, family }: Instruments) {
    const perSeries = (read: (s: ModelSeries) => Sample[]) => () =>
      [...this.series.entries()].flatMap(([, , s]) => read(s));
    family(
      'gateway_requests_total',
      'Model calls the gateway answered',
      'counter',
      perSeries((s) =>
        [...s.requests].map(([outcome, n]) => ({ labels: { ...s.labels, outcome }, value: n.value })),
      ),
    );
    family(
      'gateway_tokens_total',
      'Tokens of settled model calls',
      'counter',
      perSeries((s) => [
        { labels: { ...s.labels, direction: 'input' }, value: s.inputTokens },
        { labels: { ...s.labels, direction: 'output' }, value: s.outputTokens },
      ]),
    );
    family(
      'gateway_cost_usd_total',
      'What settled model calls cost, in USD',
      'counter',
      perSeries((s) => [{ labels: s.labels, value: s.costMicros / 1_000_000 }]),
    );
    family(
      'gateway_request_duration_seconds',
      'A model call from its budget reservation to its settlement (a stream: to its end)',
      'histogram',
      () =>
        [...this.duration.entries()].flatMap(([provider, outcome, c]) => c.samples({ provider, outcome })),
    );
    family(
      'gateway_overhead_seconds',
      "Paddock's time on a call before a provider sees it: authentication, policy, run, budget reservation, rate limits, rules",
      'histogram',
      () => this.overheadSec.samples({}),
    );
    family('gateway_failovers_total', 'Calls whose first attempt failed, by how they ended', 'counter', () =>
      Object.entries(this.failovers).map(([outcome, value]) => ({ labels: { outcome }, value })),
    );
    family(
      'gateway_failed_attempts_total',
      'Attempts at a provider that failed, by failure kind',
      'counter',
      () =>
        [...this.failedAttempts.entries()].map(([provider, kind, n]) => ({
          labels: { provider, kind },
          value: n.value,
        })),
    );
    this.breakers = gauge(
      'gateway_circuit_breakers',
      'Provider keys this server has called, by circuit state',
      ['provider', 'state'],
    );
    this.reservations = gauge('gateway_budget_reservations', 'Budget reservations held by calls in flight');
    this.reservedUsd = gauge('gateway_budget_reserved_usd', 'Money reserved by calls in flight, in USD');
    this.reservationAge = gauge(
      'gateway_budget_reservation_oldest_seconds',
      'How long the oldest reservation in flight has been held (0: none)',
    );
  }

  /** A call that settled (its step): counted, its tokens and cost added, its duration observed. */
  call(c: CallOutcome): void {
    const provider = c.provider ?? 'none';
    const s = this.seriesOf(provider, c.model);
    this.requestsOf(s, c.status).value++;
    s.inputTokens += c.usage.input;
    s.outputTokens += c.usage.output;
    s.costMicros += c.costMicros;
    this.duration.get(provider, c.status).observe(c.latencyMs / 1000);
  }

  /** A call governance refused once its run was known (budget, policy): no provider saw it. */
  blocked(model: string | null, status: string): void {
    this.requestsOf(this.seriesOf('none', model), status).value++;
  }

  overhead(ms: number): void {
    this.overheadSec.observe(ms / 1000);
  }

  /** A call that needed more than its first attempt: the failed ones, and whether another answered. */
  failover(failed: ReadonlyArray<{ provider: string; kind: string }>, resolvedProvider: string | null): void {
    for (const f of failed) this.failedAttempts.get(f.provider, f.kind).value++;
    if (resolvedProvider === null) this.failovers.exhausted++;
    else this.failovers.resolved++;
  }

  /** At scrape time: the keys' circuits, counted by provider and state (each state present). */
  setBreakers(keys: Iterable<BreakerState>): void {
    const counts = new Map<string, Map<string, number>>();
    for (const k of keys) {
      const provider = k.provider ?? 'unknown';
      let byState = counts.get(provider);
      if (!byState) {
        byState = new Map(BREAKER_STATES.map((s) => [s, 0]));
        counts.set(provider, byState);
      }
      byState.set(k.state, (byState.get(k.state) ?? 0) + 1);
    }
    this.breakers.reset();
    for (const [provider, byState] of counts)
      for (const [state, n] of byState) this.breakers.set({ provider, state }, n);
  }

  setReservations(r: Reservations): void {
    this.reservations.set(r.count);
    this.reservedUsd.set(r.reservedMicros / 1_000_000);
    this.reservationAge.set(r.oldestAgeMs / 1000);
  }

  private seriesOf(provider: string, model: string | null): ModelSeries {
    return this.series.get(provider, this.modelLabel(model));
  }

  private requestsOf(s: ModelSeries, outcome: string): Count {
    let n = s.requests.get(outcome);
    if (!n) {
      n = { value: 0 };
      s.requests.set(outcome, n);
    }
    return n;
  }

  /** The model as a label: at most MAX_MODELS distinct ones, each at most MAX_MODEL_LENGTH characters. */
  private modelLabel(model: string | null): string {
    if (model === null || model === '') return 'none';
    if (this.models.has(model)) return model;
    if (this.models.size >= MAX_MODELS || model.length > MAX_MODEL_LENGTH) return 'other';
    this.models.add(model);
    return model;
  }
}

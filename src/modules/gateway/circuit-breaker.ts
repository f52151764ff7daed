import type { Clock } from '../../core/clock.ts';
import { POLICY_DEFAULTS, type PolicySpec } from '../policies/spec.ts';
import type { Provider } from './provider-call.ts';

export type CircuitState = 'closed' | 'open' | 'half_open';
/** A policy's routing.circuit_breaker (modules/policies owns its schema and defaults). */
export type CircuitBreakerConfig = PolicySpec['routing']['circuit_breaker'];

/**
 * Failures that say nothing about the provider: the client went away, or the
 * key's base_url is an address Paddock refuses (a configuration problem that
 * every call names). They neither count towards opening the circuit nor reset it.
 */
const NOT_THE_PROVIDERS_FAULT = new Set(['client_disconnect', 'address_refused']);

/** How many recent latencies each key keeps for its p50. */
const LATENCY_SAMPLES = 64;

/**
 * One provider key's circuit. Closed → open after `failure_threshold`
 * consecutive failures; once `recovery_timeout_ms` has passed one half-open
 * probe is let through; a failed probe reopens it with the timeout doubled
 * (capped at `max_recovery_timeout_ms`); any success closes it and resets the
 * timeout to its base.
 */
export class CircuitBreaker {
  private state: CircuitState = 'closed';
  private consecutiveFailures = 0;
  private recoveryMs: number;
  private openedAtMs: number | null = null;
  private recoveryAtMs: number | null = null;
  /** While a half-open probe is out, no other attempt is let through until this time. */
  private probeUntilMs: number | null = null;
  lastFailureAtMs: number | null = null;
  lastSuccessAtMs: number | null = null;

  constructor(private config: CircuitBreakerConfig) {
    this.recoveryMs = config.recovery_timeout_ms;
  }

  configure(config: CircuitBreakerConfig): void {
    if (
      config.failure_threshold === this.config.failure_threshold &&
      config.recovery_timeout_ms === this.config.recovery_timeout_ms &&
      config.max_recovery_timeout_ms === this.config.max_recovery_timeout_ms
    )
      return;
    this.config = config;
    if (config.failure_threshold === 0) {
      this.close();
    } else {
      this.recoveryMs = Math.min(
        Math.max(this.recoveryMs, config.recovery_timeout_ms),
        config.max_recovery_timeout_ms,
      );
    }
  }

  /** The state as of `nowMs`, without claiming anything. */
  stateAt(nowMs: number): CircuitState {
    if (this.state === 'half_open' && this.probeUntilMs !== null && nowMs >= this.probeUntilMs) return 'open';
    return this.state;
  }

  /** Whether an attempt would be let through now (read-only). */
  isAvailable(nowMs: number): boolean {
    const state = this.stateAt(nowMs);
    if (state === 'closed') return true;
    if (state === 'half_open') return false;
    return this.recoveryAtMs !== null && nowMs >= this.recoveryAtMs;
  }

  /**
   * Whether to attempt now. When the cooldown is over this claims the one
   * half-open probe; a probe that never reports back (its request died with
   * the process's interest in it) frees the slot after another cooldown.
   */
  tryAcquire(nowMs: number): boolean {
    if (!this.isAvailable(nowMs)) return false;
    if (this.state !== 'closed') {
      this.state = 'half_open';
      this.probeUntilMs = nowMs + this.recoveryMs;
    }
    return true;
  }

  recordSuccess(nowMs: number): void {
    this.lastSuccessAtMs = nowMs;
    this.close();
  }

  recordFailure(nowMs: number): void {
    this.lastFailureAtMs = nowMs;
    this.consecutiveFailures++;
    if (this.config.failure_threshold === 0) return;
    const state = this.stateAt(nowMs);
    if (state === 'half_open' || (state === 'open' && this.probeUntilMs !== null)) {
      // The probe failed: back off twice as long, up to the cap.
      this.recoveryMs = Math.min(this.recoveryMs * 2, this.config.max_recovery_timeout_ms);
      this.open(nowMs);
    } else if (state === 'closed' && this.consecutiveFailures >= this.config.failure_threshold) {
      this.recoveryMs = this.config.recovery_timeout_ms;
      this.open(nowMs);
    }
    // Already open (a request planned before it opened failed too): keep the cooldown.
  }

  snapshot(nowMs: number) {
    return {
      state: this.stateAt(nowMs),
      failure_count: this.consecutiveFailures,
      opened_at: this.openedAtMs,
      recovery_at: this.state === 'closed' ? null : this.recoveryAtMs,
      recovery_timeout_ms: this.recoveryMs,
    };
  }

  private open(nowMs: number): void {
    this.state = 'open';
    this.openedAtMs = nowMs;
    this.recoveryAtMs = nowMs + this.recoveryMs;
    this.probeUntilMs = null;
  }

  private close(): void {
    this.state = 'closed';
    this.consecutiveFailures = 0;
    this.recoveryMs = this.config.recovery_timeout_ms;
    this.openedAtMs = null;
    this.recoveryAtMs = null;
    this.probeUntilMs = null;
  }
}

/** A fixed-size window of recent latencies with a lazily computed median. */
class LatencyWindow {
  private readonly samples: number[] = [];
  private next = 0;
  private p50: number | null = null;
  private dirty = false;

  add(ms: number): void {
    if (this.samples.length < LATENCY_SAMPLES) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % LATENCY_SAMPLES;
    this.dirty = true;
  }

  median(): number | null {
    if (this.dirty) {
      const sorted = [...this.samples].sort((a, b) => a - b);
      const mid = sorted.length >> 1;
      this.p50 = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
      this.dirty = false;
    }
    return this.p50;
  }
}

interface KeyHealthEntry {
  provider: Provider | null;
  breaker: CircuitBreaker;
  latency: LatencyWindow;
}

export interface ProviderHealth {
  provider_key_id: string;
  provider: Provider | null;
  state: CircuitState;
  failure_count: number;
  last_failure_at: string | null;
  last_success_at: string | null;
  opened_at: string | null;
  recovery_at: string | null;
  p50_latency_ms: number | null;
}

const isoOrNull = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * Health of every provider key this process has called: a circuit breaker
 * and a latency window per key. In memory and per process (DESIGN: in-memory
 * state is a cache); each API server learns on its own. The breaker settings
 * come from the policy that routed to the key (`track`); when two policies
 * with different settings share a key, the last one to route wins.
 */
export class ProviderHealthRegistry {
  private readonly entries = new Map<string, KeyHealthEntry>();

  constructor(
    private readonly clock: Clock,
    private readonly defaults: CircuitBreakerConfig = POLICY_DEFAULTS.routing.circuit_breaker,
  ) {}

  private entry(keyId: string): KeyHealthEntry {
    let e = this.entries.get(keyId);
    if (!e) {
      e = { provider: null, breaker: new CircuitBreaker(this.defaults), latency: new LatencyWindow() };
      this.entries.set(keyId, e);
    }
    return e;
  }

  private nowMs(): number {
    return this.clock.now().getTime();
  }

  /** Tells the registry which provider a key is for and the breaker settings to apply to it. */
  track(keyId: string, provider: Provider, config?: CircuitBreakerConfig): void {
    const e = this.entry(keyId);
    e.provider = provider;
    if (config) e.breaker.configure(config);
  }

  /** Claims the attempt (the half-open probe when the cooldown is over); false while the circuit is open. */
  canAttempt(keyId: string): boolean {
    const e = this.entries.get(keyId);
    return e === undefined || e.breaker.tryAcquire(this.nowMs());
  }

  /** Like canAttempt, without claiming the probe. */
  isAvailable(keyId: string): boolean {
    const e = this.entries.get(keyId);
    return e === undefined || e.breaker.isAvailable(this.nowMs());
  }

  state(keyId: string): CircuitState {
    return this.entries.get(keyId)?.breaker.stateAt(this.nowMs()) ?? 'closed';
  }

  recordSuccess(keyId: string, latencyMs: number): void {
    const e = this.entry(keyId);
    e.breaker.recordSuccess(this.nowMs());
    if (Number.isFinite(latencyMs) && latencyMs >= 0) e.latency.add(latencyMs);
  }

  recordFailure(keyId: string, kind: string): void {
    if (NOT_THE_PROVIDERS_FAULT.has(kind)) return;
    this.entry(keyId).breaker.recordFailure(this.nowMs());
  }

  p50LatencyMs(keyId: string): number | null {
    return this.entries.get(keyId)?.latency.median() ?? null;
  }

  /** Forgets a key (deleted). */
  forget(keyId: string): void {
    this.entries.delete(keyId);
  }

  /**
   * The health of the given keys (a key never called is closed with no
   * history), or of every key this process knows when none are given.
   */
  snapshot(keys?: Iterable<{ id: string; provider: Provider }>): ProviderHealth[] {
    const nowMs = this.nowMs();
    const wanted = keys
      ? [...keys]
      : [...this.entries.entries()].map(([id, e]) => ({ id, provider: e.provider }));
    return wanted.map(({ id, provider }) => {
      const e = this.entries.get(id);
      const b = e?.breaker.snapshot(nowMs);
      return {
        provider_key_id: id,
        provider: provider ?? e?.provider ?? null,
        state: b?.state ?? 'closed',
        failure_count: b?.failure_count ?? 0,
        last_failure_at: isoOrNull(e?.breaker.lastFailureAtMs ?? null),
        last_success_at: isoOrNull(e?.breaker.lastSuccessAtMs ?? null),
        opened_at: isoOrNull(b?.opened_at ?? null),
        recovery_at: isoOrNull(b?.recovery_at ?? null),
        p50_latency_ms: e?.latency.median() ?? null,
      };
    });
  }
}

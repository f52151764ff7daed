import { describe, expect, it } from 'vitest';
import { ManualClock, SECOND_MS } from '../../src/core/clock.ts';
import { CircuitBreaker, ProviderHealthRegistry } from '../../src/modules/gateway/circuit-breaker.ts';
import {
  type Attempt,
  modelFamily,
  modelFor,
  type PlanInput,
  type ProviderBindings,
  planAttempts,
  RoundRobinCounters,
  Router,
} from '../../src/modules/gateway/routing.ts';

/** mulberry32: a small seeded PRNG, so draws are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const base: PlanInput = {
  routing: {},
  bindings: { anthropic: 'pkey_a', openai: 'pkey_o' },
  model: 'claude-sonnet-4-5',
  agentId: 'agt_1',
};

const plan = (over: Partial<PlanInput>) => planAttempts({ ...base, ...over });
const route = (attempts: Attempt[]) => attempts.map((a) => `${a.provider}:${a.keyId}:${a.model}`);

describe('choosing the chain', () => {
  it('takes the first matching model route, not a later, more specific one', () => {
    const p = plan({
      routing: {
        default_chain: ['openai'],
        model_routes: [
          { pattern: 'claude-*', chain: ['anthropic', 'openai'], timeout_ms: 30_000 },
          { pattern: 'claude-sonnet-4-5', chain: ['openai'] },
        ],
        max_retries: 2,
      },
      modelMapping: { 'claude-sonnet-4-5': { openai: 'gpt-4o' } },
    });
    expect(route(p.attempts)).toEqual(['anthropic:pkey_a:claude-sonnet-4-5', 'openai:pkey_o:gpt-4o']);
    expect(p.attempts[0]!.timeoutMs).toBe(30_000);
  });

  it('falls back to default_chain when no route matches, with the policy timeout', () => {
    const p = plan({
      model: 'gpt-4o',
      routing: {
        default_chain: ['openai', 'anthropic'],
        model_routes: [{ pattern: 'claude-*', chain: ['anthropic'] }],
        timeout_ms: 50_000,
        connect_timeout_ms: 5_000,
        max_retries: 1,
      },
    });
    expect(route(p.attempts)).toEqual(['openai:pkey_o:gpt-4o']);
    expect(p.attempts[0]).toMatchObject({ timeoutMs: 50_000, connectTimeoutMs: 5_000 });
  });

  it('an empty chain means the provider the model name implies', () => {
    expect(route(plan({ model: 'claude-opus-4-1', routing: { max_retries: 1 } }).attempts)).toEqual([
      'anthropic:pkey_a:claude-opus-4-1',
    ]);
    for (const model of ['gpt-4.1', 'o3-mini', 'o4-mini', 'o1']) {
      expect(route(plan({ model, routing: { max_retries: 1 } }).attempts)).toEqual([
        `openai:pkey_o:${model}`,
      ]);
    }
    // A name of no known family goes to the agent's only bound provider.
    const local = plan({
      model: 'llama3.1:8b',
      bindings: { openai_compatible: 'pkey_l' },
      routing: { max_retries: 1 },
    });
    expect(route(local.attempts)).toEqual(['openai_compatible:pkey_l:llama3.1:8b']);
    // With a key for the implied provider, other providers need a mapping to follow it.
    const both: ProviderBindings = { anthropic: 'pkey_a', openai_compatible: 'pkey_l' };
    expect(route(plan({ bindings: both, routing: { max_retries: 2 } }).attempts)).toEqual([
      'anthropic:pkey_a:claude-sonnet-4-5',
      'anthropic:pkey_a:claude-sonnet-4-5',
    ]);
    const mappedBoth = plan({
      bindings: both,
      routing: { max_retries: 2 },
      modelMapping: { 'claude-sonnet-4-5': { openai_compatible: 'qwen3' } },
    });
    expect(route(mappedBoth.attempts)).toEqual([
      'anthropic:pkey_a:claude-sonnet-4-5',
      'openai_compatible:pkey_l:qwen3',
    ]);
    // No key for the implied provider: the bound providers that can serve the name (a gateway such as OpenRouter).
    const viaGateway = plan({ bindings: { openai_compatible: 'pkey_l' }, routing: { max_retries: 1 } });
    expect(route(viaGateway.attempts)).toEqual(['openai_compatible:pkey_l:claude-sonnet-4-5']);
  });

  it("the agent's routing_override beats the policy's chain, routes and timeout", () => {
    const p = plan({
      model: 'gpt-4o',
      routing: {
        default_chain: ['openai'],
        model_routes: [{ pattern: 'gpt-*', chain: ['openai'], timeout_ms: 20_000 }],
        max_retries: 2,
      },
      override: { default_chain: ['anthropic', 'openai'], model_routes: [], timeout_ms: 90_000 },
      modelMapping: { 'gpt-4o': { anthropic: 'claude-sonnet-4-5' } },
    });
    expect(route(p.attempts)).toEqual(['anthropic:pkey_a:claude-sonnet-4-5', 'openai:pkey_o:gpt-4o']);
    expect(p.attempts.every((a) => a.timeoutMs === 90_000)).toBe(true);
    // The agent's timeout beats a policy route's timeout too.
    const q = plan({
      model: 'gpt-4o',
      routing: { model_routes: [{ pattern: 'gpt-*', chain: ['openai'], timeout_ms: 20_000 }] },
      override: { timeout_ms: 90_000 },
    });
    expect(q.attempts[0]!.timeoutMs).toBe(90_000);
  });

  it('never lets connect_timeout_ms exceed the total timeout', () => {
    const p = plan({ routing: { timeout_ms: 3_000, connect_timeout_ms: 10_000 } });
    expect(p.attempts[0]).toMatchObject({ timeoutMs: 3_000, connectTimeoutMs: 3_000 });
  });
});

describe('models across providers', () => {
  it('maps the model per provider and skips a foreign provider with no mapping', () => {
    const p = plan({ routing: { default_chain: ['openai', 'anthropic'], max_retries: 3 } });
    // openai has no mapping for a claude model: skipped; anthropic keeps it.
    expect(route(p.attempts)).toEqual([
      'anthropic:pkey_a:claude-sonnet-4-5',
      'anthropic:pkey_a:claude-sonnet-4-5',
      'anthropic:pkey_a:claude-sonnet-4-5',
    ]);
    const mapped = plan({
      routing: { default_chain: ['openai', 'anthropic'], max_retries: 2 },
      modelMapping: { 'claude-*': { openai: 'gpt-4.1' } },
    });
    expect(route(mapped.attempts)).toEqual(['openai:pkey_o:gpt-4.1', 'anthropic:pkey_a:claude-sonnet-4-5']);
  });

  it('knows the families, and lets openai_compatible serve any name', () => {
    expect(modelFamily('claude-3-5-haiku')).toBe('anthropic');
    expect(modelFamily('gpt-4o-mini')).toBe('openai');
    expect(modelFamily('mistral-large')).toBeNull();
    expect(modelFor('anthropic', 'gpt-4o', {})).toBeUndefined();
    expect(modelFor('openai', 'gpt-4o', null)).toBe('gpt-4o');
    expect(modelFor('openai', 'mistral-large', null)).toBe('mistral-large');
    expect(modelFor('openai_compatible', 'claude-3-5-haiku', null)).toBe('claude-3-5-haiku');
    expect(modelFor('anthropic', 'gpt-4o', { 'gpt-4o': { anthropic: 'claude-opus-4-1' } })).toBe(
      'claude-opus-4-1',
    );
    // An exact entry beats a glob; a null target is no mapping.
    const mapping = { 'gpt-*': { anthropic: 'claude-haiku' }, 'gpt-4o': { anthropic: null } };
    expect(modelFor('anthropic', 'gpt-4o', mapping)).toBe('claude-haiku');
    expect(
      modelFor('anthropic', 'gpt-4o', {
        'gpt-*': { anthropic: 'claude-haiku' },
        'gpt-4o': { anthropic: 'claude-x' },
      }),
    ).toBe('claude-x');
  });
});

describe('skipping keys', () => {
  it('skips providers with no bound key, disabled keys and open circuits', () => {
    const routing = { default_chain: ['openai', 'anthropic', 'openai_compatible'] as const, max_retries: 3 };
    const mapping = { 'claude-sonnet-4-5': { openai: 'gpt-4o', openai_compatible: 'qwen3' } };
    // openai_compatible has no key bound: never in the plan.
    const all = plan({
      routing: { ...routing, default_chain: [...routing.default_chain] },
      modelMapping: mapping,
    });
    expect(all.attempts.map((a) => a.provider)).toEqual(['openai', 'anthropic', 'openai']);

    const disabled = plan({
      routing: { ...routing, default_chain: [...routing.default_chain] },
      modelMapping: mapping,
      isKeyUsable: (id) => id !== 'pkey_o',
    });
    expect(disabled.attempts.map((a) => a.keyId)).toEqual(['pkey_a', 'pkey_a', 'pkey_a']);

    const clock = new ManualClock(0);
    const health = new ProviderHealthRegistry(clock);
    health.track('pkey_a', 'anthropic', {
      failure_threshold: 1,
      recovery_timeout_ms: 5_000,
      max_recovery_timeout_ms: 60_000,
    });
    health.recordFailure('pkey_a', 'http_error');
    const open = plan({
      routing: {
        ...routing,
        default_chain: [...routing.default_chain],
        circuit_breaker: {
          failure_threshold: 1,
          recovery_timeout_ms: 5_000,
          max_recovery_timeout_ms: 60_000,
        },
      },
      modelMapping: mapping,
      health,
    });
    expect(open.attempts.map((a) => a.keyId)).toEqual(['pkey_o', 'pkey_o', 'pkey_o']);

    // Everything unusable: an empty plan (the proxy answers 502).
    expect(plan({ isKeyUsable: () => false }).attempts).toEqual([]);
  });

  it('a half-open key gets one probe, never repeated to fill the budget', () => {
    const clock = new ManualClock(0);
    const health = new ProviderHealthRegistry(clock);
    const breaker = { failure_threshold: 1, recovery_timeout_ms: 1_000, max_recovery_timeout_ms: 10_000 };
    health.track('pkey_a', 'anthropic', breaker);
    health.recordFailure('pkey_a', 'request_timeout');
    clock.advance(1_000);
    const routing = { circuit_breaker: breaker, max_retries: 3 };
    const p = plan({ routing, health });
    expect(route(p.attempts)).toEqual(['anthropic:pkey_a:claude-sonnet-4-5']);
    expect(health.state('pkey_a')).toBe('half_open');
    // While the probe is out, nothing else is routed to the key.
    expect(plan({ routing, health }).attempts).toEqual([]);
  });
});

describe('choosing keys within a provider', () => {
  const bindings: ProviderBindings = {
    anthropic: [
      { key_id: 'pkey_k1', weight: 70 },
      { key_id: 'pkey_k2', weight: 20 },
      { key_id: 'pkey_k3', weight: 10 },
    ],
  };

  it('failover: keys in their bound order', () => {
    const p = plan({ bindings, routing: { load_balancing: 'failover', max_retries: 3 } });
    expect(p.attempts.map((a) => a.keyId)).toEqual(['pkey_k1', 'pkey_k2', 'pkey_k3']);
  });

  it('round robin: rotates the first key per agent and provider, the rest follow as failover', () => {
    const rr = new RoundRobinCounters();
    const firsts: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const p = plan({
        bindings,
        roundRobin: rr,
        routing: { load_balancing: 'round_robin', max_retries: 3 },
      });
      firsts.push(p.attempts.map((a) => a.keyId));
    }
    expect(firsts).toEqual([
      ['pkey_k1', 'pkey_k2', 'pkey_k3'],
      ['pkey_k2', 'pkey_k3', 'pkey_k1'],
      ['pkey_k3', 'pkey_k1', 'pkey_k2'],
      ['pkey_k1', 'pkey_k2', 'pkey_k3'],
    ]);
    // Another agent has its own turn.
    const other = plan({
      bindings,
      agentId: 'agt_2',
      roundRobin: rr,
      routing: { load_balancing: 'round_robin', max_retries: 1 },
    });
    expect(other.attempts.map((a) => a.keyId)).toEqual(['pkey_k1']);
    // A disabled key is passed over without moving the others' turns.
    const skip = plan({
      bindings,
      roundRobin: rr,
      isKeyUsable: (id) => id !== 'pkey_k2',
      routing: { load_balancing: 'round_robin', max_retries: 2 },
    });
    expect(skip.attempts.map((a) => a.keyId)).toEqual(['pkey_k3', 'pkey_k1']);
  });

  it('the agent override picks the load balancing', () => {
    const rr = new RoundRobinCounters();
    const keys = () =>
      plan({
        bindings,
        roundRobin: rr,
        routing: { load_balancing: 'failover', max_retries: 1 },
        override: { load_balancing: 'round_robin' },
      }).attempts[0]!.keyId;
    expect([keys(), keys(), keys()]).toEqual(['pkey_k1', 'pkey_k2', 'pkey_k3']);
  });

  it('weighted: the first key is drawn by weight, over many draws', () => {
    const random = seeded(42);
    const counts: Record<string, number> = { pkey_k1: 0, pkey_k2: 0, pkey_k3: 0 };
    const draws = 20_000;
    for (let i = 0; i < draws; i++) {
      const p = plan({ bindings, random, routing: { load_balancing: 'weighted', max_retries: 3 } });
      counts[p.attempts[0]!.keyId]!++;
      // The others follow as failover, each key once.
      expect(new Set(p.attempts.map((a) => a.keyId)).size).toBe(3);
    }
    expect(counts.pkey_k1! / draws).toBeCloseTo(0.7, 1);
    expect(counts.pkey_k2! / draws).toBeCloseTo(0.2, 1);
    expect(counts.pkey_k3! / draws).toBeCloseTo(0.1, 1);
    expect(Math.abs(counts.pkey_k1! / draws - 0.7)).toBeLessThan(0.015);
    expect(Math.abs(counts.pkey_k3! / draws - 0.1)).toBeLessThan(0.015);
  });

  it('weighted: an excluded key takes no share', () => {
    const random = seeded(7);
    for (let i = 0; i < 500; i++) {
      const p = plan({
        bindings,
        random,
        isKeyUsable: (id) => id !== 'pkey_k1',
        routing: { load_balancing: 'weighted', max_retries: 1 },
      });
      expect(p.attempts[0]!.keyId).not.toBe('pkey_k1');
    }
  });
});

describe('the attempt budget', () => {
  it('max_retries is the total number of attempts across the plan', () => {
    const bindings: ProviderBindings = {
      anthropic: [
        { key_id: 'pkey_a1', weight: 1 },
        { key_id: 'pkey_a2', weight: 1 },
      ],
      openai: 'pkey_o1',
    };
    const mapping = { 'claude-sonnet-4-5': { openai: 'gpt-4o' } };
    const two = plan({
      bindings,
      modelMapping: mapping,
      routing: { default_chain: ['anthropic', 'openai'], max_retries: 2 },
    });
    expect(two.attempts.map((a) => a.keyId)).toEqual(['pkey_a1', 'pkey_a2']);
    expect(two.maxAttempts).toBe(2);
    const three = plan({
      bindings,
      modelMapping: mapping,
      routing: { default_chain: ['anthropic', 'openai'], max_retries: 3 },
    });
    expect(three.attempts.map((a) => a.keyId)).toEqual(['pkey_a1', 'pkey_a2', 'pkey_o1']);
    expect(three.attempts.every((a) => !a.repeat)).toBe(true);
  });

  it('fewer keys than attempts: the same keys are tried again, marked as repeats', () => {
    const p = plan({ routing: { max_retries: 3 } });
    expect(p.attempts.map((a) => [a.keyId, a.repeat])).toEqual([
      ['pkey_a', false],
      ['pkey_a', true],
      ['pkey_a', true],
    ]);
  });

  it('retries only the statuses in retry_on', () => {
    const p = plan({ routing: { retry_on: [429, 503], on_rate_limit: 'backoff_first' } });
    expect(p.shouldRetry(429)).toBe(true);
    expect(p.shouldRetry(503)).toBe(true);
    expect(p.shouldRetry(500)).toBe(false);
    expect(p.shouldRetry(400)).toBe(false);
    expect(p.retryOn).toEqual([429, 503]);
    expect(p.onRateLimit).toBe('backoff_first');
    const d = plan({ routing: null });
    expect(d.retryOn).toEqual([429, 500, 502, 503, 504, 529]);
    expect(d.maxAttempts).toBe(3);
    expect(d.onRateLimit).toBe('failover_first');
  });
});

describe('routing preference', () => {
  const bindings: ProviderBindings = { anthropic: 'pkey_a', openai: 'pkey_o', openai_compatible: 'pkey_c' };
  const routing = {
    default_chain: ['anthropic' as const, 'openai' as const, 'openai_compatible' as const],
    max_retries: 3,
  };
  const modelMapping = { 'claude-sonnet-4-5': { openai: 'gpt-4o', openai_compatible: 'qwen3' } };

  it('cost: cheapest first, unknown prices last', () => {
    const prices: Record<string, number> = { 'claude-sonnet-4-5': 3, 'gpt-4o': 2.5 };
    const p = plan({
      bindings,
      modelMapping,
      routing: { ...routing, routing_preference: 'cost' },
      priceOf: (_provider, model) => prices[model],
    });
    expect(p.attempts.map((a) => a.provider)).toEqual(['openai', 'anthropic', 'openai_compatible']);
    // "default" keeps the chain as written even with prices at hand.
    const d = plan({ bindings, modelMapping, routing, priceOf: (_p, model) => prices[model] });
    expect(d.attempts.map((a) => a.provider)).toEqual(['anthropic', 'openai', 'openai_compatible']);
  });

  it('latency: fastest observed p50 first; a key never measured goes first once', () => {
    const health = new ProviderHealthRegistry(new ManualClock(0));
    for (const ms of [900, 1000, 1100]) health.recordSuccess('pkey_a', ms);
    for (const ms of [300, 200, 250, 5000]) health.recordSuccess('pkey_o', ms);
    expect(health.p50LatencyMs('pkey_o')).toBe(275);
    const p = plan({
      bindings,
      modelMapping,
      health,
      override: { routing_preference: 'latency' },
      routing,
    });
    expect(p.attempts.map((a) => a.provider)).toEqual(['openai_compatible', 'openai', 'anthropic']);
    health.recordSuccess('pkey_c', 2000);
    const q = plan({ bindings, modelMapping, health, override: { routing_preference: 'latency' }, routing });
    expect(q.attempts.map((a) => a.provider)).toEqual(['openai', 'anthropic', 'openai_compatible']);
  });
});

describe('the circuit breaker', () => {
  const config = {
    failure_threshold: 3,
    recovery_timeout_ms: 10 * SECOND_MS,
    max_recovery_timeout_ms: 35 * SECOND_MS,
  };

  it('opens after failure_threshold consecutive failures; a success in between resets the count', () => {
    const clock = new ManualClock(0);
    const h = new ProviderHealthRegistry(clock);
    h.track('k', 'openai', config);
    h.recordFailure('k', 'http_error');
    h.recordFailure('k', 'http_error');
    h.recordSuccess('k', 100);
    h.recordFailure('k', 'http_error');
    h.recordFailure('k', 'http_error');
    expect(h.state('k')).toBe('closed');
    expect(h.canAttempt('k')).toBe(true);
    h.recordFailure('k', 'tcp_connect_timeout');
    expect(h.state('k')).toBe('open');
    expect(h.canAttempt('k')).toBe(false);
    const [snap] = h.snapshot([{ id: 'k', provider: 'openai' }]);
    expect(snap).toMatchObject({
      provider_key_id: 'k',
      provider: 'openai',
      state: 'open',
      failure_count: 3,
      opened_at: new Date(0).toISOString(),
      recovery_at: new Date(10_000).toISOString(),
      last_success_at: new Date(0).toISOString(),
      p50_latency_ms: 100,
    });
  });

  it('half-opens after the recovery timeout, doubles it on each failed probe up to the cap, and resets on success', () => {
    const clock = new ManualClock(0);
    const h = new ProviderHealthRegistry(clock);
    h.track('k', 'anthropic', config);
    for (let i = 0; i < 3; i++) h.recordFailure('k', 'http_error');

    const probeAfter = (ms: number) => {
      clock.advance(ms - 1);
      expect(h.canAttempt('k'), `not before ${ms} ms`).toBe(false);
      clock.advance(1);
      expect(h.canAttempt('k'), `at ${ms} ms`).toBe(true);
      expect(h.state('k')).toBe('half_open');
      // One probe at a time.
      expect(h.canAttempt('k')).toBe(false);
    };

    probeAfter(10_000);
    h.recordFailure('k', 'http_error');
    expect(h.state('k')).toBe('open');
    probeAfter(20_000);
    h.recordFailure('k', 'http_error');
    // 40 s would exceed the cap of 35 s.
    probeAfter(35_000);
    h.recordFailure('k', 'http_error');
    probeAfter(35_000);
    h.recordSuccess('k', 50);
    expect(h.state('k')).toBe('closed');
    expect(h.snapshot([{ id: 'k', provider: 'anthropic' }])[0]).toMatchObject({
      state: 'closed',
      failure_count: 0,
      opened_at: null,
      recovery_at: null,
    });

    // Reset: the next opening starts from the base timeout again.
    for (let i = 0; i < 3; i++) h.recordFailure('k', 'http_error');
    probeAfter(10_000);
  });

  it('a probe that never reports back frees the slot after another cooldown', () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker(config);
    for (let i = 0; i < 3; i++) b.recordFailure(clock.now().getTime());
    clock.advance(10_000);
    expect(b.tryAcquire(clock.now().getTime())).toBe(true);
    clock.advance(9_999);
    expect(b.tryAcquire(clock.now().getTime())).toBe(false);
    clock.advance(1);
    expect(b.tryAcquire(clock.now().getTime())).toBe(true);
  });

  it('failure_threshold 0 disables it; a client disconnect is not the provider failing', () => {
    const h = new ProviderHealthRegistry(new ManualClock(0));
    h.track('k', 'openai', { ...config, failure_threshold: 0 });
    for (let i = 0; i < 50; i++) h.recordFailure('k', 'http_error');
    expect(h.canAttempt('k')).toBe(true);
    expect(h.snapshot([{ id: 'k', provider: 'openai' }])[0]).toMatchObject({
      state: 'closed',
      failure_count: 50,
    });

    h.track('j', 'openai', config);
    for (let i = 0; i < 10; i++) h.recordFailure('j', 'client_disconnect');
    expect(h.state('j')).toBe('closed');
  });

  it('uses the defaults (5 failures, 30 s) for a key no policy has configured', () => {
    const clock = new ManualClock(0);
    const h = new ProviderHealthRegistry(clock);
    for (let i = 0; i < 4; i++) h.recordFailure('k', 'http_error');
    expect(h.canAttempt('k')).toBe(true);
    h.recordFailure('k', 'http_error');
    expect(h.canAttempt('k')).toBe(false);
    clock.advance(30_000);
    expect(h.canAttempt('k')).toBe(true);
  });

  it('a Router plans with its registry and remembers round robin turns', () => {
    const clock = new ManualClock(0);
    const health = new ProviderHealthRegistry(clock);
    const router = new Router({ health, random: seeded(1) });
    const input = {
      routing: {
        load_balancing: 'round_robin' as const,
        max_retries: 1,
        circuit_breaker: { failure_threshold: 1, recovery_timeout_ms: 1000, max_recovery_timeout_ms: 1000 },
      },
      bindings: {
        openai: [
          { key_id: 'pkey_x' as const, weight: 1 },
          { key_id: 'pkey_y' as const, weight: 1 },
        ],
      },
      model: 'gpt-4o',
      agentId: 'agt_r',
    };
    expect(router.plan(input).attempts[0]!.keyId).toBe('pkey_x');
    expect(router.plan(input).attempts[0]!.keyId).toBe('pkey_y');
    // The plan told the registry the policy's breaker settings: one failure opens x.
    health.recordFailure('pkey_x', 'http_error');
    expect(router.plan(input).attempts[0]!.keyId).toBe('pkey_y');
    expect(router.plan(input).attempts[0]!.keyId).toBe('pkey_y');
  });
});

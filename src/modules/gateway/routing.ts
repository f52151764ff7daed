// One file over 400 lines: the routing plan is one algorithm over one settled
// config (the chain per model, the route cached per bindings, keys ordered by
// load balancing and preference, the plan cut to the retry budget).
import type { Static } from 'typebox';
import type { ProviderKeyId } from '../../core/ids.ts';
import type { RoutingOverride as AgentRoutingOverride } from '../agents/schemas.ts';
import { POLICY_DEFAULTS, type PolicySpec } from '../policies/spec.ts';
import type { CircuitBreakerConfig, CircuitState } from './circuit-breaker.ts';
import { globMatch } from './glob.ts';
import { PROVIDERS, type Provider } from './provider-call.ts';

// The attempt plan for one proxied call: which provider, key and model to try,
// in which order, with which timeouts. Pure and synchronous (no database): the
// proxy calls it on every request with what it already holds in memory.

/** A policy's `routing` object (modules/policies owns its schema and defaults). */
export type RoutingConfig = PolicySpec['routing'];
export type ModelRoute = RoutingConfig['model_routes'][number];
export type LoadBalancing = RoutingConfig['load_balancing'];
export type RoutingPreference = RoutingConfig['routing_preference'];

/** An agent's `routing_override`: each field it sets beats the policy's. */
export type RoutingOverride = NonNullable<Static<typeof AgentRoutingOverride>>;

/** An agent's `provider_keys`: provider → key id, or `[{key_id, weight}]`. */
export type ProviderBindings = Partial<
  Record<string, ProviderKeyId | Array<{ key_id: ProviderKeyId; weight: number }>>
>;

/** `{ sourceModel (or glob): { provider: targetModel } }`. */
export type ModelMapping = Record<string, Partial<Record<string, string | null>> | null>;

const ROUTING_DEFAULTS: RoutingConfig = POLICY_DEFAULTS.routing;

export interface Attempt {
  provider: Provider;
  keyId: ProviderKeyId;
  model: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  /** A second try of a key already in the plan (the plan had fewer keys than attempts). */
  repeat: boolean;
}

export interface AttemptPlan {
  attempts: Attempt[];
  /** Shared by every plan of the same routing: read, never changed. */
  retryOn: readonly number[];
  onRateLimit: 'failover_first' | 'backoff_first';
  /** routing.max_retries: total attempts. */
  maxAttempts: number;
  /** Whether a provider answer with this status moves on to the next attempt. */
  shouldRetry(status: number): boolean;
}

/** What routing reads from the health registry (ProviderHealthRegistry implements it). */
export interface KeyHealthView {
  /** Claims the attempt (the half-open probe, when due); false while the circuit is open. */
  canAttempt(keyId: ProviderKeyId): boolean;
  /** The same question without claiming anything. */
  isAvailable(keyId: ProviderKeyId): boolean;
  state(keyId: ProviderKeyId): CircuitState;
  p50LatencyMs(keyId: ProviderKeyId): number | null;
  track?(keyId: ProviderKeyId, provider: Provider, config: CircuitBreakerConfig): void;
}

/** USD per million tokens (any consistent unit) of `model` on `provider` with `keyId`; undefined = unknown. */
export type PriceOf = (provider: Provider, model: string, keyId: ProviderKeyId) => number | undefined;

export interface PlanInput {
  /** The policy's routing (missing fields take ROUTING_DEFAULTS). */
  routing: Partial<RoutingConfig> | null | undefined;
  override?: RoutingOverride | null;
  bindings: ProviderBindings;
  model: string;
  modelMapping?: ModelMapping | null;
  /** Round robin rotates per agent and provider. */
  agentId: string;
  /** False for keys that are disabled, deleted or unknown. Default: every key is usable. */
  isKeyUsable?: (keyId: ProviderKeyId) => boolean;
  health?: KeyHealthView;
  /** [0, 1), for weighted choice; Math.random by default. */
  random?: () => number;
  /** For routing_preference "cost". */
  priceOf?: PriceOf;
  roundRobin?: RoundRobinCounters;
}

/** The model family a model name belongs to, when it says (claude-… / gpt-…, o1…, o3…, o4…). */
export function modelFamily(model: string): 'anthropic' | 'openai' | null {
  if (model.startsWith('claude-')) return 'anthropic';
  if (/^(gpt-|chatgpt-|o1|o3|o4)/.test(model)) return 'openai';
  return null;
}

/** Per agent and provider counters for round robin; one per process. */
export class RoundRobinCounters {
  private readonly counters = new Map<string, number>();

  /** The start index for this call, and moves the counter on. */
  next(agentId: string, provider: string, size: number): number {
    const key = `${agentId}\u0000${provider}`;
    const n = this.counters.get(key) ?? 0;
    if (this.counters.size >= 100_000) this.counters.clear();
    this.counters.set(key, n + 1);
    return n % size;
  }
}

const defaultRoundRobin = new RoundRobinCounters();

/** What a routing object settles for every call it plans, worked out once per object. */
interface Settled {
  config: RoutingConfig;
  retryOn: readonly number[];
  shouldRetry: (status: number) => boolean;
}

// Keyed by the policy's routing object, which the proxy's policy cache hands out unchanged until it
// reloads the policy: planning runs on every call, and this part of it does not depend on the call.
const settledByRouting = new WeakMap<object, Settled>();
let settledDefault: Settled | undefined;

function settle(routing: Partial<RoutingConfig> | null | undefined): Settled {
  const cached = routing ? settledByRouting.get(routing) : settledDefault;
  if (cached) return cached;
  const config = effectiveConfig(routing);
  const retrySet = new Set(config.retry_on);
  const settled: Settled = {
    config,
    retryOn: Object.freeze([...config.retry_on]),
    shouldRetry: (status) => retrySet.has(status),
  };
  if (routing) settledByRouting.set(routing, settled);
  else settledDefault = settled;
  return settled;
}

function effectiveConfig(routing: Partial<RoutingConfig> | null | undefined): RoutingConfig {
  const r = routing ?? {};
  return {
    default_chain: r.default_chain ?? ROUTING_DEFAULTS.default_chain,
    model_routes: r.model_routes ?? ROUTING_DEFAULTS.model_routes,
    timeout_ms: r.timeout_ms ?? ROUTING_DEFAULTS.timeout_ms,
    connect_timeout_ms: r.connect_timeout_ms ?? ROUTING_DEFAULTS.connect_timeout_ms,
    retry_on: r.retry_on ?? ROUTING_DEFAULTS.retry_on,
    max_retries: r.max_retries ?? ROUTING_DEFAULTS.max_retries,
    on_rate_limit: r.on_rate_limit ?? ROUTING_DEFAULTS.on_rate_limit,
    load_balancing: r.load_balancing ?? ROUTING_DEFAULTS.load_balancing,
    circuit_breaker: { ...ROUTING_DEFAULTS.circuit_breaker, ...r.circuit_breaker },
    routing_preference: r.routing_preference ?? ROUTING_DEFAULTS.routing_preference,
  };
}

/** The keys bound for a provider, as [{keyId, weight}] (a single id weighs 1). */
function boundKeys(
  bindings: ProviderBindings,
  provider: string,
): Array<{ keyId: ProviderKeyId; weight: number }> {
  const b = bindings[provider];
  if (b === undefined) return [];
  if (typeof b === 'string') return b.length === 0 ? [] : [{ keyId: b, weight: 1 }];
  return b.filter((k) => k.weight > 0).map((k) => ({ keyId: k.key_id, weight: k.weight }));
}

/** The chain and per-route timeout in force for `model`. */
export function resolveChain(
  config: RoutingConfig,
  override: RoutingOverride | null | undefined,
  model: string,
  bindings: ProviderBindings,
  mapping: ModelMapping | null | undefined,
): { chain: Provider[]; timeoutMs: number } {
  const routes = override?.model_routes ?? config.model_routes;
  // First matching pattern wins (Rungate).
  const route = routes.find((r) => globMatch(r.pattern, model));
  // An agent's timeout beats the policy's for all its calls; a route of the agent's own beats both.
  const timeoutMs =
    override?.model_routes && route?.timeout_ms !== undefined
      ? route.timeout_ms
      : (override?.timeout_ms ?? route?.timeout_ms ?? config.timeout_ms);
  let chain: Provider[] = route ? route.chain : (override?.default_chain ?? config.default_chain);
  if (chain.length === 0) chain = impliedChain(model, bindings, mapping);
  return { chain: [...new Set(chain)], timeoutMs };
}

/**
 * An empty chain means: the provider the model's name implies, then the
 * agent's other bound providers that have a mapping for the model. A name of
 * no known family, or an agent with no key for the implied provider, goes to
 * the bound providers in their binding order (those that can serve the
 * model: an openai_compatible endpoint serves any name).
 */
function impliedChain(
  model: string,
  bindings: ProviderBindings,
  mapping: ModelMapping | null | undefined,
): Provider[] {
  const bound = Object.keys(bindings).filter(
    (p): p is Provider => (PROVIDERS as readonly string[]).includes(p) && bindings[p] !== undefined,
  );
  const family = modelFamily(model);
  if (family === null || !bound.includes(family)) return bound;
  return [family, ...bound.filter((p) => p !== family && mappedModel(mapping, model, p) !== undefined)];
}

function mappedModel(mapping: ModelMapping | null | undefined, model: string, provider: string) {
  if (!mapping) return undefined;
  const exact = Object.hasOwn(mapping, model) ? mapping[model] : undefined;
  const pick = (m: Partial<Record<string, string | null>> | null | undefined) => {
    const target = m && Object.hasOwn(m, provider) ? m[provider] : undefined;
    return typeof target === 'string' && target !== '' ? target : undefined;
  };
  const direct = pick(exact);
  if (direct !== undefined) return direct;
  // Then the first glob entry that matches and maps this provider.
  for (const [pattern, m] of Object.entries(mapping)) {
    if (pattern !== model && (pattern.includes('*') || pattern.includes('?')) && globMatch(pattern, model)) {
      const target = pick(m);
      if (target !== undefined) return target;
    }
  }
  return undefined;
}

/**
 * The model to ask `provider` for: the mapping's when it has one; otherwise
 * the requested model when the provider can serve it (same family, a name of
 * no known family, or an openai_compatible endpoint, which serves whatever it
 * is configured to); otherwise undefined and the provider is skipped.
 */
export function modelFor(
  provider: Provider,
  model: string,
  mapping: ModelMapping | null | undefined,
): string | undefined {
  const mapped = mappedModel(mapping, model, provider);
  if (mapped !== undefined) return mapped;
  if (provider === 'openai_compatible') return model;
  const family = modelFamily(model);
  return family === null || family === provider ? model : undefined;
}

/** Weighted sampling without replacement: the first is the pick, the rest the failover order. */
function weightedOrder<T extends { weight: number }>(items: T[], random: () => number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (pool.length > 0) {
    const total = pool.reduce((s, k) => s + k.weight, 0);
    let r = random() * total;
    let i = 0;
    for (; i < pool.length - 1; i++) {
      r -= pool[i]!.weight;
      if (r < 0) break;
    }
    out.push(pool.splice(i, 1)[0]!);
  }
  return out;
}

interface ProviderCandidates {
  provider: Provider;
  model: string;
  keys: ProviderKeyId[];
}

/** What a plan takes from the agent's and policy's settings alone: the same for every call until they change. */
interface Route {
  timeoutMs: number;
  connectTimeoutMs: number;
  /** Providers in chain order that can serve the model, with the model asked of each and the keys bound. */
  providers: Array<{
    provider: Provider;
    model: string;
    bound: Array<{ keyId: ProviderKeyId; weight: number }>;
  }>;
}

/**
 * Routes by the agent's bindings object (which the agent cache hands out unchanged until it reloads
 * the agent), then by model; an entry holds the routing, override and mapping it was made from and
 * is remade when any of them is another object.
 */
interface CachedRoute extends Route {
  routing: PlanInput['routing'];
  override: RoutingOverride | null;
  mapping: PlanInput['modelMapping'];
}
const routesByBindings = new WeakMap<object, Map<string, CachedRoute>>();
const MAX_ROUTES_PER_BINDINGS = 100;

function routeFor(input: PlanInput, settled: Settled, override: RoutingOverride | null): Route {
  const cacheable = typeof input.bindings === 'object' && input.bindings !== null;
  let byModel = cacheable ? routesByBindings.get(input.bindings) : undefined;
  const hit = byModel?.get(input.model);
  if (hit && hit.routing === input.routing && hit.override === override && hit.mapping === input.modelMapping)
    return hit;
  const config = settled.config;
  const { chain, timeoutMs } = resolveChain(
    config,
    override,
    input.model,
    input.bindings,
    input.modelMapping,
  );
  const route: CachedRoute = {
    routing: input.routing,
    override,
    mapping: input.modelMapping,
    timeoutMs,
    connectTimeoutMs: Math.min(config.connect_timeout_ms, timeoutMs),
    providers: [],
  };
  for (const provider of chain) {
    const model = modelFor(provider, input.model, input.modelMapping);
    if (model !== undefined)
      route.providers.push({ provider, model, bound: boundKeys(input.bindings, provider) });
  }
  if (!cacheable) return route;
  if (!byModel) {
    byModel = new Map();
    routesByBindings.set(input.bindings, byModel);
  }
  if (byModel.size >= MAX_ROUTES_PER_BINDINGS) byModel.clear();
  byModel.set(input.model, route);
  return route;
}

/** The plan: providers in chain order (re-ordered by preference), keys per load balancing, cut to the budget. */
export function planAttempts(input: PlanInput): AttemptPlan {
  const settled = settle(input.routing);
  const config = settled.config;
  const override = input.override ?? null;
  const loadBalancing = override?.load_balancing ?? config.load_balancing;
  const preference = override?.routing_preference ?? config.routing_preference;
  const random = input.random ?? Math.random;
  const health = input.health;
  const usable = input.isKeyUsable ?? (() => true);
  const maxAttempts = Math.max(1, Math.floor(config.max_retries));
  const { timeoutMs, connectTimeoutMs, providers } = routeFor(input, settled, override);

  const candidates: ProviderCandidates[] = [];
  for (const { provider, model, bound } of providers) {
    for (const k of bound) health?.track?.(k.keyId, provider, config.circuit_breaker);
    const open = bound.filter((k) => usable(k.keyId) && (health?.isAvailable(k.keyId) ?? true));
    if (open.length === 0) continue;
    let ordered: typeof open;
    if (loadBalancing === 'weighted') {
      ordered = weightedOrder(open, random);
    } else if (loadBalancing === 'round_robin' && open.length > 1) {
      // Rotate over the full binding so each key's turn stays put when one is skipped.
      const start = (input.roundRobin ?? defaultRoundRobin).next(input.agentId, provider, bound.length);
      const rotated = [...bound.slice(start), ...bound.slice(0, start)];
      ordered = rotated.filter((k) => open.includes(k));
    } else {
      ordered = open;
    }
    candidates.push({ provider, model, keys: ordered.map((k) => k.keyId) });
  }

  if (preference === 'cost' && input.priceOf) {
    const priceOf = input.priceOf;
    sortBy(candidates, (c) => priceOf(c.provider, c.model, c.keys[0]!), 'unknown_last');
  } else if (preference === 'latency' && health) {
    // A key never measured goes first once, so it gets measured at all.
    sortBy(candidates, (c) => health.p50LatencyMs(c.keys[0]!) ?? undefined, 'unknown_first');
  }

  const attempts: Attempt[] = [];
  const firstPass: Attempt[] = [];
  for (const c of candidates) {
    for (const keyId of c.keys) {
      if (attempts.length >= maxAttempts) break;
      const probe = health !== undefined && health.state(keyId) !== 'closed';
      // Claim the attempt only for keys the plan really uses (a half-open probe is one call).
      if (health && !health.canAttempt(keyId)) continue;
      const attempt = {
        provider: c.provider,
        keyId,
        model: c.model,
        timeoutMs,
        connectTimeoutMs,
        repeat: false,
      };
      attempts.push(attempt);
      if (!probe) firstPass.push(attempt);
    }
  }
  // Fewer keys than the attempt budget: try them again, in the same order (never a half-open probe twice).
  for (let i = 0; attempts.length < maxAttempts && firstPass.length > 0; i++) {
    const again = firstPass[i % firstPass.length]!;
    attempts.push({
      provider: again.provider,
      keyId: again.keyId,
      model: again.model,
      timeoutMs: again.timeoutMs,
      connectTimeoutMs: again.connectTimeoutMs,
      repeat: true,
    });
  }

  return {
    attempts,
    retryOn: settled.retryOn,
    onRateLimit: config.on_rate_limit,
    maxAttempts,
    shouldRetry: settled.shouldRetry,
  };
}

/** Stable sort by a numeric score; undefined scores go last (or first). */
function sortBy<T>(
  items: T[],
  score: (item: T) => number | undefined,
  unknown: 'unknown_last' | 'unknown_first',
) {
  const fallback = unknown === 'unknown_last' ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  const scored = items.map((item, index) => ({ item, index, s: score(item) ?? fallback }));
  scored.sort((a, b) => a.s - b.s || a.index - b.index);
  for (let i = 0; i < items.length; i++) items[i] = scored[i]!.item;
}

/**
 * Routing with its per-process state (health registry, round robin counters,
 * random source, prices) bound once; the proxy calls `plan` per request.
 */
export class Router {
  private readonly roundRobin = new RoundRobinCounters();

  constructor(
    private readonly deps: { health?: KeyHealthView; random?: () => number; priceOf?: PriceOf } = {},
  ) {}

  plan(input: Omit<PlanInput, 'health' | 'random' | 'priceOf' | 'roundRobin'>): AttemptPlan {
    // Field by field rather than spreading both objects: this runs on every proxied call.
    const { health, random, priceOf } = this.deps;
    return planAttempts({
      routing: input.routing,
      override: input.override,
      bindings: input.bindings,
      model: input.model,
      modelMapping: input.modelMapping,
      agentId: input.agentId,
      isKeyUsable: input.isKeyUsable,
      health,
      random,
      priceOf,
      roundRobin: this.roundRobin,
    });
  }
}

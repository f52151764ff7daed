// One file over ~400 lines: the policy document is one schema, and every type
// and default the gateway, routing and circuit breakers use is derived from it
// here (Static<>); splitting the schema from its defaults and checks would put
// the one definition in two places again.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { type Static, type TSchema, Type } from 'typebox';
import { ValidationError } from '../../core/errors.ts';
import { PROVIDERS, type Provider } from '../gateway/provider-call.ts';
import { POLICY_DEFAULTS as DEFAULTS, ENDED_REASONS } from './defaults.ts';

export { ENDED_REASONS };

/**
 * The policy document (Rungate's full policy, notes/rungate.md §3): its input
 * schema, its defaults, the rules that span fields, and the deep merge that
 * PUT applies. Stored whole, defaults applied, in `policies.spec`. One file
 * (over ~400 lines) so that the schema, the types derived from it and the
 * defaults cannot drift apart.
 */

const Optional = Type.Optional;
function Nullable<T extends TSchema>(schema: T) {
  return Type.Union([schema, Type.Null()]);
}
function Obj<T extends Record<string, TSchema>>(properties: T, description?: string) {
  return Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
}

/** Keys that would reach an object's prototype if merged naively. */
export const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype'];
const SafeKey = { not: { enum: FORBIDDEN_KEYS } };

export type ProviderName = Provider;
export const ProviderSchema = Type.Enum(PROVIDERS);

const Glob = Type.String({ minLength: 1, maxLength: 200 });
const Globs = (description: string) => Type.Array(Glob, { maxItems: 500, description });
// Upper bounds far past any real limit, so a limit's arithmetic (micro-USD in bigint columns,
// token sums) stays exact: 1e300 is a typo or an attack, never a budget.
const MAX_USD = 1_000_000_000;
const MAX_TOKENS = 1_000_000_000_000;
const Usd = (description: string) => Nullable(Type.Number({ minimum: 0, maximum: MAX_USD, description }));
const TokenCount = (description: string) =>
  Nullable(Type.Integer({ minimum: 0, maximum: MAX_TOKENS, description }));
const PerMinute = (description: string) =>
  Nullable(Type.Integer({ minimum: 1, maximum: MAX_TOKENS, description }));

export const Chain = Type.Array(ProviderSchema, {
  maxItems: 10,
  description:
    'ordered provider names for failover; empty = the providers the agent has keys for, in its provider_keys order',
});
export const TimeoutMs = Type.Integer({ minimum: 1000, maximum: 3_600_000 });
export const ModelRoute = Obj({
  pattern: Type.String({ minLength: 1, maxLength: 200, description: 'model name or glob (gpt-*, claude-*)' }),
  chain: Chain,
  timeout_ms: Optional(TimeoutMs),
});
export const ModelRoutes = Type.Array(ModelRoute, {
  maxItems: 100,
  description: 'first matching pattern wins; falls back to default_chain',
});
export const LoadBalancing = Type.Enum(['failover', 'round_robin', 'weighted']);
export const RoutingPreference = Type.Enum(['default', 'cost', 'latency']);

const Budget = Obj(
  {
    alert_threshold_tokens: Optional(TokenCount('per run; null = none')),
    alert_threshold_usd: Optional(Usd('per run; null = none')),
    hard_limit_tokens: Optional(TokenCount('per run; null = none')),
    hard_limit_usd: Optional(Usd('per run; null = none')),
    max_cost_per_hour_usd: Optional(Usd('rolling cap per agent and policy; null = none')),
    on_alert_threshold: Optional(
      Type.Enum(['continue_and_alert', 'stop_and_alert', 'continue_and_block_new'], {
        description: 'default continue_and_alert',
      }),
    ),
  },
  'budget limits (per run) and the hourly cap',
);

const RateLimits = Obj(
  {
    max_requests_per_minute: Optional(PerMinute('per agent per policy; null = none')),
    max_tokens_per_minute: Optional(PerMinute('per agent per policy; null = none')),
  },
  'counted per agent per policy',
);

const CircuitBreaker = Obj({
  failure_threshold: Optional(
    Type.Integer({
      minimum: 0,
      maximum: 1000,
      description: 'consecutive failures before the circuit opens; 0 disables; default 5',
    }),
  ),
  recovery_timeout_ms: Optional(
    Type.Integer({
      minimum: 1000,
      maximum: 86_400_000,
      description: 'first cooldown before a half-open probe; doubles on each failed probe; default 30000',
    }),
  ),
  max_recovery_timeout_ms: Optional(
    Type.Integer({ minimum: 1000, maximum: 86_400_000, description: 'cap of the doubling; default 600000' }),
  ),
});

const Routing = Obj({
  default_chain: Optional(Chain),
  model_routes: Optional(ModelRoutes),
  timeout_ms: Optional(
    Type.Integer({
      minimum: 1000,
      maximum: 3_600_000,
      description: 'time to first byte plus body, after connect; default 120000',
    }),
  ),
  connect_timeout_ms: Optional(
    Type.Integer({
      minimum: 1000,
      maximum: 600_000,
      description: 'TCP+TLS handshake only; default 10000; must be ≤ timeout_ms',
    }),
  ),
  retry_on: Optional(
    Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), {
      maxItems: 50,
      description:
        'provider statuses that move on to the next attempt; default [429,500,502,503,504,529] (529: Anthropic overloaded)',
    }),
  ),
  max_retries: Optional(
    Type.Integer({
      minimum: 1,
      maximum: 20,
      description: 'TOTAL attempts, not retries after the first; default 3',
    }),
  ),
  on_rate_limit: Optional(
    Type.Enum(['failover_first', 'backoff_first'], {
      description: 'default failover_first',
    }),
  ),
  load_balancing: Optional(LoadBalancing),
  circuit_breaker: Optional(CircuitBreaker),
  routing_preference: Optional(RoutingPreference),
});

const ModelMapping = Type.Record(
  Type.String({ minLength: 1, maxLength: 200 }),
  Nullable(
    Type.Record(Type.String(), Nullable(Type.String({ minLength: 1, maxLength: 200 })), {
      propertyNames: { enum: [...PROVIDERS] },
    } as Record<string, unknown>),
  ),
  {
    propertyNames: SafeKey,
    description:
      '{ source model: { provider: model on that provider } }; on PUT a null entry removes that mapping',
  } as Record<string, unknown>,
);

const RunawayPrevention = Obj({
  enabled: Optional(Type.Boolean()),
  max_steps_per_run: Optional(
    Nullable(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000_000,
        description: 'required when enabled; default null',
      }),
    ),
  ),
});

const ImplicitRunGrouping = Obj({
  time_window_seconds: Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'default 300' })),
  run_idle_timeout_seconds: Optional(
    Type.Integer({ minimum: 1, maximum: 86_400, description: 'default 300' }),
  ),
  force_stop_cooldown_minutes: Optional(
    Type.Integer({ minimum: 0, maximum: 1440, description: 'default 60' }),
  ),
});

export type EndedReason = (typeof ENDED_REASONS)[number];
const Outcome = Nullable(Type.Enum(['success', 'partial', 'failed']));
const OptionalOutcome = Optional(Outcome);
const OutcomeDefaults = Nullable(
  Obj(
    Object.fromEntries(ENDED_REASONS.map((r) => [r, OptionalOutcome])) as Record<
      EndedReason,
      typeof OptionalOutcome
    >,
    'the outcome a run gets by ended_reason when the agent set none; null = none',
  ),
);

/** Every field of the document, each optional: the body of POST/PUT (besides name). */
export const PolicyFields = {
  budget: Optional(Budget),
  allowed_models: Optional(Globs('globs; empty = every model')),
  blocked_models: Optional(Globs('globs; wins over allowed_models')),
  allowed_tools: Optional(Globs('globs; empty = every tool')),
  blocked_tools: Optional(Globs('globs; wins over allowed_tools')),
  require_approval: Optional(Globs('tool globs that need a human approval')),
  approval_expiry_ms: Optional(
    Type.Integer({ minimum: 60_000, maximum: 604_800_000, description: 'default 28800000 (8 h)' }),
  ),
  rate_limits: Optional(RateLimits),
  routing: Optional(Routing),
  model_mapping: Optional(ModelMapping),
  default_model: Optional(Nullable(Type.String({ minLength: 1, maxLength: 200 }))),
  model_override: Optional(
    Nullable(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: 'replaces every request’s model and skips the model rules',
      }),
    ),
  ),
  runaway_prevention: Optional(RunawayPrevention),
  implicit_run_grouping: Optional(ImplicitRunGrouping),
  outcome_defaults: Optional(OutcomeDefaults),
  dry_run: Optional(Type.Boolean({ description: 'record, never forward; default false' })),
  content_logging: Optional(
    Type.Enum(['default', 'enabled', 'disabled'], {
      description: 'default: the server setting',
    }),
  ),
};
export const PolicyInputSchema = Obj(PolicyFields);
/** What a caller may send: any subset of the document. */
export type PolicyInput = Static<typeof PolicyInputSchema>;

export type OutcomeValue = 'success' | 'partial' | 'failed' | null;

/**
 * Every field present: optional fields become required, down through the
 * document's fixed sub-objects (budget, routing, its circuit_breaker…). Lists,
 * maps and nullable objects are kept as the schema says: their entries are
 * the caller's, not defaulted.
 */
type Complete<T> = {
  [K in keyof T]-?: Exclude<T[K], undefined> extends infer V
    ? [V] extends [readonly unknown[]]
      ? V
      : [V] extends [Record<string, unknown>]
        ? string extends keyof V
          ? V
          : Complete<V>
        : V
    : never;
};

/** The stored policy document: complete, defaults applied. The gateway and runs read this. */
export type PolicySpec = Complete<PolicyInput>;

/** The defaults (in defaults.ts, which imports nothing, so the dashboard's policy form starts from them too), checked here against the schema's type. */
export const POLICY_DEFAULTS: PolicySpec = DEFAULTS;

export const POLICY_FIELD_NAMES = Object.keys(POLICY_DEFAULTS) as Array<keyof PolicySpec>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Deep merge for PUT: objects merge key by key, recursively; arrays, scalars
 * and null replace (null clears a nullable field — the schema refuses it
 * elsewhere). Keys that could reach a prototype are refused, not skipped.
 */
export function deepMerge(base: unknown, patch: unknown, path = ''): unknown {
  if (!isPlainObject(patch) || !isPlainObject(base)) return structuredClone(patch);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) out[k] = v;
  for (const [k, v] of Object.entries(patch)) {
    const where = path ? `${path}.${k}` : k;
    if (FORBIDDEN_KEYS.includes(k)) {
      throw new ValidationError(`the request body is invalid: ${where} is not an allowed key`, {
        [where]: 'is not an allowed key',
      });
    }
    if (v === undefined) continue;
    out[k] = deepMerge(base[k], v, where);
  }
  return out;
}

/** model_mapping: a null entry (source or provider) means "remove this mapping". */
function pruneMapping(mapping: unknown): PolicySpec['model_mapping'] {
  const out: PolicySpec['model_mapping'] = {};
  if (!isPlainObject(mapping)) return out;
  for (const [src, targets] of Object.entries(mapping)) {
    if (!isPlainObject(targets)) continue;
    const kept = Object.entries(targets).filter((e): e is [string, string] => typeof e[1] === 'string');
    if (kept.length > 0) out[src] = Object.fromEntries(kept);
  }
  return out;
}

/** Cached documents are shared between callers: freezing stops one caller changing another's. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Applies `input` over `base` (the defaults when creating) and returns a complete document. */
export function applyDefaults(
  input: PolicyInput | Record<string, unknown>,
  base: PolicySpec = POLICY_DEFAULTS,
) {
  const merged = deepMerge(base, input) as Record<string, unknown>;
  const spec: Record<string, unknown> = {};
  // Only known fields survive: a stored document from an older version keeps working.
  for (const field of POLICY_FIELD_NAMES) spec[field] = merged[field];
  for (const field of POLICY_FIELD_NAMES) {
    if (spec[field] === undefined) spec[field] = structuredClone(POLICY_DEFAULTS[field]);
  }
  spec.model_mapping = pruneMapping(spec.model_mapping);
  return spec as unknown as PolicySpec;
}

const ajv = new Ajv({
  allErrors: true,
  strict: false,
  strictNumbers: true,
  coerceTypes: false,
  useDefaults: false,
});
// Compiled on first use: at module load it cost the server's start a few hundred ms.
let checkInput: ValidateFunction | undefined;

function errorFields(errors: ErrorObject[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const e of errors) {
    let field = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') {
      field = [field, String(e.params.additionalProperty)].filter(Boolean).join('.');
      message = 'is not a known field';
    } else if (e.keyword === 'propertyNames') {
      field = [field, String(e.params.propertyName)].filter(Boolean).join('.');
      message = 'is not an allowed key';
    } else if (e.keyword === 'enum' || e.keyword === 'const') {
      const allowed = (e.params.allowedValues as unknown[] | undefined) ?? [e.params.allowedValue];
      message = `must be one of ${allowed.map(String).join(', ')}`;
    } else if (e.keyword === 'type') {
      message = `must be ${e.params.type}`;
    }
    fields[field || 'body'] ??= message;
  }
  return fields;
}

function fail(fields: Record<string, string>): never {
  const summary = Object.entries(fields)
    .map(([f, m]) => `${f} ${m}`)
    .join('; ');
  throw new ValidationError(`the policy is invalid: ${summary}`, fields);
}

/** The shape and ranges of a (partial) document; the HTTP schema checks the same for request bodies. */
export function validatePolicyInput(input: unknown): asserts input is PolicyInput {
  checkInput ??= ajv.compile(PolicyInputSchema);
  if (!checkInput(input)) fail(errorFields(checkInput.errors ?? []));
}

/** The rules that span fields, checked on the complete document (after defaults or a merge). */
export function validatePolicySpec(spec: PolicySpec): void {
  validatePolicyInput(spec);
  const fields: Record<string, string> = {};
  const r = spec.routing;
  if (r.connect_timeout_ms > r.timeout_ms) {
    fields['routing.connect_timeout_ms'] = `must be ≤ routing.timeout_ms (${r.timeout_ms})`;
  }
  r.model_routes.forEach((route, i) => {
    if (route.timeout_ms !== undefined && r.connect_timeout_ms > route.timeout_ms) {
      fields[`routing.model_routes.${i}.timeout_ms`] =
        `must be ≥ routing.connect_timeout_ms (${r.connect_timeout_ms})`;
    }
  });
  const cb = r.circuit_breaker;
  if (cb.recovery_timeout_ms > cb.max_recovery_timeout_ms) {
    fields['routing.circuit_breaker.recovery_timeout_ms'] =
      `must be ≤ routing.circuit_breaker.max_recovery_timeout_ms (${cb.max_recovery_timeout_ms})`;
  }
  if (spec.runaway_prevention.enabled && spec.runaway_prevention.max_steps_per_run === null) {
    fields['runaway_prevention.max_steps_per_run'] = 'is required when runaway_prevention.enabled is true';
  }
  if (Object.keys(fields).length > 0) fail(fields);
}

/** Top-level fields whose value differs between two documents (for a version's changed_fields). */
export function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => !sameJson(before[k], after[k])).sort();
}

/** Equality of JSON values, ignoring object key order (jsonb does not keep it). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i]))
    );
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => sameJson(a[k], b[k]));
  }
  return false;
}

/**
 * The document's JSON schema with every defaulted field marked required, for
 * responses (serialisation and OpenAPI): a stored document is always complete.
 */
function requireDefaulted(schema: unknown, defaults: unknown): unknown {
  if (!isPlainObject(schema)) return schema;
  const out: Record<string, unknown> = { ...schema };
  if (isPlainObject(schema.properties) && isPlainObject(defaults)) {
    const props: Record<string, unknown> = {};
    for (const [k, s] of Object.entries(schema.properties)) props[k] = requireDefaulted(s, defaults[k]);
    out.properties = props;
    out.required = Object.keys(defaults).filter((k) => k in props);
  }
  return out;
}
export const PolicyDocumentProperties = (
  requireDefaulted(JSON.parse(JSON.stringify(PolicyInputSchema)), POLICY_DEFAULTS) as {
    properties: Record<string, TSchema>;
  }
).properties;

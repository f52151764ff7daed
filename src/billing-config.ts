import { readFileSync } from 'node:fs';

// Billing's settings (docs/billing.md), parsed by config.ts with the rest: a
// plan or pack that is wrong stops the server at start, named.

/** A subscription plan: a Stripe price billed each period, and the credits each paid invoice grants. */
export interface BillingPlan {
  id: string;
  name: string;
  stripePriceId: string;
  /** Credits granted once per paid invoice of the plan. */
  includedCredits: number;
  /** What the plan allows, shown to the team (numbers by name, e.g. {"agents": 10}). */
  limits: Record<string, number>;
}

/** A one-time purchase of credits (checkout, or an auto top-up charged off-session). */
export interface CreditPack {
  id: string;
  name: string;
  credits: number;
  stripePriceId: string;
  /** What the Stripe price charges, in USD: an auto top-up charges this, and monthly caps count it. */
  priceUsd: number;
}

export interface StripeSettings {
  secretKey: string;
  webhookSecret: string;
  /** Where the SDK sends requests; undefined: Stripe's own API. */
  api: { protocol: 'http' | 'https'; host: string; port: number } | undefined;
}

export interface BillingConfig {
  /** Undefined: billing is off (no PADDOCK_STRIPE_SECRET_KEY). */
  stripe: StripeSettings | undefined;
  plans: BillingPlan[];
  creditPacks: CreditPack[];
}

export const NO_BILLING: BillingConfig = { stripe: undefined, plans: [], creditPacks: [] };

const ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const PRICE_ID = /^price_[A-Za-z0-9]{1,200}$/;
const MAX_CREDITS = 1_000_000_000;

type Env = NodeJS.ProcessEnv;

/**
 * Billing from the environment. `creditsMode` is PADDOCK_CREDITS: billing
 * sells credits, so it needs them counted (track or enforce).
 */
export function billingConfig(env: Env, creditsMode: string, problems: string[]): BillingConfig {
  const secretKey = env.PADDOCK_STRIPE_SECRET_KEY || undefined;
  const webhookSecret = env.PADDOCK_STRIPE_WEBHOOK_SECRET || undefined;
  const plans = listSetting(env, 'PADDOCK_BILLING_PLANS', problems, parsePlan);
  const creditPacks = listSetting(env, 'PADDOCK_BILLING_CREDIT_PACKS', problems, parsePack);
  const api = stripeApi(env.PADDOCK_STRIPE_API_URL, problems);
  if (secretKey === undefined) return { stripe: undefined, plans, creditPacks };

  // Never a secret's value in a problem: the message reaches logs and terminals.
  if (!/^(sk|rk)_(test|live)_[A-Za-z0-9_]{1,500}$/.test(secretKey))
    problems.push(
      'PADDOCK_STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_live_…, sk_test_…, rk_…)',
    );
  if (webhookSecret === undefined)
    problems.push(
      "PADDOCK_STRIPE_WEBHOOK_SECRET is required with PADDOCK_STRIPE_SECRET_KEY: without it Stripe's webhooks cannot be verified, and no payment would add credits",
    );
  else if (!/^whsec_[A-Za-z0-9+/=_]{1,500}$/.test(webhookSecret))
    problems.push("PADDOCK_STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_…)");
  if (creditsMode === 'off')
    problems.push(
      'PADDOCK_STRIPE_SECRET_KEY turns billing on, which sells credits: set PADDOCK_CREDITS=enforce (or track, to sell credits without refusing calls when they run out)',
    );
  return { stripe: { secretKey, webhookSecret: webhookSecret ?? '', api }, plans, creditPacks };
}

function stripeApi(raw: string | undefined, problems: string[]): StripeSettings['api'] {
  if (raw === undefined || raw === '') return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  const bare =
    url !== undefined &&
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.pathname === '/' &&
    !url.search &&
    !url.hash &&
    !url.username &&
    !url.password;
  if (!url || !bare) {
    problems.push(
      `PADDOCK_STRIPE_API_URL=${JSON.stringify(raw)} must be an http(s) origin with no path, query or credentials (e.g. https://api.stripe.com)`,
    );
    return undefined;
  }
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  const port = url.port === '' ? (protocol === 'http' ? 80 : 443) : Number(url.port);
  return { protocol, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** A JSON array, inline or in a file (a value not starting with `[` is a path). */
function listSetting<T>(
  env: Env,
  name: string,
  problems: string[],
  parse: (item: Record<string, unknown>, where: string, problems: string[]) => T | undefined,
): T[] {
  const raw = env[name]?.trim();
  if (!raw) return [];
  let text = raw;
  if (!raw.startsWith('[')) {
    try {
      text = readFileSync(raw, 'utf8');
    } catch (err) {
      problems.push(`${name}: cannot read ${JSON.stringify(raw)} (${(err as NodeJS.ErrnoException).code})`);
      return [];
    }
  }
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (err) {
    problems.push(`${name} is not valid JSON: ${(err as Error).message}`);
    return [];
  }
  if (!Array.isArray(list)) {
    problems.push(`${name} must be a JSON array of objects`);
    return [];
  }
  const out: T[] = [];
  const ids = new Set<string>();
  list.forEach((item, i) => {
    const where = `${name}[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      problems.push(`${where} must be an object`);
      return;
    }
    const parsed = parse(item as Record<string, unknown>, where, problems);
    if (parsed === undefined) return;
    const id = (parsed as { id: string }).id;
    if (ids.has(id)) problems.push(`${where}: the id ${JSON.stringify(id)} is used twice`);
    ids.add(id);
    out.push(parsed);
  });
  return out;
}

/** Reads fields of one plan or pack, each problem named with where it is. */
function fields(item: Record<string, unknown>, where: string, problems: string[], known: string[]) {
  const before = problems.length;
  for (const key of Object.keys(item))
    if (!known.includes(key)) problems.push(`${where}: unknown field ${JSON.stringify(key)}`);
  const text = (key: string, pattern: RegExp, what: string, fallback?: string): string => {
    const v = item[key] ?? fallback;
    if (typeof v === 'string' && pattern.test(v)) return v;
    problems.push(`${where}.${key} must be ${what}`);
    return '';
  };
  const number = (key: string, min: number, max: number, what: string): number => {
    const v = item[key];
    if (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max) return v;
    problems.push(`${where}.${key} must be ${what} from ${min} to ${max}`);
    return 0;
  };
  return { text, number, ok: () => problems.length === before };
}

function parsePlan(
  item: Record<string, unknown>,
  where: string,
  problems: string[],
): BillingPlan | undefined {
  const f = fields(item, where, problems, ['id', 'name', 'stripe_price_id', 'included_credits', 'limits']);
  const id = f.text('id', ID, 'an id: lower-case letters, digits, - and _ (at most 64)');
  const plan: BillingPlan = {
    id,
    name: f.text('name', /^.{1,100}$/, 'a name of 1 to 100 characters', id),
    stripePriceId: f.text(
      'stripe_price_id',
      PRICE_ID,
      "a Stripe price id (price_…) of the plan's recurring price",
    ),
    includedCredits: f.number('included_credits', 0, MAX_CREDITS, 'a number of credits'),
    limits: {},
  };
  const limits = item.limits ?? {};
  if (limits === null || typeof limits !== 'object' || Array.isArray(limits)) {
    problems.push(`${where}.limits must be an object of numbers by name`);
  } else {
    for (const [k, v] of Object.entries(limits)) {
      if (/^[a-z][a-z0-9_]{0,63}$/.test(k) && typeof v === 'number' && Number.isFinite(v) && v >= 0)
        plan.limits[k] = v;
      else problems.push(`${where}.limits.${k} must be a number at least 0 under a snake_case name`);
    }
  }
  return f.ok() ? plan : undefined;
}

function parsePack(item: Record<string, unknown>, where: string, problems: string[]): CreditPack | undefined {
  const f = fields(item, where, problems, ['id', 'name', 'credits', 'stripe_price_id', 'price_usd']);
  const id = f.text('id', ID, 'an id: lower-case letters, digits, - and _ (at most 64)');
  const pack: CreditPack = {
    id,
    name: f.text('name', /^.{1,100}$/, 'a name of 1 to 100 characters', id),
    credits: f.number('credits', 0.000001, MAX_CREDITS, 'a number of credits'),
    stripePriceId: f.text(
      'stripe_price_id',
      PRICE_ID,
      "a Stripe price id (price_…) of the pack's one-time price",
    ),
    priceUsd: f.number('price_usd', 0.5, 1_000_000, "what the pack's Stripe price charges, in USD,"),
  };
  return f.ok() ? pack : undefined;
}

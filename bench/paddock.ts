// A `paddock serve` child for benchmarks, and the calls a benchmark makes to it:
// waiting for /ready, the JSON API, and the user, provider key, policy and agent
// a benchmark runs as (all through the HTTP API, as a user's would be).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Child } from './processes.ts';

/** The provider key's secret the benchmarks' mock upstream is called with. */
export const PROVIDER_SECRET = 'sk-bench-upstream';

export type Json = Record<string, unknown>;

/** A positive number from the environment, else `fallback`; anything else stops the benchmark. */
export function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`${name}=${JSON.stringify(raw)} must be a positive number`);
  return n;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One JSON call; anything but a 2xx throws with the answer. */
export async function api(
  base: string,
  method: string,
  route: string,
  token?: string,
  body?: Json,
): Promise<Json> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route} answered ${res.status}: ${text}`);
  return JSON.parse(text) as Json;
}

export function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what} is missing from the response`);
  return value;
}

export async function waitForReady(base: string, child: Child, timeoutMs: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`paddock exited with ${child.exitCode} before it was ready`);
    const res = await fetch(`${base}/ready`).catch(() => undefined);
    if (res?.status === 200) return;
    if (performance.now() - started > timeoutMs) throw new Error(`paddock not ready after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export interface Governed {
  base: string;
  token: string;
  agentId: string;
  agentKey: string;
}

/**
 * Signs up, and creates the provider key (OpenAI, at the mock), the governing
 * policy and the agent (with `agent`'s fields on top), through the HTTP API.
 */
export async function setUpAgent(base: string, mockUrl: string, agent: Json = {}): Promise<Governed> {
  const tag = randomBytes(4).toString('hex');
  const signup = await api(base, 'POST', '/v1/auth/signup', undefined, {
    email: `bench-${tag}@example.com`,
    password: 'a long benchmark password',
    name: 'Bench',
  });
  const token = str(signup.session_token, 'session_token');
  const key = await api(base, 'POST', '/v1/provider-keys', token, {
    name: `bench-openai-${tag}`,
    provider: 'openai',
    api_key: PROVIDER_SECRET,
    base_url: mockUrl,
  });
  // Every check on and none that could trigger: a refusal would measure the refusal, not the proxy.
  const policy = await api(base, 'POST', '/v1/policies', token, {
    name: `bench-${tag}`,
    budget: { hard_limit_usd: 1e6, max_cost_per_hour_usd: 1e6 },
    rate_limits: { max_requests_per_minute: 100_000_000, max_tokens_per_minute: 1_000_000_000 },
    allowed_models: ['gpt-4o*'],
    blocked_models: ['gpt-3.5*'],
    runaway_prevention: { enabled: false },
  });
  // Under PADDOCK_CREDITS=enforce calls need credits: the first account is the platform admin, who grants them.
  if (process.env.PADDOCK_CREDITS === 'enforce') {
    const team = (signup.team as Json | undefined)?.id;
    await api(base, 'POST', `/v1/admin/teams/${str(team, 'team id')}/credits`, token, {
      type: 'grant',
      amount: 1e9,
      reason: 'benchmark',
    });
  }
  const created = await api(base, 'POST', '/v1/agents', token, {
    name: `bench-agent-${tag}`,
    policy_id: str(policy.id, 'policy id'),
    provider_keys: { openai: str(key.id, 'provider key id') },
    ...agent,
  });
  return {
    base,
    token,
    agentId: str(created.id, 'agent id'),
    agentKey: str(created.api_key, 'agent api_key'),
  };
}

/** A new, empty database on the Postgres server at `url` (BENCH_DATABASE_URL), and how to drop it. */
export async function freshPostgres(url: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `paddock_bench_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  return { url: fresh.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawQuery } from '../../src/db/client.ts';
import { LATENCY_BUCKET_BOUNDS_MS } from '../../src/db/rollups.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { unusedPortUrl } from '../support/mock-llm.ts';

// Real traffic through the gateway (successes on two providers and three
// models, provider errors, a failover), then every report checked against
// sums computed here straight from the steps and ledger tables.

let g: GatewayFixture;
let teamId: string;
let otherToken: string;
const range: Record<string, string> = {};

const REQUEST = `type not in ('sandbox', 'failover_transition')`;

beforeAll(async () => {
  g = await startGateway();
  teamId = g.user.team.id;
  const openai = g.openai();
  const anthropic = g.anthropic();
  for (const [i, model] of ['gpt-4o', 'gpt-4o', 'gpt-4o-mini', 'gpt-4o', 'gpt-4o-mini'].entries()) {
    g.mock.reply({
      text: `answer ${i}`,
      delayMs: i * 15,
      usage: { input: 10 + i, output: 5 + i, cacheRead: i },
    });
    await openai.chat.completions.create({ model, messages: [{ role: 'user', content: `q${i}` }] });
  }
  for (let i = 0; i < 3; i++) {
    g.mock.reply({ text: 'hi', delayMs: 40 * i });
    await anthropic.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'hello' }],
    });
  }
  // Provider errors: an agent whose only key points at a closed port (every attempt fails).
  const dead = await createProviderKey(g.t, g.user.token, {
    provider: 'openai',
    api_key: 'sk-dead',
    base_url: await unusedPortUrl(),
  });
  const deadAgent = await g.newAgent(
    { routing: { timeout_ms: 1000, connect_timeout_ms: 1000 } },
    { provider_keys: { openai: dead.id } },
  );
  for (let i = 0; i < 2; i++) {
    await g
      .openai({ apiKey: deadAgent.api_key })
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] })
      .catch(() => null);
  }
  // A failover: the second agent's first key answers 503, the second serves.
  const bad = await createProviderKey(g.t, g.user.token, {
    provider: 'openai',
    api_key: 'sk-bad',
    base_url: g.mock.url,
  });
  const second = await g.newAgent(
    { routing: { timeout_ms: 1000, connect_timeout_ms: 1000 } },
    {
      provider_keys: {
        openai: [
          { key_id: bad.id, weight: 1 },
          { key_id: g.keys.openai.id, weight: 1 },
        ],
      },
    },
  );
  g.mock.replyFor({ apiKey: 'sk-bad' }, { status: 503, message: 'overloaded' });
  g.mock.reply({ text: 'served' });
  await g.openai({ apiKey: second.api_key }).chat.completions.create({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'fail over' }],
  });
  // Another team with its own traffic, which team A's figures must not see.
  const other = await g.t.signup();
  otherToken = other.token;
  const key = await createProviderKey(g.t, other.token, {
    provider: 'openai',
    api_key: 'sk-other',
    base_url: g.mock.url,
  });
  const policy = await createPolicy(g.t, other.token, {});
  const agent = await createAgent(g.t, other.token, {
    provider_keys: { openai: key.id },
    policy_id: policy.id,
  });
  g.mock.reply({ text: 'other team', usage: { input: 1000, output: 1000 } });
  await g
    .openai({ apiKey: agent.api_key })
    .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'o' }] });
  await g.t.services.runs.flush();
  const now = Date.now();
  range.from = new Date(now - 2 * 86_400_000).toISOString();
  range.to = new Date(now + 86_400_000).toISOString();
}, 180_000);
afterAll(async () => {
  await g.close();
});

const sql = (text: string, params: unknown[] = [teamId]) => rawQuery(g.t.database.db, text, params);
const get = async (path: string, query: Record<string, string> = {}, token = g.user.token) => {
  const res = await g.t.call('GET', path, { token, query: { ...range, ...query } });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};
const key = (group: unknown, period: unknown) =>
  `${group ?? ''}|${period === null || period === undefined ? '' : new Date(period as string).toISOString()}`;

const GROUPS: Record<string, string> = {
  agent: 'agent_id',
  provider: `nullif(provider, '')`,
  model: `nullif(model, '')`,
  day: `to_char(created_at at time zone 'UTC', 'YYYY-MM-DD')`,
};
const PERIODS: Record<string, string> = {
  hour: `date_trunc('hour', created_at, 'UTC')`,
  day: `date_trunc('day', created_at, 'UTC')`,
  week: `date_trunc('week', created_at, 'UTC')`,
  none: 'null::timestamptz',
};

describe('costs, errors and throughput equal the ledger and steps summed directly', () => {
  for (const groupBy of Object.keys(GROUPS)) {
    for (const granularity of Object.keys(PERIODS)) {
      it(`group_by=${groupBy} granularity=${granularity}`, async () => {
        const q = { group_by: groupBy, ...(granularity === 'none' ? {} : { granularity }) };
        const dims = `${GROUPS[groupBy]} as grp, ${PERIODS[granularity]} as period`;
        const ledger = await sql(
          `select ${dims}, sum(cost_micros) as cost,
             sum(cost_micros) filter (where kind = 'sandbox') as sandbox,
             sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) as tokens,
             sum(input_tokens) as input, sum(output_tokens) as output
           from ledger_entries where team_id = $1 group by 1, 2`,
        );
        const steps = await sql(
          `select ${dims}, count(*) filter (where ${REQUEST}) as requests,
             count(*) filter (where ${REQUEST} and status = 'success') as ok,
             count(*) filter (where ${REQUEST} and status = 'error') as errors,
             count(*) filter (where type = 'failover_transition') as failovers
           from steps where team_id = $1 group by 1, 2`,
        );
        const expected = new Map<string, Json>();
        for (const r of steps)
          expected.set(key(r.grp, r.period), {
            requests: Number(r.requests),
            ok: Number(r.ok),
            errors: Number(r.errors),
            failovers: Number(r.failovers),
            cost: 0,
            sandbox: 0,
            tokens: 0,
            input: 0,
            output: 0,
          });
        for (const r of ledger)
          Object.assign(expected.get(key(r.grp, r.period))!, {
            cost: Number(r.cost) / 1e6,
            sandbox: Number(r.sandbox ?? 0) / 1e6,
            tokens: Number(r.tokens),
            input: Number(r.input),
            output: Number(r.output),
          });

        const [costs, errors, throughput] = await Promise.all([
          get('/v1/analytics/costs', q),
          get('/v1/analytics/errors', q),
          get('/v1/analytics/throughput', q),
        ]);
        const actual = new Map<string, Json>();
        for (const c of costs.data)
          actual.set(key(c.group, c.period), {
            requests: c.request_count,
            cost: c.total_cost_usd,
            sandbox: c.sandbox_cost_usd,
            tokens: c.total_tokens,
          });
        for (const e of errors.data)
          Object.assign(actual.get(key(e.group, e.period))!, {
            ok: e.success_count,
            errors: e.error_count,
            failovers: e.failover_count,
          });
        for (const t of throughput.data)
          Object.assign(actual.get(key(t.group, t.period))!, {
            input: t.input_tokens,
            output: t.output_tokens,
          });
        expect(actual).toEqual(expected);
      });
    }
  }

  it('the traffic has what the reports are about: errors, a failover, two providers, three models', async () => {
    const body = await get('/v1/analytics/errors', {});
    expect(body.data).toHaveLength(1);
    expect(body.data[0].error_count).toBeGreaterThanOrEqual(2);
    expect(body.data[0].failover_count).toBeGreaterThanOrEqual(1);
    expect(body.data[0].avg_failover_attempts).toBeGreaterThanOrEqual(1);
    const models = await get('/v1/analytics/costs', { group_by: 'model' });
    expect(
      models.data
        .map((r: Json) => r.group)
        .filter(Boolean)
        .sort(),
    ).toEqual(['claude-sonnet-4-5', 'gpt-4o', 'gpt-4o-mini']);
  });
});

/** The bucket a latency falls in (as the rollup's width_bucket counts it). */
const bucketOf = (ms: number) => LATENCY_BUCKET_BOUNDS_MS.filter((b) => b <= ms).length;

describe('latency percentiles come from the histogram, within a bucket of the exact value', () => {
  for (const groupBy of ['provider', 'model']) {
    it(`group_by=${groupBy}`, async () => {
      const rows = await sql(
        `select ${GROUPS[groupBy]} as grp, array_agg(latency_ms order by latency_ms) as ms
         from steps where team_id = $1 and ${REQUEST} and latency_ms is not null group by 1`,
      );
      const body = await get('/v1/analytics/latency', { group_by: groupBy });
      expect(body.data).toHaveLength(rows.length);
      for (const r of rows) {
        const sorted = (r.ms as unknown[]).map(Number);
        const row = body.data.find((x: Json) => x.group === r.grp);
        expect(row.request_count).toBe(sorted.length);
        expect(row.avg_ms).toBeCloseTo(sorted.reduce((a, b) => a + b, 0) / sorted.length, 1);
        for (const [q, field] of [
          [0.5, 'p50_ms'],
          [0.95, 'p95_ms'],
          [0.99, 'p99_ms'],
        ] as const) {
          const exact = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
          expect(bucketOf(row[field]), `${field} of ${r.grp}`).toBe(bucketOf(exact));
          const j = bucketOf(exact);
          const width = (LATENCY_BUCKET_BOUNDS_MS[j] ?? exact + 1) - (LATENCY_BUCKET_BOUNDS_MS[j - 1] ?? 0);
          expect(Math.abs(row[field] - exact)).toBeLessThanOrEqual(width);
        }
      }
    });
  }
});

describe('top, provider reliability and overview', () => {
  it('top models by cost, calls and tokens rank the sums', async () => {
    const rows = await sql(
      `select model, sum(cost_micros) as cost, count(*) filter (where ${REQUEST}) as calls,
         sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) as tokens
       from steps where team_id = $1 and model is not null group by 1`,
    );
    for (const by of ['cost', 'calls', 'tokens'] as const) {
      const value = (r: Json) => (by === 'cost' ? Number(r.cost) / 1e6 : Number(r[by]));
      const expected = rows
        .map((r) => ({ entity: String(r.model), value: value(r) }))
        .filter((r) => r.value > 0)
        .sort((a, b) => b.value - a.value || a.entity.localeCompare(b.entity))
        .slice(0, 2)
        .map((r, i) => ({ rank: i + 1, ...r }));
      const body = await get('/v1/analytics/top', { by, dimension: 'model', limit: '2' });
      expect(body.data).toEqual(expected);
    }
  });

  it('provider reliability counts successes, errors and failovers per provider', async () => {
    const rows = await sql(
      `select provider, count(*) filter (where ${REQUEST}) as total,
         count(*) filter (where ${REQUEST} and status = 'success') as ok,
         count(*) filter (where type = 'failover_transition') as failovers, sum(cost_micros) as cost
       from steps where team_id = $1 and provider is not null group by 1 order by 1`,
    );
    const body = await get('/v1/analytics/provider-reliability');
    expect(
      body.data.map((r: Json) => [
        r.provider,
        r.total_requests,
        r.success_count,
        r.failover_count,
        r.total_cost_usd,
      ]),
    ).toEqual(
      rows.map((r) => [r.provider, Number(r.total), Number(r.ok), Number(r.failovers), Number(r.cost) / 1e6]),
    );
    const openai = body.data.find((r: Json) => r.provider === 'openai');
    expect(openai.success_rate_pct).toBeCloseTo((openai.success_count / openai.total_requests) * 100, 1);
  });

  it("overview: today's spend and tokens equal the ledger's, runs counted", async () => {
    const [ledger] = await sql(
      `select sum(cost_micros) as cost, sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) as tokens
       from ledger_entries where team_id = $1`,
    );
    const [runs] = await sql(
      `select count(*) as n, count(distinct agent_id) as agents from runs where team_id = $1`,
    );
    const body = await get('/v1/overview/stats');
    expect(body.data).toMatchObject({
      total_spend_today: Number(ledger!.cost) / 1e6,
      tokens_processed_today: Number(ledger!.tokens),
      total_runs_today: Number(runs!.n),
      active_agents: Number(runs!.agents),
      spend_trend_pct: null,
    });
  });
});

describe('isolation and bad input', () => {
  it('another team sees only its own figures; an agent key is refused', async () => {
    const theirs = await get('/v1/analytics/costs', {}, otherToken);
    const [row] = await sql(`select sum(cost_micros) as cost from ledger_entries where team_id <> $1`);
    expect(theirs.data).toHaveLength(1);
    expect(theirs.data[0].total_cost_usd).toBe(Number(row!.cost) / 1e6);
    const mine = await get('/v1/analytics/costs');
    expect(mine.data[0].total_cost_usd).not.toBe(theirs.data[0].total_cost_usd);
    const refused = await g.t.call('GET', '/v1/analytics/costs', { token: g.agent.api_key, query: range });
    expect(refused.status).toBe(403);
  });

  it.each([
    [{ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' }, 'from'],
    [{ from: '2024-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' }, 'from'],
    [{ from: '2025-01-01T00:00:00Z', to: '2025-03-01T00:00:00Z', granularity: 'hour' }, 'granularity'],
    [{ granularity: 'month' }, null],
    [{ group_by: 'colour' }, null],
    [{ from: 'yesterday' }, null],
    // What the schema's date-time lets through but JavaScript or Postgres cannot hold.
    [{ from: '0000-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' }, 'from'],
    [{ to: '2016-12-31T23:59:60Z' }, 'to'],
  ])('%j → 400 validation_failed', async (query, field) => {
    const res = await g.t.call('GET', '/v1/analytics/costs', {
      token: g.user.token,
      query: query as Record<string, string>,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    if (field) expect(res.body.error.details.fields).toHaveProperty(field);
  });
});

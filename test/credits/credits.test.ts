import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { users } from '../../src/db/schema/index.ts';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

// Credits: ledger usage consumes a team's balance at the platform's markup;
// under enforcement a team without credits gets 402 before a model call or a
// capsule starts, and concurrent calls cannot overspend it by more than one
// call's reservation.

// 1 credit = $0.001 and a markup of 1.5: $1 of usage consumes 1 500 credits.
const PRICE = 0.001;
const MARKUP = 1.5;
const microCreditsFor = (costUsd: number) => Math.round(Math.round(costUsd * 1e6) * (MARKUP / PRICE));

type Agent = Json & { api_key: string };

async function proxy(g: GatewayFixture, agent: Agent, headers: Record<string, string> = {}) {
  const res = await fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${agent.api_key}`, ...headers },
    body: JSON.stringify({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 100,
    }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Json };
}

async function makePlatformAdmin(g: GatewayFixture): Promise<void> {
  await g.t.database.db.update(users).set({ isAdmin: true }).where(eq(users.id, g.user.user.id));
}

async function grant(g: GatewayFixture, amount: number, reference?: string, type = 'grant') {
  return g.t.call('POST', `/v1/admin/teams/${g.user.team.id}/credits`, {
    token: g.user.token,
    body: { type, amount, reason: 'test grant', ...(reference ? { reference_id: reference } : {}) },
  });
}

async function account(g: GatewayFixture): Promise<Json> {
  await g.t.services.runs.flush();
  const res = await g.t.call('GET', '/v1/credits', { token: g.user.token });
  expect(res.status).toBe(200);
  return res.body;
}

async function transactions(g: GatewayFixture, query: Record<string, string> = {}): Promise<Json[]> {
  const res = await g.t.call('GET', '/v1/credits/transactions', {
    token: g.user.token,
    query: { limit: '200', ...query },
  });
  expect(res.status).toBe(200);
  return res.body.data;
}

async function events(g: GatewayFixture, type: string): Promise<Json[]> {
  const res = await g.t.call('GET', '/v1/events', { token: g.user.token, query: { type } });
  expect(res.status).toBe(200);
  return res.body.data;
}

describe('credits enforced', () => {
  let g: GatewayFixture;
  beforeAll(async () => {
    g = await startGateway({
      env: {
        PADDOCK_CREDITS: 'enforce',
        PADDOCK_CREDIT_PRICE_USD: String(PRICE),
        PADDOCK_CREDIT_MARKUP: String(MARKUP),
        PADDOCK_CREDITS_LOW_THRESHOLD: '5',
      },
    });
    await makePlatformAdmin(g);
  });
  afterAll(() => g.close());
  beforeEach(() => g.mock.reset());

  it('refuses a model call and a capsule with 402 insufficient_credits while the team has none', async () => {
    const refused = await proxy(g, g.agent);
    expect(refused.status).toBe(402);
    expect(refused.body.error).toMatchObject({ code: 'insufficient_credits' });
    expect(refused.body.error.message).toContain('credits');
    expect(g.mock.requests).toHaveLength(0);

    const capsule = await g.t.call('POST', '/v1/capsules', { token: g.user.token, body: {} });
    expect(capsule.status).toBe(402);
    expect(capsule.body.error.code).toBe('insufficient_credits');
    const list = await g.t.call('GET', '/v1/capsules', { token: g.user.token });
    expect(list.body.data).toHaveLength(0);
  });

  it('takes grants from platform admins only, once per reference_id', async () => {
    const other = await g.t.signup();
    const forbidden = await g.t.call('POST', `/v1/admin/teams/${other.team.id}/credits`, {
      token: other.token,
      body: { type: 'grant', amount: 1000, reason: 'free money' },
    });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('platform_admin_required');

    const first = await grant(g, 20, 'welcome-1');
    expect(first.status).toBe(201);
    expect(first.body.transaction).toMatchObject({ type: 'grant', amount: 20, balance_after: 20 });
    const again = await grant(g, 20, 'welcome-1');
    expect(again.status).toBe(200);
    expect(again.body.transaction.id).toBe(first.body.transaction.id);
    expect((await account(g)).balance).toBe(20);

    expect((await grant(g, -5)).status).toBe(400);
    expect((await grant(g, 0, undefined, 'adjustment')).status).toBe(400);
    const unknownTeam = await g.t.call('POST', '/v1/admin/teams/team_01ARZ3NDEKTSV4RRFFQ69G5FAV/credits', {
      token: g.user.token,
      body: { type: 'grant', amount: 1, reason: 'nobody' },
    });
    expect(unknownTeam.status).toBe(404);
    const added = await events(g, 'credits.added');
    expect(added.filter((e) => e.data.reason === 'test grant')).toHaveLength(1);
    const feed = await g.t.call('GET', '/v1/activity', {
      token: g.user.token,
      query: { action: 'credits.added' },
    });
    expect(feed.body.data.map((a: Json) => a.summary)).toContain('Added 20 credits (grant): balance 20');
  });

  it('consumes the ledger at the markup: the run’s consume transactions equal its entries × markup ÷ price', async () => {
    g.mock.reply({ text: 'ok', usage: { input: 7, output: 33 }, times: 5 });
    const first = await proxy(g, g.agent, { 'x-paddock-new-run': 'true' });
    expect(first.status).toBe(200);
    const runId = first.headers.get('x-paddock-run-id')!;
    for (let i = 0; i < 4; i++)
      expect((await proxy(g, g.agent, { 'x-paddock-run-id': runId })).status).toBe(200);
    const ledger = await g.ledger(runId);
    expect(ledger).toHaveLength(5);
    const expected = ledger.reduce((sum: number, e: Json) => sum + microCreditsFor(e.cost_usd), 0);
    expect(expected).toBeGreaterThan(0);
    const consumed = await transactions(g, { type: 'consume', reference_id: runId });
    expect(consumed.length).toBeGreaterThan(0);
    const total = consumed.reduce((sum, t) => sum + Math.round(-t.amount * 1e6), 0);
    expect(total).toBe(expected);
    const acct = await account(g);
    expect(acct.held).toBe(0);
    expect(Math.round(acct.balance * 1e6)).toBe(20e6 - expected);
    // Each transaction says the balance after it, newest first.
    const all = await transactions(g);
    expect(all[0]!.balance_after).toBe(acct.balance);
  });

  it('lets 100 concurrent calls overspend a small balance by at most one reservation', async () => {
    // A call reserves ≈ 2 input tokens + 100 output at $2.50/$10 per million = $0.001005, 1.5075 credits.
    const reservation = 1.5075;
    const before = await account(g);
    // Top the balance up to exactly 30 calls' worth.
    const target = 30 * reservation;
    const topUp = Math.round((target - before.balance) * 1e6) / 1e6;
    expect((await grant(g, topUp, undefined, topUp > 0 ? 'grant' : 'adjustment')).status).toBe(201);
    g.mock.reply({ text: 'ok', usage: { input: 2, output: 100 }, times: Number.POSITIVE_INFINITY });
    const results = await Promise.all(Array.from({ length: 100 }, () => proxy(g, g.agent)));
    const ok = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status !== 200);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((r) => r.status === 402 && r.body.error.code === 'insufficient_credits')).toBe(true);
    expect(ok).toBeGreaterThan(0);
    const after = await account(g);
    expect(after.held).toBe(0);
    expect(after.balance).toBeGreaterThanOrEqual(-reservation - 1e-6);
    // What the calls consumed is what their ledger entries cost at the markup.
    const spent = Math.round((target - after.balance) * 1e6);
    expect(spent).toBe(ok * microCreditsFor((2 * 2.5 + 100 * 10) / 1e6));
    expect(g.mock.requests.length).toBe(ok);
  });

  it('tells of a low and an exhausted balance once each, and a grant brings the account back', async () => {
    const low = await events(g, 'credits.low');
    const exhausted = await events(g, 'credits.exhausted');
    // The last test spent the balance below 5 credits and then to (about) nothing.
    expect(low.length).toBeGreaterThanOrEqual(1);
    const acct = await account(g);
    expect(acct.state).toBe(acct.balance <= 0 ? 'exhausted' : 'low');
    if (acct.balance <= 0) expect(exhausted).toHaveLength(1);
    expect((await grant(g, 100)).status).toBe(201);
    expect((await account(g)).state).toBe('ok');
    // Set the threshold above the balance: the account is low at once, without a second event for it.
    const patched = await g.t.call('PATCH', '/v1/credits', {
      token: g.user.token,
      body: { low_threshold: 1000 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ state: 'low', low_threshold: 1000 });
  });

  it('consumes external usage once per reference_id, and refuses what the balance cannot cover', async () => {
    const body = { amount: 2.5, action: 'ocr.page', reference_id: 'doc-42' };
    const first = await g.t.call('POST', '/v1/credits/consume', { token: g.user.token, body });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      type: 'consume',
      amount: -2.5,
      action: 'ocr.page',
      reference_id: 'doc-42',
    });
    const again = await g.t.call('POST', '/v1/credits/consume', { token: g.user.token, body });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect(await transactions(g, { reference_id: 'doc-42' })).toHaveLength(1);
    // An agent key consumes for its team too.
    const byAgent = await g.t.call('POST', '/v1/credits/consume', {
      token: g.agent.api_key,
      body: { amount: 0.5, action: 'tool.call', reference_id: 'agent-1' },
    });
    expect(byAgent.status).toBe(201);
    expect(byAgent.body).toMatchObject({ actor_kind: 'agent', actor_id: g.agent.id });

    const tooMuch = await g.t.call('POST', '/v1/credits/consume', {
      token: g.user.token,
      body: { amount: 1e8, action: 'big', reference_id: 'too-much' },
    });
    expect(tooMuch.status).toBe(402);
    expect(tooMuch.body.error.code).toBe('insufficient_credits');
    expect(await transactions(g, { reference_id: 'too-much' })).toHaveLength(0);

    for (const bad of [
      { amount: 0, action: 'x', reference_id: 'r' },
      { amount: -1, action: 'x', reference_id: 'r' },
      { amount: 1, action: 'x' },
      { amount: 1, action: 'x', reference_id: 'has space' },
      { amount: 1, action: '', reference_id: 'r' },
      { amount: 0.0000001, action: 'x', reference_id: 'r' },
    ]) {
      const res = await g.t.call('POST', '/v1/credits/consume', { token: g.user.token, body: bad });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });
});

describe('credits tracked, not enforced', () => {
  let g: GatewayFixture;
  beforeAll(async () => {
    g = await startGateway({
      env: {
        PADDOCK_CREDITS: 'track',
        PADDOCK_CREDIT_PRICE_USD: String(PRICE),
        PADDOCK_CREDIT_MARKUP: String(MARKUP),
      },
    });
  });
  afterAll(() => g.close());

  it('admits calls without a balance, and the balance goes below zero by what the ledger cost', async () => {
    g.mock.reply({ text: 'ok', usage: { input: 3, output: 40 } });
    const res = await proxy(g, g.agent);
    expect(res.status).toBe(200);
    const ledger = await g.ledger(res.headers.get('x-paddock-run-id')!);
    const acct = await account(g);
    expect(acct.mode).toBe('track');
    expect(Math.round(acct.balance * 1e6)).toBe(-microCreditsFor(ledger[0]!.cost_usd));
    expect(acct.state).toBe('exhausted');
    const exhausted = await events(g, 'credits.exhausted');
    expect(exhausted).toHaveLength(1);
    expect(exhausted[0]!.data).toMatchObject({ enforced: false });
  });
});

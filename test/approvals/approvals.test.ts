import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS, MINUTE_MS } from '../../src/core/clock.ts';
import { events } from '../../src/db/schema/index.ts';
import { agentWithPolicy, type GatewayAgent } from '../runs/setup.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';

let t: TestApp;
let u: SignedUpUser;
let stranger: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  stranger = await t.signup();
});
afterAll(() => t.close());

const approvals = () => t.services.approvals;

async function ask(g: GatewayAgent, tools: string[], hash = 'hash-1', expiresInMs = HOUR_MS) {
  const run = await t.services.runs.resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy });
  const requested = await approvals().request({
    teamId: g.teamId,
    runId: run.id,
    agentId: g.agent.id,
    policyId: g.policy.id,
    toolNames: tools,
    requestHash: hash,
    requestSnapshot: { messages: [{ role: 'user', content: 'delete the branch' }] },
    expiresAt: new Date(t.clock.now().getTime() + expiresInMs),
  });
  return { run, requested };
}

const consume = (g: GatewayAgent, id: string, hash = 'hash-1', agentId = g.agent.id) =>
  approvals().consume(g.teamId, id, agentId, hash);

describe('the proxy’s side', () => {
  it('asks one pending approval per tool, and the same ones again for a re-sent request', async () => {
    const g = await agentWithPolicy(t, u);
    const { run, requested } = await ask(g, ['git_push', 'rm_rf', 'git_push']);
    expect(requested.map((r) => r.tool)).toEqual(['git_push', 'rm_rf']);
    expect(requested.every((r) => r.id.startsWith('apr_'))).toBe(true);
    const again = await ask(g, ['git_push', 'rm_rf']);
    expect(again.requested).toEqual(requested);

    const one = await t.call('GET', `/v1/approvals/${requested[0]!.id}`, { token: u.token });
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      run_id: run.id,
      agent_id: g.agent.id,
      policy_id: g.policy.id,
      tool_name: 'git_push',
      status: 'pending',
      request_snapshot: { messages: [{ role: 'user', content: 'delete the branch' }] },
      decided_by: null,
      expires_at: new Date(t.clock.now().getTime() + HOUR_MS).toISOString(),
    });
    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, requested[0]!.id));
    expect(evs.map((e) => e.type)).toEqual(['approval.requested']);
  });

  it('lets the approved request through once; every tool of the request must be approved', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested } = await ask(g, ['deploy', 'migrate'], 'hash-two');
    const [deploy, migrate] = requested;
    expect(await consume(g, deploy!.id, 'hash-two')).toMatchObject({ ok: false, reason: 'not_approved' });
    await t.call('POST', `/v1/approvals/${deploy!.id}/approve`, { token: u.token });
    const halfway = await consume(g, deploy!.id, 'hash-two');
    expect(halfway).toMatchObject({ ok: false, reason: 'not_approved' });
    expect(halfway.ok === false && halfway.message).toContain('migrate');
    await t.call('POST', `/v1/approvals/${migrate!.id}/approve`, { token: u.token });

    expect(await consume(g, deploy!.id, 'other-request')).toMatchObject({
      ok: false,
      reason: 'request_mismatch',
    });
    const other = await agentWithPolicy(t, u);
    expect(await consume(g, deploy!.id, 'hash-two', other.agent.id)).toMatchObject({
      ok: false,
      reason: 'not_found',
    });
    expect(await consume(g, deploy!.id, 'hash-two')).toEqual({ ok: true });
    // Each approval of the request is consumed with its event, by the agent.
    for (const a of [deploy!, migrate!]) {
      const evs = await t.database.db.select().from(events).where(eq(events.subjectId, a.id));
      expect(evs.filter((e) => e.type === 'approval.consumed')).toEqual([
        expect.objectContaining({
          actorKind: 'agent',
          actorId: g.agent.id,
          data: { run_id: expect.any(String), agent_id: g.agent.id, tool_name: a.tool },
        }),
      ]);
    }
    expect(await consume(g, deploy!.id, 'hash-two')).toMatchObject({ ok: false, reason: 'consumed' });
    expect(await consume(g, migrate!.id, 'hash-two')).toMatchObject({ ok: false, reason: 'consumed' });
    const listed = await t.call('GET', '/v1/approvals', { token: u.token, query: { agent_id: g.agent.id } });
    expect(listed.body.data.map((a: { status: string }) => a.status)).toEqual(['consumed', 'consumed']);
  });

  it('uses an approval once even when two replays race', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested } = await ask(g, ['pay'], 'hash-race');
    await t.call('POST', `/v1/approvals/${requested[0]!.id}/approve`, { token: u.token });
    const results = await Promise.all(
      Array.from({ length: 10 }, () => consume(g, requested[0]!.id, 'hash-race')),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    // One event: the replays that lost the race rolled back with theirs.
    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, requested[0]!.id));
    expect(evs.filter((e) => e.type === 'approval.consumed')).toHaveLength(1);
  });

  it('refuses rejected and expired approvals', async () => {
    const g = await agentWithPolicy(t, u);
    const rejected = await ask(g, ['drop_table'], 'hash-r');
    await t.call('POST', `/v1/approvals/${rejected.requested[0]!.id}/reject`, {
      token: u.token,
      body: { reason: 'no' },
    });
    const r = await consume(g, rejected.requested[0]!.id, 'hash-r');
    expect(r).toMatchObject({ ok: false, reason: 'rejected' });

    const expiring = await ask(g, ['send_email'], 'hash-e', 5 * MINUTE_MS);
    await t.call('POST', `/v1/approvals/${expiring.requested[0]!.id}/approve`, { token: u.token });
    t.clock.advance(6 * MINUTE_MS);
    expect(await consume(g, expiring.requested[0]!.id, 'hash-e')).toMatchObject({
      ok: false,
      reason: 'expired',
    });
  });
});

describe('routes', () => {
  it('approve and reject decide once (409 approval_not_pending), with events and decided_by', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested } = await ask(g, ['a', 'b'], 'hash-routes');
    const [a, b] = requested;
    const approved = await t.call('POST', `/v1/approvals/${a!.id}/approve`, { token: u.token });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body).toMatchObject({ status: 'approved', decided_by: `user:${u.user.id}` });
    expect(approved.body.decided_at).toBe(t.clock.now().toISOString());
    const twice = await t.call('POST', `/v1/approvals/${a!.id}/reject`, { token: u.token, body: {} });
    expect([twice.status, twice.body.error.code, twice.body.error.details.status]).toEqual([
      409,
      'approval_not_pending',
      'approved',
    ]);

    const key = await t.apiKey(u.token, ['write']);
    const rejected = await t.call('POST', `/v1/approvals/${b!.id}/reject`, {
      token: key.key,
      body: { reason: 'too risky' },
    });
    expect(rejected.body).toMatchObject({
      status: 'rejected',
      reason: 'too risky',
      decided_by: `api_key:${key.id}`,
    });

    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, b!.id));
    expect(evs.map((e) => [e.type, e.data])).toEqual([
      ['approval.requested', expect.anything()],
      [
        'approval.rejected',
        { run_id: rejected.body.run_id, agent_id: g.agent.id, tool_name: 'b', reason: 'too risky' },
      ],
    ]);
  });

  it('an expired approval cannot be decided and lists as expired', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested, run } = await ask(g, ['slow'], 'hash-x', 2 * MINUTE_MS);
    const fresh = await ask(g, ['fast'], 'hash-y');
    t.clock.advance(3 * MINUTE_MS);
    const res = await t.call('POST', `/v1/approvals/${requested[0]!.id}/approve`, { token: u.token });
    expect([res.status, res.body.error.details?.status]).toEqual([409, 'expired']);
    const q = async (query: Record<string, string>) =>
      (
        await t.call('GET', '/v1/approvals', { token: u.token, query: { agent_id: g.agent.id, ...query } })
      ).body.data.map((a: { id: string }) => a.id);
    expect(await q({ status: 'expired' })).toEqual([requested[0]!.id]);
    expect(await q({ status: 'pending' })).toEqual([fresh.requested[0]!.id]);
    expect(await q({ run_id: run.id })).toEqual([fresh.requested[0]!.id, requested[0]!.id]);
    expect(await q({ status: 'approved' })).toEqual([]);
    const one = await t.call('GET', `/v1/approvals/${requested[0]!.id}`, { token: u.token });
    expect(one.body.status).toBe('expired');
  });

  it('pages newest first', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested } = await ask(g, ['t1', 't2', 't3'], 'hash-p');
    const p1 = await t.call('GET', '/v1/approvals', {
      token: u.token,
      query: { agent_id: g.agent.id, limit: '2' },
    });
    expect(p1.body.data).toHaveLength(2);
    const p2 = await t.call('GET', '/v1/approvals', {
      token: u.token,
      query: { agent_id: g.agent.id, limit: '2', cursor: p1.body.next_cursor },
    });
    expect(p2.body.next_cursor).toBeNull();
    const seen = [...p1.body.data, ...p2.body.data].map((a: { id: string }) => a.id);
    expect(seen).toEqual(
      requested
        .map((r) => r.id)
        .sort()
        .reverse(),
    );
  });

  it('is team-scoped, needs write to decide, and refuses agent keys', async () => {
    const g = await agentWithPolicy(t, u);
    const { requested } = await ask(g, ['secret_tool'], 'hash-t');
    const id = requested[0]!.id;
    expect((await t.call('GET', `/v1/approvals/${id}`, { token: stranger.token })).status).toBe(404);
    expect((await t.call('POST', `/v1/approvals/${id}/approve`, { token: stranger.token })).status).toBe(404);
    expect((await t.call('GET', '/v1/approvals', { token: stranger.token })).body.data).toEqual([]);
    const reader = await t.apiKey(u.token, ['read']);
    const denied = await t.call('POST', `/v1/approvals/${id}/approve`, { token: reader.key });
    expect([denied.status, denied.body.error.code]).toEqual([403, 'insufficient_scope']);
    const agent = await t.call('POST', `/v1/approvals/${id}/approve`, { token: g.agentKey });
    expect([agent.status, agent.body.error.code]).toEqual([403, 'agent_key_not_allowed']);
    expect((await t.call('GET', `/v1/approvals/${id}`, { token: u.token })).body.status).toBe('pending');
  });
});

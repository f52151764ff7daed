import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECOND_MS } from '../../src/core/clock.ts';
import { events } from '../../src/db/schema/index.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { agentWithPolicy, type GatewayAgent, runRow } from './setup.ts';

let t: TestApp;
let u: SignedUpUser;
let stranger: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  stranger = await t.signup();
});
afterAll(() => t.close());

const runs = () => t.services.runs;

async function startRun(g: GatewayAgent, name?: string) {
  return runs().resolveRun({
    teamId: g.teamId,
    agent: g.agent,
    policy: g.policy,
    newRun: true,
    ...(name ? { runName: name } : {}),
  });
}

async function charge(g: GatewayAgent, runId: string, costMicros: number, model = 'gpt-4o') {
  const r = await runs().reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros: costMicros,
    tokens: 30,
  });
  if (!r.ok) throw new Error(r.message);
  await runs().settle(r.reservationId, {
    type: 'llm_call',
    status: 'success',
    provider: 'openai',
    model,
    providerKeyId: 'pkey_x',
    usage: { input: 10, output: 15, cacheRead: 3, cacheCreation: 2 },
    costMicros,
  });
}

function block(g: GatewayAgent, runId: string, code: string, status: 'budget_blocked' | 'policy_blocked') {
  runs().recordBlocked({ teamId: g.teamId, runId, agentId: g.agent.id, status, code, message: code });
}

describe('admin routes', () => {
  it('lists the team’s runs newest first with filters and a cursor', async () => {
    const g = await agentWithPolicy(t, u);
    const h = await agentWithPolicy(t, u);
    const a1 = await startRun(g, 'a1');
    t.clock.advance(SECOND_MS);
    const a2 = await startRun(g, 'a2'); // ends a1
    t.clock.advance(SECOND_MS);
    const b1 = await startRun(h, 'b1');
    block(h, b1.id, 'model_not_allowed', 'policy_blocked');
    runs().recordFailoverTransition({
      teamId: h.teamId,
      runId: b1.id,
      agentId: h.agent.id,
      attempted: [
        { provider: 'openai', provider_key_id: 'pkey_1', status: 500, error: 'boom', kind: 'http_error' },
      ],
      resolvedProvider: null,
      resolvedModel: null,
      originalModel: 'gpt-4o',
    });
    await runs().flush();

    const all = await t.call('GET', '/v1/runs', { token: u.token });
    expect(all.status).toBe(200);
    const ids = all.body.data.map((r: { id: string }) => r.id);
    expect(ids.indexOf(b1.id)).toBeLessThan(ids.indexOf(a2.id));
    expect(ids.indexOf(a2.id)).toBeLessThan(ids.indexOf(a1.id));

    const q = async (query: Record<string, string>) =>
      (await t.call('GET', '/v1/runs', { token: u.token, query })).body.data.map((r: { id: string }) => r.id);
    expect(await q({ agent_id: g.agent.id })).toEqual([a2.id, a1.id]);
    expect(await q({ agent_id: g.agent.id, status: 'completed' })).toEqual([a1.id]);
    expect(await q({ policy_id: h.policy.id })).toEqual([b1.id]);
    expect(await q({ had_governance_block: 'true', agent_id: h.agent.id })).toEqual([b1.id]);
    expect(await q({ had_governance_block: 'false', agent_id: h.agent.id })).toEqual([]);
    expect(await q({ had_failover: 'true', policy_id: h.policy.id })).toEqual([b1.id]);
    expect(
      await q({ agent_id: g.agent.id, since: new Date(t.clock.now().getTime() - 1500).toISOString() }),
    ).toEqual([a2.id]);
    expect(
      await q({ agent_id: g.agent.id, until: new Date(t.clock.now().getTime() - 1500).toISOString() }),
    ).toEqual([a1.id]);

    const page1 = await t.call('GET', '/v1/runs', {
      token: u.token,
      query: { agent_id: g.agent.id, limit: '1' },
    });
    expect(page1.body.data.map((r: { id: string }) => r.id)).toEqual([a2.id]);
    expect(page1.body.next_cursor).toEqual(expect.any(String));
    const page2 = await t.call('GET', '/v1/runs', {
      token: u.token,
      query: { agent_id: g.agent.id, limit: '1', cursor: page1.body.next_cursor },
    });
    expect(page2.body.data.map((r: { id: string }) => r.id)).toEqual([a1.id]);
    expect(page2.body.next_cursor).toBeNull();

    const bad = await t.call('GET', '/v1/runs', { token: u.token, query: { status: 'sleeping' } });
    expect(bad.status).toBe(400);
  });

  it('answers a run in USD with its budget, and its steps (ascending, paged) and ledger', async () => {
    const g = await agentWithPolicy(t, u, {
      budget: { hard_limit_usd: 2.5, alert_threshold_tokens: 10_000 },
    });
    const run = await startRun(g);
    await charge(g, run.id, 1_234_567);
    await charge(g, run.id, 1);
    block(g, run.id, 'rate_limited', 'policy_blocked');
    await runs().flush();

    const res = await t.call('GET', `/v1/runs/${run.id}`, { token: u.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      id: run.id,
      agent_id: g.agent.id,
      status: 'running',
      creation_method: 'explicit',
      policy_name: g.policy.name,
      cost_usd: 1.234568,
      reserved_usd: 0,
      budget: { hard_limit_usd: 2.5, hard_limit_tokens: null, alert_threshold_tokens: 10_000 },
      tokens_used: { input: 20, output: 30, cache_read: 6, cache_creation: 4, total: 60 },
      step_count: 2,
      primary_model: 'gpt-4o',
      has_governance_block: true,
    });

    const p1 = await t.call('GET', `/v1/runs/${run.id}/steps`, { token: u.token, query: { limit: '2' } });
    expect(p1.body.data.map((s: { status: string }) => s.status)).toEqual(['success', 'success']);
    expect(p1.body.data[0]).toMatchObject({
      type: 'llm_call',
      cost_usd: 1.234567,
      tokens: { input: 10, output: 15, cache_read: 3, cache_creation: 2 },
    });
    const p2 = await t.call('GET', `/v1/runs/${run.id}/steps`, {
      token: u.token,
      query: { cursor: p1.body.next_cursor },
    });
    expect(p2.body.data).toHaveLength(1);
    expect(p2.body.data[0]).toMatchObject({ status: 'policy_blocked', error_kind: 'rate_limited' });

    const ledger = await t.call('GET', `/v1/runs/${run.id}/ledger`, { token: u.token });
    expect(ledger.status).toBe(200);
    expect(ledger.body.data.map((l: { cost_usd: number }) => l.cost_usd)).toEqual([1.234567, 0.000001]);
    expect(ledger.body.data[0]).toMatchObject({ step_id: p1.body.data[0].id, provider_key_id: 'pkey_x' });
  });

  it('PATCH renames and sets the outcome in any status; null clears', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await startRun(g, 'before');
    await startRun(g); // completes it
    const res = await t.call('PATCH', `/v1/runs/${run.id}`, {
      token: u.token,
      body: { name: 'after', outcome: 'partial', outcome_reason: 'half done' },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      name: 'after',
      outcome: 'partial',
      outcome_reason: 'half done',
      status: 'completed',
    });
    const cleared = await t.call('PATCH', `/v1/runs/${run.id}`, {
      token: u.token,
      body: { outcome_reason: null },
    });
    expect(cleared.body).toMatchObject({ name: 'after', outcome: 'partial', outcome_reason: null });
    const invalid = await t.call('PATCH', `/v1/runs/${run.id}`, {
      token: u.token,
      body: { outcome: 'great' },
    });
    expect(invalid.status).toBe(400);
  });

  it('complete: admin_completed by default, explicit; outcome by precedence; 409 once ended', async () => {
    const g = await agentWithPolicy(t, u, { outcome_defaults: { admin_completed: 'partial' } });
    const plain = await agentWithPolicy(t, u);

    const byDefault = await startRun(plain);
    const res = await t.call('POST', `/v1/runs/${byDefault.id}/complete`, { token: u.token });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      status: 'completed',
      ended_reason: 'admin_completed',
      completion_reason: 'explicit',
      outcome: 'success',
    });
    expect(res.body.ended_at).toBe(t.clock.now().toISOString());
    const again = await t.call('POST', `/v1/runs/${byDefault.id}/complete`, { token: u.token, body: {} });
    expect([again.status, again.body.error.code]).toEqual([409, 'run_not_running']);

    const fromPolicy = await startRun(g);
    expect(
      (await t.call('POST', `/v1/runs/${fromPolicy.id}/complete`, { token: u.token, body: {} })).body.outcome,
    ).toBe('partial');

    const fromBody = await startRun(g);
    const body = await t.call('POST', `/v1/runs/${fromBody.id}/complete`, {
      token: u.token,
      body: {
        reason: 'operator_done',
        outcome: 'failed',
        outcome_reason: 'wrong answer',
        metadata: { by: 'ops' },
      },
    });
    expect(body.body).toMatchObject({
      ended_reason: 'operator_done',
      outcome: 'failed',
      outcome_reason: 'wrong answer',
      metadata: { by: 'ops' },
    });

    const patchedFirst = await startRun(g);
    await t.call('PATCH', `/v1/runs/${patchedFirst.id}`, { token: u.token, body: { outcome: 'failed' } });
    expect(
      (await t.call('POST', `/v1/runs/${patchedFirst.id}/complete`, { token: u.token })).body.outcome,
    ).toBe('failed');

    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, byDefault.id));
    expect(evs.map((e) => e.type)).toContain('run.completed');
  });

  it('stop force-stops a running run (run.force_stopped) and 409s otherwise; unblock 409s on a running run', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await startRun(g);
    const notStopped = await t.call('POST', `/v1/runs/${run.id}/unblock`, { token: u.token });
    expect([notStopped.status, notStopped.body.error.code]).toEqual([409, 'run_not_force_stopped']);
    const res = await t.call('POST', `/v1/runs/${run.id}/stop`, { token: u.token });
    expect(res.body).toMatchObject({
      status: 'force_stopped',
      ended_reason: 'admin_stopped',
      completion_reason: 'explicit',
      outcome: null,
    });
    const again = await t.call('POST', `/v1/runs/${run.id}/stop`, { token: u.token });
    expect([again.status, again.body.error.code]).toEqual([409, 'run_not_running']);
    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, run.id));
    expect(evs.find((e) => e.type === 'run.force_stopped')?.actorId).toBe(u.user.id);
  });

  it('hides another team’s runs (404, not in lists) and needs the right scope', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await startRun(g);
    for (const [method, path] of [
      ['GET', `/v1/runs/${run.id}`],
      ['PATCH', `/v1/runs/${run.id}`],
      ['GET', `/v1/runs/${run.id}/steps`],
      ['GET', `/v1/runs/${run.id}/ledger`],
      ['POST', `/v1/runs/${run.id}/complete`],
      ['POST', `/v1/runs/${run.id}/stop`],
      ['POST', `/v1/runs/${run.id}/unblock`],
    ] as const) {
      const res = await t.call(method, path, {
        token: stranger.token,
        ...(method === 'PATCH' ? { body: {} } : {}),
      });
      expect([method, path, res.status]).toEqual([method, path, 404]);
    }
    const list = await t.call('GET', '/v1/runs', { token: stranger.token });
    expect(list.body.data).toEqual([]);
    expect((await runRow(t, run.id)).status).toBe('running');

    const readOnly = await t.apiKey(u.token, ['read']);
    expect((await t.call('GET', `/v1/runs/${run.id}`, { token: readOnly.key })).status).toBe(200);
    const denied = await t.call('POST', `/v1/runs/${run.id}/stop`, { token: readOnly.key });
    expect([denied.status, denied.body.error.code]).toEqual([403, 'insufficient_scope']);
  });

  it('refuses agent keys on admin routes', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await startRun(g);
    for (const [method, path] of [
      ['GET', '/v1/runs'],
      ['GET', `/v1/runs/${run.id}/ledger`],
      ['POST', `/v1/runs/${run.id}/stop`],
      ['POST', `/v1/runs/${run.id}/unblock`],
    ] as const) {
      const res = await t.call(method, path, { token: g.agentKey });
      expect([path, res.status, res.body.error.code]).toEqual([path, 403, 'agent_key_not_allowed']);
    }
    expect((await runRow(t, run.id)).status).toBe('running');
  });
});

describe('agent routes', () => {
  it('current: the latest running run, 404 when none; team keys are refused', async () => {
    const g = await agentWithPolicy(t, u);
    const none = await t.call('GET', '/v1/runs/current', { token: g.agentKey });
    expect(none.status).toBe(404);
    const run = await startRun(g, 'mine');
    const res = await t.call('GET', '/v1/runs/current', { token: g.agentKey });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: run.id, name: 'mine' });
    const team = await t.call('GET', '/v1/runs/current', { token: u.token });
    expect([team.status, team.body.error.code]).toEqual([403, 'agent_key_required']);

    const patched = await t.call('PATCH', '/v1/runs/current', {
      token: g.agentKey,
      body: { name: 'renamed', outcome: 'partial' },
    });
    expect(patched.body).toMatchObject({ id: run.id, name: 'renamed', outcome: 'partial' });
  });

  it('complete answers the completion summary; outcome_defaults apply when the agent sets none', async () => {
    const g = await agentWithPolicy(t, u, { outcome_defaults: { agent_signaled: 'failed' } });
    const run = await startRun(g, 'job-1');
    await charge(g, run.id, 500_000, 'gpt-4o');
    await charge(g, run.id, 100_000, 'gpt-4o-mini');
    await charge(g, run.id, 100_000, 'gpt-4o');
    block(g, run.id, 'rate_limited', 'policy_blocked');
    block(g, run.id, 'rate_limited', 'policy_blocked');
    block(g, run.id, 'model_not_allowed', 'policy_blocked');
    block(g, run.id, 'budget_exceeded', 'budget_blocked');
    await runs().flush();
    t.clock.advance(90 * SECOND_MS);

    const res = await t.call('POST', '/v1/runs/current/complete', {
      token: g.agentKey,
      body: { metadata: { k: 1 } },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toEqual({
      id: run.id,
      name: 'job-1',
      status: 'completed',
      ended_at: t.clock.now().toISOString(),
      ended_reason: 'agent_signaled',
      completion_reason: 'explicit',
      outcome: 'failed',
      outcome_reason: null,
      step_count: 3,
      cost_usd: 0.7,
      tokens_used: { input: 30, output: 45, cache_read: 9, cache_creation: 6, total: 90 },
      duration_ms: 90_000,
      policy_name: g.policy.name,
      primary_model: 'gpt-4o',
      governance_events: [
        { type: 'rate_limited', count: 2 },
        { type: 'budget_exceeded', count: 1 },
        { type: 'model_not_allowed', count: 1 },
      ],
      limits_hit: expect.arrayContaining(['rate_limited', 'budget_exceeded']),
    });
    expect((await runRow(t, run.id)).metadata).toEqual({ k: 1 });
    const none = await t.call('POST', '/v1/runs/current/complete', { token: g.agentKey });
    expect(none.status).toBe(404);
  });

  it('complete by id: success by default, the body’s outcome wins; another agent’s run is 404', async () => {
    const g = await agentWithPolicy(t, u);
    const other = await agentWithPolicy(t, u);
    const run = await startRun(g);
    const foreign = await t.call('POST', `/v1/runs/${run.id}/complete`, { token: other.agentKey });
    expect(foreign.status).toBe(404);
    expect((await t.call('GET', `/v1/runs/${run.id}`, { token: other.agentKey })).status).toBe(404);
    expect((await t.call('GET', `/v1/runs/${run.id}/steps`, { token: other.agentKey })).status).toBe(404);
    expect(
      (await t.call('PATCH', `/v1/runs/${run.id}`, { token: other.agentKey, body: { name: 'x' } })).status,
    ).toBe(404);
    expect((await t.call('GET', `/v1/runs/${run.id}`, { token: g.agentKey })).status).toBe(200);

    const res = await t.call('POST', `/v1/runs/${run.id}/complete`, { token: g.agentKey });
    expect(res.body).toMatchObject({ id: run.id, ended_reason: 'agent_signaled', outcome: 'success' });
    expect(res.body.governance_events).toEqual([]);
    const again = await t.call('POST', `/v1/runs/${run.id}/complete`, { token: g.agentKey });
    expect([again.status, again.body.error.code]).toEqual([409, 'run_not_running']);

    const second = await startRun(g);
    const custom = await t.call('POST', `/v1/runs/${second.id}/complete`, {
      token: g.agentKey,
      body: { ended_reason: 'task_done', outcome: 'partial', outcome_reason: 'ran out of time' },
    });
    expect(custom.body).toMatchObject({
      ended_reason: 'task_done',
      outcome: 'partial',
      outcome_reason: 'ran out of time',
    });
  });

  it('complete-all ends every running run of the agent only; idempotent', async () => {
    const g = await agentWithPolicy(t, u);
    const second = await agentWithPolicy(t, u);
    const other = await agentWithPolicy(t, u);
    const a = await startRun(g);
    const b = await runs().resolveRun({ teamId: g.teamId, agent: g.agent, policy: second.policy });
    const untouched = await startRun(other);
    const res = await t.call('POST', '/v1/runs/complete-all', { token: g.agentKey });
    expect(res.status).toBe(200);
    expect(res.body.completed_count).toBe(2);
    expect(res.body.completed_run_ids.sort()).toEqual([a.id, b.id].sort());
    expect(await runRow(t, a.id)).toMatchObject({ endedReason: 'agent_complete_all', outcome: 'success' });
    expect((await runRow(t, untouched.id)).status).toBe('running');
    const again = await t.call('POST', '/v1/runs/complete-all', {
      token: g.agentKey,
      body: { ended_reason: 'job_end' },
    });
    expect(again.body).toEqual({ completed_count: 0, completed_run_ids: [] });
  });

  it('logs tool-call steps whose cost counts toward the budget', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 0.1 } });
    const other = await agentWithPolicy(t, u);
    const run = await startRun(g);
    const res = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: g.agentKey,
      body: {
        type: 'tool_call',
        name: 'web_search',
        status: 'success',
        request: { q: 'paddock' },
        response: { hits: 3 },
        tokens: { input: 7, output: 3 },
        cost_usd: 0.04,
        latency_ms: 120,
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({
      type: 'tool_call',
      name: 'web_search',
      provider: 'sdk',
      status: 'success',
      cost_usd: 0.04,
      tokens: { input: 7, output: 3, cache_read: 0, cache_creation: 0 },
      latency_ms: 120,
      request: { q: 'paddock' },
    });
    expect(await runRow(t, run.id)).toMatchObject({ costMicros: 40_000, stepCount: 1, inputTokens: 7 });

    const over = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: g.agentKey,
      body: { type: 'tool_call', name: 'scrape', status: 'success', cost_usd: 0.07 },
    });
    expect([over.status, over.body.error.code]).toEqual([402, 'budget_exceeded']);
    await t.services.runs.flush();
    expect(await runRow(t, run.id)).toMatchObject({ costMicros: 40_000, hasGovernanceBlock: true });

    const foreign = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: other.agentKey,
      body: { type: 'tool_call', name: 'x', status: 'error' },
    });
    expect(foreign.status).toBe(404);
    const invalid = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: g.agentKey,
      body: { type: 'llm_call', name: 'x', status: 'success' },
    });
    expect(invalid.status).toBe(400);

    // Reaching the limit ends the run; the next tool call is 409.
    const last = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: g.agentKey,
      body: { type: 'tool_call', name: 'scrape', status: 'timeout', cost_usd: 0.06, error_message: 'slow' },
    });
    expect(last.status).toBe(201);
    expect(await runRow(t, run.id)).toMatchObject({ status: 'budget_exceeded', endedReason: 'cost_limit' });
    const closed = await t.call('POST', `/v1/runs/${run.id}/steps`, {
      token: g.agentKey,
      body: { type: 'tool_call', name: 'x', status: 'success' },
    });
    expect([closed.status, closed.body.error.code]).toEqual([409, 'run_not_running']);
  });

  it('a disabled agent cannot complete its runs (403 agent_disabled)', async () => {
    const g = await agentWithPolicy(t, u);
    await startRun(g);
    const disabled = await t.call('PATCH', `/v1/agents/${g.agent.id}`, {
      token: u.token,
      body: { status: 'disabled' },
    });
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    const res = await t.call('POST', '/v1/runs/current/complete', { token: g.agentKey });
    expect([res.status, res.body.error.code]).toEqual([403, 'agent_disabled']);
  });
});

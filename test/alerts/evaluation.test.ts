import { and, eq, sum } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ledgerEntries } from '../../src/db/schema/index.ts';
import { claimEvaluation } from '../../src/modules/alerts/repo.ts';
import { SmtpCatcher } from '../mail/smtp.ts';
import { agentWithPolicy } from '../runs/setup.ts';
import { createTestApp, type TestApp } from '../support/app.ts';
import { createProviderKey, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import type { MockStep } from '../support/mock-llm.ts';
import { type Receiver, startReceiver } from '../webhooks/receiver.ts';

/**
 * Rules evaluated over records made by real calls through the gateway to the
 * mock provider. The evaluator's own timer is stopped: each test moves the
 * server's clock on by one evaluation interval (60 s) and ticks it.
 */
let g: GatewayFixture;
let smtp: SmtpCatcher;
let receiver: Receiver;
beforeAll(async () => {
  smtp = new SmtpCatcher();
  await smtp.start();
  receiver = await startReceiver(() => ({ status: 200 }));
  g = await startGateway({ env: { PADDOCK_SMTP_URL: smtp.url } });
  await g.t.services.alertEvaluator.stop();
}, 60_000);
afterAll(async () => {
  await g?.close();
  await receiver?.close();
  await smtp?.stop();
});

const call = (method: string, url: string, body?: unknown) =>
  g.t.call(method, url, { token: g.user.token, ...(body !== undefined ? { body } : {}) });
const chat = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'Say something.' }] };
let seq = 0;

async function rule(body: Record<string, unknown>): Promise<Json> {
  const res = await call('POST', '/v1/alert-rules', { name: `rule-${++seq}`, ...body });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
const firings = async (r: Json): Promise<Json[]> =>
  (await call('GET', `/v1/alert-rules/${r.id}/firings`)).body.data;
/** One evaluation interval later, the records written, one tick. */
async function evaluate(ms = 60_000) {
  g.t.clock.advance(ms);
  await g.t.services.runs.flush();
  await g.t.services.alertEvaluator.tick();
}
/** `steps` answers, in order, to as many calls as `agent` makes; errors are caught. */
async function calls(agent: Json & { api_key: string }, steps: MockStep[]) {
  g.mock.reset();
  g.mock.reply(steps);
  const client = g.openai({ apiKey: agent.api_key });
  for (let i = 0; i < steps.length; i++) await client.chat.completions.create(chat).catch(() => undefined);
  await g.t.services.runs.flush();
}

describe('the six conditions', () => {
  it('cost_threshold fires with the window’s cost, not below it; e-mails a member; a webhook gets it; cooldown holds', async () => {
    const hook = await call('POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${receiver.port}/alerts`,
      event_types: ['alert.triggered'],
    });
    expect(hook.status).toBe(201);
    const agent = await g.newAgent();
    const low = await rule({
      condition_type: 'cost_threshold',
      condition_config: { threshold_usd: 0.01 },
      agent_id: agent.id,
      notify_emails: [g.user.user.email],
    });
    const high = await rule({
      condition_type: 'cost_threshold',
      condition_config: { threshold_usd: 1000 },
      agent_id: agent.id,
    });
    await calls(agent, [{ text: 'expensive', usage: { input: 100_000, output: 1000 } }]);
    const [spent] = await g.t.database.db
      .select({ micros: sum(ledgerEntries.costMicros) })
      .from(ledgerEntries)
      .where(and(eq(ledgerEntries.agentId, agent.id)));
    const costUsd = Number(spent!.micros) / 1e6;
    expect(costUsd).toBeGreaterThan(0.01);

    await evaluate();
    expect(await firings(high)).toEqual([]);
    const [fired] = await firings(low);
    expect(fired).toMatchObject({
      rule_id: low.id,
      rule_name: low.name,
      condition_type: 'cost_threshold',
      agent_id: agent.id,
      fired_at: g.t.clock.now().toISOString(),
      evidence: {
        value: costUsd,
        threshold: 0.01,
        unit: 'usd',
        ledger_entries: 1,
        window_end: g.t.clock.now().toISOString(),
        window_start: new Date(g.t.clock.now().getTime() - 3600_000).toISOString(),
        by_agent: [{ agent_id: agent.id, cost_usd: costUsd, entries: 1 }],
      },
    });
    const after = (await call('GET', `/v1/alert-rules/${low.id}`)).body;
    expect(after.last_triggered_at).toBe(fired!.fired_at);
    expect((await call('GET', `/v1/alerts?rule_id=${low.id}`)).body.data).toEqual([fired]);

    // The webhook subscribed to alert.triggered receives it, with the evidence.
    await receiver.until((all) => all.some((r) => r.body.includes(fired!.id)));
    const delivered = JSON.parse(receiver.received.find((r) => r.body.includes(fired!.id))!.body);
    expect(delivered).toMatchObject({
      type: 'alert.triggered',
      data: {
        type: 'alert.triggered',
        subject_id: low.id,
        data: {
          rule_id: low.id,
          firing_id: fired!.id,
          condition_type: 'cost_threshold',
          agent_id: agent.id,
          evidence: { value: costUsd },
        },
      },
    });
    // One e-mail to the member named, through the mail outbox to the SMTP server.
    const mail = await smtp.mailTo(g.user.user.email);
    expect(mail.body).toContain(`Subject: [Paddock alert] ${low.name}`);
    expect(mail.body).toContain(`/v1/alert-rules/${low.id}/firings`);

    // Still over the threshold: in its cooldown (300 s) it does not fire again; after it, it does.
    await evaluate();
    await evaluate(180_000);
    expect(await firings(low)).toHaveLength(1);
    await evaluate(60_000);
    expect(await firings(low)).toHaveLength(2);
  });

  it('error_rate: the share of model calls that ended in an error, with min_requests', async () => {
    const agent = await g.newAgent();
    const fires = await rule({
      condition_type: 'error_rate',
      condition_config: { threshold_pct: 50, min_requests: 4 },
      agent_id: agent.id,
    });
    const few = await rule({
      condition_type: 'error_rate',
      condition_config: { threshold_pct: 50, min_requests: 5 },
      agent_id: agent.id,
    });
    const above = await rule({
      condition_type: 'error_rate',
      condition_config: { threshold_pct: 60, min_requests: 1 },
      agent_id: agent.id,
    });
    await calls(agent, [{ text: 'ok' }, { status: 400 }, { text: 'ok' }, { status: 400 }]);
    await evaluate();
    expect(await firings(few)).toEqual([]);
    expect(await firings(above)).toEqual([]);
    expect((await firings(fires))[0]!.evidence).toMatchObject({
      value: 50,
      threshold: 50,
      unit: 'percent',
      requests: 4,
      errors: 2,
      min_requests: 4,
      by_provider: [{ provider: 'openai', requests: 4, errors: 2 }],
    });
  });

  it('failover_rate: the share of model calls served after another provider key failed', async () => {
    const a = await createProviderKey(g.t, g.user.token, {
      provider: 'openai',
      api_key: 'sk-first',
      base_url: g.mock.url,
    });
    const agent = await g.newAgent(
      { routing: { timeout_ms: 1000, connect_timeout_ms: 1000, circuit_breaker: { failure_threshold: 0 } } },
      {
        provider_keys: {
          openai: [
            { key_id: a.id, weight: 1 },
            { key_id: g.keys.openai.id, weight: 1 },
          ],
        },
      },
    );
    const fires = await rule({
      condition_type: 'failover_rate',
      condition_config: { threshold_pct: 50, min_requests: 2 },
      agent_id: agent.id,
    });
    const above = await rule({
      condition_type: 'failover_rate',
      condition_config: { threshold_pct: 51, min_requests: 2 },
      agent_id: agent.id,
    });
    g.mock.reset();
    // The first key fails the first call (which moves on to the second key); it serves the next.
    g.mock.replyFor({ apiKey: 'sk-first' }, { status: 500 });
    const client = g.openai({ apiKey: agent.api_key });
    await client.chat.completions.create(chat);
    await client.chat.completions.create(chat);
    await evaluate();
    expect(await firings(above)).toEqual([]);
    expect((await firings(fires))[0]!.evidence).toMatchObject({
      value: 50,
      requests: 2,
      failovers: 1,
      by_provider: [{ provider: 'openai', requests: 2, failovers: 1 }],
    });
  });

  it('rate_limit_approaching: the busiest minute against the policy’s requests per minute', async () => {
    const agent = await g.newAgent({ rate_limits: { max_requests_per_minute: 4 } });
    const fires = await rule({
      condition_type: 'rate_limit_approaching',
      condition_config: { threshold_pct: 75 },
      agent_id: agent.id,
      window_seconds: 300,
    });
    const above = await rule({
      condition_type: 'rate_limit_approaching',
      condition_config: { threshold_pct: 80 },
      agent_id: agent.id,
      window_seconds: 300,
    });
    await calls(agent, [{ text: 'a' }, { text: 'b' }, { text: 'c' }]);
    await evaluate();
    expect(await firings(above)).toEqual([]);
    expect((await firings(fires))[0]!.evidence).toMatchObject({
      value: 75,
      threshold: 75,
      limit: 'requests_per_minute',
      max_requests_per_minute: 4,
      max_tokens_per_minute: null,
      peak_requests: 3,
      policy_id: agent.policy_id,
    });
  });

  it('approval_pending_timeout: approvals pending longer than timeout_seconds', async () => {
    const a = await agentWithPolicy(g.t, g.user);
    const r = await rule({
      condition_type: 'approval_pending_timeout',
      condition_config: { timeout_seconds: 600 },
      agent_id: a.agent.id,
    });
    const run = await g.t.services.runs.resolveRun({ teamId: a.teamId, agent: a.agent, policy: a.policy });
    const [asked] = await g.t.services.approvals.request({
      teamId: a.teamId,
      runId: run.id,
      agentId: a.agent.id,
      policyId: a.policy.id,
      toolNames: ['deploy'],
      requestHash: 'h',
      requestSnapshot: {},
      expiresAt: new Date(g.t.clock.now().getTime() + 3600_000),
    });
    await evaluate();
    expect(await firings(r)).toEqual([]);
    await evaluate(600_000);
    expect((await firings(r))[0]!.evidence).toMatchObject({
      value: 660,
      threshold: 600,
      unit: 'seconds',
      overdue_approvals: 1,
      approvals: [
        { id: asked!.id, agent_id: a.agent.id, run_id: run.id, tool_name: 'deploy', pending_seconds: 660 },
      ],
    });
  });
});

describe('evaluation', () => {
  it('a disabled rule is not evaluated; enabled again, it is at the next tick', async () => {
    const agent = await g.newAgent();
    const r = await rule({
      condition_type: 'cost_threshold',
      condition_config: { threshold_usd: 0.01 },
      agent_id: agent.id,
    });
    await call('POST', `/v1/alert-rules/${r.id}/disable`);
    await calls(agent, [{ text: 'expensive', usage: { input: 100_000, output: 1000 } }]);
    await evaluate();
    expect((await call('GET', `/v1/alert-rules/${r.id}`)).body.last_evaluated_at).toBeNull();
    expect(await firings(r)).toEqual([]);
    await call('POST', `/v1/alert-rules/${r.id}/enable`);
    await evaluate(1000);
    expect(await firings(r)).toHaveLength(1);
  });

  it('two servers on one database fire a rule once per evaluation slot', async () => {
    let t2: TestApp | undefined;
    try {
      t2 = await createTestApp({ shareWith: g.t, manualTimers: true });
      const agent = await g.newAgent();
      const r = await rule({
        condition_type: 'cost_threshold',
        condition_config: { threshold_usd: 0.01 },
        agent_id: agent.id,
        cooldown_seconds: 0,
      });
      await calls(agent, [{ text: 'expensive', usage: { input: 100_000, output: 1000 } }]);
      const e1 = g.t.services.alertEvaluator;
      const e2 = t2.services.alertEvaluator;
      for (let slot = 1; slot <= 3; slot++) {
        g.t.clock.advance(60_000);
        const leaders = await Promise.all([e1.tick(), e2.tick(), e2.tick(), e1.tick()]);
        expect(leaders.filter(Boolean).length).toBeGreaterThanOrEqual(1);
        expect(await firings(r)).toHaveLength(slot);
      }
      // Ticks within the slot fire nothing more.
      await Promise.all([e1.tick(), e2.tick()]);
      expect(await firings(r)).toHaveLength(3);
      // Two leaders at once (a paused one whose lease ran out): the slot's claim is one statement; one wins.
      g.t.clock.advance(60_000);
      const now = g.t.clock.now();
      const due = new Date(now.getTime() - 60_000);
      const claims = await Promise.all([
        claimEvaluation(g.t.database.db, r.id, due, now),
        claimEvaluation(t2.database.db, r.id, due, now),
      ]);
      expect(claims.filter(Boolean)).toHaveLength(1);
      await e1.stop();
      await e2.stop();
    } finally {
      await t2?.close();
    }
  });
});

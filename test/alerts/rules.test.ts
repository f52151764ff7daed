import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let stranger: SignedUpUser;
let agent: Json;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  stranger = await t.signup();
  agent = await createAgent(t, u.token);
});
afterAll(() => t.close());

const call = (method: string, url: string, body?: unknown, token = u.token) =>
  t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
let seq = 0;
const rule = (body: Record<string, unknown> = {}) =>
  call('POST', '/v1/alert-rules', {
    name: `rule-${++seq}`,
    condition_type: 'cost_threshold',
    condition_config: { threshold_usd: 5 },
    ...body,
  });

describe('alert rules: create, read, change, delete', () => {
  it('creates a rule with the defaults, lists it, reads it, and records alert_rule.created', async () => {
    const res = await rule({ name: 'spend', description: 'too much spend' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      name: 'spend',
      description: 'too much spend',
      condition_type: 'cost_threshold',
      condition_config: { threshold_usd: 5 },
      agent_id: null,
      window_seconds: 3600,
      cooldown_seconds: 300,
      notify_emails: [],
      status: 'active',
      last_evaluated_at: null,
      last_triggered_at: null,
      team_id: u.team.id,
    });
    expect(res.body.id).toMatch(/^alr_/);
    expect((await call('GET', `/v1/alert-rules/${res.body.id}`)).body).toEqual(res.body);
    const listed = await call('GET', '/v1/alert-rules?condition_type=cost_threshold');
    expect(listed.body.data.map((r: Json) => r.id)).toContain(res.body.id);
    expect((await call('GET', '/v1/alert-rules?condition_type=error_rate')).body.data).toEqual([]);
    const events = await call('GET', '/v1/events?type=alert_rule.created');
    expect(JSON.stringify(events.body)).toContain(res.body.id);
    // Names are unique per team (Rungate): 409.
    const again = await rule({ name: 'spend' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('alert_rule_name_taken');
  });

  it('accepts each type with its keys and refuses bad ones with a 400 naming the key', async () => {
    const good: Array<[string, Record<string, number>]> = [
      ['cost_threshold', { threshold_usd: 0.5 }],
      ['error_rate', { threshold_pct: 20, min_requests: 5 }],
      ['rate_limit_approaching', { threshold_pct: 80 }],
      ['approval_pending_timeout', { timeout_seconds: 600 }],
      ['failover_rate', { threshold_pct: 10 }],
      ['task_failure_rate', { threshold_pct: 50, min_tasks: 3 }],
    ];
    for (const [type, config] of good) {
      const res = await rule({ condition_type: type, condition_config: config, agent_id: agent.id });
      expect(res.status, type).toBe(201);
    }
    const bad: Array<[string, Record<string, unknown>, string]> = [
      ['cost_threshold', { threshold_usd: -1 }, 'threshold_usd'],
      ['cost_threshold', {}, 'threshold_usd'],
      ['error_rate', { threshold_pct: 101 }, 'threshold_pct'],
      ['error_rate', { threshold_pct: 10, min_requests: 0 }, 'min_requests'],
      ['rate_limit_approaching', { threshold_pct: 'high' }, 'threshold_pct'],
      ['approval_pending_timeout', { timeout_seconds: 1.5 }, 'timeout_seconds'],
      ['failover_rate', { threshold_pct: 10, threshold_usd: 1 }, 'threshold_usd'],
      ['task_failure_rate', { threshold_pct: 10, min_requests: 3 }, 'min_requests'],
    ];
    for (const [type, config, key] of bad) {
      const res = await rule({ condition_type: type, condition_config: config, agent_id: agent.id });
      expect(res.status, `${type} ${JSON.stringify(config)}`).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toContain(`condition_config.${key}`);
    }
  });

  it('refuses a bad window, cooldown, type, agent or recipient', async () => {
    expect((await rule({ window_seconds: 59 })).status).toBe(400);
    expect((await rule({ window_seconds: 604_801 })).status).toBe(400);
    expect((await rule({ cooldown_seconds: -1 })).status).toBe(400);
    expect((await rule({ condition_type: 'cpu_hot' })).status).toBe(400);
    const noAgent = await rule({
      condition_type: 'rate_limit_approaching',
      condition_config: { threshold_pct: 80 },
    });
    expect(noAgent.status).toBe(400);
    expect(noAgent.body.error.code).toBe('agent_required');
    const foreign = await createAgent(t, stranger.token);
    const unknown = await rule({ agent_id: foreign.id });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe('unknown_agent');
    // Only the team's members are e-mailed: a stranger's address is refused.
    const outsider = await rule({ notify_emails: [u.user.email, stranger.user.email] });
    expect(outsider.status).toBe(400);
    expect(outsider.body.error).toMatchObject({
      code: 'not_a_member',
      details: { emails: [stranger.user.email] },
    });
    const member = await rule({ notify_emails: [u.user.email.toUpperCase()] });
    expect(member.status).toBe(201);
    expect(member.body.notify_emails).toEqual([u.user.email]);
  });

  it('PATCH changes the fields sent and checks the config against the (new) type; enable and disable', async () => {
    const created = (await rule()).body;
    const patched = await call('PATCH', `/v1/alert-rules/${created.id}`, {
      window_seconds: 600,
      cooldown_seconds: 0,
      description: 'changed',
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ window_seconds: 600, cooldown_seconds: 0, description: 'changed' });
    // A new type with the old config: the old config's key is not one of the new type's.
    const wrong = await call('PATCH', `/v1/alert-rules/${created.id}`, { condition_type: 'error_rate' });
    expect(wrong.status).toBe(400);
    expect(Object.keys(wrong.body.error.details.fields)).toEqual(
      expect.arrayContaining(['condition_config.threshold_usd', 'condition_config.threshold_pct']),
    );
    const retyped = await call('PATCH', `/v1/alert-rules/${created.id}`, {
      condition_type: 'error_rate',
      condition_config: { threshold_pct: 5 },
    });
    expect(retyped.body).toMatchObject({
      condition_type: 'error_rate',
      condition_config: { threshold_pct: 5 },
    });

    const disabled = await call('POST', `/v1/alert-rules/${created.id}/disable`);
    expect(disabled.body.status).toBe('disabled');
    expect((await call('GET', '/v1/alert-rules?status=disabled')).body.data.map((r: Json) => r.id)).toContain(
      created.id,
    );
    expect((await call('POST', `/v1/alert-rules/${created.id}/enable`)).body.status).toBe('active');

    expect((await call('DELETE', `/v1/alert-rules/${created.id}`)).status).toBe(204);
    expect((await call('GET', `/v1/alert-rules/${created.id}`)).status).toBe(404);
    expect((await call('GET', `/v1/alert-rules/${created.id}/firings`)).status).toBe(404);
  });

  it('members read, admins manage; agent keys and other teams get nothing', async () => {
    const created = (await rule()).body;
    const reader = await t.apiKey(u.token, ['read']);
    const writer = await t.apiKey(u.token, ['write']);
    expect((await call('GET', `/v1/alert-rules/${created.id}`, undefined, reader.key)).status).toBe(200);
    expect((await call('GET', `/v1/alert-rules/${created.id}/firings`, undefined, reader.key)).status).toBe(
      200,
    );
    expect((await call('GET', '/v1/alerts', undefined, reader.key)).status).toBe(200);
    const refused = await call('POST', `/v1/alert-rules/${created.id}/disable`, undefined, writer.key);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_scope');
    expect((await call('DELETE', `/v1/alert-rules/${created.id}`, undefined, writer.key)).status).toBe(403);
    const agentKey = await call('GET', '/v1/alert-rules', undefined, agent.api_key);
    expect(agentKey.status).toBe(403);
    // Another team's rule is a 404, like an unknown id, and absent from its lists.
    expect((await call('GET', `/v1/alert-rules/${created.id}`, undefined, stranger.token)).status).toBe(404);
    expect((await call('PATCH', `/v1/alert-rules/${created.id}`, { name: 'x' }, stranger.token)).status).toBe(
      404,
    );
    expect((await call('GET', '/v1/alert-rules', undefined, stranger.token)).body.data).toEqual([]);
    expect((await call('GET', '/v1/alert-rules/alr_nope')).status).toBe(404);
  });
});

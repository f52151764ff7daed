import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

// The audit log: a change's entry commits with the change (and carries the
// request's address, id and route); refused and failed calls get one of
// their own; a governance block is one too. Team admins read their team's,
// platform admins every team's, as pages or JSON lines.

let g: GatewayFixture;
let t: TestApp;
/** The server's first user: a platform admin and owner of their team. */
let admin: SignedUpUser;
let other: SignedUpUser;

beforeAll(async () => {
  g = await startGateway({ policy: { blocked_models: ['gpt-4o-mini*'] } });
  t = g.t;
  admin = g.user;
  other = await t.signup({ name: 'Other Team' });
});
afterAll(async () => {
  await g.close();
});

async function auditOf(token: string, query: Record<string, string> = {}): Promise<Json[]> {
  const res = await t.call('GET', '/v1/audit-logs', { token, query: { limit: '200', ...query } });
  expect(res.status).toBe(200);
  return res.body.data;
}

describe('a change', () => {
  it('is audited in its own transaction, with who, from where, and the request', async () => {
    const res = await t.call('POST', '/v1/secrets', {
      token: admin.token,
      body: { name: 'AUDITED_SECRET', value: 'sk-never-in-the-audit-log' },
      headers: { 'user-agent': 'audit-test/1.0', 'x-request-id': 'req-audit-1' },
      remoteAddress: '203.0.113.7',
    });
    expect(res.status).toBe(201);
    const [entry] = await auditOf(admin.token, { resource_id: res.body.id });
    expect(entry).toMatchObject({
      team_id: admin.team.id,
      actor_kind: 'user',
      actor_id: admin.user.id,
      action: 'secret.created',
      resource_id: res.body.id,
      outcome: 'success',
      ip_address: '203.0.113.7',
      request_id: 'req-audit-1',
      route: 'POST /v1/secrets',
      user_agent: 'audit-test/1.0',
      details: { name: 'AUDITED_SECRET' },
    });
    expect(JSON.stringify(await auditOf(admin.token))).not.toContain('sk-never-in-the-audit-log');
  });

  it('that rolls back leaves only the failed call’s entry', async () => {
    const body = { name: 'TWICE_SECRET', value: 'value-one' };
    expect((await t.call('POST', '/v1/secrets', { token: admin.token, body })).status).toBe(201);
    const again = await t.call('POST', '/v1/secrets', { token: admin.token, body });
    expect(again.status).toBe(409);
    const created = await auditOf(admin.token, { action: 'secret.created' });
    expect(created.filter((e) => e.details.name === 'TWICE_SECRET')).toHaveLength(1);
    // Written before the answer went out: there as soon as the client has its answer.
    const [failed] = await auditOf(admin.token, { action: 'POST /v1/secrets', outcome: 'failed' });
    expect(failed).toMatchObject({
      actor_kind: 'user',
      actor_id: admin.user.id,
      status_code: 409,
      details: { error_code: again.body.error.code },
    });
  });

  it('by a team API key is the key’s, and one it may not make is denied', async () => {
    const writer = await t.apiKey(admin.token, ['write']);
    const reader = await t.apiKey(admin.token, ['read']);
    const made = await t.call('POST', '/v1/skills', {
      token: writer.key,
      body: { name: 'audited-skill', description: 'd', content: 'c' },
    });
    expect(made.status).toBe(201);
    const refused = await t.call('POST', '/v1/skills', {
      token: reader.key,
      body: { name: 'refused-skill', description: 'd', content: 'c' },
    });
    expect(refused.status).toBe(403);
    expect(await auditOf(admin.token, { actor_id: writer.id })).toEqual([
      expect.objectContaining({ actor_kind: 'api_key', action: 'skill.created', outcome: 'success' }),
    ]);
    expect(await auditOf(admin.token, { actor_id: reader.id })).toEqual([
      expect.objectContaining({
        actor_kind: 'api_key',
        action: 'POST /v1/skills',
        outcome: 'denied',
        status_code: 403,
        details: { error_code: 'insufficient_scope' },
      }),
    ]);
  });

  it('Paddock makes on its own is not the request’s (and its routine doings are not audited)', async () => {
    const agent = await createAgent(t, admin.token);
    const rotated = await t.call('POST', `/v1/agents/${agent.id}/rotate-key`, {
      token: admin.token,
      remoteAddress: '198.51.100.4',
    });
    expect(rotated.status).toBe(200);
    const entries = await auditOf(admin.token, { resource_id: agent.id });
    expect(entries.map((e) => e.action).sort()).toEqual(['agent.created', 'agent.key_rotated']);
    expect(entries.find((e) => e.action === 'agent.key_rotated')).toMatchObject({
      ip_address: '198.51.100.4',
    });
    expect(await auditOf(admin.token, { actor_kind: 'system' })).toEqual([]);
  });
});

describe('a call with no change', () => {
  it('a sign-in is the user’s, in their team, once', async () => {
    const res = await t.call('POST', '/v1/auth/login', {
      body: { email: other.user.email, password: 'correct horse battery' },
      remoteAddress: '192.0.2.44',
    });
    expect(res.status).toBe(200);
    const entries = await auditOf(other.token, { actor_id: other.user.id, action: 'user.signed_in' });
    expect(entries.map((e) => e.details.method)).toEqual(['password', 'signup']);
    expect(entries[0]).toMatchObject({
      team_id: other.team.id,
      actor_kind: 'user',
      ip_address: '192.0.2.44',
      route: 'POST /v1/auth/login',
      resource_id: other.user.id,
    });
    const all = await t.call('GET', '/v1/admin/audit-logs', {
      token: admin.token,
      query: { action: 'POST /v1/auth/login', outcome: 'success' },
    });
    expect(all.body.data).toEqual([]);
  });

  it('a failed sign-in has no team: only platform admins see it', async () => {
    const res = await t.call('POST', '/v1/auth/login', {
      body: { email: other.user.email, password: 'not-the-password' },
      remoteAddress: '192.0.2.9',
    });
    expect(res.status).toBe(401);
    const all = await t.call('GET', '/v1/admin/audit-logs', {
      token: admin.token,
      query: { action: 'POST /v1/auth/login' },
    });
    expect(all.status).toBe(200);
    expect(all.body.data[0]).toMatchObject({
      team_id: null,
      actor_kind: 'anonymous',
      outcome: 'denied',
      status_code: 401,
      ip_address: '192.0.2.9',
    });
    expect(await auditOf(admin.token, { action: 'POST /v1/auth/login' })).toEqual([]);
  });

  it('a model call the gateway blocks is a governance entry; allowed calls are not audited', async () => {
    const client = g.openai();
    await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    await expect(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 403 });
    await t.services.runs.flush();
    const blocks = await auditOf(admin.token, { action: 'governance.*' });
    expect(blocks).toEqual([
      expect.objectContaining({
        actor_kind: 'agent',
        actor_id: g.agent.id,
        action: 'governance.model_not_allowed',
        outcome: 'blocked',
        resource_id: expect.stringMatching(/^run_/),
      }),
    ]);
    expect(await auditOf(admin.token, { action: 'POST /v1/chat/completions' })).toEqual([]);
  });
});

describe('reading the log', () => {
  it('is for team admins and admin keys; members’ keys, agent keys and other teams see none of it', async () => {
    const writer = await t.apiKey(admin.token, ['write']);
    expect((await t.call('GET', '/v1/audit-logs', { token: writer.key })).status).toBe(403);
    expect((await t.call('GET', '/v1/audit-logs', { token: g.agent.api_key })).status).toBe(403);
    const adminKey = await t.apiKey(admin.token, ['admin']);
    expect((await t.call('GET', '/v1/audit-logs', { token: adminKey.key })).status).toBe(200);
    const theirs = await auditOf(other.token);
    expect(theirs.every((e) => e.team_id === other.team.id)).toBe(true);
    expect((await t.call('GET', '/v1/admin/audit-logs', { token: other.token })).status).toBe(403);
    const one = await t.call('GET', '/v1/admin/audit-logs', {
      token: admin.token,
      query: { team_id: other.team.id },
    });
    expect(one.body.data.length).toBeGreaterThan(0);
    expect(one.body.data.every((e: Json) => e.team_id === other.team.id)).toBe(true);
  });

  it('pages newest first with a cursor, and filters by time', async () => {
    const all = await auditOf(admin.token);
    expect(all.length).toBeGreaterThan(3);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const res = await t.call('GET', '/v1/audit-logs', {
        token: admin.token,
        query: { limit: '2', ...(cursor ? { cursor } : {}) },
      });
      seen.push(...res.body.data.map((e: Json) => e.id));
      cursor = res.body.next_cursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(all.map((e) => e.id));
    expect([...seen].sort().reverse()).toEqual(seen);
    const future = new Date(t.clock.now().getTime() + DAY_MS).toISOString();
    expect(await auditOf(admin.token, { from: future })).toEqual([]);
    expect(await auditOf(admin.token, { to: future })).toHaveLength(all.length);
  });

  it('exports as JSON lines, oldest first, with the same filters', async () => {
    const res = await t.app.inject({
      method: 'GET',
      url: '/v1/audit-logs/export?outcome=success',
      headers: { authorization: `Bearer ${admin.token}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/x-ndjson');
    const lines = res.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Json);
    const page = await auditOf(admin.token, { outcome: 'success' });
    expect(lines.map((e) => e.id)).toEqual(page.map((e) => e.id).reverse());
  });

  it('answers bad filters with a 400 before any row', async () => {
    const bad: Array<Record<string, string>> = [
      { from: 'yesterday' },
      // What the schema's date-time lets through but JavaScript or Postgres cannot hold.
      { from: '0000-01-01T00:00:00Z' },
      { to: '2016-12-31T23:59:60Z' },
      { outcome: 'maybe' },
      { from: '2026-02-01T00:00:00Z', to: '2026-01-01T00:00:00Z' },
    ];
    for (const query of bad) {
      const res = await t.call('GET', '/v1/audit-logs', { token: admin.token, query });
      expect(res.status).toBe(400);
    }
    const exported = await t.app.inject({
      method: 'GET',
      url: '/v1/audit-logs/export?from=soon',
      headers: { authorization: `Bearer ${admin.token}` },
    });
    expect(exported.statusCode).toBe(400);
    expect(JSON.parse(exported.body).error.code).toBe('validation_failed');
    const badTeam = await t.call('GET', '/v1/admin/audit-logs', {
      token: admin.token,
      query: { team_id: 'x' },
    });
    expect(badTeam.status).toBe(400);
  });
});

describe('retention', () => {
  it('deletes entries older than PADDOCK_AUDIT_RETENTION_DAYS and keeps the rest', async () => {
    const r = await createTestApp({ config: { auditRetentionDays: 10 } });
    try {
      const u = await r.signup();
      // A key, not the session: the session expires over the days the clock moves.
      const key = (await r.apiKey(u.token, ['admin'])).key;
      await r.call('POST', '/v1/skills', {
        token: u.token,
        body: { name: 'old', description: 'd', content: 'c' },
      });
      r.clock.advance(11 * DAY_MS);
      const made = await r.call('POST', '/v1/skills', {
        token: key,
        body: { name: 'new', description: 'd', content: 'c' },
      });
      expect(made.status).toBe(201);
      expect(await r.services.auditRetention.sweep()).toBeGreaterThan(0);
      const left = await r.call('GET', '/v1/audit-logs', { token: key });
      expect(left.body.data.map((e: Json) => e.action)).toEqual(['skill.created']);
      expect(left.body.data[0].details.name).toBe('new');
    } finally {
      await r.close();
    }
  });
});

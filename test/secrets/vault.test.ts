import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLogs, events } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

/**
 * The credentials vault: a team admin may reveal a value (throttled per team,
 * audited, never cached), every new value is a version whose history says who
 * set it and when, PUT by name creates or rotates, and `{id}` takes a name.
 */

const REVEALS_PER_HOUR = 4;
let t: TestApp;
const logLines: string[] = [];
/** Every value handed to the API: none may reach the log, an event or an audit entry. */
const values: string[] = [];

beforeAll(async () => {
  t = await createTestApp({
    env: { PADDOCK_THROTTLE_SECRET_REVEAL: `${REVEALS_PER_HOUR}/1h` },
    logDestination: { write: (line) => void logLines.push(line) },
  });
});
afterAll(() => t.close());

function value(label: string): string {
  const v = `${label}-${randomBytes(12).toString('hex')}`;
  values.push(v);
  return v;
}

let n = 0;
function secretName(): string {
  n += 1;
  return `VAULT_${n}_${randomBytes(3).toString('hex').toUpperCase()}`;
}

const call = (method: string, url: string, options: CallOptions) => t.call(method, url, options);

async function put(token: string, name: string, body: Json) {
  return call('PUT', `/v1/secrets/${name}`, { token, body });
}

async function switchTo(user: SignedUpUser, teamId: string): Promise<SignedUpUser> {
  const res = await call('POST', '/v1/auth/switch-team', { token: user.token, body: { team_id: teamId } });
  expect(res.status).toBe(200);
  return { ...user, token: res.body.session_token };
}

/** A team of its own: owner, admin, member and viewer sessions in it. */
async function team() {
  const owner = await t.signup({ name: 'Owner' });
  const made = await call('POST', '/v1/teams', { token: owner.token, body: { name: 'Vault team' } });
  expect(made.status).toBe(201);
  const teamId = made.body.id as string;
  const joined: Record<string, SignedUpUser> = {};
  for (const role of ['admin', 'member', 'viewer'] as const) {
    const user = await t.signup({ name: role });
    const added = await call('POST', `/v1/teams/${teamId}/members`, {
      token: owner.token,
      body: { email: user.user.email, role },
    });
    expect(added.status).toBe(201);
    joined[role] = await switchTo(user, teamId);
  }
  return {
    teamId,
    owner: await switchTo(owner, teamId),
    admin: joined.admin!,
    member: joined.member!,
    viewer: joined.viewer!,
  };
}

describe('revealing a value', () => {
  it('gives a team admin the value, never to be cached, and audits it without the value', async () => {
    const g = await team();
    const name = secretName();
    const v = value('reveal');
    const made = await put(g.owner.token, name, { value: v });
    expect(made.status).toBe(201);

    const byAdmin = await call('POST', `/v1/secrets/${made.body.id}/reveal`, { token: g.admin.token });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toEqual({ id: made.body.id, name, value: v, value_version: 1 });
    expect(byAdmin.headers['cache-control']).toBe('no-store');

    // By name, and by an admin key.
    const key = await t.apiKey(g.owner.token, ['admin']);
    const byKey = await call('POST', `/v1/secrets/${name}/reveal`, { token: key.key });
    expect(byKey.status).toBe(200);
    expect(byKey.body.value).toBe(v);

    const audit = await call('GET', '/v1/audit-logs', {
      token: g.owner.token,
      query: { action: 'secret.revealed', resource_id: made.body.id },
    });
    expect(audit.status).toBe(200);
    expect(audit.body.data.map((e: Json) => [e.actor_kind, e.actor_id])).toEqual([
      ['api_key', key.id],
      ['user', g.admin.user.id],
    ]);
    expect(audit.body.data[1]).toMatchObject({
      outcome: 'success',
      route: 'POST /v1/secrets/:id/reveal',
      details: { name, value_version: 1 },
    });
  });

  it('refuses members, viewers, write and read keys, agent keys and other teams', async () => {
    const g = await team();
    const made = await put(g.owner.token, secretName(), { value: value('refused') });
    const url = `/v1/secrets/${made.body.id}/reveal`;
    for (const user of [g.member, g.viewer]) {
      const res = await call('POST', url, { token: user.token });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('insufficient_scope');
    }
    for (const scopes of [['write'], ['read']] as const) {
      const key = await t.apiKey(g.owner.token, [...scopes]);
      const res = await call('POST', url, { token: key.key });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    const agent = await createAgent(t, g.owner.token);
    expect((await call('POST', url, { token: agent.api_key })).status).toBe(403);

    // Another team's owner: the secret does not exist for them, by id or by name.
    const stranger = await t.signup({ name: 'Stranger' });
    const foreign = await call('POST', url, { token: stranger.token });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe('not_found');
    const byName = await call('POST', `/v1/secrets/${made.body.name}/reveal`, { token: stranger.token });
    expect(byName.status).toBe(404);
    const unknown = await call('POST', `/v1/secrets/sec_${'0'.repeat(26)}/reveal`, { token: stranger.token });
    expect(unknown.status).toBe(404);

    // No refused call revealed anything.
    const revealed = await t.database.db.select().from(events);
    expect(revealed.filter((e) => e.type === 'secret.revealed' && e.subjectId === made.body.id)).toEqual([]);
  });

  it('throttles reveals per team (429 with Retry-After) until the window passes', async () => {
    const g = await team();
    const made = await put(g.owner.token, secretName(), { value: value('throttled') });
    const url = `/v1/secrets/${made.body.id}/reveal`;
    for (let i = 0; i < REVEALS_PER_HOUR; i++) {
      expect((await call('POST', url, { token: i % 2 ? g.admin.token : g.owner.token })).status).toBe(200);
    }
    const refused = await call('POST', url, { token: g.admin.token });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('rate_limited');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(JSON.stringify(refused.body)).not.toContain(values.at(-1)!);

    // Another team is not held back by this one's reveals.
    const h = await team();
    const other = await put(h.owner.token, secretName(), { value: value('other') });
    expect((await call('POST', `/v1/secrets/${other.body.id}/reveal`, { token: h.owner.token })).status).toBe(
      200,
    );

    t.clock.advance(3_600_000 + 1000);
    expect((await call('POST', url, { token: g.admin.token })).status).toBe(200);
  });
});

describe('value history', () => {
  it('counts versions through PUT and PATCH, and lists who set each and when, never a value', async () => {
    const g = await team();
    const name = secretName();
    const created = await put(g.owner.token, name, { value: value('v1') });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name, value: '••••••••', value_version: 1, scope: 'all' });

    t.clock.advance(60_000);
    const key = await t.apiKey(g.owner.token, ['admin']);
    const rotated = await put(key.key, name, { value: value('v2') });
    expect(rotated.status).toBe(200);
    expect(rotated.body).toMatchObject({ id: created.body.id, value_version: 2 });

    t.clock.advance(60_000);
    const patched = await call('PATCH', `/v1/secrets/${name}`, {
      token: g.admin.token,
      body: { value: value('v3') },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.value_version).toBe(3);
    // A rename alone is no new version.
    t.clock.advance(1000);
    const renamed = await call('PATCH', `/v1/secrets/${created.body.id}`, {
      token: g.admin.token,
      body: { name: `${name}_X` },
    });
    expect(renamed.body.value_version).toBe(3);

    const history = await call('GET', `/v1/secrets/${created.body.id}/history`, { token: g.viewer.token });
    expect(history.status).toBe(200);
    expect(history.body.data.map((h: Json) => [h.version, h.changed_by_kind, h.changed_by])).toEqual([
      [3, 'user', g.admin.user.id],
      [2, 'api_key', key.id],
      [1, 'user', g.owner.user.id],
    ]);
    const times = history.body.data.map((h: Json) => Date.parse(h.changed_at));
    expect(times[0] - times[1]).toBe(60_000);
    expect(times[1] - times[2]).toBe(60_000);
    expect(Object.keys(history.body.data[0]).sort()).toEqual(
      ['changed_at', 'changed_by', 'changed_by_kind', 'name', 'secret_id', 'version'].sort(),
    );

    // Paged, by the new name too.
    const first = await call('GET', `/v1/secrets/${name}_X/history`, {
      token: g.owner.token,
      query: { limit: '2' },
    });
    expect(first.body.data.map((h: Json) => h.version)).toEqual([3, 2]);
    const rest = await call('GET', `/v1/secrets/${name}_X/history`, {
      token: g.owner.token,
      query: { limit: '2', cursor: first.body.next_cursor },
    });
    expect(rest.body.data.map((h: Json) => h.version)).toEqual([1]);
    expect(rest.body.next_cursor).toBeNull();

    // The value that tasks get is the newest.
    const opened = await t.services.secrets.forAgent(g.teamId as never, 'agt_none' as never);
    expect(opened.find((s) => s.name === `${name}_X`)?.value).toBe(values.at(-1));

    t.clock.advance(1000);
    const reveal = await call('POST', `/v1/secrets/${name}_X/reveal`, { token: g.owner.token });
    expect(reveal.body).toMatchObject({ value: values.at(-1), value_version: 3 });

    const kinds = (await t.database.db.select().from(events).orderBy(events.id))
      .filter((e) => e.subjectId === created.body.id)
      .map((e) => [e.type, (e.data as Json).value_version]);
    expect(kinds).toEqual([
      ['secret.created', undefined],
      ['secret.rotated', 2],
      ['secret.updated', 3],
      ['secret.updated', 3],
      ['secret.revealed', 3],
    ]);
  });

  it('answers history of another team’s secret with 404, and refuses agent keys', async () => {
    const g = await team();
    const made = await put(g.owner.token, secretName(), { value: value('h') });
    const stranger = await t.signup();
    expect((await call('GET', `/v1/secrets/${made.body.id}/history`, { token: stranger.token })).status).toBe(
      404,
    );
    const agent = await createAgent(t, g.owner.token);
    const asAgent = await call('GET', `/v1/secrets/${made.body.id}/history`, { token: agent.api_key });
    expect(asAgent.status).toBe(403);
    expect(asAgent.body.error.code).toBe('agent_key_not_allowed');
    const badCursor = await call('GET', `/v1/secrets/${made.body.id}/history`, {
      token: g.owner.token,
      query: { cursor: 'nonsense' },
    });
    expect(badCursor.status).toBe(400);
  });

  it('deletes the history with its secret', async () => {
    const g = await team();
    const name = secretName();
    await put(g.owner.token, name, { value: value('d1') });
    await put(g.owner.token, name, { value: value('d2') });
    expect((await call('DELETE', `/v1/secrets/${name}`, { token: g.owner.token })).status).toBe(204);
    expect((await call('GET', `/v1/secrets/${name}/history`, { token: g.owner.token })).status).toBe(404);
    // A new secret of the same name starts again at version 1.
    const again = await put(g.owner.token, name, { value: value('d3') });
    expect(again.status).toBe(201);
    expect(again.body.value_version).toBe(1);
  });
});

describe('PUT /v1/secrets/{name}', () => {
  it('creates with a scope, rotates keeping it, and changes it only when sent', async () => {
    const g = await team();
    const agent = await createAgent(t, g.owner.token);
    const name = secretName();
    const made = await put(g.owner.token, name, { value: value('s1'), agent_ids: [agent.id] });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ scope: 'agents', agent_ids: [agent.id] });
    const kept = await put(g.owner.token, name, { value: value('s2') });
    expect(kept.body).toMatchObject({ scope: 'agents', agent_ids: [agent.id], value_version: 2 });
    const widened = await put(g.owner.token, name, { value: value('s3'), scope: 'all' });
    expect(widened.body).toMatchObject({ scope: 'all', agent_ids: [], value_version: 3 });
    // By id it only rotates: an unknown id, or another team's, is a 404 and makes nothing.
    const byId = await put(g.owner.token, made.body.id, { value: value('s4') });
    expect(byId.status).toBe(200);
    expect(byId.body).toMatchObject({ name, value_version: 4 });
    const unknown = await put(g.owner.token, `sec_${'0'.repeat(26)}`, { value: value('s5') });
    expect(unknown.status).toBe(404);
    const stranger = await t.signup();
    expect((await put(stranger.token, made.body.id, { value: value('s6') })).status).toBe(404);
    expect((await call('GET', '/v1/secrets', { token: stranger.token })).body.data).toEqual([]);
  });

  it('two PUTs of a new name at once make one secret at version 2', async () => {
    const g = await team();
    const name = secretName();
    const both = await Promise.all([
      put(g.owner.token, name, { value: value('race-a') }),
      put(g.owner.token, name, { value: value('race-b') }),
    ]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 201]);
    const list = await call('GET', '/v1/secrets', { token: g.owner.token });
    expect(list.body.data.filter((s: Json) => s.name === name)).toHaveLength(1);
    const history = await call('GET', `/v1/secrets/${name}/history`, { token: g.owner.token });
    expect(history.body.data.map((h: Json) => h.version)).toEqual([2, 1]);
  });

  it('refuses bad names, values and fields with 400, and non-admins with 403', async () => {
    const g = await team();
    const bad: Array<[string, Json]> = [
      ['lower_case', { value: value('b') }],
      ['LD_PRELOAD', { value: value('b') }],
      [secretName(), { value: 'abc' }],
      [secretName(), { value: 'has\u0000nul' }],
      [secretName(), {}],
      [secretName(), { value: value('b'), extra: 1 }],
      [secretName(), { value: value('b'), scope: 'agents' }],
      [secretName(), { value: value('b'), agent_ids: ['agt_nope'] }],
    ];
    for (const [name, body] of bad) {
      const res = await put(g.owner.token, name, body);
      expect(res.status, `${name} ${JSON.stringify(body)}`).toBe(400);
      expect(res.body.error.code).toMatch(/^(validation_failed|invalid_agent)$/);
    }
    const byMember = await put(g.member.token, secretName(), { value: value('m') });
    expect(byMember.status).toBe(403);
    const writer = await t.apiKey(g.owner.token, ['write']);
    expect((await put(writer.key, secretName(), { value: value('w') })).status).toBe(403);
  });
});

describe('{id} as a name', () => {
  it('gets, patches and deletes by name within the caller’s team only', async () => {
    const g = await team();
    const h = await team();
    const name = secretName();
    const mine = await put(g.owner.token, name, { value: value('mine') });
    const theirs = await put(h.owner.token, name, { value: value('theirs') });
    expect(mine.body.id).not.toBe(theirs.body.id);
    const got = await call('GET', `/v1/secrets/${name}`, { token: h.owner.token });
    expect(got.body.id).toBe(theirs.body.id);
    expect((await call('DELETE', `/v1/secrets/${name}`, { token: h.owner.token })).status).toBe(204);
    expect((await call('GET', `/v1/secrets/${name}`, { token: g.owner.token })).body.id).toBe(mine.body.id);
    expect((await call('GET', `/v1/secrets/${name}`, { token: h.owner.token })).status).toBe(404);
    expect((await call('GET', '/v1/secrets/not-a-name', { token: g.owner.token })).status).toBe(404);
  });
});

describe('what leaks', () => {
  it('puts no value in the log, an event or an audit entry', async () => {
    const everything =
      logLines.join('') +
      JSON.stringify(await t.database.db.select().from(events)) +
      JSON.stringify(await t.database.db.select().from(auditLogs));
    expect(values.length).toBeGreaterThan(10);
    for (const v of values) expect(everything).not.toContain(v);
  });
});

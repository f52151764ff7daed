import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, secrets as secretsTable } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
/** Every value this file hands to the API: none may ever come back, in any response. */
const values: string[] = [];
const responses: string[] = [];

beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup({ name: 'Sam Owner' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(async () => {
  await t.close();
});

function value(label: string): string {
  const v = `${label}-${randomBytes(12).toString('hex')}`;
  values.push(v);
  return v;
}

let n = 0;
function secretName(): string {
  n += 1;
  return `SECRET_${n}_${randomBytes(3).toString('hex').toUpperCase()}`;
}

async function call(method: string, url: string, options: CallOptions = {}) {
  const res = await t.call(method, url, { token: u.token, ...options });
  responses.push(typeof res.body === 'string' ? res.body : JSON.stringify(res.body));
  return res;
}

async function createSecret(body: Record<string, unknown> = {}): Promise<Json> {
  const res = await call('POST', '/v1/secrets', { body: { name: secretName(), value: value('v'), ...body } });
  if (res.status !== 201) throw new Error(`createSecret failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

describe('secrets', () => {
  it('creates a secret whose value is sealed at rest and only ever shown as eight bullets', async () => {
    const name = secretName();
    const v = value('db');
    const res = await call('POST', '/v1/secrets', { body: { name, value: v } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      name,
      value: '••••••••',
      scope: 'all',
      agent_ids: [],
      team_id: u.team.id,
    });
    expect(res.body.id).toMatch(/^sec_/);

    const [row] = await t.database.db.select().from(secretsTable).where(eq(secretsTable.id, res.body.id));
    expect(row!.sealedValue).not.toContain(v);
    const opened = await t.services.secrets.forAgent(u.team.id as never, 'agt_none' as never);
    expect(opened).toContainEqual({ name, value: v });

    const got = await call('GET', `/v1/secrets/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.value).toBe('••••••••');
  });

  it('takes a name of 200 characters and a value of 32 768', async () => {
    const name = `N${secretName()}`.padEnd(200, 'X');
    const v = value('long').padEnd(32_768, 'z');
    const res = await call('POST', '/v1/secrets', { body: { name, value: v } });
    expect(res.status).toBe(201);
    const opened = await t.services.secrets.forAgent(u.team.id as never, 'agt_none' as never);
    expect(opened).toContainEqual({ name, value: v });
  });

  it('refuses names that are not env-var-shaped, short values and unknown fields with 400', async () => {
    for (const body of [
      { name: 'lower_case', value: 'abcdef' },
      { name: '9LIVES', value: 'abcdef' },
      { name: 'HAS-DASH', value: 'abcdef' },
      { name: 'OK_NAME', value: 'abc' },
      // The capsule's rule (sandboxes/envs.ts): the loader reads LD_*; names up to 200, values up to 32 768.
      { name: 'LD_PRELOAD', value: 'abcdef' },
      { name: `N${'A'.repeat(200)}`, value: 'abcdef' },
      { name: 'OK_NAME', value: 'v'.repeat(32_769) },
      { name: 'OK_NAME', value: 'nul\u0000here' },
      { name: 'OK_NAME', value: 'abcdef', extra: 1 },
      { name: 'OK_NAME' },
    ]) {
      const res = await call('POST', '/v1/secrets', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });

  it('keeps names unique in a team (409) but not across teams', async () => {
    const s = await createSecret();
    const again = await call('POST', '/v1/secrets', { body: { name: s.name, value: value('x') } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('secret_name_taken');
    const elsewhere = await call('POST', '/v1/secrets', {
      token: other.token,
      body: { name: s.name, value: value('x') },
    });
    expect(elsewhere.status).toBe(201);
  });

  it('scopes a secret to named agents, and forAgent gives each agent only its own', async () => {
    const a = await createAgent(t, u.token);
    const b = await createAgent(t, u.token);
    const shared = await createSecret();
    const onlyA = await createSecret({ scope: 'agents', agent_ids: [a.id] });
    expect(onlyA).toMatchObject({ scope: 'agents', agent_ids: [a.id] });
    // agent_ids alone means scope agents.
    const onlyB = await createSecret({ agent_ids: [b.id] });
    expect(onlyB.scope).toBe('agents');

    const namesFor = async (agentId: string) =>
      (await t.services.secrets.forAgent(u.team.id as never, agentId as never)).map((s) => s.name);
    expect(await namesFor(a.id)).toEqual(expect.arrayContaining([shared.name, onlyA.name]));
    expect(await namesFor(a.id)).not.toContain(onlyB.name);
    expect(await namesFor(b.id)).toEqual(expect.arrayContaining([shared.name, onlyB.name]));
    expect(await namesFor(b.id)).not.toContain(onlyA.name);

    const listed = await call('GET', '/v1/secrets', { query: { agent_id: a.id } });
    expect(listed.status).toBe(200);
    const listedNames = listed.body.data.map((s: Json) => s.name);
    expect(listedNames).toEqual(expect.arrayContaining([shared.name, onlyA.name]));
    expect(listedNames).not.toContain(onlyB.name);
  });

  it('answers ?agent_id= that is no live agent of the team with 404, malformed or unknown', async () => {
    await createSecret();
    const theirs = await createAgent(t, other.token);
    const gone = await createAgent(t, u.token);
    expect((await call('DELETE', `/v1/agents/${gone.id}`)).status).toBe(204);
    for (const agentId of ['not-an-id', 'agt_00000000000000000000000000', theirs.id, gone.id]) {
      const res = await call('GET', '/v1/secrets', { query: { agent_id: agentId } });
      expect(res.status, agentId).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'not_found', details: { kind: 'agent', id: agentId } });
    }
  });

  it('refuses agent_ids that name no agent of the team, and scope rules that contradict', async () => {
    const mine = await createAgent(t, u.token);
    const theirs = await createAgent(t, other.token);
    const foreign = await call('POST', '/v1/secrets', {
      body: { name: secretName(), value: value('x'), scope: 'agents', agent_ids: [mine.id, theirs.id] },
    });
    expect(foreign.status).toBe(400);
    expect(foreign.body.error).toMatchObject({ code: 'invalid_agent', details: { agent_ids: [theirs.id] } });

    const none = await call('POST', '/v1/secrets', {
      body: { name: secretName(), value: value('x'), scope: 'agents' },
    });
    expect(none.status).toBe(400);
    expect(none.body.error.details.fields.agent_ids).toMatch(/at least one agent/);

    const both = await call('POST', '/v1/secrets', {
      body: { name: secretName(), value: value('x'), scope: 'all', agent_ids: [mine.id] },
    });
    expect(both.status).toBe(400);
    expect(both.body.error.details.fields.agent_ids).toMatch(/only for scope agents/);

    // Nothing was written by the refused requests.
    const rows = await t.database.db.select().from(secretsTable).where(eq(secretsTable.teamId, u.team.id));
    expect(rows.some((r) => r.agentIds.includes(theirs.id))).toBe(false);
  });

  it('updates name, value and scope; a new value is what forAgent opens', async () => {
    const a = await createAgent(t, u.token);
    const s = await createSecret();
    const newValue = value('rotated');
    const newName = secretName();
    const res = await call('PATCH', `/v1/secrets/${s.id}`, { body: { name: newName, value: newValue } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: newName, value: '••••••••', scope: 'all' });
    expect(await t.services.secrets.forAgent(u.team.id as never, a.id)).toContainEqual({
      name: newName,
      value: newValue,
    });

    const narrowed = await call('PATCH', `/v1/secrets/${s.id}`, { body: { agent_ids: [a.id] } });
    expect(narrowed.body).toMatchObject({ scope: 'agents', agent_ids: [a.id] });
    const widened = await call('PATCH', `/v1/secrets/${s.id}`, { body: { scope: 'all' } });
    expect(widened.body).toMatchObject({ scope: 'all', agent_ids: [] });

    const clash = await createSecret();
    const taken = await call('PATCH', `/v1/secrets/${s.id}`, { body: { name: clash.name } });
    expect(taken.status).toBe(409);
  });

  it('deletes a secret (204), after which it is gone (404) and no agent gets it', async () => {
    const a = await createAgent(t, u.token);
    const s = await createSecret();
    const del = await call('DELETE', `/v1/secrets/${s.id}`);
    expect(del.status).toBe(204);
    expect((await call('GET', `/v1/secrets/${s.id}`)).status).toBe(404);
    expect((await call('DELETE', `/v1/secrets/${s.id}`)).status).toBe(404);
    const names = (await t.services.secrets.forAgent(u.team.id as never, a.id)).map((x) => x.name);
    expect(names).not.toContain(s.name);
  });

  it('keeps teams apart: another team sees 404 for this team’s secret', async () => {
    const s = await createSecret();
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { value: value('x') }],
      ['DELETE', undefined],
    ] as const) {
      const res = await call(method, `/v1/secrets/${s.id}`, { token: other.token, body });
      expect(res.status, method).toBe(404);
    }
    const list = await call('GET', '/v1/secrets', { token: other.token });
    expect(list.body.data.map((x: Json) => x.id)).not.toContain(s.id);
    expect((await call('GET', '/v1/secrets/not-an-id')).status).toBe(404);
  });

  it('lets agent keys neither read nor manage secrets, and read-scoped keys only read', async () => {
    const agent = await createAgent(t, u.token);
    const s = await createSecret();
    const asAgent = await call('GET', '/v1/secrets', { token: agent.api_key });
    expect(asAgent.status).toBe(403);
    expect(asAgent.body.error.code).toBe('agent_key_not_allowed');

    const reader = await t.apiKey(u.token, ['read']);
    expect((await call('GET', `/v1/secrets/${s.id}`, { token: reader.key })).status).toBe(200);
    const write = await call('PATCH', `/v1/secrets/${s.id}`, {
      token: reader.key,
      body: { value: value('x') },
    });
    expect(write.status).toBe(403);
    const writer = await t.apiKey(u.token, ['write']);
    const create = await call('POST', '/v1/secrets', {
      token: writer.key,
      body: { name: secretName(), value: value('x') },
    });
    expect(create.status).toBe(403);
  });

  it('pages the list newest first with a cursor', async () => {
    const team = await t.signup({ name: 'Pager' });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call('POST', '/v1/secrets', {
        token: team.token,
        body: { name: secretName(), value: value('p') },
      });
      made.push(res.body.id);
    }
    const first = await call('GET', '/v1/secrets', { token: team.token, query: { limit: '2' } });
    expect(first.body.data.map((s: Json) => s.id)).toEqual([made[4], made[3]]);
    const rest = await call('GET', '/v1/secrets', {
      token: team.token,
      query: { limit: '10', cursor: first.body.next_cursor },
    });
    expect(rest.body.data.map((s: Json) => s.id)).toEqual([made[2], made[1], made[0]]);
    expect(rest.body.next_cursor).toBeNull();
  });

  it('records events without the value, and never returns a value in any response', async () => {
    const s = await createSecret();
    await call('PATCH', `/v1/secrets/${s.id}`, { body: { value: value('again') } });
    await call('DELETE', `/v1/secrets/${s.id}`);
    const rows = await t.database.db
      .select()
      .from(events)
      .where(eq(events.subjectId, s.id))
      .orderBy(events.id);
    expect(rows.map((e) => e.type)).toEqual(['secret.created', 'secret.updated', 'secret.deleted']);
    expect(rows[1]!.data).toMatchObject({ changed_fields: ['value'] });
    // Every event row of the test database, and every response of this file.
    const all = await t.database.db.select().from(events);
    expect(all.length).toBeGreaterThan(rows.length);
    const everything = JSON.stringify(all) + responses.join('\n');
    for (const v of values) expect(everything).not.toContain(v);
  });

  it('binds a sealed value to its row: copied into another secret, it does not open', async () => {
    const team = await t.signup({ name: 'Sealer' });
    const from = await call('POST', '/v1/secrets', {
      token: team.token,
      body: { name: secretName(), value: value('moved') },
    });
    const to = await call('POST', '/v1/secrets', {
      token: team.token,
      body: { name: secretName(), value: value('kept') },
    });
    const db = t.database.db;
    const [source] = await db.select().from(secretsTable).where(eq(secretsTable.id, from.body.id));
    await db
      .update(secretsTable)
      .set({ sealedValue: source!.sealedValue })
      .where(eq(secretsTable.id, to.body.id));
    await expect(t.services.secrets.forAgent(team.team.id as never, 'agt_none' as never)).rejects.toThrow();
  });
});

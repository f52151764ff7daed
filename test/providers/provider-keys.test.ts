import { randomBytes } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { newId, type ProviderKeyId, type TeamId } from '../../src/core/ids.ts';
import { events, providerKeys, runs, steps } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
/** Every secret this file hands to the API: none may ever come back. */
const secrets: string[] = [];
/** Every response body this file received, as the raw text on the wire. */
const responses: string[] = [];

beforeAll(async () => {
  // Keys for a self-hosted model server on this machine (127.0.0.1, localhost) need the platform
  // admin's allow-list; test/security/ssrf.test.ts covers the guard without it.
  t = await createTestApp({ env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' } });
  u = await t.signup({ name: 'Pat Owner' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(() => t.close());

function secret(label: string): string {
  const s = `sk-${label}-${randomBytes(12).toString('hex')}`;
  secrets.push(s);
  return s;
}

async function call(method: string, url: string, options: CallOptions = {}) {
  const res = await t.call(method, url, { token: u.token, ...options });
  responses.push(typeof res.body === 'string' ? res.body : JSON.stringify(res.body));
  return res;
}

async function createKey(body: Record<string, unknown> = {}, token = u.token): Promise<Json> {
  const res = await call('POST', '/v1/provider-keys', {
    token,
    body: {
      name: `key-${randomBytes(4).toString('hex')}`,
      provider: 'anthropic',
      api_key: secret('ant'),
      ...body,
    },
  });
  if (res.status !== 201) throw new Error(`createKey failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function sealedRow(id: ProviderKeyId) {
  const [row] = await t.database.db.select().from(providerKeys).where(eq(providerKeys.id, id));
  return row!;
}

async function eventsOf(subjectId: string) {
  return t.database.db.select().from(events).where(eq(events.subjectId, subjectId)).orderBy(events.id);
}

/**
 * Runs and steps have no API yet (the runs module is being written): this
 * helper writes the rows straight through drizzle, only for the dependents counts.
 */
async function insertRunRowsForTest(args: {
  teamId: TeamId;
  agentId: string;
  policyId: string;
  status: 'running' | 'completed';
  stepKeyId?: ProviderKeyId;
  stepAt?: Date;
}): Promise<string> {
  const now = t.clock.now();
  const runId = newId('run');
  await t.database.db.insert(runs).values({
    id: runId,
    teamId: args.teamId,
    agentId: args.agentId,
    policyId: args.policyId,
    policyName: 'p',
    policySnapshot: {},
    status: args.status,
    creationMethod: 'implicit',
    metadata: {},
    startedAt: now,
    updatedAt: now,
  });
  if (args.stepKeyId) {
    await t.database.db.insert(steps).values({
      id: newId('stp'),
      teamId: args.teamId,
      runId,
      agentId: args.agentId,
      type: 'llm_call',
      status: 'success',
      provider: 'anthropic',
      providerKeyId: args.stepKeyId,
      createdAt: args.stepAt ?? now,
    });
  }
  return runId;
}

describe('creating a key', () => {
  it('answers 201 with the secret masked, and seals it at rest bound to the row', async () => {
    const apiKey = secret('ant');
    const res = await call('POST', '/v1/provider-keys', {
      body: { name: 'primary', provider: 'anthropic', api_key: apiKey },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({
      name: 'primary',
      provider: 'anthropic',
      team_id: u.team.id,
      status: 'active',
      base_url: null,
      price_overrides: null,
      last_used_at: null,
      rotated_at: null,
      api_key: `…${apiKey.slice(-4)}`,
    });
    expect(res.body.id).toMatch(/^pkey_/);
    expect(JSON.stringify(res.body)).not.toContain(apiKey);
    expect(JSON.stringify(res.body)).not.toContain('sealed');

    const row = await sealedRow(res.body.id);
    expect(row.sealedKey).toBeTruthy();
    expect(row.sealedKey).not.toContain(apiKey);
    expect(row.keyHint).toBe(apiKey.slice(-4));
    expect(t.services.sealer.open(row.sealedKey!, `provider_key:${res.body.id}`)).toBe(apiKey);
    // Bound to its row: under another row's context it does not open.
    expect(() => t.services.sealer.open(row.sealedKey!, 'provider_key:pkey_other')).toThrow();

    const [created] = await eventsOf(res.body.id);
    expect(created).toMatchObject({
      type: 'provider_key.created',
      teamId: u.team.id,
      data: { name: 'primary', provider: 'anthropic' },
    });
    expect(JSON.stringify(created!.data)).not.toContain(apiKey);
  });

  it('takes base_url and price_overrides; openai_compatible needs a base_url', async () => {
    const res = await call('POST', '/v1/provider-keys', {
      body: {
        name: 'local',
        provider: 'openai_compatible',
        api_key: secret('local'),
        base_url: 'http://127.0.0.1:11434/v1',
        price_overrides: {
          'llama*': { input: 0, output: 0 },
          qwen3: { input: 0.1, output: 0.2, cache_read: 0.01 },
        },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.base_url).toBe('http://127.0.0.1:11434/v1');
    expect(res.body.price_overrides).toEqual({
      'llama*': { input: 0, output: 0 },
      qwen3: { input: 0.1, output: 0.2, cache_read: 0.01 },
    });

    const missing = await call('POST', '/v1/provider-keys', {
      body: { name: 'no-url', provider: 'openai_compatible', api_key: secret('x') },
    });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({
      code: 'validation_failed',
      details: { fields: { base_url: expect.any(String) } },
    });
  });

  it('refuses bad input with validation_failed naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ name: 'x', provider: 'google', api_key: 'sk-123456789012' }, 'provider'],
      [
        { name: 'x', provider: 'openai', api_key: 'sk-123456789012', base_url: 'ftp://example.com' },
        'base_url',
      ],
      [{ name: 'x', provider: 'openai', api_key: 'sk-123456789012', base_url: 'not a url' }, 'base_url'],
      [{ name: 'x', provider: 'openai' }, 'api_key'],
      [{ name: 'x', provider: 'openai', api_key: 'sk-1234 56789012' }, 'api_key'],
      [{ name: 'a/b', provider: 'openai', api_key: 'sk-123456789012' }, 'name'],
      [{ name: 'x', provider: 'openai', api_key: 'sk-123456789012', status: 'active' }, 'status'],
      [
        {
          name: 'x',
          provider: 'openai',
          api_key: 'sk-123456789012',
          price_overrides: { 'gpt-*': { input: -1, output: 1 } },
        },
        'price_overrides.gpt-*.input',
      ],
      [
        {
          name: 'x',
          provider: 'openai',
          api_key: 'sk-123456789012',
          price_overrides: { 'gpt-*': { input: 1 } },
        },
        'price_overrides.gpt-*.output',
      ],
    ];
    for (const [body, field] of cases) {
      const res = await call('POST', '/v1/provider-keys', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(Object.keys(res.body.error.details.fields), JSON.stringify(res.body)).toContain(field);
    }
  });

  it('a name is unique among the team’s keys that are not deleted (409)', async () => {
    await createKey({ name: 'dupe' });
    const again = await call('POST', '/v1/provider-keys', {
      body: { name: 'dupe', provider: 'openai', api_key: secret('o') },
    });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('provider_key_name_taken');
    // Another team may use the name.
    const theirs = await createKey({ name: 'dupe' }, other.token);
    expect(theirs.team_id).toBe(other.team.id);
  });
});

describe('reading keys', () => {
  it('lists the team’s keys newest first, filters, paginates, and hides deleted keys unless asked', async () => {
    const fresh = await t.signup();
    const a = await createKey({ provider: 'anthropic' }, fresh.token);
    const o = await createKey({ provider: 'openai' }, fresh.token);
    const d = await createKey({ provider: 'openai' }, fresh.token);
    expect((await call('DELETE', `/v1/provider-keys/${d.id}`, { token: fresh.token })).status).toBe(200);

    const all = await call('GET', '/v1/provider-keys', { token: fresh.token });
    expect(all.status).toBe(200);
    expect(all.body.data.map((k: Json) => k.id)).toEqual([o.id, a.id]);
    expect(all.body.next_cursor).toBeNull();

    const openai = await call('GET', '/v1/provider-keys?provider=openai', { token: fresh.token });
    expect(openai.body.data.map((k: Json) => k.id)).toEqual([o.id]);
    const deleted = await call('GET', '/v1/provider-keys?status=deleted', { token: fresh.token });
    expect(deleted.body.data.map((k: Json) => k.id)).toEqual([d.id]);
    expect(deleted.body.data[0].api_key).toBeNull();

    const page1 = await call('GET', '/v1/provider-keys?limit=1', { token: fresh.token });
    expect(page1.body.data.map((k: Json) => k.id)).toEqual([o.id]);
    const page2 = await call('GET', `/v1/provider-keys?limit=1&cursor=${page1.body.next_cursor}`, {
      token: fresh.token,
    });
    expect(page2.body.data.map((k: Json) => k.id)).toEqual([a.id]);
    expect(page2.body.next_cursor).toBeNull();

    expect((await call('GET', '/v1/provider-keys?status=revoked', { token: fresh.token })).status).toBe(400);
  });

  it('GET /{id} answers the key, masked', async () => {
    const k = await createKey();
    const res = await call('GET', `/v1/provider-keys/${k.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual(k);
    expect((await call('GET', '/v1/provider-keys/pkey_nope')).status).toBe(404);
  });
});

describe('changing a key', () => {
  it('PUT renames and changes prices; a new api_key is a rotation, and base_url changes with one', async () => {
    const k = await createKey({ provider: 'openai' });
    const renamed = await call('PUT', `/v1/provider-keys/${k.id}`, {
      body: {
        name: `${k.name}-b`,
        price_overrides: { 'gpt-4o': { input: 1, output: 2 } },
      },
    });
    expect(renamed.status, JSON.stringify(renamed.body)).toBe(200);
    expect(renamed.body).toMatchObject({
      name: `${k.name}-b`,
      base_url: null,
      price_overrides: { 'gpt-4o': { input: 1, output: 2 } },
      rotated_at: null,
      api_key: k.api_key,
    });

    t.clock.advance(60_000);
    const newSecret = secret('rot');
    const rotated = await call('PUT', `/v1/provider-keys/${k.id}`, { body: { api_key: newSecret } });
    expect(rotated.status).toBe(200);
    expect(rotated.body.rotated_at).toBe(t.clock.now().toISOString());
    expect(rotated.body.api_key).toBe(`…${newSecret.slice(-4)}`);
    const row = await sealedRow(k.id);
    expect(t.services.sealer.open(row.sealedKey!, `provider_key:${k.id}`)).toBe(newSecret);

    const types = (await eventsOf(k.id)).map((e) => e.type);
    expect(types).toEqual(['provider_key.created', 'provider_key.updated', 'provider_key.rotated']);
    for (const e of await eventsOf(k.id)) expect(JSON.stringify(e.data)).not.toContain(newSecret);

    // A new base_url takes the secret for it in the same request (test/security/ssrf.test.ts).
    const moved = await call('PUT', `/v1/provider-keys/${k.id}`, {
      body: { base_url: 'https://openai.example.com', api_key: secret('moved') },
    });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.base_url).toBe('https://openai.example.com');

    const cleared = await call('PUT', `/v1/provider-keys/${k.id}`, {
      body: { base_url: null, price_overrides: null, api_key: secret('cleared') },
    });
    expect(cleared.body).toMatchObject({ base_url: null, price_overrides: null });
  });

  it('PUT refuses a taken name (409) and clearing an openai_compatible base_url (400)', async () => {
    const a = await createKey();
    const b = await createKey();
    const clash = await call('PUT', `/v1/provider-keys/${b.id}`, { body: { name: a.name } });
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('provider_key_name_taken');

    const c = await createKey({ provider: 'openai_compatible', base_url: 'http://localhost:8000' });
    const res = await call('PUT', `/v1/provider-keys/${c.id}`, { body: { base_url: null } });
    expect(res.status).toBe(400);
    expect((await call('PUT', '/v1/provider-keys/pkey_nope', { body: { name: 'z' } })).status).toBe(404);
  });

  it('disable and enable are idempotent; a disabled key is not handed to the proxy', async () => {
    const k = await createKey();
    const providers = t.services.providers;
    expect(await providers.keyForCall(u.team.id, k.id)).toBeDefined();

    for (let i = 0; i < 2; i++) {
      const res = await call('POST', `/v1/provider-keys/${k.id}/disable`);
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('disabled');
    }
    expect(await providers.keyForCall(u.team.id, k.id)).toBeUndefined();
    // Still a key of the team, so agents may keep (and make) bindings to it.
    expect(await providers.exists(u.team.id, k.id, 'anthropic')).toBe(true);

    for (let i = 0; i < 2; i++) {
      const res = await call('POST', `/v1/provider-keys/${k.id}/enable`);
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('active');
    }
    expect(await providers.keyForCall(u.team.id, k.id)).toBeDefined();
    // One event per real change, none for the repeats.
    expect((await eventsOf(k.id)).map((e) => e.type)).toEqual([
      'provider_key.created',
      'provider_key.disabled',
      'provider_key.enabled',
    ]);
  });
});

describe('upsert by name', () => {
  it('creates (201) with provider and api_key, updates (200), and refuses another provider (409)', async () => {
    const missing = await call('PUT', '/v1/provider-keys/by-name/upserted', { body: { provider: 'openai' } });
    expect(missing.status).toBe(400);
    expect(missing.body.error.details.fields).toHaveProperty('api_key');

    const first = secret('up');
    const created = await call('PUT', '/v1/provider-keys/by-name/upserted', {
      body: { provider: 'openai', api_key: first },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'upserted', provider: 'openai', status: 'active' });

    const updated = await call('PUT', '/v1/provider-keys/by-name/upserted', {
      body: { price_overrides: { 'gpt-4o': { input: 1, output: 2 } } },
    });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({
      id: created.body.id,
      price_overrides: { 'gpt-4o': { input: 1, output: 2 } },
      rotated_at: null,
    });

    const same = await call('PUT', '/v1/provider-keys/by-name/upserted', { body: { provider: 'openai' } });
    expect(same.status).toBe(200);

    const mismatch = await call('PUT', '/v1/provider-keys/by-name/upserted', {
      body: { provider: 'anthropic', api_key: secret('x') },
    });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.code).toBe('provider_mismatch');

    const rotatedSecret = secret('up2');
    const rotated = await call('PUT', '/v1/provider-keys/by-name/upserted', {
      body: { api_key: rotatedSecret },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.body.rotated_at).not.toBeNull();
    expect((await t.services.providers.keyForCall(u.team.id, created.body.id))?.apiKey).toBe(rotatedSecret);

    const moved = await call('PUT', '/v1/provider-keys/by-name/upserted', {
      body: { base_url: 'https://proxy.example.com/v1', api_key: secret('up-moved') },
    });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ id: created.body.id, base_url: 'https://proxy.example.com/v1' });
  });

  it('ignores a deleted key of that name and creates a new one', async () => {
    const old = await call('PUT', '/v1/provider-keys/by-name/phoenix', {
      body: { provider: 'anthropic', api_key: secret('p1') },
    });
    expect(old.status).toBe(201);
    expect((await call('DELETE', `/v1/provider-keys/${old.body.id}`)).status).toBe(200);
    const reborn = await call('PUT', '/v1/provider-keys/by-name/phoenix', {
      body: { provider: 'openai', api_key: secret('p2') },
    });
    expect(reborn.status).toBe(201);
    expect(reborn.body.id).not.toBe(old.body.id);
    expect(reborn.body.provider).toBe('openai');
  });
});

describe('deleting a key', () => {
  it('tombstones the key and scrubs the secret', async () => {
    const k = await createKey();
    const res = await call('DELETE', `/v1/provider-keys/${k.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: expect.stringContaining('deleted'), remapped_agents: 0 });
    const row = await sealedRow(k.id);
    expect(row).toMatchObject({ status: 'deleted', sealedKey: null });
    const after = await call('GET', `/v1/provider-keys/${k.id}`);
    expect(after.body).toMatchObject({ status: 'deleted', api_key: null });
    expect(await t.services.providers.keyForCall(u.team.id, k.id)).toBeUndefined();
    expect(await t.services.providers.exists(u.team.id, k.id)).toBe(false);
    // A deleted key cannot be changed or re-enabled.
    expect((await call('POST', `/v1/provider-keys/${k.id}/enable`)).body.error.code).toBe(
      'provider_key_deleted',
    );
    expect((await call('PUT', `/v1/provider-keys/${k.id}`, { body: { name: 'zombie' } })).status).toBe(409);
    const deletedEvent = (await eventsOf(k.id)).find((e) => e.type === 'provider_key.deleted');
    expect(deletedEvent?.data).toEqual({ name: k.name, remapped_to: null, remapped_agents: 0 });
  });

  it('remap_to rebinds every agent (both binding forms) to the target in one go', async () => {
    const doomed = await createKey({ provider: 'anthropic' });
    const target = await createKey({ provider: 'anthropic' });
    const spare = await createKey({ provider: 'anthropic' });
    const oKey = await createKey({ provider: 'openai' });

    const single = await createAgent(t, u.token, {
      provider_keys: { anthropic: doomed.id, openai: oKey.id },
    });
    const weighted = await createAgent(t, u.token, {
      provider_keys: {
        anthropic: [
          { key_id: doomed.id, weight: 60 },
          { key_id: spare.id, weight: 40 },
        ],
      },
    });
    const merged = await createAgent(t, u.token, {
      provider_keys: {
        anthropic: [
          { key_id: target.id, weight: 70 },
          { key_id: doomed.id, weight: 50 },
        ],
      },
    });
    const untouched = await createAgent(t, u.token, { provider_keys: { anthropic: spare.id } });

    const res = await call('DELETE', `/v1/provider-keys/${doomed.id}?remap_to=${target.id}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.remapped_agents).toBe(3);

    const bindings = async (id: string) => (await call('GET', `/v1/agents/${id}`)).body.provider_keys;
    expect(await bindings(single.id)).toEqual({ anthropic: target.id, openai: oKey.id });
    expect(await bindings(weighted.id)).toEqual({
      anthropic: [
        { key_id: target.id, weight: 60 },
        { key_id: spare.id, weight: 40 },
      ],
    });
    // Already bound to the target: the entries merge (weights add, capped at 100).
    expect(await bindings(merged.id)).toEqual({ anthropic: [{ key_id: target.id, weight: 100 }] });
    expect(await bindings(untouched.id)).toEqual({ anthropic: spare.id });

    const [agentEvent] = (await eventsOf(single.id)).filter((e) => e.type === 'agent.updated');
    expect(agentEvent?.data).toEqual({ name: single.name, changed_fields: ['provider_keys'] });
    const deletedEvent = (await eventsOf(doomed.id)).find((e) => e.type === 'provider_key.deleted');
    expect(deletedEvent?.data).toMatchObject({ remapped_to: target.id, remapped_agents: 3 });
  });

  it('refuses a remap target that is not an active key of the same team and provider (400), changing nothing', async () => {
    const doomed = await createKey({ provider: 'anthropic' });
    const agent = await createAgent(t, u.token, { provider_keys: { anthropic: doomed.id } });
    const disabled = await createKey({ provider: 'anthropic' });
    await call('POST', `/v1/provider-keys/${disabled.id}/disable`);
    const wrongProvider = await createKey({ provider: 'openai' });
    const gone = await createKey({ provider: 'anthropic' });
    await call('DELETE', `/v1/provider-keys/${gone.id}`);
    const theirs = await createKey({ provider: 'anthropic' }, other.token);

    for (const bad of [disabled.id, wrongProvider.id, gone.id, theirs.id, 'pkey_nope', doomed.id]) {
      const res = await call('DELETE', `/v1/provider-keys/${doomed.id}?remap_to=${bad}`);
      expect(res.status, bad).toBe(400);
      expect(res.body.error.code).toBe('invalid_remap_target');
    }
    expect((await sealedRow(doomed.id)).status).toBe('active');
    expect((await call('GET', `/v1/agents/${agent.id}`)).body.provider_keys).toEqual({
      anthropic: doomed.id,
    });
  });

  it('a deleted key can be deleted again with remap_to, moving its leftover bindings', async () => {
    const doomed = await createKey();
    const target = await createKey();
    const agent = await createAgent(t, u.token, { provider_keys: { anthropic: doomed.id } });
    expect((await call('DELETE', `/v1/provider-keys/${doomed.id}`)).body.remapped_agents).toBe(0);
    const again = await call('DELETE', `/v1/provider-keys/${doomed.id}?remap_to=${target.id}`);
    expect(again.status).toBe(200);
    expect(again.body.remapped_agents).toBe(1);
    expect((await call('GET', `/v1/agents/${agent.id}`)).body.provider_keys).toEqual({
      anthropic: target.id,
    });
    // Deleted once: one deleted event.
    expect((await eventsOf(doomed.id)).filter((e) => e.type === 'provider_key.deleted')).toHaveLength(1);
  });
});

describe('dependents', () => {
  it('lists the bound agents, whether the key is their only one, runs and last use', async () => {
    const k = await createKey();
    const backup = await createKey();
    const disabledBackup = await createKey();
    await call('POST', `/v1/provider-keys/${disabledBackup.id}/disable`);

    const alone = await createAgent(t, u.token, { provider_keys: { anthropic: k.id } });
    const covered = await createAgent(t, u.token, {
      provider_keys: {
        anthropic: [
          { key_id: k.id, weight: 1 },
          { key_id: backup.id, weight: 1 },
        ],
      },
    });
    const falselyCovered = await createAgent(t, u.token, {
      provider_keys: {
        anthropic: [
          { key_id: k.id, weight: 1 },
          { key_id: disabledBackup.id, weight: 1 },
        ],
      },
    });
    await createAgent(t, u.token, { provider_keys: { anthropic: backup.id } });

    await insertRunRowsForTest({
      teamId: u.team.id,
      agentId: alone.id,
      policyId: alone.policy_id,
      status: 'running',
      stepKeyId: k.id,
    });
    await insertRunRowsForTest({
      teamId: u.team.id,
      agentId: covered.id,
      policyId: covered.policy_id,
      status: 'completed',
      stepKeyId: k.id,
    });
    await insertRunRowsForTest({
      teamId: u.team.id,
      agentId: covered.id,
      policyId: covered.policy_id,
      status: 'completed',
      stepKeyId: k.id,
      stepAt: new Date(t.clock.now().getTime() - 31 * DAY_MS),
    });
    await insertRunRowsForTest({
      teamId: u.team.id,
      agentId: covered.id,
      policyId: covered.policy_id,
      status: 'running',
      stepKeyId: backup.id,
    });

    const usedAt = t.clock.now();
    t.services.providers.markUsed(k.id, usedAt);
    await t.services.providers.flushUsage();

    const res = await call('GET', `/v1/provider-keys/${k.id}/dependents`);
    expect(res.status).toBe(200);
    expect(res.body.agents).toEqual(
      [
        { id: alone.id, name: alone.name, is_only_key_for_provider: true },
        { id: covered.id, name: covered.name, is_only_key_for_provider: false },
        { id: falselyCovered.id, name: falselyCovered.name, is_only_key_for_provider: true },
      ].sort((a, b) => a.id.localeCompare(b.id)),
    );
    // Running runs of the bound agents; runs that used the key within 30 days.
    expect(res.body.active_run_count).toBe(2);
    expect(res.body.runs_last_30_days).toBe(2);
    expect(res.body.last_used_at).toBe(usedAt.toISOString());
    expect((await call('GET', `/v1/provider-keys/${k.id}`)).body.last_used_at).toBe(usedAt.toISOString());
  });
});

describe('for the proxy', () => {
  it('keyForCall opens the secret with the default or configured base URL, and caches until the row changes', async () => {
    const providers = t.services.providers;
    const antSecret = secret('ant');
    const ant = await createKey({
      provider: 'anthropic',
      api_key: antSecret,
      price_overrides: { 'claude-*': { input: 1, output: 5 } },
    });
    const oai = await createKey({ provider: 'openai' });
    const custom = await createKey({ provider: 'openai', base_url: 'https://gw.example.com/v1' });

    const key = await providers.keyForCall(u.team.id, ant.id);
    expect(key).toEqual({
      id: ant.id,
      provider: 'anthropic',
      baseUrl: 'https://api.anthropic.com',
      apiKey: antSecret,
      priceOverrides: { 'claude-*': { input: 1, output: 5 } },
    });
    expect((await providers.keyForCall(u.team.id, oai.id))?.baseUrl).toBe('https://api.openai.com');
    expect((await providers.keyForCall(u.team.id, custom.id))?.baseUrl).toBe('https://gw.example.com/v1');
    // Cached: the same opened object while the row is unchanged.
    expect(await providers.keyForCall(u.team.id, ant.id)).toBe(key);
    const many = await providers.keysForCall(u.team.id, [ant.id, oai.id, 'pkey_nope']);
    expect([...many.keys()].sort()).toEqual([ant.id, oai.id].sort());
    expect(many.get(ant.id)).toBe(key);

    // Another team never gets the key.
    expect(await providers.keyForCall(other.team.id, ant.id)).toBeUndefined();
    expect(await providers.exists(other.team.id, ant.id)).toBe(false);
    expect(await providers.exists(u.team.id, ant.id, 'openai')).toBe(false);
    expect(await providers.exists(u.team.id, ant.id, 'anthropic')).toBe(true);

    t.clock.advance(1000);
    const next = secret('ant2');
    await call('PUT', `/v1/provider-keys/${ant.id}`, { body: { api_key: next } });
    expect((await providers.keyForCall(u.team.id, ant.id))?.apiKey).toBe(next);
  });

  it('agents can bind only keys of their team and provider', async () => {
    const k = await createKey({ provider: 'anthropic' });
    const theirs = await createKey({ provider: 'anthropic' }, other.token);
    for (const provider_keys of [{ openai: k.id }, { anthropic: theirs.id }, { anthropic: 'pkey_nope' }]) {
      const res = await call('POST', '/v1/agents', {
        body: {
          name: `bad-${randomBytes(3).toString('hex')}`,
          policy_id: (await createAgent(t, u.token)).policy_id,
          provider_keys,
        },
      });
      expect(res.status, JSON.stringify(provider_keys)).toBe(400);
    }
  });

  it('GET /v1/providers/health shows the team’s keys only, with their circuit state', async () => {
    const fresh = await t.signup();
    const a = await createKey({ provider: 'anthropic' }, fresh.token);
    const o = await createKey({ provider: 'openai' }, fresh.token);
    const theirs = await createKey({ provider: 'openai' }, other.token);
    const registry = t.services.providers.healthRegistry;
    registry.track(a.id, 'anthropic', {
      failure_threshold: 2,
      recovery_timeout_ms: 5000,
      max_recovery_timeout_ms: 60_000,
    });
    registry.recordFailure(a.id, 'http_error');
    registry.recordFailure(a.id, 'http_error');
    registry.recordSuccess(o.id, 120);
    registry.recordFailure(theirs.id, 'http_error');

    const res = await call('GET', '/v1/providers/health', { token: fresh.token });
    expect(res.status).toBe(200);
    expect(res.body.data.map((h: Json) => h.provider_key_id).sort()).toEqual([a.id, o.id].sort());
    const byId = new Map(res.body.data.map((h: Json) => [h.provider_key_id, h]));
    expect(byId.get(a.id)).toMatchObject({
      provider: 'anthropic',
      name: a.name,
      state: 'open',
      failure_count: 2,
      opened_at: t.clock.now().toISOString(),
      recovery_at: new Date(t.clock.now().getTime() + 5000).toISOString(),
    });
    expect(byId.get(o.id)).toMatchObject({ state: 'closed', failure_count: 0, p50_latency_ms: 120 });
  });
});

describe('who may call', () => {
  it('reads need the read scope, changes the admin scope; agent keys get nothing', async () => {
    const k = await createKey();
    const reader = await t.apiKey(u.token, ['read']);
    const writer = await t.apiKey(u.token, ['write']);
    const admin = await t.apiKey(u.token, ['admin']);
    expect((await call('GET', '/v1/provider-keys', { token: reader.key })).status).toBe(200);
    expect((await call('GET', `/v1/provider-keys/${k.id}/dependents`, { token: reader.key })).status).toBe(
      200,
    );
    expect((await call('GET', '/v1/providers/health', { token: reader.key })).status).toBe(200);
    for (const token of [reader.key, writer.key]) {
      const res = await call('POST', `/v1/provider-keys/${k.id}/disable`, { token });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('insufficient_scope');
      expect(
        (
          await call('POST', '/v1/provider-keys', {
            token,
            body: { name: 'n', provider: 'openai', api_key: secret('s') },
          })
        ).status,
      ).toBe(403);
    }
    expect((await call('POST', `/v1/provider-keys/${k.id}/disable`, { token: admin.key })).status).toBe(200);

    const agent = await createAgent(t, u.token);
    expect((await call('GET', '/v1/provider-keys', { token: agent.api_key })).status).toBe(403);
    expect((await call('GET', '/v1/providers/health', { token: agent.api_key })).status).toBe(403);
    expect((await call('GET', '/v1/provider-keys')).status).toBe(200);
    expect((await t.call('GET', '/v1/provider-keys')).status).toBe(401);
  });

  it("another team's key is 404 on every route, and never listed", async () => {
    const k = await createKey();
    const as = other.token;
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `/v1/provider-keys/${k.id}`],
      ['PUT', `/v1/provider-keys/${k.id}`, { name: 'stolen' }],
      ['POST', `/v1/provider-keys/${k.id}/disable`],
      ['POST', `/v1/provider-keys/${k.id}/enable`],
      ['GET', `/v1/provider-keys/${k.id}/dependents`],
      ['DELETE', `/v1/provider-keys/${k.id}`],
    ];
    for (const [method, url, body] of routes) {
      const res = await call(method, url, { token: as, ...(body ? { body } : {}) });
      expect(res.status, `${method} ${url}`).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const list = await call('GET', '/v1/provider-keys?status=deleted', { token: as });
    expect(list.body.data.map((x: Json) => x.id)).not.toContain(k.id);
    expect(
      (await call('GET', '/v1/provider-keys', { token: as })).body.data.map((x: Json) => x.id),
    ).not.toContain(k.id);

    // The by-name upsert acts in the caller's team: it creates their own key, never touches ours.
    const theirs = await call('PUT', `/v1/provider-keys/by-name/${k.name}`, {
      token: as,
      body: { provider: 'openai', api_key: secret('theirs') },
    });
    expect(theirs.status).toBe(201);
    expect(theirs.body.id).not.toBe(k.id);
    expect(await sealedRow(k.id)).toMatchObject({ status: 'active', provider: 'anthropic', name: k.name });
    const rows = await t.database.db
      .select()
      .from(providerKeys)
      .where(and(eq(providerKeys.teamId, u.team.id), eq(providerKeys.id, k.id)));
    expect(rows).toHaveLength(1);
  });
});

describe('secrecy', () => {
  it('no response in this file ever carried a secret', () => {
    expect(secrets.length).toBeGreaterThan(10);
    expect(responses.length).toBeGreaterThan(50);
    for (const body of responses) for (const s of secrets) expect(body.includes(s), s).toBe(false);
  });

  it('the OpenAPI document lists the provider key routes', async () => {
    const doc = await t.call('GET', '/v1/openapi.json');
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        '/v1/provider-keys',
        '/v1/provider-keys/{id}',
        '/v1/provider-keys/by-name/{name}',
        '/v1/provider-keys/{id}/dependents',
        '/v1/providers/health',
      ]),
    );
  });
});

import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppError } from '../../src/core/errors.ts';
import { newId } from '../../src/core/ids.ts';
import { agents, events } from '../../src/db/schema/index.ts';
import { AgentsService } from '../../src/modules/agents/service.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let policy: Json;
/** Real provider keys of u's team: one anthropic, two openai. */
let pkA: string;
let pkB: string;
let pkC: string;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  policy = await createPolicy(t, u.token);
  pkA = (await createProviderKey(t, u.token)).id;
  pkB = (await createProviderKey(t, u.token, { provider: 'openai' })).id;
  pkC = (await createProviderKey(t, u.token, { provider: 'openai' })).id;
});
afterAll(() => t.close());

async function authError(token: string): Promise<AppError | undefined> {
  try {
    await t.services.agents.authenticate(token);
    return undefined;
  } catch (err) {
    return err as AppError;
  }
}

describe('creating an agent', () => {
  it('answers 201 with the key once; reads never show it', async () => {
    const res = await t.call('POST', '/v1/agents', {
      token: u.token,
      body: {
        name: 'support-bot',
        description: 'answers tickets',
        policy_id: policy.id,
        metadata: { owner: 'support' },
        provider_keys: {
          anthropic: pkA,
          openai: [
            { key_id: pkB, weight: 70 },
            { key_id: pkC, weight: 30 },
          ],
        },
        routing_override: { default_chain: ['openai', 'anthropic'], timeout_ms: 30_000 },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const a = res.body;
    expect(a.id).toMatch(/^agt_/);
    expect(a.api_key).toMatch(/^pda_[0-9A-Za-z]{43}$/);
    expect(a.api_key_prefix).toBe(a.api_key.slice(0, 12));
    expect(a.note).toBeUndefined();
    expect(a).toMatchObject({
      name: 'support-bot',
      team_id: u.team.id,
      description: 'answers tickets',
      status: 'active',
      policy_id: policy.id,
      allowed_policies: null,
      metadata: { owner: 'support' },
      provider_keys: {
        anthropic: pkA,
        openai: [
          { key_id: pkB, weight: 70 },
          { key_id: pkC, weight: 30 },
        ],
      },
      routing_override: { default_chain: ['openai', 'anthropic'], timeout_ms: 30_000 },
      created_by: u.user.id,
    });

    const got = await t.call('GET', `/v1/agents/${a.id}`, { token: u.token });
    expect(got.status).toBe(200);
    const list = await t.call('GET', '/v1/agents', { token: u.token });
    for (const body of [got.body, list.body]) {
      const text = JSON.stringify(body);
      expect(text).not.toContain(a.api_key);
      expect(text).not.toContain('api_key"');
      expect(text).not.toContain('key_hash');
    }
    expect(got.body.api_key_prefix).toBe(a.api_key_prefix);

    // Stored only as its HMAC.
    const [row] = await t.database.db.select().from(agents).where(eq(agents.id, a.id));
    expect(row!.keyHash).toBe(t.services.hasher.hash(a.api_key));
    expect(JSON.stringify(row)).not.toContain(a.api_key);
  });

  it('suffixes a name already used in the team and says so in note', async () => {
    const first = await createAgent(t, u.token, { name: 'my-agent', policy_id: policy.id });
    expect(first.name).toBe('my-agent');
    const second = await createAgent(t, u.token, { name: 'my-agent', policy_id: policy.id });
    expect(second.name).toBe('my-agent-2');
    expect(second.note).toMatch(/my-agent.*my-agent-2/);
    const third = await createAgent(t, u.token, { name: 'my-agent', policy_id: policy.id });
    expect(third.name).toBe('my-agent-3');
    // A freed suffix is reused; names that merely start alike do not count.
    expect((await t.call('DELETE', `/v1/agents/${second.id}`, { token: u.token })).status).toBe(204);
    const fourth = await createAgent(t, u.token, { name: 'my-agent', policy_id: policy.id });
    expect(fourth.name).toBe('my-agent-2');
    const literal = await createAgent(t, u.token, { name: 'my_agent%', policy_id: policy.id });
    expect(literal.name).toBe('my_agent%');
  });

  it('gives concurrent creates of one name distinct names', async () => {
    const made = await Promise.all(
      Array.from({ length: 4 }, () =>
        t.call('POST', '/v1/agents', { token: u.token, body: { name: 'racer', policy_id: policy.id } }),
      ),
    );
    expect(made.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    expect(made.map((r) => r.body.name).sort()).toEqual(['racer', 'racer-2', 'racer-3', 'racer-4']);
  });

  it('requires a policy of the team (400 invalid_policy)', async () => {
    const missing = await t.call('POST', '/v1/agents', { token: u.token, body: { name: 'x' } });
    expect(missing.status).toBe(400);
    expect(missing.body.error.details.fields.policy_id).toBe('is required');

    const unknown = await t.call('POST', '/v1/agents', {
      token: u.token,
      body: { name: 'x', policy_id: 'pol_01J00000000000000000000000' },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe('invalid_policy');

    const b = await t.signup();
    const theirs = await createPolicy(t, b.token);
    const foreign = await t.call('POST', '/v1/agents', {
      token: u.token,
      body: { name: 'x', policy_id: theirs.id },
    });
    expect(foreign.status).toBe(400);
    expect(foreign.body.error.code).toBe('invalid_policy');

    const allowed = await t.call('POST', '/v1/agents', {
      token: u.token,
      body: { name: 'x', policy_id: policy.id, allowed_policies: [policy.id, theirs.id] },
    });
    expect(allowed.status).toBe(400);
    expect(allowed.body.error.code).toBe('invalid_policy');
    expect(allowed.body.error.details.allowed_policies).toEqual([theirs.id]);
  });

  it('validates provider_keys and routing_override (400 naming the field)', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ provider_keys: { gemini: 'k' } }, 'provider_keys.gemini'],
      [{ provider_keys: { openai: [{ key_id: 'k', weight: 0 }] } }, 'provider_keys.openai'],
      [{ provider_keys: { openai: [{ key_id: 'k', weight: 101 }] } }, 'provider_keys.openai'],
      [
        {
          provider_keys: {
            openai: [
              { key_id: 'k', weight: 1 },
              { key_id: 'k', weight: 2 },
            ],
          },
        },
        'provider_keys.openai',
      ],
      [{ routing_override: { connect_timeout_ms: 5000 } }, 'routing_override.connect_timeout_ms'],
      [{ routing_override: { load_balancing: 'random' } }, 'routing_override.load_balancing'],
      [{ status: 'active' }, 'status'],
    ];
    for (const [extra, field] of cases) {
      const res = await t.call('POST', '/v1/agents', {
        token: u.token,
        body: { name: 'v', policy_id: policy.id, ...extra },
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(
        Object.keys(res.body.error.details.fields).some((f) => f.startsWith(field)),
        JSON.stringify(res.body),
      ).toBe(true);
    }
  });

  it('checks provider key ids through the function it was given', async () => {
    const okKey = newId('pkey');
    const known = new Set([`openai:${okKey}`]);
    const asked: string[] = [];
    const service = new AgentsService(
      t.database.db,
      t.services.ctx,
      t.services.hasher,
      t.services.events,
      t.services.policies,
      {
        exists: async (_team, keyId, provider) => {
          asked.push(keyId);
          return known.has(`${provider}:${keyId}`);
        },
        usable: async () => [],
        models: async () => [],
      },
      {
        pinEnvironment: (teamId, asked) => t.services.environments.pin(teamId, asked),
        unknownFiles: (teamId, ids) => t.services.files.unknownFileIds(teamId, ids),
        unknownSkills: (teamId, ids) => t.services.skills.unknownSkillIds(teamId, ids),
      },
    );
    const principal = await t.services.auth.authenticateSession(u.token);
    const ok = await service.create(principal, {
      name: 'keyed',
      policy_id: policy.id,
      provider_keys: { openai: okKey },
    });
    expect(ok.provider_keys).toEqual({ openai: okKey });
    await expect(
      service.create(principal, {
        name: 'keyed',
        policy_id: policy.id,
        provider_keys: { anthropic: okKey },
      }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'invalid_provider_key' });
    await expect(
      service.update(principal, ok.id, {
        provider_keys: { openai: [{ key_id: newId('pkey'), weight: 5 }] },
      }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'invalid_provider_key' });
    // A string that is no provider key id is refused the same way, without asking.
    asked.length = 0;
    await expect(
      service.update(principal, ok.id, { provider_keys: { openai: 'pkey_ok' } }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'invalid_provider_key' });
    expect(asked).toEqual([]);
  });
});

describe('agent keys', () => {
  it('authenticate as an agent principal of the team', async () => {
    const a = await createAgent(t, u.token, { policy_id: policy.id });
    const principal = await t.services.agents.authenticate(a.api_key);
    expect(principal).toEqual({
      kind: 'agent',
      teamId: u.team.id,
      agentId: a.id,
      userId: null,
      role: null,
      scope: 'write',
      isPlatformAdmin: false,
    });
    expect((await authError('pda_notakey'))?.code).toBe('invalid_agent_key');
    // Over HTTP the pda_ prefix is known, and admin routes refuse it.
    const admin = await t.call('GET', '/v1/agents', { token: a.api_key });
    expect(admin.status).toBe(403);
    expect(admin.body.error.code).toBe('agent_key_not_allowed');
    const bogus = await t.call('GET', '/v1/agents', { token: 'pda_nope' });
    expect(bogus.status).toBe(401);
    expect(bogus.body.error.code).toBe('invalid_agent_key');
  });

  it('rotate-key gives a new key and kills the old one at once', async () => {
    const a = await createAgent(t, u.token, { policy_id: policy.id });
    await t.services.agents.authenticate(a.api_key); // warm the cache
    const res = await t.call('POST', `/v1/agents/${a.id}/rotate-key`, { token: u.token });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['api_key', 'api_key_prefix']);
    expect(res.body.api_key).toMatch(/^pda_/);
    expect(res.body.api_key).not.toBe(a.api_key);
    expect(res.body.api_key_prefix).toBe(res.body.api_key.slice(0, 12));

    expect((await authError(a.api_key))?.statusCode).toBe(401);
    expect((await t.services.agents.authenticate(res.body.api_key)).agentId).toBe(a.id);
    const got = await t.call('GET', `/v1/agents/${a.id}`, { token: u.token });
    expect(got.body.api_key_prefix).toBe(res.body.api_key_prefix);
    const rotated = await t.database.db.select().from(events).where(eq(events.subjectId, a.id));
    expect(rotated.map((e) => e.type)).toContain('agent.key_rotated');
  });

  it('a disabled agent still authenticates; the proxy sees the status at once', async () => {
    const a = await createAgent(t, u.token, { policy_id: policy.id });
    expect((await t.services.agents.getForCall(a.id))?.status).toBe('active'); // cached
    const res = await t.call('PATCH', `/v1/agents/${a.id}`, { token: u.token, body: { status: 'disabled' } });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('disabled');
    expect((await t.services.agents.getForCall(a.id))?.status).toBe('disabled');
    expect((await t.services.agents.authenticate(a.api_key)).agentId).toBe(a.id);
    const types = (await t.database.db.select().from(events).where(eq(events.subjectId, a.id))).map(
      (e) => e.type,
    );
    expect(types).toEqual(['agent.created', 'agent.disabled']);

    const enabled = await t.call('PATCH', `/v1/agents/${a.id}`, {
      token: u.token,
      body: { status: 'active' },
    });
    expect(enabled.body.status).toBe('active');
    const disabledList = await t.call('GET', '/v1/agents?status=disabled', { token: u.token });
    expect(disabledList.body.data.map((x: { id: string }) => x.id)).not.toContain(a.id);
  });

  it('deleting the agent stops its key and removes it everywhere', async () => {
    const a = await createAgent(t, u.token, { policy_id: policy.id });
    await t.services.agents.authenticate(a.api_key);
    expect((await t.services.agents.getForCall(a.id))?.id).toBe(a.id);
    expect((await t.call('DELETE', `/v1/agents/${a.id}`, { token: u.token })).status).toBe(204);
    expect((await authError(a.api_key))?.code).toBe('invalid_agent_key');
    expect(await t.services.agents.getForCall(a.id)).toBeUndefined();
    expect((await t.call('GET', `/v1/agents/${a.id}`, { token: u.token })).status).toBe(404);
    expect((await t.call('DELETE', `/v1/agents/${a.id}`, { token: u.token })).status).toBe(404);
    expect((await t.call('POST', `/v1/agents/${a.id}/rotate-key`, { token: u.token })).status).toBe(404);
    // The name is free again.
    const again = await createAgent(t, u.token, { name: a.name, policy_id: policy.id });
    expect(again.name).toBe(a.name);
    expect(again.note).toBeUndefined();
  });
});

describe('PATCH /v1/agents/{id}', () => {
  it('changes only the fields sent', async () => {
    const other = await createPolicy(t, u.token);
    const a = await createAgent(t, u.token, {
      policy_id: policy.id,
      description: 'before',
      metadata: { a: 1 },
      provider_keys: { anthropic: pkA },
    });
    const res = await t.call('PATCH', `/v1/agents/${a.id}`, {
      token: u.token,
      body: {
        description: 'after',
        policy_id: other.id,
        allowed_policies: [policy.id],
        routing_override: { timeout_ms: 5000 },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      name: a.name,
      description: 'after',
      policy_id: other.id,
      allowed_policies: [policy.id],
      metadata: { a: 1 },
      provider_keys: { anthropic: pkA },
      routing_override: { timeout_ms: 5000 },
      status: 'active',
    });
    const cleared = await t.call('PATCH', `/v1/agents/${a.id}`, {
      token: u.token,
      body: { description: null, routing_override: null, allowed_policies: null, metadata: {} },
    });
    expect(cleared.body).toMatchObject({
      description: null,
      routing_override: null,
      allowed_policies: null,
      metadata: {},
    });
    const updated = (await t.database.db.select().from(events).where(eq(events.subjectId, a.id))).filter(
      (e) => e.type === 'agent.updated',
    );
    expect(updated.map((e) => e.data.changed_fields)).toEqual([
      ['description', 'policy_id', 'allowed_policies', 'routing_override'],
      ['description', 'allowed_policies', 'routing_override', 'metadata'],
    ]);
  });

  it('refuses a name in use (409) and unknown fields (400)', async () => {
    const a = await createAgent(t, u.token, { policy_id: policy.id });
    const b = await createAgent(t, u.token, { policy_id: policy.id });
    const clash = await t.call('PATCH', `/v1/agents/${a.id}`, { token: u.token, body: { name: b.name } });
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('agent_name_taken');
    const unknown = await t.call('PATCH', `/v1/agents/${a.id}`, {
      token: u.token,
      body: { api_key: 'pda_x' },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details.fields.api_key).toMatch(/not a known field/);
    const status = await t.call('PATCH', `/v1/agents/${a.id}`, {
      token: u.token,
      body: { status: 'paused' },
    });
    expect(status.status).toBe(400);
    expect(status.body.error.details.fields.status).toMatch(/one of active, disabled/);
  });
});

describe('PUT /v1/agents/by-name/{name}', () => {
  it('creates with a key (201; status ignored, no suffix), then updates without one (200)', async () => {
    const created = await t.call('PUT', '/v1/agents/by-name/iac-agent', {
      token: u.token,
      body: { policy_id: policy.id, status: 'disabled', description: 'v1' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'iac-agent', status: 'active', description: 'v1' });
    expect(created.body.api_key).toMatch(/^pda_/);

    const updated = await t.call('PUT', '/v1/agents/by-name/iac-agent', {
      token: u.token,
      body: { description: 'v2', status: 'disabled' },
    });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({
      id: created.body.id,
      name: 'iac-agent',
      description: 'v2',
      status: 'disabled',
    });
    expect(updated.body.api_key).toBeUndefined();
    expect(updated.body.policy_id).toBe(policy.id);
    // The original key still works: an update never rotates it.
    expect((await t.services.agents.authenticate(created.body.api_key)).agentId).toBe(created.body.id);
  });

  it('needs policy_id to create', async () => {
    const res = await t.call('PUT', '/v1/agents/by-name/no-policy', {
      token: u.token,
      body: { description: 'x' },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(res.body.error.details.fields).toHaveProperty('policy_id');
    expect(
      (await t.call('GET', '/v1/agents', { token: u.token })).body.data.map((a: Json) => a.name),
    ).not.toContain('no-policy');
  });
});

describe('listing', () => {
  it('filters by status and policy_id and pages with a cursor', async () => {
    const owner = await t.signup();
    const p1 = await createPolicy(t, owner.token);
    const p2 = await createPolicy(t, owner.token);
    const made: Json[] = [];
    for (let i = 0; i < 5; i++)
      made.push(await createAgent(t, owner.token, { policy_id: i < 3 ? p1.id : p2.id }));
    await t.call('PATCH', `/v1/agents/${made[0]!.id}`, { token: owner.token, body: { status: 'disabled' } });

    const byPolicy = await t.call('GET', `/v1/agents?policy_id=${p2.id}`, { token: owner.token });
    expect(byPolicy.body.data.map((a: Json) => a.id)).toEqual([made[4]!.id, made[3]!.id]);
    const disabled = await t.call('GET', '/v1/agents?status=disabled', { token: owner.token });
    expect(disabled.body.data.map((a: Json) => a.id)).toEqual([made[0]!.id]);
    const badStatus = await t.call('GET', '/v1/agents?status=gone', { token: owner.token });
    expect(badStatus.status).toBe(400);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: { body: { data: Json[]; next_cursor: string | null } } = await t.call(
        'GET',
        `/v1/agents?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        { token: owner.token },
      );
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.data.map((a) => a.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(made.map((a) => a.id).reverse());
  });
});

describe('tenancy and scopes', () => {
  it("never shows or changes another team's agent (404 on every route)", async () => {
    const a = await createAgent(t, u.token, { name: 'team-a-agent', policy_id: policy.id });
    const b = await t.signup();
    const bKey = (await t.apiKey(b.token, ['admin'])).key;
    const bPolicy = await createPolicy(t, b.token);
    for (const token of [b.token, bKey]) {
      const routes: Array<[string, string, unknown?]> = [
        ['GET', `/v1/agents/${a.id}`],
        ['PATCH', `/v1/agents/${a.id}`, { status: 'disabled' }],
        ['DELETE', `/v1/agents/${a.id}`],
        ['POST', `/v1/agents/${a.id}/rotate-key`],
      ];
      for (const [method, url, body] of routes) {
        const res = await t.call(method, url, { token, ...(body ? { body } : {}) });
        expect(res.status, `${method} ${url}`).toBe(404);
        expect(JSON.stringify(res.body)).not.toContain('team-a-agent');
      }
      const list = await t.call('GET', '/v1/agents', { token });
      expect(list.body.data.map((x: Json) => x.id)).not.toContain(a.id);
      const filtered = await t.call('GET', `/v1/agents?policy_id=${policy.id}`, { token });
      expect(filtered.body.data).toEqual([]);
    }
    // B's upsert of the same name makes B's own agent (no suffix: names are per team).
    const mine = await t.call('PUT', '/v1/agents/by-name/team-a-agent', {
      token: b.token,
      body: { policy_id: bPolicy.id },
    });
    expect(mine.status).toBe(201);
    expect(mine.body.id).not.toBe(a.id);
    const still = await t.call('GET', `/v1/agents/${a.id}`, { token: u.token });
    expect(still.body).toMatchObject({ status: 'active', team_id: u.team.id });
    expect((await t.services.agents.authenticate(a.api_key)).teamId).toBe(u.team.id);
  });

  it('lets a read key list and not write', async () => {
    const readKey = (await t.apiKey(u.token, ['read'])).key;
    expect((await t.call('GET', '/v1/agents', { token: readKey })).status).toBe(200);
    const res = await t.call('POST', '/v1/agents', {
      token: readKey,
      body: { name: 'r', policy_id: policy.id },
    });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('insufficient_scope');
  });
});

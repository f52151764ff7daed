import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MINUTE_MS } from '../../src/core/clock.ts';
import type { AgentId, TeamId } from '../../src/core/ids.ts';
import prices from '../../src/modules/gateway/data/prices.json' with { type: 'json' };
import { globMatch } from '../../src/modules/gateway/glob.ts';
import { MODEL_ALIASES, resolveModelAlias } from '../../src/modules/gateway/model-aliases.ts';
import { PriceTable } from '../../src/modules/gateway/pricing.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { scriptedDns } from '../support/dns.ts';
import { createAgent, createProviderKey, type Json } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';

// GET /v1/agents/{id}/models: each usable key's own model list, fetched
// through the outbound-address guard, cached per key (the test moves the
// clock, so no sleeps), and the price table's models while a list cannot be
// had. The mock provider listens on loopback, which this app allows only
// under the name mock.test: the same address under another name is refused.

const OPENAI_SECRET = 'sk-openai-models-secret';
const ANTHROPIC_SECRET = 'sk-ant-models-secret';

let t: TestApp;
let mock: MockLlm;
let u: SignedUpUser;
let other: SignedUpUser;
const dns = scriptedDns({
  'mock.test': [['127.0.0.1']],
  // Public when the key is saved, the mock's loopback address when the list is fetched.
  'models.rebind.test': [['93.184.216.34'], ['127.0.0.1']],
});
/** The mock, under the one name the allow-list lets through. */
let mockUrl: string;

beforeAll(async () => {
  mock = await startMockLlm({ requireKey: [OPENAI_SECRET, ANTHROPIC_SECRET] });
  t = await createTestApp({
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: 'mock.test' },
    resolveHost: dns.resolve,
  });
  u = await t.signup();
  other = await t.signup();
  mockUrl = `http://mock.test:${mock.port}`;
}, 90_000);
afterAll(async () => {
  await t.close();
  await mock.close();
});
beforeEach(() => mock.reset());

const listings = () => mock.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/models'));

async function models(agentId: string, token = u.token) {
  return t.call('GET', `/v1/agents/${agentId}/models`, { token });
}

/** An OpenAI key (base_url with /v1) and an Anthropic key (without), both on the mock, and an agent bound to both. */
async function agentWithKeys(): Promise<{ agent: Json; openai: Json; anthropic: Json }> {
  const openai = await createProviderKey(t, u.token, {
    provider: 'openai',
    api_key: OPENAI_SECRET,
    base_url: `${mockUrl}/v1`,
  });
  const anthropic = await createProviderKey(t, u.token, {
    provider: 'anthropic',
    api_key: ANTHROPIC_SECRET,
    base_url: mockUrl,
  });
  const agent = await createAgent(t, u.token, {
    provider_keys: { anthropic: anthropic.id, openai: openai.id },
  });
  return { agent, openai, anthropic };
}

describe('model aliases', () => {
  it('resolves family aliases to full ids, any case; full ids and unknown names pass through', () => {
    expect(resolveModelAlias('sonnet')).toEqual({ model: 'claude-sonnet-4-6', alias: 'sonnet' });
    expect(resolveModelAlias('Opus')).toEqual({ model: 'claude-opus-4-5-20251101', alias: 'opus' });
    expect(resolveModelAlias('haiku')).toEqual({ model: 'claude-haiku-4-5-20251001', alias: 'haiku' });
    expect(resolveModelAlias('gpt-4o')).toEqual({ model: 'gpt-4o-2024-08-06', alias: 'gpt-4o' });
    expect(resolveModelAlias('gpt-5-mini')).toEqual({ model: 'gpt-5-mini-2025-08-07', alias: 'gpt-5-mini' });
    for (const full of ['claude-opus-4-5-20251101', 'gpt-4o-2024-11-20', 'llama3.1:8b', 'sonnet-ish']) {
      expect(resolveModelAlias(full)).toEqual({ model: full, alias: null });
    }
  });

  it('points every alias at a model the price table prices as itself and lists for its provider', () => {
    const table = new PriceTable();
    for (const a of MODEL_ALIASES) {
      expect(table.catalogModels(a.provider), a.alias).toContain(a.model);
    }
    // A listed model is priced by the entry that lists it (the first matching pattern), not a broader one.
    for (const provider of ['anthropic', 'openai'] as const) {
      const entries = prices[provider] as Array<{ pattern: string; models?: string[] }>;
      for (const entry of entries) {
        for (const model of entry.models ?? []) {
          expect(entries.find((e) => globMatch(e.pattern, model))?.pattern, model).toBe(entry.pattern);
        }
      }
    }
  });
});

describe('GET /v1/agents/{id}/models', () => {
  it("lists each key's models from its provider, in that provider's format, with their aliases", async () => {
    mock.setModels(['gpt-4o-2024-08-06', 'gpt-4o', 'o3'], 'openai');
    mock.setModels(['claude-sonnet-4-6', 'claude-haiku-4-5-20251001', 'claude-sonnet-4-6'], 'anthropic');
    const { agent, openai, anthropic } = await agentWithKeys();

    const res = await models(agent.id);
    expect(res.status).toBe(200);
    expect(res.body.next_cursor).toBeNull();
    const rows = (id: string, provider: string, keyId: string, aliases: string[] = []) => ({
      id,
      provider,
      provider_key_id: keyId,
      aliases,
      source: 'provider',
    });
    // Sorted by id, one entry per (key, id): the Anthropic list named claude-sonnet-4-6 twice.
    expect(res.body.data).toEqual([
      rows('claude-haiku-4-5-20251001', 'anthropic', anthropic.id, ['haiku']),
      rows('claude-sonnet-4-6', 'anthropic', anthropic.id, ['sonnet']),
      rows('gpt-4o', 'openai', openai.id),
      rows('gpt-4o-2024-08-06', 'openai', openai.id, ['gpt-4o']),
      rows('o3', 'openai', openai.id),
    ]);

    // Each key's secret reached the mock in its provider's own headers, and never the answer.
    const seen = listings();
    expect(seen).toHaveLength(2);
    const byFormat = Object.fromEntries(seen.map((r) => [r.format, r]));
    expect(byFormat.openai).toMatchObject({ path: '/v1/models', apiKey: OPENAI_SECRET });
    expect(byFormat.openai!.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
    expect(byFormat.anthropic).toMatchObject({ path: '/v1/models', apiKey: ANTHROPIC_SECRET });
    expect(byFormat.anthropic!.headers['x-api-key']).toBe(ANTHROPIC_SECRET);
    expect(byFormat.anthropic!.headers['anthropic-version']).toBeDefined();
    const text = JSON.stringify(res.body);
    expect(text).not.toContain(OPENAI_SECRET);
    expect(text).not.toContain(ANTHROPIC_SECRET);
  });

  it('follows Anthropic’s pages to the end', async () => {
    const ids = Array.from({ length: 1500 }, (_, i) => `claude-test-${String(i).padStart(4, '0')}`);
    mock.setModels(ids, 'anthropic');
    const { agent } = await agentWithKeys();
    const res = await models(agent.id);
    const listed = res.body.data.filter((m: Json) => m.provider === 'anthropic').map((m: Json) => m.id);
    expect(listed).toEqual(ids);
    expect(listings().filter((r) => r.format === 'anthropic')).toHaveLength(2);
  });

  it('fetches once per key, serves the cache within the TTL, then serves it stale while one refresh runs', async () => {
    mock.setModels(['gpt-first'], 'openai');
    mock.setModels(['claude-first'], 'anthropic');
    const { agent } = await agentWithKeys();
    const ids = (res: { body: Json }) => res.body.data.map((m: Json) => m.id);

    // Two requests at once share one fetch per key.
    const [a, b] = await Promise.all([models(agent.id), models(agent.id)]);
    expect(ids(a)).toEqual(['claude-first', 'gpt-first']);
    expect(ids(b)).toEqual(['claude-first', 'gpt-first']);
    expect(listings()).toHaveLength(2);

    mock.setModels(['gpt-second'], 'openai');
    mock.setModels(['claude-second'], 'anthropic');
    t.clock.advance(9 * MINUTE_MS);
    expect(ids(await models(agent.id))).toEqual(['claude-first', 'gpt-first']);
    expect(listings()).toHaveLength(2);

    // Past the TTL: the old list at once, and a refresh in the background (one per key, however
    // many ask while it runs; the mock holds the lists a while, so the requests ask meanwhile).
    mock.replyFor({ path: '/v1/models' }, { delayMs: 1500, times: 2 });
    t.clock.advance(2 * MINUTE_MS);
    expect(ids(await models(agent.id))).toEqual(['claude-first', 'gpt-first']);
    expect(ids(await models(agent.id))).toEqual(['claude-first', 'gpt-first']);
    await t.services.models.settled();
    expect(listings()).toHaveLength(4);
    expect(ids(await models(agent.id))).toEqual(['claude-second', 'gpt-second']);
    expect(listings()).toHaveLength(4);
  });

  it('keeps serving the old list when a refresh fails', async () => {
    mock.setModels(['gpt-kept'], 'openai');
    const openai = await createProviderKey(t, u.token, {
      provider: 'openai',
      api_key: OPENAI_SECRET,
      base_url: mockUrl,
    });
    const agent = await createAgent(t, u.token, { provider_keys: { openai: openai.id } });
    expect((await models(agent.id)).body.data.map((m: Json) => m.id)).toEqual(['gpt-kept']);
    mock.replyFor({ path: '/v1/models' }, { status: 500 });
    t.clock.advance(11 * MINUTE_MS);
    await models(agent.id);
    await t.services.models.settled();
    const after = await models(agent.id);
    expect(after.body.data).toEqual([expect.objectContaining({ id: 'gpt-kept', source: 'provider' })]);
    expect(listings()).toHaveLength(2);
  });

  it("answers the price table's models, marked catalog, while the provider's list fails", async () => {
    mock.setModels(['gpt-live'], 'openai');
    mock.replyFor({ path: '/v1/models' }, { status: 503, message: 'models are down' });
    const openai = await createProviderKey(t, u.token, {
      provider: 'openai',
      api_key: OPENAI_SECRET,
      base_url: mockUrl,
    });
    const agent = await createAgent(t, u.token, { provider_keys: { openai: openai.id } });

    const res = await models(agent.id);
    expect(res.status).toBe(200);
    const catalog = new PriceTable().catalogModels('openai');
    expect(res.body.data.map((m: Json) => m.id)).toEqual([...catalog].sort());
    expect(res.body.data.every((m: Json) => m.source === 'catalog' && m.provider_key_id === openai.id)).toBe(
      true,
    );
    expect(res.body.data.find((m: Json) => m.id === 'gpt-4o-2024-08-06').aliases).toEqual(['gpt-4o']);
    expect(listings()).toHaveLength(1);

    // The provider is back, but a failure is tried again only after a minute: the catalog until then.
    expect((await models(agent.id)).body.data[0].source).toBe('catalog');
    expect(listings()).toHaveLength(1);
    t.clock.advance(MINUTE_MS);
    const back = await models(agent.id);
    expect(back.body.data).toEqual([expect.objectContaining({ id: 'gpt-live', source: 'provider' })]);
    expect(listings()).toHaveLength(2);
  });

  it('is empty for an agent with no usable key: none bound, or only disabled and deleted ones', async () => {
    const bare = await createAgent(t, u.token);
    expect((await models(bare.id)).body).toEqual({ data: [], next_cursor: null });

    const { agent, openai, anthropic } = await agentWithKeys();
    expect((await t.call('POST', `/v1/provider-keys/${openai.id}/disable`, { token: u.token })).status).toBe(
      200,
    );
    expect((await t.call('DELETE', `/v1/provider-keys/${anthropic.id}`, { token: u.token })).status).toBe(
      200,
    );
    expect((await models(agent.id)).body).toEqual({ data: [], next_cursor: null });
    expect(listings()).toHaveLength(0);
  });

  it("is a 404 for another team's agent, as for an unknown id; agent keys may not read agents", async () => {
    const { agent } = await agentWithKeys();
    const unknownId = 'agt_01JZZZZZZZZZZZZZZZZZZZZZZZ';
    const foreign = await models(agent.id, other.token);
    const unknown = await models(unknownId, other.token);
    expect(foreign.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(foreign.body.error.details).toEqual({ kind: 'agent', id: agent.id });
    expect(foreign.body.error.message.replace(agent.id, 'ID')).toBe(
      unknown.body.error.message.replace(unknownId, 'ID'),
    );
    expect((await models('not-an-id')).status).toBe(404);
    const own = await models(agent.id, agent.api_key);
    expect(own.status).toBe(403);
    expect(own.body.error.code).toBe('agent_key_not_allowed');
    expect(listings()).toHaveLength(0);

    const readKey = await t.apiKey(u.token, ['read']);
    expect((await models(agent.id, readKey.key)).status).toBe(200);
  });

  it('never fetches from an address the outbound guard refuses: the catalog, and no request leaves', async () => {
    // models.rebind.test resolves to the mock's own address by then; only the guard stands between.
    const before = mock.requestCount;
    const key = await createProviderKey(t, u.token, {
      provider: 'openai',
      api_key: OPENAI_SECRET,
      base_url: `http://models.rebind.test:${mock.port}`,
    });
    const agent = await createAgent(t, u.token, { provider_keys: { openai: key.id } });
    const res = await models(agent.id);
    expect(res.status).toBe(200);
    expect(res.body.data.length).toBeGreaterThan(0);
    expect(res.body.data.every((m: Json) => m.source === 'catalog')).toBe(true);
    expect(dns.asked.filter((n) => n === 'models.rebind.test').length).toBeGreaterThanOrEqual(2);
    expect(mock.requestCount).toBe(before);
    // The same secret, under the allowed name, does reach the mock.
    const allowed = await createProviderKey(t, u.token, {
      provider: 'openai',
      api_key: OPENAI_SECRET,
      base_url: mockUrl,
    });
    const control = await createAgent(t, u.token, { provider_keys: { openai: allowed.id } });
    expect((await models(control.id)).body.data[0].source).toBe('provider');
    expect(mock.requestCount).toBe(before + 1);
  });
});

describe('usableProviderKeys (for the tasks module)', () => {
  it("gives the agent's active keys by provider, without secrets; another team's agent is not found", async () => {
    const { openai, anthropic } = await agentWithKeys();
    const spare = await createProviderKey(t, u.token, { provider: 'openai', api_key: OPENAI_SECRET });
    const agent = await createAgent(t, u.token, {
      provider_keys: {
        openai: [
          { key_id: spare.id, weight: 1 },
          { key_id: openai.id, weight: 3 },
        ],
        anthropic: anthropic.id,
      },
    });
    const teamId = u.team.id as TeamId;
    const usable = await t.services.agents.usableProviderKeys(teamId, agent.id as AgentId);
    expect(usable).toEqual([
      { id: anthropic.id, provider: 'anthropic', name: anthropic.name },
      { id: spare.id, provider: 'openai', name: spare.name },
      { id: openai.id, provider: 'openai', name: openai.name },
    ]);
    await t.call('POST', `/v1/provider-keys/${anthropic.id}/disable`, { token: u.token });
    await t.call('DELETE', `/v1/provider-keys/${spare.id}`, { token: u.token });
    expect(await t.services.agents.usableProviderKeys(teamId, agent.id as AgentId)).toEqual([
      { id: openai.id, provider: 'openai', name: openai.name },
    ]);
    await expect(
      t.services.agents.usableProviderKeys(other.team.id as TeamId, agent.id as AgentId),
    ).rejects.toMatchObject({ statusCode: 404 });
  });
});

import type { AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createTestApp, type SignedUpUser, type TestApp } from './app.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from './factories.ts';
import { type MockLlm, startMockLlm } from './mock-llm.ts';

/**
 * A Paddock on a real port with a mock provider behind it: one openai and one
 * anthropic provider key pointing at the mock, a policy, and an agent bound to
 * both keys. Tests drive it with the official SDKs, as agents would.
 */
export interface GatewayFixture {
  t: TestApp;
  user: SignedUpUser;
  mock: MockLlm;
  /** http://127.0.0.1:PORT of Paddock. */
  url: string;
  policy: Json;
  agent: Json & { api_key: string };
  keys: { openai: Json; anthropic: Json };
  openai(options?: { apiKey?: string; headers?: Record<string, string>; timeoutMs?: number }): OpenAI;
  anthropic(options?: { apiKey?: string; headers?: Record<string, string>; timeoutMs?: number }): Anthropic;
  /** The steps of a run, oldest first, once the write-behind queue has drained. */
  steps(runId: string): Promise<Json[]>;
  /** A run's ledger entries, as the API lists them, once the write-behind queue has drained. */
  ledger(runId: string): Promise<Json[]>;
  run(runId: string): Promise<Json>;
  /** Another agent of the same team, on a policy made from `policy` (and the same keys unless given). */
  newAgent(
    policy?: Record<string, unknown>,
    agent?: Record<string, unknown>,
  ): Promise<Json & { api_key: string }>;
  close(): Promise<void>;
}

export async function startGateway(
  options: {
    policy?: Record<string, unknown>;
    agent?: Record<string, unknown>;
    env?: NodeJS.ProcessEnv;
  } = {},
): Promise<GatewayFixture> {
  // The mock provider listens on loopback, which the outbound-address guard refuses unless allowed.
  const t = await createTestApp({
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1', ...options.env },
    start: new Date(),
  });
  const user = await t.signup();
  const mock = await startMockLlm();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  const keys = {
    openai: await createProviderKey(t, user.token, {
      provider: 'openai',
      api_key: 'sk-openai-test',
      base_url: mock.url,
    }),
    anthropic: await createProviderKey(t, user.token, {
      provider: 'anthropic',
      api_key: 'sk-ant-test',
      base_url: mock.url,
    }),
  };
  const bindings = { openai: keys.openai.id, anthropic: keys.anthropic.id };
  const newAgent = async (
    policyBody: Record<string, unknown> = {},
    agentBody: Record<string, unknown> = {},
  ) => {
    const policy = await createPolicy(t, user.token, policyBody);
    return createAgent(t, user.token, { provider_keys: bindings, ...agentBody, policy_id: policy.id });
  };
  const policy = await createPolicy(t, user.token, options.policy ?? {});
  const agent = await createAgent(t, user.token, {
    provider_keys: bindings,
    ...options.agent,
    policy_id: policy.id,
  });
  const clientOptions = (o: { apiKey?: string; headers?: Record<string, string>; timeoutMs?: number }) => ({
    apiKey: o.apiKey ?? agent.api_key,
    maxRetries: 0,
    timeout: o.timeoutMs ?? 20_000,
    defaultHeaders: o.headers,
  });
  return {
    t,
    user,
    mock,
    url,
    policy,
    agent,
    keys,
    openai: (o = {}) => new OpenAI({ baseURL: `${url}/v1`, ...clientOptions(o) }),
    anthropic: (o = {}) => new Anthropic({ baseURL: url, ...clientOptions(o) }),
    async steps(runId) {
      await t.services.runs.flush();
      const res = await t.call('GET', `/v1/runs/${runId}/steps`, {
        token: user.token,
        query: { limit: '200' },
      });
      if (res.status !== 200) throw new Error(`steps failed: ${res.status} ${JSON.stringify(res.body)}`);
      return [...res.body.data].sort((a: Json, b: Json) => (a.id < b.id ? -1 : 1));
    },
    async ledger(runId) {
      await t.services.runs.flush();
      const res = await t.call('GET', `/v1/runs/${runId}/ledger`, { token: user.token });
      if (res.status !== 200) throw new Error(`ledger failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data;
    },
    async run(runId) {
      await t.services.runs.flush();
      const res = await t.call('GET', `/v1/runs/${runId}`, { token: user.token });
      if (res.status !== 200) throw new Error(`run failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    newAgent,
    async close() {
      await t.close();
      await mock.close();
    },
  };
}

/**
 * An agent of the fixture's team whose only provider key is an
 * openai_compatible one at the mock: a Chat Completions upstream (what the
 * Responses API is translated to for such keys).
 */
export async function chatUpstreamAgent(g: GatewayFixture): Promise<Json & { api_key: string }> {
  const key = await createProviderKey(g.t, g.user.token, {
    provider: 'openai_compatible',
    api_key: 'sk-compat-test',
    base_url: g.mock.url,
  });
  return g.newAgent({}, { provider_keys: { openai_compatible: key.id } });
}

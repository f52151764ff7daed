import type { TestApp } from './app.ts';

/**
 * State for tests, made through the HTTP API (and so through the services),
 * never through SQL fixtures. Each returns the created object's JSON.
 */

let seq = 0;
function unique(label: string): string {
  seq += 1;
  return `${label}-${seq}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Any JSON object the API answers (tests read fields freely). */
// biome-ignore lint/suspicious/noExplicitAny: API answers are read field by field in tests
export type Json = Record<string, any>;

/** A policy of `token`'s active team; `body` overrides the defaults (name is made unique unless given). */
export async function createPolicy(
  t: TestApp,
  token: string,
  body: Record<string, unknown> = {},
): Promise<Json> {
  const res = await t.call('POST', '/v1/policies', { token, body: { name: unique('policy'), ...body } });
  if (res.status !== 201) throw new Error(`createPolicy failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/**
 * An agent of `token`'s active team, with its one-time `api_key`. Without a
 * `policy_id` a fresh policy is made for it.
 */
export async function createAgent(
  t: TestApp,
  token: string,
  body: Record<string, unknown> = {},
): Promise<Json & { api_key: string }> {
  const policyId = body.policy_id ?? (await createPolicy(t, token)).id;
  const res = await t.call('POST', '/v1/agents', {
    token,
    body: { name: unique('agent'), ...body, policy_id: policyId },
  });
  if (res.status !== 201) throw new Error(`createAgent failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** A provider key of `token`'s active team (provider `anthropic` unless given), with a throwaway secret. */
export async function createProviderKey(
  t: TestApp,
  token: string,
  body: Record<string, unknown> = {},
): Promise<Json> {
  const res = await t.call('POST', '/v1/provider-keys', {
    token,
    body: { name: unique('pkey'), provider: 'anthropic', api_key: `sk-test-${unique('secret')}`, ...body },
  });
  if (res.status !== 201)
    throw new Error(`createProviderKey failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

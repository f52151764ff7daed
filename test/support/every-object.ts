import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Json } from './factories.ts';
import type { MockLlm } from './mock-llm.ts';
import { multipart } from './multipart.ts';

// A data dir with one object of every kind a team keeps, made through a
// running server's API (seedEveryKind), and the check that a server finds
// each one whole (expectEveryKind): logins work, sealed values open, file
// bytes are equal. The backup and upgrade tests make data with the first and
// look for it with the second, on another server.

/** A JSON call to a server at `url`; the body parsed. */
export type Api = (
  method: string,
  path: string,
  token: string | null,
  body?: unknown,
) => Promise<{ status: number; body: Json }>;

export function apiAt(url: string): Api {
  return async (method, path, token, body) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : {} };
  };
}

/** What seedEveryKind made: ids, and the values a server must give back (JSON, so a fixture can keep it). */
export interface Seeded {
  email: string;
  password: string;
  api_key: string;
  team_id: string;
  second_team_id: string;
  policy_id: string;
  provider_key_id: string;
  agent_id: string;
  secret: { id: string; value: string };
  file: { id: string; base64: string };
  environment_id: string;
  task: { id: string; result: string; events: number };
  webhook_id: string;
  playbook: { id: string; schedule: string };
  memory: { id: string; content: string };
  work_item_id: string;
  skill_id: string;
}

async function made(api: Api, token: string, path: string, body: unknown, status = 201): Promise<Json> {
  const res = await api('POST', path, token, body);
  if (res.status !== status) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * One of each: a user (the platform admin) with a second team, a team API
 * key, a policy, a provider key and an agent on it with two versions, a
 * secret, an uploaded file, an environment, a task run to completion on
 * `mock` (its events), a webhook, a scheduled playbook, a memory, a work
 * item and a skill. The server must allow signup and 127.0.0.1 upstreams.
 */
export async function seedEveryKind(url: string, mock: MockLlm): Promise<Seeded> {
  const api = apiAt(url);
  const email = `owner-${randomBytes(3).toString('hex')}@example.com`;
  const password = 'a long password';
  const signup = await made(api, '', '/v1/auth/signup', { email, password, name: 'Olive Owner' });
  const token: string = signup.session_token;
  const teamId: string = signup.team.id;
  const secondTeam = await made(api, token, '/v1/teams', { name: 'Second team' });
  const apiKey = await made(api, token, '/v1/api-keys', { name: 'backup check', scopes: ['admin'] });
  const policy = await made(api, token, '/v1/policies', { name: 'every-kind' });
  const providerKey = await made(api, token, '/v1/provider-keys', {
    name: 'mock',
    provider: 'openai',
    api_key: 'sk-every-kind',
    base_url: mock.url,
  });
  const agent = await made(api, token, '/v1/agents', {
    name: 'every-kind',
    policy_id: policy.id,
    provider_keys: { openai: providerKey.id },
    model: 'gpt-4o-mini',
  });
  const v2 = await api('PATCH', `/v1/agents/${agent.id}`, token, { system_prompt: 'Be brief.' });
  if (v2.body.version !== 2) throw new Error(`agent version 2: ${v2.status} ${JSON.stringify(v2.body)}`);
  const secretValue = `s3cret-${randomBytes(8).toString('hex')}`;
  const secret = await made(api, token, '/v1/secrets', { name: 'DEPLOY_TOKEN', value: secretValue });

  const bytes = randomBytes(70_000);
  const upload = multipart({ filename: 'data.bin', data: bytes });
  const fileRes = await fetch(`${url}/v1/files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': upload.contentType },
    body: upload.payload,
  });
  const file = (await fileRes.json()) as Json;
  if (fileRes.status !== 201) throw new Error(`upload: ${fileRes.status} ${JSON.stringify(file)}`);

  const environment = await made(api, token, '/v1/environments', { name: 'every-kind-env' });
  mock.reply([
    { toolCalls: [{ name: 'bash', arguments: { command: 'echo hello from the capsule' } }] },
    { toolCalls: [{ name: 'submit_result', arguments: { result: 'all done' } }] },
  ]);
  const task = await made(api, token, '/v1/tasks', { agent_id: agent.id, prompt: 'say hello' }, 202);
  await until(
    async () =>
      ['completed', 'failed'].includes((await api('GET', `/v1/tasks/${task.id}`, token)).body.status),
    'the task to end',
  );
  const ended = (await api('GET', `/v1/tasks/${task.id}`, token)).body;
  if (ended.status !== 'completed') throw new Error(`the task ended ${JSON.stringify(ended)}`);
  const events = (await api('GET', `/v1/tasks/${task.id}/events?limit=1000`, token)).body.data as Json[];

  const webhook = await made(api, token, '/v1/webhooks', {
    url: 'http://127.0.0.1:9/hook',
    event_types: ['task.completed'],
  });
  const playbook = await made(api, token, '/v1/playbooks', {
    agent_id: agent.id,
    name: 'nightly digest',
    prompt: 'Write the digest',
    schedule: '0 3 * * *',
  });
  const memory = await made(api, token, '/v1/memories', {
    agent_id: agent.id,
    content: 'The build needs Node 20.',
  });
  const workItem = await made(api, token, '/v1/work-items', { title: 'Ship the backups', priority: 'high' });
  const skill = await made(api, token, '/v1/skills', {
    name: 'release-notes',
    description: 'How to write release notes',
    content: 'Group by module; one line each.',
  });
  return {
    email,
    password,
    api_key: apiKey.key,
    team_id: teamId,
    second_team_id: secondTeam.id,
    policy_id: policy.id,
    provider_key_id: providerKey.id,
    agent_id: agent.id,
    secret: { id: secret.id, value: secretValue },
    file: { id: file.id, base64: bytes.toString('base64') },
    environment_id: environment.id,
    task: { id: task.id, result: 'all done', events: events.length },
    webhook_id: webhook.id,
    playbook: { id: playbook.id, schedule: playbook.schedule },
    memory: { id: memory.id, content: memory.content },
    work_item_id: workItem.id,
    skill_id: skill.id,
  };
}

/** Every object seedEveryKind made is on the server at `url`, whole: signing in works, sealed values open. */
export async function expectEveryKind(url: string, seeded: Seeded): Promise<void> {
  const api = apiAt(url);
  const login = await api('POST', '/v1/auth/login', null, { email: seeded.email, password: seeded.password });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  const token: string = login.body.session_token;
  const key = seeded.api_key;

  const get = async (path: string, as = key): Promise<Json> => {
    const res = await api('GET', path, as);
    expect(res.status, `GET ${path}: ${JSON.stringify(res.body)}`).toBe(200);
    return res.body;
  };
  const teams = (await get('/v1/teams', token)).data as Json[];
  expect(teams.map((t) => t.id)).toEqual(expect.arrayContaining([seeded.team_id, seeded.second_team_id]));
  expect((await get(`/v1/policies/${seeded.policy_id}`)).id).toBe(seeded.policy_id);
  expect((await get(`/v1/provider-keys/${seeded.provider_key_id}`)).id).toBe(seeded.provider_key_id);
  expect((await get(`/v1/agents/${seeded.agent_id}`)).version).toBe(2);
  expect(((await get(`/v1/agents/${seeded.agent_id}/versions`)).data as Json[]).length).toBe(2);

  const revealed = await api('POST', `/v1/secrets/${seeded.secret.id}/reveal`, key);
  expect(revealed.status, JSON.stringify(revealed.body)).toBe(200);
  expect(revealed.body.value).toBe(seeded.secret.value);

  const content = await fetch(`${url}/v1/files/${seeded.file.id}/content`, {
    headers: { authorization: `Bearer ${key}` },
  });
  expect(content.status).toBe(200);
  expect(Buffer.from(await content.arrayBuffer()).equals(Buffer.from(seeded.file.base64, 'base64'))).toBe(
    true,
  );

  expect((await get(`/v1/environments/${seeded.environment_id}`)).id).toBe(seeded.environment_id);
  const task = await get(`/v1/tasks/${seeded.task.id}`);
  expect(task).toMatchObject({ status: 'completed', result: seeded.task.result });
  const events = (await get(`/v1/tasks/${seeded.task.id}/events?limit=1000`)).data as Json[];
  expect(events.length).toBe(seeded.task.events);
  expect((await get(`/v1/webhooks/${seeded.webhook_id}`)).id).toBe(seeded.webhook_id);
  expect((await get(`/v1/playbooks/${seeded.playbook.id}`)).schedule).toBe(seeded.playbook.schedule);
  expect((await get(`/v1/memories/${seeded.memory.id}`)).content).toBe(seeded.memory.content);
  expect((await get(`/v1/work-items/${seeded.work_item_id}`)).id).toBe(seeded.work_item_id);
  expect((await get(`/v1/skills/${seeded.skill_id}`)).id).toBe(seeded.skill_id);
}

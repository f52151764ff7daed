import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events } from '../../src/db/schema/index.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;

beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup({ name: 'Dee Definitions' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(async () => {
  await t.close();
});

async function call(method: string, url: string, body?: unknown, token = u.token) {
  return t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
}

let n = 0;
async function environment(body: Record<string, unknown> = {}): Promise<Json> {
  const res = await call('POST', '/v1/environments', { name: `env-${++n}`, ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

/** Waits (real time) until the environment's version build ends, so the app closes with no build running. */
async function settled(envId: string, version: number, token = u.token): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    const v = (await call('GET', `/v1/environments/${envId}/versions/${version}`, undefined, token)).body;
    if (v.status === 'ready' || v.status === 'failed' || Date.now() > until) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('agent definitions and versions', () => {
  it('gives a new agent version 1 with the defaults, on the platform environment', async () => {
    const agent = await createAgent(t, u.token);
    expect(agent).toMatchObject({
      version: 1,
      model: null,
      tools: [
        'bash',
        'read_file',
        'write_file',
        'edit_file',
        'list_files',
        'grep',
        'submit_result',
        'web_fetch',
      ],
      max_turns: 50,
      timeout_sec: 1800,
      output_policy: { mode: 'any' },
      memory_enabled: false,
      skill_ids: [],
      mcp_servers: [],
      sub_agent_ids: [],
      idle_timeout_sec: 600,
      session_ttl_sec: 604_800,
      environment_id: 'env_minimal',
      environment_version_id: 'envv_minimal',
      environment_version: 1,
    });
    const versions = await call('GET', `/v1/agents/${agent.id}/versions`);
    expect(versions.status).toBe(200);
    expect(versions.body.data.map((v: Json) => v.version)).toEqual([1]);
  });

  it('makes a new version for a change to what the agent runs, and changes the rest in place', async () => {
    const agent = await createAgent(t, u.token, {
      model: 'sonnet',
      system_prompt: 'You answer briefly.',
      max_turns: 10,
      tools: ['bash', 'submit_result'],
    });
    expect(agent).toMatchObject({
      version: 1,
      model: 'sonnet',
      max_turns: 10,
      tools: ['bash', 'submit_result'],
    });

    const renamed = await call('PATCH', `/v1/agents/${agent.id}`, { description: 'answers' });
    expect(renamed.body.version).toBe(1);
    const same = await call('PATCH', `/v1/agents/${agent.id}`, { model: 'sonnet' });
    expect(same.body.version).toBe(1);

    const changed = await call('PATCH', `/v1/agents/${agent.id}`, { model: 'opus', effort: 'high' });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ version: 2, model: 'opus', effort: 'high', max_turns: 10 });

    const v1 = await call('GET', `/v1/agents/${agent.id}/versions/1`);
    expect(v1.body).toMatchObject({
      version: 1,
      model: 'sonnet',
      effort: null,
      system_prompt: 'You answer briefly.',
    });
    const diff = await call('GET', `/v1/agents/${agent.id}/versions/diff?from=1&to=2`);
    expect(diff.status).toBe(200);
    expect(diff.body.changes).toEqual([
      { field: 'model', from: 'sonnet', to: 'opus' },
      { field: 'effort', from: null, to: 'high' },
    ]);
    const updated = await t.database.db
      .select()
      .from(events)
      .where(and(eq(events.subjectId, agent.id), eq(events.type, 'agent.updated')));
    expect(updated.at(-1)!.data).toMatchObject({ changed_fields: ['model', 'effort'] });
    expect((await call('GET', `/v1/agents/${agent.id}/versions/3`)).status).toBe(404);
  });

  it('pins the environment version it was made on: editing the environment does not change it', async () => {
    const env = await environment({ setup_commands: ['true'] });
    const agent = await createAgent(t, u.token, { environment_id: env.id });
    expect(agent).toMatchObject({
      environment_id: env.id,
      environment_version: 1,
      environment_version_id: env.current_version.id,
    });
    const edited = await call('PATCH', `/v1/environments/${env.id}`, { setup_commands: ['true', 'true'] });
    expect(edited.body.current_version.version).toBe(2);
    const still = await call('GET', `/v1/agents/${agent.id}`);
    expect(still.body).toMatchObject({ version: 1, environment_version: 1 });
    // Naming the environment again takes its current version: a new agent version.
    const moved = await call('PATCH', `/v1/agents/${agent.id}`, { environment_id: env.id });
    expect(moved.body).toMatchObject({ version: 2, environment_version: 2 });
    // An explicit version pins that one.
    const back = await call('PATCH', `/v1/agents/${agent.id}`, {
      environment_version_id: env.current_version.id,
    });
    expect(back.body).toMatchObject({ version: 3, environment_version: 1 });
    await settled(env.id, 1);
    await settled(env.id, 2);
  }, 90_000);

  it('refuses environments, files, tools and policies that are not right, with a 400 naming them', async () => {
    const mine = await environment();
    const theirs = (await call('POST', '/v1/environments', { name: 'theirs' }, other.token)).body;
    const archived = await environment();
    await call('DELETE', `/v1/environments/${archived.id}`);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ environment_id: theirs.id }, 'invalid_environment'],
      [{ environment_id: 'env_nope' }, 'invalid_environment'],
      [{ environment_id: archived.id }, 'invalid_environment'],
      [{ environment_version_id: theirs.current_version.id }, 'invalid_environment'],
      [{ environment_id: mine.id, environment_version_id: 'envv_minimal' }, 'invalid_environment'],
      [{ reference_file_ids: ['file_nope'] }, 'invalid_file'],
      [{ tools: ['bash', 'rm_rf'] }, 'validation_failed'],
      [{ max_turns: 0 }, 'validation_failed'],
      [{ output_policy: { mode: 'named' } }, 'validation_failed'],
      [{ output_policy: { mode: 'named', files: [{ name: '../x' }] } }, 'validation_failed'],
      [{ egress: ['http://x.test'] }, 'validation_failed'],
    ];
    const policy = (await call('POST', '/v1/policies', { name: 'def-policy' })).body;
    for (const [body, code] of cases) {
      const res = await call('POST', '/v1/agents', { name: 'bad', policy_id: policy.id, ...body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code, JSON.stringify(body)).toBe(code);
    }
    const agent = await createAgent(t, u.token);
    const patch = await call('PATCH', `/v1/agents/${agent.id}`, { environment_id: theirs.id });
    expect(patch.status).toBe(400);
    expect((await call('GET', `/v1/agents/${agent.id}`)).body.version).toBe(1);
    await settled(mine.id, 1);
    await settled(archived.id, 1);
    await settled(theirs.id, 1, other.token);
  }, 90_000);

  it('forks an agent: its definition and bindings, a key of its own, version 1', async () => {
    const agent = await createAgent(t, u.token, { model: 'haiku', max_turns: 7, metadata: { team: 'ops' } });
    const fork = await call('POST', `/v1/agents/${agent.id}/fork`, {});
    expect(fork.status).toBe(201);
    expect(fork.body).toMatchObject({
      name: `${agent.name}-fork`,
      policy_id: agent.policy_id,
      model: 'haiku',
      max_turns: 7,
      metadata: { team: 'ops' },
      version: 1,
      environment_version_id: agent.environment_version_id,
    });
    expect(fork.body.id).not.toBe(agent.id);
    expect(fork.body.api_key).toMatch(/^pda_/);
    expect(fork.body.api_key).not.toBe(agent.api_key);
    const named = await call('POST', `/v1/agents/${agent.id}/fork`, { name: 'twin' });
    expect(named.body.name).toBe('twin');
  });

  it('keeps teams apart on versions and forks, and refuses cursors it did not give', async () => {
    const agent = await createAgent(t, u.token);
    for (const [method, url] of [
      ['GET', `/v1/agents/${agent.id}/versions`],
      ['GET', `/v1/agents/${agent.id}/versions/1`],
      ['GET', `/v1/agents/${agent.id}/versions/diff?from=1&to=1`],
      ['POST', `/v1/agents/${agent.id}/fork`],
    ] as const) {
      const res = await call(method, url, method === 'POST' ? {} : undefined, other.token);
      expect(res.status, `${method} ${url}`).toBe(404);
    }
    const bad = await t.call('GET', `/v1/agents/${agent.id}/versions`, {
      token: u.token,
      query: { cursor: 'YWJj' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_cursor');
  });
});

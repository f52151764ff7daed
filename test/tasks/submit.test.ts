import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SignedUpUser } from '../support/app.ts';
import { expectError } from '../support/errors.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Submitting a task: every input a worker would trip on is a 4xx now, with
// nothing written; listing the team's tasks; and no other team reaching them.

let f: TaskFixture;
let other: SignedUpUser;

beforeAll(async () => {
  f = await startTasks();
  other = await f.t.signup();
});
afterAll(async () => {
  await f?.close();
});

const MISSING_AGENT = 'agt_01ARZ3NDEKTSV4RRFFQ69G5FAV';
const MISSING_FILE = 'file_01ARZ3NDEKTSV4RRFFQ69G5FAV';

function submit(body: Record<string, unknown>, token = f.user.token) {
  return f.t.call('POST', '/v1/tasks', { token, body });
}

async function allTaskIds(): Promise<string[]> {
  const res = await f.t.call('GET', '/v1/tasks', { token: f.user.token, query: { limit: '200' } });
  expect(res.status).toBe(200);
  return res.body.data.map((t: Json) => t.id);
}

describe('submitting bad input', () => {
  it('answers each problem with a clear 4xx and writes no task', async () => {
    const agent = await f.agent();
    const disabled = await f.agent();
    const off = await f.t.call('PATCH', `/v1/agents/${disabled.id}`, {
      token: f.user.token,
      body: { status: 'disabled' },
    });
    expect(off.body.status).toBe('disabled');
    const keyless = await f.agent({ bindings: {} });
    const theirs = await createAgent(f.t, other.token);
    const readOnly = await f.t.apiKey(f.user.token, ['read']);
    const before = await allTaskIds();

    const cases: Array<[string, Record<string, unknown>, number, string, string?]> = [
      ['disabled agent', { agent_id: disabled.id }, 409, 'agent_disabled'],
      ['no usable provider key', { agent_id: keyless.id }, 409, 'no_provider_key'],
      [
        'bad output schema',
        { agent_id: agent.id, output_schema: { type: 'nope' } },
        400,
        'invalid_output_schema',
      ],
      ['prompt too long', { agent_id: agent.id, prompt: 'x'.repeat(100_001) }, 400, 'validation_failed'],
      ['unknown input file', { agent_id: agent.id, input_file_ids: [MISSING_FILE] }, 400, 'invalid_file'],
      ['unknown agent', { agent_id: MISSING_AGENT }, 404, 'not_found'],
      ['malformed agent id', { agent_id: 'nope' }, 404, 'not_found'],
      ['unknown agent version', { agent_id: agent.id, agent_version: 2 }, 404, 'not_found'],
      ['another team’s agent', { agent_id: theirs.id }, 404, 'not_found'],
      ['an agent key', { agent_id: agent.id }, 403, 'agent_key_not_allowed', agent.api_key],
      ['a read-only team key', { agent_id: agent.id }, 403, 'insufficient_scope', readOnly.key],
    ];
    for (const [what, body, status, code, token] of cases) {
      const res = await submit({ prompt: 'do it', ...body }, token);
      expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`).toBe(status);
      expectError(res, status, code);
    }
    expect(await allTaskIds()).toEqual(before);
    expect(f.mock.requests).toHaveLength(0);
  });

  it('names what is wrong: the agent, the version, the file, the schema', async () => {
    const agent = await f.agent();
    const keyless = await f.agent({ bindings: {} });
    const noKey = await submit({ agent_id: keyless.id, prompt: 'x' });
    expect(noKey.body.error.details).toEqual({ agent_id: keyless.id });
    expect(noKey.body.error.message).toContain(keyless.name);

    const version = await submit({ agent_id: agent.id, prompt: 'x', agent_version: 7 });
    expect(version.body.error.message).toContain(`${agent.id} v7`);

    const file = await submit({ agent_id: agent.id, prompt: 'x', input_file_ids: [MISSING_FILE] });
    expect(file.body.error.details).toEqual({ input_file_ids: [MISSING_FILE] });

    const schema = await submit({
      agent_id: agent.id,
      prompt: 'x',
      output_schema: { type: 'object', properties: { n: { type: 'integer', minimum: 'zero' } } },
    });
    expectError(schema, 400, 'invalid_output_schema');
    expect(schema.body.error.message).toMatch(/minimum/);
  });

  it('refuses an agent key and a read-only key on every task route that writes', async () => {
    const agent = await f.agent();
    const readOnly = await f.t.apiKey(f.user.token, ['read']);
    expectError(await f.t.call('GET', '/v1/tasks', { token: agent.api_key }), 403, 'agent_key_not_allowed');
    expect((await f.t.call('GET', '/v1/tasks', { token: readOnly.key })).status).toBe(200);
    f.mock.reset();
    f.script([{ text: 'done' }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'x' });
    await f.finished(task.id);
    expectError(
      await f.t.call('POST', `/v1/tasks/${task.id}/cancel`, { token: readOnly.key }),
      403,
      'insufficient_scope',
    );
    expect((await f.t.call('GET', `/v1/tasks/${task.id}`, { token: readOnly.key })).body.id).toBe(task.id);
  });
});

describe('listing', () => {
  it('filters by agent, status and created range, newest first, a page at a time', async () => {
    const a = await f.agent();
    const b = await f.agent();
    const run = async (agentId: string, steps: Parameters<TaskFixture['script']>[0], extra = {}) => {
      f.mock.reset();
      f.script(steps);
      const submitted = await f.submit({ agent_id: agentId, prompt: 'list me', ...extra });
      const { task } = await f.finished(submitted.id);
      // The next task is created a minute later (the test's clock).
      f.t.clock.advance(60_000);
      return task;
    };
    const a1 = await run(a.id, [{ text: 'one' }]);
    const a2 = await run(a.id, [{ text: 'two' }]);
    const a3 = await run(a.id, [{ text: 'three' }]);
    const b1 = await run(b.id, [{ tool: 'bash', args: { command: 'true' } }], { max_turns: 1 });
    expect([a1.status, a2.status, a3.status, b1.status]).toEqual([
      'completed',
      'completed',
      'completed',
      'failed',
    ]);

    const list = async (query: Record<string, string>) => {
      const res = await f.t.call('GET', '/v1/tasks', { token: f.user.token, query });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body as { data: Json[]; next_cursor: string | null };
    };
    const ids = (page: { data: Json[] }) => page.data.map((t) => t.id);

    expect(ids(await list({ agent_id: a.id }))).toEqual([a3.id, a2.id, a1.id]);
    expect(ids(await list({ agent_id: b.id }))).toEqual([b1.id]);
    expect(ids(await list({ agent_id: a.id, status: 'failed' }))).toEqual([]);
    const failed = ids(await list({ status: 'failed' }));
    expect(failed).toContain(b1.id);
    expect(failed).not.toContain(a1.id);
    expect(ids(await list({ agent_id: a.id, created_after: a2.created_at }))).toEqual([a3.id, a2.id]);
    const between = new Date(Date.parse(a2.created_at) + 30_000).toISOString();
    expect(ids(await list({ agent_id: a.id, created_before: between }))).toEqual([a2.id, a1.id]);
    expect(ids(await list({ created_after: a2.created_at, created_before: between }))).toEqual([a2.id]);

    // Two at a time: every task once, in order, then no cursor.
    const first = await list({ agent_id: a.id, limit: '2' });
    expect(ids(first)).toEqual([a3.id, a2.id]);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await list({ agent_id: a.id, limit: '2', cursor: first.next_cursor! });
    expect(ids(second)).toEqual([a1.id]);
    expect(second.next_cursor).toBeNull();

    expectError(
      await f.t.call('GET', '/v1/tasks', { token: f.user.token, query: { status: 'done' } }),
      400,
      'validation_failed',
    );
    expectError(
      await f.t.call('GET', '/v1/tasks', { token: f.user.token, query: { created_after: 'yesterday' } }),
      400,
      'validation_failed',
    );
  });
});

describe('another team', () => {
  it('sees none of the team’s tasks: 404 on get, cancel, events and files; they are not in its list', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([
      { tool: 'write_file', args: { path: 'outputs/a.txt', content: 'mine\n' } },
      { tool: 'submit_result', args: { result: 'ok' } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'private' });
    const { task } = await f.finished(submitted.id);
    expect(task.status).toBe('completed');
    const files = await f.t.call('GET', `/v1/tasks/${task.id}/files`, { token: f.user.token });
    const fileId = files.body.data[0].file_id;

    const as = (method: string, url: string, headers?: Record<string, string>) =>
      f.t.call(method, url, { token: other.token, ...(headers ? { headers } : {}) });
    for (const [method, url, headers] of [
      ['GET', `/v1/tasks/${task.id}`],
      ['POST', `/v1/tasks/${task.id}/cancel`],
      ['GET', `/v1/tasks/${task.id}/events`],
      ['GET', `/v1/tasks/${task.id}/events`, { accept: 'text/event-stream' }],
      ['GET', `/v1/tasks/${task.id}/files`],
      ['GET', `/v1/tasks/${task.id}/files/${fileId}`],
    ] as Array<[string, string, Record<string, string>?]>) {
      expectError(await as(method, url, headers), 404, 'not_found');
    }
    const theirs = await f.t.call('GET', '/v1/tasks', { token: other.token });
    expect(theirs.body.data).toEqual([]);
    // Not even by its agent's id.
    const byAgent = await f.t.call('GET', '/v1/tasks', { token: other.token, query: { agent_id: agent.id } });
    expect(byAgent.body.data).toEqual([]);
    // Still there, untouched, for its own team.
    expect((await f.t.call('GET', `/v1/tasks/${task.id}`, { token: f.user.token })).body.status).toBe(
      'completed',
    );
  });
});

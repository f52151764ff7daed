import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events } from '../../src/db/schema/index.ts';
import type { Json } from '../support/factories.ts';
import type { MockRequest } from '../support/mock-llm.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// The memory tools end to end: real tasks, run by the runner against the mock
// provider, whose model saves a memory in one task and finds it in the next.

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const SECRET = 'pw-3c9d1e7f5a2b4680';

/** The model calls this task's prompt made, in order. */
function requestsOf(prompt: string): MockRequest[] {
  return f.mock.requests.filter((r) => {
    const messages = (r.body as Json | undefined)?.messages as Json[] | undefined;
    return messages?.some((m) => m.role === 'user' && m.content === prompt);
  });
}

function offeredTools(r: MockRequest): string[] {
  return (((r.body as Json).tools as Json[] | undefined) ?? []).map((t) => t.function.name);
}

function toolMessages(r: MockRequest): string[] {
  return ((r.body as Json).messages as Json[]).filter((m) => m.role === 'tool').map((m) => String(m.content));
}

describe('memory tools', () => {
  it('a memory saved in one task is found by memory_search in the next, with the task’s secrets replaced', async () => {
    const agent = await f.agent({ agent: { memory_enabled: true } });
    const secret = await f.t.call('POST', '/v1/secrets', {
      token: f.user.token,
      body: { name: 'STAGING_PASSWORD', value: SECRET, agent_ids: [agent.id] },
    });
    expect(secret.status).toBe(201);

    f.mock.reset();
    f.script([
      {
        tool: 'memory_save',
        args: { content: `Staging listens on port 8443; its password is ${SECRET}.` },
      },
      { text: 'noted' },
    ]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'remember where staging listens' });
    const { task: t1 } = await f.finished(first.id);
    expect(t1).toMatchObject({ status: 'completed', result: 'noted' });

    // The model was offered both tools and told what they are for.
    const [call1] = requestsOf('remember where staging listens');
    expect(offeredTools(call1!)).toEqual(expect.arrayContaining(['memory_search', 'memory_save']));
    expect(JSON.stringify((call1!.body as Json).messages[0])).toContain('memory_search');

    // Stored redacted, recording the task; the save is a task event and an outbox event.
    const listed = await f.t.call('GET', '/v1/memories', {
      token: f.user.token,
      query: { agent_id: agent.id },
    });
    expect(listed.body.data).toHaveLength(1);
    const memory = listed.body.data[0];
    expect(memory).toMatchObject({
      agent_id: agent.id,
      task_id: t1.id,
      content: 'Staging listens on port 8443; its password is [secret:STAGING_PASSWORD].',
    });
    const log = await f.events(t1.id);
    const saved = log.find((e) => e.type === 'memory');
    expect(saved?.payload).toMatchObject({ action: 'saved', memory_id: memory.id });
    const result = log.find((e) => e.type === 'tool_result' && e.payload.name === 'memory_save');
    expect(result?.payload).toMatchObject({ ok: true, output: `saved as memory ${memory.id}` });
    const outbox = await f.t.database.db.select().from(events).where(eq(events.subjectId, memory.id));
    expect(outbox.map((e) => [e.type, e.data])).toEqual([
      ['memory.created', { agent_id: agent.id, task_id: t1.id, chars: memory.content.length }],
    ]);
    expect(JSON.stringify([log, outbox])).not.toContain(SECRET);

    // The next task's model searches, and the tool result it receives holds the memory.
    f.script([
      { tool: 'memory_search', args: { query: 'which port does staging use' } },
      { text: 'port 8443' },
    ]);
    const second = await f.submit({ agent_id: agent.id, prompt: 'what port is staging on?' });
    const { task: t2 } = await f.finished(second.id);
    expect(t2).toMatchObject({ status: 'completed', result: 'port 8443' });
    const calls = requestsOf('what port is staging on?');
    expect(calls).toHaveLength(2);
    const [answer] = toolMessages(calls[1]!);
    expect(JSON.parse(answer!)).toEqual([
      { id: memory.id, content: memory.content, created_at: memory.created_at },
    ]);
    // No tool result the provider received holds the secret (the model's own calls hold what it wrote).
    expect(JSON.stringify(f.mock.requests.map(toolMessages))).not.toContain(SECRET);
  });

  it('tells the model what to fix when its arguments are wrong, and saves nothing', async () => {
    const agent = await f.agent({ agent: { memory_enabled: true } });
    f.mock.reset();
    f.script([
      { tool: 'memory_save', args: { content: '   ' } },
      { tool: 'memory_search', args: { query: 'nothing like it' } },
      { tool: 'memory_save', args: { content: 'x'.repeat(10_001) } },
      { tool: 'memory_search', args: { query: 'x', limit: 0 } },
      { text: 'done' },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'try the memory tools badly' });
    const { task } = await f.finished(submitted.id);
    expect(task.status).toBe('completed');
    const results = (await f.events(task.id)).filter((e) => e.type === 'tool_result').map((e) => e.payload);
    expect(results.map((r) => r.ok)).toEqual([false, true, false, false]);
    expect(results[0].output).toContain('"content" must be a non-empty string');
    expect(results[1].output).toBe('no memory matches that query');
    expect(results[2].output).toContain('at most 10000');
    expect(results[3].output).toContain('"limit" must be a positive integer');
    const listed = await f.t.call('GET', '/v1/memories', {
      token: f.user.token,
      query: { agent_id: agent.id },
    });
    expect(listed.body.data).toEqual([]);
  });

  it('does not offer the tools to an agent without memory_enabled, nor run them when called', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ tool: 'memory_save', args: { content: 'sneaky' } }, { text: 'done' }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'no memory for you' });
    const { task } = await f.finished(submitted.id);
    expect(task.status).toBe('completed');
    const [call1] = requestsOf('no memory for you');
    expect(offeredTools(call1!)).not.toContain('memory_save');
    expect(offeredTools(call1!)).not.toContain('memory_search');
    const result = (await f.events(task.id)).find((e) => e.type === 'tool_result');
    expect(result?.payload).toMatchObject({ ok: false });
    expect(result?.payload.output).toContain('there is no tool named "memory_save"');
    const listed = await f.t.call('GET', '/v1/memories', {
      token: f.user.token,
      query: { agent_id: agent.id },
    });
    expect(listed.body.data).toEqual([]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { multipart } from '../support/multipart.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const SECRET = 'tok-9f8e7d6c5b4a39281706';

async function secret(name: string, value: string, agentIds?: string[]) {
  const res = await f.t.call('POST', '/v1/secrets', {
    token: f.user.token,
    body: { name, value, ...(agentIds ? { agent_ids: agentIds } : {}) },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

async function download(taskId: string, fileId: string): Promise<string> {
  const res = await f.t.call('GET', `/v1/tasks/${taskId}/files/${fileId}`, { token: f.user.token });
  expect(res.status).toBe(200);
  return String(res.body);
}

describe('a task end to end', () => {
  it('runs bash (which echoes a secret), write_file and submit_result, and records everything', async () => {
    const agent = await f.agent({ policy: { content_logging: 'enabled' } });
    await secret('DEPLOY_TOKEN', SECRET, [agent.id]);
    f.mock.reset();
    f.script([
      {
        tool: 'bash',
        args: { command: 'echo "token=$DEPLOY_TOKEN"; mkdir -p outputs && echo from-bash > outputs/a.txt' },
      },
      { tool: 'write_file', args: { path: 'outputs/b.txt', content: 'from write_file\n' } },
      { tool: 'submit_result', args: { result: { answer: 42 } } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'do the thing' });
    // A server with a free slot starts the task in the submit's own transaction: the 202 says so.
    expect(submitted).toMatchObject({ status: 'running', agent_id: agent.id, agent_version: 1 });
    expect(submitted.started_at).toEqual(submitted.created_at);

    const { task, streamed } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: { answer: 42 }, error: null, turns: 3 });
    expect(task.run_id).toMatch(/^run_/);

    // Both output files, with their content.
    const files = await f.t.call('GET', `/v1/tasks/${task.id}/files`, { token: f.user.token });
    expect(files.body.data.map((x: Json) => x.path).sort()).toEqual(['a.txt', 'b.txt']);
    const byPath = Object.fromEntries(files.body.data.map((x: Json) => [x.path, x.file_id]));
    expect(await download(task.id, byPath['a.txt'])).toBe('from-bash\n');
    expect(await download(task.id, byPath['b.txt'])).toBe('from write_file\n');

    // The events: each tool call and its result, in order; the stream carried the same log.
    const events = await f.events(task.id);
    expect(streamed.map((e) => e.seq)).toEqual(events.map((e) => e.seq));
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const tools = events.filter((e) => e.type === 'tool_call' || e.type === 'tool_result');
    expect(tools.map((e) => `${e.type}:${e.payload.name}`)).toEqual([
      'tool_call:bash',
      'tool_result:bash',
      'tool_call:write_file',
      'tool_result:write_file',
      'tool_call:submit_result',
      'tool_result:submit_result',
    ]);
    const bash = tools[1]!.payload;
    expect(bash).toMatchObject({ ok: true, exit_code: 0 });
    expect(bash.output).toContain('token=[secret:DEPLOY_TOKEN]');
    expect(events.at(0)).toMatchObject({ type: 'status', payload: { status: 'queued' } });
    expect(events.at(-1)).toMatchObject({ type: 'status', payload: { status: 'completed' } });

    // The secret is in no event, no stored step and no request the provider received.
    expect(JSON.stringify(events)).not.toContain(SECRET);
    await f.t.services.runs.flush();
    const steps = await f.t.call('GET', `/v1/runs/${task.run_id}/steps`, {
      token: f.user.token,
      query: { limit: '200' },
    });
    const llmSteps = steps.body.data.filter((s: Json) => s.type === 'llm_call');
    expect(llmSteps).toHaveLength(3);
    expect(JSON.stringify(steps.body)).toContain('[secret:DEPLOY_TOKEN]');
    expect(JSON.stringify(steps.body)).not.toContain(SECRET);
    expect(f.mock.requests).toHaveLength(3);
    expect(JSON.stringify(f.mock.requests.map((r) => r.body))).not.toContain(SECRET);

    // cost_usd is the run's ledger sum, and the ledger has the capsule's time.
    const ledger = await f.t.call('GET', `/v1/runs/${task.run_id}/ledger`, {
      token: f.user.token,
      query: { limit: '200' },
    });
    const entries: Json[] = ledger.body.data;
    expect(entries.some((e) => e.kind === 'sandbox')).toBe(true);
    const sum = entries.reduce((acc, e) => acc + Math.round(Number(e.cost_usd) * 1e6), 0);
    expect(Math.round(task.cost_usd * 1e6)).toBe(sum);
    expect(task.sandbox_seconds).toBeGreaterThan(0);
    expect(task.input_tokens).toBeGreaterThan(0);
  });

  it('ends with the answer text when the model answers without a tool call', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ text: 'All done: nothing to run.' }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'say done' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'All done: nothing to run.', turns: 1 });
  });

  it('allowed_tools narrows the tools offered: a tool left out is not run (submit_result always stays)', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'touch /workspace/ran-bash' } },
      { tool: 'list_files', args: { path: '.' } },
      { tool: 'submit_result', args: { result: 'listed' } },
    ]);
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'look',
      allowed_tools: ['list_*', 'list_files'],
    });
    expect(submitted.allowed_tools).toEqual(['list_*', 'list_files']);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({
      status: 'completed',
      result: 'listed',
      allowed_tools: ['list_*', 'list_files'],
    });
    const offered = (f.mock.requests[0]!.body as Json).tools.map((t: Json) => t.function.name);
    expect(offered.sort()).toEqual(['list_files', 'submit_result']);
    const results = (await f.events(task.id)).filter((e) => e.type === 'tool_result');
    expect(results.map((e) => [e.payload.name, e.payload.ok])).toEqual([
      ['bash', false],
      ['list_files', true],
      ['submit_result', true],
    ]);
    // bash never ran: the file it would have made is not there.
    expect(results[1]!.payload.output).not.toContain('ran-bash');
    const bad = await f.t.call('POST', '/v1/tasks', {
      token: f.user.token,
      body: { agent_id: agent.id, prompt: 'x', allowed_tools: ['rm -rf'] },
    });
    expect(bad.status).toBe(400);
  });

  it('puts input and reference files in /workspace and runs the agent’s setup commands first', async () => {
    const upload = async (filename: string, text: string) => {
      const body = multipart({ filename, data: Buffer.from(text) });
      const res = await f.t.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { authorization: `Bearer ${f.user.token}`, 'content-type': body.contentType },
        payload: body.payload,
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json().id as string;
    };
    const input = await upload('input.txt', 'from the input\n');
    const reference = await upload('guide.md', 'from the reference\n');
    const agent = await f.agent({
      agent: { setup_commands: ['echo "set up" > prepared.txt'], reference_file_ids: [reference] },
    });
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'cat prepared.txt input.txt guide.md' } },
      { tool: 'submit_result', args: { result: 'read' } },
    ]);
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'read the files',
      input_file_ids: [input],
    });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', input_file_ids: [input] });
    const events = await f.events(task.id);
    const bash = events.find((e) => e.type === 'tool_result' && e.payload.name === 'bash');
    expect(bash?.payload.output).toContain('set up\nfrom the input\nfrom the reference');
    // The model was told the files' names, not their ids.
    const system = (f.mock.requests[0]!.body as Json).messages[0].content as string;
    expect(system).toContain('input.txt');
    expect(system).toContain('guide.md');
  });
});

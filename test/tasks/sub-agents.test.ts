import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPolicy, type Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

async function patchAgent(id: string, body: Record<string, unknown>, token = f.user.token) {
  return f.t.call('PATCH', `/v1/agents/${id}`, { token, body });
}

async function runSteps(runId: string): Promise<Json[]> {
  await f.t.services.runs.flush();
  const res = await f.t.call('GET', `/v1/runs/${runId}/steps`, {
    token: f.user.token,
    query: { limit: '200' },
  });
  expect(res.status).toBe(200);
  return res.body.data;
}

const byType = (events: Json[], type: string) => events.filter((e) => e.type === type);

describe('which agents an agent may list as sub-agents', () => {
  it('refuses the agent itself, an unknown id and another team’s agent with 400 invalid_sub_agent', async () => {
    const parent = await f.agent();
    const helper = await f.agent();

    const self = await patchAgent(parent.id, { sub_agent_ids: [parent.id] });
    expect(self.status).toBe(400);
    expect(self.body.error).toMatchObject({
      code: 'invalid_sub_agent',
      details: { sub_agent_ids: [parent.id] },
    });

    // Updating by name names the agent itself too.
    const byName = await f.t.call('PUT', `/v1/agents/by-name/${parent.name}`, {
      token: f.user.token,
      body: { sub_agent_ids: [helper.id, parent.id] },
    });
    expect(byName.status).toBe(400);
    expect(byName.body.error.code).toBe('invalid_sub_agent');

    for (const bad of ['agt_01JZZZZZZZZZZZZZZZZZZZZZZZ', 'not-an-agent']) {
      const res = await patchAgent(parent.id, { sub_agent_ids: [helper.id, bad] });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_sub_agent', details: { sub_agent_ids: [bad] } });
    }

    // Another team's agent is as unknown as one that never existed, on create as on update.
    const other = await f.t.signup();
    const theirs = await f.t.call('POST', '/v1/agents', {
      token: other.token,
      body: { name: 'theirs', policy_id: (await createPolicy(f.t, other.token)).id },
    });
    expect(theirs.status).toBe(201);
    const created = await f.t.call('POST', '/v1/agents', {
      token: f.user.token,
      body: { name: 'lists-theirs', policy_id: parent.policy_id, sub_agent_ids: [theirs.body.id] },
    });
    expect(created.status).toBe(400);
    expect(created.body.error).toMatchObject({
      code: 'invalid_sub_agent',
      details: { sub_agent_ids: [theirs.body.id] },
    });
    // And they cannot list ours.
    const reverse = await patchAgent(theirs.body.id, { sub_agent_ids: [helper.id] }, other.token);
    expect(reverse.status).toBe(400);
    expect(reverse.body.error.code).toBe('invalid_sub_agent');

    // Nothing was written: the parent is still at version 1 with no sub-agents.
    const now = await f.t.call('GET', `/v1/agents/${parent.id}/versions/1`, { token: f.user.token });
    expect(now.body.sub_agent_ids).toEqual([]);
    const versions = await f.t.call('GET', `/v1/agents/${parent.id}/versions`, { token: f.user.token });
    expect(versions.body.data).toHaveLength(1);

    const ok = await patchAgent(parent.id, { sub_agent_ids: [helper.id] });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const v2 = await f.t.call('GET', `/v1/agents/${parent.id}/versions/2`, { token: f.user.token });
    expect(v2.body.sub_agent_ids).toEqual([helper.id]);
  });
});

describe('delegate', () => {
  it('runs the sub-agent in the same capsule under its own definition; its steps and cost are the parent run’s', async () => {
    const helper = await f.agent({
      policy: { content_logging: 'enabled' },
      agent: {
        description: 'Writes files on request',
        model: 'gpt-4o',
        system_prompt: 'You are the file writer.',
        tools: ['bash', 'submit_result'],
        max_turns: 5,
      },
    });
    const parent = await f.agent({
      policy: { content_logging: 'enabled' },
      agent: { system_prompt: 'You are the lead.', sub_agent_ids: [helper.id] },
    });
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: helper.name, prompt: 'write hello into outputs/hello.txt' } },
      { tool: 'bash', args: { command: 'mkdir -p outputs && echo hello > outputs/hello.txt' } },
      { tool: 'submit_result', args: { result: 'wrote outputs/hello.txt' } },
      { tool: 'bash', args: { command: 'cat outputs/hello.txt' } },
      { tool: 'submit_result', args: { result: 'all done' } },
    ]);
    const submitted = await f.submit({ agent_id: parent.id, prompt: 'get hello written' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'all done', turns: 3 });

    // What each model call was given: the parent its sub-agent and the delegate tool; the
    // sub-agent its own prompt, model and tools, and only the prompt it was handed.
    const [first, sub1, sub2, third] = f.mock.requests.map((r) => r.body as Json) as [Json, Json, Json, Json];
    expect(f.mock.requests).toHaveLength(5);
    expect(first.model).toBe('gpt-4o-mini-2024-07-18');
    expect(first.messages[0].content).toContain('You are the lead.');
    expect(first.messages[0].content).toContain(`- ${helper.name}: Writes files on request`);
    expect(first.tools.map((t: Json) => t.function.name)).toContain('delegate');
    expect(sub1.model).toBe('gpt-4o-2024-08-06');
    expect(sub1.messages[0].content).toContain('You are the file writer.');
    expect(sub1.messages[1]).toMatchObject({ role: 'user', content: 'write hello into outputs/hello.txt' });
    expect(sub1.tools.map((t: Json) => t.function.name).sort()).toEqual(['bash', 'submit_result']);
    expect(sub2.messages).toHaveLength(4);
    // The sub-agent's result came back as the delegate call's output.
    const delegated = third.messages.find((m: Json) => m.role === 'tool');
    expect(delegated.content).toBe('wrote outputs/hello.txt');

    // The same capsule: the parent read the file its sub-agent wrote, and it is an output of the task.
    const events = await f.events(task.id);
    const bashResults = byType(events, 'tool_result').filter((e) => e.payload.name === 'bash');
    expect(bashResults.at(-1)!.payload.output).toContain('hello');
    const files = await f.t.call('GET', `/v1/tasks/${task.id}/files`, { token: f.user.token });
    expect(files.body.data.map((x: Json) => x.path)).toEqual(['hello.txt']);

    // The log: the delegation's start and end, and the sub-agent's events tagged with its agent and depth.
    const delegations = byType(events, 'delegation').map((e) => e.payload);
    expect(delegations).toEqual([
      expect.objectContaining({
        agent_id: helper.id,
        parent_agent_id: parent.id,
        depth: 1,
        status: 'started',
      }),
      expect.objectContaining({
        agent_id: helper.id,
        depth: 1,
        status: 'completed',
        result: 'wrote outputs/hello.txt',
        turns: 2,
      }),
    ]);
    const calls = byType(events, 'model_call').map((e) => e.payload);
    expect(calls.map((c) => c.agent_id ?? parent.id)).toEqual([
      parent.id,
      helper.id,
      helper.id,
      parent.id,
      parent.id,
    ]);
    expect(calls.map((c) => c.depth ?? 0)).toEqual([0, 1, 1, 0, 0]);
    const subTools = events.filter((e) => e.type.startsWith('tool_') && e.payload.agent_id === helper.id);
    expect(subTools.map((e) => `${e.type}:${e.payload.name}:${e.payload.depth}`)).toEqual([
      'tool_call:bash:1',
      'tool_result:bash:1',
      'tool_call:submit_result:1',
      'tool_result:submit_result:1',
    ]);
    expect(subTools.every((e) => e.payload.delegation_id === delegations[0].id)).toBe(true);

    // The run: the sub-agent's calls are steps of the parent's run, recorded as the sub-agent's.
    const steps = (await runSteps(task.run_id)).filter((s) => s.type === 'llm_call');
    expect(steps.map((s) => s.agent_id).sort()).toEqual(
      [helper.id, helper.id, parent.id, parent.id, parent.id].sort(),
    );
    expect(steps.filter((s) => s.agent_id === helper.id).every((s) => s.model === 'gpt-4o-2024-08-06')).toBe(
      true,
    );
    const ledger = await f.t.call('GET', `/v1/runs/${task.run_id}/ledger`, {
      token: f.user.token,
      query: { limit: '200' },
    });
    const entries: Json[] = ledger.body.data;
    const micros = (e: Json) => Math.round(Number(e.cost_usd) * 1e6);
    const helperCost = entries.filter((e) => e.agent_id === helper.id).reduce((a, e) => a + micros(e), 0);
    expect(helperCost).toBeGreaterThan(0);
    expect(Math.round(task.cost_usd * 1e6)).toBe(entries.reduce((a, e) => a + micros(e), 0));
    const run = await f.t.call('GET', `/v1/runs/${task.run_id}`, { token: f.user.token });
    expect(run.body.agent_id).toBe(parent.id);
  });

  it('a sub-agent’s own policy refuses a model its parent’s allows: the delegate call says so and the parent goes on', async () => {
    const helper = await f.agent({
      policy: { allowed_models: ['gpt-4o-mini*'] },
      agent: { model: 'gpt-4o', description: 'uses a model its policy refuses' },
    });
    const parent = await f.agent({ agent: { model: 'gpt-4o', sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: helper.id, prompt: 'try' } },
      { tool: 'submit_result', args: { result: 'went on' } },
    ]);
    const submitted = await f.submit({ agent_id: parent.id, prompt: 'delegate it' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'went on' });
    // The refused call never reached the provider.
    expect(f.mock.requests.map((r) => r.model)).toEqual(['gpt-4o-2024-08-06', 'gpt-4o-2024-08-06']);
    expect((f.mock.requests[1]!.body as Json).messages.at(-1).content).toContain('model_not_allowed');

    const events = await f.events(task.id);
    const result = byType(events, 'tool_result').find((e) => e.payload.name === 'delegate')!.payload;
    expect(result.ok).toBe(false);
    expect(result.output).toContain('model_not_allowed');
    expect(byType(events, 'delegation').at(-1)!.payload).toMatchObject({
      agent_id: helper.id,
      status: 'failed',
      error: { code: 'model_not_allowed' },
    });
    // The refusal is a step of the parent's run, the sub-agent's.
    const blocked = (await runSteps(task.run_id)).filter((s) => s.status === 'policy_blocked');
    expect(blocked).toEqual([expect.objectContaining({ agent_id: helper.id })]);
  });

  it('a sub-agent’s policy blocks a tool it offers: the delegation fails, the task does not', async () => {
    const helper = await f.agent({
      policy: { blocked_tools: ['bash'] },
      agent: { tools: ['bash', 'submit_result'] },
    });
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: helper.name, prompt: 'run something' } },
      { text: 'fine, I did it myself' },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: parent.id, prompt: 'go' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'fine, I did it myself' });
    const events = await f.events(task.id);
    const result = byType(events, 'tool_result').find((e) => e.payload.name === 'delegate')!.payload;
    expect(result).toMatchObject({ ok: false });
    expect(result.output).toContain('tool_blocked');
  });

  it('a sub-agent’s own hourly cap refuses its call: the delegation fails, the task does not', async () => {
    const helper = await f.agent({
      policy: { budget: { max_cost_per_hour_usd: 0.001 } },
      agent: { model: 'gpt-4o' },
    });
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: helper.name, prompt: 'spend' } },
      { tool: 'submit_result', args: { result: 'without it' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: parent.id, prompt: 'go' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'without it' });
    const result = byType(await f.events(task.id), 'tool_result').find((e) => e.payload.name === 'delegate');
    expect(result!.payload.output).toContain('hourly_budget_exceeded');
  });

  it('goes two levels deep at most (a cycle of sub-agents included)', async () => {
    const a = await f.agent();
    const b = await f.agent({ agent: { sub_agent_ids: [a.id] } });
    expect((await patchAgent(a.id, { sub_agent_ids: [b.id] })).status).toBe(200);
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: b.name, prompt: 'level one' } },
      { tool: 'delegate', args: { agent: a.name, prompt: 'level two' } },
      { tool: 'delegate', args: { agent: b.name, prompt: 'level three' } },
      { tool: 'submit_result', args: { result: 'from two' } },
      { tool: 'submit_result', args: { result: 'from one' } },
      { tool: 'submit_result', args: { result: 'from zero' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: a.id, prompt: 'go deep' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'from zero' });
    // The agent at depth 2 was told it may not delegate, and its attempt was refused.
    expect((f.mock.requests[2]!.body as Json).messages[0].content).toContain('deepest level');
    const events = await f.events(task.id);
    const refused = byType(events, 'tool_result').filter((e) => e.payload.name === 'delegate');
    expect(refused.map((e) => [e.payload.depth ?? 0, e.payload.ok])).toEqual([
      [2, false],
      [1, true],
      [0, true],
    ]);
    expect(refused[0]!.payload.output).toContain('at most 2 levels deep');
    expect(
      byType(events, 'delegation')
        .filter((e) => e.payload.status === 'started')
        .map((e) => [e.payload.agent_id, e.payload.depth]),
    ).toEqual([
      [b.id, 1],
      [a.id, 2],
    ]);
  });

  it('starts 20 delegations a task at most', async () => {
    const helper = await f.agent({ agent: { tools: ['submit_result'] } });
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([
      {
        toolCalls: Array.from({ length: 21 }, (_, i) => ({
          name: 'delegate',
          arguments: { agent: helper.name, prompt: `part ${i}` },
        })),
      },
      ...Array.from({ length: 20 }, (_, i) => ({ text: `did part ${i}` })),
      { tool: 'submit_result', args: { result: 'enough' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: parent.id, prompt: 'split it' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'enough' });
    const results = byType(await f.events(task.id), 'tool_result').filter(
      (e) => e.payload.name === 'delegate',
    );
    expect(results.map((e) => e.payload.ok)).toEqual([...Array(20).fill(true), false]);
    expect(results[19]!.payload.output).toBe('did part 19');
    expect(results[20]!.payload.output).toContain('already made 20 delegations');
    expect(f.mock.requests).toHaveLength(22);
  });

  it('a disabled sub-agent answers ok:false; an unknown name is the model’s to fix', async () => {
    const helper = await f.agent();
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    expect((await patchAgent(helper.id, { status: 'disabled' })).status).toBe(200);
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: 'nobody', prompt: 'x' } },
      { tool: 'delegate', args: { agent: helper.name, prompt: 'x' } },
      { tool: 'submit_result', args: { result: 'alone' } },
    ]);
    const { task } = await f.finished((await f.submit({ agent_id: parent.id, prompt: 'go' })).id);
    expect(task).toMatchObject({ status: 'completed', result: 'alone' });
    const outputs = byType(await f.events(task.id), 'tool_result')
      .filter((e) => e.payload.name === 'delegate')
      .map((e) => e.payload);
    expect(outputs[0]).toMatchObject({ ok: false });
    expect(outputs[0]!.output).toContain(`use one of: ${helper.name}`);
    expect(outputs[1]).toMatchObject({ ok: false });
    expect(outputs[1]!.output).toContain('is disabled');
  });

  it('the task’s budget holds across parent and sub-agent: a sub-agent’s call past it ends the task', async () => {
    // The parent's call (gpt-4o-mini, 4096 tokens at most) fits in $0.01; the sub-agent's (gpt-4o) cannot.
    const helper = await f.agent({ agent: { model: 'gpt-4o' } });
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([
      { tool: 'delegate', args: { agent: helper.name, prompt: 'spend' } },
      { tool: 'submit_result', args: { result: 'should not get here' } },
    ]);
    const submitted = await f.submit({ agent_id: parent.id, prompt: 'go', max_budget_usd: 0.01 });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded' } });
    expect(f.mock.requests).toHaveLength(1);
  });
});

describe('joining another agent’s run', () => {
  it('stays a 404 for an agent key over HTTP, whatever header or body field it sends', async () => {
    const helper = await f.agent();
    const parent = await f.agent({ agent: { sub_agent_ids: [helper.id] } });
    f.mock.reset();
    f.script([{ text: 'done' }]);
    const { task } = await f.finished((await f.submit({ agent_id: parent.id, prompt: 'go' })).id);
    const attempt = (key: string) =>
      f.t.call('POST', '/v1/chat/completions', {
        token: key,
        headers: {
          'x-paddock-run-id': task.run_id,
          'x-paddock-delegation': parent.id,
          'x-paddock-delegate-of': parent.id,
        },
        body: {
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'let me in' }],
          delegation: { runOwnerId: parent.id, depth: 1 },
          delegateOf: parent.id,
        },
      });
    const asHelper = await attempt(helper.api_key);
    expect(asHelper.status).toBe(404);
    expect(JSON.stringify(asHelper.body)).toContain('not_found');
    // The run's own agent is told the run has ended: the run exists, it is just not the helper's.
    const asOwner = await attempt(parent.api_key);
    expect(asOwner.status).toBe(409);
    await f.t.services.runs.flush();
    const steps = await runSteps(task.run_id);
    expect(steps.some((s) => s.agent_id === helper.id)).toBe(false);
  });
});

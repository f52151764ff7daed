import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForCapsule } from '../support/capsules.ts';
import { expectError } from '../support/errors.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// How a task ends other than by its answer: a cancel, its limits (turns,
// budget, time), an approval, its output policy and schema; and what it runs
// on: the environment version its agent pins, through either key format.

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const bash = (command: string) => ({ tool: 'bash', args: { command } });
const forever = (command: string) => ({
  toolCalls: [{ name: 'bash', arguments: { command } }],
  times: Number.POSITIVE_INFINITY,
});

function post(url: string, body?: unknown) {
  return f.t.call('POST', url, { token: f.user.token, ...(body !== undefined ? { body } : {}) });
}

/** Polls (real time) until `check` answers something. */
async function until<T>(check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The id of the task's capsule, from its `capsule` event. */
async function capsuleOf(taskId: string): Promise<string> {
  const e = await f.untilEvent(taskId, (x) => x.type === 'capsule');
  return e.payload.capsule_id;
}

describe('cancel', () => {
  it('stops a running task at once (its capsule too), and a queued one; an ended task is a 409', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 1 } });
    f.mock.reset();
    f.script([bash('sleep 30')]);
    const running = await f.submit({ agent_id: agent.id, prompt: 'sleep' });
    await f.untilEvent(running.id, (e) => e.type === 'tool_call' && e.payload.name === 'bash');
    const capsuleId = await capsuleOf(running.id);

    // The agent runs one task at a time: a second one waits in the queue.
    const queued = await f.submit({ agent_id: agent.id, prompt: 'wait your turn' });
    const cancelledQueued = await post(`/v1/tasks/${queued.id}/cancel`);
    expect(cancelledQueued.status, JSON.stringify(cancelledQueued.body)).toBe(200);
    expect(cancelledQueued.body).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect(cancelledQueued.body.started_at).toBeNull();

    const asked = Date.now();
    const res = await post(`/v1/tasks/${running.id}/cancel`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    const { task, streamed } = await f.finished(running.id);
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(task).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' }, result: null });
    expect(streamed.at(-1)).toMatchObject({ type: 'status', payload: { status: 'cancelled' } });
    // The sleep's capsule is stopped, not left to run out its 30 seconds.
    await waitForCapsule(f.t, f.user.token, capsuleId, 'stopped', 10_000);

    for (const id of [running.id, queued.id]) {
      const again = await post(`/v1/tasks/${id}/cancel`);
      expectError(again, 409, 'task_finished');
      expect(again.body.error.details).toEqual({ status: 'cancelled' });
    }
    // The queued task never ran: no model call, no capsule.
    expect(f.mock.requests).toHaveLength(1);
    expect((await f.events(queued.id)).map((e) => e.payload.status)).toEqual(['queued', 'cancelled']);

    // The cancelled task's run is ended and its capsule time is charged to it.
    const totals = await until(async () => {
      const now = (await f.t.call('GET', `/v1/tasks/${running.id}`, { token: f.user.token })).body;
      return now.sandbox_seconds > 0 ? now : undefined;
    });
    expect(totals).toMatchObject({ status: 'cancelled', turns: 1 });
    const runRes = await f.t.call('GET', `/v1/runs/${totals.run_id}`, { token: f.user.token });
    expect(runRes.body).toMatchObject({ status: 'completed', ended_reason: 'task_cancelled' });
  }, 30_000);
});

describe('cancel right after submitting', () => {
  it('leaves no capsule running, whenever the worker saw the task', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 5 } });
    f.mock.reset();
    f.mock.reply({ hang: true, times: Number.POSITIVE_INFINITY });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const submitted = await f.submit({ agent_id: agent.id, prompt: `task ${i}` });
      // Each a little later than the last: queued, being claimed, starting its run or capsule.
      await new Promise((r) => setTimeout(r, i * 40));
      expect((await post(`/v1/tasks/${submitted.id}/cancel`)).status).toBe(200);
      ids.push(submitted.id);
    }
    for (const id of ids) expect((await f.finished(id)).task.status).toBe('cancelled');
    await until(async () => {
      await f.t.services.capsules.settled();
      const res = await f.t.call('GET', '/v1/capsules', { token: f.user.token, query: { limit: '200' } });
      const live = res.body.data.filter(
        (c: Json) => ids.includes(c.metadata?.task_id) && !['stopped', 'error'].includes(c.status),
      );
      return live.length === 0 ? true : undefined;
    }, 15_000);
    f.mock.reset();
  }, 30_000);
});

describe('cancel during a model call', () => {
  it('drops the call in flight and ends the task at once', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.mock.reply({ hang: true });
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'think forever' });
    await until(async () => (f.mock.requests.length > 0 ? true : undefined));
    const res = await post(`/v1/tasks/${submitted.id}/cancel`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' }, result: null });
    // The runner lets the task go: its run ends.
    const run = await until(async () => {
      const r = await f.t.call('GET', `/v1/runs/${task.run_id}`, { token: f.user.token });
      return r.body.status === 'running' ? undefined : r.body;
    });
    expect(run).toMatchObject({ status: 'completed', outcome: 'failed', ended_reason: 'task_cancelled' });
  });
});

describe('limits', () => {
  it('fails max_turns when the model keeps calling tools past max_turns', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.mock.reply(forever('echo again'));
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'loop', max_turns: 2 });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'max_turns' }, turns: 2, max_turns: 2 });
    expect(f.mock.requests).toHaveLength(2);
    const results = (await f.events(task.id)).filter((e) => e.type === 'tool_result');
    expect(results).toHaveLength(2);
  });

  it('fails with the gateway’s budget_exceeded once the task’s budget is spent, its cost recorded', async () => {
    const agent = await f.agent();
    f.mock.reset();
    // The first call fits the budget's reservation but costs more than all of it (100k input tokens).
    f.mock.reply({ ...forever('echo spend'), usage: { input: 100_000, output: 20 } });
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'spend', max_budget_usd: 0.01 });
    expect(submitted.max_budget_usd).toBe(0.01);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({
      status: 'failed',
      error: { code: 'budget_exceeded' },
      input_tokens: 100_000,
    });
    expect(task.cost_usd).toBeGreaterThan(0.01);
    // The model was called once: the call that spent the budget; the next was refused.
    expect(f.mock.requests).toHaveLength(1);
    const run = await f.t.call('GET', `/v1/runs/${task.run_id}`, { token: f.user.token });
    expect(run.body).toMatchObject({ status: 'budget_exceeded' });
    expect(Math.round(run.body.cost_usd * 1e6)).toBe(Math.round(task.cost_usd * 1e6));

    // A budget too small for even one call's reservation fails before the model is asked.
    f.mock.reset();
    const tiny = await f.submit({ agent_id: agent.id, prompt: 'spend', max_budget_usd: 0.000001 });
    const refused = (await f.finished(tiny.id)).task;
    expect(refused).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded' }, input_tokens: 0 });
    expect(f.mock.requests).toHaveLength(0);
  });

  it('fails budget_exceeded at the policy’s hard limit too', async () => {
    const agent = await f.agent({ policy: { budget: { hard_limit_usd: 0.01 } } });
    f.mock.reset();
    f.mock.reply({ ...forever('echo spend'), usage: { input: 100_000, output: 20 } });
    const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'spend' })).id);
    expect(task).toMatchObject({
      status: 'failed',
      error: { code: 'budget_exceeded' },
      max_budget_usd: null,
    });
    expect(task.cost_usd).toBeGreaterThan(0.01);
    expect(f.mock.requests).toHaveLength(1);
  });

  it('fails timeout at timeout_sec while a command still runs', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.mock.reply(forever('sleep 30'));
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'sleep long', timeout_sec: 10 });
    const started = Date.now();
    const { task } = await f.finished(submitted.id);
    const took = Date.now() - started;
    expect(task).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
    expect(took).toBeGreaterThan(9_000);
    expect(took).toBeLessThan(18_000);
    await waitForCapsule(f.t, f.user.token, await capsuleOf(task.id), 'stopped', 10_000);
  }, 30_000);
});

describe('approvals', () => {
  /** The next awaiting_approval status event after `afterSeq`. */
  function nextApproval(taskId: string, afterSeq: number): Promise<Json> {
    return f.untilEvent(
      taskId,
      (e) => e.seq > afterSeq && e.type === 'status' && e.payload.status === 'awaiting_approval',
    );
  }

  it('waits in awaiting_approval for each call that offers bash, and goes on once approved', async () => {
    const agent = await f.agent({ policy: { require_approval: ['bash'] } });
    f.mock.reset();
    f.script([bash('echo approved-run'), { tool: 'submit_result', args: { result: 'ok' } }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'needs a human' });

    let seq = 0;
    for (let i = 0; i < 2; i++) {
      const asking = await nextApproval(submitted.id, seq);
      seq = asking.seq;
      expect(asking.payload).toMatchObject({
        tools: ['bash'],
        approval_ids: [expect.stringMatching(/^apr_/)],
      });
      const task = await f.until(submitted.id, ['awaiting_approval']);
      expect(task.status).toBe('awaiting_approval');
      for (const id of asking.payload.approval_ids) {
        const ok = await post(`/v1/approvals/${id}/approve`);
        expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      }
    }
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'ok', turns: 2 });
    const events = await f.events(task.id);
    const statuses = events.filter((e) => e.type === 'status').map((e) => e.payload.status);
    expect(statuses).toEqual([
      'queued',
      'running',
      'awaiting_approval',
      'running',
      'awaiting_approval',
      'running',
      'completed',
    ]);
    const result = events.find((e) => e.type === 'tool_result' && e.payload.name === 'bash');
    expect(result?.payload.output).toContain('approved-run');
  }, 30_000);

  it('fails approval_rejected when the call is rejected', async () => {
    const agent = await f.agent({ policy: { require_approval: ['bash'] } });
    f.mock.reset();
    f.script([bash('echo never')]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'needs a human' });
    const asking = await nextApproval(submitted.id, 0);
    const no = await post(`/v1/approvals/${asking.payload.approval_ids[0]}/reject`, { reason: 'not today' });
    expect(no.status, JSON.stringify(no.body)).toBe(200);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'approval_rejected' } });
    // The model was never asked: the call waited for its approval, then was dropped.
    expect(f.mock.requests).toHaveLength(0);
  }, 30_000);

  it('cancels a task that waits for an approval', async () => {
    const agent = await f.agent({ policy: { require_approval: ['bash'] } });
    f.mock.reset();
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'needs a human' });
    await nextApproval(submitted.id, 0);
    const res = await post(`/v1/tasks/${submitted.id}/cancel`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect(f.mock.requests).toHaveLength(0);
  }, 30_000);
});

describe('outputs', () => {
  it('fails output_policy when a named output file is missing, and completes when it is there', async () => {
    const agent = await f.agent({
      agent: { output_policy: { mode: 'named', files: [{ name: 'report.md' }] } },
    });
    f.mock.reset();
    f.script([{ tool: 'submit_result', args: { result: 'no report' } }]);
    const missing = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'report' })).id);
    expect(missing.task).toMatchObject({ status: 'failed', error: { code: 'output_policy' } });
    expect(missing.task.error.message).toContain('report.md');

    f.script([
      { tool: 'write_file', args: { path: 'outputs/report.md', content: '# Report\n' } },
      { tool: 'submit_result', args: { result: 'reported' } },
    ]);
    const there = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'report' })).id);
    expect(there.task).toMatchObject({ status: 'completed', result: 'reported' });
  });

  const schema = {
    type: 'object',
    properties: { count: { type: 'integer' } },
    required: ['count'],
    additionalProperties: false,
  };
  const submitResult = (result: unknown) => ({ tool: 'submit_result', args: { result } });

  it('fails invalid_result after three results that do not match output_schema', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([submitResult({ count: 'one' }), submitResult({}), submitResult({ count: 1, extra: true })]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'count', output_schema: schema });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'invalid_result' }, result: null });
    const refused = (await f.events(task.id)).filter((e) => e.type === 'tool_result');
    expect(refused.map((e) => e.payload.ok)).toEqual([false, false]);
    expect(refused[0]!.payload.output).toContain('count');
  });

  it('completes with a good result submitted after a bad one', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([submitResult({ count: 'one' }), submitResult({ count: 1 })]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'count', output_schema: schema });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: { count: 1 }, turns: 2 });
  });
});

describe('key formats', () => {
  const steps = [
    bash('mkdir -p outputs && echo from-bash > outputs/a.txt && echo ran'),
    { tool: 'write_file', args: { path: 'outputs/b.txt', content: 'written\n' } },
    { tool: 'submit_result', args: { result: { done: true } } },
  ];

  for (const [format, model] of [
    ['openai', 'gpt-4o-mini'],
    ['anthropic', 'claude-sonnet-4-5'],
  ] as const) {
    it(`runs the same task through an ${format} key`, async () => {
      const agent = await f.agent({ agent: { model }, bindings: { [format]: f.keys[format].id } });
      f.mock.reset();
      f.script(steps);
      const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'do it' })).id);
      expect(task).toMatchObject({ status: 'completed', result: { done: true }, turns: 3 });
      expect(f.mock.requests.map((r) => r.format)).toEqual([format, format, format]);
      const files = await f.t.call('GET', `/v1/tasks/${task.id}/files`, { token: f.user.token });
      expect(files.body.data.map((x: Json) => x.path).sort()).toEqual(['a.txt', 'b.txt']);
      const ran = (await f.events(task.id)).find(
        (e) => e.type === 'tool_result' && e.payload.name === 'bash',
      );
      expect(ran?.payload).toMatchObject({ ok: true, exit_code: 0 });
    });
  }
});

describe('environments', () => {
  let n = 0;
  async function createEnv(body: Record<string, unknown>): Promise<Json> {
    const res = await post('/v1/environments', { name: `task-env-${++n}-${Date.now()}`, ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  }
  async function built(id: string, version: number, timeoutMs = 60_000): Promise<Json> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const res = await f.t.call('GET', `/v1/environments/${id}/versions/${version}`, {
        token: f.user.token,
      });
      if (res.body.status === 'ready' || res.body.status === 'failed') return res.body;
      if (Date.now() > until) throw new Error(`version ${version} of ${id} is still ${res.body.status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('runs on the environment version the agent pins, not the environment’s newer one', async () => {
    // A build that takes a moment: a task submitted before it ends is refused.
    const env = await createEnv({
      setup_commands: ['sleep 2', 'echo v1 > "$HOME/built"'],
      env_vars: { STAGE: 'first' },
    });
    const agent = await f.agent({ agent: { environment_id: env.id } });
    expect(agent).toMatchObject({ environment_id: env.id, environment_version: 1 });
    const early = await post('/v1/tasks', { agent_id: agent.id, prompt: 'too soon' });
    expectError(early, 409, 'environment_not_ready');
    expect(early.body.error.details).toMatchObject({
      environment_id: env.id,
      environment_version_id: env.current_version.id,
    });
    expect(['queued', 'building']).toContain(early.body.error.details.status);

    const v1 = await built(env.id, 1);
    expect(v1.status).toBe('ready');
    const changed = await f.t.call('PATCH', `/v1/environments/${env.id}`, {
      token: f.user.token,
      body: { env_vars: { STAGE: 'second' }, setup_commands: ['echo v2 > "$HOME/built"'] },
    });
    expect(changed.body.current_version.version).toBe(2);
    expect((await built(env.id, 2)).status).toBe('ready');

    // The agent still pins version 1, and its task runs on version 1's template and variables.
    const now = await f.t.call('GET', `/v1/agents/${agent.id}`, { token: f.user.token });
    expect(now.body).toMatchObject({ version: 1, environment_version: 1, environment_version_id: v1.id });
    f.mock.reset();
    f.script([bash('echo "stage=$STAGE"; cat "$HOME/built"'), { text: 'done' }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'which stage?' });
    expect(submitted.environment_version_id).toBe(v1.id);
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', environment_version_id: v1.id });
    const events = await f.events(task.id);
    expect(events.find((e) => e.type === 'capsule')?.payload.template).toBe(v1.template);
    const out = events.find((e) => e.type === 'tool_result' && e.payload.name === 'bash');
    expect(out?.payload.output).toContain('stage=first');
    expect(out?.payload.output).toContain('v1');
  }, 120_000);

  it('refuses a task for an agent whose environment failed to build, naming it', async () => {
    const env = await createEnv({ setup_commands: ['exit 3'] });
    expect((await built(env.id, 1)).status).toBe('failed');
    const agent = await f.agent({ agent: { environment_id: env.id } });
    const before = (
      await f.t.call('GET', '/v1/tasks', { token: f.user.token, query: { agent_id: agent.id } })
    ).body.data;
    const res = await post('/v1/tasks', { agent_id: agent.id, prompt: 'build me' });
    expectError(res, 409, 'environment_build_failed');
    expect(res.body.error.message).toContain(env.id);
    expect(res.body.error.details).toMatchObject({ environment_id: env.id, status: 'failed' });
    expect(before).toEqual([]);
    const after = await f.t.call('GET', '/v1/tasks', { token: f.user.token, query: { agent_id: agent.id } });
    expect(after.body.data).toEqual([]);
  }, 90_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, type Json } from '../support/factories.ts';
import { multipart } from '../support/multipart.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// A task sent to a work queue (runner: {queue}) is run by the team's own
// worker: here a plain fetch client over real HTTP with the agent's key. It
// claims the paddock.task job, calls a model through the gateway naming the
// task's run, and completes (or fails) the job; the task follows the job.

let f: TaskFixture;
let base: string;

beforeAll(async () => {
  f = await startTasks();
  base = await f.t.app.listen({ host: '127.0.0.1', port: 0 });
}, 60_000);
afterAll(async () => {
  await f?.close();
});

async function http(
  method: string,
  path: string,
  token: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as Json };
}

/** The worker: claims one paddock.task job of `queue` with the agent's key. */
async function claim(queue: string, agentKey: string, worker = 'laptop-1'): Promise<Json | undefined> {
  const res = await http('POST', `/v1/queues/${queue}/claim`, agentKey, {
    worker_id: worker,
    types: ['paddock.task'],
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data[0];
}

/** The worker's model call, as the job's payload tells it: the gateway's path, the task's run named. */
function modelCall(job: Json, agentKey: string, model: string = job.payload.model) {
  const { base_path, run_header } = job.payload.gateway;
  return http(
    'POST',
    `${base_path}/chat/completions`,
    agentKey,
    { model, messages: [{ role: 'user', content: job.payload.prompt }] },
    { [run_header]: job.payload.run_id },
  );
}

async function task(id: string): Promise<Json> {
  const res = await f.t.call('GET', `/v1/tasks/${id}`, { token: f.user.token });
  expect(res.status).toBe(200);
  return res.body;
}

async function job(queue: string, id: string): Promise<Json> {
  const res = await f.t.call('GET', `/v1/queues/${queue}/jobs/${id}`, { token: f.user.token });
  expect(res.status).toBe(200);
  return res.body;
}

describe('a task routed to a queue', () => {
  it('is run by a worker whose model calls are governed and recorded in the task run', async () => {
    const agent = await f.agent({ policy: { blocked_models: ['gpt-4o'] } });
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'summarise the release notes',
      runner: { queue: 'own-machines' },
      output_schema: { type: 'object', required: ['summary'] },
      timeout_sec: 120,
    });
    expect(submitted).toMatchObject({ status: 'queued', runner: { queue: 'own-machines' } });
    expect(submitted.run_id).toMatch(/^run_/);

    // The job waits in the queue with what the worker needs, and no secret.
    const listed = await f.t.call('GET', '/v1/queues/own-machines/jobs', { token: f.user.token });
    expect(listed.body.data).toHaveLength(1);
    const queued = listed.body.data[0];
    expect(queued).toMatchObject({
      type: 'paddock.task',
      status: 'queued',
      timeout_sec: 120,
      payload: {
        task_id: submitted.id,
        agent_id: agent.id,
        agent_version: 1,
        run_id: submitted.run_id,
        prompt: 'summarise the release notes',
        model: 'gpt-4o-mini',
        max_turns: submitted.max_turns,
        timeout_sec: 120,
        input_files: [],
        gateway: { base_path: '/v1', run_header: 'x-paddock-run-id' },
      },
    });
    const payloadText = JSON.stringify(queued.payload);
    for (const secret of [agent.api_key, 'pda_', 'sk-openai-test', f.user.token])
      expect(payloadText).not.toContain(secret);

    // Claimed: the task runs.
    const claimed = await claim('own-machines', agent.api_key);
    expect(claimed).toMatchObject({ id: queued.id, status: 'active', worker_id: 'laptop-1' });
    expect(await task(submitted.id)).toMatchObject({ status: 'running', attempt: 1 });

    // The worker's model call goes through the gateway into the task's run.
    f.mock.reset();
    f.mock.reply({ text: 'three fixes and a feature' });
    const call = await modelCall(claimed!, agent.api_key);
    expect(call.status, JSON.stringify(call.body)).toBe(200);
    expect(call.body.choices[0].message.content).toBe('three fixes and a feature');
    // Governed: the agent's policy refuses a model for the worker too, before any provider.
    const refused = await modelCall(claimed!, agent.api_key, 'gpt-4o');
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ code: 'model_not_allowed', run_id: submitted.run_id });
    expect(f.mock.requests).toHaveLength(1);

    const done = await http('POST', `/v1/queues/own-machines/jobs/${claimed!.id}/complete`, agent.api_key, {
      worker_id: 'laptop-1',
      result: { summary: 'three fixes and a feature' },
    });
    expect(done.status, JSON.stringify(done.body)).toBe(200);

    const ended = await task(submitted.id);
    expect(ended).toMatchObject({
      status: 'completed',
      result: { summary: 'three fixes and a feature' },
      error: null,
    });
    expect(ended.input_tokens).toBeGreaterThan(0);
    expect(ended.cost_usd).toBeGreaterThan(0);

    // Recorded: the call is a step of the task's run, with its ledger entry; the run ended with the task.
    await f.t.services.runs.flush();
    const steps = await f.t.call('GET', `/v1/runs/${submitted.run_id}/steps`, { token: f.user.token });
    expect(steps.status).toBe(200);
    const models = steps.body.data.map((s: Json) => s.model);
    expect(models).toContain('gpt-4o-mini');
    const ledger = await f.t.call('GET', `/v1/runs/${submitted.run_id}/ledger`, { token: f.user.token });
    expect(ledger.body.data.length).toBeGreaterThanOrEqual(1);
    const run = await f.t.call('GET', `/v1/runs/${submitted.run_id}`, { token: f.user.token });
    expect(run.body).toMatchObject({ agent_id: agent.id });
    expect(run.body.status).not.toBe('running');
    // A call naming the ended run is refused.
    expect((await modelCall(claimed!, agent.api_key)).status).toBe(409);

    const events = (await f.events(submitted.id)).map((e) => e.payload.status);
    expect(events).toEqual(['queued', 'running', 'completed']);
    const outbox = await f.t.call('GET', '/v1/events', {
      token: f.user.token,
      query: { subject_id: submitted.id },
    });
    expect(outbox.status).toBe(200);
    const types = outbox.body.data.map((e: Json) => e.type);
    expect(types).toEqual(expect.arrayContaining(['task.created', 'task.started', 'task.completed']));
  });

  it('names the input files in the payload, by id and name', async () => {
    const agent = await f.agent();
    const body = multipart({ filename: 'brief.txt', data: Buffer.from('file-bytes-7c1e') });
    const up = await f.t.app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { authorization: `Bearer ${f.user.token}`, 'content-type': body.contentType },
      payload: body.payload,
    });
    expect(up.statusCode, up.body).toBe(201);
    const fileId = up.json().id as string;
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'read the brief',
      runner: { queue: 'files-q' },
      input_file_ids: [fileId],
    });
    const claimed = await claim('files-q', agent.api_key);
    expect(claimed!.payload).toMatchObject({
      task_id: submitted.id,
      input_files: [{ id: fileId, name: 'brief.txt' }],
    });
    expect(JSON.stringify(claimed!.payload)).not.toContain('file-bytes-7c1e');
  });

  it('fails the task when the worker’s result does not match output_schema', async () => {
    const agent = await f.agent();
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'count',
      runner: { queue: 'schema-q' },
      output_schema: { type: 'object', required: ['count'], properties: { count: { type: 'integer' } } },
    });
    const claimed = await claim('schema-q', agent.api_key);
    const done = await http('POST', `/v1/queues/schema-q/jobs/${claimed!.id}/complete`, agent.api_key, {
      worker_id: 'laptop-1',
      result: { count: 'many' },
    });
    expect(done.status).toBe(200);
    const ended = await task(submitted.id);
    expect(ended).toMatchObject({ status: 'failed', result: null, error: { code: 'invalid_result' } });
  });

  it('fails the task once its job failed past max_attempts', async () => {
    const agent = await f.agent();
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'flaky', runner: { queue: 'flaky-q' } });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const claimed = await claim('flaky-q', agent.api_key, `w${attempt}`);
      expect(claimed, `attempt ${attempt}`).toMatchObject({ attempts: attempt, max_attempts: 3 });
      const failed = await http('POST', `/v1/queues/flaky-q/jobs/${claimed!.id}/fail`, agent.api_key, {
        worker_id: `w${attempt}`,
        error: `disk full (${attempt})`,
      });
      expect(failed.status).toBe(200);
      if (attempt < 3) {
        // Put back for another try: the task keeps running.
        expect(failed.body.status).toBe('queued');
        expect((await task(submitted.id)).status).toBe('running');
        f.t.clock.advance(10_000);
      } else expect(failed.body.status).toBe('failed');
    }
    const ended = await task(submitted.id);
    expect(ended).toMatchObject({ status: 'failed', error: { code: 'queue_job_failed' } });
    expect(ended.error.message).toContain('disk full (3)');
    const run = await f.t.call('GET', `/v1/runs/${submitted.run_id}`, { token: f.user.token });
    expect(run.body.status).not.toBe('running');
  });

  it('fails the task when its workers die holding the job until max_attempts', async () => {
    const agent = await f.agent();
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'crashy',
      runner: { queue: 'crash-q' },
      timeout_sec: 10,
    });
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect(await claim('crash-q', agent.api_key, `dies-${attempt}`)).toMatchObject({ attempts: attempt });
      // The worker dies: no heartbeat, its lease (the task's timeout_sec) runs out and the sweep takes the job back.
      f.t.clock.advance(11_000);
      await f.t.services.queues.sweep();
      expect((await task(submitted.id)).status).toBe(attempt < 3 ? 'running' : 'failed');
    }
    const ended = await task(submitted.id);
    expect(ended.error).toMatchObject({ code: 'queue_job_failed' });
    expect(ended.error.message).toContain('lease expired');
  });

  it('cancels the job when the task is cancelled, and the task when its job is', async () => {
    const agent = await f.agent();
    const first = await f.submit({ agent_id: agent.id, prompt: 'one', runner: { queue: 'cancel-q' } });
    const claimed = await claim('cancel-q', agent.api_key);
    const cancel = await f.t.call('POST', `/v1/tasks/${first.id}/cancel`, { token: f.user.token });
    expect(cancel.status).toBe(200);
    expect(cancel.body.status).toBe('cancelled');
    expect(await job('cancel-q', claimed!.id)).toMatchObject({ status: 'cancelled' });
    const late = await http('POST', `/v1/queues/cancel-q/jobs/${claimed!.id}/complete`, agent.api_key, {
      worker_id: 'laptop-1',
      result: {},
    });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('not_lease_holder');
    expect((await task(first.id)).status).toBe('cancelled');

    // The other way: the queued job cancelled through the queue ends its task.
    const second = await f.submit({ agent_id: agent.id, prompt: 'two', runner: { queue: 'cancel-q' } });
    const listed = await f.t.call('GET', '/v1/queues/cancel-q/jobs', {
      token: f.user.token,
      query: { status: 'queued' },
    });
    const secondJob = listed.body.data.find((j: Json) => j.payload.task_id === second.id);
    const cancelJob = await f.t.call('POST', `/v1/queues/cancel-q/jobs/${secondJob.id}/cancel`, {
      token: f.user.token,
    });
    expect(cancelJob.status).toBe(200);
    expect(await task(second.id)).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
  });

  it('waits while its agent is paused, whoever claims, and runs once the agent is resumed', async () => {
    const agent = await f.agent();
    const other = await f.agent();
    const mine = await f.submit({ agent_id: agent.id, prompt: 'wait for me', runner: { queue: 'paused-q' } });
    const theirs = await f.submit({ agent_id: other.id, prompt: 'go ahead', runner: { queue: 'paused-q' } });
    const paused = await f.t.call('POST', `/v1/agents/${agent.id}/pause`, { token: f.user.token });
    expect(paused.status).toBe(200);

    // Its own key gets nothing; a team key claiming the queue skips its job and takes the other agent's.
    expect(await claim('paused-q', agent.api_key)).toBeUndefined();
    const teamClaim = await http('POST', '/v1/queues/paused-q/claim', f.user.token, {
      worker_id: 'ci-runner',
      batch_size: 10,
    });
    expect(teamClaim.body.data.map((j: Json) => j.payload.task_id)).toEqual([theirs.id]);
    expect(await task(mine.id)).toMatchObject({ status: 'queued' });

    const resumed = await f.t.call('POST', `/v1/agents/${agent.id}/resume`, { token: f.user.token });
    expect(resumed.status).toBe(200);
    const claimed = await claim('paused-q', agent.api_key);
    expect(claimed?.payload.task_id).toBe(mine.id);
    expect(await task(mine.id)).toMatchObject({ status: 'running' });
  });

  it('holds its agent’s concurrency_limit across claims: the rest wait in the queue, unclaimed', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 2 } });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        (await f.submit({ agent_id: agent.id, prompt: `job ${i}`, runner: { queue: 'limited-q' } })).id,
      );
    const claimAll = (worker: string) =>
      http('POST', '/v1/queues/limited-q/claim', f.user.token, { worker_id: worker, batch_size: 10 });

    // One claim of ten takes two: the agent's limit. A second worker gets nothing while they run.
    const first = await claimAll('w1');
    expect(first.body.data.map((j: Json) => j.payload.task_id)).toEqual(ids.slice(0, 2));
    expect(first.body.data[0].payload.concurrency_limit).toBe(2);
    expect((await claimAll('w2')).body.data).toEqual([]);
    const waiting = (
      await f.t.call('GET', '/v1/queues/limited-q/jobs', { token: f.user.token, query: { status: 'queued' } })
    ).body.data;
    expect(waiting.map((j: Json) => [j.payload.task_id, j.attempts, j.worker_id])).toEqual([
      [ids[2], 0, null],
    ]);
    expect(await task(ids[2]!)).toMatchObject({ status: 'queued' });

    // One ends: the third is claimed next (a refused job is due again a second later).
    const done = await http(
      'POST',
      `/v1/queues/limited-q/jobs/${first.body.data[0].id}/complete`,
      f.user.token,
      {
        worker_id: 'w1',
        result: { ok: true },
      },
    );
    expect(done.status).toBe(200);
    f.t.clock.advance(1000);
    const next = await claimAll('w2');
    expect(next.body.data.map((j: Json) => j.payload.task_id)).toEqual([ids[2]]);
    expect(await task(ids[2]!)).toMatchObject({ status: 'running' });
  });

  it('keeps the job and the run to the team', async () => {
    const agent = await f.agent();
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'ours', runner: { queue: 'team-q' } });
    const other = await f.t.signup();
    const stranger = await createAgent(f.t, other.token);
    // Another team's worker sees no job in its queue of the same name.
    expect(await claim('team-q', stranger.api_key)).toBeUndefined();
    // Nor can it put calls into the task's run, nor see or cancel the task.
    const foreign = await http(
      'POST',
      '/v1/chat/completions',
      stranger.api_key,
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { 'x-paddock-run-id': submitted.run_id },
    );
    expect(foreign.status).toBe(404);
    const cancel = await f.t.call('POST', `/v1/tasks/${submitted.id}/cancel`, { token: other.token });
    expect(cancel.status).toBe(404);
    expect((await task(submitted.id)).status).toBe('queued');
  });

  it('refuses bad runner input with a 400', async () => {
    const agent = await f.agent();
    const bodies: Array<[Record<string, unknown>, string | undefined]> = [
      [{ runner: { queue: 'bad name!' } }, undefined],
      [{ runner: { queue: '' } }, undefined],
      [{ runner: 'own-machines' }, undefined],
      [{ runner: { queue: 'q', capsule: true } }, undefined],
      [{ runner: {} }, undefined],
      [{ runner: { queue: 'q' }, mode: 'stream' }, 'runner_mode'],
    ];
    for (const [extra, code] of bodies) {
      const res = await f.t.call('POST', '/v1/tasks', {
        token: f.user.token,
        body: { agent_id: agent.id, prompt: 'x', ...extra },
      });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.body.error.code).toBeTypeOf('string');
      if (code) expect(res.body.error.code).toBe(code);
    }
    // paddock.task jobs are Paddock's own: a team cannot submit one that would move a task.
    const forged = await f.t.call('POST', '/v1/queues/q/jobs', {
      token: f.user.token,
      body: { type: 'paddock.task', payload: {}, idempotency_key: 'task_01M90V1BXYBMT2B5XY1R0B2NCA' },
    });
    expect(forged.status).toBe(400);
    expect(forged.body.error.code).toBe('reserved_type');
    const none = await f.t.call('GET', '/v1/queues/q/jobs', { token: f.user.token });
    expect(none.body.data).toHaveLength(0);
  });
});

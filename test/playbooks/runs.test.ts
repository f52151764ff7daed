import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

/**
 * Runs that reach the agent: each chain a task of the run's workspace
 * against the mock provider. The test moves the runs on by ticking the
 * scheduler itself (and the clock past chain_delay_ms).
 */
let f: TaskFixture;
let agent: Json;

beforeAll(async () => {
  f = await startTasks({ playbooks: { hooks: { perToken: 3, windowSec: 3600 } } });
  agent = await f.agent();
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });

async function playbook(body: Record<string, unknown>): Promise<Json> {
  const res = await call('POST', '/v1/playbooks', {
    agent_id: agent.id,
    name: 'pb',
    prompt: 'Summarise the orders.',
    ...body,
  });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}

/** Ticks (with the clock moved past any chain delay) until the run has ended. */
async function ended(runId: string, timeoutMs = 30_000): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    f.t.clock.advance(1000);
    await f.t.services.playbookScheduler.tick();
    const run = (await call('GET', `/v1/playbook-runs/${runId}`)).body;
    if (!['queued', 'running'].includes(run.status)) return run;
    if (Date.now() > until) throw new Error(`run ${runId} is still ${run.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The user messages of the model requests so far. */
const userSaid = () =>
  f.mock.requests.flatMap((r) =>
    ((r.body as { messages?: Json[] }).messages ?? [])
      .filter((m) => m.role === 'user')
      .map((m) => String(m.content)),
  );

describe('playbook runs', () => {
  it('a manual run is one chain when the agent answers and no criteria are set: pass', async () => {
    const pb = await playbook({ trigger: 'manual' });
    f.mock.reset();
    f.script([{ text: 'All 3 orders shipped.' }, { text: 'Orders' }]);
    const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
    expect(fired.status).toBe(202);
    const run = await ended(fired.body.id);
    expect(run).toMatchObject({ status: 'completed', decision: 'pass', chains_used: 1, fired_by: 'manual' });
    expect(run.result_summary).toBe('All 3 orders shipped.');
    expect(run.turns).toBe(1);
    expect(run.cost_usd).toBeGreaterThan(0);
    expect(userSaid()[0]).toBe('Summarise the orders.');
    // The run's workspace is ended with it: just after the run's row says so (the scheduler's own
    // tick may be the one ending the run, its workspace still on the way when the row is read).
    await vi.waitFor(
      async () =>
        expect((await call('GET', `/v1/workspaces/${run.workspace_id}`)).body.status).toBe('terminated'),
      { timeout: 10_000, interval: 50 },
    );
    const pbNow = (await call('GET', `/v1/playbooks/${pb.id}`)).body;
    expect(pbNow.last_run_at).not.toBeNull();
    expect((await call('GET', `/v1/playbooks/${pb.id}/runs`)).body.data.map((r: Json) => r.id)).toEqual([
      run.id,
    ]);
  });

  it('chains continue the same workspace until a success criterion passes', async () => {
    const pb = await playbook({
      trigger: 'manual',
      success_criteria: [{ type: 'contains', value: 'ALL DONE' }],
      chain_config: { max_chains: 3, chain_delay_ms: 1000 },
    });
    f.mock.reset();
    f.script([{ text: 'Halfway there.' }, { text: 'Orders' }, { text: 'ALL DONE: 3 shipped.' }]);
    const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
    const run = await ended(fired.body.id);
    expect(run).toMatchObject({ status: 'completed', decision: 'pass', chains_used: 2, turns: 2 });
    const said = userSaid();
    expect(said.at(-1)).toContain('the answer contains "ALL DONE"');
    // The second chain's request carried the first chain's conversation: one workspace.
    const last = f.mock.requests.at(-1)!.body as { messages: Json[] };
    expect(last.messages.map((m) => m.content)).toContain('Halfway there.');
  });

  it('every chain keeps the chain_config: allowed_tools, max_turns_per_chain, timeout_per_chain_seconds', async () => {
    const pb = await playbook({
      trigger: 'manual',
      success_criteria: [{ type: 'contains', value: 'ALL DONE' }],
      chain_config: {
        max_chains: 2,
        max_turns_per_chain: 7,
        timeout_per_chain_seconds: 300,
        allowed_tools: ['read_file'],
      },
    });
    f.mock.reset();
    f.script([{ text: 'Halfway there.' }, { text: 'Orders' }, { text: 'ALL DONE: 3 shipped.' }]);
    const run = await ended((await call('POST', `/v1/playbooks/${pb.id}/run`)).body.id);
    expect(run).toMatchObject({ status: 'completed', decision: 'pass', chains_used: 2 });
    const tasks = (await call('GET', `/v1/tasks?agent_id=${agent.id}&limit=200`)).body.data.filter(
      (t: Json) => t.workspace_id === run.workspace_id,
    );
    expect(tasks).toHaveLength(2);
    for (const t of tasks)
      expect(t).toMatchObject({ max_turns: 7, timeout_sec: 300, allowed_tools: ['read_file'] });
    // Both chains' model calls offered only read_file (and submit_result).
    const chainCalls = f.mock.requests.filter((r) => (r.body as Json).tools !== undefined);
    expect(chainCalls.length).toBeGreaterThanOrEqual(2);
    for (const r of chainCalls)
      expect(((r.body as Json).tools as Json[]).map((t) => t.function.name).sort()).toEqual([
        'read_file',
        'submit_result',
      ]);
  });

  it('notify_on sends a run’s end to its notification_channels, whatever they subscribe to', async () => {
    // An in-app channel subscribed to nothing a run makes: only the playbook's naming it brings the run's end.
    const inbox = await call('POST', '/v1/channels', {
      name: `runs-${Date.now()}`,
      provider: 'in_app',
      config: {},
      events: ['agent.deleted'],
    });
    expect(inbox.status, JSON.stringify(inbox.body)).toBe(201);
    const unknown = await call('POST', '/v1/playbooks', {
      agent_id: agent.id,
      name: 'pb',
      prompt: 'x',
      trigger: 'manual',
      notify_on: 'failure',
      notification_channels: ['chn_01ARZ3NDEKTSV4RRFFQ69G5FAV'],
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe('unknown_channel');

    const notified = async () =>
      ((await call('GET', '/v1/notifications?limit=200')).body.data as Json[]).filter((n) =>
        String(n.event_type).startsWith('playbook_run.'),
      );
    const before = (await notified()).length;
    // notify_on failure: a run that passes sends nothing…
    const pb = await playbook({
      trigger: 'manual',
      success_criteria: [{ type: 'contains', value: 'DONE' }],
      chain_config: { max_chains: 1 },
      notify_on: 'failure',
      notification_channels: [inbox.body.id],
    });
    f.mock.reset();
    f.script([{ text: 'DONE' }, { text: 'T' }]);
    const passed = await ended((await call('POST', `/v1/playbooks/${pb.id}/run`)).body.id);
    expect(passed.decision).toBe('pass');
    // …one whose criterion is unmet is a failure: its end reaches the inbox.
    f.script([{ text: 'not yet' }, { text: 'T' }]);
    const failed = await ended((await call('POST', `/v1/playbooks/${pb.id}/run`)).body.id);
    expect(failed.decision).toBe('fail');
    await vi.waitFor(async () => expect((await notified()).length).toBe(before + 1), {
      timeout: 15_000,
      interval: 100,
    });
    const [n] = await notified();
    expect(n).toMatchObject({ event_type: 'playbook_run.completed', subject_id: failed.id });
    expect((await notified()).some((x) => x.subject_id === passed.id)).toBe(false);
  });

  it('a criterion still unmet after max_chains: completed, decision fail', async () => {
    const pb = await playbook({
      trigger: 'manual',
      success_criteria: [{ type: 'matches', pattern: '^DONE$' }],
      chain_config: { max_chains: 2 },
    });
    f.mock.reset();
    f.script([{ text: 'not yet' }, { text: 'T' }, { text: 'still not' }]);
    const run = await ended((await call('POST', `/v1/playbooks/${pb.id}/run`)).body.id);
    expect(run).toMatchObject({ status: 'completed', decision: 'fail', chains_used: 2 });
    expect(run.error.code).toBe('max_chains');
    expect(run.error.message).toContain('/^DONE$/');
  });

  it('a webhook run hands the request body to the agent after the prompt; wrong token 404, throttled 429', async () => {
    const pb = await playbook({ trigger: 'webhook' });
    expect(pb.webhook_token).toMatch(/^pbh_/);
    expect(pb.webhook_url).toBe(`/v1/hooks/playbooks/${pb.webhook_token}`);
    expect((await call('GET', `/v1/playbooks/${pb.id}`)).body.webhook_token).toBeUndefined();

    const wrong = await f.t.call('POST', `/v1/hooks/playbooks/pbh_${'x'.repeat(43)}`, { body: { a: 1 } });
    expect(wrong.status).toBe(404);
    const huge = await f.t.call('POST', pb.webhook_url, { body: { blob: 'x'.repeat(70_000) } });
    expect(huge.status).toBe(413);

    f.mock.reset();
    f.script([{ text: 'Order 4711 noted.' }, { text: 'Orders' }]);
    const hook = await f.t.call('POST', pb.webhook_url, { body: { order: 4711, item: 'lamp' } });
    expect(hook.status).toBe(202);
    expect(hook.body).toMatchObject({ fired_by: 'webhook', playbook_id: pb.id });
    const run = await ended(hook.body.id);
    expect(run).toMatchObject({ status: 'completed', decision: 'pass' });
    const prompt = userSaid()[0]!;
    expect(prompt.startsWith('Summarise the orders.')).toBe(true);
    expect(prompt).toContain('"order": 4711');
    expect(prompt).toContain('"item": "lamp"');

    // Three requests an hour per token (this test's limit): the fourth is refused.
    expect((await f.t.call('POST', pb.webhook_url, { body: {} })).status).toBe(202);
    expect((await f.t.call('POST', pb.webhook_url, { body: {} })).status).toBe(202);
    const limited = await f.t.call('POST', pb.webhook_url, { body: {} });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');

    // A rotated token: the old one is unknown, the new one works.
    const rotated = await call('POST', `/v1/playbooks/${pb.id}/rotate-token`);
    expect(rotated.body.webhook_token).not.toBe(pb.webhook_token);
    f.t.clock.advance(3601_000);
    expect((await f.t.call('POST', pb.webhook_url, { body: {} })).status).toBe(404);
    const fresh = await f.t.call('POST', rotated.body.webhook_url, { body: {} });
    expect(fresh.status).toBe(202);
    await ended(fresh.body.id);
  });

  it('a playbook that is not a webhook one has no token to rotate', async () => {
    const pb = await playbook({ trigger: 'manual' });
    expect((await call('POST', `/v1/playbooks/${pb.id}/rotate-token`)).status).toBe(400);
  });

  it('a run cancelled while its task is being submitted: the task is cancelled and its workspace ended', async () => {
    const pb = await playbook({ trigger: 'manual' });
    const tasks = f.t.services.tasks;
    const submit = tasks.submit.bind(tasks);
    let made: Json | undefined;
    tasks.submit = (async (...args: Parameters<typeof submit>) => {
      const task = await submit(...args);
      const [active] = (await call('GET', `/v1/playbooks/${pb.id}/runs`)).body.data;
      expect((await call('POST', `/v1/playbook-runs/${active.id}/cancel`)).status).toBe(200);
      made = task as unknown as Json;
      return task;
    }) as typeof tasks.submit;
    try {
      f.mock.reset();
      f.script([{ text: 'never mind' }, { text: 'T' }]);
      const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
      const until = Date.now() + 20_000;
      let ws: Json | undefined;
      while (Date.now() < until) {
        if (made) ws = (await call('GET', `/v1/workspaces/${made.workspace_id}`)).body;
        if (ws?.status === 'terminated') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(ws?.status).toBe('terminated');
      const task = (await call('GET', `/v1/tasks/${made!.id}`)).body;
      expect(['cancelled', 'completed', 'failed']).toContain(task.status);
      expect((await call('GET', `/v1/playbook-runs/${fired.body.id}`)).body.status).toBe('cancelled');
    } finally {
      tasks.submit = submit;
    }
  });

  it('a run waiting between long chains does not hold up newer runs when the sweep takes few at a time', async () => {
    const options = (f.t.services.playbookScheduler as unknown as { options: { batch: number } }).options;
    const batch = options.batch;
    options.batch = 1;
    const slow = await playbook({
      trigger: 'manual',
      success_criteria: [{ type: 'contains', value: 'ALL DONE' }],
      chain_config: { max_chains: 20, chain_delay_ms: 60_000 },
    });
    const quick = await playbook({ trigger: 'manual' });
    try {
      f.mock.reset();
      f.script([{ text: 'not yet' }, { text: 'T' }, { text: 'Quick done.' }, { text: 'T' }]);
      const older = (await call('POST', `/v1/playbooks/${slow.id}/run`)).body;
      const until = Date.now() + 10_000;
      while (f.mock.requests.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await f.t.services.playbookScheduler.tick();
      const newer = (await call('POST', `/v1/playbooks/${quick.id}/run`)).body;
      // The older run waits a minute for its next chain; the newer one ends meanwhile.
      expect(await ended(newer.id, 8000)).toMatchObject({ status: 'completed', decision: 'pass' });
      expect((await call('GET', `/v1/playbook-runs/${older.id}`)).body.status).toBe('running');
      expect((await call('POST', `/v1/playbook-runs/${older.id}/cancel`)).status).toBe(200);
    } finally {
      options.batch = batch;
    }
  });
});

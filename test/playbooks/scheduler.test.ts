import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

/**
 * The scheduler on the test's clock: the server's timers are manual, so a
 * tick (every 5 s) happens only when the test moves time. Every model call
 * hangs, so a run stays running until it is cancelled.
 */
let f: TaskFixture;
let agent: Json;
const TICK_MS = 5000;

beforeAll(async () => {
  f = await startTasks({ manualTimers: true });
  agent = await f.agent();
});
afterAll(async () => {
  await f?.close();
});
beforeEach(() => {
  f.mock.reset();
  f.mock.reply({ hang: true, times: Number.POSITIVE_INFINITY });
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
const timers = () => f.t.timers!;
const now = () => f.t.clock.now().getTime();

async function playbook(body: Record<string, unknown>): Promise<Json> {
  const res = await call('POST', '/v1/playbooks', {
    agent_id: agent.id,
    name: 'pb',
    prompt: 'check',
    enabled: true,
    ...body,
  });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
const runsOf = async (id: string): Promise<Json[]> =>
  (await call('GET', `/v1/playbook-runs?playbook_id=${id}`)).body.data;
/** Moves the server's time on by `ms`, each tick it runs on the way awaited to its end. */
async function advance(ms: number) {
  const end = now() + ms;
  while (now() < end) {
    await timers().advance(Math.min(TICK_MS, end - now()));
    await f.t.services.playbookScheduler.settled();
  }
}
/** Moves the clock to `at` (ms), ticking on the way. */
const advanceTo = (at: number) => advance(Math.max(0, at - now()));
/** Cancels what is still running, so the next test starts clean. */
async function cancelAll(id: string) {
  for (const r of await runsOf(id))
    if (r.status === 'queued' || r.status === 'running')
      await call('POST', `/v1/playbook-runs/${r.id}/cancel`);
  await call('PATCH', `/v1/playbooks/${id}`, { enabled: false });
}

describe('the playbook scheduler', () => {
  it('fires a cron slot on time, not before, and moves next_run_at to the next slot', async () => {
    const pb = await playbook({ schedule: '*/10 * * * *' });
    const slot = Date.parse(pb.next_run_at);
    await advanceTo(slot - 1);
    expect(await runsOf(pb.id)).toEqual([]);
    await advance(TICK_MS);
    const runs = await runsOf(pb.id);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      fired_by: 'cron',
      slot_at: new Date(slot).toISOString(),
      status: 'running',
    });
    expect(runs[0]!.task_id).toMatch(/^task_/);
    expect(runs[0]!.workspace_id).toMatch(/^ws_/);
    const after = (await call('GET', `/v1/playbooks/${pb.id}`)).body;
    expect(after.next_run_at).toBe(new Date(slot + 10 * 60_000).toISOString());
    expect(Date.parse(after.last_run_at)).toBeGreaterThanOrEqual(slot);
    await cancelAll(pb.id);
  });

  it('fires an interval playbook every interval, and a run that would overlap the last is skipped', async () => {
    const pb = await playbook({ trigger: 'interval', interval_seconds: 60 });
    const first = Date.parse(pb.next_run_at);
    expect(first).toBe(now() + 60_000);
    await advanceTo(first - 1);
    expect(await runsOf(pb.id)).toEqual([]);
    await advance(TICK_MS);
    await advanceTo(first + 60_000 + TICK_MS - 1);
    const runs = await runsOf(pb.id);
    expect(runs.map((r) => [r.fired_by, r.status, r.decision])).toEqual([
      ['interval', 'skipped', 'skipped'],
      ['interval', 'running', null],
    ]);
    expect(runs.map((r) => r.slot_at)).toEqual([
      new Date(first + 60_000).toISOString(),
      new Date(first).toISOString(),
    ]);
    expect(runs[0]!.task_id).toBeNull();
    await cancelAll(pb.id);
  });

  it('pause stops every playbook of the team from firing (admin only); resume fires the missed slot once', async () => {
    const pb = await playbook({ schedule: '*/5 * * * *' });
    const writer = await f.t.apiKey(f.user.token, ['write']);
    expect((await f.t.call('POST', '/v1/playbooks/scheduler/pause', { token: writer.key })).status).toBe(403);
    const paused = await call('POST', '/v1/playbooks/scheduler/pause');
    expect(paused.status).toBe(200);
    expect(paused.body.paused).toBe(true);
    await advanceTo(Date.parse(pb.next_run_at) + 5 * 60_000 + TICK_MS);
    expect(await runsOf(pb.id)).toEqual([]);
    const status = (await call('GET', '/v1/playbooks/scheduler/status')).body;
    expect(status).toMatchObject({ paused: true, leader: true, leader_elected: true, due_count: 1 });
    expect(Date.parse(status.last_tick_at)).toBeGreaterThan(now() - 2 * TICK_MS);
    // Another team is not paused.
    const other = await f.t.signup();
    expect((await call('GET', '/v1/playbooks/scheduler/status', undefined, other.token)).body.paused).toBe(
      false,
    );

    const resumed = await call('POST', '/v1/playbooks/scheduler/resume');
    expect(resumed.body.paused).toBe(false);
    await advance(TICK_MS);
    expect(await runsOf(pb.id)).toHaveLength(1);
    expect((await call('GET', '/v1/playbooks/scheduler/status')).body.due_count).toBe(0);
    await cancelAll(pb.id);
  });

  it('moves a run on when its chain ends, without waiting for a tick', async () => {
    const pb = await playbook({ trigger: 'manual' });
    f.mock.reset();
    f.script([{ text: 'Checked: all good.' }]);
    const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
    expect(fired.status).toBe(202);
    // No timer moves here: only the chain's end can end the run.
    await vi.waitFor(
      async () => {
        const run = (await call('GET', `/v1/playbook-runs/${fired.body.id}`)).body;
        expect(run).toMatchObject({ status: 'completed', decision: 'pass', chains_used: 1 });
        expect(run.result_summary).toBe('Checked: all good.');
      },
      { timeout: 15_000, interval: 50 },
    );
  });

  it('moves a run on when its first chain ends before the run has recorded it, without waiting for a tick', async () => {
    const pb = await playbook({ trigger: 'manual' });
    const tasks = f.t.services.tasks;
    const submit = tasks.submit.bind(tasks);
    // The chain's task runs here from its submit on: its turn ends (and the turn's end finds no
    // running run of it) before the run's row records the task.
    tasks.submit = (async (...args: Parameters<typeof submit>) => {
      const task = await submit(...args);
      await vi.waitFor(
        async () =>
          expect((await call('GET', `/v1/workspaces/${task.workspace_id}`)).body.status).toBe('idle'),
        { timeout: 15_000, interval: 20 },
      );
      await new Promise((r) => setTimeout(r, 200));
      return task;
    }) as typeof tasks.submit;
    try {
      f.mock.reset();
      f.script([{ text: 'Done before it was recorded.' }]);
      const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
      expect(fired.status).toBe(202);
      await vi.waitFor(
        async () =>
          expect((await call('GET', `/v1/playbook-runs/${fired.body.id}`)).body).toMatchObject({
            status: 'completed',
            decision: 'pass',
            result_summary: 'Done before it was recorded.',
          }),
        { timeout: 15_000, interval: 50 },
      );
    } finally {
      tasks.submit = submit;
    }
  });

  it('cancels a running run (its task too); cancelling it again, or a skipped run, is a 409', async () => {
    const pb = await playbook({ trigger: 'manual' });
    const fired = await call('POST', `/v1/playbooks/${pb.id}/run`);
    expect(fired.status).toBe(202);
    expect(fired.body).toMatchObject({ fired_by: 'manual', status: 'queued', slot_at: null });
    await advance(TICK_MS);
    const second = await call('POST', `/v1/playbooks/${pb.id}/run`);
    expect(second.body).toMatchObject({ status: 'skipped', decision: 'skipped' });
    // The fire starts its run beside its answer: the tick's own start finds it claimed and leaves it.
    let run: Json = {};
    await vi.waitFor(
      async () => {
        run = (await call('GET', `/v1/playbook-runs/${fired.body.id}`)).body;
        expect(run.status).toBe('running');
      },
      { timeout: 10_000, interval: 25 },
    );
    const cancelled = await call('POST', `/v1/playbook-runs/${run.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', decision: null });
    expect((await f.until(run.task_id, ['cancelled'])).status).toBe('cancelled');
    // The cancel is the person's, with the request it came by: it is audited.
    const audit = await call('GET', '/v1/audit-logs?action=playbook_run.cancelled');
    expect(audit.status).toBe(200);
    expect(audit.body.data[0]).toMatchObject({ actor_kind: 'user', actor_id: f.user.user.id });
    expect(audit.body.data[0].request_id).toBeTruthy();
    const again = await call('POST', `/v1/playbook-runs/${run.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('run_not_active');
    expect((await call('POST', `/v1/playbook-runs/${second.body.id}/cancel`)).status).toBe(409);
    expect(
      (await call('GET', '/v1/playbook-runs?status=skipped')).body.data.map((r: Json) => r.id),
    ).toContain(second.body.id);
  });
});

describe('two servers on one database', () => {
  let t2: TestApp;
  // Runs of an agent with no provider key fail at their start: no task, no capsule, the slots still recorded.
  let keyless: Json;
  beforeAll(async () => {
    t2 = await createTestApp({ shareWith: f.t, manualTimers: true });
    keyless = await f.agent({ bindings: {} });
  });
  afterAll(async () => {
    await t2?.close();
  });

  it('one leads at a time; both ticking together never fire a slot twice', async () => {
    const s1 = f.t.services.playbookScheduler;
    const s2 = t2.services.playbookScheduler;
    const pbs = await Promise.all(
      [1, 2, 3].map(() => playbook({ schedule: '* * * * *', agent_id: keyless.id })),
    );
    const leaders = await Promise.all([s1.tick(), s2.tick()]);
    expect(leaders.filter(Boolean)).toHaveLength(1);
    for (let minute = 1; minute <= 3; minute++) {
      f.t.clock.advance(60_000);
      await Promise.all([s1.tick(), s2.tick(), s2.tick(), s1.tick()]);
    }
    // The database's own guard: the same slot fired by both at once (as two leaders would) records one run.
    const pb = (await call('GET', `/v1/playbooks/${pbs[0]!.id}`)).body;
    const row = await f.t.services.playbooks.found(f.user.team.id, pb.id);
    const slot = { at: row.nextRunAt!, next: new Date(row.nextRunAt!.getTime() + 60_000) };
    const actor = { actorKind: 'system', actorId: 'test' };
    const [a, b] = await Promise.all([
      f.t.services.playbooks.runs.fire(row, { firedBy: 'cron', actor, slot }),
      t2.services.playbooks.runs.fire(row, { firedBy: 'cron', actor, slot }),
    ]);
    expect([a, b].filter(Boolean)).toHaveLength(1);
    for (const p of pbs) {
      const slots = (await runsOf(p.id)).map((r) => r.slot_at);
      expect(slots.length).toBeGreaterThanOrEqual(3);
      expect(new Set(slots).size).toBe(slots.length);
    }
    // The leader stops: the other takes over at its next tick.
    const [leader, follower] = leaders[0] ? [s1, s2] : [s2, s1];
    await leader.stop();
    expect(await follower.tick()).toBe(true);
    for (const p of pbs) await cancelAll(p.id);
  }, 120_000);

  // Last: the first server's timers are left behind by the jump (they are not advanced again).
  it('after downtime a missed cron slot fires once, and next_run_at is the next future slot', async () => {
    const pb = await playbook({ schedule: '0 * * * *', agent_id: keyless.id });
    const missed = Date.parse(pb.next_run_at);
    // Every server down for five hours; then one starts again and ticks, and ticks again.
    await f.t.services.playbookScheduler.stop();
    f.t.clock.set(new Date(missed + 5 * 3600_000 + 60_000));
    expect(await t2.services.playbookScheduler.tick()).toBe(true);
    f.t.clock.advance(TICK_MS);
    await t2.services.playbookScheduler.tick();
    const runs = await runsOf(pb.id);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      slot_at: new Date(missed).toISOString(),
      status: 'failed',
      decision: 'fail',
    });
    expect(runs[0]!.error.code).toBe('no_provider_key');
    expect((await call('GET', `/v1/playbooks/${pb.id}`)).body.next_run_at).toBe(
      new Date(missed + 6 * 3600_000).toISOString(),
    );
    await cancelAll(pb.id);
  });
});

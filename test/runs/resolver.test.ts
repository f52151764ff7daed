import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MINUTE_MS, SECOND_MS } from '../../src/core/clock.ts';
import { type Log, ManualTimers, silentLog } from '../../src/core/context.ts';
import type { AppError } from '../../src/core/errors.ts';
import { NOOP_TRACER } from '../../src/core/tracing.ts';
import type { Db } from '../../src/db/client.ts';
import { events } from '../../src/db/schema/index.ts';
import { RunsService } from '../../src/modules/runs/service.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { agentWithPolicy, type GatewayAgent, leaseRows, runRow, stepRows } from './setup.ts';

let t: TestApp;
let u: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
});
afterAll(() => t.close());

const runs = () => t.services.runs;

function resolve(g: GatewayAgent, extra: Partial<Parameters<RunsService['resolveRun']>[0]> = {}) {
  return runs().resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy, ...extra });
}

async function resolveError(g: GatewayAgent, extra: Partial<Parameters<RunsService['resolveRun']>[0]> = {}) {
  try {
    await resolve(g, extra);
  } catch (err) {
    return err as AppError;
  }
  throw new Error('expected the resolution to fail');
}

/** One settled call, so the run has activity at the clock's current time. */
async function step(g: GatewayAgent, runId: string) {
  const r = await runs().reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros: 100,
    tokens: 10,
  });
  if (!r.ok) throw new Error(r.message);
  await runs().settle(r.reservationId, {
    type: 'llm_call',
    status: 'success',
    provider: 'openai',
    model: 'gpt-4o',
    usage: { input: 5, output: 5, cacheRead: 0, cacheCreation: 0 },
    costMicros: 100,
  });
}

async function forceStop(runId: string) {
  const res = await t.call('POST', `/v1/runs/${runId}/stop`, { token: u.token });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

describe('implicit grouping', () => {
  it('joins the current run within the time window; name only on the first request; metadata merged', async () => {
    const g = await agentWithPolicy(t, u, { implicit_run_grouping: { time_window_seconds: 60 } });
    const first = await resolve(g, { runName: 'nightly', runMetadata: { job: 'a' } });
    expect(first).toMatchObject({ created: true, creationMethod: 'implicit', stepCount: 0 });
    await step(g, first.id);
    t.clock.advance(50 * SECOND_MS);
    const second = await resolve(g, { runName: 'ignored', runMetadata: { ticket: 7 } });
    expect(second).toMatchObject({ id: first.id, created: false });
    const row = await runRow(t, first.id);
    expect(row).toMatchObject({
      name: 'nightly',
      metadata: { job: 'a', ticket: 7 },
      policyId: g.policy.id,
      policyName: g.policy.name,
      creationMethod: 'implicit',
    });
    expect(row.policySnapshot).toMatchObject({ implicit_run_grouping: { time_window_seconds: 60 } });
    const started = await t.database.db.select().from(events).where(eq(events.subjectId, first.id));
    expect(started.map((e) => e.type)).toEqual(['run.started']);
  });

  it('auto-completes the old run (idle_auto_complete) once the window has elapsed and starts a new one', async () => {
    const g = await agentWithPolicy(t, u, {
      implicit_run_grouping: { time_window_seconds: 60 },
      outcome_defaults: { idle_auto_complete: 'partial' },
    });
    const first = await resolve(g);
    await step(g, first.id);
    t.clock.advance(61 * SECOND_MS);
    const next = await resolve(g);
    expect(next.id).not.toBe(first.id);
    expect(next.created).toBe(true);
    expect(await runRow(t, first.id)).toMatchObject({
      status: 'completed',
      endedReason: 'idle_auto_complete',
      completionReason: 'idle_timeout',
      outcome: 'partial',
    });
  });

  it('keeps a run with a call in flight joinable past the window', async () => {
    const g = await agentWithPolicy(t, u, { implicit_run_grouping: { time_window_seconds: 30 } });
    const first = await resolve(g);
    const inFlight = await runs().reserve({
      teamId: g.teamId,
      runId: first.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 10,
      tokens: 10,
    });
    expect(inFlight.ok).toBe(true);
    t.clock.advance(5 * MINUTE_MS);
    expect((await resolve(g)).id).toBe(first.id);
  });

  it('gives a burst of concurrent first requests one run', async () => {
    const g = await agentWithPolicy(t, u);
    const resolved = await Promise.all(Array.from({ length: 50 }, () => resolve(g)));
    expect(new Set(resolved.map((r) => r.id)).size).toBe(1);
    expect(resolved.filter((r) => r.created)).toHaveLength(1);
  });

  it('keeps policies apart: the same agent under two policies has two runs', async () => {
    const g = await agentWithPolicy(t, u);
    const other = await agentWithPolicy(t, u);
    const a = await resolve(g);
    const b = await resolve({ ...g, policy: other.policy });
    expect(a.id).not.toBe(b.id);
    expect((await runRow(t, b.id)).policyId).toBe(other.policy.id);
  });
});

describe('explicit runs', () => {
  it('new_run completes every running run of the agent and bypasses nothing else', async () => {
    const g = await agentWithPolicy(t, u, { outcome_defaults: { new_run_requested: 'success' } });
    const other = await agentWithPolicy(t, u);
    const a = await resolve(g);
    const b = await resolve({ ...g, policy: other.policy });
    const fresh = await resolve(g, { newRun: true, runName: 'batch-2' });
    expect(fresh).toMatchObject({ created: true, creationMethod: 'explicit' });
    expect(await runRow(t, fresh.id)).toMatchObject({ status: 'running', name: 'batch-2' });
    for (const id of [a.id, b.id]) {
      expect(await runRow(t, id)).toMatchObject({
        status: 'completed',
        endedReason: 'new_run_requested',
        completionReason: 'explicit',
      });
    }
    // outcome_defaults come from each run's own policy snapshot.
    expect((await runRow(t, a.id)).outcome).toBe('success');
    expect((await runRow(t, b.id)).outcome).toBeNull();
    // Implicit requests now join the new run.
    expect((await resolve(g)).id).toBe(fresh.id);
  });

  it('attaches by id, merging metadata; refuses another agent’s run, a finished run and a force-stopped one', async () => {
    const g = await agentWithPolicy(t, u);
    const other = await agentWithPolicy(t, u);
    const run = await resolve(g, { newRun: true });
    expect(await resolve(g, { runId: run.id, runMetadata: { step: 'x' } })).toMatchObject({
      id: run.id,
      created: false,
    });
    expect((await runRow(t, run.id)).metadata).toEqual({ step: 'x' });

    const foreign = await resolveError(other, { runId: run.id });
    expect([foreign.statusCode, foreign.code]).toEqual([404, 'not_found']);
    const missing = await resolveError(g, { runId: 'run_00000000000000000000000000' });
    expect(missing.statusCode).toBe(404);

    const done = await resolve(g, { newRun: true });
    const notRunning = await resolveError(g, { runId: run.id });
    expect([notRunning.statusCode, notRunning.code]).toEqual([409, 'run_not_running']);

    await forceStop(done.id);
    const stopped = await resolveError(g, { runId: done.id });
    expect([stopped.statusCode, stopped.code]).toEqual([403, 'run_force_stopped']);
    expect(stopped.details).toMatchObject({ run_id: done.id });
  });
});

describe('force-stop cooldown', () => {
  it('blocks implicit runs of that agent+policy until the cooldown passes or an admin unblocks', async () => {
    const g = await agentWithPolicy(t, u, { implicit_run_grouping: { force_stop_cooldown_minutes: 10 } });
    const run = await resolve(g);
    const stopped = await forceStop(run.id);
    expect(stopped).toMatchObject({ status: 'force_stopped', ended_reason: 'admin_stopped' });

    const blocked = await resolveError(g);
    expect([blocked.statusCode, blocked.code]).toEqual([403, 'run_blocked_after_force_stop']);
    expect(blocked.details).toMatchObject({ force_stopped_run_id: run.id });

    // Another policy of the same agent is not blocked.
    const other = await agentWithPolicy(t, u);
    expect((await resolve({ ...g, policy: other.policy })).created).toBe(true);

    t.clock.advance(9 * MINUTE_MS);
    expect((await resolveError(g)).code).toBe('run_blocked_after_force_stop');
    t.clock.advance(2 * MINUTE_MS);
    expect((await resolve(g)).created).toBe(true);
  });

  it('lets an explicit new run through, and /unblock lifts the block', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await resolve(g);
    await forceStop(run.id);
    expect((await resolveError(g)).code).toBe('run_blocked_after_force_stop');
    const explicit = await resolve(g, { newRun: true });
    expect(explicit.created).toBe(true);
    await forceStop(explicit.id);

    const notStopped = await t.call('POST', `/v1/runs/${(await resolve(g, { newRun: true })).id}/unblock`, {
      token: u.token,
    });
    expect([notStopped.status, notStopped.body.error.code]).toEqual([409, 'run_not_force_stopped']);
    // End the explicit run again so only the force-stops matter.
    await t.database.db.execute(
      sql`update runs set status = 'completed' where agent_id = ${g.agent.id} and status = 'running'`,
    );
    t.services.runs.resolver.clear();

    for (const id of [run.id, explicit.id]) {
      const res = await t.call('POST', `/v1/runs/${id}/unblock`, { token: u.token });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.status).toBe('force_stopped');
      expect(res.body.force_stop_lifted_at).toBe(t.clock.now().toISOString());
    }
    expect((await resolve(g)).created).toBe(true);
    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, run.id));
    expect(evs.map((e) => e.type)).toEqual(['run.started', 'run.force_stopped', 'run.unblocked']);
  });

  it('a cooldown of 0 never blocks', async () => {
    const g = await agentWithPolicy(t, u, { implicit_run_grouping: { force_stop_cooldown_minutes: 0 } });
    await forceStop((await resolve(g)).id);
    expect((await resolve(g)).created).toBe(true);
  });
});

describe('sweeps', () => {
  it('ends runs idle past run_idle_timeout_seconds (idle_timeout), not busy or recent ones', async () => {
    const g = await agentWithPolicy(t, u, {
      implicit_run_grouping: { run_idle_timeout_seconds: 120, time_window_seconds: 600 },
    });
    const busy = await agentWithPolicy(t, u, { implicit_run_grouping: { run_idle_timeout_seconds: 120 } });
    const recent = await agentWithPolicy(t, u, { implicit_run_grouping: { run_idle_timeout_seconds: 600 } });
    const idleRun = await resolve(g);
    await step(g, idleRun.id);
    const busyRun = await resolve(busy);
    const inFlight = await runs().reserve({
      teamId: busy.teamId,
      runId: busyRun.id,
      agentId: busy.agent.id,
      policyId: busy.policy.id,
      amountMicros: 5,
      tokens: 5,
    });
    expect(inFlight.ok).toBe(true);
    const recentRun = await resolve(recent);

    t.clock.advance(100 * SECOND_MS);
    expect(await runs().sweepIdleRuns()).not.toContain(idleRun.id);
    t.clock.advance(30 * SECOND_MS);
    const ended = await runs().sweepIdleRuns();
    expect(ended).toContain(idleRun.id);
    expect(ended).not.toContain(busyRun.id);
    expect(ended).not.toContain(recentRun.id);
    expect(await runRow(t, idleRun.id)).toMatchObject({
      status: 'completed',
      endedReason: 'idle_timeout',
      completionReason: 'idle_timeout',
      outcome: null,
    });
    // The sweep ended it in the database; the next request starts a new run, not the cached one.
    expect((await resolve(g)).id).not.toBe(idleRun.id);
  });

  it('at start on an exclusive database, charges the leases left by the dead process but leaves running runs alone', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await resolve(g, { newRun: true });
    const r = await runs().reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 42_000,
      tokens: 10,
    });
    if (!r.ok) throw new Error(r.message);
    // The lease taken ahead for the next calls lands first (it would grow the lease after it was read).
    await runs().budget.leasesSettled();
    // As if the server died with the call in flight and came back 20 minutes later.
    t.clock.advance(20 * MINUTE_MS);
    await t.database.db.execute(
      sql`update runs set last_step_at = ${t.clock.now().toISOString()}::timestamptz where id = ${run.id}`,
    );
    const [lease] = await leaseRows(t, run.id);
    const restarted = new RunsService(t.database.db, t.services.ctx, t.services.events, async () => true, {
      exclusiveDatabase: true,
    });
    await restarted.startSweeps();
    await restarted.shutdown();
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    // The whole lease is charged: at least the call in flight, at most a tenth of a limit more (none here).
    expect(lease!.amountMicros).toBeGreaterThanOrEqual(42_000);
    expect(await runRow(t, run.id)).toMatchObject({
      status: 'running',
      costMicros: lease!.amountMicros,
      reservedMicros: 0,
    });
    const [charged] = await stepRows(t, run.id);
    expect(charged).toMatchObject({ errorKind: 'unsettled_reservation', costMicros: lease!.amountMicros });
    await runs().budget.renew();
  });
});

describe('the sweeps on their timer', () => {
  it('log a failed round with what it swept, and the next round still ends the idle run', async () => {
    const g = await agentWithPolicy(t, u, { implicit_run_grouping: { run_idle_timeout_seconds: 120 } });
    const run = await resolve(g, { newRun: true });
    await runs().flush();
    t.clock.advance(130 * SECOND_MS);
    // The next transaction fails: the idle sweep's, on the first round.
    const failing = { left: 0 };
    const db = new Proxy(t.database.db, {
      get(target, prop, receiver) {
        if (prop === 'transaction' && failing.left > 0) {
          failing.left--;
          return () => Promise.reject(new Error('the database went away'));
        }
        return Reflect.get(target, prop, receiver);
      },
    }) as Db;
    const errors: Array<{ obj: Record<string, unknown>; msg: string | undefined }> = [];
    const log: Log = {
      ...silentLog,
      error: (obj, msg) => errors.push({ obj: obj as never, msg }),
      child: () => log,
    };
    const timers = new ManualTimers(t.clock);
    const swept = new RunsService(
      db,
      { clock: t.clock, timers, log, tracer: NOOP_TRACER },
      t.services.events,
      async () => true,
      {
        sweepIntervalMs: 60 * SECOND_MS,
      },
    );
    failing.left = 1;
    await swept.startSweeps();
    expect(failing.left).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toBe('ending idle runs failed');
    expect(errors[0]!.obj).toMatchObject({ sweep: 'idle_runs', default_idle_timeout_sec: 300 });
    expect(errors[0]!.obj.err).toBeInstanceOf(Error);
    expect((await runRow(t, run.id)).status).toBe('running');

    await timers.advance(60 * SECOND_MS);
    await swept.shutdown();
    expect(await runRow(t, run.id)).toMatchObject({ status: 'completed', endedReason: 'idle_timeout' });
    expect(errors).toHaveLength(1);
    expect(timers.pending).toBe(0);
  });
});

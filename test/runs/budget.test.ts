import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../../src/core/clock.ts';
import { ManualTimers, silentLog } from '../../src/core/context.ts';
import { NOOP_TRACER } from '../../src/core/tracing.ts';
import { events } from '../../src/db/schema/index.ts';
import { BudgetSystem } from '../../src/modules/runs/budget.ts';
import { type ReserveResult, RunsService, type StepRecord } from '../../src/modules/runs/service.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import {
  agentWithPolicy,
  type GatewayAgent,
  hourRows,
  leaseRows,
  ledgerRows,
  runRow,
  stepRows,
  usage,
} from './setup.ts';

let t: TestApp;
let u: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
});
afterAll(() => t.close());

const runs = () => t.services.runs;

async function newRun(g: GatewayAgent) {
  return runs().resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy, newRun: true });
}

function reserveFor(
  g: GatewayAgent,
  runId: string,
  amountMicros: number,
  extra: { tokens?: number; cap?: number } = {},
) {
  return runs().reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros,
    tokens: extra.tokens ?? 100,
    model: 'claude-sonnet-4-5',
    maxCostPerHourMicros: extra.cap ?? null,
  });
}

function llmStep(costMicros: number, tokens = usage(60, 40)): StepRecord {
  return {
    type: 'llm_call',
    status: 'success',
    provider: 'anthropic',
    model: 'claude-sonnet-4-5',
    providerKeyId: 'pkey_test',
    usage: tokens,
    costMicros,
  };
}

const okIds = (results: ReserveResult[]) => results.flatMap((r) => (r.ok ? [r.reservationId] : []));

describe('reserve under concurrency (the budget holds)', () => {
  it('admits exactly what fits when 200 calls reserve at once, and the settled cost stays within the limit', async () => {
    // $1.01 hard limit, each call may cost up to $0.02: exactly 50 fit (51 × 0.02 = 1.02).
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1.01 } });
    const run = await newRun(g);
    const perCall = 20_000;
    const results = await Promise.all(Array.from({ length: 200 }, () => reserveFor(g, run.id, perCall)));
    const admitted = okIds(results);
    const refused = results.filter((r) => !r.ok);
    expect(admitted).toHaveLength(50);
    expect(refused).toHaveLength(150);
    for (const r of refused) expect(r).toMatchObject({ ok: false, reason: 'budget_exceeded' });

    // The leases hold at least what is in flight, never more than the limit.
    const reserving = await runRow(t, run.id);
    expect(reserving.reservedMicros).toBeGreaterThanOrEqual(50 * perCall);
    expect(reserving.reservedMicros).toBeLessThanOrEqual(1_010_000);
    expect((await leaseRows(t, run.id)).length).toBeGreaterThan(0);

    // Settle every admitted call concurrently at its full maximum.
    await Promise.all(admitted.map((id) => runs().settle(id, llmStep(perCall))));
    const settled = await runRow(t, run.id);
    console.log(
      `[concurrency] ${t.database.kind}: 200 reserves of $0.02 against $1.01 → ${admitted.length} admitted, ` +
        `${refused.length} refused; settled cost $${settled.costMicros / 1e6} (limit $1.01)`,
    );
    expect(settled.costMicros).toBe(1_000_000);
    expect(settled.costMicros).toBeLessThanOrEqual(settled.hardLimitMicros!);
    expect(settled.stepCount).toBe(50);
    expect(settled.inputTokens).toBe(50 * 60);
    expect(settled.outputTokens).toBe(50 * 40);
    expect(settled.primaryModel).toBe('claude-sonnet-4-5');
    await runs().flush();
    expect((await runRow(t, run.id)).reservedMicros).toBe(0);
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    const ledger = await ledgerRows(t, run.id);
    expect(ledger).toHaveLength(50);
    expect(ledger.reduce((sum, l) => sum + l.costMicros, 0)).toBe(settled.costMicros);
    const [hour] = await hourRows(t, g.agent.id);
    expect(hour).toMatchObject({ costMicros: 1_000_000, reservedMicros: 0 });

    // What is left ($0.01) is less than one more call's maximum.
    expect(await reserveFor(g, run.id, perCall)).toMatchObject({ ok: false, reason: 'budget_exceeded' });
    const small = await reserveFor(g, run.id, 10_000);
    expect(small).toMatchObject({ ok: true, remainingMicros: 0 });
  });

  it('keeps the recorded spend within the limit when calls reserve and settle interleaved', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1 } });
    const run = await newRun(g);
    const maxMicros = 30_000;
    let admittedCount = 0;
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        // Each worker keeps calling until it is refused; settlements free money for the others.
        for (let call = 0; ; call++) {
          const r = await reserveFor(g, run.id, maxMicros);
          if (!r.ok) return;
          admittedCount++;
          // Real usage: anywhere from a third of the maximum to all of it.
          await runs().settle(r.reservationId, llmStep(10_000 + (((i + 1) * (call + 3) * 7919) % 20_001)));
        }
      }),
    );
    await runs().flush();
    const row = await runRow(t, run.id);
    console.log(
      `[concurrency] ${t.database.kind}: interleaved reserve+settle, $0.03 max per call against $1 → ` +
        `${admittedCount} admitted, spent $${row.costMicros / 1e6}, status ${row.status}`,
    );
    expect(row.costMicros).toBeLessThanOrEqual(1_000_000);
    expect(admittedCount).toBeGreaterThan(1_000_000 / maxMicros);
    expect(row.reservedMicros).toBe(0);
    expect(row.stepCount).toBe(admittedCount);
    const ledger = await ledgerRows(t, run.id);
    expect(ledger.reduce((sum, l) => sum + l.costMicros, 0)).toBe(row.costMicros);
  });

  it('holds the hourly cap: a refusal by the hour leaves nothing reserved on the run', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 10, max_cost_per_hour_usd: 0.5 } });
    const run = await newRun(g);
    const results = await Promise.all(
      Array.from({ length: 100 }, () => reserveFor(g, run.id, 20_000, { cap: 500_000 })),
    );
    const admitted = okIds(results);
    expect(admitted).toHaveLength(25);
    for (const r of results.filter((x) => !x.ok))
      expect(r).toMatchObject({ reason: 'hourly_budget_exceeded' });
    expect((await runRow(t, run.id)).reservedMicros).toBeGreaterThanOrEqual(25 * 20_000);
    const [hour] = await hourRows(t, g.agent.id);
    expect(hour).toMatchObject({ reservedMicros: 500_000, costMicros: 0 });

    // Settling for less frees the difference for the hour; the next hour starts empty.
    await Promise.all(admitted.map((id) => runs().settle(id, llmStep(10_000))));
    await runs().flush();
    expect((await hourRows(t, g.agent.id))[0]).toMatchObject({ reservedMicros: 0, costMicros: 250_000 });
    expect(await reserveFor(g, run.id, 300_000, { cap: 500_000 })).toMatchObject({ ok: false });
    expect(await reserveFor(g, run.id, 250_000, { cap: 500_000 })).toMatchObject({ ok: true });
    const later = await runs().reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 400_000,
      tokens: 10,
      maxCostPerHourMicros: 500_000,
      now: new Date(t.clock.now().getTime() + HOUR_MS),
    });
    expect(later.ok).toBe(true);
  });

  it('refuses by the token limit too', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_tokens: 1000 } });
    const run = await newRun(g);
    expect(await reserveFor(g, run.id, 0, { tokens: 600 })).toMatchObject({ ok: true, remainingTokens: 400 });
    const refused = await reserveFor(g, run.id, 0, { tokens: 600 });
    expect(refused).toMatchObject({ ok: false, reason: 'budget_exceeded' });
    expect(refused.ok === false && refused.message).toContain('token limit');
  });

  it('refuses a run that is not running, and a run of another agent', async () => {
    const g = await agentWithPolicy(t, u);
    const other = await agentWithPolicy(t, u);
    const run = await newRun(g);
    expect(
      await runs().reserve({
        teamId: g.teamId,
        runId: run.id,
        agentId: other.agent.id,
        policyId: g.policy.id,
        amountMicros: 1,
        tokens: 1,
      }),
    ).toMatchObject({ ok: false, reason: 'run_not_running' });
    await newRun(g); // ends the first run (new_run_requested)
    expect(await reserveFor(g, run.id, 1)).toMatchObject({
      ok: false,
      reason: 'run_not_running',
      message: `run ${run.id} is completed`,
    });
  });
});

describe('settle and release', () => {
  it('release gives the money back and leaves no step', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1 } });
    const run = await newRun(g);
    const r = await reserveFor(g, run.id, 400_000);
    if (!r.ok) throw new Error('refused');
    expect(await runs().release(r.reservationId)).toBe(true);
    expect(await runs().release(r.reservationId)).toBe(false);
    // Released money is free at once, in memory: the whole limit fits again.
    const again = await reserveFor(g, run.id, 1_000_000);
    expect(again.ok).toBe(true);
    if (again.ok) await runs().release(again.reservationId);
    await runs().flush();
    const row = await runRow(t, run.id);
    expect(row).toMatchObject({ reservedMicros: 0, reservedTokens: 0, costMicros: 0, stepCount: 0 });
    expect(await stepRows(t, run.id)).toHaveLength(0);
    expect(await hourRows(t, g.agent.id)).toHaveLength(0);
  });

  it('ends the run at its hard limit (cost_limit) with run.budget_exceeded, outcome from outcome_defaults', async () => {
    const g = await agentWithPolicy(t, u, {
      budget: { hard_limit_usd: 0.05 },
      outcome_defaults: { cost_limit: 'partial' },
    });
    const run = await newRun(g);
    const r = await reserveFor(g, run.id, 50_000);
    if (!r.ok) throw new Error('refused');
    const settled = await runs().settle(r.reservationId, llmStep(50_000));
    expect(settled.kind).toBe('settled');
    const row = await runRow(t, run.id);
    expect(row).toMatchObject({
      status: 'budget_exceeded',
      endedReason: 'cost_limit',
      outcome: 'partial',
      costMicros: 50_000,
    });
    const evs = await t.database.db.select().from(events).where(eq(events.subjectId, run.id));
    expect(evs.map((e) => e.type)).toContain('run.budget_exceeded');
    // A second settle of the same reservation charges nothing again.
    expect(await runs().settle(r.reservationId, llmStep(50_000))).toMatchObject({ kind: 'missing' });
    expect(await stepRows(t, run.id)).toHaveLength(1);
  });

  it('ends the run at its token limit (token_limit)', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_tokens: 100 } });
    const run = await newRun(g);
    const r = await reserveFor(g, run.id, 0, { tokens: 100 });
    if (!r.ok) throw new Error('refused');
    await runs().settle(r.reservationId, llmStep(0, usage(50, 40, 10)));
    expect(await runRow(t, run.id)).toMatchObject({ status: 'budget_exceeded', endedReason: 'token_limit' });
  });

  it('flags the alert threshold once (run.alert_threshold); stop_and_alert ends the run', async () => {
    const g = await agentWithPolicy(t, u, { budget: { alert_threshold_usd: 0.01 } });
    const run = await newRun(g);
    for (let i = 0; i < 3; i++) {
      const r = await reserveFor(g, run.id, 10_000);
      if (!r.ok) throw new Error('refused');
      await runs().settle(r.reservationId, llmStep(6_000));
    }
    const row = await runRow(t, run.id);
    expect(row).toMatchObject({ status: 'running', alertThresholdExceeded: true });
    expect(row.alertSentAt).not.toBeNull();
    const alerts = await t.database.db.select().from(events).where(eq(events.subjectId, run.id));
    expect(alerts.filter((e) => e.type === 'run.alert_threshold')).toHaveLength(1);

    const s = await agentWithPolicy(t, u, {
      budget: { alert_threshold_usd: 0.01, on_alert_threshold: 'stop_and_alert' },
    });
    const stopped = await newRun(s);
    const r = await reserveFor(s, stopped.id, 20_000);
    if (!r.ok) throw new Error('refused');
    await runs().settle(r.reservationId, llmStep(15_000));
    expect(await runRow(t, stopped.id)).toMatchObject({
      status: 'budget_exceeded',
      endedReason: 'alert_threshold_stop',
      alertThresholdExceeded: true,
    });
  });

  it('a call that finishes after its run was completed is still charged to it', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const r = await reserveFor(g, run.id, 5_000);
    if (!r.ok) throw new Error('refused');
    await newRun(g); // completes the first run while the call is in flight
    await runs().settle(r.reservationId, llmStep(4_000));
    await runs().flush();
    expect(await runRow(t, run.id)).toMatchObject({
      status: 'completed',
      costMicros: 4_000,
      reservedMicros: 0,
    });
  });
});

describe('crash safety', () => {
  it('charges the leases of a process that stopped renewing them, in full, with a ledger entry', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1 } });
    const run = await newRun(g);
    const a = await reserveFor(g, run.id, 70_000);
    const b = await reserveFor(g, run.id, 30_000, { tokens: 50 });
    if (!a.ok || !b.ok) throw new Error('refused');
    const [lease] = await leaseRows(t, run.id);
    expect(lease!.amountMicros).toBeGreaterThanOrEqual(100_000);
    // This process "dies": its leases stop being renewed. Another process sweeps a while later.
    await t.database.db.execute(
      sql`update budget_leases set renewed_at = renewed_at - interval '2 minutes' where run_id = ${run.id}`,
    );
    const other = new RunsService(t.database.db, t.services.ctx, t.services.events);
    expect(await other.chargeAbandonedLeases(t.clock.now())).toBe(1);
    const row = await runRow(t, run.id);
    expect(row).toMatchObject({ costMicros: lease!.amountMicros, reservedMicros: 0, reservedTokens: 0 });
    const charged = await stepRows(t, run.id);
    expect(charged).toHaveLength(1);
    expect(charged[0]).toMatchObject({
      status: 'error',
      errorKind: 'unsettled_reservation',
      costMicros: lease!.amountMicros,
    });
    const ledger = await ledgerRows(t, run.id);
    expect(ledger).toHaveLength(1);
    expect(ledger[0]).toMatchObject({ stepId: charged[0]!.id, costMicros: lease!.amountMicros });
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    // The process comes back: its next renewal notices it lost the lease and stops using it.
    await runs().budget.renew();
    const fresh = await reserveFor(g, run.id, 10_000);
    expect(fresh.ok).toBe(true);
    if (fresh.ok) await runs().release(fresh.reservationId);
  });

  it('leaves a live process’s leases alone, and on an exclusive database charges every lease at start', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const r = await reserveFor(g, run.id, 40_000);
    if (!r.ok) throw new Error('refused');
    const other = new RunsService(t.database.db, t.services.ctx, t.services.events);
    expect(await other.chargeAbandonedLeases(t.clock.now())).toBe(0);
    // PGlite: only one process can open the data dir, so at start every lease is a dead one's.
    const restarted = new RunsService(t.database.db, t.services.ctx, t.services.events, async () => true, {
      exclusiveDatabase: true,
    });
    await restarted.startSweeps();
    await restarted.shutdown();
    const [lease] = await leaseRows(t, run.id);
    expect(lease).toBeUndefined();
    expect((await runRow(t, run.id)).costMicros).toBeGreaterThanOrEqual(40_000);
    await runs().budget.renew();
  });
});

/** One call that reserves 20 000 µ$ and costs 5 000, its lease statements landed. */
async function spendOnce(budget: BudgetSystem, g: GatewayAgent, runId: string): Promise<void> {
  const r = await budget.reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros: 20_000,
    tokens: 100,
  });
  if (!r.ok) throw new Error(r.message);
  await budget.settle(r.reservationId, llmStep(5_000));
  await budget.leasesSettled();
}

describe('unused leases', () => {
  it('go back within two seconds of their last call, as docs/gateway.md says', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1 } });
    const run = await newRun(g);
    const timers = new ManualTimers(t.clock);
    const budget = new BudgetSystem(
      t.database.db,
      { clock: t.clock, timers, log: silentLog, tracer: NOOP_TRACER },
      t.services.events,
      () => {},
    );
    budget.start();
    // The call lands just after a look for idle leases (the worst case for when the next finds it idle).
    await timers.advance(100);
    await spendOnce(budget, g, run.id);
    const [held] = await leaseRows(t, run.id);
    expect(held!.amountMicros).toBeGreaterThan(0);
    expect((await runRow(t, run.id)).reservedMicros).toBe(held!.amountMicros);

    await timers.advance(2_000);
    await budget.backgroundSettled();
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    expect(await runRow(t, run.id)).toMatchObject({
      reservedMicros: 0,
      reservedTokens: 0,
      costMicros: 5_000,
    });
    await budget.shutdown();
    expect(timers.pending).toBe(0);
  });

  it('go back on the next look when returning them failed once', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1 } });
    const run = await newRun(g);
    const timers = new ManualTimers(t.clock);
    // The database, except that one transaction fails as a lost connection would.
    let failNextTransaction = false;
    const db = new Proxy(t.database.db, {
      get(target, name) {
        if (name === 'transaction' && failNextTransaction) {
          failNextTransaction = false;
          return async () => {
            throw new Error('connection lost');
          };
        }
        const value = Reflect.get(target, name);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const budget = new BudgetSystem(
      db,
      { clock: t.clock, timers, log: silentLog, tracer: NOOP_TRACER },
      t.services.events,
      () => {},
    );
    budget.start();
    await spendOnce(budget, g, run.id);
    expect(await leaseRows(t, run.id)).toHaveLength(1);

    // Step to the look that finds the lease idle: its return fails.
    failNextTransaction = true;
    for (let waited = 0; failNextTransaction && waited < 2_000; waited += 250) {
      await timers.advance(250);
      await budget.backgroundSettled();
    }
    expect(failNextTransaction).toBe(false);
    expect(await leaseRows(t, run.id)).toHaveLength(1);

    await timers.advance(250);
    await budget.backgroundSettled();
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    expect(await runRow(t, run.id)).toMatchObject({ reservedMicros: 0, costMicros: 5_000 });
    await budget.shutdown();
  });
});

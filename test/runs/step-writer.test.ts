import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, type Log, ManualTimers, silentLog } from '../../src/core/context.ts';
import type { Db } from '../../src/db/client.ts';
import { events } from '../../src/db/schema/index.ts';
import { BudgetSystem, type StepRecord } from '../../src/modules/runs/budget.ts';
import { isTransientDbError } from '../../src/modules/runs/transient.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { agentWithPolicy, ledgerRows, runRow, stepRows, usage } from './setup.ts';

let t: TestApp;
let u: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
});
afterAll(() => t.close());

/** The app's context, logging into `errors` (messages at error level). */
function contextLogging(errors: string[] = []): Context {
  const log: Log = { ...silentLog, error: (_obj, msg) => errors.push(msg ?? ''), child: () => log };
  return { ...t.services.ctx, log };
}

/** How many statements are still to fail, and who to tell when one does. */
interface Failures {
  left: number;
  failed?: () => void;
}

/** Resolves when the next injected failure happens. */
const nextFailure = (failures: Failures) =>
  new Promise<void>((resolve) => {
    failures.failed = resolve;
  });

/** The database, with the next `failures.left` statements failing (drizzle's and raw ones alike). */
function flaky(db: Db, failures: Failures, error: unknown): Db {
  const failOr =
    <A extends unknown[], R>(run: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      if (failures.left > 0) {
        failures.left--;
        failures.failed?.();
        return Promise.reject(error);
      }
      return run(...args);
    };
  return new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'execute') return failOr((...args: Parameters<Db['execute']>) => target.execute(...args));
      if (prop === '$client') {
        const client = Reflect.get(target, prop, receiver) as {
          query: (...args: unknown[]) => Promise<unknown>;
        };
        return new Proxy(client, {
          get: (c, p, r) =>
            p === 'query' ? failOr((...args: unknown[]) => c.query(...args)) : Reflect.get(c, p, r),
        });
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

/**
 * The database, where the next `lost.left` raw statements (the step writer's
 * batch) commit but their answer never arrives: the connection drops after
 * the commit, so the writer cannot tell the write happened.
 */
function losingAnswers(db: Db, lost: { left: number }): Db {
  return new Proxy(db, {
    get(target, prop, receiver) {
      if (prop !== '$client') return Reflect.get(target, prop, receiver);
      const client = Reflect.get(target, prop, receiver) as {
        query: (...args: unknown[]) => Promise<unknown>;
      };
      return new Proxy(client, {
        get: (c, p, r) =>
          p === 'query'
            ? async (...args: unknown[]) => {
                const answer = await c.query(...args);
                if (lost.left <= 0) return answer;
                lost.left--;
                throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' });
              }
            : Reflect.get(c, p, r),
      });
    },
  });
}

/** A gpt-4o call's step, 10 tokens in and 5 out. */
const gptStep = (costMicros: number): StepRecord => ({
  type: 'llm_call',
  status: 'success',
  provider: 'openai',
  model: 'gpt-4o',
  usage: usage(10, 5),
  costMicros,
});

/** One call's reservation of `amountMicros` (and 100 tokens). */
async function reserveOne(
  budget: BudgetSystem,
  g: Awaited<ReturnType<typeof agentWithPolicy>>,
  runId: string,
  amountMicros: number,
) {
  const r = await budget.reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros,
    tokens: 100,
  });
  if (!r.ok) throw new Error(r.message);
  return r;
}

/** Reserves `amountMicros` for one call, then settles it at `costMicros` with its batch's commit answer lost. */
async function settleLosingAnswer(
  budget: BudgetSystem,
  lost: { left: number },
  g: Awaited<ReturnType<typeof agentWithPolicy>>,
  runId: string,
  amountMicros: number,
  costMicros: number,
) {
  const r = await reserveOne(budget, g, runId, amountMicros);
  lost.left = 1;
  const settled = await budget.settle(r.reservationId, gptStep(costMicros));
  expect(lost.left).toBe(0);
  return settled;
}

/** An agent under a fresh policy, with a new run. */
async function agentWithRun(policyBody: Record<string, unknown> = {}) {
  const g = await agentWithPolicy(t, u, policyBody);
  const run = await t.services.runs.resolveRun({
    teamId: g.teamId,
    agent: g.agent,
    policy: g.policy,
    newRun: true,
  });
  return { g, run };
}

async function calls(
  budget: BudgetSystem,
  runId: string,
  g: Awaited<ReturnType<typeof agentWithPolicy>>,
  n: number,
) {
  for (let i = 0; i < n; i++) {
    const r = await budget.reserve({
      teamId: g.teamId,
      runId,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 2_000,
      tokens: 100,
    });
    if (!r.ok) throw new Error(r.message);
    budget.settleLater(r.reservationId, gptStep(1_000 + i));
  }
}

describe('the step writer', () => {
  it('writes every call of a burst, with run totals and ledger entries that add up', async () => {
    const { g, run } = await agentWithRun();
    await calls(t.services.runs.budget, run.id, g, 300);
    // Nothing waited for the database: the burst is still queued, then written in a few batches.
    expect(t.services.runs.budget.writer.pending).toBeGreaterThan(0);
    await t.services.runs.flush();
    const row = await runRow(t, run.id);
    const expectedCost = 300 * 1_000 + (299 * 300) / 2;
    expect(row).toMatchObject({
      stepCount: 300,
      inputTokens: 3000,
      outputTokens: 1500,
      costMicros: expectedCost,
      reservedMicros: 0,
      primaryModel: 'gpt-4o',
    });
    expect(await stepRows(t, run.id)).toHaveLength(300);
    const ledger = await ledgerRows(t, run.id);
    expect(ledger).toHaveLength(300);
    expect(ledger.reduce((s, l) => s + l.costMicros, 0)).toBe(expectedCost);
  });

  it('retries a batch after a transient error, backing off on the clock, and writes it once', async () => {
    const { g, run } = await agentWithRun();
    const failures: Failures = { left: 0 };
    const timers = new ManualTimers(t.clock);
    const budget = new BudgetSystem(
      flaky(t.database.db, failures, Object.assign(new Error('serialization failure'), { code: '40001' })),
      { ...contextLogging(), timers },
      t.services.events,
      () => {},
      { writer: { flushDelayMs: 60_000, maxBatch: 500, maxAttempts: 5, baseRetryMs: 1_000 } },
    );
    await calls(budget, run.id, g, 5);
    await budget.leasesSettled();
    // The leases are taken; the batch write fails twice, then goes through.
    failures.left = 2;
    let failed = nextFailure(failures);
    const flushed = budget.flush();
    await failed;
    // Backing off: 1 s after the first failure, 2 s after the second.
    failed = nextFailure(failures);
    await timers.advance(999);
    expect(failures.left).toBe(1);
    await timers.advance(1);
    await failed;
    expect(failures.left).toBe(0);
    await timers.advance(1_999);
    expect(await stepRows(t, run.id)).toHaveLength(0);
    await timers.advance(1);
    await flushed;
    expect(await stepRows(t, run.id)).toHaveLength(5);
    expect((await runRow(t, run.id)).stepCount).toBe(5);
  });

  it('counts a batch whose commit answer was lost once: no duplicate steps or ledger rows, and the caller hears it was written', async () => {
    const { g, run } = await agentWithRun();
    const errors: string[] = [];
    const lost = { left: 0 };
    const budget = new BudgetSystem(
      losingAnswers(t.database.db, lost),
      contextLogging(errors),
      t.services.events,
      () => {},
      { writer: { flushDelayMs: 60_000, maxBatch: 500, maxAttempts: 5, baseRetryMs: 0 } },
    );
    await calls(budget, run.id, g, 3);
    const settled = await settleLosingAnswer(budget, lost, g, run.id, 2_000, 1_500);
    expect(settled.kind).toBe('settled');
    expect(settled.step).toMatchObject({ runId: run.id, costMicros: 1_500 });
    expect(errors).toEqual([]);
    const written = await stepRows(t, run.id);
    expect(written).toHaveLength(4);
    expect(new Set(written.map((s) => s.id)).size).toBe(4);
    const ledger = await ledgerRows(t, run.id);
    expect(ledger).toHaveLength(4);
    const cost = 1_000 + 1_001 + 1_002 + 1_500;
    expect(ledger.reduce((sum, l) => sum + l.costMicros, 0)).toBe(cost);
    // The process knows its spend is written: the leases go back whole, nothing is charged twice.
    await budget.flush();
    expect(await runRow(t, run.id)).toMatchObject({
      stepCount: 4,
      costMicros: cost,
      reservedMicros: 0,
      reservedTokens: 0,
    });
  });

  it('acts on what a batch whose answer was lost set off: the run it took past its hard limit ends, with its event', async () => {
    const { g, run } = await agentWithRun({ budget: { hard_limit_usd: 0.01 } });
    const lost = { left: 0 };
    const budget = new BudgetSystem(
      losingAnswers(t.database.db, lost),
      contextLogging(),
      t.services.events,
      () => {},
      { writer: { flushDelayMs: 60_000, maxBatch: 500, maxAttempts: 5, baseRetryMs: 0 } },
    );
    // The provider charged more than the reservation: this call alone passes the $0.01 limit.
    const settled = await settleLosingAnswer(budget, lost, g, run.id, 900, 12_000);
    expect(settled.kind).toBe('settled');
    expect(await runRow(t, run.id)).toMatchObject({
      status: 'budget_exceeded',
      endedReason: 'cost_limit',
      costMicros: 12_000,
    });
    const ended = await t.database.db
      .select()
      .from(events)
      .where(and(eq(events.subjectId, run.id), eq(events.type, 'run.budget_exceeded')));
    expect(ended).toHaveLength(1);
    await budget.flush();
  });

  it('logs a failed check after a written batch, without writing the batch again or failing its callers', async () => {
    const { g, run } = await agentWithRun({ budget: { alert_threshold_usd: 0.001 } });
    const failing = { left: 0 };
    const db = new Proxy(t.database.db, {
      get(target, prop, receiver) {
        if (prop === 'transaction' && failing.left > 0) {
          failing.left--;
          return () => Promise.reject(Object.assign(new Error('connection lost'), { code: '08006' }));
        }
        return Reflect.get(target, prop, receiver);
      },
    }) as Db;
    const errors: string[] = [];
    const budget = new BudgetSystem(db, contextLogging(errors), t.services.events, () => {});
    const r = await reserveOne(budget, g, run.id, 2_000);
    // The alert threshold is reached: the check after the batch runs, in a transaction that fails.
    failing.left = 1;
    const settled = await budget.settle(r.reservationId, gptStep(1_500));
    expect(failing.left).toBe(0);
    expect(settled.kind).toBe('settled');
    expect(errors).toEqual(['checking the limits and primary model of runs after a step batch failed']);
    expect(await stepRows(t, run.id)).toHaveLength(1);
    expect(await ledgerRows(t, run.id)).toHaveLength(1);
    expect((await runRow(t, run.id)).costMicros).toBe(1_500);
    await budget.flush();
  });

  it('keeps the good steps of a batch when one of them cannot be written', async () => {
    const { g, run } = await agentWithRun();
    const errors: string[] = [];
    const budget = new BudgetSystem(t.database.db, contextLogging(errors), t.services.events, () => {});
    await calls(budget, run.id, g, 3);
    // A step for a run that does not exist fails its statement; the batch is retried row by row.
    budget.note(
      { teamId: g.teamId, runId: 'run_missing', agentId: g.agent.id },
      {
        type: 'llm_call',
        status: 'policy_blocked',
        provider: null,
        model: null,
        usage: usage(0, 0),
        costMicros: 0,
      },
      'governance_block',
    );
    await calls(budget, run.id, g, 2);
    await budget.flush();
    expect(await stepRows(t, run.id)).toHaveLength(5);
    expect(errors).toEqual(['step write failed; giving up']);
  });
});

describe('isTransientDbError', () => {
  it('knows lost connections and serialization failures, through drizzle’s wrapping', () => {
    expect(isTransientDbError(Object.assign(new Error('x'), { code: '40001' }))).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransientDbError(new Error('wrapped', { cause: { code: '57P01' } }))).toBe(true);
    expect(isTransientDbError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: '23505' }))).toBe(false);
    expect(isTransientDbError(new Error('syntax error'))).toBe(false);
  });
});

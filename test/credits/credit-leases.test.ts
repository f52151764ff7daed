import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetLeases, creditAccounts, creditTransactions } from '../../src/db/schema/index.ts';
import { RunsService } from '../../src/modules/runs/service.ts';
import { agentWithPolicy, type GatewayAgent, runRow } from '../runs/setup.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';

// Credits held by a server's lease, and what happens to them when the server dies.

let t: TestApp;
let u: SignedUpUser;
beforeAll(async () => {
  // 1 credit = $0.01, no markup: a micro-dollar of cost is 100 micro-credits.
  t = await createTestApp({ env: { PADDOCK_CREDITS: 'enforce' } });
  u = await t.signup();
  await t.services.credits.add({
    teamId: u.team.id,
    type: 'grant',
    amount: 100,
    reason: 'test',
    actor: { actorKind: 'system', actorId: null },
  });
});
afterAll(() => t.close());

async function account() {
  const [row] = await t.database.db.select().from(creditAccounts).where(eq(creditAccounts.teamId, u.team.id));
  return row!;
}

function newRun(g: GatewayAgent) {
  return t.services.runs.resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy, newRun: true });
}

function reserve(g: GatewayAgent, runId: string, amountMicros: number) {
  return t.services.runs.reserve({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    policyId: g.policy.id,
    amountMicros,
    tokens: 100,
  });
}

describe('credit leases', () => {
  it('hold credits for calls in flight and give them back when the call settles', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const r = await reserve(g, run.id, 50_000);
    if (!r.ok) throw new Error(r.message);
    await t.services.runs.budget.leasesSettled();
    // The lease holds at least the call's 50 000 µ$ × 100 = 5 credits.
    expect((await account()).held).toBeGreaterThanOrEqual(5_000_000);
    await t.services.runs.budget.settle(r.reservationId, {
      type: 'llm_call',
      status: 'success',
      provider: 'openai',
      model: 'gpt-4o',
      usage: { input: 10, output: 10, cacheRead: 0, cacheCreation: 0 },
      costMicros: 12_345,
    });
    await t.services.runs.flush();
    const after = await account();
    expect(after.held).toBe(0);
    expect(after.balance).toBe(100_000_000 - 1_234_500);
  });

  it('are given back when their server died, while its run lease is charged in full and consumes its credits', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const before = await account();
    const r = await reserve(g, run.id, 30_000);
    if (!r.ok) throw new Error(r.message);
    await t.services.runs.budget.leasesSettled();
    const leases = await t.database.db.select().from(budgetLeases).where(eq(budgetLeases.teamId, u.team.id));
    expect(leases.map((l) => l.scope).sort()).toEqual(['credits', 'run']);
    const runLease = leases.find((l) => l.scope === 'run')!;
    // This server "dies": its leases stop being renewed, and another server sweeps them.
    await t.database.db.execute(
      sql`update budget_leases set renewed_at = renewed_at - interval '2 minutes' where team_id = ${u.team.id}`,
    );
    const other = new RunsService(t.database.db, t.services.ctx, t.services.events, async () => true, {
      budget: { credits: t.services.credits.port() },
    });
    expect(await other.chargeAbandonedLeases(t.clock.now())).toBe(2);
    const after = await account();
    expect(after.held).toBe(0);
    // What the run was charged in full, its credits consume: the ledger at the rate.
    expect((await runRow(t, run.id)).costMicros).toBe(runLease.amountMicros);
    expect(after.balance).toBe(before.balance - runLease.amountMicros * 100);
    const consumed = await t.database.db
      .select()
      .from(creditTransactions)
      .where(eq(creditTransactions.referenceId, run.id));
    expect(consumed).toHaveLength(1);
    expect(consumed[0]).toMatchObject({ type: 'consume', amount: -runLease.amountMicros * 100 });
    await t.services.runs.budget.renew();
  });

  it("are consumed, for a dead server's run leases, no further than its credits lease held", async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const before = await account();
    const r = await reserve(g, run.id, 40_000);
    if (!r.ok) throw new Error(r.message);
    await t.services.runs.budget.leasesSettled();
    // The run's lease is larger than what the server holds of the team's credits for it (a run
    // lease is sized to its traffic, a credits lease to the balance): 1 credit held.
    await t.database.db.execute(
      sql`update budget_leases set amount_micros = 1000000 where team_id = ${u.team.id} and scope = 'credits'`,
    );
    await t.database.db.execute(sql`update credit_accounts set held = 1000000 where team_id = ${u.team.id}`);
    await t.database.db.execute(
      sql`update budget_leases set renewed_at = renewed_at - interval '2 minutes' where team_id = ${u.team.id}`,
    );
    const other = new RunsService(t.database.db, t.services.ctx, t.services.events, async () => true, {
      budget: { credits: t.services.credits.port() },
    });
    expect(await other.chargeAbandonedLeases(t.clock.now())).toBe(2);
    const after = await account();
    expect(after.held).toBe(0);
    // The run is charged its lease in full; the credits only what the server held.
    expect((await runRow(t, run.id)).costMicros).toBeGreaterThanOrEqual(40_000);
    expect(after.balance).toBe(before.balance - 1_000_000);
    await t.services.runs.budget.renew();
  });

  it('end exhausted when the step batches that spent them are followed out of order', async () => {
    // Two batches both answered the account as `ok`: the first with a low
    // balance, the second with none left. Followed in that order, the second
    // must still move the account to exhausted.
    const other = await t.signup();
    await t.services.credits.add({
      teamId: other.team.id,
      type: 'grant',
      amount: 100,
      reason: 'test',
      actor: { actorKind: 'system', actorId: null },
    });
    await t.database.db
      .update(creditAccounts)
      .set({ balance: -1_000_000 })
      .where(eq(creditAccounts.teamId, other.team.id));
    const port = t.services.credits.port();
    const answered = { teamId: other.team.id, lowThreshold: null, state: 'ok' as const };
    await port.balancesChanged([{ ...answered, balance: 1_000_000 }]);
    await port.balancesChanged([{ ...answered, balance: -1_000_000 }]);
    const credits = await t.call('GET', '/v1/credits', { token: other.token });
    expect(credits.body).toMatchObject({ state: 'exhausted', balance: -1 });
    const events = await t.call('GET', '/v1/events?type=credits.exhausted', { token: other.token });
    expect(events.body.data).toHaveLength(1);
  });
});

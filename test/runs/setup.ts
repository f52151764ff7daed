import { eq } from 'drizzle-orm';
import type { RunId, TeamId } from '../../src/core/ids.ts';
import { budgetLeases, hourlySpend, ledgerEntries, runs, steps } from '../../src/db/schema/index.ts';
import type { ResolveRunInput } from '../../src/modules/runs/service.ts';
import type { SignedUpUser, TestApp } from '../support/app.ts';
import { createAgent, createPolicy } from '../support/factories.ts';

/** An agent under a fresh policy of `user`'s team, in the shapes the runs service takes. */
export interface GatewayAgent {
  teamId: TeamId;
  agent: ResolveRunInput['agent'];
  policy: ResolveRunInput['policy'];
  agentKey: string;
}

export async function agentWithPolicy(
  t: TestApp,
  user: SignedUpUser,
  policyBody: Record<string, unknown> = {},
): Promise<GatewayAgent> {
  const created = await createPolicy(t, user.token, policyBody);
  const policy = await t.services.policies.findForTeam(user.team.id, created.id);
  if (!policy) throw new Error('policy not found after creating it');
  const agent = await createAgent(t, user.token, { policy_id: policy.id });
  return {
    teamId: user.team.id,
    agent: { id: agent.id, name: agent.name, policyId: policy.id, allowedPolicies: null },
    policy: { id: policy.id, name: policy.name, spec: policy.spec },
    agentKey: agent.api_key,
  };
}

/** Direct reads for assertions (the state, not the API's view of it). */
export async function runRow(t: TestApp, id: string) {
  const [row] = await t.database.db
    .select()
    .from(runs)
    .where(eq(runs.id, id as RunId));
  if (!row) throw new Error(`run ${id} not found`);
  return row;
}

export async function stepRows(t: TestApp, runId: string) {
  return t.database.db
    .select()
    .from(steps)
    .where(eq(steps.runId, runId as RunId))
    .orderBy(steps.id);
}

export async function ledgerRows(t: TestApp, runId: string) {
  return t.database.db
    .select()
    .from(ledgerEntries)
    .where(eq(ledgerEntries.runId, runId as RunId));
}

export async function leaseRows(t: TestApp, runId: string) {
  return t.database.db
    .select()
    .from(budgetLeases)
    .where(eq(budgetLeases.runId, runId as RunId));
}

export async function hourRows(t: TestApp, agentId: string) {
  return t.database.db.select().from(hourlySpend).where(eq(hourlySpend.agentId, agentId));
}

export const usage = (input: number, output: number, cacheRead = 0, cacheCreation = 0) => ({
  input,
  output,
  cacheRead,
  cacheCreation,
});

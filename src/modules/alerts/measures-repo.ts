import { and, asc, count, desc, eq, gt, inArray, lte, type SQL, sql } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { type AgentId, idFloorAt, type StepId, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { agents, approvals, ledgerEntries, policies, steps, tasks } from '../../db/schema/index.ts';

// What alert rules measure, read from the gateway's, approvals' and tasks'
// own records (read only, as analytics reads them): SQL only.

/** A window (from, to], optionally one agent's rows. */
export interface Scope {
  teamId: TeamId;
  agentId: string | null;
  from: Date;
  to: Date;
}

function inWindow(
  table: { teamId: AnyPgColumn; agentId: AnyPgColumn },
  at: AnyPgColumn,
  s: Scope,
  ...also: SQL[]
): SQL {
  return and(
    eq(table.teamId, s.teamId),
    s.agentId !== null ? eq(table.agentId, s.agentId) : undefined,
    gt(at, s.from),
    lte(at, s.to),
    ...also,
  ) as SQL;
}

/**
 * Steps are many: the window is also put as a floor on their ids (time-sorted,
 * steps_team_idx), so only the window's end of the team's index is read. Ids
 * carry the time of the server that made them: an hour's slack for clocks that
 * disagree; created_at still decides.
 */
const ID_SLACK_MS = 3600_000;
const stepsFrom = (s: Scope) => gt(steps.id, idFloorAt('stp', s.from.getTime() - ID_SLACK_MS) as StepId);

/** Cost charged in the window (ledger entries of both kinds), per agent. */
export function costByAgent(db: DbOrTx, s: Scope) {
  return db
    .select({
      agentId: ledgerEntries.agentId,
      costMicros: sql<number>`coalesce(sum(${ledgerEntries.costMicros}), 0)`.mapWith(Number),
      entries: count(),
    })
    .from(ledgerEntries)
    .where(inWindow(ledgerEntries, ledgerEntries.createdAt, s))
    .groupBy(ledgerEntries.agentId)
    .orderBy(desc(sql`2`));
}

/** Model calls (llm_call steps) in the window per provider: all, ended in error or timeout, failed over. */
export function callsByProvider(db: DbOrTx, s: Scope) {
  return db
    .select({
      provider: steps.provider,
      calls: count(),
      errors: sql<number>`count(*) filter (where ${steps.status} in ('error', 'timeout'))`.mapWith(Number),
      failovers: sql<number>`count(*) filter (where ${steps.failoverAttempts} > 0)`.mapWith(Number),
    })
    .from(steps)
    .where(inWindow(steps, steps.createdAt, s, stepsFrom(s), eq(steps.type, 'llm_call')))
    .groupBy(steps.provider);
}

/** One agent's model calls and tokens in each minute of the window (epoch minute), busiest first. */
export function callsPerMinute(db: DbOrTx, s: Scope & { agentId: string }) {
  const minute = sql<number>`floor(extract(epoch from ${steps.createdAt}) / 60)`.mapWith(Number);
  return db
    .select({
      minute,
      calls: count(),
      tokens:
        sql<number>`coalesce(sum(coalesce(${steps.inputTokens}, 0) + coalesce(${steps.outputTokens}, 0) + coalesce(${steps.cacheReadTokens}, 0) + coalesce(${steps.cacheCreationTokens}, 0)), 0)`.mapWith(
          Number,
        ),
    })
    .from(steps)
    .where(inWindow(steps, steps.createdAt, s, stepsFrom(s), eq(steps.type, 'llm_call')))
    .groupBy(sql`1`);
}

/** The rate limits of the agent's policy now (the policy document's rate_limits), if the agent exists. */
export async function agentRateLimits(db: DbOrTx, teamId: TeamId, agentId: AgentId) {
  const [row] = await db
    .select({ policyId: policies.id, rateLimits: sql<unknown>`${policies.spec} -> 'rate_limits'` })
    .from(agents)
    .innerJoin(policies, eq(policies.id, agents.policyId))
    .where(and(eq(agents.teamId, teamId), eq(agents.id, agentId)));
  return row;
}

/** Approvals created in the window and still pending (not expired) since `pendingSince` or before, oldest first. */
export async function overdueApprovals(db: DbOrTx, s: Scope, pendingSince: Date, limit: number) {
  const where = inWindow(
    approvals,
    approvals.createdAt,
    s,
    eq(approvals.status, 'pending'),
    lte(approvals.createdAt, pendingSince),
    gt(approvals.expiresAt, s.to),
  );
  const [total] = await db.select({ n: count() }).from(approvals).where(where);
  const oldest = await db
    .select({
      id: approvals.id,
      agentId: approvals.agentId,
      runId: approvals.runId,
      toolName: approvals.toolName,
      createdAt: approvals.createdAt,
    })
    .from(approvals)
    .where(where)
    .orderBy(asc(approvals.createdAt), asc(approvals.id))
    .limit(limit);
  return { total: total?.n ?? 0, oldest };
}

/** Tasks that ended completed or failed in the window (cancelled ones are left out), per agent. */
export function taskOutcomesByAgent(db: DbOrTx, s: Scope) {
  return db
    .select({
      agentId: tasks.agentId,
      ended: count(),
      failed: sql<number>`count(*) filter (where ${tasks.status} = 'failed')`.mapWith(Number),
    })
    .from(tasks)
    .where(inWindow(tasks, tasks.finishedAt, s, inArray(tasks.status, ['completed', 'failed'])))
    .groupBy(tasks.agentId);
}

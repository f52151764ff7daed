import { and, countDistinct, desc, eq, gte, inArray, lt, ne, sql } from 'drizzle-orm';
import type { ProviderKeyId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { runs, steps } from '../../db/schema/index.ts';

// What other modules read about runs (a policy's stats and cost trend, a
// provider key's usage): SQL only, scoped by team, reached through RunReports.

export interface RunWindow {
  since?: Date;
  until?: Date;
}

function policyRunsIn(teamId: TeamId, policyId: string, window: RunWindow) {
  return and(
    eq(runs.teamId, teamId),
    eq(runs.policyId, policyId),
    window.since ? gte(runs.startedAt, window.since) : undefined,
    window.until ? lt(runs.startedAt, window.until) : undefined,
  );
}

/** Aggregates over the policy's runs started in the window; money in micro-dollars. */
export async function policyRunStats(db: DbOrTx, teamId: TeamId, policyId: string, window: RunWindow) {
  const ended = sql`${runs.status} <> 'running'`;
  const [row] = await db
    .select({
      totalRuns: sql<string>`count(*)`,
      totalMicros: sql<string>`coalesce(sum(${runs.costMicros}), 0)`,
      avgSteps: sql<string | null>`avg(${runs.stepCount})`,
      endedRuns: sql<string>`count(*) filter (where ${ended})`,
      avgDurationMs: sql<string | null>`avg(extract(epoch from (${runs.endedAt} - ${runs.startedAt})) * 1000)
        filter (where ${ended} and ${runs.endedAt} is not null)`,
      // Success: the outcome says so, or the run completed and no outcome was set.
      succeeded: sql<string>`count(*) filter (where ${ended} and (${runs.outcome} = 'success'
        or (${runs.outcome} is null and ${runs.status} = 'completed')))`,
      utilization: sql<string | null>`avg(${runs.costMicros}::float8 / ${runs.hardLimitMicros})
        filter (where ${runs.hardLimitMicros} > 0)`,
    })
    .from(runs)
    .where(policyRunsIn(teamId, policyId, window));
  return row!;
}

/** The latest `limit` ended runs in the window (the caller orders them oldest first), and how many there are. */
export async function endedRunsOfPolicy(
  db: DbOrTx,
  teamId: TeamId,
  policyId: string,
  window: RunWindow,
  limit: number,
) {
  const where = and(policyRunsIn(teamId, policyId, window), ne(runs.status, 'running'));
  const rows = await db
    .select({
      id: runs.id,
      name: runs.name,
      costMicros: runs.costMicros,
      stepCount: runs.stepCount,
      startedAt: runs.startedAt,
    })
    .from(runs)
    .where(where)
    .orderBy(desc(runs.startedAt), desc(runs.id))
    .limit(limit);
  const [count] = await db.select({ n: sql<string>`count(*)` }).from(runs).where(where);
  return { rows, total: Number(count?.n ?? 0) };
}

export async function runningRunCount(db: DbOrTx, teamId: TeamId, agentIds: string[]): Promise<number> {
  if (agentIds.length === 0) return 0;
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(runs)
    .where(and(eq(runs.teamId, teamId), inArray(runs.agentId, agentIds), eq(runs.status, 'running')));
  return Number(row?.n ?? 0);
}

/** Runs with at least one step made with the key since `since`. */
export async function runsUsingKeySince(
  db: DbOrTx,
  teamId: TeamId,
  keyId: ProviderKeyId,
  since: Date,
): Promise<number> {
  const [row] = await db
    .select({ n: countDistinct(steps.runId) })
    .from(steps)
    .where(and(eq(steps.teamId, teamId), eq(steps.providerKeyId, keyId), gte(steps.createdAt, since)));
  return Number(row?.n ?? 0);
}

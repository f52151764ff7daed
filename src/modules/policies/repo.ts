import { and, asc, desc, eq, gt, gte, ilike, isNull, lt, ne, type SQL, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { policies, policyVersions, runs } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

export type PolicyRow = typeof policies.$inferSelect;
export type PolicyVersionRow = typeof policyVersions.$inferSelect;

export { isUniqueViolation } from '../../db/errors.ts';

export async function insertPolicy(db: DbOrTx, row: typeof policies.$inferInsert): Promise<PolicyRow> {
  const [inserted] = await db.insert(policies).values(row).returning();
  return inserted!;
}

export async function insertVersion(db: DbOrTx, row: typeof policyVersions.$inferInsert): Promise<void> {
  await db.insert(policyVersions).values(row);
}

/** The team's live policy that `which` picks out; `lock` takes the row for the rest of the transaction. */
async function findLivePolicy(
  db: DbOrTx,
  teamId: string,
  which: SQL,
  lock?: 'update' | 'share',
): Promise<PolicyRow | undefined> {
  const q = db
    .select()
    .from(policies)
    .where(and(eq(policies.teamId, teamId), which, isNull(policies.deletedAt)));
  const [row] = lock ? await q.for(lock) : await q;
  return row;
}

/** A live policy of the team; `lock` takes the row for the rest of the transaction. */
export function findPolicy(db: DbOrTx, teamId: string, id: string, lock?: 'update' | 'share') {
  return findLivePolicy(db, teamId, eq(policies.id, id), lock);
}

export function findPolicyByName(db: DbOrTx, teamId: string, name: string, lock?: 'update') {
  return findLivePolicy(db, teamId, eq(policies.name, name), lock);
}

/** A policy of the team even when deleted (version history outlives it). */
export async function findPolicyWithDeleted(db: DbOrTx, teamId: string, id: string) {
  const [row] = await db
    .select()
    .from(policies)
    .where(and(eq(policies.teamId, teamId), eq(policies.id, id)));
  return row;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export async function listPolicies(
  db: DbOrTx,
  teamId: string,
  filter: { name?: string },
  beforeId: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(policies)
    .where(
      and(
        eq(policies.teamId, teamId),
        isNull(policies.deletedAt),
        filter.name ? ilike(policies.name, `%${escapeLike(filter.name)}%`) : undefined,
        beforeId ? lt(policies.id, beforeId) : undefined,
      ),
    )
    .orderBy(desc(policies.id))
    .limit(limit);
}

export async function updatePolicy(
  db: DbOrTx,
  teamId: string,
  id: string,
  patch: Partial<Omit<PolicyRow, 'id' | 'teamId' | 'createdAt'>>,
): Promise<PolicyRow | undefined> {
  return updateOne(
    db,
    policies,
    and(eq(policies.teamId, teamId), eq(policies.id, id), isNull(policies.deletedAt)),
    patch,
  );
}

/** The policy's versions, where `also` holds too. */
function versionsOf(teamId: string, policyId: string, also: SQL | undefined) {
  return and(eq(policyVersions.teamId, teamId), eq(policyVersions.policyId, policyId), also);
}

export async function listVersions(
  db: DbOrTx,
  teamId: string,
  policyId: string,
  afterVersion: number | undefined,
  limit: number,
) {
  return db
    .select()
    .from(policyVersions)
    .where(
      versionsOf(
        teamId,
        policyId,
        afterVersion !== undefined ? gt(policyVersions.version, afterVersion) : undefined,
      ),
    )
    .orderBy(asc(policyVersions.version))
    .limit(limit);
}

export async function findVersion(db: DbOrTx, teamId: string, policyId: string, version: number) {
  const [row] = await db
    .select()
    .from(policyVersions)
    .where(versionsOf(teamId, policyId, eq(policyVersions.version, version)));
  return row;
}

export interface RunWindow {
  since?: Date;
  until?: Date;
}

function runFilter(teamId: string, policyId: string, window: RunWindow) {
  return and(
    eq(runs.teamId, teamId),
    eq(runs.policyId, policyId),
    window.since ? gte(runs.startedAt, window.since) : undefined,
    window.until ? lt(runs.startedAt, window.until) : undefined,
  );
}

/** Aggregates over the policy's runs started in the window; money in micro-dollars. */
export async function runStats(db: DbOrTx, teamId: string, policyId: string, window: RunWindow) {
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
    .where(runFilter(teamId, policyId, window));
  return row!;
}

/** The latest `limit` ended runs in the window (the caller orders them oldest first), and how many there are. */
export async function endedRuns(
  db: DbOrTx,
  teamId: string,
  policyId: string,
  window: RunWindow,
  limit: number,
) {
  const where = and(runFilter(teamId, policyId, window), ne(runs.status, 'running'));
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

import { and, asc, eq, gt, ilike, isNull, type SQL } from 'drizzle-orm';
import type { PolicyId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { escapeLike, liveInTeam, rowsLocked } from '../../db/query-parts.ts';
import { policies, policyVersions } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';

export type PolicyRow = typeof policies.$inferSelect;
export type PolicyVersionRow = typeof policyVersions.$inferSelect;
export type PolicyPatch = Partial<Omit<PolicyRow, 'id' | 'teamId' | 'createdAt'>>;

export { isUniqueViolation } from '../../db/errors.ts';

export function insertPolicy(db: DbOrTx, row: typeof policies.$inferInsert): Promise<PolicyRow> {
  return insertOne(db, policies, row);
}

export async function insertVersion(db: DbOrTx, row: typeof policyVersions.$inferInsert): Promise<void> {
  await db.insert(policyVersions).values(row);
}

/** The team's live policy that `which` picks out; `lock` takes the row for the rest of the transaction. */
async function findLivePolicy(
  db: DbOrTx,
  teamId: TeamId,
  which: SQL,
  lock?: 'update' | 'share',
): Promise<PolicyRow | undefined> {
  const q = db
    .select()
    .from(policies)
    .where(liveInTeam(policies, teamId, which));
  const [row] = await rowsLocked(q, lock);
  return row;
}

/** A live policy of the team; `lock` takes the row for the rest of the transaction. */
export function findPolicy(db: DbOrTx, teamId: TeamId, id: PolicyId, lock?: 'update' | 'share') {
  return findLivePolicy(db, teamId, eq(policies.id, id), lock);
}

export function findPolicyByName(db: DbOrTx, teamId: TeamId, name: string, lock?: 'update') {
  return findLivePolicy(db, teamId, eq(policies.name, name), lock);
}

/** A policy of the team even when deleted (version history outlives it). */
export function findPolicyWithDeleted(db: DbOrTx, teamId: TeamId, id: PolicyId) {
  return findInTeam(db, policies, teamId, id);
}

export async function listPolicies(
  db: DbOrTx,
  teamId: TeamId,
  filter: { name?: string },
  beforeId: string | undefined,
  limit: number,
) {
  return pageInTeam(
    db,
    policies,
    teamId,
    beforeId,
    limit,
    isNull(policies.deletedAt),
    filter.name ? ilike(policies.name, `%${escapeLike(filter.name)}%`) : undefined,
  );
}

export function updatePolicy(db: DbOrTx, teamId: TeamId, id: PolicyId, patch: PolicyPatch) {
  return updateOne(db, policies, liveInTeam(policies, teamId, eq(policies.id, id)), patch);
}

/** The policy's versions, where `also` holds too. */
function versionsOf(teamId: TeamId, policyId: string, also: SQL | undefined) {
  return and(eq(policyVersions.teamId, teamId), eq(policyVersions.policyId, policyId), also);
}

export async function listVersions(
  db: DbOrTx,
  teamId: TeamId,
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

export async function findVersion(db: DbOrTx, teamId: TeamId, policyId: string, version: number) {
  const [row] = await db
    .select()
    .from(policyVersions)
    .where(versionsOf(teamId, policyId, eq(policyVersions.version, version)));
  return row;
}

import { and, desc, eq, gt, inArray, lt, lte, type SQL } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { approvals } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

export type ApprovalRow = typeof approvals.$inferSelect;
/** As answered: `expired` is a pending approval past its expiry (computed, never stored). */
export type ApprovalStatus = ApprovalRow['status'] | 'expired';

export async function insertApprovals(
  db: DbOrTx,
  rows: Array<typeof approvals.$inferInsert>,
): Promise<ApprovalRow[]> {
  return rows.length === 0 ? [] : db.insert(approvals).values(rows).returning();
}

/** The team's approvals where every one of `conditions` holds. */
function teamApprovals(db: DbOrTx, teamId: TeamId, ...conditions: Array<SQL | undefined>) {
  return db
    .select()
    .from(approvals)
    .where(and(eq(approvals.teamId, teamId), ...conditions));
}

export async function findApproval(db: DbOrTx, teamId: TeamId, id: string): Promise<ApprovalRow | undefined> {
  const [row] = await teamApprovals(db, teamId, eq(approvals.id, id));
  return row;
}

/** Pending, unexpired approvals already asked for this agent's request (a client re-sending it gets them again). */
export async function pendingForRequest(
  db: DbOrTx,
  teamId: TeamId,
  agentId: string,
  requestHash: string,
  now: Date,
): Promise<ApprovalRow[]> {
  return teamApprovals(
    db,
    teamId,
    eq(approvals.agentId, agentId),
    eq(approvals.requestHash, requestHash),
    eq(approvals.status, 'pending'),
    gt(approvals.expiresAt, now),
  );
}

/** The approvals asked for in the same request as `a` (one per tool): all must be approved to use any. */
export async function batchOf(db: DbOrTx, a: ApprovalRow): Promise<ApprovalRow[]> {
  return teamApprovals(
    db,
    a.teamId,
    eq(approvals.agentId, a.agentId),
    eq(approvals.runId, a.runId),
    eq(approvals.requestHash, a.requestHash),
    eq(approvals.createdAt, a.createdAt),
  );
}

export function statusIs(status: ApprovalStatus, now: Date): SQL {
  if (status === 'expired') return and(eq(approvals.status, 'pending'), lte(approvals.expiresAt, now))!;
  if (status === 'pending') return and(eq(approvals.status, 'pending'), gt(approvals.expiresAt, now))!;
  return eq(approvals.status, status);
}

export async function listApprovals(
  db: DbOrTx,
  teamId: TeamId,
  f: { status?: ApprovalStatus; runId?: string; agentId?: string },
  now: Date,
  beforeId: string | undefined,
  limit: number,
): Promise<ApprovalRow[]> {
  return teamApprovals(
    db,
    teamId,
    f.status !== undefined ? statusIs(f.status, now) : undefined,
    f.runId !== undefined ? eq(approvals.runId, f.runId) : undefined,
    f.agentId !== undefined ? eq(approvals.agentId, f.agentId) : undefined,
    beforeId !== undefined ? lt(approvals.id, beforeId) : undefined,
  )
    .orderBy(desc(approvals.id))
    .limit(limit);
}

/** pending → approved/rejected, only while pending and unexpired: one decision wins. */
export async function decide(
  db: DbOrTx,
  teamId: TeamId,
  id: string,
  d: { status: 'approved' | 'rejected'; decidedBy: string | null; reason: string | null; at: Date },
): Promise<ApprovalRow | undefined> {
  return updateOne(
    db,
    approvals,
    and(
      eq(approvals.teamId, teamId),
      eq(approvals.id, id),
      eq(approvals.status, 'pending'),
      gt(approvals.expiresAt, d.at),
    ),
    { status: d.status, decidedBy: d.decidedBy, reason: d.reason, decidedAt: d.at },
  );
}

/**
 * approved → consumed for every approval of the batch, in one statement, only
 * if each is approved and unexpired: single use even when two replays race.
 */
export async function consumeBatch(db: DbOrTx, teamId: TeamId, ids: string[], now: Date): Promise<number> {
  const rows = await db
    .update(approvals)
    .set({ status: 'consumed' })
    .where(
      and(
        eq(approvals.teamId, teamId),
        inArray(approvals.id, ids),
        eq(approvals.status, 'approved'),
        gt(approvals.expiresAt, now),
      ),
    )
    .returning({ id: approvals.id });
  return rows.length;
}

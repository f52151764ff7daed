import { and, count, eq, exists, inArray, isNull, lte, notExists, or, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { eqIfGiven } from '../../db/query-parts.ts';
import {
  ACTIVE_RUN_STATUSES,
  type PlaybookRunStatus,
  playbookRuns,
  playbookSchedulerPauses,
  playbooks,
  teams,
} from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';

export type PlaybookId = Id<'pb'>;
export type RunId = Id<'pbr'>;
export type PlaybookRow = typeof playbooks.$inferSelect;
export type PlaybookPatch = Partial<typeof playbooks.$inferInsert>;
export type RunRow = typeof playbookRuns.$inferSelect;
export type RunPatch = Partial<typeof playbookRuns.$inferInsert>;

export { isUniqueViolation } from '../../db/errors.ts';

export function insertPlaybook(db: DbOrTx, row: typeof playbooks.$inferInsert): Promise<PlaybookRow> {
  return insertOne(db, playbooks, row);
}

export function findPlaybook(db: DbOrTx, teamId: TeamId, id: PlaybookId) {
  return findInTeam(db, playbooks, teamId, id);
}

const notPaused = notExists(
  sql`(select 1 from ${playbookSchedulerPauses} where ${playbookSchedulerPauses.teamId} = ${playbooks.teamId})`,
);
// A deleted team's rows stay (soft delete); its playbooks never fire again.
const teamLive = exists(
  sql`(select 1 from ${teams} where ${teams.id} = ${playbooks.teamId} and ${teams.deletedAt} is null)`,
);

/** The playbook a webhook token names, unless its team was deleted. */
export async function findByTokenHash(db: DbOrTx, hash: string): Promise<PlaybookRow | undefined> {
  const [row] = await db
    .select()
    .from(playbooks)
    .where(and(eq(playbooks.webhookTokenHash, hash), teamLive));
  return row;
}

export async function listPlaybooks(
  db: DbOrTx,
  teamId: TeamId,
  filter: { agentId?: string; enabled?: boolean },
  beforeId: string | undefined,
  limit: number,
): Promise<PlaybookRow[]> {
  const matching = and(
    eqIfGiven(playbooks.agentId, filter.agentId),
    eqIfGiven(playbooks.enabled, filter.enabled),
  );
  return pageInTeam(db, playbooks, teamId, beforeId, limit, matching);
}

export function updatePlaybook(db: DbOrTx, teamId: TeamId, id: PlaybookId, patch: PlaybookPatch) {
  return updateInTeam(db, playbooks, teamId, id, patch);
}

export function deletePlaybook(db: DbOrTx, teamId: TeamId, id: PlaybookId): Promise<PlaybookRow | undefined> {
  return deleteInTeam(db, playbooks, teamId, id);
}

/** Enabled scheduled playbooks whose time has come, of teams not paused (every team: the leader's query). */
export async function systemDue(db: DbOrTx, now: Date, limit: number): Promise<PlaybookRow[]> {
  return db
    .select()
    .from(playbooks)
    .where(and(eq(playbooks.enabled, true), lte(playbooks.nextRunAt, now), notPaused, teamLive))
    .orderBy(playbooks.nextRunAt)
    .limit(limit);
}

export async function dueCount(db: DbOrTx, teamId: TeamId, now: Date): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(playbooks)
    .where(and(eq(playbooks.teamId, teamId), eq(playbooks.enabled, true), lte(playbooks.nextRunAt, now)));
  return row?.n ?? 0;
}

/**
 * Moves a playbook past the slot it fires: only while next_run_at is still
 * that slot, so of two servers firing the same slot one moves it, and the
 * other finds nothing to do.
 */
export async function advanceSlot(
  db: DbOrTx,
  id: PlaybookId,
  slot: Date,
  next: Date | null,
  now: Date,
): Promise<PlaybookRow | undefined> {
  return updateOne(db, playbooks, and(eq(playbooks.id, id), eq(playbooks.nextRunAt, slot)), {
    nextRunAt: next,
    lastRunAt: now,
    updatedAt: now,
  });
}

// -- runs ----------------------------------------------------------------------------------

/** A run; a slot already taken (unique playbook + slot) inserts nothing and answers undefined. */
export async function insertRun(
  db: DbOrTx,
  row: typeof playbookRuns.$inferInsert,
): Promise<RunRow | undefined> {
  const [inserted] = await db.insert(playbookRuns).values(row).onConflictDoNothing().returning();
  return inserted;
}

export async function activeRunOf(db: DbOrTx, playbookId: PlaybookId): Promise<RunRow | undefined> {
  const [row] = await db
    .select()
    .from(playbookRuns)
    .where(
      and(eq(playbookRuns.playbookId, playbookId), inArray(playbookRuns.status, [...ACTIVE_RUN_STATUSES])),
    )
    .limit(1);
  return row;
}

/** The running run whose latest chain is `taskId` (few runs are active: the status index finds them). */
export async function runningRunOfTask(
  db: DbOrTx,
  teamId: TeamId,
  taskId: string,
): Promise<RunRow | undefined> {
  const [row] = await db
    .select()
    .from(playbookRuns)
    .where(
      and(
        eq(playbookRuns.status, 'running'),
        eq(playbookRuns.teamId, teamId),
        eq(playbookRuns.taskId, taskId),
      ),
    )
    .limit(1);
  return row;
}

export function findRun(db: DbOrTx, teamId: TeamId, id: RunId): Promise<RunRow | undefined> {
  return findInTeam(db, playbookRuns, teamId, id);
}

export async function listRuns(
  db: DbOrTx,
  teamId: TeamId,
  filter: { playbookId?: string; status?: PlaybookRunStatus },
  beforeId: string | undefined,
  limit: number,
): Promise<RunRow[]> {
  const matching = and(
    eqIfGiven(playbookRuns.playbookId, filter.playbookId as PlaybookId | undefined),
    eqIfGiven(playbookRuns.status, filter.status),
  );
  return pageInTeam(db, playbookRuns, teamId, beforeId, limit, matching);
}

/** Changes an active run only (queued or running): an ended run never changes again. */
export async function updateActiveRun(db: DbOrTx, id: RunId, patch: RunPatch): Promise<RunRow | undefined> {
  return updateOne(
    db,
    playbookRuns,
    and(eq(playbookRuns.id, id), inArray(playbookRuns.status, [...ACTIVE_RUN_STATUSES])),
    patch,
  );
}

/**
 * Takes an active run for one step (a start or a chain), unless another
 * process took it within `staleBefore`: the claim is the run's lock.
 */
export async function claimRun(
  db: DbOrTx,
  id: RunId,
  now: Date,
  staleBefore: Date,
): Promise<RunRow | undefined> {
  return updateOne(
    db,
    playbookRuns,
    and(
      eq(playbookRuns.id, id),
      inArray(playbookRuns.status, [...ACTIVE_RUN_STATUSES]),
      or(isNull(playbookRuns.claimedAt), lte(playbookRuns.claimedAt, staleBefore)),
    ),
    { claimedAt: now },
  );
}

/**
 * Active runs of every team (the leader's sweep): the `limit` least recently
 * checked (never-checked first), marked checked in the same statement, so
 * each sweep takes the next ones and no run waits behind long chains.
 */
export async function systemActiveRuns(db: DbOrTx, now: Date, limit: number): Promise<RunRow[]> {
  const next = db
    .select({ id: playbookRuns.id })
    .from(playbookRuns)
    .where(inArray(playbookRuns.status, [...ACTIVE_RUN_STATUSES]))
    .orderBy(sql`${playbookRuns.checkedAt} asc nulls first`, playbookRuns.id)
    .limit(limit);
  const rows = await db
    .update(playbookRuns)
    .set({ checkedAt: now })
    .where(and(inArray(playbookRuns.id, next), inArray(playbookRuns.status, [...ACTIVE_RUN_STATUSES])))
    .returning();
  return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

// -- the scheduler's pauses (its lease: db/leader-lease-repo.ts) -------------------------------------------------------

export async function pauseTeam(db: DbOrTx, teamId: TeamId, by: string | null, now: Date): Promise<boolean> {
  const rows = await db
    .insert(playbookSchedulerPauses)
    .values({ teamId, pausedBy: by, pausedAt: now })
    .onConflictDoNothing()
    .returning();
  return rows.length > 0;
}

export async function resumeTeam(db: DbOrTx, teamId: TeamId): Promise<boolean> {
  const rows = await db
    .delete(playbookSchedulerPauses)
    .where(eq(playbookSchedulerPauses.teamId, teamId))
    .returning();
  return rows.length > 0;
}

export async function isPaused(db: DbOrTx, teamId: TeamId): Promise<boolean> {
  const [row] = await db
    .select()
    .from(playbookSchedulerPauses)
    .where(eq(playbookSchedulerPauses.teamId, teamId));
  return row !== undefined;
}

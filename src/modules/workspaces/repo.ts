import { and, asc, desc, eq, inArray, isNull, lt, sql, type WithSubquery } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor } from '../../db/query-parts.ts';
import { type WorkspaceStatus, workspaces } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

export type WorkspaceId = Id<'ws'>;
export type WorkspaceRow = typeof workspaces.$inferSelect;
export type WorkspacePatch = Partial<Omit<WorkspaceRow, 'id' | 'teamId' | 'createdAt' | 'eventSeq'>>;

/** A workspace in one of these takes no more messages; its row and history stay. */
export const ENDED_STATUSES = ['expired', 'terminated'] as const satisfies readonly WorkspaceStatus[];

export async function insertWorkspace(
  db: DbOrTx,
  row: typeof workspaces.$inferInsert,
): Promise<WorkspaceRow> {
  const [inserted] = await db.insert(workspaces).values(row).returning();
  return inserted!;
}

export async function findWorkspace(
  db: DbOrTx,
  teamId: TeamId,
  id: WorkspaceId,
): Promise<WorkspaceRow | undefined> {
  const [row] = await db
    .select()
    .from(workspaces)
    .where(and(eq(workspaces.teamId, teamId), eq(workspaces.id, id)));
  return row;
}

export interface WorkspaceFilter {
  status?: WorkspaceStatus;
  agentId?: string;
  archived?: boolean;
}

export function listWorkspaces(
  db: DbOrTx,
  teamId: TeamId,
  f: WorkspaceFilter,
  beforeId: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(workspaces)
    .where(
      and(
        eq(workspaces.teamId, teamId),
        f.status !== undefined ? eq(workspaces.status, f.status) : undefined,
        f.agentId !== undefined ? eq(workspaces.agentId, f.agentId) : undefined,
        f.archived !== undefined ? eq(workspaces.archived, f.archived) : undefined,
        beforeCursor(workspaces.id, beforeId),
      ),
    )
    .orderBy(desc(workspaces.id))
    .limit(limit);
}

/** Changes the workspace when it is in one of `statuses` (default: any); the row after, or undefined. */
export function updateWorkspace(
  db: DbOrTx,
  teamId: TeamId,
  id: WorkspaceId,
  patch: WorkspacePatch | PgUpdateSetSource<typeof workspaces>,
  onlyIf?: { statuses?: readonly WorkspaceStatus[]; currentTaskId?: string | null },
  alongside: WithSubquery[] = [],
): Promise<WorkspaceRow | undefined> {
  return updateOne(
    db,
    workspaces,
    and(
      eq(workspaces.teamId, teamId),
      eq(workspaces.id, id),
      onlyIf?.statuses ? inArray(workspaces.status, onlyIf.statuses) : undefined,
      onlyIf?.currentTaskId === null
        ? isNull(workspaces.currentTaskId)
        : onlyIf?.currentTaskId !== undefined
          ? eq(workspaces.currentTaskId, onlyIf.currentTaskId)
          : undefined,
    ),
    patch,
    alongside,
  );
}

/**
 * A message's turn begins, if the workspace is idle or paused with no turn
 * running: active, the turn's task current. An idle one keeps where its idle
 * time since the last turn began (idle_from, up to this last_active_at): the
 * turn's end charges it. A paused one has none (its pause charged it).
 * `recorded`: the change's outbox rows, written by the same statement even
 * when the turn cannot begin (the caller then throws, rolling them back).
 */
export function beginTurn(
  db: DbOrTx,
  teamId: TeamId,
  id: WorkspaceId,
  taskId: string,
  now: Date,
  recorded: WithSubquery[],
): Promise<WorkspaceRow | undefined> {
  return updateWorkspace(
    db,
    teamId,
    id,
    {
      status: 'active',
      currentTaskId: taskId,
      pausedAt: null,
      lastActiveAt: now,
      updatedAt: now,
      // The row as it was: the right side of SET reads the old values.
      idleFrom: sql`case when ${workspaces.status} = 'idle' and ${workspaces.capsuleId} is not null then ${workspaces.lastActiveAt} end`,
    },
    { statuses: ['idle', 'paused'], currentTaskId: null },
    recorded,
  );
}

/**
 * Whether the workspace is still paused with no turn begun, its row locked
 * until the caller's transaction ends: a turn beginning meanwhile
 * (beginTurn) waits for it.
 */
export async function lockStillPaused(db: DbOrTx, teamId: TeamId, id: WorkspaceId): Promise<boolean> {
  const [row] = await db
    .select({ id: workspaces.id })
    .from(workspaces)
    .where(
      and(
        eq(workspaces.teamId, teamId),
        eq(workspaces.id, id),
        eq(workspaces.status, 'paused'),
        isNull(workspaces.currentTaskId),
      ),
    )
    .for('update');
  return row !== undefined;
}

/** System-only: idle workspaces whose last turn ended longer ago than their idle timeout (the sweep pauses them). */
export function systemIdlePast(db: DbOrTx, now: Date, limit: number): Promise<WorkspaceRow[]> {
  return db
    .select()
    .from(workspaces)
    .where(
      and(
        eq(workspaces.status, 'idle'),
        lt(
          workspaces.lastActiveAt,
          sql`${now.toISOString()}::timestamptz - make_interval(secs => ${workspaces.idleTimeoutSec})`,
        ),
      ),
    )
    .orderBy(asc(workspaces.lastActiveAt))
    .limit(limit);
}

/** System-only: paused workspaces paused longer than their session TTL (the sweep expires them). */
export function systemPausedPast(db: DbOrTx, now: Date, limit: number): Promise<WorkspaceRow[]> {
  return db
    .select()
    .from(workspaces)
    .where(
      and(
        eq(workspaces.status, 'paused'),
        lt(
          workspaces.pausedAt,
          sql`${now.toISOString()}::timestamptz - make_interval(secs => ${workspaces.sessionTtlSec})`,
        ),
      ),
    )
    .orderBy(asc(workspaces.pausedAt))
    .limit(limit);
}

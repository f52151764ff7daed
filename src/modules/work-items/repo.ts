import { and, arrayContains, asc, count, eq, gt, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { findOne, insertOne } from '../../db/one-row.ts';
import {
  type AssigneeType,
  type WorkItemPriority,
  type WorkItemStatus,
  type WorkItemType,
  workItemComments,
  workItemLinks,
  workItems,
} from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, idInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';

// The work board: items, comments, links. SQL only.

export type WorkItemId = Id<'wki'>;
export type WorkItemRow = typeof workItems.$inferSelect;
export type WorkItemPatch = Partial<Omit<WorkItemRow, 'id' | 'teamId' | 'createdAt' | 'createdBy'>>;
export type CommentRow = typeof workItemComments.$inferSelect;
export type LinkRow = typeof workItemLinks.$inferSelect;

export function insertItem(db: DbOrTx, row: typeof workItems.$inferInsert): Promise<WorkItemRow> {
  return insertOne(db, workItems, row);
}

export function findItem(db: DbOrTx, teamId: TeamId, id: WorkItemId, lock?: 'update') {
  return findInTeam(db, workItems, teamId, id, lock);
}

export function updateItem(db: DbOrTx, teamId: TeamId, id: WorkItemId, patch: WorkItemPatch) {
  return updateInTeam(db, workItems, teamId, id, patch);
}

export interface ItemFilter {
  statuses?: WorkItemStatus[] | undefined;
  priority?: WorkItemPriority | undefined;
  type?: WorkItemType | undefined;
  /** null: unassigned. */
  assignee?: { type: AssigneeType; id: string } | null | undefined;
  label?: string | undefined;
  archived: 'exclude' | 'include' | 'only';
}

/** The items `f` picks out (of any team: callers scope it). */
function matching(f: ItemFilter) {
  return and(
    f.statuses !== undefined ? inArray(workItems.status, f.statuses) : undefined,
    f.priority !== undefined ? eq(workItems.priority, f.priority) : undefined,
    f.type !== undefined ? eq(workItems.type, f.type) : undefined,
    f.assignee === null
      ? isNull(workItems.assigneeId)
      : f.assignee !== undefined
        ? and(eq(workItems.assigneeType, f.assignee.type), eq(workItems.assigneeId, f.assignee.id))
        : undefined,
    f.label !== undefined ? arrayContains(workItems.labels, [f.label]) : undefined,
    f.archived === 'exclude'
      ? isNull(workItems.archivedAt)
      : f.archived === 'only'
        ? isNotNull(workItems.archivedAt)
        : undefined,
  );
}

/** Newest first. */
export function listItems(
  db: DbOrTx,
  teamId: TeamId,
  filter: ItemFilter,
  beforeId: string | undefined,
  limit: number,
): Promise<WorkItemRow[]> {
  return pageInTeam(db, workItems, teamId, beforeId, limit, matching(filter));
}

const PRIORITY_RANK = sql`case ${workItems.priority} when 'critical' then 0 when 'high' then 1 when 'medium' then 2 else 3 end`;

/** The highest-priority todo item that matches (not archived): then the earliest due, then the oldest. */
export async function nextTodo(
  db: DbOrTx,
  teamId: TeamId,
  filter: ItemFilter,
): Promise<WorkItemRow | undefined> {
  const [row] = await db
    .select()
    .from(workItems)
    .where(
      and(eq(workItems.teamId, teamId), matching({ ...filter, statuses: ['todo'], archived: 'exclude' })),
    )
    .orderBy(PRIORITY_RANK, sql`${workItems.dueAt} asc nulls last`, asc(workItems.id))
    .limit(1);
  return row;
}

// -- comments ----------------------------------------------------------------------------

export function insertComment(db: DbOrTx, row: typeof workItemComments.$inferInsert): Promise<CommentRow> {
  return insertOne(db, workItemComments, row);
}

/** Oldest first, after `afterId`: a conversation reads from the top. */
export function listComments(
  db: DbOrTx,
  teamId: TeamId,
  itemId: WorkItemId,
  afterId: string | undefined,
  limit: number,
): Promise<CommentRow[]> {
  return db
    .select()
    .from(workItemComments)
    .where(
      and(
        eq(workItemComments.teamId, teamId),
        eq(workItemComments.workItemId, itemId),
        afterId !== undefined ? gt(workItemComments.id, afterId as Id<'wkc'>) : undefined,
      ),
    )
    .orderBy(asc(workItemComments.id))
    .limit(limit);
}

export function findComment(db: DbOrTx, teamId: TeamId, itemId: WorkItemId, id: Id<'wkc'>) {
  return findOne(
    db,
    workItemComments,
    idInTeam(workItemComments, teamId, id, eq(workItemComments.workItemId, itemId)),
  );
}

export async function deleteComment(db: DbOrTx, teamId: TeamId, id: Id<'wkc'>): Promise<void> {
  await deleteInTeam(db, workItemComments, teamId, id);
}

// -- links -------------------------------------------------------------------------------

export function insertLink(db: DbOrTx, row: typeof workItemLinks.$inferInsert): Promise<LinkRow> {
  return insertOne(db, workItemLinks, row);
}

export function listLinks(db: DbOrTx, teamId: TeamId, itemId: WorkItemId): Promise<LinkRow[]> {
  return db
    .select()
    .from(workItemLinks)
    .where(and(eq(workItemLinks.teamId, teamId), eq(workItemLinks.workItemId, itemId)))
    .orderBy(asc(workItemLinks.id));
}

export async function countLinks(db: DbOrTx, teamId: TeamId, itemId: WorkItemId): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(workItemLinks)
    .where(and(eq(workItemLinks.teamId, teamId), eq(workItemLinks.workItemId, itemId)));
  return row?.n ?? 0;
}

export function findLink(db: DbOrTx, teamId: TeamId, itemId: WorkItemId, id: Id<'wkl'>) {
  return findOne(
    db,
    workItemLinks,
    idInTeam(workItemLinks, teamId, id, eq(workItemLinks.workItemId, itemId)),
  );
}

export async function deleteLink(db: DbOrTx, teamId: TeamId, id: Id<'wkl'>): Promise<void> {
  await deleteInTeam(db, workItemLinks, teamId, id);
}

import { and, arrayContains, asc, count, desc, eq, gt, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor, rowsLocked } from '../../db/query-parts.ts';
import {
  type AssigneeType,
  type WorkItemPriority,
  type WorkItemStatus,
  type WorkItemType,
  workItemComments,
  workItemLinks,
  workItems,
} from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

// The work board: items, comments, links. SQL only.

export type WorkItemId = Id<'wki'>;
export type WorkItemRow = typeof workItems.$inferSelect;
export type WorkItemPatch = Partial<Omit<WorkItemRow, 'id' | 'teamId' | 'createdAt' | 'createdBy'>>;
export type CommentRow = typeof workItemComments.$inferSelect;
export type LinkRow = typeof workItemLinks.$inferSelect;

export async function insertItem(db: DbOrTx, row: typeof workItems.$inferInsert): Promise<WorkItemRow> {
  const [inserted] = await db.insert(workItems).values(row).returning();
  return inserted!;
}

export async function findItem(
  db: DbOrTx,
  teamId: TeamId,
  id: WorkItemId,
  lock?: 'update',
): Promise<WorkItemRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select()
      .from(workItems)
      .where(and(eq(workItems.teamId, teamId), eq(workItems.id, id))),
    lock,
  );
  return row;
}

export function updateItem(
  db: DbOrTx,
  teamId: TeamId,
  id: WorkItemId,
  patch: WorkItemPatch,
): Promise<WorkItemRow | undefined> {
  return updateOne(db, workItems, and(eq(workItems.teamId, teamId), eq(workItems.id, id)), patch);
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

function matching(teamId: TeamId, f: ItemFilter) {
  return and(
    eq(workItems.teamId, teamId),
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
  return db
    .select()
    .from(workItems)
    .where(and(matching(teamId, filter), beforeCursor(workItems.id, beforeId)))
    .orderBy(desc(workItems.id))
    .limit(limit);
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
    .where(matching(teamId, { ...filter, statuses: ['todo'], archived: 'exclude' }))
    .orderBy(PRIORITY_RANK, sql`${workItems.dueAt} asc nulls last`, asc(workItems.id))
    .limit(1);
  return row;
}

// -- comments ----------------------------------------------------------------------------

export async function insertComment(
  db: DbOrTx,
  row: typeof workItemComments.$inferInsert,
): Promise<CommentRow> {
  const [inserted] = await db.insert(workItemComments).values(row).returning();
  return inserted!;
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

export async function findComment(
  db: DbOrTx,
  teamId: TeamId,
  itemId: WorkItemId,
  id: Id<'wkc'>,
): Promise<CommentRow | undefined> {
  const [row] = await db
    .select()
    .from(workItemComments)
    .where(
      and(
        eq(workItemComments.teamId, teamId),
        eq(workItemComments.workItemId, itemId),
        eq(workItemComments.id, id),
      ),
    );
  return row;
}

export async function deleteComment(db: DbOrTx, teamId: TeamId, id: Id<'wkc'>): Promise<void> {
  await db
    .delete(workItemComments)
    .where(and(eq(workItemComments.teamId, teamId), eq(workItemComments.id, id)));
}

// -- links -------------------------------------------------------------------------------

export async function insertLink(db: DbOrTx, row: typeof workItemLinks.$inferInsert): Promise<LinkRow> {
  const [inserted] = await db.insert(workItemLinks).values(row).returning();
  return inserted!;
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

export async function findLink(
  db: DbOrTx,
  teamId: TeamId,
  itemId: WorkItemId,
  id: Id<'wkl'>,
): Promise<LinkRow | undefined> {
  const [row] = await db
    .select()
    .from(workItemLinks)
    .where(
      and(eq(workItemLinks.teamId, teamId), eq(workItemLinks.workItemId, itemId), eq(workItemLinks.id, id)),
    );
  return row;
}

export async function deleteLink(db: DbOrTx, teamId: TeamId, id: Id<'wkl'>): Promise<void> {
  await db.delete(workItemLinks).where(and(eq(workItemLinks.teamId, teamId), eq(workItemLinks.id, id)));
}

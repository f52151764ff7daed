import type { CommentRow, LinkRow, WorkItemRow } from './repo.ts';

export function itemView(row: WorkItemRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    title: row.title,
    description: row.description,
    type: row.type,
    priority: row.priority,
    status: row.status,
    resolution: row.resolution,
    assignee:
      row.assigneeType !== null && row.assigneeId !== null
        ? { type: row.assigneeType, id: row.assigneeId }
        : null,
    labels: row.labels,
    due_date: row.dueAt?.toISOString() ?? null,
    created_by: row.createdBy,
    archived: row.archivedAt !== null,
    archived_at: row.archivedAt?.toISOString() ?? null,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function commentView(row: CommentRow) {
  return {
    id: row.id,
    work_item_id: row.workItemId,
    author_type: row.authorType,
    author_id: row.authorId,
    body: row.body,
    created_at: row.createdAt.toISOString(),
  };
}

export function linkView(row: LinkRow) {
  return {
    id: row.id,
    work_item_id: row.workItemId,
    type: row.targetType,
    target_id: row.targetId,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
  };
}

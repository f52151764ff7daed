import { sql } from 'drizzle-orm';
import { index, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** Orkosi's public task types. */
export const WORK_ITEM_TYPES = ['feature', 'bug', 'research', 'ops', 'infra', 'content', 'other'] as const;
export type WorkItemType = (typeof WORK_ITEM_TYPES)[number];
/** Lowest first; `next` takes the highest. */
export const WORK_ITEM_PRIORITIES = ['low', 'medium', 'high', 'critical'] as const;
export type WorkItemPriority = (typeof WORK_ITEM_PRIORITIES)[number];
export const WORK_ITEM_STATUSES = ['todo', 'in_progress', 'review', 'done', 'blocked', 'cancelled'] as const;
export type WorkItemStatus = (typeof WORK_ITEM_STATUSES)[number];
export const ASSIGNEE_TYPES = ['user', 'agent'] as const;
export type AssigneeType = (typeof ASSIGNEE_TYPES)[number];
export const WORK_ITEM_LINK_TYPES = ['task', 'playbook_run'] as const;
export type WorkItemLinkType = (typeof WORK_ITEM_LINK_TYPES)[number];

/**
 * The work board (Orkosi's public tasks): a team's items of work, assigned to
 * a member or one of its agents. Archived items stay, hidden from lists.
 */
export const workItems = pgTable(
  'work_items',
  {
    id: text('id').primaryKey().$type<Id<'wki'>>(),
    teamId: teamIdColumn(),
    title: text('title').notNull(),
    description: text('description'),
    type: text('type', { enum: WORK_ITEM_TYPES }).notNull(),
    priority: text('priority', { enum: WORK_ITEM_PRIORITIES }).notNull(),
    status: text('status', { enum: WORK_ITEM_STATUSES }).notNull(),
    /** Orkosi's resolution: why it ended (set with a move to done or cancelled, or by PATCH). */
    resolution: text('resolution'),
    /** Both null, or both set: a user (usr_) who is a member, or an agent (agt_) of the team. */
    assigneeType: text('assignee_type', { enum: ASSIGNEE_TYPES }),
    assigneeId: text('assignee_id'),
    labels: text('labels').array().notNull().default(sql`'{}'::text[]`),
    dueAt: ts('due_at'),
    /** Who made it: `user:usr_…`, `agent:agt_…` or `api_key:key_…`. */
    createdBy: text('created_by'),
    archivedAt: ts('archived_at'),
    ...timestamps(),
  },
  (t) => [
    index('work_items_team_idx').on(t.teamId, t.id),
    index('work_items_assignee_idx').on(t.teamId, t.assigneeId, t.status),
  ],
);

/** Comments on a work item, by whoever may reach the board (a member, a team key, an agent). */
export const workItemComments = pgTable(
  'work_item_comments',
  {
    id: text('id').primaryKey().$type<Id<'wkc'>>(),
    teamId: teamIdColumn(),
    workItemId: text('work_item_id')
      .$type<Id<'wki'>>()
      .notNull()
      .references(() => workItems.id, { onDelete: 'cascade' }),
    authorType: text('author_type').notNull(),
    authorId: text('author_id'),
    body: text('body').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('work_item_comments_item_idx').on(t.workItemId, t.id)],
);

/** The tasks and playbook runs that worked on an item (each once per item). */
export const workItemLinks = pgTable(
  'work_item_links',
  {
    id: text('id').primaryKey().$type<Id<'wkl'>>(),
    teamId: teamIdColumn(),
    workItemId: text('work_item_id')
      .$type<Id<'wki'>>()
      .notNull()
      .references(() => workItems.id, { onDelete: 'cascade' }),
    targetType: text('target_type', { enum: WORK_ITEM_LINK_TYPES }).notNull(),
    targetId: text('target_id').notNull(),
    createdBy: text('created_by'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [uniqueIndex('work_item_links_target_key').on(t.workItemId, t.targetId)],
);

import { index, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** Who did it, as the feed names them: Orkosi's three, and team API keys (neither a person nor Paddock). */
export const ACTIVITY_ACTOR_TYPES = ['user', 'agent', 'system', 'api_key'] as const;
export type ActivityActorType = (typeof ACTIVITY_ACTOR_TYPES)[number];

/** A link an agent reports with its activity: a Paddock resource or a URL. */
export interface ActivityLink {
  type: string;
  id?: string;
  url?: string;
  title?: string;
}

/**
 * The activity feed (Orkosi's activity log): one readable line per team
 * event, written in the event's own statement (events/service.ts), and the
 * lines agents report themselves (event_id: their activity.reported event).
 */
export const activityEntries = pgTable(
  'activity_entries',
  {
    id: text('id').primaryKey().$type<Id<'act'>>(),
    teamId: teamIdColumn(),
    eventId: text('event_id').notNull(),
    /** event: made from an outbox event; reported: written by an agent (POST /v1/activity). */
    source: text('source', { enum: ['event', 'reported'] }).notNull(),
    actorType: text('actor_type', { enum: ACTIVITY_ACTOR_TYPES }).notNull(),
    actorId: text('actor_id'),
    action: text('action').notNull(),
    resourceType: text('resource_type'),
    resourceId: text('resource_id'),
    summary: text('summary').notNull(),
    details: jsonb('details').$type<Record<string, unknown>>().notNull(),
    links: jsonb('links').$type<ActivityLink[]>().notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    index('activity_entries_team_idx').on(t.teamId, t.id),
    index('activity_entries_team_created_idx').on(t.teamId, t.createdAt),
    // The retention's deletes, oldest first across teams.
    index('activity_entries_created_idx').on(t.createdAt),
  ],
);

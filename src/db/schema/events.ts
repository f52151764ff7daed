import { index, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';

/**
 * The outbox: one row per state change of note, written in the same
 * transaction as the change. Audit, SSE, webhooks and alerts read from it.
 */
export const events = pgTable(
  'events',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id').$type<TeamId>(),
    type: text('type').notNull(),
    actorKind: text('actor_kind').notNull(),
    actorId: text('actor_id'),
    subjectId: text('subject_id'),
    data: jsonb('data').$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  // created_at: the retention sweep deletes the oldest.
  (t) => [index('events_team_idx').on(t.teamId, t.id), index('events_created_idx').on(t.createdAt)],
);

import { index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn, users } from './identity.ts';

/**
 * A team's notification channels (Wrenn): a provider (slack, discord, …,
 * in_app), the event types it subscribes to, and its provider config,
 * sealed (it holds webhook URLs with tokens, bot tokens, access tokens).
 */
export const channels = pgTable(
  'channels',
  {
    id: text('id').primaryKey().$type<Id<'chn'>>(),
    teamId: teamIdColumn(),
    name: text('name').notNull(),
    provider: text('provider').notNull(),
    /** Exact types (`task.completed`) and prefixes (`task.*`). */
    events: jsonb('events').$type<string[]>().notNull(),
    /** The provider config as JSON, sealed with the channel's id as context. */
    configSealed: text('config_sealed').notNull(),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('channels_team_name_key').on(t.teamId, t.name),
    index('channels_team_idx').on(t.teamId, t.id),
  ],
);

/**
 * One event to one outbound channel: its state, its attempts so far and the
 * last one's outcome. (channel_id, event_id) is unique, as for webhooks.
 */
export const channelDeliveries = pgTable(
  'channel_deliveries',
  {
    id: text('id').primaryKey().$type<Id<'cdl'>>(),
    teamId: teamIdColumn(),
    channelId: text('channel_id')
      .$type<Id<'chn'>>()
      .notNull()
      .references(() => channels.id, { onDelete: 'cascade' }),
    /** The event's id (no reference: the events retention may delete it first). */
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    /** The event as GET /v1/events shows it (JSON), kept so every attempt sends the same message. */
    event: text('event').notNull(),
    /** pending | succeeded | failed */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    nextAttemptAt: ts('next_attempt_at'),
    lockedUntil: ts('locked_until'),
    lastStatusCode: integer('last_status_code'),
    /** Why the last attempt failed, in words; never a secret of the config. */
    lastError: text('last_error'),
    completedAt: ts('completed_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('channel_deliveries_channel_event_key').on(t.channelId, t.eventId),
    index('channel_deliveries_pending_idx').on(t.status, t.nextAttemptAt),
    index('channel_deliveries_channel_idx').on(t.channelId, t.id),
  ],
);

/** The in-app inbox (Orkosi): one row per recipient user and event of an in_app channel. */
export const notifications = pgTable(
  'notifications',
  {
    id: text('id').primaryKey().$type<Id<'ntf'>>(),
    teamId: teamIdColumn(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    channelId: text('channel_id').$type<Id<'chn'>>(),
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    subjectId: text('subject_id'),
    title: text('title').notNull(),
    message: text('message').notNull(),
    data: jsonb('data').$type<Record<string, unknown>>().notNull(),
    readAt: ts('read_at'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    // One per user and event, whichever in_app channels of the team subscribe to it.
    uniqueIndex('notifications_user_event_key').on(t.userId, t.teamId, t.eventId),
    index('notifications_user_idx').on(t.userId, t.teamId, t.id),
  ],
);

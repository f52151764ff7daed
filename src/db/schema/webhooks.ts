import { index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/**
 * A team's webhook endpoints (Rungate): the event types they subscribe to,
 * optionally one agent's events only, and their signing secret, sealed.
 */
export const webhooks = pgTable(
  'webhooks',
  {
    id: text('id').primaryKey().$type<Id<'whk'>>(),
    teamId: teamIdColumn(),
    url: text('url').notNull(),
    /** Exact types (`task.completed`) and prefixes (`task.*`). */
    eventTypes: jsonb('event_types').$type<string[]>().notNull(),
    agentId: text('agent_id'),
    description: text('description'),
    /** active | paused | failing */
    status: text('status').notNull(),
    /** Deliveries that ended failed in a row; a success sets it back to 0. */
    failureCount: integer('failure_count').notNull().default(0),
    /** The secret (whsec_…), sealed with the webhook's id as context. */
    secretSealed: text('secret_sealed').notNull(),
    /** After a rotation: the old secret, still signed with until previous_secret_expires_at. */
    previousSecretSealed: text('previous_secret_sealed'),
    previousSecretExpiresAt: ts('previous_secret_expires_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [index('webhooks_team_idx').on(t.teamId, t.id), index('webhooks_status_idx').on(t.status, t.teamId)],
);

/**
 * One event to one endpoint: its body (kept, so every attempt sends the same
 * bytes whatever the events retention does), its state and its attempts so
 * far. (webhook_id, event_id) is unique: the dispatcher may read an event
 * twice (its look-back, several servers) and never makes two deliveries.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey().$type<Id<'dlv'>>(),
    teamId: teamIdColumn(),
    webhookId: text('webhook_id')
      .$type<Id<'whk'>>()
      .notNull()
      .references(() => webhooks.id, { onDelete: 'cascade' }),
    /** The event's id (no reference: the events retention may delete it first). */
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    payload: text('payload').notNull(),
    /** pending | succeeded | failed */
    status: text('status').notNull(),
    /** Attempts started so far. */
    attempts: integer('attempts').notNull().default(0),
    /** Attempts this delivery may make: the retry schedule's length, 1 for a test, one more for a redelivery. */
    maxAttempts: integer('max_attempts').notNull(),
    /** When the next attempt is due (pending only). */
    nextAttemptAt: ts('next_attempt_at'),
    /** A worker holds the attempt under way until then; past it, the attempt counts as lost. */
    lockedUntil: ts('locked_until'),
    lastStatusCode: integer('last_status_code'),
    completedAt: ts('completed_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_webhook_event_key').on(t.webhookId, t.eventId),
    index('webhook_deliveries_pending_idx').on(t.status, t.nextAttemptAt),
  ],
);

/** Each attempt of a delivery, as GET /v1/webhooks/{id}/deliveries lists them. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    id: text('id').primaryKey().$type<Id<'wha'>>(),
    teamId: teamIdColumn(),
    webhookId: text('webhook_id')
      .$type<Id<'whk'>>()
      .notNull()
      .references(() => webhooks.id, { onDelete: 'cascade' }),
    deliveryId: text('delivery_id')
      .$type<Id<'dlv'>>()
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: 'cascade' }),
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    attempt: integer('attempt').notNull(),
    statusCode: integer('status_code'),
    durationMs: integer('duration_ms').notNull(),
    error: text('error'),
    /** The first 4 KB of what the endpoint answered. */
    responseBody: text('response_body'),
    nextAttemptAt: ts('next_attempt_at'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('webhook_attempts_webhook_idx').on(t.webhookId, t.id)],
);

/** How far the webhook dispatcher has read the outbox: one row, shared by every server. */
export const webhookDispatchCursor = pgTable('webhook_dispatch_cursor', {
  id: text('id').primaryKey(),
  lastEventId: text('last_event_id').notNull(),
  updatedAt: ts('updated_at').notNull(),
});

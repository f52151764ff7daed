import { index, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';

/**
 * The audit log: who did what to which resource, from where, with what
 * outcome. A change's entry is written in the change's own transaction (with
 * its outbox event); a refused call's and a governance block's have no
 * change to go with. Kept apart from `events` so each has its own retention.
 */
export const auditLogs = pgTable(
  'audit_logs',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id').$type<TeamId>(),
    /** user, api_key, agent, host, system, anonymous. */
    actorKind: text('actor_kind').notNull(),
    actorId: text('actor_id'),
    /** An event type (`agent.created`), `governance.<code>`, or `METHOD /route` for a call that changed nothing. */
    action: text('action').notNull(),
    resourceId: text('resource_id'),
    /** success, denied (401/403), failed (other 4xx/5xx), blocked (governance). */
    outcome: text('outcome').notNull(),
    statusCode: integer('status_code'),
    ipAddress: text('ip_address'),
    requestId: text('request_id'),
    /** `METHOD /route/pattern` of the request it came from. */
    route: text('route'),
    userAgent: text('user_agent'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [index('audit_logs_team_idx').on(t.teamId, t.id), index('audit_logs_created_idx').on(t.createdAt)],
);

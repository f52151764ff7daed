import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/**
 * Jobs of a team's named work queues (Orkosi's task queue), pulled by
 * workers that run elsewhere: queued → active (held by one worker under a
 * lease) → completed | failed | cancelled; an expired lease puts it back.
 */
export const queueJobs = pgTable(
  'queue_jobs',
  {
    id: text('id').primaryKey().$type<Id<'qjob'>>(),
    teamId: teamIdColumn(),
    queue: text('queue').notNull(),
    type: text('type').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    /** Higher first; equal priorities in submission order. */
    priority: integer('priority').notNull(),
    /** queued | active | completed | failed | cancelled */
    status: text('status').notNull(),
    /** Claims so far (a claim whose lease expired counts). */
    attempts: integer('attempts').notNull(),
    maxAttempts: integer('max_attempts').notNull(),
    /** The lease a claim or heartbeat gives, in seconds. */
    timeoutSec: integer('timeout_sec').notNull(),
    /** Not claimable before this (a delayed job, or a retry's backoff). */
    runAt: ts('run_at').notNull(),
    leaseExpiresAt: ts('lease_expires_at'),
    /** The worker holding (active) or last holding the job. */
    workerId: text('worker_id'),
    idempotencyKey: text('idempotency_key'),
    result: jsonb('result').$type<unknown>(),
    error: text('error'),
    claimedAt: ts('claimed_at'),
    endedAt: ts('ended_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('queue_jobs_idempotency_key').on(t.teamId, t.queue, t.idempotencyKey),
    // The claim's scan: a queue's waiting jobs in the order they are handed out.
    index('queue_jobs_waiting_idx')
      .on(t.teamId, t.queue, t.priority.desc(), t.id)
      .where(sql`status = 'queued'`),
    index('queue_jobs_lease_idx').on(t.leaseExpiresAt).where(sql`status = 'active'`),
    index('queue_jobs_list_idx').on(t.teamId, t.queue, t.id),
    index('queue_jobs_ended_idx').on(t.teamId, t.queue, t.endedAt),
  ],
);

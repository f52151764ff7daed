import { and, desc, eq, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { findOne, insertOne } from '../../db/one-row.ts';
import { beforeCursor } from '../../db/query-parts.ts';
import {
  webhookAttempts,
  webhookDeliveries,
  webhookDispatchCursor,
  webhooks,
} from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, idInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';
import { reopened } from './attempt-queue.ts';

// Webhooks, their deliveries and attempts, and the dispatcher's cursor: SQL only.

export type WebhookId = Id<'whk'>;
export type DeliveryId = Id<'dlv'>;
export type WebhookRow = typeof webhooks.$inferSelect;
export type DeliveryRow = typeof webhookDeliveries.$inferSelect;
export type DeliveryInsert = typeof webhookDeliveries.$inferInsert;
export type AttemptRow = typeof webhookAttempts.$inferSelect;
export type WebhookPatch = Partial<Omit<WebhookRow, 'id' | 'teamId' | 'createdAt' | 'createdBy'>>;

export function insertWebhook(db: DbOrTx, row: typeof webhooks.$inferInsert): Promise<WebhookRow> {
  return insertOne(db, webhooks, row);
}

export function findWebhook(db: DbOrTx, teamId: TeamId, id: WebhookId, lock?: 'update') {
  return findInTeam(db, webhooks, teamId, id, lock);
}

/** A webhook by id alone: for the delivery worker, which acts for the row's own team. */
export function webhookById(db: DbOrTx, id: WebhookId): Promise<WebhookRow | undefined> {
  return findOne(db, webhooks, eq(webhooks.id, id));
}

export function listWebhooks(db: DbOrTx, teamId: TeamId, beforeId: string | undefined, limit: number) {
  return pageInTeam(db, webhooks, teamId, beforeId, limit);
}

export function updateWebhook(db: DbOrTx, teamId: TeamId, id: WebhookId, patch: WebhookPatch) {
  return updateInTeam(db, webhooks, teamId, id, patch);
}

export async function deleteWebhook(db: DbOrTx, teamId: TeamId, id: WebhookId): Promise<void> {
  await deleteInTeam(db, webhooks, teamId, id);
}

/** The active webhooks of these teams: who the dispatcher hands events to. */
export function activeWebhooksOf(db: DbOrTx, teamIds: TeamId[]): Promise<WebhookRow[]> {
  if (teamIds.length === 0) return Promise.resolve([]);
  return db
    .select()
    .from(webhooks)
    .where(and(eq(webhooks.status, 'active'), inArray(webhooks.teamId, teamIds)));
}

export async function anyActiveWebhook(db: DbOrTx): Promise<boolean> {
  const [row] = await db
    .select({ id: webhooks.id })
    .from(webhooks)
    .where(eq(webhooks.status, 'active'))
    .limit(1);
  return row !== undefined;
}

/**
 * A delivery ended: a success clears the endpoint's failure count; a failure
 * adds one, and the endpoint that reaches `failingAfter` while active becomes
 * failing. Call it in a transaction: the row is locked while it is counted.
 * Answers the row when this made it failing.
 */
export async function countDeliveryOutcome(
  tx: DbOrTx,
  id: WebhookId,
  succeeded: boolean,
  failingAfter: number,
  now: Date,
): Promise<WebhookRow | undefined> {
  // NO KEY UPDATE, not UPDATE: the attempt this transaction logged first holds a KEY SHARE lock
  // on the webhook (its foreign key). Two deliveries of one webhook ending at once would each
  // hold that and wait for the other's to go under FOR UPDATE: a deadlock, one attempt's record
  // lost, and the sweep sending that delivery a fifth attempt. NO KEY UPDATE does not wait on
  // KEY SHARE, and two of it still take turns.
  const [row] = await tx.select().from(webhooks).where(eq(webhooks.id, id)).for('no key update');
  if (!row) return undefined;
  if (succeeded) {
    if (row.failureCount !== 0) await tx.update(webhooks).set({ failureCount: 0 }).where(eq(webhooks.id, id));
    return undefined;
  }
  const failureCount = row.failureCount + 1;
  const failing = row.status === 'active' && failureCount >= failingAfter;
  const [updated] = await tx
    .update(webhooks)
    .set({ failureCount, ...(failing ? { status: 'failing', updatedAt: now } : {}) })
    .where(eq(webhooks.id, id))
    .returning();
  return failing ? updated : undefined;
}

// -- deliveries --

/** New deliveries; a (webhook, event) pair that has one already is skipped. Answers the ids made. */
export async function insertDeliveries(db: DbOrTx, rows: DeliveryInsert[]): Promise<DeliveryId[]> {
  if (rows.length === 0) return [];
  const made = await db
    .insert(webhookDeliveries)
    .values(rows)
    .onConflictDoNothing({ target: [webhookDeliveries.webhookId, webhookDeliveries.eventId] })
    .returning({ id: webhookDeliveries.id });
  return made.map((r) => r.id);
}

export function findDelivery(
  db: DbOrTx,
  teamId: TeamId,
  webhookId: WebhookId,
  id: DeliveryId,
  lock?: 'update',
): Promise<DeliveryRow | undefined> {
  const ofWebhook = eq(webhookDeliveries.webhookId, webhookId);
  return findOne(db, webhookDeliveries, idInTeam(webhookDeliveries, teamId, id, ofWebhook), lock);
}

/**
 * Takes attempt number `attempt` of a pending delivery for `lockMs`: only
 * when no worker holds it and the attempts before it are done, so a job sent
 * twice (the sweep, a retry) makes one attempt. Answers the delivery, its
 * attempts counting this one, or undefined when it is not this job's to make.
 */
export async function claimAttempt(
  db: DbOrTx,
  id: DeliveryId,
  attempt: number,
  now: Date,
  lockedUntil: Date,
): Promise<DeliveryRow | undefined> {
  const [row] = await db
    .update(webhookDeliveries)
    .set({ attempts: attempt, lockedUntil, updatedAt: now })
    .where(
      and(
        eq(webhookDeliveries.id, id),
        eq(webhookDeliveries.status, 'pending'),
        eq(webhookDeliveries.attempts, attempt - 1),
        or(isNull(webhookDeliveries.lockedUntil), lt(webhookDeliveries.lockedUntil, now)),
      ),
    )
    .returning();
  return row;
}

export async function finishAttempt(
  db: DbOrTx,
  id: DeliveryId,
  patch: Partial<
    Pick<DeliveryRow, 'status' | 'nextAttemptAt' | 'lastStatusCode' | 'completedAt' | 'attempts'>
  >,
  now: Date,
): Promise<void> {
  await db
    .update(webhookDeliveries)
    .set({ ...patch, lockedUntil: null, updatedAt: now })
    .where(eq(webhookDeliveries.id, id));
}

/** An ended delivery, pending again for one attempt more (a redelivery). */
export async function reopenDelivery(db: DbOrTx, row: DeliveryRow, now: Date): Promise<DeliveryRow> {
  return (await updateOne(
    db,
    webhookDeliveries,
    eq(webhookDeliveries.id, row.id),
    reopened(row.attempts, now),
  ))!;
}

/**
 * Pending deliveries whose next attempt was due before `dueBefore` and that
 * no worker holds: their job was lost (a crash between the row and its job,
 * or during the attempt). The sweep sends them a job again.
 */
export function overdueDeliveries(
  db: DbOrTx,
  dueBefore: Date,
  now: Date,
  limit: number,
): Promise<DeliveryRow[]> {
  return db
    .select()
    .from(webhookDeliveries)
    .where(
      and(
        eq(webhookDeliveries.status, 'pending'),
        lte(webhookDeliveries.nextAttemptAt, dueBefore),
        or(isNull(webhookDeliveries.lockedUntil), lt(webhookDeliveries.lockedUntil, now)),
      ),
    )
    .orderBy(webhookDeliveries.nextAttemptAt)
    .limit(limit);
}

// -- attempts --

export function insertAttempt(db: DbOrTx, row: typeof webhookAttempts.$inferInsert): Promise<AttemptRow> {
  return insertOne(db, webhookAttempts, row);
}

/** A webhook's attempts, newest first, with their delivery's state. */
export function listAttempts(
  db: DbOrTx,
  teamId: TeamId,
  webhookId: WebhookId,
  beforeId: string | undefined,
  limit: number,
): Promise<Array<{ attempt: AttemptRow; deliveryStatus: string }>> {
  return db
    .select({ attempt: webhookAttempts, deliveryStatus: webhookDeliveries.status })
    .from(webhookAttempts)
    .innerJoin(webhookDeliveries, eq(webhookDeliveries.id, webhookAttempts.deliveryId))
    .where(
      and(
        eq(webhookAttempts.teamId, teamId),
        eq(webhookAttempts.webhookId, webhookId),
        beforeCursor(webhookAttempts.id, beforeId),
      ),
    )
    .orderBy(desc(webhookAttempts.id))
    .limit(limit);
}

// -- the dispatcher's cursor --

const CURSOR_ID = 'events';

/** The last event id the dispatchers read up to; made at `initial` the first time. */
export async function dispatchCursor(db: DbOrTx, initial: string, now: Date): Promise<string> {
  await db
    .insert(webhookDispatchCursor)
    .values({ id: CURSOR_ID, lastEventId: initial, updatedAt: now })
    .onConflictDoNothing();
  const [row] = await db.select().from(webhookDispatchCursor).where(eq(webhookDispatchCursor.id, CURSOR_ID));
  return row!.lastEventId;
}

/** Moves the cursor forward to `eventId` (never back: another server may be ahead). */
export async function advanceDispatchCursor(db: DbOrTx, eventId: string, now: Date): Promise<void> {
  await db
    .update(webhookDispatchCursor)
    .set({ lastEventId: sql`greatest(${webhookDispatchCursor.lastEventId}, ${eventId})`, updatedAt: now })
    .where(eq(webhookDispatchCursor.id, CURSOR_ID));
}

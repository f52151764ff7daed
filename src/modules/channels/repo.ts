import { and, eq, inArray, isNull, lt, lte, or } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { findOne, insertOne } from '../../db/one-row.ts';
import { channelDeliveries, channels } from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, idInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';
import { reopened } from '../webhooks/attempt-queue.ts';

// Channels and their deliveries: SQL only.

export { isUniqueViolation } from '../../db/errors.ts';

export type ChannelId = Id<'chn'>;
export type ChannelDeliveryId = Id<'cdl'>;
export type ChannelRow = typeof channels.$inferSelect;
export type ChannelDeliveryRow = typeof channelDeliveries.$inferSelect;
export type ChannelDeliveryInsert = typeof channelDeliveries.$inferInsert;
export type ChannelPatch = Partial<Pick<ChannelRow, 'name' | 'events' | 'configSealed' | 'updatedAt'>>;

export function insertChannel(db: DbOrTx, row: typeof channels.$inferInsert): Promise<ChannelRow> {
  return insertOne(db, channels, row);
}

export function findChannel(db: DbOrTx, teamId: TeamId, id: ChannelId, lock?: 'update') {
  return findInTeam(db, channels, teamId, id, lock);
}

/** A channel by id alone: for the delivery worker, which acts for the row's own team. */
export function channelById(db: DbOrTx, id: ChannelId): Promise<ChannelRow | undefined> {
  return findOne(db, channels, eq(channels.id, id));
}

export function listChannels(db: DbOrTx, teamId: TeamId, beforeId: string | undefined, limit: number) {
  return pageInTeam(db, channels, teamId, beforeId, limit);
}

export function updateChannel(db: DbOrTx, teamId: TeamId, id: ChannelId, patch: ChannelPatch) {
  return updateInTeam(db, channels, teamId, id, patch);
}

export async function deleteChannel(db: DbOrTx, teamId: TeamId, id: ChannelId): Promise<void> {
  await deleteInTeam(db, channels, teamId, id);
}

/** Which of `ids` are not channels of the team (a playbook's notification_channels are checked with it). */
export async function unknownChannelIds(db: DbOrTx, teamId: TeamId, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const found = await db
    .select({ id: channels.id })
    .from(channels)
    .where(and(eq(channels.teamId, teamId), inArray(channels.id, ids as ChannelId[])));
  const known = new Set<string>(found.map((r) => r.id));
  return ids.filter((id) => !known.has(id));
}

/** The channels of these teams: whom the dispatcher hands events to. */
export function channelsOf(db: DbOrTx, teamIds: TeamId[]): Promise<ChannelRow[]> {
  if (teamIds.length === 0) return Promise.resolve([]);
  return db.select().from(channels).where(inArray(channels.teamId, teamIds));
}

export async function anyChannel(db: DbOrTx): Promise<boolean> {
  const [row] = await db.select({ id: channels.id }).from(channels).limit(1);
  return row !== undefined;
}

// -- deliveries --

/** New deliveries; a (channel, event) pair that has one already is skipped. Answers the ids made. */
export async function insertDeliveries(
  db: DbOrTx,
  rows: ChannelDeliveryInsert[],
): Promise<ChannelDeliveryId[]> {
  if (rows.length === 0) return [];
  const made = await db
    .insert(channelDeliveries)
    .values(rows)
    .onConflictDoNothing({ target: [channelDeliveries.channelId, channelDeliveries.eventId] })
    .returning({ id: channelDeliveries.id });
  return made.map((r) => r.id);
}

/**
 * Takes attempt number `attempt` of a pending delivery until `lockedUntil`:
 * only when no worker holds it and the attempts before it are done, so a job
 * sent twice makes one attempt.
 */
export async function claimAttempt(
  db: DbOrTx,
  id: ChannelDeliveryId,
  attempt: number,
  now: Date,
  lockedUntil: Date,
): Promise<ChannelDeliveryRow | undefined> {
  const [row] = await db
    .update(channelDeliveries)
    .set({ attempts: attempt, lockedUntil, updatedAt: now })
    .where(
      and(
        eq(channelDeliveries.id, id),
        eq(channelDeliveries.status, 'pending'),
        eq(channelDeliveries.attempts, attempt - 1),
        or(isNull(channelDeliveries.lockedUntil), lt(channelDeliveries.lockedUntil, now)),
      ),
    )
    .returning();
  return row;
}

/** One of the channel's deliveries (another channel's or team's is not found). */
export function findDelivery(
  db: DbOrTx,
  teamId: TeamId,
  channelId: ChannelId,
  id: ChannelDeliveryId,
  lock?: 'update',
): Promise<ChannelDeliveryRow | undefined> {
  const ofChannel = eq(channelDeliveries.channelId, channelId);
  return findOne(db, channelDeliveries, idInTeam(channelDeliveries, teamId, id, ofChannel), lock);
}

/** An ended delivery, pending again for one attempt more (a redelivery). */
export async function reopenDelivery(
  db: DbOrTx,
  row: ChannelDeliveryRow,
  now: Date,
): Promise<ChannelDeliveryRow> {
  return (await updateOne(
    db,
    channelDeliveries,
    eq(channelDeliveries.id, row.id),
    reopened(row.attempts, now),
  ))!;
}

export async function finishAttempt(
  db: DbOrTx,
  id: ChannelDeliveryId,
  patch: Partial<
    Pick<ChannelDeliveryRow, 'status' | 'nextAttemptAt' | 'lastStatusCode' | 'lastError' | 'completedAt'>
  >,
  now: Date,
): Promise<void> {
  await db
    .update(channelDeliveries)
    .set({ ...patch, lockedUntil: null, updatedAt: now })
    .where(eq(channelDeliveries.id, id));
}

/** Pending deliveries overdue before `dueBefore` that no worker holds: their job was lost. */
export function overdueDeliveries(
  db: DbOrTx,
  dueBefore: Date,
  now: Date,
  limit: number,
): Promise<ChannelDeliveryRow[]> {
  return db
    .select()
    .from(channelDeliveries)
    .where(
      and(
        eq(channelDeliveries.status, 'pending'),
        lte(channelDeliveries.nextAttemptAt, dueBefore),
        or(isNull(channelDeliveries.lockedUntil), lt(channelDeliveries.lockedUntil, now)),
      ),
    )
    .orderBy(channelDeliveries.nextAttemptAt)
    .limit(limit);
}

/** A channel's deliveries, newest first. */
export function listDeliveries(
  db: DbOrTx,
  teamId: TeamId,
  channelId: ChannelId,
  beforeId: string | undefined,
  limit: number,
): Promise<ChannelDeliveryRow[]> {
  return pageInTeam(
    db,
    channelDeliveries,
    teamId,
    beforeId,
    limit,
    eq(channelDeliveries.channelId, channelId),
  );
}

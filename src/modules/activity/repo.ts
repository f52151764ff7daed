import { and, count, desc, eq, gte, like, lt, lte, type SQL, sql, type WithSubquery } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { deleteBatch } from '../../db/delete-batch.ts';
import { beforeCursor, escapeLike } from '../../db/query-parts.ts';
import { type ActivityActorType, activityEntries } from '../../db/schema/index.ts';

// The activity feed: SQL only.

export type ActivityInsert = typeof activityEntries.$inferInsert;
export type ActivityRow = typeof activityEntries.$inferSelect;

/** Activity rows as a common table expression of the statement that records their events. */
export function activityAlongside(db: DbOrTx, rows: ActivityInsert[]): WithSubquery {
  return db
    .$with('recorded_activity')
    .as(db.insert(activityEntries).values(rows).returning({ id: activityEntries.id }));
}

/** Activity entries as a statement of their own (a batch of events recorded in one transaction). */
export async function insertActivity(db: DbOrTx, rows: ActivityInsert[]): Promise<void> {
  if (rows.length > 0) await db.insert(activityEntries).values(rows);
}

export interface ActivityFilter {
  actorType?: ActivityActorType | undefined;
  actorId?: string | undefined;
  /** Exact, or a prefix when it ends in `*`. */
  action?: string | undefined;
  resourceType?: string | undefined;
  resourceId?: string | undefined;
  source?: 'event' | 'reported' | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

function matching(teamId: TeamId, f: ActivityFilter): SQL | undefined {
  return and(
    eq(activityEntries.teamId, teamId),
    f.actorType !== undefined ? eq(activityEntries.actorType, f.actorType) : undefined,
    f.actorId !== undefined ? eq(activityEntries.actorId, f.actorId) : undefined,
    f.action === undefined
      ? undefined
      : f.action.endsWith('*')
        ? like(activityEntries.action, `${escapeLike(f.action.slice(0, -1))}%`)
        : eq(activityEntries.action, f.action),
    f.resourceType !== undefined ? eq(activityEntries.resourceType, f.resourceType) : undefined,
    f.resourceId !== undefined ? eq(activityEntries.resourceId, f.resourceId) : undefined,
    f.source !== undefined ? eq(activityEntries.source, f.source) : undefined,
    f.from !== undefined ? gte(activityEntries.createdAt, f.from) : undefined,
    f.to !== undefined ? lte(activityEntries.createdAt, f.to) : undefined,
  );
}

/** A page of the team's feed, newest first. */
export function listEntries(
  db: DbOrTx,
  teamId: TeamId,
  filter: ActivityFilter,
  beforeId: string | undefined,
  limit: number,
): Promise<ActivityRow[]> {
  return db
    .select()
    .from(activityEntries)
    .where(and(matching(teamId, filter), beforeCursor(activityEntries.id, beforeId)))
    .orderBy(desc(activityEntries.id))
    .limit(limit);
}

export async function findByEventId(
  db: DbOrTx,
  teamId: TeamId,
  eventId: string,
): Promise<ActivityRow | undefined> {
  const [row] = await db
    .select()
    .from(activityEntries)
    .where(and(eq(activityEntries.teamId, teamId), eq(activityEntries.eventId, eventId)));
  return row;
}

/** Entries in the window, counted per actor and per action: the busiest `limit` of each. */
export async function countEntries(
  db: DbOrTx,
  teamId: TeamId,
  window: { from: Date; to: Date },
  limit: number,
) {
  const where = matching(teamId, window);
  const n = count();
  const [total, byActor, byAction] = await Promise.all([
    db.select({ n }).from(activityEntries).where(where),
    db
      .select({ actorType: activityEntries.actorType, actorId: activityEntries.actorId, n })
      .from(activityEntries)
      .where(where)
      .groupBy(activityEntries.actorType, activityEntries.actorId)
      .orderBy(desc(n), activityEntries.actorType, activityEntries.actorId)
      .limit(limit),
    db
      .select({ action: activityEntries.action, n })
      .from(activityEntries)
      .where(where)
      .groupBy(activityEntries.action)
      .orderBy(desc(n), activityEntries.action)
      .limit(limit),
  ]);
  return { total: total[0]?.n ?? 0, byActor, byAction };
}

/** Deletes up to `batch` entries made before `cutoff` (retention), oldest first. */
export async function deleteActivityBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  const old = lt(activityEntries.createdAt, cutoff);
  return deleteBatch(db, activityEntries, activityEntries.id, old, batch, activityEntries.createdAt);
}

/** An erasure: the e-mail address in the feed's readable lines replaced (their details are rewritten with the events'). */
export async function eraseFromSummaries(db: DbOrTx, email: string, replacement: string): Promise<void> {
  await db
    .update(activityEntries)
    .set({ summary: sql`replace(${activityEntries.summary}, ${email}, ${replacement})` })
    .where(like(activityEntries.summary, `%${escapeLike(email)}%`));
}

import { and, asc, desc, eq, gt, inArray, like, lt, or, type SQL, type WithSubquery } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { escapeLike } from '../../db/query-parts.ts';
import { events } from '../../db/schema/index.ts';

// The outbox: SQL only.

export type EventInsert = typeof events.$inferInsert;

/** Outbox rows, in the caller's transaction (the one that made the change), with rows that go with them. */
export async function insertEvent(
  tx: DbOrTx,
  row: EventInsert | EventInsert[],
  alongside: WithSubquery[],
): Promise<void> {
  await (alongside.length > 0 ? tx.with(...alongside) : tx)
    .insert(events)
    .values(Array.isArray(row) ? row : [row]);
}

/**
 * Outbox rows as a common table expression of another module's statement
 * (`db.with(…)`): the change and its events in one statement, atomic without
 * a transaction and one round trip to the database.
 */
export function eventsAlongside(db: DbOrTx, rows: EventInsert[]): WithSubquery {
  return db.$with('recorded_events').as(db.insert(events).values(rows).returning({ id: events.id }));
}

export type EventRow = typeof events.$inferSelect;

/** Which of a team's events a reader wants: exact types, `noun.` prefixes, one subject. */
export interface EventFilter {
  types: string[];
  prefixes: string[];
  subjectId: string | undefined;
}

function matching(filter: EventFilter): SQL | undefined {
  const byType = [
    ...(filter.types.length > 0 ? [inArray(events.type, filter.types)] : []),
    ...filter.prefixes.map((p) => like(events.type, `${escapeLike(p)}%`)),
  ];
  return and(
    byType.length > 0 ? or(...byType) : undefined,
    filter.subjectId !== undefined ? eq(events.subjectId, filter.subjectId) : undefined,
  );
}

/** A page of the team's events: oldest first after `afterId`, or newest first before `beforeId`. */
export function listTeamEvents(
  db: DbOrTx,
  teamId: TeamId,
  filter: EventFilter,
  from: { afterId: string } | { beforeId: string | undefined },
  limit: number,
): Promise<EventRow[]> {
  const ascending = 'afterId' in from;
  return db
    .select()
    .from(events)
    .where(
      and(
        eq(events.teamId, teamId),
        ascending ? gt(events.id, from.afterId) : from.beforeId ? lt(events.id, from.beforeId) : undefined,
        matching(filter),
      ),
    )
    .orderBy(ascending ? asc(events.id) : desc(events.id))
    .limit(limit);
}

/** Ids of every team's events after `floorId`, oldest first: what the stream's poller looks at. */
export async function eventIdsAfter(db: DbOrTx, floorId: string, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: events.id })
    .from(events)
    .where(gt(events.id, floorId))
    .orderBy(asc(events.id))
    .limit(limit);
  return rows.map((r) => r.id);
}

export function eventsByIds(db: DbOrTx, ids: string[]): Promise<EventRow[]> {
  return db.select().from(events).where(inArray(events.id, ids)).orderBy(asc(events.id));
}

export async function latestEventId(db: DbOrTx): Promise<string | undefined> {
  const [row] = await db.select({ id: events.id }).from(events).orderBy(desc(events.id)).limit(1);
  return row?.id;
}

/** Deletes up to `batch` events made before `cutoff`; how many went. */
export async function deleteEventsBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  const doomed = db.select({ id: events.id }).from(events).where(lt(events.createdAt, cutoff)).limit(batch);
  const gone = await db.delete(events).where(inArray(events.id, doomed)).returning({ id: events.id });
  return gone.length;
}

import type { WithSubquery } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { events } from '../../db/schema/index.ts';

// The outbox: SQL only.

export type EventInsert = typeof events.$inferInsert;

/** One outbox row, in the caller's transaction (the one that made the change). */
export async function insertEvent(tx: DbOrTx, row: EventInsert): Promise<void> {
  await tx.insert(events).values(row);
}

/**
 * Outbox rows as a common table expression of another module's statement
 * (`db.with(…)`): the change and its events in one statement, atomic without
 * a transaction and one round trip to the database.
 */
export function eventsAlongside(db: DbOrTx, rows: EventInsert[]): WithSubquery {
  return db.$with('recorded_events').as(db.insert(events).values(rows).returning({ id: events.id }));
}

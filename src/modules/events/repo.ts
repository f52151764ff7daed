import type { DbOrTx } from '../../db/client.ts';
import { events } from '../../db/schema/index.ts';

// The outbox: SQL only.

export type EventInsert = typeof events.$inferInsert;

/** One outbox row, in the caller's transaction (the one that made the change). */
export async function insertEvent(tx: DbOrTx, row: EventInsert): Promise<void> {
  await tx.insert(events).values(row);
}

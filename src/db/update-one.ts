import type { SQL, WithSubquery } from 'drizzle-orm';
import type { PgTable, PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.ts';

/**
 * Applies `patch` to the row `where` picks out (one row: repositories pass a
 * primary key, with the team where the row has one) and answers the row as
 * it is after the change; undefined when no row matched. `alongside`: common
 * table expressions written by the same statement (EventsService.alongside),
 * whether or not a row matched, so only for a caller that throws (its
 * transaction rolls back) when none did.
 */
export async function updateOne<T extends PgTable>(
  db: DbOrTx,
  table: T,
  where: SQL | undefined,
  patch: PgUpdateSetSource<T>,
  alongside: WithSubquery[] = [],
): Promise<T['$inferSelect'] | undefined> {
  const rows = (await (alongside.length > 0 ? db.with(...alongside) : db)
    .update(table)
    .set(patch)
    .where(where)
    .returning()) as T['$inferSelect'][];
  return rows[0];
}

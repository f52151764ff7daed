import type { SQL } from 'drizzle-orm';
import type { PgTable, PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.ts';

/**
 * Applies `patch` to the row `where` picks out (one row: repositories pass a
 * primary key, with the team where the row has one) and answers the row as
 * it is after the change; undefined when no row matched.
 */
export async function updateOne<T extends PgTable>(
  db: DbOrTx,
  table: T,
  where: SQL | undefined,
  patch: PgUpdateSetSource<T>,
): Promise<T['$inferSelect'] | undefined> {
  const rows = (await db.update(table).set(patch).where(where).returning()) as T['$inferSelect'][];
  return rows[0];
}

import { inArray, type SQL } from 'drizzle-orm';
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.ts';

/**
 * Deletes up to `batch` rows of `table` that `where` picks out (the first by
 * `order` when given) and answers how many went: the retention sweeps'
 * statement, short so that none holds many row locks at once.
 */
export async function deleteBatch(
  db: DbOrTx,
  table: PgTable,
  id: AnyPgColumn,
  where: SQL | undefined,
  batch: number,
  order?: AnyPgColumn,
): Promise<number> {
  const chosen = db.select({ id }).from(table).where(where).$dynamic();
  const doomed = (order ? chosen.orderBy(order) : chosen).limit(batch);
  const gone = await db.delete(table).where(inArray(id, doomed)).returning({ id });
  return gone.length;
}

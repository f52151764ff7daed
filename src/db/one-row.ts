import type { SQL, WithSubquery } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.ts';
import { rowsLocked } from './query-parts.ts';

// One row in, one row out: the insert and the lookup most repositories write
// (updateOne, in update-one.ts, is the change).

/**
 * Inserts one row and answers it as stored (defaults filled in). `alongside`:
 * common table expressions written by the same statement
 * (EventsService.alongside), so the row and its events commit together.
 */
export async function insertOne<T extends PgTable>(
  db: DbOrTx,
  table: T,
  row: T['$inferInsert'],
  alongside: WithSubquery[] = [],
): Promise<T['$inferSelect']> {
  const [inserted] = (await (alongside.length > 0 ? db.with(...alongside) : db)
    .insert(table)
    .values(row)
    .returning()) as T['$inferSelect'][];
  return inserted!;
}

/**
 * The row `where` picks out (repositories pass a key: an id with its team
 * where the row has one), or undefined; with `lock`, it stays locked for the
 * rest of the transaction.
 */
export async function findOne<T extends PgTable>(
  db: DbOrTx,
  table: T,
  where: SQL | undefined,
  lock?: 'update' | 'share',
): Promise<T['$inferSelect'] | undefined> {
  // Widened to PgTable: drizzle's select cannot resolve a generic table's columns.
  const [row] = (await rowsLocked(
    db
      .select()
      .from(table as PgTable)
      .where(where),
    lock,
  )) as T['$inferSelect'][];
  return row;
}

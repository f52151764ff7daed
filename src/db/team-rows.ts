import { and, desc, eq, type SQL } from 'drizzle-orm';
import type { AnyPgColumn, PgTable, PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { TeamId } from '../core/ids.ts';
import type { DbOrTx } from './client.ts';
import { findOne } from './one-row.ts';
import { beforeCursor } from './query-parts.ts';
import { updateOne } from './update-one.ts';

// The statements a team's table keyed by a typed id takes the same way in every
// repository: a row found, changed or deleted, a page listed. The repositories
// still name each one for their domain (findChannel, deleteSkill).

/** A table whose rows belong to a team and are keyed by `id`. */
export type TeamTable = PgTable & { id: AnyPgColumn; teamId: AnyPgColumn };
/** A team table's id type, as its schema types the column (`Id<'chn'>` for channels). */
export type RowId<T extends TeamTable> = T['id']['_']['data'];
type Row<T extends PgTable> = T['$inferSelect'];

/** The team's row `id`, when every condition in `also` holds: another team's id matches nothing. */
export function idInTeam<T extends TeamTable>(
  table: T,
  teamId: TeamId,
  id: RowId<T>,
  ...also: (SQL | undefined)[]
): SQL {
  return and(eq(table.teamId, teamId), eq(table.id, id), ...also) as SQL;
}

/** The team's row `id`, or undefined; with `lock`, it stays locked for the rest of the transaction. */
export function findInTeam<T extends TeamTable>(
  db: DbOrTx,
  table: T,
  teamId: TeamId,
  id: RowId<T>,
  lock?: 'update' | 'share',
): Promise<Row<T> | undefined> {
  return findOne(db, table, idInTeam(table, teamId, id), lock);
}

/** Applies `patch` to the team's row `id`; the row after, or undefined when the team has no such row. */
export function updateInTeam<T extends TeamTable>(
  db: DbOrTx,
  table: T,
  teamId: TeamId,
  id: RowId<T>,
  patch: PgUpdateSetSource<T>,
): Promise<Row<T> | undefined> {
  return updateOne(db, table, idInTeam(table, teamId, id), patch);
}

/** Deletes the team's row `id`; the row as it was, or undefined when the team had no such row. */
export async function deleteInTeam<T extends TeamTable>(
  db: DbOrTx,
  table: T,
  teamId: TeamId,
  id: RowId<T>,
): Promise<Row<T> | undefined> {
  const [row] = (await db
    .delete(table)
    .where(idInTeam(table, teamId, id))
    .returning()) as Row<T>[];
  return row;
}

/**
 * A page of the team's rows for which every condition in `also` holds,
 * newest first (by id), from the one after the cursor (the last id of the
 * page before).
 */
export async function pageInTeam<T extends TeamTable>(
  db: DbOrTx,
  table: T,
  teamId: TeamId,
  beforeId: string | undefined,
  limit: number,
  ...also: (SQL | undefined)[]
): Promise<Row<T>[]> {
  const rows = await db
    .select()
    .from(table as PgTable)
    .where(and(eq(table.teamId, teamId), ...also, beforeCursor(table.id, beforeId)))
    .orderBy(desc(table.id))
    .limit(limit);
  return rows as Row<T>[];
}

import { and, type Column, eq, type GetColumnData, isNull, lt, type SQL, sql } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { TeamId } from '../core/ids.ts';

// Pieces every repository's queries share: the team's live rows, the page cursor, LIKE
// escaping, optional row locks (the repositories still hold all the SQL).

/** A table whose rows belong to a team and are deleted softly (by setting deleted_at). */
interface SoftDeletedTeamTable {
  teamId: AnyPgColumn;
  deletedAt: AnyPgColumn;
}

/**
 * The team's rows that are not deleted and for which every condition in
 * `also` holds (undefined ones are skipped, as in drizzle's `and`): the scope
 * of every lookup, list and update of a soft-deleted table.
 */
export function liveInTeam(table: SoftDeletedTeamTable, teamId: TeamId, ...also: (SQL | undefined)[]): SQL {
  return and(eq(table.teamId, teamId), isNull(table.deletedAt), ...also) as SQL;
}

/** `column = value` when a list's filter is given, else no condition (undefined, which `and` skips). */
export function eqIfGiven<C extends Column>(
  column: C,
  value: GetColumnData<C, 'raw'> | undefined,
): SQL | undefined {
  return value !== undefined ? eq(column, value) : undefined;
}

/** `text` with LIKE's wildcards and its escape character escaped, to match literally. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * The rows before a page's cursor (the last id of the page before), or every
 * row when there is none: pages run newest first. A cursor is any string, as
 * ids order as text.
 */
export function beforeCursor(id: AnyPgColumn, cursor: string | undefined): SQL | undefined {
  return cursor ? lt(id, cursor) : undefined;
}

/** A select that can also take its rows' locks (drizzle's `.for`). */
interface LockableSelect<T> extends PromiseLike<T[]> {
  for(strength: 'update' | 'share'): PromiseLike<T[]>;
}

/** The rows a select finds; with `lock`, they stay locked for the rest of the transaction. */
export async function rowsLocked<T>(query: LockableSelect<T>, lock?: 'update' | 'share'): Promise<T[]> {
  return lock ? await query.for(lock) : await query;
}

/**
 * A statement written with `$1`… placeholders (as rawQuery takes it) as
 * drizzle SQL with its parameters bound, so it can run on a transaction
 * (rawQuery runs on the pool, outside any transaction).
 */
export function positionalSql(text: string, params: readonly unknown[]): SQL {
  const chunks: SQL[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$(\d+)/g)) {
    chunks.push(sql.raw(text.slice(last, m.index)), sql`${params[Number(m[1]) - 1]}`);
    last = m.index + m[0].length;
  }
  chunks.push(sql.raw(text.slice(last)));
  return sql.join(chunks);
}

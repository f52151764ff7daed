import { BadRequestError } from './errors.ts';

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

export interface PageQuery {
  limit?: number;
  cursor?: string;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** Cursors are opaque to clients: base64url of the last row's sort key. */
export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[A-Za-z0-9_:.-]{1,200}$/.test(key)) {
    throw new BadRequestError(
      'invalid_cursor',
      'cursor is not one this server issued; start again without it',
    );
  }
  return key;
}

export function pageLimit(limit: number | undefined): number {
  return Math.min(Math.max(limit ?? DEFAULT_PAGE_LIMIT, 1), MAX_PAGE_LIMIT);
}

/**
 * Builds a page from rows fetched with `limit + 1`: the extra row only says
 * there is more, and the cursor is the key of the last row returned.
 */
export function toPage<R, T>(
  rows: R[],
  limit: number,
  keyOf: (row: R) => string,
  map: (row: R) => T,
): Page<T> {
  const more = rows.length > limit;
  const slice = more ? rows.slice(0, limit) : rows;
  const last = slice.at(-1);
  return {
    data: slice.map(map),
    next_cursor: more && last !== undefined ? encodeCursor(keyOf(last)) : null,
  };
}

/**
 * One page of a list: `fetch` gets the decoded cursor and how many rows to
 * read (the page's limit plus the one that says there is more).
 */
export function pageOf<R extends { id: string }, T>(
  query: PageQuery,
  fetch: (cursor: string | undefined, rows: number) => Promise<R[]>,
  map: (row: R) => T,
): Promise<Page<T>>;
export function pageOf<R, T>(
  query: PageQuery,
  fetch: (cursor: string | undefined, rows: number) => Promise<R[]>,
  map: (row: R) => T,
  keyOf: (row: R) => string,
): Promise<Page<T>>;
export async function pageOf<R, T>(
  query: PageQuery,
  fetch: (cursor: string | undefined, rows: number) => Promise<R[]>,
  map: (row: R) => T,
  keyOf: (row: R) => string = (row) => (row as { id: string }).id,
): Promise<Page<T>> {
  const limit = pageLimit(query.limit);
  return toPage(await fetch(decodeCursor(query.cursor), limit + 1), limit, keyOf, map);
}

/** A page cursor that is a version number (lists of versions); anything else is the client's mistake. */
export function versionCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  if (!/^\d{1,7}$/.test(cursor))
    throw new BadRequestError(
      'invalid_cursor',
      'cursor is not one this server issued; start again without it',
    );
  return Number(cursor);
}

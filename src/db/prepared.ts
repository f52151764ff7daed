import type { Db } from './client.ts';

/**
 * A statement on a hot path (each request's authentication, a capsule's read),
 * built by drizzle once per database instead of on every call: building a
 * select through drizzle costs more server CPU than the embedded database
 * takes to run it (about 0.3 ms for the session lookup's four-table join).
 * On Postgres the statement is also named, so each pooled connection parses
 * and plans it once. Values come as placeholders (`sql.placeholder`), so the
 * text is the same on every call; the results are read from the database
 * every time, nothing is cached but the statement.
 */
export function preparedPerDb<Q>(build: (db: Db) => Q): (db: Db) => Q {
  const built = new WeakMap<Db, Q>();
  return (db) => {
    let q = built.get(db);
    if (q === undefined) {
      q = build(db);
      built.set(db, q);
    }
    return q;
  };
}

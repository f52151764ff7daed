import { type Db, sqlClient } from './client.ts';
import { RemotePglite } from './pglite-remote.ts';

interface Cache<K, V> {
  /** The change counter of the cached tables, or undefined where none is kept (Postgres). */
  readonly changes: (() => number) | undefined;
  /** The counter the entries were read at. */
  at: number;
  readonly entries: Map<K, V>;
}

/**
 * Reads of a few tables answered from memory for as long as nothing has
 * changed those tables: exact on the embedded database, where every change
 * goes through this process and is counted (`RemotePglite.changes`); no
 * cache at all on Postgres, where other servers write too and nothing here
 * would see it. For reads on a hot path whose tables seldom change
(authentication, placement's hosts, a team's limits, an agent's secrets). An
 * answer that found nothing is not kept; at most `limit` are, the oldest
 * leaving first. Callers must not modify what they are given.
 */
export function cachedReads<K, V>(tables: readonly string[], limit = 10_000) {
  const perDb = new WeakMap<Db, Cache<K, V>>();
  const cacheOf = (db: Db): Cache<K, V> => {
    let cache = perDb.get(db);
    if (cache === undefined) {
      const client = sqlClient(db);
      const changes = client instanceof RemotePglite ? client.changes(tables) : undefined;
      cache = { changes, at: changes?.() ?? 0, entries: new Map() };
      perDb.set(db, cache);
    }
    return cache;
  };

  return async (db: Db, key: K, read: () => Promise<V | undefined>): Promise<V | undefined> => {
    const cache = cacheOf(db);
    if (cache.changes === undefined) return read();
    const before = cache.changes();
    if (before !== cache.at) {
      cache.entries.clear();
      cache.at = before;
    }
    const kept = cache.entries.get(key);
    if (kept !== undefined) return kept;
    const value = await read();
    // Kept only if nothing changed while it was read (the counter moves as a change is sent and as it lands).
    if (value !== undefined && cache.changes() === before) {
      if (cache.entries.size >= limit) cache.entries.delete(cache.entries.keys().next().value as K);
      cache.entries.set(key, value);
    }
    return value;
  };
}

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type Db, sqlClient } from './client.ts';

// Where a database's schema stands among the migrations. drizzle's migrator
// records each applied migration's journal time (`when`) in
// drizzle.__drizzle_migrations and applies every migration newer than the
// last one recorded; so the last recorded time names the level, and a time
// this build's journal does not hold is a schema from a later build.

export interface JournalEntry {
  tag: string;
  when: number;
}

/** The migrations this build knows, oldest first (src/db/migrations/meta/_journal.json). */
export function readJournal(migrationsFolder: string): JournalEntry[] {
  const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: JournalEntry[];
  };
  return journal.entries.map(({ tag, when }) => ({ tag, when }));
}

export interface SchemaLevel {
  /** Migrations applied. */
  applied: number;
  /** The last one's journal time (0: none). */
  lastWhen: number;
  /** The last one's name, when this build knows it. */
  lastTag: string | null;
}

export async function schemaLevel(db: Db, journal: JournalEntry[]): Promise<SchemaLevel> {
  const exists = await sqlClient(db).query(
    "select 1 from information_schema.tables where table_schema = 'drizzle' and table_name = '__drizzle_migrations'",
  );
  if (exists.rows.length === 0) return { applied: 0, lastWhen: 0, lastTag: null };
  const { rows } = await sqlClient(db).query(
    'select count(*)::int as applied, coalesce(max(created_at), 0)::bigint as last from drizzle.__drizzle_migrations',
  );
  const row = rows[0] as { applied: number; last: string | number };
  const lastWhen = Number(row.last);
  return { applied: row.applied, lastWhen, lastTag: journal.find((e) => e.when === lastWhen)?.tag ?? null };
}

/**
 * Whether this build can run on a schema at `lastWhen`: it must know that
 * migration (a later build's schema may hold tables and columns this one
 * would misread, and its migrations would never run again).
 */
export function knownLevel(journal: JournalEntry[], lastWhen: number): boolean {
  return lastWhen === 0 || journal.some((e) => e.when === lastWhen);
}

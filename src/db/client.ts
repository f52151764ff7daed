import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import type { SqlClient } from '../jobs/boss.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { RemotePglite } from './pglite-remote.ts';
import { seedFromTemplate, templateDir } from './pglite-template.ts';
import * as schema from './schema/index.ts';

export type Schema = typeof schema;
/** One typed database for both drivers. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = PgTransaction<PgQueryResultHKT, Schema>;
/** Repositories take either, so a service can compose them in one transaction. */
export type DbOrTx = Db | Tx;

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  migrate(): Promise<void>;
  ping(): Promise<boolean>;
  /**
   * The embedded database's data dir as a tarball, taken while it runs at a
   * point between transactions (PGlite only: backups, test templates).
   */
  dump?(): Promise<Blob>;
  close(): Promise<void>;
}

export interface PgliteOptions {
  /** A directory, or undefined for an in-memory database. */
  dataDir?: string;
  /** A dump made by `dumpDataDir()` to start from (test templates). */
  loadDataDir?: Blob;
}

function isEmptyDir(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

export async function openPglite(options: PgliteOptions = {}): Promise<Database> {
  let release: (() => void) | undefined;
  let dir: string | undefined;
  if (options.dataDir !== undefined) {
    release = lockDataDir(options.dataDir);
    dir = path.join(options.dataDir, 'pgdata');
  }
  let client: RemotePglite;
  try {
    const fresh = dir !== undefined && !options.loadDataDir && isEmptyDir(dir);
    const seeded = fresh && dir !== undefined && seedFromTemplate(dir, templateDir(MIGRATIONS_DIR));
    client = await RemotePglite.create({
      ...(dir !== undefined ? { dataDir: dir } : {}),
      ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}),
    });
    if (fresh && !seeded) {
      // The process that ran initdb keeps initdb's peak (WebAssembly memory never
      // shrinks, about 850 MB against 300): a new process serves the new cluster.
      await client.close();
      client = await RemotePglite.create({ dataDir: dir });
    }
  } catch (err) {
    release?.();
    throw err;
  }
  // drizzle speaks to the remote as it would to PGlite itself (query, exec, transaction).
  const asPglite = client as unknown as PGlite;
  const db = drizzlePglite(asPglite, { schema }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    migrate: async () => {
      await migratePglite(drizzlePglite(asPglite, { schema }), { migrationsFolder: MIGRATIONS_DIR });
      await installJobs(client);
    },
    ping: () => ping(db),
    dump: () => client.dumpDataDir(),
    close: async () => {
      try {
        await client.close();
      } finally {
        release?.();
      }
    },
  };
}

/** The advisory lock key migrations take on Postgres (any constant: "paddock" in ASCII). */
const MIGRATION_LOCK = 0x7061646464;

export async function openPostgres(url: string, poolMax = 10): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolMax });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => {});
  const db = drizzlePg(pool, { schema }) as unknown as Db;
  return {
    db,
    kind: 'postgres',
    migrate: async () => {
      // Servers started together (an api, a worker, a scheduler) migrate one after the other: the
      // first applies, the others find it done. A session lock, on a connection of its own (the
      // pool may hold one connection only).
      const lock = new pg.Client({ connectionString: url });
      await lock.connect();
      try {
        await lock.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
        await migratePg(drizzlePg(pool, { schema }), { migrationsFolder: MIGRATIONS_DIR });
        await installJobs(pool);
      } finally {
        // Ending the session releases the lock.
        await lock.end();
      }
    },
    ping: () => ping(db),
    close: () => pool.end(),
  };
}

/** pg-boss's schema is part of the migrations; loaded only when migrating. */
async function installJobs(client: SqlClient): Promise<void> {
  const { installJobsSchema } = await import('../jobs/boss.ts');
  await installJobsSchema(client);
}

async function ping(db: Db): Promise<boolean> {
  try {
    await db.execute(sql`select 1`);
    return true;
  } catch {
    return false;
  }
}

/** The driver's own client under drizzle (PGlite's remote, or the node-postgres pool), for pg-boss and raw statements. */
export function sqlClient(db: Db): SqlClient {
  return (db as unknown as { $client: SqlClient }).$client;
}

/**
 * One statement whose text is built once, sent to the driver as it is
 * (`$1`… placeholders): for statements on the hot path, where building the
 * query through drizzle each time costs more than running it. Both drivers'
 * clients (PGlite's remote and node-postgres' pool) take text and params.
 */
export async function rawQuery(
  db: Db,
  text: string,
  params: unknown[],
): Promise<Array<Record<string, unknown>>> {
  const result = await sqlClient(db).query(text, params);
  return result.rows as Array<Record<string, unknown>>;
}

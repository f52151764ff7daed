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
  /** Tells `listener` how long each statement took (each app on this database: its metrics); undo with the answer. */
  observeStatements(listener: StatementListener): () => void;
  /** Connections in use and idle, and statements waiting for one (the embedded database: its one connection). */
  poolStats(): { inUse: number; idle: number; waiting: number };
  /**
   * The embedded database's data dir as a tarball, taken while it runs at a
   * point between transactions (PGlite only: backups, test templates).
   */
  dump?(): Promise<Blob>;
  /** The same tarball written to `file` (made new, mode 0600) without passing through this process; its size (backups). */
  dumpTo?(file: string): Promise<number>;
  close(): Promise<void>;
}

export interface PgliteOptions {
  /** A directory, or undefined for an in-memory database. */
  dataDir?: string;
  /** A dump made by `dumpDataDir()` to start from (test templates). */
  loadDataDir?: Blob;
}

export type StatementListener = (ms: number, ok: boolean) => void;

/** Who is told of each statement's time; several apps may share one database (tests, a restart). */
class StatementListeners {
  private readonly listeners = new Set<StatementListener>();

  readonly notify: StatementListener = (ms, ok) => {
    for (const listener of this.listeners) listener(ms, ok);
  };

  add(listener: StatementListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
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
  const listeners = new StatementListeners();
  client.onStatement = listeners.notify;
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
    observeStatements: (listener) => listeners.add(listener),
    // One connection: in use while any statement is out; the rest wait in the database's process.
    poolStats: () => {
      const out = client.statementsInFlight;
      return { inUse: out > 0 ? 1 : 0, idle: out > 0 ? 0 : 1, waiting: Math.max(0, out - 1) };
    },
    dump: () => client.dumpDataDir(),
    dumpTo: (file) => client.dumpDataDirTo(file),
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
  const listeners = new StatementListeners();
  pool.on('connect', (client) => timeStatements(client, listeners.notify));
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
    observeStatements: (listener) => listeners.add(listener),
    poolStats: () => ({
      inUse: pool.totalCount - pool.idleCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }),
    close: () => pool.end(),
  };
}

/**
 * Times every statement of one pooled connection. node-postgres has no hook
 * for it; each connection's query() is wrapped once, when the pool opens it.
 * The pool calls it with a callback, a transaction (drizzle) for a promise.
 */
function timeStatements(client: pg.PoolClient, observe: StatementListener): void {
  const query = client.query as (...args: unknown[]) => unknown;
  client.query = function timedQuery(this: pg.PoolClient, ...args: unknown[]) {
    const started = performance.now();
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      args[args.length - 1] = (err: unknown, result: unknown) => {
        observe(performance.now() - started, !err);
        callback(err, result);
      };
      return query.apply(this, args);
    }
    const result = query.apply(this, args);
    if (result instanceof Promise)
      result.then(
        () => observe(performance.now() - started, true),
        () => observe(performance.now() - started, false),
      );
    return result;
  } as typeof client.query;
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

/**
 * Whether `db` runs one transaction at a time (the embedded database: PGlite
 * has one session, and a transaction holds it to its end). There a lock
 * taken only to order concurrent transactions orders nothing, and is left out.
 */
export function oneTransactionAtATime(db: Db): boolean {
  return sqlClient(db) instanceof RemotePglite;
}

/**
 * Statements of one transaction that need nothing of each other's answers
 * and come to the same whichever runs first (none reads what another
 * writes), answered in order. Where transactions run one at a time (`serialized`:
 * see oneTransactionAtATime) they are sent together: the embedded database's
 * process queues them in the transaction, so each waits for no round trip of
 * the one before. On a Postgres connection they go one after another
 * (node-postgres deprecates a second query on a busy client). If one fails,
 * the transaction fails; the others' writes go with its rollback.
 */
export async function sideBySide<T extends unknown[]>(
  serialized: boolean,
  ...statements: { [K in keyof T]: () => Promise<T[K]> }
): Promise<T> {
  if (serialized) return (await Promise.all(statements.map((s) => s()))) as T;
  const answers: unknown[] = [];
  for (const s of statements) answers.push(await s());
  return answers as T;
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

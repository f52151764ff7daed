// Paddock built in the benchmark's own process (buildApp, as `paddock serve`
// builds it) on a database the benchmark opened: for the benchmarks that seed
// rows straight into the database and time the API over them (analytics,
// memories, queue). Each runs on a fresh embedded database, then on a fresh
// database on the Postgres at BENCH_DATABASE_URL when it is set;
// BENCH_PGLITE=0 skips the embedded one.
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type BuiltApp, buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import type { TeamId } from '../src/core/ids.ts';
import { type Database, openPglite, openPostgres } from '../src/db/client.ts';
import { api, freshPostgres, type Json, str } from './paddock.ts';

export const POSTGRES_URL = process.env.BENCH_DATABASE_URL || undefined;

/** A server in this process, with a user signed up (its session token and team). */
export interface InProcess {
  built: BuiltApp;
  base: string;
  token: string;
  teamId: TeamId;
}

/**
 * Migrates `database`, builds Paddock on it listening on a loopback port
 * (open signup, no warm capsules, one task at a time), signs a user up, and
 * hands them to `use`; the server and its data dir are gone after.
 */
export async function withPaddock<T>(
  name: string,
  database: Database,
  use: (p: InProcess) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `paddock-bench-${name}-`));
  await database.migrate();
  const config = loadConfig({
    PADDOCK_SIGNUP: 'open',
    PADDOCK_DATA_DIR: dataDir,
    PADDOCK_SANDBOX_DIR: path.join(dataDir, 'sandboxes'),
    PADDOCK_SANDBOX_WARM: '0',
    PADDOCK_TASK_CONCURRENCY: '1',
  });
  const built = await buildApp({
    config,
    database,
    masterKey: Buffer.alloc(32, 7),
    logger: false,
    migrated: true,
  });
  try {
    await built.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(built.app.server.address() as AddressInfo).port}`;
    const signup = await api(base, 'POST', '/v1/auth/signup', undefined, {
      email: `bench-${name}-${Date.now()}@example.com`,
      password: 'a long benchmark password',
      name: 'Bench',
    });
    const token = str(signup.session_token, 'session_token');
    const teamId = str((signup.team as Json).id, 'team id') as TeamId;
    return await use({ built, base, token, teamId });
  } finally {
    await built.app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const f1 = (n: number) => n.toFixed(1);

/**
 * Prints the machine's line, then runs `measure` on each database (labelled
 * as `labels` says), each opened fresh and removed after. Undefined (and the
 * error printed) when one failed.
 */
export async function onEachDatabase<F>(
  name: string,
  measure: (label: string, database: Database) => Promise<F>,
  labels = { pglite: 'PGlite', postgres: 'Postgres' },
): Promise<F[] | undefined> {
  const cores = os.cpus();
  console.log(
    `${name} benchmark: ${cores.length} × ${cores[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ` +
      `load average ${os.loadavg().map(f1).join(' ')} at start`,
  );
  const results: F[] = [];
  try {
    if (process.env.BENCH_PGLITE !== '0') {
      const pgliteDir = mkdtempSync(path.join(os.tmpdir(), `paddock-bench-${name}-db-`));
      const embedded = await openPglite({ dataDir: pgliteDir });
      try {
        results.push(await measure(labels.pglite, embedded));
      } finally {
        await embedded.close();
        rmSync(pgliteDir, { recursive: true, force: true });
      }
    }
    if (POSTGRES_URL) {
      const fresh = await freshPostgres(POSTGRES_URL);
      const server = await openPostgres(fresh.url);
      try {
        results.push(await measure(labels.postgres, server));
      } finally {
        await server.close();
        await fresh.drop();
      }
    }
  } catch (err) {
    console.error(
      `${name} benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    return undefined;
  }
  return results;
}

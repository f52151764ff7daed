import PgBoss from 'pg-boss';

/** The schema pg-boss keeps its tables in, beside Paddock's own. */
export const JOBS_SCHEMA = 'pgboss';

/** What pg-boss needs of a database client: text with `$n` parameters, or several statements without. */
export interface SqlClient {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  /** PGlite's: several statements in one text (pg-boss installs its schema so). */
  exec?(text: string): Promise<Array<{ rows: unknown[] }>>;
}

/**
 * pg-boss on the client Paddock already holds (PGlite's process or the
 * node-postgres pool), so jobs live in the same database as everything else.
 * PGlite's `query` takes one statement; pg-boss sends its schema as one text
 * of many, without parameters, which go to `exec`.
 */
const NO_RESULT = undefined as unknown as { rows: unknown[] };

export function bossDatabase(client: SqlClient, stopped: () => boolean = () => false): PgBoss.Db {
  return {
    async executeSql(text: string, values?: unknown[]) {
      // A handler that outlived its server's stop ends with a complete or fail that pg-boss neither
      // awaits nor catches; its job was already failed back at the stop (failWip). Such a statement
      // is not sent to a pool that may be closed: it gets no result, which pg-boss reads as nothing
      // done (a command that affected no job, a fetch that found none).
      if (stopped()) return NO_RESULT;
      if ((values === undefined || values.length === 0) && client.exec) {
        const results = await client.exec(text);
        return results[results.length - 1] ?? { rows: [] };
      }
      return client.query(text, values ?? []);
    },
  };
}

/** Creates pg-boss's schema, or brings it to the installed version: part of every migration. */
export async function installJobsSchema(client: SqlClient): Promise<void> {
  const boss = new PgBoss({
    db: bossDatabase(client),
    schema: JOBS_SCHEMA,
    migrate: true,
    supervise: false,
    schedule: false,
  });
  await boss.start();
  await boss.stop({ graceful: false, wait: true, close: false });
}

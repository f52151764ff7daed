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
export function bossDatabase(client: SqlClient): PgBoss.Db {
  return {
    async executeSql(text: string, values?: unknown[]) {
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

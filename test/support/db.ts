import { readFileSync } from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';
import { type Database, openPglite, openPostgres } from '../../src/db/client.ts';

let pgliteTemplate: Blob | undefined;

/** A fresh, migrated database for one test file (or one test), dropped on close. */
export async function freshDatabase(): Promise<Database> {
  const url = process.env.PADDOCK_TEST_DATABASE_URL;
  const template = inject('postgresTemplate');
  if (url && template) {
    const name = `paddock_t_${process.ppid}_${Math.random().toString(36).slice(2, 10)}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`create database ${name} template ${template}`);
    } finally {
      await admin.end();
    }
    const u = new URL(url);
    u.pathname = `/${name}`;
    const database = await openPostgres(u.toString(), 5);
    return {
      ...database,
      close: async () => {
        await database.close();
        const drop = new pg.Client({ connectionString: url });
        await drop.connect();
        await drop.query(`drop database if exists ${name} with (force)`);
        await drop.end();
      },
    };
  }
  pgliteTemplate ??= new Blob([readFileSync(inject('pgliteTemplate'))]);
  return openPglite({ loadDataDir: pgliteTemplate });
}

/**
 * Runs `work` in a transaction and keeps that transaction open (its locks
 * held) until `commit` is called; resolves once `work` has run.
 */
export async function openTransaction(
  db: Database['db'],
  work: (tx: Parameters<Parameters<Database['db']['transaction']>[0]>[0]) => Promise<unknown>,
): Promise<{ commit: () => Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let ran!: () => void;
  const hasRun = new Promise<void>((resolve) => {
    ran = resolve;
  });
  const done = db.transaction(async (tx) => {
    await work(tx);
    ran();
    await held;
  });
  // A failing `work` rejects here rather than leaving the caller waiting.
  await Promise.race([hasRun, done]);
  return {
    commit: async () => {
      release();
      await done;
    },
  };
}

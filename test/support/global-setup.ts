import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { build, staleReason } from '../../bin/build.js';
import { MIGRATIONS_DIR, openPglite, openPostgres, rawQuery } from '../../src/db/client.ts';
import { templateDir } from '../../src/db/pglite-template.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplate: string;
    postgresTemplate: string;
  }
}

const ARTIFACTS = path.resolve('.test-artifacts');

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Migrates one template database per run; each test file then starts from a
 * copy of it (PGlite: a restored dump; Postgres: CREATE DATABASE … TEMPLATE).
 */
export default async function setup(project: TestProject) {
  // Each file opens a database process or more: one compiled from these sources starts without
  // tsx (src/db/pglite-remote.ts). Built here when a source changed since the last build.
  try {
    if (staleReason()) await build();
    process.env.PADDOCK_TEST_COMPILED_WORKER = '1';
  } catch {
    // The sources do not build (the typecheck says why): the workers run them through tsx.
  }
  const pgUrl = process.env.PADDOCK_TEST_DATABASE_URL;
  if (pgUrl) {
    const template = `paddock_tpl_${process.pid}`;
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`drop database if exists ${template}`);
    await admin.query(`create database ${template}`);
    const database = await openPostgres(withDatabase(pgUrl, template), 2);
    await database.migrate();
    await database.close();
    project.provide('postgresTemplate', template);
    project.provide('pgliteTemplate', '');
    return async () => {
      const leftovers = await admin.query<{ datname: string }>(
        `select datname from pg_database where datname like 'paddock_t_${process.pid}_%' or datname = $1`,
        [template],
      );
      for (const row of leftovers.rows)
        await admin.query(`drop database if exists ${row.datname} with (force)`);
      await admin.end();
    };
  }
  // From dist/'s migrated cluster when the build made one for these migrations (npm ci does):
  // initdb and the migrations already done. Otherwise an in-memory one, made here.
  const built = existsSync(path.join(templateDir(MIGRATIONS_DIR), 'PG_VERSION'));
  const dataDir = built ? mkdtempSync(path.join(tmpdir(), 'paddock-template-')) : undefined;
  let dump: Blob;
  try {
    const database = await openPglite(dataDir ? { dataDir } : {});
    await database.migrate();
    // The template databases go: nothing creates a database on a test's PGlite, and each file's
    // copy then has some 15 MB less to unpack (about a seventh of a copy's start).
    for (const statement of [
      `update pg_database set datistemplate = false where datname in ('template0', 'template1')`,
      'drop database template0',
      'drop database template1',
    ])
      await rawQuery(database.db, statement, []);
    // Each file's copy then starts from this checkpoint, with no statement of the migrations to replay.
    await rawQuery(database.db, 'checkpoint', []);
    dump = await database.dump!();
    await database.close();
  } finally {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `pglite-template-${process.pid}.tar`);
  writeFileSync(file, Buffer.from(await dump.arrayBuffer()));
  project.provide('pgliteTemplate', file);
  project.provide('postgresTemplate', '');
  return undefined;
}

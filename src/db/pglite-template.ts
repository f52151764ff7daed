import { cpSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// An empty data dir starts from a copy of a cluster that initdb made once, at
// build time (bin/build.js, into dist/pgdata-<PGlite version>/): initdb takes
// seconds, and its peak would stay in the database process's WebAssembly
// memory for as long as it runs (that memory never shrinks). The same PGlite
// version makes the same cluster, so a copy is what initdb would have made.

/** The installed PGlite's version: a template made by another one is not used. */
export function pgliteVersion(): string {
  let dir = path.dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Where bin/build.js puts the template for this PGlite (this module's source file is in src/db/, see bin/build.js). */
export function templateDir(): string {
  return fileURLToPath(new URL(`../../dist/pgdata-${pgliteVersion()}`, import.meta.url));
}

/**
 * Fills `pgdata` (which must not hold a cluster) with a copy of the template;
 * false when there is none (the database then runs initdb itself). The copy
 * is made beside it and renamed, so a copy cut short is never taken for a cluster.
 */
export function seedFromTemplate(pgdata: string, template = templateDir()): boolean {
  if (!existsSync(path.join(template, 'PG_VERSION'))) return false;
  const partial = `${pgdata}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  cpSync(template, partial, { recursive: true });
  rmSync(pgdata, { recursive: true, force: true });
  renameSync(partial, pgdata);
  return true;
}

import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// An empty data dir starts from a copy of a cluster made once, at build time
// (bin/build.js calls makeTemplate): initdb and the migrations take seconds,
// and initdb's peak would stay in the database process's WebAssembly memory
// for as long as it runs (that memory never shrinks). The template's name
// holds the PGlite and pg-boss versions and a digest of the migrations it
// applied, so a template made by another PGlite or for other migrations is never used.

/** An installed package's version (PGlite's, pg-boss's: the template holds both's work). */
function packageVersion(name: string): string {
  let dir = path.dirname(createRequire(import.meta.url).resolve(name));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

function digest(folder: string): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const file = path.join(dir, entry.name);
      hash.update(`${path.relative(folder, file)}\0`);
      if (entry.isDirectory()) walk(file);
      else hash.update(readFileSync(file));
    }
  };
  walk(folder);
  return hash.digest('hex').slice(0, 12);
}

/**
 * dist/pgdata-<PGlite version>-<pg-boss version>-<migrations digest> (this
 * module's source is in src/db/: see bin/build.js).
 */
export function templateDir(migrationsFolder: string): string {
  const name = `pgdata-${packageVersion('@electric-sql/pglite')}-${packageVersion('pg-boss')}-${digest(migrationsFolder)}`;
  return fileURLToPath(new URL(`../../dist/${name}`, import.meta.url));
}

/**
 * Fills `pgdata` (which must not hold a cluster) with a copy of the template;
 * false when there is none (the database then runs initdb itself). The copy
 * is made beside it and renamed, so a copy cut short is never taken for a cluster.
 */
export function seedFromTemplate(pgdata: string, template: string): boolean {
  if (!existsSync(path.join(template, 'PG_VERSION'))) return false;
  const partial = `${pgdata}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  cpSync(template, partial, { recursive: true });
  rmSync(pgdata, { recursive: true, force: true });
  renameSync(partial, pgdata);
  return true;
}

/**
 * Makes the template (initdb, then the migrations) unless it is there, and
 * removes the others; the time it took in ms, or undefined when it was there.
 */
export async function makeTemplate(migrationsFolder: string): Promise<number | undefined> {
  const dir = templateDir(migrationsFolder);
  if (existsSync(path.join(dir, 'PG_VERSION'))) return undefined;
  const started = performance.now();
  mkdirSync(path.dirname(dir), { recursive: true });
  const partial = `${dir}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  const { installJobsSchema } = await import('../jobs/boss.ts');
  const db = await PGlite.create(partial);
  try {
    await migrate(drizzle(db), { migrationsFolder });
    await installJobsSchema(db);
  } finally {
    await db.close();
  }
  try {
    renameSync(partial, dir);
  } catch (err) {
    // Another build got there first: its template is the same.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(path.join(dir, 'PG_VERSION'))) throw err;
  }
  for (const other of readdirSync(path.dirname(dir))) {
    if (other.startsWith('pgdata-') && !other.endsWith('.partial') && other !== path.basename(dir))
      rmSync(path.join(path.dirname(dir), other), { recursive: true, force: true });
  }
  return Math.round(performance.now() - started);
}

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

// Which test files give the same outcome whatever the test database is. CI
// runs the suite on PGlite, then again on Postgres; a file that never reaches
// the test database's settings (nothing it imports, however deeply, names
// DATABASE_URL or the templates global-setup.ts provides) would only run the
// same code a second time, so the Postgres pass leaves it out.
//
// A file may also say, in a line of its own starting `// One database is
// enough:` and a reason, that running it on Postgres as well would test
// nothing the rest of the suite does not: the dashboard's browser tests and
// the CLI's (clients of the API, whose queries the API's own tests run on
// both), the OpenAPI fuzz (one request at a time, so only validation and error
// mapping, which do not depend on the database), and backup and upgrade (their
// servers and data dirs are embedded ones in either pass). The Postgres pass
// leaves those out too.

/** What a module that may reach the test database (or a server's) mentions. */
const DATABASE = /DATABASE_URL|postgresTemplate|pgliteTemplate/;
/** A file's own word that the PGlite pass is enough for it. */
const ONE_DATABASE = /^\/\/ One database is enough: \S/m;
/** Relative imports: static, re-exports and dynamic. */
const IMPORT = /(?:\bfrom|\bimport\s*\(|^import)\s*['"](\.{1,2}\/[^'"]+)['"]/gm;

interface Module {
  mentions: boolean;
  imports: string[];
}

function read(file: string, modules: Map<string, Module>): Module {
  let module = modules.get(file);
  if (!module) {
    const text = readFileSync(file, 'utf8');
    module = {
      mentions: DATABASE.test(text),
      imports: [...text.matchAll(IMPORT)]
        .map(([, spec]) => path.resolve(path.dirname(file), spec!))
        .filter((target) => /\.[cm]?[jt]s$/.test(target) && existsSync(target)),
    };
    modules.set(file, module);
  }
  return module;
}

/** Whether `file`, or anything it imports however deeply, mentions the test database. */
function mayReachDatabase(file: string, modules: Map<string, Module>): boolean {
  const seen = new Set([file]);
  const queue = [file];
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    const module = read(next, modules);
    if (module.mentions) return true;
    for (const target of module.imports) {
      if (!seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return false;
}

function testFiles(root: string, dirs: string[]): string[] {
  return dirs
    .flatMap((dir) =>
      (readdirSync(path.join(root, dir), { recursive: true }) as string[])
        .filter((f) => f.endsWith('.test.ts'))
        .map((f) => path.join(dir, f).split(path.sep).join('/')),
    )
    .sort();
}

/** The test files under `dirs` (relative to `root`) that cannot reach the test database, relative to `root`. */
export function databaseFreeTestFiles(root: string, dirs: string[]): string[] {
  const modules = new Map<string, Module>();
  return testFiles(root, dirs).filter((f) => !mayReachDatabase(path.join(root, f), modules));
}

/** The test files under `dirs` that say one database is enough for them (see above). */
export function oneDatabaseTestFiles(root: string, dirs: string[]): string[] {
  return testFiles(root, dirs).filter((f) => ONE_DATABASE.test(readFileSync(path.join(root, f), 'utf8')));
}

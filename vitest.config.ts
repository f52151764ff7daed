import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { databaseFreeTestFiles, oneDatabaseTestFiles } from './test/support/database-free.ts';

// Files that take a minute or more but are small, so that vitest (which runs the
// larger files first when it has no timings of an earlier run, as in a fresh
// CI checkout) would leave them to the end, one worker busy and the other idle.
const SLOW_FILES = [
  /\/test\/security\/openapi-fuzz-\d+\.test\.ts$/,
  /\/test\/cli\/serve\.test\.ts$/,
  /\/test\/queues\/workers\.test\.ts$/,
  /\/test\/tasks\/worker-death\.test\.ts$/,
  /\/test\/webhooks\/crash\.test\.ts$/,
  /\/test\/db\/pglite-remote\.test\.ts$/,
  /\/test\/playbooks\/scheduler\.test\.ts$/,
];

class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const slow = (f: TestSpecification) => SLOW_FILES.some((p) => p.test(f.moduleId));
    return [...sorted.filter(slow), ...sorted.filter((f) => !slow(f))];
  }
}

// CI's Postgres pass (PADDOCK_TEST_DATABASE_ONLY) runs only the files whose outcome can depend
// on the test database: the rest ran in the PGlite pass already (test/support/database-free.ts).
const root = fileURLToPath(new URL('.', import.meta.url));
const databaseFree = process.env.PADDOCK_TEST_DATABASE_ONLY
  ? databaseFreeTestFiles(root, ['test', 'src'])
  : [];
const oneDatabase = process.env.PADDOCK_TEST_DATABASE_ONLY ? oneDatabaseTestFiles(root, ['test', 'src']) : [];
if (databaseFree.length + oneDatabase.length > 0)
  console.info(
    `leaving out ${databaseFree.length} files that cannot reach the test database and ${oneDatabase.length} for which one database is enough`,
  );

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    exclude: [...configDefaults.exclude, ...databaseFree, ...oneDatabase],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: two files at a time keeps each one's timings honest.
    maxWorkers: 2,
    // Each worker loads the sources once and runs file after file with them, rather than a new
    // process importing the whole server again for each file (about half of a file's time, and
    // most of a small one's). Nothing in src/ or test/support keeps state at module level that
    // a file could see from the one before: time, timers, DNS and the database are injected,
    // and each file builds its own app on its own database.
    isolate: false,
    sequence: { sequencer: SlowFirst },
    // CI asks for a JSON report beside the console one, to count the results.
    reporters: process.env.PADDOCK_TEST_REPORT ? ['default', 'json'] : ['default'],
    outputFile: process.env.PADDOCK_TEST_REPORT ? { json: process.env.PADDOCK_TEST_REPORT } : {},
  },
});

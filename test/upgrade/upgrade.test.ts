import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, openPglite, sqlClient } from '../../src/db/client.ts';
import { readJournal, schemaLevel } from '../../src/db/migration-level.ts';
import { RemotePglite } from '../../src/db/pglite-remote.ts';
import { installJobsSchema } from '../../src/jobs/boss.ts';
import { expectEveryKind, type Seeded, seedEveryKind } from '../support/every-object.ts';
import { startMockLlm } from '../support/mock-llm.ts';
import { childEnv, type RunningServer, startServer, tempDir } from '../support/process.ts';
import { dumpRows, loadRows, missingRows, type Rows } from './rows.ts';

// One database is enough: its servers and data dirs are embedded ones whichever database the pass tests.
//
// An upgrade loses nothing: a data dir made at the last release's schema,
// holding a row of every kind, is migrated forward by this build's server,
// which finds every row and serves every object. The release's schema is
// made from its own migration files (src/db/releases.json lists them), and
// its rows come from a fixture written by that release's build
// (PADDOCK_UPGRADE_FIXTURE_WRITE=1, see docs/operations.md "Upgrades"), so
// a migration added after the release is covered without writing anything.

const STARTUP_MS = 180_000;
const RELEASES = path.resolve('src/db/releases.json');
const FIXTURES = path.resolve('test/upgrade/fixtures');
const WRITE = process.env.PADDOCK_UPGRADE_FIXTURE_WRITE === '1';

interface Release {
  version: string;
  migrations: Array<{ tag: string; sha256: string }>;
}

interface Fixture {
  release: string;
  /** The test-only master key the fixture's secrets and tokens are sealed with. */
  master_key: string;
  seeded: Seeded;
  rows: Rows;
  /** The data dir's files/ folder: path → bytes (base64). */
  files: Record<string, string>;
}

const releases = (JSON.parse(readFileSync(RELEASES, 'utf8')) as { releases: Release[] }).releases;
const previous = releases.at(-1)!;
const fixtureFile = path.join(FIXTURES, `${previous.version}.json`);
const journal = readJournal(MIGRATIONS_DIR);

const running: RunningServer[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
});

async function serve(dataDir: string, extra: Record<string, string> = {}): Promise<RunningServer> {
  const server = await startServer(
    ['--data-dir', dataDir],
    childEnv({
      PADDOCK_SIGNUP: 'open',
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_SANDBOX_WARM: '0',
      // Rows made when the fixture was written are old by now: nothing is swept for age.
      PADDOCK_EVENT_RETENTION_DAYS: '0',
      PADDOCK_AUDIT_RETENTION_DAYS: '0',
      PADDOCK_ACTIVITY_RETENTION_DAYS: '0',
      PADDOCK_RESPONSE_RETENTION_DAYS: '0',
      PADDOCK_QUEUE_RETENTION_DAYS: '0',
      ...extra,
    }),
    STARTUP_MS,
  );
  running.push(server);
  return server;
}

/** A migrations folder holding only `release`'s migrations (its journal cut there). */
function migrationsOf(release: Release): string {
  const dir = tempDir(`migrations-${release.version}`);
  mkdirSync(path.join(dir, 'meta'));
  const tags = new Set(release.migrations.map((m) => m.tag));
  const full = JSON.parse(readFileSync(path.join(MIGRATIONS_DIR, 'meta', '_journal.json'), 'utf8'));
  full.entries = full.entries.filter((e: { tag: string }) => tags.has(e.tag));
  writeFileSync(path.join(dir, 'meta', '_journal.json'), JSON.stringify(full));
  for (const tag of tags) cpSync(path.join(MIGRATIONS_DIR, `${tag}.sql`), path.join(dir, `${tag}.sql`));
  return dir;
}

function filesOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { recursive: true }).map(String)) {
    const file = path.join(dir, entry);
    if (statSync(file).isFile() && !entry.endsWith('.part'))
      out[entry] = readFileSync(file).toString('base64');
  }
  return out;
}

describe('upgrades', { timeout: 4 * STARTUP_MS }, () => {
  it("keeps every release's migrations, unchanged and in order, at the head of this build's", () => {
    let at = 0;
    for (const release of releases) {
      for (const m of release.migrations) {
        expect(journal[at]?.tag, `release ${release.version}'s migration ${m.tag}`).toBe(m.tag);
        const sql = readFileSync(path.join(MIGRATIONS_DIR, `${m.tag}.sql`));
        expect(createHash('sha256').update(sql).digest('hex'), `${m.tag} changed after it was released`).toBe(
          m.sha256,
        );
        at += 1;
      }
    }
  });

  it.runIf(WRITE)(`writes the fixture of release ${previous.version}`, async () => {
    expect(
      journal.map((e) => e.tag),
      'the fixture is written by the build of the release itself',
    ).toEqual(previous.migrations.map((m) => m.tag));
    const mock = await startMockLlm();
    const dataDir = tempDir('upgrade-fixture');
    const masterKey = randomBytes(32).toString('hex');
    let seeded: Seeded;
    try {
      const server = await serve(dataDir, { PADDOCK_MASTER_KEY: masterKey });
      seeded = await seedEveryKind(server.url, mock);
      expect(await server.stop()).toBe(0);
    } finally {
      await mock.close();
    }
    const database = await openPglite({ dataDir });
    let rows: Rows;
    try {
      rows = await dumpRows(database.db);
    } finally {
      await database.close();
    }
    const fixture: Fixture = {
      release: previous.version,
      master_key: masterKey,
      seeded: seeded!,
      rows,
      files: filesOf(path.join(dataDir, 'files')),
    };
    mkdirSync(FIXTURES, { recursive: true });
    // Formatted as biome would (npx biome format --write test/upgrade/fixtures).
    writeFileSync(fixtureFile, `${JSON.stringify(fixture, null, 2)}\n`);
  });

  it.skipIf(WRITE)(
    `migrates a data dir made at release ${previous.version} forward, with every row and object intact`,
    async () => {
      expect(
        existsSync(fixtureFile),
        `${fixtureFile} is missing: write it with the release's build (docs/operations.md "Upgrades")`,
      ).toBe(true);
      const fixture = JSON.parse(readFileSync(fixtureFile, 'utf8')) as Fixture;
      const dataDir = tempDir('upgrade');

      // The release's schema, from its own migration files, in a cluster of its own (initdb, not the template).
      const initdb = await RemotePglite.create({ dataDir: path.join(dataDir, 'pgdata') });
      await initdb.close();
      const database = await openPglite({ dataDir });
      try {
        const client = sqlClient(database.db);
        await migrate(drizzle(client as unknown as PGlite), { migrationsFolder: migrationsOf(previous) });
        await installJobsSchema(client);
        const level = await schemaLevel(database.db, journal);
        expect(level.lastTag).toBe(previous.migrations.at(-1)!.tag);
        await loadRows(database.db, fixture.rows);
      } finally {
        await database.close();
      }
      for (const [name, base64] of Object.entries(fixture.files)) {
        mkdirSync(path.dirname(path.join(dataDir, 'files', name)), { recursive: true });
        writeFileSync(path.join(dataDir, 'files', name), Buffer.from(base64, 'base64'));
      }
      writeFileSync(path.join(dataDir, 'master.key'), `${fixture.master_key}\n`, { mode: 0o600 });

      // This build's server migrates it forward and serves every object.
      const server = await serve(dataDir);
      await expectEveryKind(server.url, fixture.seeded);
      expect(await server.stop()).toBe(0);

      const after = await openPglite({ dataDir });
      try {
        expect((await schemaLevel(after.db, journal)).lastTag).toBe(journal.at(-1)!.tag);
        expect(await missingRows(after.db, fixture.rows)).toEqual([]);
      } finally {
        await after.close();
      }
    },
  );
});

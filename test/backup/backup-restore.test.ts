import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadDatabase } from '../../src/backup/socket.ts';
import { readTar, TarWriter } from '../../src/backup/tar.ts';
import { apiAt, expectEveryKind, type Seeded, seedEveryKind } from '../support/every-object.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';
import { childEnv, type RunningServer, runPaddock, startServer, tempDir } from '../support/process.ts';

// One database is enough: its servers and data dirs are embedded ones whichever database the pass tests.
//
// paddock backup and restore as an operator runs them: real servers on real
// data dirs, the CLI as a child process. Times are only limits that a hang
// uses up (a loaded machine is slow, not wrong).
const STARTUP_MS = 180_000;

let mock: MockLlm;
const running: RunningServer[] = [];

beforeAll(async () => {
  mock = await startMockLlm();
});

afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
  await mock?.close();
});

const env = () =>
  childEnv({
    PADDOCK_SIGNUP: 'open',
    PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    PADDOCK_SANDBOX_WARM: '0',
  });

async function serve(dataDir: string): Promise<RunningServer> {
  const server = await startServer(['--data-dir', dataDir], env(), STARTUP_MS);
  running.push(server);
  return server;
}

const paddock = (args: string[], vars = env()) => runPaddock(args, vars, STARTUP_MS);

/** What a folder holds, for "left as it was". */
function listing(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).sort() : [];
}

/** The archive's entries rewritten by `edit` (a file entry's bytes), gzipped again. */
async function rewritten(file: string, edit: (name: string, bytes: Buffer) => Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const out = new (await import('node:stream')).PassThrough();
  out.on('data', (c: Buffer) => chunks.push(c));
  const tar = new TarWriter(out, new Date());
  for await (const entry of readTar(Readable.from(readFileSync(file)).pipe(createGunzip()))) {
    const parts: Buffer[] = [];
    for await (const c of entry.body()) parts.push(c);
    if (entry.type === 'file') await tar.file(entry.name, edit(entry.name, Buffer.concat(parts)), entry.mode);
    else if (entry.type === 'dir') await tar.dir(entry.name, entry.mode);
    else await tar.symlink(entry.name, entry.linkname!);
  }
  await tar.finish();
  return gzipSync(Buffer.concat(chunks));
}

describe('paddock backup and restore', { timeout: 6 * STARTUP_MS }, () => {
  let archive: string;
  let seeded: Seeded;
  let sourceDir: string;
  let restoredDir: string;
  let restoredServer: RunningServer;

  it('backs up a running server during a burst of writes; restored, another server finds every object', async () => {
    sourceDir = tempDir('backup-source');
    const source = await serve(sourceDir);
    seeded = await seedEveryKind(source.url, mock);

    // Writes go on while the backup is taken: memories numbered in the order they are made.
    const api = apiAt(source.url);
    let writing = true;
    let acknowledged = 0;
    const burst = (async () => {
      for (let i = 0; writing && i < 5000; i++) {
        const res = await api('POST', '/v1/memories', seeded.api_key, {
          agent_id: seeded.agent_id,
          content: `burst ${i}`,
        });
        if (res.status !== 201) throw new Error(`memory ${i}: ${res.status}`);
        acknowledged = i + 1;
      }
    })();
    while (acknowledged < 5) await new Promise((r) => setTimeout(r, 20));
    const before = acknowledged;
    archive = path.join(tempDir('backup-out'), 'paddock.tar.gz');
    const backup = await paddock(['backup', archive, '--data-dir', sourceDir]);
    writing = false;
    await burst;
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toContain('dumped by the running server');
    expect(backup.stdout).toContain('schema at ');
    expect(backup.stderr).toContain('holds master.key');
    expect(statSync(archive).mode & 0o777).toBe(0o600);
    expect(acknowledged).toBeGreaterThan(before);
    // The dump went through files, streamed, and neither is left: the archive alone beside it, and
    // only the socket in the server's run folder.
    expect(readdirSync(path.dirname(archive))).toEqual(['paddock.tar.gz']);
    expect(readdirSync(path.join(sourceDir, 'run'))).toEqual(['backup.sock']);

    restoredDir = path.join(tempDir('backup-target'), 'data');
    const restore = await paddock(['restore', archive, '--data-dir', restoredDir]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toContain(`restored ${archive} into ${restoredDir}`);
    expect(statSync(path.join(restoredDir, 'master.key')).mode & 0o777).toBe(0o600);
    await source.stop();

    restoredServer = await serve(restoredDir);
    await expectEveryKind(restoredServer.url, seeded);
    // The copy is one moment of the database: the burst's memories in it are
    // its first n (none missing before a later one), at least those answered
    // before the backup began.
    const restoredApi = apiAt(restoredServer.url);
    const contents: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await restoredApi(
        'GET',
        `/v1/memories?agent_id=${seeded.agent_id}&limit=200${cursor ? `&cursor=${cursor}` : ''}`,
        seeded.api_key,
      );
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      for (const m of page.body.data) if (m.content.startsWith('burst ')) contents.push(m.content);
      cursor = page.body.next_cursor;
    } while (cursor);
    const numbers = contents.map((c) => Number(c.slice('burst '.length))).sort((a, b) => a - b);
    expect(numbers.length).toBeGreaterThanOrEqual(before);
    expect(numbers).toEqual(numbers.map((_, i) => i));
  });

  it('backs up a data dir with no server running, and refuses what would do harm, leaving things as they were', async () => {
    const offline = path.join(tempDir('backup-offline'), 'offline.tar.gz');
    const taken = await paddock(['backup', offline, '--data-dir', sourceDir]);
    expect(taken.code, taken.stderr).toBe(0);
    expect(taken.stdout).toContain('taken with no server running');

    // The file exists already.
    const again = await paddock(['backup', offline, '--data-dir', sourceDir]);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain('exists');
    // Postgres is pg_dump's.
    const onPostgres = await paddock(
      ['backup', path.join(path.dirname(offline), 'pg.tar.gz'), '--data-dir', sourceDir],
      { ...env(), DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/x' },
    );
    expect(onPostgres.code).toBe(6);
    expect(onPostgres.stderr).toContain('pg_dump');
    expect(existsSync(path.join(path.dirname(offline), 'pg.tar.gz'))).toBe(false);

    // A data dir with something in it.
    const full = tempDir('restore-full');
    writeFileSync(path.join(full, 'notes.txt'), 'mine');
    const notEmpty = await paddock(['restore', offline, '--data-dir', full]);
    expect(notEmpty.code).toBe(6);
    expect(notEmpty.stderr).toContain('is not empty');
    expect(listing(full)).toEqual(['notes.txt']);

    // A data dir a server holds, even with --force.
    const before = listing(restoredDir);
    const locked = await paddock(['restore', offline, '--data-dir', restoredDir, '--force']);
    expect(locked.code).toBe(6);
    expect(locked.stderr).toContain('in use by a running Paddock');
    expect(listing(restoredDir)).toEqual(before);

    const parent = tempDir('restore-bad');
    const target = path.join(parent, 'data');
    const refused = async (bytes: Buffer, code: number, message: string) => {
      const file = path.join(parent, 'bad.tar.gz');
      writeFileSync(file, bytes);
      const res = await paddock(['restore', file, '--data-dir', target]);
      expect(res.code, res.stderr).toBe(code);
      expect(res.stderr).toContain(message);
      // Nothing half-written: no data dir, no staging folder beside it.
      expect(readdirSync(parent)).toEqual(['bad.tar.gz']);
    };
    const whole = readFileSync(offline);
    await refused(whole.subarray(0, Math.floor(whole.length / 2)), 1, 'not a usable backup');
    const damaged = Buffer.from(whole);
    damaged[Math.floor(damaged.length * 0.6)]! ^= 0xff;
    await refused(damaged, 1, 'not a usable backup');
    await refused(Buffer.from('not an archive at all'), 1, 'not a usable backup');
    // A file's bytes that do not match checksums.json (the gzip and tar framing whole).
    await refused(
      await rewritten(offline, (name, bytes) =>
        name === 'master.key'
          ? Buffer.from(bytes.toString().replace(/^./, (c) => (c === 'a' ? 'b' : 'a')))
          : bytes,
      ),
      1,
      'master.key is damaged',
    );
    // A schema newer than this build's migrations.
    await refused(
      await rewritten(offline, (name, bytes) => {
        if (name !== 'manifest.json') return bytes;
        const manifest = JSON.parse(bytes.toString());
        manifest.schema = {
          migrations_applied: 999,
          last_migration: '0999_future',
          last_migration_when: 9e15,
        };
        return Buffer.from(JSON.stringify(manifest));
      }),
      6,
      'newer schema',
    );

    // --force replaces what an unused data dir holds.
    const forced = await paddock(['restore', offline, '--data-dir', full, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(existsSync(path.join(full, 'notes.txt'))).toBe(false);
    expect(existsSync(path.join(full, 'master.key'))).toBe(true);
  });
});

describe('the database download over the backup socket', () => {
  /** A server on a socket that answers GET /database with `answer`. */
  async function socketServer(
    answer: (res: http.ServerResponse) => void,
  ): Promise<{ socket: string; close(): Promise<void> }> {
    const socket = path.join(tempDir('backup-socket'), 'backup.sock');
    const server = http.createServer((_req, res) => answer(res));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    return { socket, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  it('refuses an answer cut short of its length, and a refusal, so no backup holds a partial database', async () => {
    const cut = await socketServer((res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10));
      setTimeout(() => res.destroy(), 20);
    });
    const file = path.join(tempDir('backup-download'), 'database');
    await expect(downloadDatabase(cut.socket, file)).rejects.toThrow(/ended at 10 of 1000 bytes|aborted/);
    await cut.close();

    const refused = await socketServer((res) => {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"code":"internal"}}');
    });
    const other = path.join(tempDir('backup-download'), 'database');
    await expect(downloadDatabase(refused.socket, other)).rejects.toThrow(
      'the server could not dump its database (500); its log says why',
    );
    expect(existsSync(other)).toBe(false);
    await refused.close();
  });
});

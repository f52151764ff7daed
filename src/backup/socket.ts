import {
  chmodSync,
  createReadStream,
  createWriteStream,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { type Database, MIGRATIONS_DIR } from '../db/client.ts';
import { readJournal, type SchemaLevel, schemaLevel } from '../db/migration-level.ts';
import { VERSION } from '../version.ts';

// A running server holds its data dir's lock, and only it may read its
// database: a copy of the database's files taken from outside while it
// writes would not be consistent. So the server answers `paddock backup`
// with a dump of the database it makes itself, over a unix socket in the data
// dir. The socket's folder is the server user's alone (0700): whoever can
// connect could read the data dir's files, master.key included, anyway.

/** Where the socket is, inside the data dir. */
export const SOCKET_PATH = path.join('run', 'backup.sock');
/** The database's dumps for backups in flight, in the socket's folder until they are sent. */
const DUMP_PREFIX = 'database-';
/** Linux's limit for a socket's path (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** What the server tells `paddock backup` before it asks for the database. */
export interface ServerInfo {
  paddock_version: string;
  pid: number;
  sandbox_dir: string;
  /** Where the server's master key comes from: master.key in the data dir, or PADDOCK_MASTER_KEY. */
  master_key: 'file' | 'environment';
  schema: SchemaLevel;
}

export function socketPathOf(dataDir: string): string {
  return path.join(dataDir, SOCKET_PATH);
}

/**
 * Answers backups on `<dataDir>/run/backup.sock` until the app closes:
 * `GET /info` (ServerInfo) and `GET /database` (the database's data dir as a
 * tar, taken between transactions). A data dir whose path is too long for a
 * socket gets none, and the log says so.
 */
export async function serveBackups(
  app: FastifyInstance,
  options: { dataDir: string; database: Database; sandboxDir: string; masterKey: ServerInfo['master_key'] },
): Promise<void> {
  const log: FastifyBaseLogger = app.log;
  const socketPath = socketPathOf(options.dataDir);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    log.warn(
      { socket: socketPath },
      'the data dir path is too long for the backup socket: paddock backup works only while this server is stopped',
    );
    return;
  }
  const dir = path.dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir keeps an existing folder's mode; the folder is what keeps others out.
  chmodSync(dir, 0o700);
  const uid = process.getuid?.();
  if (uid !== undefined && lstatSync(dir).uid !== uid) throw new Error(`${dir} belongs to another user`);
  // Whatever is there was left by a server that held the lock before this one.
  rmSync(socketPath, { force: true });
  for (const entry of readdirSync(dir))
    if (entry.startsWith(DUMP_PREFIX)) rmSync(path.join(dir, entry), { force: true });
  let dumps = 0;

  const journal = readJournal(MIGRATIONS_DIR);
  const info = async (): Promise<ServerInfo> => ({
    paddock_version: VERSION,
    pid: process.pid,
    sandbox_dir: options.sandboxDir,
    master_key: options.masterKey,
    schema: await schemaLevel(options.database.db, journal),
  });

  const server = http.createServer((req, res) => {
    const answer = async () => {
      if (req.method === 'GET' && req.url === '/info') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(await info()));
        return;
      }
      if (req.method === 'GET' && req.url === '/database') {
        // Written by the database's process into the socket's folder and streamed from there.
        const file = path.join(dir, `${DUMP_PREFIX}${process.pid}-${++dumps}.tar`);
        try {
          const bytes = await options.database.dumpTo!(file);
          log.info({ bytes }, 'backup: the database was dumped for paddock backup');
          res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': bytes });
          await pipeline(createReadStream(file), res);
        } finally {
          await rm(file, { force: true });
        }
        return;
      }
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 'not_found', message: 'GET /info or GET /database' } }));
    };
    answer().catch((err: unknown) => {
      log.error({ err }, 'backup: the database could not be dumped');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'internal', message: 'the database could not be dumped' } }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  app.addHook('onClose', async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(socketPath, { force: true });
  });
}

/** One GET over the socket; the body whole. */
export function askServer(socketPath: string, url: '/info'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: url, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * GET /database into `file` (made new, mode 0600), streamed. A refusal, or
 * an answer cut short of its length (the server stopped), is an error.
 */
export function downloadDatabase(socketPath: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: '/database', method: 'GET' }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`the server could not dump its database (${res.statusCode}); its log says why`));
        return;
      }
      const expected = Number(res.headers['content-length']);
      let received = 0;
      res.on('data', (c: Buffer) => {
        received += c.length;
      });
      pipeline(res, createWriteStream(file, { flags: 'wx', mode: 0o600 })).then(() => {
        if (received === expected) resolve();
        else reject(new Error(`the server's database dump ended at ${received} of ${expected} bytes`));
      }, reject);
    });
    req.on('error', reject);
    req.end();
  });
}

import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { WorkerReply, WorkerRequest } from './pglite-remote.ts';
import { PgliteStatements } from './pglite-statements.ts';

// The embedded database's own process. PGlite runs Postgres compiled to
// WebAssembly synchronously, so in the server's process every statement would
// stop request handling for its duration; and its ~600 MB of WebAssembly
// memory would make every fork of the server (each capsule command is one)
// copy page tables for it. Here it has a process to itself, spoken to over
// the IPC channel. Messages are handled as they come; PGlite's own lock
// orders statements, and statements of an open transaction run on it.

const send = process.send?.bind(process);
if (!send) throw new Error('pglite-worker must run as a child process with an IPC channel');

interface OpenTransaction {
  /** Settles once PGlite has begun it: its statements, sent right behind the begin, wait for it. */
  tx: Promise<Transaction>;
  finish: (commit: boolean) => void;
  done: Promise<void>;
}
const transactions = new Map<number, OpenTransaction>();

let ready: Promise<PGlite> | undefined;
/** The database's named statements (pglite-statements.ts), once it is open. */
let statements: PgliteStatements | undefined;
/** How long a database left by its server may take to close before its process goes anyway. */
const CLOSE_DEADLINE_MS = 5000;
// The server went away (exit or crash): close the database and go too. Transactions it left open
// are rolled back first (one waiting for a commit holds PGlite's lock, and close() would wait for
// it); and the process goes after the deadline whatever close() does — a database process that
// outlived its server would hold the data dir beside the next server that opens it (seen after a
// server was killed mid-task: its database process stayed, its channel closed).
process.on('disconnect', () => {
  for (const t of transactions.values()) t.finish(false);
  transactions.clear();
  setTimeout(() => process.exit(1), CLOSE_DEADLINE_MS);
  void (ready ?? Promise.resolve(undefined))
    .then((db) => (db && !db.closed ? db.close() : undefined))
    .finally(() => process.exit(0));
});

const ROLLBACK = new Error('rollback');

/** Identity parsers for the types the caller wants as text (drizzle keeps timestamps as strings). */
function queryOptions(raw: readonly number[] | undefined, rowMode: 'array' | 'object' | undefined) {
  const parsers: Record<number, (value: string) => string> = {};
  for (const oid of raw ?? []) parsers[oid] = (value) => value;
  return { rowMode: rowMode ?? 'object', parsers };
}

function errorFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const fields: Record<string, unknown> = { message: err.message, name: err.name };
  for (const [key, value] of Object.entries(err)) {
    if (typeof value === 'string' || typeof value === 'number') fields[key] = value;
  }
  return fields;
}

async function handle(req: WorkerRequest): Promise<unknown> {
  if (req.op === 'init') {
    ready = PGlite.create(req.dataDir, req.loadDataDir ? { loadDataDir: new Blob([req.loadDataDir]) } : {});
    await ready;
    return null;
  }
  if (!ready) throw new Error('the database is not open yet');
  const db = await ready;
  switch (req.op) {
    case 'query': {
      // A statement of a transaction runs on it once it has begun (PGlite has one session: the
      // transaction's lock holds the others back); any other takes that lock itself.
      const tx = req.tx === undefined ? undefined : await transactions.get(req.tx)?.tx;
      if (req.tx !== undefined && !tx) throw new Error(`transaction ${req.tx} is not open`);
      statements ??= new PgliteStatements(db);
      const options = queryOptions(req.rawTypes, req.rowMode);
      const result = await statements.query(req.sql, req.params, options, tx);
      return { rows: result.rows, fields: result.fields, affectedRows: result.affectedRows };
    }
    case 'exec': {
      const target = req.tx === undefined ? db : await transactions.get(req.tx)?.tx;
      if (!target) throw new Error(`transaction ${req.tx} is not open`);
      return (await target.exec(req.sql)).map((r) => ({ rows: r.rows, fields: r.fields }));
    }
    case 'begin': {
      // Registered before anything is awaited here: the server sends the transaction's first
      // statements without waiting for this answer, and they find it (messages are handled in order).
      let opened!: (tx: Transaction) => void;
      let failed!: (err: unknown) => void;
      const open = new Promise<Transaction>((resolve, reject) => {
        opened = resolve;
        failed = reject;
      });
      open.catch(() => undefined);
      let finish!: (commit: boolean) => void;
      const decided = new Promise<boolean>((resolve) => {
        finish = resolve;
      });
      const done = db
        .transaction(async (tx) => {
          opened(tx);
          // Throwing makes PGlite roll back and release its lock.
          if (!(await decided)) throw ROLLBACK;
        })
        .catch((err: unknown) => {
          // A transaction that could not begin fails its statements rather than leaving them waiting.
          failed(err);
          if (err !== ROLLBACK) throw err;
        });
      transactions.set(req.tx, { tx: open, finish, done });
      await open;
      return null;
    }
    case 'end': {
      const t = transactions.get(req.tx);
      if (!t) return null;
      transactions.delete(req.tx);
      t.finish(req.commit);
      await t.done;
      return null;
    }
    case 'dump': {
      // Taken in a transaction of its own, which writes nothing: under
      // PGlite's transaction lock no other is open and every statement waits
      // (one outside a transaction takes that lock too). After a checkpoint,
      // the data files hold every commit; the copy is read from them under
      // PGlite's query lock, so nothing writes while it is made.
      let blob: Blob | undefined;
      await db.transaction(async (tx) => {
        await tx.exec('CHECKPOINT');
        blob = (await db.dumpDataDir('none')) as Blob;
      });
      if (req.file === undefined) return new Uint8Array(await blob!.arrayBuffer());
      // A backup's: streamed to the file, so the only copy in memory is PGlite's own.
      await pipeline(
        Readable.fromWeb(blob!.stream() as WebReadableStream),
        createWriteStream(req.file, { flags: 'wx', mode: 0o600 }),
      );
      return blob!.size;
    }
    case 'close':
      if (!db.closed) await db.close();
      return null;
  }
}

/**
 * Answers the server. One gone by now (its channel closed, or closing: the
 * write fails with EPIPE) takes no answer: the disconnect handler above
 * closes the database, and an unhandled send error would kill this process
 * before it has.
 */
function answer(reply: WorkerReply): void {
  if (!process.connected) return;
  send!(reply, () => undefined);
}

process.on('message', (req: WorkerRequest) => {
  handle(req).then(
    (result) => answer({ id: req.id, ok: true, result }),
    (err: unknown) => answer({ id: req.id, ok: false, error: errorFields(err) }),
  );
});

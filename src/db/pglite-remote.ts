import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The server's side of the embedded database: a PGlite in a process of its
// own (pglite-worker.ts), spoken to in messages over the IPC channel. It offers the part of PGlite's
// interface that drizzle uses — query, exec, transaction — so the rest of
// Paddock does not know the database lives elsewhere.

export type WorkerRequest =
  | {
      id: number;
      op: 'query';
      sql: string;
      params: unknown[] | undefined;
      rowMode: 'array' | 'object' | undefined;
      /** Type oids to answer as text, unparsed. */
      rawTypes: number[] | undefined;
      tx: number | undefined;
    }
  | { id: number; op: 'exec'; sql: string; tx: number | undefined }
  | { id: number; op: 'begin'; tx: number }
  | { id: number; op: 'end'; tx: number; commit: boolean }
  | { id: number; op: 'dump'; file: string | undefined }
  | { id: number; op: 'close' }
  | { id: number; op: 'init'; dataDir: string | undefined; loadDataDir: Uint8Array | undefined };

export type WorkerReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: Record<string, unknown> };

type Op = WorkerRequest extends infer R ? (R extends { op: infer O } ? O : never) : never;
type Payload<O extends Op> = Omit<Extract<WorkerRequest, { op: O }>, 'id' | 'op'>;

interface QueryOptions {
  rowMode?: 'array' | 'object';
  parsers?: Record<number, unknown>;
}

export interface Results {
  rows: unknown[];
  fields: Array<{ name: string; dataTypeID: number }>;
  affectedRows?: number;
}

/** A database error from the worker, with the fields Postgres gave it (code, detail, constraint …). */
export class PgliteRemoteError extends Error {
  constructor(fields: Record<string, unknown>) {
    super(String(fields.message ?? 'database error'));
    Object.assign(this, fields);
    this.name = String(fields.name ?? 'DatabaseError');
  }
}

interface Querier {
  query(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results>;
  exec(sql: string): Promise<Results[]>;
}

/** Defined (true) by bin/build.js in the compiled server in dist/; undeclared when the sources run. */
declare const PADDOCK_COMPILED: boolean | undefined;

// Compiled, the worker is its own bundle in dist/ (this module's import.meta.url
// is its source file's there too: see bin/build.js). From the sources, a plain
// module registers tsx, then imports pglite-worker.ts (about half a second of
// the child's start, each time), except where the test run's set-up built dist/
// from these same sources just before and says so (PADDOCK_TEST_COMPILED_WORKER).
const COMPILED_WORKER = new URL('../../dist/pglite-worker.js', import.meta.url);
const WORKER =
  typeof PADDOCK_COMPILED === 'boolean' ||
  (process.env.PADDOCK_TEST_COMPILED_WORKER === '1' && existsSync(COMPILED_WORKER))
    ? COMPILED_WORKER
    : new URL('./pglite-worker-boot.mjs', import.meta.url);

const CHRT = ['/usr/bin/chrt', '/bin/chrt'].find((p) => process.platform === 'linux' && existsSync(p));

/**
 * The database process runs under Linux's SCHED_BATCH policy where `chrt`
 * is at hand: the same share of the CPU, but its wake-ups do not preempt
 * the server. Without it, each statement sent (a pipe write wakes the
 * database on the sender's core) could stall the server's event loop for
 * as long as the statement runs — milliseconds added to whatever calls were
 * in flight. Elsewhere it is a plain child process.
 */
function launcher(batch: boolean): { execPath?: string; execArgv: string[] } {
  if (!batch || !CHRT) return { execArgv: [] };
  return { execPath: CHRT, execArgv: ['--batch', '0', process.execPath] };
}

/** Statements that change nothing a watch sees: reads, and writes that say so (`UNWATCHED_WRITE`). */
const NOT_A_WATCHED_WRITE = /^\s*(?:select\b|\/\* unwatched write \*\/)/i;

/**
 * Begins a write that the change counters of `RemotePglite.changes` must not
 * count: one that changes nothing a cached read depends on (an API key's
 * last use, say). Only where that is so, and said beside the statement.
 */
export const UNWATCHED_WRITE = '/* unwatched write */ ';

interface Watch {
  readonly tables: RegExp;
  count: number;
}

/** Moves each of `watches` on by one, each time it is called. */
function counter(watches: Iterable<Watch>): () => void {
  return () => {
    for (const watch of watches) watch.count++;
  };
}

export class RemotePglite implements Querier {
  private readonly worker: ChildProcess;
  private readonly pending = new Map<
    number,
    {
      resolve: (v: unknown) => void;
      reject: (e: Error) => void;
      started: number;
      statement: boolean;
      /** Called as the answer arrives, before anything awaiting it runs on. */
      answered: (() => void) | undefined;
    }
  >();
  private readonly watches: Watch[] = [];
  /** The watches each open transaction has written to, counted again as it ends. */
  private readonly txWrites = new Map<number, Set<Watch>>();
  /** Told each statement's time (the database's metrics). */
  onStatement: ((ms: number, ok: boolean) => void) | undefined;
  private nextId = 1;
  private nextTx = 1;
  private failure: Error | undefined;
  closed = false;

  private constructor(batch: boolean) {
    // Structured clone over the channel, as between threads: rows keep their types.
    this.worker = fork(fileURLToPath(WORKER), [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      ...launcher(batch),
    });
    this.worker.on('message', (reply: WorkerReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (waiter.statement) this.onStatement?.(performance.now() - waiter.started, reply.ok);
      waiter.answered?.();
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new PgliteRemoteError(reply.error));
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code, signal) => {
      if (!this.closed) fail(new Error(`the embedded database process exited (${signal ?? `code ${code}`})`));
    });
  }

  /** Requests sent to the database's process and not yet answered. */
  get statementsInFlight(): number {
    return this.pending.size;
  }

  /** The database process's pid (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.worker.pid;
  }

  /** Starts the database's process and waits until it answers (PGlite opened, data dir loaded). */
  static async create(options: { dataDir?: string; loadDataDir?: Blob } = {}): Promise<RemotePglite> {
    // Where chrt cannot set the policy (a sandbox that forbids it), the plain child it is.
    if (CHRT) {
      const scheduled = await RemotePglite.start(options, true).catch(() => undefined);
      if (scheduled) return scheduled;
    }
    return RemotePglite.start(options, false);
  }

  private static async start(
    options: { dataDir?: string; loadDataDir?: Blob },
    batch: boolean,
  ): Promise<RemotePglite> {
    const remote = new RemotePglite(batch);
    try {
      await remote.call('init', {
        dataDir: options.dataDir,
        loadDataDir: options.loadDataDir
          ? new Uint8Array(await options.loadDataDir.arrayBuffer())
          : undefined,
      });
      await remote.query('select 1');
    } catch (err) {
      remote.worker.kill('SIGKILL');
      throw err;
    }
    return remote;
  }

  private call<O extends Op>(op: O, payload: Payload<O>, answered?: () => void): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const statement = op === 'query' || op === 'exec' || op === 'begin' || op === 'end';
      this.pending.set(id, { resolve, reject, started: performance.now(), statement, answered });
      this.worker.send({ id, op, ...payload });
    });
  }

  /**
   * A counter that moves whenever a statement that may change one of
   * `tables` is sent and again when it is answered, and, in a transaction,
   * as the transaction ends: a read of those tables made while it stood
   * still is what the database holds for as long as it stands still. The
   * one server that holds the embedded database makes every change through
   * here, so a cache kept by it is exact, not merely fresh (read-cache.ts).
   * Any statement naming a table counts (a `with` that only reads as well),
   * except a `select` or one begun with `UNWATCHED_WRITE`.
   */
  changes(tables: readonly string[]): () => number {
    const watch: Watch = { tables: new RegExp(`\\b(?:${tables.join('|')})\\b`, 'i'), count: 0 };
    this.watches.push(watch);
    return () => watch.count;
  }

  /** Counts a statement about to be sent against the watches it may change; answers what to count on its answer. */
  private written(sql: string, tx: number | undefined): (() => void) | undefined {
    if (this.watches.length === 0 || NOT_A_WATCHED_WRITE.test(sql)) return undefined;
    const hit = this.watches.filter((watch) => watch.tables.test(sql));
    if (hit.length === 0) return undefined;
    const count = counter(hit);
    count();
    if (tx !== undefined) {
      const inTx = this.txWrites.get(tx) ?? new Set<Watch>();
      for (const watch of hit) inTx.add(watch);
      this.txWrites.set(tx, inTx);
    }
    return count;
  }

  private querier(tx: number | undefined): Querier {
    return {
      query: async (sql, params, options) =>
        (await this.call(
          'query',
          {
            sql,
            params,
            rowMode: options?.rowMode,
            rawTypes: options?.parsers ? Object.keys(options.parsers).map(Number) : undefined,
            tx,
          },
          this.written(sql, tx),
        )) as Results,
      exec: async (sql) => (await this.call('exec', { sql, tx }, this.written(sql, tx))) as Results[],
    };
  }

  /** Ends transaction `tx`; the watches it wrote to count as it is sent and as it is answered. */
  private end(tx: number, commit: boolean): Promise<unknown> {
    const wrote = this.txWrites.get(tx);
    this.txWrites.delete(tx);
    const count = wrote && counter(wrote);
    count?.();
    return this.call('end', { tx, commit }, count);
  }

  query(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results> {
    return this.querier(undefined).query(sql, params, options);
  }

  exec(sql: string): Promise<Results[]> {
    return this.querier(undefined).exec(sql);
  }

  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back
   * when it throws. Its first statement goes right behind the `begin`, not
   * after its answer (one round trip less); the database's process holds it
   * until the transaction has begun, or fails it if it could not.
   */
  async transaction<T>(fn: (tx: Querier) => Promise<T>): Promise<T> {
    const tx = this.nextTx++;
    const begun = this.call('begin', { tx });
    begun.catch(() => undefined);
    let result: T;
    try {
      result = await fn(this.querier(tx));
      await begun;
    } catch (err) {
      await this.end(tx, false).catch(() => undefined);
      throw err;
    }
    await this.end(tx, true);
    return result;
  }

  /** The whole data dir as a tarball, between transactions (test templates). */
  async dumpDataDir(): Promise<Blob> {
    return new Blob([(await this.call('dump', { file: undefined })) as Uint8Array]);
  }

  /**
   * The same tarball written by the database's process to `file` (made new,
   * mode 0600), so a backup's copy never passes through this process;
   * answers its size in bytes.
   */
  async dumpDataDirTo(file: string): Promise<number> {
    return (await this.call('dump', { file })) as number;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call('close', {});
    } finally {
      this.closed = true;
      const exited = new Promise((resolve) => this.worker.once('exit', resolve));
      this.worker.disconnect();
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2000))]);
      if (this.worker.exitCode === null) this.worker.kill('SIGKILL');
    }
  }
}

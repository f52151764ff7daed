import { type PGlite, parse, protocol, type Results, type Transaction } from '@electric-sql/pglite';

// Named statements for the embedded database. PGlite's query() parses,
// analyses and plans its text on every call (an unnamed statement): for the
// statements Paddock runs all the time (an event's append, a task's claim)
// that is most of their cost, several times their execution. Here a text seen
// twice is parsed once under a name, and each later call only binds and
// executes it (one call into the database, not five).

type Message = Awaited<ReturnType<PGlite['execProtocolStream']>>[number];

interface Named {
  name: string;
  /** The parameters' type oids, as the database inferred them: each value is serialized for its type. */
  paramTypes: number[];
  /** The statement's row description (none for a statement that returns no rows). */
  rowDescription: Message | undefined;
}

export interface QueryOptions {
  rowMode: 'array' | 'object';
  parsers: Record<number, (value: string) => unknown>;
}

/** A text seen this many times gets a name. */
const NAMED_AFTER = 2;
/**
 * Names kept, the least recently used closed past it: each holds its plan in
 * the database's memory (about 0.1 MB for a two-table join, measured), so
 * the hot statements are named and a long tail of rare texts is not. Texts
 * counted but not named yet are bounded the same way.
 */
export const MAX_STATEMENTS = 256;
/** Postgres's "cached plan must not change result type": a table's columns changed under a named statement. */
const FEATURE_NOT_SUPPORTED = '0A000';

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class PgliteStatements {
  private readonly named = new Map<string, Named>();
  private readonly seen = new Map<string, number>();
  private nextName = 1;

  constructor(private readonly db: PGlite) {}

  /**
   * `sql` with `params`, as PGlite's query() answers it: in `tx`, an open
   * transaction of PGlite's, or else under PGlite's transaction lock, so it
   * never runs inside another caller's transaction.
   */
  async query(
    sql: string,
    params: unknown[] | undefined,
    options: QueryOptions,
    tx: Transaction | undefined,
  ): Promise<Results> {
    const inTransaction = tx !== undefined;
    const db = this.db as PGlite & {
      _runExclusiveTransaction?: <T>(fn: () => Promise<T>) => Promise<T>;
      serializers: Record<number, (value: unknown) => string>;
    };
    const named = this.named.get(sql);
    if (named) {
      // The most recently used last: the first is the one closed when a name is needed.
      this.named.delete(sql);
      this.named.set(sql, named);
    }
    const seen = named ? NAMED_AFTER : (this.seen.get(sql) ?? 0) + 1;
    // Without the lock this needs (a PGlite that no longer has it), the unnamed way.
    if (seen < NAMED_AFTER || (!inTransaction && typeof db._runExclusiveTransaction !== 'function')) {
      this.count(sql, seen);
      return (tx ?? db).query(sql, params, options);
    }
    const run = () =>
      db.runExclusive(async () => {
        // Looked up under the lock: a name closed meanwhile (to make room) is made again.
        const statement = this.named.get(sql) ?? (await this.prepare(sql));
        const values = (params ?? []).map((value, i) => {
          if (value === null || value === undefined) return null;
          const serialize = db.serializers[statement.paramTypes[i]!];
          return serialize ? serialize(value) : String(value);
        });
        const messages = await db.execProtocolStream(
          joined([
            protocol.serialize.bind({ statement: statement.name, values }),
            protocol.serialize.execute({}),
            protocol.serialize.sync(),
          ]),
        );
        // Outside a transaction, as PGlite's query() does: a file system that keeps writes in memory syncs.
        if (!inTransaction) await db.syncToFs();
        const all = statement.rowDescription ? [statement.rowDescription, ...messages] : messages;
        return parse.parseResults(all, db.parsers, options)[0] as Results;
      });
    try {
      return inTransaction ? await run() : await db._runExclusiveTransaction!(run);
    } catch (err) {
      if ((err as { code?: string }).code !== FEATURE_NOT_SUPPORTED || !this.named.has(sql)) throw err;
      // Its result's shape changed (a migration): named again later, this call the unnamed way (in a
      // transaction the error stands: it has failed the transaction).
      await this.close(sql);
      if (inTransaction) throw err;
      return db.query(sql, params, options);
    }
  }

  /** One more sighting of a text not named yet; the least recently seen are forgotten past the bound. */
  private count(sql: string, seen: number): void {
    this.seen.delete(sql);
    this.seen.set(sql, seen);
    if (this.seen.size > MAX_STATEMENTS) this.seen.delete(this.seen.keys().next().value as string);
  }

  private async prepare(sql: string): Promise<Named> {
    const name = `paddock_${this.nextName++}`;
    const messages = await this.db.execProtocolStream(
      joined([
        protocol.serialize.parse({ name, text: sql, types: [] }),
        protocol.serialize.describe({ type: 'S', name }),
        protocol.serialize.sync(),
      ]),
    );
    const params = messages.find((m) => m.name === 'parameterDescription') as
      | { dataTypeIDs: number[] }
      | undefined;
    const statement: Named = {
      name,
      paramTypes: params?.dataTypeIDs ?? [],
      rowDescription: messages.find((m) => m.name === 'rowDescription'),
    };
    this.seen.delete(sql);
    this.named.set(sql, statement);
    if (this.named.size > MAX_STATEMENTS) {
      const oldest = this.named.keys().next().value as string;
      await this.closeNamed(oldest);
    }
    return statement;
  }

  private async close(sql: string): Promise<void> {
    await this.db.runExclusive(() => this.closeNamed(sql));
  }

  /** Under PGlite's query lock: the statement closed in the database and forgotten here. */
  private async closeNamed(sql: string): Promise<void> {
    const statement = this.named.get(sql);
    if (!statement) return;
    this.named.delete(sql);
    await this.db.execProtocolStream(
      joined([protocol.serialize.close({ type: 'S', name: statement.name }), protocol.serialize.sync()]),
    );
  }
}

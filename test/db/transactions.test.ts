import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, oneTransactionAtATime, sideBySide } from '../../src/db/client.ts';
import { freshDatabase, openTransaction } from '../support/db.ts';

let database: Database;
beforeAll(async () => {
  database = await freshDatabase();
  await database.db.execute(sql`create table tx_probe (id text primary key)`);
});
afterAll(() => database.close());

const ids = async () =>
  (
    (await database.db.execute(sql`select id from tx_probe order by id`)) as unknown as {
      rows: Array<{ id: string }>;
    }
  ).rows.map((r) => r.id);

describe('a transaction', () => {
  // On the embedded database a transaction's first statement is sent right behind its begin,
  // without waiting for the begin's answer; here the begin waits for another transaction's lock.
  it('runs its first statements inside itself even while its begin waits, and rolls them back', async () => {
    const first = await openTransaction(database.db, (tx) =>
      tx.execute(sql`insert into tx_probe values ('a')`),
    );
    const failed = database.db.transaction(async (tx) => {
      await tx.execute(sql`insert into tx_probe values ('b')`);
      throw new Error('changed my mind');
    });
    const second = database.db.transaction(async (tx) => {
      await tx.execute(sql`insert into tx_probe values ('c')`);
      const seen = (await tx.execute(
        sql`select count(*)::int as n from tx_probe where id = 'c'`,
      )) as unknown as {
        rows: Array<{ n: number }>;
      };
      return seen.rows[0]!.n;
    });
    await first.commit();
    await expect(failed).rejects.toThrow('changed my mind');
    expect(await second).toBe(1);
    expect(await ids()).toEqual(['a', 'c']);
  });

  it('that fails on its first statement rolls back and leaves the next one working', async () => {
    await expect(
      database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into tx_probe values ('a')`);
      }),
    ).rejects.toThrow();
    const n = await database.db.transaction(async (tx) => {
      await tx.execute(sql`insert into tx_probe values ('d')`);
      return 1;
    });
    expect(n).toBe(1);
    expect(await ids()).toEqual(['a', 'c', 'd']);
  });

  // Statements that need nothing of each other's answers go together on the embedded database.
  it('runs statements side by side, answering each its own rows, and rolls them all back together', async () => {
    const serialized = oneTransactionAtATime(database.db);
    const answers = await database.db.transaction((tx) =>
      sideBySide(
        serialized,
        () => tx.execute(sql`insert into tx_probe values ('e') returning id`),
        () => tx.execute(sql`select id from tx_probe where id = 'c'`),
        () => tx.execute(sql`insert into tx_probe values ('f') returning id`),
      ),
    );
    const rows = answers.map((a) => (a as unknown as { rows: Array<Record<string, unknown>> }).rows[0]);
    expect(rows[0]).toEqual({ id: 'e' });
    expect(rows[1]).toEqual({ id: 'c' });
    expect(rows[2]).toEqual({ id: 'f' });
    await expect(
      database.db.transaction((tx) =>
        sideBySide(
          serialized,
          () => tx.execute(sql`insert into tx_probe values ('g')`),
          () => tx.execute(sql`insert into tx_probe values ('a')`),
          () => tx.execute(sql`insert into tx_probe values ('h')`),
        ),
      ),
    ).rejects.toThrow();
    expect(await ids()).toEqual(['a', 'c', 'd', 'e', 'f']);
    // The next transaction finds the database as the rollback left it.
    await database.db.transaction((tx) => tx.execute(sql`insert into tx_probe values ('g')`));
    expect(await ids()).toEqual(['a', 'c', 'd', 'e', 'f', 'g']);
  });
});

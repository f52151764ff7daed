import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
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
});

import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_STATEMENTS, PgliteStatements, type QueryOptions } from '../../src/db/pglite-statements.ts';

/**
 * The embedded database's named statements (what its process runs every
 * query through): each answer must be what PGlite's own query() gives, and
 * naming must not change what a statement sees or when it runs.
 */
let db: PGlite;
let statements: PgliteStatements;
const OBJECTS: QueryOptions = { rowMode: 'object', parsers: {} };

beforeAll(async () => {
  db = await PGlite.create();
  statements = new PgliteStatements(db);
  await db.exec(`
    create table items (id int primary key, name text, data jsonb, at timestamptz);
    insert into items values (1, 'one', '{"a": 1}', '2026-01-05T09:00:00Z'), (2, null, null, null);
  `);
});
afterAll(async () => {
  await db?.close();
});

const named = async (): Promise<string[]> =>
  (await db.query<{ statement: string }>('select statement from pg_prepared_statements')).rows.map(
    (r) => r.statement,
  );

describe('named statements on the embedded database', () => {
  it('names a text the second time it runs, and answers as PGlite does on every call', async () => {
    const sql = 'select id, name, data, at from items where id = any($1::int[]) or name = $2 order by id';
    const params = [[1, 2], null];
    const plain = await db.query(sql, params, OBJECTS);
    const first = await statements.query(sql, params, OBJECTS, undefined);
    expect(await named()).not.toContain(sql);
    const second = await statements.query(sql, params, OBJECTS, undefined);
    const third = await statements.query(sql, params, OBJECTS, undefined);
    expect(await named()).toContain(sql);
    for (const answer of [first, second, third]) {
      expect(answer.rows).toEqual(plain.rows);
      expect(answer.fields).toEqual(plain.fields);
    }
    expect(third.rows[0]).toEqual({
      id: 1,
      name: 'one',
      data: { a: 1 },
      at: new Date('2026-01-05T09:00:00Z'),
    });
    // Rows as arrays, and a type the caller wants as its text.
    const options: QueryOptions = { rowMode: 'array', parsers: { 1184: (v) => v } };
    const raw = await statements.query(sql, params, options, undefined);
    expect(raw.rows[0]).toEqual([1, 'one', { a: 1 }, '2026-01-05 09:00:00+00']);
    expect(raw.rows).toEqual((await db.query(sql, params, options)).rows);
  });

  it('counts the rows a write changed, and a failed call leaves the next one working', async () => {
    const sql = 'update items set name = $1 where id = $2';
    for (const name of ['uno', 'one']) {
      const answer = await statements.query(sql, [name, 1], OBJECTS, undefined);
      expect(answer.affectedRows).toBe(1);
    }
    const divide = 'select 10 / $1::int as n';
    await statements.query(divide, [5], OBJECTS, undefined);
    await statements.query(divide, [5], OBJECTS, undefined);
    await expect(statements.query(divide, [0], OBJECTS, undefined)).rejects.toMatchObject({
      code: '22012',
    });
    expect((await statements.query(divide, [2], OBJECTS, undefined)).rows).toEqual([{ n: 5 }]);
  });

  it('in a transaction sees its writes and goes with its rollback; outside one waits for it', async () => {
    const count = 'select count(*)::int as n from items';
    await statements.query(count, [], OBJECTS, undefined);
    let outside: Promise<unknown> | undefined;
    let seenInside = -1;
    await db
      .transaction(async (tx) => {
        await statements.query('insert into items (id) values ($1)', [3], OBJECTS, tx);
        await statements.query('insert into items (id) values ($1)', [4], OBJECTS, tx);
        seenInside = ((await statements.query(count, [], OBJECTS, tx)).rows as Array<{ n: number }>)[0]!.n;
        // A statement of no transaction, sent while this one is open: it must not run inside it.
        outside = statements.query(count, [], OBJECTS, undefined);
        await new Promise((r) => setTimeout(r, 50));
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(seenInside).toBe(4);
    expect(((await outside) as { rows: Array<{ n: number }> }).rows).toEqual([{ n: 2 }]);
  });

  it('keeps at most MAX_STATEMENTS names, closing the least recently used', async () => {
    const hot = 'select name from items where id = $1';
    const nameOf = async (text: string) =>
      (
        await db.query<{ name: string }>('select name from pg_prepared_statements where statement = $1', [
          text,
        ])
      ).rows[0]?.name;
    await statements.query(hot, [1], OBJECTS, undefined);
    await statements.query(hot, [1], OBJECTS, undefined);
    const hotName = await nameOf(hot);
    expect(hotName).toBeDefined();
    for (let i = 0; i < MAX_STATEMENTS + 40; i++) {
      const rare = `select id from items where id = $1 and ${i} = ${i}`;
      await statements.query(rare, [1], OBJECTS, undefined);
      await statements.query(rare, [1], OBJECTS, undefined);
      expect((await statements.query(hot, [1], OBJECTS, undefined)).rows).toEqual([{ name: 'one' }]);
    }
    const names = await named();
    expect(names.length).toBeLessThanOrEqual(MAX_STATEMENTS);
    // Used all along, it kept its first name: never closed and made again.
    expect(await nameOf(hot)).toBe(hotName);
    expect(names).not.toContain('select id from items where id = $1 and 0 = 0');
    expect(names).toContain(
      `select id from items where id = $1 and ${MAX_STATEMENTS + 39} = ${MAX_STATEMENTS + 39}`,
    );
  });

  it('answers with the new columns after a table under a named statement changes', async () => {
    const sql = 'select * from items where id = $1';
    await statements.query(sql, [1], OBJECTS, undefined);
    await statements.query(sql, [1], OBJECTS, undefined);
    expect(await named()).toContain(sql);
    await db.exec('alter table items add column extra int default 7');
    for (let i = 0; i < 3; i++)
      expect((await statements.query(sql, [1], OBJECTS, undefined)).rows[0]).toMatchObject({
        id: 1,
        extra: 7,
      });
  });
});

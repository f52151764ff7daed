import type { Db } from '../../src/db/client.ts';
import { sqlClient } from '../../src/db/client.ts';

// Every row of the public schema's tables as JSON, loaded back into a
// database at the same schema, and looked for after migrations: the upgrade
// test's fixture is made and checked with these. Only SQL that holds at any
// schema is used (information_schema, json_populate_recordset), so rows kept
// from an older release load into that release's schema.

export type Rows = Record<string, Array<Record<string, unknown>>>;

async function query(db: Db, text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  return (await sqlClient(db).query(text, params)).rows as Array<Record<string, unknown>>;
}

async function tables(db: Db): Promise<string[]> {
  const rows = await query(
    db,
    "select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name",
  );
  return rows.map((r) => String(r.table_name));
}

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

export async function dumpRows(db: Db): Promise<Rows> {
  const out: Rows = {};
  for (const table of await tables(db)) {
    const [row] = await query(
      db,
      `select coalesce(json_agg(t), '[]'::json)::text as rows from ${ident(table)} t`,
    );
    const rows = JSON.parse(String(row!.rows)) as Array<Record<string, unknown>>;
    if (rows.length > 0) out[table] = rows;
  }
  return out;
}

/** Inserts `rows` as they are (foreign keys unchecked: the rows were consistent where they came from). */
export async function loadRows(db: Db, rows: Rows): Promise<void> {
  await sqlClient(db).query("set session_replication_role = 'replica'");
  try {
    for (const [table, list] of Object.entries(rows)) {
      const columns = (
        await query(
          db,
          "select column_name from information_schema.columns where table_schema = 'public' and table_name = $1 and is_generated = 'NEVER' and coalesce(identity_generation, '') <> 'ALWAYS' order by ordinal_position",
          [table],
        )
      ).map((r) => ident(String(r.column_name)));
      if (columns.length === 0)
        throw new Error(`the fixture has rows of ${table}, a table this schema has not`);
      await sqlClient(db).query(
        `insert into ${ident(table)} (${columns.join(', ')}) select ${columns.join(', ')} from json_populate_recordset(null::${ident(table)}, $1::json)`,
        [JSON.stringify(list)],
      );
    }
    // Sequences move past the ids the rows brought.
    const owned = await query(
      db,
      "select table_name, column_name, pg_get_serial_sequence(format('%I', table_name), column_name) as seq from information_schema.columns where table_schema = 'public' and pg_get_serial_sequence(format('%I', table_name), column_name) is not null",
    );
    for (const o of owned) {
      const table = ident(String(o.table_name));
      const column = ident(String(o.column_name));
      await sqlClient(db).query(
        `select setval($1, coalesce((select max(${column}) from ${table}), 0) + 1, false)`,
        [String(o.seq)],
      );
    }
  } finally {
    await sqlClient(db).query("set session_replication_role = 'origin'");
  }
}

/** The rows of `rows` that are no longer in `db`, by primary key ("table: [key]"). */
export async function missingRows(db: Db, rows: Rows): Promise<string[]> {
  const missing: string[] = [];
  for (const [table, list] of Object.entries(rows)) {
    const t = ident(table);
    const keys = (
      await query(
        db,
        "select k.column_name from information_schema.table_constraints c join information_schema.key_column_usage k on k.constraint_name = c.constraint_name and k.table_schema = c.table_schema and k.table_name = c.table_name where c.table_schema = 'public' and c.table_name = $1 and c.constraint_type = 'PRIMARY KEY' order by k.ordinal_position",
        [table],
      )
    ).map((r) => ident(String(r.column_name)));
    try {
      if (keys.length === 0) {
        const [count] = await query(db, `select count(*)::int as n from ${t}`);
        if (Number(count!.n) < list.length)
          missing.push(`${table}: ${list.length - Number(count!.n)} of its rows`);
        continue;
      }
      const found = await query(
        db,
        `select json_build_array(${keys.map((k) => `f.${k}`).join(', ')})::text as key, exists (select 1 from ${t} x where ${keys.map((k) => `x.${k} is not distinct from f.${k}`).join(' and ')}) as present from json_populate_recordset(null::${t}, $1::json) f`,
        [JSON.stringify(list)],
      );
      for (const r of found) if (r.present !== true) missing.push(`${table}: ${String(r.key)}`);
    } catch (err) {
      missing.push(`${table}: ${(err as Error).message}`);
    }
  }
  return missing;
}

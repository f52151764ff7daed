import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqlClient } from '../../src/db/client.ts';
import { RemotePglite, UNWATCHED_WRITE } from '../../src/db/pglite-remote.ts';
import { createTestApp, type TestApp } from '../support/app.ts';

// Authentication reads its session or key on every request. On the embedded
// database (one server, every change made through it) those reads are kept
// until a change to the tables they read is counted; on Postgres (other
// servers write too) nothing is kept. Either way a change stops a token at once.

let t: TestApp;
let embedded: boolean;
beforeAll(async () => {
  t = await createTestApp({ manualTimers: true });
  embedded = t.database.kind === 'pglite';
});
afterAll(() => t.close());

/** The statements `fn` sent to the database (the server's background work is paused: manual timers). */
async function statementsOf(fn: () => Promise<unknown>): Promise<number> {
  let sent = 0;
  const stop = t.database.observeStatements(() => {
    sent += 1;
  });
  try {
    await fn();
  } finally {
    stop();
  }
  return sent;
}

const session = (token: string) => t.services.auth.authenticateSession(token);
const key = (token: string) => t.services.apiKeys.authenticate(token);

describe('authentication reads', () => {
  it('repeat no read on the embedded database, one each on Postgres', async () => {
    const u = await t.signup();
    const k = await t.apiKey(u.token, ['write']);
    await session(u.token);
    await key(k.key);
    expect(await statementsOf(() => session(u.token))).toBe(embedded ? 0 : 1);
    expect(await statementsOf(() => key(k.key))).toBe(embedded ? 0 : 1);
    // A key's use is recorded on each request, and leaves its cached lookup standing.
    const principal = await key(k.key);
    await t.services.apiKeys.recordUsage(principal, {
      method: 'GET',
      path: '/v1/teams',
      statusCode: 200,
      ipAddress: '127.0.0.1',
    });
    expect(await statementsOf(() => key(k.key))).toBe(embedded ? 0 : 1);
  });

  it('see a change made by any statement, service or not, on the next request', async () => {
    const u = await t.signup();
    const other = await t.signup();
    const k = await t.apiKey(u.token, ['write']);
    expect((await session(u.token)).teamId).toBe(u.team.id);
    await session(other.token);
    await key(k.key);

    // Membership removed by hand: the session is still good, in no team.
    await t.database.db.execute(sql`delete from team_members where user_id = ${u.user.id}`);
    expect(await session(u.token)).toMatchObject({ teamId: null, role: null });

    // A key revoked inside a transaction: refused once it has committed.
    await t.database.db.transaction(async (tx) => {
      await tx.execute(sql`update api_keys set revoked_at = now() where id = ${k.id}`);
    });
    await expect(key(k.key)).rejects.toMatchObject({ code: 'api_key_revoked' });

    // A user deactivated by a raw statement: their session stops.
    await t.database.db.execute(sql`update users set deactivated_at = now() where id = ${other.user.id}`);
    await expect(session(other.token)).rejects.toMatchObject({ code: 'user_deactivated' });
  });

  it('count writes that name the tables, not reads nor writes marked as leaving them unchanged', async () => {
    const client = sqlClient(t.database.db);
    if (!(client instanceof RemotePglite)) {
      expect(t.database.kind).toBe('postgres');
      return;
    }
    const changes = client.changes(['sessions', 'users']);
    const moved = async (text: string) => {
      const before = changes();
      await client.query(text);
      return changes() - before;
    };
    expect(await moved('select count(*) from sessions')).toBe(0);
    expect(await moved(`${UNWATCHED_WRITE}update users set name = name where false`)).toBe(0);
    expect(await moved('update workspaces set name = name where false')).toBe(0);
    // Counted as it is sent and again as it lands: a read answered between the two is not kept.
    expect(await moved('update users set name = name where false')).toBe(2);
    expect(await moved('with gone as (delete from sessions where false returning id) select 1')).toBe(2);
    const before = changes();
    await client.transaction(async (tx) => {
      await tx.query('update sessions set last_seen_at = last_seen_at where false');
    });
    // Sent and answered, then the transaction's end sent and answered.
    expect(changes() - before).toBe(4);
  });
});

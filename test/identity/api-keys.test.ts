import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS, MINUTE_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser, type TestApp, uniqueEmail } from '../support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

type Scope = 'read' | 'write' | 'admin';

/**
 * A fresh owner and an admin key to manage keys with. Tests that move the
 * clock manage keys with the admin key: sessions end after 6 idle hours.
 */
async function owner(): Promise<SignedUpUser & { admin: string }> {
  const u = await t.signup();
  const admin = await t.apiKey(u.token, ['admin']);
  return { ...u, admin: admin.key };
}

async function createKey(token: string, body: Record<string, unknown> = {}) {
  const res = await t.call('POST', '/v1/api-keys', { token, body: { name: 'ci deploy', ...body } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { id: string; key: string; [field: string]: unknown };
}

/** A cheap authenticated call that any key may make. */
function useKey(key: string, headers?: Record<string, string>) {
  return t.call('GET', '/v1/teams', headers ? { headers } : { token: key });
}

/**
 * Usage is recorded after the response (an onResponse hook, not awaited), so
 * reads poll briefly until the condition holds, then the caller asserts.
 */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('creating a key', () => {
  it('returns the secret once, with defaults: scopes ["write"], active', async () => {
    const u = await t.signup();
    const res = await t.call('POST', '/v1/api-keys', { token: u.token, body: { name: '  ci deploy ' } });
    expect(res.status).toBe(201);
    const key = res.body;
    expect(key.key).toMatch(/^pdk_[0-9A-Za-z]{43}$/);
    expect(key.key_prefix).toBe(key.key.slice(0, 12));
    expect(key).toMatchObject({
      name: 'ci deploy',
      team_id: u.team.id,
      scopes: ['write'],
      status: 'active',
      active: true,
      description: null,
      expires_at: null,
      revoked_at: null,
      previous_key_expires_at: null,
      last_used_at: null,
      created_by: u.user.id,
      created_at: t.clock.now().toISOString(),
    });
    expect(key.id).toMatch(/^key_/);

    const other = await createKey(u.token);
    expect(other.key).not.toBe(key.key);
  });

  it('refuses bad input: unknown scope, empty name, unknown field, expiry in the past', async () => {
    const u = await t.signup();
    const bad = [
      { name: 'x', scopes: ['root'] },
      { name: 'x', scopes: [] },
      { name: '   ' },
      { name: 'x', scope: 'read' },
      { name: 'x', expires_at: new Date(t.clock.now().getTime() - 1000).toISOString() },
      { name: 'x', expires_at: 'tomorrow' },
    ];
    for (const body of bad) {
      const res = await t.call('POST', '/v1/api-keys', { token: u.token, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    const list = await t.call('GET', '/v1/api-keys', { token: u.token });
    expect(list.body.data).toEqual([]);
  });

  it('never shows the secret again: not in the list, not in GET, not after rotate or roll', async () => {
    const u = await t.signup();
    const created = await createKey(u.token, { description: 'for CI' });
    const secrets = [created.key];
    // The part after the displayed prefix is what must never come back.
    const hidden = (key: string) => key.slice(12);

    const assertMasked = async () => {
      const list = await t.call('GET', '/v1/api-keys', { token: u.token });
      const one = await t.call('GET', `/v1/api-keys/${created.id}`, { token: u.token });
      const usage = await t.call('GET', `/v1/api-keys/${created.id}/usage`, { token: u.token });
      for (const res of [list, one, usage]) {
        expect(res.status).toBe(200);
        const text = JSON.stringify(res.body);
        for (const secret of secrets) expect(text).not.toContain(hidden(secret));
      }
      expect(one.body).not.toHaveProperty('key');
      expect(list.body.data).toHaveLength(1);
      expect(list.body.data[0]).not.toHaveProperty('key');
      return one.body;
    };

    let shown = await assertMasked();
    expect(shown.key_prefix).toBe(created.key.slice(0, 12));
    expect(shown.description).toBe('for CI');

    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });
    expect(rotated.status).toBe(200);
    secrets.push(rotated.body.key);
    shown = await assertMasked();
    expect(shown.key_prefix).toBe(rotated.body.key.slice(0, 12));

    const rolled = await t.call('POST', `/v1/api-keys/${created.id}/roll`, { token: u.token });
    expect(rolled.status).toBe(200);
    secrets.push(rolled.body.key);
    shown = await assertMasked();
    expect(shown.key_prefix).toBe(rolled.body.key.slice(0, 12));

    // Changing a key answers without the secret as well.
    const patched = await t.call('PATCH', `/v1/api-keys/${created.id}`, {
      token: u.token,
      body: { name: 'renamed' },
    });
    const revoked = await t.call('POST', `/v1/api-keys/${created.id}/revoke`, { token: u.token });
    for (const res of [patched, revoked]) {
      expect(res.status).toBe(200);
      expect(res.body).not.toHaveProperty('key');
      for (const secret of secrets) expect(JSON.stringify(res.body)).not.toContain(hidden(secret));
    }
  });
});

describe('using a key', () => {
  it('authenticates as a Bearer token and as X-API-Key, in its own team', async () => {
    const u = await t.signup();
    const { key } = await createKey(u.token);

    const bearer = await useKey(key);
    expect(bearer.status).toBe(200);
    expect(bearer.body.data.map((team: { id: string }) => team.id)).toEqual([u.team.id]);

    const header = await useKey(key, { 'x-api-key': key });
    expect(header.status).toBe(200);
    expect(header.body.data.map((team: { id: string }) => team.id)).toEqual([u.team.id]);

    // A near miss is not the key.
    const wrong = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    for (const res of [await useKey(wrong), await useKey(wrong, { 'x-api-key': wrong })]) {
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_api_key');
    }
  });

  it('moves last_used_at to the time of each use', async () => {
    const u = await owner();
    const created = await createKey(u.admin);
    expect(created.last_used_at).toBeNull();
    const read = () => t.call('GET', `/v1/api-keys/${created.id}`, { token: u.admin });

    const firstUse = t.clock.now().toISOString();
    expect((await useKey(created.key)).status).toBe(200);
    let shown = await eventually(read, (r) => r.body.last_used_at !== null);
    expect(shown.body.last_used_at).toBe(firstUse);

    t.clock.advance(HOUR_MS);
    const secondUse = t.clock.now().toISOString();
    expect((await useKey(created.key, { 'x-api-key': created.key })).status).toBe(200);
    shown = await eventually(read, (r) => r.body.last_used_at === secondUse);
    expect(shown.body.last_used_at).toBe(secondUse);
    // Reading the key with another key does not count as using it.
    expect(shown.body.updated_at).toBe(created.updated_at);
  });

  it('lists the requests made with it, newest first, by route pattern', async () => {
    const u = await t.signup();
    const created = await createKey(u.token); // write scope
    const { key } = created;

    expect((await t.call('GET', '/v1/api-keys', { token: key })).status).toBe(200);
    expect(
      (await t.call('GET', `/v1/api-keys/${created.id}`, { headers: { 'x-api-key': key } })).status,
    ).toBe(200);
    expect((await t.call('GET', '/v1/api-keys/key_nope', { token: key })).status).toBe(404);
    const denied = await t.call('POST', '/v1/api-keys', { token: key, body: { name: 'escalate' } });
    expect(denied.status).toBe(403);
    // A request the key could not authenticate is not its usage.
    expect((await t.call('GET', '/v1/api-keys', { token: `${key}x` })).status).toBe(401);

    const readUsage = () => t.call('GET', `/v1/api-keys/${created.id}/usage`, { token: u.token });
    const usage = await eventually(readUsage, (r) => r.body.data?.length >= 4);
    expect(usage.status).toBe(200);
    expect(
      usage.body.data.map((row: Record<string, unknown>) => [
        row.method,
        row.path,
        row.status_code,
        row.key_version,
      ]),
    ).toEqual([
      ['POST', '/v1/api-keys', 403, 'current'],
      ['GET', '/v1/api-keys/:id', 404, 'current'],
      ['GET', '/v1/api-keys/:id', 200, 'current'],
      ['GET', '/v1/api-keys', 200, 'current'],
    ]);
    expect(usage.body.data[0].created_at).toBe(t.clock.now().toISOString());
    expect(usage.body.next_cursor).toBeNull();

    // Paged: two, then the other two.
    const first = await t.call('GET', `/v1/api-keys/${created.id}/usage`, {
      token: u.token,
      query: { limit: '2' },
    });
    expect(first.body.data).toHaveLength(2);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await t.call('GET', `/v1/api-keys/${created.id}/usage`, {
      token: u.token,
      query: { limit: '2', cursor: first.body.next_cursor },
    });
    expect([...first.body.data, ...second.body.data].map((r: { id: string }) => r.id)).toEqual(
      usage.body.data.map((r: { id: string }) => r.id),
    );

    // Another key's usage is its own.
    const other = await createKey(u.token);
    const otherUsage = await t.call('GET', `/v1/api-keys/${other.id}/usage`, { token: u.token });
    expect(otherUsage.body.data).toEqual([]);
  });
});

describe('changing a key (PATCH)', () => {
  it('renames it and sets or clears its description', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const url = `/v1/api-keys/${created.id}`;

    t.clock.advance(MINUTE_MS);
    const renamed = await t.call('PATCH', url, {
      token: u.token,
      body: { name: 'nightly', description: 'runs at 02:00' },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: 'nightly', description: 'runs at 02:00' });
    expect(renamed.body.updated_at).toBe(t.clock.now().toISOString());
    expect((await t.call('GET', url, { token: u.token })).body).toMatchObject({
      name: 'nightly',
      description: 'runs at 02:00',
      scopes: ['write'],
    });

    const cleared = await t.call('PATCH', url, { token: u.token, body: { description: null } });
    expect(cleared.body).toMatchObject({ name: 'nightly', description: null });

    for (const body of [{ name: '' }, { scopes: ['superuser'] }, { enabled: false }, { active: 'no' }]) {
      const res = await t.call('PATCH', url, { token: u.token, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    // The key still works after all that.
    expect((await useKey(created.key)).status).toBe(200);
  });

  it('applies a scope change to the very next request', async () => {
    const u = await t.signup();
    const created = await createKey(u.token, { scopes: ['read'] });
    const url = `/v1/api-keys/${created.id}`;
    const tryCreate = () => t.call('POST', '/v1/api-keys', { token: created.key, body: { name: 'child' } });

    let res = await tryCreate();
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('insufficient_scope');

    expect((await t.call('PATCH', url, { token: u.token, body: { scopes: ['admin'] } })).body.scopes).toEqual(
      ['admin'],
    );
    res = await tryCreate();
    expect(res.status).toBe(201);

    await t.call('PATCH', url, { token: u.token, body: { scopes: ['read'] } });
    res = await tryCreate();
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('insufficient_scope');
  });

  it('disables with active:false (401 api_key_disabled) and enables again with active:true', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const url = `/v1/api-keys/${created.id}`;

    const off = await t.call('PATCH', url, { token: u.token, body: { active: false } });
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ active: false, status: 'disabled' });
    let res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_disabled');
    res = await useKey(created.key, { 'x-api-key': created.key });
    expect(res.status).toBe(401);

    const on = await t.call('PATCH', url, { token: u.token, body: { active: true } });
    expect(on.body).toMatchObject({ active: true, status: 'active' });
    expect((await useKey(created.key)).status).toBe(200);
  });

  it('refuses an expiry in the past and ends the key when a future expiry arrives', async () => {
    const u = await owner();
    const created = await createKey(u.admin);
    const url = `/v1/api-keys/${created.id}`;
    const now = t.clock.now().getTime();

    for (const at of [now - 1000, now]) {
      const res = await t.call('PATCH', url, {
        token: u.admin,
        body: { expires_at: new Date(at).toISOString() },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.details.fields).toHaveProperty('expires_at');
    }
    expect((await t.call('GET', url, { token: u.admin })).body.expires_at).toBeNull();
    expect((await useKey(created.key)).status).toBe(200);

    const expiresAt = new Date(now + 2 * HOUR_MS).toISOString();
    const set = await t.call('PATCH', url, { token: u.admin, body: { expires_at: expiresAt } });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ expires_at: expiresAt, status: 'active' });

    t.clock.advance(2 * HOUR_MS - 1000);
    expect((await useKey(created.key)).status).toBe(200);

    t.clock.advance(1000);
    const res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_expired');
    expect((await t.call('GET', url, { token: u.admin })).body.status).toBe('expired');

    // Clearing the expiry brings it back.
    const cleared = await t.call('PATCH', url, { token: u.admin, body: { expires_at: null } });
    expect(cleared.body).toMatchObject({ expires_at: null, status: 'active' });
    expect((await useKey(created.key)).status).toBe(200);
  });

  it('honours expires_at given at creation', async () => {
    const u = await owner();
    const expiresAt = new Date(t.clock.now().getTime() + HOUR_MS).toISOString();
    const created = await createKey(u.admin, { expires_at: expiresAt });
    expect(created.expires_at).toBe(expiresAt);
    expect((await useKey(created.key)).status).toBe(200);
    t.clock.advance(HOUR_MS);
    const res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_expired');
  });
});

describe('deleting and revoking', () => {
  it('DELETE: 204, the key stops working and is gone from the list and GET', async () => {
    const u = await t.signup();
    const keep = await createKey(u.token, { name: 'keep' });
    const gone = await createKey(u.token, { name: 'gone' });
    expect((await useKey(gone.key)).status).toBe(200);

    const del = await t.call('DELETE', `/v1/api-keys/${gone.id}`, { token: u.token });
    expect(del.status).toBe(204);
    expect(del.body).toBe('');

    for (const res of [await useKey(gone.key), await useKey(gone.key, { 'x-api-key': gone.key })]) {
      expect(res.status).toBe(401);
    }
    const list = await t.call('GET', '/v1/api-keys', { token: u.token });
    expect(list.body.data.map((k: { id: string }) => k.id)).toEqual([keep.id]);
    for (const [method, path] of [
      ['GET', ''],
      ['PATCH', ''],
      ['DELETE', ''],
      ['POST', '/revoke'],
      ['POST', '/rotate'],
      ['POST', '/roll'],
      ['GET', '/usage'],
    ] as const) {
      const res = await t.call(method, `/v1/api-keys/${gone.id}${path}`, {
        token: u.token,
        ...(method === 'PATCH' ? { body: { active: true } } : {}),
      });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    // The other key is untouched.
    expect((await useKey(keep.key)).status).toBe(200);
  });

  it('revoke: 200 revoked, dead at once and for good; it cannot be rotated, rolled or re-enabled', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const url = `/v1/api-keys/${created.id}`;
    expect((await useKey(created.key)).status).toBe(200);

    t.clock.advance(MINUTE_MS);
    const revoked = await t.call('POST', `${url}/revoke`, { token: u.token });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked', revoked_at: t.clock.now().toISOString() });

    let res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_revoked');

    for (const action of ['rotate', 'roll']) {
      res = await t.call('POST', `${url}/${action}`, { token: u.token, body: {} });
      expect(res.status, action).toBe(400);
      expect(res.body.error.code).toBe('api_key_revoked');
      expect(res.body).not.toHaveProperty('key');
    }
    await t.call('PATCH', url, { token: u.token, body: { active: true } });
    res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_revoked');

    // Revoking again keeps the first revocation time; the key stays listed as revoked.
    t.clock.advance(MINUTE_MS);
    const again = await t.call('POST', `${url}/revoke`, { token: u.token });
    expect(again.body.revoked_at).toBe(revoked.body.revoked_at);
    const list = await t.call('GET', '/v1/api-keys', { token: u.token });
    expect(list.body.data.find((k: { id: string }) => k.id === created.id)?.status).toBe('revoked');
  });

  it('revoking a key during its rotation grace ends the old secret too', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });
    expect((await useKey(created.key)).status).toBe(200);
    await t.call('POST', `/v1/api-keys/${created.id}/revoke`, { token: u.token });
    for (const key of [created.key, rotated.body.key]) expect((await useKey(key)).status).toBe(401);
  });
});

describe('rotate and roll', () => {
  it('rotate: the old key keeps working for 24 h by default, then 401 api_key_rotated', async () => {
    const u = await owner();
    const created = await createKey(u.admin);
    const start = t.clock.now().getTime();

    // No body at all: the defaults.
    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.admin });
    expect(rotated.status).toBe(200);
    const fresh: string = rotated.body.key;
    expect(fresh).toMatch(/^pdk_/);
    expect(fresh).not.toBe(created.key);
    expect(rotated.body).toMatchObject({
      id: created.id,
      name: created.name,
      key_prefix: fresh.slice(0, 12),
      status: 'active',
      previous_key_expires_at: new Date(start + 24 * HOUR_MS).toISOString(),
    });

    expect((await useKey(fresh)).status).toBe(200);
    expect((await useKey(created.key)).status).toBe(200);

    t.clock.advance(23 * HOUR_MS + 59 * MINUTE_MS);
    expect((await useKey(created.key)).status).toBe(200);
    expect((await useKey(created.key, { 'x-api-key': created.key })).status).toBe(200);

    t.clock.advance(MINUTE_MS);
    const res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_rotated');
    expect((await useKey(fresh)).status).toBe(200);
    // The grace is over, so the key no longer shows one.
    const shown = await t.call('GET', `/v1/api-keys/${created.id}`, { token: u.admin });
    expect(shown.body.previous_key_expires_at).toBeNull();
  });

  it('rotate honours grace_hours', async () => {
    const u = await owner();
    const created = await createKey(u.admin);
    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, {
      token: u.admin,
      body: { grace_hours: 2 },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.body.previous_key_expires_at).toBe(
      new Date(t.clock.now().getTime() + 2 * HOUR_MS).toISOString(),
    );

    t.clock.advance(2 * HOUR_MS - 1000);
    expect((await useKey(created.key)).status).toBe(200);
    t.clock.advance(1000);
    const res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('api_key_rotated');
    expect((await useKey(rotated.body.key)).status).toBe(200);

    for (const grace_hours of [-1, 721, 1.5, '2']) {
      const bad = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, {
        token: u.admin,
        body: { grace_hours },
      });
      expect(bad.status, String(grace_hours)).toBe(400);
      expect(bad.body.error.code).toBe('validation_failed');
    }
    // The refused rotations changed nothing.
    expect((await useKey(rotated.body.key)).status).toBe(200);
  });

  it('rotating twice keeps only the most recent previous key', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const first = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });
    const second = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });
    expect(second.status).toBe(200);

    expect((await useKey(created.key)).status).toBe(401);
    expect((await useKey(first.body.key)).status).toBe(200);
    expect((await useKey(second.body.key)).status).toBe(200);
  });

  it('usage says key_version "previous" when the old secret is used during the grace', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });

    expect((await useKey(created.key)).status).toBe(200);
    expect((await useKey(rotated.body.key)).status).toBe(200);

    const usage = await eventually(
      () => t.call('GET', `/v1/api-keys/${created.id}/usage`, { token: u.token }),
      (r) => r.body.data?.length >= 2,
    );
    expect(
      usage.body.data.map((row: { path: string; key_version: string }) => [row.path, row.key_version]),
    ).toEqual([
      ['/v1/teams', 'current'],
      ['/v1/teams', 'previous'],
    ]);
  });

  it('roll: the old key stops working at once and the new one works', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    expect((await useKey(created.key)).status).toBe(200);

    const rolled = await t.call('POST', `/v1/api-keys/${created.id}/roll`, { token: u.token });
    expect(rolled.status).toBe(200);
    expect(rolled.body).toMatchObject({
      id: created.id,
      key_prefix: rolled.body.key.slice(0, 12),
      previous_key_expires_at: null,
      status: 'active',
    });
    expect(rolled.body.key).not.toBe(created.key);
    const res = await useKey(created.key);
    expect(res.status).toBe(401);
    expect((await useKey(rolled.body.key)).status).toBe(200);
  });

  it('roll during a rotation grace ends the grace as well', async () => {
    const u = await t.signup();
    const created = await createKey(u.token);
    const rotated = await t.call('POST', `/v1/api-keys/${created.id}/rotate`, { token: u.token, body: {} });
    const rolled = await t.call('POST', `/v1/api-keys/${created.id}/roll`, { token: u.token });
    expect((await useKey(created.key)).status).toBe(401);
    expect((await useKey(rotated.body.key)).status).toBe(401);
    expect((await useKey(rolled.body.key)).status).toBe(200);
  });
});

describe('scopes: read < write < admin', () => {
  async function keysOf(u: SignedUpUser) {
    const out = {} as Record<Scope, { id: string; key: string }>;
    for (const scope of ['read', 'write', 'admin'] as const) out[scope] = await t.apiKey(u.token, [scope]);
    return out;
  }

  it('key management: read keys read, write keys read, only admin keys manage', async () => {
    const u = await t.signup();
    const keys = await keysOf(u);
    const target = await createKey(u.token, { name: 'target' });
    const base = `/v1/api-keys/${target.id}`;

    // [method, url, body, scope needed, status when allowed]
    const routes: Array<[string, string, unknown, Scope, number]> = [
      ['GET', '/v1/api-keys', undefined, 'read', 200],
      ['GET', base, undefined, 'read', 200],
      ['GET', `${base}/usage`, undefined, 'read', 200],
      ['PATCH', base, { description: 'touched' }, 'admin', 200],
      ['POST', `${base}/rotate`, { grace_hours: 1 }, 'admin', 200],
      ['POST', `${base}/roll`, undefined, 'admin', 200],
      ['POST', '/v1/api-keys', { name: 'made by a key' }, 'admin', 201],
      ['POST', `${base}/revoke`, undefined, 'admin', 200],
      ['DELETE', base, undefined, 'admin', 204],
    ];
    const rank: Record<Scope, number> = { read: 1, write: 2, admin: 3 };
    // Lower scopes first, so the refused calls happen before the key is changed or deleted.
    for (const [method, url, body, need, okStatus] of routes) {
      for (const have of ['read', 'write', 'admin'] as const) {
        const res = await t.call(method, url, {
          token: keys[have].key,
          ...(body !== undefined ? { body } : {}),
        });
        if (rank[have] >= rank[need]) {
          expect(res.status, `${have} key: ${method} ${url}`).toBe(okStatus);
        } else {
          expect(res.status, `${have} key: ${method} ${url}`).toBe(403);
          expect(res.body.error.code).toBe('insufficient_scope');
          expect(res.body.error.details).toMatchObject({ required_scope: need, scope: have });
        }
      }
    }
  });

  it('a key with several scopes acts with the highest of them', async () => {
    const u = await t.signup();
    const both = await t.apiKey(u.token, ['read', 'admin']);
    const res = await t.call('POST', '/v1/api-keys', { token: both.key, body: { name: 'child' } });
    expect(res.status).toBe(201);
    expect(res.body.created_by).toBe(`api_key:${both.id}`);
  });

  it('members use scopes of their role: a viewer reads keys but cannot create one', async () => {
    const u = await t.signup();
    const viewer = await t.signup({ email: uniqueEmail('viewer') });
    const added = await t.call('POST', `/v1/teams/${u.team.id}/members`, {
      token: u.token,
      body: { email: viewer.user.email, role: 'viewer' },
    });
    expect(added.status).toBe(201);
    const switched = await t.call('POST', '/v1/auth/switch-team', {
      token: viewer.token,
      body: { team_id: u.team.id },
    });
    const token = switched.body.session_token;
    expect((await t.call('GET', '/v1/api-keys', { token })).status).toBe(200);
    const res = await t.call('POST', '/v1/api-keys', { token, body: { name: 'nope' } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('insufficient_scope');
  });

  it('every non-public /v1 route refuses a request without a valid token with 401', async () => {
    const doc = (await t.call('GET', '/v1/openapi.json')).body as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
    );
    const guarded = operations.filter((o) => o.path.startsWith('/v1/') && (o.op.security ?? []).length > 0);
    const open = operations.filter((o) => o.path.startsWith('/v1/') && (o.op.security ?? []).length === 0);
    // The API keys' own routes must be among the guarded ones, or this proves little.
    expect(guarded.map((o) => `${o.method} ${o.path}`)).toEqual(
      expect.arrayContaining([
        'POST /v1/api-keys',
        'DELETE /v1/api-keys/{id}',
        'GET /v1/api-keys/{id}/usage',
      ]),
    );

    const credentials: Array<[string, Record<string, string>]> = [
      ['no token', {}],
      ['unknown API key', { authorization: 'Bearer pdk_0000000000000000000000000000000000000000000' }],
      ['unknown X-API-Key', { 'x-api-key': 'pdk_0000000000000000000000000000000000000000000' }],
      ['unknown token kind', { authorization: 'Bearer zzz_123' }],
      ['malformed header', { authorization: 'Basic dXNlcjpwYXNz' }],
    ];
    const failures: string[] = [];
    for (const { path, method } of guarded) {
      const url = path.replace(/\{[^}]+\}/g, 'x_01J00000000000000000000000');
      const methods = method === 'GET' ? ['GET', 'HEAD'] : [method];
      for (const m of methods) {
        for (const [label, headers] of credentials) {
          const res = await t.call(m, url, {
            headers,
            ...(['POST', 'PUT', 'PATCH'].includes(m) ? { body: {} } : {}),
          });
          const code = m === 'HEAD' ? 'n/a' : res.body?.error?.code;
          if (res.status !== 401 || (m !== 'HEAD' && typeof code !== 'string')) {
            failures.push(`${m} ${path} with ${label}: ${res.status} ${code}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);

    // And the routes documented as public really are: no token is not a 401.
    for (const { path, method } of open) {
      const res = await t.call(method, path.replace(/\{[^}]+\}/g, 'x'), {
        ...(['POST', 'PUT', 'PATCH'].includes(method) ? { body: {} } : {}),
      });
      expect(res.status, `${method} ${path}`).not.toBe(401);
      expect(res.status, `${method} ${path}`).toBeLessThan(500);
    }
  });
});

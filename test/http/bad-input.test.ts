import { randomBytes } from 'node:crypto';
import type { ErrorObject } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { fieldErrors, validatorCompiler } from '../../src/http/validation.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { expectError } from '../support/errors.ts';

let t: TestApp;
let owner: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp({ config: { bodyLimitBytes: 2048 } });
  owner = await t.signup({ name: 'Owner' });
});
afterAll(() => t.close());

function rawJson(text: string, token = owner.token) {
  return t.call('POST', '/v1/teams', { token, body: text, headers: { 'content-type': 'application/json' } });
}

async function keyIds(token = owner.token): Promise<string[]> {
  const res = await t.call('GET', '/v1/api-keys', { token, query: { limit: '200' } });
  expect(res.status).toBe(200);
  return res.body.data.map((k: { id: string }) => k.id);
}

async function teamCount(token = owner.token): Promise<number> {
  const res = await t.call('GET', '/v1/teams', { token, query: { limit: '200' } });
  expect(res.status).toBe(200);
  return res.body.data.length;
}

describe('malformed JSON', () => {
  it('is 400 invalid_json, on private and public routes, and creates nothing', async () => {
    const before = await teamCount();
    for (const text of ['{"name": ', '{name: "x"}', "{'name': 'x'}", '{"name": "x",}', 'not json']) {
      expectError(await rawJson(text), 400, 'invalid_json');
    }
    const signup = await t.call('POST', '/v1/auth/signup', {
      body: '{"email": "x@example.com", "password": ',
      headers: { 'content-type': 'application/json' },
    });
    expectError(signup, 400, 'invalid_json');
    expect(await teamCount()).toBe(before);
  });

  it('says where the JSON broke', async () => {
    const res = await rawJson('{"name": "x" "oops": 1}');
    expectError(res, 400, 'invalid_json');
    expect(res.body.error.message).toMatch(/not valid JSON/);
    expect(res.body.error.message).toMatch(/position|line|column/i);
  });

  it('refuses prototype-poisoning keys, even written with escapes', async () => {
    const before = await teamCount();
    for (const text of [
      '{"name": "x", "__proto__": {"is_admin": true}}',
      '{"name": "x", "\\u005f_proto__": {"is_admin": true}}',
      '{"name": "x", "constructor": {"prototype": {"is_admin": true}}}',
    ]) {
      expectError(await rawJson(text), 400, 'invalid_json');
    }
    expect(await teamCount()).toBe(before);
    // Escapes in ordinary values are fine.
    const ok = await rawJson('{"name": "caf\\u00e9 prototype"}');
    expect(ok.status).toBe(201);
    expect(ok.body.name).toBe('café prototype');
  });

  it('a JSON body that is not an object is 400 validation_failed', async () => {
    for (const text of ['null', '[]', '"name"', '42']) {
      expectError(await rawJson(text), 400, 'validation_failed');
    }
    expectError(await t.call('POST', '/v1/teams', { token: owner.token }), 400, 'validation_failed');
  });
});

describe('schema validation', () => {
  it('a wrong type is 400 validation_failed naming the field', async () => {
    const before = await teamCount();
    const res = await t.call('POST', '/v1/teams', { token: owner.token, body: { name: 123 } });
    expectError(res, 400, 'validation_failed');
    expect(res.body.error.details.fields).toEqual({ name: 'must be string' });
    expect(res.body.error.message).toContain('name');
    expect(await teamCount()).toBe(before);
  });

  it('never coerces body values: "1" is not 1, "true" is not true, 1 is not "1"', async () => {
    const key = await t.apiKey(owner.token, ['read']);
    const grace = await t.call('POST', `/v1/api-keys/${key.id}/rotate`, {
      token: owner.token,
      body: { grace_hours: '1' },
    });
    expectError(grace, 400, 'validation_failed');
    expect(Object.keys(grace.body.error.details.fields)).toEqual(['grace_hours']);

    const active = await t.call('PATCH', `/v1/api-keys/${key.id}`, {
      token: owner.token,
      body: { active: 'false' },
    });
    expectError(active, 400, 'validation_failed');
    expect(Object.keys(active.body.error.details.fields)).toEqual(['active']);

    const name = await t.call('PATCH', '/v1/me', { token: owner.token, body: { name: 1 } });
    expectError(name, 400, 'validation_failed');
    expect(Object.keys(name.body.error.details.fields)).toEqual(['name']);

    // The key is unchanged: still active, not rotated.
    const after = await t.call('GET', `/v1/api-keys/${key.id}`, { token: owner.token });
    expect(after.body.active).toBe(true);
    expect(after.body.previous_key_expires_at).toBeNull();
    expect((await t.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);
  });

  it('lists every bad field at once, and missing fields as required', async () => {
    const res = await t.call('POST', '/v1/auth/signup', { body: { email: 42, password: true } });
    expectError(res, 400, 'validation_failed');
    expect(res.body.error.details.fields).toMatchObject({
      email: 'must be string',
      password: 'must be string',
      name: 'is required',
    });
  });

  it('an unknown field is 400 naming it, not silently dropped', async () => {
    const before = await teamCount();
    const res = await t.call('POST', '/v1/teams', { token: owner.token, body: { name: 'x', colour: 'red' } });
    expectError(res, 400, 'validation_failed');
    expect(res.body.error.details.fields).toEqual({ colour: 'is not a known field' });
    expect(res.body.error.message).toContain('colour');
    expect(await teamCount()).toBe(before);

    // A typo in a field name of PATCH /v1/me does not pass as an empty update.
    const typo = await t.call('PATCH', '/v1/me', { token: owner.token, body: { nmae: 'Typo' } });
    expectError(typo, 400, 'validation_failed');
    expect(typo.body.error.details.fields).toEqual({ nmae: 'is not a known field' });
  });

  it('an unknown query parameter is 400 naming it', async () => {
    const res = await t.call('GET', '/v1/api-keys', { token: owner.token, query: { colour: 'red' } });
    expectError(res, 400, 'validation_failed');
    expect(res.body.error.details.fields).toEqual({ colour: 'is not a known field' });
    const proto = await t.call('GET', '/v1/api-keys?__proto__=1', { token: owner.token });
    expectError(proto, 400, 'validation_failed');
    expect(Object.keys(proto.body.error.details.fields)).toEqual(['__proto__']);
  });

  it('a query, path or header number past any float (1e999) is refused naming it, bounds or not', () => {
    // Every route today bounds its numbers; this holds the rule for a route that forgets to.
    const schema = {
      type: 'object',
      properties: { n: { type: 'number' }, ids: { type: 'array', items: { type: 'integer' } } },
    };
    for (const httpPart of ['querystring', 'params', 'headers'] as const) {
      const validate = validatorCompiler({ schema, httpPart, method: 'GET', url: '/x' }) as unknown as ((
        data: unknown,
      ) => boolean) & { errors: ErrorObject[] | null };
      for (const [data, field] of [
        [{ n: '1e999' }, 'n'],
        [{ n: '-1e999' }, 'n'],
        [{ ids: ['1', '1e999'] }, 'ids'],
      ] as const) {
        expect(validate({ ...data }), `${httpPart} ${JSON.stringify(data)}`).toBe(false);
        expect(fieldErrors(validate.errors!, undefined)).toEqual({ [field]: 'must be a finite number' });
      }
      const fine = { n: '1e300', ids: ['2', '3'] };
      expect(validate(fine)).toBe(true);
      expect(fine).toEqual({ n: 1e300, ids: [2, 3] });
    }
  });

  it('an unknown enum value is 400 listing the allowed values', async () => {
    const scopes = await t.call('POST', '/v1/api-keys', {
      token: owner.token,
      body: { name: 'super', scopes: ['superuser'] },
    });
    expectError(scopes, 400, 'validation_failed');
    expect(scopes.body.error.details.fields).toEqual({
      'scopes.0': 'must be one of read, write, admin, queue',
    });

    const other = await t.signup();
    const role = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
      token: owner.token,
      body: { email: other.user.email, role: 'king' },
    });
    expectError(role, 400, 'validation_failed');
    expect(role.body.error.details.fields).toEqual({ role: 'must be one of admin, member, viewer' });
    expect(role.body.error.message).toContain('admin, member, viewer');
    // Owner is a role, but not one that can be granted.
    const ownerRole = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
      token: owner.token,
      body: { email: other.user.email, role: 'owner' },
    });
    expectError(ownerRole, 400, 'validation_failed');
    const members = await t.call('GET', `/v1/teams/${owner.team.id}/members`, { token: owner.token });
    expect(members.body.data.map((m: { user_id: string }) => m.user_id)).not.toContain(other.user.id);

    const status = await t.call('GET', '/v1/invitations', { token: owner.token, query: { status: 'lost' } });
    expectError(status, 400, 'validation_failed');
    expect(status.body.error.details.fields.status).toBe(
      'must be one of pending, accepted, revoked, expired',
    );
  });

  it('a rejected POST /v1/api-keys writes nothing', async () => {
    const before = await keyIds();
    const bodies = [
      { name: 'bad scope', scopes: ['superuser'] },
      { name: 'bad type', scopes: 'admin' },
      { name: 'unknown', colour: 'red' },
      { name: '' },
      { name: 'bad date', expires_at: 'tomorrow' },
      { scopes: ['read'] },
    ];
    for (const body of bodies) {
      expectError(
        await t.call('POST', '/v1/api-keys', { token: owner.token, body }),
        400,
        'validation_failed',
      );
    }
    expect(await keyIds()).toEqual(before);
  });

  it('a bad path parameter or limit is 4xx in the error shape, with a request id', async () => {
    // The router refuses these before any hook: they must still look like every other error.
    const long = await t.call('GET', `/v1/api-keys/${'k'.repeat(101)}`, { token: owner.token });
    expectError(long, 414, 'path_too_long');
    expect(long.headers['x-request-id']).toMatch(/^req_/);
    const broken = await t.call('GET', '/v1/api-keys/%E0%A4%A', {
      token: owner.token,
      headers: { 'x-request-id': 'broken-url-1' },
    });
    expectError(broken, 400, 'invalid_url');
    expect(broken.headers['x-request-id']).toBe('broken-url-1');
    // Exactly at the limit, it reaches the route: an unknown key.
    expectError(
      await t.call('GET', `/v1/api-keys/${'k'.repeat(100)}`, { token: owner.token }),
      404,
      'not_found',
    );
    for (const limit of ['0', '201', 'abc', '1.5', '-1']) {
      const res = await t.call('GET', '/v1/api-keys', { token: owner.token, query: { limit } });
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toEqual(['limit']);
    }
  });
});

describe('pagination cursors', () => {
  it('an invalid cursor is 400 invalid_cursor on every list', async () => {
    const badCursors = [
      '!!!!',
      Buffer.from("key_1' or '1'='1").toString('base64url'),
      Buffer.from('x'.repeat(300)).toString('base64url').slice(0, 400),
    ];
    for (const url of ['/v1/api-keys', '/v1/teams', '/v1/me/sessions']) {
      for (const cursor of badCursors) {
        const res = await t.call('GET', url, { token: owner.token, query: { cursor } });
        expectError(res, 400, 'invalid_cursor');
      }
    }
    // Too long to be ours at all.
    expectError(
      await t.call('GET', '/v1/api-keys', { token: owner.token, query: { cursor: 'a'.repeat(401) } }),
      400,
      'validation_failed',
    );
  });

  it('a cursor the server issued works', async () => {
    for (let i = 0; i < 2; i++) await t.apiKey(owner.token, ['read']);
    const first = await t.call('GET', '/v1/api-keys', { token: owner.token, query: { limit: '1' } });
    expect(first.status).toBe(200);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await t.call('GET', '/v1/api-keys', {
      token: owner.token,
      query: { limit: '1', cursor: first.body.next_cursor },
    });
    expect(second.status).toBe(200);
    expect(second.body.data[0].id).not.toBe(first.body.data[0].id);
  });
});

describe('body size', () => {
  it('a body over the limit is 413 payload_too_large with the limit, and creates nothing', async () => {
    expect(t.config.bodyLimitBytes).toBe(2048);
    const before = await teamCount();
    const res = await t.call('POST', '/v1/teams', {
      token: owner.token,
      body: { name: 'x'.repeat(10 * 1024) },
    });
    expectError(res, 413, 'payload_too_large');
    expect(res.body.error.details).toEqual({ limit_bytes: 2048 });
    expect(res.body.error.message).toContain('2048');
    expect(await teamCount()).toBe(before);

    // On a public route too, before any parsing.
    const signup = await t.call('POST', '/v1/auth/signup', {
      body: { email: 'big@example.com', name: 'B', password: 'p'.repeat(10 * 1024) },
    });
    expectError(signup, 413, 'payload_too_large');
  });

  it('a body just under the limit is parsed normally', async () => {
    const res = await t.call('POST', '/v1/teams', { token: owner.token, body: { name: 'y'.repeat(129) } });
    // Under 2 KB, so it reaches validation (name is at most 128 characters).
    expectError(res, 400, 'validation_failed');
    expect(Object.keys(res.body.error.details.fields)).toEqual(['name']);
  });

  it('a body that is not JSON is refused', async () => {
    const form = await t.call('POST', '/v1/teams', {
      token: owner.token,
      body: 'name=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expectError(form, 415, 'unsupported_media_type');
    const text = await t.call('POST', '/v1/teams', {
      token: owner.token,
      body: 'name=x',
      headers: { 'content-type': 'text/plain' },
    });
    // Fastify reads text/plain as a string, which is not the object the route takes.
    expectError(text, 400, 'validation_failed');
  });
});

describe('authentication failures', () => {
  it('no credentials at all is 401 unauthenticated', async () => {
    for (const [method, url] of [
      ['GET', '/v1/me'],
      ['GET', '/v1/api-keys'],
      ['POST', '/v1/teams'],
      ['POST', '/v1/auth/logout'],
    ] as const) {
      const res = await t.call(method, url, method === 'POST' ? { body: {} } : {});
      expectError(res, 401, 'unauthenticated');
    }
  });

  it('garbage, unknown-prefix and unknown tokens are 401', async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ authorization: 'Bearer garbage' }, 'invalid_token'],
      [{ authorization: 'Bearer zzz_0123456789' }, 'invalid_token'],
      [{ authorization: 'Bearer _leading' }, 'invalid_token'],
      [{ authorization: `Bearer pdk_${'0'.repeat(43)}` }, 'invalid_api_key'],
      [{ authorization: `Bearer pds_${'0'.repeat(43)}` }, 'session_invalid'],
      [{ 'x-api-key': 'garbage' }, 'invalid_token'],
      [{ cookie: 'paddock_session=garbage' }, 'invalid_token'],
    ];
    for (const [headers, code] of cases) {
      expectError(await t.call('GET', '/v1/api-keys', { headers }), 401, code);
    }
  });

  it('a malformed Authorization header is 401, even with a good token inside it', async () => {
    for (const authorization of [
      'Basic dXNlcjpwYXNz',
      'Bearer',
      'Bearer ',
      `Bearer ${owner.token} extra`,
      `Token ${owner.token}`,
      owner.token,
    ]) {
      const res = await t.call('GET', '/v1/api-keys', { headers: { authorization } });
      expectError(res, 401, 'invalid_authorization');
    }
    // The scheme name is case-insensitive (RFC 7235).
    const lower = await t.call('GET', '/v1/api-keys', {
      headers: { authorization: `bearer ${owner.token}` },
    });
    expect(lower.status).toBe(200);
  });

  it('401 answers do not leak whether a token was ever valid beyond its kind', async () => {
    const u = await t.signup();
    await t.call('POST', '/v1/auth/logout', { token: u.token });
    const revoked = await t.call('GET', '/v1/me', { token: u.token });
    const never = await t.call('GET', '/v1/me', { token: `pds_${'1'.repeat(43)}` });
    expectError(revoked, 401, 'session_invalid');
    expect(revoked.body).toEqual(never.body);
  });
});

describe('authorisation failures', () => {
  it('a read-only API key cannot create keys: 403 insufficient_scope, and nothing is written', async () => {
    const before = await keyIds();
    for (const scopes of [['read'], ['write']] as const) {
      const key = await t.apiKey(owner.token, [...scopes]);
      const res = await t.call('POST', '/v1/api-keys', { token: key.key, body: { name: 'escalate' } });
      expectError(res, 403, 'insufficient_scope');
      expect(res.body.error.details).toMatchObject({ required_scope: 'admin', scope: scopes[0] });
    }
    const after = await keyIds();
    // Only the two keys made above were added.
    expect(after.length).toBe(before.length + 2);
    expect(after).toEqual(expect.arrayContaining(before));
  });

  it('a read key can read, and a write key is refused admin work but can read', async () => {
    const key = await t.apiKey(owner.token, ['read']);
    expect((await t.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);
    const del = await t.call('DELETE', `/v1/api-keys/${key.id}`, { token: key.key });
    expectError(del, 403, 'insufficient_scope');
    expect((await t.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);
  });

  it("a viewer member cannot do an admin's work: 403 insufficient_scope", async () => {
    const viewer = await t.signup({ name: 'Viewer' });
    const added = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
      token: owner.token,
      body: { email: viewer.user.email, role: 'viewer' },
    });
    expect(added.status).toBe(201);
    const switched = await t.call('POST', '/v1/auth/switch-team', {
      token: viewer.token,
      body: { team_id: owner.team.id },
    });
    expect(switched.status).toBe(200);
    const token = switched.body.session_token as string;

    expect((await t.call('GET', '/v1/api-keys', { token })).status).toBe(200);
    const before = await keyIds();
    const key = await t.call('POST', '/v1/api-keys', { token, body: { name: 'viewer key' } });
    expectError(key, 403, 'insufficient_scope');
    expect(key.body.error.details).toMatchObject({ required_scope: 'admin', scope: 'read' });
    const invite = await t.call('POST', '/v1/invitations', {
      token,
      body: { email: 'friend@example.com', role: 'admin' },
    });
    expectError(invite, 403, 'insufficient_scope');
    expect(await keyIds()).toEqual(before);
    const invitations = await t.call('GET', '/v1/invitations', { token: owner.token });
    expect(invitations.body.data.map((i: { email: string }) => i.email)).not.toContain('friend@example.com');
  });

  it('validation of the body does not run before authentication', async () => {
    // An anonymous caller learns nothing about the body's shape: 401, not 400.
    expectError(await t.call('POST', '/v1/api-keys', { body: { bogus: 1 } }), 401, 'unauthenticated');
    const key = await t.apiKey(owner.token, ['read']);
    expectError(
      await t.call('POST', '/v1/api-keys', { token: key.key, body: { bogus: 1 } }),
      403,
      'insufficient_scope',
    );
  });
});

describe('unknown routes', () => {
  it('is 404 route_not_found, with or without credentials, and names the route', async () => {
    for (const [method, url] of [
      ['GET', '/v1/nope'],
      ['POST', '/v1/teams/x/nonsense'],
      ['PUT', '/v1/me'],
      ['GET', '/nope'],
    ] as const) {
      const anon = await t.call(method, url);
      expectError(anon, 404, 'route_not_found');
      expect(anon.body.error.message).toContain(url);
      expectError(await t.call(method, url, { token: owner.token }), 404, 'route_not_found');
    }
    // The query string stays out of the message (it can carry tokens).
    const withQuery = await t.call('GET', '/v1/nope?token=pdi_secret');
    expectError(withQuery, 404, 'route_not_found');
    expect(withQuery.body.error.message).not.toContain('pdi_secret');
  });
});

describe('system routes', () => {
  it('GET /health: 200, status ok, the database answers, and the version', async () => {
    const res = await t.call('GET', '/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'ok',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      uptime_sec: expect.any(Number),
      db: { kind: expect.stringMatching(/^(pglite|postgres)$/), ok: true },
      role: 'all',
      // Null until the scheduler's first tick, then whether this server leads.
      scheduler_leader: expect.toSatisfy((v: unknown) => v === null || typeof v === 'boolean'),
    });
    expect(res.body.uptime_sec).toBeGreaterThanOrEqual(0);
    const expectedKind = process.env.PADDOCK_TEST_DATABASE_URL ? 'postgres' : 'pglite';
    expect(res.body.db.kind).toBe(expectedKind);
  });

  it('GET /version: the same version as /health and the Node version', async () => {
    const res = await t.call('GET', '/version');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ version: expect.any(String), node: process.version });
    expect(res.body.version).toBe((await t.call('GET', '/health')).body.version);
  });

  it('GET /ready: 200 once migrated; 503 before, when /v1 answers 503 not_ready too', async () => {
    const res = await t.call('GET', '/ready');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ready: true, migrated: true, db: true });

    const starting = await buildApp({
      config: t.config,
      database: t.database,
      masterKey: randomBytes(32),
      clock: t.clock,
      logger: false,
      migrated: false,
    });
    try {
      await starting.app.ready();
      const ready = await starting.app.inject({ method: 'GET', url: '/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ ready: false, migrated: false, db: false });
      // Liveness is not readiness: /health still answers.
      expect((await starting.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      const v1 = await starting.app.inject({ method: 'GET', url: '/v1/me' });
      expect(v1.statusCode).toBe(503);
      expect(v1.json().error.code).toBe('not_ready');

      starting.readiness.migrated = true;
      expect((await starting.app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    } finally {
      await starting.app.close();
    }
  });
});

describe('request ids', () => {
  it('every response carries an x-request-id, a different one each time', async () => {
    const responses = await Promise.all([
      t.call('GET', '/health'),
      t.call('GET', '/v1/me', { token: owner.token }),
      t.call('GET', '/v1/me'),
      t.call('GET', '/v1/nope'),
      rawJson('{"name":'),
      t.call('POST', '/v1/teams', { token: owner.token, body: { name: 'z'.repeat(5000) } }),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 401, 404, 400, 413]);
    const ids = responses.map((r) => r.headers['x-request-id']);
    for (const id of ids) expect(id).toMatch(/^req_[0-9A-Z]{26}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('echoes a sane incoming x-request-id and replaces an unsafe one', async () => {
    const sane = 'trace-42.abc:XYZ_1';
    const echoed = await t.call('GET', '/health', { headers: { 'x-request-id': sane } });
    expect(echoed.headers['x-request-id']).toBe(sane);
    const onError = await t.call('GET', '/v1/me', { headers: { 'x-request-id': sane } });
    expect(onError.status).toBe(401);
    expect(onError.headers['x-request-id']).toBe(sane);

    for (const unsafe of ['has space', 'x'.repeat(101), 'inject\u00e9', '<script>']) {
      const res = await t.call('GET', '/health', { headers: { 'x-request-id': unsafe } });
      expect(res.headers['x-request-id']).toMatch(/^req_/);
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallResult, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { expectError } from '../support/errors.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** A browser's cookie header for a signed-in user. */
function cookieHeader(u: { token: string; csrf: string }): string {
  return `paddock_session=${u.token}; paddock_csrf=${u.csrf}`;
}

/** A request as the dashboard makes it: the cookies, and the CSRF header when given. */
function browser(
  u: { token: string; csrf: string },
  method: string,
  url: string,
  options: { csrf?: string; body?: unknown; cookie?: string } = {},
): Promise<CallResult> {
  const headers: Record<string, string> = { cookie: options.cookie ?? cookieHeader(u) };
  if (options.csrf !== undefined) headers['x-csrf-token'] = options.csrf;
  return t.call(method, url, { headers, ...(options.body !== undefined ? { body: options.body } : {}) });
}

function expectCsrfFailed(res: CallResult): void {
  expect(res.status, JSON.stringify(res.body)).toBe(403);
  expect(res.body.error.code).toBe('csrf_failed');
  expect(res.body.error.message).toMatch(/x-csrf-token/i);
}

async function teamNames(u: SignedUpUser): Promise<string[]> {
  const res = await t.call('GET', '/v1/teams', { token: u.token });
  expect(res.status).toBe(200);
  return res.body.data.map((team: { name: string }) => team.name);
}

async function sessionIds(token: string): Promise<string[]> {
  const res = await t.call('GET', '/v1/me/sessions', { token });
  expect(res.status).toBe(200);
  return res.body.data.map((s: { id: string }) => s.id);
}

describe('cookie-authenticated requests', () => {
  it('the CSRF cookie and token from signup are the same value', async () => {
    const res = await t.call('POST', '/v1/auth/signup', {
      body: { email: `csrf-${Date.now()}@example.com`, name: 'C', password: 'correct horse battery' },
    });
    expect(res.status).toBe(201);
    const csrf = res.cookies.find((c) => c.name === 'paddock_csrf');
    expect(csrf?.value).toBe(res.body.csrf_token);
  });

  it('GET works with the cookie alone, no CSRF header', async () => {
    const u = await t.signup();
    const res = await browser(u, 'GET', '/v1/me');
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(u.user.id);
    // Even without the CSRF cookie: reads cannot change anything.
    const bare = await browser(u, 'GET', '/v1/me/sessions', { cookie: `paddock_session=${u.token}` });
    expect(bare.status).toBe(200);
  });

  it('POST without the header is 403 csrf_failed and creates nothing; with it, 201', async () => {
    const u = await t.signup();
    const before = await teamNames(u);

    expectCsrfFailed(await browser(u, 'POST', '/v1/teams', { body: { name: 'No header' } }));
    expectCsrfFailed(await browser(u, 'POST', '/v1/teams', { body: { name: 'Wrong' }, csrf: 'csrf_wrong' }));
    expectCsrfFailed(await browser(u, 'POST', '/v1/teams', { body: { name: 'Empty' }, csrf: '' }));
    // A near miss (one character off, same length) fails too.
    const nearMiss = u.csrf.slice(0, -1) + (u.csrf.endsWith('A') ? 'B' : 'A');
    expectCsrfFailed(await browser(u, 'POST', '/v1/teams', { body: { name: 'Near' }, csrf: nearMiss }));
    expect(await teamNames(u)).toEqual(before);

    const ok = await browser(u, 'POST', '/v1/teams', { body: { name: 'With header' }, csrf: u.csrf });
    expect(ok.status).toBe(201);
    expect(await teamNames(u)).toContain('With header');
  });

  it('PATCH without or with a wrong header is 403 and changes nothing; with the right one, 200', async () => {
    const u = await t.signup({ name: 'Original' });
    expectCsrfFailed(await browser(u, 'PATCH', '/v1/me', { body: { name: 'Forged' } }));
    expectCsrfFailed(await browser(u, 'PATCH', '/v1/me', { body: { name: 'Forged' }, csrf: 'x' }));
    expect((await t.call('GET', '/v1/me', { token: u.token })).body.user.name).toBe('Original');

    const ok = await browser(u, 'PATCH', '/v1/me', { body: { name: 'Renamed' }, csrf: u.csrf });
    expect(ok.status).toBe(200);
    expect(ok.body.user.name).toBe('Renamed');
  });

  it('DELETE without or with a wrong header is 403 and ends nothing; with the right one, 204', async () => {
    const u = await t.signup();
    const other = await t.call('POST', '/v1/auth/login', {
      body: { email: u.user.email, password: 'correct horse battery' },
    });
    const otherToken = other.body.session_token as string;
    const ids = await sessionIds(otherToken);
    const otherId = (await t.call('GET', '/v1/me/sessions', { token: otherToken })).body.data.find(
      (s: { current: boolean }) => s.current,
    ).id as string;
    expect(ids).toContain(otherId);

    expectCsrfFailed(await browser(u, 'DELETE', `/v1/me/sessions/${otherId}`));
    expectCsrfFailed(await browser(u, 'DELETE', `/v1/me/sessions/${otherId}`, { csrf: otherToken }));
    expect((await t.call('GET', '/v1/me', { token: otherToken })).status).toBe(200);

    const ok = await browser(u, 'DELETE', `/v1/me/sessions/${otherId}`, { csrf: u.csrf });
    expect(ok.status).toBe(204);
    expect((await t.call('GET', '/v1/me', { token: otherToken })).status).toBe(401);
  });

  it('the header is checked against the session, not the CSRF cookie: without the cookie it still works', async () => {
    const u = await t.signup();
    const res = await browser(u, 'POST', '/v1/teams', {
      body: { name: 'Header only' },
      csrf: u.csrf,
      cookie: `paddock_session=${u.token}`,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(await teamNames(u)).toContain('Header only');
  });

  it('logout by cookie needs the header too: a forged logout leaves the session alive', async () => {
    const u = await t.signup();
    expectCsrfFailed(await browser(u, 'POST', '/v1/auth/logout'));
    expectCsrfFailed(await browser(u, 'POST', '/v1/auth/logout-all'));
    expect((await t.call('GET', '/v1/me', { token: u.token })).status).toBe(200);
    const ok = await browser(u, 'POST', '/v1/auth/logout', { csrf: u.csrf });
    expect(ok.status).toBe(204);
    expect((await t.call('GET', '/v1/me', { token: u.token })).status).toBe(401);
  });

  it('after switch-team the new cookies work and the old session cookie does not', async () => {
    const u = await t.signup();
    const team = await t.call('POST', '/v1/teams', { token: u.token, body: { name: 'Other' } });
    const res = await browser(u, 'POST', '/v1/auth/switch-team', {
      body: { team_id: team.body.id },
      csrf: u.csrf,
    });
    expect(res.status).toBe(200);
    const next = {
      token: res.cookies.find((c) => c.name === 'paddock_session')!.value,
      csrf: res.cookies.find((c) => c.name === 'paddock_csrf')!.value,
    };
    expect(next.token).toBe(res.body.session_token);
    expect(next.csrf).toBe(res.body.csrf_token);

    expect((await browser(u, 'GET', '/v1/me')).status).toBe(401);
    const now = await browser(next, 'GET', '/v1/me');
    expect(now.status).toBe(200);
    expect(now.body.team.id).toBe(team.body.id);
    const write = await browser(next, 'PATCH', '/v1/me', { body: { name: 'Switched' }, csrf: next.csrf });
    expect(write.status).toBe(200);
  });

  it('a stale session cookie does not block logging in again', async () => {
    const u = await t.signup();
    expect((await t.call('POST', '/v1/auth/logout', { token: u.token })).status).toBe(204);
    const res = await t.call('POST', '/v1/auth/login', {
      headers: { cookie: cookieHeader(u) },
      body: { email: u.user.email, password: 'correct horse battery' },
    });
    expect(res.status).toBe(200);
  });

  it('a live session cookie without the CSRF header does not block logging in again', async () => {
    const u = await t.signup();
    const res = await t.call('POST', '/v1/auth/login', {
      headers: { cookie: cookieHeader(u) },
      body: { email: u.user.email, password: 'correct horse battery' },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.session_token).not.toBe(u.token);
    // The old session is not touched by it.
    expect((await t.call('GET', '/v1/me', { token: u.token })).status).toBe(200);
  });

  it('a public route never acts as the cookie’s user without the CSRF header (invitation accept)', async () => {
    const owner = await t.signup();
    const invitee = await t.signup();
    const inv = await t.call('POST', '/v1/invitations', {
      token: owner.token,
      body: { email: invitee.user.email, role: 'member' },
    });
    expect(inv.status).toBe(201);

    const forged = await browser(invitee, 'POST', '/v1/invitations/accept', {
      body: { token: inv.body.token },
    });
    // Without the header the cookie is not read: an anonymous accept of a registered address.
    expectError(forged, 409, 'account_exists');
    expect(await teamNames(invitee)).toHaveLength(1);

    const real = await browser(invitee, 'POST', '/v1/invitations/accept', {
      body: { token: inv.body.token },
      csrf: invitee.csrf,
    });
    expect(real.status, JSON.stringify(real.body)).toBe(200);
    expect(real.body.team.id).toBe(owner.team.id);
    expect(real.body.session).toBeNull();
    expect(await teamNames(invitee)).toHaveLength(2);
  });
});

describe('bearer-authenticated requests', () => {
  it('need no CSRF header for POST, PATCH or DELETE', async () => {
    const u = await t.signup();
    const other = await t.call('POST', '/v1/auth/login', {
      body: { email: u.user.email, password: 'correct horse battery' },
    });
    const created = await t.call('POST', '/v1/teams', { token: u.token, body: { name: 'Bearer team' } });
    expect(created.status).toBe(201);
    const patched = await t.call('PATCH', '/v1/me', { token: u.token, body: { name: 'Bearer name' } });
    expect(patched.status).toBe(200);
    const otherId = (
      await t.call('GET', '/v1/me/sessions', { token: other.body.session_token })
    ).body.data.find((s: { current: boolean }) => s.current).id;
    const deleted = await t.call('DELETE', `/v1/me/sessions/${otherId}`, { token: u.token });
    expect(deleted.status).toBe(204);
  });

  it('an API key needs no CSRF header, even with a session cookie riding along', async () => {
    const u = await t.signup();
    const key = await t.apiKey(u.token, ['admin']);
    const res = await t.call('POST', '/v1/api-keys', {
      token: key.key,
      headers: { cookie: cookieHeader(u) },
      body: { name: 'made by a key' },
    });
    expect(res.status).toBe(201);
    const xApiKey = await t.call('POST', '/v1/api-keys', {
      headers: { 'x-api-key': key.key },
      body: { name: 'made by x-api-key' },
    });
    expect(xApiKey.status).toBe(201);
  });
});

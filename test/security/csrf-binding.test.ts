import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../../src/core/clock.ts';
import { type CallResult, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';

// Issue 9, finding 3: the CSRF check compared the X-CSRF-Token header with the
// paddock_csrf cookie, so anyone able to plant a cookie (a sibling subdomain,
// an http:// page of the same host) chose both halves. The token is now derived
// from the session and checked against it.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const PASSWORD = 'correct horse battery';

/**
 * A write as a browser sends it: the victim's session cookie, a CSRF cookie
 * and an X-CSRF-Token header, each of which an attacker may have chosen.
 */
function cookieWrite(
  sessionToken: string,
  method: string,
  url: string,
  options: { csrfCookie?: string; csrfHeader?: string; body?: unknown },
): Promise<CallResult> {
  const cookie = [`paddock_session=${sessionToken}`];
  if (options.csrfCookie !== undefined) cookie.push(`paddock_csrf=${options.csrfCookie}`);
  const headers: Record<string, string> = { cookie: cookie.join('; ') };
  if (options.csrfHeader !== undefined) headers['x-csrf-token'] = options.csrfHeader;
  return t.call(method, url, { headers, ...(options.body !== undefined ? { body: options.body } : {}) });
}

/** The double-submit an attacker controls: the same value in the cookie and the header. */
const planted = (value: string) => ({ csrfCookie: value, csrfHeader: value });

function expectCsrfFailed(res: CallResult): void {
  expect(res.status, JSON.stringify(res.body)).toBe(403);
  expect(res.body.error.code).toBe('csrf_failed');
}

async function teamNames(u: SignedUpUser): Promise<string[]> {
  const res = await t.call('GET', '/v1/teams', { token: u.token });
  expect(res.status).toBe(200);
  return res.body.data.map((team: { name: string }) => team.name);
}

async function login(email: string): Promise<{ token: string; csrf: string }> {
  const res = await t.call('POST', '/v1/auth/login', { body: { email, password: PASSWORD } });
  expect(res.status).toBe(200);
  return { token: res.body.session_token, csrf: res.body.csrf_token };
}

describe('the CSRF token is bound to the session', () => {
  it('a cookie and header both set to a value of the attacker’s choosing are refused, and nothing is made', async () => {
    const victim = await t.signup();
    const before = await teamNames(victim);
    for (const value of ['attacker', `csrf_${'A'.repeat(43)}`]) {
      expectCsrfFailed(
        await cookieWrite(victim.token, 'POST', '/v1/teams', { ...planted(value), body: { name: 'Forged' } }),
      );
    }
    expect(await teamNames(victim)).toEqual(before);
  });

  it('a real token of another session, even the attacker’s own or the same user’s other one, is refused', async () => {
    const victim = await t.signup({ name: 'Victim' });
    const attacker = await t.signup();
    const second = await login(victim.user.email);
    expect(second.csrf).not.toBe(victim.csrf);
    expect(attacker.csrf).not.toBe(victim.csrf);

    for (const stolen of [attacker.csrf, second.csrf]) {
      expectCsrfFailed(
        await cookieWrite(victim.token, 'PATCH', '/v1/me', { ...planted(stolen), body: { name: 'Forged' } }),
      );
    }
    expect((await t.call('GET', '/v1/me', { token: victim.token })).body.user.name).toBe('Victim');

    // Each session's own token works for it, and only for it, for as long as the session lasts.
    t.clock.advance(5 * HOUR_MS);
    const own = await cookieWrite(victim.token, 'PATCH', '/v1/me', {
      ...planted(victim.csrf),
      body: { name: 'Renamed' },
    });
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    const other = await cookieWrite(second.token, 'PATCH', '/v1/me', {
      ...planted(second.csrf),
      body: { name: 'Renamed again' },
    });
    expect(other.status, JSON.stringify(other.body)).toBe(200);
  });

  it('the header is what counts: the right token in the cookie with a wrong header fails, the header alone passes', async () => {
    const u = await t.signup();
    expectCsrfFailed(
      await cookieWrite(u.token, 'POST', '/v1/teams', {
        csrfCookie: u.csrf,
        csrfHeader: 'attacker',
        body: { name: 'Mismatch' },
      }),
    );
    const headerOnly = await cookieWrite(u.token, 'POST', '/v1/teams', {
      csrfHeader: u.csrf,
      body: { name: 'Header only' },
    });
    expect(headerOnly.status, JSON.stringify(headerOnly.body)).toBe(201);
    expect(await teamNames(u)).not.toContain('Mismatch');
  });

  it('switch-team rotates it with the session token: the old one no longer passes, the new one does', async () => {
    const u = await t.signup();
    const team = await t.call('POST', '/v1/teams', { token: u.token, body: { name: 'Other' } });
    const switched = await cookieWrite(u.token, 'POST', '/v1/auth/switch-team', {
      ...planted(u.csrf),
      body: { team_id: team.body.id },
    });
    expect(switched.status, JSON.stringify(switched.body)).toBe(200);
    const next = { token: switched.body.session_token as string, csrf: switched.body.csrf_token as string };
    expect(next.csrf).not.toBe(u.csrf);
    expect(switched.cookies.find((c) => c.name === 'paddock_csrf')?.value).toBe(next.csrf);

    expectCsrfFailed(
      await cookieWrite(next.token, 'PATCH', '/v1/me', { ...planted(u.csrf), body: { name: 'Old token' } }),
    );
    const ok = await cookieWrite(next.token, 'PATCH', '/v1/me', {
      ...planted(next.csrf),
      body: { name: 'New' },
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });

  it('logout ends it with the session; signing in again gives a new one and the old one fails there', async () => {
    const u = await t.signup();
    const out = await cookieWrite(u.token, 'POST', '/v1/auth/logout', planted(u.csrf));
    expect(out.status).toBe(204);
    const stale = await cookieWrite(u.token, 'POST', '/v1/teams', {
      ...planted(u.csrf),
      body: { name: 'Stale' },
    });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe('session_invalid');

    const again = await login(u.user.email);
    expect(again.csrf).not.toBe(u.csrf);
    expectCsrfFailed(
      await cookieWrite(again.token, 'POST', '/v1/teams', {
        ...planted(u.csrf),
        body: { name: 'Old token' },
      }),
    );
    const ok = await cookieWrite(again.token, 'POST', '/v1/teams', {
      ...planted(again.csrf),
      body: { name: 'Fresh' },
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(await teamNames({ ...u, token: again.token })).not.toContain('Old token');
  });
});

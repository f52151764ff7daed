import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS, MINUTE_MS, SECOND_MS } from '../../src/core/clock.ts';
import { type CallResult, createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { expectError } from '../support/errors.ts';

const PASSWORD = 'correct horse battery';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** The raw Set-Cookie lines of a response, by cookie name. */
function setCookies(res: CallResult): Record<string, string> {
  const raw = res.headers['set-cookie'];
  const lines = raw === undefined ? [] : Array.isArray(raw) ? raw : [String(raw)];
  const out: Record<string, string> = {};
  for (const line of lines) out[line.slice(0, line.indexOf('='))] = line;
  return out;
}

/** The attributes of one Set-Cookie line, lower-cased names (`httponly`, `samesite`, …). */
function cookieAttributes(line: string): Record<string, string | true> {
  const [, ...parts] = line.split(';').map((p) => p.trim());
  const out: Record<string, string | true> = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq === -1) out[part.toLowerCase()] = true;
    else out[part.slice(0, eq).toLowerCase()] = part.slice(eq + 1);
  }
  return out;
}

function cookieValue(line: string): string {
  return line.slice(line.indexOf('=') + 1).split(';')[0]!;
}

async function login(email: string, password = PASSWORD, headers: Record<string, string> = {}) {
  return t.call('POST', '/v1/auth/login', { body: { email, password }, headers });
}

async function loginToken(email: string, password = PASSWORD, headers: Record<string, string> = {}) {
  const res = await login(email, password, headers);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.session_token as string;
}

async function me(token: string) {
  return t.call('GET', '/v1/me', { token });
}

async function sessions(token: string) {
  const res = await t.call('GET', '/v1/me/sessions', { token });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data as Array<{
    id: string;
    team_id: string | null;
    user_agent: string | null;
    last_seen_at: string;
    expires_at: string;
    current: boolean;
  }>;
}

async function currentSessionId(token: string): Promise<string> {
  const current = (await sessions(token)).filter((s) => s.current);
  expect(current).toHaveLength(1);
  return current[0]!.id;
}

describe('POST /v1/auth/signup', () => {
  it('answers 201 with the user, the personal team, the role and a session', async () => {
    const email = uniqueEmail('shape');
    const res = await t.call('POST', '/v1/auth/signup', {
      body: { email, name: 'Ada Lovelace', password: PASSWORD },
    });
    expect(res.status).toBe(201);
    const b = res.body;
    expect(Object.keys(b).sort()).toEqual([
      'csrf_token',
      'expires_at',
      'role',
      'session_token',
      'team',
      'user',
    ]);
    expect(b.user).toEqual({
      id: expect.stringMatching(/^usr_[0-9A-Z]{26}$/),
      email,
      name: 'Ada Lovelace',
      is_admin: expect.any(Boolean),
      created_at: t.clock.now().toISOString(),
    });
    expect(b.team).toMatchObject({
      id: expect.stringMatching(/^team_/),
      name: "Ada Lovelace's team",
      slug: expect.any(String),
      role: 'owner',
    });
    expect(b.role).toBe('owner');
    expect(b.session_token).toMatch(/^pds_[0-9A-Za-z]{43}$/);
    expect(b.csrf_token).toMatch(/^csrf_[0-9A-Za-z]{43}$/);
    expect(b.expires_at).toBe(new Date(t.clock.now().getTime() + 24 * HOUR_MS).toISOString());
    // Nothing about the password comes back, in any form.
    expect(JSON.stringify(b)).not.toMatch(/password|scrypt|hash/i);
    expect(JSON.stringify(b)).not.toContain(PASSWORD);
  });

  it('makes the first user of an empty server a platform admin, and nobody after', async () => {
    const fresh = await createTestApp();
    try {
      const signup = (email: string) =>
        fresh.call('POST', '/v1/auth/signup', { body: { email, name: 'N', password: PASSWORD } });
      const first = await signup(uniqueEmail('first'));
      const second = await signup(uniqueEmail('second'));
      const third = await signup(uniqueEmail('third'));
      expect([first.status, second.status, third.status]).toEqual([201, 201, 201]);
      expect(first.body.user.is_admin).toBe(true);
      expect(second.body.user.is_admin).toBe(false);
      expect(third.body.user.is_admin).toBe(false);
      // And it stays so in /v1/me.
      const meFirst = await fresh.call('GET', '/v1/me', { token: first.body.session_token });
      const meSecond = await fresh.call('GET', '/v1/me', { token: second.body.session_token });
      expect(meFirst.body.user.is_admin).toBe(true);
      expect(meSecond.body.user.is_admin).toBe(false);
    } finally {
      await fresh.close();
    }
  });

  it('gives every new account a personal team of its own, as owner and only member', async () => {
    const a = await t.signup({ name: 'Alice' });
    const b = await t.signup({ name: 'Bob' });
    expect(a.team.id).not.toBe(b.team.id);
    for (const u of [a, b]) {
      const teams = await t.call('GET', '/v1/teams', { token: u.token });
      expect(teams.status).toBe(200);
      expect(teams.body.data).toEqual([expect.objectContaining({ id: u.team.id, role: 'owner' })]);
      const members = await t.call('GET', `/v1/teams/${u.team.id}/members`, { token: u.token });
      expect(members.body.data).toEqual([
        expect.objectContaining({ user_id: u.user.id, email: u.user.email, role: 'owner' }),
      ]);
      const whoami = await me(u.token);
      expect(whoami.body.team.id).toBe(u.team.id);
      expect(whoami.body.role).toBe('owner');
    }
  });

  it('stores the email in lower case and refuses the same address in any case with 409 email_taken', async () => {
    const local = uniqueEmail('MiXeD').replace('@example.com', '');
    const res = await t.call('POST', '/v1/auth/signup', {
      body: { email: `${local}@Example.COM`, name: 'Mixed', password: PASSWORD },
    });
    expect(res.status).toBe(201);
    const stored = `${local.toLowerCase()}@example.com`;
    expect(res.body.user.email).toBe(stored);

    for (const email of [stored, stored.toUpperCase(), `${local}@EXAMPLE.com`]) {
      const again = await t.call('POST', '/v1/auth/signup', {
        body: { email, name: 'Copy', password: 'another password' },
      });
      expectError(again, 409, 'email_taken');
    }
    // The original account is untouched: its password still logs in, the intruder's does not.
    expect((await login(stored.toUpperCase())).status).toBe(200);
    expectError(await login(stored, 'another password'), 401, 'invalid_credentials');
  });

  it('refuses a short password, a bad email and a blank name without creating anything', async () => {
    const email = uniqueEmail('bad');
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ email, name: 'N', password: 'short' }, 'password'],
      [{ email: 'not-an-email', name: 'N', password: PASSWORD }, 'email'],
      [{ email, name: '   ', password: PASSWORD }, 'name'],
      [{ email, password: PASSWORD }, 'name'],
    ];
    for (const [body, field] of cases) {
      const res = await t.call('POST', '/v1/auth/signup', { body });
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toContain(field);
    }
    expectError(await login(email), 401, 'invalid_credentials');
  });

  describe('PADDOCK_SIGNUP=invite', () => {
    let inv: TestApp;
    beforeAll(async () => {
      inv = await createTestApp({ env: { PADDOCK_SIGNUP: 'invite' } });
    });
    afterAll(() => inv.close());

    const signup = (body: Record<string, unknown>) =>
      inv.call('POST', '/v1/auth/signup', { body: { name: 'Someone', password: PASSWORD, ...body } });

    it('lets the first user in, closes the door to the next, and opens it for a valid invitation', async () => {
      expect(inv.config.signup).toBe('invite');
      const first = await signup({ email: uniqueEmail('founder') });
      expect(first.status).toBe(201);
      expect(first.body.user.is_admin).toBe(true);
      const founder = first.body.session_token as string;

      const stranger = uniqueEmail('stranger');
      const closed = await signup({ email: stranger });
      expectError(closed, 403, 'signup_closed');
      // No account was made: the email cannot log in and is still free for an invitation.
      expect(
        (await inv.call('POST', '/v1/auth/login', { body: { email: stranger, password: PASSWORD } })).status,
      ).toBe(401);

      const invited = uniqueEmail('invitee');
      const invitation = await inv.call('POST', '/v1/invitations', {
        token: founder,
        body: { email: invited, role: 'member' },
      });
      expect(invitation.status).toBe(201);
      const token = invitation.body.token as string;

      // The token is for one address only, and a made-up token opens nothing.
      expectError(
        await signup({ email: stranger, invitation_token: token }),
        403,
        'invitation_email_mismatch',
      );
      const bogus = await signup({ email: invited, invitation_token: 'pdi_notarealtoken' });
      expect(bogus.status).toBe(404);

      // The invitation's email matches whatever its case.
      const joined = await signup({ email: invited.toUpperCase(), invitation_token: token });
      expect(joined.status, JSON.stringify(joined.body)).toBe(201);
      expect(joined.body.user.email).toBe(invited);
      expect(joined.body.user.is_admin).toBe(false);
      expect(joined.body.team.id).toBe(first.body.team.id);
      expect(joined.body.role).toBe('member');
      // They still get a personal team, as owner, beside the one they were invited to.
      const teams = await inv.call('GET', '/v1/teams', { token: joined.body.session_token });
      expect(teams.body.data).toHaveLength(2);
      expect(teams.body.data).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ id: first.body.team.id, role: 'member' }),
          expect.objectContaining({ role: 'owner' }),
        ]),
      );

      // The invitation is used up: it does not let a second account in.
      const reuse = await signup({ email: invited, invitation_token: token });
      expectError(reuse, 409, 'invitation_accepted');
      // And the door stays closed for everyone else.
      expectError(await signup({ email: uniqueEmail('later') }), 403, 'signup_closed');
    });
  });

  it('open mode (the test default) lets anyone sign up without an invitation', async () => {
    expect(t.config.signup).toBe('open');
    for (let i = 0; i < 3; i++) {
      const res = await t.call('POST', '/v1/auth/signup', {
        body: { email: uniqueEmail('open'), name: 'Anyone', password: PASSWORD },
      });
      expect(res.status).toBe(201);
      expect(res.body.user.is_admin).toBe(false);
    }
  });
});

describe('POST /v1/auth/login', () => {
  it('answers 200 with a new session in the personal team; the email is case-insensitive', async () => {
    const u = await t.signup({ name: 'Logger' });
    const res = await login(u.user.email.toUpperCase());
    expect(res.status).toBe(200);
    expect(res.body.user).toEqual(u.user);
    expect(res.body.team.id).toBe(u.team.id);
    expect(res.body.role).toBe('owner');
    expect(res.body.session_token).toMatch(/^pds_/);
    expect(res.body.session_token).not.toBe(u.token);
    expect(res.body.csrf_token).toMatch(/^csrf_/);
    expect(res.body.expires_at).toBe(new Date(t.clock.now().getTime() + 24 * HOUR_MS).toISOString());
    // Both sessions work side by side.
    expect((await me(res.body.session_token)).status).toBe(200);
    expect((await me(u.token)).status).toBe(200);
  });

  it('answers a wrong password and an unknown email alike: 401 invalid_credentials, same message', async () => {
    const u = await t.signup();
    const wrongPassword = await login(u.user.email, 'not the password');
    const unknownEmail = await login(uniqueEmail('nobody'), PASSWORD);
    expectError(wrongPassword, 401, 'invalid_credentials');
    expectError(unknownEmail, 401, 'invalid_credentials');
    expect(wrongPassword.body).toEqual(unknownEmail.body);
    expect(setCookies(wrongPassword)).toEqual({});
    expect(wrongPassword.body.error.message).not.toContain(u.user.email);
  });

  it('refuses a body without a password or with an empty one', async () => {
    const u = await t.signup();
    expectError(
      await t.call('POST', '/v1/auth/login', { body: { email: u.user.email } }),
      400,
      'validation_failed',
    );
    expectError(await login(u.user.email, ''), 400, 'validation_failed');
  });
});

describe('session cookies', () => {
  function checkCookies(res: CallResult, secure: boolean) {
    const cookies = setCookies(res);
    const session = cookies.paddock_session;
    const csrf = cookies.paddock_csrf;
    expect(session, 'paddock_session cookie').toBeDefined();
    expect(csrf, 'paddock_csrf cookie').toBeDefined();
    expect(cookieValue(session!)).toBe(res.body.session_token);
    expect(cookieValue(csrf!)).toBe(res.body.csrf_token);

    const s = cookieAttributes(session!);
    const c = cookieAttributes(csrf!);
    expect(s.httponly).toBe(true);
    // The dashboard's script reads the CSRF cookie to echo it back.
    expect(c.httponly).toBeUndefined();
    for (const attrs of [s, c]) {
      expect(attrs.path).toBe('/');
      expect(String(attrs.samesite).toLowerCase()).toBe('lax');
      expect(new Date(String(attrs.expires)).getTime()).toBe(new Date(res.body.expires_at).getTime());
      expect(attrs.secure).toBe(secure ? true : undefined);
    }
  }

  it('signup and login set an HttpOnly paddock_session and a readable paddock_csrf cookie', async () => {
    const email = uniqueEmail('cookies');
    const signup = await t.call('POST', '/v1/auth/signup', {
      body: { email, name: 'C', password: PASSWORD },
    });
    expect(signup.status).toBe(201);
    checkCookies(signup, false);
    const res = await login(email);
    expect(res.status).toBe(200);
    checkCookies(res, false);
  });

  it('marks the cookies Secure when the public URL is https', async () => {
    const secure = await createTestApp({ config: { publicUrl: 'https://paddock.example.com' } });
    try {
      const res = await secure.call('POST', '/v1/auth/signup', {
        body: { email: uniqueEmail('secure'), name: 'S', password: PASSWORD },
      });
      expect(res.status).toBe(201);
      const cookies = setCookies(res);
      expect(cookieAttributes(cookies.paddock_session!).secure).toBe(true);
      expect(cookieAttributes(cookies.paddock_csrf!).secure).toBe(true);
    } finally {
      await secure.close();
    }
  });

  it('the session token also works as a Bearer token and as the cookie', async () => {
    const u = await t.signup();
    const bearer = await t.call('GET', '/v1/me', { headers: { authorization: `Bearer ${u.token}` } });
    expect(bearer.status).toBe(200);
    expect(bearer.body.user.id).toBe(u.user.id);
    const cookie = await t.call('GET', '/v1/me', { headers: { cookie: `paddock_session=${u.token}` } });
    expect(cookie.status).toBe(200);
    expect(cookie.body.user.id).toBe(u.user.id);
  });

  it('a made-up session token is 401 session_invalid', async () => {
    const res = await me(`pds_${'A'.repeat(43)}`);
    expectError(res, 401, 'session_invalid');
  });
});

describe('session expiry', () => {
  it('stays alive while used within 6 h, then ends after 6 h idle with 401 session_expired', async () => {
    const u = await t.signup();
    const step = 5 * HOUR_MS + 59 * MINUTE_MS;
    t.clock.advance(step);
    expect((await me(u.token)).status).toBe(200);
    // Idle time counts from that last use, not from sign-in.
    t.clock.advance(step);
    expect((await me(u.token)).status).toBe(200);
    t.clock.advance(6 * HOUR_MS);
    expectError(await me(u.token), 401, 'session_expired');
    // It stays dead; a fresh login works.
    expectError(await me(u.token), 401, 'session_expired');
    expect((await me(await loginToken(u.user.email))).status).toBe(200);
  });

  it('ends at exactly 6 h of idleness', async () => {
    const u = await t.signup();
    t.clock.advance(6 * HOUR_MS - SECOND_MS);
    const other = await loginToken(u.user.email);
    t.clock.advance(SECOND_MS);
    expectError(await me(u.token), 401, 'session_expired');
    // Only the idle session ended: the one made a second ago lives on.
    expect((await me(other)).status).toBe(200);
  });

  it('writes last_seen_at at most once a minute, so idleness counts from that write', async () => {
    const u = await t.signup();
    const signedUpAt = t.clock.now().toISOString();
    t.clock.advance(30 * SECOND_MS);
    let mine = (await sessions(u.token)).find((s) => s.current)!;
    expect(mine.last_seen_at).toBe(signedUpAt);
    t.clock.advance(60 * SECOND_MS);
    mine = (await sessions(u.token)).find((s) => s.current)!;
    expect(mine.last_seen_at).toBe(t.clock.now().toISOString());
  });

  it('ends 24 h after sign-in even when used every hour', async () => {
    const u = await t.signup();
    const signedInAt = t.clock.now().getTime();
    for (let h = 1; h <= 23; h++) {
      t.clock.advance(HOUR_MS);
      const res = await me(u.token);
      expect(res.status, `after ${h} h`).toBe(200);
    }
    t.clock.advance(HOUR_MS - SECOND_MS);
    expect((await me(u.token)).status).toBe(200);
    t.clock.advance(SECOND_MS);
    expect(t.clock.now().getTime() - signedInAt).toBe(24 * HOUR_MS);
    expectError(await me(u.token), 401, 'session_expired');
  });

  it('an expired session leaves the list of live sessions', async () => {
    const u = await t.signup();
    const idle = await loginToken(u.user.email);
    const idleId = await currentSessionId(idle);
    for (let i = 0; i < 4; i++) {
      t.clock.advance(2 * HOUR_MS);
      expect((await me(u.token)).status).toBe(200);
    }
    const ids = (await sessions(u.token)).map((s) => s.id);
    expect(ids).not.toContain(idleId);
    expect(ids).toHaveLength(1);
  });
});

describe('logout', () => {
  it('POST /v1/auth/logout: 204, clears the cookies, and the token is dead', async () => {
    const u = await t.signup();
    const other = await loginToken(u.user.email);
    const res = await t.call('POST', '/v1/auth/logout', { token: u.token });
    expect(res.status).toBe(204);
    expect(res.body).toBe('');
    const cookies = setCookies(res);
    for (const name of ['paddock_session', 'paddock_csrf']) {
      expect(cookies[name], name).toBeDefined();
      expect(cookieValue(cookies[name]!)).toBe('');
      const expires = cookieAttributes(cookies[name]!).expires;
      const maxAge = cookieAttributes(cookies[name]!)['max-age'];
      expect(maxAge === '0' || new Date(String(expires)).getTime() <= Date.now()).toBe(true);
    }
    expectError(await me(u.token), 401, 'session_invalid');
    expectError(await t.call('POST', '/v1/auth/logout', { token: u.token }), 401, 'session_invalid');
    // Only that session ended.
    expect((await me(other)).status).toBe(200);
  });

  it('POST /v1/auth/logout-all ends every session of the user and nobody else’s', async () => {
    const u = await t.signup();
    const second = await loginToken(u.user.email);
    const third = await loginToken(u.user.email);
    const bystander = await t.signup();
    const res = await t.call('POST', '/v1/auth/logout-all', { token: second });
    expect(res.status).toBe(204);
    for (const token of [u.token, second, third]) expectError(await me(token), 401, 'session_invalid');
    expect((await me(bystander.token)).status).toBe(200);
    // The account itself is fine: logging in again works.
    expect((await me(await loginToken(u.user.email))).status).toBe(200);
  });
});

describe('GET /v1/me/sessions and DELETE /v1/me/sessions/{id}', () => {
  it("lists the user's live sessions, newest first, with current: true on the caller's", async () => {
    const u = await t.signup();
    const b = await loginToken(u.user.email, PASSWORD, { 'user-agent': 'paddock-cli/1.0' });
    const c = await loginToken(u.user.email);
    const stranger = await t.signup();

    const fromB = await sessions(b);
    expect(fromB).toHaveLength(3);
    expect(fromB.filter((s) => s.current)).toHaveLength(1);
    const ids = fromB.map((s) => s.id);
    expect([...ids].sort().reverse()).toEqual(ids);
    for (const s of fromB) {
      expect(s.id).toMatch(/^ses_/);
      expect(s.team_id).toBe(u.team.id);
      expect(JSON.stringify(s)).not.toMatch(/pds_|token/);
    }
    const current = fromB.find((s) => s.current)!;
    expect(current.user_agent).toBe('paddock-cli/1.0');

    // Each caller sees its own session as current.
    const currentIds = await Promise.all([u.token, b, c].map((tok) => currentSessionId(tok)));
    expect(new Set(currentIds).size).toBe(3);
    expect(new Set(currentIds)).toEqual(new Set(ids));
    // Another user sees only their own.
    const theirs = await sessions(stranger.token);
    expect(theirs).toHaveLength(1);
    expect(ids).not.toContain(theirs[0]!.id);
  });

  it('pages with limit and next_cursor, visiting each session once', async () => {
    const u = await t.signup();
    for (let i = 0; i < 4; i++) await loginToken(u.user.email);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: Record<string, string> = { limit: '2', ...(cursor ? { cursor } : {}) };
      const res = await t.call('GET', '/v1/me/sessions', { token: u.token, query });
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.data.map((s: { id: string }) => s.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
  });

  it('DELETE ends another of your sessions: 204, its token dead, gone from the list; twice is 404', async () => {
    const u = await t.signup();
    const other = await loginToken(u.user.email);
    const otherId = await currentSessionId(other);
    const res = await t.call('DELETE', `/v1/me/sessions/${otherId}`, { token: u.token });
    expect(res.status).toBe(204);
    expectError(await me(other), 401, 'session_invalid');
    expect((await sessions(u.token)).map((s) => s.id)).not.toContain(otherId);
    expect((await me(u.token)).status).toBe(200);
    expectError(await t.call('DELETE', `/v1/me/sessions/${otherId}`, { token: u.token }), 404, 'not_found');
  });

  it("DELETE of another user's session is 404 and leaves it alive", async () => {
    const u = await t.signup();
    const victim = await t.signup();
    const victimId = await currentSessionId(victim.token);
    expectError(await t.call('DELETE', `/v1/me/sessions/${victimId}`, { token: u.token }), 404, 'not_found');
    expect((await me(victim.token)).status).toBe(200);
    expectError(
      await t.call('DELETE', '/v1/me/sessions/ses_01J00000000000000000000000', { token: u.token }),
      404,
      'not_found',
    );
  });
});

describe('POST /v1/auth/switch-team', () => {
  it('rotates the token: the old one is 401, the new one acts in the new team', async () => {
    const u = await t.signup();
    const created = await t.call('POST', '/v1/teams', { token: u.token, body: { name: 'Second' } });
    expect(created.status).toBe(201);
    const sessionId = await currentSessionId(u.token);

    const res = await t.call('POST', '/v1/auth/switch-team', {
      token: u.token,
      body: { team_id: created.body.id },
    });
    expect(res.status).toBe(200);
    expect(res.body.team).toMatchObject({ id: created.body.id, name: 'Second', role: 'owner' });
    expect(res.body.role).toBe('owner');
    const fresh = res.body.session_token as string;
    expect(fresh).toMatch(/^pds_/);
    expect(fresh).not.toBe(u.token);
    // The rotated token is also the new cookie.
    expect(cookieValue(setCookies(res).paddock_session!)).toBe(fresh);

    expectError(await me(u.token), 401, 'session_invalid');
    const whoami = await me(fresh);
    expect(whoami.status).toBe(200);
    expect(whoami.body.team.id).toBe(created.body.id);
    expect(whoami.body.role).toBe('owner');
    // Same session, not a new one, and it keeps its absolute end.
    const list = await sessions(fresh);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: sessionId, team_id: created.body.id, current: true });

    // And back again.
    const back = await t.call('POST', '/v1/auth/switch-team', { token: fresh, body: { team_id: u.team.id } });
    expect(back.status).toBe(200);
    expect((await me(back.body.session_token)).body.team.id).toBe(u.team.id);
    expect(back.body.expires_at).toBe(res.body.expires_at);
  });

  it('is 404 for a team you are not a member of, and the token keeps working', async () => {
    const u = await t.signup();
    const other = await t.signup();
    for (const teamId of [other.team.id, 'team_01J00000000000000000000000']) {
      const res = await t.call('POST', '/v1/auth/switch-team', { token: u.token, body: { team_id: teamId } });
      expectError(res, 404, 'not_found');
    }
    const whoami = await me(u.token);
    expect(whoami.status).toBe(200);
    expect(whoami.body.team.id).toBe(u.team.id);
  });
});

describe('PATCH /v1/me', () => {
  it('changes the name (trimmed), and /v1/me shows it', async () => {
    const u = await t.signup({ name: 'Before' });
    const res = await t.call('PATCH', '/v1/me', { token: u.token, body: { name: '  After  ' } });
    expect(res.status).toBe(200);
    expect(res.body.user.name).toBe('After');
    expect(res.body.user.email).toBe(u.user.email);
    expect((await me(u.token)).body.user.name).toBe('After');
    expectError(
      await t.call('PATCH', '/v1/me', { token: u.token, body: { name: '   ' } }),
      400,
      'validation_failed',
    );
    expect((await me(u.token)).body.user.name).toBe('After');
  });

  it('refuses a password change without the right current_password (401), changing nothing', async () => {
    const u = await t.signup();
    const other = await loginToken(u.user.email);
    const attempts = [
      { password: 'a brand new password', current_password: 'not it at all' },
      { password: 'a brand new password' },
      { password: 'a brand new password', current_password: '' },
      { name: 'Sneaky', password: 'a brand new password', current_password: 'wrong' },
    ];
    for (const body of attempts) {
      expectError(await t.call('PATCH', '/v1/me', { token: u.token, body }), 401, 'invalid_credentials');
    }
    // Nothing changed: not the name, not the password, no session ended.
    expect((await me(u.token)).body.user.name).toBe(u.user.name);
    expect((await me(other)).status).toBe(200);
    expect((await login(u.user.email)).status).toBe(200);
    expectError(await login(u.user.email, 'a brand new password'), 401, 'invalid_credentials');
  });

  it('a password change ends the other sessions, keeps this one, and the new password logs in', async () => {
    const u = await t.signup();
    const other = await loginToken(u.user.email);
    const third = await loginToken(u.user.email);
    const bystander = await t.signup();
    const res = await t.call('PATCH', '/v1/me', {
      token: u.token,
      body: { password: 'a brand new password', current_password: PASSWORD },
    });
    expect(res.status).toBe(200);
    expect(JSON.stringify(res.body)).not.toContain('a brand new password');

    expect((await me(u.token)).status).toBe(200);
    expectError(await me(other), 401, 'session_invalid');
    expectError(await me(third), 401, 'session_invalid');
    expect((await me(bystander.token)).status).toBe(200);
    expect(await sessions(u.token)).toHaveLength(1);

    expectError(await login(u.user.email), 401, 'invalid_credentials');
    expect((await login(u.user.email, 'a brand new password')).status).toBe(200);
  });

  it('refuses a new password shorter than 8 characters', async () => {
    const u = await t.signup();
    const res = await t.call('PATCH', '/v1/me', {
      token: u.token,
      body: { password: 'short', current_password: PASSWORD },
    });
    expectError(res, 400, 'validation_failed');
    expect(res.body.error.details.fields.password).toBeDefined();
    expect((await login(u.user.email)).status).toBe(200);
  });
});

describe('session-only routes', () => {
  it('refuse API keys, even admin ones, with 403 session_required', async () => {
    const u = await t.signup();
    const key = await t.apiKey(u.token, ['admin']);
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/v1/me'],
      ['PATCH', '/v1/me', { name: 'Key' }],
      ['GET', '/v1/me/sessions'],
      ['POST', '/v1/teams', { name: 'From a key' }],
      ['POST', '/v1/auth/logout'],
      ['POST', '/v1/auth/logout-all'],
      ['POST', '/v1/auth/switch-team', { team_id: u.team.id }],
    ];
    for (const [method, url, body] of routes) {
      const ways: Array<Record<string, string>> = [
        { authorization: `Bearer ${key.key}` },
        { 'x-api-key': key.key },
      ];
      for (const headers of ways) {
        const res = await t.call(method, url, { headers, ...(body ? { body } : {}) });
        expect(res.status, `${method} ${url}`).toBe(403);
        expect(res.body.error.code).toBe('session_required');
      }
    }
    // Nothing happened on the key's behalf.
    expect((await me(u.token)).body.user.name).toBe(u.user.name);
    const teams = await t.call('GET', '/v1/teams', { token: u.token });
    expect(teams.body.data).toHaveLength(1);
  });
});

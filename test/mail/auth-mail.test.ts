import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MINUTE_MS } from '../../src/core/clock.ts';
import { createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { outboxRows, SmtpCatcher, tokenIn, waitUntil } from './smtp.ts';

const PASSWORD = 'correct horse battery';
const PUBLIC_URL = 'https://paddock.example.com';

let smtp: SmtpCatcher;
let t: TestApp;
beforeAll(async () => {
  smtp = new SmtpCatcher();
  await smtp.start();
  t = await createTestApp({
    env: {
      PADDOCK_SMTP_URL: smtp.url,
      PADDOCK_MAIL_FROM: 'Paddock <noreply@paddock.example.com>',
      PADDOCK_PUBLIC_URL: PUBLIC_URL,
      // The test's SMTP server is on loopback: the operator's allowance for it.
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_THROTTLE_MAIL_ACCOUNT: '3/15m',
    },
  });
});
afterAll(async () => {
  await t.close();
  await smtp.stop();
});

describe('invitation e-mails', () => {
  it('sends the invitee a working accept link on create and on resend', async () => {
    const owner = await t.signup();
    const email = uniqueEmail('invitee');
    const created = await t.call('POST', '/v1/invitations', { token: owner.token, body: { email } });
    expect(created.status).toBe(201);

    const first = await smtp.mailTo(email);
    expect(first.body).toContain(`Subject: You are invited to join ${owner.team.name} on Paddock`);
    expect(first.body).toContain(`${PUBLIC_URL}/accept-invitation?token=`);
    expect(first.user).toBe('paddock');
    expect(first.password).toBe('s3cret-pass');
    expect(tokenIn(first)).toBe(created.body.token);

    const resent = await t.call('POST', `/v1/invitations/${created.body.id}/resend`, { token: owner.token });
    expect(resent.status).toBe(200);
    const second = await waitUntil('the resent invitation', () =>
      smtp.received.filter((m) => m.to.includes(email)).at(1),
    );
    const token = tokenIn(second);
    expect(token).toBe(resent.body.token);

    const accepted = await t.call('POST', '/v1/invitations/accept', {
      body: { token, name: 'Invitee', password: PASSWORD },
    });
    expect(accepted.status).toBe(200);
    expect(accepted.body.team.id).toBe(owner.team.id);
    const rows = await outboxRows(t, email);
    expect(rows.map((r) => [r.kind, r.status, r.attempts])).toEqual([
      ['invitation', 'sent', 1],
      ['invitation', 'sent', 1],
    ]);
    // The bodies are sealed at rest: the token is not readable in the row.
    expect(JSON.stringify(rows)).not.toContain(token);
  });
});

describe('password reset', () => {
  it('resets the password once with the e-mailed token and ends every session', async () => {
    const user = await t.signup({ password: PASSWORD });
    const email = user.user.email;
    const other = await t.call('POST', '/v1/auth/login', { body: { email, password: PASSWORD } });
    expect(other.status).toBe(200);

    const asked = await t.call('POST', '/v1/auth/password-reset/start', { body: { email } });
    expect(asked.status).toBe(202);
    const token = tokenIn(await smtp.mailTo(email));
    expect(token).toMatch(/^pdpw_/);

    const done = await t.call('POST', '/v1/auth/password-reset/complete', {
      body: { token, password: 'a brand new passphrase' },
    });
    expect(done.status).toBe(204);
    for (const session of [user.token, other.body.session_token]) {
      expect((await t.call('GET', '/v1/me', { token: session })).status).toBe(401);
    }
    expect((await t.call('POST', '/v1/auth/login', { body: { email, password: PASSWORD } })).status).toBe(
      401,
    );
    const login = await t.call('POST', '/v1/auth/login', {
      body: { email, password: 'a brand new passphrase' },
    });
    expect(login.status).toBe(200);

    const again = await t.call('POST', '/v1/auth/password-reset/complete', {
      body: { token, password: 'yet another passphrase' },
    });
    expect(again.status).toBe(400);
    expect(again.body.error.code).toBe('token_used');
  });

  it('answers an unknown address exactly as a known one, and sends nothing', async () => {
    const known = await t.signup();
    const unknown = uniqueEmail('nobody');
    const a = await t.call('POST', '/v1/auth/password-reset/start', { body: { email: known.user.email } });
    const b = await t.call('POST', '/v1/auth/password-reset/start', { body: { email: unknown } });
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(b.body).toEqual(a.body);
    await smtp.mailTo(known.user.email);
    expect(await outboxRows(t, unknown)).toEqual([]);
  });

  it('refuses a new password that breaks the signup rules, and keeps the token usable', async () => {
    const user = await t.signup();
    await t.call('POST', '/v1/auth/password-reset/start', { body: { email: user.user.email } });
    const token = tokenIn(await smtp.mailTo(user.user.email));
    const short = await t.call('POST', '/v1/auth/password-reset/complete', {
      body: { token, password: 'short' },
    });
    expect(short.status).toBe(400);
    expect(short.body.error.code).toBe('validation_failed');
    const ok = await t.call('POST', '/v1/auth/password-reset/complete', {
      body: { token, password: PASSWORD },
    });
    expect(ok.status).toBe(204);
  });
});

describe('magic-link sign-in', () => {
  it('signs in once with the e-mailed link, as a password sign-in does', async () => {
    const user = await t.signup();
    const email = user.user.email;
    const asked = await t.call('POST', '/v1/auth/magic-link/start', { body: { email } });
    expect(asked.status).toBe(202);
    const mail = await smtp.mailTo(email);
    expect(mail.body).toContain(`${PUBLIC_URL}/magic-link?token=`);
    const token = tokenIn(mail);

    const signedIn = await t.call('POST', '/v1/auth/magic-link/verify', { body: { token } });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.user.id).toBe(user.user.id);
    expect(signedIn.body.team.id).toBe(user.team.id);
    expect(signedIn.body.csrf_token).toEqual(expect.any(String));
    expect(signedIn.cookies.map((c) => c.name)).toEqual(
      expect.arrayContaining(['paddock_session', 'paddock_csrf', 'paddock_device']),
    );
    const me = await t.call('GET', '/v1/me', { token: signedIn.body.session_token });
    expect(me.status).toBe(200);

    const reused = await t.call('POST', '/v1/auth/magic-link/verify', { body: { token } });
    expect(reused.status).toBe(400);
    expect(reused.body.error.code).toBe('token_used');
    const unknown = await t.call('POST', '/v1/auth/magic-link/verify', { body: { token: 'pdml_nothing' } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe('token_invalid');
  });

  it('expires a link after 15 minutes, and a newer link replaces the older', async () => {
    const user = await t.signup();
    const email = user.user.email;
    await t.call('POST', '/v1/auth/magic-link/start', { body: { email } });
    const older = tokenIn(await smtp.mailTo(email));
    await t.call('POST', '/v1/auth/magic-link/start', { body: { email } });
    const newer = tokenIn(
      await waitUntil('the second link', () => smtp.received.filter((m) => m.to.includes(email)).at(1)),
    );
    const replaced = await t.call('POST', '/v1/auth/magic-link/verify', { body: { token: older } });
    expect(replaced.body.error.code).toBe('token_used');
    t.clock.advance(15 * MINUTE_MS + 1000);
    const expired = await t.call('POST', '/v1/auth/magic-link/verify', { body: { token: newer } });
    expect(expired.status).toBe(400);
    expect(expired.body.error.code).toBe('token_expired');
  });

  it('answers an unknown address as a known one and throttles per address', async () => {
    const known = await t.signup();
    const unknown = uniqueEmail('stranger');
    const a = await t.call('POST', '/v1/auth/magic-link/start', { body: { email: known.user.email } });
    const b = await t.call('POST', '/v1/auth/magic-link/start', { body: { email: unknown } });
    expect(b.status).toBe(a.status);
    expect(b.body).toEqual(a.body);
    expect(await outboxRows(t, unknown)).toEqual([]);
    // 3 per 15 minutes per e-mail address in this app, known or not.
    for (let i = 0; i < 2; i++) {
      expect((await t.call('POST', '/v1/auth/magic-link/start', { body: { email: unknown } })).status).toBe(
        202,
      );
    }
    const limited = await t.call('POST', '/v1/auth/magic-link/start', {
      body: { email: unknown.toUpperCase() },
    });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { HOUR_MS, MINUTE_MS } from '../../src/core/clock.ts';
import { clientNetwork } from '../../src/modules/identity/throttles.ts';
import { type CallResult, createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';
import { createAgent, createPolicy, createProviderKey } from '../support/factories.ts';
import { startMockLlm } from '../support/mock-llm.ts';

// Issue 9, finding 8: sign-in, signup and invitation tokens could be guessed
// without limit. These tests run on the default limits (docs/operations.md):
// failed sign-ins 30 per address and 10 per e-mail in 15 minutes, signups 10
// per address an hour, failed invitation lookups 20 per address and 10
// attempts per token in 15 minutes. Each test uses addresses of its own.

const PASSWORD = 'correct horse battery';
const WRONG = 'not the password';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ realThrottles: true });
});
afterAll(() => t.close());

/** Checks the 429 shape and returns its Retry-After in seconds. */
function expectRateLimited(res: CallResult, limit: string): number {
  expect(res.status, JSON.stringify(res.body)).toBe(429);
  expect(res.body.error.code).toBe('rate_limited');
  expect(res.body.error.details.limit).toBe(limit);
  const retryAfter = Number(res.headers['retry-after']);
  expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true);
  expect(res.body.error.details.retry_after_sec).toBe(retryAfter);
  expect(res.body.error.message).toContain(`retry in ${retryAfter} s`);
  return retryAfter;
}

function login(app: TestApp, email: string, password: string, remoteAddress: string, cookie?: string) {
  return app.call('POST', '/v1/auth/login', {
    body: { email, password },
    remoteAddress,
    headers: cookie ? { cookie } : {},
  });
}

function signup(app: TestApp, email: string, remoteAddress: string) {
  return app.call('POST', '/v1/auth/signup', {
    body: { email, name: 'T', password: PASSWORD },
    remoteAddress,
  });
}

async function account(remoteAddress: string, app = t): Promise<string> {
  const email = uniqueEmail('throttled');
  const res = await signup(app, email, remoteAddress);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return email;
}

/** The `name=value` of a Set-Cookie line of `res`, and its attributes. */
function cookieOf(res: CallResult, name: string) {
  const raw = res.headers['set-cookie'];
  const lines = raw === undefined ? [] : Array.isArray(raw) ? raw : [String(raw)];
  const line = lines.find((l) => l.startsWith(`${name}=`));
  if (!line) return undefined;
  const [pair, ...attributes] = line.split(';').map((p) => p.trim());
  return {
    pair: pair!,
    value: pair!.slice(name.length + 1),
    attributes: attributes.map((a) => a.toLowerCase()),
  };
}

// Each failed sign-in costs a real scrypt (~50 ms on an idle core, far more on a busy machine).
describe('sign-in', { timeout: 120_000 }, () => {
  it('stops wrong passwords for one account coming from many addresses, known e-mail or not, alike', async () => {
    const email = await account('10.1.0.1');
    const unknown = uniqueEmail('nobody');
    for (let i = 0; i < 10; i++) {
      expect((await login(t, email, WRONG, `10.1.1.${i}`)).status).toBe(401);
      expect((await login(t, unknown, WRONG, `10.1.2.${i}`)).status).toBe(401);
    }
    // The right password from yet another address is refused too: the password is not even checked.
    const locked = await login(t, email, PASSWORD, '10.1.3.1');
    expectRateLimited(locked, 'login_account');
    const lockedUnknown = await login(t, unknown, PASSWORD, '10.1.3.2');
    // The same answer: a 429 does not tell whether an account exists.
    expect(lockedUnknown.body).toEqual(locked.body);
    expect(lockedUnknown.headers['retry-after']).toBe(locked.headers['retry-after']);
  });

  it('stops wrong passwords from one address across accounts; other addresses are not affected', async () => {
    const email = await account('10.2.0.1');
    for (let i = 0; i < 30; i++) {
      expect((await login(t, uniqueEmail('guess'), WRONG, '10.2.1.1')).status).toBe(401);
    }
    expectRateLimited(await login(t, email, PASSWORD, '10.2.1.1'), 'login_ip');
    expect((await login(t, email, PASSWORD, '10.2.1.2')).status).toBe(200);
  });

  it('lets calls through again once the window passes; attempts refused meanwhile do not extend it', async () => {
    const email = await account('10.3.0.1');
    for (let i = 0; i < 10; i++) expect((await login(t, email, WRONG, `10.3.1.${i}`)).status).toBe(401);
    const firstRetry = expectRateLimited(await login(t, email, PASSWORD, '10.3.2.1'), 'login_account');
    expect(firstRetry).toBeGreaterThan(14 * 60);
    expect(firstRetry).toBeLessThanOrEqual(15 * 60);
    t.clock.advance(5 * MINUTE_MS);
    for (let i = 0; i < 20; i++)
      expectRateLimited(await login(t, email, WRONG, `10.3.3.${i}`), 'login_account');
    const retry = expectRateLimited(await login(t, email, PASSWORD, '10.3.2.1'), 'login_account');
    expect(retry).toBe(firstRetry - 5 * 60);
    t.clock.advance((retry - 1) * 1000);
    expectRateLimited(await login(t, email, PASSWORD, '10.3.2.1'), 'login_account');
    t.clock.advance(1000);
    expect((await login(t, email, PASSWORD, '10.3.2.1')).status).toBe(200);
  });

  it('does not count successful sign-ins (many people behind one address), only failures', async () => {
    const email = await account('10.4.0.1');
    // More than both the address's 30 and the account's 10.
    for (let i = 0; i < 31; i++) expect((await login(t, email, PASSWORD, '10.4.0.1')).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await login(t, email, WRONG, '10.4.0.1')).status).toBe(401);
    expectRateLimited(await login(t, email, PASSWORD, '10.4.0.1'), 'login_account');
  });

  it('a browser that signed in before still gets in while the account is locked out, and has a limit of its own', async () => {
    const email = await account('10.5.0.1');
    const signedIn = await login(t, email, PASSWORD, '10.5.0.1');
    expect(signedIn.status).toBe(200);
    const device = cookieOf(signedIn, 'paddock_device')!;
    expect(device, 'paddock_device cookie').toBeDefined();
    expect(device.attributes).toEqual(
      expect.arrayContaining(['httponly', 'path=/v1/auth/login', 'samesite=strict']),
    );
    expect(JSON.stringify(signedIn.body)).not.toContain(device.value);

    // Someone else locks the account out.
    for (let i = 0; i < 10; i++) expect((await login(t, email, WRONG, `10.5.1.${i}`)).status).toBe(401);
    expectRateLimited(await login(t, email, PASSWORD, '10.5.2.1'), 'login_account');
    // The owner's browser is not locked out…
    expect((await login(t, email, PASSWORD, '10.5.0.1', device.pair)).status).toBe(200);
    // …but a made-up cookie, or one from another account's sign-in, is no way around the lockout.
    const [id] = device.value.split('.');
    expectRateLimited(
      await login(t, email, PASSWORD, '10.5.2.2', `paddock_device=${id}.${'0'.repeat(64)}`),
      'login_account',
    );
    const other = await account('10.5.0.2');
    const otherDevice = cookieOf(await login(t, other, PASSWORD, '10.5.0.2'), 'paddock_device')!;
    expectRateLimited(await login(t, email, PASSWORD, '10.5.0.2', otherDevice.pair), 'login_account');
    // Wrong passwords from the trusted browser count against its own limit.
    for (let i = 0; i < 10; i++) {
      expect((await login(t, email, WRONG, `10.5.3.${i}`, device.pair)).status).toBe(401);
    }
    expectRateLimited(await login(t, email, PASSWORD, '10.5.0.1', device.pair), 'login_device');
  });
});

describe('password change', { timeout: 120_000 }, () => {
  it('counts wrong current passwords with the account’s failed sign-ins', async () => {
    const email = await account('10.14.0.1');
    const session = (await login(t, email, PASSWORD, '10.14.0.1')).body.session_token;
    const change = (current: string) =>
      t.call('PATCH', '/v1/me', {
        token: session,
        body: { password: 'a brand new password', current_password: current },
        remoteAddress: '10.14.0.1',
      });
    for (let i = 0; i < 10; i++) expect((await change(WRONG)).status).toBe(401);
    expectRateLimited(await change(PASSWORD), 'login_account');
    expectRateLimited(await login(t, email, PASSWORD, '10.14.1.1'), 'login_account');
  });
});

// Which address a client has is the same for every throttle; invitation lookups are the cheapest to count with.
describe('client addresses', () => {
  let guesses = 0;
  // A new made-up token each time, so only the per-address limit is in play.
  const lookup = (remoteAddress: string, headers: Record<string, string> = {}, app = t) =>
    app.call('GET', '/v1/invitations/lookup', {
      query: { token: `pdi_guess${++guesses}` },
      remoteAddress,
      headers,
    });

  it('counts an IPv6 client per /64', async () => {
    for (let i = 1; i <= 20; i++) expect((await lookup(`2001:db8:6:1::${i.toString(16)}`)).status).toBe(404);
    expectRateLimited(await lookup('2001:db8:6:1:ffff:1:2:3'), 'invitation_ip');
    expect((await lookup('2001:db8:6:2::1')).status).toBe(404);
  });

  it('takes the socket’s address, or behind a trusted proxy the address the proxy appended', async () => {
    for (let i = 0; i < 20; i++) {
      expect((await lookup('10.7.0.1', { 'x-forwarded-for': `10.7.1.${i}` })).status).toBe(404);
    }
    expectRateLimited(await lookup('10.7.0.1', { 'x-forwarded-for': '10.7.2.1' }), 'invitation_ip');

    // Behind a proxy, the client is the address the proxy appended, not one the client wrote before it.
    for (const [setting, client, other] of [
      ['true', '10.7.3.1', '10.7.3.2'],
      ['10.7.9.0/24, 10.7.8.8', '10.7.4.1', '10.7.4.2'],
    ] as const) {
      const behindProxy = await createTestApp({
        realThrottles: true,
        shareWith: t,
        env: { PADDOCK_TRUST_PROXY: setting },
      });
      try {
        const from = (forwarded: string) => lookup('10.7.9.9', { 'x-forwarded-for': forwarded }, behindProxy);
        for (let i = 0; i < 20; i++) expect((await from(`10.7.5.${i}, ${client}`)).status).toBe(404);
        expectRateLimited(await from(`10.7.6.1, ${client}`), 'invitation_ip');
        expectRateLimited(await from(client), 'invitation_ip');
        expect((await from(other)).status).toBe(404);
      } finally {
        await behindProxy.close();
      }
    }
  });
});

describe('signup', () => {
  it('allows 10 signups an hour from one address, taken e-mails included, then 429 instead of 409', async () => {
    const taken = await account('10.8.0.1');
    for (let i = 0; i < 8; i++) expect((await signup(t, uniqueEmail('burst'), '10.8.0.1')).status).toBe(201);
    expect((await signup(t, taken, '10.8.0.1')).status).toBe(409);
    // Past the limit, a taken e-mail is refused like a free one: no more answers about who has an account.
    expectRateLimited(await signup(t, taken, '10.8.0.1'), 'signup_ip');
    const retry = expectRateLimited(await signup(t, uniqueEmail('burst'), '10.8.0.1'), 'signup_ip');
    expect(retry).toBeGreaterThan(59 * 60);
    expect((await signup(t, uniqueEmail('burst'), '10.8.0.2')).status).toBe(201);
    t.clock.advance(HOUR_MS);
    expect((await signup(t, uniqueEmail('burst'), '10.8.0.1')).status).toBe(201);
  });
});

describe('invitations', () => {
  async function invitationToken(): Promise<string> {
    const owner = await signup(t, uniqueEmail('owner'), '10.9.0.1');
    const res = await t.call('POST', '/v1/invitations', {
      token: owner.body.session_token,
      body: { email: uniqueEmail('invitee') },
    });
    expect(res.status).toBe(201);
    return res.body.token;
  }
  const lookup = (token: string, remoteAddress: string) =>
    t.call('GET', '/v1/invitations/lookup', { query: { token }, remoteAddress });
  const accept = (token: string, remoteAddress: string) =>
    t.call('POST', '/v1/invitations/accept', {
      body: { token, name: 'Guess', password: PASSWORD },
      remoteAddress,
    });

  it('stops token guesses from one address, by lookup or accept', async () => {
    const token = await invitationToken();
    for (let i = 0; i < 10; i++) {
      expect((await lookup(`pdi_guess${i}`, '10.10.0.1')).status).toBe(404);
      expect((await accept(`pdi_guess${i}`, '10.10.0.1')).status).toBe(404);
    }
    // The address is refused even with a real token, which still works from elsewhere.
    expectRateLimited(await lookup(token, '10.10.0.1'), 'invitation_ip');
    expectRateLimited(await accept(token, '10.10.0.1'), 'invitation_ip');
    expect((await lookup(token, '10.10.0.2')).status).toBe(200);
  });

  it('limits the attempts on one token, from any address', async () => {
    const token = await invitationToken();
    for (let i = 0; i < 10; i++) expect((await lookup(token, `10.11.${i}.1`)).status).toBe(200);
    expectRateLimited(await lookup(token, '10.11.99.1'), 'invitation_token');
    expectRateLimited(await accept(token, '10.11.99.2'), 'invitation_token');
  });

  // An admin key could make the server mail any address without end: invitation
  // e-mails (create and resend) are limited per recipient (5 an hour, from
  // every team) and per team (50 an hour).
  const invite = (token: string, email: string) =>
    t.call('POST', '/v1/invitations', { token, body: { email } });
  const resend = (token: string, id: string) => t.call('POST', `/v1/invitations/${id}/resend`, { token });

  it('limits the invitation e-mails to one address, across teams; refused and failed ones do not count', async () => {
    const owner = (await signup(t, uniqueEmail('owner'), '10.12.0.1')).body.session_token;
    const other = (await signup(t, uniqueEmail('owner'), '10.12.0.2')).body.session_token;
    const third = (await signup(t, uniqueEmail('owner'), '10.12.0.3')).body.session_token;
    const email = uniqueEmail('flooded');
    const first = await invite(owner, email);
    expect(first.status).toBe(201);
    // A second invitation while one is pending is a 409, and sends nothing: not counted.
    expect((await invite(owner, email)).status).toBe(409);
    for (let i = 0; i < 3; i++) expect((await resend(owner, first.body.id)).status).toBe(200);
    expect((await invite(other, email)).status).toBe(201);
    expectRateLimited(await resend(owner, first.body.id), 'invitation_mail_recipient');
    const retry = expectRateLimited(await invite(third, email), 'invitation_mail_recipient');
    expect(retry).toBeGreaterThan(59 * 60);
    // Other addresses are not affected; after the window the address can be mailed again.
    expect((await invite(owner, uniqueEmail('other'))).status).toBe(201);
    t.clock.advance(HOUR_MS);
    expect((await resend(owner, first.body.id)).status).toBe(200);
  });

  it('limits the invitation e-mails one team sends', async () => {
    const owner = (await signup(t, uniqueEmail('owner'), '10.13.0.1')).body.session_token;
    for (let i = 0; i < 50; i++) expect((await invite(owner, uniqueEmail('many'))).status).toBe(201);
    expectRateLimited(await invite(owner, uniqueEmail('many')), 'invitation_mail_team');
    const list = await t.call('GET', '/v1/invitations?limit=200', { token: owner });
    expect(list.body.data).toHaveLength(50);
    // Another team is not affected.
    const other = (await signup(t, uniqueEmail('owner'), '10.13.0.2')).body.session_token;
    expect((await invite(other, uniqueEmail('many'))).status).toBe(201);
  });
});

// Two more servers on the first one's database, both counting in it.
describe('several servers on one database, counting in it (the postgres store)', {
  timeout: 120_000,
}, () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    const env = {
      PADDOCK_THROTTLE_STORE: 'postgres',
      PADDOCK_GATEWAY_RATE_LIMIT_STORE: 'postgres',
      // The mock provider listens on loopback.
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    };
    a = await createTestApp({ realThrottles: true, env, shareWith: t });
    b = await createTestApp({ realThrottles: true, env, shareWith: t });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  it('hold the sign-in and signup limits together', async () => {
    const email = await account('10.12.0.1', a);
    for (let i = 0; i < 5; i++) {
      expect((await login(a, email, WRONG, `10.12.1.${i}`)).status).toBe(401);
      expect((await login(b, email, WRONG, `10.12.2.${i}`)).status).toBe(401);
    }
    expectRateLimited(await login(b, email, PASSWORD, '10.12.3.1'), 'login_account');
    expectRateLimited(await login(a, email, PASSWORD, '10.12.3.2'), 'login_account');

    for (let i = 0; i < 4; i++) expect((await signup(a, uniqueEmail('two'), '10.12.0.1')).status).toBe(201);
    for (let i = 0; i < 5; i++) expect((await signup(b, uniqueEmail('two'), '10.12.0.1')).status).toBe(201);
    expectRateLimited(await signup(a, uniqueEmail('two'), '10.12.0.1'), 'signup_ip');
    expectRateLimited(await signup(b, uniqueEmail('two'), '10.12.0.1'), 'signup_ip');
  });

  it('hold an agent’s requests per minute together', async () => {
    const mock = await startMockLlm();
    try {
      const owner = await signup(a, uniqueEmail('gateway'), '10.13.0.1');
      const token = owner.body.session_token;
      const key = await createProviderKey(a, token, {
        provider: 'openai',
        api_key: 'sk-openai-test',
        base_url: mock.url,
      });
      const policy = await createPolicy(a, token, { rate_limits: { max_requests_per_minute: 2 } });
      const agent = await createAgent(a, token, { provider_keys: { openai: key.id }, policy_id: policy.id });
      const call = (app: TestApp) =>
        app.call('POST', '/v1/chat/completions', {
          token: agent.api_key,
          body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }], max_tokens: 10 },
        });
      expect((await call(a)).status).toBe(200);
      expect((await call(b)).status).toBe(200);
      const refused = await call(b);
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('rate_limited');
      expect((await call(a)).status).toBe(429);
      t.clock.advance(MINUTE_MS);
      expect((await call(b)).status).toBe(200);
    } finally {
      await mock.close();
    }
  });
});

describe('settings', () => {
  it('reads <count>/<window> and names every bad throttle variable', () => {
    const config = loadConfig({ PADDOCK_THROTTLE_LOGIN_IP: '5/90s', PADDOCK_THROTTLE_SIGNUP_IP: '3/2h' });
    expect(config.throttles.loginIp).toEqual({ limit: 5, windowSec: 90 });
    expect(config.throttles.signupIp).toEqual({ limit: 3, windowSec: 7200 });
    expect(config.throttles.loginAccount).toEqual({ limit: 10, windowSec: 900 });
    expect(config.throttleStore).toBe('auto');
    expect(config.gatewayRateLimitStore).toBe('memory');
    let error: ConfigError | undefined;
    try {
      loadConfig({
        PADDOCK_THROTTLE_LOGIN_ACCOUNT: '0/15m',
        PADDOCK_THROTTLE_INVITATION_IP: 'lots',
        PADDOCK_THROTTLE_INVITATION_TOKEN: '10/25h',
        PADDOCK_THROTTLE_STORE: 'redis',
        PADDOCK_GATEWAY_RATE_LIMIT_STORE: 'auto',
      });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.problems.join('\n')).toMatch(/PADDOCK_THROTTLE_LOGIN_ACCOUNT="0\/15m"/);
    expect(error!.problems.join('\n')).toMatch(/PADDOCK_THROTTLE_INVITATION_IP="lots"/);
    expect(error!.problems.join('\n')).toMatch(/PADDOCK_THROTTLE_INVITATION_TOKEN="10\/25h"/);
    expect(error!.problems.join('\n')).toMatch(/PADDOCK_THROTTLE_STORE="redis"/);
    expect(error!.problems.join('\n')).toMatch(/PADDOCK_GATEWAY_RATE_LIMIT_STORE="auto"/);
  });

  it('reads which proxies to believe', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ PADDOCK_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ PADDOCK_TRUST_PROXY: '10.0.0.1, 10.1.0.0/16, fd00::/8' }).trustProxy).toEqual([
      '10.0.0.1',
      '10.1.0.0/16',
      'fd00::/8',
    ]);
    for (const bad of ['maybe', '10.0.0.1/33', '10.0.0.0/8/1', '2']) {
      expect(() => loadConfig({ PADDOCK_TRUST_PROXY: bad })).toThrow(/PADDOCK_TRUST_PROXY/);
    }
  });

  it('counts IPv6 addresses by their /64 and IPv4-mapped ones as IPv4', () => {
    expect(clientNetwork('2001:db8:6:1::1')).toBe('2001:db8:6:1::/64');
    expect(clientNetwork('2001:0db8:0006:0001:ffff:1:2:3')).toBe('2001:db8:6:1::/64');
    expect(clientNetwork('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientNetwork('::1')).toBe('0:0:0:0::/64');
    expect(clientNetwork('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientNetwork('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(clientNetwork('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(clientNetwork('192.0.2.1')).toBe('192.0.2.1');
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallResult, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, createPolicy, type Json } from '../support/factories.ts';

// Issue 9, finding 4: the token's prefix chose its authenticator from a plain
// object, so prefixes named after Object.prototype's members found one:
// `constructor_x` authenticated as nobody (200 with empty lists) and
// `valueOf_x` was a 500. Any token this server did not issue is 401 invalid_token.

let t: TestApp;
let u: SignedUpUser;
let key: string;
let agent: Json & { api_key: string };
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  key = (await t.apiKey(u.token, ['write'])).key;
  agent = await createAgent(t, u.token, { policy_id: (await createPolicy(t, u.token)).id });
});
afterAll(() => t.close());

const MADE_UP = [
  'constructor_x',
  'toString_x',
  'valueOf_x',
  '__proto___x',
  'hasOwnProperty_x',
  'isPrototypeOf_x',
  '__defineGetter___x',
  '_x',
  // No underscore at all: not "the prefix minus its last character" (pdsx used to reach the session lookup).
  'pdsx',
  'pdkx',
  'constructor',
];

const TRANSPORTS: Record<string, (token: string) => Record<string, string>> = {
  'Authorization: Bearer': (token) => ({ authorization: `Bearer ${token}` }),
  'X-API-Key': (token) => ({ 'x-api-key': token }),
  'the session cookie': (token) => ({ cookie: `paddock_session=${token}` }),
};

function expectInvalidToken(res: CallResult, what: string): void {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(401);
  expect(res.body.error.code, what).toBe('invalid_token');
  expect(res.body.error.message).toBe('the token is not one this server issued');
}

describe('made-up tokens', () => {
  for (const [transport, headersFor] of Object.entries(TRANSPORTS)) {
    it(`are 401 invalid_token on a team route, a session route and a write, via ${transport}; issued ones work`, async () => {
      const asSession = await t.call('GET', '/v1/agents', { headers: headersFor(u.token) });
      expect(asSession.status).toBe(200);
      expect(asSession.body.data.map((a: { id: string }) => a.id)).toEqual([agent.id]);
      if (transport !== 'the session cookie') {
        const asKey = await t.call('GET', '/v1/agents', { headers: headersFor(key) });
        expect(asKey.status).toBe(200);
        expect(asKey.body.data).toHaveLength(1);
        const asAgent = await t.call('GET', '/v1/me', { headers: headersFor(agent.api_key) });
        expect(asAgent.status, JSON.stringify(asAgent.body)).toBe(200);
        expect(asAgent.body).toMatchObject({ kind: 'agent', id: agent.id });
      }
      // The CSRF token is no credential either.
      for (const token of [...MADE_UP, u.csrf]) {
        const headers = headersFor(token);
        expectInvalidToken(await t.call('GET', '/v1/agents', { headers }), `GET /v1/agents ${token}`);
        expectInvalidToken(await t.call('GET', '/v1/me', { headers }), `GET /v1/me ${token}`);
        expectInvalidToken(
          await t.call('POST', '/v1/teams', { headers, body: { name: 'Nobody' } }),
          `POST /v1/teams ${token}`,
        );
      }
    });
  }

  it('sent explicitly to a public route are refused too; as a leftover cookie they do not block signing in', async () => {
    for (const token of MADE_UP) {
      const body = { email: u.user.email, password: 'correct horse battery' };
      expectInvalidToken(
        await t.call('POST', '/v1/auth/login', { token, body }),
        `POST /v1/auth/login bearer ${token}`,
      );
      const withCookie = await t.call('POST', '/v1/auth/login', {
        headers: { cookie: `paddock_session=${token}` },
        body,
      });
      expect(withCookie.status, `login with cookie ${token}`).toBe(200);
    }
  });
});

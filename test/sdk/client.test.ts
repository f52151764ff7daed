import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, PaddockError, unwrap } from '../../sdk/src/index.ts';
import { createTestApp, type TestApp, uniqueEmail } from '../support/app.ts';

// The SDK against a real listening server: typed calls, the key in the header, the API's
// error shape as a PaddockError, and a browser-style session (cookie + CSRF header).

let t: TestApp;
let baseUrl: string;
beforeAll(async () => {
  t = await createTestApp();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  baseUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(() => t.close());

describe('the SDK client', () => {
  it('signs up, makes a key and reads with it', async () => {
    const anonymous = createClient({ baseUrl });
    const email = uniqueEmail('sdk');
    const signup = await unwrap(
      anonymous.POST('/v1/auth/signup', {
        body: { email, name: 'SDK User', password: 'correct horse battery' },
      }),
    );
    expect(signup.user.email).toBe(email);

    const session = createClient({ baseUrl, token: signup.session_token });
    const key = await unwrap(session.POST('/v1/api-keys', { body: { name: 'sdk', scopes: ['read'] } }));
    expect(key.key).toMatch(/^pdk_/);

    const reader = createClient({ baseUrl: `${baseUrl}/`, token: key.key });
    const me = await unwrap(reader.GET('/v1/api-keys'));
    expect(me.data.map((k) => k.id)).toContain(key.id);
  });

  it("turns the API's error shape into a PaddockError with its status, code and message", async () => {
    const { key } = await t.apiKey((await t.signup()).token, ['read']);
    const client = createClient({ baseUrl, token: key });
    const err = await unwrap(
      client.GET('/v1/tasks/{id}', { params: { path: { id: 'task_01J00000000000000000000000' } } }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaddockError);
    expect(err).toMatchObject({ status: 404, code: 'not_found' });

    const refused = await unwrap(
      client.POST('/v1/api-keys', { body: { name: 'x', scopes: ['read'] } }),
    ).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 403 });
    expect((refused as PaddockError).message.length).toBeGreaterThan(0);
  });

  it('sends the CSRF header on writes when a browser session asks for it', async () => {
    const user = await t.signup();
    const cookie = `paddock_session=${user.token}`;
    const withCookie: typeof fetch = (input, init) => {
      const request = new Request(input, init);
      request.headers.set('cookie', cookie);
      return fetch(request);
    };
    const withoutCsrf = createClient({ baseUrl, fetch: withCookie });
    const refused = await unwrap(
      withoutCsrf.POST('/v1/api-keys', { body: { name: 'x', scopes: ['read'] } }),
    ).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 403, code: 'csrf_failed' });

    const browser = createClient({ baseUrl, fetch: withCookie, csrf: () => user.csrf });
    const key = await unwrap(browser.POST('/v1/api-keys', { body: { name: 'x', scopes: ['read'] } }));
    expect(key.key).toMatch(/^pdk_/);
  });
});

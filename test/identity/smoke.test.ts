import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('smoke', () => {
  it('signs up and reads /v1/me', async () => {
    const u = await t.signup();
    const me = await t.call('GET', '/v1/me', { token: u.token });
    expect(me.status).toBe(200);
    expect(me.body.user.email).toBe(u.user.email);
  });
});

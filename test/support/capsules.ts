import type { TestApp } from './app.ts';
import type { Json } from './factories.ts';

/** Waits (real time) until the capsule reaches `status` as `token` sees it, and returns it; fails fast on `error`. */
export async function waitForCapsule(
  t: TestApp,
  token: string,
  id: string,
  status: string,
  timeoutMs = 15_000,
): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    await t.services.capsules.settled();
    const res = await t.call('GET', `/v1/capsules/${id}`, { token });
    if (res.body.status === status) return res.body;
    if (res.body.status === 'error') throw new Error(`capsule ${id} failed: ${res.body.status_reason}`);
    if (Date.now() > until) throw new Error(`capsule ${id} is ${res.body.status}, not ${status}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

import { expect } from 'vitest';
import type { TestApp } from './app.ts';
import type { Json } from './factories.ts';

/**
 * Checks a list route pages newest first: `made` are ids created in order
 * (five or more, the only ones `token` sees at `url`); a page of two, then
 * the rest through the cursor, which ends as null. A cursor the server did
 * not issue is a 400.
 */
export async function expectNewestFirstPages(t: TestApp, token: string, url: string, made: string[]) {
  const ids = (res: { body: Json }) => res.body.data.map((x: Json) => x.id);
  const newest = [...made].reverse();
  const first = await t.call('GET', url, { token, query: { limit: '2' } });
  expect(ids(first)).toEqual(newest.slice(0, 2));
  const rest = await t.call('GET', url, { token, query: { limit: '200', cursor: first.body.next_cursor } });
  expect(ids(rest)).toEqual(newest.slice(2));
  expect(rest.body.next_cursor).toBeNull();
  expect((await t.call('GET', url, { token, query: { cursor: '%%%' } })).status).toBe(400);
}

import { like } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryRateLimitStore,
  type RateLimitStore,
  type RateWindow,
  slidingWindow,
} from '../../src/core/rate-limit.ts';
import type { Database } from '../../src/db/client.ts';
import { PostgresRateLimitStore } from '../../src/db/rate-limit-store.ts';
import { rateLimitBuckets } from '../../src/db/schema/index.ts';
import { freshDatabase } from '../support/db.ts';

// The contract both rate-limit stores keep: the memory store (one process) and
// the database store (several servers on one Postgres) must decide alike.

let database: Database;
beforeAll(async () => {
  database = await freshDatabase();
});
afterAll(async () => {
  await database.close();
});

const START_MS = Date.UTC(2026, 0, 5, 9, 0, 0);

interface Subject {
  store: RateLimitStore;
  advanceSec(sec: number): void;
}

const kinds: Array<[string, (nowMs: () => number) => RateLimitStore]> = [
  ['memory', (nowMs) => new MemoryRateLimitStore(nowMs)],
  ['postgres', (nowMs) => new PostgresRateLimitStore(database.db, nowMs)],
];

const MINUTE: RateWindow = slidingWindow(60);
const QUARTER_HOUR: RateWindow = slidingWindow(900);
const hitsOnly = (maxHits: number) => ({ maxHits, maxUnits: null });

describe.each(kinds)('the %s rate-limit store', (kind, make) => {
  let keys = 0;
  // Each test its own keys: the database store's rows outlive a test.
  const key = () => `contract-${kind}-${++keys}`;
  function subject(): Subject {
    let now = START_MS;
    return {
      store: make(() => now),
      advanceSec: (sec) => {
        now += sec * 1000;
      },
    };
  }

  it('admits up to the limit, counts nothing it refuses, and admits again once the oldest hit leaves', async () => {
    const { store, advanceSec } = subject();
    const k = key();
    expect(await store.hit(k, MINUTE, hitsOnly(2), 0)).toEqual({ ok: true });
    advanceSec(20);
    expect(await store.hit(k, MINUTE, hitsOnly(2), 0)).toEqual({ ok: true });
    for (let i = 0; i < 5; i++) {
      expect(await store.hit(k, MINUTE, hitsOnly(2), 0)).toEqual({
        ok: false,
        limit: 'hits',
        retryAfterSec: 40,
      });
    }
    advanceSec(39);
    expect((await store.hit(k, MINUTE, hitsOnly(2), 0)).ok).toBe(false);
    advanceSec(1);
    // The refused hits were not counted: one more fits as soon as the first leaves.
    expect(await store.hit(k, MINUTE, hitsOnly(2), 0)).toEqual({ ok: true });
    expect(await store.hit(k, MINUTE, hitsOnly(2), 0)).toMatchObject({ ok: false, retryAfterSec: 20 });
  });

  it('keeps keys apart', async () => {
    const { store } = subject();
    const [a, b] = [key(), key()];
    expect((await store.hit(a, MINUTE, hitsOnly(1), 0)).ok).toBe(true);
    expect((await store.hit(a, MINUTE, hitsOnly(1), 0)).ok).toBe(false);
    expect((await store.hit(b, MINUTE, hitsOnly(1), 0)).ok).toBe(true);
  });

  it('counts a long window in buckets of a sixtieth of it', async () => {
    const { store, advanceSec } = subject();
    const k = key();
    // 15 s buckets: a hit 7 s into one counts until its bucket is 900 s old.
    advanceSec(7);
    expect((await store.hit(k, QUARTER_HOUR, hitsOnly(1), 0)).ok).toBe(true);
    advanceSec(60);
    expect(await store.hit(k, QUARTER_HOUR, hitsOnly(1), 0)).toEqual({
      ok: false,
      limit: 'hits',
      retryAfterSec: 900 - 67,
    });
    advanceSec(900 - 67);
    expect((await store.hit(k, QUARTER_HOUR, hitsOnly(1), 0)).ok).toBe(true);
  });

  it('limits units, admits one oversized hit into an empty window, and takes corrections', async () => {
    const { store, advanceSec } = subject();
    const k = key();
    const limits = { maxHits: null, maxUnits: 1000 };
    expect((await store.hit(k, MINUTE, limits, 5000)).ok).toBe(true);
    expect(await store.hit(k, MINUTE, limits, 1)).toEqual({ ok: false, limit: 'units', retryAfterSec: 60 });
    // The oversized call used 600 units in the end.
    await store.adjust(k, MINUTE, 0, -4400);
    expect((await store.hit(k, MINUTE, limits, 400)).ok).toBe(true);
    expect((await store.hit(k, MINUTE, limits, 1)).ok).toBe(false);
    advanceSec(60);
    expect((await store.hit(k, MINUTE, limits, 1000)).ok).toBe(true);
  });

  it('refuses on whichever limit is reached, hits first', async () => {
    const { store } = subject();
    const k = key();
    const limits = { maxHits: 2, maxUnits: 100 };
    expect((await store.hit(k, MINUTE, limits, 60)).ok).toBe(true);
    expect(await store.hit(k, MINUTE, limits, 60)).toMatchObject({ ok: false, limit: 'units' });
    expect((await store.hit(k, MINUTE, limits, 40)).ok).toBe(true);
    expect(await store.hit(k, MINUTE, limits, 0)).toMatchObject({ ok: false, limit: 'hits' });
  });

  it('gives a hit back (a refund), never below zero', async () => {
    const { store } = subject();
    const k = key();
    expect((await store.hit(k, MINUTE, hitsOnly(1), 0)).ok).toBe(true);
    await store.adjust(k, MINUTE, -1, 0);
    await store.adjust(k, MINUTE, -1, 0);
    expect((await store.hit(k, MINUTE, hitsOnly(1), 0)).ok).toBe(true);
    expect((await store.hit(k, MINUTE, hitsOnly(1), 0)).ok).toBe(false);
  });

  it('never lets concurrent hits together pass the limit', async () => {
    const { store } = subject();
    const k = key();
    const decisions = await Promise.all(
      Array.from({ length: 40 }, () => Promise.resolve(store.hit(k, QUARTER_HOUR, hitsOnly(7), 0))),
    );
    expect(decisions.filter((d) => d.ok)).toHaveLength(7);
  });
});

describe('the memory store', () => {
  it('answers synchronously', () => {
    const store = new MemoryRateLimitStore(() => START_MS);
    expect(store.hit('a', MINUTE, hitsOnly(1), 0)).toEqual({ ok: true });
    expect(store.adjust('a', MINUTE, -1, 0)).toBeUndefined();
  });

  it('drops the keys whose window has emptied as new keys arrive', () => {
    let now = START_MS;
    const store = new MemoryRateLimitStore(() => now);
    for (let i = 0; i < 1024; i++) store.hit(`address-${i}`, MINUTE, hitsOnly(1), 0);
    expect(store.size).toBe(1024);
    now += 60_000;
    store.hit('one more', MINUTE, hitsOnly(1), 0);
    expect(store.size).toBe(1);
  });
});

describe('the database store', () => {
  it('sweeps the buckets that left their window', async () => {
    let now = START_MS + 3_600_000;
    const store = new PostgresRateLimitStore(database.db, () => now);
    await store.hit('sweep-a', MINUTE, hitsOnly(5), 0);
    now += 30_000;
    await store.hit('sweep-a', MINUTE, hitsOnly(5), 0);
    await store.hit('sweep-b', QUARTER_HOUR, hitsOnly(5), 0);
    const rows = async () =>
      (
        await database.db
          .select({ key: rateLimitBuckets.key })
          .from(rateLimitBuckets)
          .where(like(rateLimitBuckets.key, 'sweep-%'))
          .orderBy(rateLimitBuckets.key, rateLimitBuckets.bucket)
      ).map((r) => r.key);
    expect(await rows()).toEqual(['sweep-a', 'sweep-a', 'sweep-b']);
    now += 30_000;
    expect(await store.sweep()).toBeGreaterThanOrEqual(1);
    expect(await rows()).toEqual(['sweep-a', 'sweep-b']);
    expect(await store.hit('sweep-a', MINUTE, hitsOnly(1), 0)).toMatchObject({
      ok: false,
      retryAfterSec: 30,
    });
  });
});

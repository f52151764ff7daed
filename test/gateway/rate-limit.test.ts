import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../src/core/context.ts';
import { MemoryRateLimitStore, type RateLimitStore } from '../../src/core/rate-limit.ts';
import type { Database } from '../../src/db/client.ts';
import { PostgresRateLimitStore } from '../../src/db/rate-limit-store.ts';
import { RateLimiter } from '../../src/modules/gateway/rate-limit.ts';
import { freshDatabase } from '../support/db.ts';

let database: Database;
beforeAll(async () => {
  database = await freshDatabase();
});
afterAll(async () => {
  await database.close();
});

const stores: Array<[string, (nowMs: () => number) => RateLimitStore]> = [
  ['memory', (nowMs) => new MemoryRateLimitStore(nowMs)],
  ['postgres', (nowMs) => new PostgresRateLimitStore(database.db, nowMs)],
];

describe.each(stores)('RateLimiter on the %s store', (_name, makeStore) => {
  let keys = 0;
  // Each test its own keys: the database store's rows outlive a test.
  const key = (label: string) => `${label}-${_name}-${++keys}`;

  it('admits up to the requests-per-minute limit and says when to retry', async () => {
    let now = 1_000_000;
    const rl = new RateLimiter(
      makeStore(() => now),
      silentLog,
    );
    const [a, b] = [key('a'), key('b')];
    const limits = { maxRequestsPerMinute: 3, maxTokensPerMinute: null };
    expect((await rl.admit(a, limits, 10)).ok).toBe(true);
    now += 10_000;
    expect((await rl.admit(a, limits, 10)).ok).toBe(true);
    expect((await rl.admit(a, limits, 10)).ok).toBe(true);
    const refused = await rl.admit(a, limits, 10);
    expect(refused).toEqual({ ok: false, limit: 'requests', retryAfterSec: 50 });
    // Another key is counted apart.
    expect((await rl.admit(b, limits, 10)).ok).toBe(true);
    // Once the first request leaves the window, one more fits.
    now += 50_000;
    expect((await rl.admit(a, limits, 10)).ok).toBe(true);
    expect((await rl.admit(a, limits, 10)).ok).toBe(false);
  });

  it('limits tokens per minute and takes corrections from real usage', async () => {
    let now = 5_000_000;
    const rl = new RateLimiter(
      makeStore(() => now),
      silentLog,
    );
    const a = key('a');
    const limits = { maxRequestsPerMinute: null, maxTokensPerMinute: 1000 };
    expect((await rl.admit(a, limits, 600)).ok).toBe(true);
    expect(await rl.admit(a, limits, 600)).toMatchObject({ ok: false, limit: 'tokens' });
    // The first call used only 100 tokens in the end.
    await rl.adjustTokens(a, -500);
    expect((await rl.admit(a, limits, 600)).ok).toBe(true);
    now += 61_000;
    expect((await rl.admit(a, limits, 900)).ok).toBe(true);
  });

  it('admits a single request larger than the token limit when nothing else is in the window', async () => {
    const rl = new RateLimiter(
      makeStore(() => 0),
      silentLog,
    );
    expect((await rl.admit(key('a'), { maxRequestsPerMinute: null, maxTokensPerMinute: 100 }, 500)).ok).toBe(
      true,
    );
  });
});

describe('RateLimiter on the memory store', () => {
  it('answers synchronously, so an admitted proxy call takes no extra microtask', () => {
    const rl = new RateLimiter(new MemoryRateLimitStore(() => 0), silentLog);
    const limits = { maxRequestsPerMinute: 1, maxTokensPerMinute: null };
    expect(rl.admit('a', limits, 1)).toEqual({ ok: true });
    expect(rl.admit('a', limits, 1)).toEqual({ ok: false, limit: 'requests', retryAfterSec: 60 });
  });
});

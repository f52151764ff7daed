import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/modules/gateway/rate-limit.ts';

describe('RateLimiter', () => {
  it('admits up to the requests-per-minute limit and says when to retry', () => {
    let now = 1_000_000;
    const rl = new RateLimiter(() => now);
    const limits = { maxRequestsPerMinute: 3, maxTokensPerMinute: null };
    expect(rl.admit('a', limits, 10).ok).toBe(true);
    now += 10_000;
    expect(rl.admit('a', limits, 10).ok).toBe(true);
    expect(rl.admit('a', limits, 10).ok).toBe(true);
    const refused = rl.admit('a', limits, 10);
    expect(refused).toEqual({ ok: false, limit: 'requests', retryAfterSec: 50 });
    // Another key is counted apart.
    expect(rl.admit('b', limits, 10).ok).toBe(true);
    // Once the first request leaves the window, one more fits.
    now += 50_000;
    expect(rl.admit('a', limits, 10).ok).toBe(true);
    expect(rl.admit('a', limits, 10).ok).toBe(false);
  });

  it('limits tokens per minute and takes corrections from real usage', () => {
    let now = 5_000_000;
    const rl = new RateLimiter(() => now);
    const limits = { maxRequestsPerMinute: null, maxTokensPerMinute: 1000 };
    expect(rl.admit('a', limits, 600).ok).toBe(true);
    expect(rl.admit('a', limits, 600)).toMatchObject({ ok: false, limit: 'tokens' });
    // The first call used only 100 tokens in the end.
    rl.adjustTokens('a', -500);
    expect(rl.admit('a', limits, 600).ok).toBe(true);
    now += 61_000;
    expect(rl.admit('a', limits, 900).ok).toBe(true);
  });

  it('admits a single request larger than the token limit when nothing else is in the window', () => {
    const rl = new RateLimiter(() => 0);
    expect(rl.admit('a', { maxRequestsPerMinute: null, maxTokensPerMinute: 100 }, 500).ok).toBe(true);
  });
});

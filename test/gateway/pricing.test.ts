import { describe, expect, it } from 'vitest';
import { PriceTable } from '../../src/modules/gateway/pricing.ts';

const prices = new PriceTable();
const usage = (input: number, output: number, cacheRead = 0, cacheCreation = 0) => ({
  input,
  output,
  cacheRead,
  cacheCreation,
});

describe('the built-in price table', () => {
  it('prices each bucket per million tokens, as micro-dollars', () => {
    // claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
    expect(prices.costMicros('anthropic', 'claude-sonnet-4-5-20250929', usage(1e6, 0), null)).toBe(3_000_000);
    expect(prices.costMicros('anthropic', 'claude-sonnet-4-5', usage(1000, 200, 500, 40), null)).toBe(
      3000 + 3000 + 150 + 150,
    );
    // gpt-4o-mini is matched before the broader gpt-4o* entry.
    expect(prices.costMicros('openai', 'gpt-4o-mini', usage(1e6, 1e6), null)).toBe(150_000 + 600_000);
    expect(prices.costMicros('openai', 'gpt-4o-2024-08-06', usage(1e6, 0, 1e6), null)).toBe(
      2_500_000 + 1_250_000,
    );
  });

  it('rounds a call up to a whole micro-dollar, never down to zero', () => {
    expect(prices.costMicros('openai', 'gpt-5-nano', usage(3, 0), null)).toBe(1);
  });

  it('fails closed on an unknown model of a known provider, and frees unknown self-hosted models', () => {
    const unknown = prices.priceOf('openai', 'gpt-99-ultra', null);
    for (const known of ['gpt-4o', 'o1', 'gpt-5']) {
      const p = prices.priceOf('openai', known, null);
      expect(unknown.input).toBeGreaterThanOrEqual(p.input);
      expect(unknown.output).toBeGreaterThanOrEqual(p.output);
    }
    expect(prices.costMicros('openai_compatible', 'llama3.1:8b', usage(1e6, 1e6), null)).toBe(0);
    // A router's vendor/model name is priced by its model part.
    expect(prices.priceOf('openai_compatible', 'anthropic/claude-haiku-4-5', null)).toMatchObject({
      input: 1,
      output: 5,
    });
  });

  it('lets a key’s overrides win, exact name before globs; missing buckets cost plain input', () => {
    const overrides = {
      'llama*': { input: 0.2, output: 0.4 },
      'llama3.1:8b': { input: 0.1, output: 0.1, cache_read: 0.01 },
    };
    expect(prices.priceOf('openai_compatible', 'llama3.1:8b', overrides)).toEqual({
      input: 0.1,
      output: 0.1,
      cacheRead: 0.01,
      cacheWrite: 0.1,
    });
    expect(prices.costMicros('openai_compatible', 'llama3.3:70b', usage(1e6, 1e6), overrides)).toBe(600_000);
    expect(prices.costMicros('openai', 'gpt-4o', usage(1e6, 0), { 'gpt-4o': { input: 1, output: 1 } })).toBe(
      1_000_000,
    );
  });

  it('reserves the dearest input bucket and the whole output allowance', () => {
    // Sonnet: a cache write ($3.75) is dearer than input ($3).
    expect(prices.maxCostMicros('anthropic', 'claude-sonnet-4-5', 1000, 100, null)).toBe(3750 + 1500);
    const maxCost = prices.maxCostMicros('openai', 'gpt-4o', 1000, 100, null);
    const anyRealCost = prices.costMicros('openai', 'gpt-4o', usage(400, 100, 600), null);
    expect(maxCost).toBeGreaterThanOrEqual(anyRealCost);
  });
});

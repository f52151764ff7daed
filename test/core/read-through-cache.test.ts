import { describe, expect, it } from 'vitest';
import { ReadThroughCache } from '../../src/core/read-through-cache.ts';

function setup() {
  const clock = { ms: 1_000_000 };
  const cache = new ReadThroughCache<string>({
    ttlMs: 2000,
    refreshAheadMs: 500,
    max: 3,
    now: () => clock.ms,
  });
  const loads: Array<{ key: string; resolve: (v: string) => void; reject: (e: Error) => void }> = [];
  const loader = (key: string) => () =>
    new Promise<string>((resolve, reject) => {
      loads.push({ key, resolve, reject });
    });
  const settle = () => new Promise((r) => setImmediate(r));
  /** Caches `value` under k, then moves the clock into the entry's refresh window. */
  const intoRefreshWindow = async (value: string) => {
    const first = cache.get('k', loader('k'));
    loads.at(-1)!.resolve(value);
    await first;
    clock.ms += 1600;
  };
  return { clock, cache, loads, loader, settle, intoRefreshWindow };
}

describe('ReadThroughCache', () => {
  it('answers from a fresh entry without loading, and shares one load between concurrent misses', async () => {
    const { cache, loads, loader, clock } = setup();
    const a = cache.get('k', loader('k'));
    const b = cache.get('k', loader('k'));
    expect(loads).toHaveLength(1);
    loads[0]!.resolve('v1');
    expect(await a).toBe('v1');
    expect(await b).toBe('v1');
    clock.ms += 1499;
    expect(await cache.get('k', loader('k'))).toBe('v1');
    expect(loads).toHaveLength(1);
  });

  it('reloads in the background near the end of the entry, and never serves it past its time', async () => {
    const { cache, loads, loader, clock, settle, intoRefreshWindow } = setup();
    await intoRefreshWindow('v1');
    // In the refresh window: the old value at once, one reload started (and only one).
    expect(await cache.get('k', loader('k'))).toBe('v1');
    expect(await cache.get('k', loader('k'))).toBe('v1');
    expect(loads).toHaveLength(2);
    loads[1]!.resolve('v2');
    await settle();
    expect(await cache.get('k', loader('k'))).toBe('v2');
    // The reload's time counts from when it started: past ttl, a read waits for the database.
    clock.ms += 2000;
    const waited = cache.get('k', loader('k'));
    expect(loads).toHaveLength(3);
    let answered = false;
    void waited.then(() => {
      answered = true;
    });
    await settle();
    expect(answered).toBe(false);
    loads[2]!.resolve('v3');
    expect(await waited).toBe('v3');
  });

  it('keeps a failed load out: the background error leaves the entry to expire, then surfaces', async () => {
    const { cache, loads, loader, clock, settle, intoRefreshWindow } = setup();
    await intoRefreshWindow('v1');
    expect(await cache.get('k', loader('k'))).toBe('v1');
    loads[1]!.reject(new Error('database down'));
    await settle();
    expect(await cache.get('k', loader('k'))).toBe('v1');
    clock.ms += 500;
    const failing = cache.get('k', loader('k'));
    loads.at(-1)!.reject(new Error('database down'));
    await expect(failing).rejects.toThrow('database down');
  });

  it('forgets everything on clear(), and a load that raced the clear neither refills nor answers later reads', async () => {
    const { cache, loads, loader } = setup();
    const before = cache.get('k', loader('k'));
    cache.clear();
    const after = cache.get('k', loader('k'));
    expect(loads).toHaveLength(2);
    loads[0]!.resolve('stale');
    loads[1]!.resolve('fresh');
    expect(await before).toBe('stale');
    expect(await after).toBe('fresh');
    expect(await cache.get('k', loader('k'))).toBe('fresh');
    expect(loads).toHaveLength(2);
  });

  it('stays within its bound', async () => {
    const { cache, loads, loader } = setup();
    for (const key of ['a', 'b', 'c', 'd']) {
      const p = cache.get(key, loader(key));
      loads.at(-1)!.resolve(key);
      await p;
    }
    expect(cache.size).toBeLessThanOrEqual(3);
    expect(await cache.get('d', loader('d'))).toBe('d');
  });
});

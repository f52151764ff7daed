import { describe, expect, it } from 'vitest';
import { isId, newId, type RunId, UlidFactory } from '../../src/core/ids.ts';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function decodeTime(id: string): number {
  let ms = 0;
  for (const c of id.slice(0, 10)) ms = ms * 32 + ALPHABET.indexOf(c);
  return ms;
}

describe('ids', () => {
  it('encode the millisecond in the first ten characters, in Crockford base32', () => {
    const at = Date.UTC(2026, 11, 1, 12, 0, 0, 123);
    const id = new UlidFactory().next(at);
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(decodeTime(id)).toBe(at);
    expect(isId(newId('stp'), 'stp')).toBe(true);
    expect(isId(newId('stp'), 'run')).toBe(false);
  });

  it('are strictly ordered within one millisecond, across carries of the random part', () => {
    const at = Date.UTC(2026, 11, 1, 12, 0, 0, 123);
    const factory = new UlidFactory();
    const ulid = (ms: number) => factory.next(ms);
    const ids = Array.from({ length: 600 }, () => ulid(at));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    // A clock that went back still yields ids after the last one.
    const back = ulid(at - 5_000);
    expect(back > ids.at(-1)!).toBe(true);
    // The next millisecond starts afresh and still sorts after.
    const next = ulid(at + 1);
    expect(decodeTime(next)).toBe(at + 1);
    expect(next > back).toBe(true);
  });

  it('draw a fresh random part each millisecond', () => {
    const base = Date.UTC(2026, 11, 1, 12, 0, 0, 123);
    const factory = new UlidFactory();
    const randoms = new Set(Array.from({ length: 1_000 }, (_, i) => factory.next(base + i).slice(10)));
    expect(randoms.size).toBe(1_000);
  });
});

describe('typed ids', () => {
  it('keep each kind apart at compile time (npm run typecheck fails if they do not)', () => {
    const run: RunId = newId('run');
    const agent = newId('agt');
    // @ts-expect-error an agent id is not a run id
    const wrong: RunId = agent;
    const given: string = run;
    expect(isId(given, 'run') && given.startsWith('run_')).toBe(true);
    expect(isId(wrong, 'run')).toBe(false);
  });
});

/**
 * One interface for every count-and-refuse limit in Paddock: the gateway's
 * requests and tokens per minute, and the sign-in, signup and invitation
 * throttles. Two stores: this process's memory (synchronous: the gateway's
 * hot path takes no extra microtask) and the database (`db/rate-limit-store.ts`:
 * limits hold across servers sharing one Postgres). Both keep a sliding
 * window of buckets per key and pass the same contract tests.
 */

/** A value now (the memory store) or later (the database store); callers await only a promise. */
export type MaybePromise<T> = T | Promise<T>;

export interface RateWindow {
  /** Hits older than this leave the window. */
  windowSec: number;
  /** The window's granularity: a hit counts for between windowSec − bucketSec and windowSec. Divides windowSec. */
  bucketSec: number;
}

/** A sliding window of `windowSec`: 60 buckets when it is whole minutes, else one-second buckets. */
export function slidingWindow(windowSec: number): RateWindow {
  return { windowSec, bucketSec: windowSec % 60 === 0 ? windowSec / 60 : 1 };
}

/** Each hit counts once and carries a size in units (the gateway's tokens); null: no limit. */
export interface HitLimits {
  maxHits: number | null;
  maxUnits: number | null;
}

export type HitDecision = { ok: true } | { ok: false; limit: 'hits' | 'units'; retryAfterSec: number };

export const ADMITTED: HitDecision = Object.freeze({ ok: true });

export interface RateLimitStore {
  /**
   * Counts one hit of `units` against `key` when the window then stays within
   * both limits — or when the window holds nothing of that kind yet, so a
   * single oversized hit is not refused forever. Otherwise counts nothing and
   * says which limit refused and how long until enough of the window expires.
   * Atomic per key: concurrent hits never together pass a limit (the
   * database store: but for hits in flight across a bucket boundary).
   */
  hit(key: string, window: RateWindow, limits: HitLimits, units: number): MaybePromise<HitDecision>;
  /**
   * Adds to the key's current bucket, never below zero: the gateway's
   * correction once a call's real usage is known, or a refund of a hit
   * that should not count (a successful sign-in).
   */
  adjust(key: string, window: RateWindow, deltaHits: number, deltaUnits: number): MaybePromise<void>;
}

export interface BucketCount {
  start: number;
  hits: number;
  units: number;
}

/** The start (epoch seconds) of the bucket that `nowSec` falls in. */
export function bucketStart(nowSec: number, window: RateWindow): number {
  return nowSec - (nowSec % window.bucketSec);
}

/** A bucket starting after this (epoch seconds) is still in the window. */
export function windowFloor(nowSec: number, window: RateWindow): number {
  return nowSec - window.windowSec;
}

/** The rule both stores apply to a window's totals (hits: +1, units: +units). */
export function decide(
  used: { hits: number; units: number },
  limits: HitLimits,
  units: number,
): 'hits' | 'units' | null {
  if (limits.maxHits !== null && used.hits > 0 && used.hits + 1 > limits.maxHits) return 'hits';
  if (limits.maxUnits !== null && used.units > 0 && used.units + units > limits.maxUnits) return 'units';
  return null;
}

/** Seconds until enough of the oldest live buckets expire to free `excess`; at least 1. */
export function retryAfterSec(
  live: BucketCount[],
  nowSec: number,
  window: RateWindow,
  what: 'hits' | 'units',
  excess: number,
): number {
  const oldestFirst = [...live].sort((a, b) => a.start - b.start);
  let freed = 0;
  for (const bucket of oldestFirst) {
    freed += bucket[what];
    if (freed >= excess) return Math.max(1, bucket.start + window.windowSec - nowSec);
  }
  return window.windowSec;
}

/** The refusal for a window whose live buckets are `live`. */
export function refusal(
  live: BucketCount[],
  nowSec: number,
  window: RateWindow,
  limits: HitLimits,
  units: number,
): HitDecision {
  let hits = 0;
  let used = 0;
  for (const b of live) {
    hits += b.hits;
    used += b.units;
  }
  const limit = decide({ hits, units: used }, limits, units);
  if (limit === null) return ADMITTED;
  const excess = limit === 'hits' ? hits + 1 - limits.maxHits! : used + units - limits.maxUnits!;
  return { ok: false, limit, retryAfterSec: retryAfterSec(live, nowSec, window, limit, excess) };
}

interface KeyWindow {
  windowSec: number;
  /** Per slot: the bucket's start (−1: empty), its hits and its units. */
  starts: Float64Array;
  hits: Float64Array;
  units: Float64Array;
  /** The newest bucket written; once it leaves the window the key holds nothing. */
  newest: number;
}

/** Keys are dropped once this many exist, and again whenever the count doubles. */
const FIRST_EVICTION_AT = 1024;

/**
 * Counts in this process. Exact and synchronous; with several servers each
 * counts only the traffic it sees. Keys whose window has emptied are dropped
 * as new keys arrive (amortised, no timer), so addresses that come once do
 * not accumulate.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  private readonly windows = new Map<string, KeyWindow>();
  private evictAt = FIRST_EVICTION_AT;

  constructor(private readonly nowMs: () => number) {}

  /** Keys held (for tests and metrics). */
  get size(): number {
    return this.windows.size;
  }

  hit(key: string, window: RateWindow, limits: HitLimits, units: number): HitDecision {
    const nowSec = Math.floor(this.nowMs() / 1000);
    const w = this.windows.get(key);
    if (w !== undefined && (limits.maxHits !== null || limits.maxUnits !== null)) {
      const floor = windowFloor(nowSec, window);
      let hits = 0;
      let used = 0;
      for (let i = 0; i < w.starts.length; i++) {
        if (w.starts[i]! > floor) {
          hits += w.hits[i]!;
          used += w.units[i]!;
        }
      }
      if (decide({ hits, units: used }, limits, units) !== null) {
        return refusal(this.live(w, floor), nowSec, window, limits, units);
      }
    }
    this.add(w ?? this.create(key, window, nowSec), nowSec, window, 1, units);
    return ADMITTED;
  }

  adjust(key: string, window: RateWindow, deltaHits: number, deltaUnits: number): void {
    if (deltaHits === 0 && deltaUnits === 0) return;
    const nowSec = Math.floor(this.nowMs() / 1000);
    const w = this.windows.get(key) ?? this.create(key, window, nowSec);
    this.add(w, nowSec, window, deltaHits, deltaUnits);
  }

  private live(w: KeyWindow, floor: number): BucketCount[] {
    const live: BucketCount[] = [];
    for (let i = 0; i < w.starts.length; i++) {
      if (w.starts[i]! > floor) live.push({ start: w.starts[i]!, hits: w.hits[i]!, units: w.units[i]! });
    }
    return live;
  }

  private create(key: string, window: RateWindow, nowSec: number): KeyWindow {
    if (this.windows.size >= this.evictAt) this.evict(nowSec);
    const slots = window.windowSec / window.bucketSec;
    const w: KeyWindow = {
      windowSec: window.windowSec,
      starts: new Float64Array(slots).fill(-1),
      hits: new Float64Array(slots),
      units: new Float64Array(slots),
      newest: -1,
    };
    this.windows.set(key, w);
    return w;
  }

  private add(w: KeyWindow, nowSec: number, window: RateWindow, hits: number, units: number): void {
    const start = bucketStart(nowSec, window);
    const slot = (start / window.bucketSec) % w.starts.length;
    if (w.starts[slot] !== start) {
      w.starts[slot] = start;
      w.hits[slot] = 0;
      w.units[slot] = 0;
    }
    w.hits[slot] = Math.max(0, w.hits[slot]! + hits);
    w.units[slot] = Math.max(0, w.units[slot]! + units);
    if (start > w.newest) w.newest = start;
  }

  private evict(nowSec: number): void {
    for (const [key, w] of this.windows) {
      if (w.newest <= nowSec - w.windowSec) this.windows.delete(key);
    }
    this.evictAt = Math.max(FIRST_EVICTION_AT, this.windows.size * 2);
  }
}

import {
  ADMITTED,
  type BucketCount,
  bucketStart,
  type HitDecision,
  type HitLimits,
  type RateLimitStore,
  type RateWindow,
  refusal,
  windowFloor,
} from '../core/rate-limit.ts';
import { type Db, rawQuery } from './client.ts';

// One statement per hit. The buckets before the current one are read from the
// statement's snapshot (no one writes them any more); the current bucket is
// checked in ON CONFLICT DO UPDATE, which sees and locks its latest version,
// so concurrent hits in one bucket queue on its row and never together pass a
// limit. $1 key, $2 current bucket, $3 window floor, $4 units, $5 expiry,
// $6 max hits, $7 max units (null: no limit).
const HIT = `WITH older AS (
  SELECT coalesce(sum(hits), 0)::bigint AS hits, coalesce(sum(units), 0)::bigint AS units
  FROM rate_limit_buckets WHERE key = $1 AND bucket > $3 AND bucket < $2
)
INSERT INTO rate_limit_buckets AS b (key, bucket, hits, units, expires_at)
SELECT $1, $2, 1, $4, $5 FROM older
WHERE ($6::bigint IS NULL OR older.hits = 0 OR older.hits + 1 <= $6)
  AND ($7::bigint IS NULL OR older.units = 0 OR older.units + $4 <= $7)
ON CONFLICT (key, bucket) DO UPDATE SET hits = b.hits + 1, units = b.units + excluded.units
WHERE ($6::bigint IS NULL OR (SELECT hits FROM older) + b.hits = 0
    OR (SELECT hits FROM older) + b.hits + 1 <= $6)
  AND ($7::bigint IS NULL OR (SELECT units FROM older) + b.units = 0
    OR (SELECT units FROM older) + b.units + excluded.units <= $7)
RETURNING 1`;

const LIVE = `SELECT bucket, hits, units FROM rate_limit_buckets WHERE key = $1 AND bucket > $2`;

const ADJUST = `INSERT INTO rate_limit_buckets AS b (key, bucket, hits, units, expires_at)
VALUES ($1, $2, greatest(0, $3::integer), greatest(0, $4::bigint), $5)
ON CONFLICT (key, bucket) DO UPDATE
SET hits = greatest(0, b.hits + $3::integer), units = greatest(0, b.units + $4::bigint)`;

const SWEEP = `WITH gone AS (DELETE FROM rate_limit_buckets WHERE expires_at <= $1 RETURNING 1)
SELECT count(*)::integer AS deleted FROM gone`;

/** How often a server deletes buckets that left their window. */
export const RATE_LIMIT_SWEEP_MS = 5 * 60 * 1000;

/**
 * Counts in the `rate_limit_buckets` table, so every server sharing the
 * database enforces one limit. Time is the server's clock; with several
 * servers keep their clocks in sync (NTP). At a bucket boundary, hits still
 * running in the old bucket may be missed by ones starting in the new: a
 * limit can be passed by the calls in flight at that instant, no more.
 */
export class PostgresRateLimitStore implements RateLimitStore {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly nowMs: () => number,
  ) {}

  async hit(key: string, window: RateWindow, limits: HitLimits, units: number): Promise<HitDecision> {
    const nowSec = Math.floor(this.nowMs() / 1000);
    const start = bucketStart(nowSec, window);
    const floor = windowFloor(nowSec, window);
    const rows = await rawQuery(this.db, HIT, [
      key,
      start,
      floor,
      Math.round(units),
      new Date((start + window.windowSec) * 1000),
      limits.maxHits,
      limits.maxUnits,
    ]);
    if (rows.length > 0) return ADMITTED;
    // Refused: read the window to say when to retry (off the admitted path, so not atomic with it).
    const live: BucketCount[] = (await rawQuery(this.db, LIVE, [key, floor])).map((r) => ({
      start: Number(r.bucket),
      hits: Number(r.hits),
      units: Number(r.units),
    }));
    const decision = refusal(live, nowSec, window, limits, units);
    // Between the two statements the window may have emptied: still refused, retry at once.
    return decision.ok
      ? { ok: false, limit: limits.maxHits !== null ? 'hits' : 'units', retryAfterSec: 1 }
      : decision;
  }

  async adjust(key: string, window: RateWindow, deltaHits: number, deltaUnits: number): Promise<void> {
    if (deltaHits === 0 && deltaUnits === 0) return;
    const start = bucketStart(Math.floor(this.nowMs() / 1000), window);
    await rawQuery(this.db, ADJUST, [
      key,
      start,
      Math.round(deltaHits),
      Math.round(deltaUnits),
      new Date((start + window.windowSec) * 1000),
    ]);
  }

  /** Deletes the buckets that left their window; returns how many. */
  async sweep(): Promise<number> {
    const [row] = await rawQuery(this.db, SWEEP, [new Date(this.nowMs())]);
    return Number(row?.deleted ?? 0);
  }

  /** Sweeps every RATE_LIMIT_SWEEP_MS; a failure is reported and the next sweep tries again. */
  start(onError: (err: unknown) => void): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.sweep().catch(onError);
    }, RATE_LIMIT_SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

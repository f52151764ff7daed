import { bigint, index, integer, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

/**
 * The database rate-limit store (db/rate-limit-store.ts): one row per key per
 * bucket of its sliding window. Rows past `expires_at` no longer count and are
 * swept. UNLOGGED (migration 0007, which drizzle cannot express): the counts
 * are transient, and a crash that empties the table only restarts the windows.
 */
export const rateLimitBuckets = pgTable(
  'rate_limit_buckets',
  {
    key: text('key').notNull(),
    /** The bucket's start, epoch seconds. */
    bucket: bigint('bucket', { mode: 'number' }).notNull(),
    hits: integer('hits').notNull().default(0),
    units: bigint('units', { mode: 'number' }).notNull().default(0),
    /** The bucket's start plus the window: from then on it counts for nothing. */
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.key, t.bucket] }),
    index('rate_limit_buckets_expires_idx').on(t.expiresAt),
  ],
);

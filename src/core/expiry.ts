/**
 * The status a row with a deadline reads as at `now`: a pending one past its
 * `expiresAt` is expired. Rows are not rewritten when they lapse, so every
 * reader asks this instead of reading `status` alone.
 */
export function statusAt<S extends string>(row: { status: S; expiresAt: Date }, now: Date): S | 'expired' {
  return row.status === 'pending' && row.expiresAt <= now ? 'expired' : row.status;
}

/** Whether the Postgres error `code` is `err`'s or a cause's, as either driver reports it (drizzle wraps the driver's error). */
function hasCode(err: unknown, code: string): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; i++) {
    if (e.code === code) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** Postgres unique_violation. */
export function isUniqueViolation(err: unknown): boolean {
  return hasCode(err, '23505');
}

/** Postgres deadlock_detected: the transaction was rolled back whole, so it can be tried again. */
export function isDeadlock(err: unknown): boolean {
  return hasCode(err, '40P01');
}

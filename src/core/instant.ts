import { ValidationError } from './errors.ts';

/** Earliest and latest instants a time given in a request may name (years 1 to 9999). */
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * A time a request gives (an ISO-8601 string), or a 400 naming the field.
 * Schema formats let through what JavaScript or Postgres cannot hold (a leap
 * second, year 0): those are refused here too, never a 500 further on.
 */
export function parseInstant(raw: string, field: string): Date {
  const ms = Date.parse(raw);
  if (Number.isNaN(ms) || ms < EARLIEST_MS || ms > LATEST_MS) {
    throw new ValidationError(`${field} is not a time: give ISO-8601 such as 2026-12-01T00:00:00Z`, {
      [field]: 'must be an ISO-8601 time between the years 1 and 9999',
    });
  }
  return new Date(ms);
}

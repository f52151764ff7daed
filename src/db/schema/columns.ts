import { timestamp } from 'drizzle-orm/pg-core';

// Column builders every schema file shares. Team-owned columns are in
// identity.ts, beside the teams table they reference.

export const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** created_at and updated_at, both required. */
export const timestamps = () => ({
  createdAt: ts('created_at').notNull(),
  updatedAt: ts('updated_at').notNull(),
});

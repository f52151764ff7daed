import { and, eq, isNull, lte, or } from 'drizzle-orm';
import type { DbOrTx } from './client.ts';
import { playbookScheduler as leases } from './schema/index.ts';

// Leader leases, one row per name in the playbook_scheduler table (the
// playbook scheduler's row is `leader`, the alert evaluator's `alerts`): SQL only.

/**
 * Takes or renews the lease `name` when it is free, expired or already ours,
 * in one statement (the row is made on first use): true when `me` leads.
 */
export async function takeLease(
  db: DbOrTx,
  name: string,
  me: string,
  now: Date,
  until: Date,
): Promise<boolean> {
  await db
    .insert(leases)
    .values({ id: name, leaderId: null, leaseUntil: null, updatedAt: now })
    .onConflictDoNothing();
  const rows = await db
    .update(leases)
    .set({ leaderId: me, leaseUntil: until, updatedAt: now })
    .where(
      and(
        eq(leases.id, name),
        or(
          isNull(leases.leaderId),
          eq(leases.leaderId, me),
          isNull(leases.leaseUntil),
          lte(leases.leaseUntil, now),
        ),
      ),
    )
    .returning({ id: leases.id });
  return rows.length > 0;
}

export async function releaseLease(db: DbOrTx, name: string, me: string): Promise<void> {
  await db
    .update(leases)
    .set({ leaderId: null, leaseUntil: null })
    .where(and(eq(leases.id, name), eq(leases.leaderId, me)));
}

export async function noteTick(db: DbOrTx, name: string, me: string, now: Date): Promise<void> {
  await db
    .update(leases)
    .set({ lastTickAt: now })
    .where(and(eq(leases.id, name), eq(leases.leaderId, me)));
}

export async function readLease(db: DbOrTx, name: string) {
  const [row] = await db.select().from(leases).where(eq(leases.id, name));
  return row;
}

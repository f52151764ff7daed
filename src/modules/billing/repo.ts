import { and, eq, gte, inArray, or, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import {
  billingAccounts,
  billingStripeEvents,
  billingTopUps,
  type TopUpState,
  type TopUpStatus,
} from '../../db/schema/index.ts';

// Billing accounts, processed Stripe events, auto top-ups. SQL only.

export type BillingAccountRow = typeof billingAccounts.$inferSelect;
export type TopUpRow = typeof billingTopUps.$inferSelect;
export type TopUpId = Id<'btu'>;

export async function findAccount(db: DbOrTx, teamId: TeamId): Promise<BillingAccountRow | undefined> {
  const [row] = await db.select().from(billingAccounts).where(eq(billingAccounts.teamId, teamId));
  return row;
}

export async function findByCustomer(db: DbOrTx, customerId: string): Promise<BillingAccountRow | undefined> {
  const [row] = await db
    .select()
    .from(billingAccounts)
    .where(eq(billingAccounts.stripeCustomerId, customerId));
  return row;
}

/** The team's billing account, made empty when missing, locked for the rest of the transaction. */
export async function lockAccount(db: DbOrTx, teamId: TeamId, at: Date): Promise<BillingAccountRow> {
  await db.insert(billingAccounts).values({ teamId, updatedAt: at }).onConflictDoNothing();
  const [row] = await db
    .select()
    .from(billingAccounts)
    .where(eq(billingAccounts.teamId, teamId))
    .for('update');
  return row!;
}

export async function updateAccount(
  db: DbOrTx,
  teamId: TeamId,
  patch: Partial<Omit<BillingAccountRow, 'teamId' | 'updatedAt'>>,
  at: Date,
): Promise<BillingAccountRow> {
  const [row] = await db
    .update(billingAccounts)
    .set({ ...patch, updatedAt: at })
    .where(eq(billingAccounts.teamId, teamId))
    .returning();
  return row!;
}

/** Records the customer unless the team already has one: the first writer's customer stays. */
export async function setCustomerOnce(
  db: DbOrTx,
  teamId: TeamId,
  customerId: string,
  at: Date,
): Promise<string> {
  await db.insert(billingAccounts).values({ teamId, updatedAt: at }).onConflictDoNothing();
  await db
    .update(billingAccounts)
    .set({ stripeCustomerId: customerId, updatedAt: at })
    .where(and(eq(billingAccounts.teamId, teamId), sql`${billingAccounts.stripeCustomerId} is null`));
  const row = await findAccount(db, teamId);
  return row!.stripeCustomerId!;
}

/** True the first time an event id is seen (in the transaction that applies it). */
export async function markEventProcessed(
  db: DbOrTx,
  event: { id: string; type: string; teamId: TeamId | null },
  at: Date,
): Promise<boolean> {
  const rows = await db
    .insert(billingStripeEvents)
    .values({ eventId: event.id, type: event.type, teamId: event.teamId, processedAt: at })
    .onConflictDoNothing()
    .returning({ eventId: billingStripeEvents.eventId });
  return rows.length > 0;
}

/** Accounts of these teams whose auto top-up is on: the balance listener's one query. */
export async function autoTopUpAccounts(db: DbOrTx, teamIds: TeamId[]): Promise<BillingAccountRow[]> {
  return db
    .select()
    .from(billingAccounts)
    .where(and(inArray(billingAccounts.teamId, teamIds), eq(billingAccounts.autoTopUpEnabled, true)));
}

/** Moves the top-up state only from `from`: of several servers seeing one crossing, one wins. */
export async function moveTopUpState(
  db: DbOrTx,
  teamId: TeamId,
  from: TopUpState,
  to: TopUpState,
  at: Date,
): Promise<boolean> {
  const rows = await db
    .update(billingAccounts)
    .set({ topUpState: to, updatedAt: at })
    .where(and(eq(billingAccounts.teamId, teamId), eq(billingAccounts.topUpState, from)))
    .returning({ teamId: billingAccounts.teamId });
  return rows.length > 0;
}

/** What auto top-up charged (or has out) since `since`: cents and micro-credits. */
export async function topUpsSince(
  db: DbOrTx,
  teamId: TeamId,
  since: Date,
): Promise<{ cents: number; credits: number; count: number }> {
  const [row] = await db
    .select({
      cents: sql<string>`coalesce(sum(${billingTopUps.amountCents}), 0)`,
      credits: sql<string>`coalesce(sum(${billingTopUps.credits}), 0)`,
      count: sql<string>`count(*)`,
    })
    .from(billingTopUps)
    .where(
      and(
        eq(billingTopUps.teamId, teamId),
        gte(billingTopUps.createdAt, since),
        or(eq(billingTopUps.status, 'pending'), eq(billingTopUps.status, 'succeeded')),
      ),
    );
  return {
    cents: Number(row?.cents ?? 0),
    credits: Number(row?.credits ?? 0),
    count: Number(row?.count ?? 0),
  };
}

export async function insertTopUp(db: DbOrTx, row: typeof billingTopUps.$inferInsert): Promise<TopUpRow> {
  const [inserted] = await db.insert(billingTopUps).values(row).returning();
  return inserted!;
}

export async function findTopUp(db: DbOrTx, id: TopUpId): Promise<TopUpRow | undefined> {
  const [row] = await db.select().from(billingTopUps).where(eq(billingTopUps.id, id));
  return row;
}

export async function setTopUpIntent(db: DbOrTx, id: TopUpId, paymentIntentId: string): Promise<void> {
  await db
    .update(billingTopUps)
    .set({ paymentIntentId })
    .where(and(eq(billingTopUps.id, id), sql`${billingTopUps.paymentIntentId} is null`));
}

/** Settles a pending top-up; false when it was settled already (a replay, or the other outcome first). */
export async function settleTopUp(
  db: DbOrTx,
  id: TopUpId,
  status: Exclude<TopUpStatus, 'pending'>,
  error: string | null,
  at: Date,
): Promise<TopUpRow | undefined> {
  const [row] = await db
    .update(billingTopUps)
    .set({ status, error, settledAt: at })
    .where(and(eq(billingTopUps.id, id), eq(billingTopUps.status, 'pending')))
    .returning();
  return row;
}

/** The team's latest top-up (GET /v1/billing shows its outcome). */
export async function latestTopUp(db: DbOrTx, teamId: TeamId): Promise<TopUpRow | undefined> {
  const [row] = await db
    .select()
    .from(billingTopUps)
    .where(eq(billingTopUps.teamId, teamId))
    .orderBy(sql`${billingTopUps.createdAt} desc, ${billingTopUps.id} desc`)
    .limit(1);
  return row;
}

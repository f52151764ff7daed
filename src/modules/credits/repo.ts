import { and, desc, eq, isNull, lt, sql } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import {
  type CreditState,
  type CreditTransactionType,
  creditAccounts,
  creditTransactions,
  teams,
} from '../../db/schema/index.ts';

// Credit accounts and their transactions. SQL only.

export type AccountRow = typeof creditAccounts.$inferSelect;
export type TransactionRow = typeof creditTransactions.$inferSelect;
export type TransactionInsert = Omit<typeof creditTransactions.$inferInsert, 'balanceAfter'>;

export async function findAccount(db: DbOrTx, teamId: TeamId): Promise<AccountRow | undefined> {
  const [row] = await db.select().from(creditAccounts).where(eq(creditAccounts.teamId, teamId));
  return row;
}

/** The team's account, made at zero when missing, locked for the rest of the transaction. */
export async function lockAccount(db: DbOrTx, teamId: TeamId, at: Date): Promise<AccountRow> {
  await db
    .insert(creditAccounts)
    .values({ teamId, balance: 0, held: 0, state: 'ok', updatedAt: at })
    .onConflictDoNothing();
  const [row] = await db.select().from(creditAccounts).where(eq(creditAccounts.teamId, teamId)).for('update');
  return row!;
}

export async function findByIdempotencyKey(
  db: DbOrTx,
  teamId: TeamId,
  key: string,
): Promise<TransactionRow | undefined> {
  const [row] = await db
    .select()
    .from(creditTransactions)
    .where(and(eq(creditTransactions.teamId, teamId), eq(creditTransactions.idempotencyKey, key)));
  return row;
}

/** Adds the transaction's amount to the (locked) account and writes the transaction with the balance after it. */
export async function applyTransaction(
  db: DbOrTx,
  row: TransactionInsert,
): Promise<{ transaction: TransactionRow; account: AccountRow }> {
  const [account] = await db
    .update(creditAccounts)
    .set({ balance: sql`${creditAccounts.balance} + ${row.amount}::bigint`, updatedAt: row.createdAt })
    .where(eq(creditAccounts.teamId, row.teamId))
    .returning();
  const [transaction] = await db
    .insert(creditTransactions)
    .values({ ...row, balanceAfter: account!.balance })
    .returning();
  return { transaction: transaction!, account: account! };
}

export async function updateAccount(
  db: DbOrTx,
  teamId: TeamId,
  patch: { lowThreshold?: number | null; state?: CreditState },
  at: Date,
): Promise<AccountRow | undefined> {
  const [row] = await db
    .update(creditAccounts)
    .set({ ...patch, updatedAt: at })
    .where(eq(creditAccounts.teamId, teamId))
    .returning();
  return row;
}

/** Moves the account to `to` only from `from`: of several servers noticing the same change, one wins. */
export async function moveState(
  db: DbOrTx,
  teamId: TeamId,
  from: CreditState,
  to: CreditState,
): Promise<boolean> {
  const rows = await db
    .update(creditAccounts)
    .set({ state: to })
    .where(and(eq(creditAccounts.teamId, teamId), eq(creditAccounts.state, from)))
    .returning({ teamId: creditAccounts.teamId });
  return rows.length > 0;
}

export async function listTransactions(
  db: DbOrTx,
  teamId: TeamId,
  filter: { type?: CreditTransactionType | undefined; referenceId?: string | undefined },
  cursor: string | undefined,
  limit: number,
): Promise<TransactionRow[]> {
  return db
    .select()
    .from(creditTransactions)
    .where(
      and(
        eq(creditTransactions.teamId, teamId),
        filter.type ? eq(creditTransactions.type, filter.type) : undefined,
        filter.referenceId ? eq(creditTransactions.referenceId, filter.referenceId) : undefined,
        cursor ? lt(creditTransactions.id, cursor as TransactionRow['id']) : undefined,
      ),
    )
    .orderBy(desc(creditTransactions.id))
    .limit(limit);
}

/** A team that exists and is not deleted (a platform admin names any team). */
export async function findLiveTeam(db: DbOrTx, teamId: TeamId): Promise<{ id: TeamId } | undefined> {
  const [row] = await db
    .select({ id: teams.id })
    .from(teams)
    .where(and(eq(teams.id, teamId), isNull(teams.deletedAt)));
  return row;
}

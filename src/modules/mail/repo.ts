import { and, asc, eq, lte, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { mailOutbox } from '../../db/schema/index.ts';

// SQL only. The outbox is the server's, not a team's: it has no team id.

export type MailRow = typeof mailOutbox.$inferSelect;

export async function insertMail(db: DbOrTx, row: typeof mailOutbox.$inferInsert): Promise<MailRow> {
  const [inserted] = await db.insert(mailOutbox).values(row).returning();
  return inserted!;
}

export async function findMail(db: DbOrTx, id: string): Promise<MailRow | undefined> {
  const [row] = await db.select().from(mailOutbox).where(eq(mailOutbox.id, id));
  return row;
}

/**
 * Takes a queued, due message for one attempt: counts the attempt and holds
 * the row until `leaseUntil`, so a second job for it (the sweep's, a retry)
 * finds nothing to do while this one is in hand. One statement, so two
 * workers never both send it.
 */
export async function claimMail(
  db: DbOrTx,
  id: string,
  now: Date,
  leaseUntil: Date,
): Promise<MailRow | undefined> {
  const [row] = await db
    .update(mailOutbox)
    .set({ attempts: sql`${mailOutbox.attempts} + 1`, nextAttemptAt: leaseUntil, updatedAt: now })
    .where(and(eq(mailOutbox.id, id), eq(mailOutbox.status, 'queued'), lte(mailOutbox.nextAttemptAt, now)))
    .returning();
  return row;
}

/**
 * Ends the attempt number `attempt` of a message (sent, logged, failed, or
 * queued for a retry), only while that attempt still holds it: the message
 * is still queued and no later attempt claimed it (each claim counts one
 * attempt, so the count is the claim's token). Answers whether it did; a
 * worker that stalled past its lease while another took the message over
 * changes nothing.
 */
export async function finishAttempt(
  db: DbOrTx,
  id: string,
  attempt: number,
  patch: Partial<Pick<MailRow, 'status' | 'lastError' | 'nextAttemptAt' | 'sentAt' | 'updatedAt'>>,
): Promise<boolean> {
  const rows = await db
    .update(mailOutbox)
    .set(patch)
    .where(and(eq(mailOutbox.id, id), eq(mailOutbox.status, 'queued'), eq(mailOutbox.attempts, attempt)))
    .returning({ id: mailOutbox.id });
  return rows.length > 0;
}

/** Queued messages whose time has come: due retries, and messages whose job was lost. */
export async function dueMailIds(db: DbOrTx, now: Date, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: mailOutbox.id })
    .from(mailOutbox)
    .where(and(eq(mailOutbox.status, 'queued'), lte(mailOutbox.nextAttemptAt, now)))
    .orderBy(asc(mailOutbox.nextAttemptAt))
    .limit(limit);
  return rows.map((r) => r.id);
}

export async function deleteMailTo(db: DbOrTx, address: string): Promise<void> {
  await db.delete(mailOutbox).where(eq(mailOutbox.toAddress, address));
}

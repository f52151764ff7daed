import { index, integer, pgTable, text } from 'drizzle-orm/pg-core';
import { timestamps, ts } from './columns.ts';

/**
 * The e-mail outbox: a row is written in the same transaction as the change
 * that causes the message, and sent afterwards by a job (modules/mail). The
 * bodies hold links with single-use tokens, so they are sealed at rest.
 */
export const mailOutbox = pgTable(
  'mail_outbox',
  {
    id: text('id').primaryKey(),
    toAddress: text('to_address').notNull(),
    /** What the message is for: invitation, password_reset, magic_link (alerts later). */
    kind: text('kind').notNull(),
    subject: text('subject').notNull(),
    textSealed: text('text_sealed').notNull(),
    htmlSealed: text('html_sealed').notNull(),
    status: text('status', { enum: ['queued', 'sent', 'failed', 'logged'] }).notNull(),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    /** When a queued row may next be tried (also the lease of an attempt in hand). */
    nextAttemptAt: ts('next_attempt_at').notNull(),
    sentAt: ts('sent_at'),
    ...timestamps(),
  },
  (t) => [index('mail_outbox_due_idx').on(t.status, t.nextAttemptAt)],
);

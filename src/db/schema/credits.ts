import { sql } from 'drizzle-orm';
import { bigint, index, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id, TeamId } from '../../core/ids.ts';
import { ts } from './columns.ts';
import { teamIdColumn, teams } from './identity.ts';

/** Amounts are micro-credits (1 credit = 1 000 000), so every sum is exact. */
const microCredits = (name: string) => bigint(name, { mode: 'number' });

export const CREDIT_TRANSACTION_TYPES = ['purchase', 'grant', 'consume', 'refund', 'adjustment'] as const;
export type CreditTransactionType = (typeof CREDIT_TRANSACTION_TYPES)[number];

/** ok → low (below the team's threshold) → exhausted (nothing left); events fire on the way down. */
export const CREDIT_STATES = ['ok', 'low', 'exhausted'] as const;
export type CreditState = (typeof CREDIT_STATES)[number];

/**
 * A team's credit balance (docs/credits.md). `held` is what servers' leases
 * hold for calls in flight (scope `credits` in budget_leases), so a call is
 * admitted only against balance − held: the same lease scheme that makes
 * run budgets hold under concurrency.
 */
export const creditAccounts = pgTable('credit_accounts', {
  teamId: text('team_id')
    .$type<TeamId>()
    .primaryKey()
    .references(() => teams.id),
  balance: microCredits('balance').notNull(),
  held: microCredits('held').notNull(),
  /** Below this the account is low (credits.low); null: the server's default. */
  lowThreshold: microCredits('low_threshold'),
  state: text('state', { enum: CREDIT_STATES }).notNull(),
  updatedAt: ts('updated_at').notNull(),
});

/**
 * Every change of a balance, append-only. Consumption by the ledger is one
 * row per run per written batch (reference: the run); external usage and
 * purchases carry their own reference, unique per team through
 * idempotency_key so a replay changes nothing.
 */
export const creditTransactions = pgTable(
  'credit_transactions',
  {
    id: text('id').primaryKey().$type<Id<'ctx'>>(),
    teamId: teamIdColumn(),
    type: text('type', { enum: CREDIT_TRANSACTION_TYPES }).notNull(),
    /** Signed: what the balance gained (purchase, grant, refund) or lost (consume). */
    amount: microCredits('amount').notNull(),
    balanceAfter: microCredits('balance_after').notNull(),
    reason: text('reason').notNull(),
    /** What it was for: ledger usage (model, sandbox), or the caller's action name. */
    action: text('action'),
    referenceType: text('reference_type'),
    referenceId: text('reference_id'),
    /** Unique per team: the same key again is the same transaction. */
    idempotencyKey: text('idempotency_key'),
    actorKind: text('actor_kind').notNull(),
    actorId: text('actor_id'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    index('credit_transactions_team_idx').on(t.teamId, t.id),
    uniqueIndex('credit_transactions_idempotency_key')
      .on(t.teamId, t.idempotencyKey)
      .where(sql`${t.idempotencyKey} is not null`),
  ],
);

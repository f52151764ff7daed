import { bigint, boolean, index, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id, TeamId } from '../../core/ids.ts';
import { ts } from './columns.ts';
import { teamIdColumn, teams } from './identity.ts';

/**
 * Auto top-up, per threshold crossing: `armed` (the next fall below the
 * threshold charges a pack), `pending` (a PaymentIntent is out; Stripe's
 * webhook settles it), `spent` (charged, or failed: waits for the balance to
 * be seen at or above the threshold again, or for the settings to change).
 */
export const TOP_UP_STATES = ['armed', 'pending', 'spent'] as const;
export type TopUpState = (typeof TOP_UP_STATES)[number];

export const TOP_UP_STATUSES = ['pending', 'succeeded', 'failed'] as const;
export type TopUpStatus = (typeof TOP_UP_STATUSES)[number];

/** A team's billing (docs/billing.md): its Stripe customer, plan and subscription, and auto top-up. */
export const billingAccounts = pgTable('billing_accounts', {
  teamId: text('team_id')
    .$type<TeamId>()
    .primaryKey()
    .references(() => teams.id),
  /** Created on first need, with metadata team_id; unique: one customer is one team. */
  stripeCustomerId: text('stripe_customer_id').unique(),
  planId: text('plan_id'),
  subscriptionId: text('subscription_id'),
  /** Stripe's subscription status (active, past_due, canceled, …); null: never subscribed. */
  subscriptionStatus: text('subscription_status'),
  currentPeriodEnd: ts('current_period_end'),
  /** The Stripe event time of the last subscription change applied: older events arriving late change nothing. */
  subscriptionEventAt: ts('subscription_event_at'),
  autoTopUpEnabled: boolean('auto_top_up_enabled').notNull().default(false),
  /** Micro-credits: below this balance a pack is charged. */
  autoTopUpThreshold: bigint('auto_top_up_threshold', { mode: 'number' }),
  autoTopUpPackId: text('auto_top_up_pack_id'),
  /** At most this much charged by auto top-up per calendar month (UTC): cents, or micro-credits. */
  autoTopUpMonthlyCapCents: integer('auto_top_up_monthly_cap_cents'),
  autoTopUpMonthlyCapCredits: bigint('auto_top_up_monthly_cap_credits', { mode: 'number' }),
  topUpState: text('top_up_state', { enum: TOP_UP_STATES }).notNull().default('armed'),
  updatedAt: ts('updated_at').notNull(),
});

/**
 * Stripe events already processed, by Stripe's event id: inserted in the
 * transaction that applies the event, so a replay (Stripe retries, or two
 * servers given the same delivery) changes nothing.
 */
export const billingStripeEvents = pgTable('billing_stripe_events', {
  eventId: text('event_id').primaryKey(),
  type: text('type').notNull(),
  teamId: text('team_id').$type<TeamId>(),
  processedAt: ts('processed_at').notNull(),
});

/** One auto top-up: an off-session PaymentIntent for a pack, settled by Stripe's webhook. */
export const billingTopUps = pgTable(
  'billing_top_ups',
  {
    id: text('id').primaryKey().$type<Id<'btu'>>(),
    teamId: teamIdColumn(),
    packId: text('pack_id').notNull(),
    /** Micro-credits the pack adds once paid. */
    credits: bigint('credits', { mode: 'number' }).notNull(),
    amountCents: integer('amount_cents').notNull(),
    paymentIntentId: text('payment_intent_id'),
    status: text('status', { enum: TOP_UP_STATUSES }).notNull(),
    /** Why it failed (Stripe's decline code and message), never card details. */
    error: text('error'),
    createdAt: ts('created_at').notNull(),
    settledAt: ts('settled_at'),
  },
  (t) => [
    index('billing_top_ups_team_idx').on(t.teamId, t.createdAt),
    uniqueIndex('billing_top_ups_payment_intent').on(t.paymentIntentId),
  ],
);

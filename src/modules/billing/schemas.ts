import { type Static, Type } from 'typebox';
import { TOP_UP_STATES, TOP_UP_STATUSES } from '../../db/schema/billing.ts';
import { Body, Nullable, NullableTimestamp, Timestamp } from '../../http/schemas.ts';

const literals = <const T extends readonly string[]>(values: T, description: string) =>
  Type.Enum(values as unknown as T[number][], { description });

const ReturnUrl = (description: string) =>
  Type.String({ minLength: 8, maxLength: 2000, pattern: '^https?://[^\\s]+$', description });

export const Plan = Type.Object({
  id: Type.String(),
  name: Type.String(),
  included_credits: Type.Number({ description: 'credits granted once per paid invoice' }),
  limits: Type.Record(Type.String(), Type.Number(), { description: 'what the plan allows, by name' }),
});

export const CreditPack = Type.Object({
  id: Type.String(),
  name: Type.String(),
  credits: Type.Number(),
  price_usd: Type.Number(),
});

export const Catalog = Type.Object({ plans: Type.Array(Plan), credit_packs: Type.Array(CreditPack) });

export const AutoTopUp = Type.Object({
  enabled: Type.Boolean(),
  threshold_credits: Nullable(Type.Number({ description: 'below this balance a pack is charged' })),
  pack_id: Nullable(Type.String()),
  monthly_cap_usd: Nullable(Type.Number()),
  monthly_cap_credits: Nullable(Type.Number()),
  state: literals(
    TOP_UP_STATES,
    'armed: the next fall below the threshold charges; pending: a charge is out; spent: waits for the balance to reach the threshold again',
  ),
  this_month: Type.Object(
    {
      count: Type.Integer(),
      usd: Type.Number(),
      credits: Type.Number(),
    },
    { description: 'what auto top-up charged (or has out) this calendar month, UTC' },
  ),
  last: Nullable(
    Type.Object({
      id: Type.String(),
      pack_id: Type.String(),
      status: literals(TOP_UP_STATUSES, 'pending, succeeded or failed'),
      error: Nullable(Type.String()),
      created_at: Timestamp,
      settled_at: NullableTimestamp,
    }),
  ),
});

export const Billing = Type.Object({
  team_id: Type.String(),
  has_customer: Type.Boolean({ description: 'a Stripe customer exists for the team' }),
  plan: Nullable(Plan),
  subscription: Nullable(
    Type.Object({
      status: Type.String({ description: "Stripe's status: active, trialing, past_due, canceled, …" }),
      current_period_end: NullableTimestamp,
    }),
  ),
  auto_top_up: AutoTopUp,
});

export const CheckoutBody = Body({
  plan_id: Type.String({ minLength: 1, maxLength: 64 }),
  success_url: Type.Optional(
    ReturnUrl("where Stripe sends the browser after paying (default: the server's address)"),
  ),
  cancel_url: Type.Optional(ReturnUrl('where Stripe sends the browser when the buyer goes back')),
});
export type CheckoutInput = Static<typeof CheckoutBody>;

export const PackCheckoutBody = Body({
  success_url: Type.Optional(
    ReturnUrl("where Stripe sends the browser after paying (default: the server's address)"),
  ),
  cancel_url: Type.Optional(ReturnUrl('where Stripe sends the browser when the buyer goes back')),
});
export type PackCheckoutInput = Static<typeof PackCheckoutBody>;

export const PortalBody = Body({
  return_url: Type.Optional(ReturnUrl("where the portal's back link goes (default: the server's address)")),
});
export type PortalInput = Static<typeof PortalBody>;

export const CheckoutSession = Type.Object({
  id: Type.String({ description: "Stripe's Checkout Session id" }),
  url: Type.String({ description: 'send the browser here' }),
});

export const PortalSession = Type.Object({ url: Type.String({ description: 'send the browser here' }) });

const Cap = (description: string) =>
  Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000_000, description })));

export const AutoTopUpBody = Body({
  enabled: Type.Optional(Type.Boolean()),
  threshold_credits: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000_000 })),
  pack_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  monthly_cap_usd: Cap('at most this much charged per calendar month (UTC); or monthly_cap_credits'),
  monthly_cap_credits: Cap('at most this many credits bought per calendar month (UTC); or monthly_cap_usd'),
});
export type AutoTopUpInput = Static<typeof AutoTopUpBody>;

export const WebhookReceived = Type.Object({
  received: Type.Boolean(),
  duplicate: Type.Boolean({ description: 'this event id was processed before: nothing changed' }),
});

/** What Stripe posts (documentation only: the route verifies the raw bytes, then reads them). */
export const StripeEventBody = Type.Object(
  {
    id: Type.String({ description: 'evt_…' }),
    type: Type.String({ description: 'e.g. checkout.session.completed' }),
    data: Type.Object({ object: Type.Object({}) }),
  },
  { description: "a Stripe event, signed in the Stripe-Signature header with the endpoint's secret" },
);

import { type Static, Type } from 'typebox';
import { CREDIT_STATES, CREDIT_TRANSACTION_TYPES } from '../../db/schema/credits.ts';
import { Body, Nullable, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

const literals = <const T extends readonly string[]>(values: T, description: string) =>
  Type.Enum(values as unknown as T[number][], { description });

/** Credits, counted to the micro-credit (six decimals; more are rounded); a billion at most in one go. */
const Amount = (description: string) =>
  Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000_000, description });
const Reference = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\s]+$' });
const Reason = Type.String({ minLength: 1, maxLength: 500 });

export const CreditAccount = Type.Object({
  team_id: Type.String(),
  balance: Type.Number({ description: 'credits; may go below zero when usage outran it (mode track)' }),
  held: Type.Number({ description: 'held by servers for model calls in flight' }),
  available: Type.Number({ description: 'balance − held: what new calls are admitted against' }),
  low_threshold: Type.Number({ description: 'below it the balance is low (credits.low)' }),
  state: literals(CREDIT_STATES, 'ok, low or exhausted'),
  mode: Type.String({ description: "the server's PADDOCK_CREDITS: off, track or enforce" }),
  price_per_credit_usd: Type.Number(),
  markup: Type.Number({ description: 'ledger cost × markup ÷ price per credit = credits consumed' }),
  updated_at: Timestamp,
});

export const UpdateAccountBody = Body({
  low_threshold: Nullable(
    Type.Number({ minimum: 0, maximum: 1_000_000_000, description: "credits; null: the server's default" }),
  ),
});
export type UpdateAccountInput = Static<typeof UpdateAccountBody>;

export const CreditTransaction = Type.Object({
  id: Type.String(),
  type: literals(CREDIT_TRANSACTION_TYPES, 'purchase, grant, consume, refund or adjustment'),
  amount: Type.Number({ description: 'credits, signed: consumption is negative' }),
  balance_after: Type.Number(),
  reason: Type.String(),
  action: Nullable(Type.String()),
  reference_type: Nullable(Type.String({ description: 'run, external, stripe, admin, lease' })),
  reference_id: Nullable(Type.String()),
  actor_kind: Type.String(),
  actor_id: Nullable(Type.String()),
  created_at: Timestamp,
});
export const CreditTransactions = Paginated(CreditTransaction);

export const TransactionListQuery = Type.Object(
  {
    ...PageQuery.properties,
    type: Type.Optional(literals(CREDIT_TRANSACTION_TYPES, 'only this type')),
    reference_id: Type.Optional(Reference),
  },
  { additionalProperties: false },
);
export type TransactionListInput = Static<typeof TransactionListQuery>;

export const ConsumeBody = Body({
  amount: Amount('credits to consume'),
  action: Type.String({ minLength: 1, maxLength: 100, description: 'what was used, e.g. "ocr.page"' }),
  reference_id: Reference,
  reason: Type.Optional(Reason),
});
export type ConsumeInput = Static<typeof ConsumeBody>;

export const AdjustBody = Body({
  type: literals(['grant', 'refund', 'adjustment'] as const, 'grant, refund or adjustment'),
  amount: Type.Number({
    minimum: -1_000_000_000,
    maximum: 1_000_000_000,
    description: 'credits; only an adjustment may be negative',
  }),
  reason: Reason,
  reference_id: Type.Optional(Reference),
});
export type AdjustInput = Static<typeof AdjustBody>;

export const Adjusted = Type.Object({ transaction: CreditTransaction, account: CreditAccount });

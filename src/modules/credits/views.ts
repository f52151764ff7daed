import type { CreditsConfig } from '../../config.ts';
import { iso } from '../identity/views.ts';
import { creditsOf } from './rate.ts';
import type { AccountRow, TransactionRow } from './repo.ts';

export function accountView(row: AccountRow, config: CreditsConfig, defaultThreshold: number) {
  return {
    team_id: row.teamId,
    balance: creditsOf(row.balance),
    held: creditsOf(row.held),
    available: creditsOf(row.balance - row.held),
    low_threshold: creditsOf(row.lowThreshold ?? defaultThreshold),
    state: row.state,
    mode: config.mode,
    price_per_credit_usd: config.priceUsd,
    markup: config.markup,
    updated_at: iso(row.updatedAt),
  };
}
export type AccountView = ReturnType<typeof accountView>;

export function transactionView(row: TransactionRow) {
  return {
    id: row.id,
    type: row.type,
    amount: creditsOf(row.amount),
    balance_after: creditsOf(row.balanceAfter),
    reason: row.reason,
    action: row.action,
    reference_type: row.referenceType,
    reference_id: row.referenceId,
    actor_kind: row.actorKind,
    actor_id: row.actorId,
    created_at: iso(row.createdAt),
  };
}
export type TransactionView = ReturnType<typeof transactionView>;

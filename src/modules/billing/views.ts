import type { BillingPlan, CreditPack } from '../../billing-config.ts';
import type { TeamId } from '../../core/ids.ts';
import { creditsOf } from '../credits/rate.ts';
import { iso } from '../identity/views.ts';
import type { BillingAccountRow, TopUpRow } from './repo.ts';

export function planView(plan: BillingPlan) {
  return { id: plan.id, name: plan.name, included_credits: plan.includedCredits, limits: plan.limits };
}

export function packView(pack: CreditPack) {
  return { id: pack.id, name: pack.name, credits: pack.credits, price_usd: pack.priceUsd };
}

export function billingView(
  teamId: TeamId,
  row: BillingAccountRow | undefined,
  plan: BillingPlan | undefined,
  month: { cents: number; credits: number; count: number },
  last: TopUpRow | undefined,
) {
  return {
    team_id: teamId,
    has_customer: Boolean(row?.stripeCustomerId),
    plan: plan ? planView(plan) : null,
    subscription: row?.subscriptionStatus
      ? {
          status: row.subscriptionStatus,
          current_period_end: row.currentPeriodEnd ? iso(row.currentPeriodEnd) : null,
        }
      : null,
    auto_top_up: {
      enabled: row?.autoTopUpEnabled ?? false,
      threshold_credits: row?.autoTopUpThreshold == null ? null : creditsOf(row.autoTopUpThreshold),
      pack_id: row?.autoTopUpPackId ?? null,
      monthly_cap_usd: row?.autoTopUpMonthlyCapCents == null ? null : row.autoTopUpMonthlyCapCents / 100,
      monthly_cap_credits:
        row?.autoTopUpMonthlyCapCredits == null ? null : creditsOf(row.autoTopUpMonthlyCapCredits),
      state: row?.topUpState ?? 'armed',
      this_month: { count: month.count, usd: month.cents / 100, credits: creditsOf(month.credits) },
      last: last
        ? {
            id: last.id,
            pack_id: last.packId,
            status: last.status,
            error: last.error,
            created_at: iso(last.createdAt),
            settled_at: last.settledAt ? iso(last.settledAt) : null,
          }
        : null,
    },
  };
}
export type BillingView = ReturnType<typeof billingView>;

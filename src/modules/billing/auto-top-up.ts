import type Stripe from 'stripe';
import type { BillingConfig } from '../../billing-config.ts';
import type { Context } from '../../core/context.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { creditsOf, microCreditsOf } from '../credits/rate.ts';
import type { EventsService } from '../events/service.ts';
import * as repo from './repo.ts';

/** A pending top-up with no PaymentIntent this long after it started was lost (a server stopped mid-way). */
const LOST_AFTER_MS = 60 * 60 * 1000;

/** Why a top-up did not happen or failed, as billing.top_up_failed says it. */
export type TopUpFailure = { code: string; message: string };

const SYSTEM = { actorKind: 'system', actorId: 'billing' } as const;

/** The first moment of `now`'s calendar month, UTC: monthly caps count from here. */
export function monthStart(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

/**
 * Auto top-up (docs/billing.md): told of balances after they change (never
 * on the gateway's path: the credits service calls its listeners after the
 * step writer's batch committed, without waiting), it charges a team's pack
 * off-session when the balance falls below the team's threshold — once per
 * crossing (the account's state moves armed → pending in one locked
 * transaction, so two servers seeing the same fall start one charge), never
 * past the monthly cap. Credits are added when Stripe's webhook says the
 * payment succeeded, not here.
 */
export class AutoTopUp {
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly config: BillingConfig,
    private readonly stripe: Stripe,
  ) {}

  /** The credits service's balance listener. */
  readonly listener = (balances: ReadonlyArray<{ teamId: TeamId; balance: number }>): Promise<void> =>
    this.track(this.check(balances));

  /** Resolves when every check started so far has ended (tests wait on it). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    return work.finally(() => this.inFlight.delete(work));
  }

  /** Balances (micro-credits) seen after a change: start a top-up where one is due, re-arm where it went back up. */
  async check(balances: ReadonlyArray<{ teamId: TeamId; balance: number }>): Promise<void> {
    const byTeam = new Map(balances.map((b) => [b.teamId, b.balance]));
    const accounts = await repo.autoTopUpAccounts(this.db, [...byTeam.keys()]);
    for (const account of accounts) {
      const balance = byTeam.get(account.teamId)!;
      const threshold = account.autoTopUpThreshold;
      if (threshold === null) continue;
      const now = this.ctx.clock.now();
      if (balance >= threshold) {
        if (account.topUpState === 'spent')
          await repo.moveTopUpState(this.db, account.teamId, 'spent', 'armed', now);
      } else if (account.topUpState === 'armed') {
        await this.start(account.teamId);
      } else if (account.topUpState === 'pending') {
        await this.failLost(account.teamId, now);
      }
    }
  }

  /** Claims the crossing and charges the pack; any refusal or decline is billing.top_up_failed, once. */
  private async start(teamId: TeamId): Promise<void> {
    const now = this.ctx.clock.now();
    const claim = await this.db.transaction(async (tx) => {
      const account = await repo.lockAccount(tx, teamId, now);
      if (!account.autoTopUpEnabled || account.topUpState !== 'armed') return undefined;
      const pack = this.config.creditPacks.find((p) => p.id === account.autoTopUpPackId);
      const refuse = async (failure: TopUpFailure) => {
        await repo.updateAccount(tx, teamId, { topUpState: 'spent' }, now);
        await this.recordFailure(tx, teamId, null, account.autoTopUpPackId, failure);
        return undefined;
      };
      if (!pack)
        return refuse({ code: 'pack_unavailable', message: 'the chosen credit pack is no longer offered' });
      if (!account.stripeCustomerId)
        return refuse({
          code: 'no_payment_method',
          message: 'the team has no Stripe customer yet: buy a plan or a credit pack first',
        });
      const cents = Math.round(pack.priceUsd * 100);
      const credits = microCreditsOf(pack.credits);
      const month = await repo.topUpsSince(tx, teamId, monthStart(now));
      const capCents = account.autoTopUpMonthlyCapCents;
      const capCredits = account.autoTopUpMonthlyCapCredits;
      if (
        (capCents !== null && month.cents + cents > capCents) ||
        (capCredits !== null && month.credits + credits > capCredits)
      )
        return refuse({
          code: 'monthly_cap_reached',
          message:
            capCents !== null
              ? `another ${pack.priceUsd} USD would pass this month's cap of ${capCents / 100} USD (${month.cents / 100} USD charged)`
              : `another ${pack.credits} credits would pass this month's cap of ${creditsOf(capCredits!)} credits (${creditsOf(month.credits)} bought)`,
        });
      const topUp = await repo.insertTopUp(tx, {
        id: newId('btu'),
        teamId,
        packId: pack.id,
        credits,
        amountCents: cents,
        paymentIntentId: null,
        status: 'pending',
        error: null,
        createdAt: now,
        settledAt: null,
      });
      await repo.updateAccount(tx, teamId, { topUpState: 'pending' }, now);
      await this.events.record(tx, {
        teamId,
        ...SYSTEM,
        subjectId: topUp.id,
        type: 'billing.top_up_started',
        data: { top_up_id: topUp.id, pack_id: pack.id, credits: pack.credits, amount_usd: cents / 100 },
      });
      return { topUp, customer: account.stripeCustomerId, pack };
    });
    if (!claim) return;
    try {
      const paymentMethod = await this.defaultPaymentMethod(claim.customer);
      if (!paymentMethod) {
        await this.fail(claim.topUp.id, {
          code: 'no_payment_method',
          message: 'the Stripe customer has no saved payment method',
        });
        return;
      }
      const intent = await this.stripe.paymentIntents.create(
        {
          amount: claim.topUp.amountCents,
          currency: 'usd',
          customer: claim.customer,
          payment_method: paymentMethod,
          off_session: true,
          confirm: true,
          description: `Paddock auto top-up: ${claim.pack.name}`,
          metadata: {
            team_id: teamId,
            kind: 'auto_top_up',
            top_up_id: claim.topUp.id,
            pack_id: claim.pack.id,
          },
        },
        // The same top-up never charges twice, whatever the network does.
        { idempotencyKey: `paddock-top-up-${claim.topUp.id}` },
      );
      await repo.setTopUpIntent(this.db, claim.topUp.id, intent.id);
      if (intent.status === 'requires_payment_method' || intent.status === 'requires_action')
        await this.fail(claim.topUp.id, {
          code: intent.status,
          message: 'the saved payment method needs the customer (declined, or authentication required)',
        });
    } catch (err) {
      // A decline arrives as an error (StripeCardError): its code and message, never card details.
      const e = err as { code?: string; decline_code?: string; message?: string; type?: string };
      await this.fail(claim.topUp.id, {
        code: e.decline_code ?? e.code ?? 'stripe_error',
        message:
          e.type === 'StripeCardError'
            ? (e.message ?? 'declined')
            : 'Stripe could not be reached or refused the request',
      });
      if (e.type !== 'StripeCardError') this.ctx.log.warn({ err, team_id: teamId }, 'an auto top-up failed');
    }
  }

  private async defaultPaymentMethod(customerId: string): Promise<string | undefined> {
    const customer = await this.stripe.customers.retrieve(customerId);
    if (!('deleted' in customer && customer.deleted)) {
      const pm = (customer as Stripe.Customer).invoice_settings?.default_payment_method;
      if (pm) return typeof pm === 'string' ? pm : pm.id;
    }
    const methods = await this.stripe.customers.listPaymentMethods(customerId, { limit: 1 });
    return methods.data[0]?.id;
  }

  /**
   * A top-up failed (declined, no card, lost): settled failed and the
   * crossing spent, so nothing retries until the balance is seen at the
   * threshold again or the settings change — no retry storm on a dead card.
   */
  async fail(topUpId: repo.TopUpId, failure: TopUpFailure): Promise<void> {
    const now = this.ctx.clock.now();
    await this.db.transaction((tx) => this.failIn(tx, topUpId, failure, now));
  }

  async failIn(tx: DbOrTx, topUpId: repo.TopUpId, failure: TopUpFailure, now: Date): Promise<void> {
    const settled = await repo.settleTopUp(tx, topUpId, 'failed', `${failure.code}: ${failure.message}`, now);
    if (!settled) return;
    await repo.moveTopUpState(tx, settled.teamId, 'pending', 'spent', now);
    await this.recordFailure(tx, settled.teamId, settled.id, settled.packId, failure);
  }

  /** Paid (Stripe's webhook): armed again if the balance is back at the threshold, else spent until it is. */
  async succeededIn(tx: DbOrTx, teamId: TeamId, balance: number, now: Date): Promise<void> {
    const account = await repo.findAccount(tx, teamId);
    const threshold = account?.autoTopUpThreshold ?? 0;
    await repo.moveTopUpState(tx, teamId, 'pending', balance >= threshold ? 'armed' : 'spent', now);
  }

  private async failLost(teamId: TeamId, now: Date): Promise<void> {
    const last = await repo.latestTopUp(this.db, teamId);
    if (
      last?.status === 'pending' &&
      last.paymentIntentId === null &&
      now.getTime() - last.createdAt.getTime() > LOST_AFTER_MS
    )
      await this.fail(last.id, {
        code: 'lost',
        message: 'the server starting the charge stopped before Stripe answered',
      });
  }

  private async recordFailure(
    tx: DbOrTx,
    teamId: TeamId,
    topUpId: string | null,
    packId: string | null,
    failure: TopUpFailure,
  ): Promise<void> {
    await this.events.record(tx, {
      teamId,
      ...SYSTEM,
      subjectId: topUpId ?? teamId,
      type: 'billing.top_up_failed',
      data: { top_up_id: topUpId, pack_id: packId, code: failure.code, message: failure.message },
    });
  }
}

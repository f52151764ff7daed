import type Stripe from 'stripe';
import type { BillingConfig, BillingPlan } from '../../billing-config.ts';
import type { Context } from '../../core/context.ts';
import { BadRequestError } from '../../core/errors.ts';
import { isId, type TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { creditsOf } from '../credits/rate.ts';
import type { CreditsService } from '../credits/service.ts';
import type { EventsService } from '../events/service.ts';
import type { AutoTopUp } from './auto-top-up.ts';
import * as repo from './repo.ts';

/**
 * A Stripe object read field by field: the SDK's types follow one API
 * version, and an account's webhooks may carry another (fields such as an
 * invoice's subscription moved between versions), so each field is looked
 * for where either shape keeps it.
 */
type Loose = Record<string, unknown>;

const obj = (v: unknown): Loose => (v !== null && typeof v === 'object' ? (v as Loose) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
/** An expandable field: an id, or the object holding it. */
const idOf = (v: unknown): string | undefined => str(v) ?? str(obj(v).id);
const metadataOf = (o: Loose): Record<string, string> => obj(o.metadata) as Record<string, string>;

const STRIPE_ACTOR = { actorKind: 'system', actorId: 'stripe' } as const;

/**
 * POST /v1/billing/stripe/webhook: the body verified with the SDK's
 * signature check against PADDOCK_STRIPE_WEBHOOK_SECRET, then applied in one
 * transaction that also records Stripe's event id — a replay finds the id and
 * changes nothing; the credit transactions carry Stripe's own ids as their
 * idempotency keys besides, so two events about one payment credit it once.
 */
export class StripeWebhooks {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly credits: CreditsService,
    private readonly config: BillingConfig,
    private readonly stripe: Stripe,
    private readonly autoTopUp: AutoTopUp,
  ) {}

  async receive(
    body: Buffer,
    signature: string | undefined,
  ): Promise<{ received: true; duplicate: boolean }> {
    let event: Stripe.Event;
    try {
      event = this.stripe.webhooks.constructEvent(body, signature ?? '', this.config.stripe!.webhookSecret);
    } catch {
      throw new BadRequestError(
        'invalid_signature',
        'the Stripe-Signature header does not verify this body with the endpoint secret (or it is older than 5 minutes)',
      );
    }
    const now = this.ctx.clock.now();
    const data = obj(event.data.object);
    const outcome = await this.db.transaction(async (tx) => {
      const teamId = await this.teamOf(tx, data);
      const first = await repo.markEventProcessed(
        tx,
        { id: event.id, type: event.type, teamId: teamId ?? null },
        now,
      );
      if (!first) return { duplicate: true, balance: undefined };
      if (!teamId) {
        if (event.type.startsWith('checkout.') || event.type.startsWith('invoice.'))
          this.ctx.log.warn(
            { stripe_event: event.id, type: event.type },
            'a Stripe event names no customer of a team here; ignored',
          );
        return { duplicate: false, balance: undefined };
      }
      const balance = await this.apply(tx, event, data, teamId, now);
      return { duplicate: false, balance: balance === undefined ? undefined : { teamId, balance } };
    });
    // Credits bought may lift the balance back over an auto top-up's threshold (re-armed).
    if (outcome.balance)
      this.autoTopUp
        .listener([outcome.balance])
        .catch((err: unknown) => this.ctx.log.error({ err }, 'auto top-up after a Stripe event failed'));
    return { received: true, duplicate: outcome.duplicate };
  }

  /**
   * The team an object is about: by its customer, which Paddock made for
   * that team. Metadata alone names no team: an event about a customer
   * Paddock did not make changes nothing.
   */
  private async teamOf(tx: DbOrTx, data: Loose): Promise<TeamId | undefined> {
    const customer = idOf(data.customer);
    return customer ? (await repo.findByCustomer(tx, customer))?.teamId : undefined;
  }

  /** Applies one event; the team's balance after it when credits were added. */
  private async apply(
    tx: DbOrTx,
    event: Stripe.Event,
    data: Loose,
    teamId: TeamId,
    now: Date,
  ): Promise<number | undefined> {
    const metadata = metadataOf(data);
    switch (event.type) {
      case 'checkout.session.completed':
      case 'checkout.session.async_payment_succeeded':
        if (data.mode === 'subscription') {
          await this.setSubscription(tx, teamId, now, {
            subscriptionId: idOf(data.subscription) ?? null,
            planId: this.plan(metadata.plan_id)?.id ?? null,
            status: undefined,
          });
          return undefined;
        }
        if (data.mode === 'payment' && metadata.kind === 'credit_pack' && data.payment_status === 'paid') {
          const credits = Number(metadata.credits);
          if (!(credits > 0)) return undefined;
          const reference = idOf(data.payment_intent) ?? str(data.id)!;
          return this.addCredits(tx, teamId, {
            type: 'purchase',
            amount: credits,
            reason: `credit pack ${metadata.pack_id ?? '(unnamed)'} bought through Stripe Checkout`,
            reference,
          });
        }
        return undefined;
      case 'invoice.paid': {
        const plan = this.planOfInvoice(data) ?? this.plan((await repo.findAccount(tx, teamId))?.planId);
        const invoiceId = str(data.id);
        if (!plan || !invoiceId || plan.includedCredits <= 0) return undefined;
        return this.addCredits(tx, teamId, {
          type: 'grant',
          amount: plan.includedCredits,
          reason: `${plan.name}: the plan's included credits for invoice ${invoiceId}`,
          reference: invoiceId,
        });
      }
      case 'customer.subscription.created':
      case 'customer.subscription.updated':
      case 'customer.subscription.deleted': {
        const account = await repo.lockAccount(tx, teamId, now);
        const at = new Date(event.created * 1000);
        // Stripe does not promise order: an older change arriving late is not applied over a newer one.
        if (account.subscriptionEventAt && account.subscriptionEventAt > at) return undefined;
        const deleted = event.type === 'customer.subscription.deleted';
        const item = obj((obj(data.items).data as unknown[] | undefined)?.[0]);
        const periodEnd = Number(item.current_period_end ?? data.current_period_end);
        await this.setSubscription(tx, teamId, now, {
          subscriptionId: str(data.id) ?? null,
          planId: deleted
            ? null
            : ((this.planOfPrice(idOf(item.price)) ?? this.plan(metadata.plan_id))?.id ?? null),
          status: deleted ? 'canceled' : (str(data.status) ?? 'active'),
          currentPeriodEnd: periodEnd > 0 ? new Date(periodEnd * 1000) : null,
          eventAt: at,
        });
        return undefined;
      }
      case 'payment_intent.succeeded': {
        if (metadata.kind !== 'auto_top_up' || !isId(metadata.top_up_id ?? '', 'btu')) return undefined;
        const topUp = await repo.findTopUp(tx, metadata.top_up_id as repo.TopUpId);
        if (!topUp || topUp.teamId !== teamId) return undefined;
        // Paid is paid: credited even if this server had given the top-up up as lost.
        await repo.settleTopUp(tx, topUp.id, 'succeeded', null, now);
        const balance = await this.addCredits(tx, teamId, {
          type: 'purchase',
          amount: creditsOf(topUp.credits),
          reason: `auto top-up: credit pack ${topUp.packId}`,
          reference: str(data.id)!,
        });
        await this.autoTopUp.succeededIn(tx, teamId, balance, now);
        return balance;
      }
      case 'payment_intent.payment_failed':
      case 'payment_intent.canceled': {
        if (metadata.kind !== 'auto_top_up' || !isId(metadata.top_up_id ?? '', 'btu')) return undefined;
        const error = obj(data.last_payment_error);
        await this.autoTopUp.failIn(
          tx,
          metadata.top_up_id as repo.TopUpId,
          {
            code:
              str(error.decline_code) ??
              str(error.code) ??
              (event.type === 'payment_intent.canceled' ? 'canceled' : 'payment_failed'),
            message: str(error.message) ?? 'Stripe reported the payment failed',
          },
          now,
        );
        return undefined;
      }
      case 'charge.refunded':
        // Credits are not taken back on their own (docs/billing.md): a platform admin decides.
        await this.events.record(tx, {
          teamId,
          ...STRIPE_ACTOR,
          subjectId: teamId,
          type: 'billing.charge_refunded',
          data: {
            charge_id: str(data.id) ?? '',
            payment_intent_id: idOf(data.payment_intent) ?? null,
            amount_refunded: Number(data.amount_refunded ?? 0) / 100,
            currency: str(data.currency) ?? 'usd',
          },
        });
        return undefined;
      default:
        return undefined;
    }
  }

  private async addCredits(
    tx: DbOrTx,
    teamId: TeamId,
    credit: { type: 'purchase' | 'grant'; amount: number; reason: string; reference: string },
  ): Promise<number> {
    const { balance } = await this.credits.addIn(tx, {
      teamId,
      type: credit.type,
      amount: credit.amount,
      reason: credit.reason,
      referenceType: 'stripe',
      referenceId: credit.reference,
      idempotencyKey: `stripe:${credit.reference}`,
      actor: STRIPE_ACTOR,
    });
    return balance;
  }

  private async setSubscription(
    tx: DbOrTx,
    teamId: TeamId,
    now: Date,
    change: {
      subscriptionId: string | null;
      planId: string | null;
      /** undefined: keep what subscription events said (a checkout says only that there is one). */
      status: string | undefined;
      currentPeriodEnd?: Date | null;
      eventAt?: Date;
    },
  ): Promise<void> {
    const before = await repo.lockAccount(tx, teamId, now);
    const status = change.status ?? before.subscriptionStatus ?? 'active';
    const planId = change.status === undefined ? (change.planId ?? before.planId) : change.planId;
    await repo.updateAccount(
      tx,
      teamId,
      {
        subscriptionId: change.subscriptionId ?? before.subscriptionId,
        planId,
        subscriptionStatus: status,
        ...(change.currentPeriodEnd !== undefined ? { currentPeriodEnd: change.currentPeriodEnd } : {}),
        ...(change.eventAt ? { subscriptionEventAt: change.eventAt } : {}),
      },
      now,
    );
    if (before.planId === planId && before.subscriptionStatus === status) return;
    await this.events.record(tx, {
      teamId,
      ...STRIPE_ACTOR,
      subjectId: teamId,
      type: 'billing.subscription_changed',
      data: {
        plan_id: planId,
        status,
        previous_plan_id: before.planId,
        previous_status: before.subscriptionStatus,
      },
    });
  }

  private plan(id: string | null | undefined): BillingPlan | undefined {
    return id ? this.config.plans.find((p) => p.id === id) : undefined;
  }

  private planOfPrice(priceId: string | undefined): BillingPlan | undefined {
    return priceId ? this.config.plans.find((p) => p.stripePriceId === priceId) : undefined;
  }

  /** The plan an invoice bills: its subscription's metadata, else a line's price. */
  private planOfInvoice(invoice: Loose): BillingPlan | undefined {
    const details = obj(obj(invoice.parent).subscription_details ?? invoice.subscription_details);
    const named = this.plan(metadataOf(details).plan_id);
    if (named) return named;
    for (const line of (obj(invoice.lines).data as unknown[] | undefined) ?? []) {
      const l = obj(line);
      const price = idOf(obj(obj(l.pricing).price_details).price) ?? idOf(l.price);
      const plan = this.planOfPrice(price);
      if (plan) return plan;
    }
    return undefined;
  }
}

import type Stripe from 'stripe';
import type { BillingConfig, BillingPlan, CreditPack } from '../../billing-config.ts';
import type { Context } from '../../core/context.ts';
import { AppError, NotFoundError, ValidationError } from '../../core/errors.ts';
import type { TeamId } from '../../core/ids.ts';
import { outboundRefusal } from '../../core/outbound-guard.ts';
import type { Db } from '../../db/client.ts';
import { microCreditsOf } from '../credits/rate.ts';
import type { CreditsService } from '../credits/service.ts';
import { activeTeam, managedTeam, type Principal, requireScope } from '../identity/principal.ts';
import { type AutoTopUp, monthStart } from './auto-top-up.ts';
import * as repo from './repo.ts';
import type { AutoTopUpInput, CheckoutInput, PackCheckoutInput, PortalInput } from './schemas.ts';
import { type BillingView, billingView, packView, planView } from './views.ts';

/** 502 stripe_error: Stripe refused a request or could not be reached. */
export class StripeRequestError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(502, 'stripe_error', message, details);
  }
}

/**
 * A Stripe call, its failures as 502 stripe_error. Stripe's message says
 * what was wrong with the request (an unknown price); an authentication
 * failure says only that, and key-like text never passes either way.
 */
export async function callStripe<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const e = err as { type?: string; message?: string; code?: string };
    if (typeof e?.type !== 'string' || !e.type.startsWith('Stripe')) throw err;
    const told =
      e.type === 'StripeAuthenticationError' || e.type === 'StripePermissionError'
        ? "Stripe refused the server's key (PADDOCK_STRIPE_SECRET_KEY)"
        : e.type === 'StripeConnectionError'
          ? (outboundRefusal((err as { detail?: unknown }).detail)?.message ?? 'Stripe could not be reached')
          : (e.message ?? 'Stripe refused the request').replace(/\b(sk|rk|whsec)_[A-Za-z0-9_]+/g, '$1_…');
    throw new StripeRequestError(`${what}: ${told}`, e.code ? { stripe_code: e.code } : undefined);
  }
}

/** 404 billing_disabled: this server has no Stripe key (docs/billing.md). */
export class BillingDisabledError extends AppError {
  constructor() {
    super(404, 'billing_disabled', 'billing is not configured on this server (PADDOCK_STRIPE_SECRET_KEY)');
  }
}

/**
 * Billing through Stripe (docs/billing.md): plans whose paid invoices grant
 * credits, one-time credit packs, the customer portal, auto top-up. Every
 * credit it adds goes through CreditsService.add, idempotent by Stripe's ids.
 */
export class BillingService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly credits: CreditsService,
    private readonly config: BillingConfig,
    private readonly stripe: Stripe | undefined,
    private readonly autoTopUp: AutoTopUp | undefined,
    /** The default return address after Checkout and the portal (PADDOCK_PUBLIC_URL). */
    private readonly publicUrl: string | undefined,
  ) {}

  get enabled(): boolean {
    return this.stripe !== undefined;
  }

  /** The SDK, or 404 billing_disabled. */
  private client(): Stripe {
    if (!this.stripe) throw new BillingDisabledError();
    return this.stripe;
  }

  plan(id: string | null | undefined): BillingPlan | undefined {
    return id ? this.config.plans.find((p) => p.id === id) : undefined;
  }

  pack(id: string | null | undefined): CreditPack | undefined {
    return id ? this.config.creditPacks.find((p) => p.id === id) : undefined;
  }

  /** Plans and credit packs on offer (any member). */
  catalog(principal: Principal) {
    this.client();
    activeTeam(principal);
    requireScope(principal, 'read');
    return { plans: this.config.plans.map(planView), credit_packs: this.config.creditPacks.map(packView) };
  }

  async get(principal: Principal): Promise<BillingView> {
    this.client();
    return this.viewOf(managedTeam(principal, 'admin', 'billing'));
  }

  async viewOf(teamId: TeamId): Promise<BillingView> {
    const row = await repo.findAccount(this.db, teamId);
    const month = await repo.topUpsSince(this.db, teamId, monthStart(this.ctx.clock.now()));
    const last = await repo.latestTopUp(this.db, teamId);
    return billingView(teamId, row, this.plan(row?.planId), month, last);
  }

  /** A Checkout Session that subscribes the team to a plan. */
  async checkout(principal: Principal, input: CheckoutInput) {
    this.client();
    const teamId = managedTeam(principal, 'admin', 'billing');
    const plan = this.plan(input.plan_id);
    if (!plan) throw new NotFoundError('plan', input.plan_id);
    const metadata = { team_id: teamId, kind: 'subscription', plan_id: plan.id };
    return this.openCheckout(teamId, plan.stripePriceId, input, {
      mode: 'subscription',
      metadata,
      subscription_data: { metadata },
    });
  }

  /** A Checkout Session that buys a credit pack once (and saves the card for auto top-up). */
  async packCheckout(principal: Principal, packId: string, input: PackCheckoutInput) {
    this.client();
    const teamId = managedTeam(principal, 'admin', 'billing');
    const pack = this.pack(packId);
    if (!pack) throw new NotFoundError('credit pack', packId);
    // The credits travel in the metadata: a pack renamed or removed later still credits what was paid for.
    const metadata = {
      team_id: teamId,
      kind: 'credit_pack',
      pack_id: pack.id,
      credits: String(pack.credits),
    };
    return this.openCheckout(teamId, pack.stripePriceId, input, {
      mode: 'payment',
      metadata,
      payment_intent_data: { metadata, setup_future_usage: 'off_session' },
    });
  }

  private async openCheckout(
    teamId: TeamId,
    price: string,
    input: PackCheckoutInput,
    params: Stripe.Checkout.SessionCreateParams,
  ) {
    const urls = {
      success_url: this.returnUrl(input.success_url, 'success_url', 'checkout=success'),
      cancel_url: this.returnUrl(input.cancel_url, 'cancel_url', 'checkout=cancelled'),
    };
    const customer = await this.customerOf(teamId);
    const stripe = this.client();
    const session = await callStripe('creating the Checkout Session', () =>
      stripe.checkout.sessions.create({
        ...params,
        ...urls,
        customer,
        client_reference_id: teamId,
        line_items: [{ price, quantity: 1 }],
      }),
    );
    if (!session.url) throw new StripeRequestError('Stripe answered a Checkout Session without a url');
    return { id: session.id, url: session.url };
  }

  /** Stripe's customer portal: cards, invoices, the plan's cancellation. */
  async portal(principal: Principal, input: PortalInput) {
    const stripe = this.client();
    const teamId = managedTeam(principal, 'admin', 'billing');
    const returnUrl = this.returnUrl(input.return_url, 'return_url', 'portal=closed');
    const customer = await this.customerOf(teamId);
    const session = await callStripe('opening the customer portal', () =>
      stripe.billingPortal.sessions.create({ customer, return_url: returnUrl }),
    );
    return { url: session.url };
  }

  async updateAutoTopUp(principal: Principal, input: AutoTopUpInput): Promise<BillingView> {
    this.client();
    const teamId = managedTeam(principal, 'admin', 'billing');
    if (input.pack_id !== undefined && !this.pack(input.pack_id))
      throw new ValidationError('the request body is invalid: pack_id', {
        pack_id: `no credit pack is called ${JSON.stringify(input.pack_id)} (GET /v1/billing/plans lists them)`,
      });
    const bothCaps = input.monthly_cap_usd != null && input.monthly_cap_credits != null;
    if (bothCaps)
      throw new ValidationError('the request body is invalid: monthly_cap_usd', {
        monthly_cap_usd: 'give monthly_cap_usd or monthly_cap_credits, not both',
      });
    const now = this.ctx.clock.now();
    await this.db.transaction(async (tx) => {
      const row = await repo.lockAccount(tx, teamId, now);
      const patch: Parameters<typeof repo.updateAccount>[2] = {};
      if (input.enabled !== undefined) patch.autoTopUpEnabled = input.enabled;
      if (input.threshold_credits !== undefined)
        patch.autoTopUpThreshold = microCreditsOf(input.threshold_credits);
      if (input.pack_id !== undefined) patch.autoTopUpPackId = input.pack_id;
      // One cap at a time: setting one clears the other.
      if (input.monthly_cap_usd !== undefined) {
        patch.autoTopUpMonthlyCapCents =
          input.monthly_cap_usd === null ? null : Math.round(input.monthly_cap_usd * 100);
        if (input.monthly_cap_usd !== null) patch.autoTopUpMonthlyCapCredits = null;
      }
      if (input.monthly_cap_credits !== undefined) {
        patch.autoTopUpMonthlyCapCredits =
          input.monthly_cap_credits === null ? null : microCreditsOf(input.monthly_cap_credits);
        if (input.monthly_cap_credits !== null) patch.autoTopUpMonthlyCapCents = null;
      }
      const next = { ...row, ...patch };
      if (next.autoTopUpEnabled) {
        const missing: Record<string, string> = {};
        if (next.autoTopUpThreshold == null) missing.threshold_credits = 'is required to enable auto top-up';
        if (!next.autoTopUpPackId) missing.pack_id = 'is required to enable auto top-up';
        if (next.autoTopUpMonthlyCapCents == null && next.autoTopUpMonthlyCapCredits == null)
          missing.monthly_cap_usd = 'a monthly cap (monthly_cap_usd or monthly_cap_credits) is required';
        if (Object.keys(missing).length > 0)
          throw new ValidationError(
            `the request body is invalid: ${Object.keys(missing).join(', ')}`,
            missing,
          );
      }
      // A change of settings (a new card, a higher cap) arms a spent top-up again.
      if (row.topUpState === 'spent') patch.topUpState = 'armed';
      await repo.updateAccount(tx, teamId, patch, now);
    });
    // Enabled while already below the threshold: the top-up starts now, not at the next change.
    if (this.autoTopUp) {
      const balance = microCreditsOf((await this.credits.viewOf(teamId)).balance);
      await this.autoTopUp
        .listener([{ teamId, balance }])
        .catch((err: unknown) => this.ctx.log.error({ err, team_id: teamId }, 'auto top-up failed to start'));
    }
    return this.viewOf(teamId);
  }

  /**
   * The team's Stripe customer, created on first need (metadata team_id).
   * Stripe's idempotency key makes two servers asking at once get one
   * customer; the first one recorded stays.
   */
  private async customerOf(teamId: TeamId): Promise<string> {
    const known = await repo.findAccount(this.db, teamId);
    if (known?.stripeCustomerId) return known.stripeCustomerId;
    const stripe = this.client();
    const customer = await callStripe('creating the Stripe customer', () =>
      stripe.customers.create(
        { metadata: { team_id: teamId }, description: `Paddock team ${teamId}` },
        { idempotencyKey: `paddock-customer-${teamId}` },
      ),
    );
    return repo.setCustomerOnce(this.db, teamId, customer.id, this.ctx.clock.now());
  }

  private returnUrl(given: string | undefined, field: string, marker: string): string {
    if (given) return given;
    if (!this.publicUrl)
      throw new ValidationError(`the request body is invalid: ${field}`, {
        [field]: 'is required: the server has no PADDOCK_PUBLIC_URL to send the browser back to',
      });
    return `${this.publicUrl.replace(/\/+$/, '')}/?billing=1&${marker}`;
  }
}

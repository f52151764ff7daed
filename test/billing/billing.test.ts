import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { StripeServer, signedEvent } from '../support/stripe.ts';

// Billing through Stripe: the official SDK pointed at a local server that
// records its requests; webhook bodies signed with the SDK's own test helper.

const SECRET_KEY = 'sk_test_paddockBillingKey123';
const WEBHOOK_SECRET = 'whsec_paddockBillingTestSecret';
const PLANS = [
  { id: 'pro', name: 'Pro', stripe_price_id: 'price_pro', included_credits: 1000, limits: { agents: 10 } },
];
const PACKS = [{ id: 'small', name: 'Small', credits: 500, stripe_price_id: 'price_small', price_usd: 5 }];

function billingEnv(apiUrl: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PADDOCK_CREDITS: 'enforce',
    PADDOCK_STRIPE_SECRET_KEY: SECRET_KEY,
    PADDOCK_STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    PADDOCK_STRIPE_API_URL: apiUrl,
    PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    PADDOCK_BILLING_PLANS: JSON.stringify(PLANS),
    PADDOCK_BILLING_CREDIT_PACKS: JSON.stringify(PACKS),
    PADDOCK_PUBLIC_URL: 'https://paddock.example.com',
    ...extra,
  };
}

describe('billing with Stripe', () => {
  const stripe = new StripeServer();
  let t: TestApp;
  let owner: SignedUpUser;
  const logLines: string[] = [];

  beforeAll(async () => {
    t = await createTestApp({
      env: billingEnv(await stripe.start(), { PADDOCK_LOG_LEVEL: 'debug' }),
      logDestination: { write: (line) => void logLines.push(line) },
    });
    owner = await t.signup();
  });
  afterAll(async () => {
    await t.close();
    await stripe.close();
  });

  const webhook = (
    event: { id: string; type: string; object: Record<string, unknown>; created?: number },
    secret = WEBHOOK_SECRET,
  ) => {
    const { payload, signature } = signedEvent(secret, event);
    return t.call('POST', '/v1/billing/stripe/webhook', {
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: payload,
    });
  };
  const balance = async (user: SignedUpUser) =>
    (await t.call('GET', '/v1/credits', { token: user.token })).body.balance as number;
  const transactions = async (user: SignedUpUser, type: string): Promise<Json[]> =>
    (await t.call('GET', '/v1/credits/transactions', { token: user.token, query: { type } })).body.data;
  const billing = async (user: SignedUpUser): Promise<Json> => {
    const res = await t.call('GET', '/v1/billing', { token: user.token });
    expect(res.status).toBe(200);
    return res.body;
  };
  const events = async (user: SignedUpUser, type: string): Promise<Json[]> =>
    (await t.call('GET', '/v1/events', { token: user.token, query: { type } })).body.data;
  const consume = async (user: SignedUpUser, amount: number, reference: string) => {
    const res = await t.call('POST', '/v1/credits/consume', {
      token: user.token,
      body: { amount, action: 'test.use', reference_id: reference },
    });
    expect(res.status).toBe(201);
    await t.services.autoTopUp!.idle();
  };
  /** A team with a Stripe customer (through a pack checkout): the customer's id. */
  const customerOf = async (user: SignedUpUser): Promise<string> => {
    const res = await t.call('POST', '/v1/billing/credit-packs/small/checkout', {
      token: user.token,
      body: {},
    });
    expect(res.status).toBe(201);
    const created = stripe
      .sent('POST', '/v1/customers')
      .find((r) => r.form['metadata[team_id]'] === user.team.id);
    return `cus_test${stripe.requests.indexOf(created!) + 1}`;
  };
  const packPaid = (user: SignedUpUser, customer: string, eventId: string, paymentIntent: string) => ({
    id: eventId,
    type: 'checkout.session.completed',
    object: {
      id: `cs_${paymentIntent}`,
      object: 'checkout.session',
      mode: 'payment',
      payment_status: 'paid',
      customer,
      payment_intent: paymentIntent,
      metadata: { team_id: user.team.id, kind: 'credit_pack', pack_id: 'small', credits: '500' },
    },
  });

  it('shows a team without billing yet, and the plans and packs on offer', async () => {
    const view = await billing(owner);
    expect(view).toMatchObject({
      team_id: owner.team.id,
      has_customer: false,
      plan: null,
      subscription: null,
      auto_top_up: { enabled: false, state: 'armed', this_month: { count: 0, usd: 0 }, last: null },
    });
    const catalog = await t.call('GET', '/v1/billing/plans', { token: owner.token });
    expect(catalog.status).toBe(200);
    expect(catalog.body).toEqual({
      plans: [{ id: 'pro', name: 'Pro', included_credits: 1000, limits: { agents: 10 } }],
      credit_packs: [{ id: 'small', name: 'Small', credits: 500, price_usd: 5 }],
    });
    // Stripe's price ids and the key stay on the server.
    expect(JSON.stringify(catalog.body)).not.toMatch(/price_(pro|small)/);
  });

  it('creates one customer per team (metadata team_id) and a Checkout Session for a pack', async () => {
    const first = await t.call('POST', '/v1/billing/credit-packs/small/checkout', { token: owner.token });
    expect(first.status).toBe(201);
    expect(first.body.url).toMatch(/^https:\/\/checkout\.stripe\.test\/c\/cs_test/);
    const again = await t.call('POST', '/v1/billing/credit-packs/small/checkout', {
      token: owner.token,
      body: { success_url: 'https://app.example.com/ok', cancel_url: 'https://app.example.com/back' },
    });
    expect(again.status).toBe(201);

    const customers = stripe.sent('POST', '/v1/customers');
    expect(customers).toHaveLength(1);
    expect(customers[0]!.form['metadata[team_id]']).toBe(owner.team.id);
    expect(customers[0]!.idempotencyKey).toBe(`paddock-customer-${owner.team.id}`);
    expect(customers[0]!.authorization).toBe(`Bearer ${SECRET_KEY}`);
    const sessions = stripe.sent('POST', '/v1/checkout/sessions');
    expect(sessions).toHaveLength(2);
    expect(sessions[0]!.form).toMatchObject({
      mode: 'payment',
      customer: 'cus_test1',
      'line_items[0][price]': 'price_small',
      'metadata[team_id]': owner.team.id,
      'metadata[credits]': '500',
      'payment_intent_data[setup_future_usage]': 'off_session',
      success_url: 'https://paddock.example.com/?billing=1&checkout=success',
    });
    expect(sessions[1]!.form.success_url).toBe('https://app.example.com/ok');
    expect((await billing(owner)).has_customer).toBe(true);

    const unknown = await t.call('POST', '/v1/billing/credit-packs/huge/checkout', { token: owner.token });
    expect(unknown.status).toBe(404);
    const portal = await t.call('POST', '/v1/billing/portal', { token: owner.token, body: {} });
    expect(portal.status).toBe(201);
    expect(portal.body.url).toMatch(/^https:\/\/billing\.stripe\.test\/p\//);
    expect(stripe.sent('POST', '/v1/billing_portal/sessions')[0]!.form.customer).toBe('cus_test1');
    expect(stripe.sent('POST', '/v1/customers')).toHaveLength(1);
  });

  it('credits a paid pack once, however often Stripe delivers the event', async () => {
    const event = packPaid(owner, 'cus_test1', 'evt_pack_1', 'pi_pack_1');
    const first = await webhook(event);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ received: true, duplicate: false });
    const replay = await webhook(event);
    expect(replay.status).toBe(200);
    expect(replay.body.duplicate).toBe(true);
    // Another event about the same payment (a different event id): the transaction's key holds.
    const async = await webhook({
      ...event,
      id: 'evt_pack_1_async',
      type: 'checkout.session.async_payment_succeeded',
    });
    expect(async.body.duplicate).toBe(false);

    expect(await balance(owner)).toBe(500);
    const purchases = await transactions(owner, 'purchase');
    expect(purchases).toHaveLength(1);
    expect(purchases[0]).toMatchObject({ amount: 500, reference_type: 'stripe', reference_id: 'pi_pack_1' });
    expect((await events(owner, 'credits.added')).filter((e) => e.data.type === 'purchase')).toHaveLength(1);
  });

  it('answers a bad signature with 400 and changes nothing', async () => {
    const event = packPaid(owner, 'cus_test1', 'evt_forged', 'pi_forged');
    const forged = await webhook(event, 'whsec_notTheEndpointSecret');
    expect(forged.status).toBe(400);
    expect(forged.body.error.code).toBe('invalid_signature');
    const { payload, signature } = signedEvent(WEBHOOK_SECRET, event);
    const tampered = await t.call('POST', '/v1/billing/stripe/webhook', {
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: payload.replace('"500"', '"50000"'),
    });
    expect(tampered.status).toBe(400);
    const unsigned = await t.call('POST', '/v1/billing/stripe/webhook', {
      headers: { 'content-type': 'application/json' },
      body: payload,
    });
    expect(unsigned.status).toBe(400);
    expect(await balance(owner)).toBe(500);
    expect(await transactions(owner, 'purchase')).toHaveLength(1);
    // Nothing was recorded of the refused deliveries: the genuine one still applies.
    const genuine = await webhook(event);
    expect(genuine.body.duplicate).toBe(false);
    expect(await balance(owner)).toBe(1000);
  });

  it('subscribes through Checkout, grants the plan credits once per paid invoice, follows the subscription', async () => {
    const checkout = await t.call('POST', '/v1/billing/checkout', {
      token: owner.token,
      body: { plan_id: 'pro' },
    });
    expect(checkout.status).toBe(201);
    const session = stripe.sent('POST', '/v1/checkout/sessions').at(-1)!;
    expect(session.form).toMatchObject({
      mode: 'subscription',
      'line_items[0][price]': 'price_pro',
      'subscription_data[metadata][plan_id]': 'pro',
    });
    expect(
      (await t.call('POST', '/v1/billing/checkout', { token: owner.token, body: { plan_id: 'gold' } }))
        .status,
    ).toBe(404);

    await webhook({
      id: 'evt_sub_checkout',
      type: 'checkout.session.completed',
      object: {
        id: 'cs_sub',
        object: 'checkout.session',
        mode: 'subscription',
        customer: 'cus_test1',
        subscription: 'sub_1',
        metadata: { team_id: owner.team.id, kind: 'subscription', plan_id: 'pro' },
      },
    });
    expect(await billing(owner)).toMatchObject({
      plan: { id: 'pro', included_credits: 1000 },
      subscription: { status: 'active' },
    });

    const invoice = (id: string) => ({
      id: `evt_${id}`,
      type: 'invoice.paid',
      object: {
        id,
        object: 'invoice',
        customer: 'cus_test1',
        parent: { subscription_details: { subscription: 'sub_1', metadata: { plan_id: 'pro' } } },
      },
    });
    const before = await balance(owner);
    await webhook(invoice('in_1'));
    await webhook(invoice('in_1'));
    await webhook({ ...invoice('in_1'), id: 'evt_in_1_again' });
    expect(await balance(owner)).toBe(before + 1000);
    await webhook(invoice('in_2'));
    expect(await balance(owner)).toBe(before + 2000);
    const grants = await transactions(owner, 'grant');
    expect(grants.map((g) => g.reference_id).sort()).toEqual(['in_1', 'in_2']);

    const now = Math.floor(Date.now() / 1000);
    const subscription = (id: string, type: string, status: string, created: number) => ({
      id,
      type,
      created,
      object: {
        id: 'sub_1',
        object: 'subscription',
        customer: 'cus_test1',
        status,
        items: { data: [{ price: { id: 'price_pro' }, current_period_end: now + 30 * 86400 }] },
      },
    });
    await webhook(subscription('evt_sub_pd', 'customer.subscription.updated', 'past_due', now));
    expect((await billing(owner)).subscription.status).toBe('past_due');
    // An older event delivered late does not undo a newer one.
    await webhook(subscription('evt_sub_old', 'customer.subscription.updated', 'active', now - 60));
    expect((await billing(owner)).subscription.status).toBe('past_due');
    await webhook(subscription('evt_sub_del', 'customer.subscription.deleted', 'canceled', now + 1));
    const ended = await billing(owner);
    expect(ended.plan).toBeNull();
    expect(ended.subscription.status).toBe('canceled');
    const changes = await events(owner, 'billing.subscription_changed');
    expect(changes.map((e) => e.data.status).reverse()).toEqual(['active', 'past_due', 'canceled']);
  });

  it('tops up once when the balance falls under the threshold, and never past the monthly cap', async () => {
    const user = await t.signup();
    const customer = await customerOf(user);
    await webhook(packPaid(user, customer, 'evt_user_pack', 'pi_user_pack'));
    expect(await balance(user)).toBe(500);

    const settings = await t.call('PATCH', '/v1/billing/auto-top-up', {
      token: user.token,
      body: { enabled: true, threshold_credits: 400, pack_id: 'small', monthly_cap_usd: 5 },
    });
    expect(settings.status).toBe(200);
    expect(settings.body.auto_top_up).toMatchObject({
      enabled: true,
      threshold_credits: 400,
      monthly_cap_usd: 5,
    });
    const intents = () =>
      stripe.sent('POST', '/v1/payment_intents').filter((r) => r.form.customer === customer);
    await consume(user, 50, 'above-threshold');
    expect(intents()).toHaveLength(0);

    await consume(user, 150, 'crossing');
    await consume(user, 10, 'still-low');
    expect(intents()).toHaveLength(1);
    const intent = intents()[0]!;
    expect(intent.form).toMatchObject({
      amount: '500',
      currency: 'usd',
      customer,
      payment_method: 'pm_card_visa',
      off_session: 'true',
      confirm: 'true',
      'metadata[kind]': 'auto_top_up',
    });
    expect(intent.idempotencyKey).toBe(`paddock-top-up-${intent.form['metadata[top_up_id]']}`);
    // Nothing credited until Stripe says it is paid.
    expect(await balance(user)).toBe(290);
    expect((await billing(user)).auto_top_up).toMatchObject({
      state: 'pending',
      this_month: { count: 1, usd: 5 },
    });

    const paid = {
      id: 'evt_topup_paid',
      type: 'payment_intent.succeeded',
      object: {
        id: 'pi_topup_1',
        object: 'payment_intent',
        customer,
        metadata: {
          team_id: user.team.id,
          kind: 'auto_top_up',
          top_up_id: intent.form['metadata[top_up_id]'],
        },
      },
    };
    await webhook(paid);
    await webhook(paid);
    await t.services.autoTopUp!.idle();
    expect(await balance(user)).toBe(790);
    expect((await billing(user)).auto_top_up).toMatchObject({
      state: 'armed',
      last: { status: 'succeeded' },
    });

    // Below the threshold again, but another 5 USD would pass the 5 USD cap: no charge, one event.
    await consume(user, 400, 'second-crossing');
    await consume(user, 1, 'still-capped');
    expect(intents()).toHaveLength(1);
    const failed = await events(user, 'billing.top_up_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.data.code).toBe('monthly_cap_reached');
    expect((await billing(user)).auto_top_up.state).toBe('spent');

    // A declined card: billing.top_up_failed once, and no retry while the balance stays low.
    stripe.decline = {
      code: 'card_declined',
      decline_code: 'insufficient_funds',
      message: 'Your card has insufficient funds.',
    };
    try {
      const raised = await t.call('PATCH', '/v1/billing/auto-top-up', {
        token: user.token,
        body: { monthly_cap_usd: 50 },
      });
      expect(raised.status).toBe(200);
      await t.services.autoTopUp!.idle();
      expect(intents()).toHaveLength(2);
      await consume(user, 1, 'after-decline');
      expect(intents()).toHaveLength(2);
      const declined = (await events(user, 'billing.top_up_failed')).filter(
        (e) => e.data.code === 'insufficient_funds',
      );
      expect(declined).toHaveLength(1);
      expect((await billing(user)).auto_top_up).toMatchObject({ state: 'spent', last: { status: 'failed' } });
      expect(await balance(user)).toBe(388);
    } finally {
      stripe.decline = undefined;
    }
  });

  it('refuses auto top-up settings without a pack, a threshold and a cap', async () => {
    const user = await t.signup();
    const incomplete = await t.call('PATCH', '/v1/billing/auto-top-up', {
      token: user.token,
      body: { enabled: true, threshold_credits: 10 },
    });
    expect(incomplete.status).toBe(400);
    expect(Object.keys(incomplete.body.error.details.fields).sort()).toEqual(['monthly_cap_usd', 'pack_id']);
    const unknownPack = await t.call('PATCH', '/v1/billing/auto-top-up', {
      token: user.token,
      body: { pack_id: 'nope' },
    });
    expect(unknownPack.status).toBe(400);
  });

  it('is for team admins: 403 to keys without the admin scope and to agent-less members', async () => {
    const writer = await t.apiKey(owner.token, ['write']);
    for (const [method, url] of [
      ['GET', '/v1/billing'],
      ['POST', '/v1/billing/portal'],
      ['POST', '/v1/billing/credit-packs/small/checkout'],
      ['PATCH', '/v1/billing/auto-top-up'],
    ] as const) {
      const res = await t.call(method, url, { token: writer.key, body: {} });
      expect(res.status, `${method} ${url}`).toBe(403);
    }
    const adminKey = await t.apiKey(owner.token, ['admin']);
    expect((await t.call('GET', '/v1/billing', { token: adminKey.key })).status).toBe(200);
    expect((await t.call('GET', '/v1/billing/plans', { token: writer.key })).status).toBe(200);
  });
  it('never logs, answers or records the Stripe key or the webhook secret', async () => {
    // One more Stripe round trip, its request logged at debug.
    const checkout = await t.call('POST', '/v1/billing/checkout', {
      token: owner.token,
      body: { plan_id: 'pro', success_url: 'https://x.example/ok', cancel_url: 'https://x.example/no' },
    });
    expect(checkout.status).toBe(201);
    const all = await t.call('GET', '/v1/events', { token: owner.token, query: { limit: '200' } });
    const seen = [logLines.join('\n'), JSON.stringify(all.body), JSON.stringify(await billing(owner))].join(
      '\n',
    );
    expect(logLines.length).toBeGreaterThan(0);
    expect(seen).not.toContain(SECRET_KEY);
    expect(seen).not.toContain(WEBHOOK_SECRET);
  });
});

describe('billing off', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('answers every billing route 404 billing_disabled, the webhook too', async () => {
    const owner = await t.signup();
    for (const [method, url, body] of [
      ['GET', '/v1/billing', undefined],
      ['GET', '/v1/billing/plans', undefined],
      ['POST', '/v1/billing/checkout', { plan_id: 'pro' }],
      ['POST', '/v1/billing/portal', {}],
      ['PATCH', '/v1/billing/auto-top-up', { enabled: false }],
    ] as const) {
      const res = await t.call(method, url, { token: owner.token, ...(body ? { body } : {}) });
      expect(res.status, url).toBe(404);
      expect(res.body.error.code).toBe('billing_disabled');
    }
    const { payload, signature } = signedEvent(WEBHOOK_SECRET, {
      id: 'evt_off',
      type: 'invoice.paid',
      object: { id: 'in_off' },
    });
    const hook = await t.call('POST', '/v1/billing/stripe/webhook', {
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: payload,
    });
    expect(hook.status).toBe(404);
    expect(hook.body.error.code).toBe('billing_disabled');
  });
});

describe('billing settings', () => {
  const base = {
    PADDOCK_CREDITS: 'enforce',
    PADDOCK_STRIPE_SECRET_KEY: SECRET_KEY,
    PADDOCK_STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  };
  const problems = (env: NodeJS.ProcessEnv): string[] => {
    try {
      loadConfig(env);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };

  it('refuses to start billing without credits, without a webhook secret, or with a broken plan, never echoing secrets', () => {
    const off = problems({ ...base, PADDOCK_CREDITS: 'off' });
    expect(off.join('\n')).toContain('PADDOCK_CREDITS=enforce');
    const noSecret = problems({ ...base, PADDOCK_STRIPE_WEBHOOK_SECRET: '' });
    expect(noSecret.join('\n')).toContain('PADDOCK_STRIPE_WEBHOOK_SECRET is required');
    const badKey = problems({ ...base, PADDOCK_STRIPE_SECRET_KEY: 'pk_test_publishable_not_secret' });
    expect(badKey.join('\n')).toContain('PADDOCK_STRIPE_SECRET_KEY');
    expect(badKey.join('\n')).not.toContain('pk_test_publishable_not_secret');
    const plans = problems({
      ...base,
      PADDOCK_BILLING_PLANS: JSON.stringify([
        { id: 'Pro!', stripe_price_id: 'prod_x', included_credits: -1 },
      ]),
    });
    expect(plans).toEqual(
      expect.arrayContaining([
        expect.stringContaining('PADDOCK_BILLING_PLANS[0].id'),
        expect.stringContaining('PADDOCK_BILLING_PLANS[0].stripe_price_id'),
        expect.stringContaining('PADDOCK_BILLING_PLANS[0].included_credits'),
      ]),
    );
    expect(problems({ ...base, PADDOCK_STRIPE_API_URL: 'http://user:pw@stripe.local/v1' })).toHaveLength(1);
    expect(problems({ ...base, PADDOCK_BILLING_CREDIT_PACKS: '[{"id":"x"' })[0]).toContain('not valid JSON');
    expect(problems(base)).toEqual([]);
  });

  it("holds PADDOCK_STRIPE_API_URL to the outbound guard: loopback without the admin's allowance is refused", async () => {
    const stripe = new StripeServer();
    const url = await stripe.start();
    const t = await createTestApp({ env: billingEnv(url, { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '' }) });
    try {
      const owner = await t.signup();
      const res = await t.call('POST', '/v1/billing/portal', { token: owner.token, body: {} });
      expect(res.status).toBe(502);
      expect(res.body.error.code).toBe('stripe_error');
      expect(res.body.error.message).toContain('PADDOCK_ALLOW_PRIVATE_UPSTREAMS');
      expect(JSON.stringify(res.body)).not.toContain(SECRET_KEY);
      expect(stripe.requests).toHaveLength(0);
    } finally {
      await t.close();
      await stripe.close();
    }
  });
});

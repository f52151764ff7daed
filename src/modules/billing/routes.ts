import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import { BillingDisabledError, type BillingService } from './service.ts';
import type { StripeWebhooks } from './webhooks.ts';

/** Stripe's events are small; a megabyte is far past any of them. */
const WEBHOOK_BODY_MAX_BYTES = 1024 * 1024;

export function registerBillingRoutes(
  app: App,
  billing: BillingService,
  webhooks: StripeWebhooks | undefined,
): void {
  const tags = ['billing'];
  const read = { auth: { scope: 'read' } as const };
  const admin = { auth: { scope: 'admin' } as const };
  // Every billing route answers 404 billing_disabled on a server without a Stripe key.
  const disabled = 404;
  // An empty POST (`curl -X POST …/portal`) means the defaults.
  const emptyBody = async (request: { body: unknown }) => {
    request.body ??= {};
  };

  app.get(
    '/v1/billing',
    {
      config: admin,
      schema: {
        tags,
        summary: "Team admins: the team's plan, subscription, Stripe customer and auto top-up",
        response: { 200: s.Billing, ...errorResponses(disabled) },
      },
    },
    async (request) => billing.get(principalOf(request)),
  );

  app.get(
    '/v1/billing/plans',
    {
      config: read,
      schema: {
        tags,
        summary: 'The plans and credit packs this server sells',
        response: { 200: s.Catalog, ...errorResponses(disabled) },
      },
    },
    async (request) => billing.catalog(principalOf(request)),
  );

  app.post(
    '/v1/billing/checkout',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Team admins: a Stripe Checkout URL that subscribes the team to a plan',
        body: s.CheckoutBody,
        response: { 201: s.CheckoutSession, ...errorResponses(disabled, 502) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await billing.checkout(principalOf(request), request.body)),
  );

  app.post(
    '/v1/billing/credit-packs/:id/checkout',
    {
      config: admin,
      preValidation: emptyBody,
      schema: {
        tags,
        summary: 'Team admins: a Stripe Checkout URL that buys a credit pack once',
        params: IdParams,
        body: s.PackCheckoutBody,
        response: { 201: s.CheckoutSession, ...errorResponses(disabled, 502) },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await billing.packCheckout(principalOf(request), request.params.id, request.body)),
  );

  app.post(
    '/v1/billing/portal',
    {
      config: admin,
      preValidation: emptyBody,
      schema: {
        tags,
        summary: "Team admins: a URL of Stripe's customer portal (cards, invoices, cancelling the plan)",
        body: s.PortalBody,
        response: { 201: s.PortalSession, ...errorResponses(disabled, 502) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await billing.portal(principalOf(request), request.body)),
  );

  app.patch(
    '/v1/billing/auto-top-up',
    {
      config: admin,
      schema: {
        tags,
        summary:
          'Team admins: charge a credit pack when the balance falls below a threshold, up to a monthly cap',
        body: s.AutoTopUpBody,
        response: { 200: s.Billing, ...errorResponses(disabled) },
      },
    },
    async (request) => billing.updateAutoTopUp(principalOf(request), request.body),
  );

  // Stripe's signature is over the exact bytes: this route keeps its body raw, in its own scope.
  app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post(
      '/v1/billing/stripe/webhook',
      {
        // Stripe's signature (Stripe-Signature, the endpoint secret) is the credential.
        config: { auth: 'public' },
        bodyLimit: WEBHOOK_BODY_MAX_BYTES,
        // The body schema documents what Stripe sends; the signature check, not a schema, admits it.
        validatorCompiler: () => () => true,
        schema: {
          tags,
          body: s.StripeEventBody,
          summary: "Stripe's webhook: verified by its signature, applied once per event id",
          response: { 200: s.WebhookReceived, ...errorResponses(disabled, 413) },
        },
      },
      async (request) => {
        if (!webhooks) throw new BillingDisabledError();
        const raw: unknown = request.body;
        const body = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0);
        const signature = request.headers['stripe-signature'];
        return webhooks.receive(body, typeof signature === 'string' ? signature : undefined);
      },
    );
  });
}

import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { WebhooksService } from './service.ts';

export function registerWebhookRoutes(app: App, webhooks: WebhooksService): void {
  const tags = ['webhooks'];
  // Team API keys and members; agent keys are refused (the service says so: 403 agent_key_not_allowed).
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/webhooks',
    {
      config: write,
      schema: {
        tags,
        summary: 'Subscribe an endpoint to event types; the answer holds its signing secret, shown only here',
        body: s.CreateWebhookBody,
        response: { 201: s.CreatedWebhook, ...errorResponses() },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await webhooks.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/webhooks',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's webhooks, newest first",
        querystring: s.WebhookListQuery,
        response: { 200: s.Webhooks },
      },
    },
    async (request) => webhooks.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/webhooks/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One webhook (never its secret)',
        params: IdParams,
        response: { 200: s.Webhook, ...errorResponses(404) },
      },
    },
    async (request) => webhooks.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/webhooks/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Change the url, event types (replaced), agent or description',
        params: IdParams,
        body: s.UpdateWebhookBody,
        response: { 200: s.Webhook, ...errorResponses(404) },
      },
    },
    async (request) => webhooks.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a webhook with its deliveries and their log',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await webhooks.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  const action = (
    path: string,
    summary: string,
    run: (id: string, request: { principal: ReturnType<typeof principalOf> }) => Promise<unknown>,
    response: object = s.Webhook,
  ) =>
    app.post(
      `/v1/webhooks/:id/${path}`,
      {
        config: write,
        schema: { tags, summary, params: IdParams, response: { 200: response, ...errorResponses(404) } },
      },
      async (request) => run(request.params.id, { principal: principalOf(request) }),
    );
  action('enable', 'Make a paused or failing webhook active again (its failure count back to 0)', (id, r) =>
    webhooks.setStatus(r.principal, id, 'active'),
  );
  action('disable', 'Pause a webhook: no new deliveries; queued ones end failed unsent', (id, r) =>
    webhooks.setStatus(r.principal, id, 'paused'),
  );
  action(
    'rotate-secret',
    'A new secret, shown once; for 10 minutes deliveries carry a signature with the old one too',
    (id, r) => webhooks.rotateSecret(r.principal, id),
    s.RotatedSecret,
  );
  action('expire-previous-secret', "End a rotation's window now: only the new secret signs", (id, r) =>
    webhooks.expirePreviousSecret(r.principal, id),
  );
  action(
    'test',
    'Send a webhook.test event to the endpoint now (once, whatever its status) and answer how it went',
    (id, r) => webhooks.test(r.principal, id),
    s.Attempt,
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      config: read,
      schema: {
        tags,
        summary:
          "The webhook's delivery attempts, newest first: status code, duration, error, the answer's first 4 KB",
        params: IdParams,
        querystring: s.WebhookListQuery,
        response: { 200: s.Attempts, ...errorResponses(404) },
      },
    },
    async (request) => webhooks.attempts(principalOf(request), request.params.id, request.query),
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:delivery_id/redeliver',
    {
      config: write,
      schema: {
        tags,
        summary: 'Send an ended delivery once more (same webhook-id and body); 409 while it is pending',
        params: s.DeliveryParams,
        response: { 202: s.Delivery, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply
        .status(202)
        .send(await webhooks.redeliver(principalOf(request), request.params.id, request.params.delivery_id)),
  );
}

import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { CreditsService } from './service.ts';

export function registerCreditRoutes(app: App, credits: CreditsService): void {
  const tags = ['credits'];
  const read = { auth: { scope: 'read', agent: 'also' } as const };
  const admin = { auth: { scope: 'admin' } as const };
  const consume = { auth: { scope: 'write', agent: 'also' } as const };
  // The service checks that the session is a platform admin's.
  const platformAdmin = { auth: { scope: 'read', session: true, team: false } as const };

  app.get(
    '/v1/credits',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's credit balance, what is held for calls in flight, and the server's rate",
        response: { 200: s.CreditAccount },
      },
    },
    async (request) => credits.get(principalOf(request)),
  );

  app.patch(
    '/v1/credits',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Set the balance below which the team is low (credits.low)',
        body: s.UpdateAccountBody,
        response: { 200: s.CreditAccount, ...errorResponses() },
      },
    },
    async (request) => credits.update(principalOf(request), request.body),
  );

  app.get(
    '/v1/credits/transactions',
    {
      config: read,
      schema: {
        tags,
        summary: 'Purchases, grants, consumption, refunds and adjustments, newest first',
        querystring: s.TransactionListQuery,
        response: { 200: s.CreditTransactions, ...errorResponses() },
      },
    },
    async (request) => credits.transactions(principalOf(request), request.query),
  );

  app.post(
    '/v1/credits/consume',
    {
      config: consume,
      schema: {
        tags,
        summary:
          'Consume credits for usage outside Paddock (201); the same reference_id again answers the first (200)',
        body: s.ConsumeBody,
        response: { 200: s.CreditTransaction, 201: s.CreditTransaction, ...errorResponses(402) },
      },
    },
    async (request, reply) => {
      const { transaction, created } = await credits.consume(principalOf(request), request.body);
      return reply.status(created ? 201 : 200).send(transaction);
    },
  );

  app.post(
    '/v1/admin/teams/:id/credits',
    {
      config: platformAdmin,
      schema: {
        tags,
        summary:
          "Platform admins: grant, refund or adjust a team's credits (201); a known reference_id answers the first (200)",
        params: IdParams,
        body: s.AdjustBody,
        response: { 200: s.Adjusted, 201: s.Adjusted, ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const result = await credits.adjust(principalOf(request), request.params.id, request.body);
      return reply.status(result.created ? 201 : 200).send(result);
    },
  );
}

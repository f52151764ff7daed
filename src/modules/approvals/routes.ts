import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { ApprovalsService } from './service.ts';

export function registerApprovalRoutes(app: App, approvals: ApprovalsService): void {
  const tags = ['approvals'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.get(
    '/v1/approvals',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's approval requests, newest first",
        querystring: s.ApprovalListQuery,
        response: { 200: s.Approvals, ...errorResponses() },
      },
    },
    async (request) => approvals.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/approvals/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One approval request',
        params: IdParams,
        response: { 200: s.Approval, ...errorResponses(404) },
      },
    },
    async (request) => approvals.get(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/approvals/:id/approve',
    {
      config: write,
      schema: {
        tags,
        summary: 'Approve: the agent may replay its request once with x-paddock-approval-id',
        params: IdParams,
        response: { 200: s.Approval, ...errorResponses(404, 409) },
      },
    },
    async (request) => approvals.approve(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/approvals/:id/reject',
    {
      config: write,
      schema: {
        tags,
        summary: 'Reject, with an optional reason',
        params: IdParams,
        body: s.RejectBody,
        response: { 200: s.Approval, ...errorResponses(404, 409) },
      },
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request) =>
      approvals.reject(principalOf(request), request.params.id, request.body?.reason ?? null),
  );
}

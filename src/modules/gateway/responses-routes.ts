import { Type } from 'typebox';
import type { App } from '../../http/types.ts';
import { proxyErrorRenderer } from './errors.ts';
import { AwaitingApproval, agentOf, clientGone, sendProxyResult } from './proxy-http.ts';
import { InputItemsQuery, ResponseIdParams, ResponsesBody } from './responses-schemas.ts';
import type { ResponsesService } from './responses-service.ts';

const Json = (description: string) => Type.Unknown({ description });

/** OpenAI's Responses API for agents: created through governance, stored per agent. */
export function registerResponsesRoutes(app: App, responses: ResponsesService, bodyLimitBytes: number): void {
  const config = (scope: 'read' | 'write') => ({
    auth: { scope, agent: 'only' as const },
    renderError: proxyErrorRenderer('responses'),
    // The data plane: its governance blocks are audited, its calls are not.
    audit: false as const,
  });

  app.post(
    '/v1/responses',
    {
      bodyLimit: bodyLimitBytes,
      config: { ...config('write'), repairText: true },
      schema: {
        tags: ['gateway'],
        summary: 'OpenAI Responses API through governance (agent key)',
        body: ResponsesBody,
        response: {
          200: Json('a response object, or its typed SSE events when stream is true'),
          202: AwaitingApproval,
        },
      },
    },
    async (request, reply) => {
      const signal = clientGone(reply);
      const result = await responses.create({
        agentId: agentOf(request),
        headers: request.headers,
        body: request.body as Record<string, unknown>,
        signal,
      });
      return sendProxyResult(request, reply, result);
    },
  );

  app.get(
    '/v1/responses/:id',
    {
      config: config('read'),
      schema: {
        tags: ['gateway'],
        summary: 'A stored response of this agent',
        params: ResponseIdParams,
        response: { 200: Json('the response object') },
      },
    },
    (request) => responses.get(agentOf(request), request.params.id),
  );

  app.delete(
    '/v1/responses/:id',
    {
      config: config('write'),
      schema: {
        tags: ['gateway'],
        summary: 'Deletes a stored response of this agent',
        params: ResponseIdParams,
        response: {
          200: Type.Object({ id: Type.String(), object: Type.Literal('response'), deleted: Type.Boolean() }),
        },
      },
    },
    (request) => responses.delete(agentOf(request), request.params.id),
  );

  app.get(
    '/v1/responses/:id/input_items',
    {
      config: config('read'),
      schema: {
        tags: ['gateway'],
        summary: "A stored response's input items (the whole conversation before it), in OpenAI's list shape",
        params: ResponseIdParams,
        querystring: InputItemsQuery,
        response: { 200: Json('{object: "list", data, first_id, last_id, has_more}') },
      },
    },
    (request) => responses.inputItems(agentOf(request), request.params.id, request.query),
  );
}

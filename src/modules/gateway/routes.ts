import { type TSchema, Type } from 'typebox';
import { Nullable } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { ModelLister } from './agent-models.ts';
import { registerEndpointRoutes } from './endpoint-routes.ts';
import { proxyErrorRenderer } from './errors.ts';
import type { WireFormat } from './provider-call.ts';
import { AwaitingApproval, agentOf, clientGone, sendProxyResult } from './proxy-http.ts';
import type { GatewayService, ProxyRequest, ProxyResult } from './service.ts';

// PADDOCK_DEFAULT_MAX_TOKENS has the same ceiling.
const MaxTokens = Type.Integer({ minimum: 1, maximum: 1_000_000 });

const ProxyBody = Type.Object(
  {
    model: Type.Optional(Type.String({ maxLength: 200 })),
    messages: Type.Array(Type.Unknown(), { description: 'the conversation, in the endpoint’s wire format' }),
    stream: Type.Optional(Type.Boolean()),
    // Paddock reserves budget from max_tokens, so it must be a sane whole number; the provider
    // checks the rest of the request itself.
    max_tokens: Type.Optional(Nullable(MaxTokens)),
    max_completion_tokens: Type.Optional(Nullable(MaxTokens)),
    temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
    top_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
  },
  {
    additionalProperties: true,
    description: 'a provider-format request; x-paddock-* run controls may ride as top-level fields',
  },
);

/** One governed endpoint: its path, the wire format its clients speak, and its request body. */
export interface ProxyRoute {
  path: string;
  format: WireFormat;
  summary: string;
  /** The request body's schema (default: a chat request). */
  body?: TSchema;
  /** What serves it (default: the governed proxy). */
  serve?: (gateway: GatewayService, req: ProxyRequest) => Promise<ProxyResult>;
}

const ROUTES: ProxyRoute[] = [
  {
    path: '/v1/chat/completions',
    format: 'openai',
    summary: 'OpenAI Chat Completions through governance (agent key)',
  },
  { path: '/v1/messages', format: 'anthropic', summary: 'Anthropic Messages through governance (agent key)' },
];

export function registerGatewayRoutes(
  app: App,
  gateway: GatewayService,
  bodyLimitBytes: number,
  models: ModelLister,
): void {
  for (const route of ROUTES) registerProxyRoute(app, gateway, bodyLimitBytes, route);
  registerEndpointRoutes(app, gateway, models, (route) =>
    registerProxyRoute(app, gateway, bodyLimitBytes, route),
  );
}

/** A POST endpoint of the gateway: an agent key, errors in the endpoint's wire format, JSON or SSE answers. */
export function registerProxyRoute(
  app: App,
  gateway: GatewayService,
  bodyLimitBytes: number,
  { path, format, summary, body, serve }: ProxyRoute,
): void {
  app.post(
    path,
    {
      bodyLimit: bodyLimitBytes,
      config: {
        auth: { scope: 'write', agent: 'only' },
        renderError: proxyErrorRenderer(format),
        // The data plane: its governance blocks are audited, its calls are not.
        audit: false,
        repairText: true,
      },
      schema: {
        tags: ['gateway'],
        summary,
        body: body ?? ProxyBody,
        response: {
          200: Type.Unknown({
            description: 'the provider-format response, or an SSE stream when stream is true',
          }),
          202: AwaitingApproval,
        },
      },
    },
    async (request, reply) => {
      const req: ProxyRequest = {
        format,
        agentId: agentOf(request),
        headers: request.headers,
        body: request.body as Record<string, unknown>,
        signal: clientGone(reply),
      };
      return sendProxyResult(request, reply, await (serve ? serve(gateway, req) : gateway.handle(req)));
    },
  );
}

import { once } from 'node:events';
import { type TSchema, Type } from 'typebox';
import { UnauthorizedError } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { principalOf } from '../../http/auth.ts';
import { Nullable } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { ModelLister } from './agent-models.ts';
import { registerEndpointRoutes } from './endpoint-routes.ts';
import { proxyErrorRenderer } from './errors.ts';
import type { WireFormat } from './provider-call.ts';
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
          202: Type.Object({
            status: Type.Literal('awaiting_approval'),
            approval_requests: Type.Array(Type.Object({ id: Type.String(), tool: Type.String() })),
            run_id: Type.String(),
            message: Type.String(),
          }),
        },
      },
    },
    async (request, reply) => {
      const controller = new AbortController();
      // The response closing before it finished means the client went away.
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) controller.abort();
      });
      const agentId = principalOf(request).agentId;
      if (!agentId || !isId(agentId, 'agt'))
        throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
      const req: ProxyRequest = {
        format,
        agentId,
        headers: request.headers,
        body: request.body as Record<string, unknown>,
        signal: controller.signal,
      };
      const result = await (serve ? serve(gateway, req) : gateway.handle(req));
      if (result.kind === 'json')
        return reply
          .status(result.status as 200)
          .headers(headerSafe(result.headers))
          .send(result.body);

      reply.hijack();
      const raw = reply.raw;
      try {
        raw.writeHead(200, {
          ...headerSafe(result.headers),
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
          'x-request-id': request.id,
        });
        for await (const chunk of result.chunks) {
          if (raw.destroyed) break;
          if (!raw.write(chunk)) await Promise.race([once(raw, 'drain'), once(raw, 'close')]);
        }
      } finally {
        // Ends the generator (and settles the step) if the loop stopped early or never started.
        await result.chunks.return(undefined);
        if (!raw.destroyed) raw.end();
      }
    },
  );
}

/**
 * Header values carry names a caller chose (a policy's, a model's); Node
 * refuses a value outside visible ASCII, which would fail the answer after
 * the call was charged. Such characters go as percent-encoded UTF-8.
 */
export function headerSafe(headers: Record<string, string>): Record<string, string> {
  let safe: Record<string, string> | undefined;
  // for…in rather than Object.entries: no pair array per header, on every proxied answer.
  for (const name in headers) {
    const value = headers[name]!;
    if (/^[\x20-\x7e]*$/.test(value)) continue;
    safe ??= { ...headers };
    safe[name] = value.replace(/[^\x20-\x7e]+/gu, (run) =>
      Array.from(Buffer.from(run, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(
        '',
      ),
    );
  }
  return safe ?? headers;
}

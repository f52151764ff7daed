import { once } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { UnauthorizedError } from '../../core/errors.ts';
import { type AgentId, isId } from '../../core/ids.ts';
import { principalOf } from '../../http/auth.ts';
import { Nullable } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { ProxyResult } from './call.ts';
import { proxyErrorRenderer } from './errors.ts';
import type { WireFormat } from './provider-call.ts';
import type { GatewayService } from './service.ts';

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

/** The answer when a tool needs a human's approval first. */
export const AwaitingApproval = Type.Object({
  status: Type.Literal('awaiting_approval'),
  approval_requests: Type.Array(Type.Object({ id: Type.String(), tool: Type.String() })),
  run_id: Type.String(),
  message: Type.String(),
});

const ROUTES: Array<{ path: string; format: WireFormat; summary: string }> = [
  {
    path: '/v1/chat/completions',
    format: 'openai',
    summary: 'OpenAI Chat Completions through governance (agent key)',
  },
  { path: '/v1/messages', format: 'anthropic', summary: 'Anthropic Messages through governance (agent key)' },
];

export function registerGatewayRoutes(app: App, gateway: GatewayService, bodyLimitBytes: number): void {
  for (const { path, format, summary } of ROUTES) {
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
          body: ProxyBody,
          response: {
            200: Type.Unknown({
              description: 'the provider-format response, or an SSE stream when stream is true',
            }),
            202: AwaitingApproval,
          },
        },
      },
      async (request, reply) => {
        const signal = clientGone(reply);
        const result = await gateway.handle({
          format,
          agentId: agentOf(request),
          headers: request.headers,
          body: request.body as Record<string, unknown>,
          signal,
        });
        return sendProxyResult(request, reply, result);
      },
    );
  }
}

/** Aborts when the response closes before it finished: the client went away. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** The agent behind a proxy route's key (the auth rule admits agent keys only). */
export function agentOf(request: FastifyRequest): AgentId {
  const agentId = principalOf(request).agentId;
  if (!agentId || !isId(agentId, 'agt'))
    throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
  return agentId;
}

/** A proxied answer to the client: JSON as it is, or the SSE stream written as it comes. */
export async function sendProxyResult(
  request: FastifyRequest,
  reply: FastifyReply,
  result: ProxyResult,
): Promise<unknown> {
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
  return undefined;
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

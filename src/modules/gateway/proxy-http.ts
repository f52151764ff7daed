import { once } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { UnauthorizedError } from '../../core/errors.ts';
import { type AgentId, isId } from '../../core/ids.ts';
import { principalOf } from '../../http/auth.ts';
import type { ProxyResult } from './call.ts';

// What every HTTP route of the gateway shares: who the agent is, when the
// client left, and how a proxied answer (JSON or SSE) goes back.

/** The answer when a tool needs a human's approval first. */
export const AwaitingApproval = Type.Object({
  status: Type.Literal('awaiting_approval'),
  approval_requests: Type.Array(Type.Object({ id: Type.String(), tool: Type.String() })),
  run_id: Type.String(),
  message: Type.String(),
});

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

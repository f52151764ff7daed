import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { type OutboundGuard, outboundRefusal } from '../../../core/outbound-guard.ts';
import { hostAllowed } from '../../sandboxes/host-side/egress.ts';

/** How long connecting to an HTTP MCP server may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** One response's body (a JSON answer, or an SSE stream all its life), at most: a server cannot fill the worker's memory. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Statuses whose Response has no body. */
const NULL_BODY = new Set([101, 204, 205, 304]);

/** A request the task's egress allow-list does not let out. */
export class EgressRefusedError extends Error {
  constructor(host: string) {
    super(
      `${host} is not on the task's egress allow-list (the environment's network_allow and the agent's egress)`,
    );
    this.name = 'EgressRefusedError';
  }
}

/**
 * The fetch an HTTP MCP server is reached with: every request (the SDK's
 * POSTs, its GET stream, each redirect it follows) goes only to a host on the
 * task's egress allow-list, the one its capsule has, and connects through the
 * outbound-address guard (no private address unless the platform admin
 * allows it, the checked address is the one connected to). Redirects are
 * never followed by the fetch itself: each hop comes back through here.
 */
export function egressFetch(
  guard: OutboundGuard,
  allow: readonly string[],
): { fetch: FetchLike; close(): Promise<void> } {
  const dispatcher = new Agent({ connect: guard.undiciConnector({ timeoutMs: CONNECT_TIMEOUT_MS }) });
  const fetch: FetchLike = async (input, init) => {
    const url = new URL(input);
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new Error(`${url.protocol} is not http or https`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (!hostAllowed(allow, host)) throw new EgressRefusedError(host);
    try {
      const res = await undiciFetch(url, {
        ...(init as Parameters<typeof undiciFetch>[1]),
        redirect: 'manual',
        dispatcher,
      });
      const body = NULL_BODY.has(res.status) ? null : (res.body as ReadableStream<Uint8Array> | null);
      return new Response(body?.pipeThrough(byteLimit(host)) ?? null, {
        status: res.status,
        statusText: res.statusText,
        headers: new Headers([...res.headers]),
      });
    } catch (err) {
      // undici says only "fetch failed"; the guard's refusal or the socket's error says why.
      const cause = (err as { cause?: unknown }).cause;
      throw outboundRefusal(err) ?? (cause instanceof Error ? cause : err);
    }
  };
  // destroy, not close: close would wait for an SSE stream a server keeps open.
  return { fetch, close: () => dispatcher.destroy() };
}

/** Passes at most MAX_RESPONSE_BYTES through, then errors the stream. */
function byteLimit(host: string): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  return new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > MAX_RESPONSE_BYTES)
        controller.error(new Error(`${host} sent a response over ${MAX_RESPONSE_BYTES} bytes`));
      else controller.enqueue(chunk);
    },
  });
}

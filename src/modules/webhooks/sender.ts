import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { Timers } from '../../core/context.ts';
import { type OutboundGuard, outboundRefusal } from '../../core/outbound-guard.ts';
import { VERSION } from '../../version.ts';

/** What an endpoint answered to one POST, or why there was no answer. */
export interface PostOutcome {
  statusCode: number | null;
  /** The first RESPONSE_BODY_MAX_BYTES of the answer's body, as text. */
  responseBody: string | null;
  error: string | null;
  durationMs: number;
}

/** What is kept of an answer's body (and read of it: the rest is never read). */
export const RESPONSE_BODY_MAX_BYTES = 4096;

/**
 * POSTs webhook bodies: every connection through the outbound-address guard,
 * a time limit on the whole exchange, redirects never followed (a 3xx is a
 * failed attempt), at most 4 KB of the answer read.
 */
export class WebhookSender {
  private readonly agent: Agent;

  constructor(
    guard: OutboundGuard,
    private readonly timers: Timers,
    private readonly timeoutMs: number,
    private readonly userAgent = 'Paddock-Webhooks',
  ) {
    this.agent = new Agent({
      connect: guard.undiciConnector({ timeoutMs: Math.min(timeoutMs, 10_000) }),
      keepAliveTimeout: 10_000,
    });
  }

  /** POSTs (or PUTs: a Matrix message) `body`; never throws, the outcome says what happened. */
  async post(
    url: string,
    headers: Record<string, string>,
    body: string,
    method: 'POST' | 'PUT' = 'POST',
  ): Promise<PostOutcome> {
    const started = performance.now();
    const controller = new AbortController();
    const timer = this.timers.after(this.timeoutMs, () =>
      controller.abort(new Error(`no answer within ${this.timeoutMs / 1000} s`)),
    );
    try {
      const res = await request(url, {
        method,
        dispatcher: this.agent,
        signal: controller.signal,
        headers: {
          'content-type': 'application/json',
          'user-agent': `${this.userAgent}/${VERSION}`,
          ...headers,
        },
        body,
      });
      const text = await readCapped(res.body);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return {
        statusCode: res.statusCode,
        responseBody: text,
        error: ok ? null : `the endpoint answered HTTP ${res.statusCode}`,
        durationMs: Math.round(performance.now() - started),
      };
    } catch (err) {
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      return {
        statusCode: null,
        responseBody: null,
        error: failure(reason),
        durationMs: Math.round(performance.now() - started),
      };
    } finally {
      timer.cancel();
    }
  }

  close(): Promise<void> {
    return this.agent.destroy();
  }
}

async function readCapped(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  body.on('error', () => undefined);
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    chunks.push(buf.subarray(0, RESPONSE_BODY_MAX_BYTES - size));
    size += Math.min(buf.length, RESPONSE_BODY_MAX_BYTES - size);
    if (size >= RESPONSE_BODY_MAX_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Why a POST got no answer, in words (never a secret: the URL is not in it). */
function failure(err: unknown): string {
  const refusal = outboundRefusal(err);
  // Not the address the name resolved to: the server's log has it (OutboundGuardOptions.onRefused).
  if (refusal) return `refused: ${refusal.summary}, which Paddock does not reach`;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'the host name does not resolve';
  if (code === 'ECONNREFUSED') return 'the endpoint refused the connection';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'the connection was closed before an answer';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connecting to the endpoint timed out';
  if (code?.startsWith('ERR_TLS') || code?.includes('CERT'))
    return `the endpoint's TLS certificate was not accepted (${code})`;
  return e.message && !e.message.includes('://') ? e.message : `the request failed (${code ?? 'unknown'})`;
}

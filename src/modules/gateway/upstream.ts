import { finished } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Agent, request, errors as undiciErrors } from 'undici';
import { type OutboundGuard, outboundRefusal } from '../../core/outbound-guard.ts';

/** Why an attempt at a provider failed (Rungate's step error kinds). */
export type FailureKind =
  | 'tcp_connect_timeout'
  | 'request_timeout'
  | 'network_error'
  | 'http_error'
  | 'empty_stream'
  | 'first_events_timeout'
  | 'first_events_error'
  | 'mid_stream_error'
  | 'client_disconnect'
  /** The key's base_url leads to an address the outbound guard refuses: not tried again. */
  | 'address_refused'
  | 'stream_processing_error'
  | 'unknown';

export class UpstreamError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly status?: number,
    readonly body?: string,
    readonly retryAfterSec?: number,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamCall {
  url: string;
  /** POST (a model call) unless given; GET has no body (a provider's model list). */
  method?: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  connectTimeoutMs: number;
  /** The whole call after connecting: first byte and body. */
  timeoutMs: number;
  /** Fails an attempt that sends no response headers within this time. */
  firstByteTimeoutMs: number;
  /** Aborts the call (a client that went away). */
  signal?: AbortSignal;
  /** A streamed call: running out of time before its first event is first_events_timeout. */
  stream?: boolean;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Dispatcher.ResponseData['body'];
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  // for…in rather than Object.entries: no pair array per header, on every call.
  for (const k in headers) {
    const v = headers[k];
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/**
 * How the proxy reaches providers: every connection goes through the
 * outbound-address guard (a key's base_url is user input), one connection
 * pool per connect timeout (the policy's connect_timeout_ms), kept alive
 * between calls.
 */
export class UpstreamClient {
  private readonly agents = new Map<number, Agent>();

  constructor(private readonly guard: OutboundGuard) {}

  private agentFor(connectTimeoutMs: number): Agent {
    let agent = this.agents.get(connectTimeoutMs);
    if (!agent) {
      agent = new Agent({
        connect: this.guard.undiciConnector({ timeoutMs: connectTimeoutMs }),
        keepAliveTimeout: 30_000,
        connections: 256,
        pipelining: 1,
      });
      this.agents.set(connectTimeoutMs, agent);
    }
    return agent;
  }

  /**
   * Sends one attempt to a provider. Resolves once response headers arrived
   * (any status); rejects with an UpstreamError saying which limit was hit.
   * The caller reads (or discards) the body.
   */
  async call(call: UpstreamCall): Promise<UpstreamResponse> {
    // One controller and one timer per call, both let go when the body ends: AbortSignal.timeout
    // would keep a timer (and AbortSignal.any a listener) alive for the whole timeout_ms after the
    // call is long done — at hundreds of calls a second, tens of thousands of them.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(deadlineError()), call.timeoutMs);
    const onClientAbort = () => controller.abort(call.signal?.reason);
    call.signal?.addEventListener('abort', onClientAbort, { once: true });
    if (call.signal?.aborted) onClientAbort();
    const done = () => {
      clearTimeout(timer);
      call.signal?.removeEventListener('abort', onClientAbort);
    };
    try {
      const res = await request(call.url, {
        method: call.method ?? 'POST',
        headers: call.headers,
        body: call.body,
        dispatcher: this.agentFor(call.connectTimeoutMs),
        signal: controller.signal,
        headersTimeout: Math.min(call.firstByteTimeoutMs, call.timeoutMs),
        bodyTimeout: call.timeoutMs,
      });
      res.body.once('close', done);
      return { status: res.statusCode, headers: flatHeaders(res.headers), body: res.body };
    } catch (err) {
      done();
      throw classify(err, call);
    }
  }

  async close(): Promise<void> {
    const all = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(all.map((a) => a.close()));
  }
}

function deadlineError(): Error {
  const err = new Error('the provider did not finish within the request timeout');
  err.name = 'TimeoutError';
  return err;
}

/**
 * Names a failed attempt. The headers timeout, the body timeout and the
 * whole-call deadline are all timeout_ms long and race each other, so the
 * kind depends on what the call was (a stream still waiting for its first
 * event, or not), never on which timer fired first.
 */
export function classify(err: unknown, call: { signal?: AbortSignal; stream?: boolean }): UpstreamError {
  if (err instanceof UpstreamError) return err;
  if (call.signal?.aborted) return new UpstreamError('client_disconnect', 'the client went away');
  const refused = outboundRefusal(err);
  if (refused) return new UpstreamError('address_refused', `the provider key's base_url: ${refused.message}`);
  if (err instanceof undiciErrors.ConnectTimeoutError) {
    return new UpstreamError('tcp_connect_timeout', 'connecting to the provider timed out');
  }
  const timeout = call.stream ? 'first_events_timeout' : 'request_timeout';
  if (err instanceof undiciErrors.HeadersTimeoutError) {
    return new UpstreamError(timeout, 'the provider sent no response within the timeout');
  }
  if (err instanceof undiciErrors.BodyTimeoutError) {
    return new UpstreamError(timeout, 'the provider stalled while sending the response');
  }
  const name = (err as Error)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new UpstreamError(timeout, 'the provider did not finish within the request timeout');
  }
  const code =
    (err as NodeJS.ErrnoException)?.code ?? (err as { cause?: NodeJS.ErrnoException })?.cause?.code;
  // Also raised after the response began (a socket cut mid-body), so it does not say "could not reach".
  return new UpstreamError(
    'network_error',
    `the connection to the provider failed${code ? ` (${code})` : ''}`,
  );
}

/**
 * Reads a whole (non-streaming) body as text, within the call's deadline.
 * With a data listener and stream.finished rather than `for await`: the same
 * errors (finished is what the async iterator waits on too), without a
 * promise per chunk on every proxied call.
 */
export function readBody(body: UpstreamResponse['body'], limitBytes = 32 * 1024 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    body.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > limitBytes) {
        tooLarge = true;
        body.destroy();
        reject(
          new UpstreamError(
            'stream_processing_error',
            `the provider's response is larger than ${limitBytes} bytes`,
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    finished(body, (err) => {
      if (tooLarge) return;
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

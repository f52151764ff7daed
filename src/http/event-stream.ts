import { once } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Timers } from '../core/context.ts';

/** One Server-Sent Event: `id:`, `event:` and `data:` (JSON). */
export interface SseFrame {
  id: string;
  type: string;
  data: unknown;
}

export interface SseOptions {
  /** A comment line this often keeps proxies from closing a quiet stream. */
  keepaliveMs: number;
  /** Send `event: end` when the frames run out (a log that completes); not after the client went. */
  endEvent: boolean;
}

/** Whether the client asked for a stream rather than a JSON page. */
export function wantsEventStream(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/event-stream');
}

/**
 * Frames as Server-Sent Events over the hijacked reply; writes wait for the
 * socket to drain, so a slow client slows its own iterator. `closed` aborts
 * when the client goes.
 */
export async function sendSse(
  request: FastifyRequest,
  reply: FastifyReply,
  frames: AsyncIterable<SseFrame>,
  closed: AbortController,
  timers: Timers,
  options: SseOptions,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.on('close', () => closed.abort());
  // The client may have gone while the stream was being set up ('close' came before the listener).
  if (raw.destroyed || raw.socket?.destroyed === true) closed.abort();
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
  });
  const write = async (chunk: string) => {
    if (raw.destroyed) return;
    if (!raw.write(chunk)) await Promise.race([once(raw, 'drain'), once(raw, 'close')]);
  };
  const keepalive = timers.every(options.keepaliveMs, () => void write(': keepalive\n\n'));
  try {
    await write('retry: 2000\n\n');
    for await (const f of frames) {
      await write(`id: ${f.id}\nevent: ${f.type}\ndata: ${JSON.stringify(f.data)}\n\n`);
    }
    if (options.endEvent && !closed.signal.aborted) await write('event: end\ndata: {}\n\n');
  } catch (err) {
    request.log.warn({ err }, 'an event stream ended with an error');
  } finally {
    keepalive.cancel();
    if (!raw.destroyed) raw.end();
  }
}

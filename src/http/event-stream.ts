import { once } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Timers } from '../core/context.ts';
import { BadRequestError } from '../core/errors.ts';
import type { Principal } from '../modules/identity/principal.ts';
import { principalOf } from './auth.ts';

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

/** The streams open on each HTTP server, ended at once when it stops (draining.ts). */
const openStreams = new WeakMap<object, Set<AbortController>>();

/** Ends every event stream of the server: its clients resume elsewhere with Last-Event-ID. */
export function endEventStreams(server: object): void {
  for (const closed of openStreams.get(server) ?? []) closed.abort();
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
  const server = request.server.server;
  const open = openStreams.get(server) ?? new Set();
  openStreams.set(server, open);
  open.add(closed);
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
    open.delete(closed);
    keepalive.cancel();
    if (!raw.destroyed) raw.end();
  }
}

/** A comment line this often keeps proxies from closing a quiet event log's stream. */
const LOG_KEEPALIVE_MS = 15_000;

/** Last-Event-ID (a seq this server sent) wins over after_seq: a reconnecting EventSource sends it. */
export function resumeFrom(header: string | string[] | undefined, afterSeq: number | undefined): number {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined || raw === '') return afterSeq ?? 0;
  if (!/^\d{1,9}$/.test(raw))
    throw new BadRequestError(
      'invalid_last_event_id',
      'Last-Event-ID must be the seq of an event of this log',
    );
  return Number(raw);
}

/** An object's event log (a task's, a workspace's): a page of it, or a follower that ends with the log. */
export interface EventLog<P, E extends { seq: number; type: string }> {
  events(principal: Principal, id: string, afterSeq: number, limit: number): Promise<P>;
  follow(principal: Principal, id: string, afterSeq: number, signal: AbortSignal): Promise<AsyncIterable<E>>;
}

type EventLogRequest = FastifyRequest<{
  Params: { id: string };
  Querystring: { after_seq?: number; limit?: number };
}>;

/**
 * The handler of `GET …/:id/events`: a JSON page, or with `Accept:
 * text/event-stream` the log as Server-Sent Events (`id: <seq>`, `event:
 * <type>`, `data: <JSON>`, then `event: end` once the log is complete),
 * resumed from Last-Event-ID. Access is checked (and a 404 answered) before
 * the stream starts.
 */
export function eventLogHandler<P, E extends { seq: number; type: string }>(
  log: EventLog<P, E>,
  timers: Timers,
) {
  return async (request: EventLogRequest, reply: FastifyReply): Promise<P | undefined> => {
    const principal = principalOf(request);
    const { id } = request.params;
    if (!wantsEventStream(request))
      return log.events(principal, id, request.query.after_seq ?? 0, request.query.limit ?? 200);
    const after = resumeFrom(request.headers['last-event-id'], request.query.after_seq);
    const closed = new AbortController();
    const events = await log.follow(principal, id, after, closed.signal);
    await sendSse(request, reply, asFrames(events), closed, timers, {
      keepaliveMs: LOG_KEEPALIVE_MS,
      endEvent: true,
    });
    return undefined;
  };
}

async function* asFrames(events: AsyncIterable<{ seq: number; type: string }>): AsyncIterable<SseFrame> {
  for await (const e of events) yield { id: String(e.seq), type: e.type, data: e };
}

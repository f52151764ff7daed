import { TextDecoder } from 'node:util';
import { type Admitted, type ProxyResult, resultHeaders, settleCall, spokenFormat } from './call.ts';
import { recordedResponse } from './endpoints.ts';
import type { Attempt, AttemptRecord, GatewayPorts, KeyForCall } from './ports.ts';
import type { RateLimiter } from './rate-limit.ts';
import { formatSse, type SseEvent, SseParser } from './sse.ts';
import { isUsageOnlyChunk, MALFORMED_EVENT_MESSAGE, StreamTracker, streamErrorEvent } from './stream.ts';
import type { Translator } from './translation.ts';
import { classify, type FailureKind, readBody, UpstreamError } from './upstream.ts';
import { estimateTokens, usageIn } from './usage.ts';

type UpstreamBody = Parameters<typeof readBody>[0];

/** A provider stream whose first event arrived: from here it goes to the client. */
export interface OpenedStream {
  iterator: AsyncIterator<unknown>;
  parser: SseParser;
  decoder: TextDecoder;
  tracker: StreamTracker;
  first: SseEvent[];
  raw: UpstreamBody;
}

const ABANDONED = 'the client went away before reading the stream';

/**
 * A generator's `finally` does not run when return() comes before the first
 * next(): the stream was never started. This one calls `unread` then, so a
 * stream its client gave up on before reading still settles its reservation.
 */
function settlesUnread(
  gen: AsyncGenerator<string, void, undefined>,
  unread: () => void,
): AsyncGenerator<string, void, undefined> {
  let started = false;
  const wrapped: AsyncGenerator<string, void, undefined> = {
    next() {
      started = true;
      return gen.next();
    },
    return(value) {
      if (!started) {
        started = true;
        unread();
      }
      return gen.return(value);
    },
    throw(err) {
      if (!started) {
        started = true;
        unread();
      }
      return gen.throw(err);
    },
    [Symbol.asyncIterator]() {
      return wrapped;
    },
  };
  return wrapped;
}

/**
 * A provider's answer back to the client, in the client's wire format: a JSON
 * body at once, or an SSE stream that settles the call's reservation when it
 * ends (completed, broken off or abandoned by the client).
 */
export class Relay {
  constructor(
    private readonly ports: Pick<GatewayPorts, 'health' | 'price' | 'runs'>,
    private readonly translator: Translator,
    private readonly limiter: RateLimiter,
  ) {}

  /** Reads a JSON answer; an unreadable one throws an UpstreamError, so the plan fails over. */
  async json(
    a: Admitted,
    at: Attempt,
    key: KeyForCall,
    raw: UpstreamBody,
    attempted: AttemptRecord[],
    callStarted: number,
  ): Promise<ProxyResult> {
    const text = await readBody(raw);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new UpstreamError('stream_processing_error', 'the provider answered with invalid JSON');
    }
    this.ports.health.success(at.keyId, performance.now() - callStarted);
    const providerFormat = spokenFormat(a, key.provider);
    const usage = usageIn(providerFormat, json.usage) ?? {
      input: a.inputEstimate,
      // An embedding has no output tokens, however long its vectors' JSON.
      output: a.req.format === 'embeddings' ? 0 : estimateTokens(JSON.stringify(json)),
      cacheRead: 0,
      cacheCreation: 0,
    };
    const costMicros = this.ports.price.costMicros(key.provider, at.model, usage, key.priceOverrides);
    const body =
      providerFormat === a.req.format ? json : this.translator.response(providerFormat, a.req.format, json);
    this.noteFailover(a, attempted, key.provider, at.model);
    settleCall(a, this.limiter, {
      status: 'success',
      provider: key.provider,
      model: at.model,
      keyId: key.id,
      usage,
      costMicros,
      response: recordedResponse(a.req.format, body),
      attempted,
    });
    return {
      kind: 'json',
      status: 200,
      headers: resultHeaders(a, key.provider, at.model, usage, costMicros),
      body,
    };
  }

  /** Waits for the first events: failover is still possible until one reaches the client. */
  async openStream(
    a: Admitted,
    key: KeyForCall,
    raw: UpstreamBody,
  ): Promise<OpenedStream | { failure: UpstreamError }> {
    const iterator = raw[Symbol.asyncIterator]();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const tracker = new StreamTracker(spokenFormat(a, key.provider), a.logContent);
    const first: SseEvent[] = [];
    try {
      while (first.length === 0) {
        const next = await iterator.next();
        if (next.done) {
          first.push(...parser.end());
          break;
        }
        first.push(...parser.push(decoder.decode(next.value as Buffer, { stream: true })));
      }
    } catch (err) {
      raw.destroy();
      return { failure: classify(err, { signal: a.req.signal, stream: true }) };
    }
    if (first.length === 0) {
      raw.destroy();
      return { failure: new UpstreamError('empty_stream', 'the provider ended the stream without an event') };
    }
    // Only the very first event decides: the events after it may or may not have come in the
    // same read, and whether a call fails over must not depend on how its bytes were split.
    tracker.observe(first[0]!);
    if (tracker.malformed) {
      raw.destroy();
      return { failure: new UpstreamError('stream_processing_error', MALFORMED_EVENT_MESSAGE) };
    }
    if (tracker.errorMessage !== undefined) {
      raw.destroy();
      return { failure: new UpstreamError('first_events_error', tracker.errorMessage) };
    }
    first.length = 1 + tracker.observeAll(first.slice(1)).length;
    return { iterator, parser, decoder, tracker, first, raw };
  }

  /** The stream to the client; from here the stream owns the reservation and settles it when it ends. */
  stream(
    a: Admitted,
    at: Attempt,
    key: KeyForCall,
    s: OpenedStream,
    attempted: AttemptRecord[],
    firstEventMs: number,
  ): ProxyResult {
    const providerFormat = spokenFormat(a, key.provider);
    let translate: ReturnType<Translator['stream']> | undefined;
    try {
      translate =
        providerFormat === a.req.format
          ? undefined
          : this.translator.stream(providerFormat, a.req.format, at.model, a.inputEstimate);
    } catch (err) {
      s.raw.destroy();
      throw err;
    }
    const clientWantsUsage =
      a.req.format === 'anthropic' ||
      (a.req.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const { ports, limiter } = this;
    // The usage chunk was asked for on the client's behalf (budgets settle from it): pass it on only if wanted.
    const send = (out: SseEvent) => (clientWantsUsage || !isUsageOnlyChunk(out) ? formatSse(out) : '');
    function* emit(events: SseEvent[]): Generator<string> {
      for (const e of events) {
        for (const out of translate ? translate.push(e) : [e]) {
          const text = send(out);
          if (text !== '') yield text;
        }
      }
    }
    async function* chunks(): AsyncGenerator<string, void, undefined> {
      let errorKind: FailureKind | null = null;
      let errorMessage: string | null = null;
      try {
        yield* emit(s.first);
        // A malformed event ends the stream: what came before it goes on, then an error event.
        while (!s.tracker.malformed) {
          const next = await s.iterator.next();
          if (next.done) break;
          yield* emit(
            s.tracker.observeAll(s.parser.push(s.decoder.decode(next.value as Buffer, { stream: true }))),
          );
        }
        if (!s.tracker.malformed) yield* emit(s.tracker.observeAll(s.parser.end()));
        if (translate && !s.tracker.malformed)
          for (const out of translate.end()) {
            const text = send(out);
            if (text !== '') yield text;
          }
        if (s.tracker.malformed || s.tracker.errorMessage !== undefined || !s.tracker.completed) {
          errorKind = s.tracker.malformed ? 'stream_processing_error' : 'mid_stream_error';
          errorMessage = s.tracker.malformed
            ? MALFORMED_EVENT_MESSAGE
            : (s.tracker.errorMessage ?? 'the provider ended the stream before it finished');
          yield formatSse(
            streamErrorEvent(a.req.format, errorKind, errorMessage, a.runId, s.tracker.nextSequenceNumber),
          );
        }
      } catch (err) {
        const e = classify(err, { signal: a.req.signal });
        errorKind = e.kind === 'client_disconnect' ? 'client_disconnect' : 'mid_stream_error';
        errorMessage = errorKind === 'client_disconnect' ? e.message : `the stream broke off: ${e.message}`;
        if (errorKind !== 'client_disconnect')
          yield formatSse(
            streamErrorEvent(a.req.format, errorKind, errorMessage, a.runId, s.tracker.nextSequenceNumber),
          );
      } finally {
        // Runs on completion, on error, and when the client disconnects (return()).
        finish(errorKind, errorMessage);
      }
    }
    let ended = false;
    let settledCostMicros: number | undefined;
    function finish(kind: FailureKind | null, message: string | null): void {
      if (ended) return;
      ended = true;
      s.raw.destroy();
      const errorKind = kind === null && a.req.signal.aborted ? 'client_disconnect' : kind;
      // Judged when the stream ends, not at its first event: a key that keeps breaking its
      // streams midway must open its circuit, which a success per first event would prevent.
      if (errorKind === 'mid_stream_error' || errorKind === 'stream_processing_error')
        ports.health.failure(key.id, errorKind);
      else ports.health.success(key.id, firstEventMs);
      const usage = s.tracker.usage(a.inputEstimate);
      const costMicros = ports.price.costMicros(key.provider, at.model, usage, key.priceOverrides);
      settledCostMicros = costMicros;
      settleCall(a, limiter, {
        status: errorKind === null ? 'success' : 'error',
        provider: key.provider,
        model: at.model,
        keyId: key.id,
        usage,
        costMicros,
        errorKind,
        errorMessage: message,
        response: { streamed: true, ...(a.logContent ? { text: s.tracker.producedText() } : {}) },
        attempted,
      });
    }
    a.reservation.handToStream();
    return {
      kind: 'stream',
      headers: resultHeaders(a, key.provider, at.model, undefined, undefined),
      chunks: settlesUnread(chunks(), () => finish('client_disconnect', ABANDONED)),
      costMicros: () => settledCostMicros,
    };
  }

  /** A failover_transition step when earlier attempts failed before this answer. */
  noteFailover(a: Admitted, attempted: AttemptRecord[], provider: string | null, model: string | null): void {
    if (attempted.length === 0) return;
    this.ports.runs.recordFailover({
      teamId: a.agent.teamId,
      runId: a.runId,
      agentId: a.agent.id,
      attempted,
      resolvedProvider: provider,
      resolvedModel: model,
      originalModel: a.routedFrom ?? a.model,
    });
  }
}

import type { WireFormat } from './provider-call.ts';
import type { SseEvent } from './sse.ts';

/** What the proxy needs to serve one wire format from a provider that speaks the other. */
export interface Translator {
  request(from: WireFormat, to: WireFormat, body: Record<string, unknown>): Record<string, unknown>;
  response(from: WireFormat, to: WireFormat, body: unknown): unknown;
  stream(
    from: WireFormat,
    to: WireFormat,
    model: string,
  ): { push(event: SseEvent): SseEvent[]; end(): SseEvent[] };
}

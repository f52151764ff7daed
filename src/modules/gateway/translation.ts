import { type Clock, systemClock } from '../../core/clock.ts';
import type { WireFormat } from './provider-call.ts';
import type { SseEvent } from './sse.ts';
import { isObject } from './translation-common.ts';
import { anthropicRequestFromOpenAi, openAiRequestFromAnthropic } from './translation-request.ts';
import { anthropicResponseFromOpenAi, openAiResponseFromAnthropic } from './translation-response.ts';
import {
  AnthropicStreamFromOpenAi,
  OpenAiStreamFromAnthropic,
  passthroughStream,
  type StreamTranslation,
} from './translation-stream.ts';

export { anthropicRequestFromOpenAi, openAiRequestFromAnthropic } from './translation-request.ts';
export { anthropicResponseFromOpenAi, openAiResponseFromAnthropic } from './translation-response.ts';
export {
  AnthropicStreamFromOpenAi,
  OpenAiStreamFromAnthropic,
  type StreamTranslation,
} from './translation-stream.ts';

/** What the proxy needs to serve one wire format from a provider that speaks the other. */
export interface Translator {
  request(from: WireFormat, to: WireFormat, body: Record<string, unknown>): Record<string, unknown>;
  response(from: WireFormat, to: WireFormat, body: unknown): unknown;
  /** `inputTokens`: the gateway's estimate of the prompt, for streams that announce it before the provider does. */
  stream(
    from: WireFormat,
    to: WireFormat,
    model: string,
    inputTokens?: number,
  ): { push(event: SseEvent): SseEvent[]; end(): SseEvent[] };
}

/**
 * Translates between OpenAI Chat Completions and Anthropic Messages: request
 * bodies (client → provider), JSON responses and streams (provider → client).
 * The clock only stamps OpenAI's `created`, which Anthropic does not send.
 */
export class WireTranslator implements Translator {
  constructor(private readonly clock: Clock = systemClock) {}

  request(from: WireFormat, to: WireFormat, body: Record<string, unknown>): Record<string, unknown> {
    if (from === to) return body;
    return from === 'openai' ? anthropicRequestFromOpenAi(body) : openAiRequestFromAnthropic(body);
  }

  response(from: WireFormat, to: WireFormat, body: unknown): unknown {
    // Provider error bodies are passed on as they are (the gateway answers failures itself).
    if (from === to || !isObject(body) || body.error !== undefined) return body;
    return from === 'anthropic'
      ? openAiResponseFromAnthropic(body, this.createdSec())
      : anthropicResponseFromOpenAi(body);
  }

  stream(from: WireFormat, to: WireFormat, model: string, inputTokens?: number): StreamTranslation {
    if (from === to) return passthroughStream();
    return from === 'anthropic'
      ? new OpenAiStreamFromAnthropic(model, this.createdSec())
      : new AnthropicStreamFromOpenAi(model, inputTokens);
  }

  private createdSec(): number {
    return Math.floor(this.clock.now().getTime() / 1000);
  }
}

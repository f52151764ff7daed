import { type Clock, systemClock } from '../../core/clock.ts';
import type { WireFormat } from './provider-call.ts';
import type { SseEvent } from './sse.ts';
import { isObject } from './translation-common.ts';
import { anthropicRequestFromOpenAi, openAiRequestFromAnthropic } from './translation-request.ts';
import { anthropicResponseFromOpenAi, openAiResponseFromAnthropic } from './translation-response.ts';
import { chatRequestFromResponses } from './translation-responses-request.ts';
import { responsesFromChat } from './translation-responses-response.ts';
import { ResponsesStreamFromChat } from './translation-responses-stream.ts';
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
 * Translates between OpenAI Chat Completions and Anthropic Messages both
 * ways, and serves OpenAI's Responses API from either: request bodies
 * (client → provider), JSON responses and streams (provider → client).
 * Responses to Anthropic goes through chat (Responses → chat → Messages, and
 * back). Equal formats pass through (the Responses API to OpenAI itself).
 * The clock stamps OpenAI's `created`, which Anthropic does not send.
 */
export class WireTranslator implements Translator {
  constructor(private readonly clock: Clock = systemClock) {}

  request(from: WireFormat, to: WireFormat, body: Record<string, unknown>): Record<string, unknown> {
    if (from === to) return body;
    if (from === 'responses') {
      const chat = chatRequestFromResponses(body);
      return to === 'anthropic' ? anthropicRequestFromOpenAi(chat) : chat;
    }
    if (from === 'openai' && to === 'anthropic') return anthropicRequestFromOpenAi(body);
    if (from === 'anthropic' && to === 'openai') return openAiRequestFromAnthropic(body);
    throw unsupported(from, to);
  }

  response(from: WireFormat, to: WireFormat, body: unknown): unknown {
    // Provider error bodies are passed on as they are (the gateway answers failures itself).
    if (from === to || !isObject(body) || body.error !== undefined) return body;
    if (to === 'responses') {
      const chat = from === 'anthropic' ? openAiResponseFromAnthropic(body, this.createdSec()) : body;
      return responsesFromChat(chat, this.createdSec());
    }
    if (from === 'anthropic' && to === 'openai') return openAiResponseFromAnthropic(body, this.createdSec());
    if (from === 'openai' && to === 'anthropic') return anthropicResponseFromOpenAi(body);
    throw unsupported(from, to);
  }

  stream(from: WireFormat, to: WireFormat, model: string, inputTokens?: number): StreamTranslation {
    if (from === to) return passthroughStream();
    if (to === 'responses') {
      const responses = new ResponsesStreamFromChat(model, this.createdSec());
      return from === 'anthropic'
        ? chained(new OpenAiStreamFromAnthropic(model, this.createdSec()), responses)
        : responses;
    }
    if (from === 'anthropic' && to === 'openai')
      return new OpenAiStreamFromAnthropic(model, this.createdSec());
    if (from === 'openai' && to === 'anthropic') return new AnthropicStreamFromOpenAi(model, inputTokens);
    throw unsupported(from, to);
  }

  private createdSec(): number {
    return Math.floor(this.clock.now().getTime() / 1000);
  }
}

function unsupported(from: WireFormat, to: WireFormat): Error {
  return new Error(`no translation from ${from} to ${to}: admission should have dropped this provider`);
}

/** Two translations one after the other (Anthropic → chat → Responses). */
function chained(first: StreamTranslation, second: StreamTranslation): StreamTranslation {
  return {
    push: (e) => first.push(e).flatMap((x) => second.push(x)),
    end: () => [...first.end().flatMap((x) => second.push(x)), ...second.end()],
  };
}

import type { WireFormat } from './provider-call.ts';
import type { SseEvent } from './sse.ts';
import {
  estimateTokens,
  type Usage,
  usageFromAnthropic,
  usageFromOpenAi,
  usageFromResponses,
} from './usage.ts';

/** Responses API events that carry a text or argument delta: what a cut stream produced. */
const RESPONSES_DELTAS = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.custom_tool_call_input.delta',
]);

/**
 * Follows a provider's stream (in the provider's own format) to learn what it
 * produced: the usage it reported, the text it sent (to estimate output when
 * the stream is cut before its usage event), and whether it finished.
 */
export class StreamTracker {
  private reported: Partial<Usage> = {};
  private textChars = 0;
  private text: string[] = [];
  completed = false;
  /** An error event sent by the provider inside the stream. */
  errorMessage: string | undefined;
  /**
   * The provider sent an event whose data is not a JSON object (nor OpenAI's `[DONE]`): the
   * official SDKs would throw a SyntaxError on it, so it is never passed on.
   */
  malformed = false;
  /** Responses API: the sequence_number the next event of this stream would carry. */
  nextSequenceNumber = 0;

  constructor(
    private readonly format: WireFormat,
    private readonly keepText: boolean,
  ) {}

  observe(event: SseEvent): void {
    // Legacy completions stream chat's chunks with `text` in place of `delta`.
    if (this.format === 'openai' || this.format === 'completions') {
      if (event.data === '[DONE]') {
        this.completed = true;
        return;
      }
      const chunk = parse(event.data);
      if (!chunk) {
        this.malformed = true;
        return;
      }
      if (chunk.error) this.errorMessage = messageOf(chunk.error);
      const usage = usageFromOpenAi(chunk.usage);
      if (usage) this.reported = usage;
      for (const choice of (chunk.choices as Array<Record<string, unknown>> | undefined) ?? []) {
        if (typeof choice.text === 'string') this.addText(choice.text);
        const delta = choice.delta as Record<string, unknown> | undefined;
        if (typeof delta?.content === 'string') this.addText(delta.content);
        for (const call of (delta?.tool_calls as Array<Record<string, unknown>> | undefined) ?? []) {
          const args = (call.function as Record<string, unknown> | undefined)?.arguments;
          if (typeof args === 'string') this.addText(args);
        }
      }
      return;
    }
    const data = parse(event.data);
    if (!data) {
      this.malformed = true;
      return;
    }
    if (this.format === 'responses') {
      this.observeResponses(data);
      return;
    }
    switch (event.event ?? data.type) {
      case 'message_start': {
        const u = usageFromAnthropic((data.message as Record<string, unknown> | undefined)?.usage);
        if (u) this.reported = { ...u, output: u.output };
        break;
      }
      case 'message_delta': {
        const raw = data.usage as Record<string, unknown> | undefined;
        const u = usageFromAnthropic(raw);
        if (u && raw) {
          this.reported.output = u.output;
          // Later API versions repeat the input buckets here; keep them when present.
          if (raw.input_tokens !== undefined) this.reported.input = u.input;
          if (raw.cache_read_input_tokens !== undefined) this.reported.cacheRead = u.cacheRead;
          if (raw.cache_creation_input_tokens !== undefined) this.reported.cacheCreation = u.cacheCreation;
        }
        break;
      }
      case 'content_block_delta': {
        const delta = data.delta as Record<string, unknown> | undefined;
        const piece = delta?.text ?? delta?.partial_json ?? delta?.thinking;
        if (typeof piece === 'string') this.addText(piece);
        break;
      }
      case 'message_stop':
        this.completed = true;
        break;
      case 'error':
        this.errorMessage = messageOf(data.error);
        break;
    }
  }

  /**
   * A Responses API event. The response ends in response.completed or
   * response.incomplete (stopped at max_output_tokens or by the content
   * filter: a finished answer, as a chat completion ending for `length` is) or
   * response.failed; each carries the usage. `error` events (their message at
   * the top level) and response.failed are provider errors.
   */
  private observeResponses(data: Record<string, unknown>): void {
    if (typeof data.sequence_number === 'number') this.nextSequenceNumber = data.sequence_number + 1;
    const type = data.type;
    if (typeof type === 'string' && RESPONSES_DELTAS.has(type)) {
      if (typeof data.delta === 'string') this.addText(data.delta);
      return;
    }
    const response = data.response as Record<string, unknown> | undefined;
    switch (type) {
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed': {
        const u = usageFromResponses(response?.usage);
        if (u) this.reported = u;
        if (type === 'response.failed') this.errorMessage = messageOf(response?.error);
        else this.completed = true;
        break;
      }
      case 'error':
        this.errorMessage = messageOf(data.error ?? data);
        break;
    }
  }

  /**
   * Observes `events` in order up to the first malformed one and returns those
   * before it: what may go on to the client.
   */
  observeAll(events: SseEvent[]): SseEvent[] {
    for (let i = 0; i < events.length; i++) {
      this.observe(events[i]!);
      if (this.malformed) return events.slice(0, i);
    }
    return events;
  }

  private addText(piece: string): void {
    this.textChars += piece.length;
    if (this.keepText) this.text.push(piece);
  }

  producedText(): string {
    return this.text.join('');
  }

  /**
   * What to charge: the provider's own figures when it reported them; for a
   * stream cut short, the input estimate and the output actually sent (never zero).
   */
  usage(estimatedInputTokens: number): Usage {
    const producedOutput = Math.ceil(this.textChars / 4);
    const hasInput = this.reported.input !== undefined || this.reported.cacheRead !== undefined;
    return {
      input: hasInput ? (this.reported.input ?? 0) : estimatedInputTokens,
      output: Math.max(this.reported.output ?? 0, this.completed ? 0 : producedOutput),
      cacheRead: this.reported.cacheRead ?? 0,
      cacheCreation: this.reported.cacheCreation ?? 0,
    };
  }
}

function parse(data: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(data);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function messageOf(error: unknown): string {
  if (error && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return 'the provider reported an error in the stream';
}

/** What the client is told when the provider sent an event it could not have parsed. */
export const MALFORMED_EVENT_MESSAGE = 'the provider sent a stream event that is not valid JSON';

/**
 * An error event in the client's format, which the official SDKs raise as an
 * error. Responses API clients get OpenAI's `error` event (code and message at
 * the top level, numbered after the events already sent) with Paddock's
 * `error` object beside them: the openai SDK raises any event whose data has
 * an `error` as an APIError.
 */
export function streamErrorEvent(
  format: WireFormat,
  code: string,
  message: string,
  runId: string,
  sequenceNumber = 0,
): SseEvent {
  const error = { type: 'provider_error', code, message, run_id: runId };
  if (format === 'responses') {
    const event = { type: 'error', code, message, param: null, sequence_number: sequenceNumber, error };
    return { event: 'error', data: JSON.stringify(event) };
  }
  return format === 'anthropic'
    ? { event: 'error', data: JSON.stringify({ type: 'error', error }) }
    : { event: undefined, data: JSON.stringify({ error }) };
}

/** Is this OpenAI chunk the usage-only chunk (no choices) that the client did not ask for? */
export function isUsageOnlyChunk(event: SseEvent): boolean {
  if (event.data === '[DONE]' || !event.data.includes('"usage"')) return false;
  const chunk = parse(event.data);
  return !!chunk && Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage != null;
}

export { estimateTokens };

import type { SseEvent } from './sse.ts';
import {
  anthropicError,
  anthropicIdFrom,
  anthropicToolId,
  anthropicUsage,
  asString,
  finishReasonOf,
  isObject,
  type JsonObject,
  objectsOf,
  openAiError,
  openAiIdFrom,
  openAiUsage,
  parseJson,
  stopReasonOf,
} from './translation-common.ts';
import { type Usage, usageFromAnthropic, usageFromOpenAi, ZERO_USAGE } from './usage.ts';

/**
 * One stream being translated: `push` takes each provider event and returns
 * the client's events for it.
 *
 * `end()` never fabricates a successful ending. When the provider stream
 * stops before its own terminator (message_stop / [DONE]) the gateway sees
 * the stream as unfinished and appends an error event itself; a made-up
 * message_stop or [DONE] before it would tell the client the answer was
 * whole. So `end()` only flushes events already known to be complete.
 */
export interface StreamTranslation {
  push(event: SseEvent): SseEvent[];
  end(): SseEvent[];
}

export const passthroughStream = (): StreamTranslation => ({ push: (e) => [e], end: () => [] });

const openAiEvent = (payload: unknown): SseEvent => ({ event: undefined, data: JSON.stringify(payload) });
const DONE: SseEvent = { event: undefined, data: '[DONE]' };

/** Anthropic SSE events name themselves twice: `event:` equals the data's `type`. */
const anthropicEvent = (type: string, fields: JsonObject): SseEvent => ({
  event: type,
  data: JSON.stringify({ type, ...fields }),
});

/** Anthropic Messages events → OpenAI chat.completion.chunk events. */
export class OpenAiStreamFromAnthropic implements StreamTranslation {
  private id: string = openAiIdFrom(undefined);
  private model: string;
  private roleSent = false;
  private finishSent = false;
  private usage: Usage = { ...ZERO_USAGE };
  /** Anthropic content-block index → OpenAI tool_calls index, for tool_use blocks only. */
  private readonly toolIndexOfBlock = new Map<number, number>();

  constructor(
    model: string,
    private readonly createdSec: number,
  ) {
    this.model = model;
  }

  push(event: SseEvent): SseEvent[] {
    const data = parseJson(event.data);
    if (!data) return [];
    switch (event.event ?? data.type) {
      case 'message_start': {
        const message = isObject(data.message) ? data.message : {};
        if (message.id !== undefined) this.id = openAiIdFrom(message.id);
        this.model = asString(message.model) ?? this.model;
        this.usage = usageFromAnthropic(message.usage) ?? this.usage;
        return [this.chunk({ content: '' })];
      }
      case 'content_block_start': {
        const block = isObject(data.content_block) ? data.content_block : {};
        const index = typeof data.index === 'number' ? data.index : -1;
        if (block.type === 'text' && typeof block.text === 'string' && block.text !== '') {
          return [this.chunk({ content: block.text })];
        }
        if (block.type !== 'tool_use') return [];
        const toolIndex = this.toolIndexOfBlock.size;
        this.toolIndexOfBlock.set(index, toolIndex);
        // Streams open a tool_use block with `input: {}`; anything else is input sent whole.
        const input = isObject(block.input) && Object.keys(block.input).length > 0 ? block.input : undefined;
        const call = {
          index: toolIndex,
          id: block.id,
          type: 'function',
          function: { name: block.name, arguments: input ? JSON.stringify(input) : '' },
        };
        return [this.chunk({ tool_calls: [call] })];
      }
      case 'content_block_delta': {
        const delta = isObject(data.delta) ? data.delta : {};
        if (delta.type === 'text_delta' && typeof delta.text === 'string') {
          return [this.chunk({ content: delta.text })];
        }
        const toolIndex = this.toolIndexOfBlock.get(typeof data.index === 'number' ? data.index : -1);
        if (delta.type === 'input_json_delta' && toolIndex !== undefined) {
          const piece = asString(delta.partial_json) ?? '';
          if (piece === '') return [];
          return [this.chunk({ tool_calls: [{ index: toolIndex, function: { arguments: piece } }] })];
        }
        // thinking, signature and citation deltas have no Chat Completions form.
        return [];
      }
      case 'message_delta': {
        this.takeUsage(data.usage);
        const delta = isObject(data.delta) ? data.delta : {};
        return [this.finish(finishReasonOf(delta.stop_reason))];
      }
      case 'message_stop': {
        const out = this.finishSent ? [] : [this.finish('stop')];
        // The usage-only chunk comes after the finish chunk, as OpenAI sends it with include_usage.
        out.push(this.base({ choices: [], usage: openAiUsage(this.usage) }), DONE);
        return out;
      }
      case 'error':
        return [openAiEvent({ error: openAiError(data.error) })];
      default:
        // ping, and event types added to the API later.
        return [];
    }
  }

  end(): SseEvent[] {
    // Everything is emitted as it arrives; an unfinished stream is the gateway's to report.
    return [];
  }

  /** message_delta repeats the input buckets in later API versions; take them when present. */
  private takeUsage(raw: unknown): void {
    if (!isObject(raw)) return;
    const u = usageFromAnthropic(raw);
    if (!u) return;
    this.usage.output = u.output;
    if (raw.input_tokens != null) this.usage.input = u.input;
    if (raw.cache_read_input_tokens != null) this.usage.cacheRead = u.cacheRead;
    if (raw.cache_creation_input_tokens != null) this.usage.cacheCreation = u.cacheCreation;
  }

  private finish(reason: string): SseEvent {
    this.finishSent = true;
    return this.base({ choices: [{ index: 0, delta: {}, finish_reason: reason, logprobs: null }] });
  }

  /** A content chunk; the first one of the stream also carries the role, as OpenAI's does. */
  private chunk(delta: JsonObject): SseEvent {
    const d = this.roleSent ? delta : { role: 'assistant', ...delta };
    this.roleSent = true;
    return this.base({ choices: [{ index: 0, delta: d, finish_reason: null, logprobs: null }] });
  }

  private base(fields: JsonObject): SseEvent {
    return openAiEvent({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.createdSec,
      model: this.model,
      ...fields,
    });
  }
}

/**
 * OpenAI chat.completion.chunk events → Anthropic Messages events, in the
 * order the Anthropic SDK accumulates: message_start, then each content block
 * opened, filled and closed before the next (text, then one block per tool
 * call), then message_delta and message_stop.
 */
export class AnthropicStreamFromOpenAi implements StreamTranslation {
  private started = false;
  private closed = false;
  private sawDone = false;
  private nextBlock = 0;
  private open: { index: number; kind: 'text' | 'tool' } | undefined;
  /** OpenAI tool_calls index → Anthropic content-block index. */
  private readonly blockOfTool = new Map<number, number>();
  private stopReason: string | undefined;
  private usage: Usage | undefined;

  /**
   * `inputTokens`: the gateway's own count of the prompt, which message_start
   * carries as Anthropic's does (some clients read input tokens there alone);
   * the provider's figure, when it sends one, replaces it in message_delta.
   */
  constructor(
    private readonly model: string,
    private readonly inputTokens = 0,
  ) {}

  push(event: SseEvent): SseEvent[] {
    if (this.closed) return [];
    if (event.data === '[DONE]') {
      this.sawDone = true;
      return this.finish();
    }
    const chunk = parseJson(event.data);
    if (!chunk) return [];
    if (chunk.error !== undefined && chunk.error !== null) {
      return [anthropicEvent('error', { error: anthropicError(chunk.error) })];
    }
    const out = this.start(chunk);
    // Chat Completions' `n` has no Anthropic form: only the first choice is followed.
    for (const choice of objectsOf(chunk.choices).filter((c) => (c.index ?? 0) === 0)) {
      const delta = isObject(choice.delta) ? choice.delta : {};
      const text = asString(delta.content) || asString(delta.refusal);
      if (text) out.push(...this.text(text));
      objectsOf(delta.tool_calls).forEach((call, position) => {
        out.push(...this.toolCall(call, position));
      });
      if (choice.finish_reason != null) {
        out.push(...this.closeBlock());
        this.stopReason = stopReasonOf(choice.finish_reason);
      }
    }
    // With include_usage, OpenAI sends usage in a chunk of its own after the
    // finish reason; message_delta carries it, so it waits for that chunk.
    if (isObject(chunk.usage)) {
      this.usage = usageFromOpenAi(chunk.usage);
      if (this.stopReason !== undefined) out.push(...this.finish());
    }
    return out;
  }

  end(): SseEvent[] {
    // Only a stream the provider terminated ([DONE]) may be closed here.
    return this.sawDone ? this.finish() : [];
  }

  private start(chunk: JsonObject): SseEvent[] {
    if (this.started) return [];
    this.started = true;
    // OpenAI reports input tokens only at the end: message_start has the estimate, message_delta the count.
    return [
      anthropicEvent('message_start', {
        message: {
          id: anthropicIdFrom(chunk.id),
          type: 'message',
          role: 'assistant',
          model: asString(chunk.model) ?? this.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: anthropicUsage({ ...ZERO_USAGE, input: this.inputTokens }),
        },
      }),
    ];
  }

  private text(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.open?.kind !== 'text') {
      out.push(...this.closeBlock());
      this.open = { index: this.nextBlock++, kind: 'text' };
      out.push(
        anthropicEvent('content_block_start', {
          index: this.open.index,
          content_block: { type: 'text', text: '' },
        }),
      );
    }
    out.push(
      anthropicEvent('content_block_delta', {
        index: this.open.index,
        delta: { type: 'text_delta', text },
      }),
    );
    return out;
  }

  private toolCall(call: JsonObject, position: number): SseEvent[] {
    const out: SseEvent[] = [];
    const key = typeof call.index === 'number' ? call.index : position;
    const fn = isObject(call.function) ? call.function : {};
    let index = this.blockOfTool.get(key);
    if (index === undefined) {
      out.push(...this.closeBlock());
      index = this.nextBlock++;
      this.blockOfTool.set(key, index);
      this.open = { index, kind: 'tool' };
      out.push(
        anthropicEvent('content_block_start', {
          index,
          content_block: {
            type: 'tool_use',
            id: anthropicToolId(call.id),
            name: asString(fn.name) ?? '',
            input: {},
          },
        }),
      );
    }
    // OpenAI sends each call's pieces together; a late piece for a closed block
    // still goes to that block's index rather than being lost.
    const args = asString(fn.arguments);
    if (args) {
      out.push(
        anthropicEvent('content_block_delta', {
          index,
          delta: { type: 'input_json_delta', partial_json: args },
        }),
      );
    }
    return out;
  }

  private closeBlock(): SseEvent[] {
    if (!this.open) return [];
    const index = this.open.index;
    this.open = undefined;
    return [anthropicEvent('content_block_stop', { index })];
  }

  /** message_delta and message_stop, once; only called when the provider has finished. */
  private finish(): SseEvent[] {
    if (this.closed) return [];
    this.closed = true;
    const out = [...this.start({}), ...this.closeBlock()];
    const stopReason = this.stopReason ?? (this.blockOfTool.size > 0 ? 'tool_use' : 'end_turn');
    out.push(
      anthropicEvent('message_delta', {
        delta: { stop_reason: stopReason, stop_sequence: null },
        usage: this.usage ? anthropicUsage(this.usage) : { output_tokens: 0 },
      }),
      anthropicEvent('message_stop', {}),
    );
    return out;
  }
}

import type { SseEvent } from './sse.ts';
import {
  asString,
  isObject,
  type JsonObject,
  objectsOf,
  openAiError,
  parseJson,
} from './translation-common.ts';
import {
  functionCallItem,
  itemId,
  messageItem,
  outputTextPart,
  responseIdFrom,
  responseShell,
  responsesUsage,
  statusOf,
} from './translation-responses-response.ts';
import type { StreamTranslation } from './translation-stream.ts';

interface TextItem {
  kind: 'text';
  outputIndex: number;
  id: string;
  text: string;
  done: boolean;
}
interface CallItem {
  kind: 'call';
  outputIndex: number;
  id: string;
  callId: unknown;
  name: unknown;
  args: string;
  done: boolean;
}

/**
 * Chat Completions chunks → the Responses API's typed events, in the order
 * OpenAI sends them: response.created and response.in_progress; for each
 * output item its `added` event, its deltas and its `done` events; then
 * response.completed (or response.incomplete) with the whole response. Every
 * event carries its `sequence_number`. Like the other translations it never
 * invents an ending: the terminal event waits for the provider's [DONE].
 */
export class ResponsesStreamFromChat implements StreamTranslation {
  private seq = 0;
  private started = false;
  private closed = false;
  private id: string;
  private model: string;
  private readonly items: Array<TextItem | CallItem> = [];
  private text: TextItem | undefined;
  /** Chat tool_calls index → its function_call item. */
  private readonly calls = new Map<number, CallItem>();
  private finishReason: unknown;
  private usage: JsonObject | null = null;

  constructor(
    model: string,
    private readonly createdSec: number,
  ) {
    this.id = responseIdFrom(undefined);
    this.model = model;
  }

  push(event: SseEvent): SseEvent[] {
    if (this.closed) return [];
    if (event.data === '[DONE]') return this.complete();
    const chunk = parseJson(event.data);
    if (!chunk) return [];
    if (chunk.error !== undefined && chunk.error !== null) {
      const error = openAiError(chunk.error);
      return [this.event('error', { code: error.code, message: error.message, param: null, error })];
    }
    const out = this.start(chunk);
    for (const choice of objectsOf(chunk.choices).filter((c) => (c.index ?? 0) === 0)) {
      const delta = isObject(choice.delta) ? choice.delta : {};
      const text = asString(delta.content) || asString(delta.refusal);
      if (text) out.push(...this.textDelta(text));
      objectsOf(delta.tool_calls).forEach((call, position) => {
        out.push(...this.callDelta(call, position));
      });
      if (choice.finish_reason != null) {
        this.finishReason = choice.finish_reason;
        out.push(...this.closeText(), ...this.closeCalls());
      }
    }
    if (isObject(chunk.usage)) this.usage = responsesUsage(chunk.usage);
    return out;
  }

  end(): SseEvent[] {
    return [];
  }

  private event(type: string, fields: JsonObject): SseEvent {
    return { event: type, data: JSON.stringify({ type, ...fields, sequence_number: this.seq++ }) };
  }

  private response(status: string): JsonObject {
    return responseShell(this.id, this.createdSec, this.model, status);
  }

  private start(chunk: JsonObject): SseEvent[] {
    if (this.started) return [];
    this.started = true;
    if (chunk.id !== undefined) this.id = responseIdFrom(chunk.id);
    this.model = asString(chunk.model) ?? this.model;
    return [
      this.event('response.created', { response: this.response('in_progress') }),
      this.event('response.in_progress', { response: this.response('in_progress') }),
    ];
  }

  private textDelta(delta: string): SseEvent[] {
    const out: SseEvent[] = [];
    if (!this.text) {
      out.push(...this.closeCalls());
      this.text = { kind: 'text', outputIndex: this.items.length, id: itemId('msg'), text: '', done: false };
      this.items.push(this.text);
      const at = { output_index: this.text.outputIndex };
      out.push(
        this.event('response.output_item.added', {
          ...at,
          item: messageItem(this.text.id, 'in_progress', []),
        }),
        this.event('response.content_part.added', {
          item_id: this.text.id,
          ...at,
          content_index: 0,
          part: outputTextPart(''),
        }),
      );
    }
    this.text.text += delta;
    out.push(
      this.event('response.output_text.delta', {
        item_id: this.text.id,
        output_index: this.text.outputIndex,
        content_index: 0,
        delta,
        logprobs: [],
      }),
    );
    return out;
  }

  private callDelta(call: JsonObject, position: number): SseEvent[] {
    const out: SseEvent[] = [];
    const key = typeof call.index === 'number' ? call.index : position;
    const fn = isObject(call.function) ? call.function : {};
    let item = this.calls.get(key);
    if (!item) {
      out.push(...this.closeText());
      item = {
        kind: 'call',
        outputIndex: this.items.length,
        id: itemId('fc'),
        callId: call.id,
        name: fn.name,
        args: '',
        done: false,
      };
      this.calls.set(key, item);
      this.items.push(item);
      out.push(
        this.event('response.output_item.added', {
          output_index: item.outputIndex,
          item: functionCallItem(item.id, 'in_progress', {
            callId: item.callId,
            name: item.name,
            arguments: '',
          }),
        }),
      );
    }
    const args = asString(fn.arguments);
    if (args) {
      item.args += args;
      out.push(
        this.event('response.function_call_arguments.delta', {
          item_id: item.id,
          output_index: item.outputIndex,
          delta: args,
        }),
      );
    }
    return out;
  }

  private itemStatus(): string {
    return statusOf(this.finishReason).status === 'completed' ? 'completed' : 'incomplete';
  }

  private finalItem(item: TextItem | CallItem): JsonObject {
    return item.kind === 'text'
      ? messageItem(item.id, this.itemStatus(), [outputTextPart(item.text)])
      : functionCallItem(item.id, 'completed', {
          callId: item.callId,
          name: item.name,
          arguments: item.args,
        });
  }

  private closeText(): SseEvent[] {
    const item = this.text;
    if (!item) return [];
    this.text = undefined;
    item.done = true;
    const at = { item_id: item.id, output_index: item.outputIndex, content_index: 0 };
    return [
      this.event('response.output_text.done', { ...at, text: item.text, logprobs: [] }),
      this.event('response.content_part.done', { ...at, part: outputTextPart(item.text) }),
      this.event('response.output_item.done', { output_index: item.outputIndex, item: this.finalItem(item) }),
    ];
  }

  /**
   * Tool calls stay open until the answer moves on (text, or its end): a
   * provider may send a call's argument pieces after the next call began.
   */
  private closeCalls(): SseEvent[] {
    const out: SseEvent[] = [];
    for (const item of this.calls.values()) {
      if (item.done) continue;
      item.done = true;
      out.push(
        this.event('response.function_call_arguments.done', {
          item_id: item.id,
          output_index: item.outputIndex,
          name: item.name,
          arguments: item.args,
        }),
        this.event('response.output_item.done', {
          output_index: item.outputIndex,
          item: this.finalItem(item),
        }),
      );
    }
    return out;
  }

  /** The provider finished: the terminal event with the whole response. */
  private complete(): SseEvent[] {
    this.closed = true;
    const out = [...this.start({}), ...this.closeText(), ...this.closeCalls()];
    const { status, incomplete_details } = statusOf(this.finishReason);
    const response = {
      ...this.response(status),
      incomplete_details,
      output: this.items.map((i) => this.finalItem(i)),
      usage: this.usage,
    };
    out.push(this.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response }));
    return out;
  }
}

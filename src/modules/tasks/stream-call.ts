import type { Timer, Timers } from '../../core/context.ts';
import { SseParser } from '../gateway/sse.ts';
import { type SecretRedactor, StreamRedactor } from '../secrets/redact.ts';
import { TaskEnd } from './agent-loop.ts';

/** A stream-mode task writes its first text delta at once, then at most one this often… */
export const DELTA_INTERVAL_MS = 50;
/** …or as soon as this many characters are waiting. */
export const DELTA_MAX_CHARS = 1024;

interface ToolCallParts {
  id: string;
  name: string;
  arguments: string;
}

/**
 * Rebuilds a chat completion from an OpenAI Chat Completions stream (the
 * gateway's answer to a `stream: true` call, translated for an Anthropic key):
 * the text, each tool call from its argument fragments, the usage and the
 * finish reason. `push` takes the stream's text as it comes and answers the
 * text deltas it carried; `end` answers the whole completion in the shape of
 * a non-streamed answer. An error event in the stream, or a stream that ends
 * before its `[DONE]`, ends the task.
 */
export class ChatStreamAssembler {
  private readonly parser = new SseParser();
  private text = '';
  /** By the index the stream gives each call. */
  private readonly calls = new Map<number, ToolCallParts>();
  private finishReason: string | null = null;
  private usage: unknown = null;
  private done = false;

  push(chunk: string): string[] {
    return this.events(this.parser.push(chunk));
  }

  end(): Record<string, unknown> {
    this.events(this.parser.end());
    if (!this.done) throw new TaskEnd('mid_stream_error', 'the model’s stream ended before it finished');
    const calls = [...this.calls].sort(([a], [b]) => a - b).map(([, c]) => c);
    return {
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: this.text === '' && calls.length > 0 ? null : this.text,
            ...(calls.length > 0
              ? {
                  tool_calls: calls.map((c) => ({
                    // A call without an id or a name is the loop's to refuse, as in a JSON answer.
                    id: c.id === '' ? undefined : c.id,
                    type: 'function',
                    function: { name: c.name, arguments: c.arguments },
                  })),
                }
              : {}),
          },
          finish_reason: this.finishReason,
        },
      ],
      usage: this.usage,
    };
  }

  private events(events: ReadonlyArray<{ data: string }>): string[] {
    const deltas: string[] = [];
    for (const { data } of events) {
      if (this.done) break;
      if (data === '[DONE]') {
        this.done = true;
        break;
      }
      const chunk = parseObject(data);
      if (!chunk) throw new TaskEnd('model_error', 'the model’s stream sent an event that is not JSON');
      if (chunk.error !== undefined && chunk.error !== null) throw streamError(chunk.error);
      if (isObject(chunk.usage)) this.usage = chunk.usage;
      const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
      const choice = choices.find((c) => isObject(c) && (c.index ?? 0) === 0);
      if (!isObject(choice)) continue;
      if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason;
      const delta = isObject(choice.delta) ? choice.delta : {};
      if (typeof delta.content === 'string' && delta.content !== '') {
        this.text += delta.content;
        deltas.push(delta.content);
      }
      if (Array.isArray(delta.tool_calls)) for (const part of delta.tool_calls) this.toolCallPart(part);
    }
    return deltas;
  }

  /** A piece of a tool call: its first carries the id and name, the next ones slices of its arguments. */
  private toolCallPart(part: unknown): void {
    if (!isObject(part)) return;
    const index = typeof part.index === 'number' ? part.index : this.calls.size;
    const fn = isObject(part.function) ? part.function : {};
    const call = this.calls.get(index) ?? { id: '', name: '', arguments: '' };
    this.calls.set(index, call);
    if (typeof part.id === 'string' && part.id !== '') call.id = part.id;
    if (typeof fn.name === 'string' && call.name === '') call.name = fn.name;
    if (typeof fn.arguments === 'string') call.arguments += fn.arguments;
  }
}

/**
 * Writes a stream's text as `text_delta` events: the first piece at once,
 * later ones gathered for DELTA_INTERVAL_MS or until DELTA_MAX_CHARS wait, so
 * a long answer is not a row a token. Every piece passes the task's redactor;
 * the last characters that could be the start of a secret are held back until
 * the next piece (or the end) shows they are not, so a value split across two
 * pieces is still replaced. A failed write (the task was cancelled) is thrown
 * by the next push or by end().
 */
export class DeltaWriter {
  private readonly redacting: StreamRedactor;
  private waiting = '';
  private wrote = false;
  private timer: Timer | undefined;
  private writing: Promise<void> = Promise.resolve();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly timers: Pick<Timers, 'after'>,
    redactor: SecretRedactor,
    private readonly write: (text: string) => Promise<void>,
  ) {
    this.redacting = new StreamRedactor(redactor);
  }

  push(raw: string): void {
    if (this.failure) throw this.failure.error;
    this.waiting += this.redacting.push(raw);
    if (this.waiting === '') return;
    if (!this.wrote || this.waiting.length >= DELTA_MAX_CHARS) this.flush();
    else this.timer ??= this.timers.after(DELTA_INTERVAL_MS, () => this.flush());
  }

  /** Writes what is held back and waits for every write. */
  async end(): Promise<void> {
    this.waiting += this.redacting.end();
    this.flush();
    await this.writing;
    if (this.failure) throw this.failure.error;
  }

  /** Stops the timer (the stream failed): nothing more is written. */
  close(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.waiting = '';
  }

  private flush(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.waiting === '' || this.failure) return;
    const text = this.waiting;
    this.waiting = '';
    this.wrote = true;
    this.writing = this.writing.then(() =>
      this.failure
        ? undefined
        : this.write(text).catch((error: unknown) => {
            this.failure = { error };
          }),
    );
  }
}

/**
 * Reads a streamed model call to its end: the text deltas go to `delta` as
 * they arrive, the completion is answered whole. The stream is closed (and
 * its call settled by the gateway) whatever ends the read.
 */
export async function readCompletionStream(
  chunks: AsyncIterable<string>,
  delta: (text: string) => void,
): Promise<Record<string, unknown>> {
  const assembler = new ChatStreamAssembler();
  for await (const chunk of chunks) for (const piece of assembler.push(chunk)) delta(piece);
  return assembler.end();
}

function streamError(error: unknown): TaskEnd {
  const e = isObject(error) ? error : {};
  const code = typeof e.code === 'string' && e.code !== '' ? e.code : 'provider_error';
  const message = typeof e.message === 'string' ? e.message : 'the provider reported an error in the stream';
  return new TaskEnd(code, message);
}

function parseObject(data: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(data);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

import { randomBytes } from 'node:crypto';
import type OpenAI from 'openai';
import type { Answer } from './mock-llm.ts';

/**
 * The mock's OpenAI Responses API (`POST /v1/responses`): the JSON response
 * object and the typed SSE events, as OpenAI sends them. Checked against the
 * SDK's types; `output_text` is left out because the SDK adds it itself.
 */

/** The API also echoes `store`, which the SDK's type leaves out. */
type WireResponse = Omit<OpenAI.Responses.Response, 'output_text'> & { store: boolean };
type StreamEvent = OpenAI.Responses.ResponseStreamEvent;
/** An event before its sequence_number, which `responsesEvents` numbers in order. */
type Unnumbered = StreamEvent extends infer E
  ? E extends unknown
    ? Omit<E, 'sequence_number'>
    : never
  : never;

/** OpenAI's response, message and function-call item ids: a prefix and 48 hex digits. */
export const hexId = (prefix: string) => `${prefix}${randomBytes(24).toString('hex')}`;

/** The default input tokens of a Responses request: its instructions and input items' text. */
export function responsesPromptChars(
  body: Record<string, unknown>,
  textLength: (v: unknown) => number,
): number {
  let chars = textLength(body.instructions);
  if (typeof body.input === 'string') return chars + body.input.length;
  if (!Array.isArray(body.input)) return chars;
  for (const item of body.input) {
    if (item === null || typeof item !== 'object') continue;
    const i = item as Record<string, unknown>;
    // Messages carry content; function calls their arguments; tool results their output.
    chars += textLength(i.content) + textLength(i.arguments) + textLength(i.output);
  }
  return chars;
}

/** What a real API refuses before answering: no model, no input. */
export function responsesBodyProblem(body: Record<string, unknown>): string | undefined {
  if (typeof body.model !== 'string' || body.model === '') return 'Missing required parameter: model.';
  const input = body.input;
  if (input === undefined && body.previous_response_id === undefined)
    return "Missing required parameter: 'input'.";
  if (input !== undefined && typeof input !== 'string' && !Array.isArray(input))
    return "Invalid type for 'input': expected a string or an array of input items.";
  return undefined;
}

function usageOf(a: Answer): OpenAI.Responses.ResponseUsage {
  // OpenAI has no cache-write bucket: those tokens are plain input; cached ones are part of input_tokens.
  const input = a.usage.input + a.usage.cacheRead + a.usage.cacheCreation;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: a.usage.cacheRead },
    output_tokens: a.usage.output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + a.usage.output,
  };
}

interface Items {
  message: OpenAI.Responses.ResponseOutputMessage | undefined;
  calls: OpenAI.Responses.ResponseFunctionToolCall[];
}

/** The answer's output items, completed: a message when there is text (or nothing else), then the calls. */
function itemsOf(a: Answer): Items {
  const message: Items['message'] =
    a.text !== '' || a.tools.length === 0
      ? {
          id: hexId('msg_'),
          type: 'message',
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: a.text, annotations: [], logprobs: [] }],
        }
      : undefined;
  const calls = a.tools.map(
    (t): OpenAI.Responses.ResponseFunctionToolCall => ({
      id: hexId('fc_'),
      type: 'function_call',
      status: 'completed',
      call_id: t.id,
      name: t.name,
      arguments: t.json,
    }),
  );
  return { message, calls };
}

/** The response object, echoing the request's settings as OpenAI does. */
function responseOf(
  a: Answer,
  body: Record<string, unknown>,
  status: 'in_progress' | 'completed' | 'failed',
  items: Items | undefined,
  error?: string,
): WireResponse {
  const output: OpenAI.Responses.ResponseOutputItem[] = items
    ? [...(items.message ? [items.message] : []), ...items.calls]
    : [];
  const echo = <T>(key: string, fallback: T): T => (body[key] === undefined ? fallback : (body[key] as T));
  return {
    id: a.id,
    object: 'response',
    created_at: a.created,
    status,
    background: false,
    completed_at: status === 'completed' ? a.created : null,
    error: error === undefined ? null : { code: 'server_error', message: error },
    incomplete_details: null,
    instructions: echo('instructions', null),
    max_output_tokens: echo('max_output_tokens', null),
    metadata: echo('metadata', {}),
    model: a.model,
    output,
    parallel_tool_calls: echo('parallel_tool_calls', true),
    previous_response_id: echo('previous_response_id', null),
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: echo('store', true),
    temperature: echo('temperature', 1),
    text: echo('text', { format: { type: 'text' } }),
    tool_choice: echo('tool_choice', 'auto'),
    tools: echo('tools', []),
    top_p: echo('top_p', 1),
    truncation: 'disabled',
    usage: status === 'completed' ? usageOf(a) : undefined,
  };
}

/** The events' type wants the SDK-made `output_text`, which no event carries on the wire. */
const inEvent = (r: WireResponse) => r as unknown as OpenAI.Responses.Response;

export function responsesJson(a: Answer, body: Record<string, unknown>): string {
  return JSON.stringify(responseOf(a, body, 'completed', itemsOf(a)));
}

/**
 * The stream: response.created and .in_progress; per output item
 * output_item.added, its parts (a message's output_text part with its deltas,
 * a call's argument deltas) and output_item.done; response.completed with the
 * usage. Every event is named (`event:`) and numbered (`sequence_number`).
 */
export function responsesEvents(
  a: Answer,
  body: Record<string, unknown>,
  slices: (s: string) => string[],
): string[] {
  const items = itemsOf(a);
  const events: Unnumbered[] = [
    { type: 'response.created', response: inEvent(responseOf(a, body, 'in_progress', undefined)) },
    { type: 'response.in_progress', response: inEvent(responseOf(a, body, 'in_progress', undefined)) },
  ];
  let output_index = 0;
  const m = items.message;
  if (m) {
    const item_id = m.id;
    events.push({
      type: 'response.output_item.added',
      output_index,
      item: { ...m, status: 'in_progress', content: [] },
    });
    const empty = { type: 'output_text' as const, text: '', annotations: [], logprobs: [] };
    events.push({
      type: 'response.content_part.added',
      item_id,
      output_index,
      content_index: 0,
      part: empty,
    });
    for (const delta of a.chunks)
      events.push({
        type: 'response.output_text.delta',
        item_id,
        output_index,
        content_index: 0,
        delta,
        logprobs: [],
      });
    events.push({
      type: 'response.output_text.done',
      item_id,
      output_index,
      content_index: 0,
      text: a.text,
      logprobs: [],
    });
    events.push({
      type: 'response.content_part.done',
      item_id,
      output_index,
      content_index: 0,
      part: m.content[0]!,
    });
    events.push({ type: 'response.output_item.done', output_index, item: m });
    output_index += 1;
  }
  for (const call of items.calls) {
    const item_id = call.id!;
    events.push({
      type: 'response.output_item.added',
      output_index,
      item: { ...call, status: 'in_progress', arguments: '' },
    });
    for (const delta of slices(call.arguments))
      events.push({ type: 'response.function_call_arguments.delta', item_id, output_index, delta });
    events.push({
      type: 'response.function_call_arguments.done',
      item_id,
      output_index,
      name: call.name,
      arguments: call.arguments,
    });
    events.push({ type: 'response.output_item.done', output_index, item: call });
    output_index += 1;
  }
  events.push({
    type: 'response.completed',
    response: inEvent(responseOf(a, body, 'completed', items)),
  });
  return events.map((e, i) => named({ ...e, sequence_number: i } as StreamEvent));
}

const named = (e: StreamEvent): string => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;

/**
 * A failure inside the stream: before any event, OpenAI's `error` event (there
 * is no response yet); later, `response.failed` carrying the error.
 */
export function responsesErrorEvent(
  a: Answer,
  body: Record<string, unknown>,
  sequence: number,
  message = 'The server had an error while processing your request.',
): string {
  if (sequence === 0)
    return named({ type: 'error', code: 'server_error', message, param: null, sequence_number: 0 });
  const response = inEvent(responseOf(a, body, 'failed', undefined, message));
  return named({ type: 'response.failed', response, sequence_number: sequence });
}

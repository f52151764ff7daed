import { randomBytes } from 'node:crypto';
import { asString, isObject, type JsonObject, objectsOf } from './translation-common.ts';

/*
 * A Chat Completions answer as a Responses API object. The gateway's
 * Responses front replaces the id with its own stored one and adds the echo
 * of the request's parameters (instructions, tools, metadata, …); these
 * functions build what the provider's answer itself says.
 */

/** An item id in OpenAI's style (`msg_…`, `fc_…`): unique, not a Paddock id (items are not rows). */
export function itemId(prefix: 'msg' | 'fc' | 'fco'): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

export function responseIdFrom(chatId: unknown): string {
  const id = asString(chatId);
  return `resp_${id ? id.replace(/^chatcmpl-/, '') : randomBytes(12).toString('hex')}`;
}

export function outputTextPart(text: string): JsonObject {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

export function messageItem(id: string, status: string, content: JsonObject[]): JsonObject {
  return { id, type: 'message', status, role: 'assistant', content };
}

export function functionCallItem(
  id: string,
  status: string,
  call: { callId: unknown; name: unknown; arguments: string },
): JsonObject {
  return {
    id,
    type: 'function_call',
    status,
    call_id: call.callId,
    name: call.name,
    arguments: call.arguments,
  };
}

/** Chat's finish_reason as the Responses API's status and incomplete_details. */
export function statusOf(finishReason: unknown): { status: string; incomplete_details: JsonObject | null } {
  if (finishReason === 'length')
    return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finishReason === 'content_filter')
    return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

/** Chat usage (prompt_tokens includes the cached part) in the Responses API's names. */
export function responsesUsage(usage: unknown): JsonObject | null {
  if (!isObject(usage)) return null;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
  const input = n(usage.prompt_tokens);
  const output = n(usage.completion_tokens);
  const cached = isObject(usage.prompt_tokens_details) ? n(usage.prompt_tokens_details.cached_tokens) : 0;
  const reasoning = isObject(usage.completion_tokens_details)
    ? n(usage.completion_tokens_details.reasoning_tokens)
    : 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: input + output,
  };
}

/** The fields every Responses object has, whatever its state. */
export function responseShell(id: string, createdSec: number, model: unknown, status: string): JsonObject {
  return {
    id,
    object: 'response',
    created_at: createdSec,
    status,
    error: null,
    incomplete_details: null,
    model,
    output: [],
    usage: null,
  };
}

/** A chat.completion (its first choice) as a Responses object. */
export function responsesFromChat(completion: JsonObject, createdSec: number): JsonObject {
  const choice = objectsOf(completion.choices)[0] ?? {};
  const message = isObject(choice.message) ? choice.message : {};
  const { status, incomplete_details } = statusOf(choice.finish_reason);
  const itemStatus = status === 'completed' ? 'completed' : 'incomplete';
  const output: JsonObject[] = [];
  const content: JsonObject[] = [];
  if (typeof message.content === 'string' && message.content !== '')
    content.push(outputTextPart(message.content));
  const refusal = asString(message.refusal);
  if (refusal) content.push({ type: 'refusal', refusal });
  if (content.length > 0) output.push(messageItem(itemId('msg'), itemStatus, content));
  for (const call of objectsOf(message.tool_calls)) {
    if (call.type !== undefined && call.type !== 'function') continue;
    const fn = isObject(call.function) ? call.function : {};
    output.push(
      functionCallItem(itemId('fc'), 'completed', {
        callId: call.id,
        name: fn.name,
        arguments: asString(fn.arguments) ?? '{}',
      }),
    );
  }
  const created = typeof completion.created === 'number' ? completion.created : createdSec;
  return {
    ...responseShell(responseIdFrom(completion.id), created, completion.model, status),
    incomplete_details,
    output,
    usage: responsesUsage(completion.usage),
  };
}

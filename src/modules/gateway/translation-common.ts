import { randomBytes } from 'node:crypto';
import type { Usage } from './usage.ts';

/** A JSON object as it comes off the wire: every field is checked before use. */
export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function asString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The objects of an array, skipping anything malformed. */
export function objectsOf(v: unknown): JsonObject[] {
  return asArray(v).filter(isObject);
}

export function parseJson(text: string): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * OpenAI tool-call arguments are a JSON string; Anthropic wants an object.
 * Malformed or non-object arguments (a model's mistake) cannot be expressed
 * there, so they become `{}` rather than failing the whole request.
 */
export function parseArguments(args: unknown): JsonObject {
  if (isObject(args)) return args;
  if (typeof args !== 'string' || args.trim() === '') return {};
  return parseJson(args) ?? {};
}

function randomSuffix(): string {
  return randomBytes(12).toString('hex');
}

// Ids keep the provider's suffix so a translated response can still be traced
// in the provider's own logs.
export function openAiIdFrom(anthropicId: unknown): string {
  const id = asString(anthropicId);
  return `chatcmpl-${id ? id.replace(/^msg_/, '') : randomSuffix()}`;
}

export function anthropicIdFrom(openAiId: unknown): string {
  const id = asString(openAiId);
  return `msg_${id ? id.replace(/^chatcmpl-/, '') : randomSuffix()}`;
}

/**
 * Anthropic accepts tool_use ids matching ^[a-zA-Z0-9_-]+$; OpenAI-compatible
 * servers are not that strict. The mapping is deterministic, so a call and
 * its result still pair up after it.
 */
export function anthropicToolId(id: unknown): string {
  const raw = asString(id);
  if (!raw) return `toolu_${randomSuffix()}`;
  return raw.replace(/[^a-zA-Z0-9_-]/g, '_');
}

export function newToolCallId(): string {
  return `call_${randomSuffix()}`;
}

// Maps, not object literals: the reason is the provider's text, and "constructor" must not find Object.
const FINISH_REASON_OF_STOP_REASON = new Map([
  ['end_turn', 'stop'],
  ['stop_sequence', 'stop'],
  ['pause_turn', 'stop'],
  ['max_tokens', 'length'],
  ['model_context_window_exceeded', 'length'],
  ['tool_use', 'tool_calls'],
  ['refusal', 'content_filter'],
]);

const STOP_REASON_OF_FINISH_REASON = new Map([
  ['stop', 'end_turn'],
  ['length', 'max_tokens'],
  ['tool_calls', 'tool_use'],
  ['function_call', 'tool_use'],
  ['content_filter', 'refusal'],
]);

export function finishReasonOf(stopReason: unknown): string {
  return FINISH_REASON_OF_STOP_REASON.get(asString(stopReason) ?? '') ?? 'stop';
}

export function stopReasonOf(finishReason: unknown): string {
  return STOP_REASON_OF_FINISH_REASON.get(asString(finishReason) ?? '') ?? 'end_turn';
}

/** OpenAI's prompt_tokens includes the cached part; cache writes have no OpenAI bucket, so they count as prompt. */
export function openAiUsage(u: Usage): JsonObject {
  const prompt = u.input + u.cacheRead + u.cacheCreation;
  return {
    prompt_tokens: prompt,
    completion_tokens: u.output,
    total_tokens: prompt + u.output,
    prompt_tokens_details: { cached_tokens: u.cacheRead },
  };
}

/** Anthropic's input_tokens excludes both cache buckets. */
export function anthropicUsage(u: Usage): JsonObject {
  return {
    input_tokens: u.input,
    output_tokens: u.output,
    cache_creation_input_tokens: u.cacheCreation,
    cache_read_input_tokens: u.cacheRead,
  };
}

/** An error object in the shape the OpenAI SDK raises (`error.type`, `error.code`, `error.message`). */
export function openAiError(error: unknown): JsonObject {
  const e = isObject(error) ? error : {};
  return {
    message: asString(e.message) ?? 'the provider reported an error',
    type: asString(e.type) ?? 'api_error',
    code: asString(e.code) ?? null,
    param: null,
  };
}

/** An error object in the shape the Anthropic SDK raises (`error.type`, `error.message`). */
export function anthropicError(error: unknown): JsonObject {
  const e = isObject(error) ? error : {};
  return {
    type: asString(e.type) ?? 'api_error',
    message: asString(e.message) ?? 'the provider reported an error',
  };
}

import type { SseEvent } from './sse.ts';

/**
 * OpenAI's Responses API passed through to OpenAI: the request as the client
 * sent it, and the answer with Paddock's own response id. Paddock keeps the
 * responses it stores itself, so OpenAI is asked to store nothing and is
 * never sent a previous_response_id (one minted on another key or provider
 * would mean nothing there; the conversation is resolved into `input` first).
 */
export function responsesUpstreamBody(
  body: Record<string, unknown>,
  model: string,
  stream: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body, model, store: false };
  delete out.previous_response_id;
  // A Responses stream always ends with its usage (response.completed): no stream_options to add.
  if (stream) out.stream = true;
  return out;
}

/** What the client sees of its response whatever the upstream said: Paddock's id and the client's settings. */
export interface ResponseFacts {
  id: string;
  /** The client's previous_response_id (the upstream never saw it). */
  previousResponseId?: string | null;
  /** The client's `store` (the upstream was told false). */
  store?: boolean;
}

/** A response object with the client's facts in place of the upstream's. */
export function withResponseFacts(
  response: Record<string, unknown>,
  facts: ResponseFacts,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...response, id: facts.id };
  if (facts.previousResponseId !== undefined) out.previous_response_id = facts.previousResponseId;
  if (facts.store !== undefined) out.store = facts.store;
  return out;
}

/** The stream events that carry the whole response object (`response`). */
const LIFECYCLE_EVENTS = new Set([
  'response.created',
  'response.queued',
  'response.in_progress',
  'response.completed',
  'response.incomplete',
  'response.failed',
]);

/**
 * A stream event with the client's facts in its response object; every other
 * event (deltas, items) goes as it came, unparsed.
 */
export function withResponseFactsInEvent(event: SseEvent, facts: ResponseFacts): SseEvent {
  if (event.event !== undefined && !LIFECYCLE_EVENTS.has(event.event)) return event;
  if (!event.data.includes('"response"')) return event;
  let data: unknown;
  try {
    data = JSON.parse(event.data);
  } catch {
    return event;
  }
  if (!isRecord(data) || typeof data.type !== 'string' || !LIFECYCLE_EVENTS.has(data.type)) return event;
  if (!isRecord(data.response)) return event;
  return { ...event, data: JSON.stringify({ ...data, response: withResponseFacts(data.response, facts) }) };
}

/**
 * The types of a Responses request's tools that only OpenAI runs or accepts:
 * every type but `function` (web_search, file_search, code_interpreter,
 * computer_use_preview, image_generation, mcp, local_shell, custom…), each once.
 */
export function hostedToolTypes(body: Record<string, unknown>): string[] {
  if (!Array.isArray(body.tools)) return [];
  const types = new Set<string>();
  for (const tool of body.tools)
    if (isRecord(tool) && typeof tool.type === 'string' && tool.type !== 'function') types.add(tool.type);
  return [...types];
}

/**
 * The names a Responses request's tools go by in policy rules: a function or
 * custom tool's name (the client runs it), a hosted tool's type (`web_search`).
 */
export function responsesToolNames(body: Record<string, unknown>): string[] {
  if (!Array.isArray(body.tools)) return [];
  const names: string[] = [];
  for (const tool of body.tools) {
    if (!isRecord(tool)) continue;
    const named = tool.type === 'function' || tool.type === 'custom';
    const name = named ? tool.name : tool.type;
    if (typeof name === 'string') names.push(name);
  }
  return names;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

import { isObject } from './translation-common.ts';
/**
 * OpenAI's Responses API passed through to OpenAI: the request as the client
 * sent it (ResponsesService puts Paddock's id in the answer). Paddock keeps the
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
  // With store: false OpenAI keeps no reasoning between calls: a reasoning item it must look
  // up by id is refused, so only those carrying their encrypted content are sent back.
  if (Array.isArray(body.input))
    out.input = body.input.filter(
      (item) => !(isObject(item) && item.type === 'reasoning' && typeof item.encrypted_content !== 'string'),
    );
  delete out.previous_response_id;
  // A Responses stream always ends with its usage (response.completed): no stream_options to add.
  if (stream) out.stream = true;
  return out;
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
    if (isObject(tool) && typeof tool.type === 'string' && tool.type !== 'function') types.add(tool.type);
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
    if (!isObject(tool)) continue;
    const named = tool.type === 'function' || tool.type === 'custom';
    const name = named ? tool.name : tool.type;
    if (typeof name === 'string') names.push(name);
  }
  return names;
}

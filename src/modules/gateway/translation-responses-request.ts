import { asString, isObject, type JsonObject, objectsOf } from './translation-common.ts';

/*
 * A Responses API request as a Chat Completions request, for providers that
 * speak only chat (OpenAI-compatible servers; Anthropic through the chat ↔
 * Messages translation after this one).
 *
 * Dropped, having no Chat Completions form: hosted tools (web search, file
 * search, code interpreter, computer use, MCP, …) and their items, reasoning
 * items, item_reference items, input_image by file_id, input_file by file_id
 * or URL, text.verbosity, reasoning.summary, include, truncation, background,
 * service_tier, prompt_cache_key, safety_identifier, metadata and store (the
 * gateway stores responses itself) and previous_response_id (the gateway
 * resolves it into the input before this runs).
 */

/** A function tool of the Responses API, as Chat Completions nests it. */
function chatTool(t: JsonObject): JsonObject {
  return {
    type: 'function',
    function: {
      name: t.name,
      ...(typeof t.description === 'string' ? { description: t.description } : {}),
      ...(isObject(t.parameters) ? { parameters: t.parameters } : {}),
      ...(typeof t.strict === 'boolean' ? { strict: t.strict } : {}),
    },
  };
}

function chatToolChoice(tc: unknown): unknown {
  if (tc === 'auto' || tc === 'none' || tc === 'required') return tc;
  if (!isObject(tc)) return undefined;
  if (tc.type === 'function' && typeof tc.name === 'string')
    return { type: 'function', function: { name: tc.name } };
  if (tc.type === 'allowed_tools') {
    const tools = objectsOf(tc.tools)
      .filter((t) => t.type === 'function' && typeof t.name === 'string')
      .map((t) => ({ type: 'function', function: { name: t.name } }));
    return {
      type: 'allowed_tools',
      allowed_tools: { mode: tc.mode === 'required' ? 'required' : 'auto', tools },
    };
  }
  return undefined;
}

function responseFormat(text: unknown): JsonObject | undefined {
  const format = isObject(text) && isObject(text.format) ? text.format : undefined;
  if (format?.type === 'json_object') return { type: 'json_object' };
  if (format?.type !== 'json_schema') return undefined;
  return {
    type: 'json_schema',
    json_schema: {
      name: format.name,
      ...(typeof format.description === 'string' ? { description: format.description } : {}),
      ...(isObject(format.schema) ? { schema: format.schema } : {}),
      ...(typeof format.strict === 'boolean' ? { strict: format.strict } : {}),
    },
  };
}

export function chatRequestFromResponses(body: JsonObject): JsonObject {
  const out: JsonObject = {};
  if (body.model !== undefined) out.model = body.model;
  const messages: JsonObject[] = [];
  if (typeof body.instructions === 'string' && body.instructions !== '')
    messages.push({ role: 'system', content: body.instructions });
  messages.push(...chatMessages(body.input));
  out.messages = messages;
  if (typeof body.max_output_tokens === 'number') out.max_completion_tokens = body.max_output_tokens;
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (typeof body.user === 'string') out.user = body.user;
  if (typeof body.stream === 'boolean') out.stream = body.stream;
  const effort = isObject(body.reasoning) ? asString(body.reasoning.effort) : undefined;
  if (effort) out.reasoning_effort = effort;
  const format = responseFormat(body.text);
  if (format) out.response_format = format;
  const tools = objectsOf(body.tools)
    .filter((t) => t.type === 'function' && typeof t.name === 'string')
    .map(chatTool);
  // OpenAI refuses tool_choice and parallel_tool_calls without tools.
  if (tools.length > 0) {
    out.tools = tools;
    const choice = chatToolChoice(body.tool_choice);
    if (choice !== undefined) out.tool_choice = choice;
    if (typeof body.parallel_tool_calls === 'boolean') out.parallel_tool_calls = body.parallel_tool_calls;
  }
  return out;
}

/**
 * The input items as chat messages: function calls join the assistant
 * message before them (Chat Completions carries them as its tool_calls), and
 * each function call output is a `tool` message.
 */
function chatMessages(input: unknown): JsonObject[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  const messages: JsonObject[] = [];
  for (const item of objectsOf(input)) {
    const type = item.type ?? 'message';
    if (type === 'message') {
      const message = chatMessage(item);
      if (!message) continue;
      const last = messages.at(-1);
      // An assistant message split in two (text, then more text) stays one chat message.
      if (message.role === 'assistant' && last?.role === 'assistant' && last.tool_calls === undefined) {
        last.content = [asString(last.content), asString(message.content)].filter(Boolean).join('');
      } else messages.push(message);
    } else if (type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function',
        function: { name: item.name, arguments: asString(item.arguments) ?? '{}' },
      };
      const last = messages.at(-1);
      if (last?.role === 'assistant') last.tool_calls = [...objectsOf(last.tool_calls), call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: outputText(item.output) });
    }
  }
  return messages;
}

function chatMessage(item: JsonObject): JsonObject | undefined {
  const role = item.role;
  if (role === 'assistant') {
    const text = partsOf(item.content)
      .map((p) => (p.type === 'refusal' ? asString(p.refusal) : asString(p.text)))
      .filter((t): t is string => t !== undefined)
      .join('');
    return { role: 'assistant', content: text };
  }
  // Self-hosted chat servers rarely know the developer role; a system message means the same there.
  const chatRole =
    role === 'user' ? 'user' : role === 'system' || role === 'developer' ? 'system' : undefined;
  if (!chatRole) return undefined;
  if (typeof item.content === 'string') return { role: chatRole, content: item.content };
  const parts = partsOf(item.content)
    .map(chatPart)
    .filter((p): p is JsonObject => p !== undefined);
  if (chatRole === 'system')
    return { role: 'system', content: parts.map((p) => asString(p.text) ?? '').join('\n') };
  // A lone text part goes as the plain string: some self-hosted servers take no content arrays.
  const only = parts[0];
  if (parts.length === 1 && only?.type === 'text') return { role: 'user', content: only.text };
  return { role: 'user', content: parts };
}

function partsOf(content: unknown): JsonObject[] {
  return typeof content === 'string' ? [{ type: 'input_text', text: content }] : objectsOf(content);
}

function chatPart(part: JsonObject): JsonObject | undefined {
  if (part.type === 'input_text' || part.type === 'output_text')
    return { type: 'text', text: asString(part.text) ?? '' };
  if (part.type === 'input_image' && typeof part.image_url === 'string') {
    const detail = asString(part.detail);
    return { type: 'image_url', image_url: { url: part.image_url, ...(detail ? { detail } : {}) } };
  }
  if (part.type === 'input_file' && typeof part.file_data === 'string')
    return {
      type: 'file',
      file: {
        file_data: part.file_data,
        ...(typeof part.filename === 'string' ? { filename: part.filename } : {}),
      },
    };
  return undefined;
}

/** A function call's output: a string, or content parts of which the text is kept. */
function outputText(output: unknown): string {
  if (typeof output === 'string') return output;
  return objectsOf(output)
    .map((p) => asString(p.text) ?? '')
    .join('');
}

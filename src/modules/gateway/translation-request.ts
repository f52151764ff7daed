import {
  anthropicToolId,
  asArray,
  asString,
  isObject,
  type JsonObject,
  objectsOf,
  parseArguments,
} from './translation-common.ts';

/*
 * Request bodies are rebuilt from the fields each side understands, so
 * anything not mapped here is dropped rather than forwarded to an API that
 * would reject it (or worse, ignore it silently on one side only).
 *
 * OpenAI → Anthropic drops: n, logprobs, top_logprobs, response_format,
 * stream_options, seed, frequency_penalty, presence_penalty, logit_bias,
 * store, metadata (OpenAI's own), service_tier, modalities, audio,
 * prediction, reasoning_effort, web_search_options, legacy functions /
 * function_call and `function` role messages, custom (non-function) tools,
 * input_audio parts, file parts other than base64 PDFs, image `detail`,
 * message `name`.
 *
 * Anthropic → OpenAI drops: top_k, thinking (and thinking blocks), service_tier,
 * container, mcp_servers, context_management, output_config, cache_control
 * markers, citations, server tools (web search, code execution, …),
 * documents other than base64 PDFs, file-id image sources, tool_result
 * `is_error` (Chat Completions has no such flag).
 */

type Role = 'user' | 'assistant';
interface AnthropicMessage {
  role: Role;
  content: JsonObject[];
}

// ---------------------------------------------------------------- OpenAI → Anthropic

export function anthropicRequestFromOpenAi(body: JsonObject): JsonObject {
  const out: JsonObject = {};
  if (body.model !== undefined) out.model = body.model;
  const { system, messages } = anthropicConversation(objectsOf(body.messages));
  if (system.length === 1) out.system = system[0];
  else if (system.length > 1) out.system = system.map((text) => ({ type: 'text', text }));
  out.messages = messages;
  // Same precedence as the gateway's budget reservation, so the cap charged for is the cap sent.
  const maxTokens = firstNumber(body.max_tokens, body.max_completion_tokens);
  if (maxTokens !== undefined) out.max_tokens = maxTokens;
  // OpenAI allows 0–2, Anthropic 0–1: the hottest OpenAI setting becomes Anthropic's hottest.
  if (typeof body.temperature === 'number') out.temperature = Math.min(body.temperature, 1);
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  const stops = (typeof body.stop === 'string' ? [body.stop] : asArray(body.stop)).filter(
    (s): s is string => typeof s === 'string' && s !== '',
  );
  if (stops.length > 0) out.stop_sequences = stops;
  if (typeof body.stream === 'boolean') out.stream = body.stream;
  if (typeof body.user === 'string') out.metadata = { user_id: body.user };

  let allowed: Set<string> | undefined;
  let choice: JsonObject | undefined;
  const tc = body.tool_choice;
  if (tc === 'auto') choice = { type: 'auto' };
  else if (tc === 'none') choice = { type: 'none' };
  else if (tc === 'required') choice = { type: 'any' };
  else if (isObject(tc) && tc.type === 'function' && isObject(tc.function)) {
    choice = { type: 'tool', name: tc.function.name };
  } else if (isObject(tc) && tc.type === 'allowed_tools' && isObject(tc.allowed_tools)) {
    // Anthropic has no allowed-subset choice: sending only the allowed tools has the same effect.
    const names = objectsOf(tc.allowed_tools.tools).map((t) =>
      isObject(t.function) ? t.function.name : t.name,
    );
    allowed = new Set(names.filter((n): n is string => typeof n === 'string'));
    choice = { type: tc.allowed_tools.mode === 'required' ? 'any' : 'auto' };
  }
  const tools = objectsOf(body.tools)
    .filter((t) => t.type === 'function' && isObject(t.function))
    .map((t) => t.function as JsonObject)
    .filter((f) => allowed === undefined || allowed.has(asString(f.name) ?? ''))
    .map((f) => ({
      name: f.name,
      ...(typeof f.description === 'string' ? { description: f.description } : {}),
      // Anthropic requires an object schema even for a tool without parameters.
      input_schema: isObject(f.parameters) ? f.parameters : { type: 'object', properties: {} },
    }));
  if (tools.length > 0) {
    out.tools = tools;
    if (body.parallel_tool_calls === false && choice?.type !== 'none') {
      choice = { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true };
    }
    if (choice) out.tool_choice = choice;
  }
  return out;
}

/**
 * Anthropic keeps the system prompt out of the conversation, wants strictly
 * alternating roles, and carries tool results as blocks of a user message.
 */
function anthropicConversation(list: JsonObject[]): { system: string[]; messages: JsonObject[] } {
  const system: string[] = [];
  const messages: AnthropicMessage[] = [];
  const append = (role: Role, blocks: JsonObject[]): void => {
    if (blocks.length === 0) return;
    const last = messages.at(-1);
    if (last?.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  };
  for (const m of list) {
    switch (m.role) {
      // System prompts anywhere in the list are hoisted: Anthropic has only the top-level one.
      case 'system':
      case 'developer':
        system.push(...textsOf(m.content));
        break;
      case 'user':
        append('user', userBlocks(m.content));
        break;
      case 'assistant':
        append('assistant', assistantBlocks(m));
        break;
      case 'tool':
        append('user', [
          {
            type: 'tool_result',
            tool_use_id: anthropicToolId(m.tool_call_id),
            content: toolResultContent(m.content),
          },
        ]);
        break;
    }
  }
  return {
    system,
    messages: messages.map((m) => ({ role: m.role, content: compact(m) })),
  };
}

/**
 * Anthropic wants tool_result blocks first in their user message; a lone
 * text block is sent as the plain string the client most likely wrote.
 */
function compact(m: AnthropicMessage): JsonObject[] | string {
  const blocks =
    m.role === 'user'
      ? [
          ...m.content.filter((b) => b.type === 'tool_result'),
          ...m.content.filter((b) => b.type !== 'tool_result'),
        ]
      : m.content;
  const only = blocks[0];
  if (blocks.length === 1 && only?.type === 'text' && typeof only.text === 'string') return only.text;
  return blocks;
}

function textsOf(content: unknown): string[] {
  if (typeof content === 'string') return content === '' ? [] : [content];
  return objectsOf(content)
    .map((p) =>
      p.type === 'text' ? asString(p.text) : p.type === 'refusal' ? asString(p.refusal) : undefined,
    )
    .filter((t): t is string => t !== undefined && t !== '');
}

// Anthropic rejects empty text blocks, so empty strings are left out.
const textBlocks = (content: unknown): JsonObject[] =>
  textsOf(content).map((text) => ({ type: 'text', text }));

function userBlocks(content: unknown): JsonObject[] {
  if (typeof content === 'string') return textBlocks(content);
  const blocks: JsonObject[] = [];
  for (const part of objectsOf(content)) {
    if (part.type === 'text') blocks.push(...textBlocks([part]));
    else if (part.type === 'image_url' && isObject(part.image_url)) {
      const image = anthropicImage(asString(part.image_url.url));
      if (image) blocks.push(image);
    } else if (part.type === 'file' && isObject(part.file)) {
      const data = parseDataUrl(asString(part.file.file_data));
      if (data?.mediaType === 'application/pdf') {
        blocks.push({
          type: 'document',
          source: { type: 'base64', media_type: data.mediaType, data: data.base64 },
        });
      }
    }
  }
  return blocks;
}

function assistantBlocks(m: JsonObject): JsonObject[] {
  const blocks = textBlocks(m.content);
  for (const call of objectsOf(m.tool_calls)) {
    if (call.type !== undefined && call.type !== 'function') continue;
    const fn = isObject(call.function) ? call.function : {};
    blocks.push({
      type: 'tool_use',
      id: anthropicToolId(call.id),
      name: asString(fn.name) ?? '',
      input: parseArguments(fn.arguments),
    });
  }
  return blocks;
}

function toolResultContent(content: unknown): string | JsonObject[] {
  if (typeof content === 'string') return content;
  const blocks = textBlocks(content);
  const only = blocks[0];
  return blocks.length === 1 && only ? (only.text as string) : blocks;
}

function anthropicImage(url: string | undefined): JsonObject | undefined {
  if (!url) return undefined;
  const data = parseDataUrl(url);
  if (data)
    return { type: 'image', source: { type: 'base64', media_type: data.mediaType, data: data.base64 } };
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  return undefined;
}

/** `data:<media type>[;params][;base64],<data>`; non-base64 payloads are re-encoded, Anthropic takes base64 only. */
export function parseDataUrl(url: string | undefined): { mediaType: string; base64: string } | undefined {
  if (!url?.startsWith('data:')) return undefined;
  const comma = url.indexOf(',');
  if (comma === -1) return undefined;
  const [mediaType = '', ...params] = url.slice(5, comma).split(';');
  const payload = url.slice(comma + 1);
  const base64 = params.includes('base64')
    ? payload
    : Buffer.from(decodeURIComponent(payload), 'utf8').toString('base64');
  return { mediaType: mediaType || 'text/plain', base64 };
}

function firstNumber(...values: unknown[]): number | undefined {
  return values.find((v): v is number => typeof v === 'number' && Number.isFinite(v));
}

// ---------------------------------------------------------------- Anthropic → OpenAI

export function openAiRequestFromAnthropic(body: JsonObject): JsonObject {
  const out: JsonObject = {};
  if (body.model !== undefined) out.model = body.model;
  const messages: JsonObject[] = [];
  const system = textsOf(body.system);
  if (system.length === 1) messages.push({ role: 'system', content: system[0] });
  else if (system.length > 1) {
    messages.push({ role: 'system', content: system.map((text) => ({ type: 'text', text })) });
  }
  for (const m of objectsOf(body.messages)) {
    if (m.role === 'user') messages.push(...openAiUserMessages(m.content));
    else if (m.role === 'assistant') {
      const message = openAiAssistantMessage(m.content);
      if (message) messages.push(message);
    }
  }
  out.messages = messages;
  // max_tokens is deprecated in Chat Completions and refused by OpenAI's reasoning models.
  if (typeof body.max_tokens === 'number') out.max_completion_tokens = body.max_tokens;
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  const stops = asArray(body.stop_sequences).filter((s): s is string => typeof s === 'string');
  if (stops.length > 0) out.stop = stops;
  if (typeof body.stream === 'boolean') out.stream = body.stream;
  if (isObject(body.metadata) && typeof body.metadata.user_id === 'string') out.user = body.metadata.user_id;

  // Only client tools have a Chat Completions form; server tools carry a versioned `type`.
  const tools = objectsOf(body.tools)
    .filter((t) => t.type === undefined || t.type === 'custom')
    .map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        ...(typeof t.description === 'string' ? { description: t.description } : {}),
        parameters: isObject(t.input_schema) ? t.input_schema : { type: 'object', properties: {} },
      },
    }));
  // OpenAI refuses tool_choice and parallel_tool_calls without tools.
  if (tools.length > 0) {
    out.tools = tools;
    const tc = isObject(body.tool_choice) ? body.tool_choice : undefined;
    if (tc?.type === 'auto') out.tool_choice = 'auto';
    else if (tc?.type === 'none') out.tool_choice = 'none';
    else if (tc?.type === 'any') out.tool_choice = 'required';
    else if (tc?.type === 'tool') out.tool_choice = { type: 'function', function: { name: tc.name } };
    if (tc?.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
  }
  return out;
}

/**
 * One Anthropic user turn may become several OpenAI messages: each
 * tool_result is its own `tool` message and must come first, right after the
 * assistant's tool calls; the rest of the turn follows as a user message.
 */
function openAiUserMessages(content: unknown): JsonObject[] {
  if (typeof content === 'string') return [{ role: 'user', content }];
  const toolMessages: JsonObject[] = [];
  const parts: JsonObject[] = [];
  for (const block of objectsOf(content)) {
    if (block.type === 'tool_result') {
      const inner =
        typeof block.content === 'string' ? [{ type: 'text', text: block.content }] : block.content;
      const texts = textsOf(inner);
      toolMessages.push({
        role: 'tool',
        tool_call_id: block.tool_use_id,
        content: texts.length <= 1 ? (texts[0] ?? '') : texts.map((text) => ({ type: 'text', text })),
      });
      // Tool messages carry text only; a result's images ride along in the user message after them.
      for (const b of objectsOf(inner)) {
        const part = openAiPart(b);
        if (part && part.type !== 'text') parts.push(part);
      }
      continue;
    }
    const part = openAiPart(block);
    if (part) parts.push(part);
  }
  const out = [...toolMessages];
  const only = parts[0];
  if (parts.length === 1 && only?.type === 'text') out.push({ role: 'user', content: only.text });
  else if (parts.length > 0) out.push({ role: 'user', content: parts });
  return out;
}

function openAiPart(block: JsonObject): JsonObject | undefined {
  if (block.type === 'text' && typeof block.text === 'string') return { type: 'text', text: block.text };
  const source = isObject(block.source) ? block.source : undefined;
  if (block.type === 'image' && source?.type === 'base64') {
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  }
  if (block.type === 'image' && source?.type === 'url') {
    return { type: 'image_url', image_url: { url: source.url } };
  }
  if (block.type === 'document' && source?.type === 'base64' && source.media_type === 'application/pdf') {
    return {
      type: 'file',
      file: {
        filename: asString(block.title) ?? 'document.pdf',
        file_data: `data:application/pdf;base64,${source.data}`,
      },
    };
  }
  return undefined;
}

function openAiAssistantMessage(content: unknown): JsonObject | undefined {
  if (typeof content === 'string') return { role: 'assistant', content };
  const blocks = objectsOf(content);
  const texts = blocks
    .filter((b) => b.type === 'text')
    .map((b) => asString(b.text) ?? '')
    .join('');
  const toolCalls = blocks
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({
      id: b.id,
      type: 'function',
      function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) },
    }));
  if (texts === '' && toolCalls.length === 0) return undefined;
  return {
    role: 'assistant',
    content: texts === '' ? null : texts,
    ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
  };
}

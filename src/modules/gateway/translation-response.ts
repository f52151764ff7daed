import {
  anthropicIdFrom,
  anthropicToolId,
  anthropicUsage,
  asString,
  finishReasonOf,
  isObject,
  type JsonObject,
  objectsOf,
  openAiIdFrom,
  openAiUsage,
  parseArguments,
  stopReasonOf,
} from './translation-common.ts';
import { usageFromAnthropic, usageFromOpenAi, ZERO_USAGE } from './usage.ts';

/**
 * An Anthropic Message as an OpenAI chat.completion. Thinking and server-tool
 * blocks have no Chat Completions form and are dropped.
 */
export function openAiResponseFromAnthropic(message: JsonObject, createdSec: number): JsonObject {
  const texts: string[] = [];
  const toolCalls: JsonObject[] = [];
  for (const block of objectsOf(message.content)) {
    if (block.type === 'text') texts.push(asString(block.text) ?? '');
    else if (block.type === 'tool_use') {
      toolCalls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    }
  }
  const usage = usageFromAnthropic(message.usage);
  return {
    id: openAiIdFrom(message.id),
    object: 'chat.completion',
    created: createdSec,
    model: message.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: texts.length > 0 ? texts.join('') : null,
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        finish_reason: finishReasonOf(message.stop_reason),
        logprobs: null,
      },
    ],
    ...(usage ? { usage: openAiUsage(usage) } : {}),
  };
}

/** An OpenAI chat.completion (its first choice: Anthropic has no `n`) as an Anthropic Message. */
export function anthropicResponseFromOpenAi(completion: JsonObject): JsonObject {
  const choice = objectsOf(completion.choices)[0] ?? {};
  const message = isObject(choice.message) ? choice.message : {};
  const content: JsonObject[] = [];
  if (typeof message.content === 'string' && message.content !== '') {
    content.push({ type: 'text', text: message.content });
  }
  const refusal = asString(message.refusal);
  if (refusal) content.push({ type: 'text', text: refusal });
  for (const call of objectsOf(message.tool_calls)) {
    if (call.type !== undefined && call.type !== 'function') continue;
    const fn = isObject(call.function) ? call.function : {};
    content.push({
      type: 'tool_use',
      id: anthropicToolId(call.id),
      name: asString(fn.name) ?? '',
      input: parseArguments(fn.arguments),
    });
  }
  const usage = usageFromOpenAi(completion.usage);
  return {
    id: anthropicIdFrom(completion.id),
    type: 'message',
    role: 'assistant',
    model: completion.model,
    content,
    stop_reason: refusal ? 'refusal' : stopReasonOf(choice.finish_reason),
    // Chat Completions does not say which stop sequence matched.
    stop_sequence: null,
    usage: anthropicUsage(usage ?? ZERO_USAGE),
  };
}

import type { ResponseItem } from '../../db/schema/index.ts';
import type { StoredResponseRow } from './responses-repo.ts';
import { isObject, type JsonObject } from './translation-common.ts';
import { itemId } from './translation-responses-response.ts';

/**
 * The request's items as stored: a string input is the user message it
 * stands for, a message's string content becomes its content parts, and
 * every item gets an id (input_items lists and pages by it).
 */
export function storedItems(input: unknown): ResponseItem[] {
  const items: unknown[] =
    typeof input === 'string' ? [{ role: 'user', content: input }] : (input as unknown[]);
  return items.filter(isObject).map((item) => {
    const type = (item.type as string | undefined) ?? 'message';
    if (type !== 'message')
      return { ...item, id: item.id ?? itemId(type === 'function_call' ? 'fc' : 'fco') };
    const partType = item.role === 'assistant' ? 'output_text' : 'input_text';
    const content =
      typeof item.content === 'string' ? [{ type: partType, text: item.content }] : item.content;
    return { ...item, type: 'message', content, id: item.id ?? itemId('msg') };
  });
}

/**
 * An item restored from a stored response, as it goes to the provider: the
 * ids are Paddock's (or a provider account's that may not be the one this
 * call fails over to), and with `store: false` OpenAI refuses ids it does not hold.
 */
export function withoutId(item: ResponseItem): ResponseItem {
  const { id: _id, ...rest } = item;
  return rest;
}

/** The request's parameters the response object echoes, with OpenAI's defaults. */
export function echoedParams(body: JsonObject): JsonObject {
  return {
    max_output_tokens: body.max_output_tokens ?? null,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    reasoning: isObject(body.reasoning)
      ? { effort: body.reasoning.effort ?? null, summary: body.reasoning.summary ?? null }
      : { effort: null, summary: null },
    temperature: body.temperature ?? 1,
    text: isObject(body.text) && isObject(body.text.format) ? body.text : { format: { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: Array.isArray(body.tools) ? body.tools : [],
    top_p: body.top_p ?? 1,
    truncation: 'disabled',
    user: body.user ?? null,
  };
}

/** What Paddock says about a response beyond the provider's answer: its id and the request's echo. */
export interface ResponseFrame {
  id: string;
  instructions: string | null;
  metadata: Record<string, unknown>;
  previousResponseId: string | null;
  store: boolean;
  params: JsonObject;
}

/** A response object (the provider's, translated or not) with Paddock's id and the request's echo. */
export function framed(response: JsonObject, frame: ResponseFrame): JsonObject {
  return {
    ...response,
    id: frame.id,
    object: 'response',
    ...frame.params,
    instructions: frame.instructions,
    metadata: frame.metadata,
    previous_response_id: frame.previousResponseId,
    store: frame.store,
  };
}

/** A stored response as `GET /v1/responses/{id}` answers it. */
export function storedResponseObject(row: StoredResponseRow): JsonObject {
  return framed(
    {
      created_at: Math.floor(row.createdAt.getTime() / 1000),
      status: row.status,
      error: null,
      incomplete_details: row.incompleteDetails ?? null,
      model: row.model,
      output: row.output,
      usage: row.usage ?? null,
    },
    {
      id: row.id,
      instructions: row.instructions,
      metadata: row.metadata,
      previousResponseId: row.previousResponseId,
      store: true,
      params: row.params,
    },
  );
}

/** OpenAI's cursor list of a response's input items: `after` an item id, newest first unless `asc`. */
export function inputItemsPage(
  items: ResponseItem[],
  q: { limit?: number; order?: 'asc' | 'desc'; after?: string },
): JsonObject {
  const ordered = q.order === 'asc' ? items : [...items].reverse();
  const from = q.after === undefined ? 0 : ordered.findIndex((i) => i.id === q.after) + 1;
  const limit = q.limit ?? 20;
  // An unknown `after` is an empty page, not the first one again.
  const data = from === 0 && q.after !== undefined ? [] : ordered.slice(from, from + limit);
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: from + limit < ordered.length && data.length > 0,
  };
}

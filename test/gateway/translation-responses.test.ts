import { describe, expect, it } from 'vitest';
import type { SseEvent } from '../../src/modules/gateway/sse.ts';
import { WireTranslator } from '../../src/modules/gateway/translation.ts';
import { chatRequestFromResponses } from '../../src/modules/gateway/translation-responses-request.ts';
import { responsesFromChat } from '../../src/modules/gateway/translation-responses-response.ts';
import { ResponsesStreamFromChat } from '../../src/modules/gateway/translation-responses-stream.ts';
import { textItemEvents } from '../support/sdk.ts';

// The Responses API served from chat upstreams: request, answer and stream
// translations on their own (the SDK-driven tests are in responses.test.ts).

const chunk = (delta: unknown, finish: string | null = null): SseEvent => ({
  event: undefined,
  data: JSON.stringify({
    id: 'chatcmpl-abc',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta, finish_reason: finish }],
  }),
});
const usageChunk = (prompt: number, completion: number): SseEvent => ({
  event: undefined,
  data: JSON.stringify({ choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion } }),
});
const DONE: SseEvent = { event: undefined, data: '[DONE]' };
const parsed = (events: SseEvent[]) => events.map((e) => ({ event: e.event, ...JSON.parse(e.data) }));

describe('Responses request → Chat Completions request', () => {
  it('maps instructions, items, tools, tool choice, output format, reasoning and the token cap', () => {
    const chat = chatRequestFromResponses({
      model: 'gpt-4o',
      instructions: 'Be terse.',
      input: [
        { role: 'developer', content: [{ type: 'input_text', text: 'Use metric units.' }] },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Weather here?' },
            { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'low' },
          ],
        },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Checking.' }] },
        { type: 'function_call', call_id: 'c1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
        { type: 'function_call', call_id: 'c2', name: 'get_time', arguments: '{}' },
        { type: 'function_call_output', call_id: 'c1', output: '3C' },
        { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: '09:00' }] },
        { type: 'reasoning', id: 'rs_1', summary: [] },
        { type: 'web_search_call', id: 'ws_1', status: 'completed' },
      ],
      tools: [
        { type: 'function', name: 'get_weather', parameters: { type: 'object' }, strict: true },
        { type: 'web_search' },
      ],
      tool_choice: { type: 'function', name: 'get_weather' },
      parallel_tool_calls: false,
      max_output_tokens: 300,
      temperature: 0.2,
      reasoning: { effort: 'low' },
      text: { format: { type: 'json_schema', name: 'w', schema: { type: 'object' }, strict: true } },
      metadata: { a: 'b' },
      store: true,
      stream: true,
    });
    expect(chat).toEqual({
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'system', content: 'Use metric units.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
            { id: 'c2', type: 'function', function: { name: 'get_time', arguments: '{}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: '3C' },
        { role: 'tool', tool_call_id: 'c2', content: '09:00' },
      ],
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object' }, strict: true } },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      max_completion_tokens: 300,
      temperature: 0.2,
      reasoning_effort: 'low',
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'w', schema: { type: 'object' }, strict: true },
      },
      stream: true,
    });
  });

  it('goes on to Anthropic through chat', () => {
    const body = new WireTranslator().request('responses', 'anthropic', {
      model: 'claude-sonnet-4-5',
      instructions: 'Be terse.',
      input: 'Hi',
      max_output_tokens: 64,
      tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }],
      tool_choice: 'required',
    });
    expect(body).toMatchObject({
      system: 'Be terse.',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 64,
      tools: [{ name: 'f', input_schema: { type: 'object' } }],
      tool_choice: { type: 'any' },
    });
  });
});

describe('Chat Completions answer → Responses object', () => {
  it('turns text and tool calls into output items, and usage into the Responses names', () => {
    const r = responsesFromChat(
      {
        id: 'chatcmpl-xyz',
        created: 1700000000,
        model: 'gpt-4o',
        choices: [
          {
            index: 0,
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: 'Let me check.',
              tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
            },
          },
        ],
        usage: {
          prompt_tokens: 120,
          completion_tokens: 30,
          prompt_tokens_details: { cached_tokens: 20 },
          completion_tokens_details: { reasoning_tokens: 10 },
        },
      },
      5,
    );
    expect(r).toMatchObject({
      id: 'resp_xyz',
      object: 'response',
      created_at: 1700000000,
      status: 'completed',
      incomplete_details: null,
      model: 'gpt-4o',
      output: [
        {
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Let me check.' }],
        },
        { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{"a":1}', status: 'completed' },
      ],
      usage: {
        input_tokens: 120,
        input_tokens_details: { cached_tokens: 20 },
        output_tokens: 30,
        output_tokens_details: { reasoning_tokens: 10 },
        total_tokens: 150,
      },
    });
  });

  it('reports a length stop as incomplete (max_output_tokens)', () => {
    const r = responsesFromChat(
      { choices: [{ finish_reason: 'length', message: { role: 'assistant', content: 'Half' } }] },
      5,
    );
    expect(r).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      created_at: 5,
      output: [{ type: 'message', status: 'incomplete' }],
    });
  });

  it('translates an Anthropic message through chat', () => {
    const r = new WireTranslator().response('anthropic', 'responses', {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'Hi' }],
      stop_reason: 'max_tokens',
      usage: { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 4 },
    });
    expect(r).toMatchObject({
      status: 'incomplete',
      output: [{ content: [{ text: 'Hi' }] }],
      usage: { input_tokens: 14, input_tokens_details: { cached_tokens: 4 }, output_tokens: 5 },
    });
  });
});

describe('a chat stream → Responses events', () => {
  it('numbers the events and closes each item before the next opens', () => {
    const t = new ResponsesStreamFromChat('m', 7);
    const events = parsed(
      [
        chunk({ role: 'assistant', content: 'Hel' }),
        chunk({ content: 'lo' }),
        chunk({ tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '{"a"' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }),
        chunk({}, 'tool_calls'),
        usageChunk(12, 8),
        DONE,
      ].flatMap((e) => t.push(e)),
    );
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      ...textItemEvents(2),
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.every((e) => e.event === e.type)).toBe(true);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[9]).toMatchObject({ output_index: 1, item: { type: 'function_call', call_id: 'call_1' } });
    expect(events[12]).toMatchObject({ arguments: '{"a":1}', name: 'f' });
    expect(events.at(-1)!.response).toMatchObject({
      id: 'resp_abc',
      status: 'completed',
      created_at: 7,
      output: [
        { type: 'message', content: [{ text: 'Hello' }] },
        { type: 'function_call', arguments: '{"a":1}' },
      ],
      usage: { input_tokens: 12, output_tokens: 8, total_tokens: 20 },
    });
  });

  it('ends with response.incomplete on a length stop, and never without the provider’s [DONE]', () => {
    const cut = new ResponsesStreamFromChat('m', 7);
    const unfinished = [chunk({ content: 'Hi' }), chunk({}, 'length')].flatMap((e) => cut.push(e));
    expect([...unfinished, ...cut.end()].map((e) => e.event)).not.toContain('response.incomplete');
    expect(parsed(cut.push(DONE)).at(-1)).toMatchObject({
      type: 'response.incomplete',
      response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } },
    });
  });

  it('turns a provider error chunk into the error event the SDK raises', () => {
    const t = new ResponsesStreamFromChat('m', 7);
    const [e] = parsed(t.push({ event: undefined, data: JSON.stringify({ error: { message: 'boom' } }) }));
    expect(e).toMatchObject({ type: 'error', message: 'boom', error: { message: 'boom' } });
  });

  it('serves an Anthropic stream through chat', () => {
    const t = new WireTranslator().stream('anthropic', 'responses', 'claude');
    const a = (type: string, fields: object): SseEvent => ({
      event: type,
      data: JSON.stringify({ type, ...fields }),
    });
    const out = parsed(
      [
        a('message_start', {
          message: { id: 'msg_1', model: 'claude', usage: { input_tokens: 9, output_tokens: 1 } },
        }),
        a('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        a('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Yo' } }),
        a('content_block_stop', { index: 0 }),
        a('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 3 } }),
        a('message_stop', {}),
      ].flatMap((e) => t.push(e)),
    );
    expect(out[0].type).toBe('response.created');
    expect(out.at(-1)).toMatchObject({
      type: 'response.completed',
      response: { output: [{ content: [{ text: 'Yo' }] }], usage: { input_tokens: 9, output_tokens: 3 } },
    });
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import type { RawMessageStreamEvent } from '@anthropic-ai/sdk/resources/messages';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import { formatSse, type SseEvent } from '../../src/modules/gateway/sse.ts';
import { WireTranslator } from '../../src/modules/gateway/translation.ts';

const NOW = Date.UTC(2025, 0, 1);
const CREATED = NOW / 1000;
const tr = new WireTranslator(new ManualClock(NOW));

const anthropicEv = (data: { type: string } & Record<string, unknown>): SseEvent => ({
  event: data.type,
  data: JSON.stringify(data),
});
const openAiEv = (data: unknown): SseEvent => ({
  event: undefined,
  data: typeof data === 'string' ? data : JSON.stringify(data),
});

function translateStream(from: 'openai' | 'anthropic', events: SseEvent[]): SseEvent[] {
  const s = tr.stream(from, from === 'openai' ? 'anthropic' : 'openai', 'fallback-model');
  return [...events.flatMap((e) => s.push(e)), ...s.end()];
}

const chunksOf = (events: SseEvent[]): ChatCompletionChunk[] =>
  events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data) as ChatCompletionChunk);
const anthropicEventsOf = (events: SseEvent[]): RawMessageStreamEvent[] =>
  events.map((e) => JSON.parse(e.data) as RawMessageStreamEvent);

// ---------------------------------------------------------------- fixtures

/** A multi-turn OpenAI conversation: a tool call, its results, and a follow-up. */
const OPENAI_CONVERSATION = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Weather in Paris and Rome?' },
  {
    role: 'assistant',
    content: 'Checking.',
    tool_calls: [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
    ],
  },
  { role: 'tool', tool_call_id: 'call_1', content: '18C' },
  { role: 'tool', tool_call_id: 'call_2', content: '24C' },
  { role: 'assistant', content: 'Paris 18C, Rome 24C.' },
  { role: 'user', content: 'Thanks' },
];

const ANTHROPIC_CONVERSATION = [
  { role: 'user', content: 'Weather in Paris and Rome?' },
  {
    role: 'assistant',
    content: [
      { type: 'text', text: 'Checking.' },
      { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'call_2', name: 'get_weather', input: { city: 'Rome' } },
    ],
  },
  {
    role: 'user',
    content: [
      { type: 'tool_result', tool_use_id: 'call_1', content: '18C' },
      { type: 'tool_result', tool_use_id: 'call_2', content: '24C' },
    ],
  },
  { role: 'assistant', content: 'Paris 18C, Rome 24C.' },
  { role: 'user', content: 'Thanks' },
];

const WEATHER_SCHEMA = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
const OPENAI_TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER_SCHEMA } },
];
const ANTHROPIC_TOOLS = [{ name: 'get_weather', description: 'Weather', input_schema: WEATHER_SCHEMA }];

const PNG = 'iVBORw0KGgo=';

/** A real-looking Anthropic stream: text, then a tool_use block, with cache usage. */
const ANTHROPIC_STREAM: SseEvent[] = [
  anthropicEv({
    type: 'message_start',
    message: {
      id: 'msg_01ABC',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: 20,
        cache_read_input_tokens: 100,
        cache_creation_input_tokens: 5,
        output_tokens: 1,
      },
    },
  }),
  anthropicEv({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
  anthropicEv({ type: 'ping' }),
  anthropicEv({
    type: 'content_block_delta',
    index: 0,
    delta: { type: 'text_delta', text: 'Let me check ' },
  }),
  anthropicEv({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'the weather.' } }),
  anthropicEv({ type: 'content_block_stop', index: 0 }),
  anthropicEv({
    type: 'content_block_start',
    index: 1,
    content_block: { type: 'tool_use', id: 'toolu_01XYZ', name: 'get_weather', input: {} },
  }),
  anthropicEv({
    type: 'content_block_delta',
    index: 1,
    delta: { type: 'input_json_delta', partial_json: '' },
  }),
  anthropicEv({
    type: 'content_block_delta',
    index: 1,
    delta: { type: 'input_json_delta', partial_json: '{"city":' },
  }),
  anthropicEv({
    type: 'content_block_delta',
    index: 1,
    delta: { type: 'input_json_delta', partial_json: ' "Paris"}' },
  }),
  anthropicEv({ type: 'content_block_stop', index: 1 }),
  anthropicEv({
    type: 'message_delta',
    delta: { stop_reason: 'tool_use', stop_sequence: null },
    usage: { output_tokens: 42 },
  }),
  anthropicEv({ type: 'message_stop' }),
];

const chunk = (choice: Record<string, unknown> | null, extra: Record<string, unknown> = {}) => ({
  id: 'chatcmpl-9xyz',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'gpt-4o-2024-08-06',
  choices: choice ? [{ index: 0, logprobs: null, finish_reason: null, ...choice }] : [],
  usage: null,
  ...extra,
});

/** A real-looking OpenAI stream (include_usage on): text, two tool calls, usage last. */
const OPENAI_STREAM: SseEvent[] = [
  openAiEv(chunk({ delta: { role: 'assistant', content: '', refusal: null } })),
  openAiEv(chunk({ delta: { content: 'Let me check ' } })),
  openAiEv(chunk({ delta: { content: 'the weather.' } })),
  openAiEv(
    chunk({
      delta: {
        tool_calls: [
          { index: 0, id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '' } },
        ],
      },
    }),
  ),
  openAiEv(chunk({ delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] } })),
  openAiEv(chunk({ delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] } })),
  openAiEv(
    chunk({
      delta: {
        tool_calls: [
          { index: 1, id: 'call_def', type: 'function', function: { name: 'get_time', arguments: '{}' } },
        ],
      },
    }),
  ),
  openAiEv(chunk({ delta: {}, finish_reason: 'tool_calls' })),
  openAiEv(
    chunk(null, {
      usage: {
        prompt_tokens: 125,
        completion_tokens: 42,
        total_tokens: 167,
        prompt_tokens_details: { cached_tokens: 100 },
      },
    }),
  ),
  openAiEv('[DONE]'),
];

// ---------------------------------------------------------------- requests

describe('request translation, OpenAI → Anthropic', () => {
  it('hoists the system prompt, turns tool calls and results into blocks, keeps roles alternating', () => {
    const out = tr.request('openai', 'anthropic', {
      model: 'claude-sonnet-4-5',
      messages: OPENAI_CONVERSATION,
      tools: OPENAI_TOOLS,
      max_tokens: 256,
    });
    expect(out).toEqual({
      model: 'claude-sonnet-4-5',
      system: 'You are terse.',
      messages: ANTHROPIC_CONVERSATION,
      tools: ANTHROPIC_TOOLS,
      max_tokens: 256,
    });
  });

  it('joins system and developer messages into a text-block system prompt', () => {
    const out = tr.request('openai', 'anthropic', {
      messages: [
        { role: 'system', content: 'Rule one.' },
        { role: 'developer', content: [{ type: 'text', text: 'Rule two.' }] },
        { role: 'user', content: 'Hi' },
      ],
    });
    expect(out).toEqual({
      system: [
        { type: 'text', text: 'Rule one.' },
        { type: 'text', text: 'Rule two.' },
      ],
      messages: [{ role: 'user', content: 'Hi' }],
    });
  });

  it('merges consecutive same-role messages and puts tool results first', () => {
    const out = tr.request('openai', 'anthropic', {
      messages: [
        { role: 'user', content: 'one' },
        { role: 'user', content: [{ type: 'text', text: 'two' }] },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call.odd:id', type: 'function', function: { name: 'f', arguments: 'not json' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call.odd:id', content: [{ type: 'text', text: 'done' }] },
        { role: 'user', content: 'and then?' },
      ],
    });
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'one' },
          { type: 'text', text: 'two' },
        ],
      },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'call_odd_id', name: 'f', input: {} }] },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call_odd_id', content: 'done' },
          { type: 'text', text: 'and then?' },
        ],
      },
    ]);
  });

  it('turns data: image URLs into base64 sources and http(s) URLs into url sources', () => {
    const out = tr.request('openai', 'anthropic', {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'high' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
            { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
          ],
        },
      ],
    });
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Compare' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
        ],
      },
    ]);
  });

  it('turns a base64 PDF file part into a document block and back', () => {
    const file = {
      type: 'file',
      file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' },
    };
    const out = tr.request('openai', 'anthropic', { messages: [{ role: 'user', content: [file] }] });
    const document = {
      type: 'document',
      source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' },
    };
    expect(out.messages).toEqual([{ role: 'user', content: [document] }]);
    const back = tr.request('anthropic', 'openai', {
      messages: [{ role: 'user', content: [{ ...document, title: 'a.pdf' }] }],
    });
    expect(back.messages).toEqual([{ role: 'user', content: [file] }]);
  });

  it.each([
    ['auto', {}, { type: 'auto' }],
    ['none', {}, { type: 'none' }],
    ['required', {}, { type: 'any' }],
    [{ type: 'function', function: { name: 'get_weather' } }, {}, { type: 'tool', name: 'get_weather' }],
    ['required', { parallel_tool_calls: false }, { type: 'any', disable_parallel_tool_use: true }],
    [undefined, { parallel_tool_calls: false }, { type: 'auto', disable_parallel_tool_use: true }],
    ['none', { parallel_tool_calls: false }, { type: 'none' }],
  ])('maps tool_choice %j %j', (choice, extra, expected) => {
    const out = tr.request('openai', 'anthropic', {
      messages: [{ role: 'user', content: 'hi' }],
      tools: OPENAI_TOOLS,
      tool_choice: choice,
      ...extra,
    });
    expect(out.tool_choice).toEqual(expected);
  });

  it('maps allowed_tools to the allowed subset, and drops tool_choice when there are no tools', () => {
    const out = tr.request('openai', 'anthropic', {
      messages: [{ role: 'user', content: 'hi' }],
      tools: [...OPENAI_TOOLS, { type: 'function', function: { name: 'other' } }],
      tool_choice: {
        type: 'allowed_tools',
        allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'other' } }] },
      },
    });
    expect(out.tools).toEqual([{ name: 'other', input_schema: { type: 'object', properties: {} } }]);
    expect(out.tool_choice).toEqual({ type: 'any' });
    const none = tr.request('openai', 'anthropic', { messages: [], tool_choice: 'auto' });
    expect(none).toEqual({ messages: [] });
  });

  it('maps sampling parameters, stop, stream and user, and drops what Anthropic does not know', () => {
    const out = tr.request('openai', 'anthropic', {
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 100,
      temperature: 1.5,
      top_p: 0.9,
      stop: 'END',
      stream: true,
      stream_options: { include_usage: true },
      user: 'user-42',
      n: 2,
      logprobs: true,
      response_format: { type: 'json_object' },
      seed: 7,
      frequency_penalty: 0.5,
    });
    expect(out).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 100,
      temperature: 1,
      top_p: 0.9,
      stop_sequences: ['END'],
      stream: true,
      metadata: { user_id: 'user-42' },
    });
    const arrayStop = tr.request('openai', 'anthropic', { messages: [], stop: ['a', 'b'] });
    expect(arrayStop.stop_sequences).toEqual(['a', 'b']);
    // Absent stays absent: the gateway fills Anthropic's required max_tokens itself.
    expect(tr.request('openai', 'anthropic', { messages: [] })).not.toHaveProperty('max_tokens');
  });
});

describe('request translation, Anthropic → OpenAI', () => {
  it('puts the system prompt first and splits tool results into tool messages', () => {
    const out = tr.request('anthropic', 'openai', {
      model: 'gpt-4o',
      system: 'You are terse.',
      messages: ANTHROPIC_CONVERSATION,
      tools: ANTHROPIC_TOOLS,
      max_tokens: 256,
    });
    expect(out).toEqual({
      model: 'gpt-4o',
      messages: OPENAI_CONVERSATION,
      tools: OPENAI_TOOLS,
      max_completion_tokens: 256,
    });
  });

  it('round-trips a conversation with tool calls and results unchanged', () => {
    const original = {
      messages: OPENAI_CONVERSATION,
      tools: OPENAI_TOOLS,
      tool_choice: 'required',
      parallel_tool_calls: false,
      temperature: 0.2,
      stop: ['x'],
      user: 'u1',
    };
    const there = tr.request('openai', 'anthropic', original);
    const back = tr.request('anthropic', 'openai', there);
    expect(back).toEqual(original);
  });

  it('keeps a text-block system prompt as text parts', () => {
    const out = tr.request('anthropic', 'openai', {
      system: [
        { type: 'text', text: 'A', cache_control: { type: 'ephemeral' } },
        { type: 'text', text: 'B' },
      ],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    });
    expect(out.messages).toEqual([
      {
        role: 'system',
        content: [
          { type: 'text', text: 'A' },
          { type: 'text', text: 'B' },
        ],
      },
      { role: 'user', content: 'hi' },
    ]);
  });

  it('turns image sources into image_url parts, and a tool result’s image into a following user part', () => {
    const out = tr.request('anthropic', 'openai', {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'tool_use', id: 'toolu_1', name: 'shot', input: {} },
          ],
        },
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: 'toolu_1',
              is_error: false,
              content: [
                { type: 'text', text: 'here' },
                { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: 'abc' } },
              ],
            },
          ],
        },
      ],
    });
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Compare' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'shot', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'here' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/jpeg;base64,abc' } }] },
    ]);
    // And back: the images become the same Anthropic sources.
    const back = tr.request('openai', 'anthropic', out);
    expect((back.messages as unknown[])[0]).toEqual({
      role: 'user',
      content: [
        { type: 'text', text: 'Compare' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
        { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      ],
    });
  });

  it.each([
    [{ type: 'auto' }, 'auto', undefined],
    [{ type: 'none' }, 'none', undefined],
    [{ type: 'any' }, 'required', undefined],
    [
      { type: 'tool', name: 'get_weather' },
      { type: 'function', function: { name: 'get_weather' } },
      undefined,
    ],
    [{ type: 'auto', disable_parallel_tool_use: true }, 'auto', false],
  ])('maps tool_choice %j', (choice, expected, parallel) => {
    const out = tr.request('anthropic', 'openai', {
      messages: [{ role: 'user', content: 'hi' }],
      tools: ANTHROPIC_TOOLS,
      tool_choice: choice,
    });
    expect(out.tool_choice).toEqual(expected);
    expect(out.parallel_tool_calls).toBe(parallel);
  });

  it('maps parameters and drops top_k, thinking and server tools', () => {
    const out = tr.request('anthropic', 'openai', {
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 1024,
      temperature: 0.5,
      top_p: 0.8,
      top_k: 40,
      stop_sequences: ['END', 'STOP'],
      stream: true,
      metadata: { user_id: 'user-42' },
      thinking: { type: 'enabled', budget_tokens: 2000 },
      tools: [{ type: 'web_search_20250305', name: 'web_search' }],
      tool_choice: { type: 'auto' },
    });
    expect(out).toEqual({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 1024,
      temperature: 0.5,
      top_p: 0.8,
      stop: ['END', 'STOP'],
      stream: true,
      user: 'user-42',
    });
  });

  it('returns the body unchanged when both sides speak the same format', () => {
    const body = { messages: [], n: 3 };
    expect(tr.request('openai', 'openai', body)).toBe(body);
    expect(tr.request('anthropic', 'anthropic', body)).toBe(body);
  });
});

// ---------------------------------------------------------------- responses

const ANTHROPIC_MESSAGE = {
  id: 'msg_01ABC',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5',
  content: [
    { type: 'thinking', thinking: 'consider', signature: 's' },
    { type: 'text', text: 'Checking.' },
    { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: {
    input_tokens: 20,
    output_tokens: 42,
    cache_read_input_tokens: 100,
    cache_creation_input_tokens: 5,
  },
};

const OPENAI_COMPLETION = {
  id: 'chatcmpl-9xyz',
  object: 'chat.completion',
  created: CREATED,
  model: 'claude-sonnet-4-5',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: 'Checking.',
        refusal: null,
        tool_calls: [
          {
            id: 'toolu_01',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      finish_reason: 'tool_calls',
      logprobs: null,
    },
  ],
  usage: {
    prompt_tokens: 125,
    completion_tokens: 42,
    total_tokens: 167,
    prompt_tokens_details: { cached_tokens: 100 },
  },
};

describe('response translation', () => {
  it('turns an Anthropic message into a chat.completion, cache tokens counted in prompt_tokens', () => {
    expect(tr.response('anthropic', 'openai', ANTHROPIC_MESSAGE)).toEqual({
      ...OPENAI_COMPLETION,
      id: 'chatcmpl-01ABC',
    });
  });

  it('turns a chat.completion into an Anthropic message, cached tokens moved out of input', () => {
    expect(tr.response('openai', 'anthropic', OPENAI_COMPLETION)).toEqual({
      id: 'msg_9xyz',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: {
        input_tokens: 25,
        output_tokens: 42,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 100,
      },
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
  ])('maps stop_reason %s to finish_reason %s', (stopReason, finishReason) => {
    const out = tr.response('anthropic', 'openai', { ...ANTHROPIC_MESSAGE, stop_reason: stopReason }) as {
      choices: Array<{ finish_reason: string }>;
    };
    expect(out.choices[0]?.finish_reason).toBe(finishReason);
  });

  it.each([
    ['stop', 'end_turn'],
    ['length', 'max_tokens'],
    ['tool_calls', 'tool_use'],
  ])('maps finish_reason %s to stop_reason %s', (finishReason, stopReason) => {
    const choice = { ...OPENAI_COMPLETION.choices[0], finish_reason: finishReason };
    const out = tr.response('openai', 'anthropic', { ...OPENAI_COMPLETION, choices: [choice] }) as {
      stop_reason: string;
    };
    expect(out.stop_reason).toBe(stopReason);
  });

  it('sets content to null when the answer is only tool calls', () => {
    const out = tr.response('anthropic', 'openai', {
      ...ANTHROPIC_MESSAGE,
      content: [{ type: 'tool_use', id: 'toolu_1', name: 'f', input: {} }],
    }) as { choices: Array<{ message: Record<string, unknown> }> };
    expect(out.choices[0]?.message).toEqual({
      role: 'assistant',
      content: null,
      refusal: null,
      tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'f', arguments: '{}' } }],
    });
  });

  it('passes same-format bodies and error bodies through untouched', () => {
    expect(tr.response('openai', 'openai', OPENAI_COMPLETION)).toBe(OPENAI_COMPLETION);
    const error = { type: 'error', error: { type: 'overloaded_error', message: 'busy' } };
    expect(tr.response('anthropic', 'openai', error)).toBe(error);
  });
});

// ---------------------------------------------------------------- streams

describe('stream translation, Anthropic → OpenAI', () => {
  it('emits role, content and tool-call chunks, then finish, usage-only and [DONE]', () => {
    const out = translateStream('anthropic', ANTHROPIC_STREAM);
    expect(out.every((e) => e.event === undefined)).toBe(true);
    expect(out.at(-1)).toEqual({ event: undefined, data: '[DONE]' });
    const chunks = chunksOf(out);
    const base = {
      id: 'chatcmpl-01ABC',
      object: 'chat.completion.chunk',
      created: CREATED,
      model: 'claude-sonnet-4-5',
    };
    const choice = (delta: Record<string, unknown>, finish: string | null = null) => ({
      ...base,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    });
    expect(chunks).toEqual([
      choice({ role: 'assistant', content: '' }),
      choice({ content: 'Let me check ' }),
      choice({ content: 'the weather.' }),
      choice({
        tool_calls: [
          { index: 0, id: 'toolu_01XYZ', type: 'function', function: { name: 'get_weather', arguments: '' } },
        ],
      }),
      choice({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
      choice({ tool_calls: [{ index: 0, function: { arguments: ' "Paris"}' } }] }),
      choice({}, 'tool_calls'),
      {
        ...base,
        choices: [],
        usage: {
          prompt_tokens: 125,
          completion_tokens: 42,
          total_tokens: 167,
          prompt_tokens_details: { cached_tokens: 100 },
        },
      },
    ]);
  });

  it('reassembles to the original text and tool input', () => {
    const chunks = chunksOf(translateStream('anthropic', ANTHROPIC_STREAM));
    const deltas = chunks.flatMap((c) => c.choices.map((ch) => ch.delta));
    const text = deltas.map((d) => d.content ?? '').join('');
    const args = deltas
      .flatMap((d) => d.tool_calls ?? [])
      .map((t) => t.function?.arguments ?? '')
      .join('');
    expect(text).toBe('Let me check the weather.');
    expect(JSON.parse(args)).toEqual({ city: 'Paris' });
  });

  it('takes input buckets repeated in message_delta', () => {
    const events = ANTHROPIC_STREAM.map((e) =>
      e.event === 'message_delta'
        ? anthropicEv({
            type: 'message_delta',
            delta: { stop_reason: 'end_turn', stop_sequence: null },
            usage: { output_tokens: 9, input_tokens: 30, cache_read_input_tokens: 0 },
          })
        : e,
    );
    const usage = chunksOf(translateStream('anthropic', events)).at(-1)?.usage;
    expect(usage).toEqual({
      prompt_tokens: 35,
      completion_tokens: 9,
      total_tokens: 44,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  it('turns an error event into an OpenAI error chunk', () => {
    const s = tr.stream('anthropic', 'openai', 'm');
    const out = s.push(
      anthropicEv({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
    );
    expect(out).toEqual([
      openAiEv({ error: { message: 'Overloaded', type: 'overloaded_error', code: null, param: null } }),
    ]);
  });

  it('does not fabricate an ending for a stream cut short', () => {
    const s = tr.stream('anthropic', 'openai', 'm');
    for (const e of ANTHROPIC_STREAM.slice(0, 5)) s.push(e);
    expect(s.end()).toEqual([]);
  });
});

describe('stream translation, OpenAI → Anthropic', () => {
  it('emits the events in the order the Anthropic SDK expects', () => {
    const out = translateStream('openai', OPENAI_STREAM);
    const events = anthropicEventsOf(out);
    expect(out.map((e) => e.event)).toEqual(events.map((e) => e.type));
    expect(events).toEqual([
      {
        type: 'message_start',
        message: {
          id: 'msg_9xyz',
          type: 'message',
          role: 'assistant',
          model: 'gpt-4o-2024-08-06',
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: {
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
          },
        },
      },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Let me check ' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'the weather.' } },
      { type: 'content_block_stop', index: 0 },
      {
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: {} },
      },
      {
        type: 'content_block_delta',
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '{"city":' },
      },
      {
        type: 'content_block_delta',
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '"Paris"}' },
      },
      { type: 'content_block_stop', index: 1 },
      {
        type: 'content_block_start',
        index: 2,
        content_block: { type: 'tool_use', id: 'call_def', name: 'get_time', input: {} },
      },
      { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{}' } },
      { type: 'content_block_stop', index: 2 },
      {
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: {
          input_tokens: 25,
          output_tokens: 42,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 100,
        },
      },
      { type: 'message_stop' },
    ]);
  });

  it('reassembles to the original text and tool arguments', () => {
    const events = anthropicEventsOf(translateStream('openai', OPENAI_STREAM));
    let text = '';
    const inputs = new Map<number, string>();
    for (const e of events) {
      if (e.type !== 'content_block_delta') continue;
      if (e.delta.type === 'text_delta') text += e.delta.text;
      if (e.delta.type === 'input_json_delta') {
        inputs.set(e.index, (inputs.get(e.index) ?? '') + e.delta.partial_json);
      }
    }
    expect(text).toBe('Let me check the weather.');
    expect([...inputs.values()].map((s) => JSON.parse(s))).toEqual([{ city: 'Paris' }, {}]);
  });

  it('holds message_delta back until the usage chunk that follows the finish reason', () => {
    const s = tr.stream('openai', 'anthropic', 'm');
    const [first, ...rest] = OPENAI_STREAM;
    const finishAt = rest.length - 3;
    const types = (events: SseEvent[]) => events.map((e) => e.event);
    s.push(first!);
    for (const e of rest.slice(0, finishAt)) s.push(e);
    expect(types(s.push(rest[finishAt]!))).toEqual(['content_block_stop']);
    expect(types(s.push(rest[finishAt + 1]!))).toEqual(['message_delta', 'message_stop']);
    expect(s.push(rest[finishAt + 2]!)).toEqual([]);
    expect(s.end()).toEqual([]);
  });

  it('closes the message on [DONE] when no usage chunk came', () => {
    const s = tr.stream('openai', 'anthropic', 'fallback');
    s.push(openAiEv(chunk({ delta: { role: 'assistant', content: 'Hi' } })));
    s.push(openAiEv(chunk({ delta: {}, finish_reason: 'length' })));
    const out = anthropicEventsOf(s.push(openAiEv('[DONE]')));
    expect(out).toEqual([
      {
        type: 'message_delta',
        delta: { stop_reason: 'max_tokens', stop_sequence: null },
        usage: { output_tokens: 0 },
      },
      { type: 'message_stop' },
    ]);
    expect(s.end()).toEqual([]);
  });

  it('does not fabricate message_stop when the stream ends before [DONE]', () => {
    const s = tr.stream('openai', 'anthropic', 'm');
    s.push(openAiEv(chunk({ delta: { role: 'assistant', content: 'Hi' } })));
    s.push(openAiEv(chunk({ delta: {}, finish_reason: 'stop' })));
    expect(s.end()).toEqual([]);
  });

  it('turns an error chunk into an Anthropic error event', () => {
    const s = tr.stream('openai', 'anthropic', 'm');
    const out = s.push(
      openAiEv({ error: { message: 'Rate limited', type: 'rate_limit_error', code: 'rate' } }),
    );
    expect(out).toEqual([
      anthropicEv({ type: 'error', error: { type: 'rate_limit_error', message: 'Rate limited' } }),
    ]);
  });

  it('passes events through when both sides speak the same format', () => {
    const s = tr.stream('openai', 'openai', 'm');
    const e = openAiEv(chunk({ delta: { content: 'x' } }));
    expect(s.push(e)).toEqual([e]);
    expect(s.end()).toEqual([]);
  });
});

// ---------------------------------------------------------------- real SDK parsers

describe('the official SDKs parse the translated output', () => {
  let server: Server;
  let baseUrl = '';
  /** What the fake upstream answers next: translated SSE events or a JSON body. */
  let reply: { events: SseEvent[] } | { json: unknown } = { json: {} };

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if ('json' in reply) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(reply.json));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const e of reply.events) res.write(formatSse(e));
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const openai = () => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'x', maxRetries: 0 });
  const anthropic = () => new Anthropic({ baseURL: baseUrl, apiKey: 'x', maxRetries: 0 });

  it('openai: iterating a translated Anthropic stream gives the text, tool call and usage', async () => {
    reply = { events: translateStream('anthropic', ANTHROPIC_STREAM) };
    const stream = await openai().chat.completions.create({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    let args = '';
    let usage: unknown;
    const finishes: string[] = [];
    for await (const c of stream) {
      for (const ch of c.choices) {
        text += ch.delta.content ?? '';
        for (const t of ch.delta.tool_calls ?? []) args += t.function?.arguments ?? '';
        if (ch.finish_reason) finishes.push(ch.finish_reason);
      }
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe('Let me check the weather.');
    expect(JSON.parse(args)).toEqual({ city: 'Paris' });
    expect(finishes).toEqual(['tool_calls']);
    expect(usage).toEqual({
      prompt_tokens: 125,
      completion_tokens: 42,
      total_tokens: 167,
      prompt_tokens_details: { cached_tokens: 100 },
    });
  });

  it('openai: the stream helper accumulates a valid final completion', async () => {
    reply = { events: translateStream('anthropic', ANTHROPIC_STREAM) };
    const final = await openai()
      .chat.completions.stream({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] })
      .finalChatCompletion();
    expect(final.choices[0]?.message.content).toBe('Let me check the weather.');
    expect(final.choices[0]?.message.tool_calls).toEqual([
      {
        id: 'toolu_01XYZ',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city": "Paris"}' },
      },
    ]);
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    expect(final.usage?.prompt_tokens).toBe(125);
  });

  it('openai: a translated error event is raised as an APIError', async () => {
    const s = tr.stream('anthropic', 'openai', 'm');
    reply = {
      events: [
        ...s.push(ANTHROPIC_STREAM[0]!),
        ...s.push(anthropicEv({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })),
      ],
    };
    const stream = await openai().chat.completions.create({ model: 'm', messages: [], stream: true });
    await expect(async () => {
      for await (const _ of stream) {
        // drain
      }
    }).rejects.toThrow(/Overloaded/);
  });

  it('anthropic: finalMessage() of a translated OpenAI stream has the text, tool calls and usage', async () => {
    reply = { events: translateStream('openai', OPENAI_STREAM) };
    const message = await anthropic()
      .messages.stream({ model: 'gpt-4o', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage();
    expect(message.id).toBe('msg_9xyz');
    expect(message.content).toEqual([
      { type: 'text', text: 'Let me check the weather.' },
      { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'call_def', name: 'get_time', input: {} },
    ]);
    expect(message.stop_reason).toBe('tool_use');
    expect(message.usage).toEqual({
      input_tokens: 25,
      output_tokens: 42,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 100,
    });
  });

  it('anthropic: a translated error chunk is raised as an error', async () => {
    const s = tr.stream('openai', 'anthropic', 'm');
    reply = {
      events: [
        ...s.push(OPENAI_STREAM[0]!),
        ...s.push(openAiEv({ error: { message: 'Rate limited', type: 'rate_limit_error' } })),
      ],
    };
    const stream = anthropic().messages.stream({ model: 'm', max_tokens: 1, messages: [] });
    await expect(stream.finalMessage()).rejects.toThrow(/Rate limited/);
  });

  it('both SDKs read translated JSON responses', async () => {
    reply = { json: tr.response('anthropic', 'openai', ANTHROPIC_MESSAGE) };
    const completion = await openai().chat.completions.create({ model: 'm', messages: [] });
    expect(completion.choices[0]?.message.tool_calls?.[0]).toEqual({
      id: 'toolu_01',
      type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
    });
    reply = { json: tr.response('openai', 'anthropic', OPENAI_COMPLETION) };
    const message = await anthropic().messages.create({ model: 'm', max_tokens: 1, messages: [] });
    expect(message.content[1]).toEqual({
      type: 'tool_use',
      id: 'toolu_01',
      name: 'get_weather',
      input: { city: 'Paris' },
    });
    expect(message.usage.cache_read_input_tokens).toBe(100);
  });
});

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type MockLlm,
  mockPromptTokens,
  mockTextTokens,
  startMockLlm,
  unusedPortUrl,
} from '../support/mock-llm.ts';
import { drain, textResponseEvents } from '../support/sdk.ts';

// The official clients prove the wire formats: whatever they parse, the gateway will meet for real.

let mock: MockLlm;
let openai: OpenAI;
let anthropic: Anthropic;

const openAiClient = (baseURL: string, apiKey = 'sk-test', timeout = 5_000) =>
  new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0, timeout });
const anthropicClient = (baseURL: string, apiKey = 'sk-test', timeout = 5_000) =>
  new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout });

const chat = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'What is the weather?' }] };
const msg = {
  model: 'claude-sonnet-4-6',
  max_tokens: 100,
  messages: [{ role: 'user' as const, content: 'Hi' }],
};
const weather = { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris', days: [1, 2] } }] };

beforeAll(async () => {
  mock = await startMockLlm();
  openai = openAiClient(mock.url);
  anthropic = anthropicClient(mock.url);
});
afterAll(() => mock.close());
beforeEach(() => mock.reset());

describe('OpenAI chat completions', () => {
  it('answers JSON with the model echoed and cached tokens inside prompt_tokens', async () => {
    mock.reply({ text: 'hello', usage: { input: 12, output: 5, cacheRead: 3 } });
    const res = await openai.chat.completions.create(chat);
    expect(res.id).toMatch(/^chatcmpl-\w{29}$/);
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('gpt-4o');
    expect(res.choices[0]).toMatchObject({
      message: { role: 'assistant', content: 'hello' },
      finish_reason: 'stop',
    });
    expect(res.usage).toMatchObject({
      prompt_tokens: 15,
      completion_tokens: 5,
      total_tokens: 20,
      prompt_tokens_details: { cached_tokens: 3 },
    });
    const [req] = mock.requests;
    expect(req).toMatchObject({
      path: '/v1/chat/completions',
      format: 'openai',
      apiKey: 'sk-test',
      stream: false,
    });
    expect(req!.headers.authorization).toBe('Bearer sk-test');
    expect(req!.body).toMatchObject(chat);
  });

  it('streams the given deltas, and usage only in a last choices: [] chunk when asked', async () => {
    mock.reply({ chunks: ['Hel', 'lo'], usage: { input: 20, output: 2, cacheRead: 8, cacheCreation: 4 } });
    const stream = await openai.chat.completions.create({
      ...chat,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    expect(items.map((c) => c.choices[0]?.delta.content)).toEqual(['', 'Hel', 'lo', undefined, undefined]);
    expect(items.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(items.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    const last = items.at(-1)!;
    expect(last.choices).toEqual([]);
    // No cache-write bucket on OpenAI: those tokens are plain prompt tokens.
    expect(last.usage).toMatchObject({
      prompt_tokens: 32,
      completion_tokens: 2,
      prompt_tokens_details: { cached_tokens: 8 },
    });
    expect(new Set(items.map((c) => c.id)).size).toBe(1);

    mock.reply({ text: 'no usage please' });
    const plain = await drain(await openai.chat.completions.create({ ...chat, stream: true }));
    expect(plain.items.some((c) => c.usage)).toBe(false);
    expect(plain.items.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('no usage please');
  });

  it('derives default usage from the prompt and the text, the same every time', async () => {
    const a = await openai.chat.completions.create(chat);
    const b = await openai.chat.completions.create(chat);
    const text = a.choices[0]!.message.content!;
    expect(text.length).toBeGreaterThan(0);
    expect(a.usage).toMatchObject({
      prompt_tokens: mockPromptTokens(chat),
      completion_tokens: mockTextTokens(text),
    });
    expect(mockPromptTokens(chat)).toBe(Math.ceil('What is the weather?'.length / 4));
    expect(b.usage).toEqual(a.usage);
    expect(a.id).not.toBe(b.id);
  });

  it('calls tools with JSON-string arguments, whole and streamed', async () => {
    mock.reply(weather);
    const res = await openai.chat.completions.create(chat);
    const choice = res.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0]!;
    expect(call.type === 'function' && call.id.startsWith('call_')).toBe(true);
    if (call.type !== 'function') throw new Error('expected a function call');
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris', days: [1, 2] });

    mock.reply({ ...weather, text: 'Checking.' });
    const streamed = await openai.chat.completions.stream(chat).finalChatCompletion();
    const s = streamed.choices[0]!;
    expect(s.finish_reason).toBe('tool_calls');
    expect(s.message.content).toBe('Checking.');
    const sc = s.message.tool_calls![0]!;
    if (sc.type !== 'function') throw new Error('expected a function call');
    expect(sc.function.name).toBe('get_weather');
    expect(JSON.parse(sc.function.arguments)).toEqual({ city: 'Paris', days: [1, 2] });
  });
});

describe('Anthropic messages', () => {
  it('answers JSON with input_tokens apart from both cache buckets', async () => {
    mock.reply({ text: 'hello', usage: { input: 12, output: 5, cacheRead: 3, cacheCreation: 2 } });
    const res = await anthropic.messages.create(msg);
    expect(res.id).toMatch(/^msg_01\w{22}$/);
    expect(res).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-6',
      stop_reason: 'end_turn',
      content: [{ type: 'text', text: 'hello' }],
      usage: {
        input_tokens: 12,
        output_tokens: 5,
        cache_read_input_tokens: 3,
        cache_creation_input_tokens: 2,
      },
    });
    const [req] = mock.requests;
    expect(req).toMatchObject({ path: '/v1/messages', format: 'anthropic', apiKey: 'sk-test' });
    // The 1.x SDK sends its key as a Bearer token; the gateway sends x-api-key (see the raw test below).
    expect(req!.headers.authorization).toBe('Bearer sk-test');
    expect(req!.headers['anthropic-version']).toBeTruthy();
  });

  it('streams message_start … message_stop, which the SDK assembles with the usage', async () => {
    mock.reply({ chunks: ['Hel', 'lo'], usage: { input: 12, output: 5, cacheRead: 3, cacheCreation: 2 } });
    const stream = anthropic.messages.stream(msg);
    const deltas: string[] = [];
    stream.on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    expect(deltas).toEqual(['Hel', 'lo']);
    expect(final).toMatchObject({
      content: [{ type: 'text', text: 'Hello' }],
      stop_reason: 'end_turn',
      usage: {
        input_tokens: 12,
        output_tokens: 5,
        cache_read_input_tokens: 3,
        cache_creation_input_tokens: 2,
      },
    });

    mock.reply({ chunks: ['a', 'b'] });
    const raw = await anthropic.messages.create({ ...msg, stream: true });
    const { items } = await drain(raw);
    expect(items.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
  });

  it('names every SSE event after its data type (the SDK drops unnamed ones), ping included', async () => {
    const res = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': 'sk-raw',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({ ...msg, stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(mock.requests[0]!.apiKey).toBe('sk-raw');
    const blocks = (await res.text()).split('\n\n').filter((b) => b !== '');
    const names = blocks.map((b) => {
      const [event, data] = b.split('\n');
      const type = (JSON.parse(data!.replace(/^data: /, '')) as { type: string }).type;
      expect(event).toBe(`event: ${type}`);
      return type;
    });
    expect(names.slice(0, 3)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(names.at(-1)).toBe('message_stop');
  });

  it('calls tools as tool_use blocks, whole and streamed with input_json_delta', async () => {
    mock.reply(weather);
    const res = await anthropic.messages.create(msg);
    expect(res.stop_reason).toBe('tool_use');
    expect(res.content).toHaveLength(1);
    expect(res.content[0]).toMatchObject({
      type: 'tool_use',
      name: 'get_weather',
      input: { city: 'Paris', days: [1, 2] },
    });
    expect((res.content[0] as Anthropic.ToolUseBlock).id).toMatch(/^toolu_01/);

    mock.reply({ ...weather, text: 'Checking.' });
    const final = await anthropic.messages.stream(msg).finalMessage();
    expect(final.stop_reason).toBe('tool_use');
    expect(final.content).toMatchObject([
      { type: 'text', text: 'Checking.' },
      { type: 'tool_use', name: 'get_weather', input: { city: 'Paris', days: [1, 2] } },
    ]);
  });

  it('refuses what the real API refuses: no max_tokens, a system role in messages, no version header', async () => {
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${mock.url}/v1/messages`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-api-key': 'k',
          'anthropic-version': '2023-06-01',
          ...headers,
        },
        body: JSON.stringify(body),
      });
    const noMax = await post({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] });
    expect(noMax.status).toBe(400);
    expect(await noMax.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect((await post({ ...msg, messages: [{ role: 'system', content: 'x' }] })).status).toBe(400);
    const res = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'k' },
      body: JSON.stringify(msg),
    });
    expect(res.status).toBe(400);
  });
});

describe('OpenAI responses', () => {
  const ask = { model: 'gpt-4o', instructions: 'Be brief.', input: 'What is the weather?' };
  const types = (events: Array<{ type: string }>) => events.map((e) => e.type);

  it('answers a response object with cached tokens inside input_tokens', async () => {
    mock.reply({ text: 'hello', usage: { input: 12, output: 5, cacheRead: 3 } });
    const res = await openai.responses.create(ask);
    expect(res.id).toMatch(/^resp_[0-9a-f]{48}$/);
    expect(res).toMatchObject({ object: 'response', status: 'completed', model: 'gpt-4o', error: null });
    expect(res.instructions).toBe('Be brief.');
    expect(res.output_text).toBe('hello');
    expect(res.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    expect(res.usage).toEqual({
      input_tokens: 15,
      input_tokens_details: { cached_tokens: 3 },
      output_tokens: 5,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 20,
    });
    expect(mock.requests[0]).toMatchObject({ path: '/v1/responses', format: 'responses', stream: false });
    expect(mock.requests[0]!.body).toMatchObject(ask);
  });

  it('counts default input tokens from the instructions and the input items', async () => {
    const res = await openai.responses.create(ask);
    expect(res.usage!.input_tokens).toBe(mockPromptTokens(ask));
    expect(mockPromptTokens(ask)).toBe(Math.ceil('Be brief.What is the weather?'.length / 4));
    const items = {
      model: 'gpt-4o',
      input: [
        { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'abcd' }] },
        { type: 'function_call' as const, call_id: 'call_1', name: 'f', arguments: '{"a":1}' },
        { type: 'function_call_output' as const, call_id: 'call_1', output: 'sunny' },
      ],
    };
    const again = await openai.responses.create(items);
    expect(again.usage!.input_tokens).toBe(Math.ceil('abcd{"a":1}sunny'.length / 4));
  });

  it('streams the typed events in order, numbered, ending with the usage', async () => {
    mock.reply({ chunks: ['Hel', 'lo'], usage: { input: 20, output: 2, cacheRead: 8 } });
    const { items, error } = await drain(await openai.responses.create({ ...ask, stream: true }));
    expect(error).toBeUndefined();
    expect(types(items)).toEqual(textResponseEvents(2));
    expect(items.map((e) => e.sequence_number)).toEqual(items.map((_, i) => i));
    const last = items.at(-1)!;
    if (last.type !== 'response.completed') throw new Error('expected response.completed');
    expect(last.response.usage).toMatchObject({
      input_tokens: 28,
      input_tokens_details: { cached_tokens: 8 },
    });
    const first = items[0]!;
    if (first.type !== 'response.created') throw new Error('expected response.created');
    expect(first.response).toMatchObject({ id: last.response.id, status: 'in_progress', output: [] });

    mock.reply({ chunks: ['Hel', 'lo'] });
    // The helper assembles the deltas (its final response has no output_text: the SDK adds that only to parsed ones).
    const final = await openai.responses.stream(ask).finalResponse();
    expect(final.status).toBe('completed');
    expect(final.output).toMatchObject([
      { type: 'message', content: [{ type: 'output_text', text: 'Hello' }] },
    ]);
  });

  it('calls functions, whole and streamed with argument deltas', async () => {
    const tools = [{ type: 'function' as const, name: 'get_weather', parameters: {}, strict: false }];
    mock.reply(weather);
    const res = await openai.responses.create({ ...ask, tools });
    expect(res.tools).toEqual(tools);
    const [call] = res.output;
    if (call?.type !== 'function_call') throw new Error('expected a function call');
    expect(call.call_id).toMatch(/^call_/);
    expect(call.id).toMatch(/^fc_[0-9a-f]{48}$/);
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris', days: [1, 2] });

    mock.reply({ ...weather, text: 'Checking.' });
    const stream = openai.responses.stream({ ...ask, tools });
    const deltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(final.output[0]).toMatchObject({ type: 'message', content: [{ text: 'Checking.' }] });
    const streamed = final.output[1];
    if (streamed?.type !== 'function_call') throw new Error('expected a function call');
    expect(JSON.parse(streamed.arguments)).toEqual({ city: 'Paris', days: [1, 2] });
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(streamed.arguments);
  });

  it('fails as OpenAI does: error statuses, error and response.failed events, cut and malformed streams', async () => {
    mock.reply({ status: 429, retryAfterSec: 2 });
    await expect(openai.responses.create(ask)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    mock.reply({ status: 400, message: 'bad input' });
    await expect(openai.responses.create(ask)).rejects.toMatchObject({ status: 400, message: /bad input/ });

    mock.reply([
      { errorEventAfter: 0, message: 'no capacity' },
      { errorEventAfter: 4, message: 'broke' },
    ]);
    const early = await drain(await openai.responses.create({ ...ask, stream: true }));
    expect(early.items).toMatchObject([{ type: 'error', code: 'server_error', message: 'no capacity' }]);
    const late = await drain(await openai.responses.create({ ...ask, stream: true }));
    expect(types(late.items).slice(-1)).toEqual(['response.failed']);
    expect(late.items.at(-1)).toMatchObject({
      sequence_number: 4,
      response: { status: 'failed', error: { code: 'server_error', message: 'broke' } },
    });

    mock.reply({ cutAfterEvents: 3 });
    const cut = await drain(await openai.responses.create({ ...ask, stream: true }));
    expect(cut.items).toHaveLength(3);
    expect(cut.error).toBeInstanceOf(Error);

    mock.reply({ malformedEventAfter: 2 });
    const bad = await drain(await openai.responses.create({ ...ask, stream: true }));
    expect(bad.items).toHaveLength(2);
    expect(bad.error).toBeInstanceOf(SyntaxError);
  });

  it('refuses a request without model or input, at /v1/responses and /responses', async () => {
    const res = await fetch(`${mock.url}/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', message: /input/ } });
    await expect(openai.responses.create({ model: '', input: 'x' })).rejects.toBeInstanceOf(
      OpenAI.BadRequestError,
    );
  });
});

describe('model lists', () => {
  it('lists models in each provider’s shape, which both SDKs page through', async () => {
    const ids = Array.from({ length: 45 }, (_, i) => `model-${String(i).padStart(2, '0')}`);
    const other = await startMockLlm({ models: ids, requireKey: 'sk-list' });
    try {
      const fromOpenAi = [];
      for await (const m of openAiClient(other.url, 'sk-list').models.list()) fromOpenAi.push(m);
      expect(fromOpenAi.map((m) => m.id)).toEqual(ids);
      expect(fromOpenAi[0]).toMatchObject({ object: 'model', owned_by: 'system' });
      expect(fromOpenAi[0]!.created).toBeTypeOf('number');

      // Anthropic pages 20 at a time by default: the SDK follows last_id while has_more.
      const fromAnthropic = [];
      for await (const m of anthropicClient(other.url, 'sk-list').models.list()) fromAnthropic.push(m);
      expect(fromAnthropic.map((m) => m.id)).toEqual(ids);
      expect(fromAnthropic[0]).toMatchObject({ type: 'model', display_name: 'model-00' });
      expect(other.requests.filter((r) => r.format === 'anthropic').map((r) => r.path)).toEqual([
        '/v1/models',
        '/v1/models',
        '/v1/models',
      ]);

      const page = await anthropicClient(other.url, 'sk-list').models.list({
        limit: 5,
        after_id: 'model-40',
      });
      expect(page.data.map((m) => m.id)).toEqual(['model-41', 'model-42', 'model-43', 'model-44']);
      expect(page.has_more).toBe(false);
      expect(page.last_id).toBe('model-44');

      // Another key is refused, in each shape; without /v1 the list is there too.
      await expect(openAiClient(other.url, 'sk-other').models.list()).rejects.toBeInstanceOf(
        OpenAI.AuthenticationError,
      );
      await expect(anthropicClient(other.url, 'sk-other').models.list()).rejects.toBeInstanceOf(
        Anthropic.AuthenticationError,
      );
      const bare = await fetch(`${other.url}/models`, { headers: { authorization: 'Bearer sk-list' } });
      expect(((await bare.json()) as { data: unknown[] }).data).toHaveLength(45);
    } finally {
      await other.close();
    }
  });

  it('setModels changes the list per format; a step queued for the path fails it', async () => {
    const other = await startMockLlm();
    try {
      other.setModels(['gpt-x']);
      other.setModels(['claude-x'], 'anthropic');
      const openAiIds = async () => (await openAiClient(other.url).models.list()).data.map((m) => m.id);
      expect(await openAiIds()).toEqual(['gpt-x']);
      expect((await anthropicClient(other.url).models.list()).data.map((m) => m.id)).toEqual(['claude-x']);

      // A step with no path is for completions: the list ignores it, and a completion still takes it.
      other.reply({ text: 'for the chat' });
      other.replyFor({ path: '/v1/models' }, { status: 503, message: 'listing is down' });
      await expect(openAiIds()).rejects.toBeInstanceOf(OpenAI.APIError);
      expect(await openAiIds()).toEqual(['gpt-x']);
      const res = await openAiClient(other.url).chat.completions.create(chat);
      expect(res.choices[0]!.message.content).toBe('for the chat');
    } finally {
      await other.close();
    }
  });
});

describe('failures the SDKs observe', () => {
  it('429 raises RateLimitError with retry-after, in each provider’s error shape', async () => {
    mock.reply([
      { status: 429, retryAfterSec: 1 },
      { status: 429, retryAfterSec: 2, message: 'slow down' },
    ]);
    const o = await openai.chat.completions.create(chat).catch((e: unknown) => e);
    expect(o).toBeInstanceOf(OpenAI.RateLimitError);
    const oe = o as InstanceType<typeof OpenAI.RateLimitError>;
    expect(oe.headers.get('retry-after')).toBe('1');
    expect(oe.code).toBe('rate_limit_exceeded');
    const a = await anthropic.messages.create(msg).catch((e: unknown) => e);
    expect(a).toBeInstanceOf(Anthropic.RateLimitError);
    const ae = a as InstanceType<typeof Anthropic.RateLimitError>;
    expect(ae.headers.get('retry-after')).toBe('2');
    expect(ae.type).toBe('rate_limit_error');
    expect(ae.apiMessage).toBe('slow down');
  });

  it('5xx raises InternalServerError; 400 BadRequestError; a body may replace the error', async () => {
    mock.reply([
      { status: 500 },
      { status: 503 },
      { status: 400 },
      { status: 502, body: '<html>bad gateway</html>' },
    ]);
    await expect(openai.chat.completions.create(chat)).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    const a = await anthropic.messages.create(msg).catch((e: unknown) => e);
    expect(a).toBeInstanceOf(Anthropic.InternalServerError);
    expect(a).toMatchObject({ status: 503, type: 'overloaded_error' });
    await expect(openai.chat.completions.create(chat)).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const html = await anthropic.messages.create(msg).catch((e: unknown) => e);
    expect(html).toMatchObject({ status: 502 });
    expect(String(html)).toContain('bad gateway');
  });

  it('requireKey answers 401 to any other key, in each shape', async () => {
    const strict = await startMockLlm({ requireKey: 'sk-right' });
    try {
      await expect(openAiClient(strict.url, 'sk-wrong').chat.completions.create(chat)).rejects.toBeInstanceOf(
        OpenAI.AuthenticationError,
      );
      await expect(anthropicClient(strict.url, 'sk-wrong').messages.create(msg)).rejects.toBeInstanceOf(
        Anthropic.AuthenticationError,
      );
      await expect(anthropicClient(strict.url, 'sk-right').messages.create(msg)).resolves.toMatchObject({
        type: 'message',
      });
      expect(strict.requests.map((r) => r.apiKey)).toEqual(['sk-wrong', 'sk-wrong', 'sk-right']);
    } finally {
      await strict.close();
    }
  });

  it('replyFor fails one provider key and not the other; times repeats a step', async () => {
    mock.replyFor({ apiKey: 'sk-a' }, { status: 500, times: Number.POSITIVE_INFINITY });
    mock.replyFor({ path: '/v1/messages' }, { text: 'only anthropic' });
    const a = openAiClient(mock.url, 'sk-a');
    const b = openAiClient(mock.url, 'sk-b');
    for (let i = 0; i < 3; i++)
      await expect(a.chat.completions.create(chat)).rejects.toBeInstanceOf(OpenAI.APIError);
    const ok = await b.chat.completions.create(chat);
    expect(ok.choices[0]!.message.content).not.toBe('only anthropic');
    const an = await anthropic.messages.create(msg);
    expect(an.content).toMatchObject([{ text: 'only anthropic' }]);
    expect(mock.queued).toBe(Number.POSITIVE_INFINITY);
    expect(mock.requests.map((r) => r.apiKey)).toEqual(['sk-a', 'sk-a', 'sk-a', 'sk-b', 'sk-test']);
  });

  it('a cut stream keeps the deltas sent before it and then fails', async () => {
    // OpenAI events: role, 'Hel' | cut.
    mock.reply({ chunks: ['Hel', 'lo', ' world'], cutAfterEvents: 2 });
    const o = await drain(await openai.chat.completions.create({ ...chat, stream: true }));
    expect(o.items.map((c) => c.choices[0]?.delta.content)).toEqual(['', 'Hel']);
    expect(o.error).toBeInstanceOf(Error);

    // Anthropic events: message_start, block start, ping, 'Hel' | cut.
    mock.reply({ chunks: ['Hel', 'lo', ' world'], cutAfterEvents: 4 });
    const stream = anthropic.messages.stream(msg);
    const deltas: string[] = [];
    stream.on('text', (t) => deltas.push(t));
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Error);
    expect(deltas).toEqual(['Hel']);

    mock.reply({ cutAfterEvents: 1 });
    await expect(openai.chat.completions.create(chat)).rejects.toBeInstanceOf(Error);
  });

  it('an empty stream ends with nothing: no chunks for OpenAI, an error from the Anthropic helper', async () => {
    mock.reply([{ emptyStream: true }, { emptyStream: true }]);
    const o = await drain(await openai.chat.completions.create({ ...chat, stream: true }));
    expect(o).toEqual({ items: [], error: undefined });
    await expect(anthropic.messages.stream(msg).finalMessage()).rejects.toThrow(/without sending any chunks/);
  });

  it('an in-stream error event raises APIError in both SDKs', async () => {
    mock.reply([{ errorEventAfter: 2 }, { errorEventAfter: 3, message: 'Overloaded right now' }]);
    const o = await drain(await openai.chat.completions.create({ ...chat, stream: true }));
    expect(o.items).toHaveLength(2);
    expect(o.error).toBeInstanceOf(OpenAI.APIError);
    const a = await anthropic.messages
      .stream(msg)
      .finalMessage()
      .catch((e: unknown) => e);
    expect(a).toBeInstanceOf(Anthropic.APIError);
    expect(a).toMatchObject({ type: 'overloaded_error', apiMessage: 'Overloaded right now' });
  });

  it('hang never answers: the SDK times out; the request was still received', async () => {
    mock.reply([{ hang: true }, { hang: true }]);
    const started = Date.now();
    await expect(openAiClient(mock.url, 'sk-test', 300).chat.completions.create(chat)).rejects.toBeInstanceOf(
      OpenAI.APIConnectionTimeoutError,
    );
    await expect(anthropicClient(mock.url, 'sk-test', 300).messages.create(msg)).rejects.toBeInstanceOf(
      Anthropic.APIConnectionTimeoutError,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    expect(mock.requests).toHaveLength(2);
  });

  it('delayMs holds the headers; stalls pause mid-stream', async () => {
    mock.reply({ delayMs: 200 });
    let t = Date.now();
    await openai.chat.completions.create(chat);
    expect(Date.now() - t).toBeGreaterThanOrEqual(190);

    mock.reply({ chunks: ['a', 'b', 'c'], stallAfterEvents: 2, stallMs: 300 });
    const stamps: number[] = [];
    t = Date.now();
    for await (const _ of await openai.chat.completions.create({ ...chat, stream: true }))
      stamps.push(Date.now() - t);
    // Events 1 and 2 at once, then the pause before the third.
    expect(stamps[2]! - stamps[1]!).toBeGreaterThanOrEqual(280);

    mock.reply({ chunks: ['a', 'b'], stallBetweenEventsMs: 60 });
    t = Date.now();
    const final = await anthropic.messages.stream(msg).finalMessage();
    expect(final.content).toMatchObject([{ text: 'ab' }]);
    // Seven events with ping: six pauses.
    expect(Date.now() - t).toBeGreaterThanOrEqual(6 * 55);
  });

  it('destroy and a refused connection are connection errors', async () => {
    mock.reply([{ destroy: true }, { destroy: true }]);
    await expect(openai.chat.completions.create(chat)).rejects.toBeInstanceOf(OpenAI.APIConnectionError);
    await expect(anthropic.messages.create(msg)).rejects.toBeInstanceOf(Anthropic.APIConnectionError);
    const nowhere = await unusedPortUrl();
    await expect(openAiClient(nowhere).chat.completions.create(chat)).rejects.toBeInstanceOf(
      OpenAI.APIConnectionError,
    );
    await expect(anthropicClient(nowhere).messages.create(msg)).rejects.toBeInstanceOf(
      Anthropic.APIConnectionError,
    );
  });

  it('close() drops hanging requests at once', async () => {
    const other = await startMockLlm({ defaultStep: { hang: true } });
    const pending = openAiClient(other.url).chat.completions.create(chat);
    const caught = pending.catch((e: unknown) => e);
    while (other.requestCount === 0) await new Promise((r) => setTimeout(r, 5));
    // The request hangs for ever: close() ends only because it drops it.
    await other.close();
    expect(await caught).toBeInstanceOf(OpenAI.APIConnectionError);
  });

  it('respond answers from the conversation itself; a queued step still comes first', async () => {
    const other = await startMockLlm({
      respond: ({ body }) => {
        const last = (body.messages as Array<{ role: string }>).at(-1);
        return last?.role === 'tool' ? { text: 'done' } : weather;
      },
    });
    const client = openAiClient(other.url);
    const first = await client.chat.completions.create(chat);
    const call = first.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function.name).toBe('get_weather');
    const second = await client.chat.completions.create({
      ...chat,
      messages: [
        ...chat.messages,
        first.choices[0]!.message,
        { role: 'tool', tool_call_id: call.id, content: 'sunny' },
      ],
    });
    expect(second.choices[0]!.message.content).toBe('done');
    other.reply({ text: 'queued' });
    expect((await client.chat.completions.create(chat)).choices[0]!.message.content).toBe('queued');
    expect(other.requests.map((r) => r.step)).toEqual([weather, { text: 'done' }, { text: 'queued' }]);
    await other.close();
  });

  it('rejects contradictory steps when they are queued', () => {
    expect(() => mock.reply({ text: 'ab', chunks: ['a'] })).toThrow(TypeError);
    expect(() => mock.reply({ stallAfterEvents: 1 })).toThrow(TypeError);
    expect(() => mock.reply({ status: 200 })).toThrow(TypeError);
    expect(mock.queued).toBe(0);
  });
});

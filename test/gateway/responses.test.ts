import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PriceTable } from '../../src/modules/gateway/pricing.ts';
import type { Json } from '../support/factories.ts';
import { chatUpstreamAgent, type GatewayFixture, startGateway } from '../support/gateway.ts';
import { drain, textResponseEvents } from '../support/sdk.ts';

// OpenAI's Responses API as agents use it (the official SDK's responses.*),
// served from a Chat Completions upstream (an openai_compatible key) and from
// an Anthropic upstream by translation, with Paddock storing the responses.

let g: GatewayFixture;
/** An agent whose only key is an openai_compatible one (a chat upstream). */
let compat: Json & { api_key: string };
let chat: () => OpenAI;
let claude: () => OpenAI;
beforeAll(async () => {
  g = await startGateway();
  compat = await chatUpstreamAgent(g);
  chat = () => g.openai({ apiKey: compat.api_key });
  claude = () => g.openai();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const USAGE = { input: 1000, output: 200, cacheRead: 500 };
const prices = new PriceTable();
const compatCost = (u: { input: number; output: number; cacheRead: number }) =>
  prices.costMicros('openai_compatible', 'gpt-4o', { ...u, cacheCreation: 0 }, null) / 1e6;
// claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read (per million).
const SONNET_COST = (1000 * 3 + 200 * 15 + 500 * 0.3) / 1e6;
const weather: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
};

function last<T>(xs: readonly T[]): T {
  return xs[xs.length - 1]!;
}
const sentBody = () => last(g.mock.requests).body as Json;

describe('a chat upstream (openai_compatible)', () => {
  it('answers a plain request and records its tokens and cost', async () => {
    g.mock.reply({ text: 'Paris.', usage: USAGE });
    const { data, response } = await chat()
      .responses.create({
        model: 'gpt-4o',
        instructions: 'Be brief.',
        input: 'Capital of France?',
        max_output_tokens: 50,
        metadata: { ticket: 'T-1' },
      })
      .withResponse();
    expect(data.id).toMatch(/^resp_[0-9A-Z]{26}$/);
    expect(data).toMatchObject({
      object: 'response',
      status: 'completed',
      model: 'gpt-4o',
      instructions: 'Be brief.',
      metadata: { ticket: 'T-1' },
      max_output_tokens: 50,
      store: true,
      previous_response_id: null,
    });
    expect(data.output_text).toBe('Paris.');
    expect(data.usage).toMatchObject({
      input_tokens: 1500,
      input_tokens_details: { cached_tokens: 500 },
      output_tokens: 200,
      total_tokens: 1700,
    });
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.apiKey).toBe('sk-compat-test');
    expect(sent.body).toMatchObject({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Capital of France?' },
      ],
      max_completion_tokens: 50,
    });

    const runId = response.headers.get('x-paddock-run-id')!;
    const step = last(await g.steps(runId));
    expect(step).toMatchObject({
      id: response.headers.get('x-paddock-step-id'),
      status: 'success',
      provider: 'openai_compatible',
      streaming: false,
      tokens: { input: 1000, output: 200, cache_read: 500, cache_creation: 0 },
    });
    expect(compatCost(USAGE)).toBeGreaterThan(0);
    expect(step.cost_usd).toBeCloseTo(compatCost(USAGE), 6);
    expect(last(await g.ledger(runId))).toMatchObject({ step_id: step.id, tokens: step.tokens });
  });

  it('streams the typed events in order, with one id and the final text, and stores the answer', async () => {
    g.mock.reply({ chunks: ['Par', 'is', '.'], usage: USAGE });
    const { data: stream, response } = await chat()
      .responses.create({ model: 'gpt-4o', input: 'Capital of France?', stream: true })
      .withResponse();
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    expect(events.map((e) => e.type)).toEqual(textResponseEvents(3));
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const created = events[0] as OpenAI.Responses.ResponseCreatedEvent;
    const completed = last(events) as OpenAI.Responses.ResponseCompletedEvent;
    expect(created.response.id).toMatch(/^resp_/);
    expect(completed.response.id).toBe(created.response.id);
    expect(completed.response.output).toMatchObject([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Paris.' }] },
    ]);
    expect(completed.response.usage).toMatchObject({ input_tokens: 1500, output_tokens: 200 });

    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({
      status: 'success',
      streaming: true,
      tokens: { input: 1000, output: 200, cache_read: 500 },
    });
    expect(step.cost_usd).toBeCloseTo(compatCost(USAGE), 6);
    const stored = await chat().responses.retrieve(created.response.id);
    expect(stored.output_text).toBe('Paris.');
  });

  it('streams a function call as its item and argument deltas', async () => {
    g.mock.reply({ toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' }, id: 'call_1' }] });
    const stream = await chat().responses.create({
      model: 'gpt-4o',
      input: 'Weather in Paris?',
      tools: [weather],
      stream: true,
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    const types = events.map((e) => e.type);
    expect(types[2]).toBe('response.output_item.added');
    expect(types).toContain('response.function_call_arguments.delta');
    expect(types.slice(-3)).toEqual([
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const done = events.find((e) => e.type === 'response.function_call_arguments.done')!;
    expect(JSON.parse((done as OpenAI.Responses.ResponseFunctionCallArgumentsDoneEvent).arguments)).toEqual({
      city: 'Paris',
    });
    const completed = last(events) as OpenAI.Responses.ResponseCompletedEvent;
    expect(completed.response.output).toMatchObject([
      { type: 'function_call', call_id: 'call_1', name: 'get_weather' },
    ]);
    expect(sentBody().tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather for a city',
          parameters: weather.parameters,
          strict: false,
        },
      },
    ]);
  });

  it('carries a tool loop the client sends whole (function_call and its output as items)', async () => {
    g.mock.reply({ text: 'Sunny in Paris.' });
    const answer = await chat().responses.create({
      model: 'gpt-4o',
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        { type: 'function_call', call_id: 'call_9', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_9', output: 'sunny, 21C' },
      ],
      tools: [weather],
    });
    expect(answer.output_text).toBe('Sunny in Paris.');
    expect(sentBody().messages).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_9',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_9', content: 'sunny, 21C' },
    ]);
  });

  it('resolves previous_response_id itself: the upstream gets the whole conversation, never the id', async () => {
    g.mock.reply([{ text: 'Nice to meet you, Ada.' }, { text: 'Your name is Ada.' }]);
    const first = await chat().responses.create({ model: 'gpt-4o', input: 'My name is Ada.' });
    const second = await chat().responses.create({
      model: 'gpt-4o',
      previous_response_id: first.id,
      instructions: 'Answer in one line.',
      input: 'What is my name?',
    });
    expect(second.output_text).toBe('Your name is Ada.');
    expect(second.previous_response_id).toBe(first.id);
    const sent = sentBody();
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Answer in one line.' },
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Nice to meet you, Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    expect(sent.previous_response_id).toBeUndefined();
    expect(sent.store).toBeUndefined();

    // The stored input is the whole conversation, newest first by default.
    const items = await chat().responses.inputItems.list(second.id);
    expect(items.data.map((i) => (i as Json).role)).toEqual(['user', 'assistant', 'user']);
    const asc = await g.t.call('GET', `/v1/responses/${second.id}/input_items`, {
      token: compat.api_key,
      query: { order: 'asc', limit: '1' },
    });
    expect(asc.status).toBe(200);
    expect(asc.body).toMatchObject({ object: 'list', has_more: true });
    expect(asc.body.data[0].content).toEqual([{ type: 'input_text', text: 'My name is Ada.' }]);
    const next = await g.t.call('GET', `/v1/responses/${second.id}/input_items`, {
      token: compat.api_key,
      query: { order: 'asc', limit: '5', after: asc.body.last_id },
    });
    expect(next.body.data).toHaveLength(2);
    expect(next.body.has_more).toBe(false);
  });

  it('raises an in-stream provider error through the SDK', async () => {
    g.mock.reply({ chunks: ['a', 'b', 'c', 'd'], errorEventAfter: 2, message: 'overloaded' });
    const stream = await chat().responses.create({ model: 'gpt-4o', input: 'hi', stream: true });
    const { items, error } = await drain(stream);
    expect(items[0]?.type).toBe('response.created');
    expect(error).toBeInstanceOf(OpenAI.APIError);

    // A stream the provider breaks off ends with Paddock's own error event, which the SDK raises too.
    g.mock.reply({ chunks: ['a', 'b', 'c', 'd'], cutAfterEvents: 2 });
    const cut = await drain(await chat().responses.create({ model: 'gpt-4o', input: 'hi', stream: true }));
    expect(cut.items.map((e) => e.type)).not.toContain('response.completed');
    expect(cut.error).toBeInstanceOf(OpenAI.APIError);
    expect((cut.error as InstanceType<typeof OpenAI.APIError>).code).toBe('mid_stream_error');
  });
});

describe('an Anthropic upstream', () => {
  const USAGE_A = { ...USAGE, cacheCreation: 0 };

  it('answers and records the tokens and cost', async () => {
    g.mock.reply({ text: 'Bonjour', usage: USAGE_A });
    const { data, response } = await claude()
      .responses.create({ model: 'claude-sonnet-4-5', instructions: 'French.', input: 'Hello' })
      .withResponse();
    expect(data.output_text).toBe('Bonjour');
    expect(data.usage).toMatchObject({ input_tokens: 1500, input_tokens_details: { cached_tokens: 500 } });
    expect(last(g.mock.requests).path).toBe('/v1/messages');
    expect(sentBody()).toMatchObject({ system: 'French.', messages: [{ role: 'user', content: 'Hello' }] });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({
      provider: 'anthropic',
      tokens: { input: 1000, output: 200, cache_read: 500 },
    });
    expect(step.cost_usd).toBeCloseTo(SONNET_COST, 6);
  });

  it('streams through both translations (Messages → chat → Responses)', async () => {
    g.mock.reply({ chunks: ['Bon', 'jour'], usage: USAGE_A });
    const { data: stream, response } = await claude()
      .responses.create({ model: 'claude-sonnet-4-5', input: 'Hello', stream: true })
      .withResponse();
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    expect(events[0]!.type).toBe('response.created');
    const text = events
      .filter((e) => e.type === 'response.output_text.delta')
      .map((e) => (e as OpenAI.Responses.ResponseTextDeltaEvent).delta)
      .join('');
    expect(text).toBe('Bonjour');
    const completed = last(events) as OpenAI.Responses.ResponseCompletedEvent;
    expect(completed.type).toBe('response.completed');
    expect(completed.response.usage).toMatchObject({ output_tokens: 200 });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({ streaming: true, tokens: { input: 1000, output: 200, cache_read: 500 } });
    expect(step.cost_usd).toBeCloseTo(SONNET_COST, 6);
  });

  it('runs a tool loop over previous_response_id', async () => {
    g.mock.reply([
      { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] },
      { text: 'It is sunny in Paris.' },
    ]);
    const first = await claude().responses.create({
      model: 'claude-sonnet-4-5',
      input: 'Weather in Paris?',
      tools: [weather],
    });
    const call = first.output.find(
      (o) => o.type === 'function_call',
    ) as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' });
    expect(sentBody().tools).toMatchObject([{ name: 'get_weather', input_schema: { type: 'object' } }]);

    const second = await claude().responses.create({
      model: 'claude-sonnet-4-5',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21C' }],
      tools: [weather],
    });
    expect(second.output_text).toBe('It is sunny in Paris.');
    const sent = sentBody();
    expect(sent.previous_response_id).toBeUndefined();
    expect(sent.messages).toMatchObject([
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: [{ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', content: 'sunny, 21C' }] },
    ]);
  });
});

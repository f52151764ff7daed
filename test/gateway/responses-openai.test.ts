import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PriceTable } from '../../src/modules/gateway/pricing.ts';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { drain, textResponseEvents } from '../support/sdk.ts';

// The Responses API to OpenAI itself (an `openai` key): the request passes
// through to OpenAI's /v1/responses, which is told to store nothing and never
// sees a previous_response_id; the client sees Paddock's id, and Paddock keeps
// the conversation. Hosted tools (web search…) go to OpenAI only.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const USAGE = { input: 1000, output: 200, cacheRead: 500 };
// gpt-4o at OpenAI's prices: cached input is billed at its own rate.
const COST = new PriceTable().costMicros('openai', 'gpt-4o', { ...USAGE, cacheCreation: 0 }, null) / 1e6;
const sent = () => g.mock.requests.at(-1)!;

describe('the Responses API passed through to OpenAI', () => {
  it('answers with Paddock’s id, asks OpenAI to store nothing, and records tokens and cost', async () => {
    g.mock.reply({ text: 'Paris.', usage: USAGE });
    const { data, response } = await g
      .openai()
      .responses.create({ model: 'gpt-4o', instructions: 'Be brief.', input: 'Capital of France?' })
      .withResponse();
    expect(sent().path).toBe('/v1/responses');
    expect(sent().apiKey).toBe('sk-openai-test');
    // No limit asked for: the one the reservation assumed (PADDOCK_DEFAULT_MAX_TOKENS) is sent.
    expect(sent().body).toMatchObject({
      model: 'gpt-4o',
      instructions: 'Be brief.',
      store: false,
      max_output_tokens: 4096,
    });
    expect(sent().body).not.toHaveProperty('previous_response_id');

    expect(data.id).toMatch(/^resp_[0-9A-Z]{26}$/);
    expect(data).toMatchObject({ status: 'completed', store: true, instructions: 'Be brief.' });
    expect(data.output_text).toBe('Paris.');
    expect(data.usage).toMatchObject({ input_tokens: 1500, input_tokens_details: { cached_tokens: 500 } });

    const step = (await g.steps(response.headers.get('x-paddock-run-id')!)).at(-1)!;
    expect(step).toMatchObject({
      id: response.headers.get('x-paddock-step-id'),
      status: 'success',
      provider: 'openai',
      tokens: { input: 1000, output: 200, cache_read: 500, cache_creation: 0 },
    });
    expect(COST).toBeGreaterThan(0);
    expect(step.cost_usd).toBeCloseTo(COST, 6);
    expect((await g.openai().responses.retrieve(data.id)).output_text).toBe('Paris.');
  });

  it('streams OpenAI’s events in order with Paddock’s id, and stores the answer', async () => {
    g.mock.reply({ chunks: ['Par', 'is.'], usage: USAGE });
    const { data: stream, response } = await g
      .openai()
      .responses.create({ model: 'gpt-4o', input: 'Capital of France?', stream: true })
      .withResponse();
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    expect(sent().body).toMatchObject({ stream: true, store: false });
    expect(sent().body).not.toHaveProperty('stream_options');
    expect(items.map((e) => e.type)).toEqual(textResponseEvents(2));
    const created = items[0] as OpenAI.Responses.ResponseCreatedEvent;
    const completed = items.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(created.response.id).toMatch(/^resp_[0-9A-Z]{26}$/);
    expect(completed.response.id).toBe(created.response.id);
    expect(completed.response).toMatchObject({ store: true });

    const step = (await g.steps(response.headers.get('x-paddock-run-id')!)).at(-1)!;
    expect(step).toMatchObject({
      status: 'success',
      streaming: true,
      tokens: { input: 1000, output: 200, cache_read: 500 },
    });
    expect(step.cost_usd).toBeCloseTo(COST, 6);
    const stored = await g.openai().responses.retrieve(created.response.id);
    expect(stored.output_text).toBe('Paris.');

    // A client that stops reading at response.completed can name the response at once.
    g.mock.reply({ chunks: ['Ber', 'lin.'] });
    let id = '';
    for await (const e of await g
      .openai()
      .responses.create({ model: 'gpt-4o', input: 'And Germany?', stream: true }))
      if (e.type === 'response.completed') {
        id = e.response.id;
        break;
      }
    expect((await g.openai().responses.retrieve(id)).output_text).toBe('Berlin.');
  });

  it('sends the whole conversation for previous_response_id, never the id', async () => {
    g.mock.reply([
      { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' }, id: 'call_1' }] },
      { text: 'It is 21°C.' },
    ]);
    const tools: OpenAI.Responses.Tool[] = [
      {
        type: 'function',
        name: 'get_weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } } },
        strict: false,
      },
    ];
    const first = await g.openai().responses.create({ model: 'gpt-4o', input: 'Weather in Paris?', tools });
    const call = first.output.find((o) => o.type === 'function_call');
    expect(call).toMatchObject({ name: 'get_weather', call_id: 'call_1' });

    const second = await g.openai().responses.create({
      model: 'gpt-4o',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: 'call_1', output: '{"temp_c":21}' }],
      tools,
    });
    expect(second.output_text).toBe('It is 21°C.');
    expect(second.previous_response_id).toBe(first.id);
    const body = sent().body as Json;
    expect(body).not.toHaveProperty('previous_response_id');
    expect(body.store).toBe(false);
    expect(body.input).toMatchObject([
      { role: 'user' },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather' },
      { type: 'function_call_output', call_id: 'call_1', output: '{"temp_c":21}' },
    ]);
    expect(JSON.stringify(body.input)).toContain('Weather in Paris?');
  });

  it('resolves an item_reference to an item of a stored response, and refuses an unknown one', async () => {
    g.mock.reply([
      { toolCalls: [{ name: 'get_weather', arguments: { city: 'Oslo' }, id: 'call_9' }] },
      { text: 'Cold.' },
    ]);
    const first = await g.openai().responses.create({ model: 'gpt-4o', input: 'Weather in Oslo?' });
    const call = first.output.find((o) => o.type === 'function_call')!;
    expect(call.id).toBeTruthy();

    const second = await g.openai().responses.create({
      model: 'gpt-4o',
      input: [
        { role: 'user', content: 'Weather in Oslo?' },
        { type: 'item_reference', id: call.id! },
        { type: 'function_call_output', call_id: 'call_9', output: '{"temp_c":-4}' },
      ],
    });
    expect(second.output_text).toBe('Cold.');
    const input = (sent().body as Json).input as Json[];
    expect(input.map((i) => i.type ?? 'message')).toEqual([
      'message',
      'function_call',
      'function_call_output',
    ]);
    expect(input[1]).toMatchObject({ name: 'get_weather', call_id: 'call_9' });
    expect(JSON.stringify(input)).not.toContain('item_reference');

    // Another agent of the same team cannot name this agent's items.
    const other = await g.newAgent();
    const foreign = await g
      .openai({ apiKey: other.api_key })
      .responses.create({ model: 'gpt-4o', input: [{ type: 'item_reference', id: call.id! }] })
      .catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(OpenAI.NotFoundError);
    expect((foreign as InstanceType<typeof OpenAI.APIError>).code).toBe('item_not_found');

    const before = g.mock.requests.length;
    const unknown = await g
      .openai()
      .responses.create({ model: 'gpt-4o', input: [{ type: 'item_reference', id: 'rs_nowhere' }] })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect((unknown as InstanceType<typeof OpenAI.APIError>).code).toBe('item_not_found');
    const many = await g
      .openai()
      .responses.create({
        model: 'gpt-4o',
        input: Array.from({ length: 101 }, (_, i) => ({ type: 'item_reference' as const, id: `rs_${i}` })),
      })
      .catch((e: unknown) => e);
    expect(many).toBeInstanceOf(OpenAI.BadRequestError);
    expect((many as InstanceType<typeof OpenAI.APIError>).code).toBe('too_many_item_references');
    expect(g.mock.requests.length).toBe(before);
  });

  it('passes hosted tools to OpenAI and refuses them, with nothing sent, for other providers', async () => {
    g.mock.reply({ text: 'Found it.' });
    const web: OpenAI.Responses.Tool[] = [{ type: 'web_search' }];
    const ok = await g.openai().responses.create({ model: 'gpt-4o', input: 'News?', tools: web });
    expect(ok.output_text).toBe('Found it.');
    expect(sent().body).toMatchObject({ tools: [{ type: 'web_search' }] });

    const before = g.mock.requests.length;
    const refused = await g
      .openai()
      .responses.create({ model: 'claude-sonnet-4-5', input: 'News?', tools: web })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.APIError>).code).toBe('hosted_tool_not_supported');
    expect(g.mock.requests.length).toBe(before);
  });

  it('ends a stream OpenAI breaks off with an error the SDK raises, and records the step as failed', async () => {
    g.mock.reply({ chunks: ['a', 'b', 'c', 'd'], cutAfterEvents: 4 });
    const { data: stream, response } = await g
      .openai()
      .responses.create({ model: 'gpt-4o', input: 'hi', stream: true })
      .withResponse();
    const { items, error } = await drain(stream);
    expect(items[0]?.type).toBe('response.created');
    expect(items.map((e) => e.type)).not.toContain('response.completed');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('mid_stream_error');
    const step = (await g.steps(response.headers.get('x-paddock-run-id')!)).at(-1)!;
    expect(step).toMatchObject({ status: 'error', error_kind: 'mid_stream_error', provider: 'openai' });
  });
});

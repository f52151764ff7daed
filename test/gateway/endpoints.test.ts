import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { MOCK_EMBEDDING_DIMENSIONS } from '../support/mock-endpoints.ts';
import { drain, rejection } from '../support/sdk.ts';

// Embeddings and legacy completions through the gateway, driven by the
// official openai SDK: governed and recorded as chat is, passed through to
// OpenAI-format keys, refused where only Anthropic could serve them.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

type Agent = Json & { api_key: string };

const last = <T>(xs: readonly T[]): T => xs[xs.length - 1]!;

/** A raw call as an agent: status and body exactly as sent. */
async function post(agent: Agent, path: string, body: unknown) {
  const res = await fetch(`${g.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${agent.api_key}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

const anthropicOnly = () => g.newAgent({}, { provider_keys: { anthropic: g.keys.anthropic.id } });

describe('POST /v1/embeddings', () => {
  it('embeds one input and records its input tokens and cost in the run', async () => {
    g.mock.reply({ usage: { input: 1000 } });
    const { data, response } = await g
      .openai()
      .embeddings.create({ model: 'text-embedding-3-small', input: 'The quick brown fox' })
      .withResponse();
    expect(data.object).toBe('list');
    expect(data.data).toHaveLength(1);
    // The SDK asks for base64 and decodes it: the vector arrives as numbers.
    expect(data.data[0]!.embedding).toHaveLength(MOCK_EMBEDDING_DIMENSIONS);
    expect(data.usage).toEqual({ prompt_tokens: 1000, total_tokens: 1000 });

    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/embeddings');
    expect(sent.apiKey).toBe('sk-openai-test');
    expect(sent.body).toMatchObject({ model: 'text-embedding-3-small', input: 'The quick brown fox' });

    // text-embedding-3-small: $0.02 per million input tokens.
    const cost = (1000 * 0.02) / 1e6;
    expect(Number(response.headers.get('x-paddock-cost-usd'))).toBeCloseTo(cost, 6);
    const runId = response.headers.get('x-paddock-run-id')!;
    const step = last(await g.steps(runId));
    expect(step).toMatchObject({
      id: response.headers.get('x-paddock-step-id'),
      type: 'llm_call',
      status: 'success',
      provider: 'openai',
      model: 'text-embedding-3-small',
      streaming: false,
      tokens: { input: 1000, output: 0, cache_read: 0, cache_creation: 0 },
    });
    expect(step.cost_usd).toBeCloseTo(cost, 6);
    const entry = last(await g.ledger(runId));
    expect(entry).toMatchObject({ step_id: step.id, provider: 'openai', tokens: step.tokens });
  });

  it('embeds a batch of strings or of token arrays, passing dimensions and the encoding on', async () => {
    const strings = await g.openai().embeddings.create({
      model: 'text-embedding-3-large',
      input: ['one', 'two words', 'three words here'],
      dimensions: 4,
      encoding_format: 'float',
      user: 'user-1',
    });
    expect(strings.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(strings.data.every((d) => d.embedding.length === 4)).toBe(true);
    expect(last(g.mock.requests).body).toMatchObject({
      dimensions: 4,
      encoding_format: 'float',
      user: 'user-1',
    });

    const tokens = await g.openai().embeddings.create({
      model: 'text-embedding-3-small',
      input: [
        [1, 2, 3],
        [4, 5],
      ],
    });
    expect(tokens.data).toHaveLength(2);
    // The mock counts a token id as a token.
    expect(tokens.usage.prompt_tokens).toBe(5);
  });

  it('keeps each item’s length, not its vector, where the policy logs content', async () => {
    const agent = await g.newAgent({ content_logging: 'enabled' });
    const { response } = await g
      .openai({ apiKey: agent.api_key })
      .embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 3 })
      .withResponse();
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step.response.data).toEqual([
      { object: 'embedding', index: 0, dimensions: 3, encoding: 'base64' },
      { object: 'embedding', index: 1, dimensions: 3, encoding: 'base64' },
    ]);
    expect(step.request).toMatchObject({ input: ['a', 'b'] });
  });

  it('refuses with 402 what the token budget cannot hold, before any provider sees it', async () => {
    const agent = await g.newAgent({ budget: { hard_limit_tokens: 5 } });
    const err = await rejection(
      g.openai({ apiKey: agent.api_key }).embeddings.create({
        model: 'text-embedding-3-small',
        input: 'a sentence long enough to be more than five tokens by any count',
      }),
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded');
    expect(g.mock.requests).toHaveLength(0);
  });

  it('counts each embeddings call against the request rate limit', async () => {
    const agent = await g.newAgent({ rate_limits: { max_requests_per_minute: 1 } });
    const client = g.openai({ apiKey: agent.api_key });
    await client.embeddings.create({ model: 'text-embedding-3-small', input: 'one' });
    const err = await rejection(client.embeddings.create({ model: 'text-embedding-3-small', input: 'two' }));
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(g.mock.requests).toHaveLength(1);
  });

  it('applies the policy’s model rules', async () => {
    const agent = await g.newAgent({ allowed_models: ['gpt-4o*'] });
    const err = await rejection(
      g.openai({ apiKey: agent.api_key }).embeddings.create({ model: 'text-embedding-3-small', input: 'x' }),
    );
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('model_not_allowed');
  });

  it('answers 400 endpoint_not_supported to an agent with only an Anthropic key', async () => {
    const agent = await anthropicOnly();
    const err = await rejection(
      g.openai({ apiKey: agent.api_key }).embeddings.create({ model: 'text-embedding-3-small', input: 'x' }),
    );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('endpoint_not_supported');
    expect(g.mock.requests).toHaveLength(0);
  });

  it('answers 400 in OpenAI’s shape to inputs OpenAI refuses', async () => {
    const bad = [
      { input: 'no model' },
      { model: 'text-embedding-3-small' },
      { model: 'text-embedding-3-small', input: '' },
      { model: 'text-embedding-3-small', input: [] },
      { model: 'text-embedding-3-small', input: [['not', 'ids']] },
      { model: 'text-embedding-3-small', input: 'x', encoding_format: 'hex' },
      { model: 'text-embedding-3-small', input: 'x', dimensions: 0 },
      { model: 'text-embedding-3-small', input: 'x', stream: true },
    ];
    for (const body of bad) {
      const res = await post(g.agent, '/v1/embeddings', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error, JSON.stringify(body)).toMatchObject({ type: 'invalid_request_error' });
    }
    expect(g.mock.requests).toHaveLength(0);
  });
});

describe('POST /v1/completions', () => {
  it('completes a prompt and records tokens and cost', async () => {
    g.mock.reply({ text: ' Paris.', usage: { input: 100, output: 20 } });
    const { data, response } = await g
      .openai()
      .completions.create({
        model: 'gpt-3.5-turbo-instruct',
        prompt: 'The capital of France is',
        max_tokens: 5,
      })
      .withResponse();
    expect(data.object).toBe('text_completion');
    expect(data.choices[0]!.text).toBe(' Paris.');
    expect(data.usage).toMatchObject({ prompt_tokens: 100, completion_tokens: 20 });
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/completions');
    expect(sent.body).toMatchObject({ prompt: 'The capital of France is', max_tokens: 5 });

    // gpt-3.5-turbo-instruct: $1.50 in, $2 out per million.
    const cost = (100 * 1.5 + 20 * 2) / 1e6;
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({
      status: 'success',
      provider: 'openai',
      model: 'gpt-3.5-turbo-instruct',
      tokens: { input: 100, output: 20, cache_read: 0, cache_creation: 0 },
    });
    expect(step.cost_usd).toBeCloseTo(cost, 6);
  });

  it('sends OpenAI’s default of 16 tokens when the client sets none, and passes the rest on', async () => {
    const data = await g.openai().completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: ['a', 'b'],
      n: 2,
      echo: true,
      stop: ['\n'],
      suffix: '!',
    });
    expect(data.choices).toHaveLength(4);
    expect(last(g.mock.requests).body).toMatchObject({
      max_tokens: 16,
      n: 2,
      echo: true,
      stop: ['\n'],
      suffix: '!',
    });
  });

  it('streams text chunks, with the usage chunk the client asked for', async () => {
    g.mock.reply({ chunks: ['Par', 'is', '.'], usage: { input: 10, output: 3 } });
    const { data: stream, response } = await g
      .openai()
      .completions.create({
        model: 'gpt-3.5-turbo-instruct',
        prompt: 'Capital of France:',
        max_tokens: 10,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    expect(items.map((c) => c.choices[0]?.text ?? '').join('')).toBe('Paris.');
    expect(last(items)).toMatchObject({ choices: [], usage: { prompt_tokens: 10, completion_tokens: 3 } });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({ status: 'success', streaming: true, tokens: { input: 10, output: 3 } });
  });

  it('asks for usage itself to settle the budget, and keeps that chunk from a client that did not', async () => {
    g.mock.reply({ chunks: ['ok'], usage: { input: 10, output: 1 } });
    const { data: stream, response } = await g
      .openai()
      .completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say ok', stream: true })
      .withResponse();
    const { items } = await drain(stream);
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((c) => c.choices.length > 0)).toBe(true);
    expect((last(g.mock.requests).body as Json).stream_options).toEqual({ include_usage: true });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step.tokens).toMatchObject({ input: 10, output: 1 });
  });

  it('answers 400 endpoint_not_supported to an agent with only an Anthropic key', async () => {
    const agent = await anthropicOnly();
    const err = await rejection(
      g.openai({ apiKey: agent.api_key }).completions.create({ model: 'davinci-002', prompt: 'x' }),
    );
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('endpoint_not_supported');
  });

  it('answers 400 to a request without a prompt or with a bad max_tokens', async () => {
    for (const body of [
      { model: 'gpt-3.5-turbo-instruct' },
      { model: 'gpt-3.5-turbo-instruct', prompt: 'x', max_tokens: -1 },
      { model: 'gpt-3.5-turbo-instruct', prompt: 'x', n: 0 },
      { prompt: 'x' },
    ]) {
      const res = await post(g.agent, '/v1/completions', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error' });
    }
    expect(g.mock.requests).toHaveLength(0);
  });
});

describe('a dry-run policy', () => {
  it('answers embeddings and completions in their own shapes without calling a provider', async () => {
    const agent = await g.newAgent({ dry_run: true });
    const client = g.openai({ apiKey: agent.api_key });
    const { data: embedded, response } = await client.embeddings
      .create({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' })
      .withResponse();
    expect(embedded).toMatchObject({ object: 'list', data: [], usage: { prompt_tokens: 0 } });
    const completed = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'x' });
    expect(completed.choices[0]!.text).toContain('dry run');
    const { items } = await drain(
      await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'x', stream: true }),
    );
    expect(items.map((c) => c.choices[0]?.text ?? '').join('')).toContain('dry run');
    expect(g.mock.requests).toHaveLength(0);
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({ type: 'dry_run', cost_usd: 0 });
  });
});

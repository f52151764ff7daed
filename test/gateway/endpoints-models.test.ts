import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemTimers } from '../../src/core/context.ts';
import { PromptTokens, TokenBacklog } from '../../src/modules/gateway/tokens.ts';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { rejection } from '../support/sdk.ts';

// The model list and token counting as agents' SDKs ask for them, and the
// translated streams looking like the provider's own: the official SDKs
// against Paddock with the mock provider behind it.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const last = <T>(xs: readonly T[]): T => xs[xs.length - 1]!;
const ALL = ['claude-haiku-4-5-20251001', 'claude-sonnet-4-6', 'gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-mini'];
const openAiOnly = () => g.newAgent({}, { provider_keys: { openai: g.keys.openai.id } });

describe('GET /v1/models with an agent key', () => {
  it('lists the models its keys reach, in OpenAI’s shape', async () => {
    const ids: string[] = [];
    for await (const m of g.openai().models.list()) {
      expect(m).toMatchObject({ object: 'model', created: 0 });
      ids.push(m.id);
    }
    expect(ids).toEqual(ALL);
    const gpt = await g.openai().models.retrieve('gpt-4o');
    expect(gpt).toEqual({ id: 'gpt-4o', object: 'model', created: 0, owned_by: 'openai' });
  });

  it('lists only what the policy allows, and 404s the rest', async () => {
    const agent = await g.newAgent({ allowed_models: ['gpt-4o*'], blocked_models: ['gpt-4o-mini'] });
    const client = g.openai({ apiKey: agent.api_key });
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual(['gpt-4o', 'gpt-4o-2024-08-06']);
    const err = await rejection(client.models.retrieve('claude-sonnet-4-6'));
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('model_not_found');
    expect(await rejection(client.models.retrieve('no-such-model'))).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('lists only the override under a model_override', async () => {
    const agent = await g.newAgent({ model_override: 'gpt-4o-mini' });
    const page = await g.openai({ apiKey: agent.api_key }).models.list();
    expect(page.data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
  });

  it('answers in Anthropic’s shape to the Anthropic SDK, paged as Anthropic pages', async () => {
    const ids: string[] = [];
    for await (const m of g.anthropic().models.list({ limit: 2 })) {
      expect(m).toMatchObject({ type: 'model', display_name: m.id, created_at: '1970-01-01T00:00:00Z' });
      ids.push(m.id);
    }
    expect(ids).toEqual(ALL);
    const first = await g.anthropic().models.list({ limit: 2 });
    expect(first.data.map((m) => m.id)).toEqual(ALL.slice(0, 2));
    expect(first.has_more).toBe(true);
    const one = await g.anthropic().models.retrieve('claude-sonnet-4-6');
    expect(one).toMatchObject({ type: 'model', id: 'claude-sonnet-4-6' });
    const err = await rejection(g.anthropic().models.retrieve('nope'));
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error' });
  });

  it('is for agent keys only', async () => {
    const key = await g.t.apiKey(g.user.token, ['read']);
    const res = await g.t.call('GET', '/v1/models', { token: key.key });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('agent_key_required');
  });
});

describe('POST /v1/messages/count_tokens', () => {
  const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'How many tokens is this sentence?' }];

  it('asks Anthropic when the agent’s key is Anthropic’s, and records a step without cost', async () => {
    g.mock.reply({ usage: { input: 42 } });
    const { data, response } = await g
      .anthropic()
      .messages.countTokens({ model: 'claude-sonnet-4-5', system: 'Be brief.', messages })
      .withResponse();
    expect(data).toEqual({ input_tokens: 42 });
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/messages/count_tokens');
    expect(sent.apiKey).toBe('sk-ant-test');
    expect(sent.body).toEqual({ model: 'claude-sonnet-4-5', system: 'Be brief.', messages });
    expect(response.headers.get('x-paddock-token-count')).toBe('provider');

    const runId = response.headers.get('x-paddock-run-id')!;
    const step = last(await g.steps(runId));
    expect(step).toMatchObject({
      id: response.headers.get('x-paddock-step-id'),
      type: 'count_tokens',
      status: 'success',
      provider: 'anthropic',
      cost_usd: 0,
      tokens: { input: 0, output: 0, cache_read: 0, cache_creation: 0 },
    });
    await g.t.services.runs.flush();
    const ledger = await g.t.call('GET', `/v1/runs/${runId}/ledger`, { token: g.user.token });
    expect(ledger.body.data.filter((e: Json) => e.step_id === step.id)).toEqual([]);
  });

  it('estimates with the budget’s tokenizer for an agent with only an OpenAI key', async () => {
    const agent = await openAiOnly();
    const body = { model: 'gpt-4o', messages };
    const { data, response } = await g
      .anthropic({ apiKey: agent.api_key })
      .messages.countTokens(body)
      .withResponse();
    expect(g.mock.requests).toHaveLength(0);
    expect(response.headers.get('x-paddock-token-count')).toBe('estimate');
    // The figure the budget reserves for this prompt's input.
    const prompt = new PromptTokens({ ...body }, new TokenBacklog(systemTimers));
    await prompt.load([{ provider: 'openai', model: 'gpt-4o' }]);
    expect(data.input_tokens).toBe(prompt.for('openai', 'gpt-4o'));
    expect(data.input_tokens).toBeGreaterThan(0);
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({ type: 'count_tokens', provider: 'openai', cost_usd: 0 });
  });

  it('is free but counts against the request rate limit', async () => {
    const agent = await g.newAgent({
      rate_limits: { max_requests_per_minute: 2 },
      budget: { hard_limit_usd: 0 },
    });
    const client = g.anthropic({ apiKey: agent.api_key });
    await client.messages.countTokens({ model: 'claude-sonnet-4-5', messages });
    await client.messages.countTokens({ model: 'claude-sonnet-4-5', messages });
    const err = await rejection(client.messages.countTokens({ model: 'claude-sonnet-4-5', messages }));
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
  });

  it('does not count towards max_steps_per_run', async () => {
    const agent = await g.newAgent({ runaway_prevention: { enabled: true, max_steps_per_run: 1 } });
    const client = g.anthropic({ apiKey: agent.api_key });
    const { response } = await client.messages
      .countTokens({ model: 'claude-sonnet-4-5', messages })
      .withResponse();
    const run = { headers: { 'x-paddock-run-id': response.headers.get('x-paddock-run-id')! } };
    await client.messages.countTokens({ model: 'claude-sonnet-4-5', messages }, run);
    await g.t.services.runs.flush();
    const answer = await client.messages.create(
      { model: 'claude-sonnet-4-5', max_tokens: 20, messages },
      run,
    );
    expect(answer.type).toBe('message');
    // The model call was the run's one step of work: the next is refused once it is written.
    await g.t.services.runs.flush();
    const err = await rejection(
      client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 20, messages }, run),
    );
    expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(403);
  });

  it('passes Anthropic’s refusal on, and answers 400 to a request without messages', async () => {
    g.mock.reply({ status: 400, message: 'messages.0.content: Field required' });
    const err = await rejection(g.anthropic().messages.countTokens({ model: 'claude-sonnet-4-5', messages }));
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    const res = await fetch(`${g.url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': g.agent.api_key },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', messages: [] }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });
});

describe('translated streams look native', () => {
  it('an Anthropic stream from an OpenAI key announces input tokens in message_start', async () => {
    const agent = await openAiOnly();
    g.mock.reply({ chunks: ['Hel', 'lo'], usage: { input: 77, output: 5 } });
    const stream = g.anthropic({ apiKey: agent.api_key }).messages.stream({
      model: 'gpt-4o',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Say hello to everyone in this room, please.' }],
    });
    let announced: number | undefined;
    stream.on('streamEvent', (event) => {
      if (event.type === 'message_start') announced = event.message.usage.input_tokens;
    });
    const message = await stream.finalMessage();
    expect(message.content).toMatchObject([{ type: 'text', text: 'Hello' }]);
    // message_start has the gateway's estimate; message_delta the provider's count, which wins.
    expect(announced).toBeGreaterThan(0);
    expect(message.usage).toMatchObject({ input_tokens: 77, output_tokens: 5 });
  });

  it('an OpenAI stream from an Anthropic key ends with a usage chunk when include_usage asks', async () => {
    g.mock.reply({ chunks: ['Bon', 'jour'], usage: { input: 30, output: 4 } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const stream = await g.openai().chat.completions.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const c of stream) chunks.push(c);
    expect(last(g.mock.requests).path).toBe('/v1/messages');
    expect(last(chunks)).toMatchObject({ choices: [], usage: { prompt_tokens: 30, completion_tokens: 4 } });

    g.mock.reply({ chunks: ['Bon', 'jour'], usage: { input: 30, output: 4 } });
    const plain: OpenAI.ChatCompletionChunk[] = [];
    const quiet = await g.openai().chat.completions.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Hello' }],
      stream: true,
    });
    for await (const c of quiet) plain.push(c);
    expect(plain.every((c) => c.choices.length > 0 && !c.usage)).toBe(true);
  });
});

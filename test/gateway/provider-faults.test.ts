import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProviderKey, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { drain, rejection } from '../support/sdk.ts';

// What a provider's faults look like to an agent using an official SDK: a stream
// event no SDK can parse, and the provider's own error codes and types.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(async () => {
  await g.close();
});
beforeEach(() => g.mock.reset());

const chat = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'Say something.' }] };
const msg = {
  model: 'claude-sonnet-4-5',
  max_tokens: 200,
  messages: [{ role: 'user' as const, content: 'Hi' }],
};

/** Each call in a run of its own, so the run's totals are that call's. */
const fresh = { headers: { 'x-paddock-new-run': 'true' } };
const runIdOf = (response: Response) => response.headers.get('x-paddock-run-id')!;

async function callStep(runId: string): Promise<Json> {
  const calls = (await g.steps(runId)).filter((s) => s.type === 'llm_call');
  expect(calls).toHaveLength(1);
  return calls[0]!;
}

describe('a stream event the provider got wrong', () => {
  it.each([
    { label: 'not JSON', data: '{not json' },
    { label: 'empty', data: '' },
    { label: 'JSON but not an object', data: 'null' },
  ])(
    'OpenAI SDK, $label: the text before it, then an APIError; the step failed and its money settled',
    async ({ data }) => {
      g.mock.reply({
        chunks: ['One ', 'two ', 'three ', 'four.'],
        malformedEventAfter: 3,
        malformedData: data,
      });

      const { data: stream, response } = await g
        .openai(fresh)
        .chat.completions.create({ ...chat, stream: true })
        .withResponse();
      const { items, error } = await drain(stream);

      expect(items.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('One two ');
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('stream_processing_error');
      expect((error as Error).message).toContain('not valid JSON');
      const step = await callStep(runIdOf(response));
      expect(step).toMatchObject({
        status: 'error',
        provider: 'openai',
        error_kind: 'stream_processing_error',
        streaming: true,
      });
      expect(step.tokens.input).toBeGreaterThan(0);
      expect(step.tokens.output).toBeGreaterThan(0);
      const run = await g.run(runIdOf(response));
      // The reservation is gone; what the step cost is what the run was charged.
      expect(run.reserved_usd).toBe(0);
      expect(run.cost_usd).toBeCloseTo(step.cost_usd, 6);
      expect(run.cost_usd).toBeGreaterThan(0);
    },
  );

  it('Anthropic SDK: an APIError after the events before it; the step failed, nothing stays reserved', async () => {
    // message_start, content_block_start, ping, one delta, then the bad line.
    g.mock.reply({ chunks: ['Alpha ', 'beta ', 'gamma.'], malformedEventAfter: 4 });

    const { data: stream, response } = await g
      .anthropic(fresh)
      .messages.create({ ...msg, stream: true })
      .withResponse();
    const { items, error } = await drain(stream);

    expect(items.filter((e) => e.type === 'content_block_delta')).toHaveLength(1);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as Error).message).toContain('not valid JSON');
    const step = await callStep(runIdOf(response));
    expect(step).toMatchObject({
      status: 'error',
      provider: 'anthropic',
      error_kind: 'stream_processing_error',
    });
    const run = await g.run(runIdOf(response));
    expect(run.reserved_usd).toBe(0);
    expect(run.cost_usd).toBeCloseTo(step.cost_usd, 6);
  });

  it('translated (OpenAI client, Anthropic key): the OpenAI SDK still raises an APIError', async () => {
    const agent = await g.newAgent({}, { provider_keys: { anthropic: g.keys.anthropic.id } });
    g.mock.reply({ chunks: ['Alpha ', 'beta.'], malformedEventAfter: 4 });

    const { data: stream, response } = await g
      .openai({ ...fresh, apiKey: agent.api_key })
      .chat.completions.create({ ...chat, model: 'claude-sonnet-4-5', stream: true })
      .withResponse();
    const { error } = await drain(stream);

    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((await callStep(runIdOf(response))).error_kind).toBe('stream_processing_error');
    expect((await g.run(runIdOf(response))).reserved_usd).toBe(0);
  });

  it('as the first event: nothing reached the client, so the next key serves a clean stream', async () => {
    const spare = await createProviderKey(g.t, g.user.token, {
      provider: 'openai',
      api_key: 'sk-spare',
      base_url: g.mock.url,
    });
    const agent = await g.newAgent(
      { routing: { timeout_ms: 1000, connect_timeout_ms: 1000 } },
      {
        provider_keys: {
          openai: [
            { key_id: g.keys.openai.id, weight: 1 },
            { key_id: spare.id, weight: 1 },
          ],
        },
      },
    );
    g.mock.replyFor({ apiKey: 'sk-openai-test' }, { malformedEventAfter: 0 });

    const { data: stream, response } = await g
      .openai({ ...fresh, apiKey: agent.api_key })
      .chat.completions.create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(stream);

    expect(error).toBeUndefined();
    expect(items.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(g.mock.requests.map((r) => r.apiKey)).toEqual(['sk-openai-test', 'sk-spare']);
    const failover = (await g.steps(runIdOf(response))).find((s) => s.type === 'failover_transition');
    expect(failover?.failover_context.attempted[0].kind).toBe('stream_processing_error');
  });
});

describe("the provider's own error code and type", () => {
  it('OpenAI SDK: context_length_exceeded reaches the client as the APIError code', async () => {
    g.mock.reply({
      status: 400,
      body: {
        error: {
          message: "This model's maximum context length is 128000 tokens.",
          type: 'invalid_request_error',
          param: 'messages',
          code: 'context_length_exceeded',
        },
      },
    });

    const err = await rejection(g.openai().chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.code).toBe('context_length_exceeded');
    expect(e.type).toBe('invalid_request_error');
    expect(e.message).toContain('maximum context length');
    expect((e.error as Json).details).toMatchObject({
      provider: 'openai',
      provider_status: 400,
      provider_code: 'context_length_exceeded',
    });
  });

  it("Anthropic SDK: the provider's error.type is the APIError's type", async () => {
    g.mock.reply({ status: 413, message: 'Request exceeds the maximum allowed number of bytes.' });

    const err = await rejection(g.anthropic().messages.create(msg));

    expect(err).toBeInstanceOf(Anthropic.APIError);
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.status).toBe(413);
    expect(e.type).toBe('request_too_large');
    expect(e.message).toContain('maximum allowed number of bytes');
  });

  it('a rate limit the policy does not retry: 429 rate_limit_exceeded, not a governance block', async () => {
    const agent = await g.newAgent({ routing: { retry_on: [500] } });
    g.mock.reply({ status: 429, message: 'Rate limit reached for gpt-4o.' });

    const err = await rejection(g.openai({ apiKey: agent.api_key }).chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.type).toBe('requests');
  });

  it("OpenAI SDK: a provider 401 is a 502 upstream_auth_failed, unlike a bad agent key's 401", async () => {
    g.mock.reply({
      status: 401,
      body: {
        error: {
          message: 'Incorrect API key provided: sk-open…',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      },
    });

    const err = await rejection(g.openai().chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.code).toBe('upstream_auth_failed');
    expect((e.error as Json).details).toMatchObject({
      provider: 'openai',
      provider_status: 401,
      provider_code: 'invalid_api_key',
    });

    const ours = await rejection(g.openai({ apiKey: 'pda_not_a_key' }).chat.completions.create(chat));
    expect(ours).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((ours as InstanceType<typeof OpenAI.APIError>).code).toBe('invalid_agent_key');
  });

  it('Anthropic SDK: a provider authentication_error is a 502 whose errorCode says so', async () => {
    g.mock.reply({ status: 401, message: 'invalid x-api-key' });

    const err = await rejection(g.anthropic().messages.create(msg));

    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.status).toBe(502);
    expect(e.errorCode).toBe('upstream_auth_failed');
    expect(e.details).toMatchObject({ provider_status: 401, provider_type: 'authentication_error' });

    const ours = await rejection(g.anthropic({ apiKey: 'pda_not_a_key' }).messages.create(msg));
    expect(ours).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('an in-stream provider error reaches the client with its own type', async () => {
    g.mock.reply({
      chunks: ['Half ', 'an ', 'answer'],
      errorEventAfter: 3,
      message: 'The server had an error',
    });

    const stream = await g.openai().chat.completions.create({ ...chat, stream: true });
    const { error } = await drain(stream);

    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).type).toBe('server_error');
  });
});

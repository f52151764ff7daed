import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

// The proxy as agents use it: the official SDKs pointed at Paddock, a mock
// provider behind it, and the steps, ledger and headers Paddock records.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const USAGE = { input: 1000, output: 200, cacheRead: 500, cacheCreation: 40 };
// gpt-4o: $2.50 in, $10 out, $1.25 cached (per million); OpenAI bills cache writes as input.
const GPT_4O_COST = (1040 * 2.5 + 200 * 10 + 500 * 1.25) / 1e6;
// claude-sonnet-4-5: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
const SONNET_COST = (1000 * 3 + 200 * 15 + 500 * 0.3 + 40 * 3.75) / 1e6;

function last<T>(xs: readonly T[]): T {
  return xs[xs.length - 1]!;
}

describe('OpenAI format to an OpenAI key', () => {
  it('answers what the provider said and records its usage, cache tokens included', async () => {
    g.mock.reply({ text: 'Paris.', usage: USAGE });
    const { data, response } = await g
      .openai()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Capital of France?' }],
      })
      .withResponse();
    expect(data.choices[0]!.message.content).toBe('Paris.');
    expect(data.usage).toMatchObject({ prompt_tokens: 1540, completion_tokens: 200 });
    expect(data.usage?.prompt_tokens_details?.cached_tokens).toBe(500);

    const runId = response.headers.get('x-paddock-run-id')!;
    expect(runId).toMatch(/^run_/);
    expect(response.headers.get('x-paddock-provider')).toBe('openai');
    expect(response.headers.get('x-paddock-model')).toBe('gpt-4o');
    expect(response.headers.get('x-paddock-tokens-used')).toBe(String(1040 + 200 + 500));
    expect(Number(response.headers.get('x-paddock-cost-usd'))).toBeCloseTo(GPT_4O_COST, 6);

    const step = last(await g.steps(runId));
    expect(step).toMatchObject({
      id: response.headers.get('x-paddock-step-id'),
      type: 'llm_call',
      status: 'success',
      provider: 'openai',
      model: 'gpt-4o',
      provider_key_id: g.keys.openai.id,
      streaming: false,
      tokens: { input: 1040, output: 200, cache_read: 500, cache_creation: 0 },
    });
    expect(step.cost_usd).toBeCloseTo(GPT_4O_COST, 6);
    const entry = last(await g.ledger(runId));
    expect(entry).toMatchObject({ step_id: step.id, provider: 'openai', tokens: step.tokens });
    expect(entry.cost_usd).toBeCloseTo(GPT_4O_COST, 6);

    // The provider got the sealed key, never the agent's.
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.apiKey).toBe('sk-openai-test');
  });

  it('streams, and records the usage of the final usage chunk the client asked for', async () => {
    g.mock.reply({ chunks: ['Par', 'is', '.'], usage: USAGE });
    const { data: stream, response } = await g
      .openai()
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Capital of France?' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('Paris.');
    expect(usage).toMatchObject({ prompt_tokens: 1540, completion_tokens: 200 });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({
      status: 'success',
      streaming: true,
      tokens: { input: 1040, output: 200, cache_read: 500, cache_creation: 0 },
    });
    expect(step.cost_usd).toBeCloseTo(GPT_4O_COST, 6);
  });

  it('asks the provider for usage the client did not ask for, and keeps that chunk from the client', async () => {
    g.mock.reply({ chunks: ['ok'], usage: USAGE });
    const { data: stream, response } = await g
      .openai()
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .withResponse();
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    expect((last(g.mock.requests).body as Json).stream_options).toEqual({ include_usage: true });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step.tokens).toEqual({ input: 1040, output: 200, cache_read: 500, cache_creation: 0 });
  });
});

describe('Anthropic format to an Anthropic key', () => {
  it('answers and records the four token buckets', async () => {
    g.mock.reply({ text: 'Bonjour', usage: USAGE });
    const { data, response } = await g
      .anthropic()
      .messages.create({
        model: 'claude-sonnet-4-5',
        max_tokens: 300,
        system: 'Answer in French.',
        messages: [{ role: 'user', content: 'Hello' }],
      })
      .withResponse();
    expect(data.content).toMatchObject([{ type: 'text', text: 'Bonjour' }]);
    expect(data.usage).toMatchObject({
      input_tokens: 1000,
      output_tokens: 200,
      cache_read_input_tokens: 500,
      cache_creation_input_tokens: 40,
    });
    expect(response.headers.get('x-paddock-provider')).toBe('anthropic');
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step).toMatchObject({
      provider: 'anthropic',
      provider_key_id: g.keys.anthropic.id,
      tokens: { input: 1000, output: 200, cache_read: 500, cache_creation: 40 },
    });
    expect(step.cost_usd).toBeCloseTo(SONNET_COST, 6);
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/messages');
    expect(sent.apiKey).toBe('sk-ant-test');
    expect(sent.headers['anthropic-version']).toBeDefined();
  });

  it('streams through the SDK’s stream helper with the same usage as the JSON answer', async () => {
    g.mock.reply({ chunks: ['Bon', 'jour'], usage: USAGE });
    const stream = g.anthropic().messages.stream({
      model: 'claude-sonnet-4-5',
      max_tokens: 300,
      messages: [{ role: 'user', content: 'Hello' }],
    });
    const message = await stream.finalMessage();
    expect(message.content).toMatchObject([{ type: 'text', text: 'Bonjour' }]);
    expect(message.usage).toMatchObject({
      output_tokens: 200,
      cache_read_input_tokens: 500,
      cache_creation_input_tokens: 40,
    });
    const runId = (await stream.withResponse()).response.headers.get('x-paddock-run-id')!;
    const step = last(await g.steps(runId));
    expect(step).toMatchObject({
      status: 'success',
      streaming: true,
      tokens: { input: 1000, output: 200, cache_read: 500, cache_creation: 40 },
    });
    expect(step.cost_usd).toBeCloseTo(SONNET_COST, 6);
  });
});

describe('cross-format translation', () => {
  const weatherTool: OpenAI.ChatCompletionTool = {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  };

  it('serves an OpenAI-format request with tools from an Anthropic key', async () => {
    g.mock.reply({ toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }], usage: USAGE });
    const { data, response } = await g
      .openai()
      .chat.completions.create({
        model: 'claude-sonnet-4-5',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'Weather in Paris?' },
        ],
        tools: [weatherTool],
        max_tokens: 100,
      })
      .withResponse();
    expect(response.headers.get('x-paddock-provider')).toBe('anthropic');
    const choice = data.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
    // Totals stay consistent: OpenAI's prompt_tokens include both cache buckets.
    expect(data.usage).toMatchObject({ prompt_tokens: 1540, completion_tokens: 200 });

    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/messages');
    expect(sent.body).toMatchObject({
      model: 'claude-sonnet-4-5',
      system: 'You are terse.',
      max_tokens: 100,
      messages: [{ role: 'user' }],
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
    });
    const step = last(await g.steps(response.headers.get('x-paddock-run-id')!));
    expect(step.tokens).toEqual({ input: 1000, output: 200, cache_read: 500, cache_creation: 40 });
    expect(step.cost_usd).toBeCloseTo(SONNET_COST, 6);
  });

  it('carries a tool result back to the Anthropic key as a tool_result block', async () => {
    g.mock.reply({ text: 'It is sunny.' });
    const data = await g.openai().chat.completions.create({
      model: 'claude-sonnet-4-5',
      tools: [weatherTool],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 °C' },
      ],
    });
    expect(data.choices[0]!.message.content).toBe('It is sunny.');
    const body = last(g.mock.requests).body as Json;
    expect(body.messages).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } }],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'sunny, 21 °C' }] },
    ]);
    // Anthropic requires max_tokens: the gateway fills its default.
    expect(body.max_tokens).toBe(4096);
  });

  it('streams an Anthropic-format request from an OpenAI key', async () => {
    g.mock.reply({ chunks: ['Hel', 'lo'], usage: USAGE });
    const stream = g.anthropic().messages.stream({
      model: 'gpt-4o',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    const message = await stream.finalMessage();
    expect(message.content).toMatchObject([{ type: 'text', text: 'Hello' }]);
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage.output_tokens).toBe(200);
    const sent = last(g.mock.requests);
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.body).toMatchObject({
      model: 'gpt-4o',
      stream: true,
      stream_options: { include_usage: true },
    });
    const runId = (await stream.withResponse()).response.headers.get('x-paddock-run-id')!;
    const step = last(await g.steps(runId));
    expect(step).toMatchObject({ provider: 'openai', streaming: true, status: 'success' });
    expect(step.tokens).toEqual({ input: 1040, output: 200, cache_read: 500, cache_creation: 0 });
  });

  it('streams an OpenAI-format tool call from an Anthropic key', async () => {
    g.mock.reply({ toolCalls: [{ name: 'get_weather', arguments: { city: 'Oslo' } }] });
    const stream = g.openai().chat.completions.stream({
      model: 'claude-haiku-4-5',
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [weatherTool],
    });
    const completion = await stream.finalChatCompletion();
    const call = completion.choices[0]!.message
      .tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Oslo' });
    expect(completion.choices[0]!.finish_reason).toBe('tool_calls');
  });
});

describe('agent authentication', () => {
  it('takes the agent key as x-api-key too', async () => {
    const res = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': g.agent.api_key },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
  });

  it('refuses a wrong agent key in the shape each SDK raises', async () => {
    const openaiError = await g
      .openai({ apiKey: 'pda_not-a-real-key' })
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(openaiError).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((openaiError as InstanceType<typeof OpenAI.APIError>).code).toBe('invalid_agent_key');

    const anthropicError = await g
      .anthropic({ apiKey: 'pda_not-a-real-key' })
      .messages.create({
        model: 'claude-sonnet-4-5',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .catch((e: unknown) => e);
    expect(anthropicError).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(g.mock.requests).toHaveLength(0);
  });

  it('refuses team API keys and sessions on the proxy, and agent keys elsewhere', async () => {
    const teamKey = await g.t.apiKey(g.user.token, ['admin']);
    for (const token of [teamKey.key, g.user.token]) {
      const res = await g.t.call('POST', '/v1/chat/completions', {
        token,
        body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] },
      });
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({ code: 'agent_key_required', type: 'permission_error' });
    }
    const res = await g.t.call('GET', '/v1/policies', { token: g.agent.api_key });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('agent_key_not_allowed');
  });

  it('GET /v1/me with an agent key says who it is and its limits', async () => {
    const agent = await g.newAgent({
      budget: { hard_limit_usd: 2.5, max_cost_per_hour_usd: 10 },
      allowed_models: ['gpt-4o*'],
      runaway_prevention: { enabled: true, max_steps_per_run: 40 },
    });
    const res = await g.t.call('GET', '/v1/me', { token: agent.api_key });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      kind: 'agent',
      id: agent.id,
      name: agent.name,
      status: 'active',
      policy_id: agent.policy_id,
      hourly_cost_limit_usd: 10,
      budget_hard_limit_usd: 2.5,
      max_steps_per_run: 40,
      allowed_models: ['gpt-4o*'],
      model_override: null,
    });
    expect(JSON.stringify(res.body)).not.toContain('pda_');
  });
});

describe('content logging', () => {
  it('keeps no prompt or completion by default, and both when the policy enables it', async () => {
    const secretPrompt = 'my very private prompt';
    const redacted = await g
      .openai()
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: secretPrompt }] })
      .withResponse();
    const quiet = last(await g.steps(redacted.response.headers.get('x-paddock-run-id')!));
    expect(quiet.request).toEqual({ redacted: true });
    expect(quiet.response).toEqual({ redacted: true });

    const logged = await g.newAgent({ content_logging: 'enabled' });
    g.mock.reply({ text: 'the answer' });
    const res = await g
      .openai({ apiKey: logged.api_key })
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: secretPrompt }] })
      .withResponse();
    const step = last(await g.steps(res.response.headers.get('x-paddock-run-id')!));
    expect(JSON.stringify(step.request)).toContain(secretPrompt);
    expect(JSON.stringify(step.response)).toContain('the answer');
    // Never the provider's secret, whatever is logged.
    expect(JSON.stringify(step)).not.toContain('sk-openai-test');
  });

  it('passes on a prompt holding NUL or a lone surrogate (tool output of a binary file) with U+FFFD in their place', async () => {
    const logged = await g.newAgent({ content_logging: 'enabled' });
    const res = await g
      .openai({ apiKey: logged.api_key })
      .chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'ELF\u0000\u0001 and \ud83d' }],
      })
      .withResponse();
    expect(res.response.status).toBe(200);
    const sent = g.mock.requests.at(-1)!.body as { messages: Array<{ content: string }> };
    expect(sent.messages[0]!.content).toBe('ELF\uFFFD\u0001 and \uFFFD');
    const step = last(await g.steps(res.response.headers.get('x-paddock-run-id')!));
    expect(JSON.stringify(step.request)).toContain('ELF\uFFFD');
  });

  it('records an answer holding NUL or a lone surrogate (which a database column refuses), and passes it on as sent', async () => {
    const logged = await g.newAgent({ content_logging: 'enabled' });
    const odd = 'bytes \u0000 and half an emoji \ud83d.';
    g.mock.reply({ text: odd });
    const res = await g
      .openai({ apiKey: logged.api_key })
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'cat the file' }] })
      .withResponse();
    expect(res.data.choices[0]!.message.content).toBe(odd);
    const step = last(await g.steps(res.response.headers.get('x-paddock-run-id')!));
    expect(step.status).toBe('success');
    expect(JSON.stringify(step.response)).toContain('bytes \uFFFD and half an emoji \uFFFD.');
  });
});

import type OpenAI from 'openai';
import { Stream } from 'openai/streaming';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ProviderKeyId } from '../../src/core/ids.ts';
import { servable } from '../../src/modules/gateway/admission.ts';
import { toolNames } from '../../src/modules/gateway/governance.ts';
import type { AttemptPlan } from '../../src/modules/gateway/ports.ts';
import type { Provider } from '../../src/modules/gateway/provider-call.ts';
import {
  hostedToolTypes,
  responsesUpstreamBody,
  withResponseFacts,
  withResponseFactsInEvent,
} from '../../src/modules/gateway/responses-passthrough.ts';
import { formatSse, SseParser } from '../../src/modules/gateway/sse.ts';
import { StreamTracker } from '../../src/modules/gateway/stream.ts';
import { usageFromResponses } from '../../src/modules/gateway/usage.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';
import { drain } from '../support/sdk.ts';

const tools = [
  { type: 'function', name: 'get_weather', parameters: {} },
  { type: 'web_search_preview' },
  { type: 'custom', name: 'run_sql' },
  { type: 'mcp', server_label: 'docs', server_url: 'https://example.com/mcp' },
  { type: 'web_search_preview' },
];

describe('the passthrough request body', () => {
  const sent = {
    model: 'gpt-alias',
    input: [{ role: 'user', content: 'Hi' }],
    previous_response_id: 'resp_paddock',
    store: true,
    stream: true,
    stream_options: { include_obfuscation: false },
    tools,
  };

  it('goes as sent, with the routed model, store false, no previous_response_id, no usage option added', () => {
    const body = responsesUpstreamBody(sent, 'gpt-4o', true);
    const { previous_response_id, ...rest } = sent;
    expect(body).toEqual({ ...rest, model: 'gpt-4o', store: false });
    expect(sent.previous_response_id).toBe('resp_paddock');
    expect(responsesUpstreamBody({ model: 'm', input: 'x' }, 'gpt-4o', false)).toEqual({
      model: 'gpt-4o',
      input: 'x',
      store: false,
    });
  });
});

describe('response ids', () => {
  const facts = { id: 'resp_paddock', previousResponseId: 'resp_before', store: true };

  it('puts the client’s facts in a response object', () => {
    const upstream = {
      id: 'resp_openai',
      object: 'response',
      store: false,
      previous_response_id: null,
      output: [],
    };
    expect(withResponseFacts(upstream, facts)).toEqual({
      ...upstream,
      id: 'resp_paddock',
      previous_response_id: 'resp_before',
      store: true,
    });
    expect(withResponseFacts(upstream, { id: 'resp_x' })).toEqual({ ...upstream, id: 'resp_x' });
  });

  it('rewrites the lifecycle events’ response and leaves every other event as it came', () => {
    const created = {
      event: 'response.created',
      data: JSON.stringify({ type: 'response.created', response: { id: 'resp_openai' } }),
    };
    expect(JSON.parse(withResponseFactsInEvent(created, facts).data).response).toEqual({
      id: 'resp_paddock',
      previous_response_id: 'resp_before',
      store: true,
    });
    const unnamed = { event: undefined, data: created.data };
    expect(JSON.parse(withResponseFactsInEvent(unnamed, { id: 'r' }).data).response.id).toBe('r');
    const delta = {
      event: 'response.output_text.delta',
      data: '{"type":"response.output_text.delta","delta":"hi"}',
    };
    expect(withResponseFactsInEvent(delta, facts)).toBe(delta);
    const item = {
      event: 'response.output_item.added',
      data: '{"type":"response.output_item.added","item":{"id":"msg_1"}}',
    };
    expect(withResponseFactsInEvent(item, facts)).toBe(item);
  });
});

describe('hosted tools', () => {
  it('lists the types of every tool but functions, once each', () => {
    expect(hostedToolTypes({ tools })).toEqual(['web_search_preview', 'custom', 'mcp']);
    expect(hostedToolTypes({ tools: [tools[0]] })).toEqual([]);
    expect(hostedToolTypes({})).toEqual([]);
  });

  it('names tools for policy rules: functions and custom tools by name, hosted tools by type', () => {
    expect(toolNames('responses', { tools })).toEqual([
      'get_weather',
      'web_search_preview',
      'run_sql',
      'mcp',
      'web_search_preview',
    ]);
    expect(toolNames('responses', { tools: 'nope' })).toEqual([]);
  });

  const at = (provider: Provider, n: number) => ({
    provider,
    keyId: `pk_${n}` as ProviderKeyId,
    model: 'gpt-4o',
    timeoutMs: 1000,
    connectTimeoutMs: 1000,
  });
  const plan = (...providers: Provider[]): AttemptPlan => ({
    attempts: providers.map(at),
    retryOn: [429],
    onRateLimit: 'failover_first',
  });
  const providerOf = (a: { provider: Provider }) => a.provider;

  it('keeps only OpenAI attempts when a Responses request carries hosted tools', () => {
    const mixed = plan('anthropic', 'openai', 'openai_compatible');
    expect(servable(mixed, 'responses', providerOf, ['web_search_preview']).attempts.map(providerOf)).toEqual(
      ['openai'],
    );
    expect(servable(mixed, 'responses', providerOf, [])).toBe(mixed);
  });

  it('answers 400 hosted_tool_not_supported naming the tools and providers when no attempt is left', () => {
    let error: unknown;
    try {
      servable(plan('anthropic', 'openai_compatible'), 'responses', providerOf, [
        'web_search',
        'file_search',
      ]);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({
      statusCode: 400,
      code: 'hosted_tool_not_supported',
      message: expect.stringMatching(/web_search, file_search.*anthropic, openai_compatible/),
      details: { tool_types: ['web_search', 'file_search'], providers: ['anthropic', 'openai_compatible'] },
    });
  });
});

describe('a passthrough stream, end to end through the official SDK', () => {
  let mock: MockLlm;
  beforeAll(async () => {
    mock = await startMockLlm();
  });
  afterAll(() => mock.close());
  beforeEach(() => mock.reset());

  it('reaches OpenAI storing nothing, and the client sees Paddock’s id with the usage tracked', async () => {
    mock.reply({ chunks: ['Hel', 'lo'], usage: { input: 10, output: 2, cacheRead: 30 } });
    const client = {
      model: 'gpt-4o',
      input: 'Hi',
      store: true,
      previous_response_id: 'resp_before',
      stream: true,
    };
    const upstream = await fetch(`${mock.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
      body: JSON.stringify(responsesUpstreamBody(client, 'gpt-4o', true)),
    });
    expect(mock.requests[0]!.body).toEqual({ model: 'gpt-4o', input: 'Hi', store: false, stream: true });

    // What the relay does with each event: track it, then hand it on with the client's facts.
    const parser = new SseParser();
    const tracker = new StreamTracker('responses', false);
    const facts = { id: 'resp_paddock', previousResponseId: 'resp_before', store: true };
    let relayed = '';
    for (const event of tracker.observeAll(parser.push(await upstream.text())))
      relayed += formatSse(withResponseFactsInEvent(event, facts));
    expect(tracker.completed).toBe(true);
    expect(tracker.usage(0)).toEqual({ input: 10, output: 2, cacheRead: 30, cacheCreation: 0 });

    const res = new Response(relayed, { headers: { 'content-type': 'text/event-stream' } });
    const stream = Stream.fromSSEResponse<OpenAI.Responses.ResponseStreamEvent>(res, new AbortController());
    const { items, error } = await drain(stream);
    expect(error).toBeUndefined();
    const last = items.at(-1)!;
    if (last.type !== 'response.completed') throw new Error('expected response.completed');
    expect(last.response).toMatchObject({
      id: 'resp_paddock',
      previous_response_id: 'resp_before',
      store: true,
    });
    expect(usageFromResponses(last.response.usage)).toEqual(tracker.usage(0));
    expect(items[0]).toMatchObject({ type: 'response.created', response: { id: 'resp_paddock' } });
  });
});

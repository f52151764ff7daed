import { describe, expect, it } from 'vitest';
import type { ProviderKeyId } from '../../src/core/ids.ts';
import { servable } from '../../src/modules/gateway/admission.ts';
import { toolNames } from '../../src/modules/gateway/governance.ts';
import type { AttemptPlan } from '../../src/modules/gateway/ports.ts';
import type { Provider } from '../../src/modules/gateway/provider-call.ts';
import { hostedToolTypes, responsesUpstreamBody } from '../../src/modules/gateway/responses-passthrough.ts';

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

  it('sends back only the reasoning items that carry their encrypted content', () => {
    const input = [
      { role: 'user', content: 'hi' },
      { type: 'reasoning', id: 'rs_1', summary: [] },
      { type: 'reasoning', id: 'rs_2', summary: [], encrypted_content: 'gAAA…' },
      { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
    ];
    expect(responsesUpstreamBody({ model: 'm', input }, 'gpt-5', false).input).toEqual([
      input[0],
      input[2],
      input[3],
    ]);
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

import OpenAI from 'openai';
import { Stream } from 'openai/streaming';
import { describe, expect, it } from 'vitest';
import { formatSse } from '../../src/modules/gateway/sse.ts';
import { isUsageOnlyChunk, StreamTracker, streamErrorEvent } from '../../src/modules/gateway/stream.ts';
import { usageFromResponses } from '../../src/modules/gateway/usage.ts';
import { drain } from '../support/sdk.ts';

const ev = (event: string | undefined, data: unknown) => ({
  event,
  data: typeof data === 'string' ? data : JSON.stringify(data),
});

describe('StreamTracker', () => {
  it('takes an OpenAI stream’s reported usage, cached tokens moved out of input', () => {
    const t = new StreamTracker('openai', false);
    t.observe(ev(undefined, { choices: [{ index: 0, delta: { content: 'Hello there' } }] }));
    t.observe(
      ev(undefined, {
        choices: [],
        usage: { prompt_tokens: 120, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 100 } },
      }),
    );
    t.observe(ev(undefined, '[DONE]'));
    expect(t.completed).toBe(true);
    expect(t.usage(999)).toEqual({ input: 20, output: 7, cacheRead: 100, cacheCreation: 0 });
  });

  it('charges the input estimate and the text produced when an OpenAI stream is cut before usage', () => {
    const t = new StreamTracker('openai', true);
    t.observe(ev(undefined, { choices: [{ index: 0, delta: { content: 'x'.repeat(40) } }] }));
    t.observe(
      ev(undefined, {
        choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] } }],
      }),
    );
    expect(t.completed).toBe(false);
    expect(t.usage(50)).toEqual({ input: 50, output: 12, cacheRead: 0, cacheCreation: 0 });
    expect(t.producedText()).toBe(`${'x'.repeat(40)}{"a":1}`);
  });

  it('follows Anthropic usage across message_start and message_delta, cache buckets included', () => {
    const t = new StreamTracker('anthropic', false);
    t.observe(
      ev('message_start', {
        type: 'message_start',
        message: {
          usage: {
            input_tokens: 30,
            output_tokens: 1,
            cache_read_input_tokens: 500,
            cache_creation_input_tokens: 40,
          },
        },
      }),
    );
    t.observe(
      ev('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: 'abcd' },
      }),
    );
    t.observe(
      ev('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn' },
        usage: { output_tokens: 9 },
      }),
    );
    t.observe(ev('message_stop', { type: 'message_stop' }));
    expect(t.usage(0)).toEqual({ input: 30, output: 9, cacheRead: 500, cacheCreation: 40 });
  });

  it('counts what an Anthropic stream sent before it broke, with the reported input', () => {
    const t = new StreamTracker('anthropic', false);
    t.observe(
      ev('message_start', {
        type: 'message_start',
        message: { usage: { input_tokens: 30, output_tokens: 1 } },
      }),
    );
    t.observe(
      ev('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: 'y'.repeat(80) },
      }),
    );
    expect(t.completed).toBe(false);
    expect(t.usage(999)).toEqual({ input: 30, output: 20, cacheRead: 0, cacheCreation: 0 });
  });

  it('notices an error event inside the stream', () => {
    const t = new StreamTracker('anthropic', false);
    t.observe(ev('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
    expect(t.errorMessage).toBe('Overloaded');
  });
});

describe('StreamTracker on a Responses API stream', () => {
  let seq = 0;
  const r = (type: string, fields: Record<string, unknown> = {}) =>
    ev(type, { type, sequence_number: seq++, ...fields });
  const usage = {
    input_tokens: 120,
    input_tokens_details: { cached_tokens: 100 },
    output_tokens: 7,
    output_tokens_details: { reasoning_tokens: 3 },
    total_tokens: 127,
  };

  it('takes the usage of response.completed, cached tokens moved out of input', () => {
    seq = 0;
    const t = new StreamTracker('responses', true);
    t.observe(r('response.created', { response: { id: 'resp_1', status: 'in_progress', usage: null } }));
    t.observe(r('response.output_text.delta', { item_id: 'msg_1', delta: 'Hello ' }));
    t.observe(r('response.function_call_arguments.delta', { item_id: 'fc_1', delta: '{"a":1}' }));
    expect(t.completed).toBe(false);
    t.observe(r('response.completed', { response: { id: 'resp_1', status: 'completed', usage } }));
    expect(t.completed).toBe(true);
    expect(t.errorMessage).toBeUndefined();
    expect(t.usage(999)).toEqual({ input: 20, output: 7, cacheRead: 100, cacheCreation: 0 });
    expect(t.producedText()).toBe('Hello {"a":1}');
    expect(t.nextSequenceNumber).toBe(4);
  });

  it('counts response.incomplete as finished, with its usage', () => {
    const t = new StreamTracker('responses', false);
    t.observe(r('response.output_text.delta', { delta: 'x'.repeat(400) }));
    t.observe(
      r('response.incomplete', {
        response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, usage },
      }),
    );
    expect(t.completed).toBe(true);
    expect(t.errorMessage).toBeUndefined();
    expect(t.usage(0).output).toBe(7);
  });

  it('charges the estimate and the text sent when the stream is cut before response.completed', () => {
    const t = new StreamTracker('responses', false);
    t.observe(r('response.created', { response: { status: 'in_progress' } }));
    t.observe(r('response.output_text.delta', { delta: 'y'.repeat(80) }));
    expect(t.usage(50)).toEqual({ input: 50, output: 20, cacheRead: 0, cacheCreation: 0 });
  });

  it('takes error events and response.failed as provider errors, keeping a failed response’s usage', () => {
    const early = new StreamTracker('responses', false);
    early.observe(r('error', { code: 'server_error', message: 'no capacity', param: null }));
    expect(early.errorMessage).toBe('no capacity');

    const late = new StreamTracker('responses', false);
    late.observe(r('response.output_text.delta', { delta: 'abcd' }));
    late.observe(
      r('response.failed', {
        response: { status: 'failed', error: { code: 'server_error', message: 'broke' }, usage },
      }),
    );
    expect(late.completed).toBe(false);
    expect(late.errorMessage).toBe('broke');
    expect(late.usage(0)).toEqual({ input: 20, output: 7, cacheRead: 100, cacheCreation: 0 });
  });

  it('marks data that is not a JSON object malformed', () => {
    const t = new StreamTracker('responses', false);
    const passed = t.observeAll([
      r('response.created', { response: {} }),
      ev('response.output_text.delta', '{x'),
    ]);
    expect(passed).toHaveLength(1);
    expect(t.malformed).toBe(true);
  });
});

describe('usageFromResponses', () => {
  it('splits cached tokens out of input_tokens; reasoning tokens stay output', () => {
    expect(
      usageFromResponses({
        input_tokens: 50,
        input_tokens_details: { cached_tokens: 30 },
        output_tokens: 9,
        output_tokens_details: { reasoning_tokens: 4 },
      }),
    ).toEqual({ input: 20, output: 9, cacheRead: 30, cacheCreation: 0 });
    expect(usageFromResponses({ input_tokens: 5, output_tokens: 1 })).toEqual({
      input: 5,
      output: 1,
      cacheRead: 0,
      cacheCreation: 0,
    });
    expect(usageFromResponses(null)).toBeUndefined();
  });
});

describe('streamErrorEvent', () => {
  it('gives a Responses API client an error event that the openai SDK raises as APIError', async () => {
    const created = {
      type: 'response.created',
      sequence_number: 0,
      response: { id: 'resp_1', status: 'in_progress' },
    };
    const body =
      formatSse({ event: 'response.created', data: JSON.stringify(created) }) +
      formatSse(streamErrorEvent('responses', 'mid_stream_error', 'the stream broke off', 'run_1', 1));
    const res = new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    const { items, error } = await drain(Stream.fromSSEResponse(res, new AbortController()));
    expect(items).toEqual([created]);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({
      code: 'mid_stream_error',
      message: 'the stream broke off',
      error: { type: 'provider_error', run_id: 'run_1' },
    });
    const event = JSON.parse(streamErrorEvent('responses', 'c', 'm', 'run_1', 7).data);
    expect(event).toMatchObject({ type: 'error', code: 'c', message: 'm', param: null, sequence_number: 7 });
  });
});

describe('isUsageOnlyChunk', () => {
  it('recognises only the final usage chunk', () => {
    expect(isUsageOnlyChunk(ev(undefined, { choices: [], usage: { prompt_tokens: 1 } }))).toBe(true);
    expect(isUsageOnlyChunk(ev(undefined, { choices: [{ delta: {} }], usage: null }))).toBe(false);
    expect(isUsageOnlyChunk(ev(undefined, '[DONE]'))).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { isUsageOnlyChunk, StreamTracker } from '../../src/modules/gateway/stream.ts';

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

describe('isUsageOnlyChunk', () => {
  it('recognises only the final usage chunk', () => {
    expect(isUsageOnlyChunk(ev(undefined, { choices: [], usage: { prompt_tokens: 1 } }))).toBe(true);
    expect(isUsageOnlyChunk(ev(undefined, { choices: [{ delta: {} }], usage: null }))).toBe(false);
    expect(isUsageOnlyChunk(ev(undefined, '[DONE]'))).toBe(false);
  });
});

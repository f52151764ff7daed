import { describe, expect, it } from 'vitest';
import { ManualTimers } from '../../src/core/context.ts';
import { SecretRedactor } from '../../src/modules/secrets/redact.ts';
import { TaskEnd } from '../../src/modules/tasks/agent-loop.ts';
import {
  ChatStreamAssembler,
  DELTA_INTERVAL_MS,
  DELTA_MAX_CHARS,
  DeltaWriter,
} from '../../src/modules/tasks/stream-call.ts';

const sse = (data: unknown) => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
const chunk = (delta: Record<string, unknown>, finish: string | null = null, usage: unknown = null) =>
  sse({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }], usage });

describe('the chat stream assembler', () => {
  it('rebuilds text, tool calls from their argument fragments, the usage and the finish reason', () => {
    const a = new ChatStreamAssembler();
    const stream = [
      chunk({ role: 'assistant', content: '' }),
      chunk({ content: 'Let me ' }),
      chunk({ content: 'look.' }),
      chunk({
        tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'bash', arguments: '' } }],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"comm' } }] }),
      chunk({
        tool_calls: [{ index: 1, id: 'call_2', function: { name: 'read_file', arguments: '{"path":' } }],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: 'and":"ls"}' } }] }),
      chunk({ tool_calls: [{ index: 1, function: { arguments: '"a.txt"}' } }] }),
      chunk({}, 'tool_calls'),
      sse({
        object: 'chat.completion.chunk',
        choices: [],
        usage: { prompt_tokens: 12, completion_tokens: 7 },
      }),
      sse('[DONE]'),
    ].join('');
    // Split at awkward places: the parser takes the stream however its bytes were cut.
    const deltas: string[] = [];
    for (let i = 0; i < stream.length; i += 37) deltas.push(...a.push(stream.slice(i, i + 37)));
    expect(deltas).toEqual(['Let me ', 'look.']);
    expect(a.end()).toMatchObject({
      choices: [
        {
          message: {
            content: 'Let me look.',
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'bash', arguments: '{"command":"ls"}' } },
              {
                id: 'call_2',
                type: 'function',
                function: { name: 'read_file', arguments: '{"path":"a.txt"}' },
              },
            ],
          },
          finish_reason: 'tool_calls',
        },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 7 },
    });
  });

  it('ends the task with the gateway’s code when the stream carries an error event', () => {
    const a = new ChatStreamAssembler();
    a.push(chunk({ content: 'half' }));
    const error = {
      error: { type: 'provider_error', code: 'mid_stream_error', message: 'the stream broke off' },
    };
    expect(() => a.push(sse(error))).toThrowError(
      expect.objectContaining({ code: 'mid_stream_error', message: 'the stream broke off' }),
    );
  });

  it('ends the task when the stream stops before [DONE], however much text came', () => {
    const a = new ChatStreamAssembler();
    a.push(chunk({ content: 'half an answer' }));
    let thrown: unknown;
    try {
      a.end();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(TaskEnd);
    expect(thrown).toMatchObject({ code: 'mid_stream_error' });
  });
});

describe('the text delta writer', () => {
  const SECRET = 'hunter2-ABCDEFGH';

  function writer(secrets: Array<{ name: string; value: string }> = []) {
    const timers = new ManualTimers();
    const written: string[] = [];
    const w = new DeltaWriter(timers, new SecretRedactor(secrets), async (text) => {
      written.push(text);
    });
    return { timers, written, w };
  }

  it('writes the first piece at once and gathers the next ones for an interval', async () => {
    const { timers, written, w } = writer();
    w.push('Hello');
    await timers.advance(0);
    expect(written).toEqual(['Hello']);
    w.push(', ');
    w.push('world');
    await timers.advance(DELTA_INTERVAL_MS - 1);
    expect(written).toEqual(['Hello']);
    await timers.advance(1);
    expect(written).toEqual(['Hello', ', world']);
    w.push('!');
    await w.end();
    expect(written).toEqual(['Hello', ', world', '!']);
  });

  it('writes at once when DELTA_MAX_CHARS are waiting', async () => {
    const { timers, written, w } = writer();
    w.push('a');
    w.push('b'.repeat(DELTA_MAX_CHARS));
    await timers.advance(0);
    expect(written).toEqual(['a', 'b'.repeat(DELTA_MAX_CHARS)]);
    await w.end();
  });

  it('never writes a secret split across two pieces, nor its first half', async () => {
    const { timers, written, w } = writer([{ name: 'API_TOKEN', value: SECRET }]);
    w.push('the token is hunter2-');
    await timers.advance(DELTA_INTERVAL_MS);
    // What could be the start of the secret is held back.
    expect(written.join('')).not.toContain('hunter2');
    w.push('ABCDEFGH, done');
    await timers.advance(DELTA_INTERVAL_MS);
    await w.end();
    const all = written.join('');
    expect(all).toBe('the token is [secret:API_TOKEN], done');
    for (const piece of written) expect(piece).not.toMatch(/hunter|ABCD/);
  });

  it('writes what it held back at the end, when it was not a secret after all', async () => {
    const { written, w } = writer([{ name: 'API_TOKEN', value: SECRET }]);
    w.push('ends with hunter2');
    await w.end();
    expect(written.join('')).toBe('ends with hunter2');
  });

  it('throws a failed write (the task was cancelled) at the next push', async () => {
    const timers = new ManualTimers();
    const w = new DeltaWriter(timers, new SecretRedactor([]), async () => {
      throw new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled');
    });
    w.push('first');
    await timers.advance(0);
    expect(() => w.push('second')).toThrowError(expect.objectContaining({ code: 'gone' }));
  });
});

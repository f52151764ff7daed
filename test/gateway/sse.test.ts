import { describe, expect, it } from 'vitest';
import { formatSse, SseParser } from '../../src/modules/gateway/sse.ts';

describe('SseParser', () => {
  it('parses events split anywhere across chunks, with any line ending', () => {
    const text =
      'event: message_start\r\ndata: {"a":1}\r\n\r\n: ping\n\ndata: line1\ndata: line2\n\nevent: x\rdata: y\r\r';
    // Every split point must give the same events.
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      const events = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut)), ...p.end()];
      expect(events).toEqual([
        { event: 'message_start', data: '{"a":1}' },
        { event: undefined, data: 'line1\nline2' },
        { event: 'x', data: 'y' },
      ]);
    }
  });

  it('returns a final event that lacks the blank line when the stream ends', () => {
    const p = new SseParser();
    expect(p.push('data: [DONE]')).toEqual([]);
    expect(p.end()).toEqual([{ event: undefined, data: '[DONE]' }]);
  });

  it('formats events that parse back to themselves', () => {
    const e = { event: 'content_block_delta', data: '{"x":"a\\nb"}\nsecond' };
    expect(new SseParser().push(formatSse(e))).toEqual([e]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.ts';
import type { SseEvent } from '../../src/modules/gateway/sse.ts';
import { WireTranslator } from '../../src/modules/gateway/translation.ts';
import type { SandboxHost } from '../../src/modules/sandboxes/host.ts';
import { type AgentServer, serveAgentApi } from '../../src/modules/sandboxes/host-side/host-api.ts';

// Issue 9 asked for an audit of lookups of outside strings on plain objects,
// where a name such as "constructor" finds a member of Object.prototype. Two
// more turned up besides the token prefixes (test/security/token-prefix.test.ts).

const PROTOTYPE_NAMES = [
  'constructor',
  'toString',
  'valueOf',
  '__proto__',
  'hasOwnProperty',
  'isPrototypeOf',
];

describe('stop and finish reasons from a provider', () => {
  const tr = new WireTranslator(new ManualClock(Date.UTC(2025, 0, 1)));

  it('translate to the default reason, never to an Object member, in JSON answers', () => {
    for (const reason of PROTOTYPE_NAMES) {
      const fromOpenAi = tr.response('openai', 'anthropic', {
        id: 'chatcmpl-1',
        model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: reason }],
      }) as Record<string, unknown>;
      expect(fromOpenAi.stop_reason, reason).toBe('end_turn');
      expect(JSON.parse(JSON.stringify(fromOpenAi)).stop_reason, reason).toBe('end_turn');

      const fromAnthropic = tr.response('anthropic', 'openai', {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        content: [{ type: 'text', text: 'hi' }],
        stop_reason: reason,
      }) as { choices: Array<{ finish_reason: unknown }> };
      expect(fromAnthropic.choices[0]!.finish_reason, reason).toBe('stop');
    }
  });

  it('translate to the default reason in streams', () => {
    const data = (events: SseEvent[]) =>
      events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    for (const reason of PROTOTYPE_NAMES) {
      const toAnthropic = tr.stream('openai', 'anthropic', 'gpt-4o');
      const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}): SseEvent => ({
        event: undefined,
        data: JSON.stringify({
          id: 'c1',
          object: 'chat.completion.chunk',
          model: 'gpt-4o',
          choices: [choice],
          ...extra,
        }),
      });
      const anthropicEvents = data([
        ...toAnthropic.push(
          chunk({ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }),
        ),
        ...toAnthropic.push(chunk({ index: 0, delta: {}, finish_reason: reason })),
        ...toAnthropic.push({ event: undefined, data: '[DONE]' }),
        ...toAnthropic.end(),
      ]);
      const messageDelta = anthropicEvents.find((e) => e.type === 'message_delta');
      expect(messageDelta?.delta.stop_reason, reason).toBe('end_turn');

      const toOpenAi = tr.stream('anthropic', 'openai', 'claude-sonnet-4-5');
      const ev = (d: { type: string } & Record<string, unknown>): SseEvent => ({
        event: d.type,
        data: JSON.stringify(d),
      });
      const chunks = data([
        ...toOpenAi.push(
          ev({
            type: 'message_start',
            message: {
              id: 'msg_1',
              type: 'message',
              role: 'assistant',
              model: 'claude-sonnet-4-5',
              content: [],
            },
          }),
        ),
        ...toOpenAi.push(
          ev({ type: 'message_delta', delta: { stop_reason: reason }, usage: { output_tokens: 1 } }),
        ),
        ...toOpenAi.push(ev({ type: 'message_stop' })),
        ...toOpenAi.end(),
      ]);
      const finishes = chunks.flatMap((c) =>
        c.choices.map((ch: { finish_reason: unknown }) => ch.finish_reason),
      );
      expect(
        finishes.filter((f: unknown) => f !== null),
        reason,
      ).toEqual(['stop']);
    }
  });
});

describe("a sandbox host's operation names", () => {
  const TOKEN = 'pdc_control-token-for-this-test';
  let server: AgentServer;
  beforeAll(async () => {
    const host = { processes: async () => [{ pid: 7, cmd: 'sleep', tag: null }] } as unknown as SandboxHost;
    server = await serveAgentApi(
      () => host,
      () => TOKEN,
      { host: '127.0.0.1', port: 0 },
    );
  });
  afterAll(() => server.close());

  const rpc = (name: string) =>
    fetch(`http://127.0.0.1:${server.port}/host/rpc/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ capsuleId: 'cap_1' }),
    });

  it('answer 404 for a name of an Object member instead of calling it, and dispatch the real ones', async () => {
    for (const name of PROTOTYPE_NAMES) {
      const res = await rpc(name);
      expect(res.status, name).toBe(404);
      expect(await res.json()).toEqual({ error: { code: 'not_found', message: 'no such operation' } });
    }
    const res = await rpc('processes');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: [{ pid: 7, cmd: 'sleep', tag: null }] });
  });
});

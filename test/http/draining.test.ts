import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.ts';
import { createAgent, createPolicy, createProviderKey } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';

// A stopping server (app.close(), as on SIGTERM), on the test's timers: its
// event streams end at once; a gateway stream in flight runs on until
// PADDOCK_SHUTDOWN_GRACE_SEC is up, and is cut then, so the close ends. The
// processes' side (a stream that finishes within the grace, refusals, exit
// codes) is in test/cli/roles.test.ts.

const GRACE_SEC = 30;
let t: TestApp | undefined;
let mock: MockLlm | undefined;

afterAll(async () => {
  await mock?.close();
  await t?.close();
});

describe('a stopping server', () => {
  it('ends its event streams at once and cuts a gateway stream still in flight when the grace is up', async () => {
    t = await createTestApp({
      env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1', PADDOCK_SHUTDOWN_GRACE_SEC: String(GRACE_SEC) },
      manualTimers: true,
      start: new Date(),
    });
    const timers = t.timers!;
    const user = await t.signup();
    mock = await startMockLlm();
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    const key = await createProviderKey(t, user.token, {
      provider: 'openai',
      api_key: 'sk-draining',
      base_url: mock.url,
    });
    const policy = await createPolicy(t, user.token, {});
    const agent = await createAgent(t, user.token, {
      provider_keys: { openai: key.id },
      policy_id: policy.id,
      model: 'gpt-4o-mini',
    });

    // A task sent to a work queue waits there: its event stream stays open while it does.
    const task = await t.call('POST', '/v1/tasks', {
      token: user.token,
      body: { agent_id: agent.id, prompt: 'wait', runner: { queue: 'nobody' } },
    });
    expect(task.status, JSON.stringify(task.body)).toBe(202);
    const events = await fetch(`${url}/v1/tasks/${task.body.id}/events`, {
      headers: { authorization: `Bearer ${user.token}`, accept: 'text/event-stream' },
    });
    expect(events.status).toBe(200);
    const reader = events.body!.getReader();
    // The stream has begun (its retry line): it is open on the server.
    await reader.read();

    // A gateway stream whose provider holds it after the first chunk.
    mock.reply({ chunks: ['one ', 'two'], stallAfterEvents: 1, holdUntil: new Promise(() => {}) });
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: agent.api_key, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hold' }],
      stream: true,
    });
    const chunks = stream[Symbol.asyncIterator]();
    expect((await chunks.next()).done).toBe(false);

    const closed = t.app.close();
    // The event stream ends without its `end` event (the log is not complete): a client resumes elsewhere.
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).not.toContain('event: end');

    // The gateway stream is still served; when the grace is up its connection is cut and the close ends.
    const cut = (async () => {
      try {
        for (;;) if ((await chunks.next()).done) return 'ended';
      } catch {
        return 'cut';
      }
    })();
    await timers.advance(GRACE_SEC * 1000);
    expect(await cut).toBe('cut');
    await closed;
  });
});

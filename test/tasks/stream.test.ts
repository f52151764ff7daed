import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Stream mode: the model's text reaches the task's subscribers as it comes
// (text_delta events), redacted, through either key format; a subscriber that
// joins late gets every event once; a cut stream, a refusal, a rate limit and
// an approval end or go on as they do for a batch task.

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const SECRET = 'sk-live-7Qm2Zr9Xw4Kp1Vt8';

const deltasOf = (events: Json[], turn: number) =>
  events
    .filter((e) => e.type === 'text_delta' && e.payload.turn === turn)
    .map((e) => e.payload.text as string);

async function runSteps(runId: string): Promise<Json[]> {
  await f.t.services.runs.flush();
  const res = await f.t.call('GET', `/v1/runs/${runId}/steps`, {
    token: f.user.token,
    query: { limit: '200' },
  });
  expect(res.status).toBe(200);
  return res.body.data;
}

describe('a stream-mode task', () => {
  for (const [format, model] of [
    ['openai', 'gpt-4o-mini'],
    ['anthropic', 'claude-sonnet-4-5'],
  ] as const) {
    it(`streams each turn's text as text_delta events, then the whole text and the result (${format} key)`, async () => {
      const agent = await f.agent({ agent: { model }, bindings: { [format]: f.keys[format].id } });
      f.mock.reset();
      f.script([
        {
          chunks: ['Let me ', 'run ', 'it.'],
          toolCalls: [{ name: 'bash', arguments: { command: 'echo hi' } }],
        },
        { chunks: ['The ', 'command ', 'said ', 'hi.'] },
      ]);
      const submitted = await f.submit({ agent_id: agent.id, prompt: 'say hi', mode: 'stream' });
      expect(submitted.mode).toBe('stream');
      const { task, streamed } = await f.finished(submitted.id);
      expect(task).toMatchObject({ status: 'completed', result: 'The command said hi.', turns: 2 });

      // The provider was asked for a stream, in its own format (the gateway translated for Anthropic).
      expect(f.mock.requests.map((r) => [r.format, r.stream])).toEqual([
        [format, true],
        [format, true],
      ]);

      const events = await f.events(task.id);
      expect(streamed.map((e) => e.seq)).toEqual(events.map((e) => e.seq));
      expect(deltasOf(events, 1).join('')).toBe('Let me run it.');
      expect(deltasOf(events, 2).join('')).toBe('The command said hi.');
      // Each turn: its deltas, then the model call, then the whole text, then its tools.
      const turn1 = events
        .filter((e) => e.payload.turn === 1)
        .map((e) => e.type)
        .filter((t, i, all) => t !== all[i - 1]);
      expect(turn1).toEqual(['text_delta', 'model_call', 'text', 'tool_call', 'tool_result']);
      const texts = events.filter((e) => e.type === 'text').map((e) => e.payload.text);
      expect(texts).toEqual(['Let me run it.', 'The command said hi.']);
      const bash = events.find((e) => e.type === 'tool_result');
      expect(bash?.payload).toMatchObject({ name: 'bash', ok: true, output: expect.stringContaining('hi') });

      // model_call keeps its fields; its cost is the one the gateway charged for the step.
      const calls = events.filter((e) => e.type === 'model_call');
      expect(calls.map((e) => e.payload.finish_reason)).toEqual(['tool_calls', 'stop']);
      const steps = await runSteps(task.run_id);
      for (const call of calls) {
        const step = steps.find((s) => s.id === call.payload.step_id);
        expect(step, JSON.stringify(call)).toBeDefined();
        expect(step).toMatchObject({ status: 'success', streaming: true });
        expect(call.payload).toMatchObject({ provider: format, model: expect.any(String) });
        expect(call.payload.input_tokens).toBeGreaterThan(0);
        expect(call.payload.output_tokens).toBeGreaterThan(0);
        expect(call.payload.cost_usd).toBeCloseTo(Number(step!.cost_usd), 9);
      }
      expect(task.input_tokens).toBe(calls.reduce((n, e) => n + e.payload.input_tokens, 0));
    }, 30_000);
  }

  it('never lets a secret through a delta, even split across the model’s chunks', async () => {
    const agent = await f.agent();
    const res = await f.t.call('POST', '/v1/secrets', {
      token: f.user.token,
      body: { name: 'LIVE_KEY', value: SECRET, agent_ids: [agent.id] },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    f.mock.reset();
    const chunks = [
      'The key is ',
      SECRET.slice(0, 5),
      SECRET.slice(5, 13),
      SECRET.slice(13),
      ' and that is all.',
    ];
    f.script([{ chunks, stallBetweenEventsMs: 60 }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'leak it', mode: 'stream' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({
      status: 'completed',
      result: 'The key is [secret:LIVE_KEY] and that is all.',
    });
    const events = await f.events(task.id);
    const deltas = deltasOf(events, 1);
    expect(deltas.join('')).toBe('The key is [secret:LIVE_KEY] and that is all.');
    // Stalls between the chunks: the first delta was written before the secret began.
    expect(deltas.length).toBeGreaterThan(1);
    for (const d of deltas) for (const part of chunks.slice(1, 4)) expect(d).not.toContain(part);
    expect(JSON.stringify(events)).not.toContain(SECRET);
  }, 30_000);

  it('gives a subscriber that joins late every event once: the log so far, then the live ones', async () => {
    const agent = await f.agent();
    f.mock.reset();
    const words = Array.from({ length: 30 }, (_, i) => `word${i} `);
    // The first words at once, then a long pause (the late subscribers join there), then the rest slowly.
    f.script([{ chunks: words, stallAfterEvents: 4, stallMs: 800, stallBetweenEventsMs: 20 }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'talk slowly', mode: 'stream' });
    const early = f.finished(submitted.id);
    const first = await f.untilEvent(submitted.id, (e) => e.type === 'text_delta');
    // Joins with no Last-Event-ID while deltas are being written…
    const late = f.finished(submitted.id);
    // …and one that resumes after the first delta.
    const resumed = f.t.call('GET', `/v1/tasks/${submitted.id}/events`, {
      token: f.user.token,
      headers: { accept: 'text/event-stream', 'last-event-id': String(first.seq) },
    });
    const [a, b, c] = await Promise.all([early, late, resumed]);
    expect(a.task.status).toBe('completed');

    const all = (await f.events(submitted.id)).map((e: Json) => e.seq);
    expect(all).toEqual(all.map((_: number, i: number) => i + 1));
    expect(a.streamed.map((e) => e.seq)).toEqual(all);
    expect(b.streamed.map((e) => e.seq)).toEqual(all);
    const resumedSeqs = String(c.body)
      .split('\n')
      .filter((l) => l.startsWith('id: '))
      .map((l) => Number(l.slice(4)));
    expect(resumedSeqs).toEqual(all.filter((s: number) => s > first.seq));
    expect(deltasOf(b.streamed, 1).join('')).toBe(words.join(''));
  }, 30_000);

  it('ends with a clear error when the provider cuts the stream, keeping the deltas that came', async () => {
    const agent = await f.agent();
    f.mock.reset();
    // The role chunk and two text chunks, then the socket is destroyed.
    f.script([{ chunks: ['Half ', 'an ', 'answer ', 'never ', 'finished.'], cutAfterEvents: 3 }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'get cut', mode: 'stream' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'mid_stream_error' } });
    expect(task.error.message).toMatch(/stream/);
    const events = await f.events(task.id);
    expect(deltasOf(events, 1).join('')).toBe('Half an ');
    expect(events.some((e) => e.type === 'text')).toBe(false);
  }, 30_000);

  it('ends a refused call as a batch task does, and waits out a rate limit', async () => {
    const agent = await f.agent();
    const ended: Json[] = [];
    for (const mode of ['batch', 'stream']) {
      f.mock.reset();
      f.script([{ status: 400, message: 'the request was bad' }]);
      const submitted = await f.submit({ agent_id: agent.id, prompt: `refused ${mode}`, mode });
      ended.push((await f.finished(submitted.id)).task);
    }
    expect(ended[0]).toMatchObject({ status: 'failed' });
    expect(ended[1]).toMatchObject({ status: 'failed', error: ended[0]!.error });

    f.mock.reset();
    f.script([{ status: 429, retryAfterSec: 1, message: 'slow down' }, { chunks: ['after ', 'the wait'] }]);
    const limited = await f.submit({ agent_id: agent.id, prompt: 'rate limited', mode: 'stream' });
    const { task } = await f.finished(limited.id);
    expect(task).toMatchObject({ status: 'completed', result: 'after the wait' });
    expect(deltasOf(await f.events(task.id), 1).join('')).toBe('after the wait');
  }, 30_000);

  it('waits for an approval, then streams the approved call', async () => {
    const agent = await f.agent({ policy: { require_approval: ['bash'] } });
    f.mock.reset();
    f.script([{ chunks: ['Approved, ', 'so here.'] }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'needs a human', mode: 'stream' });
    const asking = await f.untilEvent(
      submitted.id,
      (e) => e.type === 'status' && e.payload.status === 'awaiting_approval',
    );
    for (const id of asking.payload.approval_ids) {
      const ok = await f.t.call('POST', `/v1/approvals/${id}/approve`, { token: f.user.token });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    }
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'Approved, so here.' });
    expect(f.mock.requests.map((r) => r.stream)).toEqual([true]);
    expect(deltasOf(await f.events(task.id), 1).join('')).toBe('Approved, so here.');
  }, 30_000);
});

describe('a batch task', () => {
  it('asks for no stream and writes no text_delta event', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ chunks: ['One ', 'answer.'] }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'batch it' });
    expect(submitted.mode).toBe('batch');
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'completed', result: 'One answer.' });
    expect(f.mock.requests.map((r) => r.stream)).toEqual([false]);
    const events = await f.events(task.id);
    expect(events.some((e) => e.type === 'text_delta')).toBe(false);
    expect(events.find((e) => e.type === 'model_call')?.payload.cost_usd).toEqual(expect.any(Number));
  }, 30_000);
});

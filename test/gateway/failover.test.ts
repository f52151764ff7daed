import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { createProviderKey } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { type MockStep, unusedPortUrl } from '../support/mock-llm.ts';
import { drain, rejection } from '../support/sdk.ts';

// Every way a provider can fail, seen from three sides: what the official SDK
// raised or returned, the step rows Paddock wrote, and the requests the mock
// provider received. Each test makes its own keys and agent, so one test's
// circuit breaker state never decides another's plan.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(async () => {
  // A request the client aborted before its headers can leave the client's connection pool
  // holding a fresh socket that never sends a request; the server would wait out its
  // headers timeout (60 s) for it before closing.
  g.t.app.server.closeAllConnections();
  await g.close();
});
beforeEach(() => g.mock.reset());

/** The policy schema's minimum timeouts: short enough for a fast suite. */
const FAST = { timeout_ms: 1000, connect_timeout_ms: 1000 };
const chat = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'Say something.' }] };
const msg = {
  model: 'claude-sonnet-4-5',
  max_tokens: 200,
  messages: [{ role: 'user' as const, content: 'Hi' }],
};

let keySeq = 0;
interface Key {
  id: string;
  /** The secret the mock sees, to script and count this key's requests. */
  secret: string;
  provider: 'openai' | 'anthropic';
}

/** A provider key of the fixture's team pointing at the mock (or at `baseUrl`). */
async function providerKey(provider: Key['provider'], label: string, baseUrl?: string): Promise<Key> {
  keySeq += 1;
  const secret = `sk-${label}-${keySeq}`;
  const row = await createProviderKey(g.t, g.user.token, {
    provider,
    api_key: secret,
    base_url: baseUrl ?? g.mock.url,
  });
  return { id: row.id, secret, provider };
}

interface Lane {
  agent: Json & { api_key: string };
  openai: OpenAI;
  anthropic: Anthropic;
}

/** An agent bound to `keys` (in failover order per provider) on a policy with `routing`. */
async function agentOn(keys: Key[], routing: Record<string, unknown> = {}, policy: Json = {}): Promise<Lane> {
  const bindings: Record<string, Array<{ key_id: string; weight: number }>> = {};
  for (const k of keys) bindings[k.provider] = [...(bindings[k.provider] ?? []), { key_id: k.id, weight: 1 }];
  const agent = await g.newAgent(
    { ...policy, routing: { ...FAST, ...routing } },
    { provider_keys: bindings },
  );
  return {
    agent,
    openai: g.openai({ apiKey: agent.api_key }),
    anthropic: g.anthropic({ apiKey: agent.api_key }),
  };
}

const fails = (key: Key, step: MockStep | readonly MockStep[]) =>
  g.mock.replyFor({ apiKey: key.secret }, step);
/** The provider secrets the mock heard, one per request received, in order. */
const heard = () => g.mock.requests.map((r) => r.apiKey);
const secrets = (...keys: Key[]) => keys.map((k) => k.secret);

const textOf = (chunks: OpenAI.ChatCompletionChunk[]) =>
  chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

/** The run's failover_transition and llm_call steps. */
async function stepsOf(runId: string) {
  const all = await g.steps(runId);
  return {
    all,
    failovers: all.filter((s) => s.type === 'failover_transition'),
    calls: all.filter((s) => s.type === 'llm_call'),
  };
}

/** Waits until `check` passes (for what happens after the client is gone). */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const runIdOf = (response: Response) => response.headers.get('x-paddock-run-id')!;

/** The failover_context of a transition that ended on `served`, having tried `failed` first. */
function expectFailover(
  step: Json,
  failed: Array<{ key: Key; kind: string; status?: number | null }>,
  served: Key | null,
) {
  expect(step).toMatchObject({
    type: 'failover_transition',
    status: served ? 'success' : 'error',
    provider: served?.provider ?? null,
    failover_attempts: failed.length,
  });
  expect(step.failover_context).toMatchObject({
    resolved_provider: served?.provider ?? null,
    attempted: failed.map((f) => ({
      provider: f.key.provider,
      provider_key_id: f.key.id,
      kind: f.kind,
      status: f.status ?? null,
    })),
  });
}

function expectServed(step: Json, key: Key, failoverAttempts: number) {
  expect(step).toMatchObject({
    type: 'llm_call',
    status: 'success',
    provider: key.provider,
    provider_key_id: key.id,
    failover_attempts: failoverAttempts,
    error_kind: null,
  });
  expect(step.tokens.input).toBeGreaterThan(0);
  expect(step.tokens.output).toBeGreaterThan(0);
  expect(step.cost_usd).toBeGreaterThan(0);
}

describe('failures before the answer: the next key serves', () => {
  it('connection refused: the dead key is recorded as network_error and never reaches the mock', async () => {
    const dead = await providerKey('openai', 'dead', await unusedPortUrl());
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([dead, good]);
    g.mock.reply({ text: 'served by the second key' });

    const { data, response } = await lane.openai.chat.completions.create(chat).withResponse();

    expect(data.choices[0]!.message.content).toBe('served by the second key');
    expect(response.headers.get('x-paddock-provider')).toBe('openai');
    expect(heard()).toEqual(secrets(good));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expect(failovers).toHaveLength(1);
    expectFailover(failovers[0]!, [{ key: dead, kind: 'network_error' }], good);
    expect(failovers[0]!.failover_context.attempted[0].error).toMatch(/ECONNREFUSED/);
    expect(calls).toHaveLength(1);
    expectServed(calls[0]!, good, 1);
  });

  it('hang before headers: timeout_ms ends the attempt, the next key answers', async () => {
    const slow = await providerKey('openai', 'hang');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([slow, good]);
    fails(slow, { hang: true });

    const started = Date.now();
    const { data, response } = await lane.openai.chat.completions.create(chat).withResponse();

    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(data.choices[0]!.message.content).toBe('This is the mock model answering.');
    expect(heard()).toEqual(secrets(slow, good));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: slow, kind: 'request_timeout' }], good);
    expectServed(calls[0]!, good, 1);
  });

  it('hang before headers on a stream: first_events_timeout, then the next key streams', async () => {
    const slow = await providerKey('anthropic', 'hang');
    const good = await providerKey('anthropic', 'good');
    const lane = await agentOn([slow, good]);
    fails(slow, { hang: true });

    const { data, response } = await lane.anthropic.messages.create({ ...msg, stream: true }).withResponse();
    const { items, error } = await drain(data);

    expect(error).toBeUndefined();
    expect(items.at(-1)?.type).toBe('message_stop');
    expect(heard()).toEqual(secrets(slow, good));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: slow, kind: 'first_events_timeout' }], good);
    expectServed(calls[0]!, good, 1);
  });

  it.each([
    { label: '429 without Retry-After', step: { status: 429 }, status: 429 },
    { label: '429 with Retry-After', step: { status: 429, retryAfterSec: 30 }, status: 429 },
    { label: '500', step: { status: 500 }, status: 500 },
    { label: '502', step: { status: 502, body: '<html>bad gateway</html>' }, status: 502 },
    { label: '503', step: { status: 503, message: 'Overloaded' }, status: 503 },
  ])('$label: http_error on the first key, the second answers at once', async ({ step, status }) => {
    const bad = await providerKey('openai', 'bad');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([bad, good]);
    fails(bad, step);

    const started = Date.now();
    const { data, response } = await lane.openai.chat.completions.create(chat).withResponse();

    // failover_first: a Retry-After (30 s here) is not waited for when another key can serve.
    expect(Date.now() - started).toBeLessThan(5000);
    expect(data.choices[0]!.message.content).toBe('This is the mock model answering.');
    expect(heard()).toEqual(secrets(bad, good));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: bad, kind: 'http_error', status }], good);
    expectServed(calls[0]!, good, 1);
  });

  it('a non-retryable 400: the client hears the provider, nothing fails over', async () => {
    const bad = await providerKey('openai', 'bad');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([bad, good]);
    fails(bad, { status: 400, message: "Invalid 'messages[0].content': too long." });

    const err = await rejection(lane.openai.chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.message).toContain("Invalid 'messages[0].content': too long.");
    expect(e.code).toBe('upstream_error');
    expect(heard()).toEqual(secrets(bad));
    const runId = (e.error as Json).run_id as string;
    const { failovers, calls } = await stepsOf(runId);
    expect(failovers).toHaveLength(0);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider: 'openai',
      provider_key_id: bad.id,
      error_kind: 'http_error',
      cost_usd: 0,
      tokens: { input: 0, output: 0 },
    });
    expect(calls[0]!.error_message).toContain('too long');
  });

  it('a 400 after a failover: the transition is recorded and so is the refused call', async () => {
    const bad = await providerKey('openai', 'bad');
    const picky = await providerKey('openai', 'picky');
    const lane = await agentOn([bad, picky]);
    fails(bad, { status: 503 });
    fails(picky, { status: 422, message: 'Unprocessable: tool schema is invalid' });

    const err = await rejection(lane.openai.chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((err as Error).message).toContain('tool schema is invalid');
    expect(heard()).toEqual(secrets(bad, picky));
    const runId = ((err as InstanceType<typeof OpenAI.APIError>).error as Json).run_id as string;
    const { failovers, calls } = await stepsOf(runId);
    expectFailover(failovers[0]!, [{ key: bad, kind: 'http_error', status: 503 }], picky);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider_key_id: picky.id,
      error_kind: 'http_error',
      failover_attempts: 1,
      cost_usd: 0,
    });
    const run = await g.run(runId);
    expect(run).toMatchObject({ cost_usd: 0, reserved_usd: 0 });
  });

  it('a non-retryable 400 through the Anthropic SDK', async () => {
    const bad = await providerKey('anthropic', 'bad');
    const good = await providerKey('anthropic', 'good');
    const lane = await agentOn([bad, good]);
    fails(bad, { status: 400, message: 'max_tokens: 200000 > 64000' });

    const err = await rejection(lane.anthropic.messages.create(msg));

    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).message).toContain('200000 > 64000');
    expect(heard()).toEqual(secrets(bad));
  });
});

describe('streams', () => {
  it('cut midway after bytes reached the client: no failover, the SDK raises, the step is an error with tokens', async () => {
    const cut = await providerKey('openai', 'cut');
    const spare = await providerKey('openai', 'spare');
    const lane = await agentOn([cut, spare]);
    fails(cut, { chunks: ['One ', 'two ', 'three ', 'four ', 'five.'], cutAfterEvents: 4 });

    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(data);

    expect(textOf(items)).toBe('One two three ');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as Error).message).toMatch(/stream/i);
    expect(heard()).toEqual(secrets(cut));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expect(failovers).toHaveLength(0);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider: 'openai',
      provider_key_id: cut.id,
      error_kind: 'mid_stream_error',
      streaming: true,
    });
    expect(calls[0]!.tokens.output).toBeGreaterThan(0);
    expect(calls[0]!.cost_usd).toBeGreaterThan(0);
  });

  it('cut midway through the Anthropic SDK', async () => {
    const cut = await providerKey('anthropic', 'cut');
    const spare = await providerKey('anthropic', 'spare');
    const lane = await agentOn([cut, spare]);
    // message_start, content_block_start, ping, two deltas, then the socket goes.
    fails(cut, { chunks: ['Alpha ', 'beta ', 'gamma.'], cutAfterEvents: 5 });

    const { data, response } = await lane.anthropic.messages.create({ ...msg, stream: true }).withResponse();
    const { items, error } = await drain(data);

    expect(items.map((e) => e.type)).toContain('content_block_delta');
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(heard()).toEqual(secrets(cut));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expect(failovers).toHaveLength(0);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider_key_id: cut.id,
      error_kind: 'mid_stream_error',
    });
    expect(calls[0]!.tokens.output).toBeGreaterThan(0);
    expect(calls[0]!.cost_usd).toBeGreaterThan(0);
  });

  it.each([
    { label: 'cut before the first event', step: { cutAfterEvents: 0 }, kind: 'network_error' },
    { label: 'an empty stream', step: { emptyStream: true }, kind: 'empty_stream' },
    {
      label: 'an error event first',
      step: { errorEventAfter: 0, message: 'overloaded' },
      kind: 'first_events_error',
    },
    {
      label: 'no event within timeout_ms after the headers',
      step: { stallAfterEvents: 0, stallMs: 3000 },
      kind: 'first_events_timeout',
    },
  ])('$label: fails over, the client sees one clean stream', async ({ step, kind }) => {
    const bad = await providerKey('openai', 'bad');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([bad, good]);
    fails(bad, step);
    g.mock.replyFor({ apiKey: good.secret }, { chunks: ['Fine ', 'here.'] });

    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(data);

    expect(error).toBeUndefined();
    expect(textOf(items)).toBe('Fine here.');
    expect(items.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(heard()).toEqual(secrets(bad, good));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: bad, kind, status: 200 }], good);
    expectServed(calls[0]!, good, 1);
  });

  it('an Anthropic error event first fails over too', async () => {
    const bad = await providerKey('anthropic', 'bad');
    const good = await providerKey('anthropic', 'good');
    const lane = await agentOn([bad, good]);
    fails(bad, { errorEventAfter: 0, message: 'Overloaded' });

    const { data, response } = await lane.anthropic.messages.create({ ...msg, stream: true }).withResponse();
    const { items, error } = await drain(data);

    expect(error).toBeUndefined();
    expect(items.at(-1)?.type).toBe('message_stop');
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: bad, kind: 'first_events_error', status: 200 }], good);
    expect(failovers[0]!.failover_context.attempted[0].error).toBe('Overloaded');
    expectServed(calls[0]!, good, 1);
  });

  it('an error event after content: the client gets the provider error, no failover', async () => {
    const bad = await providerKey('openai', 'bad');
    const spare = await providerKey('openai', 'spare');
    const lane = await agentOn([bad, spare]);
    fails(bad, {
      chunks: ['Half ', 'an ', 'answer'],
      errorEventAfter: 3,
      message: 'The server had an error',
    });

    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(data);

    expect(textOf(items)).toBe('Half an ');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as Error).message).toContain('The server had an error');
    expect(heard()).toEqual(secrets(bad));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expect(failovers).toHaveLength(0);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider_key_id: bad.id,
      error_kind: 'mid_stream_error',
      error_message: 'The server had an error',
    });
    expect(calls[0]!.tokens.output).toBeGreaterThan(0);
    expect(calls[0]!.cost_usd).toBeGreaterThan(0);
  });

  it('an Anthropic error event after content reaches the client as an error', async () => {
    const bad = await providerKey('anthropic', 'bad');
    const lane = await agentOn([bad]);
    fails(bad, { chunks: ['Some ', 'text'], errorEventAfter: 4, message: 'Overloaded' });

    const { data, response } = await lane.anthropic.messages.create({ ...msg, stream: true }).withResponse();
    const { error } = await drain(data);

    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as Error).message).toContain('Overloaded');
    const { calls } = await stepsOf(runIdOf(response));
    expect(calls[0]).toMatchObject({ status: 'error', error_kind: 'mid_stream_error' });
    expect(calls[0]!.tokens.output).toBeGreaterThan(0);
  });

  it('a stall between events beyond timeout_ms after content: an error the SDK raises, no failover', async () => {
    const slow = await providerKey('openai', 'stall');
    const spare = await providerKey('openai', 'spare');
    const lane = await agentOn([slow, spare]);
    fails(slow, { chunks: ['Slow ', 'and ', 'steady'], stallAfterEvents: 3, stallMs: 3000 });

    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(data);

    expect(textOf(items)).toBe('Slow and ');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(heard()).toEqual(secrets(slow));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expect(failovers).toHaveLength(0);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider_key_id: slow.id,
      error_kind: 'mid_stream_error',
    });
    expect(calls[0]!.tokens.output).toBeGreaterThan(0);
  });

  it('a client that disconnects mid-stream: client_disconnect, the tokens so far charged to the run', async () => {
    const key = await providerKey('openai', 'slow');
    const lane = await agentOn([key]);
    fails(key, {
      chunks: ['Partial ', 'output ', 'that ', 'never ', 'ends'],
      stallAfterEvents: 3,
      stallMs: 10_000,
    });

    const abort = new AbortController();
    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true }, { signal: abort.signal })
      .withResponse();
    const seen: OpenAI.ChatCompletionChunk[] = [];
    // The OpenAI SDK ends an aborted stream's iteration quietly rather than raising.
    for await (const chunk of data) {
      seen.push(chunk);
      if (textOf(seen) !== '') abort.abort();
    }

    // Chunks the SDK had already buffered may still come out after the abort.
    expect(['Partial ', 'Partial output ']).toContain(textOf(seen));
    const runId = runIdOf(response);
    const step = await eventually(async () => {
      const { calls } = await stepsOf(runId);
      expect(calls).toHaveLength(1);
      return calls[0]!;
    });
    expect(step).toMatchObject({ status: 'error', provider_key_id: key.id, error_kind: 'client_disconnect' });
    expect(step.tokens.input).toBeGreaterThan(0);
    expect(step.tokens.output).toBeGreaterThan(0);
    expect(step.cost_usd).toBeGreaterThan(0);
    const run = await g.run(runId);
    expect(run.cost_usd).toBeCloseTo(step.cost_usd, 9);
    expect(run.reserved_usd).toBe(0);
  });
});

/**
 * Runs `fn` with the server's timers answering every sleep at once and
 * noting how long each was asked to be: the proxy's backoff is checked by
 * what it waits for, not by a stopwatch on a busy machine.
 */
async function sleepsDuring(fn: () => Promise<unknown>): Promise<number[]> {
  const timers = g.t.services.ctx.timers;
  const real = timers.sleep;
  const asked: number[] = [];
  timers.sleep = (ms: number) => {
    asked.push(ms);
    return Promise.resolve();
  };
  try {
    await fn();
  } finally {
    timers.sleep = real;
  }
  return asked;
}

describe('the plan as a whole', () => {
  it('backoff_first waits out a short Retry-After and retries the same key before failing over', async () => {
    const a = await providerKey('openai', 'a');
    const b = await providerKey('openai', 'b');
    const lane = await agentOn([a, b], { on_rate_limit: 'backoff_first', max_retries: 3 });
    fails(a, { status: 429, retryAfterSec: 1 });
    let content: string | null | undefined;
    const waits = await sleepsDuring(async () => {
      content = (await lane.openai.chat.completions.create(chat)).choices[0]!.message.content;
    });
    expect(content).toBeTruthy();
    // The Retry-After's one second, waited once.
    expect(waits).toEqual([1000]);
    // a, a again after the wait: b was never needed.
    expect(heard()).toEqual(secrets(a, a));

    // failover_first (the default) moves on to the next key at once.
    const c = await providerKey('openai', 'c');
    const d = await providerKey('openai', 'd');
    const quick = await agentOn([c, d]);
    g.mock.reset();
    fails(c, { status: 429, retryAfterSec: 1 });
    expect(await sleepsDuring(() => quick.openai.chat.completions.create(chat))).toEqual([]);
    expect(heard()).toEqual(secrets(c, d));
  });

  it('backoff_first fails over at once when the Retry-After is too long to wait', async () => {
    const a = await providerKey('openai', 'a');
    const b = await providerKey('openai', 'b');
    const lane = await agentOn([a, b], { on_rate_limit: 'backoff_first' });
    fails(a, { status: 429, retryAfterSec: 120 });
    expect(await sleepsDuring(() => lane.openai.chat.completions.create(chat))).toEqual([]);
    expect(heard()).toEqual(secrets(a, b));
  });

  it('every key failing: 502 provider_error listing each attempt', async () => {
    const a = await providerKey('openai', 'a');
    const b = await providerKey('openai', 'b');
    const lane = await agentOn([a, b], { max_retries: 2 });
    fails(a, { status: 503 });
    fails(b, { status: 500, message: 'boom' });

    const err = await rejection(lane.openai.chat.completions.create(chat));

    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    const e = err as InstanceType<typeof OpenAI.InternalServerError>;
    expect(e.status).toBe(502);
    expect(e.code).toBe('provider_error');
    // The run is named in the headers too, as on every proxied answer.
    expect(e.headers.get('x-paddock-run-id')).toBe((e.error as Json).run_id);
    expect(e.type).toBe('provider_error');
    const body = e.error as Json;
    expect(body.details.attempts).toEqual([
      { provider: 'openai', status: 503, message: expect.stringContaining('http_error') },
      { provider: 'openai', status: 500, message: 'http_error: boom' },
    ]);
    expect(heard()).toEqual(secrets(a, b));
    const { failovers, calls } = await stepsOf(body.run_id);
    expectFailover(
      failovers[0]!,
      [
        { key: a, kind: 'http_error', status: 503 },
        { key: b, kind: 'http_error', status: 500 },
      ],
      null,
    );
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider: null,
      provider_key_id: null,
      error_kind: 'http_error',
      cost_usd: 0,
      failover_attempts: 2,
    });
    const run = await g.run(body.run_id);
    expect(run).toMatchObject({ had_failover: true, cost_usd: 0, reserved_usd: 0 });
  });

  it('every key failing through the Anthropic SDK: a 502 it raises with the attempts', async () => {
    const a = await providerKey('anthropic', 'a');
    // Anthropic's 529 "overloaded" is in the default retry_on.
    const lane = await agentOn([a], { max_retries: 1 });
    fails(a, { status: 529, message: 'Overloaded' });

    const err = await rejection(lane.anthropic.messages.create(msg));

    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    const e = err as InstanceType<typeof Anthropic.InternalServerError>;
    expect(e.status).toBe(502);
    expect((e.error as Json).error).toMatchObject({
      type: 'provider_error',
      code: 'provider_error',
      details: { attempts: [{ provider: 'anthropic', status: 529 }] },
    });
  });

  it('max_retries is the total number of attempts', async () => {
    const keys = [
      await providerKey('openai', 'a'),
      await providerKey('openai', 'b'),
      await providerKey('openai', 'c'),
    ];
    const lane = await agentOn(keys, { max_retries: 2 });
    for (const k of keys) fails(k, { status: 500, times: Number.POSITIVE_INFINITY });

    const err = await rejection(lane.openai.chat.completions.create(chat));

    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect(heard()).toEqual(secrets(keys[0]!, keys[1]!));
  });

  it('a single key is tried again up to max_retries', async () => {
    const only = await providerKey('openai', 'only');
    const lane = await agentOn([only], { max_retries: 3 });
    fails(only, [{ status: 503 }, { status: 429 }]);

    const { data, response } = await lane.openai.chat.completions.create(chat).withResponse();

    expect(data.choices[0]!.message.content).toBe('This is the mock model answering.');
    expect(heard()).toEqual(secrets(only, only, only));
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(
      failovers[0]!,
      [
        { key: only, kind: 'http_error', status: 503 },
        { key: only, kind: 'http_error', status: 429 },
      ],
      only,
    );
    expectServed(calls[0]!, only, 2);
  });

  it('across providers: the OpenAI key fails, the Anthropic key answers the OpenAI-format request', async () => {
    const oa = await providerKey('openai', 'oa');
    const an = await providerKey('anthropic', 'an');
    const lane = await agentOn(
      [oa, an],
      { default_chain: ['openai', 'anthropic'] },
      {
        model_mapping: { 'gpt-4o': { anthropic: 'claude-sonnet-4-5' } },
      },
    );
    fails(oa, { status: 500 });
    g.mock.replyFor({ apiKey: an.secret }, { text: 'Bonjour from Claude', usage: { input: 11, output: 4 } });

    const { data, response } = await lane.openai.chat.completions.create(chat).withResponse();

    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]!.message.content).toBe('Bonjour from Claude');
    expect(data.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 4 });
    expect(response.headers.get('x-paddock-provider')).toBe('anthropic');
    expect(response.headers.get('x-paddock-model')).toBe('claude-sonnet-4-5');
    expect(g.mock.requests.map((r) => [r.path, r.apiKey, r.model])).toEqual([
      ['/v1/chat/completions', oa.secret, 'gpt-4o'],
      ['/v1/messages', an.secret, 'claude-sonnet-4-5'],
    ]);
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: oa, kind: 'http_error', status: 500 }], an);
    expect(failovers[0]!.failover_context).toMatchObject({
      resolved_model: 'claude-sonnet-4-5',
      original_model: 'gpt-4o',
    });
    expectServed(calls[0]!, an, 1);
    expect(calls[0]).toMatchObject({ model: 'claude-sonnet-4-5', tokens: { input: 11, output: 4 } });
  });

  it('across providers on a stream: the Anthropic stream is translated to OpenAI chunks', async () => {
    const oa = await providerKey('openai', 'oa');
    const an = await providerKey('anthropic', 'an');
    const lane = await agentOn(
      [oa, an],
      { default_chain: ['openai', 'anthropic'] },
      {
        model_mapping: { 'gpt-4o': { anthropic: 'claude-sonnet-4-5' } },
      },
    );
    fails(oa, { emptyStream: true });
    g.mock.replyFor({ apiKey: an.secret }, { chunks: ['Translated ', 'stream'] });

    const { data, response } = await lane.openai.chat.completions
      .create({ ...chat, stream: true })
      .withResponse();
    const { items, error } = await drain(data);

    expect(error).toBeUndefined();
    expect(textOf(items)).toBe('Translated stream');
    const { failovers, calls } = await stepsOf(runIdOf(response));
    expectFailover(failovers[0]!, [{ key: oa, kind: 'empty_stream', status: 200 }], an);
    expectServed(calls[0]!, an, 1);
  });

  it('round_robin alternates between the keys of a provider', async () => {
    const a = await providerKey('openai', 'a');
    const b = await providerKey('openai', 'b');
    const lane = await agentOn([a, b], { load_balancing: 'round_robin' });

    for (let i = 0; i < 4; i++) await lane.openai.chat.completions.create(chat);

    expect(heard()).toEqual(secrets(a, b, a, b));
  });
});

describe('the circuit breaker', () => {
  const health = async (key: Key) => {
    const res = await g.t.call('GET', '/v1/providers/health', { token: g.user.token });
    expect(res.status).toBe(200);
    return (res.body.data as Json[]).find((h) => h.provider_key_id === key.id)!;
  };

  it('opens after failure_threshold failures, skips the key, and closes after a good half-open probe', async () => {
    const flaky = await providerKey('openai', 'flaky');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([flaky, good], {
      circuit_breaker: { failure_threshold: 2, recovery_timeout_ms: 5000, max_recovery_timeout_ms: 60_000 },
    });
    fails(flaky, { status: 500, times: Number.POSITIVE_INFINITY });
    // The steps each call added (ids sort by time), whether or not the calls share a run.
    let lastId = '';
    const ask = async () => {
      const { response } = await lane.openai.chat.completions.create(chat).withResponse();
      const added = (await stepsOf(runIdOf(response))).all.filter((s) => s.id > lastId);
      for (const s of added) if (s.id > lastId) lastId = s.id;
      return {
        failovers: added.filter((s) => s.type === 'failover_transition'),
        calls: added.filter((s) => s.type === 'llm_call'),
      };
    };

    await ask();
    expect(await health(flaky)).toMatchObject({ state: 'closed', failure_count: 1 });
    await ask();
    const opened = await health(flaky);
    expect(opened).toMatchObject({ state: 'open', failure_count: 2 });
    expect(Date.parse(opened.recovery_at) - Date.parse(opened.opened_at)).toBe(5000);
    expect(heard()).toEqual(secrets(flaky, good, flaky, good));

    // Open: the broken key is not tried at all, so there is no failover either.
    g.mock.reset();
    fails(flaky, { status: 500, times: Number.POSITIVE_INFINITY });
    const skipped = await ask();
    expect(heard()).toEqual(secrets(good));
    expect(skipped.calls).toMatchObject([{ provider_key_id: good.id, failover_attempts: 0 }]);
    expect(skipped.failovers).toHaveLength(0);

    // After the cooldown one probe goes out; it fails, so the cooldown doubles.
    g.t.clock.advance(5000);
    g.mock.reset();
    fails(flaky, { status: 500 });
    await ask();
    expect(heard()).toEqual(secrets(flaky, good));
    const reopened = await health(flaky);
    expect(reopened.state).toBe('open');
    expect(Date.parse(reopened.recovery_at) - Date.parse(reopened.opened_at)).toBe(10_000);

    g.t.clock.advance(5000);
    g.mock.reset();
    await ask();
    expect(heard()).toEqual(secrets(good));

    // The probe after the doubled cooldown succeeds: closed again, and the key serves.
    g.t.clock.advance(5000);
    g.mock.reset();
    const recovered = await ask();
    expect(heard()).toEqual(secrets(flaky));
    expect(recovered.calls.at(-1)).toMatchObject({ provider_key_id: flaky.id, status: 'success' });
    expect(await health(flaky)).toMatchObject({ state: 'closed', failure_count: 0, recovery_at: null });
  });

  it('a client that goes away before the answer: no failover, the input charged, the circuit untouched', async () => {
    const key = await providerKey('openai', 'quiet');
    const spare = await providerKey('openai', 'spare');
    const lane = await agentOn([key, spare], { circuit_breaker: { failure_threshold: 1 } });
    fails(key, { hang: true });

    const abort = new AbortController();
    const call = lane.openai.chat.completions.create(chat, { signal: abort.signal });
    await eventually(async () => expect(g.mock.requests).toHaveLength(1));
    abort.abort();
    expect(await rejection(call)).toBeInstanceOf(OpenAI.APIUserAbortError);

    const runId = await eventually(async () => {
      const runs = await g.t.call('GET', '/v1/runs', {
        token: g.user.token,
        query: { agent_id: lane.agent.id },
      });
      expect(runs.body.data).toHaveLength(1);
      return runs.body.data[0].id as string;
    });
    const { failovers, calls } = await eventually(async () => {
      const s = await stepsOf(runId);
      expect(s.calls).toHaveLength(1);
      return s;
    });
    expect(failovers).toHaveLength(0);
    expect(calls[0]).toMatchObject({
      status: 'error',
      provider_key_id: key.id,
      error_kind: 'client_disconnect',
      failover_attempts: 0,
      tokens: { output: 0 },
    });
    expect(calls[0]!.tokens.input).toBeGreaterThan(0);
    expect(calls[0]!.cost_usd).toBeGreaterThan(0);
    expect(await g.run(runId)).toMatchObject({
      had_failover: false,
      cost_usd: calls[0]!.cost_usd,
      reserved_usd: 0,
    });
    expect(heard()).toEqual(secrets(key));
    expect(await health(key)).toMatchObject({ state: 'closed', failure_count: 0 });
  });

  it('streams that keep breaking mid-way open the circuit too', async () => {
    const breaking = await providerKey('openai', 'breaking');
    const good = await providerKey('openai', 'good');
    const lane = await agentOn([breaking, good], { circuit_breaker: { failure_threshold: 2 } });
    fails(breaking, { cutAfterEvents: 3, times: Number.POSITIVE_INFINITY });
    const stream = async () => {
      const s = await lane.openai.chat.completions.create({ ...chat, stream: true });
      return drain(s);
    };

    expect((await stream()).error).toBeInstanceOf(OpenAI.APIError);
    expect((await stream()).error).toBeInstanceOf(OpenAI.APIError);
    expect(await health(breaking)).toMatchObject({ state: 'open', failure_count: 2 });

    const third = await stream();
    expect(third.error).toBeUndefined();
    expect(textOf(third.items)).toBe('This is the mock model answering.');
    expect(heard()).toEqual(secrets(breaking, breaking, good));
  });
});

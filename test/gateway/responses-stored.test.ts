import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { idTimeMs } from '../../src/core/ids.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { chatUpstreamAgent, type GatewayFixture, startGateway } from '../support/gateway.ts';
import { rejection } from '../support/sdk.ts';

// The Responses API's stored responses (get, list input items, delete, the
// tenancy of previous_response_id) and its governance: validation, tool
// rules, approvals and dry runs. The answers come from a chat upstream.

let g: GatewayFixture;
let compat: Json & { api_key: string };
let chat: () => OpenAI;
beforeAll(async () => {
  g = await startGateway();
  compat = await chatUpstreamAgent(g);
  chat = () => g.openai({ apiKey: compat.api_key });
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const weather: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  parameters: { type: 'object', properties: { city: { type: 'string' } } },
  strict: false,
};

describe('stored responses', () => {
  it('gets, lists and deletes a response; store:false keeps none', async () => {
    g.mock.reply([{ text: 'kept' }, { text: 'not kept' }]);
    const kept = await chat().responses.create({ model: 'gpt-4o', input: 'one' });
    const got = await chat().responses.retrieve(kept.id);
    expect(got).toMatchObject({ id: kept.id, status: 'completed', model: 'gpt-4o' });
    expect(got.output_text).toBe('kept');
    const deleted = await g.t.call('DELETE', `/v1/responses/${kept.id}`, { token: compat.api_key });
    expect(deleted.body).toEqual({ id: kept.id, object: 'response', deleted: true });
    expect(await rejection(chat().responses.retrieve(kept.id))).toBeInstanceOf(OpenAI.NotFoundError);

    const unkept = await chat().responses.create({ model: 'gpt-4o', input: 'two', store: false });
    expect((unkept as Json).store).toBe(false);
    const err = (await rejection(chat().responses.retrieve(unkept.id))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(err.status).toBe(404);
    expect(err.code).toBe('response_not_found');
  });

  it("answers 404 for another agent's and another team's response, sending nothing upstream", async () => {
    g.mock.reply({ text: 'mine' });
    const mine = await chat().responses.create({ model: 'gpt-4o', input: 'one' });
    const sibling = await g.newAgent();
    const other = await g.t.signup();
    const stranger = await createAgent(g.t, other.token);
    for (const apiKey of [sibling.api_key, stranger.api_key]) {
      const client = g.openai({ apiKey });
      expect(await rejection(client.responses.retrieve(mine.id))).toBeInstanceOf(OpenAI.NotFoundError);
      const res = await g.t.call('DELETE', `/v1/responses/${mine.id}`, { token: apiKey });
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'response_not_found', type: 'not_found_error' });
    }
    const before = g.mock.requestCount;
    const err = await rejection(
      g.openai({ apiKey: sibling.api_key }).responses.create({
        model: 'gpt-4o',
        previous_response_id: mine.id,
        input: 'go on',
      }),
    );
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(g.mock.requestCount).toBe(before);
    expect((await chat().responses.retrieve(mine.id)).id).toBe(mine.id);
  });
});

describe('retention', () => {
  it('deletes stored responses older than PADDOCK_RESPONSE_RETENTION_DAYS (30 by default) and keeps the newer ones', async () => {
    g.mock.reply([{ text: 'old' }, { text: 'recent' }]);
    const old = await chat().responses.create({ model: 'gpt-4o', input: 'one' });
    // The next id must be of a later millisecond: a response's id carries the time it was made.
    while (Date.now() <= idTimeMs(old.id)) await new Promise((r) => setTimeout(r, 1));
    const recent = await chat().responses.create({
      model: 'gpt-4o',
      input: 'two',
      previous_response_id: old.id,
    });
    const start = g.t.clock.now();
    try {
      // Thirty days after the recent one was made: the old one is past the retention, the recent one is not yet.
      g.t.clock.set(new Date(idTimeMs(recent.id) + 30 * DAY_MS));
      expect(await g.t.services.responseRetention.sweep()).toBeGreaterThanOrEqual(1);
      expect(await rejection(chat().responses.retrieve(old.id))).toBeInstanceOf(OpenAI.NotFoundError);
      const kept = await chat().responses.retrieve(recent.id);
      expect(kept.output_text).toBe('recent');
      // Its conversation was stored with it: the old turn is still there.
      const items = await g.t.call('GET', `/v1/responses/${recent.id}/input_items`, {
        token: compat.api_key,
        query: { order: 'asc' },
      });
      expect(JSON.stringify(items.body.data)).toContain('one');
      expect(await g.t.services.responseRetention.sweep()).toBe(0);
    } finally {
      g.t.clock.set(start);
    }
  });
});

describe('governance and bad input', () => {
  it('refuses malformed requests with 400 in OpenAI’s shape, before any provider call', async () => {
    const before = g.mock.requestCount;
    const bad: Array<Record<string, unknown>> = [
      { model: 'gpt-4o' },
      { model: 'gpt-4o', input: [{ type: 'function_call', name: 'f', arguments: '{}' }] },
      { model: 'gpt-4o', input: [{ role: 'robot', content: 'hi' }] },
      { model: 'gpt-4o', input: 'hi', max_output_tokens: 0 },
      { model: 'gpt-4o', input: 'hi', text: { format: { type: 'json_schema', schema: {} } } },
      { model: 'gpt-4o', input: 'hi', tools: [{ type: 'function' }] },
      // Paddock keeps responses itself and the provider stores nothing: no background mode, no conversations.
      { model: 'gpt-4o', input: 'hi', background: true },
      { model: 'gpt-4o', input: 'hi', conversation: 'conv_123' },
    ];
    for (const body of bad) {
      const res = await g.t.call('POST', '/v1/responses', { token: compat.api_key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'validation_failed' });
    }
    const err = await rejection(chat().responses.create({ model: 'gpt-4o', input: 'hi', temperature: 5 }));
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(g.mock.requestCount).toBe(before);
  });

  it('blocks a function tool the policy blocks, and asks approval for one it guards', async () => {
    const before = g.mock.requestCount;
    const blocked = await g.newAgent(
      { blocked_tools: ['get_weather'] },
      { provider_keys: compat.provider_keys },
    );
    const err = (await rejection(
      g
        .openai({ apiKey: blocked.api_key })
        .responses.create({ model: 'gpt-4o', input: 'hi', tools: [weather] }),
    )) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(err.code).toBe('tool_blocked');

    const guarded = await g.newAgent(
      { require_approval: ['get_weather'] },
      { provider_keys: compat.provider_keys },
    );
    const res = await g.t.call('POST', '/v1/responses', {
      token: guarded.api_key,
      body: { model: 'gpt-4o', input: 'hi', tools: [weather] },
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      status: 'awaiting_approval',
      approval_requests: [{ tool: 'get_weather' }],
    });
    expect(g.mock.requestCount).toBe(before);
  });

  it('reserves for the whole conversation that previous_response_id restores', async () => {
    const limited = await g.newAgent(
      { budget: { hard_limit_tokens: 400 } },
      { provider_keys: compat.provider_keys },
    );
    const client = g.openai({ apiKey: limited.api_key, headers: { 'x-paddock-new-run': 'true' } });
    const long = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');
    g.mock.reply([
      { text: long, usage: { input: 5, output: 10 } },
      { text: 'short', usage: { input: 5, output: 5 } },
    ]);
    const first = await client.responses.create({ model: 'gpt-4o', input: 'hi', max_output_tokens: 16 });
    const before = g.mock.requestCount;
    const err = (await rejection(
      client.responses.create({
        model: 'gpt-4o',
        previous_response_id: first.id,
        input: 'and?',
        max_output_tokens: 16,
      }),
    )) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(402);
    expect(err.code).toBe('budget_exceeded');
    expect(g.mock.requestCount).toBe(before);
    // The same request without the history fits.
    const alone = await client.responses.create({ model: 'gpt-4o', input: 'and?', max_output_tokens: 16 });
    expect(alone.output_text).toBe('short');
  });

  it('reserves for max_output_tokens, whatever max_tokens beside it says', async () => {
    const limited = await g.newAgent(
      { budget: { hard_limit_tokens: 2000 } },
      { provider_keys: compat.provider_keys },
    );
    const client = g.openai({ apiKey: limited.api_key, headers: { 'x-paddock-new-run': 'true' } });
    const before = g.mock.requestCount;
    // max_tokens is no Responses field: the provider would be sent max_output_tokens (64 000).
    const err = (await rejection(
      client.responses.create({
        model: 'gpt-4o',
        input: 'hi',
        max_output_tokens: 64_000,
        max_tokens: 1,
      } as never),
    )) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(402);
    expect(g.mock.requestCount).toBe(before);
  });

  it('answers a dry run in the Responses shape, plain and streamed', async () => {
    const before = g.mock.requestCount;
    const dry = await g.newAgent({ dry_run: true }, { provider_keys: compat.provider_keys });
    const client = g.openai({ apiKey: dry.api_key });
    const answer = await client.responses.create({ model: 'gpt-4o', input: 'hi' });
    expect(answer.id).toMatch(/^resp_/);
    expect(answer.output_text).toContain('[dry run]');
    const stream = await client.responses.create({ model: 'gpt-4o', input: 'hi', stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    expect(events[0]!.type).toBe('response.created');
    expect(events.at(-1)!.type).toBe('response.completed');
    expect(g.mock.requestCount).toBe(before);
  });
});

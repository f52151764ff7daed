import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

// What governance refuses, in which order, and what the client and the run
// record see: budgets (also under 200 concurrent calls), rate limits, model
// and tool rules, approvals, run controls and dry runs.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

type Agent = Json & { api_key: string };

/** A raw proxy call (status, headers and the body exactly as sent), as an agent. */
async function proxy(
  agent: Agent,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
  path = '/v1/chat/completions',
) {
  const res = await fetch(`${g.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${agent.api_key}`, ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(text) as Json };
}

const hello = (model = 'gpt-4o', extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hello' }],
  max_tokens: 100,
  ...extra,
});

const weatherTool = {
  type: 'function',
  function: { name: 'get_weather', parameters: { type: 'object', properties: {} } },
};
const shellTool = { type: 'function', function: { name: 'shell_exec', parameters: { type: 'object' } } };

describe('budgets', () => {
  it('refuses with 402 when the call may cost more than the run has left, and records the block', async () => {
    const agent = await g.newAgent({ budget: { hard_limit_usd: 0.0001 } });
    const res = await proxy(agent, hello());
    expect(res.status).toBe(402);
    expect(res.body.error).toMatchObject({ type: 'governance_block', code: 'budget_exceeded' });
    expect(res.body.error.message).toContain('hard limit');
    const runId = res.body.error.run_id;
    expect(runId).toMatch(/^run_/);
    expect(res.headers.get('x-paddock-run-id')).toBe(runId);
    expect(g.mock.requests).toHaveLength(0);
    const steps = await g.steps(runId);
    expect(steps.map((s) => s.status)).toEqual(['budget_blocked']);
    expect((await g.run(runId)).has_governance_block).toBe(true);

    // The SDKs raise it as an API error with status 402 and Paddock's code.
    const err = await g
      .openai({ apiKey: agent.api_key })
      .chat.completions.create(hello() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded');
    const aerr = await g
      .anthropic({ apiKey: agent.api_key })
      .messages.create({
        model: 'claude-sonnet-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .catch((e: unknown) => e);
    expect(aerr).toBeInstanceOf(Anthropic.APIError);
    expect((aerr as InstanceType<typeof Anthropic.APIError>).status).toBe(402);
  });

  it('holds under 200 concurrent calls: spend stays within one call’s maximum of the limit, every refusal is 402', async () => {
    // gpt-4o at $2.50/$10 per million: a call reserves ≈ 2 input tokens and its 100 output tokens ≈ $0.001005.
    // The mock answers 60 output tokens, so settled calls give some of their reservation back.
    const maxCallUsd = (2 * 2.5 + 100 * 10) / 1e6;
    const limitUsd = 50 * maxCallUsd;
    const agent = await g.newAgent({ budget: { hard_limit_usd: limitUsd } });
    g.mock.reply({ text: 'ok', usage: { input: 2, output: 60 }, times: Number.POSITIVE_INFINITY });
    const first = await proxy(agent, hello(), { 'x-paddock-new-run': 'true' });
    expect(first.status).toBe(200);
    const runId = first.headers.get('x-paddock-run-id')!;

    const results = await Promise.all(
      Array.from({ length: 200 }, () => proxy(agent, hello(), { 'x-paddock-run-id': runId })),
    );
    const statuses = results.map((r) => r.status);
    const ok = statuses.filter((s) => s === 200).length;
    const refused = results.filter((r) => r.status !== 200);
    expect(refused.every((r) => r.status === 402 && r.body.error.code === 'budget_exceeded')).toBe(true);
    // At least what fits at the maximum cost gets through; not everything does.
    expect(ok + 1).toBeGreaterThanOrEqual(50);
    expect(refused.length).toBeGreaterThan(0);

    const run = await g.run(runId);
    expect(run.cost_usd).toBeLessThanOrEqual(limitUsd + maxCallUsd + 1e-9);
    expect(run.reserved_usd).toBe(0);
    // Every admitted call was charged what the provider reported: spend = calls × their cost.
    const callUsd = (2 * 2.5 + 60 * 10) / 1e6;
    expect(run.cost_usd).toBeCloseTo((ok + 1) * callUsd, 9);
    expect(g.mock.requests.length).toBe(ok + 1);
  });

  it('refuses by the hourly cap with 402 hourly_budget_exceeded', async () => {
    // Each call reserves ≈ $0.001005 and, with 100 output tokens, costs about that: the second does not fit.
    const agent = await g.newAgent({ budget: { max_cost_per_hour_usd: 0.0015 } });
    g.mock.reply({ usage: { input: 2, output: 100 } });
    expect((await proxy(agent, hello())).status).toBe(200);
    const res = await proxy(agent, hello());
    expect(res.status).toBe(402);
    expect(res.body.error.code).toBe('hourly_budget_exceeded');
  });

  it('refuses by the run’s token limit', async () => {
    const agent = await g.newAgent({ budget: { hard_limit_tokens: 50 } });
    const res = await proxy(agent, hello());
    expect(res.status).toBe(402);
    expect(res.body.error.code).toBe('budget_exceeded');
    expect(res.body.error.message).toContain('token limit');
  });
});

describe('rate limits', () => {
  it('answers 429 with Retry-After once the minute’s requests are used, per agent', async () => {
    const agent = await g.newAgent({ rate_limits: { max_requests_per_minute: 2 } });
    expect((await proxy(agent, hello())).status).toBe(200);
    expect((await proxy(agent, hello())).status).toBe(200);
    const res = await proxy(agent, hello());
    expect(res.status).toBe(429);
    expect(res.body.error).toMatchObject({ type: 'governance_block', code: 'rate_limited' });
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another agent on its own policy is not affected.
    expect((await proxy(g.agent, hello())).status).toBe(200);
    // A minute later the window has moved on.
    g.t.clock.advance(61_000);
    expect((await proxy(agent, hello())).status).toBe(200);
  });

  it('the SDK raises RateLimitError', async () => {
    const agent = await g.newAgent({ rate_limits: { max_requests_per_minute: 1 } });
    const client = g.openai({ apiKey: agent.api_key });
    await client.chat.completions.create(hello() as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const err = await client.chat.completions
      .create(hello() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('counts tokens per minute', async () => {
    const agent = await g.newAgent({ rate_limits: { max_tokens_per_minute: 150 } });
    g.mock.reply({ usage: { input: 2, output: 200 } });
    expect((await proxy(agent, hello())).status).toBe(200);
    const res = await proxy(agent, hello());
    expect(res.status).toBe(429);
    expect(res.body.error.details).toMatchObject({ limit: 'tokens' });
  });
});

describe('model rules', () => {
  it('blocks by blocked_models and by a non-empty allowed_models, before any provider is called', async () => {
    const agent = await g.newAgent({
      allowed_models: ['gpt-4o*', 'claude-*'],
      blocked_models: ['gpt-4o-mini*'],
    });
    expect((await proxy(agent, hello('gpt-4o'))).status).toBe(200);
    const blocked = await proxy(agent, hello('gpt-4o-mini'));
    expect(blocked.status).toBe(403);
    expect(blocked.body.error).toMatchObject({ type: 'governance_block', code: 'model_not_allowed' });
    const notAllowed = await proxy(agent, hello('gpt-5'));
    expect(notAllowed.status).toBe(403);
    expect(g.mock.requests).toHaveLength(1);
    const steps = await g.steps(blocked.body.error.run_id);
    expect(steps.filter((s) => s.status === 'policy_blocked')).toHaveLength(2);
  });

  it('model_override replaces the model and default_model fills a missing one', async () => {
    const overridden = await g.newAgent({ model_override: 'gpt-4o-mini', blocked_models: ['gpt-5*'] });
    const res = await proxy(overridden, hello('gpt-5'));
    expect(res.status).toBe(200);
    expect(res.headers.get('x-paddock-model')).toBe('gpt-4o-mini');
    expect((g.mock.requests.at(-1)!.body as Json).model).toBe('gpt-4o-mini');

    const defaulted = await g.newAgent({ default_model: 'claude-haiku-4-5' });
    const { model: _none, ...noModel } = hello();
    const answered = await proxy(defaulted, noModel);
    expect(answered.status).toBe(200);
    expect(answered.headers.get('x-paddock-provider')).toBe('anthropic');
    const missing = await proxy(g.agent, noModel);
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe('model_required');
  });
});

describe('tool rules and approvals', () => {
  it('blocks a blocked tool with 403 tool_blocked', async () => {
    const agent = await g.newAgent({ blocked_tools: ['shell_*'] });
    const res = await proxy(agent, hello('gpt-4o', { tools: [weatherTool, shellTool] }));
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('tool_blocked');
    expect(res.body.error.details.tools).toEqual([expect.objectContaining({ tool: 'shell_exec' })]);
    expect((await proxy(agent, hello('gpt-4o', { tools: [weatherTool] }))).status).toBe(200);
  });

  it('asks for approval (202), lets the approved request through once, and refuses a rejected one', async () => {
    const agent = await g.newAgent({ require_approval: ['shell_exec'] });
    const body = hello('gpt-4o', { tools: [shellTool] });
    const asked = await proxy(agent, body);
    expect(asked.status).toBe(202);
    expect(asked.body).toMatchObject({ status: 'awaiting_approval', run_id: expect.stringMatching(/^run_/) });
    const [request] = asked.body.approval_requests as Array<{ id: string; tool: string }>;
    expect(request).toMatchObject({ id: expect.stringMatching(/^apr_/), tool: 'shell_exec' });
    expect(g.mock.requests).toHaveLength(0);

    // Replaying before a decision is refused; approving lets exactly this request through, once.
    const early = await proxy(agent, body, { 'x-paddock-approval-id': request!.id });
    expect(early.status).toBe(403);
    expect(early.body.error.code).toBe('approval_invalid');
    const approved = await g.t.call('POST', `/v1/approvals/${request!.id}/approve`, { token: g.user.token });
    expect(approved.status).toBe(200);
    expect(approved.body.status).toBe('approved');
    const other = await proxy(agent, hello('gpt-4o', { tools: [shellTool], max_tokens: 7 }), {
      'x-paddock-approval-id': request!.id,
    });
    expect(other.status).toBe(403);
    const replay = await proxy(agent, body, { 'x-paddock-approval-id': request!.id });
    expect(replay.status).toBe(200);
    expect(g.mock.requests).toHaveLength(1);
    const again = await proxy(agent, body, { 'x-paddock-approval-id': request!.id });
    expect(again.status).toBe(403);

    // Rejected: the replay is refused; a decided approval cannot be decided again.
    const second = await proxy(agent, body);
    const id = second.body.approval_requests[0].id as string;
    expect((await g.t.call('POST', `/v1/approvals/${id}/reject`, { token: g.user.token })).status).toBe(200);
    const late = await g.t.call('POST', `/v1/approvals/${id}/approve`, { token: g.user.token });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('approval_not_pending');
    expect((await proxy(agent, body, { 'x-paddock-approval-id': id })).status).toBe(403);
  });
});

describe('the order of checks', () => {
  it('auth → policy → run → budget → rate limit → model → tools: the first refusal answers', async () => {
    // A request that breaks every rule hears the budget first.
    const strict = {
      budget: { hard_limit_usd: 0.00001 },
      rate_limits: { max_requests_per_minute: 1 },
      blocked_models: ['gpt-4o'],
      blocked_tools: ['get_weather'],
    };
    const everything = hello('gpt-4o', { tools: [weatherTool] });
    const a = await g.newAgent(strict);
    expect((await proxy(a, everything)).body.error.code).toBe('budget_exceeded');
    // Without the budget: the rate limit (after one admitted request)…
    const { budget: _unlimited, ...withoutBudget } = strict;
    const b = await g.newAgent(withoutBudget);
    expect((await proxy(b, everything)).body.error.code).toBe('model_not_allowed');
    expect((await proxy(b, everything)).body.error.code).toBe('rate_limited');
    // …then the model, then the tools.
    const c = await g.newAgent({ blocked_models: ['gpt-4o'], blocked_tools: ['get_weather'] });
    expect((await proxy(c, everything)).body.error.code).toBe('model_not_allowed');
    const d = await g.newAgent({ blocked_tools: ['get_weather'] });
    expect((await proxy(d, everything)).body.error.code).toBe('tool_blocked');
    // A disabled agent is refused before any of it.
    const patched = await g.t.call('PATCH', `/v1/agents/${a.id}`, {
      token: g.user.token,
      body: { status: 'disabled' },
    });
    expect(patched.status).toBe(200);
    const disabled = await proxy(a, everything);
    expect(disabled.status).toBe(403);
    expect(disabled.body.error.code).toBe('agent_disabled');
    expect(g.mock.requests).toHaveLength(0);
  });
});

describe('run controls', () => {
  it('names a new run, merges metadata, attaches by id, and strips the controls before forwarding', async () => {
    const agent = await g.newAgent();
    const started = await proxy(agent, hello('gpt-4o', { 'x-paddock-run-metadata': { ticket: 'T-1' } }), {
      'x-paddock-new-run': 'true',
      'x-paddock-run-name': 'triage T-1',
    });
    expect(started.status).toBe(200);
    const runId = started.headers.get('x-paddock-run-id')!;
    const forwarded = g.mock.requests.at(-1)!.body as Json;
    expect(Object.keys(forwarded).filter((k) => k.startsWith('x-paddock'))).toEqual([]);

    const attached = await proxy(agent, hello(), { 'x-paddock-run-id': runId });
    expect(attached.headers.get('x-paddock-run-id')).toBe(runId);
    const run = await g.run(runId);
    expect(run).toMatchObject({ name: 'triage T-1', metadata: { ticket: 'T-1' }, step_count: 2 });

    // Without controls, the next call joins the same run (implicit grouping by time window).
    const implicit = await proxy(agent, hello());
    expect(implicit.headers.get('x-paddock-run-id')).toBe(runId);
    // A run of another agent is not found.
    const foreign = await proxy(g.agent, hello(), { 'x-paddock-run-id': runId });
    expect(foreign.status).toBe(404);
    const bad = await proxy(agent, hello(), { 'x-paddock-run-metadata': 'not json' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_run_control');
  });

  it('runs under an allowed policy by name, and says when it fell back to the default', async () => {
    const other = await g.t.call('POST', '/v1/policies', {
      token: g.user.token,
      body: { name: `strict-${Date.now()}`, blocked_models: ['gpt-4o'] },
    });
    const agent = await g.newAgent({}, { allowed_policies: [other.body.id] });
    const chosen = await proxy(agent, hello(), { 'x-paddock-run-policy': other.body.name });
    expect(chosen.status).toBe(403);
    expect(chosen.body.error.code).toBe('model_not_allowed');
    const unknown = await proxy(agent, hello(), { 'x-paddock-run-policy': 'no-such-policy' });
    expect(unknown.status).toBe(200);
    expect(unknown.headers.get('x-paddock-policy-fallback-reason')).toBe('not_found');
  });

  it('names a fallback policy outside ASCII in its header, streamed or not', async () => {
    const name = `бюджет-预算-${Date.now()}`;
    const agent = await g.newAgent({ name });
    const plain = await proxy(agent, hello(), { 'x-paddock-run-policy': 'no-such-policy' });
    expect(plain.status).toBe(200);
    expect(decodeURIComponent(plain.headers.get('x-paddock-policy-fallback')!)).toBe(name);
    const streamed = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${agent.api_key}`,
        'x-paddock-run-policy': 'no-such-policy',
      },
      body: JSON.stringify(hello('gpt-4o', { stream: true })),
    });
    expect(streamed.status).toBe(200);
    expect(decodeURIComponent(streamed.headers.get('x-paddock-policy-fallback')!)).toBe(name);
    expect(await streamed.text()).toContain('data: [DONE]');
  });

  it('a force-stopped run refuses calls until it is unblocked', async () => {
    const agent = await g.newAgent();
    const first = await proxy(agent, hello());
    const runId = first.headers.get('x-paddock-run-id')!;
    const stopped = await g.t.call('POST', `/v1/runs/${runId}/stop`, { token: g.user.token });
    expect(stopped.status).toBe(200);
    const refused = await proxy(agent, hello(), { 'x-paddock-run-id': runId });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('run_force_stopped');
    // Implicit calls during the cooldown are blocked too; unblock lifts it.
    const cooled = await proxy(agent, hello());
    expect(cooled.status).toBe(403);
    expect(cooled.body.error.code).toBe('run_blocked_after_force_stop');
    expect((await g.t.call('POST', `/v1/runs/${runId}/unblock`, { token: g.user.token })).status).toBe(200);
    expect((await proxy(agent, hello())).status).toBe(200);
  });
});

describe('dry run', () => {
  it('runs every check, forwards nothing, answers a zero-cost mock response and records a dry_run step', async () => {
    const agent = await g.newAgent({ dry_run: true });
    const res = await g
      .openai({ apiKey: agent.api_key })
      .chat.completions.create(hello() as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .withResponse();
    expect(res.data.choices[0]!.message.content).toContain('dry run');
    expect(res.response.headers.get('x-paddock-cost-usd')).toBe('0.000000');
    expect(g.mock.requests).toHaveLength(0);
    const [step] = await g.steps(res.response.headers.get('x-paddock-run-id')!);
    expect(step).toMatchObject({ type: 'dry_run', status: 'success', cost_usd: 0 });
  });
});

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import { mockPromptTokens } from '../support/mock-llm.ts';

// A hard limit under concurrent streams, against a provider that counts three times
// the old estimate of 4 characters a token (text dense in tokens: emoji). Every admitted
// call is reserved before any settles, so what the reservation underestimates, each of
// the 50 concurrent calls adds to the overshoot.

let g: GatewayFixture;
beforeAll(async () => {
  g = await startGateway();
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

const prompt = '🦊🐙🌵🍉🚀🎲🧩🪐 '.repeat(100);

describe('the reservation covers what the provider counts', () => {
  it.each([
    // gpt-4o: $2.50 in, $10 out per million tokens; counted with its own tokenizer.
    { format: 'openai', model: 'gpt-4o', path: '/v1/chat/completions', inUsd: 2.5, outUsd: 10 },
    // Claude: $3 / $15; no published tokenizer, so the conservative factor.
    { format: 'anthropic', model: 'claude-sonnet-4-5', path: '/v1/messages', inUsd: 3, outUsd: 15 },
    // The Responses API: passed through to OpenAI, and translated to Anthropic.
    { format: 'responses', model: 'gpt-4o', path: '/v1/responses', inUsd: 2.5, outUsd: 10 },
    { format: 'responses', model: 'claude-sonnet-4-5', path: '/v1/responses', inUsd: 3, outUsd: 15 },
  ])(
    '$format to $model: 50 concurrent streams pass the hard limit by at most one call',
    async ({ format, model, path, inUsd, outUsd }) => {
      const body =
        format === 'responses'
          ? { model, max_output_tokens: 16, stream: true, input: prompt }
          : { model, max_tokens: 16, stream: true, messages: [{ role: 'user', content: prompt }] };
      const inputTokens = 3 * mockPromptTokens(body);
      const output = 4;
      // Answers after a second, so the calls are all in flight at once (a faster answer
      // settles some before others are admitted, which only makes the limit easier to hold).
      g.mock.reply({
        text: 'ok ok ok',
        usage: { input: inputTokens, output },
        delayMs: 1000,
        times: Number.POSITIVE_INFINITY,
      });
      // Costs are whole micro-dollars, rounded up per call.
      const callUsd = Math.ceil(inputTokens * inUsd + output * outUsd) / 1e6;
      // Room for 20 calls at their real cost: 50 concurrent calls ask for more than that.
      const limitUsd = 20 * callUsd;
      const agent = await g.newAgent({ budget: { hard_limit_usd: limitUsd } });
      const call = async (headers: Record<string, string>) => {
        const res = await fetch(`${g.url}${path}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${agent.api_key}`,
            ...headers,
          },
          body: JSON.stringify(body),
        });
        return { status: res.status, runId: res.headers.get('x-paddock-run-id')!, text: await res.text() };
      };
      const first = await call({ 'x-paddock-new-run': 'true' });
      expect(first.status).toBe(200);

      const results = await Promise.all(
        Array.from({ length: 50 }, () => call({ 'x-paddock-run-id': first.runId })),
      );

      const ok = results.filter((r) => r.status === 200).length;
      expect(results.every((r) => r.status === 200 || r.status === 402)).toBe(true);
      expect(ok).toBeLessThan(50);
      const run = await g.run(first.runId);
      expect(run.reserved_usd).toBe(0);
      // Every admitted call was charged what the provider counted…
      expect(run.cost_usd).toBeCloseTo((ok + 1) * callUsd, 6);
      // …and together they pass the limit by less than one call's reservation (which is at least its cost).
      expect(run.cost_usd).toBeLessThanOrEqual(limitUsd + callUsd + 1e-9);
    },
  );
});

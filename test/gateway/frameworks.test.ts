import { randomUUID } from 'node:crypto';
import { createOpenAI } from '@ai-sdk/openai';
import { Agent, tool as agentTool, OpenAIProvider, Runner } from '@openai/agents';
import { tool as aiTool, generateText, type LanguageModel, stepCountIs, streamText } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createProviderKey, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

// Agent frameworks at their defaults, pointed at Paddock as a user would: the
// Vercel AI SDK's OpenAI provider (`openai(model)`: the Responses API; and
// `openai.chat(model)`: chat completions) and the OpenAI Agents SDK's default
// provider (the Responses API). Each drives one tool-calling conversation:
// the model asks for the tool, the framework runs it and sends its result
// back, the model answers with it. Paddock translates to the upstream's wire
// format and records both model calls in one run.

let g: GatewayFixture;
let compatibleKey: Json;
beforeAll(async () => {
  g = await startGateway();
  compatibleKey = await createProviderKey(g.t, g.user.token, {
    provider: 'openai_compatible',
    api_key: 'sk-compatible-test',
    base_url: g.mock.url,
  });
});
afterAll(() => g.close());
beforeEach(() => g.mock.reset());

interface Upstream {
  provider: 'openai' | 'openai_compatible' | 'anthropic';
  model: string;
  /** Where a Responses API call lands upstream, and where a chat-completions call does. */
  path: string;
  chatPath: string;
  secret: string;
  keyId(): string;
}

const UPSTREAMS: Upstream[] = [
  {
    // OpenAI itself: the Responses API passes through (the chat provider still goes to chat).
    provider: 'openai',
    model: 'gpt-4o',
    path: '/v1/responses',
    chatPath: '/v1/chat/completions',
    secret: 'sk-openai-test',
    keyId: () => g.keys.openai.id,
  },
  {
    provider: 'openai_compatible',
    model: 'gpt-4o',
    path: '/v1/chat/completions',
    chatPath: '/v1/chat/completions',
    secret: 'sk-compatible-test',
    keyId: () => compatibleKey.id,
  },
  {
    provider: 'anthropic',
    model: 'claude-sonnet-4-5',
    path: '/v1/messages',
    chatPath: '/v1/messages',
    secret: 'sk-ant-test',
    keyId: () => g.keys.anthropic.id,
  },
];

const PROMPT = 'What is the weather in Paris? Use the tool.';
const INSTRUCTIONS = 'You are a terse weather assistant.';
const FIRST_USAGE = { input: 120, output: 15 };
const SECOND_USAGE = { input: 180, output: 12 };
const TOOL_DESCRIPTION = 'Current weather for a city';
const cityArgs = z.object({ city: z.string() });

/**
 * The tool every framework gets: it records the arguments it ran with and
 * answers with a report id no one else knows, so the model's second call
 * proves the result travelled back through Paddock.
 */
function weatherTool() {
  const calls: Array<{ city: string }> = [];
  const reportId = `wx-${randomUUID()}`;
  const execute = async (args: { city: string }) => {
    calls.push(args);
    return { city: args.city, temperature_c: 21, report_id: reportId };
  };
  return { calls, reportId, execute };
}

/** A fresh agent (so the conversation is its own run) bound to this upstream only. */
async function agentFor(up: Upstream): Promise<Json & { api_key: string }> {
  return g.newAgent({}, { provider_keys: { [up.provider]: up.keyId() } });
}

/** The upstream first asks for the tool, then answers with a text that quotes the tool's report id. */
function script(reportId: string): string {
  const final = `It is 21°C in Paris (report ${reportId}).`;
  g.mock.reply([
    { toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }], usage: FIRST_USAGE },
    { text: final, usage: SECOND_USAGE },
  ]);
  return final;
}

/** What every conversation must show, whatever the framework. */
async function expectConversation(
  up: Upstream,
  agent: Json & { api_key: string },
  tool: ReturnType<typeof weatherTool>,
  expected: { text: string; final: string; chat?: boolean },
): Promise<void> {
  const path = expected.chat ? up.chatPath : up.path;
  expect(expected.text).toBe(expected.final);
  expect(expected.text).toContain(tool.reportId);
  expect(tool.calls).toEqual([{ city: 'Paris' }]);

  // Both model calls reached the upstream in its own format, with the sealed key;
  // the second carries the tool's result.
  expect(g.mock.requests.map((r) => [r.path, r.apiKey, r.model])).toEqual([
    [path, up.secret, up.model],
    [path, up.secret, up.model],
  ]);
  expect(JSON.stringify(g.mock.requests[0]!.body)).not.toContain(tool.reportId);
  expect(JSON.stringify(g.mock.requests[1]!.body)).toContain(tool.reportId);
  expect(JSON.stringify(g.mock.requests[1]!.body)).toContain(INSTRUCTIONS);

  // Paddock recorded the conversation as one run of two successful model calls.
  const current = await g.t.call('GET', '/v1/runs/current', { token: agent.api_key });
  expect(current.status).toBe(200);
  const steps = (await g.steps(current.body.id)).filter((s) => s.type === 'llm_call');
  expect(steps).toHaveLength(2);
  const tokens = (u: { input: number; output: number }) => ({
    input: u.input,
    output: u.output,
    cache_read: 0,
    cache_creation: 0,
  });
  expect(steps[0]).toMatchObject({
    status: 'success',
    provider: up.provider,
    model: up.model,
    provider_key_id: up.keyId(),
    tokens: tokens(FIRST_USAGE),
  });
  expect(steps[1]).toMatchObject({
    status: 'success',
    provider: up.provider,
    model: up.model,
    provider_key_id: up.keyId(),
    tokens: tokens(SECOND_USAGE),
  });
}

/** Runs the AI SDK's tool loop (at most three steps), streamed or not; a stream's error is thrown. */
async function aiSdkConversation(
  model: LanguageModel,
  tool: ReturnType<typeof weatherTool>,
  streamed: boolean,
): Promise<string> {
  const options = {
    model,
    system: INSTRUCTIONS,
    prompt: PROMPT,
    tools: {
      get_weather: aiTool({ description: TOOL_DESCRIPTION, inputSchema: cityArgs, execute: tool.execute }),
    },
    stopWhen: stepCountIs(3),
    maxRetries: 0,
  };
  if (!streamed) return (await generateText(options)).text;
  const result = streamText(options);
  let text = '';
  for await (const part of result.fullStream) {
    if (part.type === 'error') throw part.error;
    if (part.type === 'text-delta') text += part.text;
  }
  // The deltas of the final step are the whole answer: the tool step said nothing.
  expect(await result.text).toBe(text);
  return text;
}

describe.each(UPSTREAMS)('agent frameworks to an $provider upstream', (up) => {
  const aiSdk = (agent: Json & { api_key: string }) =>
    createOpenAI({ baseURL: `${g.url}/v1`, apiKey: agent.api_key });

  for (const streamed of [false, true]) {
    const mode = streamed ? 'streamed' : 'not streamed';

    it(`Vercel AI SDK, default OpenAI provider (Responses API), ${mode}: completes the tool loop`, async () => {
      const agent = await agentFor(up);
      const tool = weatherTool();
      const final = script(tool.reportId);
      const text = await aiSdkConversation(aiSdk(agent)(up.model), tool, streamed);
      await expectConversation(up, agent, tool, { text, final });
    });

    it(`Vercel AI SDK, chat-completions provider, ${mode}: completes the tool loop`, async () => {
      const agent = await agentFor(up);
      const tool = weatherTool();
      const final = script(tool.reportId);
      const text = await aiSdkConversation(aiSdk(agent).chat(up.model), tool, streamed);
      await expectConversation(up, agent, tool, { text, final, chat: true });
    });

    it(`OpenAI Agents SDK, default provider (Responses API), ${mode}: completes the tool loop`, async () => {
      const agent = await agentFor(up);
      const tool = weatherTool();
      const final = script(tool.reportId);
      // The default provider, pointed at Paddock; no traces are sent to OpenAI.
      const runner = new Runner({
        modelProvider: new OpenAIProvider({ baseURL: `${g.url}/v1`, apiKey: agent.api_key }),
        tracingDisabled: true,
      });
      const weatherAgent = new Agent({
        name: 'Weather',
        instructions: INSTRUCTIONS,
        model: up.model,
        tools: [
          agentTool({
            name: 'get_weather',
            description: TOOL_DESCRIPTION,
            parameters: cityArgs,
            execute: tool.execute,
          }),
        ],
      });
      let text: unknown;
      if (streamed) {
        const result = await runner.run(weatherAgent, PROMPT, { stream: true, maxTurns: 3 });
        for await (const _event of result) {
          // Drained for its side effects: the run advances as the stream is read.
        }
        await result.completed;
        if (result.error) throw result.error;
        text = result.finalOutput;
      } else {
        text = (await runner.run(weatherAgent, PROMPT, { maxTurns: 3 })).finalOutput;
      }
      await expectConversation(up, agent, tool, { text: String(text), final });
    });
  }
});

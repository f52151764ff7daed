import type { AppOptions } from '../../src/app.ts';
import type { HostResolver } from '../../src/core/outbound-guard.ts';
import type { RunnerOptions } from '../../src/modules/tasks/runner.ts';
import { createTestApp, type SignedUpUser, type TestApp } from './app.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from './factories.ts';
import { type MockLlm, type MockStep, startMockLlm } from './mock-llm.ts';

/**
 * A Paddock whose task runner works against the mock provider: an OpenAI and
 * an Anthropic provider key pointing at it, and helpers to make agents, hand
 * them tasks and follow a task to its end (over the task's event stream).
 */
export interface TaskFixture {
  t: TestApp;
  user: SignedUpUser;
  mock: MockLlm;
  keys: { openai: Json; anthropic: Json };
  /** An agent on a policy made from `policy`, bound to the OpenAI key (or `bindings`), model gpt-4o-mini unless given. */
  agent(options?: {
    policy?: Record<string, unknown>;
    agent?: Record<string, unknown>;
    bindings?: Record<string, string>;
  }): Promise<Json & { api_key: string }>;
  /** POST /v1/tasks; throws unless 202. */
  submit(body: Record<string, unknown>): Promise<Json>;
  /** Follows the task's SSE stream until it ends; answers the task as it ended and the events the stream carried. */
  finished(taskId: string): Promise<{ task: Json; streamed: Json[] }>;
  /** Waits (real time) until the task has one of `statuses`. */
  until(taskId: string, statuses: string[], timeoutMs?: number): Promise<Json>;
  events(taskId: string): Promise<Json[]>;
  /** Waits (real time) until the task has an event that `match` accepts; answers it. */
  untilEvent(taskId: string, match: (e: Json) => boolean, timeoutMs?: number): Promise<Json>;
  /** Queues the mock's answers: each a tool call (name + arguments) or a final text. */
  script(steps: Array<{ tool: string; args: Record<string, unknown> } | { text: string } | MockStep>): void;
  close(): Promise<void>;
}

export async function startTasks(
  options: {
    env?: NodeJS.ProcessEnv;
    runner?: Partial<RunnerOptions>;
    resolveHost?: HostResolver;
    webFetch?: AppOptions['webFetch'];
    playbooks?: AppOptions['playbooks'];
    webhooks?: AppOptions['webhooks'];
    manualTimers?: boolean;
  } = {},
): Promise<TaskFixture> {
  const t = await createTestApp({
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1', ...options.env },
    start: new Date(),
    ...(options.runner ? { taskRunner: options.runner } : {}),
    ...(options.resolveHost ? { resolveHost: options.resolveHost } : {}),
    ...(options.webFetch ? { webFetch: options.webFetch } : {}),
    ...(options.playbooks ? { playbooks: options.playbooks } : {}),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
    ...(options.manualTimers ? { manualTimers: true } : {}),
  });
  const user = await t.signup();
  const mock = await startMockLlm();
  const keys = {
    openai: await createProviderKey(t, user.token, {
      provider: 'openai',
      api_key: 'sk-openai-test',
      base_url: mock.url,
    }),
    anthropic: await createProviderKey(t, user.token, {
      provider: 'anthropic',
      api_key: 'sk-ant-test',
      base_url: mock.url,
    }),
  };
  const call = async (method: string, url: string, body?: unknown) => {
    const res = await t.call(method, url, { token: user.token, ...(body !== undefined ? { body } : {}) });
    return res;
  };
  const fixture: TaskFixture = {
    t,
    user,
    mock,
    keys,
    async agent(o = {}) {
      const policy = await createPolicy(t, user.token, o.policy ?? {});
      return createAgent(t, user.token, {
        model: 'gpt-4o-mini',
        provider_keys: o.bindings ?? { openai: keys.openai.id },
        ...o.agent,
        policy_id: policy.id,
      });
    },
    async submit(body) {
      const res = await call('POST', '/v1/tasks', body);
      if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    async finished(taskId) {
      const res = await t.call('GET', `/v1/tasks/${taskId}/events`, {
        token: user.token,
        headers: { accept: 'text/event-stream' },
      });
      if (res.status !== 200) throw new Error(`events stream failed: ${res.status} ${String(res.body)}`);
      const streamed: Json[] = [];
      for (const block of String(res.body).split('\n\n')) {
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        const event = block.split('\n').find((l) => l.startsWith('event: '));
        if (data && event && event !== 'event: end') streamed.push(JSON.parse(data.slice(6)));
      }
      const task = await call('GET', `/v1/tasks/${taskId}`);
      return { task: task.body, streamed };
    },
    async until(taskId, statuses, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const res = await call('GET', `/v1/tasks/${taskId}`);
        if (statuses.includes(res.body.status)) return res.body;
        if (Date.now() > until) throw new Error(`task ${taskId} is still ${res.body.status}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async events(taskId) {
      const res = await call('GET', `/v1/tasks/${taskId}/events?limit=1000`);
      if (res.status !== 200) throw new Error(`events failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data;
    },
    async untilEvent(taskId, match, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const hit = (await fixture.events(taskId)).find(match);
        if (hit) return hit;
        if (Date.now() > until) throw new Error(`task ${taskId} has no such event yet`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    script(steps) {
      mock.reply(
        steps.map((s) =>
          'tool' in s
            ? { toolCalls: [{ name: s.tool as string, arguments: s.args as Record<string, unknown> }] }
            : (s as MockStep),
        ),
      );
    },
    async close() {
      await t.close();
      await mock.close();
    },
  };
  return fixture;
}

import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOOP_TRACER } from '../../src/core/tracing.ts';
import { findTask, type TaskId } from '../../src/modules/tasks/repo.ts';
import { createTestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp.ts';
import { childEnv, startPaddock, tempDir } from '../support/process.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// OpenTelemetry traces (docs/operations.md, Traces): a server exporting to an
// OTLP/HTTP receiver in this process runs a task with a tool call through the
// mock provider, and the task's whole path is one trace, each span under the
// one that caused it; nothing in any span is content or a credential.

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;
const PROMPT = 'the prompt 7c1e4d: list the workspace';
const COMMAND = 'echo from-bash-93b2 && ls /workspace';

let otlp: OtlpReceiver;
let f: TaskFixture;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  f = await startTasks({
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=k%3D1',
      OTEL_SERVICE_NAME: 'paddock-traces-test',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
    },
  });
});
afterAll(async () => {
  await f?.close();
  await otlp?.close();
});

/** The one span named `name` among `spans` (fails when there is not exactly one). */
function one(spans: ReceivedSpan[], match: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(match);
  expect(
    found.map((s) => s.name),
    what,
  ).toHaveLength(1);
  return found[0]!;
}

const childrenOf = (spans: ReceivedSpan[], parent: ReceivedSpan) =>
  spans.filter((s) => s.parentSpanId === parent.spanId);

describe('a task’s trace', () => {
  it('runs from the submit request through turns, gateway calls and tool calls to capsule commands', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([
      { toolCalls: [{ name: 'bash', arguments: { command: COMMAND } }], usage: { input: 321, output: 17 } },
      { text: 'listed it', usage: { input: 404, output: 9 } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: PROMPT });
    const { task } = await f.finished(submitted.id);
    expect(task.status, JSON.stringify(task.error)).toBe('completed');
    await f.t.services.ctx.tracer.flush();

    const submit = one(
      otlp.spans,
      (s) => s.name === 'POST /v1/tasks' && s.status !== ERROR,
      'the submit request’s span',
    );
    expect(submit).toMatchObject({
      kind: SERVER,
      parentSpanId: '',
      attributes: {
        'http.request.method': 'POST',
        'http.route': '/v1/tasks',
        'http.response.status_code': 202,
        'url.scheme': 'http',
      },
    });
    const trace = otlp.spans.filter((s) => s.traceId === submit.traceId);
    // Every span of the trace hangs from another of it, up to the submit request.
    const ids = new Set(trace.map((s) => s.spanId));
    for (const s of trace) if (s !== submit) expect(ids.has(s.parentSpanId), s.name).toBe(true);

    const run = one(trace, (s) => s.name.startsWith('invoke_agent'), 'the task’s span');
    expect(run.parentSpanId).toBe(submit.spanId);
    expect(run).toMatchObject({
      name: `invoke_agent ${agent.name}`,
      attributes: {
        'gen_ai.operation.name': 'invoke_agent',
        'gen_ai.agent.id': agent.id,
        'paddock.task.id': task.id,
        'paddock.task.status': 'completed',
        'paddock.run.id': task.run_id,
        'paddock.task.turns': 2,
      },
    });

    const turns = childrenOf(trace, run)
      .filter((s) => s.name === 'task.turn')
      .sort((a, b) => Number(a.attributes['paddock.task.turn']) - Number(b.attributes['paddock.task.turn']));
    expect(turns.map((s) => s.attributes['paddock.task.turn'])).toEqual([1, 2]);

    // Each turn's model call: the gateway's span, with the mock's own token counts.
    const events = await f.events(task.id);
    const modelCalls = events.filter((e: Json) => e.type === 'model_call').map((e: Json) => e.payload);
    for (const [i, usage] of [
      [321, 17],
      [404, 9],
    ].entries()) {
      const call = one(childrenOf(trace, turns[i]!), (s) => s.kind === CLIENT, `turn ${i + 1}’s model call`);
      // The task asks for the alias's dated model (gpt-4o-mini-2024-07-18), which answers.
      const model = modelCalls[i].model;
      expect(model).toMatch(/^gpt-4o-mini/);
      expect(call).toMatchObject({
        name: `chat ${model}`,
        attributes: {
          'gen_ai.operation.name': 'chat',
          'gen_ai.provider.name': 'openai',
          'gen_ai.system': 'openai',
          'gen_ai.request.model': model,
          'gen_ai.response.model': model,
          'gen_ai.usage.input_tokens': usage[0],
          'gen_ai.usage.output_tokens': usage[1],
          'paddock.run.id': task.run_id,
          'paddock.step.id': modelCalls[i].step_id,
          'paddock.gateway.failed_attempts': 0,
        },
      });
      expect(modelCalls[i]).toMatchObject({ input_tokens: usage[0], output_tokens: usage[1] });
    }

    // The first turn's tool call, and the capsule command it ran.
    const toolCall = events.find((e: Json) => e.type === 'tool_call')!.payload;
    const tool = one(childrenOf(trace, turns[0]!), (s) => s.name.startsWith('execute_tool'), 'the tool call');
    expect(tool).toMatchObject({
      name: 'execute_tool bash',
      attributes: {
        'gen_ai.operation.name': 'execute_tool',
        'gen_ai.tool.name': 'bash',
        'gen_ai.tool.call.id': toolCall.id,
        'paddock.tool.ok': true,
        'process.exit.code': 0,
      },
    });
    expect(childrenOf(trace, turns[1]!).filter((s) => s.name.startsWith('execute_tool'))).toEqual([]);
    const exec = one(childrenOf(trace, tool), () => true, 'the tool’s capsule command');
    const row = await findTask(f.t.database.db, f.user.team.id, task.id as TaskId);
    expect(exec).toMatchObject({
      name: 'capsule.exec',
      attributes: { 'paddock.capsule.id': row?.capsuleId, 'process.exit.code': 0 },
    });
    expect(row?.capsuleId).toMatch(/^cap_/);

    // The capsule's start is the task's too (its setup commands under it), not the model call's
    // that set it going.
    const start = one(trace, (s) => s.name === 'capsule.start', 'the capsule’s start');
    expect(start.parentSpanId).toBe(run.spanId);

    // Who exported: the resource.
    expect(submit.resource).toMatchObject({
      'service.name': 'paddock-traces-test',
      'paddock.role': 'server',
      'deployment.environment.name': 'test',
    });
    expect(otlp.paths.every((p) => p === '/v1/traces')).toBe(true);
    expect(otlp.headers.every((h) => h['x-collector-key'] === 'k=1')).toBe(true);

    // No content and no credential, in any span of the trace or its events.
    const recorded = JSON.stringify(trace.map((s) => [s.name, s.attributes, s.events]));
    for (const never of [
      PROMPT,
      'from-bash-93b2',
      'listed it',
      'sk-openai-test',
      f.user.token,
      'authorization',
    ])
      expect(recorded).not.toContain(never);
  });

  it('records a failed gateway attempt as an event of the call, which the retry then served', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ status: 503 }, { text: 'answered by the second key' }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'x' });
    const { task } = await f.finished(submitted.id);
    expect(task.status, JSON.stringify(task.error)).toBe('completed');
    await f.t.services.ctx.tracer.flush();

    const run = one(
      otlp.spans,
      (s) => s.attributes['paddock.task.id'] === task.id && s.name.startsWith('invoke'),
      'task',
    );
    const turn = one(childrenOf(otlp.spans, run), (s) => s.name === 'task.turn', 'turn');
    const call = one(childrenOf(otlp.spans, turn), (s) => s.kind === CLIENT, 'model call');
    expect(call.attributes['paddock.gateway.failed_attempts']).toBe(1);
    expect(call.events).toEqual([
      {
        name: 'paddock.gateway.attempt_failed',
        attributes: {
          'gen_ai.provider.name': 'openai',
          'gen_ai.request.model': expect.stringMatching(/^gpt-4o-mini/),
          'paddock.provider_key.id': f.keys.openai.id,
          'http.response.status_code': 503,
          'error.type': 'http_error',
        },
      },
    ]);
  });
});

describe('a proxied call', () => {
  it('is a child of its request, and a stream’s span ends with its settlement', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ chunks: ['streamed ', 'answer'], usage: { input: 55, output: 6 } }]);
    const res = await f.t.call('POST', '/v1/chat/completions', {
      token: agent.api_key,
      body: {
        model: 'gpt-4o-mini',
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'a question 4e8a' }],
      },
    });
    expect(res.status).toBe(200);
    expect(String(res.body)).toContain('streamed ');
    await f.t.services.ctx.tracer.flush();

    const request = one(
      otlp.spans,
      (s) => s.name === 'POST /v1/chat/completions' && s.attributes['http.response.status_code'] === 200,
      'the proxy request',
    );
    const call = one(childrenOf(otlp.spans, request), () => true, 'the gateway call');
    expect(call).toMatchObject({
      name: 'chat gpt-4o-mini',
      kind: CLIENT,
      attributes: {
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.request.stream': true,
        'gen_ai.provider.name': 'openai',
        'gen_ai.usage.input_tokens': 55,
        'gen_ai.usage.output_tokens': 6,
        'paddock.agent.id': agent.id,
      },
    });
    expect(JSON.stringify(otlp.spans.map((s) => s.attributes))).not.toContain('4e8a');
  });
});

describe('a task sent to a work queue', () => {
  it('hands the submit’s trace to the worker in the job, and the worker’s model calls join it', async () => {
    const agent = await f.agent();
    const submitted = await f.submit({
      agent_id: agent.id,
      prompt: 'a queued prompt 5d1f',
      runner: { queue: 'traced' },
    });
    const claimed = await f.t.call('POST', '/v1/queues/traced/claim', {
      token: agent.api_key,
      body: { worker_id: 'w1', types: ['paddock.task'] },
    });
    expect(claimed.status).toBe(200);
    const job = claimed.body.data[0] as Json;
    expect(job.payload.task_id).toBe(submitted.id);
    const traceparent = job.payload.traceparent as string;
    expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

    // The worker's model call, with the job's traceparent as its header.
    f.mock.reset();
    f.script([{ text: 'done by the worker', usage: { input: 12, output: 4 } }]);
    const call = await f.t.call('POST', `${job.payload.gateway.base_path}/chat/completions`, {
      token: agent.api_key,
      headers: { [job.payload.gateway.run_header]: job.payload.run_id, traceparent },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: job.payload.prompt }] },
    });
    expect(call.status).toBe(200);
    await f.t.services.ctx.tracer.flush();

    const submit = one(
      otlp.spans,
      (s) => s.name === 'POST /v1/tasks' && s.traceId === traceparent.split('-')[1],
      'the submit request’s span',
    );
    expect(traceparent.split('-')[2]).toBe(submit.spanId);
    const request = one(
      otlp.spans,
      (s) => s.name === 'POST /v1/chat/completions' && s.parentSpanId === submit.spanId,
      'the worker’s request',
    );
    expect(request.traceId).toBe(submit.traceId);
    const gateway = one(childrenOf(otlp.spans, request), () => true, 'the gateway call');
    expect(gateway).toMatchObject({ kind: CLIENT, attributes: { 'paddock.run.id': job.payload.run_id } });
    expect(JSON.stringify(otlp.spans.map((s) => s.attributes))).not.toContain('5d1f');
  });
});

describe('a command on a remote sandbox host', () => {
  it('continues the control plane’s trace on the host, which starts none of its own', async () => {
    const token = f.user.token;
    await f.t.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(f.t.app.server.address() as AddressInfo).port}`;
    const made = await f.t.call('POST', '/v1/hosts', { token, body: { type: 'regular', tags: ['traced'] } });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const dir = tempDir('traced-host');
    // A real `paddock host` process, exporting to the same collector under a name of its own.
    const host = await startPaddock(
      [
        'host',
        '--control-plane',
        url,
        '--token',
        made.body.registration_token,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
      ],
      childEnv({
        PADDOCK_SANDBOX_DIR: dir,
        PADDOCK_HOST_HEARTBEAT_MS: '300',
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_SERVICE_NAME: 'paddock-host-test',
      }),
      /Paddock host (hst_\w+) serving/,
      120_000,
    );
    let capsuleId: string;
    try {
      const created = await f.t.call('POST', '/v1/capsules', {
        token,
        body: { memory_mb: 256, disk_size_mb: 64, host_tags: ['traced'] },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(202);
      capsuleId = created.body.id;
      await waitForCapsule(f.t, token, capsuleId, 'running');
      const exec = await f.t.call('POST', `/v1/capsules/${capsuleId}/exec`, {
        token,
        body: { cmd: 'echo', args: ['an-argument-5d1f'] },
      });
      expect(exec.status, JSON.stringify(exec.body)).toBe(200);
      expect(exec.body.stdout).toBe('an-argument-5d1f\n');
    } finally {
      // Its spans are exported as it stops.
      expect(await host.stop()).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
    await f.t.services.ctx.tracer.flush();

    const onHost = (s: ReceivedSpan) => s.resource['service.name'] === 'paddock-host-test';
    const request = one(otlp.spans, (s) => s.name === 'POST /v1/capsules/:id/exec', 'the exec request');
    const exec = one(childrenOf(otlp.spans, request), () => true, 'the exec');
    expect(exec).toMatchObject({ name: 'capsule.exec', attributes: { 'paddock.capsule.id': capsuleId } });
    const rpc = one(childrenOf(otlp.spans, exec), onHost, 'the host’s part');
    expect(rpc).toMatchObject({
      traceId: request.traceId,
      name: 'POST /host/rpc/exec',
      kind: SERVER,
      attributes: { 'http.route': '/host/rpc/exec', 'http.response.status_code': 200 },
      resource: { 'service.name': 'paddock-host-test', 'paddock.role': 'host' },
    });
    // Every span the host exported continues a span of the control plane's (its heartbeats,
    // the control plane's polls outside any request: no trace of their own).
    const controlPlane = new Set(otlp.spans.filter((s) => !onHost(s)).map((s) => s.spanId));
    const hostSpans = otlp.spans.filter(onHost);
    expect(hostSpans.length).toBeGreaterThan(0);
    for (const s of hostSpans) expect(controlPlane.has(s.parentSpanId), s.name).toBe(true);
    expect(JSON.stringify(otlp.spans.map((s) => [s.name, s.attributes]))).not.toContain('an-argument-5d1f');
  });
});

describe('with OTEL_EXPORTER_OTLP_ENDPOINT unset', () => {
  it('the app has the no-op tracer: no exporter, and nothing reaches a collector', async () => {
    const before = otlp.spans.length;
    const t = await createTestApp();
    try {
      expect(t.config.tracing).toBeUndefined();
      expect(t.services.ctx.tracer).toBe(NOOP_TRACER);
      const u = await t.signup();
      expect((await t.call('GET', '/v1/me', { token: u.token })).status).toBe(200);
      await f.t.services.ctx.tracer.flush();
      expect(otlp.spans.slice(before).some((s) => s.name === 'GET /v1/me')).toBe(false);
    } finally {
      await t.close();
    }
  });
});

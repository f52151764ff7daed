import type { AddressInfo } from 'node:net';
import type { PromHistogramData } from 'prom2javascript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { silentLog } from '../../src/core/context.ts';
import { isId } from '../../src/core/ids.ts';
import { Metrics } from '../../src/core/metrics.ts';
import { createTestApp, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from '../support/factories.ts';
import { unusedPortUrl } from '../support/mock-llm.ts';
import { getMetrics, Scrape } from '../support/prometheus.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';
import { type Receiver, startReceiver } from '../webhooks/receiver.ts';

// GET /metrics after a little of everything Paddock does — model calls (one
// failing over, one refused), a task, a capsule, webhook deliveries (one
// succeeding, one failing), a host's heartbeat — scraped over HTTP and read
// with a Prometheus text-format parser: every metric docs/operations.md lists
// is there, with the counts the test caused.

const TOKEN = 'metrics-token-0123456789abcdef';

async function until<T>(
  check: () => Promise<T | undefined>,
  what: () => string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await check();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('GET /metrics on the main port, behind PADDOCK_METRICS_TOKEN', () => {
  let f: TaskFixture;
  let url: string;
  const receivers: Receiver[] = [];
  let scrape: Scrape;
  let ticking: ReturnType<typeof setInterval> | undefined;

  const chat = (agent: Json, model: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agent.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Say something.' }] }),
    });

  beforeAll(async () => {
    // A webhook attempt whose job the queue loses under load is sent again by the sweep once
    // overdue by the server's clock: here within a second, and the clock follows real time.
    f = await startTasks({
      env: { PADDOCK_METRICS_TOKEN: TOKEN },
      webhooks: { pollMs: 100, sweepMs: 250, sweepGraceMs: 1000 },
    });
    let last = Date.now();
    ticking = setInterval(() => {
      const now = Date.now();
      f.t.clock.advance(now - last);
      last = now;
    }, 20);
    await f.t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(f.t.app.server.address() as AddressInfo).port}`;
    const { t, user } = f;

    // Webhooks first, so the events below reach them: one endpoint answers, one fails.
    const ok = await startReceiver(() => ({ status: 204 }));
    const broken = await startReceiver(() => ({ status: 500 }));
    receivers.push(ok, broken);
    for (const r of receivers) {
      const hook = await t.call('POST', '/v1/webhooks', {
        token: user.token,
        body: { url: `http://127.0.0.1:${r.port}/hook`, event_types: ['agent.created'] },
      });
      expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    }

    // Model calls: a dead key before the good one (its circuit opens at the first failure), so the
    // first call fails over and the next two go straight to the good key; one model is refused.
    const dead = await createProviderKey(t, user.token, {
      provider: 'openai',
      api_key: 'sk-dead',
      base_url: await unusedPortUrl(),
    });
    const policy = await createPolicy(t, user.token, {
      blocked_models: ['gpt-3.5*'],
      routing: { timeout_ms: 1000, connect_timeout_ms: 1000, circuit_breaker: { failure_threshold: 1 } },
    });
    const agent = await createAgent(t, user.token, {
      policy_id: policy.id,
      provider_keys: {
        openai: [
          { key_id: dead.id, weight: 1 },
          { key_id: f.keys.openai.id, weight: 1 },
        ],
      },
    });
    for (let i = 0; i < 3; i++) expect((await chat(agent, 'gpt-4o')).status).toBe(200);
    expect((await chat(agent, 'gpt-3.5-turbo')).status).toBe(403);

    // A task that runs a command in its capsule, and a capsule of its own.
    const taskAgent = await f.agent();
    f.script([{ tool: 'bash', args: { command: 'echo hi' } }, { text: 'Done.' }]);
    const task = await f.submit({ agent_id: taskAgent.id, prompt: 'Say hi in the shell.' });
    expect((await f.finished(task.id)).task.status).toBe('completed');
    const capsule = await t.call('POST', '/v1/capsules', {
      token: user.token,
      body: { memory_mb: 256, disk_size_mb: 64 },
    });
    expect(capsule.status, JSON.stringify(capsule.body)).toBe(202);
    await waitForCapsule(t, user.token, capsule.body.id, 'running');

    // A remote host registers and beats once (after the capsules: nothing is placed on it).
    const host = await t.call('POST', '/v1/hosts', {
      token: user.token,
      body: { type: 'regular', tags: ['far'] },
    });
    expect(host.status, JSON.stringify(host.body)).toBe(201);
    const registered = await t.call('POST', '/v1/hosts/register', {
      body: { token: host.body.registration_token, address: '127.0.0.1:1' },
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const beat = await t.call('POST', `/v1/hosts/${host.body.host.id}/heartbeat`, {
      headers: { 'x-host-token': registered.body.token },
      body: {},
    });
    expect(beat.status, JSON.stringify(beat.body)).toBe(204);

    // Both endpoints have had their first attempt at both agent.created events (the two agents above).
    let seen: string[] = [];
    await until(
      async () => {
        const res = await getMetrics(`${url}/metrics`, TOKEN);
        const s = await Scrape.parse(await res.text());
        seen = s.text.split('\n').filter((l) => /^paddock_webhook_(attempts|deliveries)_/.test(l));
        return s.value('paddock_webhook_attempts_total', { outcome: 'http_error' }) === 2 &&
          s.value('paddock_webhook_deliveries_total', { outcome: 'succeeded' }) === 2
          ? true
          : undefined;
      },
      () => `both webhook endpoints’ first attempts (${seen.join(', ')})`,
      40_000,
    );
    await t.services.runs.flush();

    const res = await getMetrics(`${url}/metrics`, TOKEN);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    scrape = await Scrape.parse(await res.text());
  }, 120_000);

  afterAll(async () => {
    clearInterval(ticking);
    await f?.close();
    await Promise.all(receivers.map((r) => r.close()));
  });

  it('asks for the token: 401 in the error shape without it or with another, 200 with it', async () => {
    const none = await getMetrics(`${url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(((await none.json()) as Json).error).toMatchObject({ code: 'unauthenticated' });
    const wrong = await getMetrics(`${url}/metrics`, `${TOKEN}x`);
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as Json).error).toMatchObject({ code: 'invalid_token' });
    const short = await getMetrics(`${url}/metrics`, 'x');
    expect(short.status).toBe(401);
    expect((await getMetrics(`${url}/metrics`, TOKEN)).status).toBe(200);
  });

  it('counts the gateway’s calls, tokens, cost, failover, refusal and circuits', () => {
    const s = scrape;
    const direct = { provider: 'openai', model: 'gpt-4o' };
    expect(s.value('paddock_gateway_requests_total', { ...direct, outcome: 'success' })).toBe(3);
    // The task's model calls, the shell command and then the answer, under the model's dated id.
    const task = s
      .samples('paddock_gateway_requests_total', { provider: 'openai', outcome: 'success' })
      .filter((m) => m.labels.model!.startsWith('gpt-4o-mini-'));
    expect(task.map((m) => ('value' in m ? m.value : undefined))).toEqual([2]);
    expect(
      s.value('paddock_gateway_requests_total', {
        provider: 'none',
        model: 'gpt-3.5-turbo',
        outcome: 'policy_blocked',
      }),
    ).toBe(1);
    expect(s.value('paddock_gateway_tokens_total', { ...direct, direction: 'input' })).toBeGreaterThan(0);
    expect(s.value('paddock_gateway_tokens_total', { ...direct, direction: 'output' })).toBeGreaterThan(0);
    expect(s.value('paddock_gateway_cost_usd_total', direct)).toBeGreaterThan(0);
    const calls = s.count('paddock_gateway_request_duration_seconds', {
      provider: 'openai',
      outcome: 'success',
    });
    expect(calls).toBe(5);
    expect(s.count('paddock_gateway_overhead_seconds')).toBe(calls);
    expect(s.value('paddock_gateway_failovers_total', { outcome: 'resolved' })).toBe(1);
    expect(
      s.value('paddock_gateway_failed_attempts_total', { provider: 'openai', kind: 'network_error' }),
    ).toBe(1);
    expect(s.value('paddock_gateway_circuit_breakers', { provider: 'openai', state: 'open' })).toBe(1);
    expect(
      s.value('paddock_gateway_circuit_breakers', { provider: 'openai', state: 'closed' }),
    ).toBeGreaterThan(0);
    expect(s.value('paddock_gateway_budget_reservations')).toBe(0);
    expect(s.value('paddock_gateway_budget_reserved_usd')).toBe(0);
    expect(s.value('paddock_gateway_budget_reservation_oldest_seconds')).toBe(0);
  });

  it('reports tasks by status, their wait and their duration, and the work queues', () => {
    const s = scrape;
    for (const status of ['queued', 'running', 'awaiting_approval'])
      expect(s.value('paddock_tasks', { status })).toBe(0);
    expect(s.value('paddock_task_queue_oldest_seconds')).toBe(0);
    expect(s.count('paddock_task_queue_wait_seconds')).toBe(1);
    expect(s.count('paddock_task_duration_seconds', { status: 'completed' })).toBe(1);
    expect(s.sum('paddock_task_duration_seconds')).toBeGreaterThan(0);
    for (const status of ['queued', 'active']) expect(s.value('paddock_work_queue_jobs', { status })).toBe(0);
  });

  it('reports capsules by state, their starts, and the hosts with their heartbeats', () => {
    const s = scrape;
    expect(s.value('paddock_capsules', { state: 'running' })).toBe(1);
    expect(s.value('paddock_capsules', { state: 'starting' })).toBe(0);
    // The task's capsule and the test's own, each started cold (no spares in tests).
    expect(s.value('paddock_capsule_starts_total', { source: 'cold', outcome: 'started' })).toBe(2);
    expect(s.count('paddock_capsule_start_seconds', { source: 'cold', outcome: 'started' })).toBe(2);
    expect(s.sum('paddock_capsule_start_seconds')).toBeGreaterThan(0);
    // The local host and the registered one.
    expect(s.value('paddock_hosts', { state: 'online' })).toBe(2);
    expect(s.value('paddock_hosts', { state: 'unreachable' })).toBe(0);
    expect(s.value('paddock_host_heartbeats_total')).toBe(1);
    // The remote host beat once, moments before the scrape.
    const age = s.value('paddock_host_heartbeat_age_seconds', { state: 'online' })!;
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(60);
  });

  it('reports webhook attempts, deliveries, their lag and what is pending', () => {
    const s = scrape;
    expect(s.value('paddock_webhook_attempts_total', { outcome: 'success' })).toBe(2);
    expect(s.value('paddock_webhook_attempts_total', { outcome: 'http_error' })).toBe(2);
    expect(s.value('paddock_webhook_deliveries_total', { outcome: 'succeeded' })).toBe(2);
    expect(s.value('paddock_webhook_deliveries_total', { outcome: 'failed' })).toBeUndefined();
    expect(s.count('paddock_webhook_delivery_lag_seconds', { outcome: 'succeeded' })).toBe(2);
    // The failed ones wait for their retries.
    expect(s.value('paddock_webhook_deliveries_pending')).toBe(2);
    expect(s.value('paddock_webhook_delivery_oldest_pending_seconds')).toBeGreaterThanOrEqual(0);
  });

  it('reports the database’s statements and pool, and the process', () => {
    const s = scrape;
    expect(s.count('paddock_db_statement_duration_seconds', { outcome: 'ok' })).toBeGreaterThan(10);
    expect(s.sum('paddock_db_statement_duration_seconds', { outcome: 'ok' })).toBeGreaterThan(0);
    expect(s.value('paddock_db_pool_connections', { state: 'in_use' })).toBeGreaterThanOrEqual(0);
    expect(s.value('paddock_db_pool_connections', { state: 'idle' })).toBeGreaterThanOrEqual(0);
    expect(s.value('paddock_db_pool_waiting')).toBeGreaterThanOrEqual(0);
    expect(s.value('paddock_metrics_database_read_ok')).toBe(1);
    expect(s.value('paddock_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(s.value('paddock_nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(s.value('paddock_nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
  });

  it('names every metric paddock_… and labels none with an id', () => {
    for (const name of scrape.families.keys()) expect(name).toMatch(/^paddock_/);
    const ids = scrape
      .labelValues()
      .filter((l) => isId(l.value) || /(^|_)[0-9A-HJKMNP-TV-Z]{26}$/.test(l.value));
    expect(ids).toEqual([]);
  });
});

describe('GET /metrics on its own address (PADDOCK_METRICS_LISTEN)', () => {
  let t: TestApp | undefined;

  afterAll(async () => {
    await t?.close();
  });

  it('serves them there, with the token, and not on the main port; stops with the app', async () => {
    t = await createTestApp({ env: { PADDOCK_METRICS_LISTEN: '127.0.0.1:0', PADDOCK_METRICS_TOKEN: TOKEN } });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const main = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    const own = `http://${t.services.metrics.ownAddress}`;
    expect(own).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await getMetrics(`${own}/metrics`, TOKEN);
    expect(res.status).toBe(200);
    const s = await Scrape.parse(await res.text());
    expect(s.value('paddock_metrics_database_read_ok')).toBe(1);
    expect(s.value('paddock_tasks', { status: 'queued' })).toBe(0);
    expect((await getMetrics(`${own}/metrics`)).status).toBe(401);

    // The main port has no such route, whoever asks (a browser too: no dashboard page).
    const asked: Array<Record<string, string>> = [
      { authorization: `Bearer ${TOKEN}` },
      { accept: 'text/html' },
    ];
    for (const headers of asked) {
      const there = await fetch(`${main}/metrics`, { headers });
      expect(there.status).toBe(404);
      expect(((await there.json()) as Json).error).toMatchObject({ code: 'route_not_found' });
    }
    const elsewhere = await fetch(`${own}/v1/tasks`);
    expect(elsewhere.status).toBe(404);
    expect(((await elsewhere.json()) as Json).error).toMatchObject({ code: 'route_not_found' });
    expect((await fetch(`${own}/metrics`, { method: 'POST' })).status).toBe(405);

    const closing = t;
    t = undefined;
    await closing.close();
    await expect(getMetrics(`${own}/metrics`, TOKEN)).rejects.toThrow();
  });
});

describe('the metrics themselves', () => {
  it('answer when the database cannot be read, leaving out only what comes from it', async () => {
    const metrics = new Metrics(silentLog);
    metrics.attach({
      breakers: () => [{ provider: 'openai', state: 'open' }],
      reservations: () => ({ count: 2, reservedMicros: 1_500_000, oldestAgeMs: 3000 }),
      pool: () => ({ inUse: 1, idle: 0, waiting: 4 }),
      states: () => Promise.reject(new Error('the database is down')),
    });
    const s = await Scrape.parse(await metrics.render(new Date()));
    expect(s.value('paddock_metrics_database_read_ok')).toBe(0);
    expect(s.samples('paddock_tasks')).toEqual([]);
    expect(s.samples('paddock_capsules')).toEqual([]);
    expect(s.value('paddock_gateway_circuit_breakers', { provider: 'openai', state: 'open' })).toBe(1);
    expect(s.value('paddock_gateway_budget_reservations')).toBe(2);
    expect(s.value('paddock_gateway_budget_reserved_usd')).toBe(1.5);
    expect(s.value('paddock_gateway_budget_reservation_oldest_seconds')).toBe(3);
    expect(s.value('paddock_db_pool_waiting')).toBe(4);
  });

  it('keep at most 100 model labels; later models count as other', async () => {
    const metrics = new Metrics(silentLog);
    const call = (model: string) =>
      metrics.gateway.call({
        provider: 'openai',
        model,
        status: 'success',
        usage: { input: 1, output: 1 },
        costMicros: 1,
        latencyMs: 1,
      });
    for (let i = 0; i < 150; i++) call(`model-${i}`);
    call('model-0');
    const s = await Scrape.parse(await metrics.render(new Date()));
    const models = new Set(s.samples('paddock_gateway_requests_total').map((m) => m.labels.model));
    expect(models.size).toBe(101);
    expect(
      s.value('paddock_gateway_requests_total', { provider: 'openai', model: 'other', outcome: 'success' }),
    ).toBe(50);
    expect(
      s.value('paddock_gateway_requests_total', { provider: 'openai', model: 'model-0', outcome: 'success' }),
    ).toBe(2);
  });

  it('fill histograms’ buckets cumulatively, with what is past the last bound only in +Inf', async () => {
    const metrics = new Metrics(silentLog);
    for (const ms of [0.3, 2, 2.5, 20_000]) metrics.statement(ms, true);
    metrics.statement(1, false);
    const s = await Scrape.parse(await metrics.render(new Date()));
    const [ok] = s.samples('paddock_db_statement_duration_seconds', { outcome: 'ok' }) as PromHistogramData[];
    expect(ok!.count).toBe(4);
    expect(ok!.sum).toBeCloseTo(20.0048, 9);
    expect(ok!.buckets).toMatchObject({ '0.0005': 1, '0.001': 1, '0.0025': 3, '10': 3, '+Inf': 4 });
    expect(s.count('paddock_db_statement_duration_seconds', { outcome: 'error' })).toBe(1);
  });

  it('settings: the token must be long enough, the address host:port', () => {
    expect(loadConfig({}).metrics).toEqual({ token: undefined, listen: undefined });
    expect(
      loadConfig({ PADDOCK_METRICS_LISTEN: '[::1]:9464', PADDOCK_METRICS_TOKEN: TOKEN }).metrics,
    ).toEqual({
      token: TOKEN,
      listen: { host: '::1', port: 9464 },
    });
    expect(loadConfig({ PADDOCK_METRICS_LISTEN: '0.0.0.0:9464' }).metrics.listen).toEqual({
      host: '0.0.0.0',
      port: 9464,
    });
    for (const env of [
      { PADDOCK_METRICS_LISTEN: '9464' },
      { PADDOCK_METRICS_LISTEN: 'localhost:99999' },
      { PADDOCK_METRICS_LISTEN: 'http://localhost:9464' },
      { PADDOCK_METRICS_TOKEN: 'short' },
      { PADDOCK_METRICS_TOKEN: 'has a space in the middle' },
    ]) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
    }
  });
});

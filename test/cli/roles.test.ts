import OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';
import {
  serverCall as api,
  childEnv,
  mockAgentOn,
  type RunningServer,
  runPaddock,
  scratchDatabase,
  signupOn,
} from '../support/process.ts';
import {
  type Deployment,
  deployment,
  eventually,
  type RoleServer,
  startRole,
  startSandboxHost,
} from '../support/roles.ts';
import { connectWs, ptyText } from '../support/ws.ts';

// `paddock serve --role api|worker|scheduler` as real processes on one
// Postgres database, with a `paddock host` for their capsules: a task
// submitted to an api server runs on a worker and its stream is read through
// the api server; a capsule's terminal opens through any api server; one
// scheduler leads; SIGTERM lets an api server's gateway stream finish and
// makes a worker give its task back to another at once. Postgres only (the
// embedded database belongs to one process); the refusals run on both.

const PG_URL = process.env.PADDOCK_TEST_DATABASE_URL;
const STARTUP_MS = 180_000;
// Far beyond the test's run: a task that another worker finishes was given back, not found lost.
const LOST_AFTER_SEC = '3600';

describe('paddock serve --role refusals', { timeout: STARTUP_MS }, () => {
  it('refuses an unknown role, naming the roles, and exits 1', async () => {
    const flag = await runPaddock(['serve', '--role', 'frontend', '--port', '0'], childEnv(), STARTUP_MS);
    expect(flag.code).toBe(1);
    expect(flag.stderr).toContain('--role="frontend" must be one of all, api, worker, scheduler');
    const env = await runPaddock(['serve', '--port', '0'], childEnv({ PADDOCK_ROLE: 'web' }), STARTUP_MS);
    expect(env.code).toBe(1);
    expect(env.stderr).toContain('PADDOCK_ROLE="web" must be one of all, api, worker, scheduler');
  });

  it('refuses a role other than all on the embedded database, and exits 1', async () => {
    for (const role of ['api', 'worker', 'scheduler']) {
      const res = await runPaddock(['serve', '--role', role, '--port', '0'], childEnv(), STARTUP_MS);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain(`--role=${role} needs DATABASE_URL`);
      expect(res.stderr).not.toContain('    at ');
    }
  });
});

describe.runIf(PG_URL)('roles on one Postgres', { timeout: 6 * STARTUP_MS }, () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let d: Deployment;
  let mock: MockLlm;
  const processes: RunningServer[] = [];
  let apiA: RoleServer;
  let worker1: RoleServer;
  let token: string;
  let agent: Json;

  const start = async (role: RoleServer['role'], extra: Record<string, string> = {}) => {
    const server = await startRole(role, d, extra, STARTUP_MS);
    processes.push(server);
    return server;
  };
  const task = async (id: string) => (await api(apiA, token, 'GET', `/v1/tasks/${id}`)).body;
  const events = async (id: string): Promise<Json[]> =>
    (await api(apiA, token, 'GET', `/v1/tasks/${id}/events?limit=1000`)).body.data;

  beforeAll(async () => {
    scratch = await scratchDatabase(PG_URL!, 'roles');
    mock = await startMockLlm();
    d = deployment(scratch.url, {
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_TASK_LOST_AFTER_SEC: LOST_AFTER_SEC,
    });
    apiA = await start('api');
    token = await signupOn(apiA, 'roles@example.com'); // the first user: a platform admin
    // Capsules live on a `paddock host`: no role but all has a sandbox host of its own.
    const host = await api(apiA, token, 'POST', '/v1/hosts', { type: 'regular' });
    expect(host.status, JSON.stringify(host.body)).toBe(201);
    processes.push(await startSandboxHost(apiA.url, host.body.registration_token));
    agent = await mockAgentOn(apiA, token, mock.url, 'roles');
    // Started after the host registered through another server: it reaches the host all the same.
    worker1 = await start('worker');
  }, 4 * STARTUP_MS);

  afterAll(async () => {
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await mock?.close();
    await scratch?.drop();
  });

  it('runs a task submitted to an api server on a worker, and its stream through the api server has every event', async () => {
    const hosts = (await api(apiA, token, 'GET', '/v1/hosts')).body.data as Json[];
    expect(hosts.map((h) => h.type)).toEqual(['regular']);
    // A worker answers its probes, not the API.
    const health = await api(worker1, null, 'GET', '/health');
    expect(health.body).toMatchObject({ status: 'ok', role: 'worker' });
    const refused = await api(worker1, token, 'GET', '/v1/tasks');
    expect(refused.status).toBe(404);
    expect(refused.body.error.code).toBe('not_served');

    mock.reply([
      { toolCalls: [{ name: 'bash', arguments: { command: 'echo from the worker' } }] },
      { toolCalls: [{ name: 'submit_result', arguments: { result: 'ran on a worker' } }] },
    ]);
    const submitted = await api(apiA, token, 'POST', '/v1/tasks', { agent_id: agent.id, prompt: 'split' });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
    const id: string = submitted.body.id;
    const stream = await fetch(`${apiA.url}/v1/tasks/${id}/events`, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    });
    expect(stream.status).toBe(200);
    const text = await stream.text();
    expect(text).toContain('event: end');
    const streamed = text
      .split('\n\n')
      .filter((f) => f.startsWith('id: '))
      .map(
        (f) =>
          JSON.parse(
            f
              .split('\n')
              .find((l) => l.startsWith('data: '))!
              .slice(6),
          ) as Json,
      );

    expect(await task(id)).toMatchObject({ status: 'completed', result: 'ran on a worker', attempt: 1 });
    // It went through the job queue: the api server sent its job and ran nothing itself.
    const db = new pg.Client({ connectionString: scratch.url });
    await db.connect();
    const jobs = await db.query(
      "select state from pgboss.job where name = 'task-run' and data->>'task_id' = $1",
      [id],
    );
    await db.end();
    expect(jobs.rows).toEqual([{ state: 'completed' }]);
    const logged = await events(id);
    expect(streamed.map((e) => e.seq)).toEqual(logged.map((e) => e.seq));
    expect(streamed.map((e) => e.seq)).toEqual(logged.map((_, i) => i + 1));
    expect(streamed).toContainEqual(
      expect.objectContaining({ type: 'tool_result', payload: expect.objectContaining({ exit_code: 0 }) }),
    );
  });

  it('opens a capsule’s terminal through an api server other than the one that created it', async () => {
    const apiB = await start('api');
    const created = await api(apiA, token, 'POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id: string = created.body.id;
    await eventually('the capsule to run', async () =>
      (await api(apiA, token, 'GET', `/v1/capsules/${id}`)).body.status === 'running' ? true : undefined,
    );
    const pty = await connectWs(`${apiB.url.replace('http', 'ws')}/v1/capsules/${id}/pty`, token);
    pty.send({ type: 'start', cmd: '/bin/sh', cols: 80, rows: 24 });
    await pty.next((f) => f.type === 'started', STARTUP_MS);
    pty.send({ type: 'input', data: Buffer.from('echo through-$((40 + 2))\n').toString('base64') });
    await eventually('the terminal’s output', async () =>
      ptyText(pty.frames).includes('through-42') ? true : undefined,
    );
    pty.ws.close();
    // Still running as seen through either server: nothing took it for gone.
    expect((await api(apiB, token, 'GET', `/v1/capsules/${id}`)).body.status).toBe('running');
    expect((await api(apiB, token, 'DELETE', `/v1/capsules/${id}`)).status).toBe(202);
    expect(await apiB.stop()).toBe(0);
  });

  it('lets one scheduler lead; another takes over when it stops', async () => {
    const lease = { PADDOCK_SCHEDULER_LEASE_SEC: '2' };
    const first = await start('scheduler', lease);
    const leader = (s: RunningServer) => async () =>
      (await api(s, null, 'GET', '/health')).body.scheduler_leader;
    await eventually('the first scheduler to lead', async () => ((await leader(first)()) ? true : undefined));
    const second = await start('scheduler', lease);
    // Its first tick found the lease taken.
    const follows = await eventually('the second scheduler’s first tick', async () => {
      const leads = await leader(second)();
      return leads === null ? undefined : leads;
    });
    expect(follows).toBe(false);
    expect(await leader(first)()).toBe(true);
    // Roles without the scheduler do not tick.
    expect((await api(apiA, null, 'GET', '/health')).body.scheduler_leader).toBeUndefined();

    // A stopping leader gives its lease up: the other leads at its next tick, not after the lease ran out.
    expect(await first.stop()).toBe(0);
    await eventually('the second scheduler to lead', async () =>
      (await leader(second)()) ? true : undefined,
    );
    expect(await second.stop()).toBe(0);
  });

  it('lets a gateway stream finish on SIGTERM while refusing new requests, then exits 0', async () => {
    const apiC = await start('api');
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    mock.reply({ chunks: ['one ', 'two ', 'three ', 'four'], stallAfterEvents: 2, holdUntil: gate });
    const openai = new OpenAI({ baseURL: `${apiC.url}/v1`, apiKey: agent.api_key, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'count' }],
      stream: true,
    });
    const received: string[] = [];
    const iterator = stream[Symbol.asyncIterator]();
    // The first chunk is through: the stream is in flight on the server.
    const first = await iterator.next();
    received.push(first.done ? '' : (first.value.choices[0]?.delta.content ?? ''));

    const exited = apiC.stop();
    // New requests are refused (503 shutting_down on an open connection, or no connection at all).
    const refusal = await eventually('the stopping server to refuse requests', async () => {
      const res = await fetch(`${apiC.url}/health`).catch((err: unknown) => err as Error);
      if (res instanceof Error) return 'connection refused';
      if (res.status === 503) return ((await res.json()) as Json).error.code as string;
      await res.body?.cancel();
      return undefined;
    });
    expect(['connection refused', 'shutting_down']).toContain(refusal);

    open();
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      received.push(next.value.choices[0]?.delta.content ?? '');
    }
    expect(received.join('')).toBe('one two three four');
    expect(await exited).toBe(0);
  });

  it('gives a stopping worker’s task to another worker at once, and exits 0', async () => {
    mock.reply({ toolCalls: [{ name: 'bash', arguments: { command: 'sleep 600' } }] });
    const submitted = await api(apiA, token, 'POST', '/v1/tasks', { agent_id: agent.id, prompt: 'long' });
    const id: string = submitted.body.id;
    await eventually('the task’s long command to run on the first worker', async () =>
      (await events(id)).some((e) => e.type === 'tool_call') ? true : undefined,
    );
    const worker2 = await start('worker');
    mock.reply([
      { toolCalls: [{ name: 'bash', arguments: { command: 'echo second worker' } }] },
      { toolCalls: [{ name: 'submit_result', arguments: { result: 'finished elsewhere' } }] },
    ]);
    expect(await worker1.stop()).toBe(0);
    await eventually('the second worker to finish the task', async () =>
      (await task(id)).status === 'completed' ? true : undefined,
    );
    expect(await task(id)).toMatchObject({ status: 'completed', result: 'finished elsewhere', attempt: 2 });
    const log = await events(id);
    expect(log).toContainEqual(
      expect.objectContaining({
        type: 'status',
        payload: { status: 'queued', retry_of_attempt: 1, reason: 'worker_stopped' },
      }),
    );
    expect(await worker2.stop()).toBe(0);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';
import {
  serverCall as api,
  childEnv,
  killHard as kill,
  mockAgentOn,
  type RunningServer,
  startServer,
  tempDir,
} from '../support/process.ts';

// A worker that dies mid-task, for real: `paddock serve` in a process of its
// own, killed with SIGKILL while a task's command runs, then a new server on
// the same database. The task is started once more from the start and
// completes; killed again, it fails worker_lost. Never left running.

const STARTUP_MS = 180_000;
const LOST_AFTER_SEC = 2;
const PG_URL = process.env.PADDOCK_TEST_DATABASE_URL;

let mock: MockLlm;
let dataDir: string;
let databaseUrl: string | undefined;
let admin: pg.Client | undefined;
const servers: RunningServer[] = [];

beforeAll(async () => {
  mock = await startMockLlm();
  dataDir = tempDir('worker-death');
  if (PG_URL) {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    const name = `paddock_worker_death_${process.pid}`;
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.query(`create database ${name}`);
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  }
});

afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await mock?.close();
  if (admin && databaseUrl) {
    await admin.query(`drop database if exists ${new URL(databaseUrl).pathname.slice(1)} with (force)`);
    await admin.end();
  }
});

async function serve(): Promise<RunningServer> {
  const server = await startServer(
    ['--data-dir', dataDir],
    childEnv({
      PADDOCK_SIGNUP: 'open',
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_TASK_LOST_AFTER_SEC: String(LOST_AFTER_SEC),
      PADDOCK_SANDBOX_WARM: '0',
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    }),
    STARTUP_MS,
  );
  servers.push(server);
  return server;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a worker that dies mid-task', { timeout: 4 * STARTUP_MS }, () => {
  it('is started once more from the start on another server, and fails worker_lost after the second death', async () => {
    let server = await serve();
    const signup = await api(server, null, 'POST', '/v1/auth/signup', {
      email: 'worker-death@example.com',
      password: 'a long password',
      name: 'Wanda Worker',
    });
    expect(signup.status, JSON.stringify(signup.body)).toBe(201);
    const token: string = signup.body.session_token;
    const agent = await mockAgentOn(server, token, mock.url, 'worker-death');

    const bashRunning = async (taskId: string, attempt: number) => {
      const events = await api(server, token, 'GET', `/v1/tasks/${taskId}/events?limit=1000`);
      const started = events.body.data.findLastIndex(
        (e: Json) => e.type === 'status' && e.payload.status === 'running' && e.payload.attempt === attempt,
      );
      return started >= 0 && events.body.data.slice(started).some((e: Json) => e.type === 'tool_call');
    };

    // Attempt 1 runs a long command; its server dies under it.
    const sleep = { toolCalls: [{ name: 'bash', arguments: { command: 'sleep 60' } }] };
    mock.reply([sleep]);
    const task = await api(server, token, 'POST', '/v1/tasks', {
      agent_id: agent.id,
      prompt: 'work long',
    });
    expect(task.status, JSON.stringify(task.body)).toBe(202);
    const id: string = task.body.id;
    await until(() => bashRunning(id, 1), 'attempt 1 to run its command');
    await kill(server);

    // Another server finds the silent worker's task and starts it again from the start: it completes.
    mock.reply([
      { toolCalls: [{ name: 'bash', arguments: { command: 'echo second try' } }] },
      { toolCalls: [{ name: 'submit_result', arguments: { result: 'done on attempt 2' } }] },
    ]);
    server = await serve();
    await until(
      async () => (await api(server, token, 'GET', `/v1/tasks/${id}`)).body.status === 'completed',
      'the task to complete on its second attempt',
    );
    const done = (await api(server, token, 'GET', `/v1/tasks/${id}`)).body;
    expect(done).toMatchObject({ status: 'completed', attempt: 2, result: 'done on attempt 2', error: null });
    const events = (await api(server, token, 'GET', `/v1/tasks/${id}/events?limit=1000`)).body.data as Json[];
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'status',
        payload: expect.objectContaining({ status: 'queued', reason: 'worker_lost', retry_of_attempt: 1 }),
      }),
    );

    // A task whose worker dies on both attempts fails worker_lost.
    mock.reply([sleep, sleep]);
    const second = await api(server, token, 'POST', '/v1/tasks', {
      agent_id: agent.id,
      prompt: 'die twice',
    });
    const id2: string = second.body.id;
    await until(() => bashRunning(id2, 1), 'attempt 1 of the second task');
    await kill(server);
    server = await serve();
    await until(() => bashRunning(id2, 2), 'attempt 2 of the second task');
    await kill(server);
    server = await serve();
    await until(
      async () => (await api(server, token, 'GET', `/v1/tasks/${id2}`)).body.status === 'failed',
      'the second task to fail',
    );
    const failed = (await api(server, token, 'GET', `/v1/tasks/${id2}`)).body;
    expect(failed).toMatchObject({ status: 'failed', attempt: 2, error: { code: 'worker_lost' } });
    // Its runs ended with it: none is left running.
    const runs = await api(server, token, 'GET', `/v1/runs?agent_id=${agent.id}&status=running`);
    expect(runs.body.data).toEqual([]);
  });
});

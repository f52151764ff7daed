import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  serverCall as api,
  childEnv,
  killHard,
  type RunningServer,
  startServer,
  tempDir,
} from '../support/process.ts';
import { type Receiver, startReceiver } from './receiver.ts';

// At least once across a crash, for real: `paddock serve` in a process of its
// own, SIGKILLed while a slow endpoint holds a delivery, then a new server on
// the same database. Every event reaches the endpoint at least once, each
// delivery verified with the standardwebhooks package.

const STARTUP_MS = 180_000;
const PG_URL = process.env.PADDOCK_TEST_DATABASE_URL;
const AGENTS = 6;

let dataDir: string;
let databaseUrl: string | undefined;
let admin: pg.Client | undefined;
let receiver: Receiver;
const servers: RunningServer[] = [];

beforeAll(async () => {
  dataDir = tempDir('webhook-crash');
  // Slow: each delivery is held for 1.5 s, long enough to kill the server under one.
  receiver = await startReceiver(() => ({ status: 200, delayMs: 1500 }));
  if (PG_URL) {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    const name = `paddock_webhook_crash_${process.pid}`;
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.query(`create database ${name}`);
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  }
});

afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await receiver?.close();
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
      PADDOCK_SANDBOX_WARM: '0',
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    }),
    STARTUP_MS,
  );
  servers.push(server);
  return server;
}

describe('a server killed mid-delivery', { timeout: 4 * STARTUP_MS }, () => {
  it('delivers every event at least once after a restart on the same database', async () => {
    let server = await serve();
    const signup = await api(server, null, 'POST', '/v1/auth/signup', {
      email: 'webhook-crash@example.com',
      password: 'a long password',
      name: 'Crash Test',
    });
    expect(signup.status, JSON.stringify(signup.body)).toBe(201);
    const token: string = signup.body.session_token;
    const hook = await api(server, token, 'POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${receiver.port}/hook`,
      event_types: ['agent.created'],
    });
    expect(hook.status, JSON.stringify(hook.body)).toBe(201);
    const policy = await api(server, token, 'POST', '/v1/policies', { name: 'webhook-crash' });
    const agentIds: string[] = [];
    for (let i = 0; i < AGENTS; i++) {
      const agent = await api(server, token, 'POST', '/v1/agents', {
        name: `crash-${i}`,
        policy_id: policy.body.id,
      });
      expect(agent.status, JSON.stringify(agent.body)).toBe(201);
      agentIds.push(agent.body.id);
    }
    // A delivery is under way (the endpoint holds it): the server dies under it.
    await receiver.until((all) => all.length >= 1, 60_000);
    await killHard(server);
    const beforeRestart = receiver.received.length;
    expect(beforeRestart).toBeLessThan(AGENTS);

    server = await serve();
    const subjects = () =>
      new Set(
        receiver.received.map(
          (r) => (JSON.parse(r.body) as { data: { subject_id: string } }).data.subject_id,
        ),
      );
    await receiver.until(() => agentIds.every((id) => subjects().has(id)), 120_000);
    const wh = new Webhook(hook.body.secret);
    for (const got of receiver.received) wh.verify(got.body, got.headers as Record<string, string>);

    // The log on the new server: every delivery succeeded in the end (its attempt logged once answered).
    const succeeded = async () => {
      const log = await api(server, token, 'GET', `/v1/webhooks/${hook.body.id}/deliveries?limit=200`);
      const ok = log.body.data.filter((a: { status_code: number | null }) => a.status_code === 200);
      return new Set(ok.map((a: { event_id: string }) => a.event_id)).size;
    };
    // The attempt the kill cut is sent again by the sweep once its lock and grace have passed
    // (about 30 s after it started); on a loaded machine that takes longer.
    await expect.poll(succeeded, { timeout: 120_000, interval: 250 }).toBe(AGENTS);
  });
});

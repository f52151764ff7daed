import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  alive,
  childEnv,
  databaseProcessesOf,
  type RunningServer,
  runPaddock,
  startServer,
  tempDir,
} from '../support/process.ts';

// These tests check behaviour, not speed (bench/startup.ts measures that):
// a command gets up to STARTUP_MS to start or finish, which only a hang uses
// up, so a machine busy with other work (a cold initdb took 25 s on a loaded
// CI machine) slows them without failing them.
const STARTUP_MS = 180_000;

const running: RunningServer[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
});

async function serve(args: string[], env = childEnv()): Promise<RunningServer> {
  const server = await startServer(args, env, STARTUP_MS);
  running.push(server);
  return server;
}

async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/ready`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server not ready after ${STARTUP_MS} ms`);
}

const run = (args: string[], env: NodeJS.ProcessEnv) => runPaddock(args, env, STARTUP_MS);

const signupBody = (email: string) => JSON.stringify({ email, password: 'a long password', name: 'First' });

describe('paddock CLI', { timeout: 4 * STARTUP_MS }, () => {
  it('prints help, the version, and refuses unknown commands', async () => {
    const help = await run(['--help'], childEnv());
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('paddock serve');
    expect(help.stdout).toContain('paddock migrate');
    const unknown = await run(['frobnicate'], childEnv());
    // A usage error (docs/cli.md "Exit codes").
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });

  it('names every bad configuration value and exits 1', async () => {
    const res = await run(
      ['serve'],
      childEnv({ PADDOCK_PORT: 'eighty', PADDOCK_SIGNUP: 'sometimes', PADDOCK_MASTER_KEY: 'short' }),
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('PADDOCK_PORT');
    expect(res.stderr).toContain('PADDOCK_SIGNUP');
    expect(res.stderr).toContain('PADDOCK_MASTER_KEY');
  });

  it('says when the database cannot be reached, without a stack trace, and exits 1', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = http.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const res = await run(
      ['migrate'],
      childEnv({ DATABASE_URL: `postgres://postgres@127.0.0.1:${closed}/x` }),
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('cannot reach the database');
    expect(res.stderr).not.toContain('    at ');
  });

  it('serves on an empty data dir, keeps data across a restart, and locks the dir', async () => {
    const dataDir = tempDir('serve');
    const first = await serve(['--data-dir', dataDir]);
    await waitReady(first.url);
    expect(first.output()).toContain('No users yet');
    expect(existsSync(path.join(dataDir, 'master.key'))).toBe(true);

    const signup = await fetch(`${first.url}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: signupBody('first@example.com'),
    });
    expect(signup.status).toBe(201);
    expect(((await signup.json()) as { user: { is_admin: boolean } }).user.is_admin).toBe(true);

    // A second server on the same data dir is refused, clearly.
    const second = await run(['serve', '--port', '0', '--data-dir', dataDir], childEnv());
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/in use by another Paddock process \(pid \d+\)/);

    expect(await first.stop()).toBe(0);
    expect(existsSync(path.join(dataDir, 'paddock.lock'))).toBe(false);

    const again = await serve(['--data-dir', dataDir]);
    await waitReady(again.url);
    expect(again.output()).not.toContain('No users yet');
    const login = await fetch(`${again.url}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'first@example.com', password: 'a long password' }),
    });
    expect(login.status).toBe(200);
  });

  it('finishes an in-flight request on SIGTERM, then exits 0', async () => {
    const server = await serve(['--data-dir', tempDir('sigterm')]);
    await waitReady(server.url);
    // Headers and half the body go first, so the request is in flight when
    // the signal lands; the rest follows after it.
    const body = signupBody('inflight@example.com');
    const { port } = new URL(server.url);
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/auth/signup',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 10));
      setTimeout(() => {
        server.child.kill('SIGTERM');
        setTimeout(() => req.end(body.slice(10)), 200);
      }, 300);
    });
    const res = await response;
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body).user.email).toBe('inflight@example.com');
    expect(await server.stop()).toBe(0);
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
  });

  describe('a database that stops answering while the server stops', () => {
    // SIGSTOP on the embedded database's process: every statement and its
    // close wait for ever, as with a database server that no longer answers.
    const wedged = async () => {
      const server = await serve(
        ['--data-dir', tempDir('wedged')],
        childEnv({ PADDOCK_SHUTDOWN_GRACE_SEC: '0' }),
      );
      await waitReady(server.url);
      const [database] = databaseProcessesOf(server);
      expect(database).toBeDefined();
      process.kill(database!, 'SIGSTOP');
      return { server, database: database! };
    };
    const release = (pid: number) => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    };

    it('does not hold the stop for ever: past the grace and its margin the process exits 1, saying why', async () => {
      const { server, database } = await wedged();
      try {
        const signalled = Date.now();
        expect(await server.stop()).toBe(1);
        expect(Date.now() - signalled).toBeGreaterThanOrEqual(14_000);
        expect(server.output()).toContain('still stopping after 15 s: exiting now');
      } finally {
        release(database);
      }
    });
  });

  it('migrate applies migrations alone', async () => {
    const dataDir = tempDir('migrate');
    const res = await run(['migrate', '--data-dir', dataDir], childEnv());
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('migrations applied');
    const twice = await run(['migrate', '--data-dir', dataDir], childEnv());
    expect(twice.code).toBe(0);
  });

  it.runIf(process.env.PADDOCK_TEST_DATABASE_URL)('serves on Postgres when DATABASE_URL is set', async () => {
    const adminUrl = process.env.PADDOCK_TEST_DATABASE_URL!;
    const name = `paddock_cli_${process.pid}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.query(`create database ${name}`);
    try {
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const server = await serve(['--data-dir', tempDir('pg')], childEnv({ DATABASE_URL: url.toString() }));
      await waitReady(server.url);
      expect(server.output()).toContain('Postgres (DATABASE_URL)');
      const health = (await (await fetch(`${server.url}/health`)).json()) as { db: unknown };
      expect(health.db).toEqual({ kind: 'postgres', ok: true });
      expect(await server.stop()).toBe(0);
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });
});

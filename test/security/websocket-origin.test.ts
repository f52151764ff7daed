import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { childEnv, type RunningServer, startServer, tempDir } from '../support/process.ts';
import { output, ptyText } from '../support/ws.ts';

// Issue 9, finding 2: a browser opens a WebSocket to any address a page names,
// sends the cookie with it, and no CORS rule applies, so exec/stream, the
// process stream and the PTY ran commands for any site the user visited. An
// upgrade authenticated by cookie now needs an allowed Origin and the CSRF
// token; bearer tokens and API keys (CLI, SDKs) are unaffected.

const PUBLIC_URL = 'https://paddock.example.com';
const ALSO_ALLOWED = ['https://dash.example.com', 'http://localhost:5173'];

let t: TestApp;
let u: SignedUpUser;
let base: string;
let selfOrigin: string;
let capsule: Json;

async function runningCapsule(call: (method: string, url: string, body?: unknown) => Promise<Json>) {
  const created = await call('POST', '/v1/capsules', { memory_mb: 128, disk_size_mb: 16 });
  for (;;) {
    const c = await call('GET', `/v1/capsules/${created.id}`);
    if (c.status === 'running') return c;
    if (c.status === 'error') throw new Error(String(c.status_reason));
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  t = await createTestApp({
    start: new Date(),
    env: {
      PADDOCK_SANDBOX_DRIVER: 'process',
      PADDOCK_PUBLIC_URL: PUBLIC_URL,
      PADDOCK_ALLOWED_ORIGINS: ALSO_ALLOWED.join(', '),
    },
  });
  u = await t.signup();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = t.app.server.address() as AddressInfo;
  base = `ws://127.0.0.1:${port}`;
  selfOrigin = `http://127.0.0.1:${port}`;
  capsule = await runningCapsule(async (method, url, body) => {
    await t.services.capsules.settled();
    return (await t.call(method, url, { token: u.token, ...(body ? { body } : {}) })).body;
  });
});
afterAll(async () => {
  await t.call('DELETE', `/v1/capsules/${capsule.id}`, { token: u.token });
  await t.services.capsules.settled();
  await t.close();
});

interface UpgradeOptions {
  cookie?: string;
  bearer?: string;
  apiKey?: string;
  origin?: string;
  csrf?: string;
}

type Upgraded =
  | { status: 101; ws: WebSocket; frames: Json[]; next: (match: (f: Json) => boolean) => Promise<Json> }
  | { status: number; body: Json };

/** Opens `path` as a browser (cookie + Origin) or a CLI (bearer) would; a refusal comes back as its HTTP answer. */
function upgrade(wsBase: string, path: string, o: UpgradeOptions): Promise<Upgraded> {
  const headers: Record<string, string> = {};
  if (o.cookie !== undefined) headers.cookie = o.cookie;
  if (o.bearer !== undefined) headers.authorization = `Bearer ${o.bearer}`;
  if (o.apiKey !== undefined) headers['x-api-key'] = o.apiKey;
  if (o.origin !== undefined) headers.origin = o.origin;
  const query = o.csrf !== undefined ? `?csrf_token=${encodeURIComponent(o.csrf)}` : '';
  const ws = new WebSocket(`${wsBase}${path}${query}`, { headers });
  const frames: Json[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (raw) => {
    frames.push(JSON.parse(String(raw)) as Json);
    for (const w of waiters.splice(0)) w();
  });
  const next = async (match: (f: Json) => boolean): Promise<Json> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = frames.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching frame; got ${JSON.stringify(frames)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  };
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString('utf8');
      });
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Json) : {} });
      });
    });
    ws.once('open', () => resolve({ status: 101, ws, frames, next }));
    ws.once('error', reject);
  });
}

const cookieOf = (session: { token: string }) => `paddock_session=${session.token}`;
const routes = () => [
  `/v1/capsules/${capsule.id}/exec/stream`,
  `/v1/capsules/${capsule.id}/processes/anything/stream`,
  `/v1/capsules/${capsule.id}/pty`,
];

function expectRefused(res: Upgraded, code: string, what: string): void {
  expect(res.status, `${what}: ${JSON.stringify('body' in res ? res.body : 'opened')}`).toBe(403);
  if ('ws' in res) res.ws.close();
  const body = (res as { body: Json }).body;
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code, what).toBe(code);
  expect(typeof body.error.message).toBe('string');
}

async function execEcho(up: Upgraded, word: string): Promise<void> {
  expect(up.status, JSON.stringify('body' in up ? up.body : '')).toBe(101);
  if (!('ws' in up)) return;
  up.ws.send(JSON.stringify({ type: 'start', cmd: 'echo', args: [word] }));
  const exit = await up.next((f) => f.type === 'exit');
  expect(exit.exit_code).toBe(0);
  expect(output(up.frames)).toBe(`${word}\n`);
}

describe('WebSocket upgrades authenticated by the session cookie', () => {
  it('are 403 origin_not_allowed, in the error shape and before the upgrade, from another site’s page', async () => {
    const foreign = [
      'https://evil.example',
      `${PUBLIC_URL}.evil.example`,
      'http://paddock.example.com', // the public URL's host over the other scheme
      'http://127.0.0.1:1', // this host, another port: cookies do not care about ports
      'http://localhost:5174',
      'null', // sandboxed frames and file:// pages
      'not a url',
    ];
    for (const path of routes()) {
      for (const origin of foreign) {
        const res = await upgrade(base, path, { cookie: cookieOf(u), origin, csrf: u.csrf });
        expectRefused(res, 'origin_not_allowed', `${path} from ${origin}`);
        expect((res as { body: Json }).body.error.details).toEqual({ origin });
      }
    }
  });

  it('are refused without an Origin at all (no browser omits it)', async () => {
    for (const path of routes()) {
      const res = await upgrade(base, path, { cookie: cookieOf(u), csrf: u.csrf });
      expectRefused(res, 'origin_not_allowed', path);
      expect((res as { body: Json }).body.error.details).toEqual({ origin: null });
    }
  });

  it('are refused before the capsule is looked up: an unknown capsule is 403, not 404', async () => {
    const res = await upgrade(base, '/v1/capsules/cap_nope/exec/stream', {
      cookie: cookieOf(u),
      origin: 'https://evil.example',
    });
    expectRefused(res, 'origin_not_allowed', 'unknown capsule');
  });

  it('from an allowed page need this session’s CSRF token as csrf_token; with it they run commands', async () => {
    const other = await t.signup();
    for (const path of routes()) {
      for (const csrf of [undefined, '', 'attacker', other.csrf]) {
        const res = await upgrade(base, path, { cookie: cookieOf(u), origin: selfOrigin, csrf });
        expectRefused(res, 'csrf_failed', `${path} with csrf_token ${csrf}`);
      }
    }
    // A planted CSRF cookie with a matching value changes nothing.
    const planted = await upgrade(base, routes()[0]!, {
      cookie: `${cookieOf(u)}; paddock_csrf=attacker`,
      origin: selfOrigin,
      csrf: 'attacker',
    });
    expectRefused(planted, 'csrf_failed', 'planted cookie');

    // This server's own page, PADDOCK_PUBLIC_URL's and PADDOCK_ALLOWED_ORIGINS' (as a browser may spell them).
    for (const origin of [selfOrigin, PUBLIC_URL, ...ALSO_ALLOWED, 'HTTPS://Dash.Example.com:443']) {
      const path = `/v1/capsules/${capsule.id}/exec/stream`;
      expectRefused(
        await upgrade(base, path, { cookie: cookieOf(u), origin }),
        'csrf_failed',
        `${origin} without the token`,
      );
      await execEcho(
        await upgrade(base, path, { cookie: cookieOf(u), origin, csrf: u.csrf }),
        `from-${origin.length}`,
      );
    }
  });

  it('attach to a background process and open a terminal from an allowed page, not from another', async () => {
    const bg = await t.call('POST', `/v1/capsules/${capsule.id}/exec`, {
      token: u.token,
      body: { cmd: 'sleep 1; echo attached-late', background: true, tag: 'browser-bg' },
    });
    expect(bg.status).toBe(202);
    const attachPath = `/v1/capsules/${capsule.id}/processes/browser-bg/stream`;
    const ptyPath = `/v1/capsules/${capsule.id}/pty`;
    for (const path of [attachPath, ptyPath]) {
      const foreign = await upgrade(base, path, {
        cookie: cookieOf(u),
        origin: 'https://evil.example',
        csrf: u.csrf,
      });
      expectRefused(foreign, 'origin_not_allowed', path);
    }

    const attach = await upgrade(base, attachPath, { cookie: cookieOf(u), origin: PUBLIC_URL, csrf: u.csrf });
    expect(attach.status).toBe(101);
    if ('ws' in attach) {
      expect((await attach.next((f) => f.type === 'exit')).exit_code).toBe(0);
      expect(output(attach.frames)).toBe('attached-late\n');
    }

    const term = await upgrade(base, ptyPath, { cookie: cookieOf(u), origin: selfOrigin, csrf: u.csrf });
    expect(term.status).toBe(101);
    if ('ws' in term) {
      term.ws.send(JSON.stringify({ type: 'start', cmd: '/bin/sh' }));
      await term.next((f) => f.type === 'started');
      term.ws.send(
        JSON.stringify({ type: 'input', data: Buffer.from('echo tty-$((6*7))\n').toString('base64') }),
      );
      await term.next(() => ptyText(term.frames).includes('tty-42'));
      term.ws.send(JSON.stringify({ type: 'kill' }));
      expect((await term.next((f) => f.type === 'exit')).exit_code).toBe(137);
    }
  });
});

describe('an upgrade to a route that is no WebSocket', () => {
  it('is a 404 over HTTP before any upgrade, so the socket (and the URL with its token) never reaches the plugin', async () => {
    for (const path of ['/v1/teams', '/v1/me', `/v1/capsules/${capsule.id}`]) {
      const res = await upgrade(base, path, { bearer: u.token, csrf: u.csrf });
      expect(res.status, path).toBe(404);
      if ('ws' in res) res.ws.close();
      expect((res as { body: Json }).body.error.code).toBe('route_not_found');
    }
  });
});

describe('WebSocket upgrades authenticated by a bearer token or API key', () => {
  it('need neither an Origin nor a CSRF token, whatever Origin they carry (the cookie alone would not do)', async () => {
    const path = `/v1/capsules/${capsule.id}/exec/stream`;
    expectRefused(
      await upgrade(base, path, { cookie: cookieOf(u), origin: 'https://evil.example' }),
      'origin_not_allowed',
      'the same request by cookie',
    );
    const key = await t.apiKey(u.token, ['write']);
    await execEcho(await upgrade(base, `/v1/capsules/${capsule.id}/exec/stream`, { bearer: u.token }), 'cli');
    await execEcho(
      await upgrade(base, `/v1/capsules/${capsule.id}/exec/stream`, { apiKey: key.key, origin: 'null' }),
      'sdk',
    );
    // The bearer token is what authenticates, even with a session cookie riding along.
    await execEcho(
      await upgrade(base, `/v1/capsules/${capsule.id}/exec/stream`, {
        bearer: key.key,
        cookie: cookieOf(u),
        origin: 'https://evil.example',
      }),
      'key-with-cookie',
    );
  });
});

describe('PADDOCK_ALLOWED_ORIGINS', () => {
  it('adds origins, as browsers spell them, to the public URL’s; every entry that is no origin is named', () => {
    const config = loadConfig({
      PADDOCK_PUBLIC_URL: 'https://Paddock.Example.com/app/',
      PADDOCK_ALLOWED_ORIGINS:
        ' https://dash.example.com:443/ ,http://localhost:5173,,https://paddock.example.com',
    });
    expect(config.allowedOrigins).toEqual([
      'https://paddock.example.com',
      'https://dash.example.com',
      'http://localhost:5173',
    ]);
    expect(loadConfig({}).allowedOrigins).toEqual([]);

    const bad = [
      '*',
      'https://dash.example.com/path',
      'ftp://files.example',
      'https://user:pw@x.example',
      'dash.example',
    ];
    let problems: string[] = [];
    try {
      loadConfig({ PADDOCK_ALLOWED_ORIGINS: ['https://fine.example', ...bad].join(',') });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    expect(problems).toHaveLength(bad.length);
    bad.forEach((entry, i) => {
      expect(problems[i]).toContain('PADDOCK_ALLOWED_ORIGINS');
      expect(problems[i]).toContain(JSON.stringify(entry));
    });
  });
});

describe('the CSRF token in the query string', () => {
  let server: RunningServer | undefined;
  const dataDir = tempDir('ws-logs');
  afterAll(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  // `paddock serve` itself, so the logger is the one production uses; its start (migrations) is slow on a busy machine.
  it('never reaches the server’s logs, refused or accepted', { timeout: 240_000 }, async () => {
    server = await startServer(
      ['--data-dir', dataDir],
      childEnv({ PADDOCK_SANDBOX_DRIVER: 'process', PADDOCK_SANDBOX_WARM: '0', PADDOCK_LOG_LEVEL: 'info' }),
      180_000,
    );
    const { url } = server;
    const signup = await fetch(`${url}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'logs@example.com', password: 'a long password', name: 'Logs' }),
    });
    expect(signup.status).toBe(201);
    const session = (await signup.json()) as { session_token: string; csrf_token: string };
    const c = await runningCapsule(async (method, path, body) => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${session.session_token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return (await res.json()) as Json;
    });
    const wsBase = url.replace(/^http/, 'ws');
    const path = `/v1/capsules/${c.id}/exec/stream`;
    const wrong = 'csrf_NotTheTokenButLooksLikeOne0123456789abcdefghi';
    expectRefused(
      await upgrade(wsBase, path, {
        cookie: cookieOf({ token: session.session_token }),
        origin: url,
        csrf: wrong,
      }),
      'csrf_failed',
      'wrong token',
    );
    await execEcho(
      await upgrade(wsBase, path, {
        cookie: cookieOf({ token: session.session_token }),
        origin: url,
        csrf: session.csrf_token,
      }),
      'logged',
    );
    await server.stop();
    const logs = server.output();
    // The requests were logged (by path), the tokens were not.
    expect(logs.split(path).length - 1).toBeGreaterThanOrEqual(2);
    expect(logs).not.toContain(session.csrf_token);
    expect(logs).not.toContain(wrong);
    expect(logs).not.toContain('csrf_token=');
    expect(logs).not.toContain(session.session_token);
  });
});

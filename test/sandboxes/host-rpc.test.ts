import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ManualClock, SECOND_MS } from '../../src/core/clock.ts';
import { DriverError } from '../../src/modules/sandboxes/drivers/types.ts';
import type { ExecRequest, HostCapsuleSpec, SandboxHost } from '../../src/modules/sandboxes/host.ts';
import { type AgentServer, serveAgentApi } from '../../src/modules/sandboxes/host-side/host-api.ts';
import { HostAgentError, runHostAgent } from '../../src/modules/sandboxes/host-side/host-daemon.ts';
import { RemoteHost } from '../../src/modules/sandboxes/remote-host.ts';

// The control plane ↔ sandbox host RPC at its edges: what the host API
// refuses before any host operation runs, what RemoteHost makes of a host
// that answers the wrong shape, that file contents stream both ways, and
// what `paddock host` does with a credentials file that is not one.

const TOKEN = 'pdc_control-token-for-this-test';
const EXEC: ExecRequest = { cmd: 'true', timeoutSec: 5, maxOutputBytes: 1024 };
const RESULT = {
  stdout: 'hi\n',
  stderr: '',
  exit_code: 0,
  duration_ms: 3,
  encoding: 'utf-8',
  truncated: false,
  timed_out: false,
};

describe('the host API', () => {
  const calls: string[] = [];
  let server: AgentServer;
  let base: string;
  // File contents in flight: the test moves them on chunk by chunk.
  let download: PassThrough;
  let upload: { chunks: string[]; ended: Promise<void> } | undefined;
  let uploadChunk: (() => void) | undefined;

  beforeAll(async () => {
    const host = {
      exec: async (capsuleId: string, req: ExecRequest) => {
        calls.push(`exec ${capsuleId} ${req.cmd}`);
        return RESULT;
      },
      readStream: async () => download,
      writeFile: async (_c: string, _p: string, data: Readable) => {
        const chunks: string[] = [];
        upload = {
          chunks,
          ended: new Promise<void>((resolve) => data.on('end', () => resolve())),
        };
        data.on('data', (c: Buffer) => {
          chunks.push(String(c));
          uploadChunk?.();
        });
        await upload.ended;
      },
    } as unknown as SandboxHost;
    server = await serveAgentApi(
      () => host,
      () => TOKEN,
      { host: '127.0.0.1', port: 0 },
    );
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.close());
  afterEach(() => {
    calls.length = 0;
  });

  const post = (name: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${base}/host/rpc/${name}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers },
      body,
    });

  it('refuses a call without the control token, or with another, as 401 in the error shape', async () => {
    for (const authorization of [undefined, 'Bearer pdc_another-token', `Basic ${TOKEN}`, 'Bearer ']) {
      const res = await fetch(`${base}/host/rpc/exec`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ capsuleId: 'cap_1', req: EXEC }),
      });
      expect(res.status, authorization).toBe(401);
      expect(await res.json()).toEqual({ error: { code: 'unauthorized', message: 'bad control token' } });
    }
    const files = await fetch(`${base}/host/files?capsule=cap_1&path=/etc/passwd`);
    expect(files.status).toBe(401);
    expect(calls).toEqual([]);
  });

  it('refuses the follow socket without the control token, before upgrading', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/host/follow?capsule=cap_1&selector=1`, {
      headers: { authorization: 'Bearer pdc_another-token' },
    });
    const status = await new Promise<number | undefined>((resolve) => {
      ws.on('unexpected-response', (req, res) => {
        req.destroy();
        resolve(res.statusCode);
      });
      ws.on('open', () => resolve(undefined));
    });
    expect(status).toBe(401);
  });

  it('refuses a malformed call as 400 naming the field, and runs nothing', async () => {
    const cases: Array<[string, string, string]> = [
      ['a missing field', JSON.stringify({ capsuleId: 'cap_1' }), 'req'],
      ['a wrong type', JSON.stringify({ capsuleId: 42, req: EXEC }), 'capsuleId'],
      [
        'a wrong nested type',
        JSON.stringify({ capsuleId: 'cap_1', req: { ...EXEC, args: 'ls' } }),
        'req.args',
      ],
      ['an unknown field', JSON.stringify({ capsuleId: 'cap_1', req: EXEC, sudo: true }), 'sudo'],
    ];
    for (const [what, body, field] of cases) {
      const res = await post('exec', body);
      expect(res.status, what).toBe(400);
      const answer = (await res.json()) as { error: { code: string; message: string } };
      expect(answer.error.code, what).toBe('validation_failed');
      expect(answer.error.message, what).toContain(field);
    }
    const broken = await post('exec', '{"capsuleId": ');
    expect(broken.status).toBe(400);
    expect(((await broken.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    const signal = await post(
      'kill',
      JSON.stringify({ capsuleId: 'cap_1', selector: '1', signal: 'SIGSTOP' }),
    );
    expect(signal.status).toBe(400);
    const noCapsule = await fetch(`${base}/host/files?path=/etc/passwd`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(noCapsule.status).toBe(400);
    expect(((await noCapsule.json()) as { error: { code: string } }).error.code).toBe('validation_failed');
    expect(calls).toEqual([]);

    const ok = await post('exec', JSON.stringify({ capsuleId: 'cap_1', req: EXEC }));
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ result: RESULT });
    expect(calls).toEqual(['exec cap_1 true']);
  });

  it('streams a file to the control plane as it is read, and from it as it is sent', async () => {
    const remote = new RemoteHost('hst_test', `127.0.0.1:${server.port}`, TOKEN, 'none');
    // Down: the first chunk arrives while the host's file stream is still open.
    download = new PassThrough();
    download.write('first ');
    const stream = await remote.readStream('cap_1', '/big');
    const first = await new Promise<string>((resolve) =>
      stream.once('data', (c: Buffer) => resolve(String(c))),
    );
    expect(first).toBe('first ');
    download.end('last');
    const rest: string[] = [];
    for await (const c of stream) rest.push(String(c));
    expect(rest.join('')).toBe('last');

    // Up: the host has the first chunk before the control plane has sent the second.
    const body = new PassThrough();
    const firstArrived = new Promise<void>((resolve) => {
      uploadChunk = resolve;
    });
    const written = remote.writeFile('cap_1', '/up', body, 1024);
    body.write('one ');
    await firstArrived;
    expect(upload?.chunks).toEqual(['one ']);
    uploadChunk = undefined;
    body.end('two');
    await written;
    expect(upload?.chunks.join('')).toBe('one two');
    await remote.close();
  });
});

describe('RemoteHost, answered by a host that misbehaves', () => {
  // A stand-in host: each test says what it answers next.
  let answer: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  let frames: string[] = [];
  let target: http.Server;
  let remote: RemoteHost;
  beforeAll(async () => {
    target = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(req, res));
    });
    const wss = new WebSocketServer({ server: target });
    wss.on('connection', (ws) => {
      for (const f of frames) ws.send(f);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const { port } = target.address() as AddressInfo;
    remote = new RemoteHost('hst_test', `127.0.0.1:${port}`, TOKEN, 'none');
  });
  afterAll(async () => {
    await remote.close();
    target.closeAllConnections();
    await new Promise<void>((resolve) => target.close(() => resolve()));
  });

  const answers = (status: number, body: string) => {
    answer = (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    };
  };

  async function refusal(call: Promise<unknown>): Promise<DriverError> {
    const err = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DriverError);
    return err as DriverError;
  }

  it('turns an answer of the wrong type or with a field missing into a DriverError naming both', async () => {
    const { exit_code: _, ...noExitCode } = RESULT;
    answers(200, JSON.stringify({ result: noExitCode }));
    let err = await refusal(remote.exec('cap_1', EXEC));
    expect(err.code).toBe('failed');
    expect(err.message).toMatch(/hst_test answered exec wrongly: exit_code is required/);

    answers(200, JSON.stringify({ result: { ...RESULT, exit_code: '0' } }));
    err = await refusal(remote.exec('cap_1', EXEC));
    expect(err.message).toMatch(/answered exec wrongly: exit_code must be integer/);

    answers(200, JSON.stringify({ result: { processes: [] } }));
    err = await refusal(remote.processes('cap_1'));
    expect(err.message).toMatch(/answered processes wrongly: answer must be array/);

    answers(200, JSON.stringify({ result: [{ pid: -1, tag: null, cmd: 'sh', args: [] }] }));
    err = await refusal(remote.processes('cap_1'));
    expect(err.message).toMatch(/answered processes wrongly: 0\.pid must be >= 0/);

    answers(200, JSON.stringify({ answer: 'ok' }));
    err = await refusal(remote.kill('cap_1', '1', 'SIGTERM'));
    expect(err.message).toMatch(/answered kill wrongly/);

    answers(200, 'not json');
    err = await refusal(remote.usage('cap_1'));
    expect(err.message).toMatch(/answered usage with 200 without JSON/);
  });

  it('keeps a driver refusal’s code, and names a refusal that is not in the error shape', async () => {
    answers(422, JSON.stringify({ error: { code: 'not_found', message: 'no such file' } }));
    let err = await refusal(remote.readFile('cap_1', '/nope', 10));
    expect([err.code, err.message]).toEqual(['not_found', 'no such file']);

    answers(422, JSON.stringify({ error: { code: 'invalid', message: 'LD_PRELOAD is not allowed' } }));
    err = await refusal(remote.exec('cap_1', EXEC));
    expect(err.code).toBe('invalid');

    answers(422, JSON.stringify({ error: { code: 'root_please', message: 'x' } }));
    err = await refusal(remote.exec('cap_1', EXEC));
    expect(err.code).toBe('failed');

    answers(500, JSON.stringify({ error: 'it broke' }));
    err = await refusal(remote.mkdir('cap_1', '/d'));
    expect(err.code).toBe('failed');
    expect(err.message).toMatch(/answered mkdir with 500 without an error: error must be object/);
  });

  it('refuses to follow a process when the host breaks the follow protocol', async () => {
    frames = [JSON.stringify({ type: 'attached', pid: 'seven', tag: null, pty: false })];
    const err = await refusal(remote.followed('cap_1', '7'));
    expect(err.message).toMatch(/broke the follow protocol/);

    frames = [JSON.stringify({ type: 'attached', pid: 7, tag: 't', pty: false }), '{"type": "out"}'];
    const f = await remote.followed('cap_1', 't');
    expect(f?.pid).toBe(7);
    expect(await f?.exited).toBe(255);
  });
});

describe("RemoteHost's view of which capsules a host runs", () => {
  it('gives a capsule just handed over 15 s on the injected clock before a report can end it', async () => {
    const target = http.createServer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ result: {} }));
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const clock = new ManualClock(new Date('2026-12-03T00:00:00Z'));
    const remote = new RemoteHost(
      'hst_test',
      `127.0.0.1:${(target.address() as AddressInfo).port}`,
      TOKEN,
      'none',
      [],
      { clock },
    );
    const ended: string[] = [];
    remote.onEnded((id, reason) => ended.push(`${id} ${reason}`));
    const spec: HostCapsuleSpec = {
      id: 'cap_new',
      teamId: 'team_1',
      templatePath: null,
      limits: { memoryMb: 256, vcpus: 1, diskMb: 64, maxProcesses: 64, maxOpenFiles: 256 },
      envs: {},
      networkAllow: null,
    };
    await remote.create(spec);
    clock.advance(14 * SECOND_MS);
    remote.report('127.0.0.1:1', []); // a heartbeat sent before the create
    expect(remote.has('cap_new')).toBe(true);
    clock.advance(2 * SECOND_MS);
    remote.report('127.0.0.1:1', []);
    expect(remote.has('cap_new')).toBe(false);
    expect(ended).toEqual(['cap_new capsule_exited']);
    await remote.close();
    target.closeAllConnections();
    await new Promise<void>((resolve) => target.close(() => resolve()));
  });
});

describe('`paddock host` with a credentials file that is not one', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const start = (contents: string) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'paddock-creds-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, 'host-credentials.json'), contents, { mode: 0o600 });
    return {
      file: path.join(dir, 'host-credentials.json'),
      run: runHostAgent({
        // Never reached: the file is refused first.
        controlPlane: 'http://127.0.0.1:9',
        listen: '127.0.0.1',
        port: 0,
        sandboxDir: dir,
        driver: 'process',
        egressPrivate: false,
        warm: 0,
        heartbeatMs: 60_000,
        log: () => {},
      }),
    };
  };

  it('stops with an error naming the file and what is wrong in it', async () => {
    const cases: Array<[string, RegExp]> = [
      ['{"host_id": "hst_1", "token": ', /cannot be read as JSON/],
      ['[]', /is malformed: file must be object/],
      [JSON.stringify({ host_id: 'hst_01', token: 't', refresh_token: 'r' }), /control_token is required/],
      [
        JSON.stringify({ host_id: 'hst_01', token: 7, refresh_token: 'r', control_token: 'c' }),
        /token must be string/,
      ],
      [
        JSON.stringify({ host_id: 'agt_01', token: 't', refresh_token: 'r', control_token: 'c' }),
        /host_id must match/,
      ],
    ];
    for (const [contents, problem] of cases) {
      const { file, run } = start(contents);
      const err = await run.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, contents).toBeInstanceOf(HostAgentError);
      expect((err as Error).message, contents).toContain(`the credentials file ${file}`);
      expect((err as Error).message, contents).toMatch(problem);
      expect((err as Error).message, contents).toMatch(/register this host again with --token/);
    }
  });
});

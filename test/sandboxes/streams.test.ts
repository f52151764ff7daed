import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { connectWs, output, ptyText } from '../support/ws.ts';

// Wrenn's WebSocket protocols over a real socket: exec/stream, attaching to
// a background process, and the PTY with its reattach after a disconnect.

let t: TestApp;
let u: SignedUpUser;
let base: string;
let capsule: Json;
beforeAll(async () => {
  t = await createTestApp({ start: new Date(), env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' } });
  u = await t.signup();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  base = `ws://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  const res = await t.call('POST', '/v1/capsules', {
    token: u.token,
    body: { memory_mb: 256, disk_size_mb: 64 },
  });
  for (;;) {
    await t.services.capsules.settled();
    const c = await t.call('GET', `/v1/capsules/${res.body.id}`, { token: u.token });
    if (c.body.status === 'running') {
      capsule = c.body;
      break;
    }
    if (c.body.status === 'error') throw new Error(String(c.body.status_reason));
    await new Promise((r) => setTimeout(r, 20));
  }
});
afterAll(async () => {
  await t.call('DELETE', `/v1/capsules/${capsule.id}`, { token: u.token });
  await t.services.capsules.settled();
  await t.close();
});

const connect = (path: string) => connectWs(`${base}${path}`, u.token);

describe('exec/stream', () => {
  it('streams start, stdout, stderr and exit, then closes', async () => {
    const s = await connect(`/v1/capsules/${capsule.id}/exec/stream`);
    s.send({
      type: 'start',
      cmd: 'sh',
      args: ['-c', 'echo one; echo two >&2; sleep 0.2; echo three; exit 4'],
    });
    const start = await s.next((f) => f.type === 'start');
    expect(start.pid).toEqual(expect.any(Number));
    const exit = await s.next((f) => f.type === 'exit');
    expect(exit.exit_code).toBe(4);
    await s.closedNow();
    expect(output(s.frames)).toBe('one\nthree\n');
    expect(output(s.frames, 'stderr')).toBe('two\n');
  });

  it("holds a start frame to the exec body's schema: the same fields refused, and nothing starts", async () => {
    const s = await connect(`/v1/capsules/${capsule.id}/exec/stream`);
    s.send({ type: 'start', cmd: 'echo', args: [1], cwd: 'relative', shell: true });
    const err = await s.next((f) => f.type === 'error');
    expect(err.code).toBe('validation_failed');
    const http = await t.call('POST', `/v1/capsules/${capsule.id}/exec`, {
      token: u.token,
      body: { cmd: 'echo', args: [1], cwd: 'relative', shell: true },
    });
    expect(http.status).toBe(400);
    expect(err.fields).toEqual(http.body.error.details.fields);
    expect(Object.keys(err.fields).sort()).toEqual(['args.0', 'cwd', 'shell']);
    await s.closedNow();
    expect(s.frames.some((f) => f.type === 'start')).toBe(false);
  });

  it('stops the process on {"type":"stop"}', async () => {
    const s = await connect(`/v1/capsules/${capsule.id}/exec/stream`);
    s.send({ type: 'start', cmd: 'sleep', args: ['60'] });
    await s.next((f) => f.type === 'start');
    s.send({ type: 'stop' });
    const exit = await s.next((f) => f.type === 'exit');
    expect(exit.exit_code).toBe(137);
  });

  it('answers 404 for an unknown capsule and 409 for one that is not running, before the upgrade', async () => {
    const upgradeStatus = (path: string) => {
      const ws = new WebSocket(`${base}${path}`, { headers: { authorization: `Bearer ${u.token}` } });
      return new Promise<number>((resolve) => {
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
      });
    };
    expect(await upgradeStatus('/v1/capsules/cap_nope/exec/stream')).toBe(404);
    const created = await t.call('POST', '/v1/capsules', {
      token: u.token,
      body: { memory_mb: 128, disk_size_mb: 16 },
    });
    await t.services.capsules.settled();
    await t.call('DELETE', `/v1/capsules/${created.body.id}`, { token: u.token });
    await t.services.capsules.settled();
    expect(await upgradeStatus(`/v1/capsules/${created.body.id}/pty`)).toBe(409);
  });
});

describe('processes/{selector}/stream', () => {
  it('attaches to a background process by tag: recent output, then live, then exit', async () => {
    const bg = await t.call('POST', `/v1/capsules/${capsule.id}/exec`, {
      token: u.token,
      body: { cmd: 'echo early; sleep 0.5; echo late', background: true, tag: 'talker' },
    });
    expect(bg.status).toBe(202);
    await new Promise((r) => setTimeout(r, 150));
    const s = await connect(`/v1/capsules/${capsule.id}/processes/talker/stream`);
    expect((await s.next((f) => f.type === 'start')).pid).toBe(bg.body.pid);
    const exit = await s.next((f) => f.type === 'exit');
    expect(exit.exit_code).toBe(0);
    expect(output(s.frames)).toBe('early\nlate\n');
  });
});

describe('pty', () => {
  it('runs a terminal: input, resize, output; survives a disconnect and reattaches by tag; kill ends it', async () => {
    const a = await connect(`/v1/capsules/${capsule.id}/pty`);
    a.send({ type: 'start', cmd: '/bin/sh', cols: 100, rows: 30 });
    const started = await a.next((f) => f.type === 'started');
    expect(started.tag).toMatch(/^pty-[0-9a-f]{8}$/);
    a.send({ type: 'input', data: Buffer.from('stty size; echo mark-$((6*7))\n').toString('base64') });
    await a.next(() => ptyText(a.frames).includes('mark-42'));
    expect(ptyText(a.frames)).toContain('30 100');
    a.send({ type: 'resize', cols: 120, rows: 40 });
    a.send({ type: 'input', data: Buffer.from('stty size\n').toString('base64') });
    await a.next(() => ptyText(a.frames).includes('40 120'));
    a.send({ type: 'input', data: Buffer.from('export KEPT=yes\n').toString('base64') });
    await new Promise((r) => setTimeout(r, 100));
    a.ws.close();
    await a.closedNow();

    // The session kept running: reconnect and find its state.
    const b = await connect(`/v1/capsules/${capsule.id}/pty`);
    b.send({ type: 'connect', tag: started.tag });
    const again = await b.next((f) => f.type === 'started');
    expect(again).toMatchObject({ tag: started.tag, pid: started.pid, reconnected: true });
    b.send({ type: 'input', data: Buffer.from('echo kept-$KEPT\n').toString('base64') });
    await b.next(() => ptyText(b.frames).includes('kept-yes'));
    b.send({ type: 'kill' });
    const exit = await b.next((f) => f.type === 'exit');
    expect(exit.exit_code).toBe(137);

    const c = await connect(`/v1/capsules/${capsule.id}/pty`);
    c.send({ type: 'connect', tag: started.tag });
    const err = await c.next((f) => f.type === 'error');
    expect(err.fatal).toBe(true);
  });
});

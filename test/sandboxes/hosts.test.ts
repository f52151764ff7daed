import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECOND_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { childEnv, type RunningServer, startPaddock, tempDir } from '../support/process.ts';
import { connectWs, output, ptyText } from '../support/ws.ts';

// Two `paddock host` processes on this machine register with a control
// plane (the test app on a real port); capsules are placed on the least
// loaded host that matches their tags, and exec, files and snapshots reach
// them there. A host that stops heartbeating goes unreachable.

let t: TestApp;
let admin: SignedUpUser;
let member: SignedUpUser;
let url: string;
const agents: Array<RunningServer & { dir: string }> = [];

beforeAll(async () => {
  // Manual timers: the server's own sweeps wait for the test, which sweeps when it means to.
  t = await createTestApp({
    start: new Date(),
    env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' },
    manualTimers: true,
  });
  admin = await t.signup(); // the first user: platform admin
  member = await t.signup();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  for (const a of agents) rmSync(a.dir, { recursive: true, force: true });
  await t.close();
});

async function api(method: string, path: string, body?: unknown, token = admin.token) {
  return t.call(method, path, { token, ...(body !== undefined ? { body } : {}) });
}

async function startHost(token: string) {
  const dir = tempDir('host');
  const agent = await startPaddock(
    ['host', '--control-plane', url, '--token', token, '--port', '0', '--host', '127.0.0.1'],
    childEnv({ PADDOCK_SANDBOX_DIR: dir, PADDOCK_SANDBOX_DRIVER: 'bwrap', PADDOCK_HOST_HEARTBEAT_MS: '300' }),
    /Paddock host (hst_\w+) serving/,
  );
  const running = { ...agent, url: '', dir };
  agents.push(running);
  return { ...running, hostId: agent.match[1]! };
}

async function eventually(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const waitFor = (id: string, status: string) => waitForCapsule(t, admin.token, id, status);

async function capsule(hostTags: string[]): Promise<Json> {
  const res = await api('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64, host_tags: hostTags });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return waitFor(res.body.id, 'running');
}

describe('remote hosts', () => {
  let a: Awaited<ReturnType<typeof startHost>>;
  let b: Awaited<ReturnType<typeof startHost>>;

  it('registers two paddock host processes with one-time tokens', async () => {
    const ca = await api('POST', '/v1/hosts', { type: 'regular', tags: ['remote'], provider: 'bare-metal' });
    expect(ca.status, JSON.stringify(ca.body)).toBe(201);
    expect(ca.body.host).toMatchObject({ status: 'pending', type: 'regular', tags: ['remote'] });
    expect(ca.body.registration_token).toMatch(/^pdhg_/);
    const cb = await api('POST', '/v1/hosts', { type: 'regular', tags: ['remote', 'big'] });
    // Members cannot create shared hosts, nor see them.
    expect((await api('POST', '/v1/hosts', { type: 'regular' }, member.token)).status).toBe(403);

    [a, b] = await Promise.all([
      startHost(ca.body.registration_token),
      startHost(cb.body.registration_token),
    ]);
    expect(a.hostId).toBe(ca.body.host.id);
    expect(b.hostId).toBe(cb.body.host.id);

    const list = await api('GET', '/v1/hosts');
    const byId = new Map(list.body.data.map((h: Json) => [h.id, h]));
    expect(byId.get(a.hostId)).toMatchObject({
      status: 'online',
      isolation: 'bwrap',
      address: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    expect(byId.get(b.hostId)).toMatchObject({ status: 'online' });
    expect([...byId.values()].some((h) => (h as Json).type === 'local')).toBe(true);
    expect((await api('GET', '/v1/hosts', undefined, member.token)).body.data).toEqual([]);
    expect((await api('GET', `/v1/hosts/${a.hostId}`, undefined, member.token)).status).toBe(404);

    // The token was one-time; a pending host can get a new one, a registered one cannot.
    const again = await t.call('POST', '/v1/hosts/register', {
      body: { token: ca.body.registration_token, address: '127.0.0.1:1' },
    });
    expect(again.status).toBe(401);
    expect((await api('POST', `/v1/hosts/${a.hostId}/token`)).status).toBe(409);
    const beat = await t.call('POST', `/v1/hosts/${a.hostId}/heartbeat`, {
      headers: { 'x-host-token': 'pdh_forged' },
      body: {},
    });
    expect(beat.status).toBe(401);
  });

  it('places capsules on the least loaded matching host and reaches them there', async () => {
    const placed = [];
    for (let i = 0; i < 4; i++) placed.push(await capsule(['remote']));
    const counts = new Map<string, number>();
    for (const c of placed) counts.set(c.host_id, (counts.get(c.host_id) ?? 0) + 1);
    expect(counts).toEqual(
      new Map([
        [a.hostId, 2],
        [b.hostId, 2],
      ]),
    );
    for (const c of placed) {
      const out = await api('POST', `/v1/capsules/${c.id}/exec`, { cmd: 'echo $((6*7)) $(hostname)' });
      expect(out.status).toBe(200);
      expect(out.body.stdout).toMatch(/^42 /);
      expect(out.body.exit_code).toBe(0);
    }
    // Tags choose the host; a tag no host has is refused.
    const big = await capsule(['big']);
    expect(big.host_id).toBe(b.hostId);
    expect((await api('POST', '/v1/capsules', { host_tags: ['gpu'] })).status).toBe(503);

    // Files, processes and snapshots on a remote capsule.
    const c = placed.find((p) => p.host_id === a.hostId)!;
    const form = new FormData();
    form.append('path', '/home/user/data.bin');
    form.append('file', new Blob([Buffer.from([0, 1, 2, 250])]), 'x');
    const req = new Request('http://local/', { method: 'POST', body: form });
    const up = await t.app.inject({
      method: 'POST',
      url: `/v1/capsules/${c.id}/files/write`,
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': req.headers.get('content-type')! },
      payload: Buffer.from(await req.arrayBuffer()),
    });
    expect(up.statusCode, up.body).toBe(204);
    const read = await t.app.inject({
      method: 'POST',
      url: `/v1/capsules/${c.id}/files/read`,
      headers: { authorization: `Bearer ${admin.token}` },
      payload: { path: '/home/user/data.bin' },
    });
    expect(read.rawPayload).toEqual(Buffer.from([0, 1, 2, 250]));
    expect((await api('POST', `/v1/capsules/${c.id}/files/read`, { path: '/nope' })).status).toBe(404);
    const list = await api('POST', `/v1/capsules/${c.id}/files/list`, { path: '/home/user' });
    expect(list.body.entries.map((e: Json) => e.name)).toContain('data.bin');
    await api('POST', `/v1/capsules/${c.id}/exec`, { cmd: 'sleep 300', background: true, tag: 'nap' });
    expect((await api('GET', `/v1/capsules/${c.id}/processes`)).body.data.map((p: Json) => p.tag)).toContain(
      'nap',
    );
    expect((await api('DELETE', `/v1/capsules/${c.id}/processes/nap`)).status).toBe(204);

    const snap = await api('POST', '/v1/snapshots', { sandbox_id: c.id, name: 'remote-snap' });
    expect(snap.status, JSON.stringify(snap.body)).toBe(201);
    expect(snap.body.host_id).toBe(a.hostId);
    const child = await capsule([]);
    const fromSnap = await api('POST', '/v1/capsules', {
      template: 'remote-snap',
      memory_mb: 256,
      disk_size_mb: 64,
    });
    const fromTemplate = await waitFor(fromSnap.body.id, 'running');
    expect(fromTemplate.host_id).toBe(a.hostId); // where the snapshot's files are
    const cat = await api('POST', `/v1/capsules/${fromTemplate.id}/exec`, {
      cmd: 'od -An -tu1 /home/user/data.bin',
    });
    expect(cat.body.stdout.trim().split(/\s+/)).toEqual(['0', '1', '2', '250']);
    await api('DELETE', `/v1/capsules/${child.id}`);

    // The WebSocket streams and the PTY reach the remote capsule too.
    const ws = (path: string) => connectWs(`${url.replace('http', 'ws')}${path}`, admin.token);
    const ex = await ws(`/v1/capsules/${c.id}/exec/stream`);
    ex.send({ type: 'start', cmd: 'echo one; echo two >&2; exit 3' });
    expect((await ex.next((f) => f.type === 'exit')).exit_code).toBe(3);
    expect(output(ex.frames)).toBe('one\n');
    expect(output(ex.frames, 'stderr')).toBe('two\n');
    await api('POST', `/v1/capsules/${c.id}/exec`, {
      cmd: 'for i in 1 2 3; do echo tick $i; sleep 0.2; done',
      background: true,
      tag: 'ticker',
    });
    const attach = await ws(`/v1/capsules/${c.id}/processes/ticker/stream`);
    expect((await attach.next((f) => f.type === 'exit')).exit_code).toBe(0);
    expect(output(attach.frames)).toBe('tick 1\ntick 2\ntick 3\n');
    const pty = await ws(`/v1/capsules/${c.id}/pty`);
    pty.send({ type: 'start', cmd: '/bin/sh', cols: 100, rows: 30 });
    const started = await pty.next((f) => f.type === 'started');
    pty.send({ type: 'input', data: Buffer.from('stty size; echo remote-$((40+2))\n').toString('base64') });
    await eventually(() => ptyText(pty.frames).includes('remote-42'));
    expect(ptyText(pty.frames)).toContain('30 100');
    pty.ws.close();
    // Reattach to the same terminal after the disconnect.
    const again = await ws(`/v1/capsules/${c.id}/pty`);
    again.send({ type: 'connect', tag: started.tag });
    expect((await again.next((f) => f.type === 'started')).reconnected).toBe(true);
    again.send({ type: 'input', data: Buffer.from('exit 5\n').toString('base64') });
    expect((await again.next((f) => f.type === 'exit')).exit_code).toBe(5);

    // Pause and resume travel too.
    await api('POST', `/v1/capsules/${c.id}/pause`);
    await waitFor(c.id, 'paused');
    await api('POST', `/v1/capsules/${c.id}/resume`);
    await waitFor(c.id, 'running');
  });

  it('guards deletion, drains, and marks a silent host unreachable and its capsules missing', async () => {
    const preview = await api('GET', `/v1/hosts/${a.hostId}/delete-preview`);
    expect(preview.status).toBe(200);
    expect(preview.body.sandbox_ids.length).toBeGreaterThan(0);
    const refused = await api('DELETE', `/v1/hosts/${a.hostId}`);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('host_has_sandboxes');
    expect(refused.body.error.details.sandbox_ids.sort()).toEqual([...preview.body.sandbox_ids].sort());

    // Draining b: new capsules go to a only.
    expect((await api('POST', `/v1/hosts/${b.hostId}/drain`)).body.status).toBe('draining');
    expect((await capsule(['remote'])).host_id).toBe(a.hostId);
    expect((await api('POST', '/v1/capsules', { host_tags: ['big'] })).status).toBe(503);
    expect((await api('POST', `/v1/hosts/${b.hostId}/activate`)).body.status).toBe('online');

    // a dies without a word: after the heartbeat window it is unreachable and its capsules missing.
    const onA = (await api('GET', `/v1/hosts/${a.hostId}/delete-preview`)).body.sandbox_ids as string[];
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    t.clock.advance(31 * SECOND_MS);
    // b is alive: wait for its first heartbeat at the new time, so only a is stale.
    const advanced = t.clock.now().getTime();
    for (let i = 0; i < 200; i++) {
      const hb = (await api('GET', `/v1/hosts/${b.hostId}`)).body.last_heartbeat_at;
      if (Date.parse(hb) >= advanced) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    // Silent, but not yet swept: the server's own sweep runs only when the test advances its timers.
    expect((await api('GET', `/v1/hosts/${a.hostId}`)).body.status).toBe('online');
    expect(await t.services.hosts.sweepUnreachable()).toEqual([a.hostId]);
    expect((await api('GET', `/v1/hosts/${a.hostId}`)).body.status).toBe('unreachable');
    expect((await api('GET', `/v1/hosts/${b.hostId}`)).body.status).toBe('online');
    for (const id of onA) {
      const c = await api('GET', `/v1/capsules/${id}`);
      expect(c.body).toMatchObject({ status: 'missing', status_reason: 'host_unreachable' });
    }
    expect((await api('POST', `/v1/capsules/${onA[0]}/exec`, { cmd: 'true' })).status).toBe(409);
    // Nothing is placed on it any more; b takes the next capsule.
    expect((await capsule(['remote'])).host_id).toBe(b.hostId);

    // b stops gracefully: its capsules are recorded as stopped, not left running.
    const onB = (await api('GET', `/v1/hosts/${b.hostId}/delete-preview`)).body.sandbox_ids as string[];
    expect(onB.length).toBeGreaterThan(0);
    expect(await b.stop()).toBe(0);
    await t.services.capsules.settled();
    expect((await api('GET', `/v1/hosts/${b.hostId}`)).body.status).toBe('offline');
    for (const id of onB) expect((await waitFor(id, 'stopped')).status_reason).toBe('host_stopped');

    // With nothing live left, b can be deleted without force; a needs none either now.
    expect((await api('DELETE', `/v1/hosts/${b.hostId}`)).status).toBe(204);
    expect((await api('GET', `/v1/hosts/${b.hostId}`)).status).toBe(404);
  });
});

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SECOND_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { openTransaction } from '../support/db.ts';
import type { Json } from '../support/factories.ts';

// Capsules through the HTTP API, on the machine's real driver (bubblewrap
// in CI): Wrenn's lifecycle, exec, processes, files, auto-pause, and records
// that stay truthful across a server restart.

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
beforeAll(async () => {
  // Manual timers: the server's sweeps and long-poll timeouts run when a test advances them.
  t = await createTestApp({
    start: new Date(),
    env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' },
    manualTimers: true,
  });
  u = await t.signup();
  other = await t.signup();
});
afterAll(() => t.close());

async function api(method: string, url: string, body?: unknown, token = u.token) {
  return t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
}

const waitFor = (id: string, status: string) => waitForCapsule(t, u.token, id, status);

async function runningCapsule(body: Record<string, unknown> = {}): Promise<Json> {
  const res = await api('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64, ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  expect(res.body.status).toBe('starting');
  return waitFor(res.body.id, 'running');
}

async function exec(id: string, cmd: string, extra: Record<string, unknown> = {}) {
  const res = await api('POST', `/v1/capsules/${id}/exec`, { cmd, ...extra });
  return res;
}

describe('lifecycle', () => {
  it('creates (202 starting → running), lists, and deletes (202 stopping → stopped)', async () => {
    const c = await runningCapsule({ metadata: { purpose: 'test' } });
    expect(c).toMatchObject({
      id: expect.stringMatching(/^cap_/),
      team_id: u.team.id,
      template: 'minimal',
      vcpus: 1,
      memory_mb: 256,
      disk_size_mb: 64,
      timeout_sec: 0,
      network: null,
      metadata: { purpose: 'test' },
      isolation: expect.stringMatching(/^(bwrap|none)$/),
    });
    expect(c.started_at).not.toBeNull();
    const list = await api('GET', '/v1/capsules');
    expect(list.body.data.map((x: Json) => x.id)).toContain(c.id);

    const del = await api('DELETE', `/v1/capsules/${c.id}`);
    expect(del.status).toBe(202);
    expect(del.body.status).toBe('stopping');
    const stopped = await waitFor(c.id, 'stopped');
    expect(stopped.status_reason).toBe('deleted');
    expect(stopped.ended_at).not.toBeNull();
    // In-capsule operations on a capsule that is not running: 409.
    const late = await exec(c.id, 'echo hi');
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('capsule_not_running');
    expect((await api('POST', `/v1/capsules/${c.id}/ping`)).status).toBe(409);
  });

  // A delete that reads the capsule while another move (a start's move to running, a pause) is
  // about to commit must stop it from where that move left it, not find it moved and do nothing.
  it('stops a capsule whose status another transaction moves while the delete reads it', async () => {
    const c = await runningCapsule();
    const other = await openTransaction(t.database.db, (tx) =>
      tx.execute(sql`update capsules set status = 'paused' where id = ${c.id}`),
    );
    const del = api('DELETE', `/v1/capsules/${c.id}`);
    // On Postgres the delete waits on the row's lock (a backend of this test's own database waiting
    // on a lock; other files' databases share the server); the embedded database runs one
    // transaction at a time.
    if (t.database.kind === 'postgres')
      await vi.waitFor(
        async () => {
          const waiting = (await t.database.db.execute(
            sql`select count(*)::int as n from pg_stat_activity
                where datname = current_database() and wait_event_type = 'Lock'`,
          )) as unknown as { rows: Array<{ n: number }> };
          expect(waiting.rows[0]!.n).toBeGreaterThan(0);
        },
        { timeout: 10_000, interval: 10 },
      );
    await other.commit();
    expect((await del).body.status).toBe('stopping');
    expect((await waitFor(c.id, 'stopped')).status_reason).toBe('deleted');
  });

  it('answers GET ?wait_for= once the capsule gets there, or at the timeout with its status then', async () => {
    const res = await api('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
    const waited = await api('GET', `/v1/capsules/${res.body.id}?wait_for=running`);
    expect(waited.status).toBe(200);
    expect(waited.body.status).toBe('running');
    const timers = t.timers!;
    const idle = timers.pending;
    let answered = false;
    const waiting = api('GET', `/v1/capsules/${res.body.id}?wait_for=paused&timeout_ms=300`).finally(
      () => (answered = true),
    );
    // Its deadline and its first wait are set: then only time moving on answers it.
    while (timers.pending < idle + 2) await new Promise((r) => setTimeout(r, 5));
    await timers.advance(299);
    expect(answered).toBe(false);
    await timers.advance(1);
    expect((await waiting).body.status).toBe('running');
    // An ended capsule answers at once: it will never get there.
    await api('DELETE', `/v1/capsules/${res.body.id}`);
    const ended = await api('GET', `/v1/capsules/${res.body.id}?wait_for=paused&timeout_ms=10000`);
    expect(['stopping', 'stopped']).toContain(ended.body.status);
    const gone = await api('GET', `/v1/capsules/${res.body.id}?wait_for=running,paused`);
    expect(gone.body.status).toBe('stopped');
    expect((await api('GET', `/v1/capsules/${res.body.id}?wait_for=sleeping`)).status).toBe(400);
    expect((await api('GET', `/v1/capsules/${res.body.id}?wait_for=running&timeout_ms=999999`)).status).toBe(
      400,
    );
  });

  it('raises a timeout of 1–59 s to 60, and refuses unknown templates and bad sizes', async () => {
    const res = await api('POST', '/v1/capsules', { timeout_sec: 5, disk_size_mb: 32 });
    expect(res.status).toBe(202);
    expect(res.body.timeout_sec).toBe(60);
    await waitFor(res.body.id, 'running');
    await api('DELETE', `/v1/capsules/${res.body.id}`);
    const unknown = await api('POST', '/v1/capsules', { template: 'no-such-template' });
    expect(unknown.status).toBe(404);
    const huge = await api('POST', '/v1/capsules', { disk_size_mb: 999_999 });
    expect(huge.status).toBe(400);
    expect(huge.body.error.code).toBe('validation_failed');
  });

  it('pause keeps a background process’s state: a counter stops while paused and goes on after resume', async () => {
    const c = await runningCapsule();
    const bg = await exec(c.id, 'i=0; while :; do i=$((i+1)); echo $i > /home/user/n; sleep 0.05; done', {
      background: true,
      tag: 'counter',
    });
    expect(bg.status).toBe(202);
    expect(bg.body).toMatchObject({ sandbox_id: c.id, tag: 'counter', pid: expect.any(Number) });
    await new Promise((r) => setTimeout(r, 300));
    const read = async () => Number((await exec(c.id, 'cat /home/user/n')).body.stdout.trim());
    expect(await read()).toBeGreaterThan(0);

    const pause = await api('POST', `/v1/capsules/${c.id}/pause`);
    expect(pause.status).toBe(202);
    expect(pause.body.status).toBe('pausing');
    await waitFor(c.id, 'paused');
    expect((await exec(c.id, 'true')).status).toBe(409);
    // Files on the host side are readable while paused? No: in-capsule operations need it running (Wrenn).
    expect((await api('POST', `/v1/capsules/${c.id}/pause`)).status).toBe(409);
    await new Promise((r) => setTimeout(r, 400));

    expect((await api('POST', `/v1/capsules/${c.id}/resume`)).status).toBe(202);
    await waitFor(c.id, 'running');
    const afterResume = await read();
    await new Promise((r) => setTimeout(r, 300));
    const later = await read();
    expect(later).toBeGreaterThan(afterResume);
    // Frozen, it made no progress: about 0.3 s of counting before, then only what ran after resume.
    expect(afterResume).toBeLessThan(40);
    await api('DELETE', `/v1/capsules/${c.id}`);
  });

  it('auto-pauses after timeout_sec of inactivity; exec and ping count as activity, paused time does not', async () => {
    const c = await runningCapsule({ timeout_sec: 60 });
    t.clock.advance(50 * SECOND_MS);
    expect(await t.services.capsules.sweeps.sweepIdle()).toEqual([]);
    expect((await api('POST', `/v1/capsules/${c.id}/ping`)).status).toBe(204);
    t.clock.advance(50 * SECOND_MS);
    expect(await t.services.capsules.sweeps.sweepIdle()).toEqual([]);
    t.clock.advance(11 * SECOND_MS);
    expect(await t.services.capsules.sweeps.sweepIdle()).toEqual([c.id]);
    const paused = await waitFor(c.id, 'paused');
    expect(paused.status_reason).toBe('ttl_expired');
    await api('POST', `/v1/capsules/${c.id}/resume`);
    const resumed = await waitFor(c.id, 'running');
    // The clock restarts at resume: a sweep right after does not pause it again.
    expect(await t.services.capsules.sweeps.sweepIdle()).toEqual([]);
    expect(resumed.active_seconds).toBeGreaterThanOrEqual(110);

    // The server's own sweep (every 5 s on its timers) does the same once time passes the timeout.
    await t.timers!.advance(55 * SECOND_MS);
    expect((await api('GET', `/v1/capsules/${c.id}`)).body.status).toBe('running');
    for (let i = 0; i < 20 && (await api('GET', `/v1/capsules/${c.id}`)).body.status === 'running'; i++) {
      await t.timers!.advance(5 * SECOND_MS);
      await t.services.capsules.settled();
    }
    expect((await waitFor(c.id, 'paused')).status_reason).toBe('ttl_expired');
    await api('DELETE', `/v1/capsules/${c.id}`);
  });
});

describe('exec and processes', () => {
  let c: Json;
  beforeAll(async () => {
    c = await runningCapsule();
  });
  afterAll(async () => {
    await api('DELETE', `/v1/capsules/${c.id}`);
  });

  it('runs a command line through sh, or a command with args as given', async () => {
    const shell = await exec(c.id, 'echo out; echo err >&2; exit 3');
    expect(shell.status).toBe(200);
    expect(shell.body).toMatchObject({
      sandbox_id: c.id,
      stdout: 'out\n',
      stderr: 'err\n',
      exit_code: 3,
      encoding: 'utf-8',
      truncated: false,
      timed_out: false,
    });
    const direct = await exec(c.id, 'printf', { args: ['%s|%s', 'a b', '$HOME'] });
    expect(direct.body.stdout).toBe('a b|$HOME');
    const env = await exec(c.id, 'echo $GREETING; pwd', { envs: { GREETING: 'hi' }, cwd: '/tmp' });
    expect(env.body.stdout).toBe('hi\n/tmp\n');
    expect((await exec(c.id, 'no-such-command')).body.exit_code).toBe(127);
  });

  it('ends a command at its timeout, caps floods, and returns binary output as base64', async () => {
    const slow = await exec(c.id, 'sleep 30', { timeout_sec: 1 });
    expect(slow.body).toMatchObject({ timed_out: true, exit_code: 124 });
    expect(slow.body.duration_ms).toBeLessThan(5000);
    const flood = await exec(c.id, 'yes | head -c 5000000');
    expect(flood.body.truncated).toBe(true);
    expect(flood.body.stdout.length).toBeLessThanOrEqual(1024 * 1024);
    const binary = await exec(c.id, "printf '\\377\\376\\000binary'");
    expect(binary.body.encoding).toBe('base64');
    expect(Buffer.from(binary.body.stdout, 'base64')).toEqual(
      Buffer.from([0xff, 0xfe, 0, ...Buffer.from('binary')]),
    );
  });

  it('lists processes with their tags and kills them by tag or pid', async () => {
    const a = await exec(c.id, 'sleep 300', { background: true, tag: 'sleeper' });
    const b = await exec(c.id, 'sleep 301', { background: true });
    expect(b.body.tag).toMatch(/^proc-[0-9a-f]{8}$/);
    const dup = await exec(c.id, 'sleep 1', { background: true, tag: 'sleeper' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('tag_taken');
    const list = await api('GET', `/v1/capsules/${c.id}/processes`);
    expect(list.status).toBe(200);
    const tags = list.body.data.map((p: Json) => p.tag);
    expect(tags).toEqual(expect.arrayContaining(['sleeper', b.body.tag]));
    expect(list.body.data.find((p: Json) => p.tag === 'sleeper').pid).toBe(a.body.pid);

    expect((await api('DELETE', `/v1/capsules/${c.id}/processes/sleeper`)).status).toBe(204);
    expect((await api('DELETE', `/v1/capsules/${c.id}/processes/${b.body.pid}?signal=SIGTERM`)).status).toBe(
      204,
    );
    await new Promise((r) => setTimeout(r, 200));
    const after = await api('GET', `/v1/capsules/${c.id}/processes`);
    expect(after.body.data.map((p: Json) => p.tag)).not.toContain('sleeper');
    expect((await api('DELETE', `/v1/capsules/${c.id}/processes/nobody-here`)).status).toBe(404);
    expect((await api('DELETE', `/v1/capsules/${c.id}/processes/999999`)).status).toBe(404);
  });
});

describe('files', () => {
  let c: Json;
  beforeAll(async () => {
    c = await runningCapsule();
  });
  afterAll(async () => {
    await api('DELETE', `/v1/capsules/${c.id}`);
  });

  async function upload(path: string, data: Buffer, route = 'files/write') {
    const form = new FormData();
    form.append('path', path);
    form.append('file', new Blob([data]), 'upload.bin');
    const req = new Request('http://local/', { method: 'POST', body: form });
    const body = Buffer.from(await req.arrayBuffer());
    return t.app.inject({
      method: 'POST',
      url: `/v1/capsules/${c.id}/${route}`,
      headers: { authorization: `Bearer ${u.token}`, 'content-type': req.headers.get('content-type')! },
      payload: body,
    });
  }

  it('writes, reads, lists, makes and removes, binary intact', async () => {
    const data = Buffer.from([0, 1, 2, 255, 254, 10, 13]);
    const w = await upload('/home/user/dir/blob.bin', data);
    expect(w.statusCode, w.body).toBe(204);
    const r = await t.app.inject({
      method: 'POST',
      url: `/v1/capsules/${c.id}/files/read`,
      headers: { authorization: `Bearer ${u.token}` },
      payload: { path: '/home/user/dir/blob.bin' },
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('application/octet-stream');
    expect(r.rawPayload).toEqual(data);
    // The capsule's processes see what was uploaded, as its own user.
    const seen = await exec(c.id, 'stat -c "%U %s" /home/user/dir/blob.bin');
    expect(seen.body.stdout.trim()).toMatch(/^(user|\S+) 7$/);

    const list = await api('POST', `/v1/capsules/${c.id}/files/list`, { path: '/home/user', depth: 2 });
    expect(list.status).toBe(200);
    const paths = list.body.entries.map((e: Json) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['/home/user/dir', '/home/user/dir/blob.bin']));
    const file = list.body.entries.find((e: Json) => e.path === '/home/user/dir/blob.bin');
    expect(file).toMatchObject({ name: 'blob.bin', type: 'file', size: 7 });

    const mk = await api('POST', `/v1/capsules/${c.id}/files/mkdir`, { path: '/home/user/a/b/c' });
    expect(mk.status).toBe(200);
    expect(mk.body.entry).toMatchObject({ type: 'directory', path: '/home/user/a/b/c' });
    const again = await api('POST', `/v1/capsules/${c.id}/files/mkdir`, { path: '/home/user/a/b/c' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('already_exists');

    expect((await api('POST', `/v1/capsules/${c.id}/files/remove`, { path: '/home/user/a' })).status).toBe(
      204,
    );
    const gone = await api('POST', `/v1/capsules/${c.id}/files/read`, { path: '/home/user/a/b' });
    expect(gone.status).toBe(404);
  });

  it('keeps paths inside the capsule: no .. or symlink escape to the host', async () => {
    // A secret on the host, outside every capsule.
    const dir = mkdtempSync(path.join(tmpdir(), 'paddock-host-secret-'));
    const secretFile = path.join(dir, 'secret.txt');
    writeFileSync(secretFile, 'host-secret-4b1d');
    try {
      const read = (p: string) =>
        t.app.inject({
          method: 'POST',
          url: `/v1/capsules/${c.id}/files/read`,
          headers: { authorization: `Bearer ${u.token}` },
          payload: { path: p },
        });
      const depth = '/..'.repeat(12);
      await exec(
        c.id,
        `ln -s ${secretFile} /home/user/abs; ln -s ../../../../../../..${secretFile} /home/user/rel`,
      );
      for (const p of [secretFile, `${depth}${secretFile}`, '/home/user/abs', '/home/user/rel']) {
        const res = await read(p);
        expect(res.body, p).not.toContain('host-secret-4b1d');
        expect(res.statusCode, p).toBe(404);
        expect(JSON.parse(res.body).error.code, p).toBe('not_found');
      }
      const relative = await api('POST', `/v1/capsules/${c.id}/files/read`, { path: 'relative/path' });
      expect(relative.status).toBe(400);
      // Writing through a symlink does not land on the host either.
      const w = await upload('/home/user/abs', Buffer.from('overwritten'));
      expect(readFileSync(secretFile, 'utf8')).toBe('host-secret-4b1d');
      expect([204, 400, 404]).toContain(w.statusCode);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an upload past the size limit with 413', async () => {
    const svc = t.services.capsules as unknown as { options: { fileLimitBytes: number } };
    const before = svc.options.fileLimitBytes;
    svc.options.fileLimitBytes = 1024;
    try {
      const res = await upload('/home/user/big.bin', Buffer.alloc(4096, 1));
      expect(res.statusCode).toBe(413);
      expect(
        (await api('POST', `/v1/capsules/${c.id}/files/read`, { path: '/home/user/big.bin' })).status,
      ).toBe(404);
    } finally {
      svc.options.fileLimitBytes = before;
    }
  });
});

describe('snapshots and templates', () => {
  it('snapshots a running capsule into a template a new capsule starts from; the source runs on', async () => {
    const src = await runningCapsule();
    expect(
      (await exec(src.id, 'mkdir -p /home/user/proj && echo kept > /home/user/proj/notes.txt')).body
        .exit_code,
    ).toBe(0);
    await exec(src.id, 'sleep 300', { background: true, tag: 'sleeper' });

    const snap = await api('POST', '/v1/snapshots', { sandbox_id: src.id, name: 'proj-v1' });
    expect(snap.status, JSON.stringify(snap.body)).toBe(201);
    expect(snap.body).toMatchObject({
      name: 'proj-v1',
      type: 'snapshot',
      platform: false,
      source_capsule_id: src.id,
    });
    expect(snap.body.size_bytes).toBeGreaterThan(0);
    // The source was frozen only for the copy: it is running, its process still there.
    expect((await api('GET', `/v1/capsules/${src.id}`)).body.status).toBe('running');
    const procs = await api('GET', `/v1/capsules/${src.id}/processes`);
    expect(procs.body.data.map((p: Json) => p.tag)).toContain('sleeper');
    expect((await exec(src.id, 'echo alive')).body.stdout).toBe('alive\n');

    // Names are immutable, and the platform's are taken.
    expect((await api('POST', '/v1/snapshots', { sandbox_id: src.id, name: 'proj-v1' })).status).toBe(409);
    expect((await api('POST', '/v1/snapshots', { sandbox_id: src.id, name: 'minimal' })).status).toBe(409);
    const auto = await api('POST', '/v1/snapshots', { sandbox_id: src.id });
    expect(auto.status).toBe(201);
    expect(auto.body.name).toMatch(/^snap-[0-9a-z]+$/);

    const child = await runningCapsule({ template: 'proj-v1' });
    expect(child.template).toBe('proj-v1');
    expect((await exec(child.id, 'cat /home/user/proj/notes.txt')).body.stdout).toBe('kept\n');
    // Copies: what the child writes is not in the source, nor in the template.
    await exec(child.id, 'echo child > /home/user/proj/notes.txt');
    expect((await exec(src.id, 'cat /home/user/proj/notes.txt')).body.stdout).toBe('kept\n');

    const list = await api('GET', '/v1/snapshots');
    expect(list.body.data.map((x: Json) => x.name)).toEqual(
      expect.arrayContaining(['minimal', 'proj-v1', auto.body.name]),
    );
    expect((await api('GET', '/v1/snapshots?type=base')).body.data.map((x: Json) => x.name)).toEqual([
      'minimal',
    ]);
    expect((await api('GET', '/v1/snapshots/proj-v1')).body.name).toBe('proj-v1');

    // Another team sees neither the template nor can start from it.
    expect((await api('GET', '/v1/snapshots/proj-v1', undefined, other.token)).status).toBe(404);
    expect((await api('POST', '/v1/capsules', { template: 'proj-v1' }, other.token)).status).toBe(404);
    expect((await api('DELETE', '/v1/snapshots/proj-v1', undefined, other.token)).status).toBe(404);
    expect(
      (await api('GET', '/v1/snapshots', undefined, other.token)).body.data.map((x: Json) => x.name),
    ).toEqual(['minimal']);

    // Delete removes record and files; a capsule started from it keeps its copy.
    const trees = () => readdirSync(path.join(t.config.sandboxDir, 'templates')).length;
    const before = trees();
    expect(before).toBe(2);
    expect((await api('DELETE', '/v1/snapshots/proj-v1')).status).toBe(204);
    expect(trees()).toBe(before - 1);
    expect((await api('GET', '/v1/snapshots/proj-v1')).status).toBe(404);
    expect((await api('DELETE', '/v1/snapshots/proj-v1')).status).toBe(404);
    expect((await api('DELETE', '/v1/snapshots/minimal')).status).toBe(403);
    expect((await exec(child.id, 'cat /home/user/proj/notes.txt')).body.stdout).toBe('child\n');

    // A capsule that is not running cannot be snapshotted.
    await api('POST', `/v1/capsules/${child.id}/pause`);
    await waitFor(child.id, 'paused');
    expect((await api('POST', '/v1/snapshots', { sandbox_id: child.id })).status).toBe(409);
    expect((await api('POST', '/v1/snapshots', { sandbox_id: 'cap_nope' })).status).toBe(404);
    expect((await api('POST', '/v1/snapshots', { sandbox_id: src.id, name: '../etc' })).status).toBe(400);
    for (const id of [src.id, child.id]) await api('DELETE', `/v1/capsules/${id}`);
  });
});

describe('metrics, stats and usage', () => {
  it('samples CPU, memory and disk of a capsule into its metrics; kept while paused, gone once stopped', async () => {
    const c = await runningCapsule({ vcpus: 1 });
    await exec(c.id, 'while :; do :; done', { background: true, tag: 'burn' });
    await exec(c.id, 'head -c 4000000 /dev/zero > /home/user/blob');
    let points: Json[] = [];
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      const res = await api('GET', `/v1/capsules/${c.id}/metrics?range=5m`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ sandbox_id: c.id, range: '5m' });
      points = res.body.points;
      if (points.length >= 2 && points.at(-1)!.cpu_pct > 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const last = points.at(-1)!;
    // The busy loop's share of its one vCPU depends on what else the machine runs; that it
    // shows at all, and as a share of the capsule's CPUs, does not.
    expect(last.cpu_pct).toBeGreaterThan(0);
    expect(last.cpu_pct).toBeLessThanOrEqual(100);
    expect(last.mem_bytes).toBeGreaterThan(0);
    expect(last.disk_bytes).toBeGreaterThanOrEqual(4_000_000);
    expect(points.map((p) => p.timestamp_unix)).toEqual([...points.map((p) => p.timestamp_unix)].sort());
    // Coarser tiers average the same samples.
    const hour = await api('GET', `/v1/capsules/${c.id}/metrics?range=1h`);
    expect(hour.body.points.length).toBeGreaterThanOrEqual(1);
    expect((await api('GET', `/v1/capsules/${c.id}/metrics?range=3h`)).status).toBe(400);
    expect((await api('GET', `/v1/capsules/${c.id}/metrics`, undefined, other.token)).status).toBe(404);

    await api('POST', `/v1/capsules/${c.id}/pause`);
    await waitFor(c.id, 'paused');
    const paused = await api('GET', `/v1/capsules/${c.id}/metrics?range=10m`);
    expect(paused.status).toBe(200);
    expect(paused.body.points.length).toBeGreaterThanOrEqual(points.length);
    await api('DELETE', `/v1/capsules/${c.id}`);
    await waitFor(c.id, 'stopped');
    expect((await api('GET', `/v1/capsules/${c.id}/metrics`)).status).toBe(404);
  });

  it("reports the team's live capsules now, its peaks and a series, from per-minute samples", async () => {
    const v = await t.signup();
    const made: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await api('POST', '/v1/capsules', { vcpus: 2, memory_mb: 256, disk_size_mb: 32 }, v.token);
      made.push(res.body.id);
    }
    await t.services.capsules.settled();
    await t.services.capsules.sweeps.sampleTeams(t.clock.now());
    const stats = await api('GET', '/v1/capsules/stats?range=1h', undefined, v.token);
    expect(stats.status).toBe(200);
    expect(stats.body.current).toMatchObject({
      running_count: 2,
      vcpus_reserved: 4,
      memory_mb_reserved: 512,
    });
    expect(stats.body.peaks).toEqual({ running_count: 2, vcpus: 4, memory_mb: 512 });
    expect(stats.body.series.labels).toHaveLength(stats.body.series.running.length);
    expect(Math.max(...stats.body.series.running)).toBe(2);
    // One deleted: now shows one, the peak stays.
    await api('DELETE', `/v1/capsules/${made[0]}`, undefined, v.token);
    await t.services.capsules.settled();
    t.clock.advance(61 * SECOND_MS);
    await t.services.capsules.sweeps.sampleTeams(t.clock.now());
    const after = await api('GET', '/v1/capsules/stats', undefined, v.token);
    expect(after.body.range).toBe('1h');
    expect(after.body.current.running_count).toBe(1);
    expect(after.body.peaks.running_count).toBe(2);
    expect(after.body.series.running.at(-1)).toBe(1);
    expect((await api('GET', '/v1/capsules/stats?range=2d', undefined, v.token)).status).toBe(400);
    // Another team sees only its own.
    expect((await api('GET', '/v1/capsules/stats', undefined, other.token)).body.current.running_count).toBe(
      0,
    );
    await api('DELETE', `/v1/capsules/${made[1]}`, undefined, v.token);
  });

  it('counts reserved vCPU- and RAM-minutes per day while running, not while paused', async () => {
    const v = await t.signup();
    const res = await api('POST', '/v1/capsules', { vcpus: 2, memory_mb: 128, disk_size_mb: 32 }, v.token);
    await t.services.capsules.settled();
    const sum = async () => {
      const u = await api('GET', '/v1/capsules/usage', undefined, v.token);
      expect(u.status).toBe(200);
      return u.body.points.reduce(
        (a: { cpu: number; ram: number }, p: Json) => ({
          cpu: a.cpu + p.cpu_minutes,
          ram: a.ram + p.ram_mb_minutes,
        }),
        { cpu: 0, ram: 0 },
      );
    };
    t.clock.advance(10 * 60 * SECOND_MS);
    expect(await sum()).toEqual({ cpu: 20, ram: 1280 }); // still running: counted up to now
    await api('POST', `/v1/capsules/${res.body.id}/pause`, undefined, v.token);
    await t.services.capsules.settled();
    t.clock.advance(30 * 60 * SECOND_MS);
    expect(await sum()).toEqual({ cpu: 20, ram: 1280 }); // paused time is not counted
    await api('DELETE', `/v1/capsules/${res.body.id}`, undefined, v.token);
    await t.services.capsules.settled();
    expect(await sum()).toEqual({ cpu: 20, ram: 1280 });
    expect((await api('GET', '/v1/capsules/usage?from=2026-13-01', undefined, v.token)).status).toBe(400);
    expect(
      (await api('GET', '/v1/capsules/usage?from=2026-02-02&to=2026-02-01', undefined, v.token)).status,
    ).toBe(400);
    const empty = await api('GET', '/v1/capsules/usage?from=2020-01-01&to=2020-01-31', undefined, v.token);
    expect(empty.body).toEqual({ from: '2020-01-01', to: '2020-01-31', points: [] });
  });
});

describe('tenancy', () => {
  it("another team's capsule is 404 everywhere and never listed", async () => {
    const c = await runningCapsule();
    for (const [method, url, body] of [
      ['GET', `/v1/capsules/${c.id}`],
      ['DELETE', `/v1/capsules/${c.id}`],
      ['POST', `/v1/capsules/${c.id}/pause`],
      ['POST', `/v1/capsules/${c.id}/exec`, { cmd: 'id' }],
      ['GET', `/v1/capsules/${c.id}/processes`],
      ['POST', `/v1/capsules/${c.id}/files/list`, { path: '/' }],
    ] as const) {
      const res = await api(method, url, body, other.token);
      expect(res.status, `${method} ${url}`).toBe(404);
    }
    expect((await api('GET', '/v1/capsules', undefined, other.token)).body.data).toEqual([]);
    await api('DELETE', `/v1/capsules/${c.id}`);
  });
});

describe('a server restart', () => {
  it('marks capsules whose processes are gone as stopped, with a reason', async () => {
    const c = await runningCapsule();
    // A second server on the same database and host directory finds the capsule without its processes.
    const restarted = await createTestApp({ shareWith: t });
    try {
      const res = await restarted.call('GET', `/v1/capsules/${c.id}`, { token: u.token });
      expect(res.body).toMatchObject({ status: 'stopped', status_reason: 'server_restarted' });
      expect(res.body.ended_at).not.toBeNull();
    } finally {
      await restarted.close();
    }
  });
});

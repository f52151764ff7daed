import { readdirSync } from 'node:fs';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events } from '../../src/db/schema/index.ts';
import type { LocalHost } from '../../src/modules/sandboxes/host-side/local-host.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';

// Capsules started ahead (PADDOCK_SANDBOX_WARM): a create of the shape last
// asked for takes a spare at once. A capsule from a spare must be as fresh
// and as separate as one started for it.

let t: TestApp;
let u: SignedUpUser;
let host: LocalHost;
beforeAll(async () => {
  t = await createTestApp({
    start: new Date(),
    env: { PADDOCK_SANDBOX_DRIVER: 'bwrap', PADDOCK_SANDBOX_WARM: '1' },
  });
  u = await t.signup();
  const hosts = await t.call('GET', '/v1/hosts', { token: u.token });
  host = t.services.capsules.host(hosts.body.data[0].id) as LocalHost;
});
afterAll(() => t.close());

const api = (method: string, url: string, body?: unknown) =>
  t.call(method, url, { token: u.token, ...(body !== undefined ? { body } : {}) });

async function create(body: Json): Promise<Json> {
  const res = await api('POST', '/v1/capsules', body);
  expect(res.status).toBe(202);
  return waitForCapsule(t, u.token, res.body.id, 'running');
}

async function spares(n: number): Promise<void> {
  for (let i = 0; i < 400 && host.warmSpares() !== n; i++) await new Promise((r) => setTimeout(r, 25));
  expect(host.warmSpares()).toBe(n);
}

const sh = async (id: string, cmd: string) => (await api('POST', `/v1/capsules/${id}/exec`, { cmd })).body;

describe('capsules started ahead', () => {
  it('hands a spare of the same shape to the next create; it is fresh, separate and fully usable', async () => {
    const shape = { memory_mb: 256, disk_size_mb: 64 };
    expect(host.warmSpares()).toBe(0);
    const first = await create(shape);
    await sh(first.id, 'echo mine > /home/user/secret');
    await spares(1); // started after the first create of this shape

    const dir = path.join(t.config.sandboxDir, 'capsules');
    // A spare is handed out at once: running at the first read after the create, and its
    // record says so as for any capsule (created, then starting → running).
    const taken = await api('POST', '/v1/capsules', shape);
    expect(taken.status).toBe(202);
    expect((await api('GET', `/v1/capsules/${taken.body.id}`)).body.status).toBe('running');
    const recorded = await t.database.db.select().from(events).where(eq(events.subjectId, taken.body.id));
    expect(recorded.map((e) => [e.type, e.data])).toEqual([
      ['capsule.created', { template: 'minimal', host_id: taken.body.host_id }],
      ['capsule.state_changed', { from: 'starting', to: 'running', reason: null }],
    ]);
    const second = taken.body as Json;
    // It runs in the spare's directory: none was made for it.
    expect(readdirSync(dir)).toContain(first.id);
    expect(readdirSync(dir)).not.toContain(second.id);
    await spares(1); // the spare was taken and another started
    const seen = await sh(
      second.id,
      'ls -A /home/user; hostname; cat /proc/self/cgroup >/dev/null && echo ok',
    );
    expect(seen.stdout).toBe('capsule\nok\n');
    expect((await sh(second.id, 'cat /home/user/secret')).exit_code).not.toBe(0);
    // Limits of the shape hold: the disk quota is the 64 MB asked for.
    const full = await sh(second.id, 'head -c 80000000 /dev/zero > /home/user/big; echo $?');
    expect(full.stdout.trim()).not.toBe('0');
    // Lifecycle works on it as on any capsule.
    await api('POST', `/v1/capsules/${second.id}/exec`, { cmd: 'sleep 300', background: true, tag: 'nap' });
    expect(
      (await api('GET', `/v1/capsules/${second.id}/processes`)).body.data.map((p: Json) => p.tag),
    ).toContain('nap');
    await api('POST', `/v1/capsules/${second.id}/pause`);
    await waitForCapsule(t, u.token, second.id, 'paused');
    await api('POST', `/v1/capsules/${second.id}/resume`);
    await waitForCapsule(t, u.token, second.id, 'running');

    // Deleting it removes its directory (the spare's); the new spare's stays.
    const before = readdirSync(dir);
    await api('DELETE', `/v1/capsules/${second.id}`);
    await waitForCapsule(t, u.token, second.id, 'stopped');
    expect(readdirSync(dir).length).toBe(before.length - 1);
    expect(readdirSync(dir).filter((n) => n.startsWith('spare_'))).toHaveLength(1);

    // Another shape is started for itself, and the spares follow it.
    const other = await create({ memory_mb: 128, disk_size_mb: 32 });
    expect((await sh(other.id, 'df -m /home/user | tail -1')).stdout).toMatch(/\s3[0-2]\s/);
    await spares(1);
    const third = await create({ memory_mb: 128, disk_size_mb: 32 });
    expect((await sh(third.id, 'df -m /home/user | tail -1')).stdout).toMatch(/\s3[0-2]\s/);
    for (const c of [first, other, third]) await api('DELETE', `/v1/capsules/${c.id}`);
  });
});

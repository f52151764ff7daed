import { existsSync, mkdirSync, rmdirSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import { type CgroupSupport, detectCgroups } from '../../src/modules/sandboxes/drivers/cgroup-detect.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';

// A host killed before it destroyed its capsules leaves their cgroups behind,
// empty; the next start of a local host removes them, and nothing else: not
// a cgroup just made (a capsule being created, here or by another host on
// the machine), not a live capsule's.

const support: CgroupSupport | null = (await detectCgroups()).support;
const bases = support ? [...new Set(Object.values(support.bases))] : [];
const twoMinutesAgo = new Date(Date.now() - 120_000);

function makeCgroup(id: string, old: boolean): string[] {
  return bases.map((base) => {
    const dir = path.join(base, id);
    mkdirSync(dir);
    if (old) utimesSync(dir, twoMinutesAgo, twoMinutesAgo);
    return dir;
  });
}

describe.skipIf(!support)('abandoned cgroups', () => {
  let t: TestApp;
  let u: SignedUpUser;
  const abandoned = newId('cap');
  const young = newId('cap');
  let abandonedDirs: string[] = [];
  let youngDirs: string[] = [];

  beforeAll(async () => {
    // Left by a host that was killed: empty, and untouched for two minutes.
    abandonedDirs = makeCgroup(abandoned, true);
    youngDirs = makeCgroup(young, false);
    t = await createTestApp({ start: new Date(), env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' } });
    u = await t.signup();
  });
  afterAll(async () => {
    await t?.close();
    for (const dir of [...abandonedDirs, ...youngDirs]) if (existsSync(dir)) rmdirSync(dir);
  });

  it("are removed when the local host starts; a fresh one and a live capsule's stay", async () => {
    expect(abandonedDirs.length).toBeGreaterThan(0);
    for (const dir of abandonedDirs) expect(existsSync(dir), dir).toBe(false);
    for (const dir of youngDirs) expect(existsSync(dir), dir).toBe(true);

    // A live capsule's cgroup holds its init: a sweep leaves it, however old.
    const created = await t.call('POST', '/v1/capsules', {
      token: u.token,
      body: { memory_mb: 256, disk_size_mb: 64 },
    });
    expect(created.status).toBe(202);
    const c = await waitForCapsule(t, u.token, created.body.id, 'running');
    const live = bases.map((base) => path.join(base, c.id));
    for (const dir of live) {
      expect(existsSync(dir), dir).toBe(true);
      utimesSync(dir, twoMinutesAgo, twoMinutesAgo);
    }
    const [host] = t.services.capsules.states.localHosts();
    const warnings: unknown[] = [];
    await host!.cleanupLeftovers!([], {
      debug() {},
      info() {},
      warn: (obj) => warnings.push(obj),
      error: (obj) => warnings.push(obj),
      child() {
        return this;
      },
    });
    expect(warnings).toEqual([]);
    for (const dir of live) expect(existsSync(dir), dir).toBe(true);
    const ran = await t.call('POST', `/v1/capsules/${c.id}/exec`, {
      token: u.token,
      body: { cmd: 'echo still here' },
    });
    expect(ran.body.stdout).toBe('still here\n');
    await t.call('DELETE', `/v1/capsules/${c.id}`, { token: u.token });
  });
});

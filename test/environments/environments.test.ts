import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events } from '../../src/db/schema/index.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;

beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup({ name: 'Eve Environments' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(async () => {
  await t.close();
});

let n = 0;
const envName = () => `env-${++n}-${Math.random().toString(36).slice(2, 6)}`;

async function createEnv(body: Record<string, unknown> = {}, token = u.token): Promise<Json> {
  const res = await t.call('POST', '/v1/environments', { token, body: { name: envName(), ...body } });
  if (res.status !== 201) throw new Error(`createEnv failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Waits (real time: a build runs real capsule commands) until the version's build ends. */
async function built(id: string, version: number, token = u.token, timeoutMs = 60_000): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await t.call('GET', `/v1/environments/${id}/versions/${version}`, { token });
    if (res.body.status === 'ready' || res.body.status === 'failed') return res.body;
    if (Date.now() > until) throw new Error(`version ${version} of ${id} is still ${res.body.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function execIn(capsuleId: string, command: string): Promise<Json> {
  const res = await t.call('POST', `/v1/capsules/${capsuleId}/exec`, {
    token: u.token,
    body: { cmd: 'sh', args: ['-c', command] },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

describe('environment builds', () => {
  it('builds a version into a template that capsules start from, with its variables and its log', async () => {
    const env = await createEnv({
      setup_commands: ['echo hello > "$HOME/greeting"', 'echo "$GREETING" > "$HOME/env.txt"'],
      env_vars: { GREETING: 'hi there' },
    });
    expect(env.current_version).toMatchObject({ version: 1, base: 'minimal' });
    expect(['queued', 'building']).toContain(env.current_version.status);
    const v = await built(env.id, 1);
    expect(v).toMatchObject({ status: 'ready', error: null, template: expect.stringMatching(/^env-envv_/) });
    expect(v.build_finished_at).toEqual(expect.any(String));

    const log = await t.call('GET', `/v1/environments/${env.id}/versions/1/build-log`, { token: u.token });
    expect(log.headers['content-type']).toMatch(/^text\/plain/);
    expect(log.body).toContain('$ echo hello > "$HOME/greeting"');
    expect(log.body).toContain('[exit 0]');

    const capsule = await t.call('POST', '/v1/capsules', { token: u.token, body: { template: v.template } });
    expect(capsule.status).toBe(202);
    await waitForCapsule(t, u.token, capsule.body.id, 'running');
    const out = await execIn(capsule.body.id, 'cat "$HOME/greeting" "$HOME/env.txt"');
    expect(out.stdout).toBe('hello\nhi there\n');
    await t.call('DELETE', `/v1/capsules/${capsule.body.id}`, { token: u.token });

    // The build's own capsule is gone.
    const capsules = await t.call('GET', '/v1/capsules', { token: u.token, query: { status: 'running' } });
    expect(capsules.body.data.filter((c: Json) => c.metadata?.environment_version_id === v.id)).toEqual([]);
  }, 90_000);

  it('shows each step’s output in the log while the build goes on', async () => {
    const env = await createEnv({
      setup_commands: ['echo first-step-output', 'while [ ! -f "$HOME/go" ]; do sleep 0.05; done'],
    });
    const logOf = async () =>
      (await t.call('GET', `/v1/environments/${env.id}/versions/1/build-log`, { token: u.token })).body;
    await expect.poll(logOf, { timeout: 60_000, interval: 50 }).toContain('first-step-output');
    const version = await t.call('GET', `/v1/environments/${env.id}/versions/1`, { token: u.token });
    expect(version.body.status).toBe('building');
    expect(await logOf()).not.toContain('ready:');
    // The second step waits for a file: the test lets it end.
    const capsules = await t.call('GET', '/v1/capsules', { token: u.token, query: { status: 'running' } });
    const buildCapsule = capsules.body.data.find(
      (c: Json) => c.metadata?.environment_version_id === version.body.id,
    );
    await execIn(buildCapsule.id, 'touch "$HOME/go"');
    expect((await built(env.id, 1)).status).toBe('ready');
    expect(await logOf()).toMatch(/first-step-output[\s\S]*\[exit 0\][\s\S]*ready: template/);
  }, 90_000);

  it('fails a build at the first failing setup command, says which, and keeps the log', async () => {
    const env = await createEnv({
      setup_commands: ['echo step one', 'echo broken >&2; exit 3', 'echo never'],
    });
    const v = await built(env.id, 1);
    expect(v.status).toBe('failed');
    expect(v.template).toBeNull();
    expect(v.error).toEqual({
      code: 'setup_failed',
      message: 'setup command 2 (echo broken >&2; exit 3) exited with 3',
    });
    const log = (await t.call('GET', `/v1/environments/${env.id}/versions/1/build-log`, { token: u.token }))
      .body;
    expect(log).toContain('step one');
    expect(log).toContain('broken');
    expect(log).toContain('[exit 3]');
    expect(log).not.toContain('never');
    const evts = await t.database.db.select().from(events).where(eq(events.subjectId, v.id));
    expect(evts.map((e) => e.type)).toContain('environment.build_failed');
  }, 90_000);
});

describe('environments and their versions', () => {
  it('changes name and description in place, and makes a new version for a change to what runs', async () => {
    const env = await createEnv({ setup_commands: ['true'] });
    const renamed = await t.call('PATCH', `/v1/environments/${env.id}`, {
      token: u.token,
      body: { description: 'for data work' },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ description: 'for data work', current_version: { version: 1 } });

    const changed = await t.call('PATCH', `/v1/environments/${env.id}`, {
      token: u.token,
      body: { setup_commands: ['true', 'echo two'] },
    });
    expect(changed.body.current_version).toMatchObject({ version: 2, setup_commands: ['true', 'echo two'] });
    const same = await t.call('PATCH', `/v1/environments/${env.id}`, {
      token: u.token,
      body: { setup_commands: ['true', 'echo two'] },
    });
    expect(same.body.current_version.version).toBe(2);

    // Version 1 is as it was: what pins it keeps running what it ran.
    const v1 = await t.call('GET', `/v1/environments/${env.id}/versions/1`, { token: u.token });
    expect(v1.body.setup_commands).toEqual(['true']);
    const list = await t.call('GET', `/v1/environments/${env.id}/versions`, { token: u.token });
    expect(list.body.data.map((v: Json) => v.version)).toEqual([2, 1]);
    await built(env.id, 2);
  }, 90_000);

  it('lists the platform environment first; it is read-only and forkable', async () => {
    const list = await t.call('GET', '/v1/environments', { token: u.token });
    expect(list.body.data[0]).toMatchObject({ id: 'env_minimal', platform: true, team_id: null });
    expect(list.body.data[0].current_version).toMatchObject({ status: 'ready', template: 'minimal' });
    const patch = await t.call('PATCH', '/v1/environments/env_minimal', {
      token: u.token,
      body: { setup_commands: ['true'] },
    });
    expect(patch.status).toBe(403);
    expect(patch.body.error.code).toBe('platform_environment');
    expect((await t.call('DELETE', '/v1/environments/env_minimal', { token: u.token })).status).toBe(403);

    const fork = await t.call('POST', '/v1/environments/env_minimal/fork', { token: u.token, body: {} });
    expect(fork.status).toBe(201);
    expect(fork.body).toMatchObject({ name: 'minimal-fork', forked_from: 'env_minimal', platform: false });
    const again = await t.call('POST', '/v1/environments/env_minimal/fork', { token: u.token, body: {} });
    expect(again.body.name).toBe('minimal-fork-2');
    await built(fork.body.id, 1);
    await built(again.body.id, 1);
  }, 90_000);

  it('forks a team environment with what its current version runs', async () => {
    const env = await createEnv({ setup_commands: ['echo a'], env_vars: { A: '1' } });
    const fork = await t.call('POST', `/v1/environments/${env.id}/fork`, {
      token: u.token,
      body: { name: envName() },
    });
    expect(fork.status).toBe(201);
    expect(fork.body.current_version).toMatchObject({
      version: 1,
      setup_commands: ['echo a'],
      env_vars: { A: '1' },
    });
    await built(env.id, 1);
    await built(fork.body.id, 1);
  }, 90_000);

  it('archives: the environment leaves the list, still reads, and takes no new version', async () => {
    const env = await createEnv();
    expect((await t.call('DELETE', `/v1/environments/${env.id}`, { token: u.token })).status).toBe(204);
    const list = await t.call('GET', '/v1/environments', { token: u.token, query: { limit: '200' } });
    expect(list.body.data.map((e: Json) => e.id)).not.toContain(env.id);
    const got = await t.call('GET', `/v1/environments/${env.id}`, { token: u.token });
    expect(got.body.archived).toBe(true);
    const patch = await t.call('PATCH', `/v1/environments/${env.id}`, {
      token: u.token,
      body: { setup_commands: ['true'] },
    });
    expect(patch.status).toBe(409);
    // Its name is free again.
    expect(
      (await t.call('POST', '/v1/environments', { token: u.token, body: { name: env.name } })).status,
    ).toBe(201);
    await built(env.id, 1);
  }, 90_000);

  it('refuses unknown bases, package specs that are options, paths or URLs, and loader variables', async () => {
    const bad = [
      [{ base: 'no-such-template' }, 400, 'invalid_base'],
      [{ pip_packages: ['--index-url=http://evil.test/simple'] }, 400, 'validation_failed'],
      [{ pip_packages: ['./local/path'] }, 400, 'validation_failed'],
      [{ pip_packages: ['git+https://evil.test/x.git'] }, 400, 'validation_failed'],
      [{ npm_packages: ['--registry=http://evil.test'] }, 400, 'validation_failed'],
      [{ npm_packages: ['git+https://evil.test/x.git'] }, 400, 'validation_failed'],
      [{ npm_packages: ['../x'] }, 400, 'validation_failed'],
      [{ pip_packages: ['evil-1.0-py3-none-any.whl'] }, 400, 'validation_failed'],
      [{ npm_packages: ['evil.tgz'] }, 400, 'validation_failed'],
      [{ env_vars: { LD_PRELOAD: '/tmp/x.so' } }, 400, 'validation_failed'],
      [{ network_allow: ['http://x.test'] }, 400, 'validation_failed'],
    ] as const;
    for (const [body, status, code] of bad) {
      const res = await t.call('POST', '/v1/environments', {
        token: u.token,
        body: { name: envName(), ...body },
      });
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.error.code, JSON.stringify(body)).toBe(code);
    }
    const ok = await t.call('POST', '/v1/environments', {
      token: u.token,
      body: {
        name: envName(),
        pip_packages: ['requests==2.32.3', 'pandas[excel]>=2.0,<3'],
        npm_packages: ['typescript@5.6.3', '@types/node@^20'],
        setup_commands: ['true'],
      },
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    const taken = await t.call('POST', '/v1/environments', { token: u.token, body: { name: ok.body.name } });
    expect(taken.status).toBe(409);
    // No network here: the package step fails, and says so.
    const v = await built(ok.body.id, 1);
    expect(v.status).toBe('failed');
    expect(v.error.code).toBe('packages_failed');
  }, 90_000);

  it('keeps teams apart and agent keys out', async () => {
    const env = await createEnv();
    for (const [method, url] of [
      ['GET', `/v1/environments/${env.id}`],
      ['PATCH', `/v1/environments/${env.id}`],
      ['DELETE', `/v1/environments/${env.id}`],
      ['POST', `/v1/environments/${env.id}/fork`],
      ['GET', `/v1/environments/${env.id}/versions`],
      ['GET', `/v1/environments/${env.id}/versions/1`],
      ['GET', `/v1/environments/${env.id}/versions/1/build-log`],
    ] as const) {
      const res = await t.call(method, url, {
        token: other.token,
        body: method === 'GET' || method === 'DELETE' ? undefined : {},
      });
      expect(res.status, `${method} ${url}`).toBe(404);
    }
    const agent = await createAgent(t, u.token);
    expect((await t.call('GET', '/v1/environments', { token: agent.api_key })).status).toBe(403);
    await built(env.id, 1);
  }, 90_000);
});

describe('build jobs and lists', () => {
  it('lets only the job that took a version build it: a second job for it does nothing', async () => {
    const env = await createEnv({ setup_commands: ['echo once >> "$HOME/count"'] });
    const v = await built(env.id, 1);
    expect(v.status).toBe('ready');
    // A duplicate job (a re-send) arrives after the build: the version is not taken again.
    await t.services.environmentBuilder.build(v.id, 'some-other-job', new AbortController().signal);
    const after = (await t.call('GET', `/v1/environments/${env.id}/versions/1`, { token: u.token })).body;
    expect(after).toMatchObject({
      status: 'ready',
      template: v.template,
      build_finished_at: v.build_finished_at,
    });
  }, 90_000);

  it('refuses a versions cursor it did not give (400), and pages versions newest first', async () => {
    const env = await createEnv();
    for (const cursor of ['YWJj', Buffer.from('1e999').toString('base64url')]) {
      const res = await t.call('GET', `/v1/environments/${env.id}/versions`, {
        token: u.token,
        query: { cursor },
      });
      expect(res.status, cursor).toBe(400);
      expect(res.body.error.code).toBe('invalid_cursor');
    }
    await t.call('PATCH', `/v1/environments/${env.id}`, {
      token: u.token,
      body: { setup_commands: ['true'] },
    });
    const first = await t.call('GET', `/v1/environments/${env.id}/versions`, {
      token: u.token,
      query: { limit: '1' },
    });
    expect(first.body.data.map((v: Json) => v.version)).toEqual([2]);
    const next = await t.call('GET', `/v1/environments/${env.id}/versions`, {
      token: u.token,
      query: { limit: '1', cursor: first.body.next_cursor },
    });
    expect(next.body.data.map((v: Json) => v.version)).toEqual([1]);
    await built(env.id, 1);
    await built(env.id, 2);
  }, 90_000);

  it('keeps a fork’s default name within the name limit', async () => {
    const env = await createEnv({ name: 'n'.repeat(100) });
    const fork = await t.call('POST', `/v1/environments/${env.id}/fork`, { token: u.token, body: {} });
    expect(fork.status).toBe(201);
    expect(fork.body.name).toBe(`${'n'.repeat(85)}-fork`);
    await built(env.id, 1);
    await built(fork.body.id, 1);
  }, 90_000);
});

describe('a build cut short', () => {
  it('is built again by another server when the one building it stops', async () => {
    const a = await createTestApp();
    try {
      const owner = await a.signup({ name: 'Ria Restart' });
      const res = await a.call('POST', '/v1/environments', {
        token: owner.token,
        body: { name: 'slow', setup_commands: ['sleep 4', 'echo done > "$HOME/done"'] },
      });
      expect(res.status).toBe(201);
      const id = res.body.id;
      const status = async (app: TestApp) =>
        (await app.call('GET', `/v1/environments/${id}/versions/1`, { token: owner.token })).body.status;
      const until = Date.now() + 30_000;
      while ((await status(a)) !== 'building') {
        if (Date.now() > until) throw new Error('the build did not start');
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 500));
      // Server a stops its jobs (as on shutdown) mid-build; server b, on the same database, carries on.
      a.services.environmentBuilder.close();
      await a.services.jobs.stop();
      const b = await createTestApp({ shareWith: a });
      try {
        const mid = (await b.call('GET', `/v1/environments/${id}/versions/1`, { token: owner.token })).body;
        expect(mid.status, JSON.stringify(mid)).toBe('building');
        const deadline = Date.now() + 60_000;
        let v: Json = {};
        for (;;) {
          v = (await b.call('GET', `/v1/environments/${id}/versions/1`, { token: owner.token })).body;
          if (v.status === 'ready' || v.status === 'failed' || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(v).toMatchObject({ status: 'ready', error: null });
        const log = (
          await b.call('GET', `/v1/environments/${id}/versions/1/build-log`, { token: owner.token })
        ).body;
        expect(log).toContain('[exit 0]');
      } finally {
        await b.close();
      }
    } finally {
      await a.close();
    }
  }, 90_000);
});

import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { teams } from '../../src/db/schema/index.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

let f: TaskFixture;
let agent: Json;

beforeAll(async () => {
  f = await startTasks({ manualTimers: true, env: { PADDOCK_THROTTLE_HOOK_IP: '3/1h' } });
  agent = await f.agent();
  f.t.clock.set(new Date('2026-01-05T09:02:00Z'));
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });

const create = (body: Record<string, unknown>) =>
  call('POST', '/v1/playbooks', { agent_id: agent.id, name: 'nightly', prompt: 'tidy up', ...body });

describe('playbooks: create, validate, next_run_at', () => {
  it('a cron playbook is disabled by default, with no next run until enabled', async () => {
    const res = await create({ trigger: 'cron', schedule: '*/15 * * * *' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      trigger: 'cron',
      schedule: '*/15 * * * *',
      timezone: 'UTC',
      enabled: false,
      next_run_at: null,
      last_run_at: null,
      notify_on: 'none',
      notification_channels: [],
    });
    expect(res.body.id).toMatch(/^pb_/);
    expect(res.body.webhook_token).toBeUndefined();

    const on = await call('PATCH', `/v1/playbooks/${res.body.id}`, { enabled: true });
    expect(on.status).toBe(200);
    expect(on.body.next_run_at).toBe('2026-01-05T09:15:00.000Z');
    const moved = await call('PATCH', `/v1/playbooks/${res.body.id}`, { schedule: '0 12 * * *' });
    expect(moved.body.next_run_at).toBe('2026-01-05T12:00:00.000Z');
    const off = await call('PATCH', `/v1/playbooks/${res.body.id}`, { enabled: false });
    expect(off.body.next_run_at).toBeNull();
    const manual = await call('PATCH', `/v1/playbooks/${res.body.id}`, { enabled: true, trigger: 'manual' });
    expect(manual.body).toMatchObject({ trigger: 'manual', schedule: null, next_run_at: null });
    expect((await call('GET', `/v1/playbooks/${res.body.id}`)).body.trigger).toBe('manual');
  });

  it('a cron schedule is read in its time zone', async () => {
    const res = await create({ schedule: '0 9 * * *', timezone: 'Europe/Paris', enabled: true });
    expect(res.status).toBe(201);
    // 09:00 in Paris is 08:00 UTC in winter; 08:00 UTC today has passed, so tomorrow's.
    expect(res.body.next_run_at).toBe('2026-01-06T08:00:00.000Z');
  });

  it('an interval playbook runs interval_seconds after it was enabled', async () => {
    const res = await create({ trigger: 'interval', interval_seconds: 600, enabled: true });
    expect(res.body).toMatchObject({ trigger: 'interval', interval_seconds: 600 });
    expect(res.body.next_run_at).toBe('2026-01-05T09:12:00.000Z');
  });

  it('chain_config is clamped to its bounds, not refused, and filled with defaults', async () => {
    const res = await create({
      schedule: '0 * * * *',
      chain_config: {
        max_chains: 99,
        budget_cap_usd: 0.01,
        chain_delay_ms: 5,
        timeout_per_chain_seconds: 10,
      },
    });
    expect(res.body.chain_config).toEqual({
      max_chains: 20,
      budget_cap_usd: 0.1,
      chain_delay_ms: 1000,
      max_turns_per_chain: 50,
      allowed_tools: null,
      timeout_per_chain_seconds: 60,
    });
    const patched = await call('PATCH', `/v1/playbooks/${res.body.id}`, {
      chain_config: { max_turns_per_chain: 1 },
    });
    expect(patched.body.chain_config).toMatchObject({ max_chains: 20, max_turns_per_chain: 5 });
  });

  it('bad input is a 4xx and no row', async () => {
    const before = (await call('GET', '/v1/playbooks?limit=200')).body.data.length;
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ schedule: '61 * * * *' }, 400, 'invalid_schedule'],
      [{ schedule: '* * * * * *' }, 400, 'invalid_schedule'],
      [{ schedule: 'every day' }, 400, 'invalid_schedule'],
      [{ trigger: 'cron' }, 400, 'schedule_required'],
      [{ trigger: 'interval', interval_seconds: 59 }, 400, 'validation_failed'],
      [{ trigger: 'interval' }, 400, 'interval_required'],
      [{ schedule: '0 * * * *', timezone: 'Mars/Olympus' }, 400, 'invalid_timezone'],
      [{ schedule: '0 * * * *', agent_id: 'agt_01JUNKNOWNAGENT000000000000' }, 404, 'not_found'],
      [{ schedule: '0 * * * *', agent_id: 'nonsense' }, 404, 'not_found'],
      [{ schedule: '0 * * * *', notify_on: 'sometimes' }, 400, 'validation_failed'],
      [
        { schedule: '0 * * * *', success_criteria: [{ type: 'matches', pattern: '(' }] },
        400,
        'invalid_success_criteria',
      ],
      [{ schedule: '0 * * * *', success_criteria: [{ type: 'smells_right' }] }, 400, 'validation_failed'],
    ];
    for (const [body, status, code] of cases) {
      const res = await create(body);
      expect({ body, status: res.status, code: res.body.error?.code }).toEqual({ body, status, code });
    }
    const bad = await call('PATCH', `/v1/playbooks/${(await create({ schedule: '0 * * * *' })).body.id}`, {
      schedule: 'nope',
    });
    expect(bad.status).toBe(400);
    expect((await call('GET', '/v1/playbooks?limit=200')).body.data.length).toBe(before + 1);
  });

  it('notification_channels must be the team’s channels; notify_on and the list are kept', async () => {
    const made = async (name: string, token = f.user.token) =>
      (
        await f.t.call('POST', '/v1/channels', {
          token,
          body: { name, provider: 'in_app', config: {}, events: ['agent.deleted'] },
        })
      ).body.id as string;
    const a = await made('crud-a');
    const b = await made('crud-b');
    const res = await create({ schedule: '0 * * * *', notify_on: 'failure', notification_channels: [a, b] });
    expect(res.body).toMatchObject({ notify_on: 'failure', notification_channels: [a, b] });
    // Another team's channel, or none at all: 400 naming them, nothing changed.
    const theirs = await made('theirs', (await f.t.signup()).token);
    const bad = await call('PATCH', `/v1/playbooks/${res.body.id}`, {
      notification_channels: [a, theirs, 'chn_x'],
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({
      code: 'unknown_channel',
      details: { notification_channels: [theirs, 'chn_x'] },
    });
    expect((await call('GET', `/v1/playbooks/${res.body.id}`)).body.notification_channels).toEqual([a, b]);
  });

  it('another team sees none of them; delete answers the id and removes it', async () => {
    const other = await f.t.signup();
    const mine = await create({ schedule: '0 * * * *' });
    expect((await call('GET', `/v1/playbooks/${mine.body.id}`, undefined, other.token)).status).toBe(404);
    expect((await call('GET', '/v1/playbooks', undefined, other.token)).body.data).toEqual([]);
    expect((await call('DELETE', `/v1/playbooks/${mine.body.id}`, undefined, other.token)).status).toBe(404);
    const del = await call('DELETE', `/v1/playbooks/${mine.body.id}`);
    expect(del.body).toEqual({ status: 'deleted', playbook_id: mine.body.id });
    expect((await call('GET', `/v1/playbooks/${mine.body.id}`)).status).toBe(404);
  });

  it('changes are events, with no prompt in them', async () => {
    const res = await create({ schedule: '0 * * * *', prompt: 'the secret plan' });
    await call('PATCH', `/v1/playbooks/${res.body.id}`, { enabled: true });
    const page = await call('GET', `/v1/events?subject_id=${res.body.id}`);
    expect(page.status).toBe(200);
    expect(page.body.data.map((e: Json) => e.type).sort()).toEqual(['playbook.created', 'playbook.updated']);
    expect(JSON.stringify(page.body.data)).not.toContain('secret plan');
  });

  it('a webhook does not fire while the team is paused (409) nor once the team is deleted (404)', async () => {
    const pb = (await create({ trigger: 'webhook' })).body;
    expect((await call('POST', '/v1/playbooks/scheduler/pause')).status).toBe(200);
    const paused = await f.t.call('POST', pb.webhook_url, { body: {} });
    expect(paused.status).toBe(409);
    expect(paused.body.error.code).toBe('scheduler_paused');
    expect((await call('POST', '/v1/playbooks/scheduler/resume')).status).toBe(200);
    expect((await call('GET', `/v1/playbook-runs?playbook_id=${pb.id}`)).body.data).toEqual([]);

    // A deleted team's rows stay (soft delete); its webhook is unknown.
    const where = eq(teams.id, f.user.team.id);
    await f.t.database.db.update(teams).set({ deletedAt: f.t.clock.now() }).where(where);
    try {
      const gone = await f.t.call('POST', pb.webhook_url, { body: {} });
      expect(gone.status).toBe(404);
    } finally {
      await f.t.database.db.update(teams).set({ deletedAt: null }).where(where);
    }
  });

  it('a fire that finds its playbook deleted at the same moment is a 404, by hand or by webhook', async () => {
    const pb = (await create({ trigger: 'webhook' })).body;
    const runs = (f.t.services.playbooks as unknown as { runs: { fire: () => Promise<unknown> } }).runs;
    const fire = runs.fire;
    runs.fire = async () => undefined;
    try {
      const byHand = await call('POST', `/v1/playbooks/${pb.id}/run`);
      expect(byHand.status).toBe(404);
      expect(byHand.body.error.code).toBe('not_found');
      const hook = await f.t.call('POST', pb.webhook_url, { body: {} });
      expect(hook.status).toBe(404);
      expect(hook.body.error.code).toBe('not_found');
    } finally {
      runs.fire = fire;
    }
  });

  it('unknown webhook tokens from one address are throttled (429 with retry-after); known ones are not counted', async () => {
    const pb = (await create({ trigger: 'webhook' })).body;
    for (let i = 0; i < 5; i++)
      expect((await f.t.call('POST', pb.webhook_url, { body: {} })).status).toBe(202);
    let limited: { body: Json; headers: Record<string, unknown> } | undefined;
    for (let i = 0; i < 4 && !limited; i++) {
      const res = await f.t.call('POST', `/v1/hooks/playbooks/pbh_${String(i).repeat(43)}`, { body: {} });
      if (res.status === 429) limited = res;
      else expect(res.status).toBe(404);
    }
    expect(limited?.body.error).toMatchObject({
      code: 'rate_limited',
      details: { limit: 'playbook_hook_ip' },
    });
    expect(Number(limited?.headers['retry-after'])).toBeGreaterThan(0);
    f.t.clock.advance(3601_000);
    expect((await f.t.call('POST', `/v1/hooks/playbooks/pbh_${'z'.repeat(43)}`, { body: {} })).status).toBe(
      404,
    );
  });
});

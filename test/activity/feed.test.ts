import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

/**
 * The activity feed: entries for real actions by a user, an agent and
 * Paddock itself (a task run on the mock provider), the filters, what agents
 * report, and the stats.
 */
let f: TaskFixture;
let agent: Json & { api_key: string };
let stranger: SignedUpUser;
let workItem: Json;
let task: Json;
beforeAll(async () => {
  f = await startTasks();
  agent = await f.agent();
  stranger = await f.t.signup();
  workItem = (await call('POST', '/v1/work-items', { title: 'Ship the feed', priority: 'high' })).body;
  await call('POST', `/v1/work-items/${workItem.id}/transition`, { status: 'in_progress' }, agent.api_key);
  f.script([{ text: 'done' }]);
  task = await f.submit({ agent_id: agent.id, prompt: 'Say done.' });
  const ended = await f.until(task.id, ['completed', 'failed']);
  // The task's capsule stops after the task ends; its entries are in before the feed is read.
  if (ended.capsule_id) await waitForCapsule(f.t, f.user.token, ended.capsule_id, 'stopped');
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
const feed = async (query = '', token = f.user.token) => {
  const res = await call('GET', `/v1/activity${query}`, undefined, token);
  expect(res.status).toBe(200);
  return res.body.data as Json[];
};

describe('the feed', () => {
  it('has a readable entry for what a user, an agent and Paddock itself did', async () => {
    const byUser = (await feed(`?resource_id=${workItem.id}&actor_type=user`)).find(
      (e) => e.action === 'work_item.created',
    );
    expect(byUser).toMatchObject({
      source: 'event',
      actor_type: 'user',
      actor_id: f.user.user.id,
      resource_type: 'work_item',
      resource_id: workItem.id,
      summary: 'Created work item “Ship the feed” (high, todo)',
    });
    expect(byUser?.event_id).toMatch(/^evt_/);
    const [byAgent] = await feed(`?actor_type=agent&action=work_item.status_changed`);
    expect(byAgent).toMatchObject({
      actor_id: agent.id,
      summary: 'Moved work item “Ship the feed” from todo to in progress',
      details: { from: 'todo', to: 'in_progress' },
    });
    const bySystem = await feed(`?actor_type=system&resource_id=${task.id}`);
    expect(bySystem.map((e) => e.action)).toEqual(expect.arrayContaining(['task.started', 'task.completed']));
    expect(bySystem.every((e) => e.actor_type === 'system' && e.actor_id === 'task_runner')).toBe(true);
    // The user's own submit is the user's.
    const [submitted] = await feed(`?action=task.created&resource_id=${task.id}`);
    expect(submitted).toMatchObject({ actor_type: 'user', summary: expect.stringContaining(agent.id) });
  });

  it('filters by action prefix, resource type and time, newest first, with cursor pages', async () => {
    const items = await feed('?action=work_item.*');
    expect(items.length).toBeGreaterThanOrEqual(2);
    expect(items.every((e) => e.action.startsWith('work_item.'))).toBe(true);
    expect((await feed('?resource_type=task')).every((e) => e.resource_type === 'task')).toBe(true);
    const all = await feed('?limit=200');
    const ids = all.map((e) => e.id);
    expect([...ids].sort().reverse()).toEqual(ids);
    const first = await call('GET', '/v1/activity?limit=2');
    expect(first.body.data).toHaveLength(2);
    const second = await call('GET', `/v1/activity?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data.map((e: Json) => e.id)).toEqual(ids.slice(2, 4));
    const future = new Date(f.t.clock.now().getTime() + 3_600_000).toISOString();
    expect(await feed(`?from=${encodeURIComponent(future)}`)).toEqual([]);
    expect((await feed(`?to=${encodeURIComponent(future)}&limit=200`)).length).toBe(all.length);
    expect((await call('GET', '/v1/activity?actor_type=robot')).status).toBe(400);
    expect((await call('GET', '/v1/activity?from=yesterday')).status).toBe(400);
    expect((await call('GET', '/v1/activity?cursor=%%%')).status).toBe(400);
  });

  it("keeps another team's activity out, and agent keys out of reading it", async () => {
    const theirs = await feed('?limit=200', stranger.token);
    expect(theirs.some((e) => e.resource_id === workItem.id || e.resource_id === task.id)).toBe(false);
    const denied = await call('GET', '/v1/activity', undefined, agent.api_key);
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('agent_key_not_allowed');
  });
});

describe('POST /v1/activity', () => {
  it('takes what an agent reports, with links, as activity.reported', async () => {
    const res = await call(
      'POST',
      '/v1/activity',
      {
        action: 'opened_pr',
        summary: 'Opened a pull request for the feed',
        resource_type: 'work_item',
        resource_id: workItem.id,
        links: [
          { type: 'url', url: 'https://git.example.com/pr/7', title: 'PR 7' },
          { type: 'task', id: task.id },
        ],
        details: { lines: 120 },
      },
      agent.api_key,
    );
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      source: 'reported',
      actor_type: 'agent',
      actor_id: agent.id,
      action: 'opened_pr',
      summary: 'Opened a pull request for the feed',
      resource_id: workItem.id,
      links: [
        { type: 'url', url: 'https://git.example.com/pr/7', title: 'PR 7' },
        { type: 'task', id: task.id },
      ],
      details: { lines: 120 },
    });
    const [listed] = await feed('?source=reported');
    expect(listed).toEqual(res.body);
    const events = (await call('GET', '/v1/events?type=activity.reported')).body.data as Json[];
    expect(events.find((e) => e.id === res.body.event_id)).toMatchObject({
      actor_kind: 'agent',
      subject_id: workItem.id,
      data: { action: 'opened_pr' },
    });
  });

  it('refuses sessions and team keys (agent keys only), and bad reports', async () => {
    const body = { action: 'x', summary: 'y' };
    const bySession = await call('POST', '/v1/activity', body);
    expect(bySession.status).toBe(403);
    expect(bySession.body.error.code).toBe('agent_key_required');
    const key = await f.t.apiKey(f.user.token, ['write']);
    expect((await call('POST', '/v1/activity', body, key.key)).body.error.code).toBe('agent_key_required');
    for (const bad of [
      {},
      { action: 'x' },
      { action: 'has spaces', summary: 'y' },
      { action: 'x', summary: 'y', links: [{ type: 'task' }] },
      { action: 'x', summary: 'y', links: [{ type: 'url', url: 'not a url' }] },
      { action: 'x', summary: 'y', details: { big: 'x'.repeat(9000) } },
    ]) {
      const res = await call('POST', '/v1/activity', bad, agent.api_key);
      expect(res.status, JSON.stringify(bad).slice(0, 80)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
  });
});

describe('GET /v1/activity/stats', () => {
  it('counts per actor and per action over the window', async () => {
    const res = await call('GET', '/v1/activity/stats');
    expect(res.status).toBe(200);
    const all = await feed('?limit=200');
    expect(res.body.total).toBe(all.length);
    const count = (pred: (e: Json) => boolean) => all.filter(pred).length;
    expect(res.body.by_actor).toEqual(
      expect.arrayContaining([
        { actor_type: 'agent', actor_id: agent.id, count: count((e) => e.actor_id === agent.id) },
        { actor_type: 'system', actor_id: 'task_runner', count: count((e) => e.actor_id === 'task_runner') },
      ]),
    );
    expect(res.body.by_action).toEqual(
      expect.arrayContaining([
        { action: 'opened_pr', count: 1 },
        { action: 'work_item.created', count: 1 },
      ]),
    );
    const counts = res.body.by_action.map((a: Json) => a.count);
    expect([...counts].sort((a, b) => b - a)).toEqual(counts);
    // A window before anything happened is empty; a bad one is refused.
    const before = new Date(f.t.clock.now().getTime() - 10 * 86_400_000);
    const empty = await call('GET', `/v1/activity/stats?to=${encodeURIComponent(before.toISOString())}`);
    expect(empty.body).toMatchObject({ total: 0, by_actor: [], by_action: [] });
    const now = f.t.clock.now().toISOString();
    expect((await call('GET', `/v1/activity/stats?from=${now}&to=${now}`)).body.error.code).toBe(
      'invalid_window',
    );
    expect(
      (await call('GET', `/v1/activity/stats?from=2020-01-01T00:00:00Z&to=${now}`)).body.error.code,
    ).toBe('window_too_long');
    expect((await call('GET', '/v1/activity/stats', undefined, stranger.token)).body.by_action).not.toEqual(
      expect.arrayContaining([{ action: 'opened_pr', count: 1 }]),
    );
  });
});

describe('retention', () => {
  it('deletes entries older than PADDOCK_ACTIVITY_RETENTION_DAYS and keeps the rest', async () => {
    const r = await createTestApp({ config: { activityRetentionDays: 10 } });
    try {
      const u = await r.signup();
      // A key, not the session: the session expires over the days the clock moves.
      const key = (await r.apiKey(u.token, ['admin'])).key;
      await r.call('POST', '/v1/work-items', { token: key, body: { title: 'old' } });
      r.clock.advance(11 * DAY_MS);
      expect((await r.call('POST', '/v1/work-items', { token: key, body: { title: 'new' } })).status).toBe(
        201,
      );
      expect(await r.services.activityRetention.sweep()).toBeGreaterThan(0);
      const left = await r.call('GET', '/v1/activity', { token: key });
      expect(left.body.data.map((e: Json) => e.summary)).toEqual(['Created work item “new” (medium, todo)']);
    } finally {
      await r.close();
    }
  });
});

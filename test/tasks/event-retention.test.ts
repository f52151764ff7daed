import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// PADDOCK_TASK_EVENT_RETENTION_DAYS: the event logs of tasks and workspace
// turns that finished longer ago than that go; the tasks, their results and
// the workspaces stay, and a task that has not finished keeps its log.

let f: TaskFixture;
let agent: Json;
beforeAll(async () => {
  f = await startTasks({ env: { PADDOCK_TASK_EVENT_RETENTION_DAYS: '1' } });
  // A team key instead of the signed-in session, which does not outlive the days the clock moves.
  f.user.token = (await f.t.apiKey(f.user.token, ['admin'])).key;
  agent = await f.agent({ agent: { idle_timeout_sec: 3600, session_ttl_sec: 30 * 86_400 } });
});
afterAll(async () => {
  await f?.close();
});

async function ran(prompt: string, extra: Record<string, unknown> = {}): Promise<Json> {
  f.script([{ text: `answer to ${prompt}` }]);
  const task = await f.submit({ agent_id: agent.id, prompt, ...extra });
  const { task: ended } = await f.finished(task.id);
  expect(ended.status).toBe('completed');
  return ended;
}

async function workspaceEvents(id: string): Promise<Json[]> {
  const res = await f.t.call('GET', `/v1/workspaces/${id}/events`, {
    token: f.user.token,
    query: { limit: '1000' },
  });
  expect(res.status).toBe(200);
  return res.body.data;
}

it('deletes the event logs of tasks and turns that finished before the retention, and keeps the tasks and every log still needed', async () => {
  const old = await ran('old');
  const turn = await ran('a turn', { mode: 'session' });
  const workspaceId = turn.workspace_id as string;
  await vi.waitFor(
    async () => {
      const ws = await f.t.call('GET', `/v1/workspaces/${workspaceId}`, { token: f.user.token });
      expect([ws.body.status, ws.body.current_task_id]).toEqual(['idle', null]);
    },
    { timeout: 30_000, interval: 25 },
  );
  // A task of the same age that has not finished (its worker is still on it): its log is its live record.
  const unfinished = await ran('unfinished');
  await f.t.database.db.execute(
    sql`update tasks set status = 'running', finished_at = null, heartbeat_at = now() where id = ${unfinished.id}`,
  );
  for (const id of [old.id, unfinished.id]) expect((await f.events(id)).length).toBeGreaterThan(2);
  expect((await workspaceEvents(workspaceId)).length).toBeGreaterThan(2);

  // Two days on, a new task finishes: the others finished a day before the cutoff, it after.
  f.t.clock.advance(2 * DAY_MS);
  const recent = await ran('recent');
  const recentEvents = await f.events(recent.id);
  const deleted = await f.t.services.taskEventRetention.sweep();
  expect(deleted).toBeGreaterThan(4);

  expect(await f.events(old.id)).toEqual([]);
  expect(await workspaceEvents(workspaceId)).toEqual([]);
  expect(await f.events(recent.id)).toEqual(recentEvents);
  expect((await f.events(unfinished.id)).length).toBeGreaterThan(2);

  // The task and its result stay, and following its log ends at once with nothing to replay.
  const after = await f.t.call('GET', `/v1/tasks/${old.id}`, { token: f.user.token });
  expect(after.status).toBe(200);
  expect(after.body).toEqual(old);
  expect(await f.finished(old.id)).toEqual({ task: old, streamed: [] });
  const ws = await f.t.call('GET', `/v1/workspaces/${workspaceId}`, { token: f.user.token });
  expect(ws.status).toBe(200);

  // Nothing more is old enough; a day later the recent task's log goes too.
  expect(await f.t.services.taskEventRetention.sweep()).toBe(0);
  f.t.clock.advance(DAY_MS + 1);
  expect(await f.t.services.taskEventRetention.sweep()).toBe(recentEvents.length);
  expect(await f.events(recent.id)).toEqual([]);
  expect((await f.events(unfinished.id)).length).toBeGreaterThan(2);
});

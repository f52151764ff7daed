import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// A team's max_concurrent_tasks, set by a platform admin (PATCH /v1/admin/teams/{id}):
// the task runner holds no more of the team's tasks at once, whichever agents they are for.

let f: TaskFixture;

beforeAll(async () => {
  // The fixture's user is the server's first account: a platform admin.
  f = await startTasks();
});
afterAll(() => f?.close());

/** A call as the fixture's user (the team's owner and the platform admin). */
function call(method: string, url: string, body?: unknown) {
  return f.t.call(method, url, { token: f.user.token, ...(body === undefined ? {} : { body }) });
}

const setLimit = (max: number | null) =>
  call('PATCH', `/v1/admin/teams/${f.user.team.id}`, { limits: { max_concurrent_tasks: max } });

describe('a team’s max_concurrent_tasks', () => {
  it('keeps a task of another agent queued while the team is at its limit, and lets it run when a slot frees', async () => {
    const set = await setLimit(1);
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.limits).toEqual({ max_concurrent_tasks: 1 });
    // Each agent alone could run five.
    const a = await f.agent({ agent: { concurrency_limit: 5 } });
    const b = await f.agent({ agent: { concurrency_limit: 5 } });
    f.mock.reset();
    f.mock.reply({ hang: true, times: Number.POSITIVE_INFINITY });
    try {
      const first = await f.submit({ agent_id: a.id, prompt: 'hold the team’s slot' });
      await f.until(first.id, ['running']);
      const second = await f.submit({ agent_id: b.id, prompt: 'wait for the team' });
      // The claim in the submit's own transaction found the team at its limit: the 202 says queued.
      expect(second).toMatchObject({ status: 'queued', started_at: null, attempt: 0 });
      // Past the runner's busy retry (2 s), it is still waiting.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await call('GET', `/v1/tasks/${second.id}`)).body).toMatchObject({
        status: 'queued',
        started_at: null,
      });
      // Its log holds its queued status alone: nothing of the refused claim was written.
      expect((await f.events(second.id)).map((e) => [e.type, e.payload.status])).toEqual([
        ['status', 'queued'],
      ]);

      expect((await call('POST', `/v1/tasks/${first.id}/cancel`)).status).toBe(200);
      await f.until(second.id, ['running'], 15_000);

      // Without the limit, the agents' own limits apply again: a third runs beside the second.
      const removed = await setLimit(null);
      expect(removed.body.limits).toEqual({ max_concurrent_tasks: null });
      const third = await f.submit({ agent_id: a.id, prompt: 'run beside it' });
      await f.until(third.id, ['running'], 15_000);
      for (const id of [second.id, third.id]) await call('POST', `/v1/tasks/${id}/cancel`);
      for (const id of [second.id, third.id]) await f.until(id, ['cancelled']);
    } finally {
      f.mock.reset();
    }
  }, 60_000);

  it('answers bad limits with 400 and an unknown team with 404', async () => {
    for (const limits of [{ max_concurrent_tasks: 0 }, { max_concurrent_tasks: 1.5 }, { other: 1 }]) {
      const res = await call('PATCH', `/v1/admin/teams/${f.user.team.id}`, { limits });
      expect(res.status, JSON.stringify(limits)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    expect((await call('PATCH', '/v1/admin/teams/team_nothere', { limits: {} })).status).toBe(404);
  });
});

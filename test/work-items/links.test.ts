import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SignedUpUser } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

/** Links from work items to the tasks and playbook runs that worked on them: real ones, run on the mock provider. */
let f: TaskFixture;
let agent: Json;
let stranger: SignedUpUser;
let task: Json;
let run: Json;
beforeAll(async () => {
  f = await startTasks();
  agent = await f.agent();
  stranger = await f.t.signup();
  f.script([{ text: 'done' }]);
  task = await f.submit({ agent_id: agent.id, prompt: 'Say done.' });
  await f.until(task.id, ['completed', 'failed']);
  const pb = await call('POST', '/v1/playbooks', {
    agent_id: agent.id,
    name: 'links-pb',
    prompt: 'Say done.',
    trigger: 'manual',
  });
  expect(pb.status).toBe(201);
  f.script([{ text: 'done' }, { text: 'Done' }]);
  const fired = await call('POST', `/v1/playbooks/${pb.body.id}/run`);
  expect(fired.status).toBe(202);
  run = fired.body;
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
const item = async (token = f.user.token) => {
  const res = await call('POST', '/v1/work-items', { title: 'linked work' }, token);
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body as Json;
};

describe('work item links', () => {
  it('links a task and a playbook run of the team, lists them, and removes one', async () => {
    const wi = await item();
    const toTask = await call('POST', `/v1/work-items/${wi.id}/links`, { type: 'task', id: task.id });
    expect(toTask.status).toBe(201);
    expect(toTask.body).toMatchObject({
      work_item_id: wi.id,
      type: 'task',
      target_id: task.id,
      created_by: `user:${f.user.user.id}`,
    });
    expect(toTask.body.id).toMatch(/^wkl_/);
    const toRun = await call(
      'POST',
      `/v1/work-items/${wi.id}/links`,
      { type: 'playbook_run', id: run.id },
      agent.api_key,
    );
    expect(toRun.status).toBe(201);
    expect(toRun.body.created_by).toBe(`agent:${agent.id}`);
    const listed = await call('GET', `/v1/work-items/${wi.id}/links`);
    expect(listed.body.data.map((l: Json) => [l.type, l.target_id])).toEqual([
      ['task', task.id],
      ['playbook_run', run.id],
    ]);
    // Once per item: 409.
    const again = await call('POST', `/v1/work-items/${wi.id}/links`, { type: 'task', id: task.id });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('already_linked');

    expect((await call('DELETE', `/v1/work-items/${wi.id}/links/${toTask.body.id}`)).status).toBe(204);
    expect((await call('DELETE', `/v1/work-items/${wi.id}/links/${toTask.body.id}`)).status).toBe(404);
    expect((await call('GET', `/v1/work-items/${wi.id}/links`)).body.data.map((l: Json) => l.id)).toEqual([
      toRun.body.id,
    ]);
    const events = (await call('GET', '/v1/events?type=work_item.*&limit=200')).body.data as Json[];
    const mine = events.filter((e) => e.subject_id === wi.id).map((e) => [e.type, e.data.target_id]);
    expect(mine).toEqual(
      expect.arrayContaining([
        ['work_item.linked', task.id],
        ['work_item.linked', run.id],
        ['work_item.unlinked', task.id],
      ]),
    );
  });

  it('refuses targets that are not the team’s, of the wrong kind, or made up; and links to archived items', async () => {
    const wi = await item();
    for (const body of [
      { type: 'task', id: 'task_01ARZ3NDEKTSV4RRFFQ69G5FAV' },
      { type: 'task', id: run.id },
      { type: 'playbook_run', id: task.id },
      { type: 'task', id: 'not-an-id' },
    ]) {
      const res = await call('POST', `/v1/work-items/${wi.id}/links`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('unknown_link_target');
    }
    expect(
      (await call('POST', `/v1/work-items/${wi.id}/links`, { type: 'capsule', id: 'cap_x' })).status,
    ).toBe(400);
    expect((await call('POST', `/v1/work-items/${wi.id}/links`, { type: 'task' })).status).toBe(400);
    // Another team's item cannot point at this team's task, and cannot be reached.
    const theirs = await item(stranger.token);
    const foreign = await call(
      'POST',
      `/v1/work-items/${theirs.id}/links`,
      { type: 'task', id: task.id },
      stranger.token,
    );
    expect(foreign.status).toBe(400);
    expect(foreign.body.error.code).toBe('unknown_link_target');
    const reach = await call(
      'POST',
      `/v1/work-items/${wi.id}/links`,
      { type: 'task', id: task.id },
      stranger.token,
    );
    expect(reach.status).toBe(404);
    // An archived item takes no new links.
    await call('POST', `/v1/work-items/${wi.id}/archive`);
    const archived = await call('POST', `/v1/work-items/${wi.id}/links`, { type: 'task', id: task.id });
    expect(archived.status).toBe(409);
    expect(archived.body.error.code).toBe('work_item_archived');
  });
});

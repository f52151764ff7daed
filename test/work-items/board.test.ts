import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
let mate: SignedUpUser;
let stranger: SignedUpUser;
let agent: Json & { api_key: string };
let foreignAgent: Json;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
  mate = await t.signup();
  stranger = await t.signup();
  const added = await t.call('POST', `/v1/teams/${u.team.id}/members`, {
    token: u.token,
    body: { email: mate.user.email },
  });
  expect(added.status).toBe(201);
  // The member acts in the shared team (signup left it in its own).
  const switched = await t.call('POST', '/v1/auth/switch-team', {
    token: mate.token,
    body: { team_id: u.team.id },
  });
  mate = { ...mate, token: switched.body.session_token };
  agent = await createAgent(t, u.token);
  foreignAgent = await createAgent(t, stranger.token);
});
afterAll(() => t.close());

const call = (method: string, url: string, body?: unknown, token = u.token) =>
  t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });
const item = async (body: Record<string, unknown> = {}, token = u.token) => {
  const res = await call('POST', '/v1/work-items', { title: 'an item', ...body }, token);
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body as Json;
};
const events = async (type: string, subject: string) =>
  ((await call('GET', `/v1/events?type=${type}&limit=200`)).body.data as Json[]).filter(
    (e) => e.subject_id === subject,
  );

describe('work items: create, read, change', () => {
  it('creates with defaults, reads it back, lists it, and records work_item.created', async () => {
    const created = await item({ title: 'Fix the login page', labels: ['web', 'auth'] });
    expect(created).toMatchObject({
      title: 'Fix the login page',
      description: null,
      type: 'other',
      priority: 'medium',
      status: 'todo',
      assignee: null,
      labels: ['web', 'auth'],
      due_date: null,
      archived: false,
      team_id: u.team.id,
      created_by: `user:${u.user.id}`,
    });
    expect(created.id).toMatch(/^wki_/);
    expect((await call('GET', `/v1/work-items/${created.id}`)).body).toEqual(created);
    const listed = await call('GET', '/v1/work-items?label=auth');
    expect(listed.body.data.map((i: Json) => i.id)).toContain(created.id);
    expect((await call('GET', '/v1/work-items?label=nothing-here')).body.data).toEqual([]);
    const [ev] = await events('work_item.created', created.id);
    expect(ev?.data).toMatchObject({ title: 'Fix the login page', priority: 'medium', status: 'todo' });
  });

  it('PATCH changes the fields sent, records what changed, and assigns to a member or a team agent', async () => {
    const created = await item();
    const due = '2030-01-02T03:04:05.000Z';
    const patched = await call('PATCH', `/v1/work-items/${created.id}`, {
      title: 'Renamed',
      description: 'More words',
      type: 'bug',
      priority: 'critical',
      due_date: due,
      labels: ['x'],
      assignee: { type: 'user', id: mate.user.id },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      title: 'Renamed',
      description: 'More words',
      type: 'bug',
      priority: 'critical',
      due_date: due,
      labels: ['x'],
      assignee: { type: 'user', id: mate.user.id },
    });
    const [updated] = await events('work_item.updated', created.id);
    expect(updated?.data.changed_fields.sort()).toEqual(
      ['description', 'due_date', 'labels', 'priority', 'title', 'type'].sort(),
    );
    const [assigned] = await events('work_item.assigned', created.id);
    expect(assigned?.data).toMatchObject({
      assignee_type: 'user',
      assignee_id: mate.user.id,
      previous_id: null,
    });
    const toAgent = await call('PATCH', `/v1/work-items/${created.id}`, {
      assignee: { type: 'agent', id: agent.id },
    });
    expect(toAgent.body.assignee).toEqual({ type: 'agent', id: agent.id });
    // Unassign, and a PATCH that changes nothing records nothing.
    expect(
      (await call('PATCH', `/v1/work-items/${created.id}`, { assignee: null })).body.assignee,
    ).toBeNull();
    const before = (await events('work_item.updated', created.id)).length;
    expect((await call('PATCH', `/v1/work-items/${created.id}`, { title: 'Renamed' })).status).toBe(200);
    expect((await events('work_item.updated', created.id)).length).toBe(before);
  });

  it('refuses an assignee outside the team: a stranger, a foreign agent, a made-up id', async () => {
    const created = await item();
    for (const assignee of [
      { type: 'user', id: stranger.user.id },
      { type: 'agent', id: foreignAgent.id },
      { type: 'user', id: agent.id },
      { type: 'agent', id: 'agt_nope' },
    ]) {
      const res = await call('PATCH', `/v1/work-items/${created.id}`, { assignee });
      expect(res.status, JSON.stringify(assignee)).toBe(400);
      expect(res.body.error.code).toBe('assignee_not_in_team');
    }
    const onCreate = await call('POST', '/v1/work-items', {
      title: 'x',
      assignee: { type: 'user', id: stranger.user.id },
    });
    expect(onCreate.status).toBe(400);
    expect(onCreate.body.error.code).toBe('assignee_not_in_team');
  });

  it('answers bad input with a 400 in the error shape', async () => {
    const bad: Array<Record<string, unknown>> = [
      {},
      { title: '' },
      { title: 'x', priority: 'P0' },
      { title: 'x', status: 'archived' },
      { title: 'x', type: 'epic' },
      { title: 'x', labels: ['a', 'a'] },
      { title: 'x', labels: ['a,b'] },
      { title: 'x', due_date: 'tomorrow' },
      { title: 'x', assignee: { type: 'robot', id: 'x' } },
      { title: 'x', extra: true },
    ];
    for (const body of bad) {
      const res = await call('POST', '/v1/work-items', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    expect((await call('GET', '/v1/work-items?status=todo,nope')).status).toBe(400);
    expect((await call('GET', '/v1/work-items?assignee=bob')).body.error.code).toBe('invalid_assignee');
    expect((await call('GET', '/v1/work-items/wki_nope')).status).toBe(404);
    expect((await call('GET', '/v1/work-items/not-an-id')).status).toBe(404);
  });
});

describe('status transitions', () => {
  it('follows the table and answers a move it does not allow with 409 invalid_transition', async () => {
    const created = await item();
    const move = (status: string, extra: Record<string, unknown> = {}) =>
      call('POST', `/v1/work-items/${created.id}/transition`, { status, ...extra });
    const review = await move('review');
    expect(review.status).toBe(409);
    expect(review.body.error).toMatchObject({
      code: 'invalid_transition',
      details: { from: 'todo', to: 'review', allowed: ['in_progress', 'done', 'blocked', 'cancelled'] },
    });
    expect((await move('in_progress')).body.status).toBe('in_progress');
    expect((await move('review')).body.status).toBe('review');
    const done = await move('done', { resolution: 'shipped' });
    expect(done.body).toMatchObject({ status: 'done', resolution: 'shipped' });
    // done goes back to todo only; PATCH status follows the same table.
    const back = await call('PATCH', `/v1/work-items/${created.id}`, { status: 'in_progress' });
    expect(back.status).toBe(409);
    expect(back.body.error.code).toBe('invalid_transition');
    expect((await call('PATCH', `/v1/work-items/${created.id}`, { status: 'todo' })).body.status).toBe(
      'todo',
    );
    // The same status again is no move: nothing changes, nothing recorded.
    expect((await move('todo')).status).toBe(200);
    const moves = (await events('work_item.status_changed', created.id)).map((e) => [e.data.from, e.data.to]);
    expect(moves.reverse()).toEqual([
      ['todo', 'in_progress'],
      ['in_progress', 'review'],
      ['review', 'done'],
      ['done', 'todo'],
    ]);
    const statuses = await call('GET', '/v1/work-items?status=todo,blocked');
    expect(statuses.body.data.map((i: Json) => i.id)).toContain(created.id);
    expect((await call('GET', '/v1/work-items?status=done')).body.data.map((i: Json) => i.id)).not.toContain(
      created.id,
    );
  });
});

describe('next=true', () => {
  it('gives a user session its highest-priority todo item, and an agent key its agent’s', async () => {
    // A fresh team, so no other test's items compete.
    const owner = await t.signup();
    const worker = await createAgent(t, owner.token);
    const mk = (body: Record<string, unknown>) => item(body, owner.token);
    const me = { type: 'user', id: owner.user.id };
    const bot = { type: 'agent', id: worker.id };
    await mk({ title: 'low', priority: 'low', assignee: me });
    const highLate = await mk({
      title: 'high late',
      priority: 'high',
      assignee: me,
      due_date: '2031-01-01T00:00:00Z',
    });
    const highSoon = await mk({
      title: 'high soon',
      priority: 'high',
      assignee: me,
      due_date: '2030-01-01T00:00:00Z',
    });
    const critDone = await mk({ title: 'critical but started', priority: 'critical', assignee: me });
    await call('POST', `/v1/work-items/${critDone.id}/transition`, { status: 'in_progress' }, owner.token);
    await mk({ title: 'critical, unassigned', priority: 'critical' });
    const botItem = await mk({ title: 'for the bot', priority: 'low', assignee: bot });
    await mk({ title: 'bot archived', priority: 'critical', assignee: bot }).then((i) =>
      call('POST', `/v1/work-items/${i.id}/archive`, undefined, owner.token),
    );

    const mine = await call('GET', '/v1/work-items?next=true&assignee=me', undefined, owner.token);
    expect(mine.status).toBe(200);
    expect(mine.body).toEqual({ data: [expect.objectContaining({ id: highSoon.id })], next_cursor: null });
    // next=true alone means me.
    expect((await call('GET', '/v1/work-items?next=true', undefined, owner.token)).body.data[0].id).toBe(
      highSoon.id,
    );
    await call('POST', `/v1/work-items/${highSoon.id}/transition`, { status: 'in_progress' }, owner.token);
    expect(
      (await call('GET', '/v1/work-items?next=true&assignee=me', undefined, owner.token)).body.data[0].id,
    ).toBe(highLate.id);

    const theirs = await call('GET', '/v1/work-items?next=true&assignee=me', undefined, worker.api_key);
    expect(theirs.status).toBe(200);
    expect(theirs.body.data.map((i: Json) => i.id)).toEqual([botItem.id]);
    // The agent moves it on; then it has nothing left to do.
    const started = await call(
      'POST',
      `/v1/work-items/${botItem.id}/transition`,
      { status: 'in_progress' },
      worker.api_key,
    );
    expect(started.status).toBe(200);
    const moved = (
      (await call('GET', '/v1/events?type=work_item.status_changed&limit=200', undefined, owner.token)).body
        .data as Json[]
    ).filter((e) => e.subject_id === botItem.id);
    expect(moved).toEqual([expect.objectContaining({ actor_kind: 'agent', actor_id: worker.id })]);
    expect(
      (await call('GET', '/v1/work-items?next=true&assignee=me', undefined, worker.api_key)).body.data,
    ).toEqual([]);

    // A team key is nobody in particular: it names the assignee.
    const key = await t.apiKey(owner.token, ['read']);
    const asKey = await call('GET', '/v1/work-items?next=true&assignee=me', undefined, key.key);
    expect(asKey.status).toBe(400);
    expect(asKey.body.error.code).toBe('assignee_me_unknown');
    const byId = await call('GET', `/v1/work-items?next=true&assignee=${owner.user.id}`, undefined, key.key);
    expect(byId.body.data[0].id).toBe(highLate.id);
    expect((await call('GET', '/v1/work-items?next=true&status=done', undefined, owner.token)).status).toBe(
      400,
    );
  });
});

describe('archive', () => {
  it('hides archived items from lists unless asked, refuses changes to them, and unarchives', async () => {
    const created = await item({ title: 'old' });
    const archived = await call('POST', `/v1/work-items/${created.id}/archive`);
    expect(archived.body).toMatchObject({ archived: true, status: 'todo' });
    expect(archived.body.archived_at).not.toBeNull();
    const ids = async (q: string) =>
      (await call('GET', `/v1/work-items${q}`)).body.data.map((i: Json) => i.id);
    expect(await ids('')).not.toContain(created.id);
    expect(await ids('?archived=include')).toContain(created.id);
    expect(await ids('?archived=only')).toEqual([created.id]);
    const change = await call('PATCH', `/v1/work-items/${created.id}`, { title: 'new' });
    expect(change.status).toBe(409);
    expect(change.body.error.code).toBe('work_item_archived');
    expect((await call('POST', `/v1/work-items/${created.id}/comments`, { body: 'hi' })).status).toBe(409);
    expect((await call('POST', `/v1/work-items/${created.id}/unarchive`)).body.archived).toBe(false);
    expect(await ids('')).toContain(created.id);
    expect((await events('work_item.archived', created.id)).length).toBe(1);
    expect((await events('work_item.unarchived', created.id)).length).toBe(1);
  });
});

describe('comments', () => {
  it('lists comments oldest first; the author or an admin deletes one, others get 403', async () => {
    const created = await item();
    const first = await call('POST', `/v1/work-items/${created.id}/comments`, { body: 'first' }, mate.token);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ body: 'first', author_type: 'user', author_id: mate.user.id });
    const second = await call(
      'POST',
      `/v1/work-items/${created.id}/comments`,
      { body: 'from the bot' },
      agent.api_key,
    );
    expect(second.body).toMatchObject({ author_type: 'agent', author_id: agent.id });
    const third = await call('POST', `/v1/work-items/${created.id}/comments`, { body: 'third' }, mate.token);
    const listed = await call('GET', `/v1/work-items/${created.id}/comments?limit=2`);
    expect(listed.body.data.map((c: Json) => c.body)).toEqual(['first', 'from the bot']);
    const rest = await call(
      'GET',
      `/v1/work-items/${created.id}/comments?limit=2&cursor=${listed.body.next_cursor}`,
    );
    expect(rest.body.data.map((c: Json) => c.id)).toEqual([third.body.id]);
    // The agent cannot delete mate's comment; mate deletes it, the owner (an admin) deletes the agent's.
    const notYours = await call(
      'DELETE',
      `/v1/work-items/${created.id}/comments/${first.body.id}`,
      undefined,
      agent.api_key,
    );
    expect(notYours.status).toBe(403);
    expect(notYours.body.error.code).toBe('not_comment_author');
    expect(
      (await call('DELETE', `/v1/work-items/${created.id}/comments/${first.body.id}`, undefined, mate.token))
        .status,
    ).toBe(204);
    expect((await call('DELETE', `/v1/work-items/${created.id}/comments/${second.body.id}`)).status).toBe(
      204,
    );
    expect((await call('DELETE', `/v1/work-items/${created.id}/comments/${second.body.id}`)).status).toBe(
      404,
    );
    expect(
      (await call('GET', `/v1/work-items/${created.id}/comments`)).body.data.map((c: Json) => c.id),
    ).toEqual([third.body.id]);
    expect((await events('work_item.commented', created.id)).length).toBe(3);
    expect((await events('work_item.comment_deleted', created.id)).length).toBe(2);
    expect((await call('POST', `/v1/work-items/${created.id}/comments`, { body: '' })).status).toBe(400);
  });
});

describe('tenancy and access', () => {
  it("refuses another team's items as unknown ones, and keeps them out of lists", async () => {
    const mine = await item({ title: 'private' });
    const theirs = await item({ title: 'theirs' }, stranger.token);
    for (const [method, url, body] of [
      ['GET', `/v1/work-items/${mine.id}`],
      ['PATCH', `/v1/work-items/${mine.id}`, { title: 'hijack' }],
      ['POST', `/v1/work-items/${mine.id}/transition`, { status: 'in_progress' }],
      ['POST', `/v1/work-items/${mine.id}/archive`],
      ['POST', `/v1/work-items/${mine.id}/comments`, { body: 'hi' }],
      ['GET', `/v1/work-items/${mine.id}/comments`],
      ['GET', `/v1/work-items/${mine.id}/links`],
    ] as Array<[string, string, unknown?]>) {
      const res = await call(method, url, body, stranger.token);
      expect(res.status, `${method} ${url}`).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const listed = await call('GET', '/v1/work-items?archived=include', undefined, stranger.token);
    expect(listed.body.data.map((i: Json) => i.id)).toEqual([theirs.id]);
    // A foreign agent's key is another team's too.
    expect((await call('GET', `/v1/work-items/${mine.id}`, undefined, foreignAgent.api_key)).status).toBe(
      404,
    );
    // Read keys read, but do not write.
    const readKey = await t.apiKey(u.token, ['read']);
    expect((await call('GET', `/v1/work-items/${mine.id}`, undefined, readKey.key)).status).toBe(200);
    const denied = await call('POST', '/v1/work-items', { title: 'x' }, readKey.key);
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('insufficient_scope');
    expect((await t.call('GET', '/v1/work-items')).status).toBe(401);
  });
});

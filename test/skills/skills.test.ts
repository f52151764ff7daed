import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, skills as skillsTable } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { expectNewestFirstPages } from '../support/pages.ts';

// Skills over HTTP: what a team can store, what it is refused, who may touch
// them, and how agent definitions refer to them.

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;

beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup({ name: 'Sam Owner' });
  other = await t.signup({ name: 'Olga Other' });
});
afterAll(async () => {
  await t.close();
});

let n = 0;
function skillName(): string {
  n += 1;
  return `skill-${n}-${Math.random().toString(36).slice(2, 8)}`;
}

function call(method: string, url: string, options: CallOptions = {}) {
  return t.call(method, url, { token: u.token, ...options });
}

async function createSkill(body: Record<string, unknown> = {}, token = u.token): Promise<Json> {
  const res = await call('POST', '/v1/skills', {
    token,
    body: {
      name: skillName(),
      description: 'How to write release notes',
      content: '# Steps\n1. Read',
      ...body,
    },
  });
  if (res.status !== 201) throw new Error(`createSkill failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

describe('skills', () => {
  it('creates a skill (201) and shows it whole by id, and without its content in the list', async () => {
    const name = skillName();
    const content = '# Release notes\n\n- Group changes by area.\n- Link every PR. 🚀';
    const res = await call('POST', '/v1/skills', {
      body: { name, description: 'Writing release notes', content },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      name,
      description: 'Writing release notes',
      content,
      // Characters as the limit counts them: the rocket is one.
      content_chars: [...content].length,
      team_id: u.team.id,
      created_by: u.user.id,
    });
    expect(res.body.id).toMatch(/^skl_/);

    const got = await call('GET', `/v1/skills/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(res.body);

    const list = await call('GET', '/v1/skills');
    expect(list.status).toBe(200);
    const listed = list.body.data.find((s: Json) => s.id === res.body.id);
    expect(listed).toMatchObject({
      name,
      description: 'Writing release notes',
      content_chars: [...content].length,
    });
    expect(listed).not.toHaveProperty('content');
  });

  it('takes a name of 64 characters, a description of 1000 and content of 200 000', async () => {
    const name = `a${skillName()}`.padEnd(64, 'z');
    const res = await call('POST', '/v1/skills', {
      body: { name, description: 'd'.repeat(1000), content: 'c'.repeat(200_000) },
    });
    expect(res.status).toBe(201);
    expect(res.body.content_chars).toBe(200_000);
  });

  it('refuses bad names, empty or over-long text and unknown fields with 400, writing nothing', async () => {
    const ok = { description: 'fine', content: 'fine' };
    const bodies: Array<Record<string, unknown>> = [
      { name: 'Upper', ...ok },
      { name: '-leading-dash', ...ok },
      { name: 'has space', ...ok },
      { name: 'dots.not.allowed', ...ok },
      { name: '', ...ok },
      { name: 'x'.repeat(65), ...ok },
      { name: 'ok-name', description: '', content: 'fine' },
      { name: 'ok-name', description: '   ', content: 'fine' },
      { name: 'ok-name', description: 'd'.repeat(1001), content: 'fine' },
      { name: 'ok-name', description: 'fine', content: '' },
      { name: 'ok-name', description: 'fine', content: '\n\n' },
      { name: 'ok-name', description: 'fine', content: 'c'.repeat(200_001) },
      { name: 'ok-name', description: 'fine', content: 'nul\u0000here' },
      { name: 'ok-name', ...ok, extra: 1 },
      { name: 'ok-name', description: 'fine' },
    ];
    for (const body of bodies) {
      const res = await call('POST', '/v1/skills', { body });
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
    }
    const rows = await t.database.db.select().from(skillsTable).where(eq(skillsTable.name, 'ok-name'));
    expect(rows).toEqual([]);
  });

  it('keeps names unique in a team (409 skill_name_taken), on create and rename, but not across teams', async () => {
    const s = await createSkill();
    const again = await call('POST', '/v1/skills', {
      body: { name: s.name, description: 'x', content: 'y' },
    });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'skill_name_taken', details: { name: s.name } });

    const second = await createSkill();
    const rename = await call('PATCH', `/v1/skills/${second.id}`, { body: { name: s.name } });
    expect(rename.status).toBe(409);
    expect(rename.body.error.code).toBe('skill_name_taken');
    expect((await call('GET', `/v1/skills/${second.id}`)).body.name).toBe(second.name);

    const elsewhere = await createSkill({ name: s.name }, other.token);
    expect(elsewhere.name).toBe(s.name);
  });

  it('updates name, description and content; only the fields sent change', async () => {
    const s = await createSkill();
    const newName = skillName();
    const res = await call('PATCH', `/v1/skills/${s.id}`, { body: { name: newName, content: 'new steps' } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: newName, description: s.description, content: 'new steps' });
    expect(Date.parse(res.body.updated_at)).toBeGreaterThanOrEqual(Date.parse(s.updated_at));
    const desc = await call('PATCH', `/v1/skills/${s.id}`, { body: { description: 'another purpose' } });
    expect(desc.body).toMatchObject({ name: newName, description: 'another purpose', content: 'new steps' });
    const bad = await call('PATCH', `/v1/skills/${s.id}`, { body: { content: '' } });
    expect(bad.status).toBe(400);
  });

  it('records events with names and sizes, never the content', async () => {
    const secretish = 'content-marker-7c1e4a';
    const s = await createSkill({ content: `do this: ${secretish}` });
    await call('PATCH', `/v1/skills/${s.id}`, { body: { content: `now this: ${secretish}` } });
    await call('DELETE', `/v1/skills/${s.id}`);
    const rows = await t.database.db
      .select()
      .from(events)
      .where(eq(events.subjectId, s.id))
      .orderBy(events.id);
    expect(rows.map((e) => e.type)).toEqual(['skill.created', 'skill.updated', 'skill.deleted']);
    expect(rows[0]!.data).toEqual({ name: s.name, content_chars: `do this: ${secretish}`.length });
    expect(rows[1]!.data).toMatchObject({ changed_fields: ['content'] });
    expect(JSON.stringify(rows)).not.toContain(secretish);
  });

  it('keeps teams apart: another team’s skill is 404 for every route and absent from its list', async () => {
    const s = await createSkill();
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { content: 'taken over' }],
      ['DELETE', undefined],
    ] as const) {
      const res = await call(method, `/v1/skills/${s.id}`, { token: other.token, body });
      expect(res.status, method).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const list = await call('GET', '/v1/skills', { token: other.token });
    expect(list.body.data.map((x: Json) => x.id)).not.toContain(s.id);
    expect((await call('GET', `/v1/skills/${s.id}`)).body.content).toBe(s.content);
    // What a task reads is scoped the same way: another team's id gives that team nothing.
    expect(await t.services.skills.forAgent(other.team.id as never, [s.id])).toEqual([]);
    expect(await t.services.skills.forAgent(u.team.id as never, [s.id])).toEqual([
      { name: s.name, description: s.description, content: s.content },
    ]);
    for (const id of ['not-an-id', 'skl_00000000000000000000000000', 'agt_00000000000000000000000000'])
      expect((await call('GET', `/v1/skills/${id}`)).status, id).toBe(404);
  });

  it('lets agent keys neither read nor manage skills, and read-scoped keys only read', async () => {
    const agent = await createAgent(t, u.token);
    const s = await createSkill();
    for (const [method, url] of [
      ['GET', '/v1/skills'],
      ['GET', `/v1/skills/${s.id}`],
      ['POST', '/v1/skills'],
    ] as const) {
      const res = await call(method, url, {
        token: agent.api_key,
        ...(method === 'POST' ? { body: { name: skillName(), description: 'x', content: 'y' } } : {}),
      });
      expect(res.status, `${method} ${url}`).toBe(403);
      expect(res.body.error.code).toBe('agent_key_not_allowed');
    }
    const reader = await t.apiKey(u.token, ['read']);
    expect((await call('GET', `/v1/skills/${s.id}`, { token: reader.key })).status).toBe(200);
    expect((await call('GET', '/v1/skills', { token: reader.key })).status).toBe(200);
    const write = await call('PATCH', `/v1/skills/${s.id}`, { token: reader.key, body: { content: 'x' } });
    expect(write.status).toBe(403);
    expect((await call('DELETE', `/v1/skills/${s.id}`, { token: reader.key })).status).toBe(403);
    const writer = await t.apiKey(u.token, ['write']);
    const created = await call('POST', '/v1/skills', {
      token: writer.key,
      body: { name: skillName(), description: 'x', content: 'y' },
    });
    expect(created.status).toBe(201);
    expect(created.body.created_by).toBe(writer.id);
    expect((await call('GET', '/v1/skills', { token: undefined })).status).toBe(401);
  });

  it('pages the list newest first with a cursor', async () => {
    const team = await t.signup({ name: 'Pager' });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createSkill({}, team.token)).id);
    await expectNewestFirstPages(t, team.token, '/v1/skills', made);
  });
});

describe('agents and skills', () => {
  it('refuses skill_ids that name no skill of the team with 400 invalid_skill, on create and update', async () => {
    const mine = await createSkill();
    const theirs = await createSkill({}, other.token);
    const bad = [theirs.id, 'skl_00000000000000000000000000', 'not-a-skill'];
    const created = await createAgent(t, u.token, { skill_ids: [mine.id] });
    expect(created.skill_ids).toEqual([mine.id]);
    for (const id of bad) {
      const onCreate = await call('POST', '/v1/agents', {
        body: { name: `agent-${skillName()}`, policy_id: created.policy_id, skill_ids: [mine.id, id] },
      });
      expect(onCreate.status, id).toBe(400);
      expect(onCreate.body.error).toMatchObject({ code: 'invalid_skill', details: { skill_ids: [id] } });
      expect(onCreate.body.error.message).toContain(id);
      const onUpdate = await call('PATCH', `/v1/agents/${created.id}`, { body: { skill_ids: [id] } });
      expect(onUpdate.status, id).toBe(400);
      expect(onUpdate.body.error.code).toBe('invalid_skill');
    }
    // The refused updates made no version: the agent still lists only its own skill.
    const agent = await call('GET', `/v1/agents/${created.id}`);
    expect(agent.body).toMatchObject({ skill_ids: [mine.id], version: 1 });
  });

  it('refuses to delete a skill an agent’s current version lists (409 skill_in_use naming it), until it does not', async () => {
    const s = await createSkill();
    const a = await createAgent(t, u.token, { skill_ids: [s.id] });
    const b = await createAgent(t, u.token, { skill_ids: [s.id] });
    const refused = await call('DELETE', `/v1/skills/${s.id}`);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('skill_in_use');
    expect(refused.body.error.details).toEqual({ agent_ids: [a.id, b.id].sort(), agent_count: 2 });
    expect(refused.body.error.message).toContain(a.id);
    expect((await call('GET', `/v1/skills/${s.id}`)).status).toBe(200);

    // Another version for a, and b deleted: no live agent's current version lists it any more.
    expect((await call('PATCH', `/v1/agents/${a.id}`, { body: { skill_ids: [] } })).status).toBe(200);
    expect((await call('DELETE', `/v1/agents/${b.id}`)).status).toBe(204);
    expect((await call('DELETE', `/v1/skills/${s.id}`)).status).toBe(204);
    expect((await call('GET', `/v1/skills/${s.id}`)).status).toBe(404);
    expect((await call('DELETE', `/v1/skills/${s.id}`)).status).toBe(404);
    // a's version 1 still lists it; its tasks skip it (test/skills/load-skill.test.ts).
    expect((await call('GET', `/v1/agents/${a.id}/versions/1`)).body.skill_ids).toEqual([s.id]);
  });
});

import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentId, newId } from '../../src/core/ids.ts';
import { events, memories } from '../../src/db/schema/index.ts';
import { RANKED_AT_MOST } from '../../src/modules/memories/repo.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, type Json } from '../support/factories.ts';

// /v1/memories: an agent's memories as the team reads and edits them, and
// the full-text search its tasks' memory_search uses. Another team's memory
// or agent is a 404, as an unknown one is.

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
let agent: Json & { api_key: string };

beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup({ name: 'Mia Owner' });
  other = await t.signup({ name: 'Otto Other' });
  agent = await createAgent(t, u.token);
});
afterAll(async () => {
  await t.close();
});

function call(method: string, url: string, options: CallOptions = {}) {
  return t.call(method, url, { token: u.token, ...options });
}

async function remember(agentId: string, content: string, metadata?: Record<string, unknown>): Promise<Json> {
  const res = await call('POST', '/v1/memories', {
    body: { agent_id: agentId, content, ...(metadata ? { metadata } : {}) },
  });
  if (res.status !== 201) throw new Error(`remember failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function outbox(subjectId: string) {
  const rows = await t.database.db
    .select()
    .from(events)
    .where(eq(events.subjectId, subjectId))
    .orderBy(events.id);
  return rows.filter((e) => e.type.startsWith('memory.'));
}

describe('memories', () => {
  it('creates, reads, changes and deletes a memory, each change an outbox event without the content', async () => {
    const created = await call('POST', '/v1/memories', {
      body: { agent_id: agent.id, content: 'The build needs Node 20.', metadata: { source: 'onboarding' } },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      agent_id: agent.id,
      team_id: u.team.id,
      content: 'The build needs Node 20.',
      metadata: { source: 'onboarding' },
      task_id: null,
    });
    const id = created.body.id as string;
    expect(id).toMatch(/^mem_/);
    expect((await call('GET', `/v1/memories/${id}`)).body).toEqual(created.body);

    t.clock.advance(1000);
    const patched = await call('PATCH', `/v1/memories/${id}`, {
      body: { content: 'The build needs Node 22.', metadata: { source: 'upgrade' } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      content: 'The build needs Node 22.',
      metadata: { source: 'upgrade' },
    });
    expect(patched.body.updated_at > created.body.updated_at).toBe(true);
    // The search reads the new content: the generated search vector follows it.
    const found = await call('GET', '/v1/memories/search', { query: { agent_id: agent.id, q: '22' } });
    expect(found.body.data.map((m: Json) => m.id)).toEqual([id]);

    expect((await call('DELETE', `/v1/memories/${id}`)).status).toBe(204);
    expect((await call('GET', `/v1/memories/${id}`)).status).toBe(404);
    expect((await call('DELETE', `/v1/memories/${id}`)).status).toBe(404);

    const recorded = await outbox(id);
    expect(recorded.map((e) => e.type)).toEqual(['memory.created', 'memory.updated', 'memory.deleted']);
    expect(recorded[0]!.data).toEqual({ agent_id: agent.id, task_id: null, chars: 24 });
    expect(recorded[1]!.data).toEqual({ agent_id: agent.id, changed_fields: ['content', 'metadata'] });
    expect(JSON.stringify(recorded)).not.toContain('Node');
  });

  it('lists newest first, one agent’s with agent_id, a page at a time', async () => {
    const a = await createAgent(t, u.token);
    const b = await createAgent(t, u.token);
    const mine = [];
    for (let i = 0; i < 5; i++) mine.push(await remember(a.id, `note ${i}`));
    const theirs = await remember(b.id, 'note of b');

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Json = await call('GET', '/v1/memories', {
        query: { agent_id: a.id, limit: '2', ...(cursor ? { cursor } : {}) },
      });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((m: Json) => m.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(mine.map((m) => m.id).reverse());

    const all = await call('GET', '/v1/memories', { query: { limit: '200' } });
    expect(all.body.data.map((m: Json) => m.id)).toEqual(expect.arrayContaining([theirs.id, ...seen]));
    const bad = await call('GET', '/v1/memories', { query: { cursor: '%%%' } });
    expect(bad.status).toBe(400);
  });

  it('refuses bad input with a 400 naming the field, and writes nothing', async () => {
    const before = (await call('GET', '/v1/memories', { query: { agent_id: agent.id, limit: '200' } })).body
      .data.length;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ agent_id: agent.id, content: '' }, 'content'],
      [{ agent_id: agent.id, content: '   \n\t ' }, 'content'],
      [{ agent_id: agent.id, content: 'x'.repeat(10_001) }, 'content'],
      [{ agent_id: agent.id }, 'content'],
      [{ content: 'no agent' }, 'agent_id'],
      [{ agent_id: agent.id, content: 'ok', color: 'red' }, 'color'],
      [{ agent_id: agent.id, content: 'ok', metadata: 'tags' }, 'metadata'],
      [{ agent_id: agent.id, content: 'ok', metadata: { big: 'y'.repeat(17_000) } }, 'metadata'],
    ];
    for (const [body, field] of cases) {
      const res = await call('POST', '/v1/memories', { body });
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(JSON.stringify(res.body.error.details)).toContain(field);
    }
    // The bound itself is fine.
    expect((await remember(agent.id, 'z'.repeat(10_000))).content).toHaveLength(10_000);

    const m = await remember(agent.id, 'patch me');
    for (const body of [{ content: '' }, { content: 'x'.repeat(10_001) }, { agent_id: agent.id }]) {
      const res = await call('PATCH', `/v1/memories/${m.id}`, { body });
      expect(res.status).toBe(400);
    }
    expect((await call('GET', `/v1/memories/${m.id}`)).body.content).toBe('patch me');

    // An agent that is not one: 404, as another team's.
    for (const agentId of ['agt_nope', 'agt_01J00000000000000000000000', 'not-an-id']) {
      const res = await call('POST', '/v1/memories', { body: { agent_id: agentId, content: 'x' } });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
      const search = await call('GET', '/v1/memories/search', { query: { agent_id: agentId, q: 'patch' } });
      expect(search.status).toBe(404);
      expect(search.body.error.code).toBe('not_found');
    }
    // Deleting every memory needs the agent named; searching needs words and a sane limit.
    const noAgent = await call('DELETE', '/v1/memories');
    expect(noAgent.status).toBe(400);
    expect(JSON.stringify(noAgent.body.error)).toContain('agent_id');
    const badSearches: Array<Record<string, string>> = [
      { agent_id: agent.id },
      { agent_id: agent.id, q: '' },
      { q: 'x' },
      { agent_id: agent.id, q: 'x', limit: '0' },
      { agent_id: agent.id, q: 'x', limit: '51' },
      { agent_id: agent.id, q: 'x'.repeat(1001) },
    ];
    for (const query of badSearches) {
      const res = await call('GET', '/v1/memories/search', { query });
      expect(res.status, JSON.stringify(query).slice(0, 80)).toBe(400);
    }
    const after = (await call('GET', '/v1/memories', { query: { agent_id: agent.id, limit: '200' } })).body
      .data.length;
    expect(after).toBe(before + 2);
  });

  it('keeps each team to its own: another team’s memory or agent is a 404, like an unknown one', async () => {
    const m = await remember(agent.id, 'the vault code is in the blue folder');
    const theirs = await createAgent(t, other.token);
    const theirMemory = (
      await t.call('POST', '/v1/memories', {
        token: other.token,
        body: { agent_id: theirs.id, content: 'the blue folder of the other team' },
      })
    ).body;
    const as = (method: string, url: string, options: CallOptions = {}) =>
      t.call(method, url, { token: other.token, ...options });

    const unknown = await as('GET', '/v1/memories/mem_01J00000000000000000000000');
    const foreign = await as('GET', `/v1/memories/${m.id}`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe(unknown.body.error.code);
    expect((await as('PATCH', `/v1/memories/${m.id}`, { body: { content: 'mine now' } })).status).toBe(404);
    expect((await as('DELETE', `/v1/memories/${m.id}`)).status).toBe(404);
    // Naming our agent: as an unknown agent, for every route that names one.
    expect((await as('POST', '/v1/memories', { body: { agent_id: agent.id, content: 'x' } })).status).toBe(
      404,
    );
    expect((await as('GET', '/v1/memories', { query: { agent_id: agent.id } })).status).toBe(404);
    expect(
      (await as('GET', '/v1/memories/search', { query: { agent_id: agent.id, q: 'vault' } })).status,
    ).toBe(404);
    expect((await as('DELETE', '/v1/memories', { query: { agent_id: agent.id } })).status).toBe(404);
    // Their lists hold only theirs; ours is untouched.
    const listed = await as('GET', '/v1/memories', { query: { limit: '200' } });
    expect(listed.body.data.map((x: Json) => x.id)).toEqual([theirMemory.id]);
    expect((await call('GET', `/v1/memories/${m.id}`)).body.content).toBe(
      'the vault code is in the blue folder',
    );
    // Our search does not find theirs, though the words match.
    const ours = await call('GET', '/v1/memories/search', {
      query: { agent_id: agent.id, q: 'blue folder' },
    });
    expect(ours.body.data.map((x: Json) => x.id)).not.toContain(theirMemory.id);
  });

  it('lets read keys read, not write; an agent key reaches its own agent’s memories only', async () => {
    const a = await createAgent(t, u.token);
    const b = await createAgent(t, u.token);
    const mb = await remember(b.id, 'b keeps this');
    const reader = await t.apiKey(u.token, ['read']);
    expect((await t.call('GET', '/v1/memories', { token: reader.key })).status).toBe(200);
    const refused = await t.call('POST', '/v1/memories', {
      token: reader.key,
      body: { agent_id: a.id, content: 'x' },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_scope');

    const asA = (method: string, url: string, options: CallOptions = {}) =>
      t.call(method, url, { token: a.api_key, ...options });
    const own = await asA('POST', '/v1/memories', { body: { agent_id: a.id, content: 'a learnt this' } });
    expect(own.status).toBe(201);
    expect((await asA('GET', '/v1/memories')).body.data.map((x: Json) => x.id)).toEqual([own.body.id]);
    expect(
      (await asA('GET', '/v1/memories/search', { query: { agent_id: a.id, q: 'learnt' } })).body.data,
    ).toHaveLength(1);
    expect(
      (await asA('PATCH', `/v1/memories/${own.body.id}`, { body: { content: 'a learnt more' } })).status,
    ).toBe(200);
    // Agent b's memories, by id or by agent: as if they did not exist.
    expect((await asA('GET', `/v1/memories/${mb.id}`)).status).toBe(404);
    expect((await asA('DELETE', `/v1/memories/${mb.id}`)).status).toBe(404);
    expect((await asA('POST', '/v1/memories', { body: { agent_id: b.id, content: 'x' } })).status).toBe(404);
    expect((await asA('GET', '/v1/memories', { query: { agent_id: b.id } })).status).toBe(404);
    expect((await asA('DELETE', '/v1/memories', { query: { agent_id: b.id } })).status).toBe(404);
    expect((await call('GET', `/v1/memories/${mb.id}`)).status).toBe(200);
    expect((await asA('DELETE', '/v1/memories', { query: { agent_id: a.id } })).body).toEqual({
      agent_id: a.id,
      deleted: 1,
    });
  });
});

describe('search', () => {
  it('ranks the closer match first, stems words, and finds only that agent’s memories', async () => {
    const a = await createAgent(t, u.token);
    const b = await createAgent(t, u.token);
    const both = await remember(a.id, 'The staging server deploys from the release branch every Friday.');
    const one = await remember(a.id, 'Deploy keys rotate monthly; ask the platform team for a new one.');
    await remember(a.id, 'The cafeteria serves lunch at noon.');
    const elsewhere = await remember(b.id, 'Staging deploys are frozen in December.');

    const res = await call('GET', '/v1/memories/search', {
      query: { agent_id: a.id, q: 'deploying to staging' },
    });
    expect(res.status).toBe(200);
    expect(res.body.data.map((m: Json) => m.id)).toEqual([both.id, one.id]);
    expect(res.body.data[0].score).toBeGreaterThan(res.body.data[1].score);
    expect(res.body.data[0]).toMatchObject({ content: both.content, agent_id: a.id });
    expect(res.body.data.map((m: Json) => m.id)).not.toContain(elsewhere.id);

    // The shorter memory on the point beats a long one that mentions it in passing.
    const c = await createAgent(t, u.token);
    const long = await remember(
      c.id,
      `Minutes of the weekly meeting: ${'we discussed the roadmap, hiring and the budget at length. '.repeat(20)}Also: invoices.`,
    );
    const short = await remember(c.id, 'Invoices are sent on the first of the month.');
    const ranked = await call('GET', '/v1/memories/search', { query: { agent_id: c.id, q: 'invoices' } });
    expect(ranked.body.data.map((m: Json) => m.id)).toEqual([short.id, long.id]);

    // limit cuts the list; words that are all stop words, or match nothing, find nothing.
    const limited = await call('GET', '/v1/memories/search', {
      query: { agent_id: a.id, q: 'staging deploy', limit: '1' },
    });
    expect(limited.body.data.map((m: Json) => m.id)).toEqual([both.id]);
    for (const q of ['the and of', 'zebra', '!!! & | ( ) : *', "'"]) {
      const none = await call('GET', '/v1/memories/search', { query: { agent_id: a.id, q } });
      expect(none.status, q).toBe(200);
      expect(none.body.data, q).toEqual([]);
    }
  });
  it('puts memories holding every word before those holding some, however these rank', async () => {
    const a = await createAgent(t, u.token);
    // Holds one of the words, often and in few words: it outranks the other on those words alone.
    const some = await remember(a.id, 'Invoices, invoices, invoices.');
    const every = await remember(
      a.id,
      `The invoices go out ${'after the books are closed and checked twice, '.repeat(8)}by courier.`,
    );
    const res = await call('GET', '/v1/memories/search', {
      query: { agent_id: a.id, q: 'invoices courier' },
    });
    expect(res.body.data.map((m: Json) => m.id)).toEqual([every.id, some.id]);
    const oneEach = await call('GET', '/v1/memories/search', {
      query: { agent_id: a.id, q: 'invoices courier', limit: '1' },
    });
    expect(oneEach.body.data.map((m: Json) => m.id)).toEqual([every.id]);
  });

  it('ranks the newest memories when too many hold the words, so the latest is never lost', async () => {
    const a = await createAgent(t, u.token);
    const at = new Date();
    // More memories than a search ranks, all holding the word at length; stored first, so the index meets them first.
    const rows = Array.from({ length: RANKED_AT_MOST + 100 }, (_, i) => ({
      id: newId('mem'),
      teamId: u.team.id,
      agentId: a.id as AgentId,
      content: `Release ${i} notes: ${'the pipeline ran, the checks passed and the artifacts were uploaded. '.repeat(4)}`,
      metadata: {},
      createdAt: at,
      updatedAt: at,
    }));
    await t.database.db.insert(memories).values(rows);
    const latest = await remember(a.id, 'Release pipeline moved to the new runners.');
    const res = await call('GET', '/v1/memories/search', {
      query: { agent_id: a.id, q: 'pipeline', limit: '3' },
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toHaveLength(3);
    expect(res.body.data[0].id).toBe(latest.id);
  });
});

describe('deleting an agent’s memories', () => {
  it('deletes every memory of one agent, answers how many, and leaves the others', async () => {
    const a = await createAgent(t, u.token);
    const b = await createAgent(t, u.token);
    for (const text of ['one', 'two', 'three']) await remember(a.id, text);
    const kept = await remember(b.id, 'b stays');

    const res = await call('DELETE', '/v1/memories', { query: { agent_id: a.id } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ agent_id: a.id, deleted: 3 });
    expect((await call('GET', '/v1/memories', { query: { agent_id: a.id } })).body.data).toEqual([]);
    expect((await call('GET', `/v1/memories/${kept.id}`)).status).toBe(200);
    expect((await call('DELETE', '/v1/memories', { query: { agent_id: a.id } })).body.deleted).toBe(0);
    const cleared = await outbox(a.id);
    expect(cleared.map((e) => [e.type, e.data])).toEqual([
      ['memory.cleared', { agent_id: a.id, deleted: 3 }],
      ['memory.cleared', { agent_id: a.id, deleted: 0 }],
    ]);
  });

  it('still reaches a deleted agent’s memories, to read or clear them', async () => {
    const a = await createAgent(t, u.token);
    const m = await remember(a.id, 'left behind');
    expect((await call('DELETE', `/v1/agents/${a.id}`)).status).toBe(204);
    // No new memory for a deleted agent…
    expect((await call('POST', '/v1/memories', { body: { agent_id: a.id, content: 'x' } })).status).toBe(404);
    // …but what it had is listed and can be deleted.
    expect(
      (await call('GET', '/v1/memories', { query: { agent_id: a.id } })).body.data.map((x: Json) => x.id),
    ).toEqual([m.id]);
    // Searched too: a match, and no match (still its memories, so not a 404).
    const search = (q: string) => call('GET', '/v1/memories/search', { query: { agent_id: a.id, q } });
    expect((await search('behind')).body.data.map((x: Json) => x.id)).toEqual([m.id]);
    expect(await search('nowhere')).toMatchObject({ status: 200, body: { data: [] } });
    expect((await call('DELETE', '/v1/memories', { query: { agent_id: a.id } })).body.deleted).toBe(1);
    expect((await call('GET', '/v1/memories', { query: { agent_id: a.id } })).status).toBe(404);
    expect((await search('behind')).status).toBe(404);
  });
});

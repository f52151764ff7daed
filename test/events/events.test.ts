import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DAY_MS } from '../../src/core/clock.ts';
import { newId } from '../../src/core/ids.ts';
import { events } from '../../src/db/schema/index.ts';
import { EVENTS_KEEPALIVE_MS, EVENTS_STREAM_LIFE_MS } from '../../src/modules/events/routes.ts';
import type { EventInput, EventType } from '../../src/modules/events/service.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, createPolicy, type Json } from '../support/factories.ts';

// GET /v1/events: the team's outbox as a page and as a live SSE stream that
// every server serves from the database (its one poller per process), with
// type and subject filters, Last-Event-ID resume and a late-committed event
// delivered once. Another team's events never appear, whatever the filter.

const STREAMS_PER_TEAM = 3;
let t: TestApp;
let other: TestApp;
let base: string;
let u: SignedUpUser;
let them: SignedUpUser;
let readKey: string;
let theirKey: string;

beforeAll(async () => {
  t = await createTestApp({ manualTimers: true, config: { eventStreamsPerTeam: STREAMS_PER_TEAM } });
  // A second server on the same database: what it streams it reads from there.
  other = await createTestApp({ manualTimers: true, shareWith: t });
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  u = await t.signup({ name: 'Ada Reader' });
  them = await t.signup({ name: 'Bo Elsewhere' });
  readKey = (await t.apiKey(u.token, ['read'])).key;
  theirKey = (await t.apiKey(them.token, ['read'])).key;
});
afterAll(async () => {
  await other.close();
  await t.close();
});

interface Frame {
  id?: string;
  event?: string;
  data?: Json;
  comment?: string;
}

/** An SSE client over a real socket: frames as they arrive. */
async function openStream(server: string, token: string, query = '', headers: Record<string, string> = {}) {
  const aborter = new AbortController();
  const res = await fetch(`${server}/v1/events${query}`, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers },
    signal: aborter.signal,
  });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const decoder = new TextDecoder();
  let buffer = '';
  const nextFrame = async (): Promise<Frame> => {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const frame: Frame = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) frame.comment = line.slice(1).trim();
          else if (line.startsWith('id: ')) frame.id = line.slice(4);
          else if (line.startsWith('event: ')) frame.event = line.slice(7);
          else if (line.startsWith('data: ')) frame.data = JSON.parse(line.slice(6));
        }
        return frame;
      }
      reader ??= res.body?.getReader();
      const chunk = await reader?.read();
      if (!chunk || chunk.done) throw new Error('the stream ended');
      buffer += decoder.decode(chunk.value, { stream: true });
    }
  };
  return {
    res,
    /** The next event (keepalives and the retry line skipped). */
    async next(): Promise<Frame> {
      for (;;) {
        const frame = await nextFrame();
        if (frame.event !== undefined) return frame;
      }
    },
    nextFrame,
    close: () => aborter.abort(),
  };
}
type Stream = Awaited<ReturnType<typeof openStream>>;

/** An outbox row of the team, as a change would write it; with `id`, one made earlier (a late commit). */
function record(teamId: SignedUpUser['team']['id'], type: EventType, subjectId: string, id?: string) {
  const fields = { teamId, type, actorKind: 'system', actorId: null, subjectId, data: { name: subjectId } };
  if (id === undefined) return t.services.events.record(t.database.db, fields as EventInput<EventType>);
  return t.database.db.insert(events).values({ ...fields, id, createdAt: t.clock.now() });
}

/** Polls (this server's one poller) and reads events up to a marker event written last: nothing else came. */
async function eventsUntilMarker(stream: Stream, teamId = u.team.id, app = t): Promise<Frame[]> {
  const marker = `marker_${newId('evt').slice(4)}`;
  await record(teamId, 'team.updated', marker);
  await app.services.eventStream.pollNow();
  const got: Frame[] = [];
  for (;;) {
    const frame = await stream.next();
    if (frame.data?.subject_id === marker) return got;
    got.push(frame);
  }
}

describe('GET /v1/events as a page', () => {
  it('lists the team’s events newest first with cursor paging; after= reads oldest first from an event', async () => {
    const policy = await createPolicy(t, u.token);
    const agent = await createAgent(t, u.token, { policy_id: policy.id });
    const page = await t.call('GET', '/v1/events', { token: readKey, query: { limit: '2' } });
    expect(page.status).toBe(200);
    expect(page.body.data.map((e: Json) => e.type)).toEqual(['agent.created', 'policy.created']);
    expect(page.body.data[0]).toMatchObject({
      subject_id: agent.id,
      actor_kind: 'user',
      actor_id: u.user.id,
      data: { name: agent.name, policy_id: policy.id },
    });
    expect(page.body.data[0].created_at).toMatch(/Z$/);
    expect(page.body.next_cursor).toEqual(expect.any(String));
    const older = await t.call('GET', '/v1/events', {
      token: readKey,
      query: { limit: '2', cursor: page.body.next_cursor },
    });
    expect(older.body.data.every((e: Json) => e.id < page.body.data[1].id)).toBe(true);

    const after = await t.call('GET', '/v1/events', {
      token: readKey,
      query: { after: older.body.data[0].id },
    });
    expect(after.body.data.map((e: Json) => e.id)).toEqual([page.body.data[1].id, page.body.data[0].id]);

    const filtered = await t.call('GET', '/v1/events', {
      token: readKey,
      query: { type: 'agent.*,team.deleted', subject_id: agent.id },
    });
    expect(filtered.body.data.map((e: Json) => e.type)).toEqual(['agent.created']);

    // A prefix matches literally: api_key's underscore is no LIKE wildcard.
    await record(u.team.id, 'apixkey.created' as EventType, 'key_lookalike');
    const keys = await t.call('GET', '/v1/events', { token: readKey, query: { type: 'api_key.*' } });
    expect(keys.body.data.map((e: Json) => e.type)).toEqual(['api_key.created']);

    // Members read it too (their session), the same rows.
    const asMember = await t.call('GET', '/v1/events', { token: u.token, query: { limit: '5' } });
    const asKey = await t.call('GET', '/v1/events', { token: readKey, query: { limit: '5' } });
    expect(asMember.body.data).toEqual(asKey.body.data);
  });

  it('answers a bad filter, cursor or resume point with a 400', async () => {
    for (const query of [
      { type: 'task' },
      { type: 'Task.created' },
      { type: 'task.%' },
      { type: 'task.*,' },
      { subject_id: 'not an id' },
      { after: 'agt_01J00000000000000000000000' },
      { after: 'evt_x' },
      { cursor: '!!!' },
    ] as Array<Record<string, string>>) {
      const res = await t.call('GET', '/v1/events', { token: readKey, query });
      expect(res.status, JSON.stringify(query)).toBe(400);
      expect(res.body.error.code).toMatch(/^invalid_/);
    }
    const stream = await openStream(base, readKey, '', { 'last-event-id': 'evt_nope' });
    expect(stream.res.status).toBe(400);
    expect(((await stream.res.json()) as Json).error.code).toBe('invalid_after');
    const badType = await openStream(base, readKey, '?type=task..x');
    expect(badType.res.status).toBe(400);
    expect(((await badType.res.json()) as Json).error.code).toBe('invalid_type_filter');
  });

  it('refuses agent keys (a team’s events name every agent and key) and callers without a token', async () => {
    const agent = await createAgent(t, u.token);
    const res = await t.call('GET', '/v1/events', { token: agent.api_key });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('agent_key_not_allowed');
    expect((await t.call('GET', '/v1/events')).status).toBe(401);
  });
});

describe('GET /v1/events/types', () => {
  it('names every event type once, sorted, for the subscription forms; it needs a token', async () => {
    const res = await t.call('GET', '/v1/events/types', { token: readKey });
    expect(res.status).toBe(200);
    const types: string[] = res.body.data;
    expect(types).toEqual([...new Set(types)].sort());
    expect(types).toEqual(expect.arrayContaining(['task.completed', 'api_key.created', 'agent.created']));
    for (const type of types) expect(type).toMatch(/^[a-z_]+\.[a-z_.]+$/);
    expect((await t.call('GET', '/v1/events/types', { token: u.token })).body).toEqual(res.body);
    expect((await t.call('GET', '/v1/events/types')).status).toBe(401);
  });
});

describe('GET /v1/events as a stream', () => {
  it('sends a live event caused by an API call, filtered by type, with the event as data', async () => {
    const stream = await openStream(base, readKey, '?type=agent.*,team.updated');
    expect(stream.res.status).toBe(200);
    expect(stream.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const agent = await createAgent(t, u.token); // its policy.created is filtered out
    const frames = await eventsUntilMarker(stream);
    stream.close();
    expect(frames.map((f) => [f.event, f.data?.subject_id])).toEqual([['agent.created', agent.id]]);
    expect(frames[0]?.id).toBe(frames[0]?.data?.id);
    expect(frames[0]?.data).toMatchObject({
      type: 'agent.created',
      actor_kind: 'user',
      data: { name: agent.name },
    });
  });

  it('follows one resource with subject_id', async () => {
    const a = await createPolicy(t, u.token);
    const b = await createPolicy(t, u.token);
    const stream = await openStream(base, readKey, `?subject_id=${a.id}`);
    for (const p of [b, a]) {
      const res = await t.call('PUT', `/v1/policies/${p.id}`, {
        token: u.token,
        body: { name: `${p.name}-2` },
      });
      expect(res.status).toBe(200);
    }
    await t.services.eventStream.pollNow();
    const frame = await stream.next();
    stream.close();
    expect(frame.data).toMatchObject({ subject_id: a.id });
    expect(frame.event).toMatch(/^policy\./);
  });

  it('resumes after Last-Event-ID: exactly the missed events, then live ones, each once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await record(u.team.id, 'skill.created', `skl_resume${i}`);
      const [row] = await t.database.db
        .select()
        .from(events)
        .where(eq(events.subjectId, `skl_resume${i}`));
      ids.push(row?.id ?? '');
    }
    const stream = await openStream(base, readKey, '?type=skill.created,team.updated', {
      'last-event-id': ids[1] ?? '',
    });
    await record(u.team.id, 'skill.created', 'skl_live');
    const frames = await eventsUntilMarker(stream);
    stream.close();
    expect(frames.map((f) => f.data?.subject_id)).toEqual(['skl_resume2', 'skl_resume3', 'skl_live']);
    expect(frames.map((f) => f.id)).toEqual(frames.map((f) => f.data?.id));

    // after= does the same when no header is sent.
    const byQuery = await openStream(base, readKey, `?type=skill.created,team.updated&after=${ids[2]}`);
    const resumed = await eventsUntilMarker(byQuery);
    byQuery.close();
    // (and the first marker, a team.updated made after skl_live)
    expect(resumed.filter((f) => f.event === 'skill.created').map((f) => f.data?.subject_id)).toEqual([
      'skl_resume3',
      'skl_live',
    ]);
    expect(resumed).toHaveLength(3);
  });

  it('delivers an event committed late with an older id once, without moving the resume point back', async () => {
    const stream = await openStream(base, readKey, '?type=file.*,team.updated');
    const lateId = newId('evt'); // made now, committed after a newer event was already streamed
    await record(u.team.id, 'file.created', 'file_early');
    const first = await eventsUntilMarker(stream);
    expect(first.map((f) => f.data?.subject_id)).toEqual(['file_early']);
    await record(u.team.id, 'file.deleted', 'file_late', lateId);
    const late = await eventsUntilMarker(stream);
    expect(late.map((f) => f.data?.id)).toEqual([lateId]);
    // Its SSE id stays the newest sent (a reconnect resumes after the marker, not before it).
    expect(late[0]?.id && late[0].id > lateId).toBe(true);
    // Later polls read the look-back window again: the late event is not sent twice.
    await t.services.eventStream.pollNow();
    expect(await eventsUntilMarker(stream)).toEqual([]);
    stream.close();
  });

  it.runIf(process.env.PADDOCK_TEST_DATABASE_URL)(
    'on Postgres: a transaction that commits after a later one still reaches the stream, once',
    async () => {
      const stream = await openStream(base, readKey, '?type=secret.*,team.updated');
      let commit = () => {};
      const held = new Promise<void>((resolve) => {
        commit = resolve;
      });
      let inserted = () => {};
      const written = new Promise<void>((resolve) => {
        inserted = resolve;
      });
      // Its id is made now; its transaction stays open while a later event commits and is streamed.
      const slow = t.database.db.transaction(async (tx) => {
        await t.services.events.record(tx, {
          teamId: u.team.id,
          type: 'secret.created',
          actorKind: 'system',
          actorId: null,
          subjectId: 'sec_slow',
          data: { name: 'slow', scope: 'all', agent_ids: [] },
        });
        inserted();
        await held;
      });
      await written;
      await record(u.team.id, 'secret.deleted', 'sec_fast');
      expect((await eventsUntilMarker(stream)).map((f) => f.data?.subject_id)).toEqual(['sec_fast']);
      commit();
      await slow;
      expect((await eventsUntilMarker(stream)).map((f) => f.data?.subject_id)).toEqual(['sec_slow']);
      expect(await eventsUntilMarker(stream)).toEqual([]);
      stream.close();
    },
  );

  it('never shows another team’s events, by any filter', async () => {
    const theirAgent = await createAgent(t, them.token);
    const mine = await openStream(base, readKey);
    const bySubject = await openStream(base, readKey, `?subject_id=${theirAgent.id}`);
    const renamed = await t.call('PATCH', `/v1/agents/${theirAgent.id}`, {
      token: them.token,
      body: { name: `${theirAgent.name}-2` },
    });
    expect(renamed.status).toBe(200);
    await record(them.team.id, 'agent.updated', theirAgent.id);
    expect(await eventsUntilMarker(mine)).toEqual([]);
    // A subject filter that names their resource: nothing, not even the marker (a subject of ours).
    await record(u.team.id, 'agent.updated', theirAgent.id);
    await t.services.eventStream.pollNow();
    const forged = await bySubject.next();
    expect(forged.data).toMatchObject({ subject_id: theirAgent.id, actor_kind: 'system' });
    const [ours] = await t.database.db.select().from(events).where(eq(events.id, forged.data?.id));
    expect(ours?.teamId).toBe(u.team.id);
    mine.close();
    bySubject.close();

    const filters: Array<Record<string, string>> = [
      {},
      { subject_id: theirAgent.id },
      { type: 'agent.*' },
      { after: 'evt_00000000000000000000000000' },
    ];
    for (const query of filters) {
      const page = await t.call('GET', '/v1/events', { token: readKey, query: { limit: '200', ...query } });
      expect(page.body.data.length).toBeGreaterThan(-1);
      for (const e of page.body.data) {
        const [row] = await t.database.db.select().from(events).where(eq(events.id, e.id));
        expect(row?.teamId).toBe(u.team.id);
      }
    }
    const theirs = await t.call('GET', '/v1/events', {
      token: theirKey,
      query: { subject_id: theirAgent.id },
    });
    expect(theirs.body.data.map((e: Json) => e.type)).toContain('agent.updated');
  });

  it('reaches a subscriber on another server of the same database', async () => {
    const otherBase = await other.app.listen({ port: 0, host: '127.0.0.1' });
    const stream = await openStream(otherBase, readKey, '?type=policy.created,team.updated');
    const policy = await createPolicy(t, u.token); // written through the first server
    const frames = await eventsUntilMarker(stream, u.team.id, other);
    stream.close();
    expect(frames.map((f) => f.data?.subject_id)).toEqual([policy.id]);
  });

  it('sends a keepalive comment every 30 s of quiet', async () => {
    const stream = await openStream(base, readKey, '?type=team.deleted');
    expect((await stream.nextFrame()).event).toBeUndefined(); // retry: 2000
    await t.timers?.advance(EVENTS_KEEPALIVE_MS);
    expect(await stream.nextFrame()).toEqual({ comment: 'keepalive' });
    stream.close();
  });

  it('ends a stream after its life, so a revoked key reads no more once it must reconnect', async () => {
    const key = await t.apiKey(u.token, ['read']);
    const stream = await openStream(base, key.key);
    expect((await stream.nextFrame()).event).toBeUndefined(); // retry: 2000
    const revoked = await t.call('POST', `/v1/api-keys/${key.id}/revoke`, { token: u.token });
    expect(revoked.status).toBe(200);
    await t.timers?.advance(EVENTS_STREAM_LIFE_MS);
    await expect(async () => {
      for (;;) await stream.nextFrame();
    }).rejects.toThrow('the stream ended');
    // Coming back, as an EventSource would, it is refused.
    const again = await fetch(`${base}/v1/events`, {
      headers: { authorization: `Bearer ${key.key}`, accept: 'text/event-stream' },
    });
    expect(again.status).toBe(401);
  });

  it('holds a team to its open streams (429), and frees a slot when a client goes', async () => {
    await vi.waitFor(() => expect(t.services.eventStream.open).toBe(0));
    const open = await Promise.all(Array.from({ length: STREAMS_PER_TEAM }, () => openStream(base, readKey)));
    const refused = await t.call('GET', '/v1/events', {
      token: readKey,
      headers: { accept: 'text/event-stream' },
    });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'event_streams' } });
    // Another team is not held to this one's streams.
    const theirs = await openStream(base, theirKey);
    expect(theirs.res.status).toBe(200);
    theirs.close();
    open[0]?.close();
    await vi.waitFor(() => expect(t.services.eventStream.open).toBe(STREAMS_PER_TEAM - 1));
    const again = await openStream(base, readKey);
    expect(again.res.status).toBe(200);
    for (const s of [...open, again]) s.close();
    await vi.waitFor(() => expect(t.services.eventStream.open).toBe(0));
  });
});

describe('event retention', () => {
  it('deletes events older than the retention in batches and keeps the rest', async () => {
    const retention = t.services.eventRetention;
    await record(u.team.id, 'skill.deleted', 'skl_old');
    t.clock.advance(20 * DAY_MS);
    await record(u.team.id, 'skill.deleted', 'skl_recent');
    t.clock.advance(11 * DAY_MS);
    expect(await retention.sweep()).toBeGreaterThan(0);
    const left = await t.database.db.select().from(events);
    expect(left.map((e) => e.subjectId)).toContain('skl_recent');
    expect(left.map((e) => e.subjectId)).not.toContain('skl_old');
    expect(left.every((e) => e.createdAt.getTime() >= t.clock.now().getTime() - 30 * DAY_MS)).toBe(true);
  });
});

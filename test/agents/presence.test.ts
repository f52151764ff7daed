import { and, eq, like } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLogs, events } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { expectError } from '../support/errors.ts';
import { createAgent, type Json } from '../support/factories.ts';

// External agents' presence: heartbeats, offline after three silent
// intervals (on the test's clock; the sweep on the server's own timers, run
// when the test advances them), agent.online / agent.offline once per
// change, and pause / resume of an agent's work-queue claims.

const SWEEP_SEC = 5;
let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
let n = 0;

beforeAll(async () => {
  t = await createTestApp({
    manualTimers: true,
    env: { PADDOCK_PRESENCE_SWEEP_INTERVAL_SEC: String(SWEEP_SEC) },
  });
  u = await t.signup({ name: 'Pia Owner' });
  other = await t.signup({ name: 'Oskar Other' });
});
afterAll(async () => {
  await t.close();
});

function call(method: string, url: string, options: CallOptions = {}) {
  return t.call(method, url, { token: u.token, ...options });
}

/** An agent that runs elsewhere, beating every `interval` seconds. */
function external(interval = 10, token = u.token) {
  return createAgent(t, token, { hosted: false, heartbeat_interval_sec: interval });
}

function beat(agent: Json, body: Json = { status: 'idle' }, token: string = agent.api_key) {
  return t.call('POST', `/v1/agents/${agent.id}/heartbeat`, { token, body });
}

async function presence(agent: Json): Promise<Json> {
  const res = await call('GET', `/v1/agents/${agent.id}`);
  expect(res.status).toBe(200);
  return res.body.presence;
}

/** The agent's agent.* events in the outbox, oldest first. */
async function outbox(agent: Json): Promise<Array<{ type: string; actorKind: string; data: Json }>> {
  const rows = await t.database.db
    .select()
    .from(events)
    .where(and(eq(events.subjectId, agent.id), like(events.type, 'agent.%')))
    .orderBy(events.id);
  return rows.map((r) => ({ type: r.type, actorKind: r.actorKind, data: r.data as Json }));
}
const typesOf = async (agent: Json) => (await outbox(agent)).map((e) => e.type);

/** Moves time on by `ms`, letting the server's sweeps run, until the agent's outbox holds `type` `count` times. */
async function sweepUntil(agent: Json, ms: number, type: string, count = 1): Promise<void> {
  await t.timers!.advance(ms);
  for (let i = 0; i < 100; i++) {
    if ((await typesOf(agent)).filter((x) => x === type).length >= count) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${type} for ${agent.id}`);
}

const queueName = () => `presence-q${++n}`;

describe('an agent that runs elsewhere', () => {
  it('is hosted: false with its interval; offline until it beats, while a hosted agent has no presence', async () => {
    const ext = await external(15);
    expect(ext).toMatchObject({
      hosted: false,
      heartbeat_interval_sec: 15,
      paused_at: null,
      presence: { status: 'offline', last_heartbeat_at: null, current_job: null },
    });
    const hosted = await createAgent(t, u.token);
    expect(hosted).toMatchObject({ hosted: true, heartbeat_interval_sec: 30, presence: { status: null } });

    const patched = await call('PATCH', `/v1/agents/${hosted.id}`, {
      body: { hosted: false, heartbeat_interval_sec: 60 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ hosted: false, heartbeat_interval_sec: 60 });
    expect((await outbox(hosted)).at(-1)).toMatchObject({
      type: 'agent.updated',
      data: { changed_fields: ['hosted', 'heartbeat_interval_sec'] },
    });
    // A fork runs where its source runs.
    const fork = await call('POST', `/v1/agents/${ext.id}/fork`, { body: {} });
    expect(fork.body).toMatchObject({ hosted: false, heartbeat_interval_sec: 15 });
  });

  it('reports its status and job by heartbeat: the answer and the agent view show it', async () => {
    const agent = await external();
    const res = await beat(agent, { status: 'working', current_job: 'qjob_01ABC' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const now = t.clock.now().toISOString();
    expect(res.body).toEqual({
      agent_id: agent.id,
      paused: false,
      heartbeat_interval_sec: 10,
      presence: { status: 'working', last_heartbeat_at: now, current_job: 'qjob_01ABC' },
    });
    expect(await presence(agent)).toEqual(res.body.presence);

    await t.timers!.advance(2000);
    const blocked = await beat(agent, { status: 'blocked', current_job: 'waiting for a reviewer' });
    expect(blocked.body.presence).toMatchObject({ status: 'blocked', current_job: 'waiting for a reviewer' });
    // No current_job: it has none now.
    const idle = await beat(agent, { status: 'idle' });
    expect(idle.body.presence).toMatchObject({ status: 'idle', current_job: null });
    expect(await presence(agent)).toMatchObject({
      status: 'idle',
      current_job: null,
      last_heartbeat_at: t.clock.now().toISOString(),
    });
  });

  it('beats with its own key, a queue key or a member; not with a read key, another agent’s key or another team', async () => {
    const agent = await external();
    const worker = await t.apiKey(u.token, ['queue'] as never);
    expect((await beat(agent, { status: 'idle' }, worker.key)).status).toBe(200);
    expect((await beat(agent, { status: 'working' }, u.token)).status).toBe(200);
    expect(await presence(agent)).toMatchObject({ status: 'working' });

    const reader = await t.apiKey(u.token, ['read']);
    expectError(await beat(agent, { status: 'idle' }, reader.key), 403, 'insufficient_scope');
    const sibling = await external();
    expectError(await beat(agent, { status: 'blocked' }, sibling.api_key), 404, 'not_found');
    expectError(await beat(agent, { status: 'blocked' }, other.token), 404, 'not_found');
    const foreign = await external(10, other.token);
    expectError(await beat(agent, { status: 'blocked' }, foreign.api_key), 404, 'not_found');
    // None of the refused heartbeats changed it.
    expect(await presence(agent)).toMatchObject({ status: 'working' });
    expect(await presence(sibling)).toMatchObject({ status: 'offline', last_heartbeat_at: null });
  });

  it('refuses bad input with 400 in the error shape', async () => {
    const agent = await external();
    for (const body of [
      { status: 'sleeping' },
      { status: 'offline' },
      { status: 'paused' },
      {},
      { status: 'idle', current_job: 'x'.repeat(201) },
      { status: 'idle', extra: true },
    ])
      expectError(await beat(agent, body), 400, 'validation_failed');
    expect((await beat(agent, { status: 'idle', current_job: 'x'.repeat(200) })).status).toBe(200);

    for (const interval of [4, 3601, 0, 10.5])
      expectError(
        await call('POST', '/v1/agents', {
          body: { name: `bad-${interval}`, policy_id: agent.policy_id, heartbeat_interval_sec: interval },
        }),
        400,
        'validation_failed',
      );
    expectError(
      await call('PATCH', `/v1/agents/${agent.id}`, { body: { heartbeat_interval_sec: 3601 } }),
      400,
      'validation_failed',
    );
    expectError(
      await call('PATCH', `/v1/agents/${agent.id}`, { body: { hosted: 'no' } }),
      400,
      'validation_failed',
    );
    expectError(
      await t.call('POST', '/v1/agents/agt_unknown/heartbeat', { token: u.token, body: { status: 'idle' } }),
      404,
      'not_found',
    );
  });
});

describe('offline and online', () => {
  it('is offline after 3 × its interval of silence, marked by the sweep with one agent.offline; the next heartbeat is one agent.online', async () => {
    const agent = await external(10);
    await beat(agent, { status: 'working', current_job: 'qjob_1' });
    // Its first heartbeat ever brought it online.
    expect(await outbox(agent)).toEqual([
      expect.objectContaining({ type: 'agent.created' }),
      { type: 'agent.online', actorKind: 'system', data: expect.objectContaining({ offline_since: null }) },
    ]);
    const beatAt = t.clock.now().toISOString();

    // Computed on read from the clock: just under 30 s it is still working.
    await t.timers!.advance(29_999);
    expect(await presence(agent)).toMatchObject({ status: 'working' });
    await t.timers!.advance(1);
    expect(await presence(agent)).toEqual({
      status: 'offline',
      last_heartbeat_at: beatAt,
      current_job: 'qjob_1',
    });
    const listed = await call('GET', '/v1/agents?presence=offline&limit=200');
    expect(listed.body.data.map((a: Json) => a.id)).toContain(agent.id);
    expect(
      (await call('GET', '/v1/agents?presence=online&limit=200')).body.data.map((a: Json) => a.id),
    ).not.toContain(agent.id);

    // The sweep (every PADDOCK_PRESENCE_SWEEP_INTERVAL_SEC on the server's timers) marks it once.
    await sweepUntil(agent, SWEEP_SEC * 1000, 'agent.offline');
    await t.timers!.advance(5 * SWEEP_SEC * 1000);
    expect(await t.services.agentPresence.sweep()).toBe(0);
    const offline = (await outbox(agent)).filter((e) => e.type === 'agent.offline');
    expect(offline).toEqual([
      {
        type: 'agent.offline',
        actorKind: 'system',
        data: { name: agent.name, last_heartbeat_at: beatAt, heartbeat_interval_sec: 10 },
      },
    ]);

    // Back: one agent.online, naming when it was found gone; more heartbeats add nothing.
    const back = await beat(agent, { status: 'idle' });
    expect(back.body.presence).toMatchObject({ status: 'idle' });
    await beat(agent, { status: 'working' });
    await beat(agent, { status: 'idle' });
    const types = await typesOf(agent);
    expect(types).toEqual(['agent.created', 'agent.online', 'agent.offline', 'agent.online']);
    expect((await outbox(agent)).at(-1)!.data).toMatchObject({
      status: 'idle',
      offline_since: expect.any(String),
    });
    // The activity feed says it in words, as Paddock's doing.
    const feed = await call('GET', '/v1/activity', { query: { resource_id: agent.id } });
    expect(feed.body.data.map((a: Json) => [a.actor_type, a.summary])).toEqual(
      expect.arrayContaining([
        ['system', `Agent “${agent.name}” went offline (no heartbeat since ${beatAt})`],
        ['system', `Agent “${agent.name}” came online (idle)`],
      ]),
    );
    expect(
      (await call('GET', '/v1/agents?presence=idle&limit=200')).body.data.map((a: Json) => a.id),
    ).toContain(agent.id);
  });

  it('an agent that beats within its interval is never marked; heartbeats are neither audited nor events', async () => {
    const agent = await external(5);
    await beat(agent);
    const before = await typesOf(agent);
    for (let i = 0; i < 6; i++) {
      await t.timers!.advance(10_000);
      expect((await beat(agent, { status: i % 2 ? 'idle' : 'working' })).status).toBe(200);
    }
    await t.services.agentPresence.sweep();
    expect(await typesOf(agent)).toEqual(before);
    const audit = await t.database.db.select().from(auditLogs).where(eq(auditLogs.teamId, u.team.id));
    expect(
      audit.filter((a) => a.route?.includes('/heartbeat') || a.resourceId === agent.id).map((a) => a.action),
    ).toEqual(['agent.created']);
  });
});

describe('pause and resume', () => {
  it("a paused agent's claims get nothing at once and its heartbeats say paused; resumed, it gets the job", async () => {
    const agent = await external();
    const queue = queueName();
    const job = await call('POST', `/v1/queues/${queue}/jobs`, { body: { type: 'build' } });
    expect(job.status).toBe(201);

    const paused = await call('POST', `/v1/agents/${agent.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({
      id: agent.id,
      paused_at: t.clock.now().toISOString(),
      presence: { status: 'paused' },
    });
    // A long poll would wait on the server's timers, which only the test moves: this answers at once.
    const claimed = await t.call('POST', `/v1/queues/${queue}/claim`, {
      token: agent.api_key,
      body: { worker_id: 'laptop', wait_sec: 30 },
    });
    expect(claimed.status).toBe(200);
    expect(claimed.body).toEqual({ data: [] });
    const hb = await beat(agent, { status: 'idle' });
    expect(hb.body).toMatchObject({ paused: true, presence: { status: 'paused' } });
    expect((await call('GET', `/v1/queues/${queue}/jobs/${job.body.id}`)).body.status).toBe('queued');
    expect(
      (await call('GET', '/v1/agents?presence=paused&limit=200')).body.data.map((a: Json) => a.id),
    ).toContain(agent.id);
    // Pausing again changes nothing.
    expect((await call('POST', `/v1/agents/${agent.id}/pause`)).body.paused_at).toBe(paused.body.paused_at);

    await t.timers!.advance(90_000);
    const resumed = await call('POST', `/v1/agents/${agent.id}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ paused_at: null });
    const after = await t.call('POST', `/v1/queues/${queue}/claim`, {
      token: agent.api_key,
      body: { worker_id: 'laptop' },
    });
    expect(after.body.data.map((j: Json) => j.id)).toEqual([job.body.id]);

    const changes = (await outbox(agent)).filter(
      (e) => e.type === 'agent.paused' || e.type === 'agent.resumed',
    );
    expect(changes).toEqual([
      { type: 'agent.paused', actorKind: 'user', data: { name: agent.name } },
      { type: 'agent.resumed', actorKind: 'user', data: { name: agent.name, paused_sec: 90 } },
    ]);
    // Audited like other admin actions.
    const audit = await t.database.db.select().from(auditLogs).where(eq(auditLogs.resourceId, agent.id));
    expect(audit.map((a) => a.action)).toEqual(expect.arrayContaining(['agent.paused', 'agent.resumed']));
  });

  it('only people and keys that write pause; another team’s agent is a 404', async () => {
    const agent = await external();
    expectError(
      await t.call('POST', `/v1/agents/${agent.id}/pause`, { token: agent.api_key }),
      403,
      'agent_key_not_allowed',
    );
    const reader = await t.apiKey(u.token, ['read']);
    expectError(
      await t.call('POST', `/v1/agents/${agent.id}/pause`, { token: reader.key }),
      403,
      'insufficient_scope',
    );
    expectError(
      await t.call('POST', `/v1/agents/${agent.id}/pause`, { token: other.token }),
      404,
      'not_found',
    );
    expectError(await call('POST', '/v1/agents/agt_nope/resume'), 404, 'not_found');
    expect((await presence(agent)).status).toBe('offline');
  });
});

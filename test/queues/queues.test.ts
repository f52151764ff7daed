import { and, eq, like } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLogs, events } from '../../src/db/schema/index.ts';
import { type CallOptions, createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { expectError } from '../support/errors.ts';
import { createAgent, type Json } from '../support/factories.ts';

// /v1/queues: a team's work queues as workers elsewhere see them. Claims
// are leases on the test's clock; the sweep runs on the server's own timers,
// which the test advances.

let t: TestApp;
let u: SignedUpUser;
let other: SignedUpUser;
let n = 0;

beforeAll(async () => {
  t = await createTestApp({ manualTimers: true });
  u = await t.signup({ name: 'Quinn Owner' });
  other = await t.signup({ name: 'Otto Other' });
});
afterAll(async () => {
  await t.close();
});

/** A queue name of its own per test. */
const fresh = () => `q${++n}-${Date.now().toString(36)}`;

function call(method: string, url: string, options: CallOptions = {}) {
  return t.call(method, url, { token: u.token, ...options });
}

async function submit(queue: string, body: Json = {}, token = u.token): Promise<Json> {
  const res = await t.call('POST', `/v1/queues/${queue}/jobs`, { token, body: { type: 'work', ...body } });
  if (res.status !== 201) throw new Error(`submit failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function claim(queue: string, body: Json = {}, token = u.token): Promise<Json[]> {
  const res = await t.call('POST', `/v1/queues/${queue}/claim`, {
    token,
    body: { worker_id: 'w1', ...body },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data;
}

/** Moves time on past a lease and lets the server's sweep (every 10 s, on its timers) run. */
async function sweepPast(ms: number, queue: string, id: string, until: string): Promise<Json> {
  await t.timers!.advance(ms + 10_000);
  for (let i = 0; i < 100; i++) {
    const job = (await call('GET', `/v1/queues/${queue}/jobs/${id}`)).body;
    if (job.status === until) return job;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`job ${id} did not become ${until}`);
}

async function outbox(subjectId: string): Promise<string[]> {
  const rows = await t.database.db
    .select()
    .from(events)
    .where(and(eq(events.subjectId, subjectId), like(events.type, 'queue_job.%')))
    .orderBy(events.id);
  return rows.map((r) => r.type);
}

describe('submitting', () => {
  it('makes a queued job with defaults; the same idempotency key in the queue answers it again (200)', async () => {
    const queue = fresh();
    const res = await call('POST', `/v1/queues/${queue}/jobs`, {
      body: { type: 'email.send', payload: { to: 'a@example.com' }, idempotency_key: 'order-1' },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      queue,
      type: 'email.send',
      payload: { to: 'a@example.com' },
      priority: 0,
      status: 'queued',
      attempts: 0,
      max_attempts: 3,
      timeout_sec: 300,
      team_id: u.team.id,
      idempotency_key: 'order-1',
      worker_id: null,
      result: null,
    });
    expect(res.body.id).toMatch(/^qjob_/);

    const again = await call('POST', `/v1/queues/${queue}/jobs`, {
      body: { type: 'email.send', payload: { to: 'someone-else@example.com' }, idempotency_key: 'order-1' },
    });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(res.body);
    // Another queue is another scope for the key.
    const elsewhere = await call('POST', `/v1/queues/${fresh()}/jobs`, {
      body: { type: 'email.send', idempotency_key: 'order-1' },
    });
    expect(elsewhere.status).toBe(201);
    expect(elsewhere.body.id).not.toBe(res.body.id);

    const listed = await call('GET', `/v1/queues/${queue}/jobs`);
    expect(listed.body.data.map((j: Json) => j.id)).toEqual([res.body.id]);
    expect(await outbox(res.body.id)).toEqual(['queue_job.submitted']);
  });

  it('hands out higher priority first, then first in first out, each job to one claim', async () => {
    const queue = fresh();
    const a = await submit(queue, { priority: 0 });
    t.clock.advance(1);
    const b = await submit(queue, { priority: 5 });
    t.clock.advance(1);
    const c = await submit(queue, { priority: 0 });
    t.clock.advance(1);
    const d = await submit(queue, { priority: 5 });
    t.clock.advance(1);
    const e = await submit(queue, { priority: -3 });

    const first = await claim(queue, { batch_size: 2 });
    expect(first.map((j) => j.id)).toEqual([b.id, d.id]);
    for (const j of first) {
      expect(j).toMatchObject({ status: 'active', attempts: 1, worker_id: 'w1' });
      expect(Date.parse(j.lease_expires_at) - t.clock.now().getTime()).toBe(300_000);
    }
    const rest = await claim(queue, { batch_size: 10, worker_id: 'w2' });
    expect(rest.map((j) => j.id)).toEqual([a.id, c.id, e.id]);
    expect(await claim(queue, { batch_size: 10 })).toEqual([]);
  });

  it('claims only the types asked for, and a job not yet due only once its run_at passed', async () => {
    const queue = fresh();
    const later = await submit(queue, {
      type: 'report',
      run_at: new Date(t.clock.now().getTime() + 60_000).toISOString(),
    });
    const mail = await submit(queue, { type: 'mail' });
    expect(await claim(queue, { types: ['report'] })).toEqual([]);
    expect((await claim(queue, { types: ['mail', 'report'] })).map((j) => j.id)).toEqual([mail.id]);
    t.clock.advance(60_000);
    expect((await claim(queue, { types: ['report'] })).map((j) => j.id)).toEqual([later.id]);
  });
});

describe('leases', () => {
  it('puts a job whose worker went silent back, and fails it after max_attempts', async () => {
    const queue = fresh();
    const job = await submit(queue, { max_attempts: 2, timeout_sec: 30 });
    expect((await claim(queue, { worker_id: 'crashed' })).map((j) => j.id)).toEqual([job.id]);

    const back = await sweepPast(30_000, queue, job.id, 'queued');
    expect(back).toMatchObject({ status: 'queued', attempts: 1, lease_expires_at: null });
    expect(back.error).toContain('lease expired');
    // The silent worker wakes up too late: the job is no longer its own.
    expectError(
      await call('POST', `/v1/queues/${queue}/jobs/${job.id}/complete`, { body: { worker_id: 'crashed' } }),
      409,
      'not_lease_holder',
    );

    expect((await claim(queue, { worker_id: 'second' })).map((j) => j.id)).toEqual([job.id]);
    const failed = await sweepPast(30_000, queue, job.id, 'failed');
    expect(failed).toMatchObject({ status: 'failed', attempts: 2 });
    expect(failed.ended_at).not.toBeNull();
    expect(await claim(queue)).toEqual([]);
    expect(await outbox(job.id)).toEqual(['queue_job.submitted', 'queue_job.retried', 'queue_job.failed']);
  });

  it('a heartbeat extends the lease of the worker holding the job, and is refused to anyone else', async () => {
    const queue = fresh();
    const job = await submit(queue, { timeout_sec: 30 });
    await claim(queue, { worker_id: 'alive' });
    await t.timers!.advance(20_000);
    const beat = await call('POST', `/v1/queues/${queue}/jobs/${job.id}/heartbeat`, {
      body: { worker_id: 'alive' },
    });
    expect(beat.status).toBe(200);
    expect(Date.parse(beat.body.lease_expires_at)).toBe(t.clock.now().getTime() + 30_000);
    const longer = await call('POST', `/v1/queues/${queue}/jobs/${job.id}/heartbeat`, {
      body: { worker_id: 'alive', extend_sec: 120 },
    });
    expect(Date.parse(longer.body.lease_expires_at)).toBe(t.clock.now().getTime() + 120_000);
    await t.timers!.advance(100_000);
    expect((await call('GET', `/v1/queues/${queue}/jobs/${job.id}`)).body.status).toBe('active');

    expectError(
      await call('POST', `/v1/queues/${queue}/jobs/${job.id}/heartbeat`, { body: { worker_id: 'impostor' } }),
      409,
      'not_lease_holder',
    );
    const done = await call('POST', `/v1/queues/${queue}/jobs/${job.id}/complete`, {
      body: { worker_id: 'alive', result: { sent: 3 } },
    });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ status: 'completed', result: { sent: 3 }, lease_expires_at: null });
    expectError(
      await call('POST', `/v1/queues/${queue}/jobs/${job.id}/heartbeat`, { body: { worker_id: 'alive' } }),
      409,
      'not_lease_holder',
    );
    expect(await outbox(job.id)).toEqual(['queue_job.submitted', 'queue_job.completed']);
    // The worker's polling is not audited; its completion is, with its event.
    const audit = await t.database.db.select().from(auditLogs).where(eq(auditLogs.teamId, u.team.id));
    expect(audit.filter((a) => a.route?.includes('/claim') || a.route?.includes('/heartbeat'))).toEqual([]);
    expect(audit.filter((a) => a.resourceId === job.id).map((a) => a.action)).toEqual([
      'queue_job.submitted',
      'queue_job.completed',
    ]);
  });

  it('a reported failure is retried after a backoff while attempts remain; retry: false fails it at once', async () => {
    const queue = fresh();
    const job = await submit(queue, { max_attempts: 3 });
    await claim(queue);
    const failed = await call('POST', `/v1/queues/${queue}/jobs/${job.id}/fail`, {
      body: { worker_id: 'w1', error: 'upstream 503' },
    });
    expect(failed.status).toBe(200);
    expect(failed.body).toMatchObject({ status: 'queued', attempts: 1, error: 'upstream 503' });
    expect(Date.parse(failed.body.run_at)).toBe(t.clock.now().getTime() + 1000);
    expect(await claim(queue)).toEqual([]);
    t.clock.advance(1000);
    expect((await claim(queue)).map((j) => j.id)).toEqual([job.id]);
    const final = await call('POST', `/v1/queues/${queue}/jobs/${job.id}/fail`, {
      body: { worker_id: 'w1', error: 'bad input', retry: false },
    });
    expect(final.body).toMatchObject({ status: 'failed', attempts: 2, error: 'bad input' });
    expect(await outbox(job.id)).toEqual(['queue_job.submitted', 'queue_job.retried', 'queue_job.failed']);
  });

  it("completes many of a worker's jobs in one call, rejecting those it does not hold", async () => {
    const queue = fresh();
    const jobs = [await submit(queue), await submit(queue), await submit(queue)];
    await claim(queue, { batch_size: 2, worker_id: 'mine' });
    const theirs = (await claim(queue, { worker_id: 'theirs' }))[0]!;
    const res = await call('POST', `/v1/queues/${queue}/complete`, {
      body: {
        worker_id: 'mine',
        jobs: [
          { id: jobs[0]!.id, result: 1 },
          { id: jobs[1]!.id, result: 'two' },
          { id: theirs.id },
          { id: 'qjob_00000000000000000000000000' },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.completed).toEqual([jobs[0]!.id, jobs[1]!.id]);
    expect(res.body.rejected).toEqual([
      { id: theirs.id, code: 'not_lease_holder' },
      { id: 'qjob_00000000000000000000000000', code: 'not_found' },
    ]);
    expect((await call('GET', `/v1/queues/${queue}/jobs/${jobs[1]!.id}`)).body.result).toBe('two');
    expect((await call('GET', `/v1/queues/${queue}/jobs/${theirs.id}`)).body.status).toBe('active');
  });
});

describe('cancelling', () => {
  it('cancels a queued or active job, and answers 409 once a job has ended', async () => {
    const queue = fresh();
    const waiting = await submit(queue);
    const cancelled = await call('POST', `/v1/queues/${queue}/jobs/${waiting.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ status: 'cancelled' });
    expectError(await call('POST', `/v1/queues/${queue}/jobs/${waiting.id}/cancel`), 409, 'job_ended');

    const running = await submit(queue);
    await claim(queue);
    expect((await call('POST', `/v1/queues/${queue}/jobs/${running.id}/cancel`)).status).toBe(200);
    // Its worker learns at its next call.
    expectError(
      await call('POST', `/v1/queues/${queue}/jobs/${running.id}/complete`, { body: { worker_id: 'w1' } }),
      409,
      'not_lease_holder',
    );

    const finished = await submit(queue);
    await claim(queue);
    await call('POST', `/v1/queues/${queue}/jobs/${finished.id}/complete`, { body: { worker_id: 'w1' } });
    expectError(await call('POST', `/v1/queues/${queue}/jobs/${finished.id}/cancel`), 409, 'job_ended');
    expect(await outbox(running.id)).toEqual(['queue_job.submitted', 'queue_job.cancelled']);
  });
});

describe('waiting for work', () => {
  it('a claim with wait_sec is answered as soon as a job is submitted, or empty when the wait is up', async () => {
    const queue = fresh();
    const waiting = claim(queue, { wait_sec: 10, worker_id: 'patient' });
    await new Promise((r) => setTimeout(r, 50));
    const job = await submit(queue);
    expect((await waiting).map((j) => j.id)).toEqual([job.id]);

    const empty = claim(queue, { wait_sec: 5 });
    await new Promise((r) => setTimeout(r, 50));
    await t.timers!.advance(5000);
    expect(await empty).toEqual([]);
  });
});

describe('stats', () => {
  it('counts depth, the oldest waiting job, throughput and failures; lists the team’s queues', async () => {
    const queue = fresh();
    const jobs = [];
    for (let i = 0; i < 4; i++) jobs.push(await submit(queue));
    await submit(queue, { run_at: new Date(t.clock.now().getTime() + 3_600_000).toISOString() });
    t.clock.advance(30_000);
    const taken = await claim(queue, { batch_size: 2 });
    await call('POST', `/v1/queues/${queue}/complete`, {
      body: { worker_id: 'w1', jobs: [{ id: taken[0]!.id }] },
    });
    await call('POST', `/v1/queues/${queue}/jobs/${taken[1]!.id}/fail`, {
      body: { worker_id: 'w1', error: 'no', retry: false },
    });
    const stats = await call('GET', `/v1/queues/${queue}/stats`);
    expect(stats.status).toBe(200);
    expect(stats.body).toEqual({
      name: queue,
      queued: 3,
      active: 0,
      completed: 1,
      failed: 1,
      cancelled: 0,
      depth: 2,
      scheduled: 1,
      oldest_waiting_sec: 30,
      completed_last_hour: 1,
      failed_last_hour: 1,
      throughput_per_min: 0.02,
    });
    const queues = await call('GET', '/v1/queues', { query: { limit: '200' } });
    expect(queues.body.data).toContainEqual({
      name: queue,
      queued: 3,
      active: 0,
      completed: 1,
      failed: 1,
      cancelled: 0,
    });
    const page = await call('GET', '/v1/queues', { query: { limit: '1' } });
    expect(page.body.data).toHaveLength(1);
    const next = await call('GET', '/v1/queues', { query: { limit: '1', cursor: page.body.next_cursor } });
    expect(next.body.data[0].name > page.body.data[0].name).toBe(true);
    // Another team sees none of it.
    const theirs = await t.call('GET', '/v1/queues', { token: other.token });
    expect(theirs.body.data).toEqual([]);
  });
});

describe('refusals', () => {
  it('refuses bad input with a 4xx in the error shape', async () => {
    const queue = fresh();
    const job = await submit(queue);
    const bad: Array<[string, string, unknown]> = [
      ['POST', `/v1/queues/${queue}/jobs`, {}],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', priority: 1001 }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', max_attempts: 0 }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', timeout_sec: 0 }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', payload: [1, 2] }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', run_at: 'tomorrow' }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', surprise: true }],
      ['POST', `/v1/queues/${queue}/jobs`, { type: 'x', payload: { big: 'x'.repeat(300 * 1024) } }],
      ['POST', `/v1/queues/${queue}/claim`, {}],
      ['POST', `/v1/queues/${queue}/claim`, { worker_id: 'w', batch_size: 0 }],
      ['POST', `/v1/queues/${queue}/claim`, { worker_id: 'w', batch_size: 101 }],
      ['POST', `/v1/queues/${queue}/claim`, { worker_id: 'w', wait_sec: 31 }],
      ['POST', `/v1/queues/${queue}/claim`, { worker_id: 'w', types: [] }],
      ['POST', '/v1/queues/bad%20name!/claim', { worker_id: 'w' }],
      ['POST', `/v1/queues/${queue}/jobs/${job.id}/fail`, { worker_id: 'w' }],
      ['POST', `/v1/queues/${queue}/complete`, { worker_id: 'w', jobs: [] }],
      ['POST', `/v1/queues/${queue}/complete`, { worker_id: 'w', jobs: [{ id: job.id }, { id: job.id }] }],
    ];
    for (const [method, url, body] of bad) {
      const res = await call(method, url, { body });
      expect(res.status, `${url} ${JSON.stringify(body)}`).toBe(400);
      expect(Object.keys(res.body)).toEqual(['error']);
    }
    expect((await call('GET', `/v1/queues/${queue}/jobs`, { query: { status: 'done' } })).status).toBe(400);
    expectError(await call('GET', `/v1/queues/${queue}/jobs/not-a-job`), 404, 'not_found');
    expectError(await call('GET', `/v1/queues/${fresh()}/jobs/${job.id}`), 404, 'not_found');
    expect((await call('GET', `/v1/queues/${queue}/jobs`)).body.data).toHaveLength(1);
  });

  it("never reaches another team's jobs: 404 as for an unknown id, and its claims see only its own queue", async () => {
    const queue = fresh();
    const job = await submit(queue);
    const as = { token: other.token };
    const unknown = 'qjob_00000000000000000000000000';
    for (const id of [job.id, unknown]) {
      expectError(await t.call('GET', `/v1/queues/${queue}/jobs/${id}`, as), 404, 'not_found');
      expectError(await t.call('POST', `/v1/queues/${queue}/jobs/${id}/cancel`, as), 404, 'not_found');
      for (const action of ['heartbeat', 'complete'])
        expectError(
          await t.call('POST', `/v1/queues/${queue}/jobs/${id}/${action}`, {
            ...as,
            body: { worker_id: 'w1' },
          }),
          404,
          'not_found',
        );
      expectError(
        await t.call('POST', `/v1/queues/${queue}/jobs/${id}/fail`, {
          ...as,
          body: { worker_id: 'w1', error: 'e' },
        }),
        404,
        'not_found',
      );
    }
    expect(await claim(queue, {}, other.token)).toEqual([]);
    const batch = await t.call('POST', `/v1/queues/${queue}/complete`, {
      ...as,
      body: { worker_id: 'w1', jobs: [{ id: job.id }] },
    });
    expect(batch.body).toEqual({ completed: [], rejected: [{ id: job.id, code: 'not_found' }] });
    expect((await t.call('GET', `/v1/queues/${queue}/jobs`, as)).body.data).toEqual([]);
    expect((await t.call('GET', `/v1/queues/${queue}/stats`, as)).body.queued).toBe(0);
    // Still there, untouched, for its own team.
    expect((await claim(queue)).map((j) => j.id)).toEqual([job.id]);
  });

  it('a queue-scope key does only the worker calls; a read key cannot claim; agent keys work and submit', async () => {
    const queue = fresh();
    const worker = await t.apiKey(u.token, ['queue'] as never);
    const reader = await t.apiKey(u.token, ['read']);
    const readWorker = await t.apiKey(u.token, ['read', 'queue'] as never);
    const keys = (await call('GET', '/v1/api-keys')).body.data;
    expect(keys.find((k: Json) => k.id === worker.id).scopes).toEqual(['queue']);

    const job = await submit(queue);
    const claimed = await claim(queue, { worker_id: 'key-worker' }, worker.key);
    expect(claimed.map((j) => j.id)).toEqual([job.id]);
    const as = { token: worker.key };
    expect(
      (
        await t.call('POST', `/v1/queues/${queue}/jobs/${job.id}/heartbeat`, {
          ...as,
          body: { worker_id: 'key-worker' },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await t.call('POST', `/v1/queues/${queue}/jobs/${job.id}/complete`, {
          ...as,
          body: { worker_id: 'key-worker', result: { ok: true } },
        })
      ).status,
    ).toBe(200);
    expectError(
      await t.call('POST', `/v1/queues/${queue}/jobs`, { ...as, body: { type: 'x' } }),
      403,
      'insufficient_scope',
    );
    for (const url of [
      `/v1/queues/${queue}/jobs`,
      `/v1/queues/${queue}/jobs/${job.id}`,
      `/v1/queues/${queue}/stats`,
      '/v1/queues',
      '/v1/agents',
    ])
      expectError(await t.call('GET', url, as), 403, 'insufficient_scope');
    expectError(
      await t.call('POST', `/v1/queues/${queue}/jobs/${job.id}/cancel`, as),
      403,
      'insufficient_scope',
    );
    expectError(
      await t.call('POST', '/v1/api-keys', { ...as, body: { name: 'escalate', scopes: ['admin'] } }),
      403,
      'insufficient_scope',
    );

    // A read key reads but does not work; read + queue does both.
    expectError(
      await t.call('POST', `/v1/queues/${queue}/claim`, { token: reader.key, body: { worker_id: 'r' } }),
      403,
      'insufficient_scope',
    );
    expect((await t.call('GET', `/v1/queues/${queue}/jobs`, { token: reader.key })).status).toBe(200);
    expect((await t.call('GET', `/v1/queues/${queue}/jobs`, { token: readWorker.key })).status).toBe(200);
    expect(await claim(queue, {}, readWorker.key)).toEqual([]);

    // An agent key submits and works, and reads its jobs, but does not manage the queue.
    const agent = await createAgent(t, u.token);
    const agentJob = await submit(queue, { type: 'agent.work' }, agent.api_key);
    expect((await claim(queue, { worker_id: 'agent-1' }, agent.api_key)).map((j) => j.id)).toEqual([
      agentJob.id,
    ]);
    expect(
      (await t.call('GET', `/v1/queues/${queue}/jobs/${agentJob.id}`, { token: agent.api_key })).status,
    ).toBe(200);
    expectError(
      await t.call('GET', `/v1/queues/${queue}/jobs`, { token: agent.api_key }),
      403,
      'agent_key_not_allowed',
    );
    expectError(
      await t.call('POST', `/v1/queues/${queue}/jobs/${agentJob.id}/cancel`, { token: agent.api_key }),
      403,
      'agent_key_not_allowed',
    );
  });
});

import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueJobs } from '../../src/db/schema/index.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';

// Workers as they run elsewhere: separate clients over real HTTP, claiming
// from one queue at once. No job may reach two workers, every job must end,
// and a worker that dies holding jobs leaves them for the others.

const JOBS = 2000;
const WORKERS = 8;

let t: TestApp;
let u: SignedUpUser;
let base: string;
let key: string;

beforeAll(async () => {
  // The sweep on real timers, each second, against the test's clock.
  t = await createTestApp({ env: { PADDOCK_QUEUE_SWEEP_INTERVAL_SEC: '1' } });
  u = await t.signup({ name: 'Wendy Worker' });
  key = (await t.apiKey(u.token, ['queue'] as never)).key;
  base = await t.app.listen({ host: '127.0.0.1', port: 0 });
}, 60_000);
afterAll(async () => {
  await t.close();
});

async function post(path: string, body: unknown, token = key): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

async function submitAll(queue: string, count: number, body: Json = {}): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const i = next++;
        const res = await post(
          `/v1/queues/${queue}/jobs`,
          { type: 'work', payload: { i }, ...body },
          u.token,
        );
        if (res.status !== 201) throw new Error(`submit ${i}: ${res.status} ${JSON.stringify(res.body)}`);
        ids[i] = res.body.id;
      }
    }),
  );
  return ids;
}

describe('concurrent workers', { timeout: 300_000 }, () => {
  it(`${WORKERS} workers drain ${JOBS} jobs with no job claimed twice`, async () => {
    const queue = 'drain';
    const ids = await submitAll(queue, JOBS);
    const claimedBy = new Map<string, string>();
    const doubles: string[] = [];
    const worker = async (name: string) => {
      let done = 0;
      for (;;) {
        const claim = await post(`/v1/queues/${queue}/claim`, { worker_id: name, batch_size: 10 });
        expect(claim.status).toBe(200);
        const jobs: Json[] = claim.body.data;
        if (jobs.length === 0) return done;
        for (const job of jobs) {
          if (claimedBy.has(job.id)) doubles.push(job.id);
          claimedBy.set(job.id, name);
          expect(job).toMatchObject({ status: 'active', worker_id: name, attempts: 1 });
        }
        const completed = await post(`/v1/queues/${queue}/complete`, {
          worker_id: name,
          jobs: jobs.map((j) => ({ id: j.id, result: { by: name, i: j.payload.i } })),
        });
        expect(completed.body.rejected).toEqual([]);
        done += completed.body.completed.length;
      }
    };
    const counts = await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(`worker-${i}`)));

    expect(doubles).toEqual([]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(JOBS);
    expect(new Set(claimedBy.keys())).toEqual(new Set(ids));
    // The work was shared, not done by one.
    expect(counts.filter((c) => c > 0).length).toBeGreaterThan(1);
    const rows = await t.database.db
      .select()
      .from(queueJobs)
      .where(and(eq(queueJobs.teamId, u.team.id), eq(queueJobs.queue, queue)));
    expect(rows).toHaveLength(JOBS);
    for (const row of rows) {
      expect(row.status).toBe('completed');
      expect(row.attempts).toBe(1);
      expect(row.result).toEqual({ by: claimedBy.get(row.id), i: (row.payload as { i: number }).i });
    }
    const stats = await t.call('GET', `/v1/queues/${queue}/stats`, { token: u.token });
    expect(stats.body).toMatchObject({ queued: 0, active: 0, completed: JOBS, completed_last_hour: JOBS });
  });

  it('a worker killed mid-job leaves its jobs to be claimed again, and failed after max_attempts', async () => {
    const queue = 'killed';
    const [job] = await submitAll(queue, 1, { max_attempts: 2, timeout_sec: 30 });
    const victim = await post(`/v1/queues/${queue}/claim`, { worker_id: 'victim' });
    expect(victim.body.data.map((j: Json) => j.id)).toEqual([job]);
    // The victim is gone: no heartbeat, no completion. Nothing is claimable until its lease ends.
    expect((await post(`/v1/queues/${queue}/claim`, { worker_id: 'rescuer' })).body.data).toEqual([]);

    t.clock.advance(31_000);
    // A long poll: the sweep (each second) puts the job back and wakes the waiting claim.
    const rescued = await post(`/v1/queues/${queue}/claim`, { worker_id: 'rescuer', wait_sec: 10 });
    expect(rescued.body.data).toHaveLength(1);
    expect(rescued.body.data[0]).toMatchObject({ id: job, worker_id: 'rescuer', attempts: 2 });
    expect(rescued.body.data[0].error).toContain('victim');

    // The rescuer dies too: out of attempts, the job fails.
    t.clock.advance(31_000);
    let status = '';
    for (let i = 0; i < 100 && status !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await t.call('GET', `/v1/queues/${queue}/jobs/${job}`, { token: u.token })).body.status;
    }
    expect(status).toBe('failed');
    const late = await post(`/v1/queues/${queue}/jobs/${job}/complete`, { worker_id: 'rescuer' });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('not_lease_holder');
  });
});

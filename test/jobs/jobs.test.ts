import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog, systemTimers } from '../../src/core/context.ts';
import type { Database } from '../../src/db/client.ts';
import { sqlClient } from '../../src/db/client.ts';
import { PostgresJobWake } from '../../src/db/job-wake.ts';
import { Jobs, JobsStopping } from '../../src/jobs/jobs.ts';
import { freshDatabase } from '../support/db.ts';

let database: Database;
const running: Jobs[] = [];

beforeAll(async () => {
  database = await freshDatabase();
});
afterAll(async () => {
  for (const jobs of running) await jobs.stop(false);
  await database.close();
});

/** A Jobs on the test database; the supervisor looks for lost jobs every second. */
function jobsOnDatabase(client = sqlClient(database.db)): Jobs {
  const jobs = new Jobs(client, silentLog, {
    pollingIntervalSec: 0.5,
    maintenanceIntervalSec: 1,
  });
  running.push(jobs);
  return jobs;
}

/** Resolves when `check` holds, looking every 20 ms, or fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('background jobs (pg-boss in the application database)', () => {
  it('hands a sent job to this server’s worker with its data', async () => {
    const jobs = jobsOnDatabase();
    const seen: unknown[] = [];
    await jobs.work<{ n: number }>(
      'test-hand',
      { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 },
      async (job) => {
        seen.push(job.data);
      },
    );
    const id = await jobs.send('test-hand', { n: 1 });
    expect(id).toEqual(expect.any(String));
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ n: 1 }]);
    await until(async () => (await jobs.state('test-hand', id!)) === 'completed');
  });

  it('retries a job whose handler fails, up to the limit, then records it failed', async () => {
    const jobs = jobsOnDatabase();
    const attempts: number[] = [];
    await jobs.work('test-retry', { retryLimit: 2, retryDelaySec: 0, expireInSec: 60 }, async (job) => {
      attempts.push(job.retryCount);
      throw new Error('the handler failed');
    });
    const id = await jobs.send('test-retry', {});
    await until(async () => (await jobs.state('test-retry', id!)) === 'failed');
    expect(attempts).toEqual([0, 1, 2]);
  });

  it('gives the job of a worker that died to another worker once the job expires', async () => {
    const first = jobsOnDatabase();
    let heldBy = '';
    await first.work('test-lost', { retryLimit: 1, retryDelaySec: 0, expireInSec: 1 }, async () => {
      heldBy = 'first';
      await new Promise(() => {});
    });
    const id = await first.send('test-lost', { task: 'x' });
    await until(() => heldBy === 'first');
    // The first server goes away with the job in hand, as a process killed mid-job does.
    await first.stop(false);
    const second = jobsOnDatabase();
    const done: Array<{ id: string; retryCount: number }> = [];
    await second.work('test-lost', { retryLimit: 1, retryDelaySec: 0, expireInSec: 1 }, async (job) => {
      done.push({ id: job.id, retryCount: job.retryCount });
    });
    await until(() => done.length === 1, 30_000);
    expect(done).toEqual([{ id, retryCount: 1 }]);
  }, 40_000);

  it('aborts a handler’s signal when its job runs out of time', async () => {
    const jobs = jobsOnDatabase();
    const reasons: string[] = [];
    await jobs.work('test-time', { retryLimit: 0, retryDelaySec: 0, expireInSec: 1 }, async (job) => {
      await new Promise<void>((resolve) =>
        job.signal.addEventListener('abort', () => {
          reasons.push(String((job.signal.reason as Error).message));
          resolve();
        }),
      );
    });
    const id = await jobs.send('test-time', {});
    await until(() => reasons.length === 1);
    expect(reasons[0]).toBe(`job ${id} of test-time ran past its 1 s`);
  });

  it('keeps a job sent while no worker runs, for the worker that starts later', async () => {
    const sender = jobsOnDatabase();
    await sender.work('test-later', { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 }, async () => {
      throw new Error('not this one');
    });
    await sender.stop();
    const sender2 = jobsOnDatabase();
    await sender2.declare('test-later', { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 });
    const id = await sender2.send('test-later', { kept: true });
    const worker = jobsOnDatabase();
    const seen: unknown[] = [];
    await worker.work('test-later', { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 }, async (job) => {
      seen.push(job.data);
    });
    await until(() => seen.length === 1);
    expect(seen).toEqual([{ kept: true }]);
    expect(id).toEqual(expect.any(String));
  });

  it('looks for jobs once per interval however many workers are idle, and wakes more for a burst', async () => {
    // Counts pg-boss's fetches (the only statements that take jobs with SKIP LOCKED).
    const client = sqlClient(database.db);
    let fetches = 0;
    const counting = {
      ...client,
      query(text: string, params?: unknown[]) {
        if (/skip locked/i.test(text)) fetches += 1;
        return client.query(text, params);
      },
    };
    const jobs = jobsOnDatabase(counting);
    let inHand = 0;
    let most = 0;
    const done: number[] = [];
    const policy = { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 };
    for (let i = 0; i < 8; i++)
      await jobs.work<{ n: number }>('test-idle', policy, async (job) => {
        inHand += 1;
        most = Math.max(most, inHand);
        await new Promise((r) => setTimeout(r, 400));
        inHand -= 1;
        done.push(job.data.n);
      });
    // Each worker fetches once as it starts; after that, idle, only the queue's tick does (every 0.5 s).
    await new Promise((r) => setTimeout(r, 600));
    const before = fetches;
    await new Promise((r) => setTimeout(r, 2500));
    expect(fetches - before).toBeLessThanOrEqual(8); // about 5; eight workers polling on their own made 40

    // A burst sent by another server (whose send wakes nobody here): the tick's worker finds one
    // and wakes the next, so they run side by side instead of one per tick.
    const other = jobsOnDatabase();
    await other.declare('test-idle', policy);
    for (let n = 0; n < 6; n++) await other.send('test-idle', { n });
    await until(() => done.length === 6);
    expect(done.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBeGreaterThan(1);
  });

  it('refuses to send to a queue this server has not declared, rather than drop the job', async () => {
    const jobs = jobsOnDatabase();
    await expect(jobs.send('test-undeclared', {})).rejects.toThrow(/not declared/);
  });

  it('tells work run here without a job that the server stops, and waits for it to give up', async () => {
    const jobs = jobsOnDatabase();
    await jobs.declare('test-here', { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 });
    let reason: unknown;
    let gaveUp = false;
    jobs.runHere('a test', async (signal) => {
      reason = await new Promise((resolve) =>
        signal.addEventListener('abort', () => resolve(signal.reason), { once: true }),
      );
      // Giving up takes a turn of the event loop or more (a capsule to stop, a row to write).
      await new Promise((r) => setImmediate(r));
      gaveUp = true;
    });
    await jobs.stop();
    expect(reason).toBeInstanceOf(JobsStopping);
    expect(gaveUp).toBe(true);
  });

  it('sends nothing to the database for a handler that ends after its server stopped', async () => {
    // The database may be closed by then (a process shutting down): pg-boss's own completion of
    // the job would reach a closed pool, unawaited. The job was failed back at the stop instead.
    const client = sqlClient(database.db);
    let sentAfterStop = 0;
    let stopped = false;
    const counting = {
      query: (text: string, params?: unknown[]) => {
        if (stopped) sentAfterStop += 1;
        return client.query(text, params);
      },
    };
    const jobs = jobsOnDatabase(counting);
    let release: (() => void) | undefined;
    await jobs.work('test-late', { retryLimit: 1, retryDelaySec: 0, expireInSec: 60 }, async () => {
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      throw new Error('the handler ended late, and failed');
    });
    const id = await jobs.send('test-late', {});
    await until(() => release !== undefined);
    await jobs.stop(false);
    stopped = true;
    release!();
    // Its completion and fail would go out within a few turns of the event loop.
    await new Promise((r) => setTimeout(r, 200));
    expect(sentAfterStop).toBe(0);
    // Failed back when the server stopped, so it is retried.
    expect(await jobsOnDatabase().state('test-late', id!)).toBe('retry');
  });
});

describe.runIf(process.env.PADDOCK_TEST_DATABASE_URL)('job announcements between servers (Postgres)', () => {
  it('starts a job another server sent at once, though its own poll is an hour away', async () => {
    const client = sqlClient(database.db);
    const url = (client as unknown as { options: { connectionString: string } }).options.connectionString;
    const server = (pollingIntervalSec: number) => {
      const jobs = new Jobs(
        client,
        silentLog,
        { pollingIntervalSec, maintenanceIntervalSec: 3600 },
        new PostgresJobWake(url, client, { log: silentLog, timers: systemTimers }),
      );
      running.push(jobs);
      return jobs;
    };
    const policy = { retryLimit: 0, retryDelaySec: 0, expireInSec: 60 };
    const worker = server(3600);
    const seen: unknown[] = [];
    await worker.work<{ n: number }>('test-wake', policy, async (job) => {
      seen.push(job.data);
    });
    // Its start looked once and found nothing; only the announcement can wake it now.
    const sender = server(3600);
    await sender.declare('test-wake', policy);
    await sender.send('test-wake', { n: 7 });
    await until(() => seen.length === 1, 60_000);
    expect(seen).toEqual([{ n: 7 }]);
  });
});

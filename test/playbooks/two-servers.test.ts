import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  serverCall as api,
  childEnv,
  killHard,
  type RunningServer,
  scratchDatabase,
  signupOn,
  startServer,
  tempDir,
} from '../support/process.ts';

// Two real `paddock serve` processes on one Postgres database, both with the
// scheduler on: every slot fires exactly once, and when the leader is
// SIGKILLed the other takes the lease and fires the next slot. Postgres only:
// the embedded database belongs to one process (a lockfile guards its data
// dir), so two processes cannot share it; CI's Postgres pass runs this.
// The servers' clocks are real, so the test makes slots due by setting the
// playbook's next_run_at to now in the database, with a 2 s lease (a tick
// every ~333 ms) to keep the takeover short.

const PG_URL = process.env.PADDOCK_TEST_DATABASE_URL;
const STARTUP_MS = 60_000;
const LEASE_SEC = 2;
const SLOTS_BEFORE_KILL = 4;
// One master key for both, as operations.md asks of servers sharing a database (tokens and seals).
const MASTER_KEY = randomBytes(32).toString('hex');

let scratch: Awaited<ReturnType<typeof scratchDatabase>> | undefined;
let db: pg.Client | undefined;
let databaseUrl: string;
const servers: RunningServer[] = [];

beforeAll(async () => {
  if (!PG_URL) return;
  scratch = await scratchDatabase(PG_URL, 'two_schedulers');
  databaseUrl = scratch.url;
});

afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await db?.end();
  await scratch?.drop();
});

async function serve(label: string): Promise<RunningServer> {
  const server = await startServer(
    ['--data-dir', tempDir(`two-schedulers-${label}`)],
    childEnv({
      DATABASE_URL: databaseUrl,
      PADDOCK_MASTER_KEY: MASTER_KEY,
      PADDOCK_SIGNUP: 'open',
      PADDOCK_SANDBOX_WARM: '0',
      PADDOCK_SCHEDULER_LEASE_SEC: String(LEASE_SEC),
    }),
    STARTUP_MS,
  );
  servers.push(server);
  return server;
}

async function until<T>(what: string, read: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await read();
    if (got !== undefined) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.runIf(PG_URL)('two server processes on one Postgres', { timeout: 3 * STARTUP_MS }, () => {
  it('fire each slot once, and the survivor fires the next slot after the leader is killed', async () => {
    // One after the other: the first migrates the database, the second finds it migrated.
    const a = await serve('a');
    const b = await serve('b');
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();

    const token = await signupOn(a, 'two-schedulers@example.com');
    const policy = await api(a, token, 'POST', '/v1/policies', { name: 'two-schedulers' });
    const agent = await api(b, token, 'POST', '/v1/agents', {
      name: 'two-schedulers',
      model: 'gpt-4o-mini',
      policy_id: policy.body.id,
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    const pb = await api(a, token, 'POST', '/v1/playbooks', {
      agent_id: agent.body.id,
      name: 'every minute',
      prompt: 'check',
      trigger: 'interval',
      interval_seconds: 60,
      enabled: true,
    });
    expect(pb.status, JSON.stringify(pb.body)).toBe(201);

    const leaderOf = async (): Promise<RunningServer | undefined> => {
      for (const s of [a, b]) {
        if (s.child.exitCode !== null || s.child.signalCode !== null) continue;
        const st = await api(s, token, 'GET', '/v1/playbooks/scheduler/status');
        if (st.body.leader) return s;
      }
      return undefined;
    };
    /** Makes the playbook due now (a new slot) and waits until some server fired it. */
    const fireSlot = async (): Promise<Date> => {
      const { rows } = await db!.query<{ at: Date }>(
        'update playbooks set next_run_at = date_trunc($2, now()) where id = $1 returning next_run_at as at',
        [pb.body.id, 'milliseconds'],
      );
      const slot = rows[0]!.at;
      await until(`the slot ${slot.toISOString()} to fire`, async () => {
        const r = await db!.query('select 1 from playbook_runs where playbook_id = $1 and slot_at = $2', [
          pb.body.id,
          slot,
        ]);
        return r.rowCount ? true : undefined;
      });
      return slot;
    };

    const leader = await until('a leader', leaderOf);
    const leading = await Promise.all(
      [a, b].map(async (s) => (await api(s, token, 'GET', '/v1/playbooks/scheduler/status')).body.leader),
    );
    expect(leading.filter(Boolean)).toHaveLength(1);
    const slots: Date[] = [];
    for (let i = 0; i < SLOTS_BEFORE_KILL; i++) {
      slots.push(await fireSlot());
      // Both servers keep ticking over the slot just fired (several ticks each) before the next.
      await new Promise((r) => setTimeout(r, 700));
    }

    await killHard(leader);
    const survivor = leader === a ? b : a;
    const next = await until('the survivor to lead', async () =>
      (await leaderOf()) === survivor ? survivor : undefined,
    );
    expect(next).toBe(survivor);
    slots.push(await fireSlot());
    // Let the survivor tick over it a few more times.
    await new Promise((r) => setTimeout(r, 1000));

    const { rows } = await db.query<{ slot_at: Date; n: string }>(
      'select slot_at, count(*)::text as n from playbook_runs where playbook_id = $1 group by slot_at order by slot_at',
      [pb.body.id],
    );
    expect(rows.map((r) => [r.slot_at.toISOString(), r.n])).toEqual(slots.map((s) => [s.toISOString(), '1']));
    const fired = await db.query("select count(*)::int as n from events where type = 'playbook.fired'");
    expect(fired.rows[0].n).toBe(slots.length);
    // Neither server met a duplicate: no unique violation, no failed fire in their logs.
    for (const s of [a, b]) {
      expect(s.output()).not.toMatch(/duplicate key|unique constraint|firing a playbook failed/i);
    }
    await survivor.stop();
  });
});

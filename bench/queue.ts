// Prints the work queue's claim → complete throughput: BENCH_WORKERS (8)
// workers over real HTTP, each claiming BENCH_BATCH (50) jobs at a time and
// completing them in one batch call, until BENCH_JOBS (20 000) jobs are
// done; and the claim's latency p50 / p99. On PGlite, then on a fresh
// Postgres database when BENCH_DATABASE_URL is set. The server is built in
// this process (buildApp, as `paddock serve` builds it); the jobs are seeded
// by SQL so that only claims and completions are timed. A worker sends its
// next claim as soon as its completion is answered. BENCH_PGLITE=0 skips PGlite.
import { type Database, rawQuery } from '../src/db/client.ts';
import { onEachDatabase, withPaddock } from './in-process.ts';
import { percentile } from './load.ts';
import { api, type Json, positive, str } from './paddock.ts';

const JOBS = positive('BENCH_JOBS', 20_000);
const WORKERS = positive('BENCH_WORKERS', 8);
const BATCH = positive('BENCH_BATCH', 50);
const TARGET_JOBS_PER_SEC = 2000;

interface Figures {
  database: string;
  seconds: number;
  jobsPerSec: number;
  claims: Float64Array;
  emptyClaims: number;
  doubles: number;
  completed: number;
}

async function post(base: string, token: string, pathname: string, body: unknown): Promise<Json> {
  const res = await fetch(`${base}${pathname}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = (await res.json()) as Json;
  if (res.status !== 200) throw new Error(`${pathname} answered ${res.status}: ${JSON.stringify(answer)}`);
  return answer;
}

async function measure(label: string, database: Database): Promise<Figures> {
  return withPaddock('queue', database, async ({ base, token, teamId }) => {
    // Workers authenticate as an agent (pda_, its key cached by the server) or, with
    // BENCH_KEY=team, with a team key of the queue scope (looked up and its use logged per call).
    let key: string;
    if (process.env.BENCH_KEY === 'team') {
      key = str(
        (await api(base, 'POST', '/v1/api-keys', token, { name: 'workers', scopes: ['queue'] })).key,
        'key',
      );
    } else {
      const policy = await api(base, 'POST', '/v1/policies', token, { name: 'bench-queue' });
      const agent = await api(base, 'POST', '/v1/agents', token, {
        name: 'bench-queue-worker',
        policy_id: str(policy.id, 'policy id'),
      });
      key = str(agent.api_key, 'agent api_key');
    }
    // Ids as newId makes them (time-ordered), seeded in one statement.
    await rawQuery(
      database.db,
      `insert into queue_jobs (id, team_id, queue, type, payload, priority, status, attempts, max_attempts,
         timeout_sec, run_at, created_at, updated_at)
       select 'qjob_' || lpad(i::text, 26, '0'), $1, 'bench', 'work', jsonb_build_object('i', i), 0, 'queued', 0, 3,
         300, now(), now(), now()
       from generate_series(1, ${JOBS}) i`,
      [teamId],
    );
    await rawQuery(database.db, 'analyze queue_jobs', []);

    const claims: number[] = [];
    const seen = new Set<string>();
    let doubles = 0;
    let emptyClaims = 0;
    let completed = 0;
    const worker = async (name: string) => {
      for (;;) {
        const started = performance.now();
        const claimed = await post(base, key, '/v1/queues/bench/claim', {
          worker_id: name,
          batch_size: BATCH,
        });
        claims.push(performance.now() - started);
        const jobs = claimed.data as Json[];
        if (jobs.length === 0) {
          emptyClaims++;
          return;
        }
        for (const j of jobs) {
          if (seen.has(j.id as string)) doubles++;
          seen.add(j.id as string);
        }
        const done = await post(base, key, '/v1/queues/bench/complete', {
          worker_id: name,
          jobs: jobs.map((j) => ({ id: j.id, result: { ok: true } })),
        });
        completed += (done.completed as string[]).length;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: WORKERS }, (_, i) => worker(`bench-${i}`)));
    const seconds = (performance.now() - started) / 1000;
    const [left] = await rawQuery(
      database.db,
      `select count(*)::int as n from queue_jobs where team_id = $1 and status <> 'completed'`,
      [teamId],
    );
    if (Number(left?.n) !== 0) throw new Error(`${left?.n} jobs were not completed`);
    return {
      database: label,
      seconds,
      jobsPerSec: JOBS / seconds,
      claims: Float64Array.from(claims).sort(),
      emptyClaims,
      doubles,
      completed,
    };
  });
}

const f1 = (n: number) => n.toFixed(1);

async function main(): Promise<number> {
  const results = await onEachDatabase('queue', measure);
  if (!results) return 1;
  console.log('');
  console.log(
    `${JOBS} jobs, ${WORKERS} workers over HTTP, claims of ${BATCH}, each batch completed in one call:`,
  );
  console.log('');
  console.log(
    '| database | jobs/s (claim → complete) | seconds | claim p50 ms | claim p99 ms | claimed twice |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const f of results)
    console.log(
      `| ${f.database} | ${Math.round(f.jobsPerSec)} | ${f1(f.seconds)} | ${f1(percentile(f.claims, 50))} | ${f1(percentile(f.claims, 99))} | ${f.doubles} |`,
    );
  const pg = results.find((r) => r.database === 'Postgres');
  console.log('');
  if (pg)
    console.log(
      `Postgres: ${Math.round(pg.jobsPerSec)} jobs/s, target at least ${TARGET_JOBS_PER_SEC}: ${pg.jobsPerSec >= TARGET_JOBS_PER_SEC ? 'met' : 'MISSED'}`,
    );
  else console.log('Postgres: not measured (set BENCH_DATABASE_URL)');
  return results.some((r) => r.doubles > 0) ? 1 : 0;
}

process.exitCode = await main();

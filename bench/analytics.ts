// Prints how long each analytics endpoint takes on a team holding
// BENCH_STEPS (1 000 000) steps spread over a year: GET over real HTTP, one
// request at a time, p50 / p95, on PGlite and again on a fresh Postgres
// database when BENCH_DATABASE_URL is set. The server is built in this
// process (buildApp, as `paddock serve` builds it) so the data can be seeded
// in bulk by SQL (generate_series): 4 agents, one run per agent and day,
// steps over 2 providers and 4 models with log-normal-ish latencies, 2 %
// errors and 1 % failover transitions, their ledger entries, and the
// rollups rebuilt from the steps by the analytics backfill (the same upsert
// the step writer runs for each batch). BENCH_TASKS (50 000) tasks over the
// same year, each on its agent's run of the day, 5 % failed and 1 %
// cancelled, for the task figures and the agents' KPIs.
import os from 'node:os';
import type { TeamId } from '../src/core/ids.ts';
import { type Database, rawQuery } from '../src/db/client.ts';
import { rebuildRollups } from '../src/modules/analytics/repo.ts';
import { onEachDatabase, withPaddock } from './in-process.ts';
import { percentile } from './load.ts';
import { api, positive, str } from './paddock.ts';

const STEPS = positive('BENCH_STEPS', 1_000_000);
const REQUESTS = positive('BENCH_REQUESTS', 40);
const TASKS = positive('BENCH_TASKS', 50_000);
const WARMUP = 5;
const TARGET_P95_MS = 100;
const AGENTS = 4;
const DAYS = 365;
const DAY_MS = 86_400_000;

/** What is timed: path and query (from/to added: the whole year unless given). */
const ENDPOINTS: Array<[string, Record<string, string>]> = [
  ['/v1/analytics/costs', { group_by: 'agent', granularity: 'day' }],
  ['/v1/analytics/costs', { group_by: 'model' }],
  ['/v1/analytics/latency', { group_by: 'model', granularity: 'week' }],
  ['/v1/analytics/latency', { group_by: 'provider', granularity: 'hour', last_days: '31' }],
  ['/v1/analytics/errors', { group_by: 'provider', granularity: 'day' }],
  ['/v1/analytics/throughput', { group_by: 'agent_version', granularity: 'week' }],
  ['/v1/analytics/provider-reliability', {}],
  ['/v1/analytics/top', { by: 'cost', dimension: 'model', limit: '3' }],
  ['/v1/analytics/runs', { granularity: 'week' }],
  ['/v1/analytics/tasks', {}],
  ['/v1/overview/agents', { last_days: '30' }],
  ['/v1/overview/agents', { sort: 'queue_wait_p95', last_days: '30' }],
  ['/v1/overview/agents', { sort: 'cost_per_task' }],
  ['/v1/overview/stats', {}],
];

interface Figures {
  database: string;
  seedMs: number;
  rollupMs: number;
  rows: Array<{ label: string; latencies: Float64Array }>;
}

/** Runs, steps and ledger entries in three statements; the year ends at the current hour. */
async function seed(database: Database, teamId: TeamId, agents: string[], policyId: string, end: Date) {
  const db = database.db;
  const start = new Date(end.getTime() - DAYS * DAY_MS);
  await rawQuery(
    db,
    `insert into runs (id, team_id, agent_id, policy_id, policy_name, policy_snapshot, status, creation_method,
       metadata, step_count, started_at, ended_at, updated_at)
     select 'run_bench_' || a || '_' || d, $1, ($2::text[])[a + 1], $3, 'bench', '{}'::jsonb,
       case when d % 10 = 0 then 'failed' else 'completed' end, 'explicit', '{}'::jsonb, 0,
       $4::timestamptz + d * interval '1 day', $4::timestamptz + d * interval '1 day' + interval '23 hours',
       $4::timestamptz + d * interval '1 day'
     from generate_series(0, ${AGENTS - 1}) a, generate_series(0, ${DAYS - 1}) d`,
    [teamId, agents, policyId, start.toISOString()],
  );
  await rawQuery(
    db,
    `insert into steps (id, team_id, run_id, agent_id, type, status, provider, model, input_tokens, output_tokens,
       cache_read_tokens, cost_micros, latency_ms, failover_attempts, created_at)
     select 'stp_bench_' || i, $1, 'run_bench_' || (i % ${AGENTS}) || '_' || floor(f * ${DAYS})::int,
       ($2::text[])[i % ${AGENTS} + 1],
       case when i % 100 = 7 then 'failover_transition' else 'llm_call' end,
       case when i % 50 = 3 then 'error' else 'success' end,
       case when i % 4 < 2 then 'openai' else 'anthropic' end,
       (array['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[i % 4 + 1],
       200 + i % 1800, 50 + i % 700, i % 3 * 100, 300 + i % 9000,
       (80 * exp(random() * 4))::int, case when i % 100 = 7 then 1 else 0 end,
       $3::timestamptz + f * interval '${DAYS} days'
     from (select i, i::float8 / ${STEPS} as f from generate_series(0, ${STEPS - 1}) i) g`,
    [teamId, agents, start.toISOString()],
  );
  await rawQuery(
    db,
    `insert into ledger_entries (id, team_id, run_id, step_id, agent_id, provider, model, input_tokens, output_tokens,
       cache_read_tokens, cost_micros, created_at)
     select 'led_' || substr(id, 5), team_id, run_id, id, agent_id, provider, model, input_tokens, output_tokens,
       cache_read_tokens, cost_micros, created_at
     from steps where team_id = $1 and cost_micros > 0 and type = 'llm_call'`,
    [teamId],
  );
  await rawQuery(
    db,
    `insert into tasks (id, team_id, agent_id, agent_version, model, prompt, status, max_turns, timeout_sec,
       input_file_ids, metadata, run_id, created_at, updated_at, started_at, finished_at)
     select 'task_bench_' || i, $1, ($2::text[])[i % ${AGENTS} + 1], 1, 'gpt-4o-mini', 'bench',
       case when i % 20 = 3 then 'failed' when i % 100 = 7 then 'cancelled' else 'completed' end, 10, 600,
       '[]'::jsonb, '{}'::jsonb, 'run_bench_' || (i % ${AGENTS}) || '_' || floor(f * ${DAYS})::int,
       $3::timestamptz + f * interval '${DAYS} days', $3::timestamptz + f * interval '${DAYS} days',
       $3::timestamptz + f * interval '${DAYS} days' + (i % 5000) * interval '1 millisecond',
       $3::timestamptz + f * interval '${DAYS} days' + interval '2 minutes'
     from (select i, i::float8 / ${TASKS} as f from generate_series(0, ${TASKS - 1}) i) g`,
    [teamId, agents, start.toISOString()],
  );
  return start;
}

async function measure(label: string, database: Database): Promise<Figures> {
  return withPaddock('analytics', database, async ({ base, token, teamId }) => {
    const policy = await api(base, 'POST', '/v1/policies', token, { name: 'bench-analytics' });
    const policyId = str(policy.id, 'policy id');
    const agents: string[] = [];
    for (let a = 0; a < AGENTS; a++) {
      const agent = await api(base, 'POST', '/v1/agents', token, {
        name: `bench-analytics-${a}`,
        policy_id: policyId,
      });
      agents.push(str(agent.id, 'agent id'));
    }
    const end = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const seedStarted = performance.now();
    const start = await seed(database, teamId, agents, policyId, end);
    const seedMs = performance.now() - seedStarted;
    const rollupStarted = performance.now();
    await rebuildRollups(database.db, teamId, start, new Date(end.getTime() + 3_600_000));
    const rollupMs = performance.now() - rollupStarted;
    await rawQuery(database.db, 'analyze', []);

    const rows: Figures['rows'] = [];
    for (const [pathname, query] of ENDPOINTS) {
      const { last_days, ...rest } = query;
      const from = last_days ? new Date(end.getTime() - Number(last_days) * DAY_MS) : start;
      const q = new URLSearchParams({ from: from.toISOString(), to: end.toISOString(), ...rest });
      if (pathname === '/v1/overview/stats') {
        q.delete('from');
        q.delete('to');
      }
      const latencies = new Float64Array(REQUESTS);
      for (let i = 0; i < WARMUP + REQUESTS; i++) {
        const started = performance.now();
        const res = await fetch(`${base}${pathname}?${q}`, { headers: { authorization: `Bearer ${token}` } });
        const body = await res.text();
        const ms = performance.now() - started;
        if (res.status !== 200) throw new Error(`${pathname} answered ${res.status}: ${body}`);
        if (i >= WARMUP) latencies[i - WARMUP] = ms;
      }
      const shown = [...q.entries()].filter(([k]) => k !== 'from' && k !== 'to').map(([k, v]) => `${k}=${v}`);
      const span = last_days
        ? `last ${last_days} days`
        : pathname === '/v1/overview/stats'
          ? 'today'
          : 'a year';
      rows.push({ label: `${pathname}?${shown.join('&')} (${span})`, latencies: latencies.sort() });
    }
    return { database: label, seedMs, rollupMs, rows };
  });
}

const f1 = (n: number) => n.toFixed(1);

async function main(): Promise<number> {
  const results = await onEachDatabase('analytics', measure);
  if (!results) return 1;
  console.log('');
  console.log(
    `${STEPS} steps and ${TASKS} tasks over ${DAYS} days, ${AGENTS} agents; ${REQUESTS} requests per endpoint one at a time:`,
  );
  for (const f of results) {
    console.log('');
    console.log(
      `${f.database}: seed (SQL) ${f1(f.seedMs / 1000)} s, rollup backfill ${f1(f.rollupMs / 1000)} s`,
    );
    console.log('');
    console.log('| endpoint | p50 ms | p95 ms | max ms |');
    console.log('|---|---|---|---|');
    for (const r of f.rows)
      console.log(
        `| ${r.label} | ${f1(percentile(r.latencies, 50))} | ${f1(percentile(r.latencies, 95))} | ${f1(r.latencies.at(-1)!)} |`,
      );
    const worst = Math.max(...f.rows.map((r) => percentile(r.latencies, 95)));
    console.log('');
    console.log(
      `${f.database}: worst p95 ${f1(worst)} ms, target under ${TARGET_P95_MS} ms: ${worst < TARGET_P95_MS ? 'met' : 'MISSED'}`,
    );
  }
  console.log(`load average ${os.loadavg().map(f1).join(' ')} at the end`);
  return 0;
}

process.exitCode = await main();

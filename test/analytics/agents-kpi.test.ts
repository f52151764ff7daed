import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawQuery } from '../../src/db/client.ts';
import { createAgent, type Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// GET /v1/overview/agents: tasks run by the task runner (model calls and
// sandbox time on the ledger), each agent's figures against what the tasks
// and the ledger hold, summed here on their own; sorting, the window, and
// another team's view.

let f: TaskFixture;
let teamId: string;
let busy: Json;
let mixed: Json;
/** Queue waits (ms) given to busy's three tasks: created → started. */
const WAITS = [1000, 4000, 2000];

beforeAll(async () => {
  f = await startTasks();
  teamId = f.user.team.id;
  busy = await f.agent({ agent: { name: 'busy' } });
  mixed = await f.agent({ agent: { name: 'mixed' } });
  const run = async (agentId: string, steps: Parameters<TaskFixture['script']>[0], extra: Json = {}) => {
    f.script(steps);
    const submitted = await f.submit({ agent_id: agentId, prompt: 'kpi', ...extra });
    return (await f.finished(submitted.id)).task;
  };
  const done = [
    { tool: 'bash', args: { command: 'echo kpi' } },
    { tool: 'submit_result', args: { result: { ok: true } } },
  ];
  const busyTasks = [];
  for (let i = 0; i < 3; i++) busyTasks.push(await run(busy.id, done));
  await run(mixed.id, done);
  // One turn, spent on a tool call: it fails (max_turns).
  const failed = await run(mixed.id, [{ tool: 'bash', args: { command: 'true' } }], { max_turns: 1 });
  expect(failed.status).toBe('failed');
  await f.t.services.runs.flush();
  // The runner starts a task at once (the test clock stands still): give busy's tasks known waits.
  for (const [i, task] of busyTasks.entries()) {
    await sql(`update tasks set started_at = created_at + $2 * interval '1 millisecond' where id = $1`, [
      task.id,
      WAITS[i],
    ]);
  }
}, 180_000);
afterAll(async () => {
  await f.close();
});

const sql = (text: string, params: unknown[] = [teamId]) => rawQuery(f.t.database.db, text, params);

async function kpis(query: Record<string, string> = {}, token = f.user.token) {
  const res = await f.t.call('GET', '/v1/overview/agents', { token, query });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { data: Json[]; from: string; to: string };
}

/** p-th percentile with linear interpolation between ranks (as Postgres's percentile_cont). */
function percentileCont(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const at = p * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

describe('GET /v1/overview/agents', () => {
  it('gives each agent the figures its tasks and their ledger entries hold', async () => {
    const tasks = await sql(
      `select t.id, t.agent_id, t.status, extract(epoch from t.created_at) * 1000 as created_ms,
         extract(epoch from t.started_at) * 1000 as started_ms, extract(epoch from t.finished_at) * 1000 as finished_ms,
         coalesce(sum(l.cost_micros), 0) as cost,
         coalesce(sum(l.cost_micros) filter (where l.kind = 'sandbox'), 0) as sandbox,
         coalesce(sum(l.input_tokens + l.output_tokens + l.cache_read_tokens + l.cache_creation_tokens), 0) as tokens
       from tasks t left join ledger_entries l on l.run_id = t.run_id and l.team_id = t.team_id
       where t.team_id = $1 group by t.id, t.agent_id, t.status, t.created_at, t.started_at, t.finished_at`,
    );
    expect(tasks).toHaveLength(5);
    const body = await kpis();
    expect(body.data).toHaveLength(2);
    for (const agent of [busy, mixed]) {
      const mine = tasks.filter((t) => t.agent_id === agent.id);
      const done = mine.filter((t) => ['completed', 'failed', 'cancelled'].includes(String(t.status)));
      const sum = (key: string) => done.reduce((a, t) => a + Number(t[key]), 0);
      expect(sum('cost')).toBeGreaterThan(0);
      expect(sum('tokens')).toBeGreaterThan(0);
      const waits = mine.map((t) => Number(t.started_ms) - Number(t.created_ms));
      const times = mine.flatMap((t) =>
        [t.created_ms, t.started_ms, t.finished_ms].filter((x) => x !== null).map((x) => Number(x)),
      );
      const row = body.data.find((r) => r.agent_id === agent.id);
      const completed = done.filter((t) => t.status === 'completed').length;
      expect(row).toEqual({
        agent_id: agent.id,
        name: agent.name,
        tasks_total: mine.length,
        tasks_done: done.length,
        completed_count: completed,
        failed_count: done.filter((t) => t.status === 'failed').length,
        cancelled_count: 0,
        success_rate_pct: Math.round((completed / done.length) * 10_000) / 100,
        total_cost_usd: sum('cost') / 1e6,
        cost_per_task_usd: Math.round(sum('cost') / done.length) / 1e6,
        model_cost_per_task_usd: Math.round((sum('cost') - sum('sandbox')) / done.length) / 1e6,
        sandbox_cost_per_task_usd: Math.round(sum('sandbox') / done.length) / 1e6,
        tokens_per_task: Math.round((sum('tokens') / done.length) * 100) / 100,
        queue_wait_p50_ms: Math.round(percentileCont(waits, 0.5)!),
        queue_wait_p95_ms: Math.round(percentileCont(waits, 0.95)!),
        last_active_at: new Date(Math.max(...times)).toISOString(),
      });
    }
    const busyRow = body.data.find((r) => r.agent_id === busy.id)!;
    expect(busyRow).toMatchObject({
      queue_wait_p50_ms: 2000,
      queue_wait_p95_ms: 3800,
      success_rate_pct: 100,
    });
    expect(body.data.find((r) => r.agent_id === mixed.id)).toMatchObject({
      tasks_done: 2,
      failed_count: 1,
      success_rate_pct: 50,
    });
  });

  it('agrees with /v1/analytics/tasks over the same range', async () => {
    const [agents, tasks] = await Promise.all([
      kpis({ window: '7d' }),
      f.t.call('GET', '/v1/analytics/tasks', {
        token: f.user.token,
        query: { from: new Date(f.t.clock.now().getTime() - 7 * 86_400_000).toISOString() },
      }),
    ]);
    expect(agents.from).toBe(tasks.body.from);
    const total = agents.data.reduce((a, r) => a + r.total_cost_usd, 0);
    expect(total).toBeCloseTo(tasks.body.data.total_cost_usd, 9);
    expect(agents.data.reduce((a, r) => a + r.tasks_total, 0)).toBe(tasks.body.data.total_tasks);
  });

  it('sorts by a whitelisted column either way, agents without a figure last', async () => {
    const order = async (query: Record<string, string>) => (await kpis(query)).data.map((r) => r.name);
    expect(await order({})).toEqual(['busy', 'mixed']);
    expect(await order({ sort: 'success_rate', order: 'asc' })).toEqual(['mixed', 'busy']);
    expect(await order({ sort: 'success_rate' })).toEqual(['busy', 'mixed']);
    expect(await order({ sort: 'name' })).toEqual(['busy', 'mixed']);
    expect(await order({ sort: 'name', order: 'desc' })).toEqual(['mixed', 'busy']);
    expect(await order({ sort: 'queue_wait_p95' })).toEqual(['busy', 'mixed']);
    const bySpend = (await kpis({ sort: 'cost_per_task' })).data.map((r) => r.cost_per_task_usd);
    expect(bySpend).toEqual([...bySpend].sort((a, b) => b - a));
    expect(await order({ limit: '1' })).toEqual(['busy']);
    expect((await kpis({ agent_id: mixed.id })).data.map((r) => r.name)).toEqual(['mixed']);

    // A task still queued has no cost and no start: its agent sorts last on those, either way.
    const idle = await createAgent(f.t, f.user.token, { name: 'idle', policy_id: busy.policy_id });
    const now = f.t.clock.now().toISOString();
    await sql(
      `insert into tasks (id, team_id, agent_id, agent_version, model, prompt, status, max_turns, timeout_sec,
         input_file_ids, metadata, created_at, updated_at)
       values ('task_kpiqueued00000000000000', $1, $2, 1, 'gpt-4o-mini', 'wait', 'queued', 5, 60, '[]', '{}', $3, $3)`,
      [teamId, idle.id, now],
    );
    try {
      for (const o of ['asc', 'desc']) {
        for (const sort of ['cost_per_task', 'queue_wait_p50', 'success_rate']) {
          expect((await order({ sort, order: o })).at(-1), `${sort} ${o}`).toBe('idle');
        }
      }
      const row = (await kpis({ agent_id: idle.id })).data[0];
      expect(row).toMatchObject({
        tasks_total: 1,
        tasks_done: 0,
        success_rate_pct: null,
        cost_per_task_usd: null,
        queue_wait_p50_ms: null,
        last_active_at: now,
      });
    } finally {
      await sql(`delete from tasks where id = 'task_kpiqueued00000000000000'`, []);
    }
  });

  it('covers only the tasks created in the window', async () => {
    const now = f.t.clock.now().getTime();
    const later = new Date(now + 3 * 86_400_000).toISOString();
    expect((await kpis({ window: '24h', to: later })).data).toEqual([]);
    expect((await kpis({ window: '7d', to: later })).data).toHaveLength(2);
    const fromNow = await kpis({ from: new Date(now + 3_600_000).toISOString(), to: later });
    expect(fromNow.data).toEqual([]);
    const around = await kpis({
      from: new Date(now - 3_600_000).toISOString(),
      to: new Date(now + 3_600_000).toISOString(),
    });
    expect(around.data.reduce((a, r) => a + r.tasks_total, 0)).toBe(5);
  });

  it('refuses bad input with 400 in the error shape', async () => {
    const bad: Array<Record<string, string>> = [
      { sort: 'cost_micros; drop table tasks' },
      { sort: 'agent_id' },
      { order: 'sideways' },
      { window: '1y' },
      { window: '24h', from: new Date().toISOString() },
      { from: 'yesterday' },
      { from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' },
      { from: '2020-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' },
      { limit: '0' },
      { limit: '201' },
      { unknown: '1' },
    ];
    for (const query of bad) {
      const res = await f.t.call('GET', '/v1/overview/agents', { token: f.user.token, query });
      expect(res.status, JSON.stringify(query)).toBe(400);
      expect(res.body.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
  });

  it('shows another team none of these agents, and refuses agent keys', async () => {
    const other = await f.t.signup({ name: 'Other team' });
    expect((await kpis({}, other.token)).data).toEqual([]);
    expect((await kpis({ agent_id: busy.id }, other.token)).data).toEqual([]);
    const reader = await f.t.apiKey(f.user.token, ['read']);
    expect((await kpis({}, reader.key)).data).toHaveLength(2);
    const asAgent = await f.t.call('GET', '/v1/overview/agents', { token: busy.api_key });
    expect(asAgent.status).toBe(403);
  });
});

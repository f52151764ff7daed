import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawQuery } from '../../src/db/client.ts';
import { rebuildRollups } from '../../src/modules/analytics/repo.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Tasks run by the task runner (model calls and sandbox time on the ledger):
// the task figures and agent-version costs against SQL sums, the backfill
// giving back the same rollups, and the cleanup removing raw rows of ended
// runs while every report stays as it was.

let f: TaskFixture;
let teamId: string;
const range: Record<string, string> = {};

beforeAll(async () => {
  f = await startTasks();
  teamId = f.user.team.id;
  const agent = await f.agent();
  for (let i = 0; i < 2; i++) {
    f.script([
      { tool: 'bash', args: { command: `echo run ${i}` } },
      { tool: 'submit_result', args: { result: { n: i } } },
    ]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: `task ${i}` });
    await f.finished(submitted.id);
  }
  await f.t.services.runs.flush();
  const now = f.t.clock.now().getTime();
  range.from = new Date(now - 86_400_000).toISOString();
  range.to = new Date(now + 86_400_000).toISOString();
}, 120_000);
afterAll(async () => {
  await f.close();
});

const sql = (text: string, params: unknown[] = [teamId]) => rawQuery(f.t.database.db, text, params);
const get = async (path: string, query: Record<string, string> = {}) => {
  const res = await f.t.call('GET', path, { token: f.user.token, query: { ...range, ...query } });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

describe('task figures', () => {
  it('tasks by status, cost split into model and sandbox, sandbox seconds equal the tables', async () => {
    const [row] = await sql(
      `select count(*) as n, count(*) filter (where t.status = 'completed') as completed,
         sum(l.cost) as cost, sum(l.sandbox) as sandbox, sum(t.sandbox_ms) as sandbox_ms
       from tasks t left join (
         select run_id, sum(cost_micros) as cost, sum(cost_micros) filter (where kind = 'sandbox') as sandbox
         from ledger_entries where team_id = $1 group by run_id) l on l.run_id = t.run_id
       where t.team_id = $1`,
    );
    const body = await get('/v1/analytics/tasks');
    expect(body.data).toMatchObject({
      total_tasks: Number(row!.n),
      by_status: { completed: Number(row!.completed) },
      total_cost_usd: Number(row!.cost) / 1e6,
      sandbox_cost_usd: Number(row!.sandbox ?? 0) / 1e6,
      model_cost_usd: (Number(row!.cost) - Number(row!.sandbox ?? 0)) / 1e6,
      sandbox_seconds: Number(row!.sandbox_ms) / 1000,
    });
    expect(body.data.total_tasks).toBe(2);
    expect(body.data.model_cost_usd).toBeGreaterThan(0);
  });

  it("costs by agent version name the task's version and equal the ledger", async () => {
    const rows = await sql(
      `select l.agent_id || '@' || t.agent_version as grp, sum(l.cost_micros) as cost
       from ledger_entries l join tasks t on t.run_id = l.run_id
       where l.team_id = $1 group by 1`,
    );
    const body = await get('/v1/analytics/costs', { group_by: 'agent_version' });
    expect(body.data.map((r: Json) => [r.group, r.total_cost_usd])).toEqual(
      rows.map((r) => [r.grp, Number(r.cost) / 1e6]),
    );
  });

  it('runs: counts, steps and cost per run equal the runs table', async () => {
    const [row] = await sql(
      `select count(*) as n, count(*) filter (where status = 'completed') as completed, sum(cost_micros) as cost
       from runs where team_id = $1`,
    );
    const body = await get('/v1/analytics/runs');
    expect(body.data[0]).toMatchObject({
      total_runs: Number(row!.n),
      completed_count: Number(row!.completed),
      total_cost_usd: Number(row!.cost) / 1e6,
    });
  });
});

describe('backfill and cleanup', () => {
  it('a rebuild from the steps gives back the rollups the step writer kept', async () => {
    const before = await sql('select * from analytics_hourly where team_id = $1 order by 2, 3, 4, 5, 6');
    const now = f.t.clock.now().getTime();
    await rebuildRollups(
      f.t.database.db,
      teamId as never,
      new Date(now - 86_400_000),
      new Date(now + 86_400_000),
    );
    const after = await sql('select * from analytics_hourly where team_id = $1 order by 2, 3, 4, 5, 6');
    expect(after).toEqual(before);
    expect(before.length).toBeGreaterThan(0);
  });

  it('a rebuild that fails half-way leaves the rollups as they were (one transaction)', async () => {
    const rollups = async () => ({
      hourly: await sql('select * from analytics_hourly where team_id = $1 order by 2, 3, 4, 5, 6'),
      daily: await sql('select * from analytics_daily where team_id = $1 order by 2, 3, 4, 5, 6'),
    });
    const before = await rollups();
    expect(before.hourly.length).toBeGreaterThan(0);
    expect(before.daily.length).toBeGreaterThan(0);
    // The last step fails: the hourly rollups are already rebuilt and the daily ones deleted by then.
    await sql(
      `create function fail_rollup_insert() returns trigger language plpgsql as
       $$ begin raise exception 'injected: the daily rollups cannot be written'; end $$`,
      [],
    );
    await sql(
      'create trigger fail_rollup_insert before insert on analytics_daily for each row execute function fail_rollup_insert()',
      [],
    );
    try {
      const now = f.t.clock.now().getTime();
      const failed = await rebuildRollups(
        f.t.database.db,
        teamId as never,
        new Date(now - 86_400_000),
        new Date(now + 86_400_000),
      ).then(
        () => undefined,
        (err: Error) => err,
      );
      // drizzle wraps the database's error (the failed query) around it.
      expect(String(failed?.cause ?? failed)).toContain('injected');
    } finally {
      await sql('drop trigger fail_rollup_insert on analytics_daily', []);
      await sql('drop function fail_rollup_insert()', []);
    }
    expect(await rollups()).toEqual(before);
  });

  it('cleanup deletes the raw rows of ended runs (preview first), the reports stay the same', async () => {
    const reports = [
      '/v1/analytics/costs',
      '/v1/analytics/latency',
      '/v1/analytics/errors',
      '/v1/analytics/throughput',
    ];
    const seen = await Promise.all(reports.map((p) => get(p, { group_by: 'model', granularity: 'hour' })));
    f.t.clock.advance(1000);
    const before = f.t.clock.now().toISOString();
    const [expected] = await sql(
      `select (select count(*) from steps s join runs r on r.id = s.run_id
                where r.team_id = $1 and r.status <> 'running' and r.ended_at < $2) as steps,
         (select count(*) from ledger_entries l join runs r on r.id = l.run_id
                where r.team_id = $1 and r.status <> 'running' and r.ended_at < $2) as ledger`,
      [teamId, before],
    );
    const preview = await f.t.call('GET', '/v1/analytics/cleanup-preview', {
      token: f.user.token,
      query: { before },
    });
    expect(preview.status).toBe(200);
    expect(preview.body.data).toEqual({
      runs: 2,
      steps: Number(expected!.steps),
      ledger_entries: Number(expected!.ledger),
    });
    expect(preview.body.data.steps).toBeGreaterThan(0);

    const future = await f.t.call('POST', '/v1/analytics/cleanup', {
      token: f.user.token,
      body: { before: new Date(Date.now() + 86_400_000 * 400).toISOString() },
    });
    expect(future.status).toBe(400);
    for (const impossible of ['0000-01-01T00:00:00Z', '2016-12-31T23:59:60Z']) {
      const res = await f.t.call('POST', '/v1/analytics/cleanup', {
        token: f.user.token,
        body: { before: impossible },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.details.fields).toHaveProperty('before');
    }

    const done = await f.t.call('POST', '/v1/analytics/cleanup', { token: f.user.token, body: { before } });
    expect(done.status).toBe(200);
    expect(done.body.data).toEqual(preview.body.data);
    const [left] = await sql('select count(*) as n from steps where team_id = $1');
    expect(Number(left!.n)).toBe(0);
    const [runs] = await sql('select count(*) as n from runs where team_id = $1');
    expect(Number(runs!.n)).toBe(2);
    const after = await Promise.all(reports.map((p) => get(p, { group_by: 'model', granularity: 'hour' })));
    expect(after).toEqual(seen);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

/** task_failure_rate over real tasks: some fail (a budget too small for one call), some complete. */
let f: TaskFixture;
beforeAll(async () => {
  f = await startTasks();
  await f.t.services.alertEvaluator.stop();
}, 60_000);
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown) =>
  f.t.call(method, url, { token: f.user.token, ...(body !== undefined ? { body } : {}) });

async function rule(name: string, config: Record<string, number>, agentId: string): Promise<Json> {
  const res = await call('POST', '/v1/alert-rules', {
    name,
    condition_type: 'task_failure_rate',
    condition_config: config,
    agent_id: agentId,
  });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}

describe('task_failure_rate', () => {
  it('fires with the share of ended tasks that failed (cancelled ones left out), with min_tasks', async () => {
    const agent = await f.agent();
    const fires = await rule('tasks-fail', { threshold_pct: 60, min_tasks: 3 }, agent.id);
    const few = await rule('tasks-few', { threshold_pct: 60, min_tasks: 4 }, agent.id);
    const above = await rule('tasks-above', { threshold_pct: 70, min_tasks: 1 }, agent.id);
    f.mock.reset();
    f.mock.reply({ text: 'done', times: Number.POSITIVE_INFINITY });
    const ended: Json[] = [];
    for (const budget of [0.000001, 0.000001, undefined]) {
      const task = await f.submit({
        agent_id: agent.id,
        prompt: 'go',
        ...(budget !== undefined ? { max_budget_usd: budget } : {}),
      });
      ended.push((await f.finished(task.id)).task);
    }
    expect(ended.map((t) => t.status)).toEqual(['failed', 'failed', 'completed']);
    f.t.clock.advance(60_000);
    await f.t.services.alertEvaluator.tick();
    const firings = async (r: Json) => (await call('GET', `/v1/alert-rules/${r.id}/firings`)).body.data;
    expect(await firings(few)).toEqual([]);
    expect(await firings(above)).toEqual([]);
    expect((await firings(fires))[0].evidence).toMatchObject({
      value: 66.67,
      threshold: 60,
      unit: 'percent',
      tasks_ended: 3,
      tasks_failed: 2,
      min_tasks: 3,
      by_agent: [{ agent_id: agent.id, tasks_ended: 3, tasks_failed: 2 }],
    });
  });
});

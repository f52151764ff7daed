import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Tasks under credit enforcement: no credits, no capsule; credits that run
// out mid-task end it cleanly at its next model call.

let f: TaskFixture;
beforeAll(async () => {
  // 1 credit = $0.01: gpt-4o-mini calls cost a fraction of a credit.
  f = await startTasks({ env: { PADDOCK_CREDITS: 'enforce' } });
});
afterAll(async () => {
  await f?.close();
});

const give = (amount: number, type: 'grant' | 'adjustment' = 'grant') =>
  f.t.services.credits.add({
    teamId: f.user.team.id,
    type,
    amount,
    reason: 'test',
    actor: { actorKind: 'system', actorId: null },
  });

describe('tasks and credits', () => {
  it('fails a task insufficient_credits without starting a capsule or calling the model while the team has none', async () => {
    const agent = await f.agent();
    f.mock.reset();
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'hello' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'insufficient_credits' } });
    expect(f.mock.requests).toHaveLength(0);
    const capsules = await f.t.call('GET', '/v1/capsules', { token: f.user.token });
    expect(capsules.body.data).toHaveLength(0);
  });

  it('ends a running task at its next model call once the credits are spent, and stops its capsule', async () => {
    const agent = await f.agent();
    // Enough for the first call's reservation; its answer costs three times the balance
    // (1 000 000 input tokens, 15 credits), so the balance is spent whenever the step
    // writer's batch lands. A smaller answer would leave it to timing whether the last
    // call is refused with a little left (low) or admitted and overspends (exhausted).
    await give(5);
    f.mock.reset();
    f.mock.reply({
      toolCalls: [{ name: 'bash', arguments: { command: 'echo spend' } }],
      usage: { input: 1_000_000, output: 20 },
      times: Number.POSITIVE_INFINITY,
    });
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'spend' });
    const { task } = await f.finished(submitted.id);
    expect(task).toMatchObject({ status: 'failed', error: { code: 'insufficient_credits' } });
    expect(f.mock.requests.length).toBeGreaterThanOrEqual(1);
    const capsules = await f.t.call('GET', '/v1/capsules', { token: f.user.token });
    const mine = capsules.body.data.filter((c: Json) => c.metadata?.task_id === task.id);
    expect(mine).toHaveLength(1);
    await waitForCapsule(f.t, f.user.token, mine[0].id, 'stopped');
    await f.t.services.runs.flush();
    const credits = await f.t.call('GET', '/v1/credits', { token: f.user.token });
    expect(credits.body).toMatchObject({ state: 'exhausted', held: 0 });
    // What the task cost is what its credits paid: the run's ledger at the rate (100 credits a dollar).
    expect(credits.body.balance).toBeCloseTo(5 - task.cost_usd * 100, 4);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// How a submitted task reaches a worker: the server that took it runs it at
// once when it has a free slot, else it goes to the queue as a job. Either
// way it runs once, and no more tasks run at a time than the server's slots.

let f: TaskFixture;

beforeAll(async () => {
  // One slot: a second task has to wait for the first.
  f = await startTasks({ runner: { concurrency: 1 } });
});
afterAll(async () => {
  await f?.close();
});

const statuses = (events: Json[]) =>
  events.filter((e) => e.type === 'status').map((e) => (e.payload as { status: string }).status);

describe('dispatch', () => {
  it('runs a task taken at once only once, even when a job for it is fetched too', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 5 } });
    f.mock.reset();
    f.script([{ text: 'once' }]);
    const submitted = await f.submit({ agent_id: agent.id, prompt: 'answer once' });
    // As a worker that fetched a job for the same task (a sweep's resend racing the run).
    await f.t.services.taskRunner.handle(
      { task_id: String(submitted.id), team_id: f.user.team.id },
      new AbortController().signal,
    );
    const { task } = await f.finished(String(submitted.id));
    expect(task).toMatchObject({ status: 'completed', result: 'once', turns: 1 });
    expect(f.mock.requests.filter((r) => JSON.stringify(r.body).includes('answer once'))).toHaveLength(1);
    expect(statuses(await f.events(String(submitted.id)))).toEqual(['queued', 'running', 'completed']);
  });

  it('queues a task while every slot is taken, and runs it when one frees', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 5 } });
    f.mock.reset();
    f.script([{ tool: 'bash', args: { command: 'sleep 1' } }, { text: 'first done' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'hold the slot' });
    await f.untilEvent(String(first.id), (e) => e.type === 'tool_call');
    f.script([{ text: 'second done' }]);
    const second = await f.submit({ agent_id: agent.id, prompt: 'wait for a slot' });
    // No free slot: the 202 answers it queued, and it is not started in the submit's transaction.
    expect(first).toMatchObject({ status: 'running' });
    expect(second).toMatchObject({ status: 'queued', started_at: null });
    const waiting = await f.t.call('GET', `/v1/tasks/${String(second.id)}`, { token: f.user.token });
    expect(waiting.body.status).toBe('queued');
    const ends = await Promise.all([f.finished(String(first.id)), f.finished(String(second.id))]);
    expect(ends.map((e) => e.task.status)).toEqual(['completed', 'completed']);
    expect(Date.parse(String(ends[1].task.started_at))).toBeGreaterThanOrEqual(
      Date.parse(String(ends[0].task.finished_at)),
    );
  });

  it('gives back a slot reserved for a submit whose transaction did not commit', async () => {
    const agent = await f.agent({ agent: { concurrency_limit: 5 } });
    const runner = f.t.services.taskRunner;
    // As a submit does before its transaction: the server's one slot, reserved.
    const held = await runner.reserve(f.user.team.id as never, agent.id, 1);
    expect(held).toBeDefined();
    // While it is held, no other submit gets one.
    expect(await runner.reserve(f.user.team.id as never, agent.id, 1)).toBeUndefined();
    // Its transaction failed: the slot is free again, and a slot is settled once.
    held!.rolledBack();
    expect(() => held!.rolledBack()).toThrow();
    f.mock.reset();
    f.script([{ text: 'in a free slot' }]);
    const next = await f.submit({ agent_id: agent.id, prompt: 'in a free slot' });
    expect(next).toMatchObject({ status: 'running' });
    expect((await f.finished(String(next.id))).task).toMatchObject({
      status: 'completed',
      result: 'in a free slot',
    });
  });
});

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// Ending a workspace, or cancelling its task, while its capsule is still
// starting kills the capsule's processes before they have read what the host
// wrote to their pipes. The host must take that as the processes going away:
// an error left on one of those pipes (ECONNRESET) would be unhandled and
// take the server down (vitest fails this file on it).

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown) =>
  f.t.call(method, url, { token: f.user.token, ...(body !== undefined ? { body } : {}) });

/** Waits until every capsule of the user's is stopping or stopped. */
async function capsulesGone(): Promise<void> {
  await vi.waitFor(
    async () => {
      await f.t.services.capsules.settled();
      const list = (await call('GET', '/v1/capsules?limit=200')).body.data as Json[];
      expect(list.filter((c) => !['stopping', 'stopped', 'failed'].includes(c.status))).toEqual([]);
    },
    { timeout: 30_000, interval: 50 },
  );
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Delays before ending: at once, and at points through the capsule's start. */
const DELAYS_MS = [0, 0, 5, 15, 30, 50, 80, 120];
/** A task ends one way or another (on a busy machine its turn may finish before the end comes). */
const ENDED = ['completed', 'failed', 'cancelled'];

describe('ending a workspace while its capsule starts', () => {
  it('DELETE of the workspace mid-start ends it cleanly, every time', async () => {
    const agent = await f.agent({ agent: { idle_timeout_sec: 60, session_ttl_sec: 600 } });
    for (const delay of DELAYS_MS) {
      f.mock.reset();
      f.script([{ text: 'hello' }]);
      const task = await f.submit({ agent_id: agent.id, prompt: 'hi', mode: 'session' });
      await pause(delay);
      const ended = await call('DELETE', `/v1/workspaces/${task.workspace_id}`);
      expect(ended.status).toBe(200);
      expect(ended.body.status).toBe('terminated');
      await f.until(task.id, ENDED);
    }
    await capsulesGone();
  }, 120_000);

  it('cancelling the task mid-start ends it cleanly, every time', async () => {
    const agent = await f.agent();
    for (const delay of DELAYS_MS) {
      f.mock.reset();
      f.script([{ text: 'hello' }]);
      const task = await f.submit({ agent_id: agent.id, prompt: 'hi' });
      await pause(delay);
      await call('POST', `/v1/tasks/${task.id}/cancel`);
      await f.until(task.id, ENDED);
    }
    await capsulesGone();
  }, 120_000);
});

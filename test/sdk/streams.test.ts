import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  followTaskEvents,
  followWorkspaceEvents,
  type LogEvent,
  openPty,
  PaddockError,
  readSse,
} from '../../sdk/src/index.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// The SDK's streaming helpers against a real listening server: a task's events
// over SSE (resumed after a connection cut mid-event, with nothing missed or
// repeated) and a capsule's terminal over its WebSocket.

let f: TaskFixture;
let baseUrl: string;
beforeAll(async () => {
  f = await startTasks();
  await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  baseUrl = `http://127.0.0.1:${(f.t.app.server.address() as AddressInfo).port}`;
});
afterAll(() => f.close());

/**
 * A TCP proxy in front of the server that cuts its first connection in the middle of the
 * stream's third event (after its `id:` line and a few bytes of it), as a dropped network would.
 */
async function cuttingProxy(
  target: string,
): Promise<{ url: string; connections: () => number; close(): void }> {
  const { port } = new URL(target);
  let connections = 0;
  const server = net.createServer((client) => {
    const index = connections++;
    const upstream = net.connect(Number(port), '127.0.0.1');
    client.pipe(upstream);
    if (index > 0) {
      upstream.pipe(client);
      return;
    }
    let seen = '';
    upstream.on('data', (chunk: Buffer) => {
      const before = seen.length;
      seen += chunk.toString('latin1');
      const third = nthIndex(seen, '\nid: ', 3);
      if (third === -1) {
        client.write(chunk);
        return;
      }
      client.write(chunk.subarray(0, third + 12 - before));
      client.destroy();
      upstream.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () => server.close(),
  };
}

function nthIndex(text: string, needle: string, n: number): number {
  let at = -1;
  for (let i = 0; i < n; i++) {
    at = text.indexOf(needle, at + 1);
    if (at === -1) return -1;
  }
  return at;
}

describe('followTaskEvents', () => {
  it('follows a task to its end, reconnecting after a cut connection without a gap or a duplicate', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'echo from-the-capsule' } },
      { chunks: ['All ', 'done ', 'here.'], stallBetweenEventsMs: 20 },
    ]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'work', mode: 'stream' });
    const proxy = await cuttingProxy(baseUrl);
    try {
      const seen: LogEvent[] = [];
      for await (const event of followTaskEvents(
        { baseUrl: proxy.url, token: f.user.token, reconnectDelayMs: 10 },
        task.id,
      ))
        seen.push(event);

      expect(proxy.connections()).toBeGreaterThanOrEqual(2);
      const log = await f.events(task.id);
      expect(seen.map((e) => e.seq)).toEqual(log.map((e) => e.seq));
      expect(seen.map((e) => e.type)).toEqual(log.map((e) => e.type));
      expect(seen.at(-1)).toMatchObject({ type: 'status', payload: { status: 'completed' } });
    } finally {
      proxy.close();
    }
  }, 30_000);

  it('starts after afterSeq and stops when its signal aborts', async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ text: 'Quick answer.' }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'quick' });
    await f.finished(task.id);
    const log = await f.events(task.id);
    const after: LogEvent[] = [];
    for await (const e of followTaskEvents({ baseUrl, token: f.user.token, afterSeq: 2 }, task.id))
      after.push(e);
    expect(after.map((e) => e.seq)).toEqual(log.filter((e) => e.seq > 2).map((e) => e.seq));

    const stop = new AbortController();
    stop.abort();
    const none: LogEvent[] = [];
    for await (const e of followTaskEvents({ baseUrl, token: f.user.token, signal: stop.signal }, task.id))
      none.push(e);
    expect(none).toEqual([]);
  }, 30_000);

  it("throws the API's error for a task it cannot see, without retrying", async () => {
    const err = await (async () => {
      for await (const _ of followTaskEvents(
        { baseUrl, token: f.user.token },
        'task_01J00000000000000000000000',
      ));
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaddockError);
    expect(err).toMatchObject({ status: 404, code: 'not_found' });
  });
});

describe('followWorkspaceEvents', () => {
  it("follows a workspace's log until the workspace ends", async () => {
    const agent = await f.agent();
    f.mock.reset();
    f.script([{ text: 'First answer.' }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'hello', mode: 'session' });
    const seen: LogEvent[] = [];
    for await (const event of followWorkspaceEvents({ baseUrl, token: f.user.token }, task.workspace_id)) {
      seen.push(event);
      // The turn's end: end the workspace, which ends its log and so the iteration.
      if (event.type === 'status' && event.payload.status === 'completed')
        await f.t.call('DELETE', `/v1/workspaces/${task.workspace_id}`, { token: f.user.token });
    }
    const log = await f.t.call('GET', `/v1/workspaces/${task.workspace_id}/events?limit=1000`, {
      token: f.user.token,
    });
    expect(seen.map((e) => e.seq)).toEqual(log.body.data.map((e: LogEvent) => e.seq));
    expect(seen.some((e) => e.type === 'text' && e.payload.text === 'First answer.')).toBe(true);
  }, 30_000);
});

describe('readSse', () => {
  it('parses messages split anywhere, with any line ending, and drops a message cut short', async () => {
    const text =
      'retry: 50\r\n\r\n: comment\nid: 1\nevent: a\ndata: {"x":\ndata: 1}\n\nid: 2\revent: b\rdata: two\r\rid: 3\ndata: cut';
    const bytes = new TextEncoder().encode(text);
    for (let split = 1; split < bytes.length; split++) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes.subarray(0, split));
          controller.enqueue(bytes.subarray(split));
          controller.close();
        },
      });
      const messages = [];
      for await (const m of readSse(body)) messages.push(m);
      expect(messages, `split at ${split}`).toEqual([
        { event: 'message', data: undefined, id: undefined, retryMs: 50 },
        { event: 'a', data: '{"x":\n1}', id: '1', retryMs: undefined },
        { event: 'b', data: 'two', id: '2', retryMs: undefined },
      ]);
    }
  });
});

describe('openPty', () => {
  it('runs a terminal in a capsule: input, output, resize and the exit code', async () => {
    const created = await f.t.call('POST', '/v1/capsules', { token: f.user.token, body: {} });
    expect(created.status).toBe(202);
    await waitForCapsule(f.t, f.user.token, created.body.id, 'running');
    const pty = await openPty(
      { baseUrl, token: f.user.token, WebSocket, start: { cmd: '/bin/sh', cols: 90, rows: 30 } },
      created.body.id,
    );
    expect(pty.tag).toMatch(/^pty-/);
    let text = '';
    const seen = (needle: string) =>
      new Promise<void>((resolve) => {
        const check = () => text.includes(needle) && resolve();
        pty.onOutput((bytes) => {
          text += new TextDecoder().decode(bytes);
          check();
        });
        check();
      });
    pty.write('stty size; echo mark-$((6*7))\n');
    await seen('mark-42');
    expect(text).toContain('30 90');
    pty.resize(120, 40);
    pty.write('stty size\n');
    await seen('40 120');
    pty.write('exit 3\n');
    expect(await pty.exited).toBe(3);
    await f.t.call('DELETE', `/v1/capsules/${created.body.id}`, { token: f.user.token });
  }, 30_000);

  it('rejects when the capsule does not exist', async () => {
    const err = await openPty(
      { baseUrl, token: f.user.token, WebSocket },
      'cap_01J00000000000000000000000',
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
  });
});

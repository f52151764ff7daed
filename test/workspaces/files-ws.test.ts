import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { multipart } from '../support/multipart.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';
import { connectWs } from '../support/ws.ts';

let f: TaskFixture;
let wsId: string;
let capsuleId: string;

const call = (method: string, url: string, body?: unknown) =>
  f.t.call(method, url, { token: f.user.token, ...(body !== undefined ? { body } : {}) });

async function idle(id: string): Promise<Json> {
  const until = Date.now() + 30_000;
  for (;;) {
    const res = await call('GET', `/v1/workspaces/${id}`);
    if (res.body.status === 'idle' && res.body.current_task_id === null) return res.body;
    if (Date.now() > until) throw new Error(`workspace ${id} is still ${res.body.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  f = await startTasks();
  const agent = await f.agent();
  f.script([
    { tool: 'bash', args: { command: 'mkdir -p src && echo made > src/made.txt' } },
    { text: 'ok' },
    { text: 'Files' },
  ]);
  const first = await f.submit({ agent_id: agent.id, prompt: 'make a file', mode: 'session' });
  await f.finished(first.id);
  const ws = await idle(first.workspace_id);
  wsId = ws.id;
  capsuleId = ws.capsule_id;
});
afterAll(async () => {
  await f?.close();
});

describe('a workspace’s files', () => {
  it('uploads, lists, downloads and deletes files in /workspace, and archives it as a tar.gz', async () => {
    const body = multipart({ filename: 'data.csv', data: Buffer.from('a,b\n1,2\n') }, { path: 'in' });
    const up = await f.t.app.inject({
      method: 'POST',
      url: `/v1/workspaces/${wsId}/files`,
      headers: { authorization: `Bearer ${f.user.token}`, 'content-type': body.contentType },
      payload: body.payload,
    });
    expect(up.statusCode, up.body).toBe(201);
    expect(up.json()).toEqual({ path: 'in/data.csv' });

    const list = await call('GET', `/v1/workspaces/${wsId}/files`);
    expect(list.status).toBe(200);
    const paths = list.body.data.map((e: Json) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['in/data.csv', 'src/made.txt', 'src', 'in']));

    const down = await call('GET', `/v1/workspaces/${wsId}/files/in/data.csv`);
    expect(down.status).toBe(200);
    expect(String(down.body)).toBe('a,b\n1,2\n');

    const archive = await f.t.app.inject({
      method: 'GET',
      url: `/v1/workspaces/${wsId}/archive`,
      headers: { authorization: `Bearer ${f.user.token}` },
    });
    expect(archive.statusCode).toBe(200);
    expect(archive.headers['content-type']).toContain('application/gzip');
    const dir = mkdtempSync(join(tmpdir(), 'ws-archive-'));
    writeFileSync(join(dir, 'a.tar.gz'), archive.rawPayload);
    execFileSync('tar', ['-xzf', 'a.tar.gz'], { cwd: dir });
    expect(execFileSync('cat', [join(dir, 'in/data.csv')]).toString()).toBe('a,b\n1,2\n');
    expect(execFileSync('cat', [join(dir, 'src/made.txt')]).toString()).toBe('made\n');

    expect((await call('DELETE', `/v1/workspaces/${wsId}/files/in/data.csv`)).status).toBe(204);
    expect((await call('GET', `/v1/workspaces/${wsId}/files/in/data.csv`)).status).toBe(404);
  });

  it('refuses paths that lead outside /workspace: "..", absolute paths and symlinks', async () => {
    for (const path of ['..%2Fetc%2Fpasswd', 'src/..%2F..%2Fetc%2Fpasswd', '%2Fetc%2Fpasswd']) {
      const res = await call('GET', `/v1/workspaces/${wsId}/files/${path}`);
      expect(res.status, path).toBe(400);
      expect(res.body.error.code).toBe('invalid_path');
    }
    // A symlink the agent (or anyone in the capsule) made that points out of /workspace.
    const made = await call('POST', `/v1/capsules/${capsuleId}/exec`, {
      cmd: 'ln',
      args: ['-s', '/etc', '/workspace/out'],
    });
    expect(made.status).toBe(200);
    for (const [method, url] of [
      ['GET', `/v1/workspaces/${wsId}/files/out/passwd`],
      ['DELETE', `/v1/workspaces/${wsId}/files/out/hostname`],
    ] as const) {
      const res = await call(method, url);
      expect(res.status, url).toBe(400);
      expect(res.body.error.code).toBe('path_outside_workspace');
    }
    const body = multipart({ filename: 'x.txt', data: Buffer.from('x') }, { path: 'out' });
    const up = await f.t.app.inject({
      method: 'POST',
      url: `/v1/workspaces/${wsId}/files`,
      headers: { authorization: `Bearer ${f.user.token}`, 'content-type': body.contentType },
      payload: body.payload,
    });
    expect(up.statusCode).toBe(400);
    expect(up.json().error.code).toBe('path_outside_workspace');
  });
});

describe('the workspace WebSocket', () => {
  it('sends the log so far, takes a message (validated like the HTTP body) and sends its events live', async () => {
    await f.t.app.listen({ port: 0, host: '127.0.0.1' });
    const base = `ws://127.0.0.1:${(f.t.app.server.address() as AddressInfo).port}`;
    const log = await call('GET', `/v1/workspaces/${wsId}/events?limit=1000`);
    const socket = await connectWs(`${base}/v1/workspaces/${wsId}/ws?after_seq=0`, f.user.token);
    const lastSeq = log.body.data.at(-1).seq;
    await socket.next((fr) => fr.seq === lastSeq);
    expect(socket.frames.filter((fr) => fr.seq !== undefined)).toEqual(log.body.data);

    socket.send({ type: 'message', content: '' });
    const refused = await socket.next((fr) => fr.type === 'error');
    expect(refused.code).toBe('validation_failed');

    f.script([{ text: 'over the socket' }]);
    socket.send({ type: 'message', content: 'hi over ws' });
    const accepted = await socket.next((fr) => fr.type === 'message_accepted');
    expect(accepted.task).toMatchObject({ workspace_id: wsId, mode: 'session' });
    const text = await socket.next((fr) => fr.type === 'text' && fr.task_id === accepted.task.id, 30_000);
    expect(text.payload.text).toBe('over the socket');
    await socket.next(
      (fr) => fr.type === 'workspace' && fr.payload.status === 'idle' && fr.seq > text.seq,
      30_000,
    );
    const seqs = socket.frames.filter((fr) => fr.seq !== undefined).map((fr) => fr.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));

    socket.send({ type: 'cancel' });
    const none = await socket.next((fr) => fr.type === 'error' && fr.code === 'no_turn_running');
    expect(none.data).toContain('no turn');
    socket.ws.close();
  });
});

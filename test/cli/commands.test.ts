import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, startCliServer } from '../support/cli.ts';
import { PADDOCK_BIN } from '../support/process.ts';
import type { TaskFixture } from '../support/tasks.ts';

// One database is enough: the CLI drives the API, whose queries its own tests run on both.
//
// The compiled `paddock` CLI as a child process against a real listening
// server: `tasks logs -f` following a running task to its end (and resuming
// after the stream drops, through a proxy that cuts it), `playbooks`, `runs`,
// `keys` and `queues`: the human output, the `--json` output parsed, and the
// exit codes of docs/cli.md.

let f: TaskFixture;
let url: string;
let agent: Awaited<ReturnType<TaskFixture['agent']>>;
let env: CliServer['env'];
let paddock: CliServer['paddock'];
beforeAll(async () => {
  ({ f, url, env, paddock } = await startCliServer());
  agent = await f.agent({ agent: { name: 'cli-commands', tools: ['bash'] } });
}, 60_000);
afterAll(() => f.close());

/** A command left running: its output so far, a wait for a line, and its exit. */
function start(args: string[], vars = env()) {
  const child: ChildProcess = spawn(process.execPath, [PADDOCK_BIN, ...args], { env: vars, stdio: 'pipe' });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => {
    out.stdout += d;
  });
  child.stderr!.on('data', (d) => {
    out.stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return {
    child,
    out,
    exited,
    async until(pattern: RegExp, timeoutMs = 30_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out.stdout)) {
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`no ${pattern} in the output:\n${out.stdout}\n${out.stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

/** Lines that are one JSON object each (`tasks logs --json`). */
const jsonLines = (text: string) => lines(text).map((l) => JSON.parse(l));

/** The column headers and rows of a table the CLI printed (columns are two or more spaces apart). */
function table(stdout: string): { headers: string[]; rows: string[] } {
  const [head = '', ...rows] = lines(stdout);
  return { headers: head.split(/\s{2,}/), rows };
}

async function api(method: string, path: string, body?: unknown) {
  return f.t.call(method, path, { token: f.user.token, ...(body !== undefined ? { body } : {}) });
}

/**
 * A proxy in front of the server that cuts the first event stream it carries
 * after its first whole event (and half of what came with it), as a dropped
 * connection would; later requests pass through. It records each stream's
 * Last-Event-ID.
 */
async function droppingProxy(): Promise<{ url: string; streams: Array<string | undefined>; close(): void }> {
  const streams: Array<string | undefined> = [];
  let dropped = false;
  const server = http.createServer((req, res) => {
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    if (sse) streams.push(req.headers['last-event-id'] as string | undefined);
    const upstream = http.request(`${url}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (!sse || dropped) {
        up.pipe(res);
        return;
      }
      let seen = '';
      up.on('data', (chunk: Buffer) => {
        seen += chunk.toString('utf8');
        const first = /data: .*\n\n/.exec(seen);
        if (!first) return;
        dropped = true;
        const end = first.index + first[0].length;
        // The first event whole, then half of the next: a message cut off is not one.
        up.destroy();
        res.write(seen.slice(0, end + Math.floor((seen.length - end) / 2)), () => res.socket?.destroy());
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    streams,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe('paddock tasks logs -f', () => {
  it('follows a running task, one line an event as they come, and returns when it ends', async () => {
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'echo followed-$((20+1))' } },
      // The answer waits: the task is still running while its first events are already printed.
      { chunks: ['Followed ', 'to the end.'], delayMs: 2_500 },
    ]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'Follow me', mode: 'stream' });
    const logs = start(['tasks', 'logs', '-f', task.id]);
    await logs.until(/^← bash ok \(exit 0\)$/m);
    expect((await api('GET', `/v1/tasks/${task.id}`)).body.status).toBe('running');

    expect(await logs.exited, logs.out.stderr).toBe(0);
    const out = lines(logs.out.stdout);
    expect(out[0]).toBe('● queued');
    expect(out).toContain('● running');
    expect(out).toContain('→ bash {"command":"echo followed-$((20+1))"}');
    expect(out).toContain('    followed-21');
    // The streamed words come once, whole, in the turn's text (the deltas are not printed).
    expect(out.filter((l) => l.includes('to the end'))).toEqual(['Followed to the end.']);
    expect(out.at(-1)).toBe('● completed');
    expect(out.indexOf('● running')).toBeLessThan(out.indexOf('Followed to the end.'));
    expect(logs.out.stderr).toBe('');
  }, 60_000);

  it('resumes after a dropped stream with no event lost or repeated (--json: one event a line)', async () => {
    f.mock.reset();
    f.script([{ chunks: ['Resumed ', 'after ', 'the drop.'], delayMs: 1_500 }]);
    const proxy = await droppingProxy();
    try {
      const task = await f.submit({ agent_id: agent.id, prompt: 'Survive a drop', mode: 'stream' });
      const res = await paddock(['tasks', 'logs', task.id, '--follow', '--json'], env({ url: proxy.url }));
      expect(res.code, res.stderr).toBe(0);
      const events = jsonLines(res.stdout);
      const logged = await f.events(task.id);
      expect(events.map((e) => e.seq)).toEqual(logged.map((e) => e.seq));
      expect(events.map((e) => e.type)).toContain('text_delta');
      expect(events.at(-1)).toMatchObject({ type: 'status', payload: { status: 'completed' } });
      // The second stream asked for the events after the one the first stream delivered whole.
      expect(proxy.streams.length).toBeGreaterThanOrEqual(2);
      expect(proxy.streams[0]).toBeUndefined();
      expect(proxy.streams[1]).toBe(String(events[0].seq));
    } finally {
      proxy.close();
    }
  }, 60_000);

  it('stops following on Ctrl-C and leaves the task running', async () => {
    f.mock.reset();
    f.script([{ hang: true }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'Hang on', mode: 'stream' });
    await f.until(task.id, ['running']);
    const logs = start(['tasks', 'logs', '-f', task.id]);
    await logs.until(/^● running$/m);
    logs.child.kill('SIGINT');
    expect(await logs.exited).toBe(0);
    expect((await api('GET', `/v1/tasks/${task.id}`)).body.status).toBe('running');
    expect((await api('POST', `/v1/tasks/${task.id}/cancel`)).status).toBe(200);
  }, 60_000);

  it('stops quietly when what reads its output goes away (| head)', async () => {
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'echo more-to-come' } },
      { text: 'Written to nobody.', delayMs: 1_000 },
    ]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'Talk to a pipe' });
    const logs = start(['tasks', 'logs', '-f', task.id]);
    await logs.until(/^● queued$/m);
    // The reading end closes, as `head -1` does after its line: the next event's write fails.
    logs.child.stdout!.destroy();
    expect(await logs.exited).toBe(141);
    expect(logs.out.stderr).toBe('');
    expect((await f.until(task.id, ['completed', 'failed'])).status).toBe('completed');
  }, 60_000);

  it('exits 3 for a task that does not exist, with the error as JSON under --json', async () => {
    const res = await paddock(['tasks', 'logs', '-f', 'task_01J00000000000000000000000']);
    expect(res.code).toBe(3);
    expect(res.stderr).toMatch(/was not found \(404 not_found\)/);
    expect(res.stdout).toBe('');
    const json = await paddock(['tasks', 'logs', '-f', 'task_01J00000000000000000000000', '--json']);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { status: 404, code: 'not_found' } });
  }, 60_000);
});

describe('paddock playbooks', () => {
  it('lists playbooks, fires one and lists its runs', async () => {
    const made = await api('POST', '/v1/playbooks', {
      agent_id: agent.id,
      name: 'nightly digest',
      prompt: 'Write the digest',
      schedule: '0 3 * * *',
      enabled: true,
    });
    expect(made.status).toBe(201);
    const manual = await api('POST', '/v1/playbooks', {
      agent_id: agent.id,
      name: 'by hand',
      prompt: 'Do it now',
      trigger: 'manual',
    });
    expect(manual.status).toBe(201);

    const list = await paddock(['playbooks', 'list']);
    expect(list.code, list.stderr).toBe(0);
    const { headers, rows } = table(list.stdout);
    expect(headers).toEqual(['ID', 'NAME', 'TRIGGER', 'SCHEDULE', 'ENABLED', 'NEXT RUN']);
    const nightly = rows.find((r) => r.startsWith(made.body.id))!;
    expect(nightly).toMatch(/nightly digest\s+cron\s+0 3 \* \* \*\s+true\s+\d{4}-/);
    expect(rows.find((r) => r.startsWith(manual.body.id))).toMatch(/by hand\s+manual\s+false/);

    const json = await paddock(['playbooks', 'list', '--json']);
    const page = JSON.parse(json.stdout);
    expect(page.data.map((p: { id: string }) => p.id)).toEqual([manual.body.id, made.body.id]);
    expect(page.next_cursor).toBeNull();

    // One at a time: the next page's cursor is named on stderr, and --cursor asks for it.
    const first = await paddock(['playbooks', 'list', '--limit', '1']);
    expect(table(first.stdout).rows).toEqual([expect.stringMatching(new RegExp(`^${manual.body.id} `))]);
    const cursor = /^\(more: the same command with --cursor (\S+)\)$/m.exec(first.stderr)?.[1];
    expect(cursor, first.stderr).toBeDefined();
    const second = await paddock(['playbooks', 'list', '--limit', '1', '--cursor', cursor!]);
    expect(table(second.stdout).rows).toEqual([expect.stringMatching(new RegExp(`^${made.body.id} `))]);
    expect(second.stderr).toBe('');
    const secondJson = JSON.parse(
      (await paddock(['playbooks', 'list', '--json', '--cursor', cursor!])).stdout,
    );
    expect(secondJson).toMatchObject({ data: [{ id: made.body.id }], next_cursor: null });

    f.mock.reset();
    f.script([{ text: 'Done by hand.' }]);
    const fired = await paddock(['playbooks', 'fire', manual.body.id]);
    expect(fired.code, fired.stderr).toBe(0);
    const m = /^(pbr_\w+) (\w+)(?: \(task (task_\w+)\))?\n$/.exec(fired.stdout);
    expect(m, fired.stdout).not.toBeNull();
    const runId = m![1]!;

    // The run, listed once it has its task: its id, status, how it was fired and the task.
    let runs = { code: null as number | null, stdout: '', stderr: '' };
    await expect
      .poll(
        async () => {
          runs = await paddock(['playbooks', 'runs', manual.body.id, '--json']);
          return JSON.parse(runs.stdout).data[0]?.status;
        },
        { timeout: 30_000 },
      )
      .toBe('completed');
    const run = JSON.parse(runs.stdout).data[0];
    expect(run).toMatchObject({ id: runId, fired_by: 'manual', playbook_id: manual.body.id });
    const human = await paddock(['playbooks', 'runs', manual.body.id]);
    expect(table(human.stdout).headers).toEqual(['ID', 'STATUS', 'FIRED BY', 'TASK', 'COST', 'CREATED']);
    expect(table(human.stdout).rows[0]).toMatch(
      new RegExp(`^${runId}\\s+completed\\s+manual\\s+${run.task_id}\\s+\\$`),
    );

    const firedJson = await paddock(['playbooks', 'fire', manual.body.id, '--json']);
    expect(firedJson.code).toBe(0);
    expect(JSON.parse(firedJson.stdout)).toMatchObject({ playbook_id: manual.body.id, fired_by: 'manual' });
  }, 90_000);

  it('exits 3 for a playbook that does not exist and 2 for a bad --limit', async () => {
    const missing = await paddock(['playbooks', 'fire', 'pb_01J00000000000000000000000']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^paddock: .*not found \(404 not_found\)\n$/);
    expect((await paddock(['playbooks', 'runs', 'pb_01J00000000000000000000000', '--json'])).code).toBe(3);
    const bad = await paddock(['playbooks', 'list', '--limit', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit');
  }, 60_000);
});

describe('paddock runs', () => {
  it("lists the team's runs, filtered by agent and status, and shows one", async () => {
    f.mock.reset();
    f.script([{ text: 'A run of my own.' }]);
    const other = await f.agent({ agent: { name: 'cli-runs-other' } });
    const task = await f.submit({ agent_id: other.id, prompt: 'Make a run' });
    const ended = await f.until(task.id, ['completed', 'failed']);
    expect(ended.status).toBe('completed');

    const list = await paddock(['runs', 'list', '--agent', 'cli-runs-other']);
    expect(list.code, list.stderr).toBe(0);
    const { headers, rows } = table(list.stdout);
    expect(headers).toEqual(['ID', 'STATUS', 'AGENT', 'MODEL', 'STEPS', 'COST', 'STARTED']);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(
      new RegExp(`^${ended.run_id}\\s+completed\\s+${other.id}\\s+gpt-4o-mini\\S*\\s+1\\s+\\$`),
    );

    const json = JSON.parse((await paddock(['runs', 'list', '--json', '--status', 'completed'])).stdout);
    expect(json.data.length).toBeGreaterThanOrEqual(1);
    expect(json.data.every((r: { status: string }) => r.status === 'completed')).toBe(true);
    expect(json.data.map((r: { id: string }) => r.id)).toContain(ended.run_id);

    const got = await paddock(['runs', 'get', ended.run_id]);
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(new RegExp(`^id: +${ended.run_id}$`, 'm'));
    expect(got.stdout).toMatch(/^status: +completed$/m);
    const gotJson = JSON.parse((await paddock(['runs', 'get', ended.run_id, '--json'])).stdout);
    expect(gotJson).toMatchObject({ id: ended.run_id, agent_id: other.id, status: 'completed' });
  }, 60_000);

  it('exits 3 for an unknown run or agent, 2 for a status the API refuses', async () => {
    const missing = await paddock(['runs', 'get', 'run_01J00000000000000000000000', '--json']);
    expect(missing.code).toBe(3);
    expect(JSON.parse(missing.stdout).error).toMatchObject({ status: 404 });
    const noAgent = await paddock(['runs', 'list', '--agent', 'nobody-by-this-name']);
    expect(noAgent.code).toBe(3);
    expect(noAgent.stderr).toContain('no agent named "nobody-by-this-name"');
    const bad = await paddock(['runs', 'list', '--status', 'sideways', '--json']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout).error).toMatchObject({ status: 400 });
  }, 60_000);
});

describe('paddock keys', () => {
  it('makes a key shown once, lists it, and revokes it; a read key may not make keys', async () => {
    const made = await paddock(['keys', 'create', 'ci reader', '--scope', 'read']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/^pdk_\S+\n$/);
    const secret = made.stdout.trim();
    const id = /key (key_\w+) \(read\): shown once/.exec(made.stderr)?.[1];
    expect(id, made.stderr).toBeDefined();

    // The new key works, as far as its scope goes: a write is refused with exit 4.
    const asReader = env({ token: secret });
    expect((await paddock(['playbooks', 'list'], asReader)).code).toBe(0);
    const refused = await paddock(['keys', 'create', 'not allowed'], asReader);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/\(403 \w+\)/);

    const list = await paddock(['keys', 'list']);
    expect(list.code).toBe(0);
    const { headers, rows } = table(list.stdout);
    expect(headers).toEqual(['ID', 'NAME', 'PREFIX', 'SCOPES', 'STATUS', 'LAST USED']);
    expect(rows.find((r) => r.startsWith(id!))).toMatch(/ci reader\s+pdk_\S+\s+read\s+active\s+\d{4}-/);

    const several = JSON.parse(
      (await paddock(['keys', 'create', 'deployer', '--scope', 'read', '--scope', 'write', '--json'])).stdout,
    );
    expect(several.scopes).toEqual(['read', 'write']);
    expect(several.key).toMatch(/^pdk_/);
    const byDefault = JSON.parse((await paddock(['keys', 'create', 'plain', '--json'])).stdout);
    expect(byDefault.scopes).toEqual(['write']);
    const listed = JSON.parse((await paddock(['keys', 'list', '--json'])).stdout);
    expect(listed.data.map((k: { id: string }) => k.id)).toEqual(
      expect.arrayContaining([id, several.id, byDefault.id]),
    );
    // A list never shows a key's secret.
    expect(JSON.stringify(listed)).not.toContain(secret);

    const revoked = await paddock(['keys', 'revoke', id!]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe(`${id} revoked\n`);
    expect((await paddock(['playbooks', 'list'], asReader)).code).toBe(4);
    const again = JSON.parse((await paddock(['keys', 'revoke', several.id, '--json'])).stdout);
    expect(again).toMatchObject({ id: several.id, status: 'revoked' });
  }, 60_000);

  it('exits 2 for a scope the API does not know and 3 for a key that does not exist', async () => {
    const bad = await paddock(['keys', 'create', 'odd', '--scope', 'everything']);
    expect(bad.code).toBe(2);
    const missing = await paddock(['keys', 'revoke', 'key_01J00000000000000000000000']);
    expect(missing.code).toBe(3);
  }, 60_000);
});

describe('paddock queues', () => {
  it("lists the team's queues with their jobs counted by status", async () => {
    // A team of its own: no queue yet says so on stderr, and stdout stays empty.
    const other = await f.t.signup({ email: 'queues@example.com' });
    const otherKey = (await f.t.apiKey(other.token, ['write'])).key;
    const none = await paddock(['queues', 'list'], env({ token: otherKey }));
    expect(none.code).toBe(0);
    expect(none.stdout).toBe('');
    expect(none.stderr).toBe('(no queues)\n');
    expect(
      JSON.parse((await paddock(['queues', 'list', '--json'], env({ token: otherKey }))).stdout),
    ).toEqual({
      data: [],
      next_cursor: null,
    });

    const submit = (queue: string, type: string) =>
      f.t.call('POST', `/v1/queues/${queue}/jobs`, { token: otherKey, body: { type, payload: {} } });
    for (const type of ['resize', 'resize', 'crop']) expect((await submit('images', type)).status).toBe(201);
    const job = await submit('emails', 'send');
    expect(
      (await f.t.call('POST', `/v1/queues/emails/jobs/${job.body.id}/cancel`, { token: otherKey })).status,
    ).toBe(200);

    const list = await paddock(['queues', 'list'], env({ token: otherKey }));
    expect(list.code, list.stderr).toBe(0);
    const { headers, rows } = table(list.stdout);
    expect(headers).toEqual(['NAME', 'QUEUED', 'ACTIVE', 'COMPLETED', 'FAILED', 'CANCELLED']);
    expect(rows.map((r) => r.split(/\s+/))).toEqual([
      ['emails', '0', '0', '0', '0', '1'],
      ['images', '3', '0', '0', '0', '0'],
    ]);
    const json = JSON.parse((await paddock(['queues', 'list', '--json'], env({ token: otherKey }))).stdout);
    expect(json.data).toEqual([
      { name: 'emails', queued: 0, active: 0, completed: 0, failed: 0, cancelled: 1 },
      { name: 'images', queued: 3, active: 0, completed: 0, failed: 0, cancelled: 0 },
    ]);
  }, 60_000);

  it('exits 4 without a working token', async () => {
    const res = await paddock(['queues', 'list', '--json'], env({ token: 'pdk_not_a_key' }));
    expect(res.code).toBe(4);
    expect(JSON.parse(res.stdout).error).toMatchObject({ status: 401 });
  }, 60_000);
});

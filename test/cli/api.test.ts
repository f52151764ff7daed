import { spawn } from 'node:child_process';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, startCliServer } from '../support/cli.ts';
import { PADDOCK_BIN, tempDir } from '../support/process.ts';
import type { TaskFixture } from '../support/tasks.ts';

// One database is enough: the CLI drives the API, whose queries its own tests run on both.
//
// The compiled `paddock` CLI as a child process against a real listening
// server whose agents' provider key points at the mock LLM upstream: login,
// tasks run (result, cost, --json, Ctrl-C), exit codes, capsules exec.

let f: TaskFixture;
let url: string;
let key: string;
let agent: Awaited<ReturnType<TaskFixture['agent']>>;
let cliEnv: CliServer['env'];
let paddock: CliServer['paddock'];
beforeAll(async () => {
  ({ f, url, key, env: cliEnv, paddock } = await startCliServer());
  agent = await f.agent({ agent: { name: 'cli-writer' } });
}, 60_000);
afterAll(() => f.close());

describe('paddock login', () => {
  it('saves the server and token in a file only its owner can read, used by later commands; logout forgets it', async () => {
    const config = tempDir('cli-login');
    const env = cliEnv({ config, loggedOut: true });
    const refused = await paddock(['agents', 'list'], env);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('paddock login');

    const bad = await paddock(['login', '--url', url, '--token', 'pdk_nonsense'], env);
    expect(bad.code).toBe(4);

    const res = await paddock(['login', '--url', url, '--token', key], env);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const file = path.join(config, 'paddock', 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ url, token: key });

    const agents = await paddock(['agents', 'list', '--json'], env);
    expect(agents.code).toBe(0);
    expect(JSON.parse(agents.stdout).data.map((a: { name: string }) => a.name)).toContain('cli-writer');

    // A login over a file someone made readable: the new one is the owner's alone again.
    chmodSync(file, 0o644);
    expect((await paddock(['login', '--url', url, '--token', key], env)).code).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const out = await paddock(['logout'], env);
    expect(out.code).toBe(0);
    expect((await paddock(['agents', 'list'], env)).code).toBe(4);
  }, 60_000);

  it('signs in with e-mail and a piped password, keeping an API key that logout revokes', async () => {
    const config = tempDir('cli-password');
    const env = cliEnv({ config, loggedOut: true });
    const child = spawn(
      process.execPath,
      [PADDOCK_BIN, 'login', '--url', url, '--email', f.user.user.email],
      {
        env,
        stdio: 'pipe',
      },
    );
    child.stdin.end('correct horse battery\n');
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code, stderr).toBe(0);
    const saved = JSON.parse(readFileSync(path.join(config, 'paddock', 'config.json'), 'utf8'));
    expect(saved.token).toMatch(/^pdk_/);
    expect(saved.key_id).toMatch(/^key_/);
    const listed = await f.t.call('GET', '/v1/api-keys', { token: f.user.token });
    expect(listed.body.data.find((k: { id: string }) => k.id === saved.key_id)?.scopes).toEqual(['admin']);

    expect((await paddock(['logout', '--json'], env)).code).toBe(0);
    const after = await fetch(`${url}/v1/tasks`, { headers: { authorization: `Bearer ${saved.token}` } });
    expect(after.status).toBe(401);
  }, 60_000);
});

describe('paddock tasks run', () => {
  it('runs a task on an agent named by name, streams it, and ends with the result and the cost', async () => {
    f.mock.reset();
    f.script([
      { tool: 'bash', args: { command: 'echo from-the-capsule' } },
      { chunks: ['The answer ', 'is 42.'] },
    ]);
    const res = await paddock(['tasks', 'run', 'What is the answer?', '--agent', 'cli-writer']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe('The answer is 42.\n');
    expect(res.stderr).toContain('→ bash');
    // Streamed once as it came (the turn's whole text event repeats it, and is not shown again).
    expect(res.stderr.split('The answer is 42.').length - 1).toBe(1);
    expect(res.stderr).toMatch(/completed · cost \$\d/);
  }, 60_000);

  it('prints only the ended task as JSON with --json', async () => {
    f.mock.reset();
    f.script([{ text: 'Done.' }]);
    const res = await paddock(['tasks', 'run', 'Quick one', '--agent', agent.id, '--json']);
    expect(res.code, res.stderr).toBe(0);
    const task = JSON.parse(res.stdout);
    expect(task).toMatchObject({ status: 'completed', result: 'Done.', agent_id: agent.id });
    expect(typeof task.cost_usd).toBe('number');

    const got = await paddock(['tasks', 'get', task.id, '--json']);
    expect(JSON.parse(got.stdout).id).toBe(task.id);
    const logs = await paddock(['tasks', 'logs', task.id, '--json']);
    const events = logs.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events.at(-1)).toMatchObject({ type: 'status', payload: { status: 'completed' } });
  }, 60_000);

  it('exits 5 with the error when the task fails', async () => {
    f.mock.reset();
    f.script([{ status: 400, message: 'the request was bad' }]);
    const res = await paddock(['tasks', 'run', 'Fail please', '--agent', 'cli-writer']);
    expect(res.code).toBe(5);
    expect(res.stderr).toMatch(/failed · cost/);
    expect(res.stderr).toContain('error:');
  }, 60_000);

  it('cancels the task on Ctrl-C and exits 130', async () => {
    f.mock.reset();
    f.script([{ hang: true }]);
    const child = spawn(
      process.execPath,
      [PADDOCK_BIN, 'tasks', 'run', 'Take forever', '--agent', 'cli-writer'],
      {
        env: cliEnv(),
        stdio: 'pipe',
      },
    );
    let stderr = '';
    const queued = new Promise<string>((resolve) =>
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /task (task_\w+) queued/.exec(stderr);
        if (m) resolve(m[1]!);
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const taskId = await queued;
    await f.until(taskId, ['running']);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain('cancelling');
    const task = await f.t.call('GET', `/v1/tasks/${taskId}`, { token: f.user.token });
    expect(task.body.status).toBe('cancelled');
  }, 60_000);
});

describe('exit codes and errors', () => {
  it("exits 3 with the API's message for a task that does not exist; --json prints the error", async () => {
    const res = await paddock(['tasks', 'get', 'task_01J00000000000000000000000']);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain('task task_01J00000000000000000000000 was not found');
    const json = await paddock(['tasks', 'get', 'task_01J00000000000000000000000', '--json']);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { status: 404, code: 'not_found' } });
  }, 60_000);

  it('exits 2 for a command line it cannot use', async () => {
    const res = await paddock(['tasks', 'run', 'no agent given']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--agent');
  }, 60_000);
});

describe('paddock capsules', () => {
  it("creates a capsule, runs a command and a shell in it, and exits with the command's exit code", async () => {
    const created = await paddock(['capsules', 'create', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const capsule = JSON.parse(created.stdout);
    expect(capsule.status).toBe('running');

    const res = await paddock(['capsules', 'exec', capsule.id, 'echo out-$((6*7)); echo err >&2; exit 7']);
    expect(res.stdout).toBe('out-42\n');
    expect(res.stderr).toBe('err\n');
    expect(res.code).toBe(7);

    const args = await paddock(['capsules', 'exec', capsule.id, '--', 'ls', '-d', '/tmp']);
    expect(args.code).toBe(0);
    expect(args.stdout).toBe('/tmp\n');

    // The terminal, fed from a pipe (no raw mode off a terminal): its output, then the shell's exit code.
    const shell = spawn(
      process.execPath,
      [PADDOCK_BIN, 'capsules', 'shell', capsule.id, '--cmd', '/bin/sh'],
      {
        env: cliEnv(),
        stdio: 'pipe',
      },
    );
    let screen = '';
    shell.stdout.on('data', (d) => {
      screen += d;
    });
    shell.stdin.write('echo shell-$((2*3))\nexit 4\n');
    expect(await new Promise((resolve) => shell.on('exit', resolve))).toBe(4);
    expect(screen).toContain('shell-6');

    const listed = await paddock(['capsules', 'list']);
    expect(listed.stdout).toContain(capsule.id);
    expect((await paddock(['capsules', 'delete', capsule.id])).code).toBe(0);
  }, 60_000);
});

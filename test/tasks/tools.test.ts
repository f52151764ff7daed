import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CapsuleId } from '../../src/core/ids.ts';
import { type Principal, systemPrincipal } from '../../src/modules/identity/principal.ts';
import { toolCapsule } from '../../src/modules/tasks/tool-capsule.ts';
import { OUTPUT_LIMIT_CHARS, READ_LIMIT_BYTES } from '../../src/modules/tasks/tool-definitions.ts';
import {
  CapsuleGone,
  runTool,
  type ToolCapsule,
  type ToolContext,
  type ToolOutcome,
} from '../../src/modules/tasks/tools.ts';
import { collectOutputs, prepareWorkspace, WorkspaceError } from '../../src/modules/tasks/workspace.ts';
import { createTestApp, type TestApp } from '../support/app.ts';

// The built-in tools of a task's agent, each against a real capsule (the
// bubblewrap driver): what the model gets back, what it cannot reach, and
// the one error (CapsuleGone) that ends a task rather than going back to it.

let t: TestApp;
let principal: Principal;
let capsule: ToolCapsule;
const ctx: ToolContext = { envs: { API_TOKEN: 'tok-5f1c9a7e-secret' }, maxTimeoutSec: 600 };

async function runningCapsule(): Promise<CapsuleId> {
  const c = await t.services.capsules.create(principal, { memory_mb: 256, disk_size_mb: 64 });
  const id = c.id as CapsuleId;
  const running = await t.services.capsules.get(principal, id, { statuses: ['running'], timeoutMs: 15_000 });
  expect(running.status).toBe('running');
  return id;
}

beforeAll(async () => {
  t = await createTestApp({ start: new Date(), env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' } });
  const u = await t.signup();
  principal = systemPrincipal(u.team.id, 'task:test');
  capsule = toolCapsule(t.services.capsules, principal, await runningCapsule());
  await prepareWorkspace(capsule, []);
});
afterAll(() => t.close());

function call(name: string, args: unknown, context = ctx): Promise<ToolOutcome> {
  return runTool(
    capsule,
    { name, arguments: typeof args === 'string' ? args : JSON.stringify(args) },
    context,
  );
}

async function sh(command: string): Promise<string> {
  const r = await call('bash', { command });
  expect(r.ok, r.output).toBe(true);
  return r.output;
}

/** Host processes whose environment holds `name=value`. */
function holdersOf(name: string, value: string): Array<{ pid: number; uid: number; cmd: string }> {
  const out: Array<{ pid: number; uid: number; cmd: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`${name}=${value}`)) continue;
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]);
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      out.push({ pid: Number(entry), uid, cmd });
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out;
}

describe('bash', () => {
  it('runs in /workspace with the task’s secrets, and reports the exit code, stdout and stderr', async () => {
    const r = await call('bash', { command: 'pwd; echo "token=$API_TOKEN"; echo oops >&2; exit 3' });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(3);
    expect(r.output).toBe('exit code: 3\nstdout:\n/workspace\ntoken=tok-5f1c9a7e-secret\n\nstderr:\noops\n');
    const fine = await call('bash', { command: 'true' });
    expect(fine).toEqual({ ok: true, exitCode: 0, output: 'exit code: 0\nstdout: (empty)\nstderr: (empty)' });
  });

  it('sets the secrets on the capsule’s process only: no host process of Paddock’s holds them', async () => {
    const value = 'probe-7d2e41b0';
    const running = call(
      'bash',
      { command: 'sleep 3' },
      { envs: { PROBE_SECRET: value }, maxTimeoutSec: 60 },
    );
    let holders: ReturnType<typeof holdersOf> = [];
    const deadline = Date.now() + 5_000;
    const sleeping = () => holders.some((h) => h.cmd.startsWith('sleep'));
    while (!sleeping() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      holders = holdersOf('PROBE_SECRET', value);
    }
    // The command itself holds it, as the capsule's uid: the scan finds what it looks for.
    expect(sleeping()).toBe(true);
    for (const h of holders) {
      expect(h.uid, h.cmd).not.toBe(0);
      expect(h.pid).not.toBe(process.pid);
    }
    expect(Object.values(process.env)).not.toContain(value);
    expect((await running).ok).toBe(true);
  });

  it('kills a command at its timeout, capped by the task’s limit, and says so', async () => {
    const started = Date.now();
    const r = await call('bash', { command: 'echo before; sleep 37; echo finished', timeout_sec: 1 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(124);
    expect(r.output).toMatch(/^exit code: 124 \(timed out after 1 s and was killed\)\nstdout:\nbefore\n/);
    expect(r.output).not.toContain('finished');
    // What the command started stopped with it, not only bash.
    expect(await sh('ps -eo args')).not.toContain('sleep 37');
    // A command's own exit code 124, before its time is up, is not a timeout.
    expect((await call('bash', { command: 'exit 124' })).output).toBe(
      'exit code: 124\nstdout: (empty)\nstderr: (empty)',
    );
    // The task's limit wins over what the model asks for.
    const capped = await call(
      'bash',
      { command: 'sleep 30', timeout_sec: 3600 },
      { ...ctx, maxTimeoutSec: 1 },
    );
    expect(capped.output).toContain('timed out after 1 s');
  });

  it('cuts a long output to the limit, keeping its start and end, and gives the whole of it beside', async () => {
    const r = await call('bash', { command: 'seq 1 50000' });
    expect(r.ok).toBe(true);
    expect(r.output.length).toBeLessThan(OUTPUT_LIMIT_CHARS + 300);
    expect(r.output.startsWith('exit code: 0\nstdout:\n1\n2\n')).toBe(true);
    expect(r.output).toMatch(/\[… \d+ characters cut here: showing the first \d+ and the last \d+ of \d+;/);
    expect(r.output.trimEnd().endsWith('49999\n50000\n\nstderr: (empty)'.trimEnd())).toBe(true);
    expect(r.full).toContain('\n25000\n');
    expect(r.full?.length).toBeGreaterThan(OUTPUT_LIMIT_CHARS * 10);
  });

  it('shows output that is not UTF-8 with replacement characters', async () => {
    const r = await call('bash', { command: "printf 'a\\377b'" });
    expect(r.output).toContain('not valid UTF-8');
    expect(r.output).toContain('a\uFFFDb');
  });
});

describe('files', () => {
  it('writes a file with its parent directories (the agent’s own commands can change it) and reads it back', async () => {
    const w = await call('write_file', { path: 'notes/today/plan.md', content: 'line one\nline two\n' });
    expect(w).toEqual({ ok: true, output: 'wrote 18 bytes to /workspace/notes/today/plan.md' });
    expect(await call('read_file', { path: '/workspace/notes/today/plan.md' })).toEqual({
      ok: true,
      output: 'line one\nline two\n',
    });
    expect(
      await sh('echo three >> notes/today/plan.md && mkdir notes/today/more && cat notes/today/plan.md'),
    ).toContain('line two\nthree');
    expect((await call('read_file', { path: 'notes/empty' })).output).toBe(
      'no such file or directory: /workspace/notes/empty',
    );
    await call('write_file', { path: 'notes/empty', content: '' });
    expect((await call('read_file', { path: 'notes/empty' })).output).toBe(
      '(/workspace/notes/empty is empty)',
    );
  });

  it('refuses binary files, directories and missing files with a message', async () => {
    await sh("printf 'PK\\003\\004\\000\\001' > archive.zip");
    const binary = await call('read_file', { path: 'archive.zip' });
    expect(binary.ok).toBe(false);
    expect(binary.output).toMatch(/^\/workspace\/archive\.zip is a binary file .*Use bash/);
    const missing = await call('read_file', { path: 'missing.txt' });
    expect(missing).toEqual({ ok: false, output: 'no such file or directory: /workspace/missing.txt' });
    const dir = await call('read_file', { path: 'notes' });
    expect(dir).toEqual({ ok: false, output: '/workspace/notes is a directory' });
    const system = await call('write_file', { path: '/usr/bin/evil', content: 'x' });
    expect(system.ok).toBe(false);
    expect(system.output).toContain('system mount');
  });

  it('reads the start of a file over the read limit, and says how to read the rest', async () => {
    await sh(`head -c ${READ_LIMIT_BYTES + 5000} /dev/zero | tr '\\0' 'x' > big.txt`);
    const r = await call('read_file', { path: 'big.txt' });
    expect(r.ok).toBe(true);
    expect(r.output.startsWith('x'.repeat(OUTPUT_LIMIT_CHARS))).toBe(true);
    expect(r.output).toContain(`[cut here: showing the first ${OUTPUT_LIMIT_CHARS} of`);
    expect(r.output).toContain("sed -n '400,800p' /workspace/big.txt");
    expect(r.full).toContain(`[the file is longer than ${READ_LIMIT_BYTES} bytes: only its start was read]`);
  });

  it('keeps ../../etc/shadow inside the capsule', async () => {
    const host = readFileSync('/etc/shadow', 'utf8');
    const read = await call('read_file', { path: '../../etc/shadow' });
    // The path is the capsule's /etc/shadow, which its layer does not have.
    expect(read).toEqual({ ok: false, output: 'no such file or directory: /etc/shadow' });
    const viaBash = await call('bash', { command: 'cat ../../etc/shadow' });
    expect(viaBash.exitCode).toBe(1);
    expect(viaBash.output).toContain('No such file or directory');
    expect(viaBash.output).not.toContain(host.split('\n')[0]);
    // A write climbs no further than the capsule's root either.
    const marker = `paddock-tool-${process.pid}-${Date.now()}`;
    const w = await call('write_file', { path: `../../../../tmp/${marker}`, content: 'inside' });
    expect(w.output).toBe(`wrote 6 bytes to /tmp/${marker}`);
    expect(existsSync(`/tmp/${marker}`)).toBe(false);
    expect(await sh(`cat /tmp/${marker}`)).toContain('inside');
  });

  it('edits text that occurs exactly once, and says why otherwise', async () => {
    await call('write_file', { path: 'app.py', content: 'x = 1\ny = 2\nx = 1\nprint(x)\n' });
    const ambiguous = await call('edit_file', { path: 'app.py', old_text: 'x = 1', new_text: 'x = 3' });
    expect(ambiguous).toEqual({
      ok: false,
      output:
        'old_text occurs 2 times in /workspace/app.py; include more of the surrounding text so that it matches exactly one place.',
    });
    const missing = await call('edit_file', { path: 'app.py', old_text: 'z = 9', new_text: 'z = 0' });
    expect(missing.ok).toBe(false);
    expect(missing.output).toMatch(/^old_text was not found in \/workspace\/app\.py\./);
    const edited = await call('edit_file', {
      path: 'app.py',
      old_text: 'x = 1\nprint',
      new_text: "s = '$&'\nprint",
    });
    expect(edited).toEqual({ ok: true, output: 'replaced 1 occurrence in /workspace/app.py (at line 3)' });
    expect((await call('read_file', { path: 'app.py' })).output).toBe("x = 1\ny = 2\ns = '$&'\nprint(x)\n");
    const none = await call('edit_file', { path: 'nope.py', old_text: 'a', new_text: 'b' });
    expect(none.output).toBe('no such file or directory: /workspace/nope.py');
  });

  it('lists a directory two levels deep with types and sizes, links and FIFOs as what they are', async () => {
    await call('write_file', { path: 'tree/a.txt', content: 'hello' });
    await call('write_file', { path: 'tree/sub/b.txt', content: 'hi' });
    await call('write_file', { path: 'tree/sub/deeper/c.txt', content: 'not shown' });
    await sh('ln -s /etc tree/link && mkfifo tree/pipe');
    const r = await call('list_files', { path: 'tree' });
    expect(r.output).toBe(
      [
        '/workspace/tree (type, size in bytes, path; 2 levels deep):',
        'file           5  a.txt',
        'link           -  link',
        'other          -  pipe',
        'dir            -  sub/',
        'file           2  sub/b.txt',
        'dir            -  sub/deeper/',
      ].join('\n'),
    );
    // No arguments at all (as some models send them): /workspace itself.
    const root = await call('list_files', '');
    expect(root.ok).toBe(true);
    expect(root.output).toMatch(/^\/workspace \(type/);
    expect(root.output).toContain('\ndir            -  outputs/\n');
    expect((await call('list_files', { path: 'app.py' })).ok).toBe(false);
  });
});

describe('grep', () => {
  it('searches recursively with line numbers; a pattern starting with - is a pattern, not an option', async () => {
    await call('write_file', { path: 'src/main.c', content: 'int main() {\n  return -foo;\n}\n' });
    await call('write_file', { path: 'src/util.c', content: 'int foo = 1;\n' });
    const dash = await call('grep', { pattern: '-foo', path: 'src' });
    expect(dash).toEqual({ ok: true, exitCode: 0, output: '/workspace/src/main.c:2:  return -foo;' });
    const both = await call('grep', { pattern: 'fo+', path: 'src' });
    expect(both.output.split('\n').sort()).toEqual([
      '/workspace/src/main.c:2:  return -foo;',
      '/workspace/src/util.c:1:int foo = 1;',
    ]);
    // A would-be option as a pattern: searched for, not obeyed.
    const option = await call('grep', { pattern: '--help', path: 'src' });
    expect(option).toEqual({ ok: true, exitCode: 1, output: 'no matches for "--help" in /workspace/src' });
    const bad = await call('grep', { pattern: '(', path: 'src' });
    expect(bad.ok).toBe(false);
    expect(bad.output).toMatch(/^grep failed \(exit code 2\): .*(parenthes|\()/);
    const missing = await call('grep', { pattern: 'x', path: 'nowhere' });
    expect(missing.ok).toBe(false);
    expect(missing.output).toBe(
      'grep failed (exit code 2): grep: /workspace/nowhere: No such file or directory',
    );
    const outside = await call('grep', { pattern: '^user:', path: '/etc' });
    expect(outside.output).toContain('/etc/passwd:2:user:x:1000:1000::/home/user:/bin/bash');
    // A FIFO is skipped, not read (which would wait for a writer until the timeout).
    await sh('mkfifo src/pipe');
    expect((await call('grep', { pattern: 'x', path: 'src/pipe' })).exitCode).toBe(1);
  });

  it('shows at most 200 matching lines and says how many there were', async () => {
    await sh('seq 1 1000 | sed s/^/match-/ > many.txt');
    const r = await call('grep', { pattern: '^match-', path: 'many.txt' });
    expect(r.ok).toBe(true);
    const lines = r.output.split('\n');
    expect(lines).toHaveLength(201);
    expect(lines[0]).toBe('/workspace/many.txt:1:match-1');
    expect(lines[200]).toBe('[1000 matching lines; the first 200 are shown: narrow the pattern or the path]');
  });
});

describe('calls the model got wrong', () => {
  it('answers malformed JSON, missing, unknown and mistyped fields, and unknown tools with what to send', async () => {
    expect(await call('read_file', '{"path": ')).toEqual({
      ok: false,
      output: expect.stringMatching(
        /^The arguments of read_file are not valid JSON \(.+\)\. Send a JSON object: \{"path": string\}\.$/,
      ),
    });
    expect(await call('bash', {})).toEqual({
      ok: false,
      output:
        'Invalid arguments for bash: missing field "command". Expected {"command": string, "timeout_sec"?: integer}.',
    });
    expect((await call('write_file', { path: 'a', content: 'b', mode: 755 })).output).toBe(
      'Invalid arguments for write_file: unknown field "mode". Expected {"path": string, "content": string}.',
    );
    expect((await call('bash', { command: 'ls', timeout_sec: '10' })).output).toContain(
      '"timeout_sec" must be an integer',
    );
    expect((await call('bash', { command: '' })).output).toContain('"command" must not be empty');
    expect((await call('read_file', ['a.txt'])).output).toContain('the arguments must be a JSON object');
    expect((await call('read_file', { path: 'a\u0000b' })).output).toContain('must not contain NUL');
    expect(await call('rm_rf', { path: '/' })).toEqual({
      ok: false,
      output: 'There is no tool named "rm_rf". Use one of the tools you were given.',
    });
    // A name Object.prototype has is no tool either.
    expect((await call('constructor', {})).ok).toBe(false);
    expect(await call('submit_result', { result: 1 })).toEqual({
      ok: false,
      output: 'submit_result is handled by the task runner, not run as a tool.',
    });
  });
});

describe('workspace', () => {
  it('writes the inputs by name, and refuses names that are paths', async () => {
    const id = await runningCapsule();
    const c = toolCapsule(t.services.capsules, principal, id);
    await prepareWorkspace(c, [
      { name: 'data.csv', data: Buffer.from('a,b\n1,2\n') },
      { name: 'logo.png', data: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0]) },
    ]);
    expect((await c.readFile('/workspace/data.csv')).toString()).toBe('a,b\n1,2\n');
    expect(await c.readFile('/workspace/logo.png')).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0]));
    const listing = await c.list('/workspace', 1);
    expect(listing.map((e) => [e.name, e.type])).toEqual([
      ['data.csv', 'file'],
      ['logo.png', 'file'],
      ['outputs', 'directory'],
    ]);
    for (const name of ['../x', 'a/b', 'outputs', '..', '']) {
      await expect(prepareWorkspace(c, [{ name, data: Buffer.from('x') }])).rejects.toMatchObject({
        code: 'invalid_input_name',
      });
    }
    await expect(
      prepareWorkspace(c, [
        { name: 'same', data: Buffer.from('1') },
        { name: 'same', data: Buffer.from('2') },
      ]),
    ).rejects.toBeInstanceOf(WorkspaceError);
    await t.services.capsules.remove(principal, id);
  });

  it('collects every regular file under /workspace/outputs, recursively, without following symlinks', async () => {
    expect(await collectOutputs(capsule, { maxFiles: 10, maxBytes: 1000 })).toEqual([]);
    await call('write_file', { path: 'outputs/report.md', content: '# Report\n' });
    await call('write_file', { path: 'outputs/charts/2026/q1.svg', content: '<svg/>' });
    await sh('ln -s /etc/passwd outputs/passwd-link && mkfifo outputs/pipe && mkdir outputs/empty');
    const files = await collectOutputs(capsule, { maxFiles: 10, maxBytes: 1000 });
    expect(files.map((f) => ({ path: f.path, name: f.name, data: f.data.toString() }))).toEqual([
      { path: 'charts/2026/q1.svg', name: 'q1.svg', data: '<svg/>' },
      { path: 'report.md', name: 'report.md', data: '# Report\n' },
    ]);
    await expect(collectOutputs(capsule, { maxFiles: 1, maxBytes: 1000 })).rejects.toMatchObject({
      code: 'too_many_output_files',
      message: '/workspace/outputs holds 2 files; at most 1 are kept',
    });
    await expect(collectOutputs(capsule, { maxFiles: 10, maxBytes: 10 })).rejects.toMatchObject({
      code: 'outputs_too_large',
    });
    // An outputs directory swapped for a link to elsewhere is not followed.
    await sh('mv outputs real-outputs && ln -s /workspace/real-outputs outputs');
    await expect(collectOutputs(capsule, { maxFiles: 10, maxBytes: 1000 })).rejects.toMatchObject({
      code: 'outputs_not_a_directory',
    });
    await sh('rm outputs && mv real-outputs outputs');
  });
});

describe('on the process driver (nothing isolated)', () => {
  it('prepares the workspace, searches it and collects the outputs (paths given to commands are relative)', async () => {
    const p = await createTestApp({ env: { PADDOCK_SANDBOX_DRIVER: 'process' } });
    try {
      const u = await p.signup();
      const owner = systemPrincipal(u.team.id, 'task:test');
      const c = await p.services.capsules.create(owner, { memory_mb: 256, disk_size_mb: 64 });
      const id = c.id as CapsuleId;
      await p.services.capsules.get(owner, id, { statuses: ['running'], timeoutMs: 15_000 });
      const unisolated = toolCapsule(p.services.capsules, owner, id);
      await prepareWorkspace(unisolated, [{ name: 'in.txt', data: Buffer.from('needle\n') }]);
      const run = (name: string, args: unknown) =>
        runTool(unisolated, { name, arguments: JSON.stringify(args) }, ctx);
      expect(await run('grep', { pattern: 'needle' })).toEqual({
        ok: true,
        exitCode: 0,
        output: '/workspace/in.txt:1:needle',
      });
      expect((await run('bash', { command: 'cat in.txt && echo out > outputs/o.txt' })).ok).toBe(true);
      const files = await collectOutputs(unisolated, { maxFiles: 5, maxBytes: 100 });
      expect(files.map((f) => f.path)).toEqual(['o.txt']);
    } finally {
      await p.close();
    }
  });
});

describe('a capsule that is gone', () => {
  it('throws CapsuleGone from every tool, for the runner to fail the task', async () => {
    const id = await runningCapsule();
    const c = toolCapsule(t.services.capsules, principal, id);
    expect((await runTool(c, { name: 'bash', arguments: '{"command":"true"}' }, ctx)).ok).toBe(true);
    await t.services.capsules.remove(principal, id);
    for (const [name, args] of [
      ['bash', { command: 'true' }],
      ['read_file', { path: 'a' }],
      ['write_file', { path: 'a', content: '' }],
      ['list_files', {}],
      ['grep', { pattern: 'a' }],
    ] as const) {
      const err = await runTool(c, { name, arguments: JSON.stringify(args) }, ctx).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(CapsuleGone);
      expect((err as CapsuleGone).code).toBe('capsule_not_running');
    }
    await expect(collectOutputs(c, { maxFiles: 1, maxBytes: 1 })).rejects.toBeInstanceOf(CapsuleGone);
    // A capsule of another team is not found: gone too, as far as the task can tell.
    const other = await t.signup();
    const stranger = toolCapsule(t.services.capsules, systemPrincipal(other.team.id, 'task:x'), id);
    await expect(runTool(stranger, { name: 'list_files', arguments: '{}' }, ctx)).rejects.toMatchObject({
      name: 'CapsuleGone',
      code: 'capsule_not_found',
    });
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { connectWs, output } from '../support/ws.ts';

// Finding 1 of the security review: the environment variables of an exec
// call or a terminal reached the launchers that still run as host root, so
// LD_PRELOAD ran a library of the attacker's as uid 0 with every capability.
// Here: the same attacks, the invariant behind the fix (no root process ever
// holds a caller's variable), the clean environment capsule processes start
// with, and the seccomp filter they run under.

// A library whose constructor, when it runs as root, creates the file named by PWN_MARK.
const MARKER_LIBRARY = `
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
  const char *path = getenv("PWN_MARK");
  if (path == 0 || geteuid() != 0) return;
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd >= 0) { (void)!write(fd, "root\\n", 5); close(fd); }
}
`;

let t: TestApp;
let u: SignedUpUser;
let capsuleId: string;
let wsBase: string;
let scratch: string;
let library: string;
beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'paddock-escape-'));
  execFileSync('chmod', ['755', scratch]);
  writeFileSync(path.join(scratch, 'mark.c'), MARKER_LIBRARY);
  library = path.join(scratch, 'mark.so');
  execFileSync('cc', ['-shared', '-fPIC', '-o', library, path.join(scratch, 'mark.c')]);

  t = await createTestApp({ start: new Date(), env: { PADDOCK_SANDBOX_DRIVER: 'bwrap' } });
  u = await t.signup();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  wsBase = `ws://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  const created = await api('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
  expect(created.status, JSON.stringify(created.body)).toBe(202);
  capsuleId = created.body.id;
  await waitForCapsule(t, u.token, capsuleId, 'running');
});
afterAll(async () => {
  await api('DELETE', `/v1/capsules/${capsuleId}`);
  await t.services.capsules.settled();
  await t.close();
  rmSync(scratch, { recursive: true, force: true });
});

function api(method: string, url: string, body?: unknown) {
  return t.call(method, url, { token: u.token, ...(body !== undefined ? { body } : {}) });
}

async function sh(line: string, envs?: Record<string, string>) {
  const res = await api('POST', `/v1/capsules/${capsuleId}/exec`, { cmd: line, ...(envs ? { envs } : {}) });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { stdout: string; stderr: string; exit_code: number };
}

/** Host processes whose environment holds `name=value`, with their real uid. */
function holdersOf(name: string, value: string): Array<{ pid: number; uid: number; cmd: string }> {
  const wanted = `${name}=${value}`;
  const out: Array<{ pid: number; uid: number; cmd: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!environ.includes(wanted)) continue;
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] ?? '';
      out.push({ pid: Number(entry), uid, cmd });
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out;
}

async function until<T>(probe: () => T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('gave up waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A background exec whose process holds `PADDOCK_PROBE=value` while it runs. */
const probe = (value: string) => ({
  cmd: 'sleep',
  args: ['30'],
  background: true,
  tag: 'env-probe',
  envs: { PADDOCK_PROBE: value },
});

/** Waits for the process given `PADDOCK_PROBE=value` to run, and checks that no root process holds the variable. */
async function onlyUnprivilegedHold(value: string): Promise<void> {
  const holders = await until(() => {
    const found = holdersOf('PADDOCK_PROBE', value);
    return found.length > 0 ? found : undefined;
  });
  // The process itself has it, as the capsule's own uid: the scan sees what it looks for.
  expect(holders.some((h) => /(^|\/)sleep$/.test(h.cmd))).toBe(true);
  for (const h of holders) expect(h.uid, `${h.cmd} (pid ${h.pid})`).not.toBe(0);
}

describe('a caller-supplied environment never reaches a privileged process', () => {
  it('exec: LD_PRELOAD naming a library on the host is refused, and nothing runs it as root', async () => {
    const marker = path.join(scratch, 'exec-marker');
    const res = await api('POST', `/v1/capsules/${capsuleId}/exec`, {
      cmd: 'true',
      envs: { LD_PRELOAD: library, PWN_MARK: marker },
    });
    // Before the fix the launcher's shell, root on the host, loaded the library and made the file.
    expect(existsSync(marker)).toBe(false);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(Object.keys(res.body.error.details.fields)).toContain('envs.LD_PRELOAD');
  });

  it('terminal: LD_PRELOAD naming a library the capsule wrote is refused, and nothing runs it as root', async () => {
    const so = readFileSync(library).toString('base64');
    expect((await sh(`printf %s '${so}' | base64 -d > /tmp/mark.so && echo ok`)).stdout).toBe('ok\n');
    const s = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/pty`, u.token);
    s.send({
      type: 'start',
      cmd: '/bin/true',
      envs: { LD_PRELOAD: '/tmp/mark.so', PWN_MARK: '/etc/pwned' },
    });
    const first = await s.next((f) => f.type === 'error' || f.type === 'exit');
    // /etc in the layer is root's: only a process running as root could have made the file
    // (before the fix: setsid, root in the capsule's mounts, loaded the capsule's library).
    expect((await sh('test -e /etc/pwned; echo $?')).stdout).toBe('1\n');
    expect(first).toMatchObject({ type: 'error', code: 'validation_failed', fatal: true });
    expect(Object.keys(first.fields)).toContain('envs.LD_PRELOAD');
    await s.closedNow();
  });

  it('exec/stream: a refused variable is an error frame, and nothing starts', async () => {
    const s = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/exec/stream`, u.token);
    s.send({ type: 'start', cmd: 'echo', args: ['ran'], envs: { LD_AUDIT: '/tmp/mark.so' } });
    const err = await s.next((f) => f.type === 'error');
    // The same validator and answer as the HTTP body's (exec, above).
    expect(err.code).toBe('validation_failed');
    expect(Object.keys(err.fields)).toContain('envs.LD_AUDIT');
    await s.closedNow();
    expect(s.frames.some((f) => f.type === 'start')).toBe(false);
    expect(output(s.frames)).toBe('');
  });

  it('frames are held to the HTTP input rules: NUL, lone surrogates and deep nesting are refused, nothing starts', async () => {
    const s = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/exec/stream`, u.token);
    s.ws.send('{"type":"start","cmd":"echo","args":["a\\u0000b"]}');
    const nul = await s.next((f) => f.type === 'error');
    expect(nul).toMatchObject({
      code: 'validation_failed',
      fields: { 'args.0': expect.stringMatching(/NUL/) },
    });
    s.ws.send('{"type":"start","cmd":"echo","args":["\\ud800"]}');
    await s.next((f) => f.type === 'error' && f.fields?.['args.0']?.includes('surrogate'));
    s.ws.send(`{"type":"start","cmd":"echo","x":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    await s.next((f) => f.type === 'error' && f.fields?.frame?.includes('deeper'));
    expect(s.frames.some((f) => f.type === 'start')).toBe(false);
    // The socket still takes a good frame afterwards.
    s.send({ type: 'start', cmd: 'echo', args: ['fine'] });
    await s.next((f) => f.type === 'exit');
    expect(output(s.frames)).toBe('fine\n');
  });

  it('names must be upper case, digits and "_", and never LD_*: 400 naming each', async () => {
    for (const name of ['lower', 'LD_LIBRARY_PATH', '1ABC', 'A=B', 'A-B', 'A B', '']) {
      const res = await api('POST', `/v1/capsules/${capsuleId}/exec`, {
        cmd: 'true',
        envs: { [name]: 'x' },
      });
      expect(res.status, name).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.message).toMatch(/envs/);
    }
    const fine = await sh('echo "$GOOD_NAME_1"', { GOOD_NAME_1: 'kept' });
    expect(fine.stdout).toBe('kept\n');
  });

  it('the launchers (host root) never hold a caller variable; only the process in the capsule does', async () => {
    const canary = `canary-${Date.now()}`;
    const started = await api('POST', `/v1/capsules/${capsuleId}/exec`, probe(canary));
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const terminal = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/pty`, u.token);
    terminal.send({
      type: 'start',
      cmd: '/bin/sleep',
      args: ['30'],
      envs: { PADDOCK_PROBE: `${canary}-pty` },
    });
    await terminal.next((f) => f.type === 'started');
    try {
      for (const value of [canary, `${canary}-pty`]) await onlyUnprivilegedHold(value);
    } finally {
      terminal.send({ type: 'kill' });
      await api('DELETE', `/v1/capsules/${capsuleId}/processes/env-probe`);
    }
  });
});

describe('a spare’s first command, through the launcher started ahead', () => {
  // A spare waits with a launcher already in the capsule (its privileges dropped); the first
  // command's environment travels to it on a pipe. The same invariant must hold.
  let warm: TestApp;
  let owner: SignedUpUser;
  const call = (method: string, url: string, body?: unknown) =>
    warm.call(method, url, { token: owner.token, ...(body !== undefined ? { body } : {}) });
  async function fromSpare(): Promise<string> {
    const host = warm.services.capsules.host((await call('GET', '/v1/hosts')).body.data[0].id) as unknown as {
      warmSpares(): number;
    };
    await until(() => (host.warmSpares() === 1 ? true : undefined), 20_000);
    const created = await call('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
    expect(created.status).toBe(202);
    // Running at the first read: it was a spare.
    expect((await call('GET', `/v1/capsules/${created.body.id}`)).body.status).toBe('running');
    return created.body.id;
  }
  beforeAll(async () => {
    warm = await createTestApp({
      start: new Date(),
      env: { PADDOCK_SANDBOX_DRIVER: 'bwrap', PADDOCK_SANDBOX_WARM: '1' },
    });
    owner = await warm.signup();
    // The first create of a shape starts the spares of that shape.
    const first = await call('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
    await waitForCapsule(warm, owner.token, first.body.id, 'running');
  });
  afterAll(async () => {
    await warm.services.capsules.settled();
    await warm.close();
  });

  it('runs with no privileges, under the filter, with exactly its own environment', async () => {
    const id = await fromSpare();
    const res = await call('POST', `/v1/capsules/${id}/exec`, {
      cmd: 'sh',
      args: ['-c', 'grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status; env | cut -d= -f1 | sort'],
      envs: { GIVEN: 'yes' },
    });
    expect(res.status).toBe(200);
    expect(res.body.stdout).toBe(
      'CapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nGIVEN\nHOME\nLANG\nLOGNAME\nPATH\nPWD\nSHELL\nUSER\n',
    );
  });

  it('no host root process ever holds its variables; LD_PRELOAD is refused as for any exec', async () => {
    const id = await fromSpare();
    const refused = await call('POST', `/v1/capsules/${id}/exec`, {
      cmd: 'true',
      envs: { LD_PRELOAD: library, PWN_MARK: path.join(scratch, 'spare-marker') },
    });
    expect(refused.status).toBe(400);
    expect(existsSync(path.join(scratch, 'spare-marker'))).toBe(false);
    const canary = `canary-spare-${Date.now()}`;
    const started = await call('POST', `/v1/capsules/${id}/exec`, probe(canary));
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    try {
      await onlyUnprivilegedHold(canary);
    } finally {
      await call('DELETE', `/v1/capsules/${id}/processes/env-probe`);
    }
  });
});

describe('capsule processes start with a clean environment', () => {
  it("no process in the capsule sees the server's working directory or environment", async () => {
    const all = await sh('cat /proc/[0-9]*/environ | tr "\\0" "\\n"');
    expect(all.exit_code).toBe(0);
    expect(all.stdout).not.toContain(process.cwd());
    const capsules = new Set(['PATH', 'LANG', 'HOME', 'SHELL', 'USER', 'LOGNAME', 'TERM', 'PWD']);
    for (const [name, value] of Object.entries(process.env)) {
      if (capsules.has(name) || !value || value.length < 4) continue;
      expect(all.stdout, name).not.toContain(`${name}=${value}`);
    }
    // bwrap's reaper, pid 1 inside, keeps the environment it was started with.
    const init = (await sh('tr "\\0" "\\n" < /proc/1/environ')).stdout.split('\n').filter(Boolean);
    expect(init.sort()).toEqual(['PATH=/usr/bin:/bin', 'PWD=/']);
  });

  it('a process gets the capsule user’s variables and the ones it was given, nothing else', async () => {
    // Run as given (args: no shell between, which would add PWD of its own).
    const res = await api('POST', `/v1/capsules/${capsuleId}/exec`, {
      cmd: 'env',
      args: [],
      envs: { GIVEN: 'yes' },
    });
    expect(res.status).toBe(200);
    const env = res.body as { stdout: string };
    const names = env.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.slice(0, line.indexOf('=')))
      .sort();
    expect(names).toEqual(['GIVEN', 'HOME', 'LANG', 'LOGNAME', 'PATH', 'SHELL', 'USER']);
  });
});

describe('the seccomp filter', () => {
  // ptrace(PTRACE_TRACEME), keyctl(KEYCTL_GET_KEYRING_ID, session), userfaultfd(UFFD_USER_MODE_ONLY),
  // io_uring_setup(1, params): each works for an unprivileged process without the filter.
  const NUMBERS: Record<string, number[]> = { x64: [101, 250, 323, 425], arm64: [117, 219, 282, 425] };
  const probe = (nr: number[]) =>
    [
      'my $p = "\\0" x 120;',
      `my @calls = (sub { syscall(${nr[0]}, 0, 0, 0, 0) }, sub { syscall(${nr[1]}, 0, -3, 0) },`,
      `  sub { syscall(${nr[2]}, 1) }, sub { syscall(${nr[3]}, 1, $p) });`,
      'print join(" ", map { $_->() < 0 ? "errno" . ($! + 0) : "ok" } @calls), "\\n";',
    ].join('\n');

  it('is on for every process: exec, background, terminal and the init', async () => {
    expect((await sh('grep ^Seccomp: /proc/self/status')).stdout).toBe('Seccomp:\t2\n');
    expect((await sh('grep ^Seccomp: /proc/2/status')).stdout).toBe('Seccomp:\t2\n');
    const s = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/exec/stream`, u.token);
    s.send({ type: 'start', cmd: 'grep', args: ['^Seccomp:', '/proc/self/status'] });
    await s.next((f) => f.type === 'exit');
    expect(output(s.frames)).toBe('Seccomp:\t2\n');
    const terminal = await connectWs(`${wsBase}/v1/capsules/${capsuleId}/pty`, u.token);
    terminal.send({ type: 'start', cmd: '/bin/grep', args: ['^Seccomp:', '/proc/self/status'] });
    await terminal.next((f) => f.type === 'exit');
    const text = terminal.frames
      .filter((f) => f.type === 'output')
      .map((f) => Buffer.from(f.data, 'base64').toString('utf8'))
      .join('');
    expect(text).toContain('Seccomp:\t2');
  });

  it('refuses what capsules never need with EPERM, calls that work without it', async () => {
    const nr = NUMBERS[process.arch];
    expect(nr, `no system call numbers for ${process.arch}`).toBeDefined();
    // Without the filter, as an unprivileged user on the host, every call works: the probe can tell.
    const outside = execFileSync('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      'perl',
      '-e',
      probe(nr!),
    ]).toString();
    expect(outside).toBe('ok ok ok ok\n');
    const inside = await sh(`perl -e '${probe(nr!)}'`);
    expect(inside.stdout).toBe('errno1 errno1 errno1 errno1\n');
  });
});

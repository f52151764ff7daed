import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../src/modules/sandboxes/drivers/bwrap.ts';
import type { CapsuleHandle } from '../../src/modules/sandboxes/drivers/types.ts';
import {
  CapsuleTracker,
  collect,
  driverError,
  eventually,
  LIMITS,
  run,
  sh,
  waitForOutput,
} from './driver-helpers.ts';

// The bwrap driver on this machine, for real: every isolation claim is
// checked by trying to break it from inside a capsule.

let driver: BwrapDriver;
const capsules = new CapsuleTracker(() => driver, 'bwrap');
let capsule: CapsuleHandle;

beforeAll(async () => {
  try {
    driver = new BwrapDriver(await BwrapDriver.probe());
  } catch (err) {
    throw new Error(
      `the bwrap driver cannot run here (${(err as Error).message}): install bubblewrap (apt-get install bubblewrap) — these tests do not skip`,
    );
  }
  capsule = await capsules.create({ envs: { CAP_ENV: 'from-capsule', OVERRIDE: 'capsule' } });
});

afterAll(async () => {
  await capsules.destroyAll();
});

/** Host processes of `uid` (zombies too, unless told: one is dead, only its parent has yet to reap it). */
function hostPidsOfUid(uid: number, zombies = true): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      if (!zombies && /^State:\s*Z/m.test(status)) continue;
      if (Number(/^Uid:\s*(\d+)/m.exec(status)?.[1]) === uid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

const layerUid = (dir: string) => statSync(path.join(dir, 'root', 'home', 'user')).uid;
const mountInfo = () => readFileSync('/proc/self/mountinfo', 'utf8');

describe('bwrap driver: processes', () => {
  it('reports its isolation and what it cannot enforce here', () => {
    expect(driver.isolation).toBe('bwrap');
    expect(capsule.isolation).toBe('bwrap');
    expect(Array.isArray(driver.warnings)).toBe(true);
  });

  it('runs a command with its arguments, stdout, stderr and exit code', async () => {
    const r = await run(capsule, 'printf', ['%s|', 'a', 'b c', '$HOME']);
    expect(r).toEqual({ code: 0, stdout: 'a|b c|$HOME|', stderr: '' });
    const s = await sh(capsule, 'echo out; echo err >&2; exit 7');
    expect(s).toEqual({ code: 7, stdout: 'out\n', stderr: 'err\n' });
  });

  it('exits 127 for a missing command and 128+9 when killed', async () => {
    const missing = await run(capsule, 'no-such-command-here');
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/not found/);
    const proc = capsule.spawn({ cmd: 'sleep', args: ['30'] });
    await proc.started;
    expect(proc.pid).toBeGreaterThan(2);
    proc.kill('SIGKILL');
    expect(await proc.exited).toBe(137);
  });

  it('sets the environment (capsule envs, then the process’s) and the working directory', async () => {
    const r = await collect(
      capsule.spawn({
        cmd: 'sh',
        args: ['-c', 'env; pwd; id -u; id -un'],
        envs: { OVERRIDE: 'process' },
        cwd: '/tmp',
      }),
    );
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines).toContain('CAP_ENV=from-capsule');
    expect(lines).toContain('OVERRIDE=process');
    expect(lines).toContain('HOME=/home/user');
    expect(lines).toContain('USER=user');
    expect(lines).toContain('PATH=/usr/local/bin:/usr/bin:/bin');
    expect(lines.slice(-4, -1)).toEqual(['/tmp', '1000', 'user']);
    // Nothing of the host's own environment leaks in.
    expect(r.stdout).not.toMatch(/VITEST|NODE_OPTIONS/);
    expect((await run(capsule, 'pwd')).stdout).toBe('/home/user\n');
  });

  it('passes stdin through and closes it', async () => {
    const proc = capsule.spawn({ cmd: 'sh', args: ['-c', 'cat; echo "[eof]"'] });
    proc.write('hello ');
    proc.write(Buffer.from('world\n'));
    proc.end();
    expect(await collect(proc)).toEqual({ code: 0, stdout: 'hello world\n[eof]\n', stderr: '' });
  });

  it('runs a terminal session: input, output, resize', async () => {
    const term = capsule.spawn({ cmd: 'sh', pty: { cols: 80, rows: 24 } });
    term.stdout.resume();
    // The terminal is the host's pty: a tty (isatty) whose name is not in the capsule's own /dev/pts.
    term.write('stty size; [ -t 0 ] && [ -t 1 ] && echo "is a tty"\n');
    await waitForOutput(term, /24 80[\s\S]*is a tty/);
    term.resize(100, 30);
    term.write('stty size\n');
    await waitForOutput(term, /30 100/);
    // Job control works: the shell leads a session of its own inside the capsule, with this terminal.
    term.write('sleep 0.1 & jobs; wait; echo "sum=$((40 + 2))"; exit 3\n');
    const last = await waitForOutput(term, /sum=42/);
    expect(last).toMatch(/Running/);
    expect(last).not.toMatch(/Cannot set tty process group|no job control/i);
    expect(await term.exited).toBe(3);
  });

  it('lists a background process and signals it by its capsule pid', async () => {
    const bg = capsule.spawn({ cmd: 'sleep', args: ['1234'] });
    await bg.started;
    const listed = await capsule.processes();
    expect(listed).toContainEqual({ pid: bg.pid, cmd: 'sleep', args: ['1234'] });
    // The driver's own processes (bwrap's reaper, the init) are not the user's to see or kill.
    expect(listed.map((p) => p.pid)).not.toContain(1);
    expect(capsule.signal(1, 'SIGKILL')).toBe(false);
    expect(capsule.signal(2, 'SIGKILL')).toBe(false);
    expect(capsule.signal(99_999, 'SIGTERM')).toBe(false);
    expect(capsule.signal(bg.pid, 'SIGTERM')).toBe(true);
    expect(await bg.exited).toBe(128 + 15);
    expect((await capsule.processes()).map((p) => p.pid)).not.toContain(bg.pid);
    // A process started from inside is listed too.
    const inner = capsule.spawn({ cmd: 'sh', args: ['-c', 'sleep 4321 & wait'] });
    await eventually(
      async () => (await capsule.processes()).some((p) => p.args[0] === '4321'),
      5_000,
      'inner sleep',
    );
    inner.kill('SIGKILL');
    await inner.exited;
    const stray = (await capsule.processes()).find((p) => p.args[0] === '4321');
    if (stray) capsule.signal(stray.pid, 'SIGKILL');
  });

  it('reports the exit of a process stopped and continued from inside', async () => {
    const proc = capsule.spawn({ cmd: 'sh', args: ['-c', 'kill -STOP $$; echo continued'] });
    await proc.started;
    await eventually(
      async () => (await sh(capsule, `grep State /proc/${proc.pid}/status`)).stdout.includes('stopped'),
      5_000,
      'the process to stop',
    );
    await sh(capsule, `kill -CONT ${proc.pid}`);
    expect(await collect(proc)).toEqual({ code: 0, stdout: 'continued\n', stderr: '' });
  });

  it('reports usage', async () => {
    await sh(capsule, 'head -c 3000000 /dev/urandom > /home/user/usage.bin');
    const u = await capsule.usage();
    expect(u.cpuNs).toBeGreaterThan(0);
    expect(u.memBytes).toBeGreaterThan(0);
    expect(u.diskBytes).toBeGreaterThanOrEqual(3_000_000);
    await capsule.remove('/home/user/usage.bin');
  });
});

describe('bwrap driver: a launcher started ahead (a spare’s first command)', () => {
  const statusOf = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');
  const gone = (pid: number) => !existsSync(`/proc/${pid}`) || /^State:\s*Z/m.test(statusOf(pid));

  /** Host pid of the launcher's last step, waiting in the capsule (as the capsule's uid) for its command. */
  function waitingLauncher(c: CapsuleHandle): Promise<number> {
    const uid = layerUid(path.join(capsules.base, c.id));
    return eventually(
      async () =>
        hostPidsOfUid(uid, false).find(
          (pid) =>
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/perl\0') &&
            /^Seccomp:\s*2/m.test(statusOf(pid)),
        ),
      5_000,
      'the launcher to wait in the capsule',
    );
  }

  it('runs the next piped command as any launch would: args, environment, directory, stdin, exit code', async () => {
    const c = await capsules.create({ envs: { CAP_ENV: 'from-capsule', OVERRIDE: 'capsule' } });
    c.standBy?.();
    const waiting = await waitingLauncher(c);
    // While it waits it is none of the user's processes.
    expect(await c.processes()).toEqual([]);
    expect(c.signal(3, 'SIGKILL')).toBe(false);
    const proc = c.spawn({
      cmd: 'sh',
      args: ['-c', 'printf "[%s]" "$@"; echo; env; pwd; cat; echo "pid $$"', 'sh', 'a b', '', ''],
      envs: { OVERRIDE: 'process' },
      cwd: '/tmp',
    });
    proc.write('from stdin\n');
    proc.end();
    const r = await collect(proc);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('[a b][][]');
    expect(lines).toContain('CAP_ENV=from-capsule');
    expect(lines).toContain('OVERRIDE=process');
    expect(lines).toContain('HOME=/home/user');
    expect(r.stdout).not.toMatch(/VITEST|NODE_OPTIONS|PADDOCK_ENV_/);
    // It was the waiting launcher that ran it: the capsule's first process after its init.
    expect(lines.slice(-4, -1)).toEqual(['/tmp', 'from stdin', 'pid 3']);
    expect(gone(waiting)).toBe(true);
    // The next ones are launched as usual; the exit codes a shell would give hold either way.
    expect((await run(c, 'no-such-command-here')).code).toBe(127);
    c.standBy?.();
    await waitingLauncher(c);
    const badDir = await collect(c.spawn({ cmd: 'true', args: [], cwd: '/no/such/dir' }));
    expect(badDir).toMatchObject({ code: 2, stderr: expect.stringMatching(/cd: \/no\/such\/dir/) });
    c.standBy?.();
    await waitingLauncher(c);
    expect((await run(c, 'no-such-command-here')).code).toBe(127);
    // Let go unused (a spare idle after its hand-out), it ends and the next command is launched as usual.
    c.standBy?.();
    const unused = await waitingLauncher(c);
    c.standDown?.();
    await eventually(async () => gone(unused), 5_000, 'the launcher to go');
    expect((await run(c, 'echo', ['later'])).stdout).toBe('later\n');
    await c.destroy();
  });

  it('waits as the capsule user without privileges or the caller’s environment; a terminal lets it go', async () => {
    const c = await capsules.create();
    c.standBy?.();
    const waiting = await waitingLauncher(c);
    const status = statusOf(waiting);
    expect(status).toMatch(/^NoNewPrivs:\s*1$/m);
    expect(status).toMatch(/^CapEff:\s*0+$/m);
    expect(status).toMatch(/^CapPrm:\s*0+$/m);
    // The launchers' fixed environment (the joining shell adds PWD): nothing of a caller's yet.
    const environ = readFileSync(`/proc/${waiting}/environ`, 'utf8').split('\0').filter(Boolean);
    expect(environ.sort()).toEqual(['PATH=/usr/bin:/bin', 'PWD=/']);
    // A terminal cannot use it: it goes, and the terminal runs as always.
    const term = c.spawn({ cmd: 'sh', args: ['-c', 'echo term-ok'], pty: { cols: 80, rows: 24 } });
    term.stdout.resume();
    await waitForOutput(term, /term-ok/);
    await term.exited;
    await eventually(async () => gone(waiting), 5_000, 'the launcher to go');
    expect((await run(c, 'echo', ['after'])).stdout).toBe('after\n');
    await c.destroy();
  });
});

describe('bwrap driver: isolation', () => {
  let secretFile: string;
  const secret = `secret-${randomBytes(8).toString('hex')}`;

  beforeAll(() => {
    secretFile = path.join(capsules.base, 'host-secret.txt');
    writeFileSync(secretFile, `${secret}\n`, { mode: 0o644 });
  });

  it('cannot read a host file: by absolute path, through .., through its own symlink, through /proc', async () => {
    const rel = `../../../../../../..${realpathSync(secretFile)}`;
    const attempts = [
      `cat ${secretFile}`,
      `cat ${rel}`,
      `cd /home/user && cat ${rel}`,
      `ln -s ${secretFile} /home/user/to-secret && cat /home/user/to-secret`,
      `ln -s ${rel} /home/user/to-secret-rel && cat /home/user/to-secret-rel`,
      `cat /proc/1/root${secretFile}`,
      `cat /proc/self/root${secretFile}`,
    ];
    for (const attempt of attempts) {
      const r = await sh(capsule, `${attempt} 2>&1`);
      expect(r.code, attempt).not.toBe(0);
      expect(r.stdout, attempt).not.toContain(secret);
    }
    // Nowhere in the capsule's own tree either (/usr is the host's, read-only: not searched, it is big).
    const search = await sh(
      capsule,
      `find / -xdev -type f -exec grep -l ${secret} {} + 2>/dev/null; echo done`,
    );
    expect(search.stdout).toBe('done\n');
  });

  it('cannot see host processes', async () => {
    const marker = `${1000 + Math.floor(Math.random() * 1000)}.${Date.now() % 100_000}`;
    const hostSleep = spawn('sleep', [marker], { stdio: 'ignore' });
    try {
      const r = await sh(
        capsule,
        'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < $f; echo; done; ls /proc',
      );
      expect(r.stdout).not.toContain(marker);
      expect(r.stdout).not.toContain('vitest');
      const pids = r.stdout
        .split(/\s+/)
        .filter((w) => /^\d+$/.test(w))
        .map(Number);
      // Only the capsule's own: bwrap's reaper, the init, this shell and its children.
      expect(Math.max(...pids)).toBeLessThan(100);
      expect(pids).toContain(1);
      const kill = await sh(capsule, `kill -9 ${hostSleep.pid} 2>&1`);
      expect(kill.code).not.toBe(0);
      expect(hostSleep.exitCode).toBeNull();
    } finally {
      hostSleep.kill('SIGKILL');
    }
  });

  it("cannot reach a server on the host's 127.0.0.1", async () => {
    const server: Server = createServer((_req, res) => res.end('hello-from-host'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const url = `http://127.0.0.1:${port}/`;
      const candidates: Array<[string, string[]]> = [
        ['/usr/bin/curl', ['-s', '--max-time', '3', url]],
        [
          '/usr/bin/python3',
          ['-c', `import urllib.request;print(urllib.request.urlopen('${url}',timeout=3).read().decode())`],
        ],
        [
          '/usr/bin/bash',
          ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`],
        ],
      ];
      const available = candidates.filter(([file]) => existsSync(file));
      expect(available.length, 'curl, python3 or bash is needed for this test').toBeGreaterThan(0);
      for (const [file, args] of available) {
        // The same attempt from the host works, so a failure inside is the sandbox's doing.
        const onHost = await new Promise<string>((resolve) => {
          const p = spawn(file, args);
          let out = '';
          p.stdout.on('data', (d) => {
            out += d;
          });
          p.on('close', () => resolve(out));
        });
        expect(onHost, file).toContain('hello-from-host');
        const inside = await run(capsule, file, args);
        expect(inside.code, file).not.toBe(0);
        expect(inside.stdout, file).not.toContain('hello-from-host');
      }
      const ifaces = await sh(capsule, 'ls /sys/class/net 2>/dev/null; cat /proc/net/dev');
      expect(ifaces.stdout).not.toMatch(/eth0|ens|enp|docker/);
    } finally {
      server.close();
    }
  });

  it('cannot exceed its memory limit; the capsule survives', async () => {
    const small = await capsules.create({ limits: { ...LIMITS, memoryMb: 48 } });
    // tail keeps a line that never ends: all 200 MB in memory.
    const r = await sh(small, 'head -c 200000000 /dev/zero | tail > /dev/null; echo "tail exit $?"');
    expect(r.stdout).toMatch(/tail exit (137|1)/);
    expect((await sh(small, 'echo alive')).stdout).toBe('alive\n');
    expect((await small.usage()).memBytes).toBeLessThanOrEqual(48 * 1024 * 1024);
    await small.destroy();
  });

  it('cannot exceed its process limit; the capsule is usable after', async () => {
    const limited = await capsules.create({ limits: { ...LIMITS, maxProcesses: 20 } });
    const r = await sh(
      limited,
      'i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i + 1)); done; echo "started all"',
      20_000,
    );
    expect(r.stdout).not.toContain('started all');
    expect(r.stderr).toMatch(/fork|Resource temporarily unavailable/i);
    const procs = await limited.processes();
    expect(procs.length).toBeLessThanOrEqual(20);
    expect(procs.filter((p) => p.cmd === 'sleep').length).toBeGreaterThan(10);
    for (const p of procs) limited.signal(p.pid, 'SIGKILL');
    await eventually(async () => (await limited.processes()).length === 0, 5_000, 'the sleeps to die');
    expect((await sh(limited, 'echo usable')).stdout).toBe('usable\n');
    await limited.destroy();
  });

  it('cannot write past its disk quota', async () => {
    const disk = await capsules.create({ limits: { ...LIMITS, diskMb: 16 } });
    const r = await sh(disk, 'dd if=/dev/zero of=/home/user/big bs=1M count=40 2>&1');
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/No space left on device/);
    const big = Buffer.alloc(20 * 1024 * 1024, 1);
    expect((await driverError(disk.writeFile('/home/user/host-big', big, big.length + 1))).code).toBe(
      'no_space',
    );
    await sh(disk, 'rm /home/user/big');
    expect((await sh(disk, 'echo ok > /home/user/small && cat /home/user/small')).stdout).toBe('ok\n');
    await disk.destroy();
  });

  it("two capsules cannot see each other's files or signal each other's processes", async () => {
    const a = await capsules.create();
    const b = await capsules.create();
    const marker = `a-only-${randomBytes(6).toString('hex')}`;
    await sh(a, `echo ${marker} > /home/user/${marker}`);
    const aRoot = realpathSync(path.join(capsules.base, a.id, 'root'));
    for (const attempt of [
      `cat /home/user/${marker}`,
      `cat ${aRoot}/home/user/${marker}`,
      `cat ${path.join(capsules.base, a.id)}/root/home/user/${marker}`,
      `find / -xdev -name ${marker} | grep . `,
    ]) {
      const r = await sh(b, `${attempt} 2>&1`);
      expect(r.code, attempt).not.toBe(0);
      expect(r.stdout, attempt).not.toContain(`${marker}\n${marker}`);
    }
    const sleeper = a.spawn({ cmd: 'sleep', args: ['777'] });
    await sleeper.started;
    const hostPid = await eventually(
      async () =>
        readdirSync('/proc').find((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'sleep\u0000777\u0000';
          } catch {
            return false;
          }
        }),
      2_000,
      'the host pid of the sleep in A',
    );
    for (const pid of [hostPid, String(sleeper.pid)]) {
      await sh(b, `kill -9 ${pid} 2>&1`);
    }
    expect(b.signal(sleeper.pid, 'SIGKILL')).toBe(false);
    expect((await a.processes()).some((p) => p.pid === sleeper.pid)).toBe(true);
    expect(layerUid(path.join(capsules.base, a.id))).not.toBe(layerUid(path.join(capsules.base, b.id)));
    sleeper.kill('SIGKILL');
    await sleeper.exited;
  });

  it('runs without capabilities, cannot regain them, and /usr is read-only', async () => {
    const caps = await sh(capsule, 'grep -E "^Cap(Inh|Prm|Eff|Amb)" /proc/self/status');
    for (const line of caps.stdout.trim().split('\n')) expect(line).toMatch(/:\s*0+$/);
    expect((await sh(capsule, 'touch /usr/paddock-test 2>&1')).stdout).toMatch(/Read-only file system/);
    expect((await sh(capsule, 'echo x > /etc/passwd 2>&1')).code).not.toBe(0);
    expect((await sh(capsule, 'mount -t tmpfs none /tmp 2>&1')).code).not.toBe(0);
    // A new user namespace would hand out a full set of capabilities inside it.
    expect((await sh(capsule, 'unshare -U -r id 2>&1')).code).not.toBe(0);
    expect((await sh(capsule, 'grep NoNewPrivs /proc/self/status')).stdout).toMatch(/NoNewPrivs:\s*1/);
  });

  it('survives an output flood without holding it in memory', async () => {
    const proc = capsule.spawn({ cmd: 'sh', args: ['-c', 'yes | head -c 50000000'] });
    let bytes = 0;
    proc.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    const started = Date.now();
    expect(await proc.exited).toBe(0);
    expect(bytes).toBe(50_000_000);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('bwrap driver: files', () => {
  it('writes, reads, lists, makes directories and removes them', async () => {
    await capsule.writeFile('/home/user/docs/notes/a.txt', Buffer.from('alpha\n'), 1024);
    expect((await capsule.readFile('/home/user/docs/notes/a.txt', 1024)).toString()).toBe('alpha\n');
    const inside = await sh(
      capsule,
      'cat /home/user/docs/notes/a.txt; stat -c "%U %a" /home/user/docs/notes/a.txt',
    );
    expect(inside.stdout).toBe('alpha\nuser 644\n');
    const top = await capsule.list('/home/user/docs', 0);
    expect(top.map((e) => e.path)).toEqual(['/home/user/docs/notes']);
    expect(await capsule.list('/home/user/docs', 1)).toEqual(top);
    const deep = await capsule.list('/home/user/docs', 2);
    const file = deep.find((e) => e.name === 'a.txt')!;
    expect(file).toMatchObject({
      path: '/home/user/docs/notes/a.txt',
      type: 'file',
      size: 6,
      mode: 0o644,
      permissions: '-rw-r--r--',
      owner: 'user',
      group: 'user',
      symlink_target: null,
    });
    expect(Math.abs(file.modified_at - Date.now() / 1000)).toBeLessThan(60);
    const made = await capsule.mkdir('/home/user/docs/made/deeper');
    expect(made).toMatchObject({ type: 'directory', path: '/home/user/docs/made/deeper', owner: 'user' });
    expect((await driverError(capsule.mkdir('/home/user/docs/made'))).code).toBe('exists');
    expect((await sh(capsule, 'touch /home/user/docs/made/deeper/x && echo ok')).stdout).toBe('ok\n');
    await sh(capsule, 'ln -s notes/a.txt /home/user/docs/link');
    const link = (await capsule.list('/home/user/docs', 1)).find((e) => e.name === 'link')!;
    expect(link).toMatchObject({ type: 'symlink', symlink_target: 'notes/a.txt' });
    expect((await capsule.readFile('/home/user/docs/link', 100)).toString()).toBe('alpha\n');
    await capsule.remove('/home/user/docs');
    expect((await driverError(capsule.readFile('/home/user/docs/notes/a.txt', 100))).code).toBe('not_found');
    expect((await sh(capsule, 'ls /home/user/docs 2>&1')).code).not.toBe(0);
  });

  it('keeps binary content intact, from a buffer or a stream', async () => {
    const data = randomBytes(1024 * 1024 + 7);
    await capsule.writeFile('/home/user/blob.bin', data, data.length);
    expect((await capsule.readFile('/home/user/blob.bin', data.length)).equals(data)).toBe(true);
    const hash = createHash('sha256').update(data).digest('hex');
    expect((await sh(capsule, 'sha256sum /home/user/blob.bin')).stdout).toContain(hash);
    await capsule.writeFile(
      '/home/user/blob2.bin',
      Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
      data.length,
    );
    const chunks: Buffer[] = [];
    for await (const c of await capsule.readStream('/home/user/blob2.bin')) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });

  it('confines paths: .. stops at the root, symlinks resolve inside it, system mounts are refused', async () => {
    const capsulePasswd = (await capsule.readFile('/etc/passwd', 10_000)).toString();
    expect(capsulePasswd).toContain('user:x:1000:1000');
    expect((await capsule.readFile('/home/user/../../../../etc/passwd', 10_000)).toString()).toBe(
      capsulePasswd,
    );
    expect((await driverError(capsule.readFile('etc/passwd', 100))).code).toBe('invalid_path');

    const hostDir = path.join(capsules.base, 'host-target');
    await sh(
      capsule,
      `ln -sf /etc /home/user/etc-link; ln -sf ${hostDir} /home/user/out; ln -sf ../../../../../../../etc/shadow /home/user/shadow`,
    );
    expect((await capsule.readFile('/home/user/etc-link/passwd', 10_000)).toString()).toBe(capsulePasswd);
    expect((await driverError(capsule.readFile('/home/user/shadow', 10_000))).code).toBe('not_found');
    // Written through a link to a host path: lands inside the capsule, never on the host.
    await capsule.writeFile('/home/user/out/pwned', Buffer.from('x'), 10);
    expect(existsSync(path.join(hostDir, 'pwned'))).toBe(false);
    expect((await sh(capsule, `cat ${hostDir}/pwned`)).stdout).toBe('x');

    for (const p of ['/usr/bin/evil', '/proc/1/environ', '/dev/null', '/run/x', '/home/user/../../usr/lib']) {
      const err = await driverError(capsule.writeFile(p, Buffer.from('x'), 10));
      expect(err.code, p).toBe('invalid_path');
      expect(err.message).toMatch(/system mount/);
    }
    expect((await driverError(capsule.list('/proc', 1))).code).toBe('invalid_path');
    await sh(capsule, 'ln -sf /usr/bin /home/user/bin-link');
    expect((await driverError(capsule.readFile('/home/user/bin-link/sh', 10_000_000))).code).toBe(
      'invalid_path',
    );
    await sh(capsule, 'ln -sf loop2 /home/user/loop1; ln -sf loop1 /home/user/loop2');
    expect((await driverError(capsule.readFile('/home/user/loop1', 10))).code).toBe('invalid_path');
    await sh(capsule, 'mkfifo /home/user/fifo');
    expect((await driverError(capsule.readFile('/home/user/fifo', 10))).code).toBe('invalid_path');
  });

  it('is not fooled by a directory swapped for a symlink to / while it works', async () => {
    const marker = `race-${randomBytes(4).toString('hex')}`;
    const swapper = capsule.spawn({
      cmd: 'sh',
      args: [
        '-c',
        'cd /home/user; while :; do mkdir -p r.d; mv -T r.d race 2>/dev/null; ln -sfn / r.l; mv -T r.l race; done',
      ],
    });
    await swapper.started;
    try {
      for (let i = 0; i < 150; i++) {
        await capsule.writeFile(`/home/user/race/tmp/${marker}-${i}`, Buffer.from('x'), 10).catch(() => {});
      }
    } finally {
      swapper.kill('SIGKILL');
      await swapper.exited;
    }
    // Through the host's "/" the write would have reached the host's own /tmp.
    expect(readdirSync('/tmp').filter((f) => f.startsWith(marker))).toEqual([]);
  });

  it('refuses too large reads and writes, and keeps the old file', async () => {
    await capsule.writeFile('/home/user/size.txt', Buffer.alloc(100, 'a'), 100);
    expect((await driverError(capsule.readFile('/home/user/size.txt', 99))).code).toBe('too_large');
    expect((await driverError(capsule.writeFile('/home/user/size.txt', Buffer.alloc(2000), 1000))).code).toBe(
      'too_large',
    );
    const stream = Readable.from(
      (function* () {
        for (let i = 0; i < 100; i++) yield Buffer.alloc(100, 'b');
      })(),
    );
    expect((await driverError(capsule.writeFile('/home/user/size.txt', stream, 5000))).code).toBe(
      'too_large',
    );
    expect((await capsule.readFile('/home/user/size.txt', 100)).toString()).toBe('a'.repeat(100));
    expect((await sh(capsule, 'ls -a /home/user | grep -c paddock')).stdout).toBe('0\n');
  });
});

describe('bwrap driver: lifecycle', () => {
  it('pause stops every process; resume continues them', async () => {
    const c = await capsules.create();
    const counter = c.spawn({
      cmd: 'sh',
      args: ['-c', 'i=0; while :; do i=$((i+1)); echo $i > /home/user/n; sleep 0.05; done'],
    });
    const read = async () =>
      Number((await c.readFile('/home/user/n', 100).catch(() => Buffer.from('0'))).toString());
    await eventually(async () => (await read()) >= 3, 5_000, 'the counter to count');
    await c.pause();
    expect(c.paused).toBe(true);
    const atPause = await read();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await read()).toBe(atPause);
    await c.resume();
    expect(c.paused).toBe(false);
    await eventually(async () => (await read()) >= atPause + 3, 5_000, 'the counter to go on');
    counter.kill('SIGKILL');
    await c.destroy();
  });

  it('snapshots the writable layer into a template a new capsule starts from', async () => {
    const c = await capsules.create();
    await sh(
      c,
      'echo kept > /home/user/snap.txt; mkdir -p /workspace/proj && echo src > /workspace/proj/main.c',
    );
    const dest = path.join(capsules.base, 'snapshot-1');
    const { sizeBytes } = await c.snapshot(dest);
    expect(sizeBytes).toBeGreaterThan(0);
    expect(c.paused).toBe(false);
    expect((await sh(c, 'echo still running')).stdout).toBe('still running\n');
    // The mount points over the layer are not part of it.
    expect(readdirSync(dest).sort()).not.toContain('usr');
    expect(readdirSync(dest)).not.toContain('proc');

    const restored = await capsules.create({ templateDir: dest });
    const r = await sh(
      restored,
      'cat /home/user/snap.txt /workspace/proj/main.c; stat -c %U /home/user/snap.txt',
    );
    expect(r.stdout).toBe('kept\nsrc\nuser\n');
    expect((await sh(restored, 'echo new >> /home/user/snap.txt && echo writable')).stdout).toBe(
      'writable\n',
    );
    await c.destroy();
    await restored.destroy();
  });

  it('destroy kills everything, unmounts the layer and removes the directory and cgroups', async () => {
    const spec = capsules.spec();
    const c = await driver.create(spec);
    const uid = layerUid(spec.dir);
    const layer = realpathSync(path.join(spec.dir, 'root'));
    const state = JSON.parse(readFileSync(path.join(spec.dir, 'capsule.json'), 'utf8')) as {
      cgroups: { dirs: Record<string, string> } | null;
    };
    c.spawn({ cmd: 'sh', args: ['-c', 'sleep 1000 & sleep 1001 & wait'] });
    await eventually(async () => (await c.processes()).length >= 3, 5_000, 'the sleeps');
    expect(hostPidsOfUid(uid).length).toBeGreaterThan(0);
    expect(mountInfo()).toContain(layer);

    await c.destroy();
    await c.ended;
    expect(existsSync(spec.dir)).toBe(false);
    expect(existsSync(layer)).toBe(false);
    expect(mountInfo()).not.toContain(layer);
    expect(hostPidsOfUid(uid)).toEqual([]);
    for (const dir of Object.values(state.cgroups?.dirs ?? {})) expect(existsSync(dir), dir).toBe(false);
  });

  it('cleans up a capsule left by a server process that died', async () => {
    const spec = capsules.spec();
    const script = path.join(capsules.base, 'orphan.mts');
    const driverModule = path.resolve('src/modules/sandboxes/drivers/bwrap.ts');
    writeFileSync(
      script,
      [
        `import { BwrapDriver } from ${JSON.stringify(driverModule)};`,
        'const d = new BwrapDriver(await BwrapDriver.probe());',
        `const c = await d.create(${JSON.stringify(spec)});`,
        "c.spawn({ cmd: 'sh', args: ['-c', 'sleep 1000 & wait'] });",
        "setTimeout(() => console.log('ready'), 300);",
        'setInterval(() => {}, 1000);',
      ].join('\n'),
    );
    const server = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      server.stdout.on('data', (d) => {
        if (String(d).includes('ready')) resolve();
      });
      server.on('exit', (code) => reject(new Error(`the server process exited with ${code}`)));
    });
    const uid = layerUid(spec.dir);
    const layer = realpathSync(path.join(spec.dir, 'root'));
    expect(hostPidsOfUid(uid).length).toBeGreaterThan(0);
    server.kill('SIGKILL');
    await new Promise((resolve) => server.on('close', resolve));
    expect(existsSync(spec.dir)).toBe(true);
    expect(mountInfo()).toContain(layer);

    const fresh = new BwrapDriver(await BwrapDriver.probe());
    await fresh.cleanup(spec.dir);
    expect(existsSync(spec.dir)).toBe(false);
    expect(mountInfo()).not.toContain(layer);
    // bwrap's reaper lost its parent with the server: reaping it is the host init's job.
    await eventually(async () => hostPidsOfUid(uid, false).length === 0, 5_000, 'the orphans to die');
  });

  it('ends when its init is killed from inside', async () => {
    const c = await capsules.create();
    await sh(c, 'kill -9 2');
    await Promise.race([
      c.ended,
      new Promise((_, reject) => setTimeout(() => reject(new Error('not ended')), 5_000)),
    ]);
    await c.destroy();
  });

  // How fast is bench/sandbox.ts's to say (a timed test fails on a busy machine, not on a slow driver).
  it('creates, runs a first command and is destroyed, over and over', async () => {
    for (let i = 0; i < 15; i++) {
      const c = await capsules.create();
      const r = await run(c, 'echo', [String(i)]);
      expect(r).toMatchObject({ code: 0, stdout: `${i}\n` });
      await c.destroy();
    }
  });
});

describe('bwrap driver: network through the proxy only', () => {
  it('reaches the proxy from inside and nothing else', async () => {
    const proxy: Server = createServer((req, res) => res.end(`via-proxy ${req.method} ${req.url}`));
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const other: Server = createServer((_req, res) => res.end('direct'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const c = await capsules.create({ network: { proxyUrl } });
      const env = await sh(c, 'echo $http_proxy $HTTPS_PROXY');
      expect(env.stdout.trim()).toBe(`${proxyUrl} ${proxyUrl}`);
      expect(existsSync('/usr/bin/curl'), 'curl is needed for this test').toBe(true);
      const via = await run(c, 'curl', ['-s', '--max-time', '5', 'http://example.test/hello']);
      expect(via.stdout).toBe('via-proxy GET http://example.test/hello');
      const otherPort = (other.address() as AddressInfo).port;
      const direct = await run(c, 'curl', [
        '-s',
        '--noproxy',
        '*',
        '--max-time',
        '3',
        `http://127.0.0.1:${otherPort}/`,
      ]);
      expect(direct.code).not.toBe(0);
      await c.destroy();
    } finally {
      proxy.close();
      other.close();
    }
  });
});

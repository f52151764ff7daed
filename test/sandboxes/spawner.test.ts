import { readdirSync, readlinkSync } from 'node:fs';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { type SpawnedLauncher, Spawner } from '../../src/modules/sandboxes/drivers/spawner.ts';

// The spawner starts capsule launchers (root, on the host) in place of the
// server: what it starts must get exactly the environment given (nothing of
// the server's or of the spawner's), its own session, working pipes, and a
// faithful exit status.

const spawner = Spawner.start('/usr/bin/perl', process.getuid?.() === 0);
afterAll(() => spawner.close());

async function run(
  launcher: SpawnedLauncher,
  input?: string,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  launcher.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  launcher.stderr.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  const closed = new Promise((resolve) => launcher.once('close', resolve));
  const exited = new Promise<[number | null, string | null]>((resolve, reject) => {
    launcher.on('exit', (c: number | null, s: string | null) => resolve([c, s]));
    launcher.on('error', reject);
  });
  launcher.stdin.end(input);
  const [code, signal] = await exited;
  // All output read, as after a ChildProcess's 'close'.
  await closed;
  return { code, signal, stdout, stderr };
}

describe('the spawner', () => {
  it('starts a command with exactly the environment given, in /, with its stdio piped', async () => {
    process.env.PADDOCK_SPAWNER_TEST_LEAK = 'server';
    // The worker runs other files after this one (vitest.config.ts: isolate false).
    onTestFinished(() => {
      delete process.env.PADDOCK_SPAWNER_TEST_LEAK;
    });
    const result = await run(
      spawner.spawn(['/bin/sh', '-c', 'env; pwd; cat; echo oops >&2; exit 3'], {
        PATH: '/usr/bin:/bin',
        ONLY: 'this',
      }),
      'from stdin\n',
    );
    expect(result.code).toBe(3);
    const lines = result.stdout.trim().split('\n');
    expect(lines.slice(-2)).toEqual(['/', 'from stdin']);
    // sh adds PWD (and may add SHLVL); nothing comes from the server or the spawner.
    const names = lines
      .slice(0, -2)
      .map((l) => l.split('=')[0])
      .filter((n) => n !== 'PWD' && n !== 'SHLVL');
    expect(names.sort()).toEqual(['ONLY', 'PATH']);
    expect(result.stderr).toBe('oops\n');
  });

  it('puts each launcher in a session of its own and reports its pid', async () => {
    const launcher = spawner.spawn(['/bin/sh', '-c', 'cat /proc/self/stat'], { PATH: '/usr/bin:/bin' });
    // Listening from the start, as the drivers do: its exit may come in the same read as its pid.
    const ran = run(launcher);
    const pid = await launcher.pidKnown;
    const { stdout } = await ran;
    // Fields after the command name: state, ppid, pgrp, session.
    const [, , pgrp, session] = stdout.slice(stdout.lastIndexOf(')') + 2).split(' ');
    expect(Number(session)).toBe(pid);
    expect(Number(pgrp)).toBe(pid);
  });

  it('reports a signal, and a command that cannot be run', async () => {
    const sleeper = spawner.spawn(['/bin/sleep', '30'], { PATH: '/usr/bin:/bin' });
    await sleeper.pidKnown;
    sleeper.kill('SIGKILL');
    expect(await run(sleeper)).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(await run(spawner.spawn(['/nonexistent/command'], {}))).toMatchObject({ code: 127 });
  });

  it('runs many at once, each with its own pipes', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        run(spawner.spawn(['/bin/sh', '-c', `cat; echo ${i}`], { PATH: '/usr/bin:/bin' }), `in-${i}\n`),
      ),
    );
    expect(results.map((r) => r.stdout)).toEqual(results.map((_, i) => `in-${i}\n${i}\n`));
  });

  it("ends a command's input when the server closes it, while another launcher runs", async () => {
    // Both start lines reach the helper before it is told the first one's
    // ends were taken: the second's waiter must not keep the first's stdin.
    const reader = spawner.spawn(['/bin/sh', '-c', 'cat; echo done'], { PATH: '/usr/bin:/bin' });
    const sleeper = spawner.spawn(['/bin/sleep', '30'], { PATH: '/usr/bin:/bin' });
    let sleeperExited = false;
    sleeper.on('exit', () => {
      sleeperExited = true;
    });
    await sleeper.pidKnown;
    expect(await run(reader, 'line\n')).toMatchObject({ code: 0, stdout: 'line\ndone\n' });
    expect(sleeperExited).toBe(false);
    sleeper.kill('SIGKILL');
    expect(await run(sleeper)).toMatchObject({ signal: 'SIGKILL' });
  });

  it('leaves no descriptor open in the server once a process ended, its input ended or not', async () => {
    const pipes = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:');
        } catch {
          return false;
        }
      }).length;
    const ended = (launcher: SpawnedLauncher) =>
      new Promise((resolve) => {
        launcher.once('close', resolve);
        launcher.stdout.resume();
        launcher.stderr.resume();
      });
    const before = pipes();
    // Ended by itself with its input never ended (as a capsule's exec nobody writes to).
    for (let i = 0; i < 10; i++)
      await ended(spawner.spawn(['/bin/echo', String(i)], { PATH: '/usr/bin:/bin' }));
    // Killed (as a capsule's `sleep infinity` when the capsule stops).
    for (let i = 0; i < 10; i++) {
      const sleeper = spawner.spawn(['/bin/sleep', '30'], { PATH: '/usr/bin:/bin' });
      await sleeper.pidKnown;
      const closed = ended(sleeper);
      sleeper.kill('SIGKILL');
      await closed;
    }
    expect(pipes()).toBe(before);
  });
});

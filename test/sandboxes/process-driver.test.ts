import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectDriver } from '../../src/modules/sandboxes/drivers/index.ts';
import { ProcessDriver } from '../../src/modules/sandboxes/drivers/process.ts';
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

// The process driver isolates nothing; what it promises is the same
// process and file API, files confined to the capsule's directory, and
// warnings that say so.

const driver = new ProcessDriver();
const capsules = new CapsuleTracker(() => driver, 'procdrv');
let capsule: CapsuleHandle;
let root: string;

beforeAll(async () => {
  const spec = capsules.spec({ envs: { CAP_ENV: 'from-capsule', OVERRIDE: 'capsule' } });
  root = path.join(spec.dir, 'root');
  capsule = await driver.create(spec);
});

afterAll(async () => {
  await capsule?.destroy();
  await capsules.destroyAll();
});

describe('process driver', () => {
  it('says loudly that nothing is isolated', async () => {
    expect(driver.isolation).toBe('none');
    expect(capsule.isolation).toBe('none');
    expect(driver.warnings[0]).toMatch(/NOTHING IS ISOLATED/);
    const forced = await detectDriver({ prefer: 'process' });
    expect(forced.isolation).toBe('none');
  });

  it('runs commands: arguments, output, exit codes (127 missing, 128+9 killed)', async () => {
    expect(await run(capsule, 'printf', ['%s|', 'a', 'b c'])).toEqual({
      code: 0,
      stdout: 'a|b c|',
      stderr: '',
    });
    expect(await sh(capsule, 'echo out; echo err >&2; exit 5')).toEqual({
      code: 5,
      stdout: 'out\n',
      stderr: 'err\n',
    });
    expect((await run(capsule, 'no-such-command-here')).code).toBe(127);
    const proc = capsule.spawn({ cmd: 'sleep', args: ['30'] });
    await proc.started;
    proc.kill('SIGKILL');
    expect(await proc.exited).toBe(137);
  });

  it('sets env and cwd inside the directory, and the open-files limit', async () => {
    const r = await collect(
      capsule.spawn({
        cmd: 'sh',
        args: ['-c', 'env; pwd; ulimit -n'],
        envs: { OVERRIDE: 'process' },
        cwd: '/workspace',
      }),
    );
    const lines = r.stdout.split('\n');
    expect(lines).toContain('CAP_ENV=from-capsule');
    expect(lines).toContain('OVERRIDE=process');
    expect(lines).toContain(`HOME=${path.join(root, 'home/user')}`);
    expect(realpathSync(lines.at(-3)!)).toBe(realpathSync(path.join(root, 'workspace')));
    expect(lines.at(-2)).toBe(String(LIMITS.maxOpenFiles));
  });

  it('passes stdin, and runs a terminal session', async () => {
    const cat = capsule.spawn({ cmd: 'cat' });
    cat.write('piped\n');
    cat.end();
    expect((await collect(cat)).stdout).toBe('piped\n');

    const term = capsule.spawn({ cmd: 'sh', pty: { cols: 80, rows: 24 } });
    term.write('stty size\n');
    await waitForOutput(term, /24 80/);
    term.resize(90, 33);
    term.write('stty size; exit 4\n');
    await waitForOutput(term, /33 90/);
    expect(await term.exited).toBe(4);
  });

  it("lists and signals its own processes, and no one else's", async () => {
    const bg = capsule.spawn({ cmd: 'sh', args: ['-c', 'sleep 2345 & wait'] });
    await bg.started;
    const inner = await eventually(
      async () => (await capsule.processes()).find((p) => p.cmd === 'sleep' && p.args[0] === '2345'),
      5_000,
      'the inner sleep',
    );
    expect(capsule.signal(process.pid, 'SIGCONT')).toBe(false);
    expect(capsule.signal(1, 'SIGCONT')).toBe(false);
    expect(capsule.signal(inner.pid, 'SIGKILL')).toBe(true);
    expect(await bg.exited).toBe(0);
  });

  it('pause stops the counter and resume continues it', async () => {
    const counter = capsule.spawn({
      cmd: 'sh',
      args: ['-c', 'i=0; while :; do i=$((i+1)); echo $i > "$HOME/n"; sleep 0.05; done'],
    });
    const read = async () =>
      Number((await capsule.readFile('/home/user/n', 100).catch(() => Buffer.from('0'))).toString());
    await eventually(async () => (await read()) >= 3, 5_000, 'the counter');
    await capsule.pause();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const atPause = await read();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await read()).toBe(atPause);
    await capsule.resume();
    await eventually(async () => (await read()) >= atPause + 3, 5_000, 'the counter to go on');
    counter.kill('SIGKILL');
    await counter.exited;
  });

  it('keeps file operations inside the directory', async () => {
    await capsule.writeFile('/home/user/a/b.txt', Buffer.from('bee'), 10);
    expect((await capsule.readFile('/home/user/a/b.txt', 10)).toString()).toBe('bee');
    expect((await capsule.list('/home/user/a', 1)).map((e) => e.name)).toEqual(['b.txt']);
    expect((await driverError(capsule.readFile('/../../../../etc/hostname', 1000))).code).toBe('not_found');
    const secret = path.join(capsules.base, `secret-${randomBytes(4).toString('hex')}`);
    writeFileSync(secret, 'host secret');
    await sh(capsule, `ln -s ${secret} "$HOME/link"`);
    expect((await driverError(capsule.readFile('/home/user/link', 1000))).code).toBe('not_found');
    await capsule.writeFile('/home/user/link', Buffer.from('x'), 10);
    expect(existsSync(path.join(root, secret))).toBe(true);
    expect((await driverError(capsule.writeFile('/usr/x', Buffer.from('x'), 10))).code).toBe('invalid_path');
    expect((await driverError(capsule.writeFile('/home/user/big', Buffer.alloc(100), 10))).code).toBe(
      'too_large',
    );
    await capsule.remove('/home/user/a');
    expect((await driverError(capsule.list('/home/user/a', 1))).code).toBe('not_found');
  });

  it('closes the file a stream read opened once it is read (no descriptor left behind)', async () => {
    await capsule.writeFile('/home/user/streamed.txt', Buffer.from('streamed'), 100);
    const openFds = () => readdirSync('/proc/self/fd').length;
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const chunks: Buffer[] = [];
      for await (const chunk of await capsule.readStream('/home/user/streamed.txt'))
        chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('streamed');
    }
    await eventually(async () => openFds() <= before + 2);
  });

  it('snapshots, and destroy kills its processes and removes the directory', async () => {
    const spec = capsules.spec();
    const c = await driver.create(spec);
    await c.writeFile('/home/user/keep.txt', Buffer.from('kept'), 10);
    const dest = path.join(capsules.base, 'proc-snapshot');
    expect((await c.snapshot(dest)).sizeBytes).toBeGreaterThan(0);
    const restored = await driver.create(capsules.spec({ templateDir: dest }));
    expect((await restored.readFile('/home/user/keep.txt', 10)).toString()).toBe('kept');
    await restored.destroy();

    const bg = c.spawn({ cmd: 'sleep', args: ['999'] });
    await bg.started;
    await c.destroy();
    expect(await bg.exited).toBe(137);
    await c.ended;
    expect(existsSync(spec.dir)).toBe(false);
  });
});

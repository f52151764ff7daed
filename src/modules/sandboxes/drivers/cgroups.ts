import { constants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CgroupSupport } from './cgroup-detect.ts';
import { sleep, waitFor } from './proc.ts';
import type { CapsuleLimits } from './types.ts';

// One cgroup per capsule (`paddock/<capsule id>`) under each controller that
// matters: memory, pids, cpu (+ cpuacct on v1) and the freezer. On v1 each
// controller is its own hierarchy, so a capsule has up to five directories;
// on v2 it has one. A process joins by writing its pid to every
// `cgroup.procs` in `procsFiles`, before it runs anything of its own.

type V1Controller = 'memory' | 'pids' | 'cpu' | 'cpuacct' | 'freezer';
const CPU_PERIOD_US = 100_000;

/**
 * Writes a cgroup control file. Never O_CREAT: a file a controller does not
 * provide then answers ENOENT (creating one in cgroupfs answers EACCES).
 */
export async function writeControl(file: string, value: string): Promise<void> {
  const handle = await open(file, constants.O_WRONLY);
  try {
    await handle.write(value);
  } finally {
    await handle.close();
  }
}

const exists = (p: string) =>
  access(p, constants.F_OK).then(
    () => true,
    () => false,
  );

async function readNumber(file: string): Promise<number | null> {
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : null;
}

/** Persisted in the capsule's directory so that `cleanup()` after a restart finds the cgroups. */
export interface CgroupState {
  version: 1 | 2;
  /** By controller (v2: 'unified'). */
  dirs: Record<string, string>;
}

export class CapsuleCgroups {
  private constructor(
    readonly version: 1 | 2,
    private readonly dirs: Record<string, string>,
  ) {}

  /** The state to write down; `CapsuleCgroups.fromState` turns it back into cgroups to clean up. */
  get state(): CgroupState {
    return { version: this.version, dirs: { ...this.dirs } };
  }

  static fromState(state: CgroupState): CapsuleCgroups {
    return new CapsuleCgroups(state.version, state.dirs);
  }

  /** The directories a capsule with this id would get, created by `create()`. */
  static plan(support: CgroupSupport, id: string): CapsuleCgroups {
    const dirs: Record<string, string> = {};
    for (const [controller, base] of Object.entries(support.bases)) dirs[controller] = path.join(base, id);
    return new CapsuleCgroups(support.version, dirs);
  }

  private distinctDirs(): string[] {
    // v1 may co-mount cpu and cpuacct: one directory, listed once.
    return [...new Set(Object.values(this.dirs))];
  }

  /** Every `cgroup.procs` a new process of the capsule must join. */
  get procsFiles(): string[] {
    return this.distinctDirs().map((d) => path.join(d, 'cgroup.procs'));
  }

  private dir(controller: V1Controller): string | undefined {
    return this.version === 2 ? this.dirs.unified : this.dirs[controller];
  }

  /** Creates the directories and writes the limits; `pidsOverhead` is what the driver's own processes take. */
  async create(limits: CapsuleLimits, pidsOverhead: number): Promise<void> {
    await Promise.all(this.distinctDirs().map((d) => mkdir(d, { recursive: true })));
    const memoryBytes = Math.round(limits.memoryMb * 1024 * 1024);
    const writes: Promise<void>[] = [];
    const memory = this.dir('memory');
    const cpu = this.dir('cpu');
    if (this.version === 1) {
      if (memory) {
        writes.push(
          (async () => {
            await writeControl(path.join(memory, 'memory.limit_in_bytes'), String(memoryBytes));
            // memsw (memory + swap) must be set after the plain limit and be at
            // least as large; equal means no swap at all.
            const memsw = path.join(memory, 'memory.memsw.limit_in_bytes');
            if (await exists(memsw)) await writeControl(memsw, String(memoryBytes));
          })(),
        );
      }
      if (cpu) {
        writes.push(
          (async () => {
            await writeControl(path.join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
            await writeControl(
              path.join(cpu, 'cpu.cfs_quota_us'),
              String(Math.round(limits.vcpus * CPU_PERIOD_US)),
            );
          })(),
        );
      }
    } else if (memory && cpu) {
      // A controller that is not enabled has no files here: already warned about at detection.
      writes.push(writeControl(path.join(memory, 'memory.max'), String(memoryBytes)).catch(ignoreMissing));
      writes.push(writeControl(path.join(memory, 'memory.swap.max'), '0').catch(ignoreMissing));
      const quotaUs = Math.round(limits.vcpus * CPU_PERIOD_US);
      writes.push(
        writeControl(path.join(cpu, 'cpu.max'), `${quotaUs} ${CPU_PERIOD_US}`).catch(ignoreMissing),
      );
    }
    await Promise.all(writes);
    await this.setPidsMax(limits.maxProcesses + pidsOverhead);
  }

  /** pids.max; the driver raises it by one for each host-side helper it keeps in the capsule's cgroup. */
  async setPidsMax(max: number): Promise<void> {
    const pids = this.dir('pids');
    if (pids) await writeControl(path.join(pids, 'pids.max'), String(Math.max(1, max))).catch(ignoreMissing);
  }

  get hasFreezer(): boolean {
    return this.version === 2 || Boolean(this.dirs.freezer);
  }

  /** Freezes every member and resolves once the kernel reports them all frozen. */
  async freeze(): Promise<void> {
    if (this.version === 1) {
      const dir = this.dirs.freezer!;
      await writeControl(path.join(dir, 'freezer.state'), 'FROZEN');
      // FREEZING until every task has stopped; a task in an uninterruptible
      // sleep can hold it there, so the write is repeated while waiting.
      await waitFor(
        async () => {
          const state = (await readFile(path.join(dir, 'freezer.state'), 'utf8')).trim();
          if (state === 'FROZEN') return true;
          await writeControl(path.join(dir, 'freezer.state'), 'FROZEN');
          return null;
        },
        5_000,
        'the capsule to freeze',
      );
      return;
    }
    const dir = this.dirs.unified!;
    await writeControl(path.join(dir, 'cgroup.freeze'), '1');
    await waitFor(
      async () => (/^frozen 1$/m.test(await readFile(path.join(dir, 'cgroup.events'), 'utf8')) ? true : null),
      5_000,
      'the capsule to freeze',
    );
  }

  private async tryFreeze(): Promise<boolean> {
    try {
      await this.freeze();
      return true;
    } catch {
      return false;
    }
  }

  async thaw(): Promise<void> {
    if (this.version === 1) await writeControl(path.join(this.dirs.freezer!, 'freezer.state'), 'THAWED');
    else await writeControl(path.join(this.dirs.unified!, 'cgroup.freeze'), '0');
  }

  /** Host pids of every member (any one hierarchy has them all: they joined each). */
  async members(): Promise<number[]> {
    const dir = this.dir('pids') ?? this.dir('freezer') ?? this.distinctDirs()[0];
    if (!dir) return [];
    const text = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.trim())
      .map(Number);
  }

  /** SIGKILLs every member until none is left (new forks included). */
  async killAll(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const killFile = this.version === 2 ? path.join(this.dirs.unified!, 'cgroup.kill') : null;
    for (;;) {
      const members = await this.members();
      if (members.length === 0) return;
      if (killFile && (await exists(killFile))) {
        await writeControl(killFile, '1').catch(() => {});
      } else {
        // Frozen first, so that a fork loop cannot outrun the kills; SIGKILL
        // is delivered to frozen tasks as soon as they are thawed.
        const frozen = this.hasFreezer && (await this.tryFreeze());
        for (const pid of await this.members()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        if (frozen) await this.thaw().catch(() => {});
      }
      if (Date.now() > deadline) throw new Error(`cgroup members still alive after ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /** Removes the directories (members must be gone; a dying task keeps a cgroup busy for a moment). */
  async remove(timeoutMs = 3_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const dir of this.distinctDirs()) {
      for (;;) {
        try {
          await rmdir(dir);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || Date.now() > deadline) throw err;
          await sleep(10);
        }
      }
    }
  }

  /** CPU time used by the capsule so far, or null without a CPU accounting controller. */
  async cpuNs(): Promise<number | null> {
    if (this.version === 1) {
      const dir = this.dirs.cpuacct;
      return dir ? readNumber(path.join(dir, 'cpuacct.usage')) : null;
    }
    const stat = await readFile(path.join(this.dirs.unified!, 'cpu.stat'), 'utf8').catch(() => null);
    const m = stat ? /^usage_usec (\d+)$/m.exec(stat) : null;
    return m ? Number(m[1]) * 1000 : null;
  }

  async memBytes(): Promise<number | null> {
    const dir = this.dir('memory');
    if (!dir) return null;
    return readNumber(path.join(dir, this.version === 1 ? 'memory.usage_in_bytes' : 'memory.current'));
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

/** A capsule's or a spare's cgroup directory name (the capsule id, or `spare_` and hex). */
const CAPSULE_CGROUP = /^(cap_[0-9A-Z]{26}|spare_[0-9a-f]{16})$/;

/**
 * Removes the capsule cgroups under `bases` that hold no process and have not
 * changed for `idleMs`: what a host killed before it could destroy its
 * capsules leaves behind (cleanup() finds a capsule's cgroups through its
 * directory; these outlived theirs). The bases may be shared with other
 * Paddock processes on the machine, so nothing else is taken: a live capsule
 * always holds its init, and one being created is younger than `idleMs`. A
 * cgroup that gains a member meanwhile refuses the rmdir (EBUSY) and stays.
 * Returns the directories removed.
 */
export async function removeAbandonedCgroups(
  bases: string[],
  options: { idleMs: number; nowMs: number },
): Promise<string[]> {
  const removed: string[] = [];
  for (const base of new Set(bases)) {
    const names = await readdir(base).catch(() => [] as string[]);
    for (const name of names) {
      if (!CAPSULE_CGROUP.test(name)) continue;
      const dir = path.join(base, name);
      const changed = await stat(dir).catch(() => null);
      if (!changed?.isDirectory() || options.nowMs - changed.mtimeMs < options.idleMs) continue;
      const procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => null);
      if (procs === null || procs.trim() !== '') continue;
      try {
        await rmdir(dir);
        removed.push(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Busy (a member or a child cgroup) or gone meanwhile: not abandoned, or not ours to take.
        if (code !== 'EBUSY' && code !== 'ENOENT' && code !== 'ENOTEMPTY') throw err;
      }
    }
  }
  return removed;
}

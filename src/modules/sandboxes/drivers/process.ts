import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pty from '@lydell/node-pty';
import { envRefusal } from '../envs.ts';
import { CapsuleFs } from './capsule-fs.ts';
import { lexicalHostPath } from './capsule-path.ts';
import { pipedProcess, ptyProcess } from './capsule-process.ts';
import { layerUsage } from './layer.ts';
import {
  allPids,
  allPidsSync,
  cmdlineOf,
  cpuNsOf,
  quietPipes,
  rssBytes,
  runCommand,
  statusOf,
} from './proc.ts';
import type {
  CapsuleHandle,
  CapsuleLimits,
  CapsuleProcess,
  CapsuleSpec,
  CapsuleUsage,
  Driver,
  FileEntry,
  ProcessInfo,
  SpawnOptions,
} from './types.ts';
import { DriverError } from './types.ts';

// The process driver: for machines without bubblewrap (a laptop, CI without
// it). A capsule is a directory, and its processes are Paddock's own
// children, with Paddock's uid, network and view of the whole filesystem.
// The file operations are confined to the directory by the same rules as
// bwrap's; the processes are not confined at all.

const SYSTEM_MOUNTS = ['/usr', '/proc', '/dev', '/run'];
const CD_THEN_EXEC = 'cd "$1" && shift && exec "$@"';

export interface ProcessDriverOptions {
  /** PATH of the capsule's processes. */
  path?: string;
}

function findPrlimit(): string | null {
  for (const file of ['/usr/bin/prlimit', '/bin/prlimit']) if (existsSync(file)) return file;
  return null;
}

export class ProcessDriver implements Driver {
  readonly isolation = 'none' as const;
  readonly warnings: string[];
  private readonly prlimit = process.platform === 'linux' ? findPrlimit() : null;

  constructor(private readonly options: ProcessDriverOptions = {}) {
    this.warnings = [
      'NOTHING IS ISOLATED: the process driver runs capsule processes as plain child processes of Paddock, ' +
        "with Paddock's uid, network and view of the whole host filesystem; use it only for code you trust",
      this.prlimit
        ? 'limits: maxOpenFiles, memoryMb as a per-process data limit (RLIMIT_DATA) and diskMb as a per-file size limit (RLIMIT_FSIZE); ' +
          'vcpus, maxProcesses and the total of memory and disk are not enforced'
        : 'prlimit is missing: no limit at all is enforced (memoryMb, vcpus, diskMb, maxProcesses, maxOpenFiles)',
      'pause stops the process groups Paddock started (SIGSTOP): a process that made a session of its own escapes it',
    ];
  }

  async create(spec: CapsuleSpec): Promise<CapsuleHandle> {
    const dir = path.resolve(spec.dir);
    const root = path.join(dir, 'root');
    await mkdir(root, { recursive: true });
    if (spec.templateDir) {
      const copied = await runCommand('cp', ['-a', `${spec.templateDir}/.`, `${root}/`]);
      if (copied.code !== 0) throw new Error(`cannot copy the template: ${copied.stderr.trim()}`);
    }
    await Promise.all(
      ['home/user', 'tmp', 'workspace'].map((d) => mkdir(path.join(root, d), { recursive: true })),
    );
    return new ProcessCapsule(
      spec,
      dir,
      root,
      this.prlimit,
      this.options.path ?? '/usr/local/bin:/usr/bin:/bin',
    );
  }

  /** A previous server's processes cannot be told apart from others: only the directory goes. */
  async cleanup(dir: string): Promise<void> {
    await rm(path.resolve(dir), { recursive: true, force: true });
  }
}

class ProcessCapsule implements CapsuleHandle {
  readonly isolation = 'none' as const;
  readonly id: string;
  readonly ended: Promise<void>;
  private readonly fs: CapsuleFs;
  /** Pids (= process group ids) of what the host started, while they run. */
  private readonly started = new Set<number>();
  private pausedNow = false;
  private destroying: Promise<void> | null = null;
  private endCapsule!: () => void;

  constructor(
    private readonly spec: CapsuleSpec,
    private readonly dir: string,
    private readonly root: string,
    private readonly prlimit: string | null,
    private readonly searchPath: string,
  ) {
    this.id = spec.id;
    this.ended = new Promise((resolve) => {
      this.endCapsule = resolve;
    });
    const uid = process.getuid?.() ?? -1;
    this.fs = new CapsuleFs({ root, owner: null, userUid: uid, systemMounts: SYSTEM_MOUNTS });
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  private limitArgs(limits: CapsuleLimits): string[] {
    if (!this.prlimit) return [];
    const mb = (n: number) => String(Math.round(n * 1024 * 1024));
    return [
      this.prlimit,
      `--nofile=${limits.maxOpenFiles}:${limits.maxOpenFiles}`,
      `--data=${mb(limits.memoryMb)}:${mb(limits.memoryMb)}`,
      `--fsize=${mb(limits.diskMb)}:${mb(limits.diskMb)}`,
      '--',
    ];
  }

  spawn(options: SpawnOptions): CapsuleProcess {
    if (this.destroying) throw new Error(`capsule ${this.id} is destroyed`);
    const refused = envRefusal({ ...this.spec.envs, ...(options.envs ?? {}) });
    if (refused) throw new DriverError('invalid', refused);
    const home = path.join(this.root, 'home/user');
    const env: Record<string, string> = {
      HOME: home,
      PATH: this.searchPath,
      TMPDIR: path.join(this.root, 'tmp'),
      LANG: 'C.UTF-8',
      ...(this.spec.network ? proxyEnv(this.spec.network.proxyUrl) : {}),
      ...this.spec.envs,
      ...(options.envs ?? {}),
    };
    if (options.pty && !options.envs?.TERM) env.TERM = 'xterm-256color';
    const cwd = lexicalHostPath(this.root, options.cwd ?? '/home/user');
    const argv = [
      '-c',
      CD_THEN_EXEC,
      'sh',
      cwd,
      ...this.limitArgs(this.spec.limits),
      options.cmd,
      ...(options.args ?? []),
    ];
    const hooks = {
      // Not a launcher: the spawned process is the capsule's process, pid for pid.
      locate: async (pid: number) => ({ capsulePid: pid, hostPid: pid }),
      owns: (pid: number) => this.started.has(pid) || this.descendantsSync().has(pid),
      onExit: () => {},
    };
    let proc: CapsuleProcess;
    let pid: number | undefined;
    if (options.pty) {
      const term = pty.spawn('/bin/sh', argv, {
        name: env.TERM ?? 'xterm-256color',
        cols: options.pty.cols,
        rows: options.pty.rows,
        cwd: '/',
        env,
        encoding: null,
      });
      pid = term.pid;
      proc = ptyProcess(term, hooks);
    } else {
      // detached: a process group of its own, what pause stops and destroy kills.
      const child = quietPipes(spawn('/bin/sh', argv, { env, stdio: 'pipe', detached: true }));
      pid = child.pid;
      proc = pipedProcess(child, hooks);
    }
    if (pid !== undefined) {
      const started = pid;
      this.started.add(started);
      void proc.exited.then(() => this.started.delete(started));
    }
    return proc;
  }

  /** Every live process descended from what the host started (those included), from /proc's parent links. */
  private descendantsSync(): Set<number> {
    const parents = new Map<number, number>();
    if (existsSync('/proc/self/stat')) {
      for (const pid of allPidsSync()) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
        } catch {
          // gone
        }
      }
    }
    return collectDescendants(this.started, parents);
  }

  private async descendants(): Promise<Set<number>> {
    const parents = new Map<number, number>();
    if (existsSync('/proc/self/stat')) {
      await Promise.all(
        (await allPids()).map(async (pid) => {
          const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
          if (stat) parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
        }),
      );
    }
    return collectDescendants(this.started, parents);
  }

  async processes(): Promise<ProcessInfo[]> {
    const out: ProcessInfo[] = [];
    for (const pid of await this.descendants()) {
      const argv = await cmdlineOf(pid);
      if (argv.length > 0) out.push({ pid, cmd: argv[0]!, args: argv.slice(1) });
    }
    return out.sort((a, b) => a.pid - b.pid);
  }

  signal(pid: number, signal: NodeJS.Signals): boolean {
    // Only a process of this capsule's: the pid is the host's own here.
    if (!Number.isInteger(pid) || pid < 1 || !this.descendantsSync().has(pid)) return false;
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  private signalGroups(signal: NodeJS.Signals): void {
    for (const pgid of this.started) {
      try {
        process.kill(-pgid, signal);
      } catch {
        // the group is gone
      }
    }
  }

  async pause(): Promise<void> {
    this.signalGroups('SIGSTOP');
    this.pausedNow = true;
  }

  async resume(): Promise<void> {
    this.signalGroups('SIGCONT');
    this.pausedNow = false;
  }

  readFile(capsulePath: string, maxBytes: number): Promise<Buffer> {
    return this.fs.readFile(capsulePath, maxBytes);
  }

  readStream(capsulePath: string): Promise<Readable> {
    return this.fs.readStream(capsulePath);
  }

  writeFile(capsulePath: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    return this.fs.writeFile(capsulePath, data, maxBytes);
  }

  list(capsulePath: string, depth: number): Promise<FileEntry[]> {
    return this.fs.list(capsulePath, depth);
  }

  mkdir(capsulePath: string): Promise<FileEntry> {
    return this.fs.mkdir(capsulePath);
  }

  remove(capsulePath: string): Promise<void> {
    return this.fs.remove(capsulePath);
  }

  async usage(): Promise<CapsuleUsage> {
    const pids = [...(await this.descendants())];
    const [cpu, statuses, diskBytes] = await Promise.all([
      Promise.all(pids.map(cpuNsOf)),
      Promise.all(pids.map(statusOf)),
      layerUsage(this.root, false),
    ]);
    return {
      cpuNs: cpu.reduce((a, b) => a + b, 0),
      memBytes: statuses.reduce((sum, s) => sum + (s ? rssBytes(s) : 0), 0),
      diskBytes,
    };
  }

  async snapshot(destDir: string): Promise<{ sizeBytes: number }> {
    await mkdir(destDir, { recursive: true });
    const wasPaused = this.pausedNow;
    if (!wasPaused) await this.pause();
    try {
      const entries = await readdir(this.root);
      if (entries.length > 0) {
        const copied = await runCommand('cp', [
          '-a',
          '-t',
          destDir,
          ...entries.map((e) => path.join(this.root, e)),
        ]);
        if (copied.code !== 0) throw new Error(`snapshot copy failed: ${copied.stderr.trim()}`);
      }
    } finally {
      if (!wasPaused) await this.resume();
    }
    return { sizeBytes: await layerUsage(destDir, false) };
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      const all = await this.descendants();
      this.signalGroups('SIGKILL');
      for (const pid of all) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await rm(this.dir, { recursive: true, force: true });
      this.endCapsule();
    })();
    return this.destroying;
  }
}

function collectDescendants(roots: Set<number>, parents: Map<number, number>): Set<number> {
  const out = new Set<number>();
  for (const pid of roots) if (parents.size === 0 || parents.has(pid)) out.add(pid);
  // Parent links form a tree: repeat until no new child joins.
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!out.has(pid) && out.has(ppid)) {
        out.add(pid);
        grew = true;
      }
    }
  }
  return out;
}

function proxyEnv(proxyUrl: string): Record<string, string> {
  return {
    HTTP_PROXY: proxyUrl,
    HTTPS_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    NO_PROXY: 'localhost,127.0.0.1,::1',
    no_proxy: 'localhost,127.0.0.1,::1',
  };
}

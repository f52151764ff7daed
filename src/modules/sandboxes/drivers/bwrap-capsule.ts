// One file over 400 lines: which host processes are the driver's (bwrap, its
// reaper, the init, the launchers and the standby) is known only here, and
// spawn, the process list, signals, pause and destroy must all agree on it.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import pty from '@lydell/node-pty';
import { envRefusal } from '../envs.ts';
import type { CapsuleFs } from './capsule-fs.ts';
import { pipedProcess, ptyProcess } from './capsule-process.ts';
import { type CapsuleState, removeCapsule } from './capsule-state.ts';
import type { CapsuleCgroups } from './cgroups.ts';
import { layerUsage } from './layer.ts';
import type { ProxyForwarder } from './network.ts';
import {
  commandFrame,
  enterCapsule,
  forkedChild,
  type HostTools,
  joinThenExec,
  launcherEnv,
  locateForked,
} from './nsproc.ts';
import {
  allPids,
  allPidsSync,
  childrenOf,
  cmdlineOf,
  cpuNsOf,
  innermostPid,
  pidNamespaceOf,
  pidNamespaceOfSync,
  rssBytes,
  runCommand,
  stateOf,
  statusOf,
  statusOfSync,
} from './proc.ts';
import type { SpawnedLauncher } from './spawner.ts';
import {
  type CapsuleHandle,
  type CapsuleLimits,
  type CapsuleProcess,
  type CapsuleUsage,
  DriverError,
  type FileEntry,
  type ProcessInfo,
  type SpawnOptions,
} from './types.ts';

// One running bwrap capsule. Host processes of the capsule: bwrap (outside,
// waiting), bwrap's reaper (pid 1 inside), the init (`sleep infinity`, pid 2
// inside) and one nsenter launcher per process the host started (outside,
// waiting for its child; started by the driver's spawner, whose waiter for it
// stays outside the capsule's cgroups). Everything else is the capsule's own,
// except a standby launcher's last step while it waits (see standBy).

/** bwrap outside, its reaper, the init: processes of the driver's, not the user's. */
export const DRIVER_PIDS = 3;
const UNSTICK_INTERVAL_MS = 250;
const TERMINAL_TYPE = 'xterm-256color';
/** A standby launcher waiting: nsenter outside and its last step inside, both in the cgroups. */
const STANDBY_PIDS = 2;
/** Mount points bound over the layer; a snapshot leaves them out. */
const NOT_IN_SNAPSHOT = new Set(['usr', 'proc', 'dev', 'run']);

export interface BwrapCapsuleParts {
  id: string;
  dir: string;
  /** Host path of the layer. */
  root: string;
  state: CapsuleState;
  tmpfs: boolean;
  limits: CapsuleLimits;
  tools: HostTools;
  /** Paddock is root: launchers drop supplementary groups. */
  asRoot: boolean;
  cgroups: CapsuleCgroups | null;
  fs: CapsuleFs;
  bwrap: ChildProcess;
  reaperPid: number;
  initPid: number;
  pidNs: string;
  /** Environment every process starts from (before the capsule's and its own envs). */
  baseEnv: Record<string, string>;
  envs: Record<string, string>;
  /** The filter every process runs under (null: none for this architecture). */
  seccomp: Buffer | null;
  forwarder: ProxyForwarder | null;
  ended: Promise<void>;
  /** Called once the capsule is gone (its uid may be handed out again). */
  onDestroyed(): void;
  /** Starts a launcher with piped stdio, from the driver's spawner (see spawner.ts). */
  launch(argv: string[], env: Record<string, string>): SpawnedLauncher;
}

/** A launcher started ahead, waiting in the capsule for a command (see BwrapCapsule.standBy). */
interface Standby {
  launcher: SpawnedLauncher;
  exited: boolean;
  /** Host pid of its last step in the capsule, once found: not one of the user's processes yet. */
  insidePid: number | null;
  found: Promise<number | null>;
}

export class BwrapCapsule implements CapsuleHandle {
  readonly isolation = 'bwrap' as const;
  readonly id: string;
  readonly ended: Promise<void>;
  private pausedNow = false;
  /** Host pids of the nsenter launchers still waiting for their process. */
  private readonly launchers = new Set<number>();
  /** Launchers being started, whose pids are not known yet. */
  private launching = 0;
  private unstickTimer: NodeJS.Timeout | null = null;
  private destroying: Promise<void> | null = null;
  private standby: Standby | null = null;
  /** The pids.max writes, one after another (updatePidsMax). */
  private pidsWrites: Promise<void> = Promise.resolve();

  constructor(private readonly p: BwrapCapsuleParts) {
    this.id = p.id;
    this.ended = p.ended;
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  private updatePidsMax(): void {
    const cgroups = this.p.cgroups;
    if (!cgroups) return;
    // The launchers wait in the capsule's cgroup (they joined it before
    // forking): counted here so that maxProcesses is the user's alone. The
    // writes go one after another, each with the count as it is when it
    // runs, so two changes close together cannot land out of order.
    this.pidsWrites = this.pidsWrites
      .then(() =>
        cgroups.setPidsMax(
          this.p.limits.maxProcesses +
            DRIVER_PIDS +
            this.launchers.size +
            this.launching +
            (this.standby ? STANDBY_PIDS : 0),
        ),
      )
      .catch(() => {});
  }

  /**
   * nsenter stops itself when its child stops (job-control mirroring) and
   * only continues the child once it is continued itself. A process stopped
   * and continued from inside the capsule (kill -STOP, then -CONT) would
   * leave its launcher stopped for good, unable to report the exit. So a
   * stopped launcher whose process runs again (or is gone) is continued.
   */
  private watchLaunchers(): void {
    if (this.unstickTimer) return;
    this.unstickTimer = setInterval(() => {
      if (this.launchers.size === 0) {
        clearInterval(this.unstickTimer!);
        this.unstickTimer = null;
        return;
      }
      void this.unstickLaunchers();
    }, UNSTICK_INTERVAL_MS);
    this.unstickTimer.unref();
  }

  private async unstickLaunchers(): Promise<void> {
    for (const launcher of this.launchers) {
      if ((await stateOf(launcher)) !== 'T') continue;
      const [child] = await childrenOf(launcher);
      const childState = child === undefined ? null : await stateOf(child);
      if (childState === 'T' || childState === 't') continue;
      try {
        process.kill(launcher, 'SIGCONT');
      } catch {
        // gone
      }
    }
  }

  /**
   * Starts the launcher of the next piped process ahead (a spare's first
   * command): it joins the cgroups, enters the namespaces and drops its
   * privileges now, then waits in the capsule, as the capsule's user, for its
   * command on stdin. Its environment is the launchers' fixed one; the
   * caller's environment reaches it only with the command, after the drop
   * (nsproc.ts). The next piped spawn takes it; a terminal lets it go.
   */
  standBy(): void {
    if (this.standby || this.destroying) return;
    const command = enterCapsule(
      this.p.tools,
      { initHostPid: this.p.initPid, seccomp: this.p.seccomp },
      null,
      { terminal: false, asRoot: this.p.asRoot },
    );
    const argv = joinThenExec(this.p.cgroups?.procsFiles ?? [], this.p.limits.maxOpenFiles, command);
    const launcher = this.p.launch([this.p.tools.sh, ...argv], launcherEnv({}));
    const standby: Standby = {
      launcher,
      exited: false,
      insidePid: null,
      found: launcher.pidKnown.then((pid) =>
        pid === undefined ? null : forkedChild(pid, this.p.pidNs).catch(() => null),
      ),
    };
    void standby.found.then((pid) => {
      standby.insidePid = pid;
    });
    const gone = () => {
      standby.exited = true;
      if (this.standby !== standby) return;
      this.standby = null;
      this.updatePidsMax();
    };
    launcher.on('exit', gone);
    launcher.on('error', gone);
    this.standby = standby;
    this.updatePidsMax();
  }

  standDown(): void {
    this.takeStandby(true);
  }

  /** The standby launcher for a piped process; a terminal's spawn lets it go (it cannot serve one). */
  private takeStandby(letGo: boolean): SpawnedLauncher | null {
    const standby = this.standby;
    if (!standby) return null;
    this.standby = null;
    this.updatePidsMax();
    if (letGo || standby.exited) {
      // End of input before a command: it exits.
      standby.launcher.stdin.end();
      return null;
    }
    return standby.launcher;
  }

  spawn(options: SpawnOptions): CapsuleProcess {
    if (this.destroying) throw new DriverError('failed', `capsule ${this.id} is destroyed`);
    const callerEnv = { ...this.p.envs, ...(options.envs ?? {}) };
    const refused = envRefusal(callerEnv);
    if (refused) throw new DriverError('invalid', refused);
    const env: Record<string, string> = { ...this.p.baseEnv, ...callerEnv };
    if (options.pty && !callerEnv.TERM) env.TERM = TERMINAL_TYPE;
    const command = { cwd: options.cwd ?? '/home/user', cmd: options.cmd, args: options.args ?? [] };
    const standby = this.takeStandby(options.pty !== undefined);
    // Counted before the spawn, until its pid is known: its fork into the
    // capsule must find room under pids.max.
    this.launching += 1;
    this.updatePidsMax();
    let launcher = 0;
    let counted = true;
    const known = (pid: number) => {
      if (counted) this.launching -= 1;
      counted = false;
      if (pid > 0) {
        launcher = pid;
        this.launchers.add(pid);
        this.watchLaunchers();
      }
    };
    const hooks = {
      locate: (launcherPid: number) => locateForked(launcherPid, this.p.pidNs, this.p.tools),
      owns: (hostPid: number) => pidNamespaceOfSync(hostPid) === this.p.pidNs,
      onExit: () => {
        if (counted) this.launching -= 1;
        counted = false;
        this.launchers.delete(launcher);
        this.updatePidsMax();
      },
    };
    // uid/gid 0 for root makes the spawn drop supplementary groups before exec.
    const ids = this.p.asRoot ? { uid: 0, gid: 0 } : {};
    const launch = () =>
      joinThenExec(
        this.p.cgroups?.procsFiles ?? [],
        this.p.limits.maxOpenFiles,
        enterCapsule(this.p.tools, { initHostPid: this.p.initPid, seccomp: this.p.seccomp }, command, {
          terminal: options.pty !== undefined,
          asRoot: this.p.asRoot,
        }),
      );
    let proc: CapsuleProcess;
    try {
      if (options.pty) {
        // The launchers see a fixed terminal type; the caller's TERM is in the carried environment.
        const term = pty.spawn(this.p.tools.sh, launch(), {
          name: TERMINAL_TYPE,
          cols: options.pty.cols,
          rows: options.pty.rows,
          cwd: '/',
          env: launcherEnv(env),
          encoding: null,
          ...ids,
        });
        known(term.pid);
        proc = ptyProcess(term, hooks);
      } else {
        let child: SpawnedLauncher;
        if (standby) {
          // Already in the capsule and past the privilege drop: only the command is missing.
          standby.stdin.write(commandFrame(env, command));
          child = standby;
        } else {
          // In a session of its own (the spawner's setsid), so no process of the
          // capsule has the host's controlling terminal (TIOCSTI could type into it).
          child = this.p.launch([this.p.tools.sh, ...launch()], launcherEnv(env));
        }
        void child.pidKnown.then((pid) => known(pid ?? 0));
        proc = pipedProcess(child, hooks);
      }
    } catch (err) {
      known(0);
      throw err;
    }
    return proc;
  }

  /** Host pids of the capsule's processes with their status, the driver's own included. */
  private async members(): Promise<Array<{ hostPid: number; status: string }>> {
    const candidates = this.p.cgroups ? await this.p.cgroups.members() : await allPids();
    const out: Array<{ hostPid: number; status: string }> = [];
    await Promise.all(
      candidates.map(async (hostPid) => {
        if ((await pidNamespaceOf(hostPid)) !== this.p.pidNs) return;
        const status = await statusOf(hostPid);
        if (status) out.push({ hostPid, status });
      }),
    );
    return out;
  }

  private isDriverPid(hostPid: number): boolean {
    return hostPid === this.p.reaperPid || hostPid === this.p.initPid;
  }

  async processes(): Promise<ProcessInfo[]> {
    const out: ProcessInfo[] = [];
    const standby = this.standby ? await this.standby.found : null;
    for (const { hostPid, status } of await this.members()) {
      if (this.isDriverPid(hostPid) || hostPid === standby) continue;
      const pid = innermostPid(status);
      const argv = await cmdlineOf(hostPid);
      // A zombie has no cmdline: its name is all there is.
      const name = /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '';
      if (pid !== null) out.push({ pid, cmd: argv[0] ?? name, args: argv.slice(1) });
    }
    return out.sort((a, b) => a.pid - b.pid);
  }

  signal(pid: number, signal: NodeJS.Signals): boolean {
    const hostPid = this.hostPidOf(pid);
    if (hostPid === null) return false;
    try {
      process.kill(hostPid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Capsule pid → host pid, never one of the driver's processes (killing the init would end the capsule). */
  private hostPidOf(capsulePid: number): number | null {
    if (!Number.isInteger(capsulePid) || capsulePid < 1) return null;
    let candidates: number[];
    const procs = this.p.cgroups?.procsFiles[0];
    try {
      candidates = procs
        ? readFileSync(procs, 'utf8').split('\n').filter(Boolean).map(Number)
        : allPidsSync();
    } catch {
      candidates = allPidsSync();
    }
    for (const hostPid of candidates) {
      if (this.isDriverPid(hostPid) || hostPid === this.standby?.insidePid) continue;
      if (pidNamespaceOfSync(hostPid) !== this.p.pidNs) continue;
      const status = statusOfSync(hostPid);
      if (status && innermostPid(status) === capsulePid) return hostPid;
    }
    return null;
  }

  async pause(): Promise<void> {
    if (this.pausedNow) return;
    if (this.p.cgroups?.hasFreezer) await this.p.cgroups.freeze();
    else await this.signalAll('SIGSTOP');
    this.pausedNow = true;
  }

  async resume(): Promise<void> {
    if (!this.pausedNow) return;
    if (this.p.cgroups?.hasFreezer) await this.p.cgroups.thaw();
    else {
      await this.signalAll('SIGCONT');
      // They stopped themselves with their processes (see watchLaunchers).
      const standby = this.standby?.launcher.pid;
      for (const launcher of standby ? [...this.launchers, standby] : this.launchers) {
        try {
          process.kill(launcher, 'SIGCONT');
        } catch {
          // gone
        }
      }
    }
    this.pausedNow = false;
  }

  private async signalAll(signal: NodeJS.Signals): Promise<void> {
    for (const { hostPid } of await this.members()) {
      try {
        process.kill(hostPid, signal);
      } catch {
        // gone
      }
    }
  }

  readFile(capsulePath: string, maxBytes: number): Promise<Buffer> {
    return this.p.fs.readFile(capsulePath, maxBytes);
  }

  readStream(capsulePath: string): Promise<Readable> {
    return this.p.fs.readStream(capsulePath);
  }

  writeFile(capsulePath: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    return this.p.fs.writeFile(capsulePath, data, maxBytes);
  }

  list(capsulePath: string, depth: number): Promise<FileEntry[]> {
    return this.p.fs.list(capsulePath, depth);
  }

  mkdir(capsulePath: string): Promise<FileEntry> {
    return this.p.fs.mkdir(capsulePath);
  }

  remove(capsulePath: string): Promise<void> {
    return this.p.fs.remove(capsulePath);
  }

  async usage(): Promise<CapsuleUsage> {
    const [cpu, mem, diskBytes] = await Promise.all([
      this.p.cgroups?.cpuNs() ?? Promise.resolve(null),
      this.p.cgroups?.memBytes() ?? Promise.resolve(null),
      layerUsage(this.p.root, this.p.tmpfs),
    ]);
    if (cpu !== null && mem !== null) return { cpuNs: cpu, memBytes: mem, diskBytes };
    // Without the controllers: the sum over the processes alive now.
    const members = await this.members();
    const cpuNs =
      cpu ?? (await Promise.all(members.map((m) => cpuNsOf(m.hostPid)))).reduce((a, b) => a + b, 0);
    const memBytes = mem ?? members.reduce((sum, m) => sum + rssBytes(m.status), 0);
    return { cpuNs, memBytes, diskBytes };
  }

  async snapshot(destDir: string): Promise<{ sizeBytes: number }> {
    await mkdir(destDir, { recursive: true });
    const wasPaused = this.pausedNow;
    if (!wasPaused) await this.pause();
    try {
      const entries = (await readdir(this.p.root)).filter((name) => !NOT_IN_SNAPSHOT.has(name));
      if (entries.length > 0) {
        const sources = entries.map((name) => path.join(this.p.root, name));
        const copied = await runCommand('cp', ['-a', '--reflink=auto', '-t', destDir, ...sources]);
        if (copied.code !== 0) {
          throw new DriverError('failed', `snapshot copy failed: ${copied.stderr.trim()}`);
        }
      }
    } finally {
      if (!wasPaused) await this.resume();
    }
    const du = await runCommand('du', ['-s', '-b', destDir]);
    return { sizeBytes: Number(du.stdout.split(/\s/)[0]) || 0 };
  }

  destroy(): Promise<void> {
    this.destroying ??= this.tearDown();
    return this.destroying;
  }

  private async tearDown(): Promise<void> {
    if (this.unstickTimer) clearInterval(this.unstickTimer);
    this.p.forwarder?.close();
    // Killing the reaper (pid 1 of the capsule's pid namespace) makes the
    // kernel kill everything in it. bwrap outside is left to reap it and
    // exit: killed first, it would leave the reaper a zombie of the host's init.
    try {
      process.kill(this.p.reaperPid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (this.pausedNow) await this.p.cgroups?.thaw().catch(() => {});
    const timedOut = await Promise.race([
      this.ended.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 5_000)),
    ]);
    if (timedOut) this.p.bwrap.kill('SIGKILL');
    // What is left outside the pid namespace: the launchers.
    await this.p.cgroups?.killAll();
    await removeCapsule(this.p.dir, this.p.state);
    this.p.onDestroyed();
  }
}

// One file over 400 lines: the host in this process owns capsule handles,
// their directories, spares and followed processes in one set of maps that
// create, adopt, destroy and clean-up must change together.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Log } from '../../../core/context.ts';
import type { HostId } from '../../../core/ids.ts';
import { detectCgroups } from '../drivers/cgroup-detect.ts';
import { removeAbandonedCgroups } from '../drivers/cgroups.ts';
import { type CapsuleHandle, type CapsuleProcess, type Driver, DriverError } from '../drivers/types.ts';
import {
  type ExecRequest,
  type ExecResult,
  type FollowedProcess,
  type HostCapsuleSpec,
  type HostProcess,
  type OutputListener,
  OutputReplay,
  type SandboxHost,
  type StartRequest,
} from '../host.ts';
import type { EgressListener, EgressProxy } from './egress.ts';
import { CapsuleMetrics, type MetricPoint, type MetricRange, SAMPLE_EVERY_MS } from './metrics.ts';

/** Finished processes stay visible (exit code, output) for this long. */
const KEEP_FINISHED_MS = 10 * 60_000;
const MAX_FOLLOWED_PER_CAPSULE = 200;
/**
 * An empty capsule cgroup unchanged this long is abandoned: a capsule being
 * created (by this or another host on the machine) has its init in its
 * cgroup well within it.
 */
const ABANDONED_CGROUP_MS = 60_000;

/**
 * How long after handing out a spare the next one starts: a start forks the
 * server and scans /proc, which the capsule just handed out would feel in its
 * first commands (at 100 ms it landed on the first exec; docs/sandboxes.md).
 */
const REFILL_DELAY_MS = 1_000;
/**
 * How long a spare's launcher started ahead waits for the first command
 * after the hand-out: first commands come at once, and a capsule left idle
 * should not hold it (about 0.7 MB); a later command is launched as usual.
 */
const STANDBY_AFTER_HANDOUT_MS = 1_000;

interface Live {
  handle: CapsuleHandle;
  followed: Map<string, Followed>;
  egress: EgressListener | null;
  metrics: CapsuleMetrics;
}

class Followed implements FollowedProcess {
  private readonly output = new OutputReplay();
  exitCode: number | null = null;
  finishedAt: number | null = null;
  readonly exited: Promise<number>;

  constructor(
    private readonly proc: CapsuleProcess,
    readonly tag: string,
    readonly pty: boolean,
  ) {
    const take = (stream: 'stdout' | 'stderr') => (data: Buffer) => this.output.push(stream, data);
    proc.stdout.on('data', take('stdout'));
    proc.stderr.on('data', take('stderr'));
    this.exited = proc.exited.then((code) => {
      this.exitCode = code;
      this.finishedAt = Date.now();
      return code;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  follow(onOutput: OutputListener): () => void {
    return this.output.follow(onOutput);
  }

  write(data: Buffer | string): void {
    this.proc.write(data);
  }

  resize(cols: number, rows: number): void {
    this.proc.resize(cols, rows);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.proc.kill(signal);
  }
}

/** Decodes as UTF-8 when the bytes are valid UTF-8; otherwise says base64 (Wrenn). */
function encodeOutput(stdout: Buffer, stderr: Buffer): Pick<ExecResult, 'stdout' | 'stderr' | 'encoding'> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    return { stdout: decoder.decode(stdout), stderr: decoder.decode(stderr), encoding: 'utf-8' };
  } catch {
    return { stdout: stdout.toString('base64'), stderr: stderr.toString('base64'), encoding: 'base64' };
  }
}

/**
 * The sandbox host of `paddock serve`: capsules on this machine through a
 * driver. It keeps what only a host knows — the capsules' handles and the
 * processes it started (tags, output for followers) — in memory; the
 * control plane keeps everything else in the database.
 */
export class LocalHost implements SandboxHost {
  private readonly capsules = new Map<string, Live>();
  private readonly endedListeners: Array<(capsuleId: string, reason: string) => void> = [];
  private readonly destroying = new Set<string>();
  private sampler: NodeJS.Timeout | undefined;
  private closed = false;
  /** Each capsule's directory (a capsule started from a spare keeps the spare's). */
  private readonly dirs = new Map<string, string>();
  private readonly spares: Array<{ shape: string; handle: CapsuleHandle; dir: string }> = [];
  private lastShape: { key: string; limits: HostCapsuleSpec['limits'] } | undefined;
  private filling = false;

  constructor(
    readonly id: HostId,
    private readonly driver: Driver,
    /** Where capsules' and templates' trees live on this machine. */
    private readonly baseDir: string,
    /** Serves capsules created with a network allow list (none: such capsules are refused). */
    private readonly egress: EgressProxy | null = null,
    /** Capsules kept started ahead for the next create of the last shape asked for (0: none). */
    private readonly warm = 0,
  ) {
    this.scheduleSampling();
  }

  /**
   * Reads every running capsule's counters into its metrics, a few at a
   * time; the next round starts a sample interval after this one ends, so a
   * host with thousands of capsules samples less often rather than falling
   * behind.
   */
  private scheduleSampling(): void {
    if (this.closed) return;
    this.sampler = setTimeout(() => {
      void this.sampleAll().finally(() => this.scheduleSampling());
    }, SAMPLE_EVERY_MS);
    this.sampler.unref();
  }

  private async sampleAll(): Promise<void> {
    const queue = [...this.capsules.values()];
    const worker = async () => {
      for (let live = queue.shift(); live; live = queue.shift()) {
        if (live.handle.paused) {
          live.metrics.gap();
          continue;
        }
        try {
          const usage = await live.handle.usage();
          live.metrics.record(Date.now(), usage);
        } catch {
          // A capsule that ended meanwhile: its record goes with it.
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  metrics(capsuleId: string, range: MetricRange): MetricPoint[] {
    return this.live(capsuleId).metrics.points(range, Date.now());
  }

  get isolation() {
    return this.driver.isolation;
  }

  get warnings() {
    return this.driver.warnings;
  }

  private capsuleDir(capsuleId: string): string {
    return path.join(this.baseDir, 'capsules', capsuleId);
  }

  private live(capsuleId: string): Live {
    const live = this.capsules.get(capsuleId);
    if (!live) throw new DriverError('not_found', `capsule ${capsuleId} is not running on this host`);
    return live;
  }

  /**
   * Clears what a previous server process left: the trees of capsules this
   * host no longer runs, any other capsule directory no live capsule or
   * spare of this process owns (spares of the previous process among them),
   * and capsule cgroups a killed host left empty (their directories gone).
   */
  async cleanupLeftovers(capsuleIds: string[], log: Log): Promise<void> {
    const owned = new Set([...this.dirs.values(), ...this.spares.map((sp) => sp.dir)]);
    for (const id of this.capsules.keys()) owned.add(this.capsuleDir(id));
    const root = path.join(this.baseDir, 'capsules');
    const present = await readdir(root).catch(() => [] as string[]);
    const candidates = new Set([
      ...capsuleIds.map((id) => this.capsuleDir(id)),
      ...present.map((n) => path.join(root, n)),
    ]);
    for (const dir of candidates) {
      if (owned.has(dir)) continue;
      await this.driver
        .cleanup(dir)
        .catch((err: unknown) =>
          log.warn({ err, dir }, "a leftover capsule's directory could not be cleared"),
        );
    }
    if (this.driver.isolation !== 'bwrap') return;
    try {
      const { support } = await detectCgroups();
      if (!support) return;
      const removed = await removeAbandonedCgroups(Object.values(support.bases), {
        idleMs: ABANDONED_CGROUP_MS,
        nowMs: Date.now(),
      });
      if (removed.length > 0)
        log.info({ removed: removed.length }, 'removed empty cgroups a stopped host left');
    } catch (err) {
      log.warn({ err }, 'the sweep for abandoned cgroups failed');
    }
  }

  /** How many capsules are started ahead now. */
  warmSpares(): number {
    return this.spares.length;
  }

  /** Spares of this shape (minimal template, no network, no envs) can stand in for a new capsule. */
  private shapeOf(spec: HostCapsuleSpec): string | null {
    if (spec.templatePath || spec.networkAllow || Object.keys(spec.envs).length > 0) return null;
    return JSON.stringify(spec.limits);
  }

  /**
   * Keeps `warm` capsules of the shape last asked for started ahead, so a
   * create of that shape takes one at once instead of waiting for namespaces,
   * a layer and cgroups. Spares of other shapes give way.
   */
  private refill(): void {
    if (this.filling || this.closed || this.warm === 0 || !this.lastShape) return;
    this.filling = true;
    void (async () => {
      // A moment's delay: the capsule just handed out gets the CPU for its first commands.
      await new Promise((r) => setTimeout(r, REFILL_DELAY_MS));
      try {
        for (;;) {
          const shape = this.lastShape;
          if (this.closed || !shape) return;
          const same = this.spares.filter((sp) => sp.shape === shape.key).length;
          if (same >= this.warm) return;
          if (this.spares.length >= this.warm) {
            const other = this.spares.findIndex((sp) => sp.shape !== shape.key);
            const [gone] = this.spares.splice(other, 1);
            await gone?.handle.destroy().catch(() => undefined);
            continue;
          }
          const id = `spare_${randomBytes(8).toString('hex')}`;
          const dir = this.capsuleDir(id);
          this.dirs.set(id, dir);
          const handle = await this.driver
            .create({ id, dir, templateDir: null, limits: shape.limits, envs: {}, network: null })
            .finally(() => this.dirs.delete(id));
          if (this.closed) {
            await handle.destroy().catch(() => undefined);
            return;
          }
          // Its first command, whenever it comes, finds a launcher in the capsule already.
          handle.standBy?.();
          const spare = { shape: shape.key, handle, dir };
          this.spares.push(spare);
          void handle.ended.then(() => {
            const i = this.spares.indexOf(spare);
            if (i >= 0) this.spares.splice(i, 1);
          });
        }
      } catch {
        // A spare that could not start: the next create starts its capsule the slow way.
      } finally {
        this.filling = false;
      }
    })();
  }

  /** Hands out a spare of the spec's shape, if one is ready: synchronous, so the control plane can record the capsule running at once. */
  claimSpare(spec: HostCapsuleSpec): boolean {
    const shape = this.shapeOf(spec);
    if (!shape) return false;
    this.lastShape = { key: shape, limits: spec.limits };
    const i = this.spares.findIndex((sp) => sp.shape === shape);
    if (i < 0) return false;
    const [spare] = this.spares.splice(i, 1);
    this.adopt(spec, spare!.handle, spare!.dir, null);
    setTimeout(() => spare!.handle.standDown?.(), STANDBY_AFTER_HANDOUT_MS).unref();
    this.refill();
    return true;
  }

  async create(spec: HostCapsuleSpec): Promise<void> {
    if (this.claimSpare(spec)) return;
    await mkdir(path.join(this.baseDir, 'capsules'), { recursive: true });
    const shape = this.shapeOf(spec);
    let listener: EgressListener | null = null;
    if (spec.networkAllow) {
      if (!this.egress)
        throw new DriverError('failed', 'this host has no egress proxy: capsules here have no network');
      listener = await this.egress.open(spec.networkAllow);
    }
    let handle: CapsuleHandle;
    const dir = this.capsuleDir(spec.id);
    this.dirs.set(spec.id, dir);
    try {
      handle = await this.driver.create({
        id: spec.id,
        dir,
        templateDir: spec.templatePath,
        limits: spec.limits,
        envs: spec.envs,
        network: listener ? { proxyUrl: listener.url } : null,
      });
    } catch (err) {
      listener?.close();
      this.dirs.delete(spec.id);
      throw err;
    }
    this.adopt(spec, handle, dir, listener);
    if (shape) this.refill();
  }

  private adopt(
    spec: HostCapsuleSpec,
    handle: CapsuleHandle,
    dir: string,
    listener: EgressListener | null,
  ): void {
    const metrics = new CapsuleMetrics(spec.limits.vcpus);
    this.capsules.set(spec.id, { handle, followed: new Map(), egress: listener, metrics });
    this.dirs.set(spec.id, dir);
    // A first reading at once, so a capsule has a point before the next round.
    void handle
      .usage()
      .then((u) => metrics.record(Date.now(), u))
      .catch(() => undefined);
    handle.ended.then(() => {
      if (this.destroying.has(spec.id) || !this.capsules.has(spec.id)) return;
      this.capsules.delete(spec.id);
      listener?.close();
      for (const l of this.endedListeners) l(spec.id, 'capsule_exited');
    });
  }

  has(capsuleId: string): boolean {
    return this.capsules.has(capsuleId);
  }

  /** The capsules this host runs (a remote host's heartbeat). */
  ids(): string[] {
    return [...this.capsules.keys()];
  }

  async destroy(capsuleId: string): Promise<void> {
    const live = this.capsules.get(capsuleId);
    this.destroying.add(capsuleId);
    try {
      if (live) await live.handle.destroy();
      else await this.driver.cleanup(this.dirs.get(capsuleId) ?? this.capsuleDir(capsuleId));
    } finally {
      this.dirs.delete(capsuleId);
      live?.egress?.close();
      this.capsules.delete(capsuleId);
      this.destroying.delete(capsuleId);
    }
  }

  async pause(capsuleId: string): Promise<void> {
    await this.live(capsuleId).handle.pause();
  }

  async resume(capsuleId: string): Promise<void> {
    const live = this.live(capsuleId);
    await live.handle.resume();
    live.metrics.gap();
  }

  async exec(capsuleId: string, req: ExecRequest): Promise<ExecResult> {
    const { handle } = this.live(capsuleId);
    const started = performance.now();
    const proc = handle.spawn(this.command(req));
    proc.end();
    const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const size = { stdout: 0, stderr: 0 };
    let truncated = false;
    const collect = (stream: 'stdout' | 'stderr') => (data: Buffer) => {
      const room = req.maxOutputBytes - size[stream];
      if (room <= 0) {
        truncated = true;
        return;
      }
      const piece = data.length > room ? data.subarray(0, room) : data;
      if (piece.length < data.length) truncated = true;
      out[stream].push(piece);
      size[stream] += piece.length;
    };
    proc.stdout.on('data', collect('stdout'));
    proc.stderr.on('data', collect('stderr'));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, req.timeoutSec * 1000);
    let code: number;
    try {
      code = await proc.exited;
    } finally {
      clearTimeout(timer);
    }
    return {
      ...encodeOutput(Buffer.concat(out.stdout), Buffer.concat(out.stderr)),
      exit_code: timedOut ? 124 : code,
      duration_ms: Math.round(performance.now() - started),
      truncated,
      timed_out: timedOut,
    };
  }

  /**
   * Wrenn's cmd + args: with args (even an empty list) the command runs as
   * given; without, the line runs through /bin/sh -c, so agents can use
   * pipes and redirection.
   */
  private command(req: { cmd: string; args?: string[]; envs?: Record<string, string>; cwd?: string }) {
    const direct = req.args !== undefined;
    return {
      cmd: direct ? req.cmd : '/bin/sh',
      args: direct ? req.args! : ['-c', req.cmd],
      ...(req.envs ? { envs: req.envs } : {}),
      ...(req.cwd ? { cwd: req.cwd } : {}),
    };
  }

  async start(capsuleId: string, req: StartRequest): Promise<FollowedProcess> {
    const live = this.live(capsuleId);
    this.prune(live);
    const tag = req.tag ?? `${req.pty ? 'pty' : 'proc'}-${randomBytes(4).toString('hex')}`;
    const existing = live.followed.get(tag);
    if (existing && existing.exitCode === null) {
      throw new DriverError('exists', `a running process already has the tag "${tag}"`);
    }
    const proc = live.handle.spawn({ ...this.command(req), ...(req.pty ? { pty: req.pty } : {}) });
    const followed = new Followed(proc, tag, req.pty !== undefined);
    live.followed.set(tag, followed);
    // The capsule-side pid is known once the command runs inside (what callers select it by).
    await proc.started;
    return followed;
  }

  async launch(capsuleId: string, req: StartRequest): Promise<{ pid: number; tag: string }> {
    const f = await this.start(capsuleId, req);
    return { pid: f.pid, tag: f.tag ?? '' };
  }

  private prune(live: Live): void {
    const now = Date.now();
    for (const [tag, f] of live.followed) {
      if (f.finishedAt !== null && now - f.finishedAt > KEEP_FINISHED_MS) live.followed.delete(tag);
    }
    if (live.followed.size >= MAX_FOLLOWED_PER_CAPSULE) {
      for (const [tag, f] of live.followed) {
        if (f.finishedAt !== null) live.followed.delete(tag);
        if (live.followed.size < MAX_FOLLOWED_PER_CAPSULE) break;
      }
    }
  }

  followed(capsuleId: string, selector: string): FollowedProcess | undefined {
    const live = this.capsules.get(capsuleId);
    if (!live) return undefined;
    if (/^\d+$/.test(selector)) {
      const pid = Number(selector);
      for (const f of live.followed.values()) if (f.pid === pid && f.exitCode === null) return f;
      return undefined;
    }
    return live.followed.get(selector);
  }

  async processes(capsuleId: string): Promise<HostProcess[]> {
    const live = this.live(capsuleId);
    const tags = new Map<number, string>();
    for (const f of live.followed.values()) if (f.exitCode === null) tags.set(f.pid, f.tag);
    return (await live.handle.processes()).map((p) => ({ ...p, tag: tags.get(p.pid) ?? null }));
  }

  async kill(capsuleId: string, selector: string, signal: NodeJS.Signals): Promise<boolean> {
    const live = this.live(capsuleId);
    if (/^\d+$/.test(selector)) return live.handle.signal(Number(selector), signal);
    const f = live.followed.get(selector);
    if (!f || f.exitCode !== null) return false;
    return live.handle.signal(f.pid, signal);
  }

  readFile(capsuleId: string, p: string, maxBytes: number): Promise<Buffer> {
    return this.live(capsuleId).handle.readFile(p, maxBytes);
  }

  readStream(capsuleId: string, p: string): Promise<Readable> {
    return this.live(capsuleId).handle.readStream(p);
  }

  writeFile(capsuleId: string, p: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    return this.live(capsuleId).handle.writeFile(p, data, maxBytes);
  }

  list(capsuleId: string, p: string, depth: number) {
    return this.live(capsuleId).handle.list(p, depth);
  }

  mkdir(capsuleId: string, p: string) {
    return this.live(capsuleId).handle.mkdir(p);
  }

  remove(capsuleId: string, p: string): Promise<void> {
    return this.live(capsuleId).handle.remove(p);
  }

  usage(capsuleId: string) {
    return this.live(capsuleId).handle.usage();
  }

  async snapshot(capsuleId: string, templateId: string): Promise<{ path: string; sizeBytes: number }> {
    const dest = path.join(this.baseDir, 'templates', templateId);
    await mkdir(dest, { recursive: true });
    try {
      const { sizeBytes } = await this.live(capsuleId).handle.snapshot(dest);
      return { path: dest, sizeBytes };
    } catch (err) {
      await rm(dest, { recursive: true, force: true });
      throw err;
    }
  }

  async removeTemplate(p: string): Promise<void> {
    // Only trees this host made: a path from the database must not point anywhere else.
    const root = path.join(this.baseDir, 'templates');
    const resolved = path.resolve(p);
    if (!resolved.startsWith(`${root}${path.sep}`)) return;
    await rm(resolved, { recursive: true, force: true });
  }

  onEnded(listener: (capsuleId: string, reason: string) => void): void {
    this.endedListeners.push(listener);
  }

  /** The server is stopping: its capsules die with it (their records say so at the next start). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.sampler);
    const ids = [...this.capsules.keys()];
    const spares = this.spares.splice(0);
    await Promise.all([
      ...ids.map((id) => this.destroy(id).catch(() => undefined)),
      ...spares.map((sp) => sp.handle.destroy().catch(() => undefined)),
    ]);
  }
}

import type { Readable } from 'node:stream';
import { sql } from 'drizzle-orm';
import { type Clock, SECOND_MS } from '../../core/clock.ts';
import {
  AppError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  ValidationError,
} from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { decodeCursor, pageLimit, toPage } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { type CapsuleStatus, capsules, ENDED_STATUSES } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, type Principal, requireScope, type Scope } from '../identity/principal.ts';
import { DriverError } from './drivers/types.ts';
import { envProblems } from './envs.ts';
import type { HostCapsuleSpec, SandboxHost } from './host.ts';
import type { MetricRange } from './metrics.ts';
import * as repo from './repo.ts';
import type { CreateCapsuleInput, ExecInput } from './schemas.ts';
import {
  SAMPLE_TEAMS_EVERY_MS,
  type StatsRange,
  sampleTeams,
  splitByDay,
  teamStats,
  teamUsage,
} from './stats.ts';

export interface SandboxOptions {
  /** Per stream of a foreground exec. */
  execOutputLimitBytes: number;
  /** files/read and files/write; the stream routes go up to the capsule's disk. */
  fileLimitBytes: number;
  /** How often running capsules are checked against their timeout_sec. */
  sweepIntervalMs: number;
}

export const DEFAULT_SANDBOX_OPTIONS: SandboxOptions = {
  execOutputLimitBytes: 1024 * 1024,
  fileLimitBytes: 100 * 1024 * 1024,
  sweepIntervalMs: 5 * SECOND_MS,
};

/** Wrenn: "positive values below 60 are silently clamped to 60". */
export function effectiveTimeoutSec(requested: number | undefined): number {
  const t = requested ?? 0;
  return t > 0 && t < 60 ? 60 : t;
}

/** What the host is asked to start (every capsule process gets at most these). */
function hostSpec(
  id: string,
  teamId: string,
  templatePath: string | null,
  limits: { memoryMb: number; vcpus: number; diskMb: number },
  networkAllow: string[] | null,
): HostCapsuleSpec {
  return {
    id,
    teamId,
    templatePath,
    limits: { ...limits, maxProcesses: 512, maxOpenFiles: 4096 },
    envs: {},
    networkAllow,
  };
}

/** Activity is written at most this often per capsule (auto-pause works in whole seconds anyway). */
const TOUCH_EVERY_MS = 2 * SECOND_MS;

function view(c: repo.CapsuleRow, now: Date) {
  const running = c.runningSince ? Math.floor((now.getTime() - c.runningSince.getTime()) / 1000) : 0;
  return {
    id: c.id,
    team_id: c.teamId,
    status: c.status,
    status_reason: c.statusReason,
    template: c.template,
    vcpus: c.vcpus,
    memory_mb: c.memoryMb,
    disk_size_mb: c.diskSizeMb,
    timeout_sec: c.timeoutSec,
    network: c.networkAllow ? { allow: c.networkAllow } : null,
    metadata: c.metadata,
    isolation: c.isolation,
    host_id: c.hostId,
    active_seconds: c.activeSeconds + Math.max(0, running),
    created_at: c.createdAt.toISOString(),
    started_at: c.startedAt?.toISOString() ?? null,
    last_active_at: c.lastActiveAt?.toISOString() ?? null,
    ended_at: c.endedAt?.toISOString() ?? null,
  };
}
export type CapsuleView = ReturnType<typeof view>;

/** A driver's refusal as the error a user can act on. */
function fromDriver(err: unknown, path?: string): never {
  if (err instanceof DriverError) {
    switch (err.code) {
      case 'not_found':
        throw new NotFoundError(path ? 'file' : 'capsule', path ?? 'capsule');
      case 'too_large':
        throw new PayloadTooLargeError(err.message);
      case 'no_space':
        throw new AppError(507, 'no_space', err.message);
      case 'invalid_path':
        throw new BadRequestError('invalid_path', err.message, path ? { path } : undefined);
      case 'exists':
        throw new ConflictError('already_exists', err.message, path ? { path } : undefined);
      case 'not_a_directory':
        throw new BadRequestError('not_a_directory', err.message, path ? { path } : undefined);
      case 'invalid':
        throw new ValidationError(err.message);
      default:
        throw new AppError(502, 'host_error', err.message);
    }
  }
  throw err;
}

/** The environment rules (envs.ts) past the schema's: the total size. */
export function checkEnvs(envs: Record<string, string> | undefined): void {
  const refused = envs && envProblems(envs);
  if (refused) {
    throw new ValidationError(
      `envs are not allowed: ${Object.entries(refused)
        .map((e) => e.join(' '))
        .join('; ')}`,
      refused,
    );
  }
}

/**
 * Capsules (Wrenn's lifecycle) over sandbox hosts: the database holds each
 * capsule's truth; a host holds its processes. Slow transitions answer 202
 * at once and finish in the background; a server that stops midway leaves a
 * record the next start sets right.
 */
export class CapsulesService {
  private readonly options: SandboxOptions;
  private readonly touchedAt = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private lastTeamSample = 0;
  private closing = false;
  /** Capsules running on this process's local hosts, as move() left them. */
  private readonly runningHere = new Map<string, repo.CapsuleRow>();
  /**
   * Platform templates (minimal) by name: made at start, never changed, and
   * no team template may take their names, so a create from one needs no read.
   */
  private readonly platformTemplates = new Map<string, repo.TemplateRow>();
  private readonly background = new Set<Promise<unknown>>();
  private log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void } = {
    warn: () => {},
    error: (obj, msg) => console.error(msg, obj),
  };

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly events: EventsService,
    /** The hosts this control plane runs capsules on (the local one, for now). */
    private readonly hosts: Map<string, SandboxHost>,
    options: Partial<SandboxOptions> = {},
  ) {
    this.options = { ...DEFAULT_SANDBOX_OPTIONS, ...options };
    for (const host of hosts.values()) this.listen(host);
    this.localHostIds = new Set(hosts.keys());
  }

  private readonly localHostIds: Set<string>;

  private listen(host: SandboxHost): void {
    host.onEnded((capsuleId, reason) => {
      this.later(this.ended(capsuleId, reason));
    });
  }

  /** A remote host that registered (or was registered before this start). */
  addHost(host: SandboxHost): void {
    if (this.hosts.has(host.id)) return;
    this.hosts.set(host.id, host);
    this.listen(host);
  }

  host(id: string): SandboxHost | undefined {
    return this.hosts.get(id);
  }

  async removeHost(id: string): Promise<void> {
    const host = this.hosts.get(id);
    if (!host || this.localHostIds.has(id)) return;
    this.hosts.delete(id);
    await host.close();
  }

  /** Destroys every live capsule of a host (a forced host delete). */
  async destroyOnHost(hostId: string, reason: string): Promise<void> {
    const host = this.hosts.get(hostId);
    for (const c of await repo.liveCapsulesOnHost(this.db, hostId)) {
      await host?.destroy(c.id).catch(() => undefined);
      await this.move(c.id, repo.LIVE_STATUSES, 'stopped', reason);
    }
  }

  /** A host stopped answering: its capsules are missing (their processes may still run there, unreachable). */
  async hostLost(hostId: string, reason: string): Promise<void> {
    const host = this.hosts.get(hostId);
    host?.lost?.();
    for (const c of await repo.liveCapsulesOnHost(this.db, hostId)) {
      await this.move(c.id, repo.LIVE_STATUSES, 'missing', reason);
    }
  }

  useLog(log: CapsulesService['log']): void {
    this.log = log;
  }

  private team(principal: Principal, need: Scope): string {
    const teamId = activeTeam(principal);
    requireScope(principal, need);
    return teamId;
  }

  private later(work: Promise<unknown>): void {
    const p = work.catch((err: unknown) => this.log.error({ err }, 'capsule transition failed'));
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /** Waits for transitions started in the background (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  private async find(principal: Principal, id: string, need: Scope): Promise<repo.CapsuleRow> {
    const c = await repo.findCapsule(this.db, this.team(principal, need), id);
    if (!c) throw new NotFoundError('capsule', id);
    return c;
  }

  private hostOf(c: repo.CapsuleRow): SandboxHost {
    const host = c.hostId ? this.hosts.get(c.hostId) : undefined;
    if (!host)
      throw new ServiceUnavailableError('host_unavailable', `the host of capsule ${c.id} is not available`);
    return host;
  }

  /** In-capsule operations need a running capsule (Wrenn: 409 "Capsule not running"). */
  private async running(principal: Principal, id: string, need: Scope) {
    // A capsule running on this server's own host changes status only through this process
    // (no other node can reach its host), so its row is known without a read.
    const known = this.runningHere.get(id);
    if (known && known.teamId === this.team(principal, need)) {
      const host = this.hosts.get(known.hostId!);
      if (host?.has(id)) {
        this.touch(id);
        return { c: known, host };
      }
    }
    const c = await this.find(principal, id, need);
    if (c.status !== 'running') {
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const host = this.hostOf(c);
    if (!host.has(c.id)) {
      this.later(this.ended(c.id, 'capsule_exited'));
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is no longer running on its host`, {
        status: 'stopped',
      });
    }
    this.touch(c.id);
    return { c, host };
  }

  /** Activity that keeps a capsule from auto-pausing: exec, ping, files, PTY (not its own processes). */
  private touch(id: string): void {
    const nowMs = this.clock.now().getTime();
    const last = this.touchedAt.get(id) ?? 0;
    if (nowMs - last < TOUCH_EVERY_MS) return;
    this.touchedAt.set(id, nowMs);
    if (this.touchedAt.size > 50_000) this.touchedAt.clear();
    this.later(repo.touch(this.db, id, new Date(nowMs)));
  }

  /** Moves a capsule between statuses, with its event and its running time, in one transaction. */
  private async move(
    id: string,
    from: CapsuleStatus[],
    to: CapsuleStatus,
    reason: string | null,
    actor: { actorKind: string; actorId: string | null } = { actorKind: 'system', actorId: null },
  ): Promise<repo.CapsuleRow | undefined> {
    const moved = await this.db.transaction((tx) => this.moveIn(tx, id, from, to, reason, actor));
    if (moved) this.moved(moved);
    return moved;
  }

  /** move() inside the caller's transaction; the caller calls moved() once it commits. */
  private async moveIn(
    tx: DbOrTx,
    id: string,
    from: CapsuleStatus[],
    to: CapsuleStatus,
    reason: string | null,
    actor: { actorKind: string; actorId: string | null } = { actorKind: 'system', actorId: null },
  ): Promise<repo.CapsuleRow | undefined> {
    const now = this.clock.now();
    // Into running from one known status (a start or a resume) there is nothing to account: no read first.
    const intoRunning = from.length === 1 && from[0] !== 'running' && to === 'running';
    const before = intoRunning ? undefined : await repo.findCapsuleById(tx, id);
    if (!intoRunning && (!before || !from.includes(before.status))) return undefined;
    const patch: Parameters<typeof repo.transition>[4] = { statusReason: reason, updatedAt: now };
    if (to === 'running') {
      patch.runningSince = now;
      patch.lastActiveAt = now;
      patch.startedAt =
        sql`coalesce(${capsules.startedAt}, ${now.toISOString()}::timestamptz)` as unknown as Date;
    }
    if (before?.status === 'running' && to !== 'running' && before.runningSince !== null) {
      patch.runningSince = null;
      patch.activeSeconds =
        before.activeSeconds +
        Math.max(0, Math.round((now.getTime() - before.runningSince.getTime()) / 1000));
      await repo.addUsage(
        tx,
        before.teamId,
        splitByDay(before.runningSince, now),
        before.vcpus,
        before.memoryMb,
      );
    }
    if (ENDED_STATUSES.includes(to)) patch.endedAt = now;
    const after = await repo.transition(tx, id, before ? [before.status] : from, to, patch);
    if (!after) return undefined;
    await this.events.record(tx, {
      teamId: after.teamId,
      ...actor,
      subjectId: id,
      type: 'capsule.state_changed',
      data: { from: before?.status ?? from[0]!, to, reason },
    });
    return after;
  }

  private moved(c: repo.CapsuleRow): void {
    if (c.status === 'running' && c.hostId && this.localHostIds.has(c.hostId)) this.runningHere.set(c.id, c);
    else this.runningHere.delete(c.id);
    this.wake(c.id);
  }

  /** Callers waiting for a capsule's status to change (GET …?wait_for=). */
  private readonly waiters = new Map<string, Set<() => void>>();

  private wake(id: string): void {
    const set = this.waiters.get(id);
    if (!set) return;
    this.waiters.delete(id);
    for (const w of set) w();
  }

  /** Resolves at the next status change of this capsule on this server, or after `ms`. */
  private changed(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(id) ?? new Set();
      this.waiters.set(id, set);
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.waiters.get(id) === set) this.waiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  // -- lifecycle -----------------------------------------------------------

  async create(principal: Principal, input: CreateCapsuleInput) {
    const teamId = this.team(principal, 'write');
    const templateName = input.template ?? 'minimal';
    const template =
      this.platformTemplates.get(templateName) ?? (await repo.findTemplate(this.db, teamId, templateName));
    if (!template) {
      throw new NotFoundError('template', templateName);
    }
    const host = await this.place(teamId, input.host_tags ?? [], template.path ? template.hostId : null);
    const now = this.clock.now();
    const id = newId('cap');
    const limits = {
      memoryMb: input.memory_mb ?? 512,
      vcpus: input.vcpus ?? 1,
      diskMb: input.disk_size_mb ?? 5120,
    };
    const networkAllow = input.network?.allow ?? null;
    // A spare started ahead is this capsule at once: it is running when the row is written,
    // so the start and its move to running are one transaction (and no wait for a later one).
    const spec = hostSpec(id, teamId, template.path, limits, networkAllow);
    const fromSpare = host.claimSpare?.(spec) ?? false;
    let running: repo.CapsuleRow | undefined;
    const c = await this.db
      .transaction(async (tx) => {
        const row = await repo.insertCapsule(tx, {
          id,
          teamId,
          hostId: host.id,
          status: 'starting',
          template: templateName,
          vcpus: limits.vcpus,
          memoryMb: limits.memoryMb,
          diskSizeMb: limits.diskMb,
          timeoutSec: effectiveTimeoutSec(input.timeout_sec),
          networkAllow,
          metadata: input.metadata ?? {},
          isolation: host.isolation,
          createdBy: principal.userId,
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          ...actorOf(principal),
          subjectId: id,
          type: 'capsule.created',
          data: { template: templateName, host_id: host.id },
        });
        if (fromSpare) running = await this.moveIn(tx, id, ['starting'], 'running', null);
        return row;
      })
      .catch(async (err: unknown) => {
        if (fromSpare) await host.destroy(id).catch(() => undefined);
        throw err;
      });
    if (running) this.moved(running);
    else this.later(this.boot(c, spec, host));
    return view(c, now);
  }

  /**
   * The host for a new capsule: among the online hosts this team may use
   * (shared ones and its own BYOC hosts) that carry every requested tag and
   * that this server can reach, the one with the fewest live capsules. A
   * capsule from a snapshot goes where the snapshot's files are.
   */
  private async place(teamId: string, tags: string[], pinned: string | null): Promise<SandboxHost> {
    const candidates = (await repo.onlineHosts(this.db, teamId)).filter(
      (h) => this.hosts.has(h.id) && tags.every((t) => h.tags.includes(t)) && (!pinned || h.id === pinned),
    );
    if (candidates.length === 0) {
      if (pinned) {
        throw new ServiceUnavailableError(
          'template_unavailable',
          'the host that holds this template is not online',
        );
      }
      throw new ServiceUnavailableError(
        'no_host',
        tags.length > 0 ? `no online host has the tags ${tags.join(', ')}` : 'no sandbox host is online',
      );
    }
    if (candidates.length === 1) return this.hosts.get(candidates[0]!.id)!;
    const load = await repo.countLiveByHost(this.db);
    candidates.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0) || a.id.localeCompare(b.id));
    return this.hosts.get(candidates[0]!.id)!;
  }

  private async boot(c: repo.CapsuleRow, spec: HostCapsuleSpec, host: SandboxHost): Promise<void> {
    try {
      await host.create(spec);
    } catch (err) {
      this.log.error({ err, capsule_id: c.id }, 'capsule could not start');
      await this.move(c.id, ['starting'], 'error', `start_failed: ${(err as Error).message}`.slice(0, 500));
      return;
    }
    const moved = await this.move(c.id, ['starting'], 'running', null);
    // Deleted while starting: the delete is waiting for us to finish.
    if (!moved) await host.destroy(c.id).catch(() => undefined);
  }

  async list(principal: Principal, q: { status?: CapsuleStatus; limit?: number; cursor?: string }) {
    const teamId = this.team(principal, 'read');
    const limit = pageLimit(q.limit);
    const before = decodeCursor(q.cursor);
    const rows = await repo.listCapsules(this.db, teamId, {
      ...(q.status ? { status: q.status } : {}),
      ...(before ? { before } : {}),
      limit,
    });
    const now = this.clock.now();
    return toPage(
      rows,
      limit,
      (r) => r.id,
      (r) => view(r, now),
    );
  }

  /**
   * A capsule; with `waitFor`, answers once it is in one of those statuses
   * (or has ended) or when `timeoutMs` passed, whichever is first — so a
   * client need not poll for `running`. Transitions on this server wake the
   * wait at once; those made by another server node are seen within 250 ms.
   */
  async get(principal: Principal, id: string, wait?: { statuses: CapsuleStatus[]; timeoutMs: number }) {
    let c = await this.find(principal, id, 'read');
    if (wait && wait.statuses.length > 0) {
      const until = Date.now() + wait.timeoutMs;
      const final = (x: repo.CapsuleRow) =>
        wait.statuses.includes(x.status) || ENDED_STATUSES.includes(x.status);
      while (!final(c) && Date.now() < until && !this.closing) {
        await this.changed(c.id, Math.min(250, until - Date.now()));
        c = (await repo.findCapsuleById(this.db, c.id)) ?? c;
      }
    }
    return view(c, this.clock.now());
  }

  async remove(principal: Principal, id: string) {
    const c = await this.find(principal, id, 'write');
    if (ENDED_STATUSES.includes(c.status)) return view(c, this.clock.now());
    const stopping = await this.move(c.id, repo.LIVE_STATUSES, 'stopping', 'deleted', actorOf(principal));
    if (!stopping) return view((await repo.findCapsuleById(this.db, c.id)) ?? c, this.clock.now());
    this.later(this.finishStop(stopping));
    return view(stopping, this.clock.now());
  }

  private async finishStop(c: repo.CapsuleRow): Promise<void> {
    const host = c.hostId ? this.hosts.get(c.hostId) : undefined;
    try {
      await host?.destroy(c.id);
    } catch (err) {
      this.log.error({ err, capsule_id: c.id }, 'capsule could not be destroyed cleanly');
    }
    this.touchedAt.delete(c.id);
    const stopped = await this.move(c.id, ['stopping'], 'stopped', 'deleted');
    if (stopped) {
      await this.events.record(this.db, {
        teamId: c.teamId,
        actorKind: 'system',
        actorId: null,
        subjectId: c.id,
        type: 'capsule.deleted',
        data: { active_seconds: stopped.activeSeconds },
      });
    }
  }

  async pause(principal: Principal, id: string, reason: string | null = null) {
    const c = await this.find(principal, id, 'write');
    if (c.status !== 'running') {
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const pausing = await this.move(c.id, ['running'], 'pausing', reason, actorOf(principal));
    if (!pausing) throw new ConflictError('capsule_not_running', `capsule ${c.id} changed meanwhile`);
    this.later(this.finishPause(pausing, reason));
    return view(pausing, this.clock.now());
  }

  private async finishPause(c: repo.CapsuleRow, reason: string | null): Promise<void> {
    try {
      await this.hostOf(c).pause(c.id);
    } catch (err) {
      this.log.error({ err, capsule_id: c.id }, 'capsule could not be paused');
      await this.move(c.id, ['pausing'], 'running', 'pause_failed');
      return;
    }
    await this.move(c.id, ['pausing'], 'paused', reason);
  }

  async resume(principal: Principal, id: string) {
    const c = await this.find(principal, id, 'write');
    if (c.status !== 'paused') {
      throw new ConflictError('capsule_not_paused', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const resuming = await this.move(c.id, ['paused'], 'resuming', null, actorOf(principal));
    if (!resuming) throw new ConflictError('capsule_not_paused', `capsule ${c.id} changed meanwhile`);
    this.later(this.finishResume(resuming));
    return view(resuming, this.clock.now());
  }

  private async finishResume(c: repo.CapsuleRow): Promise<void> {
    try {
      await this.hostOf(c).resume(c.id);
    } catch (err) {
      this.log.error({ err, capsule_id: c.id }, 'capsule could not be resumed');
      await this.move(c.id, ['resuming'], 'error', 'resume_failed');
      return;
    }
    this.touchedAt.delete(c.id);
    await this.move(c.id, ['resuming'], 'running', null);
  }

  async ping(principal: Principal, id: string): Promise<void> {
    await this.running(principal, id, 'write');
    // A ping is the activity itself: write it now, not throttled.
    const now = this.clock.now();
    this.touchedAt.set(id, now.getTime());
    await repo.touch(this.db, id, now);
  }

  /** The capsule's init died on its own (crash, OOM of the init, host trouble). */
  private async ended(capsuleId: string, reason: string): Promise<void> {
    await this.move(capsuleId, ['running', 'pausing', 'paused', 'resuming', 'starting'], 'stopped', reason);
  }

  // -- exec and processes ----------------------------------------------------

  async exec(principal: Principal, id: string, input: ExecInput) {
    checkEnvs(input.envs);
    const { c, host } = await this.running(principal, id, 'write');
    try {
      if (input.background) {
        const started = await host.launch(c.id, {
          cmd: input.cmd,
          ...(input.args ? { args: input.args } : {}),
          ...(input.envs ? { envs: input.envs } : {}),
          ...(input.cwd ? { cwd: input.cwd } : {}),
          ...(input.tag ? { tag: input.tag } : {}),
        });
        return {
          background: true as const,
          body: { sandbox_id: c.id, cmd: input.cmd, pid: started.pid, tag: started.tag },
        };
      }
      const result = await host.exec(c.id, {
        cmd: input.cmd,
        ...(input.args ? { args: input.args } : {}),
        ...(input.envs ? { envs: input.envs } : {}),
        ...(input.cwd ? { cwd: input.cwd } : {}),
        timeoutSec: input.timeout_sec ?? 30,
        maxOutputBytes: this.options.execOutputLimitBytes,
      });
      return { background: false as const, body: { sandbox_id: c.id, cmd: input.cmd, ...result } };
    } catch (err) {
      if (err instanceof DriverError && err.code === 'exists') {
        throw new ConflictError('tag_taken', err.message, { tag: input.tag });
      }
      return fromDriver(err);
    }
  }

  async processes(principal: Principal, id: string) {
    const { c, host } = await this.running(principal, id, 'read');
    return { data: await host.processes(c.id).catch(fromDriver), next_cursor: null };
  }

  async kill(principal: Principal, id: string, selector: string, signal: NodeJS.Signals): Promise<void> {
    const { c, host } = await this.running(principal, id, 'write');
    const found = await host.kill(c.id, selector, signal).catch(fromDriver);
    if (!found) throw new NotFoundError('process', selector);
  }

  // -- files -------------------------------------------------------------------

  async readFile(principal: Principal, id: string, path: string): Promise<Buffer> {
    const { c, host } = await this.running(principal, id, 'read');
    return host.readFile(c.id, path, this.options.fileLimitBytes).catch((err) => fromDriver(err, path));
  }

  async readStream(principal: Principal, id: string, path: string): Promise<Readable> {
    const { c, host } = await this.running(principal, id, 'read');
    return host.readStream(c.id, path).catch((err) => fromDriver(err, path));
  }

  async writeFile(principal: Principal, id: string, path: string, data: Readable | Buffer, stream: boolean) {
    const { c, host } = await this.running(principal, id, 'write');
    // Streamed uploads are bounded by the capsule's disk (its writable layer) rather than a request limit.
    const max = stream ? c.diskSizeMb * 1024 * 1024 : this.options.fileLimitBytes;
    await host.writeFile(c.id, path, data, max).catch((err) => fromDriver(err, path));
  }

  async listFiles(principal: Principal, id: string, path: string, depth: number) {
    const { c, host } = await this.running(principal, id, 'read');
    return { entries: await host.list(c.id, path, depth).catch((err) => fromDriver(err, path)) };
  }

  async mkdir(principal: Principal, id: string, path: string) {
    const { c, host } = await this.running(principal, id, 'write');
    return { entry: await host.mkdir(c.id, path).catch((err) => fromDriver(err, path)) };
  }

  async removeFile(principal: Principal, id: string, path: string): Promise<void> {
    const { c, host } = await this.running(principal, id, 'write');
    await host.remove(c.id, path).catch((err) => fromDriver(err, path));
  }

  /** A running capsule of the caller's team and its host (WebSocket pre-upgrade checks, snapshots); 404 / 409 otherwise. */
  async runningCapsule(principal: Principal, id: string, need: Scope) {
    return this.running(principal, id, need);
  }

  // -- metrics, stats and usage ---------------------------------------------------

  /** Sampled CPU, memory and disk of a running or paused capsule; a capsule that ended has none (404). */
  async metrics(principal: Principal, id: string, range: MetricRange) {
    const c = await this.find(principal, id, 'read');
    const host = c.hostId ? this.hosts.get(c.hostId) : undefined;
    if (!host?.has(c.id) || ENDED_STATUSES.includes(c.status)) {
      throw new NotFoundError('metrics', c.id);
    }
    const points = await Promise.resolve(host.metrics(c.id, range)).catch(fromDriver);
    return { sandbox_id: c.id, range, points };
  }

  async stats(principal: Principal, range: StatsRange) {
    return teamStats(this.db, this.team(principal, 'read'), range, this.clock.now());
  }

  async usage(principal: Principal, q: { from?: string; to?: string }) {
    return teamUsage(this.db, this.team(principal, 'read'), q, this.clock.now());
  }

  /** Every team's live capsules, once a minute from the sweep (stats series and peaks); `force` samples now. */
  async sampleTeams(now: Date = this.clock.now(), force = true): Promise<void> {
    if (!force && now.getTime() - this.lastTeamSample < SAMPLE_TEAMS_EVERY_MS) return;
    this.lastTeamSample = now.getTime();
    await sampleTeams(
      this.db,
      new Date(Math.floor(now.getTime() / SAMPLE_TEAMS_EVERY_MS) * SAMPLE_TEAMS_EVERY_MS),
    );
  }

  // -- sweeps and restarts -----------------------------------------------------

  /**
   * At start: capsules this server's hosts no longer run (their processes
   * died with the previous server) are stopped with a reason, and what they
   * left on disk is cleared; none is forgotten.
   */
  async recover(): Promise<void> {
    for (const t of await repo.listPlatformTemplates(this.db)) this.platformTemplates.set(t.name, t);
    for (const host of this.localHosts()) {
      const rows = await repo.liveCapsulesOnHost(this.db, host.id);
      const gone = rows.filter((c) => !host.has(c.id));
      for (const c of gone) {
        await this.move(
          c.id,
          repo.LIVE_STATUSES,
          'stopped',
          c.status === 'stopping' ? 'deleted' : 'server_restarted',
        );
      }
      await host.cleanupLeftovers?.(gone.map((c) => c.id));
    }
  }

  private localHosts(): SandboxHost[] {
    return [...this.hosts.values()].filter((h) => this.localHostIds.has(h.id));
  }

  /** Pauses running capsules idle past their timeout_sec (Wrenn's TTL reaper: reason ttl_expired). */
  async sweepIdle(now: Date = this.clock.now()): Promise<string[]> {
    const idle = await repo.idleCapsules(this.db, [...this.hosts.keys()], now);
    const paused: string[] = [];
    for (const c of idle) {
      const pausing = await this.move(c.id, ['running'], 'pausing', 'ttl_expired');
      if (!pausing) continue;
      await this.finishPause(pausing, 'ttl_expired');
      paused.push(c.id);
    }
    return paused;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = this.sweepIdle()
        .then(() => this.sampleTeams(this.clock.now(), false))
        .catch((err: unknown) => this.log.error({ err }, 'capsule sweep failed'))
        .finally(() => (this.sweeping = undefined));
    }, this.options.sweepIntervalMs);
    this.timer.unref();
  }

  /** Stops the sweep; the capsules of this server's local host die with it and are recorded as stopped. */
  /** Long polls (GET …?wait_for=) answer now with what they have, so a stopping server need not wait for them. */
  stopWaiting(): void {
    this.closing = true;
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }

  async shutdown(): Promise<void> {
    this.stopWaiting();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
    await this.settled();
    for (const host of [...this.hosts.values()]) {
      if (!this.localHostIds.has(host.id)) {
        // A remote host's capsules live on without this server.
        await host.close();
        continue;
      }
      const rows = await repo.liveCapsulesOnHost(this.db, host.id);
      await host.close();
      for (const c of rows) await this.move(c.id, repo.LIVE_STATUSES, 'stopped', 'server_stopped');
    }
  }
}

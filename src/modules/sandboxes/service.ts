// One file over 400 lines: CapsulesService is the sandboxes module's façade;
// create (placement, spares), the lifecycle moves, reads, waits and recovery
// all go through the same state machine and host map.
import { SECOND_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import { type CapsuleId, type HostId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { type CapsuleStatus, ENDED_STATUSES } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, type Principal } from '../identity/principal.ts';
import { CapsuleIo } from './capsule-io.ts';
import { CapsuleStates, SYSTEM_ACTOR } from './capsule-states.ts';
import { effectiveTimeoutSec, fromDriver, view } from './capsule-view.ts';
import type { HostCapsuleSpec, SandboxHost } from './host.ts';
import type { MetricRange } from './host-side/metrics.ts';
import { hostSpec, placeCapsule } from './placement.ts';
import * as repo from './repo.ts';
import type { CreateCapsuleInput } from './schemas.ts';
import { type StatsRange, teamStats, teamUsage } from './stats.ts';
import { CapsuleSweeps } from './sweeps.ts';

export { type CapsuleView, checkEnvs, effectiveTimeoutSec } from './capsule-view.ts';

export interface SandboxOptions {
  /** Per stream of a foreground exec. */
  execOutputLimitBytes: number;
  /** files/read and files/write; the stream routes go up to the capsule's disk. */
  fileLimitBytes: number;
  /** How often running capsules are checked against their timeout_sec. */
  sweepIntervalMs: number;
  /** Asked before a capsule starts: throws to refuse it (credits: 402 insufficient_credits). */
  admit?: (teamId: TeamId) => Promise<void>;
}

export const DEFAULT_SANDBOX_OPTIONS: SandboxOptions = {
  execOutputLimitBytes: 1024 * 1024,
  fileLimitBytes: 100 * 1024 * 1024,
  sweepIntervalMs: 5 * SECOND_MS,
};

/**
 * Capsules (Wrenn's lifecycle) over sandbox hosts: the database holds each
 * capsule's truth; a host holds its processes. Slow transitions answer 202
 * at once and finish in the background; a server that stops midway leaves a
 * record the next start sets right. The parts: `states` (the state machine,
 * the hosts, the waiters), `io` (exec, processes, files), `sweeps` (restart
 * recovery, auto-pause, team samples), placement (placement.ts); this class
 * holds the lifecycle itself and the read-only views.
 */
export class CapsulesService {
  readonly states: CapsuleStates;
  readonly io: CapsuleIo;
  readonly sweeps: CapsuleSweeps;
  private readonly db: Db;
  /** One object shared with io and sweeps (a test may lower a limit for a while). */
  private readonly options: SandboxOptions;

  constructor(
    db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    /** The hosts this control plane runs capsules on (the local one; remote ones join as they register). */
    hosts: Map<HostId, SandboxHost>,
    options: Partial<SandboxOptions> = {},
  ) {
    this.options = { ...DEFAULT_SANDBOX_OPTIONS, ...options };
    this.db = db;
    this.states = new CapsuleStates(db, ctx, events, hosts);
    this.io = new CapsuleIo(this.states, this.options, ctx.tracer);
    this.sweeps = new CapsuleSweeps(this.states, this.options, (c, reason) => this.finishPause(c, reason));
  }

  /** A remote host that registered (or was registered before this start). */
  addHost(host: SandboxHost): void {
    this.states.addHost(host);
  }

  host(id: HostId): SandboxHost | undefined {
    return this.states.host(id);
  }

  /** The remote hosts this server drives (not its own). */
  remoteHosts(): SandboxHost[] {
    return this.states.allHosts().filter((h) => !this.states.localHostIds.has(h.id));
  }

  async removeHost(id: HostId): Promise<void> {
    await this.states.removeHost(id);
  }

  /** Destroys every live capsule of a host (a forced host delete). */
  async destroyOnHost(hostId: HostId, reason: string): Promise<void> {
    const host = this.states.host(hostId);
    for (const c of await repo.liveCapsulesOnHost(this.db, hostId)) {
      await host
        ?.destroy(c.id)
        .catch((err: unknown) =>
          this.ctx.log.warn(
            { err, capsule_id: c.id, host_id: hostId },
            'a capsule could not be destroyed on its host',
          ),
        );
      await this.states.move(c.id, repo.LIVE_STATUSES, 'stopped', reason);
    }
  }

  /** A host stopped answering: its capsules are missing (their processes may still run there, unreachable). */
  async hostLost(hostId: HostId, reason: string): Promise<void> {
    this.states.host(hostId)?.lost?.();
    for (const c of await repo.liveCapsulesOnHost(this.db, hostId)) {
      await this.states.move(c.id, repo.LIVE_STATUSES, 'missing', reason);
    }
  }

  /** Waits for transitions started in the background (tests, shutdown). */
  async settled(): Promise<void> {
    await this.states.settled();
  }

  // -- lifecycle -----------------------------------------------------------

  async create(principal: Principal, input: CreateCapsuleInput) {
    const asked = performance.now();
    const teamId = this.states.team(principal, 'write');
    const templateName = input.template ?? 'minimal';
    const template =
      this.sweeps.platformTemplates.get(templateName) ??
      (await repo.findTemplate(this.db, teamId, templateName));
    if (!template) {
      throw new NotFoundError('template', templateName);
    }
    await this.options.admit?.(teamId);
    const host = await placeCapsule(
      this.states,
      teamId,
      input.host_tags ?? [],
      template.path ? template.hostId : null,
    );
    const now = this.ctx.clock.now();
    const id = newId('cap');
    const limits = {
      memoryMb: input.memory_mb ?? 512,
      vcpus: input.vcpus ?? 1,
      diskMb: input.disk_size_mb ?? 5120,
    };
    const networkAllow = input.network?.allow ?? null;
    // A spare started ahead is this capsule at once: it is running when the row is written,
    // so its start and its move to running are one statement (and no wait for a later one).
    const spec = hostSpec(id, teamId, template.path, limits, networkAllow);
    const fromSpare = host.claimSpare?.(spec) ?? false;
    const starting = {
      id,
      teamId,
      hostId: host.id,
      status: 'starting' as const,
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
    };
    // The events a start through `starting` records (the same for a spare, moved at once).
    const recorded = this.events.alongside(this.db, [
      {
        teamId,
        ...actorOf(principal),
        subjectId: id,
        type: 'capsule.created',
        data: { template: templateName, host_id: host.id },
      },
      ...(fromSpare
        ? [
            {
              teamId,
              ...SYSTEM_ACTOR,
              subjectId: id,
              type: 'capsule.state_changed' as const,
              data: { from: 'starting', to: 'running', reason: null },
            },
          ]
        : []),
    ]);
    const row = fromSpare
      ? { ...starting, status: 'running' as const, startedAt: now, runningSince: now, lastActiveAt: now }
      : starting;
    const c = await repo.insertCapsule(this.db, row, recorded).catch(async (err: unknown) => {
      if (fromSpare) {
        await host
          .destroy(id)
          .catch((cause: unknown) =>
            this.ctx.log.warn(
              { err: cause, capsule_id: id },
              'a spare for a failed create could not be destroyed',
            ),
          );
      }
      throw err;
    });
    if (!fromSpare) {
      this.states.later(this.boot(c, spec, host, asked), { capsule_id: id });
      return view(c, now);
    }
    this.ctx.metrics?.capsuleStarted('spare', true, performance.now() - asked);
    this.states.moved(c);
    // A spare whose init died before this row committed was told to a move that found no row.
    if (!host.has(id)) this.states.later(this.states.ended(id, 'capsule_exited'), { capsule_id: id });
    // The answer is the capsule as created (202 starting); its first read finds it running.
    return view({ ...c, status: 'starting', startedAt: null, runningSince: null, lastActiveAt: null }, now);
  }

  /** Starts a capsule on its host (no spare was ready); `asked` is when its create began (performance.now()). */
  private async boot(
    c: repo.CapsuleRow,
    spec: HostCapsuleSpec,
    host: SandboxHost,
    asked: number,
  ): Promise<void> {
    try {
      await host.create(spec);
    } catch (err) {
      this.ctx.metrics?.capsuleStarted('cold', false, performance.now() - asked);
      this.ctx.log.error({ err, capsule_id: c.id }, 'capsule could not start');
      await this.states.move(
        c.id,
        ['starting'],
        'error',
        `start_failed: ${(err as Error).message}`.slice(0, 500),
      );
      return;
    }
    const moved = await this.states.move(c.id, ['starting'], 'running', null);
    if (moved) this.ctx.metrics?.capsuleStarted('cold', true, performance.now() - asked);
    // Deleted while starting: the delete is waiting for us to finish.
    if (!moved) {
      await host
        .destroy(c.id)
        .catch((err: unknown) =>
          this.ctx.log.warn(
            { err, capsule_id: c.id },
            'a capsule deleted while starting could not be destroyed',
          ),
        );
    }
  }

  async list(principal: Principal, q: { status?: CapsuleStatus; limit?: number; cursor?: string }) {
    const teamId = this.states.team(principal, 'read');
    const now = this.ctx.clock.now();
    return pageOf(
      q,
      (before, rows) =>
        repo.listCapsules(this.db, teamId, {
          ...(q.status ? { status: q.status } : {}),
          ...(before ? { before } : {}),
          rows,
        }),
      (r) => view(r, now),
    );
  }

  /**
   * A capsule running on this server's own host, its sizes known without a
   * read (a workspace's next turn); undefined when this server does not know
   * it running (get() tells where it is).
   */
  knownRunning(principal: Principal, id: CapsuleId): { vcpus: number; memoryMb: number } | undefined {
    const c = this.states.knownRunning(principal, id, 'write')?.c;
    return c && { vcpus: c.vcpus, memoryMb: c.memoryMb };
  }

  /**
   * A capsule; with `waitFor`, answers once it is in one of those statuses
   * (or has ended) or when `timeoutMs` passed, whichever is first — so a
   * client need not poll for `running`. Transitions on this server wake the
   * wait at once; those made by another server node are seen within 250 ms.
   */
  async get(principal: Principal, id: CapsuleId, wait?: { statuses: CapsuleStatus[]; timeoutMs: number }) {
    let c = await this.states.find(principal, id, 'read');
    if (wait && wait.statuses.length > 0) {
      // The deadline is a timer, so it runs on the same time as the waits (ManualTimers in a test).
      let expired = false;
      const deadline = this.ctx.timers.after(wait.timeoutMs, () => {
        expired = true;
        this.states.waiters.wake(c.id);
      });
      const final = (x: repo.CapsuleRow) =>
        wait.statuses.includes(x.status) || ENDED_STATUSES.includes(x.status);
      try {
        while (!final(c) && !expired && !this.states.waiters.closing) {
          // Transitions made by another server node are seen within 250 ms.
          await this.states.waiters.changed(c.id, 250);
          c = (await repo.findCapsule(this.db, c.teamId, c.id)) ?? c;
        }
      } finally {
        deadline.cancel();
      }
    }
    return view(c, this.ctx.clock.now());
  }

  async remove(principal: Principal, id: CapsuleId) {
    const c = await this.states.find(principal, id, 'write');
    if (ENDED_STATUSES.includes(c.status)) return view(c, this.ctx.clock.now());
    const stopping = await this.states.move(
      c.id,
      repo.LIVE_STATUSES,
      'stopping',
      'deleted',
      actorOf(principal),
    );
    if (!stopping) return view((await repo.findCapsule(this.db, c.teamId, c.id)) ?? c, this.ctx.clock.now());
    this.states.later(this.finishStop(stopping), { capsule_id: c.id });
    return view(stopping, this.ctx.clock.now());
  }

  private async finishStop(c: repo.CapsuleRow): Promise<void> {
    const host = c.hostId ? this.states.host(c.hostId) : undefined;
    try {
      await host?.destroy(c.id);
    } catch (err) {
      this.ctx.log.error({ err, capsule_id: c.id }, 'capsule could not be destroyed cleanly');
    }
    this.states.forgetActivity(c.id);
    // The delete's own event goes in the same transaction as the move to stopped.
    await this.states.move(c.id, ['stopping'], 'stopped', 'deleted', undefined, (tx, stopped) =>
      this.events.record(tx, {
        teamId: c.teamId,
        actorKind: 'system',
        actorId: null,
        subjectId: c.id,
        type: 'capsule.deleted',
        data: { active_seconds: stopped.activeSeconds },
      }),
    );
  }

  async pause(principal: Principal, id: CapsuleId, reason: string | null = null) {
    const c = await this.states.find(principal, id, 'write');
    if (c.status !== 'running') {
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const pausing = await this.states.move(c.id, ['running'], 'pausing', reason, actorOf(principal));
    if (!pausing) throw new ConflictError('capsule_not_running', `capsule ${c.id} changed meanwhile`);
    this.states.later(this.finishPause(pausing, reason), { capsule_id: c.id });
    return view(pausing, this.ctx.clock.now());
  }

  /**
   * Pauses a running capsule if `onlyIf`, asked in the same transaction as
   * the capsule's move, still wants it: whatever that reads (a workspace's
   * row, locked) is held until the capsule is pausing, so a change racing the
   * pause comes either before it (no pause) or after (sees it pausing).
   * Answers whether it paused; a capsule not running is left as it is.
   */
  async pauseIf(
    principal: Principal,
    id: CapsuleId,
    reason: string,
    onlyIf: (tx: DbOrTx) => Promise<boolean>,
  ): Promise<boolean> {
    const c = await this.states.find(principal, id, 'write');
    if (c.status !== 'running') return false;
    const pausing = await this.states.moveIf(
      onlyIf,
      c.id,
      ['running'],
      'pausing',
      reason,
      actorOf(principal),
    );
    if (!pausing) return false;
    this.states.later(this.finishPause(pausing, reason), { capsule_id: c.id });
    return true;
  }

  private async finishPause(c: repo.CapsuleRow, reason: string | null): Promise<void> {
    try {
      await this.states.hostOf(c).pause(c.id);
    } catch (err) {
      this.ctx.log.error({ err, capsule_id: c.id }, 'capsule could not be paused');
      await this.states.move(c.id, ['pausing'], 'running', 'pause_failed');
      return;
    }
    await this.states.move(c.id, ['pausing'], 'paused', reason);
  }

  async resume(principal: Principal, id: CapsuleId) {
    const c = await this.states.find(principal, id, 'write');
    if (c.status !== 'paused') {
      throw new ConflictError('capsule_not_paused', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const resuming = await this.states.move(c.id, ['paused'], 'resuming', null, actorOf(principal));
    if (!resuming) throw new ConflictError('capsule_not_paused', `capsule ${c.id} changed meanwhile`);
    this.states.later(this.finishResume(resuming), { capsule_id: c.id });
    return view(resuming, this.ctx.clock.now());
  }

  private async finishResume(c: repo.CapsuleRow): Promise<void> {
    try {
      await this.states.hostOf(c).resume(c.id);
    } catch (err) {
      this.ctx.log.error({ err, capsule_id: c.id }, 'capsule could not be resumed');
      await this.states.move(c.id, ['resuming'], 'error', 'resume_failed');
      return;
    }
    this.states.forgetActivity(c.id);
    await this.states.move(c.id, ['resuming'], 'running', null);
  }

  async ping(principal: Principal, id: CapsuleId): Promise<void> {
    const { c } = await this.states.running(principal, id, 'write');
    await this.states.touchNow(c.id);
  }

  // -- metrics, stats and usage ---------------------------------------------------

  /** Sampled CPU, memory and disk of a running or paused capsule; a capsule that ended has none (404). */
  async metrics(principal: Principal, id: CapsuleId, range: MetricRange) {
    const c = await this.states.find(principal, id, 'read');
    const host = c.hostId ? this.states.host(c.hostId) : undefined;
    if (!host?.has(c.id) || ENDED_STATUSES.includes(c.status)) {
      throw new NotFoundError('metrics', c.id);
    }
    const points = await Promise.resolve(host.metrics(c.id, range)).catch(fromDriver);
    return { sandbox_id: c.id, range, points };
  }

  async stats(principal: Principal, range: StatsRange) {
    return teamStats(this.db, this.states.team(principal, 'read'), range, this.ctx.clock.now());
  }

  async usage(principal: Principal, q: { from?: string; to?: string }) {
    return teamUsage(this.db, this.states.team(principal, 'read'), q, this.ctx.clock.now());
  }

  // -- start and stop ------------------------------------------------------------

  /** At start, after migrations: what the previous server left is set right. */
  async recover(): Promise<void> {
    await this.sweeps.recover();
  }

  start(): void {
    this.sweeps.start();
  }

  /** Long polls (GET …?wait_for=) answer now with what they have, so a stopping server need not wait for them. */
  stopWaiting(): void {
    this.states.waiters.stop();
  }

  /** Stops the sweep; the capsules of this server's local host die with it and are recorded as stopped. */
  async shutdown(): Promise<void> {
    this.stopWaiting();
    await this.sweeps.stop();
    await this.states.settled();
    for (const host of this.states.allHosts()) {
      if (!this.states.localHostIds.has(host.id)) {
        // A remote host's capsules live on without this server.
        await host.close();
        continue;
      }
      const rows = await repo.liveCapsulesOnHost(this.db, host.id);
      await host.close();
      for (const c of rows) await this.states.move(c.id, repo.LIVE_STATUSES, 'stopped', 'server_stopped');
    }
  }
}

import { SECOND_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import { ConflictError, NotFoundError, ServiceUnavailableError } from '../../core/errors.ts';
import { type CapsuleId, type HostId, isId, type TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { type CapsuleStatus, ENDED_STATUSES } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, type Principal, requireScope, type Scope } from '../identity/principal.ts';
import type { SandboxHost } from './host.ts';
import * as repo from './repo.ts';
import { splitByDay } from './stats.ts';
import { StatusWaiters } from './waiters.ts';

/** Activity is written at most this often per capsule (auto-pause works in whole seconds anyway). */
const TOUCH_EVERY_MS = 2 * SECOND_MS;

export interface Actor {
  actorKind: string;
  actorId: string | null;
}
export const SYSTEM_ACTOR: Actor = { actorKind: 'system', actorId: null };

/**
 * A guarded move: the capsule, the statuses it must be in, the one it goes
 * to and why, who moved it (the system by default), and what else the move's
 * transaction holds once the move held.
 */
type Move = [
  id: CapsuleId,
  from: CapsuleStatus[],
  to: CapsuleStatus,
  reason: string | null,
  actor?: Actor,
  also?: (tx: DbOrTx, after: repo.CapsuleRow) => Promise<void>,
];

/**
 * The capsule state machine and what every capsule service shares: the
 * hosts this control plane drives, the guarded move between statuses (with
 * its event and its running time, in one transaction), the capsules running
 * on this server's own hosts (known without a read), the background work a
 * slow transition leaves, and the waiters a move wakes.
 */
export class CapsuleStates {
  readonly waiters: StatusWaiters;
  readonly localHostIds: ReadonlySet<HostId>;
  private readonly touchedAt = new Map<CapsuleId, number>();
  /** Capsules running on this process's local hosts, as move() left them. */
  private readonly runningHere = new Map<CapsuleId, repo.CapsuleRow>();
  private readonly background = new Set<Promise<unknown>>();

  constructor(
    readonly db: Db,
    readonly ctx: Context,
    private readonly events: EventsService,
    /** The hosts this control plane runs capsules on: its local one, and remote ones as they register. */
    private readonly hosts: Map<HostId, SandboxHost>,
  ) {
    this.waiters = new StatusWaiters(ctx.timers);
    this.localHostIds = new Set(hosts.keys());
    for (const host of hosts.values()) this.listen(host);
  }

  // -- hosts -----------------------------------------------------------------

  private listen(host: SandboxHost): void {
    host.onEnded((capsuleId, reason) => {
      // A spare's end (not a capsule yet) is no capsule's business.
      if (isId(capsuleId, 'cap')) this.later(this.ended(capsuleId, reason), { capsule_id: capsuleId });
    });
  }

  addHost(host: SandboxHost): void {
    if (this.hosts.has(host.id)) return;
    this.hosts.set(host.id, host);
    this.listen(host);
  }

  host(id: HostId): SandboxHost | undefined {
    return this.hosts.get(id);
  }

  allHosts(): SandboxHost[] {
    return [...this.hosts.values()];
  }

  hostIds(): HostId[] {
    return [...this.hosts.keys()];
  }

  /** Forgets a remote host (deleted); this server's own hosts stay. */
  async removeHost(id: HostId): Promise<void> {
    const host = this.hosts.get(id);
    if (!host || this.localHostIds.has(id)) return;
    this.hosts.delete(id);
    await host.close();
  }

  localHosts(): SandboxHost[] {
    return this.allHosts().filter((h) => this.localHostIds.has(h.id));
  }

  // -- background work ---------------------------------------------------------

  /** Runs a transition's slow part after the answer; a failure is logged with what it was about. */
  later(work: Promise<unknown>, about: Record<string, unknown> = {}): void {
    const p = work.catch((err: unknown) =>
      this.ctx.log.error({ err, ...about }, 'capsule transition failed'),
    );
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /** Waits for transitions started in the background (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  // -- lookups within a team -------------------------------------------------------

  team(principal: Principal, need: Scope): TeamId {
    const teamId = activeTeam(principal);
    requireScope(principal, need);
    return teamId;
  }

  async find(principal: Principal, id: CapsuleId, need: Scope): Promise<repo.CapsuleRow> {
    const c = await repo.findCapsule(this.db, this.team(principal, need), id);
    if (!c) throw new NotFoundError('capsule', id);
    return c;
  }

  hostOf(c: repo.CapsuleRow): SandboxHost {
    const host = c.hostId ? this.hosts.get(c.hostId) : undefined;
    if (!host)
      throw new ServiceUnavailableError('host_unavailable', `the host of capsule ${c.id} is not available`);
    return host;
  }

  /**
   * A capsule running on this server's own host, without a read (touched as
   * in use); undefined when this server does not know it running. Such a
   * capsule changes status only through this process (no other node can
   * reach its host), so its row here is its row in the database.
   */
  knownRunning(principal: Principal, id: CapsuleId, need: Scope) {
    const known = this.runningHere.get(id);
    if (!known || known.teamId !== this.team(principal, need)) return undefined;
    const host = this.hosts.get(known.hostId!);
    if (!host?.has(id)) return undefined;
    this.touch(id);
    return { c: known, host };
  }

  /** In-capsule operations need a running capsule (Wrenn: 409 "Capsule not running"). */
  async running(principal: Principal, id: CapsuleId, need: Scope) {
    const known = this.knownRunning(principal, id, need);
    if (known) return known;
    const c = await this.find(principal, id, need);
    if (c.status !== 'running') {
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is ${c.status}`, { status: c.status });
    }
    const host = this.hostOf(c);
    if (!host.has(c.id)) {
      this.later(this.ended(c.id, 'capsule_exited'), { capsule_id: c.id });
      throw new ConflictError('capsule_not_running', `capsule ${c.id} is no longer running on its host`, {
        status: 'stopped',
      });
    }
    this.touch(c.id);
    return { c, host };
  }

  // -- activity ----------------------------------------------------------------------

  /** Activity that keeps a capsule from auto-pausing: exec, ping, files, PTY (not its own processes). */
  touch(id: CapsuleId): void {
    const nowMs = this.ctx.clock.now().getTime();
    const last = this.touchedAt.get(id) ?? 0;
    if (nowMs - last < TOUCH_EVERY_MS) return;
    this.touchedAt.set(id, nowMs);
    if (this.touchedAt.size > 50_000) this.touchedAt.clear();
    this.later(repo.touch(this.db, id, new Date(nowMs)), { capsule_id: id });
  }

  /** A ping is the activity itself: written now, not throttled. */
  async touchNow(id: CapsuleId): Promise<void> {
    const now = this.ctx.clock.now();
    this.touchedAt.set(id, now.getTime());
    await repo.touch(this.db, id, now);
  }

  /** The next activity is written whenever it comes (the capsule stopped or resumed). */
  forgetActivity(id: CapsuleId): void {
    this.touchedAt.delete(id);
  }

  // -- the state machine -------------------------------------------------------------

  /**
   * Moves a capsule between statuses, with its event and its running time, in
   * one transaction; `also` adds more to that transaction once the move held
   * (the event of a delete). Undefined when the capsule was not in `from`.
   */
  async move(...move: Move): Promise<repo.CapsuleRow | undefined> {
    const moved = await this.db.transaction((tx) => this.moveIn(tx, ...move));
    if (moved) this.moved(moved);
    return moved;
  }

  /** move(), if `onlyIf`, asked first in the move's own transaction, still wants it. */
  async moveIf(
    onlyIf: (tx: DbOrTx) => Promise<boolean>,
    ...move: Move
  ): Promise<repo.CapsuleRow | undefined> {
    const moved = await this.db.transaction(async (tx) =>
      (await onlyIf(tx)) ? this.moveIn(tx, ...move) : undefined,
    );
    if (moved) this.moved(moved);
    return moved;
  }

  /** move() inside the caller's transaction; the caller calls moved() once it commits. */
  async moveIn(
    tx: DbOrTx,
    ...[id, from, to, reason, actor = SYSTEM_ACTOR, also]: Move
  ): Promise<repo.CapsuleRow | undefined> {
    const now = this.ctx.clock.now();
    // Into running from one known status (a start or a resume) there is nothing to account: no read first.
    const intoRunning = from.length === 1 && from[0] !== 'running' && to === 'running';
    const before = intoRunning ? undefined : await repo.lockCapsule(tx, id);
    if (!intoRunning && (!before || !from.includes(before.status))) return undefined;
    const patch: Parameters<typeof repo.transition>[4] = { statusReason: reason, updatedAt: now };
    if (to === 'running') {
      patch.runningSince = now;
      patch.lastActiveAt = now;
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
    const after = await repo.transition(
      tx,
      id,
      before ? [before.status] : from,
      to,
      patch,
      to === 'running' ? now : undefined,
    );
    if (!after) return undefined;
    await this.events.record(tx, {
      teamId: after.teamId,
      ...actor,
      subjectId: id,
      type: 'capsule.state_changed',
      data: { from: before?.status ?? from[0]!, to, reason },
    });
    if (also) await also(tx, after);
    return after;
  }

  /** After a move's transaction committed: the running-here cache and the waiters. */
  moved(c: repo.CapsuleRow): void {
    if (c.status === 'running' && c.hostId && this.localHostIds.has(c.hostId)) this.runningHere.set(c.id, c);
    else this.runningHere.delete(c.id);
    // The move into running wrote its activity: a command right after it need not write it again.
    if (c.status === 'running' && c.lastActiveAt) this.touchedAt.set(c.id, c.lastActiveAt.getTime());
    this.waiters.wake(c.id);
  }

  /** The capsule's init died on its own (crash, OOM of the init, host trouble). */
  async ended(capsuleId: CapsuleId, reason: string): Promise<void> {
    await this.move(capsuleId, ['running', 'pausing', 'paused', 'resuming', 'starting'], 'stopped', reason);
  }
}

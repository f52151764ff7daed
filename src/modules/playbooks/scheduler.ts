import type { Context } from '../../core/context.ts';
import type { TeamId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { LeaderWork } from '../../jobs/leader-ticker.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, type Principal } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type { PlaybookRuns } from './runs.ts';
import { nextAfterFire } from './schedule.ts';
import type { PlaybooksService } from './service.ts';

export interface SchedulerOptions {
  /** How often every server tries for the lease and the leader ticks. */
  tickEveryMs: number;
  /** How long a lease lasts without renewal: a leader that dies is replaced after this. */
  leaseMs: number;
  /** Due playbooks and active runs taken per tick. */
  batch: number;
}

export const SCHEDULER_DEFAULTS: SchedulerOptions = { tickEveryMs: 5000, leaseMs: 30_000, batch: 100 };

/** The tick and the lease from PADDOCK_SCHEDULER_LEASE_SEC: six ticks a lease, so a live leader renews in time. */
export function schedulerTimings(leaseSec: number): Pick<SchedulerOptions, 'tickEveryMs' | 'leaseMs'> {
  return { tickEveryMs: Math.round((leaseSec * 1000) / 6), leaseMs: leaseSec * 1000 };
}

/**
 * The playbook scheduler: on the leader (LeaderTicker, lease row `leader`)
 * each tick fires every due slot of the teams not paused, then moves active
 * runs on (start, chain, end). Two leaders for a moment (a paused process
 * whose lease expired) still cannot fire one slot twice: the slot's move is
 * conditional and runs are unique per slot.
 */
export class PlaybookScheduler extends LeaderWork {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly playbooks: PlaybooksService,
    private readonly runs: PlaybookRuns,
    private readonly options: SchedulerOptions = SCHEDULER_DEFAULTS,
  ) {
    super(db, ctx, 'leader', options, 'playbook scheduler');
  }

  get me(): string {
    return this.ticker.me;
  }

  /** Whether this server led at its last tick; null before its first or when it does not tick. */
  get leads(): boolean | null {
    return this.ticker.leads;
  }

  protected async lead(now: Date): Promise<void> {
    for (const pb of await repo.systemDue(this.db, now, this.options.batch)) {
      try {
        await this.fireSlot(pb, now);
      } catch (err) {
        this.ctx.log.warn({ err, playbook_id: pb.id }, 'firing a playbook failed');
      }
    }
    await this.moveRuns();
  }

  /** Fires the slot `next_run_at` names once, however many slots passed since (downtime). */
  private async fireSlot(pb: repo.PlaybookRow, now: Date): Promise<void> {
    const slot = pb.nextRunAt!;
    const next = nextAfterFire(pb, slot, now);
    const run = await this.runs.fire(pb, {
      firedBy: pb.triggerType === 'interval' ? 'interval' : 'cron',
      actor: { actorKind: 'system', actorId: 'playbook_scheduler' },
      slot: { at: slot, next },
    });
    if (run?.status === 'queued') await this.runs.start(run.id as repo.RunId, pb);
  }

  /** Active runs: queued ones started (a start lost with its server), running ones moved on. */
  private async moveRuns(): Promise<void> {
    const cache = new Map<string, repo.PlaybookRow | undefined>();
    for (const run of await repo.systemActiveRuns(this.db, this.ctx.clock.now(), this.options.batch)) {
      try {
        if (!cache.has(run.playbookId))
          cache.set(run.playbookId, await repo.findPlaybook(this.db, run.teamId, run.playbookId));
        const pb = cache.get(run.playbookId);
        if (!pb) continue;
        if (run.status === 'queued') await this.runs.start(run.id, pb);
        else await this.runs.advance(run.id, pb);
      } catch (err) {
        this.ctx.log.warn({ err, run_id: run.id }, 'moving a playbook run on failed');
      }
    }
  }

  // -- the API ------------------------------------------------------------------------------

  async status(principal: Principal) {
    const teamId = this.playbooks.team(principal, 'read');
    const now = this.ctx.clock.now();
    const lease = await this.ticker.status();
    return {
      leader: lease.leader,
      leader_elected: lease.leaderElected,
      paused: await repo.isPaused(this.db, teamId),
      last_tick_at: lease.lastTickAt?.toISOString() ?? null,
      due_count: await repo.dueCount(this.db, teamId, now),
    };
  }

  /** The team's playbooks stop firing (every server reads the same row); runs in flight go on. */
  async pause(principal: Principal) {
    const teamId = this.playbooks.team(principal, 'admin');
    await this.setPaused(teamId, principal, true);
    return this.status(principal);
  }

  /**
   * Firing starts again. A slot that passed while paused fires once at the
   * next tick, like a slot missed while the servers were down.
   */
  async resume(principal: Principal) {
    const teamId = this.playbooks.team(principal, 'admin');
    await this.setPaused(teamId, principal, false);
    return this.status(principal);
  }

  private async setPaused(teamId: TeamId, principal: Principal, paused: boolean): Promise<void> {
    const actor = actorOf(principal);
    await this.db.transaction(async (tx) => {
      const changed = paused
        ? await repo.pauseTeam(tx, teamId, actor.actorId, this.ctx.clock.now())
        : await repo.resumeTeam(tx, teamId);
      if (changed)
        await this.events.record(tx, {
          teamId,
          ...actor,
          type: paused ? 'playbook.scheduler_paused' : 'playbook.scheduler_resumed',
          data: {},
        });
    });
  }
}

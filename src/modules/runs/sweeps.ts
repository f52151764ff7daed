import { MINUTE_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import { newId, type RunId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { BudgetSystem } from './budget.ts';
import * as budgetRepo from './budget-repo.ts';
import { endRuns, SYSTEM_ACTOR } from './lifecycle.ts';
import { enforceLimits } from './limits.ts';
import * as repo from './repo.ts';
import { usdOf } from './views.ts';

// The runs module's background work: charging the leases of processes that
// died, and ending runs nobody uses. Each round logs what failed, with what
// it was sweeping, and the next round runs regardless.

export interface SweepOptions {
  /** A lease not renewed for this long is charged in full by the sweep (its holder is presumed dead). */
  abandonedLeaseMs: number;
  /**
   * Only this process uses the database (embedded PGlite, guarded by its
   * lockfile): every lease left at start belongs to a process that died.
   */
  exclusiveDatabase: boolean;
  /** How often the sweeps run. */
  sweepIntervalMs: number;
  /** run_idle_timeout_seconds for a run whose policy snapshot has none (Rungate: 300 s). */
  defaultIdleTimeoutSec: number;
}

export const DEFAULT_SWEEP_OPTIONS: SweepOptions = {
  // Six missed renewals (every 10 s): a live server is never taken for dead.
  abandonedLeaseMs: MINUTE_MS,
  exclusiveDatabase: false,
  // Rungate: "background idle sweep (60s interval, 300s default timeout)".
  sweepIntervalMs: 60 * SECOND_MS,
  defaultIdleTimeoutSec: 300,
};

const usd = (micros: number) => `$${usdOf(micros).toFixed(6)}`;

export class RunSweeps {
  private timer: Timer | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly budget: BudgetSystem,
    /** A run this process ended: the caches forget it. */
    private readonly runEnded: (runId: RunId) => void,
    private readonly options: SweepOptions,
  ) {}

  /** Ends running runs idle past their run_idle_timeout_seconds (idle_timeout). */
  async endIdleRuns(now: Date = this.ctx.clock.now()): Promise<RunId[]> {
    // Held leases count as activity (see repo.RunsToEnd): give back the ones nothing uses first.
    await this.budget.returnIdleLeases();
    const ended = await this.db.transaction((tx) =>
      endRuns(
        tx,
        this.events,
        { idleBefore: now, defaultIdleTimeoutSec: this.options.defaultIdleTimeoutSec },
        {
          status: 'completed',
          endedReason: 'idle_timeout',
          completionReason: 'idle_timeout',
          fallbackOutcome: null,
          at: now,
        },
        SYSTEM_ACTOR,
      ),
    );
    for (const r of ended) this.runEnded(r.id);
    return ended.map((r) => r.id);
  }

  /**
   * Charges leases whose holder stopped renewing them before `before` (by
   * default abandonedLeaseMs ago), each in full as an error step with a
   * ledger entry: the calls they covered may have cost up to that much and
   * their settlements never came. Each batch of leases, its charges and the
   * events they set off are one transaction.
   */
  async chargeAbandonedLeases(
    now: Date = this.ctx.clock.now(),
    before = new Date(now.getTime() - this.options.abandonedLeaseMs),
    batch = 200,
  ): Promise<number> {
    let charged = 0;
    for (;;) {
      const stale = await budgetRepo.abandonedLeases(this.db, before, this.budget.holder, batch);
      if (stale.length === 0) return charged;
      const changed: repo.RunRow[] = [];
      await this.db.transaction(async (tx) => {
        const taken = await budgetRepo.takeLeases(
          tx,
          stale.map((l) => l.id),
        );
        const creditsLeft = heldCredits(taken, this.budget.credits?.enforce === true);
        for (const lease of taken) {
          charged++;
          const micros = lease.amountMicros;
          if (lease.scope === 'credits') {
            // What a run lease covered is charged to its run below (a ledger entry, which consumes
            // credits): the credits held for the same calls are only given back.
            await budgetRepo.releaseHeld(tx, lease, micros, 0);
            continue;
          }
          if (lease.scope === 'hour' || lease.runId === null) {
            if (lease.hourStart)
              await budgetRepo.settleHour(tx, { ...lease, hourStart: lease.hourStart }, micros, micros);
            continue;
          }
          const run = await budgetRepo.chargeLeaseToRun(tx, { ...lease, runId: lease.runId }, now);
          if (!run || micros === 0) continue;
          const stepId = newId('stp');
          await repo.insertStep(tx, {
            id: stepId,
            teamId: lease.teamId,
            runId: lease.runId,
            agentId: lease.agentId,
            type: 'llm_call',
            status: 'error',
            provider: null,
            model: null,
            costMicros: micros,
            errorKind: 'unsettled_reservation',
            errorMessage: `a server stopped with ${usd(micros)} of this run's budget leased for calls it had admitted (taken ${lease.createdAt.toISOString()}); charged in full`,
            createdAt: now,
          });
          await repo.insertLedgerEntry(tx, {
            id: newId('led'),
            teamId: lease.teamId,
            runId: lease.runId,
            stepId,
            agentId: lease.agentId,
            provider: null,
            model: null,
            providerKeyId: null,
            costMicros: micros,
            createdAt: now,
          });
          await repo.rollUpSteps(tx, lease.teamId, [stepId]);
          const credits = this.budget.credits;
          if (credits)
            await credits.consumeIn(tx, {
              teamId: lease.teamId,
              runId: lease.runId,
              amount: creditsLeft.take(lease, credits.rate.consumed(micros)),
              reason: 'a budget lease left by a server that stopped, charged in full',
              at: now,
            });
          changed.push(await enforceLimits(tx, this.events, run, now, changed));
        }
      });
      for (const run of changed) this.budget.runChanged(run);
      if (stale.length < batch) return charged;
    }
  }

  /**
   * At start: leases left by a dead process are charged (on an exclusive
   * database, every lease there is: only this process can use it), but
   * running runs are left alone — their agents may carry on. Then the sweeps
   * run on a timer until `stop`.
   */
  async start(): Promise<void> {
    const now = this.ctx.clock.now();
    const before = this.options.exclusiveDatabase
      ? new Date(now.getTime() + 1)
      : new Date(now.getTime() - this.options.abandonedLeaseMs);
    await this.chargeLogged(now, before);
    await this.sweepOnce();
    this.timer = this.ctx.timers.every(this.options.sweepIntervalMs, () => {
      if (!this.sweeping) this.sweeping = this.sweepOnce().finally(() => (this.sweeping = undefined));
    });
  }

  /** Stops the timer; resolves once a round in progress is over. */
  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    await this.sweeping;
  }

  /** One round of both sweeps; one failing is logged and does not stop the other. */
  private async sweepOnce(): Promise<void> {
    const now = this.ctx.clock.now();
    await this.chargeLogged(now, new Date(now.getTime() - this.options.abandonedLeaseMs));
    try {
      await this.endIdleRuns(now);
    } catch (err) {
      this.ctx.log.error(
        {
          err,
          sweep: 'idle_runs',
          at: now.toISOString(),
          default_idle_timeout_sec: this.options.defaultIdleTimeoutSec,
        },
        'ending idle runs failed',
      );
    }
  }

  private async chargeLogged(now: Date, before: Date): Promise<void> {
    try {
      await this.chargeAbandonedLeases(now, before);
    } catch (err) {
      this.ctx.log.error(
        {
          err,
          sweep: 'abandoned_leases',
          abandoned_before: before.toISOString(),
          holder: this.budget.holder,
        },
        'charging abandoned budget leases failed',
      );
    }
  }
}

/**
 * Under enforcement every call a server admitted held the team's credits in
 * that server's credits lease, so what its unsettled calls can have cost the
 * team is at most what that lease still held. Its run leases are charged to
 * their runs in full (a run's budget errs high), but the credits they consume
 * stop there: charging each run lease's full amount again in credits would
 * take more than the server ever held, and overspend the balance by up to a
 * second of a busy run's traffic. Without enforcement (or without the
 * holder's credits lease among these) a charge consumes in full.
 */
function heldCredits(
  leases: ReadonlyArray<{ holder: string; teamId: string; scope: string; amountMicros: number }>,
  enforced: boolean,
) {
  const left = new Map<string, number>();
  const key = (l: { holder: string; teamId: string }) => `${l.holder}\u0000${l.teamId}`;
  if (enforced)
    for (const l of leases)
      if (l.scope === 'credits') left.set(key(l), (left.get(key(l)) ?? 0) + l.amountMicros);
  return {
    /** The credits (micro-credits) this run lease's charge consumes, out of what its holder held. */
    take(lease: { holder: string; teamId: string }, full: number): number {
      const held = left.get(key(lease));
      if (held === undefined) return full;
      const amount = Math.min(full, held);
      left.set(key(lease), held - amount);
      return amount;
    },
  };
}

// One file over 400 lines: which run a call joins (an explicit id, the
// implicit window, a new run, a task's own run) is one decision with one
// cache and one cooldown rule; its branches are read together.
import { MINUTE_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import { AppError, ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { isId, newId, type RunId, type TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { type Actor, endRuns, SYSTEM_ACTOR } from './lifecycle.ts';
import * as repo from './repo.ts';
import { microsOf } from './views.ts';

/** The parts of a policy document that run resolution reads (modules/policies has the full type). */
export interface RunPolicySpec {
  budget?: {
    hard_limit_usd?: number | null;
    hard_limit_tokens?: number | null;
    alert_threshold_usd?: number | null;
    alert_threshold_tokens?: number | null;
    on_alert_threshold?: string | null;
  } | null;
  implicit_run_grouping?: {
    time_window_seconds?: number | null;
    run_idle_timeout_seconds?: number | null;
    force_stop_cooldown_minutes?: number | null;
  } | null;
  outcome_defaults?: Record<string, string | null | undefined> | null;
}

export interface ResolveRunInput {
  teamId: TeamId;
  agent: { id: string; name?: string; policyId?: string; allowedPolicies?: string[] | null };
  /** The policy this request runs under (already chosen by the proxy). */
  policy: { id: string; name: string; spec: RunPolicySpec };
  /** x-paddock-run-id: attach to this run (anything but a run id is not found). */
  runId?: RunId | string;
  /** x-paddock-new-run: complete the agent's running runs and start a new one. */
  newRun?: boolean;
  /** Used only when this request creates the run. */
  runName?: string;
  /** Merged into the run's metadata. */
  runMetadata?: Record<string, unknown>;
  /**
   * A sub-agent's call (the task runner's, never a client's): it may attach
   * to a task run of this agent, its delegator, as well as to its own runs.
   */
  delegateOf?: string;
  now?: Date;
}

export interface ResolvedRun {
  id: RunId;
  /** The run's agent: the caller's, or its delegator's (delegateOf). */
  agentId: string;
  /** Steps of work so far (possibly a few behind: steps are written after the response). */
  stepCount: number;
  policyId: string;
  creationMethod: repo.RunRow['creationMethod'];
  /** True when this request started the run. */
  created: boolean;
}

/** Rungate defaults (notes/rungate.md §2.6): a 300 s grouping window, a 60 min cooldown. */
export const DEFAULT_TIME_WINDOW_SEC = 300;
export const DEFAULT_COOLDOWN_MIN = 60;
/** How long a cached run id is trusted before the database is asked again (other processes may end it). */
const CACHE_VERIFY_MS = 5 * SECOND_MS;
const CACHE_MAX = 20_000;

interface CachedRun {
  runId: RunId;
  teamId: TeamId;
  agentId: string;
  policyId: string;
  creationMethod: repo.RunRow['creationMethod'];
  stepCount: number;
  lastActivityMs: number;
  verifiedAtMs: number;
}

const agentActor = (agentId: string): Actor => ({ actorKind: 'agent', actorId: agentId });

export type { RunProgress } from './repo.ts';

/** Last activity: the last step, else the start. */
function lastActivityMs(run: Pick<repo.RunRow, 'lastStepAt' | 'startedAt'>): number {
  return Math.max(run.lastStepAt?.getTime() ?? 0, run.startedAt.getTime());
}

/**
 * Which run a proxy request belongs to (Rungate §2.6): an explicit run id,
 * a forced new run, or implicit grouping by agent+policy within the policy's
 * time window. Called on every proxied request, so the current run of each
 * agent+policy is cached in the process; the database stays the truth (the
 * cache is re-checked every few seconds, and the budget reservation re-checks
 * the run's status atomically).
 */
export class RunResolver {
  private readonly implicit = new Map<string, CachedRun>();
  private readonly byId = new Map<RunId, CachedRun>();
  private readonly inflight = new Map<string, Promise<ResolvedRun>>();

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    /**
     * Gives back this process's idle budget leases before activity is judged:
     * a run's reserved money means a lease is held, and a held lease means a
     * call was in flight moments ago (see joinable).
     */
    private readonly returnIdleLeases: () => Promise<void> = async () => {},
  ) {}

  async resolve(input: ResolveRunInput): Promise<ResolvedRun> {
    const now = input.now ?? this.ctx.clock.now();
    if (input.newRun) return this.startNewRun(input, now);
    if (input.runId !== undefined) return this.attach(input, input.runId, now);
    return this.joinOrStart(input, now);
  }

  /** The run changed (stepped, ended) in this process: keep the cache in line. */
  note(run: repo.RunProgress): void {
    if (run.status !== 'running') {
      this.forget(run.id);
      return;
    }
    const at = lastActivityMs(run);
    for (const c of [this.byId.get(run.id), this.implicit.get(this.key(run.agentId, run.policyId))]) {
      if (c?.runId !== run.id) continue;
      c.stepCount = Math.max(c.stepCount, run.stepCount);
      c.lastActivityMs = Math.max(c.lastActivityMs, at);
    }
  }

  forget(runId: RunId): void {
    const c = this.byId.get(runId);
    this.byId.delete(runId);
    if (c) {
      const key = this.key(c.agentId, c.policyId);
      if (this.implicit.get(key)?.runId === runId) this.implicit.delete(key);
    }
  }

  clear(): void {
    this.implicit.clear();
    this.byId.clear();
  }

  private key(agentId: string, policyId: string): string {
    return `${agentId}:${policyId}`;
  }

  private fresh(c: CachedRun, nowMs: number): boolean {
    return Math.abs(nowMs - c.verifiedAtMs) < CACHE_VERIFY_MS;
  }

  private remember(run: repo.RunRow, nowMs: number, implicit: boolean): CachedRun {
    if (this.byId.size >= CACHE_MAX) this.clear();
    const c: CachedRun = {
      runId: run.id,
      teamId: run.teamId,
      agentId: run.agentId,
      policyId: run.policyId,
      creationMethod: run.creationMethod,
      stepCount: run.stepCount,
      lastActivityMs: Math.max(lastActivityMs(run), implicit ? nowMs : 0),
      verifiedAtMs: nowMs,
    };
    this.byId.set(run.id, c);
    if (implicit) this.implicit.set(this.key(run.agentId, run.policyId), c);
    return c;
  }

  private resolved(c: CachedRun, created: boolean): ResolvedRun {
    return {
      id: c.runId,
      agentId: c.agentId,
      stepCount: c.stepCount,
      policyId: c.policyId,
      creationMethod: c.creationMethod,
      created,
    };
  }

  private async mergeMetadata(input: ResolveRunInput, runId: RunId, now: Date): Promise<void> {
    if (input.runMetadata && Object.keys(input.runMetadata).length > 0) {
      await repo.mergeRunMetadata(this.db, input.teamId, runId, input.runMetadata, now);
    }
  }

  private async attach(input: ResolveRunInput, runId: string, now: Date): Promise<ResolvedRun> {
    if (!isId(runId, 'run')) throw new NotFoundError('run', runId);
    const nowMs = now.getTime();
    const hit = this.byId.get(runId);
    if (hit && hit.teamId === input.teamId && this.mayAttach(input, hit) && this.fresh(hit, nowMs)) {
      await this.mergeMetadata(input, runId, now);
      return this.resolved(hit, false);
    }
    const run = await repo.findRun(this.db, input.teamId, runId);
    if (!run || !this.mayAttach(input, run)) throw new NotFoundError('run', runId);
    if (run.status === 'force_stopped') {
      throw new ForbiddenError('run_force_stopped', `run ${run.id} was force-stopped; start a new run`, {
        run_id: run.id,
        error_type: 'governance_block',
      });
    }
    if (run.status === 'budget_exceeded') {
      // The run's money is spent: the caller hears the budget (402), as the calls that used it up did.
      throw new AppError(402, 'budget_exceeded', `run ${run.id} reached its budget; start a new run`, {
        run_id: run.id,
        error_type: 'governance_block',
      });
    }
    if (run.status !== 'running') {
      throw new ConflictError(
        'run_not_running',
        `run ${run.id} is ${run.status}; it takes no more requests`,
        {
          run_id: run.id,
          status: run.status,
        },
      );
    }
    await this.mergeMetadata(input, runId, now);
    return this.resolved(this.remember(run, nowMs, false), false);
  }

  /** A run of the caller, or (a sub-agent's call) a task run of the agent it works for; any other is not found. */
  private mayAttach(input: ResolveRunInput, run: Pick<CachedRun, 'agentId' | 'creationMethod'>): boolean {
    if (run.agentId === input.agent.id) return true;
    return (
      input.delegateOf !== undefined && run.agentId === input.delegateOf && run.creationMethod === 'task'
    );
  }

  private async joinOrStart(input: ResolveRunInput, now: Date): Promise<ResolvedRun> {
    const nowMs = now.getTime();
    const key = this.key(input.agent.id, input.policy.id);
    const windowMs =
      (input.policy.spec.implicit_run_grouping?.time_window_seconds ?? DEFAULT_TIME_WINDOW_SEC) * SECOND_MS;
    const hit = this.implicit.get(key);
    if (
      hit &&
      hit.teamId === input.teamId &&
      this.fresh(hit, nowMs) &&
      nowMs - hit.lastActivityMs <= windowMs
    ) {
      hit.lastActivityMs = Math.max(hit.lastActivityMs, nowMs);
      await this.mergeMetadata(input, hit.runId, now);
      return this.resolved(hit, false);
    }
    // One lookup per agent+policy at a time: a burst of requests shares it.
    const pending = this.inflight.get(key);
    if (pending) {
      const joined = await pending;
      await this.mergeMetadata(input, joined.id, now);
      return { ...joined, created: false };
    }
    const lookup = this.joinOrStartInDb(input, now, windowMs);
    this.inflight.set(key, lookup);
    try {
      return await lookup;
    } finally {
      this.inflight.delete(key);
    }
  }

  private joinable(run: repo.RunRow, nowMs: number, windowMs: number): boolean {
    // A call in flight is activity too: its step is not written yet, but its lease holds money
    // (leases go back within seconds of their last call).
    return run.reservedMicros > 0 || run.reservedTokens > 0 || nowMs - lastActivityMs(run) <= windowMs;
  }

  private async joinOrStartInDb(input: ResolveRunInput, now: Date, windowMs: number): Promise<ResolvedRun> {
    const nowMs = now.getTime();
    await this.returnIdleLeases();
    const current = await repo.latestRunningRun(this.db, input.teamId, input.agent.id, input.policy.id);
    if (current && current.teamId === input.teamId && this.joinable(current, nowMs, windowMs)) {
      await this.mergeMetadata(input, current.id, now);
      return this.resolved(this.remember(current, nowMs, true), false);
    }
    const ended: repo.RunRow[] = [];
    const result = await this.db.transaction(async (tx) => {
      await repo.lockAgentPolicyForRunStart(tx, input.agent.id, input.policy.id);
      // Another process may have started (or ended) the run meanwhile.
      const run = await repo.latestRunningRun(tx, input.teamId, input.agent.id, input.policy.id);
      if (run && run.teamId === input.teamId && this.joinable(run, nowMs, windowMs)) {
        if (input.runMetadata) await repo.mergeRunMetadata(tx, input.teamId, run.id, input.runMetadata, now);
        return { run, created: false };
      }
      if (run) {
        // The window elapsed: Rungate auto-completes the old run and starts a new one.
        ended.push(
          ...(await endRuns(
            tx,
            this.events,
            { run: run.id, teamId: run.teamId },
            {
              status: 'completed',
              endedReason: 'idle_auto_complete',
              completionReason: 'idle_timeout',
              fallbackOutcome: null,
              at: now,
            },
            SYSTEM_ACTOR,
          )),
        );
      }
      await this.checkCooldown(tx, input, now);
      return { run: await this.create(tx, input, 'implicit', now), created: true };
    });
    for (const r of ended) this.forget(r.id);
    return this.resolved(this.remember(result.run, nowMs, true), result.created);
  }

  /** Rungate: after a force-stop, implicit runs of that agent+policy wait out the cooldown unless unblocked. */
  private async checkCooldown(tx: DbOrTx, input: ResolveRunInput, now: Date): Promise<void> {
    const minutes =
      input.policy.spec.implicit_run_grouping?.force_stop_cooldown_minutes ?? DEFAULT_COOLDOWN_MIN;
    if (minutes <= 0) return;
    const stopped = await repo.blockingForceStop(
      tx,
      input.teamId,
      input.agent.id,
      input.policy.id,
      new Date(now.getTime() - minutes * MINUTE_MS),
    );
    if (!stopped) return;
    const until = new Date(stopped.endedAt!.getTime() + minutes * MINUTE_MS);
    throw new ForbiddenError(
      'run_blocked_after_force_stop',
      `run ${stopped.id} of this agent and policy was force-stopped; new runs are blocked until ${until.toISOString()} ` +
        'unless an admin unblocks it (POST /v1/runs/{id}/unblock) or the request asks for a new run explicitly',
      {
        run_id: null,
        force_stopped_run_id: stopped.id,
        blocked_until: until.toISOString(),
        error_type: 'governance_block',
      },
    );
  }

  /** x-paddock-new-run: every running run of the agent ends (new_run_requested); the cooldown does not apply. */
  private async startNewRun(input: ResolveRunInput, now: Date): Promise<ResolvedRun> {
    const ended: repo.RunRow[] = [];
    const run = await this.db.transaction(async (tx) => {
      await repo.lockAgentPolicyForRunStart(tx, input.agent.id, input.policy.id);
      ended.push(
        ...(await endRuns(
          tx,
          this.events,
          { agentId: input.agent.id, teamId: input.teamId },
          {
            status: 'completed',
            endedReason: 'new_run_requested',
            completionReason: 'explicit',
            fallbackOutcome: null,
            at: now,
          },
          agentActor(input.agent.id),
        )),
      );
      return this.create(tx, input, 'explicit', now);
    });
    for (const r of ended) this.forget(r.id);
    return this.resolved(this.remember(run, now.getTime(), true), true);
  }

  /**
   * A task's own run, started by its runner: never joined implicitly and never
   * ended by the agent's other runs' rules; its hard limit is the lower of the
   * policy's and the task's.
   */
  async startTaskRun(
    input: ResolveRunInput & { id: RunId; maxBudgetMicros: number | null; isNew?: boolean },
    /** The caller's transaction (the task's claim): the run is cached once a call attaches to it. */
    tx?: DbOrTx,
  ): Promise<RunId> {
    // A later attempt of the task (or a workspace's next turn) goes on in the run the first one
    // started (its budget holds across both); an id the caller has just made names no run yet. Runs
    // are never deleted, so one this process has cached exists without asking the database.
    const exists =
      !input.isNew &&
      (this.byId.get(input.id)?.teamId === input.teamId ||
        (await repo.findRun(tx ?? this.db, input.teamId, input.id)) !== undefined);
    if (exists) return input.id;
    const now = input.now ?? this.ctx.clock.now();
    const create = (t: DbOrTx) => this.create(t, input, 'task', now, input.maxBudgetMicros, input.id);
    if (tx) return (await create(tx)).id;
    const run = await this.db.transaction(create);
    this.remember(run, now.getTime(), false);
    return run.id;
  }

  /** A new run with the policy and its budget as they are now: the run is governed by this snapshot. */
  private async create(
    tx: DbOrTx,
    input: ResolveRunInput,
    creationMethod: repo.RunRow['creationMethod'],
    now: Date,
    capMicros: number | null = null,
    id: RunId = newId('run'),
  ): Promise<repo.RunRow> {
    const budget = input.policy.spec.budget ?? {};
    const policyLimit = microsOf(budget.hard_limit_usd);
    const run = await repo.insertRun(tx, {
      id,
      teamId: input.teamId,
      agentId: input.agent.id,
      policyId: input.policy.id,
      policyName: input.policy.name,
      policySnapshot: structuredClone(input.policy.spec) as Record<string, unknown>,
      name: input.runName ?? null,
      status: 'running',
      creationMethod,
      metadata: input.runMetadata ?? {},
      hardLimitMicros:
        capMicros === null
          ? policyLimit
          : policyLimit === null
            ? capMicros
            : Math.min(policyLimit, capMicros),
      hardLimitTokens: budget.hard_limit_tokens ?? null,
      alertThresholdMicros: microsOf(budget.alert_threshold_usd),
      alertThresholdTokens: budget.alert_threshold_tokens ?? null,
      startedAt: now,
      updatedAt: now,
    });
    await this.events.record(tx, {
      teamId: input.teamId,
      ...agentActor(input.agent.id),
      subjectId: run.id,
      type: 'run.started',
      data: {
        agent_id: input.agent.id,
        policy_id: input.policy.id,
        name: run.name,
        creation_method: creationMethod,
      },
    });
    return run;
  }
}

// One file over ~400 lines: RunsService is the runs module's one façade. The
// proxy's side is a line each over RunResolver, BudgetSystem and RunSweeps;
// the HTTP side's operations share the visibility and ending rules below
// (visibleRun, activeAgentOf, endOne), so splitting it would export those.

import type { Context, Log } from '../../core/context.ts';
import { AppError, ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { isId, type RunId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, type Principal } from '../identity/principal.ts';
import {
  type BudgetOptions,
  BudgetSystem,
  type ReserveInput,
  type ReserveResult,
  type SettleResult,
  type StepRecord,
} from './budget.ts';
import { type Actor, endRuns } from './lifecycle.ts';
import type { BlockedRequest, FailoverTransition } from './recording.ts';
import { blockedStep, failoverStep } from './recording.ts';
import * as repo from './repo.ts';
import { RunReports } from './reports.ts';
import { type ResolvedRun, type ResolveRunInput, RunResolver } from './resolver.ts';
import {
  checkSandboxUsage,
  DEFAULT_SANDBOX_PRICES,
  type SandboxCharge,
  type SandboxPrices,
  type SandboxUsageInput,
  sandboxCostMicros,
  sandboxStep,
} from './sandbox-usage.ts';
import type { CompleteRunInput, RunListQueryType, ToolStepInput, UpdateRunInput } from './schemas.ts';
import { DEFAULT_SWEEP_OPTIONS, RunSweeps, type SweepOptions } from './sweeps.ts';
import { completionView, ledgerView, microsOf, runView, stepView } from './views.ts';

export type { ReserveInput, ReserveResult, SettleResult, StepRecord, TokenUsage } from './budget.ts';
export type { BlockedRequest, FailoverTransition } from './recording.ts';
export type { ResolvedRun, ResolveRunInput } from './resolver.ts';
export type { SandboxCharge, SandboxPrices, SandboxUsageInput } from './sandbox-usage.ts';

export interface RunsOptions extends SweepOptions {
  /** Lease timings and the step writer's batching (tests shorten them). */
  budget?: Partial<BudgetOptions>;
  /** What sandbox time costs (config: PADDOCK_SANDBOX_USD_PER_VCPU_SEC / _PER_GB_SEC). */
  sandboxPrices: SandboxPrices;
  /** Told of every governance block as it is recorded (the audit log). */
  onBlocked?: (b: BlockedRequest) => void;
}

/** The run's policy's max_cost_per_hour_usd in micro-USD (null: no cap), as the run was started under it. */
function hourlyCapMicros(run: repo.RunRow): number | null {
  const budget = (run.policySnapshot.budget ?? {}) as { max_cost_per_hour_usd?: number | null };
  return microsOf(budget.max_cost_per_hour_usd);
}

/**
 * Runs, steps and the ledger. The proxy's side (resolve, reserve, settle,
 * record) sits over three systems — RunResolver, BudgetSystem, StepRecorder —
 * and the HTTP side (admin and agent routes) is below; RunReports answers
 * other modules' questions about runs.
 */
export class RunsService {
  readonly resolver: RunResolver;
  readonly budget: BudgetSystem;
  /** What other modules read about runs (policy stats, a key's usage), through their ports. */
  readonly reports: RunReports;
  private readonly sweeps: RunSweeps;
  private readonly sandboxPrices: SandboxPrices;
  private readonly onBlocked: (b: BlockedRequest) => void;
  private readonly log: Log;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    /** Agent-side writes refuse a disabled agent (403 agent_disabled); given by the agents module. */
    private readonly isAgentActive: (agentId: string) => Promise<boolean> = async () => true,
    options: Partial<RunsOptions> = {},
  ) {
    const { budget, sandboxPrices, onBlocked, ...sweeps } = options;
    this.log = ctx.log;
    this.onBlocked = onBlocked ?? (() => {});
    this.sandboxPrices = sandboxPrices ?? DEFAULT_SANDBOX_PRICES;
    this.reports = new RunReports(db);
    this.resolver = new RunResolver(db, ctx, events, () => this.budget.returnIdleLeases());
    this.budget = new BudgetSystem(db, ctx, events, (run) => this.resolver.note(run), budget);
    this.sweeps = new RunSweeps(db, ctx, events, this.budget, (runId) => this.forgetRun(runId), {
      ...DEFAULT_SWEEP_OPTIONS,
      ...sweeps,
    });
  }

  private get clock() {
    return this.ctx.clock;
  }

  // -- the proxy's side --------------------------------------------------

  /** Which run this request belongs to (Rungate §2.6); throws 404 / 403 / 409 with the run codes. */
  resolveRun(input: ResolveRunInput): Promise<ResolvedRun> {
    return this.resolver.resolve(input);
  }

  reserve(input: ReserveInput): Promise<ReserveResult> {
    return this.budget.reserve(input);
  }

  release(reservationId: string): Promise<boolean> {
    return this.budget.release(reservationId);
  }

  settle(reservationId: string, record: StepRecord): Promise<SettleResult> {
    return this.budget.settle(reservationId, record);
  }

  /** Write-behind settle: charged in memory at once, written with the next batch (a step without `at` is stamped now). */
  settleLater(reservationId: string, record: StepRecord): void {
    if (!this.budget.settleLater(reservationId, record)) {
      this.log.warn(
        { reservation_id: reservationId, step_id: record.stepId },
        'settlement for a reservation this process no longer holds (released or settled already)',
      );
    }
  }

  /** Records a request refused by governance as a step, and flags the run (write-behind). */
  recordBlocked(b: BlockedRequest): void {
    const owner = this.stepOwner(b);
    if (!owner) return;
    this.budget.note(owner, blockedStep(b, b.at ?? this.clock.now()), 'governance_block');
    this.onBlocked(b);
  }

  /** A failover_transition step with Rungate's failover_context, and had_failover on the run (write-behind). */
  recordFailoverTransition(f: FailoverTransition): void {
    const owner = this.stepOwner(f);
    if (owner) this.budget.note(owner, failoverStep(f, f.at ?? this.clock.now()), 'failover');
  }

  /** The run a step from the proxy is for; a step for something that is not a run id is logged and dropped. */
  private stepOwner(s: { teamId: TeamId; runId: string; agentId: string }) {
    if (isId(s.runId, 'run')) return { teamId: s.teamId, runId: s.runId, agentId: s.agentId };
    this.log.warn(
      { run_id: s.runId, agent_id: s.agentId },
      'a step for something that is not a run id was dropped',
    );
    return undefined;
  }

  // -- tasks' runs ----------------------------------------------------------

  /** A task's own run (see RunResolver.startTaskRun). */
  startTaskRun(
    input: ResolveRunInput & { id: RunId; maxBudgetMicros: number | null },
    tx?: DbOrTx,
  ): Promise<RunId> {
    return this.resolver.startTaskRun(input, tx);
  }

  /**
   * A workspace's turn ended and its run goes on: every queued step written
   * (the turn's among them). The run's lease stays for the next turn, or goes
   * back once idle like any other.
   */
  flushSteps(): Promise<void> {
    return this.budget.flushSteps();
  }

  /**
   * Ends a task's run with its task (completed, the task's outcome); a run
   * that already ended (budget, force-stop) stays as it is. Answers the run
   * as it is after, its steps written.
   */
  async endTaskRun(
    teamId: TeamId,
    runId: RunId,
    outcome: 'success' | 'failed',
    endedReason: string,
  ): Promise<repo.RunRow | undefined> {
    await this.budget.flushRun(runId);
    const ending: repo.RunEnding = {
      status: 'completed',
      endedReason,
      completionReason: 'explicit',
      outcome,
      fallbackOutcome: null,
      at: this.clock.now(),
    };
    const [ended] = await this.db.transaction((tx) =>
      endRuns(tx, this.events, { run: runId, teamId }, ending, {
        actorKind: 'system',
        actorId: 'task_runner',
      }),
    );
    this.forgetRun(runId);
    return ended ?? repo.findRun(this.db, teamId, runId);
  }

  /**
   * Charges an interval of a task's capsule running time to the task's run:
   * a step of type sandbox and a ledger entry of kind sandbox, written with
   * the run's totals in one statement. The task runner calls it when the
   * capsule stops, and may call it for intervals of a long task: each call
   * charges the interval it is given. Sandbox time is spent money, so it is
   * charged whatever the run's status or budget; a charge that reaches the
   * hard limit ends the run as budget_exceeded, and the next call is refused.
   */
  async recordSandboxUsage(input: SandboxUsageInput): Promise<SandboxCharge> {
    checkSandboxUsage(input);
    const run = isId(input.runId, 'run') ? await repo.findRun(this.db, input.teamId, input.runId) : undefined;
    if (!run || run.agentId !== input.agentId) throw new NotFoundError('run', input.runId);
    const costMicros = sandboxCostMicros(this.sandboxPrices, input);
    const settled = await this.budget.chargeIncurred(
      { teamId: run.teamId, runId: run.id, agentId: run.agentId, policyId: run.policyId },
      sandboxStep(input, costMicros, input.at ?? this.clock.now()),
      hourlyCapMicros(run),
    );
    const entry = settled.step
      ? await repo.findLedgerEntryOfStep(this.db, run.teamId, run.id, settled.step.id)
      : undefined;
    if (!settled.step || !entry) throw new Error(`sandbox charge for run ${run.id} was not written`);
    return { costMicros, ledgerEntryId: entry.id, stepId: settled.step.id };
  }

  /** Waits until every queued step is written and unused leases are back (tests, shutdown). */
  flush(): Promise<void> {
    return this.budget.flush();
  }

  // -- sweeps --------------------------------------------------------------

  /** Ends running runs idle past their run_idle_timeout_seconds (idle_timeout). */
  sweepIdleRuns(now?: Date): Promise<RunId[]> {
    return this.sweeps.endIdleRuns(now);
  }

  /** Charges leases whose holders stopped renewing them before `before` (fail closed on money). */
  chargeAbandonedLeases(now?: Date, before?: Date): Promise<number> {
    return this.sweeps.chargeAbandonedLeases(now, before);
  }

  /** Charges what dead processes left, then runs the sweeps on a timer until `shutdown` (the scheduler role). */
  async startSweeps(): Promise<void> {
    await this.sweeps.start();
  }

  /** Renews this process's budget leases and returns idle ones until `shutdown` (where model calls are made). */
  startLeaseRenewal(): void {
    this.budget.start();
  }

  private forgetRun(runId: RunId): void {
    this.resolver.forget(runId);
    this.budget.runEnded(runId);
  }

  /** Stops the timers, writes what is queued and gives unused leases back. */
  async shutdown(): Promise<void> {
    await this.sweeps.stop();
    await this.budget.shutdown();
  }

  // -- the HTTP side ------------------------------------------------------

  /** The run if the caller may see it: the team's, and for an agent key its own; else 404. */
  private async visibleRun(principal: Principal, id: string): Promise<repo.RunRow> {
    const run = isId(id, 'run') ? await repo.findRun(this.db, activeTeam(principal), id) : undefined;
    if (!run || (principal.kind === 'agent' && run.agentId !== principal.agentId))
      throw new NotFoundError('run', id);
    return run;
  }

  private agentOf(principal: Principal): string {
    if (principal.kind !== 'agent' || principal.agentId === undefined) {
      throw new ForbiddenError(
        'agent_key_required',
        'this route is for agents: authenticate with the agent key (pda_)',
      );
    }
    return principal.agentId;
  }

  private async activeAgentOf(principal: Principal): Promise<string> {
    const agentId = this.agentOf(principal);
    if (!(await this.isAgentActive(agentId))) {
      throw new ForbiddenError('agent_disabled', `agent ${agentId} is disabled`, {
        error_type: 'governance_block',
      });
    }
    return agentId;
  }

  async list(principal: Principal, q: RunListQueryType) {
    const filter = {
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.policy_id !== undefined ? { policyId: q.policy_id } : {}),
      ...(q.since !== undefined ? { since: new Date(q.since) } : {}),
      ...(q.until !== undefined ? { until: new Date(q.until) } : {}),
      ...(q.had_governance_block !== undefined ? { hadGovernanceBlock: q.had_governance_block } : {}),
      ...(q.had_failover !== undefined ? { hadFailover: q.had_failover } : {}),
    };
    return pageOf(
      q,
      (cursor, rows) => repo.listRuns(this.db, activeTeam(principal), filter, cursor, rows),
      runView,
    );
  }

  async get(principal: Principal, id: string) {
    return runView(await this.visibleRun(principal, id));
  }

  /** Rename or set the outcome, in any status; null clears. No event (Rungate: PATCH fires none). */
  async update(principal: Principal, id: string, input: UpdateRunInput) {
    const run = await this.visibleRun(principal, id);
    return runView(await this.patch(run, input));
  }

  private async patch(run: repo.RunRow, input: UpdateRunInput): Promise<repo.RunRow> {
    const details: repo.RunDetails = {};
    if (input.name !== undefined) details.name = input.name;
    if (input.outcome !== undefined) details.outcome = input.outcome;
    if (input.outcome_reason !== undefined) details.outcomeReason = input.outcome_reason;
    if (Object.keys(details).length === 0) return run;
    return (await repo.updateRunDetails(this.db, run.teamId, run.id, details, this.clock.now())) ?? run;
  }

  async steps(principal: Principal, id: string, page: PageQuery) {
    const run = await this.visibleRun(principal, id);
    return pageOf(
      page,
      (cursor, rows) => repo.listSteps(this.db, run.teamId, run.id, cursor, rows),
      stepView,
    );
  }

  async ledger(principal: Principal, id: string, page: PageQuery) {
    const run = await this.visibleRun(principal, id);
    return pageOf(
      page,
      (cursor, rows) => repo.listLedger(this.db, run.teamId, run.id, cursor, rows),
      ledgerView,
    );
  }

  private notRunning(run: repo.RunRow): ConflictError {
    return new ConflictError('run_not_running', `run ${run.id} is ${run.status}, not running`, {
      run_id: run.id,
      status: run.status,
    });
  }

  /** Ends one running run; 409 when it is not running (any more). */
  private async endOne(run: repo.RunRow, ending: repo.RunEnding, actor: Actor): Promise<repo.RunRow> {
    if (run.status !== 'running') throw this.notRunning(run);
    const [ended] = await this.db.transaction((tx) =>
      endRuns(tx, this.events, { run: run.id, teamId: run.teamId }, ending, actor),
    );
    if (!ended) throw this.notRunning((await repo.findRun(this.db, run.teamId, run.id)) ?? run);
    this.forgetRun(ended.id);
    return ended;
  }

  /** An explicit completion (admin's or agent's): the caller's outcome, else success. */
  private completeOne(principal: Principal, run: repo.RunRow, endedReason: string, input: CompleteRunInput) {
    const ending: repo.RunEnding = {
      status: 'completed',
      endedReason,
      completionReason: 'explicit',
      outcome: input.outcome ?? null,
      outcomeReason: input.outcome_reason ?? null,
      fallbackOutcome: 'success',
      ...(input.metadata ? { metadata: input.metadata } : {}),
      at: this.clock.now(),
    };
    return this.endOne(run, ending, actorOf(principal));
  }

  /** Admin completion: ended_reason `reason` (default admin_completed), completion_reason explicit. */
  async completeAsAdmin(principal: Principal, id: string, input: CompleteRunInput) {
    const run = await this.visibleRun(principal, id);
    const endedReason = input.reason ?? input.ended_reason ?? 'admin_completed';
    return runView(await this.completeOne(principal, run, endedReason, input));
  }

  /** Agent completion of its run (`current` = its latest running run); answers the completion summary. */
  async completeAsAgent(principal: Principal, idOrCurrent: string, input: CompleteRunInput) {
    const agentId = await this.activeAgentOf(principal);
    const run =
      idOrCurrent === 'current'
        ? await this.currentRun(principal, agentId)
        : await this.visibleRun(principal, idOrCurrent);
    const endedReason = input.ended_reason ?? input.reason ?? 'agent_signaled';
    const ended = await this.completeOne(principal, run, endedReason, input);
    return completionView(ended, await repo.governanceEvents(this.db, ended.teamId, ended.id));
  }

  /** Both sides share POST /v1/runs/{id}/complete: the principal decides which one this is. */
  complete(principal: Principal, id: string, input: CompleteRunInput) {
    return principal.kind === 'agent'
      ? this.completeAsAgent(principal, id, input)
      : this.completeAsAdmin(principal, id, input);
  }

  /** Every running run of the calling agent; idempotent (0 when none). */
  async completeAll(principal: Principal, input: { ended_reason?: string }) {
    const agentId = await this.activeAgentOf(principal);
    const ended = await this.db.transaction((tx) =>
      endRuns(
        tx,
        this.events,
        { agentId, teamId: activeTeam(principal) },
        {
          status: 'completed',
          endedReason: input.ended_reason ?? 'agent_complete_all',
          completionReason: 'explicit',
          fallbackOutcome: 'success',
          at: this.clock.now(),
        },
        actorOf(principal),
      ),
    );
    for (const r of ended) this.forgetRun(r.id);
    return { completed_count: ended.length, completed_run_ids: ended.map((r) => r.id) };
  }

  /** Force-stop (admin_stopped): implicit runs of this agent+policy then wait out the cooldown. */
  async forceStop(principal: Principal, id: string) {
    const run = await this.visibleRun(principal, id);
    const ended = await this.endOne(
      run,
      {
        status: 'force_stopped',
        endedReason: 'admin_stopped',
        completionReason: 'explicit',
        fallbackOutcome: null,
        at: this.clock.now(),
      },
      actorOf(principal),
    );
    return runView(ended);
  }

  /** Lifts the force-stop cooldown; the run stays force_stopped. Idempotent once lifted. */
  async unblock(principal: Principal, id: string) {
    const run = await this.visibleRun(principal, id);
    if (run.status !== 'force_stopped') {
      throw new ConflictError('run_not_force_stopped', `run ${run.id} is ${run.status}, not force_stopped`, {
        run_id: run.id,
        status: run.status,
      });
    }
    if (run.forceStopLiftedAt !== null) return runView(run);
    const now = this.clock.now();
    const lifted = await this.db.transaction(async (tx) => {
      const row = await repo.liftForceStop(tx, run.teamId, run.id, now);
      await this.events.record(tx, {
        teamId: run.teamId,
        ...actorOf(principal),
        subjectId: run.id,
        type: 'run.unblocked',
        data: { agent_id: run.agentId, policy_id: run.policyId, lifted_at: now.toISOString() },
      });
      return row;
    });
    return runView(lifted ?? run);
  }

  private async currentRun(principal: Principal, agentId: string): Promise<repo.RunRow> {
    const run = await repo.latestRunningRunOfAgent(this.db, activeTeam(principal), agentId);
    if (!run) throw new NotFoundError('running run of this agent');
    return run;
  }

  async current(principal: Principal) {
    return runView(await this.currentRun(principal, this.agentOf(principal)));
  }

  async updateCurrent(principal: Principal, input: UpdateRunInput) {
    const run = await this.currentRun(principal, await this.activeAgentOf(principal));
    return runView(await this.patch(run, input));
  }

  /**
   * A tool call the agent reports (Rungate POST /v1/runs/{id}/steps). Its cost
   * goes through reserve + settle like a model call's, so it counts against
   * the run's hard limits and the hourly cap; a refusal is 402 and recorded as
   * a budget_blocked step.
   */
  async addToolStep(principal: Principal, id: string, input: ToolStepInput) {
    const agentId = await this.activeAgentOf(principal);
    const run = await this.visibleRun(principal, id);
    if (run.status !== 'running') throw this.notRunning(run);
    const usage = {
      input: input.tokens?.input ?? 0,
      output: input.tokens?.output ?? 0,
      cacheRead: input.tokens?.cache_read ?? 0,
      cacheCreation: input.tokens?.cache_creation ?? 0,
    };
    const costMicros = microsOf(input.cost_usd) ?? 0;
    const reservation = await this.budget.reserve({
      teamId: run.teamId,
      runId: run.id,
      agentId,
      policyId: run.policyId,
      amountMicros: costMicros,
      tokens: usage.input + usage.output + usage.cacheRead + usage.cacheCreation,
      model: null,
      maxCostPerHourMicros: hourlyCapMicros(run),
    });
    if (!reservation.ok) {
      if (reservation.reason === 'run_not_running') {
        throw this.notRunning((await repo.findRun(this.db, run.teamId, run.id)) ?? run);
      }
      this.recordBlocked({
        teamId: run.teamId,
        runId: run.id,
        agentId,
        status: 'budget_blocked',
        code: reservation.reason,
        message: reservation.message,
        provider: input.provider ?? 'sdk',
      });
      throw new AppError(402, reservation.reason, reservation.message, { run_id: run.id });
    }
    const settled = await this.budget.settle(reservation.reservationId, {
      type: 'tool_call',
      status: input.status,
      name: input.name,
      provider: input.provider ?? 'sdk',
      model: null,
      request: input.request ?? null,
      response: input.response ?? null,
      usage,
      costMicros,
      latencyMs: input.latency_ms ?? null,
      errorMessage: input.error_message ?? null,
    });
    if (!settled.step) throw new Error(`tool step for run ${run.id} was not written (${settled.kind})`);
    return stepView(settled.step);
  }
}

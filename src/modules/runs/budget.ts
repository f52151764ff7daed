import { eq, sql } from 'drizzle-orm';
import { type Clock, HOUR_MS } from '../../core/clock.ts';
import { newId, ulid } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { runs } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import * as budgetRepo from './budget-repo.ts';
import { endRuns, SYSTEM_ACTOR } from './lifecycle.ts';
import * as repo from './repo.ts';
import { usdOf } from './views.ts';

/** Tokens in Rungate's four buckets. */
export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheCreation: number;
}

export const NO_TOKENS: TokenUsage = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 };

export type StepType = repo.StepRow['type'];
export type StepStatus = repo.StepRow['status'];

/** One step to write: what a call (or a tool) did and what it cost. */
export interface StepRecord {
  /** Given by the proxy at admission (so response headers can name it); made here when absent. */
  stepId?: string;
  type: StepType;
  status: StepStatus;
  /** The tool's name (tool_call steps). */
  name?: string | null;
  provider: string | null;
  model: string | null;
  providerKeyId?: string | null;
  streaming?: boolean;
  request?: unknown;
  response?: unknown;
  usage: TokenUsage;
  costMicros: number;
  latencyMs?: number | null;
  routedFrom?: string | null;
  failoverAttempts?: number;
  errorKind?: string | null;
  errorMessage?: string | null;
  /** Write a ledger entry; by default when the step cost money or used tokens. */
  ledger?: boolean;
  /** When the step happened (default: the clock at write time). */
  at?: Date;
}

export interface ReserveInput {
  teamId: string;
  runId: string;
  agentId: string;
  policyId: string;
  /** The most the call can cost, in micro-USD. */
  amountMicros: number;
  /** The most tokens it can use (input estimate + max output). */
  tokens: number;
  model?: string | null;
  /** The policy's max_cost_per_hour_usd in micro-USD, per agent+policy+clock hour; null = none. */
  maxCostPerHourMicros?: number | null;
  now?: Date;
}

export type ReserveRefusal = 'budget_exceeded' | 'hourly_budget_exceeded' | 'run_not_running';

export type ReserveResult =
  | { ok: true; reservationId: string; remainingMicros: number | null; remainingTokens: number | null }
  | { ok: false; reason: ReserveRefusal; message: string };

export interface SettleResult {
  /** `settled`: charged now; `duplicate`: an earlier attempt already wrote it; `missing`: no such reservation. */
  kind: 'settled' | 'duplicate' | 'missing';
  run?: repo.RunRow;
  step?: repo.StepRow;
}

/** What a settlement moves: the reservation's amounts back out, the step's cost in. */
interface Target {
  teamId: string;
  runId: string;
  agentId: string;
  policyId: string;
  hourStart: Date | null;
  releasedMicros: number;
  releasedTokens: number;
}

/** Refused inside the transaction: throwing rolls back whatever was reserved before. */
class Refused extends Error {
  constructor(readonly where: 'run' | 'hour') {
    super(`refused on the ${where}`);
  }
}

export function hourStartOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / HOUR_MS) * HOUR_MS);
}

const whole = (n: number) => (Number.isFinite(n) && n > 0 ? Math.round(n) : 0);
const usd = (micros: number) => `$${usdOf(micros).toFixed(6)}`;

export function totalOf(u: TokenUsage): number {
  return u.input + u.output + u.cacheRead + u.cacheCreation;
}

/**
 * Budgets that hold under concurrency: reserve the most a call can cost
 * before it goes out, settle to what it really cost, and never let a
 * reservation vanish uncharged (DESIGN.md principle 7).
 */
export class BudgetSystem {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly events: EventsService,
    /** Told after commit about runs whose state changed (the resolver's cache listens). */
    private readonly onRunChanged: (run: repo.RunRow) => void,
  ) {}

  /**
   * Admits a call against the run's hard limits and the hour's cap, or says
   * why not. Without an hourly cap this is one statement (budget-repo
   * reserveOnRun). With one it is two statements in one transaction — the run
   * row, then the hour row, the same lock order as settle and release — and a
   * refusal by the hour throws, rolling back the run's part: nothing is left
   * reserved. Both rows stay locked until commit, so concurrent reservers see
   * each other's amounts and never jointly pass a limit.
   */
  async reserve(input: ReserveInput): Promise<ReserveResult> {
    const now = input.now ?? this.clock.now();
    // Reservations never leave the server (proxy ↔ runs), so they need no public prefix.
    const reservationId = `res_${ulid()}`;
    const statement: budgetRepo.ReserveStatement = {
      reservationId,
      teamId: input.teamId,
      runId: input.runId,
      agentId: input.agentId,
      policyId: input.policyId,
      hourStart: hourStartOf(now),
      amountMicros: whole(input.amountMicros),
      tokens: whole(input.tokens),
      model: input.model ?? null,
      at: now,
      countHour: true,
    };
    const cap = input.maxCostPerHourMicros;
    let reserved: budgetRepo.ReservedRun | undefined;
    if (cap === null || cap === undefined) {
      reserved = await budgetRepo.reserveOnRun(this.db, statement);
      if (!reserved) return this.refusal(input, 'run', statement.amountMicros);
    } else {
      try {
        reserved = await this.db.transaction(async (tx) => {
          const onRun = await budgetRepo.reserveOnRun(tx, { ...statement, countHour: false });
          if (!onRun) throw new Refused('run');
          const onHour = await budgetRepo.reserveOnHour(tx, {
            teamId: input.teamId,
            agentId: input.agentId,
            policyId: input.policyId,
            hourStart: statement.hourStart,
            amountMicros: statement.amountMicros,
            capMicros: whole(cap),
          });
          if (!onHour) throw new Refused('hour');
          return onRun;
        });
      } catch (err) {
        if (err instanceof Refused) return this.refusal(input, err.where, statement.amountMicros, cap);
        throw err;
      }
    }
    return {
      ok: true,
      reservationId,
      remainingMicros:
        reserved.hardLimitMicros === null
          ? null
          : reserved.hardLimitMicros - reserved.costMicros - reserved.reservedMicros,
      remainingTokens:
        reserved.hardLimitTokens === null
          ? null
          : reserved.hardLimitTokens - reserved.usedTokens - reserved.reservedTokens,
    };
  }

  private async refusal(
    input: ReserveInput,
    where: 'run' | 'hour',
    amountMicros: number,
    capMicros?: number,
  ): Promise<ReserveResult> {
    if (where === 'hour') {
      return {
        ok: false,
        reason: 'hourly_budget_exceeded',
        message: `the policy's hourly cap of ${usd(whole(capMicros ?? 0))} for this agent would be exceeded by this call (up to ${usd(amountMicros)})`,
      };
    }
    const state = await budgetRepo.runBudgetState(this.db, input.teamId, input.runId, input.agentId);
    if (!state) return { ok: false, reason: 'run_not_running', message: `run ${input.runId} was not found` };
    if (state.status === 'budget_exceeded') {
      return { ok: false, reason: 'budget_exceeded', message: `run ${input.runId} reached its budget` };
    }
    if (state.status !== 'running') {
      return { ok: false, reason: 'run_not_running', message: `run ${input.runId} is ${state.status}` };
    }
    if (state.hardLimitMicros !== null) {
      const left = state.hardLimitMicros - state.costMicros - state.reservedMicros;
      if (amountMicros > left) {
        return {
          ok: false,
          reason: 'budget_exceeded',
          message: `the run's hard limit of ${usd(state.hardLimitMicros)} leaves ${usd(Math.max(0, left))} (spent ${usd(state.costMicros)}, in flight ${usd(state.reservedMicros)}); this call may cost up to ${usd(amountMicros)}`,
        };
      }
    }
    return {
      ok: false,
      reason: 'budget_exceeded',
      message: `the run's token limit of ${state.hardLimitTokens} would be exceeded (used ${state.usedTokens}, in flight ${state.reservedTokens}; this call may use up to ${whole(input.tokens)})`,
    };
  }

  /** Gives the reservation back (the call never reached a provider). False when it was already gone. */
  async release(reservationId: string): Promise<boolean> {
    const now = this.clock.now();
    return this.db.transaction(async (tx) => {
      const r = await budgetRepo.takeReservation(tx, reservationId);
      if (!r) return false;
      await budgetRepo.releaseOnRun(tx, r, now);
      await budgetRepo.settleHour(tx, r, r.amountMicros, 0);
      return true;
    });
  }

  /**
   * Charges a finished call, in one transaction: takes the reservation, moves
   * reserved → spent on the run and the hour, adds the tokens and the step
   * (and its ledger entry), and ends the run if a hard limit is now reached.
   * Safe to retry: a step already written is not written twice.
   */
  async settle(reservationId: string, record: StepRecord): Promise<SettleResult> {
    const changed: repo.RunRow[] = [];
    const result = await this.db.transaction(async (tx): Promise<SettleResult> => {
      const r = await budgetRepo.takeReservation(tx, reservationId);
      if (!r) {
        if (record.stepId !== undefined && (await repo.stepExists(tx, record.stepId)))
          return { kind: 'duplicate' };
        return { kind: 'missing' };
      }
      const out = await this.apply(
        tx,
        {
          teamId: r.teamId,
          runId: r.runId,
          agentId: r.agentId,
          policyId: r.policyId,
          hourStart: r.hourStart,
          releasedMicros: r.amountMicros,
          releasedTokens: r.tokens,
        },
        record,
        changed,
      );
      return { kind: 'settled', ...out };
    });
    for (const run of changed) this.onRunChanged(run);
    return result;
  }

  /**
   * Charges reservations older than `before` in full, each as an error step
   * with a ledger entry: a call whose settlement never came (a crash, a lost
   * write) may have cost up to its reservation, so it is charged, not dropped.
   */
  async chargeStaleReservations(before: Date, now: Date = this.clock.now(), batch = 500): Promise<number> {
    let charged = 0;
    for (;;) {
      const ids = await budgetRepo.staleReservationIds(this.db, before, batch);
      for (const id of ids) {
        const changed: repo.RunRow[] = [];
        const done = await this.db.transaction(async (tx) => {
          const r = await budgetRepo.takeReservation(tx, id);
          if (!r) return false;
          await this.apply(
            tx,
            {
              teamId: r.teamId,
              runId: r.runId,
              agentId: r.agentId,
              policyId: r.policyId,
              hourStart: r.hourStart,
              releasedMicros: r.amountMicros,
              releasedTokens: r.tokens,
            },
            {
              type: 'llm_call',
              status: 'error',
              provider: null,
              model: r.model,
              usage: NO_TOKENS,
              costMicros: r.amountMicros,
              errorKind: 'unsettled_reservation',
              errorMessage: `the call admitted at ${r.createdAt.toISOString()} was never settled (the server stopped or lost it); charged its full reservation`,
              ledger: true,
              at: now,
            },
            changed,
          );
          return true;
        });
        if (done) charged++;
        for (const run of changed) this.onRunChanged(run);
      }
      if (ids.length < batch) return charged;
    }
  }

  /** The settlement proper, inside the caller's transaction. Runs it ends go to `changed`. */
  async apply(
    tx: DbOrTx,
    t: Target,
    record: StepRecord,
    changed: repo.RunRow[],
  ): Promise<{ run?: repo.RunRow; step?: repo.StepRow }> {
    const at = record.at ?? this.clock.now();
    const cost = whole(record.costMicros);
    const u: TokenUsage = {
      input: whole(record.usage.input),
      output: whole(record.usage.output),
      cacheRead: whole(record.usage.cacheRead),
      cacheCreation: whole(record.usage.cacheCreation),
    };
    // step_count counts work done: blocked requests and failover bookkeeping rows are not steps of work.
    const isWork =
      record.type !== 'failover_transition' &&
      record.status !== 'budget_blocked' &&
      record.status !== 'policy_blocked';
    const [run] = await tx
      .update(runs)
      .set({
        reservedMicros: sql`greatest(${runs.reservedMicros} - ${t.releasedMicros}::bigint, 0)`,
        reservedTokens: sql`greatest(${runs.reservedTokens} - ${t.releasedTokens}::bigint, 0)`,
        costMicros: sql`${runs.costMicros} + ${cost}::bigint`,
        inputTokens: sql`${runs.inputTokens} + ${u.input}::bigint`,
        outputTokens: sql`${runs.outputTokens} + ${u.output}::bigint`,
        cacheReadTokens: sql`${runs.cacheReadTokens} + ${u.cacheRead}::bigint`,
        cacheCreationTokens: sql`${runs.cacheCreationTokens} + ${u.cacheCreation}::bigint`,
        stepCount: sql`${runs.stepCount} + ${isWork ? 1 : 0}`,
        lastStepAt: sql`greatest(coalesce(${runs.lastStepAt}, ${at.toISOString()}::timestamptz), ${at.toISOString()}::timestamptz)`,
        updatedAt: at,
      })
      .where(eq(runs.id, t.runId))
      .returning();
    if (!run) return {};
    if (t.hourStart !== null) {
      await budgetRepo.settleHour(
        tx,
        { teamId: t.teamId, agentId: t.agentId, policyId: t.policyId, hourStart: t.hourStart },
        t.releasedMicros,
        cost,
      );
    }
    const stepId = record.stepId ?? newId('stp');
    const step = await repo.insertStep(tx, {
      id: stepId,
      teamId: t.teamId,
      runId: t.runId,
      agentId: t.agentId,
      type: record.type,
      status: record.status,
      name: record.name ?? null,
      provider: record.provider,
      model: record.model,
      providerKeyId: record.providerKeyId ?? null,
      streaming: record.streaming ?? false,
      request: record.request ?? null,
      response: record.response ?? null,
      inputTokens: u.input,
      outputTokens: u.output,
      cacheReadTokens: u.cacheRead,
      cacheCreationTokens: u.cacheCreation,
      costMicros: cost,
      latencyMs: record.latencyMs ?? null,
      routedFrom: record.routedFrom ?? null,
      failoverAttempts: record.failoverAttempts ?? 0,
      errorKind: record.errorKind ?? null,
      errorMessage: record.errorMessage ?? null,
      createdAt: at,
    });
    if (record.ledger ?? (cost > 0 || totalOf(u) > 0)) {
      await repo.insertLedgerEntry(tx, {
        id: newId('led'),
        teamId: t.teamId,
        runId: t.runId,
        stepId,
        agentId: t.agentId,
        provider: record.provider,
        model: record.model,
        providerKeyId: record.providerKeyId ?? null,
        inputTokens: u.input,
        outputTokens: u.output,
        cacheReadTokens: u.cacheRead,
        cacheCreationTokens: u.cacheCreation,
        costMicros: cost,
        createdAt: at,
      });
    }
    let current = run;
    // Most runs use one model: only a step with another model pays for the recount.
    if (isWork && record.model !== null && record.model !== current.primaryModel) {
      const primary = await repo.mostUsedModel(tx, t.runId);
      if (primary !== current.primaryModel) {
        current = (await repo.updateRun(tx, eq(runs.id, t.runId), { primaryModel: primary })) ?? current;
      }
    }
    current = await this.enforceLimits(tx, current, at, changed);
    changed.push(current);
    return { run: current, step: step ?? undefined };
  }

  /**
   * After a charge: alert thresholds flag the run once (run.alert_threshold);
   * a reached hard limit ends it as budget_exceeded (cost_limit / token_limit);
   * on_alert_threshold stop_and_alert ends it at the alert (alert_threshold_stop).
   */
  private async enforceLimits(
    tx: DbOrTx,
    run: repo.RunRow,
    at: Date,
    changed: repo.RunRow[],
  ): Promise<repo.RunRow> {
    let current = run;
    const used = run.inputTokens + run.outputTokens + run.cacheReadTokens + run.cacheCreationTokens;
    const costHit = run.hardLimitMicros !== null && run.costMicros >= run.hardLimitMicros;
    const tokenHit = run.hardLimitTokens !== null && used >= run.hardLimitTokens;
    const alertHit =
      (run.alertThresholdMicros !== null && run.costMicros >= run.alertThresholdMicros) ||
      (run.alertThresholdTokens !== null && used >= run.alertThresholdTokens);
    const budget = (run.policySnapshot.budget ?? {}) as { on_alert_threshold?: string };
    const action = budget.on_alert_threshold ?? 'continue_and_alert';
    let alertedNow = false;
    if (alertHit && !run.alertThresholdExceeded) {
      const flagged = await repo.updateRun(
        tx,
        sql`${runs.id} = ${run.id} and ${runs.alertThresholdExceeded} = false`,
        { alertThresholdExceeded: true, alertSentAt: at, updatedAt: at },
      );
      if (flagged) {
        alertedNow = true;
        current = flagged;
        await this.events.record(tx, {
          teamId: run.teamId,
          ...SYSTEM_ACTOR,
          subjectId: run.id,
          type: 'run.alert_threshold',
          data: {
            agent_id: run.agentId,
            cost_usd: usdOf(run.costMicros),
            alert_threshold_usd: run.alertThresholdMicros === null ? null : usdOf(run.alertThresholdMicros),
            tokens_used: used,
            alert_threshold_tokens: run.alertThresholdTokens,
            action,
          },
        });
      }
    }
    if (current.status !== 'running') return current;
    let endedReason: string | undefined;
    if (costHit) endedReason = 'cost_limit';
    else if (tokenHit) endedReason = 'token_limit';
    else if (alertedNow && action === 'stop_and_alert') endedReason = 'alert_threshold_stop';
    if (endedReason === undefined) return current;
    const [ended] = await endRuns(
      tx,
      this.events,
      repo.runIs(run.teamId, run.id),
      { status: 'budget_exceeded', endedReason, completionReason: null, fallbackOutcome: null, at },
      SYSTEM_ACTOR,
    );
    if (ended) changed.push(ended);
    return ended ?? current;
  }
}

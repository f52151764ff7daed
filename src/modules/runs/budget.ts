// One file over 400 lines: reserve, settle, release and the process's
// leases all read and change the same in-memory holdings of BudgetSystem;
// apart, each part would reach into the others' state.
import { HOUR_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context, Log, Timer } from '../../core/context.ts';
import { type AgentId, isId, type RunId, type StepId, type TeamId, ulid } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import * as budgetRepo from './budget-repo.ts';
import { type Account, available, LeaseBook } from './leases.ts';
import { NO_TOKENS, type StepOwner, type StepRecord, stepRowOf } from './recording.ts';
import * as repo from './repo.ts';
import { type Note, StepWriter, type TokenUsage, type WriterOptions } from './step-writer.ts';
import { usdOf } from './views.ts';

export type { StepOwner, StepRecord, StepStatus, StepType } from './recording.ts';
export type { TokenUsage } from './step-writer.ts';

export interface ReserveInput {
  teamId: TeamId;
  /** As the proxy has it; anything but a run id is refused as not found. */
  runId: RunId | string;
  /** The calling agent and its policy: the step's agent, the hour's cap. */
  agentId: AgentId | string;
  policyId: string;
  /**
   * The run's own agent and policy when they are not the caller's: a
   * sub-agent's call in its parent's task run, charged to that run's budget.
   */
  runOwner?: { agentId: AgentId | string; policyId: string };
  /** The most the call can cost, in micro-USD. */
  amountMicros: number;
  /** The most tokens it can use (input estimate + max output). */
  tokens: number;
  model?: string | null;
  /** The policy's max_cost_per_hour_usd in micro-USD, per agent+policy+clock hour; null = none. */
  maxCostPerHourMicros?: number | null;
  now?: Date;
}

export type ReserveRefusal =
  | 'budget_exceeded'
  | 'hourly_budget_exceeded'
  | 'insufficient_credits'
  | 'run_not_running';

export type ReserveResult =
  | { ok: true; reservationId: string; remainingMicros: number | null; remainingTokens: number | null }
  | { ok: false; reason: ReserveRefusal; message: string };

export interface SettleResult {
  /** `settled`: charged; `missing`: no such reservation (already settled or released). */
  kind: 'settled' | 'missing';
  run?: repo.RunRow;
  step?: repo.StepRow;
}

export interface BudgetOptions {
  /** A lease unused this long goes back to its run or hour. */
  leaseIdleMs: number;
  /**
   * How often idle leases are looked for: a lease goes back at most
   * leaseIdleMs + idleCheckEveryMs after its last call.
   */
  idleCheckEveryMs: number;
  /** How often this process marks its leases alive. */
  renewEveryMs: number;
  writer?: WriterOptions;
  /** Credits (the credits module): absent when PADDOCK_CREDITS is off. */
  credits?: CreditsPort;
}

/** A team's balance after a step batch consumed from it (micro-credits). */
export interface CreditBalance {
  teamId: TeamId;
  balance: number;
  lowThreshold: number | null;
  state: 'ok' | 'low' | 'exhausted';
}

/** What budgets need of credits: the rate, whether admission needs a balance, and who hears of balances. */
export interface CreditsPort {
  /** Admission must fit the team's credits (PADDOCK_CREDITS=enforce). */
  enforce: boolean;
  rate: { consumed(costMicros: number): number; reserve(maxCostMicros: number): number };
  /** After a batch commits: the balances it changed (low and exhausted events). */
  balancesChanged(accounts: CreditBalance[]): Promise<void>;
  /** Consumes micro-credits for a ledger entry written outside the step writer (an abandoned lease's charge). */
  consumeIn(
    tx: DbOrTx,
    use: { teamId: TeamId; runId: RunId; amount: number; reason: string; at: Date },
  ): Promise<void>;
}

/**
 * docs/gateway.md promises that leases nothing uses go back within two
 * seconds (a run holding a lease counts as active, and its money is not
 * available to other servers meanwhile): idle 1.75 s, looked for every
 * 250 ms. (It was idle 2 s looked for every 2 s: back after 2 to 4 s.)
 */
export const DEFAULT_BUDGET_OPTIONS: BudgetOptions = {
  leaseIdleMs: 1_750,
  idleCheckEveryMs: 250,
  renewEveryMs: 10 * SECOND_MS,
};

interface Reservation {
  run: Account;
  hour: Account | null;
  /** The team's credits (enforcement), with what was taken from them in micro-credits. */
  credits: Account | null;
  creditsReserved: number;
  hourStart: Date;
  amountMicros: number;
  tokens: number;
  teamId: TeamId;
  runId: RunId;
  agentId: string;
  /** The caller's policy (its hourly spend), when the run's is another agent's. */
  policyId?: string;
  /** When it was taken (performance.now()), for the age of the oldest in flight (metrics). */
  heldSinceMs: number;
}

export function hourStartOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / HOUR_MS) * HOUR_MS);
}

const whole = (n: number) => (Number.isFinite(n) && n > 0 ? Math.round(n) : 0);
const usd = (micros: number) => `$${usdOf(micros).toFixed(6)}`;

export function totalOf(u: TokenUsage): number {
  return u.input + u.output + u.cacheRead + u.cacheCreation;
}

/** Several reservers can keep taking what a lease just brought in; past this many rounds, refuse. */
const MAX_RESERVE_ROUNDS = 50;

/**
 * Budgets that hold under concurrency, at memory speed: a call reserves the
 * most it can cost against this process's lease on its run (and hour), which
 * the database granted atomically within the hard limits; it settles to what
 * it really cost, in memory, and the step and the charge are written in a
 * batch moments later. A lease is never more than the budget left, so no
 * number of processes and calls can spend past a limit by more than what
 * calls cost beyond their reservations. When the process dies, its leases are
 * charged in full (DESIGN.md principle 7: fail closed on money).
 */
export class BudgetSystem {
  readonly book: LeaseBook;
  readonly writer: StepWriter;
  private readonly reservations = new Map<string, Reservation>();
  private readonly options: BudgetOptions;
  private renewTimer: Timer | undefined;
  private idleTimer: Timer | undefined;
  /** Idle leases whose return failed: tried again with the next ones. */
  private readonly unreturned: Account[] = [];
  /** A background lease renewal or return still running (shutdown waits for it). */
  private background: Promise<void> | undefined;
  private readonly log: Log;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    /** For the events a batch sets off (limits reached), written in its transaction. */
    events: EventsService,
    /** Told after commit about runs whose state changed (the resolver's cache listens). */
    private readonly onRunChanged: (run: repo.RunProgress) => void,
    options: Partial<BudgetOptions> = {},
  ) {
    this.options = { ...DEFAULT_BUDGET_OPTIONS, ...options };
    this.log = ctx.log;
    this.book = new LeaseBook(db, ctx, `hld_${ulid()}`);
    this.writer = new StepWriter(
      db,
      ctx,
      events,
      (run) => this.runChanged(run),
      this.options.writer,
      this.options.credits,
    );
  }

  /** A run changed (a batch was written, a limit ended it, a sweep charged it): an ended run admits nothing more. */
  runChanged(run: repo.RunProgress): void {
    if (run.status !== 'running') this.book.close(run.id);
    this.onRunChanged(run);
  }

  get holder(): string {
    return this.book.holder;
  }

  /** Credits, when the server counts them. */
  get credits(): CreditsPort | undefined {
    return this.options.credits;
  }

  /**
   * Admits a call against the run's hard limits and the hour's cap, or says
   * why not. In memory while the leases hold enough; otherwise one statement
   * per account leases more (or learns there is no more).
   */
  async reserve(input: ReserveInput): Promise<ReserveResult> {
    const now = input.now ?? this.ctx.clock.now();
    const amount = whole(input.amountMicros);
    const tokens = whole(input.tokens);
    if (!isId(input.runId, 'run')) {
      return { ok: false, reason: 'run_not_running', message: `run ${input.runId} was not found` };
    }
    const ref = { teamId: input.teamId, agentId: input.agentId, policyId: input.policyId };
    // The run's account is its own agent's: a sub-agent's calls draw on their task run's budget.
    const runRef = input.runOwner ? { ...ref, ...input.runOwner } : ref;
    const run = this.book.runAccount(runRef, input.runId);
    if (run.runId !== input.runId || run.agentId !== runRef.agentId || run.teamId !== input.teamId) {
      return { ok: false, reason: 'run_not_running', message: `run ${input.runId} was not found` };
    }
    const hourStart = hourStartOf(now);
    const cap = input.maxCostPerHourMicros;
    const hour = cap === null || cap === undefined ? null : this.book.hourAccount(ref, hourStart, whole(cap));
    const credits = this.options.credits?.enforce ? this.book.creditsAccount(ref) : null;
    const creditsNeeded = credits ? this.options.credits!.rate.reserve(amount) : 0;
    for (let round = 0; round < MAX_RESERVE_ROUNDS; round++) {
      // ensure answers synchronously when the lease holds enough: only a lease statement is awaited.
      const runOk = this.book.ensure(run, amount, tokens);
      if (!(runOk instanceof Promise ? await runOk : runOk)) return this.refusal(input, run, 'run', amount);
      const hourOk = hour ? this.book.ensure(hour, amount, 0) : true;
      if (!(hourOk instanceof Promise ? await hourOk : hourOk))
        return this.refusal(input, run, 'hour', amount);
      const creditsOk = credits ? this.book.ensure(credits, creditsNeeded, 0) : true;
      if (!(creditsOk instanceof Promise ? await creditsOk : creditsOk))
        return this.creditRefusal(input, run, credits!, creditsNeeded);
      // Checked and taken in one synchronous step: no other call runs in between.
      const free = available(run);
      if (
        free.micros < amount ||
        free.tokens < tokens ||
        (hour && available(hour).micros < amount) ||
        (credits && available(credits).micros < creditsNeeded)
      )
        continue;
      this.book.take(run, amount, tokens);
      if (hour) this.book.take(hour, amount, 0);
      if (credits) this.book.take(credits, creditsNeeded, 0);
      const reservationId = `res_${ulid()}`;
      this.reservations.set(reservationId, {
        run,
        hour,
        credits,
        creditsReserved: creditsNeeded,
        hourStart,
        amountMicros: amount,
        tokens,
        teamId: input.teamId,
        runId: input.runId,
        agentId: input.agentId,
        ...(input.runOwner ? { policyId: input.policyId } : {}),
        heldSinceMs: performance.now(),
      });
      const remaining = this.book.remaining(run);
      return {
        ok: true,
        reservationId,
        remainingMicros: remaining.micros,
        remainingTokens: remaining.tokens,
      };
    }
    return this.refusal(input, run, 'run', amount);
  }

  private async creditRefusal(
    input: ReserveInput,
    run: Account,
    credits: Account,
    needed: number,
  ): Promise<ReserveResult> {
    this.book.dropIfEmpty(run);
    this.book.dropIfEmpty(credits);
    const state = await budgetRepo.creditsState(this.db, input.teamId);
    const credit = (micro: number) => (micro / 1_000_000).toFixed(6);
    return {
      ok: false,
      reason: 'insufficient_credits',
      message: `the team's credits do not cover this call: ${credit(Math.max(0, state.balance - state.held))} available (balance ${credit(state.balance)}, held for calls in flight ${credit(state.held)}); it may cost up to ${credit(needed)}`,
    };
  }

  private async refusal(
    input: ReserveInput,
    run: Account,
    where: 'run' | 'hour',
    amountMicros: number,
  ): Promise<ReserveResult> {
    this.book.dropIfEmpty(run);
    if (where === 'hour') {
      return {
        ok: false,
        reason: 'hourly_budget_exceeded',
        message: `the policy's hourly cap of ${usd(whole(input.maxCostPerHourMicros ?? 0))} for this agent would be exceeded by this call (up to ${usd(amountMicros)})`,
      };
    }
    const state = await budgetRepo.runBudgetState(this.db, input.teamId, run.runId!, run.agentId);
    if (!state) return { ok: false, reason: 'run_not_running', message: `run ${input.runId} was not found` };
    if (state.status === 'budget_exceeded') {
      run.closed = true;
      return { ok: false, reason: 'budget_exceeded', message: `run ${input.runId} reached its budget` };
    }
    if (state.status !== 'running') {
      run.closed = true;
      return { ok: false, reason: 'run_not_running', message: `run ${input.runId} is ${state.status}` };
    }
    if (state.hardLimitMicros !== null) {
      const left = state.hardLimitMicros - state.costMicros - state.reservedMicros + available(run).micros;
      if (amountMicros > left) {
        return {
          ok: false,
          reason: 'budget_exceeded',
          message: `the run's hard limit of ${usd(state.hardLimitMicros)} leaves ${usd(Math.max(0, left))} (spent ${usd(state.costMicros)}, in flight ${usd(Math.max(0, state.reservedMicros - available(run).micros))}); this call may cost up to ${usd(amountMicros)}`,
        };
      }
    }
    return {
      ok: false,
      reason: 'budget_exceeded',
      message: `the run's token limit of ${state.hardLimitTokens} would be exceeded (used ${state.usedTokens}, in flight ${state.reservedTokens}; this call may use up to ${whole(input.tokens)})`,
    };
  }

  /**
   * The reservations of calls in flight in this process: how many, the money
   * they hold, and how long the oldest has been held (a map keeps the order
   * they were taken in, so the oldest is the first).
   */
  outstanding(): { count: number; reservedMicros: number; oldestAgeMs: number } {
    let reservedMicros = 0;
    for (const r of this.reservations.values()) reservedMicros += r.amountMicros;
    const oldest = this.reservations.values().next().value;
    return {
      count: this.reservations.size,
      reservedMicros,
      oldestAgeMs: oldest ? performance.now() - oldest.heldSinceMs : 0,
    };
  }

  /** Gives the reservation back (the call never reached a provider). False when it was already gone. */
  async release(reservationId: string): Promise<boolean> {
    const r = this.reservations.get(reservationId);
    if (!r) return false;
    this.reservations.delete(reservationId);
    this.book.finish(r.run, r.amountMicros, r.tokens, 0, 0);
    if (r.hour) this.book.finish(r.hour, r.amountMicros, 0, 0, 0);
    if (r.credits) this.book.finish(r.credits, r.creditsReserved, 0, 0, 0);
    return true;
  }

  /**
   * Charges a finished call: at once in memory (the money it did not use is
   * free for the next call), and into the database with the next batch.
   * Returns at once; `settle` waits for the write.
   */
  settleLater(reservationId: string, record: StepRecord): boolean {
    return this.charge(reservationId, record) !== undefined;
  }

  /** Charges a finished call and waits until its step is written. */
  async settle(reservationId: string, record: StepRecord): Promise<SettleResult> {
    let resolve!: (stepId: StepId | undefined) => void;
    const written = new Promise<StepId | undefined>((r) => {
      resolve = r;
    });
    const teamId = this.reservations.get(reservationId)?.teamId;
    if (teamId === undefined || !this.charge(reservationId, record, resolve)) return { kind: 'missing' };
    await this.writer.flush();
    const stepId = await written;
    const step = stepId === undefined ? undefined : await repo.findStep(this.db, teamId, stepId);
    if (!step) return { kind: 'missing' };
    const run = await repo.findRun(this.db, step.teamId, step.runId);
    return { kind: 'settled', step, ...(run ? { run } : {}) };
  }

  private charge(
    reservationId: string,
    record: StepRecord,
    done?: (stepId: StepId | undefined) => void,
  ): true | undefined {
    const r = this.reservations.get(reservationId);
    if (!r) return undefined;
    this.reservations.delete(reservationId);
    const cost = whole(record.costMicros);
    const u: TokenUsage = {
      input: whole(record.usage.input),
      output: whole(record.usage.output),
      cacheRead: whole(record.usage.cacheRead),
      cacheCreation: whole(record.usage.cacheCreation),
    };
    this.book.finish(r.run, r.amountMicros, r.tokens, cost, totalOf(u));
    if (r.hour) this.book.finish(r.hour, r.amountMicros, 0, cost, 0);
    const ledger = record.ledger ?? (cost > 0 || totalOf(u) > 0);
    // What the ledger entry consumes: a call's own reservation pays it first, then the lease.
    const creditCost = ledger && this.options.credits ? this.options.credits.rate.consumed(cost) : 0;
    if (r.credits) this.book.finish(r.credits, r.creditsReserved, 0, creditCost, 0);
    // step_count counts work done: blocked requests, failover bookkeeping, sandbox time and token
    // counts are not steps of work.
    const work =
      record.type !== 'failover_transition' &&
      record.type !== 'sandbox' &&
      record.type !== 'count_tokens' &&
      record.status !== 'budget_blocked' &&
      record.status !== 'policy_blocked';
    this.writer.push({
      kind: 'charge',
      run: r.run,
      hour: r.hour,
      hourStart: r.hourStart,
      credits: r.credits,
      creditCost,
      step: stepRowOf(r, record, u, cost, record.at ?? this.ctx.clock.now()),
      ...(r.policyId ? { policyId: r.policyId } : {}),
      ledger,
      work,
      ...(record.sandbox ? { sandbox: record.sandbox } : {}),
      ...(done ? { done } : {}),
    });
    return true;
  }

  /**
   * Charges a cost already incurred (a capsule's running time) and waits for
   * its write. It is never refused — the money is spent — whatever the run's
   * limits or status. It settles like a call that reserved nothing: the
   * writer pays it from this process's lease on the run (and hour) first, so
   * money already held for other calls is not counted twice, and the rest
   * adds to the run's cost; the limit check after the write then ends a run
   * that reached its hard limit (budget_exceeded, cost_limit), as a model
   * call's charge would, and the next call is refused.
   */
  chargeIncurred(
    owner: StepOwner & { policyId: string },
    record: StepRecord,
    maxCostPerHourMicros: number | null,
  ): Promise<SettleResult> {
    const ref = { teamId: owner.teamId, agentId: owner.agentId, policyId: owner.policyId };
    const run = this.book.runAccount(ref, owner.runId);
    const hourStart = hourStartOf(this.ctx.clock.now());
    const hour =
      maxCostPerHourMicros === null
        ? null
        : this.book.hourAccount(ref, hourStart, whole(maxCostPerHourMicros));
    const credits = this.options.credits?.enforce ? this.book.creditsAccount(ref) : null;
    // A reservation of nothing: take() and charge()'s finish() keep the account's in-flight count and unwritten spend true.
    this.book.take(run, 0, 0);
    if (hour) this.book.take(hour, 0, 0);
    if (credits) this.book.take(credits, 0, 0);
    const reservationId = `res_${ulid()}`;
    this.reservations.set(reservationId, {
      run,
      hour,
      credits,
      creditsReserved: 0,
      hourStart,
      amountMicros: 0,
      tokens: 0,
      teamId: owner.teamId,
      runId: owner.runId,
      agentId: owner.agentId,
      heldSinceMs: performance.now(),
    });
    return this.settle(reservationId, record);
  }

  /** A step that moves no money (blocked request, failover bookkeeping), written with the next batch. */
  note(r: StepOwner, record: StepRecord, flag: Note['flag']): void {
    this.writer.push({
      kind: 'note',
      step: stepRowOf(r, record, NO_TOKENS, 0, record.at ?? this.ctx.clock.now()),
      flag,
    });
  }

  /** The run ended in this process: admit nothing more on it. */
  runEnded(runId: RunId): void {
    this.book.close(runId);
  }

  /**
   * Writes every queued step, then gives back the leases nothing uses (tests,
   * shutdown); lease statements still running (a top-up taken ahead) finish
   * first, so their leases go back too.
   */
  async flush(): Promise<void> {
    await this.book.settled();
    await this.writer.flush();
    await this.returnIdleLeases(0);
  }

  /** Every step queued so far written (lease statements running first: a top-up's release is in its batch). */
  async flushSteps(): Promise<void> {
    await this.book.settled();
    await this.writer.flush();
  }

  /**
   * Before a run is ended by its owner (a task): every step written, the
   * run's lease closed and given back; other runs' leases stay where they are.
   */
  async flushRun(runId: RunId): Promise<void> {
    await this.book.settled();
    await this.writer.flush();
    this.book.close(runId);
    // Closed accounts only (an idle time no lease reaches): this run's, and any other already ended.
    this.unreturned.push(...this.book.takeIdle(Number.POSITIVE_INFINITY));
    await this.returnIdleLeases(Number.POSITIVE_INFINITY);
  }

  /** Resolves once no lease statement is running (a top-up taken ahead of a call has landed). */
  leasesSettled(): Promise<void> {
    return this.book.settled();
  }

  /** Gives back leases idle for `idleMs`: their headroom leaves the runs' and hours' reserved totals. */
  async returnIdleLeases(idleMs = this.options.leaseIdleMs): Promise<void> {
    // Leases a failed return left behind go first: they have left the book, and
    // the renewals would keep their money held until a restart.
    const idle = [...this.unreturned.splice(0), ...this.book.takeIdle(idleMs)];
    if (idle.length === 0) return;
    try {
      await this.db.transaction(async (tx) => {
        for (const a of idle) await budgetRepo.dropLease(tx, a.leaseId);
      });
    } catch (err) {
      this.unreturned.push(...idle);
      throw err;
    }
  }

  /** Marks this process's leases alive, and notices any a sweeper took from it. */
  async renew(): Promise<void> {
    const renewed = await budgetRepo.renewLeases(this.db, this.holder, this.ctx.clock.now());
    const lost = this.book.lost(new Set(renewed));
    if (lost.length > 0) {
      this.log.warn(
        { leases: lost.map((a) => a.leaseId) },
        'budget leases of this process were charged as abandoned (it stalled past the renewal deadline)',
      );
    }
  }

  /** Starts renewing this process's leases and returning idle ones. */
  start(): void {
    this.renewTimer = this.ctx.timers.every(this.options.renewEveryMs, () =>
      this.inBackground(this.renew(), 'could not renew budget leases'),
    );
    this.idleTimer = this.ctx.timers.every(this.options.idleCheckEveryMs, () =>
      this.inBackground(this.returnIdleLeases(), 'could not return idle budget leases'),
    );
  }

  /** Runs timer work so that its failure is logged (with this process's lease holder) and shutdown can wait for it. */
  private inBackground(work: Promise<void>, failure: string): void {
    const logged = work.catch((err: unknown) => this.log.warn({ err, holder: this.holder }, failure));
    const previous = this.background;
    const all: Promise<void> = Promise.all([previous, logged]).then(() => {
      if (this.background === all) this.background = undefined;
    });
    this.background = all;
  }

  /** Resolves once no lease renewal or return started by a timer is still running. */
  async backgroundSettled(): Promise<void> {
    while (this.background) await this.background;
  }

  /** Writes what is queued and gives every unused lease back; leases with calls in flight stay (charged later). */
  async shutdown(): Promise<void> {
    this.renewTimer?.cancel();
    this.idleTimer?.cancel();
    this.renewTimer = undefined;
    this.idleTimer = undefined;
    await this.backgroundSettled();
    await this.flush();
  }
}

import type { Context } from '../../core/context.ts';
import { type RunId, type TeamId, ulid } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import * as budgetRepo from './budget-repo.ts';

// Budget accounts held by this process. A run (and, under a cap, an
// agent+policy+hour) is an account; the process holds a lease on it — a
// share of its remaining budget taken in one atomic statement — and admits
// calls against that share in memory, so a call costs no database round trip
// unless its account runs short. JavaScript runs one thing at a time, so the
// check-and-take below cannot interleave with another call's.

export interface Account {
  readonly key: string;
  /** credits: the team's credit balance, in micro-credits (enforcement only). */
  readonly scope: 'run' | 'hour' | 'credits';
  readonly teamId: TeamId;
  readonly agentId: string;
  readonly policyId: string;
  readonly runId: RunId | null;
  readonly hourStart: Date | null;
  /** The hour's cap, in micro-USD (hour accounts). */
  capMicros: number | null;
  /** The current lease row; a released lease gets a fresh id, so a late write cannot touch its successor. */
  leaseId: string;
  /** What the lease holds in the database, as this process last wrote it. */
  heldMicros: number;
  heldTokens: number;
  /** Taken from the lease: calls in flight plus spend not written yet. */
  usedMicros: number;
  usedTokens: number;
  inFlight: number;
  /** One lease statement at a time per account; callers that need more wait for it. */
  busy: Promise<unknown> | null;
  /** Calls waiting for that statement: a burst sizes the next lease. */
  waiting: number;
  lastActivityMs: number;
  /** Admissions this second and the last, to size the next lease. */
  second: number;
  admittedThisSecond: number;
  admittedLastSecond: number;
  /** The run no longer takes calls (it ended): nothing more is admitted. */
  closed: boolean;
  /** The last lease got less than it asked for (a limit is near): do not lease ahead. */
  capped: boolean;
  /** Run accounts: what the last lease statement said of the run. */
  hardLimitMicros: number | null;
  hardLimitTokens: number | null;
  /** Spent, plus held by other leases: the part of the budget this lease cannot use. */
  othersMicros: number;
  othersTokens: number;
}

export type AccountRef = Pick<Account, 'teamId' | 'agentId' | 'policyId'>;

/** A lease covers about this much of an account's recent traffic, within these bounds (× the call's amount). */
const LEASE_SECONDS = 1;
const MIN_CALLS_PER_LEASE = 2;
const MAX_CALLS_PER_LEASE = 256;
/** Lease ahead when fewer than this many calls of the last size fit, or less than this share of traffic. */
const LEASE_AHEAD_CALLS = 4;
const LEASE_AHEAD_SECONDS = 0.4;

export function available(a: Account): { micros: number; tokens: number } {
  return { micros: a.heldMicros - a.usedMicros, tokens: a.heldTokens - a.usedTokens };
}

export class LeaseBook {
  readonly accounts = new Map<string, Account>();

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    /** This process: its leases are renewed while it lives. */
    readonly holder: string,
  ) {}

  private nowMs(): number {
    return this.ctx.clock.now().getTime();
  }

  runAccount(ref: AccountRef, runId: RunId): Account {
    return this.account(`run:${runId}`, 'run', ref, runId, null, null);
  }

  hourAccount(ref: AccountRef, hourStart: Date, capMicros: number): Account {
    const a = this.account(
      `hour:${ref.agentId}:${ref.policyId}:${hourStart.getTime()}`,
      'hour',
      ref,
      null,
      hourStart,
      capMicros,
    );
    a.capMicros = capMicros;
    return a;
  }

  /** The team's credits (amounts in micro-credits); its agent and policy are the first caller's, for the lease row. */
  creditsAccount(ref: AccountRef): Account {
    return this.account(`credits:${ref.teamId}`, 'credits', ref, null, null, null);
  }

  private account(
    key: string,
    scope: Account['scope'],
    ref: AccountRef,
    runId: RunId | null,
    hourStart: Date | null,
    capMicros: number | null,
  ): Account {
    let a = this.accounts.get(key);
    if (!a) {
      a = {
        key,
        scope,
        teamId: ref.teamId,
        agentId: ref.agentId,
        policyId: ref.policyId,
        runId,
        hourStart,
        capMicros,
        leaseId: `lse_${ulid()}`,
        heldMicros: 0,
        heldTokens: 0,
        usedMicros: 0,
        usedTokens: 0,
        inFlight: 0,
        busy: null,
        waiting: 0,
        lastActivityMs: this.nowMs(),
        second: 0,
        admittedThisSecond: 0,
        admittedLastSecond: 0,
        closed: false,
        capped: false,
        hardLimitMicros: null,
        hardLimitTokens: null,
        othersMicros: 0,
        othersTokens: 0,
      };
      this.accounts.set(key, a);
    }
    return a;
  }

  /**
   * Makes the account hold at least `micros`/`tokens` more than it uses,
   * leasing more when short. False when the budget cannot give that much.
   * Answers synchronously when the lease already holds enough (nearly every
   * call), so the caller awaits only a real wait.
   */
  ensure(a: Account, micros: number, tokens: number): boolean | Promise<boolean> {
    if (a.closed) return false;
    const free = available(a);
    if (free.micros >= micros && free.tokens >= tokens) return true;
    return this.ensureSlowly(a, micros, tokens);
  }

  private async ensureSlowly(a: Account, micros: number, tokens: number): Promise<boolean> {
    for (;;) {
      if (a.closed) return false;
      const free = available(a);
      if (free.micros >= micros && free.tokens >= tokens) return true;
      if (a.busy) {
        a.waiting++;
        try {
          await a.busy.catch(() => undefined);
        } finally {
          a.waiting--;
        }
        continue;
      }
      const needMicros = Math.max(0, micros - free.micros);
      const needTokens = Math.max(0, tokens - free.tokens);
      const calls = this.callsPerLease(a);
      const granted = await this.leaseMore(a, needMicros, needTokens, micros * calls, tokens * calls);
      if (!granted) return false;
    }
  }

  /** Leases ahead, off the call's path: anything up to the wanted amount is welcome. */
  private topUp(a: Account, micros: number, tokens: number): void {
    const calls = this.callsPerLease(a);
    const needMicros = micros > 0 ? 1 : 0;
    const needTokens = micros === 0 && tokens > 0 ? 1 : 0;
    // Nothing waits for it: a failure is logged, and the next call that runs short leases on its own path.
    void this.leaseMore(a, needMicros, needTokens, micros * calls, tokens * calls).catch((err: unknown) =>
      this.ctx.log.warn(
        { err, lease_id: a.leaseId, scope: a.scope, run_id: a.runId, agent_id: a.agentId },
        'leasing budget ahead failed',
      ),
    );
  }

  /** Calls' worth left at which to lease ahead: enough to cover the statement's round trip at the current rate. */
  private aheadCalls(a: Account): number {
    return Math.max(LEASE_AHEAD_CALLS, Math.ceil(this.recentRate(a) * LEASE_AHEAD_SECONDS));
  }

  private callsPerLease(a: Account): number {
    // The recent rate, or the burst waiting right now (twice over), whichever asks more.
    const calls = Math.max(Math.round(this.recentRate(a) * LEASE_SECONDS), 2 * a.waiting);
    return Math.min(MAX_CALLS_PER_LEASE, Math.max(MIN_CALLS_PER_LEASE, calls));
  }

  private async leaseMore(
    a: Account,
    needMicros: number,
    needTokens: number,
    wantMicros: number,
    wantTokens: number,
  ): Promise<boolean> {
    const request: budgetRepo.LeaseRequest = {
      leaseId: a.leaseId,
      holder: this.holder,
      teamId: a.teamId,
      agentId: a.agentId,
      policyId: a.policyId,
      needMicros,
      needTokens,
      wantMicros: Math.max(needMicros, wantMicros),
      wantTokens: Math.max(needTokens, wantTokens),
      at: new Date(this.nowMs()),
    };
    const leased = this.lease(a, request);
    a.busy = leased;
    try {
      return await leased;
    } finally {
      a.busy = null;
    }
  }

  private async lease(a: Account, request: budgetRepo.LeaseRequest): Promise<boolean> {
    if (a.scope === 'run') {
      const grant = await budgetRepo.leaseOnRun(this.db, a.runId!, request);
      a.capped =
        !grant || grant.grantedMicros < request.wantMicros || grant.grantedTokens < request.wantTokens;
      if (!grant) return false;
      a.heldMicros += grant.grantedMicros;
      a.heldTokens += grant.grantedTokens;
      a.hardLimitMicros = grant.hardLimitMicros;
      a.hardLimitTokens = grant.hardLimitTokens;
      a.othersMicros = grant.costMicros + grant.reservedMicros - a.heldMicros;
      a.othersTokens = grant.usedTokens + grant.reservedTokens - a.heldTokens;
      return true;
    }
    const granted =
      a.scope === 'credits'
        ? await budgetRepo.leaseOnCredits(this.db, request)
        : await budgetRepo.leaseOnHour(this.db, a.hourStart!, a.capMicros ?? 0, request);
    a.capped = granted === undefined || granted < request.wantMicros;
    if (granted === undefined) return false;
    a.heldMicros += granted;
    // Hours and credits cap money only: their token side never runs short.
    a.heldTokens = Number.MAX_SAFE_INTEGER;
    return true;
  }

  take(a: Account, micros: number, tokens: number): void {
    a.usedMicros += micros;
    a.usedTokens += tokens;
    a.inFlight++;
    const nowMs = this.nowMs();
    a.lastActivityMs = nowMs;
    const second = Math.floor(nowMs / 1000);
    if (second !== a.second) {
      a.admittedLastSecond = second === a.second + 1 ? a.admittedThisSecond : 0;
      a.admittedThisSecond = 0;
      a.second = second;
    }
    a.admittedThisSecond++;
    // Lease ahead, off the call's path, when less than a few calls' worth is left: the next
    // calls then find their money here instead of waiting for the database.
    const free = available(a);
    if (
      !a.busy &&
      !a.closed &&
      !a.capped &&
      (free.micros < micros * this.aheadCalls(a) || free.tokens < tokens * this.aheadCalls(a))
    ) {
      this.topUp(a, micros, tokens);
    }
  }

  /** A call is over: its reservation leaves the account and what it cost stays until written. */
  finish(
    a: Account,
    reservedMicros: number,
    reservedTokens: number,
    costMicros: number,
    tokens: number,
  ): void {
    a.usedMicros += costMicros - reservedMicros;
    a.usedTokens += tokens - reservedTokens;
    a.inFlight--;
    a.lastActivityMs = this.nowMs();
  }

  private recentRate(a: Account): number {
    const second = Math.floor(this.nowMs() / 1000);
    if (second === a.second) return Math.max(a.admittedThisSecond, a.admittedLastSecond);
    return second === a.second + 1 ? a.admittedThisSecond : 0;
  }

  /** The remaining budget of a run as this process sees it (for the budget-remaining header). */
  remaining(a: Account): { micros: number | null; tokens: number | null } {
    return {
      micros: a.hardLimitMicros === null ? null : a.hardLimitMicros - a.othersMicros - a.usedMicros,
      tokens: a.hardLimitTokens === null ? null : a.hardLimitTokens - a.othersTokens - a.usedTokens,
    };
  }

  /** An account that never got a lease leaves the book (a refused call must not pin it). */
  dropIfEmpty(a: Account): void {
    if (
      a.heldMicros === 0 &&
      a.heldTokens === 0 &&
      a.usedMicros === 0 &&
      a.usedTokens === 0 &&
      a.inFlight === 0 &&
      !a.busy
    )
      this.accounts.delete(a.key);
  }

  /**
   * Leases this process no longer has (a sweeper took them for abandoned: the
   * process stalled past the renewal deadline). Their accounts stop admitting;
   * the next call leases afresh. What they still had to write is written and
   * charged again — fail closed on money.
   */
  lost(leaseIds: ReadonlySet<string>): Account[] {
    const lost: Account[] = [];
    for (const a of this.accounts.values()) {
      if (a.heldMicros === 0 && a.heldTokens === 0) continue;
      if (leaseIds.has(a.leaseId)) continue;
      a.heldMicros = 0;
      a.heldTokens = a.scope === 'run' ? 0 : Number.MAX_SAFE_INTEGER;
      a.closed = true;
      this.accounts.delete(a.key);
      lost.push(a);
    }
    return lost;
  }

  /** Resolves once no account has a lease statement running (one started meanwhile is waited for too). */
  async settled(): Promise<void> {
    for (;;) {
      const running = [...this.accounts.values()].flatMap((a) => (a.busy ? [a.busy] : []));
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  /**
   * Accounts with nothing in flight and nothing unwritten, idle for `idleMs`
   * (or closed): their leases can go back. They leave the book now, so a new
   * call starts a new lease rather than using one being returned.
   */
  takeIdle(idleMs: number): Account[] {
    const nowMs = this.nowMs();
    const idle: Account[] = [];
    for (const a of this.accounts.values()) {
      if (a.busy || a.inFlight > 0 || a.usedMicros !== 0 || a.usedTokens !== 0) continue;
      if (!a.closed && nowMs - a.lastActivityMs < idleMs) continue;
      this.accounts.delete(a.key);
      idle.push(a);
    }
    return idle;
  }

  /** The run ended: admit nothing more on it (what is in flight still settles). */
  close(runId: RunId): void {
    const a = this.accounts.get(`run:${runId}`);
    if (a) a.closed = true;
  }
}

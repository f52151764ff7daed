// One file over 400 lines: batching, the retry, the check for a batch
// whose commit was lost and what runs after a commit are one write path.
import type { Context, Log, Timer } from '../../core/context.ts';
import { newId, type RunId, type StepId, type TeamId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { CreditsPort } from './budget.ts';
import type { Account } from './leases.ts';
import { enforceLimits } from './limits.ts';
import type { SandboxFacts } from './recording.ts';
import * as repo from './repo.ts';
import {
  type CreditTotals,
  type CreditUse,
  type HourTotals,
  type LeaseRelease,
  type LedgerInsert,
  type RunProgressRow,
  type RunTotals,
  readRunProgress,
  type StepInsert,
  writeStepBatch,
} from './step-batch-repo.ts';
import { isTransientDbError } from './transient.ts';

// Write-behind for steps and charges: calls are answered first, and what
// they did is written in batches — one transaction for everything queued in
// the last few milliseconds (multi-row inserts, one update per run), instead
// of one per call. Money is safe while a batch waits: what it will charge is
// still held by the process's lease, and a lease left by a dead process is
// charged in full by the sweep.

export type { RunProgressRow, TokenUsage } from './step-batch-repo.ts';

/** A step that cost (or may have cost) money: it settles a reservation taken from these accounts. */
export interface Charge {
  kind: 'charge';
  run: Account;
  hour: Account | null;
  hourStart: Date;
  /** The team's credits when admission leased them (enforcement), else null. */
  credits: Account | null;
  /** What the ledger entry consumes of the team's credits, in micro-credits (0: credits off, or no entry). */
  creditCost: number;
  step: StepInsert;
  /** The caller's policy when it is not the run's (a sub-agent's call): its hourly spend is counted under it. */
  policyId?: string;
  /** Write a ledger entry (a step that cost money or used tokens, or sandbox time). */
  ledger: boolean;
  /** A charge for sandbox time: its ledger entry is of kind sandbox, with these facts. */
  sandbox?: SandboxFacts;
  /** Counts as a step of work (not a blocked request or failover bookkeeping). */
  work: boolean;
  /** Called with the step's id once it is written, or undefined when it could not be. */
  done?: (stepId: StepId | undefined) => void;
}

/** A step that moves no money (a blocked request, a failover transition); flags its run. */
export interface Note {
  kind: 'note';
  step: StepInsert;
  flag: 'governance_block' | 'failover';
}

export type Pending = Charge | Note;

export interface WriterOptions {
  /** How long a first queued write waits for company before its batch goes. */
  flushDelayMs: number;
  /** A batch this big goes at once. */
  maxBatch: number;
  maxAttempts: number;
  baseRetryMs: number;
}

export const DEFAULT_WRITER_OPTIONS: WriterOptions = {
  flushDelayMs: 50,
  maxBatch: 500,
  maxAttempts: 8,
  baseRetryMs: 50,
};

/** A run's share of a batch; its released amounts are what leave the account's lease (≤ what it holds). */
interface RunGroup extends RunTotals {
  teamId: TeamId;
  account: Account | null;
  models: Set<string>;
}

interface HourGroup extends HourTotals {
  account: Account | null;
}

interface CreditGroup extends CreditTotals {
  account: Account | null;
}

export class StepWriter {
  private queue: Pending[] = [];
  private timer: Timer | undefined;
  private writing: Promise<void> | undefined;
  /** Set while a batch is retried after an error (its first attempt may have committed). */
  private retrying = false;
  private readonly log: Log;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    /** Told after commit about every run a batch changed. */
    private readonly onRunChanged: (run: repo.RunProgress) => void,
    private readonly options: WriterOptions = DEFAULT_WRITER_OPTIONS,
    /** Credits: the balances a batch changed go to the credits module after commit. */
    private readonly credits?: CreditsPort,
  ) {
    this.log = ctx.log;
  }

  get pending(): number {
    return this.queue.length;
  }

  push(item: Pending): void {
    this.queue.push(item);
    if (this.queue.length >= this.options.maxBatch) this.kick(0);
    else this.kick(this.options.flushDelayMs);
  }

  private kick(delayMs: number): void {
    if (this.writing) return;
    if (this.timer && delayMs > 0) return;
    this.timer?.cancel();
    this.timer = this.ctx.timers.after(delayMs, () => {
      this.timer = undefined;
      this.writing = this.drain().finally(() => {
        this.writing = undefined;
        if (this.queue.length > 0) this.kick(this.options.flushDelayMs);
      });
    });
  }

  /** Resolves once everything queued so far is written (or given up on). */
  async flush(): Promise<void> {
    for (;;) {
      this.timer?.cancel();
      this.timer = undefined;
      if (this.writing) {
        await this.writing;
        continue;
      }
      if (this.queue.length === 0) return;
      this.writing = this.drain(true).finally(() => {
        this.writing = undefined;
      });
    }
  }

  /**
   * Writes what is queued. What arrives meanwhile waits for the next round
   * (kick, after flushDelayMs) so batches stay full — unless a full batch is
   * already waiting, or flush() wants everything now.
   */
  private async drain(all = false): Promise<void> {
    do {
      const batch = this.queue.splice(0, this.options.maxBatch);
      await this.writeWithRetry(batch);
    } while (this.queue.length > 0 && (all || this.queue.length >= this.options.maxBatch));
  }

  private async writeWithRetry(batch: Pending[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.retrying = attempt > 1;
        await this.write(batch);
        return;
      } catch (err) {
        if (isTransientDbError(err) && attempt < this.options.maxAttempts) {
          const delayMs = this.options.baseRetryMs * 2 ** (attempt - 1);
          this.log.warn(
            { err, steps: batch.length, attempt, retry_in_ms: delayMs },
            'step write failed; retrying',
          );
          await this.ctx.timers.sleep(delayMs);
          continue;
        }
        if (batch.length > 1) {
          // One bad row must not lose the others: write them one by one.
          for (const item of batch) await this.writeWithRetry([item]);
          return;
        }
        const item = batch[0]!;
        // Its money stays held by the lease (charged by the sweep if the process dies): fail closed.
        this.log.error(
          { err, step_id: item.step.id, run_id: item.step.runId },
          'step write failed; giving up',
        );
        if (item.kind === 'charge') item.done?.(undefined);
        return;
      }
    }
  }

  /** Writes a batch in one statement (writeStepBatch), then tells the accounts and runs what changed. */
  private async write(batch: Pending[]): Promise<void> {
    const { groups, hours, ledger, credits, creditUses } = this.group(batch);
    const stepRows = batch.map((item) => item.step);
    if (await this.alreadyWritten(stepRows)) {
      const progress = await readRunProgress(this.db, [...groups.values()]);
      this.committed(batch, groups, hours, credits, progress);
      return this.afterCommitLogged(groups, progress);
    }
    const runList = [...groups.values()];
    const hourList = [...hours.values()];
    const leases: LeaseRelease[] = [
      ...runList.flatMap((g): LeaseRelease[] =>
        g.account && (g.releasedMicros > 0 || g.releasedTokens > 0)
          ? [[g.account.leaseId, g.releasedMicros, g.releasedTokens]]
          : [],
      ),
      ...hourList.flatMap((h): LeaseRelease[] =>
        h.account && h.releasedMicros > 0 ? [[h.account.leaseId, h.releasedMicros, 0]] : [],
      ),
      ...[...credits.values()].flatMap((c): LeaseRelease[] =>
        c.account && c.released > 0 ? [[c.account.leaseId, c.released, 0]] : [],
      ),
    ];
    const written = await writeStepBatch(this.db, {
      runs: runList,
      leases,
      hours: hourList,
      credits: [...credits.values()],
      creditUses,
      steps: stepRows,
      ledger,
      at: this.ctx.clock.now(),
    });
    const progress = written.runs;
    this.committed(batch, groups, hours, credits, progress);
    await this.afterCommitLogged(groups, progress);
    if (written.credits.length > 0 && this.credits) {
      await this.credits
        .balancesChanged(written.credits)
        .catch((err: unknown) =>
          this.log.error(
            { err, team_ids: written.credits.map((c) => c.teamId) },
            'following credit balances failed',
          ),
        );
    }
  }

  /**
   * The batch is written: a failure of what follows must not send it round
   * the retry again (it would be written twice, or its callers told twice).
   * The next batch of the same run checks its limits again.
   */
  private async afterCommitLogged(groups: Map<string, RunGroup>, progress: RunProgressRow[]): Promise<void> {
    try {
      await this.afterCommit(groups, progress);
    } catch (err) {
      this.log.error(
        { err, run_ids: progress.map((p) => p.id) },
        'checking the limits and primary model of runs after a step batch failed',
      );
    }
  }

  /** A retry after a lost answer must not charge twice: the batch is one statement, so one id tells. */
  private async alreadyWritten(rows: StepInsert[]): Promise<boolean> {
    const probe = rows[0];
    if (!probe?.id || !this.retrying) return false;
    return repo.stepExists(this.db, probe.teamId, probe.id);
  }

  /** Written: the leases shrank by what moved to cost; the accounts stop counting it as unwritten. */
  private committed(
    batch: Pending[],
    groups: Map<string, RunGroup>,
    hours: Map<string, HourGroup>,
    credits: Map<string, CreditGroup>,
    progress: RunProgressRow[],
  ): void {
    for (const g of groups.values()) {
      if (!g.account) continue;
      const tokens = g.usage.input + g.usage.output + g.usage.cacheRead + g.usage.cacheCreation;
      g.account.heldMicros -= g.releasedMicros;
      g.account.heldTokens -= g.releasedTokens;
      g.account.usedMicros -= g.costMicros;
      g.account.usedTokens -= tokens;
      // Written spend is no longer this lease's: it counts with everyone's.
      g.account.othersMicros += g.costMicros;
      g.account.othersTokens += tokens;
    }
    for (const h of hours.values()) {
      if (!h.account) continue;
      h.account.heldMicros -= h.releasedMicros;
      h.account.usedMicros -= h.costMicros;
    }
    for (const c of credits.values()) {
      if (!c.account) continue;
      c.account.heldMicros -= c.released;
      c.account.usedMicros -= c.consumed;
    }
    for (const run of progress) this.onRunChanged(run);
    for (const item of batch) if (item.kind === 'charge') item.done?.(item.step.id);
  }

  /**
   * What a batch may have set off, in its own transaction: a run whose
   * primary model changed, and runs that reached an alert threshold or a
   * hard limit (rare: most batches skip this).
   */
  private async afterCommit(groups: Map<string, RunGroup>, progress: RunProgressRow[]): Promise<void> {
    const due = progress.filter((run) => {
      const g = groups.get(run.id);
      const newModel = g !== undefined && [...g.models].some((m) => m !== run.primaryModel);
      const limit =
        (run.hardLimitMicros !== null && run.costMicros >= run.hardLimitMicros) ||
        (run.hardLimitTokens !== null && run.usedTokens >= run.hardLimitTokens);
      const alert =
        !run.alertThresholdExceeded &&
        ((run.alertThresholdMicros !== null && run.costMicros >= run.alertThresholdMicros) ||
          (run.alertThresholdTokens !== null && run.usedTokens >= run.alertThresholdTokens));
      return (
        newModel || ((limit || alert) && run.status === 'running') || (alert && run.status !== 'running')
      );
    });
    if (due.length === 0) return;
    const changed: repo.RunRow[] = [];
    await this.db.transaction(async (tx) => {
      for (const p of due) {
        let run = await repo.lockRunForSystem(tx, p.id);
        if (!run) continue;
        const g = groups.get(p.id);
        if (g && [...g.models].some((m) => m !== run!.primaryModel)) {
          const primary = await repo.mostUsedModel(tx, run.teamId, p.id);
          if (primary !== run.primaryModel)
            run = (await repo.setPrimaryModel(tx, run.teamId, p.id, primary)) ?? run;
        }
        changed.push(await enforceLimits(tx, this.events, run, g?.lastAt ?? this.ctx.clock.now(), changed));
      }
    });
    for (const run of changed) this.onRunChanged(run);
  }

  private group(batch: Pending[]) {
    const groups = new Map<string, RunGroup>();
    const hours = new Map<string, HourGroup>();
    const ledger: LedgerInsert[] = [];
    const credits = new Map<string, CreditGroup>();
    /** Micro-credits each run's entries consume in this batch. */
    const runCredits = new Map<RunId, { teamId: TeamId; amount: number; at: Date }>();
    for (const item of batch) {
      const s = item.step;
      const at = s.createdAt;
      let g = groups.get(s.runId);
      if (!g) {
        g = {
          teamId: s.teamId,
          runId: s.runId,
          account: null,
          costMicros: 0,
          sandboxCostMicros: 0,
          usage: { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 },
          work: 0,
          lastAt: at,
          governanceBlock: false,
          failover: false,
          models: new Set(),
          releasedMicros: 0,
          releasedTokens: 0,
        };
        groups.set(s.runId, g);
      }
      if (at > g.lastAt) g.lastAt = at;
      if (item.kind === 'note') {
        if (item.flag === 'governance_block') g.governanceBlock = true;
        else g.failover = true;
        continue;
      }
      g.account = item.run;
      const cost = s.costMicros ?? 0;
      g.costMicros += cost;
      if (item.sandbox) g.sandboxCostMicros += cost;
      g.usage.input += s.inputTokens ?? 0;
      g.usage.output += s.outputTokens ?? 0;
      g.usage.cacheRead += s.cacheReadTokens ?? 0;
      g.usage.cacheCreation += s.cacheCreationTokens ?? 0;
      if (item.work) g.work++;
      if (item.work && s.model) g.models.add(s.model);
      const policyId = item.policyId ?? item.run.policyId;
      const hourKey = `${s.agentId}:${policyId}:${item.hourStart.getTime()}`;
      let h = hours.get(hourKey);
      if (!h) {
        h = {
          teamId: s.teamId,
          agentId: s.agentId,
          policyId,
          hourStart: item.hourStart,
          account: item.hour,
          costMicros: 0,
          releasedMicros: 0,
        };
        hours.set(hourKey, h);
      }
      h.costMicros += cost;
      if (item.hour) h.account = item.hour;
      if (item.creditCost > 0 || item.credits) {
        let c = credits.get(s.teamId);
        if (!c) {
          c = { teamId: s.teamId, account: null, consumed: 0, released: 0 };
          credits.set(s.teamId, c);
        }
        if (item.credits) c.account = item.credits;
        c.consumed += item.creditCost;
        if (item.creditCost > 0) {
          const use = runCredits.get(s.runId);
          if (use) {
            use.amount += item.creditCost;
            if (at > use.at) use.at = at;
          } else runCredits.set(s.runId, { teamId: s.teamId, amount: item.creditCost, at });
        }
      }
      if (item.ledger) {
        ledger.push({
          id: newId('led'),
          teamId: s.teamId,
          runId: s.runId,
          stepId: s.id!,
          agentId: s.agentId,
          kind: item.sandbox ? 'sandbox' : 'model',
          capsuleId: item.sandbox?.capsuleId ?? null,
          sandboxSeconds: item.sandbox?.seconds ?? null,
          vcpus: item.sandbox?.vcpus ?? null,
          memoryMb: item.sandbox?.memoryMb ?? null,
          provider: s.provider ?? null,
          model: s.model ?? null,
          providerKeyId: s.providerKeyId ?? null,
          inputTokens: s.inputTokens ?? 0,
          outputTokens: s.outputTokens ?? 0,
          cacheReadTokens: s.cacheReadTokens ?? 0,
          cacheCreationTokens: s.cacheCreationTokens ?? 0,
          costMicros: cost,
          createdAt: at,
        });
      }
    }
    // What leaves the leases: the spend, up to what each lease holds (a call may cost more than it reserved).
    for (const g of groups.values()) {
      if (!g.account) continue;
      const tokens = g.usage.input + g.usage.output + g.usage.cacheRead + g.usage.cacheCreation;
      g.releasedMicros = Math.max(0, Math.min(g.costMicros, g.account.heldMicros));
      g.releasedTokens = Math.max(0, Math.min(tokens, g.account.heldTokens));
    }
    for (const h of hours.values()) {
      if (h.account) h.releasedMicros = Math.max(0, Math.min(h.costMicros, h.account.heldMicros));
    }
    for (const c of credits.values()) {
      if (c.account) c.released = Math.max(0, Math.min(c.consumed, c.account.heldMicros));
    }
    const creditUses: CreditUse[] = [...runCredits].map(([runId, u]) => ({
      id: newId('ctx'),
      teamId: u.teamId,
      runId,
      amount: u.amount,
      at: u.at,
    }));
    return { groups, hours, ledger, credits, creditUses };
  }
}

import { eq } from 'drizzle-orm';
import { newId } from '../../core/ids.ts';
import { type Db, rawQuery } from '../../db/client.ts';
import { type ledgerEntries, runs, type steps } from '../../db/schema/index.ts';
import type { EventsService } from '../events/service.ts';
import type { Account } from './leases.ts';
import { enforceLimits } from './limits.ts';
import * as repo from './repo.ts';
import type { RunProgress } from './resolver.ts';
import { isTransientDbError, type RecorderLog } from './transient.ts';

// Write-behind for steps and charges: calls are answered first, and what
// they did is written in batches — one transaction for everything queued in
// the last few milliseconds (multi-row inserts, one update per run), instead
// of one per call. Money is safe while a batch waits: what it will charge is
// still held by the process's lease, and a lease left by a dead process is
// charged in full by the sweep.

export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheCreation: number;
}

type StepInsert = typeof steps.$inferInsert;

/** A step that cost (or may have cost) money: it settles a reservation taken from these accounts. */
export interface Charge {
  kind: 'charge';
  run: Account;
  hour: Account | null;
  hourStart: Date;
  step: StepInsert;
  /** Write a ledger entry (a step that cost money or used tokens). */
  ledger: boolean;
  /** Counts as a step of work (not a blocked request or failover bookkeeping). */
  work: boolean;
  /** Called with the step's id once it is written, or undefined when it could not be. */
  done?: (stepId: string | undefined) => void;
}

/** A step that moves no money (a blocked request, a failover transition); flags its run. */
export interface Note {
  kind: 'note';
  step: StepInsert;
  flag: 'governance_block' | 'failover';
}

export type Pending = Charge | Note;

/** What a batch learns of each run it charged: enough for the caches and the limit checks. */
export interface RunProgressRow extends RunProgress {
  primaryModel: string | null;
  costMicros: number;
  usedTokens: number;
  hardLimitMicros: number | null;
  hardLimitTokens: number | null;
  alertThresholdMicros: number | null;
  alertThresholdTokens: number | null;
  alertThresholdExceeded: boolean;
}

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

interface RunGroup {
  teamId: string;
  runId: string;
  account: Account | null;
  costMicros: number;
  usage: TokenUsage;
  work: number;
  lastAt: Date;
  governanceBlock: boolean;
  failover: boolean;
  models: Set<string>;
  /** Taken out of the account's lease (≤ what it holds). */
  releasedMicros: number;
  releasedTokens: number;
}

interface HourGroup {
  teamId: string;
  agentId: string;
  policyId: string;
  hourStart: Date;
  account: Account | null;
  costMicros: number;
  releasedMicros: number;
}

type LedgerRow = typeof ledgerEntries.$inferInsert & { createdAt: Date };
type LeaseRow = readonly [id: string, micros: number, tokens: number];
/** One column of a batch: its name, its SQL type and how to read it off a row (sent as one array per column). */
type Column<T> = readonly [name: string, type: string, read: (row: T) => unknown];

const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

const RUN_COLUMNS: ReadonlyArray<Column<RunGroup>> = [
  ['id', 'text', (g) => g.runId],
  ['cost', 'bigint', (g) => g.costMicros],
  ['released_micros', 'bigint', (g) => g.releasedMicros],
  ['released_tokens', 'bigint', (g) => g.releasedTokens],
  ['input', 'bigint', (g) => g.usage.input],
  ['output', 'bigint', (g) => g.usage.output],
  ['cache_read', 'bigint', (g) => g.usage.cacheRead],
  ['cache_creation', 'bigint', (g) => g.usage.cacheCreation],
  ['work', 'int', (g) => g.work],
  ['at', 'timestamptz', (g) => iso(g.lastAt)],
  ['block', 'boolean', (g) => g.governanceBlock],
  ['failover', 'boolean', (g) => g.failover],
];
const LEASE_COLUMNS: ReadonlyArray<Column<LeaseRow>> = [
  ['id', 'text', (x) => x[0]],
  ['micros', 'bigint', (x) => x[1]],
  ['tokens', 'bigint', (x) => x[2]],
];
const HOUR_COLUMNS: ReadonlyArray<Column<HourGroup>> = [
  ['team_id', 'text', (h) => h.teamId],
  ['agent_id', 'text', (h) => h.agentId],
  ['policy_id', 'text', (h) => h.policyId],
  ['hour_start', 'timestamptz', (h) => iso(h.hourStart)],
  ['cost_micros', 'bigint', (h) => h.costMicros],
  ['reserved_micros', 'bigint', (h) => -h.releasedMicros],
];
const STEP_COLUMNS: ReadonlyArray<Column<StepInsert>> = [
  ['id', 'text', (x) => x.id],
  ['team_id', 'text', (x) => x.teamId],
  ['run_id', 'text', (x) => x.runId],
  ['agent_id', 'text', (x) => x.agentId],
  ['type', 'text', (x) => x.type],
  ['status', 'text', (x) => x.status],
  ['name', 'text', (x) => x.name ?? null],
  ['provider', 'text', (x) => x.provider ?? null],
  ['model', 'text', (x) => x.model ?? null],
  ['provider_key_id', 'text', (x) => x.providerKeyId ?? null],
  ['streaming', 'boolean', (x) => x.streaming ?? false],
  ['request', 'text', (x) => json(x.request)],
  ['response', 'text', (x) => json(x.response)],
  ['input_tokens', 'bigint', (x) => x.inputTokens ?? 0],
  ['output_tokens', 'bigint', (x) => x.outputTokens ?? 0],
  ['cache_read_tokens', 'bigint', (x) => x.cacheReadTokens ?? 0],
  ['cache_creation_tokens', 'bigint', (x) => x.cacheCreationTokens ?? 0],
  ['cost_micros', 'bigint', (x) => x.costMicros ?? 0],
  ['latency_ms', 'int', (x) => x.latencyMs ?? null],
  ['routed_from', 'text', (x) => x.routedFrom ?? null],
  ['failover_attempts', 'int', (x) => x.failoverAttempts ?? 0],
  ['failover_context', 'text', (x) => json(x.failoverContext)],
  ['error_kind', 'text', (x) => x.errorKind ?? null],
  ['error_message', 'text', (x) => x.errorMessage ?? null],
  ['created_at', 'timestamptz', (x) => iso(x.createdAt)],
];
const LEDGER_COLUMNS: ReadonlyArray<Column<LedgerRow>> = [
  ['id', 'text', (x) => x.id],
  ['team_id', 'text', (x) => x.teamId],
  ['run_id', 'text', (x) => x.runId],
  ['step_id', 'text', (x) => x.stepId],
  ['agent_id', 'text', (x) => x.agentId],
  ['provider', 'text', (x) => x.provider ?? null],
  ['model', 'text', (x) => x.model ?? null],
  ['provider_key_id', 'text', (x) => x.providerKeyId ?? null],
  ['input_tokens', 'bigint', (x) => x.inputTokens ?? 0],
  ['output_tokens', 'bigint', (x) => x.outputTokens ?? 0],
  ['cache_read_tokens', 'bigint', (x) => x.cacheReadTokens ?? 0],
  ['cache_creation_tokens', 'bigint', (x) => x.cacheCreationTokens ?? 0],
  ['cost_micros', 'bigint', (x) => x.costMicros],
  ['created_at', 'timestamptz', (x) => iso(x.createdAt)],
];

/**
 * The whole batch in ONE statement: per-column arrays unnested into the run
 * totals, the leases, the hours, the steps and the ledger (data-modifying
 * CTEs run once each and atomically). A statement is the unit of work the
 * database charges for — here, not per row — which is what lets one process
 * record hundreds of calls a second on embedded PGlite. Its text is built
 * once; a batch only fills in the arrays.
 */
const WRITE_BATCH = (() => {
  let n = 0;
  /** `unnest($1::text[], …) as alias(name, …)`: one parameter per column. */
  const unnest = <T>(columns: ReadonlyArray<Column<T>>, alias: string) =>
    `unnest(${columns.map(([, type]) => `$${++n}::${type}[]`).join(', ')}) as ${alias}(${names(columns)})`;
  const names = <T>(columns: ReadonlyArray<Column<T>>) => columns.map(([name]) => name).join(', ');
  const runs = unnest(RUN_COLUMNS, 'g');
  const leases = unnest(LEASE_COLUMNS, 'x');
  const hours = unnest(HOUR_COLUMNS, 'x');
  const steps = unnest(STEP_COLUMNS, 'x');
  const ledger = unnest(LEDGER_COLUMNS, 'x');
  const now = `$${++n}::timestamptz`;
  // The step's JSON columns travel as text.
  const stepSelect = STEP_COLUMNS.map(([name]) =>
    ['request', 'response', 'failover_context'].includes(name) ? `${name}::jsonb` : name,
  ).join(', ');
  const text = `
      with g as (
        select * from ${runs}
      ), r as (
        update runs set
          reserved_micros = greatest(runs.reserved_micros - g.released_micros, 0),
          reserved_tokens = greatest(runs.reserved_tokens - g.released_tokens, 0),
          cost_micros = runs.cost_micros + g.cost,
          input_tokens = runs.input_tokens + g.input,
          output_tokens = runs.output_tokens + g.output,
          cache_read_tokens = runs.cache_read_tokens + g.cache_read,
          cache_creation_tokens = runs.cache_creation_tokens + g.cache_creation,
          step_count = runs.step_count + g.work,
          last_step_at = case when g.work > 0 then greatest(coalesce(runs.last_step_at, g.at), g.at) else runs.last_step_at end,
          has_governance_block = runs.has_governance_block or g.block,
          had_failover = runs.had_failover or g.failover,
          updated_at = g.at
        from g where runs.id = g.id
        returning runs.id, runs.status, runs.agent_id, runs.policy_id, runs.step_count, runs.last_step_at,
          runs.started_at, runs.primary_model, runs.cost_micros, runs.hard_limit_micros, runs.hard_limit_tokens,
          runs.alert_threshold_micros, runs.alert_threshold_tokens, runs.alert_threshold_exceeded,
          runs.input_tokens + runs.output_tokens + runs.cache_read_tokens + runs.cache_creation_tokens as used_tokens
      ), l as (
        update budget_leases set amount_micros = greatest(budget_leases.amount_micros - x.micros, 0),
          tokens = greatest(budget_leases.tokens - x.tokens, 0), renewed_at = ${now}
        from ${leases}
        where budget_leases.id = x.id
        returning 1
      ), h as (
        -- A held hour always has its row (leasing made it), so a fresh row never has anything to release.
        insert into hourly_spend (${names(HOUR_COLUMNS)})
        select * from ${hours}
        on conflict (agent_id, policy_id, hour_start) do update set
          cost_micros = hourly_spend.cost_micros + excluded.cost_micros,
          reserved_micros = greatest(hourly_spend.reserved_micros + excluded.reserved_micros, 0)
        returning 1
      ), s as (
        insert into steps (${names(STEP_COLUMNS)})
        select ${stepSelect} from ${steps}
        returning 1
      ), e as (
        insert into ledger_entries (${names(LEDGER_COLUMNS)})
        select * from ${ledger}
        returning 1
      )
      select r.*, (select count(*) from s) as steps_written from r`;
  const arraysOf = <T>(columns: ReadonlyArray<Column<T>>, rows: readonly T[]) =>
    columns.map(([, , read]) => rows.map(read));
  return {
    text,
    /** The parameters, in the order the text numbers them. */
    params: (b: {
      runs: readonly RunGroup[];
      leases: readonly LeaseRow[];
      hours: readonly HourGroup[];
      steps: readonly StepInsert[];
      ledger: readonly LedgerRow[];
      now: string;
    }): unknown[] => [
      ...arraysOf(RUN_COLUMNS, b.runs),
      ...arraysOf(LEASE_COLUMNS, b.leases),
      ...arraysOf(HOUR_COLUMNS, b.hours),
      ...arraysOf(STEP_COLUMNS, b.steps),
      ...arraysOf(LEDGER_COLUMNS, b.ledger),
      b.now,
    ],
  };
})();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class StepWriter {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  /** Set while a batch is retried after an error (its first attempt may have committed). */
  private retrying = false;
  private log: RecorderLog = {
    warn: (obj, msg) => console.warn(msg, obj),
    error: (obj, msg) => console.error(msg, obj),
  };

  constructor(
    private readonly db: Db,
    private readonly events: EventsService,
    /** Told after commit about every run a batch changed. */
    private readonly onRunChanged: (run: RunProgress) => void,
    private readonly options: WriterOptions = DEFAULT_WRITER_OPTIONS,
  ) {}

  useLog(log: RecorderLog): void {
    this.log = log;
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
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.drain().finally(() => {
        this.writing = undefined;
        if (this.queue.length > 0) this.kick(this.options.flushDelayMs);
      });
    }, delayMs);
  }

  /** Resolves once everything queued so far is written (or given up on). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
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
          await sleep(delayMs);
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

  /** Writes a batch in one statement (WRITE_BATCH), then tells the accounts and runs what changed. */
  private async write(batch: Pending[]): Promise<void> {
    const { groups, hours, ledger } = this.group(batch);
    const stepRows = batch.map((item) => item.step);
    if (await this.alreadyWritten(stepRows)) return this.committed(batch, groups, hours, []);
    const now = new Date().toISOString();
    const runList = [...groups.values()];
    const hourList = [...hours.values()];
    const leases = [
      ...runList.flatMap((g) =>
        g.account && (g.releasedMicros > 0 || g.releasedTokens > 0)
          ? [[g.account.leaseId, g.releasedMicros, g.releasedTokens] as LeaseRow]
          : [],
      ),
      ...hourList.flatMap((h) =>
        h.account && h.releasedMicros > 0 ? [[h.account.leaseId, h.releasedMicros, 0] as LeaseRow] : [],
      ),
    ];
    const rows = await rawQuery(
      this.db,
      WRITE_BATCH.text,
      WRITE_BATCH.params({ runs: runList, leases, hours: hourList, steps: stepRows, ledger, now }),
    );
    const progress = rows.map((row) => ({
      id: String(row.id),
      status: row.status as repo.RunRow['status'],
      agentId: String(row.agent_id),
      policyId: String(row.policy_id),
      stepCount: Number(row.step_count),
      lastStepAt: row.last_step_at === null ? null : new Date(row.last_step_at as string),
      startedAt: new Date(row.started_at as string),
      primaryModel: (row.primary_model as string | null) ?? null,
      costMicros: Number(row.cost_micros),
      usedTokens: Number(row.used_tokens),
      hardLimitMicros: row.hard_limit_micros === null ? null : Number(row.hard_limit_micros),
      hardLimitTokens: row.hard_limit_tokens === null ? null : Number(row.hard_limit_tokens),
      alertThresholdMicros: row.alert_threshold_micros === null ? null : Number(row.alert_threshold_micros),
      alertThresholdTokens: row.alert_threshold_tokens === null ? null : Number(row.alert_threshold_tokens),
      alertThresholdExceeded: row.alert_threshold_exceeded === true,
    }));
    this.committed(batch, groups, hours, progress);
    await this.afterCommit(groups, progress);
  }

  /** A retry after a lost answer must not charge twice: the batch is one statement, so one id tells. */
  private async alreadyWritten(rows: StepInsert[]): Promise<boolean> {
    const probe = rows[0]?.id;
    if (!probe || !this.retrying) return false;
    return repo.stepExists(this.db, probe);
  }

  /** Written: the leases shrank by what moved to cost; the accounts stop counting it as unwritten. */
  private committed(
    batch: Pending[],
    groups: Map<string, RunGroup>,
    hours: Map<string, HourGroup>,
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
        let run = await repo.findRunById(tx, p.id);
        if (!run) continue;
        const g = groups.get(p.id);
        if (g && [...g.models].some((m) => m !== run!.primaryModel)) {
          const primary = await repo.mostUsedModel(tx, p.id);
          if (primary !== run.primaryModel)
            run = (await repo.updateRun(tx, eq(runs.id, p.id), { primaryModel: primary })) ?? run;
        }
        changed.push(await enforceLimits(tx, this.events, run, g?.lastAt ?? new Date(), changed));
      }
    });
    for (const run of changed) this.onRunChanged(run);
  }

  private group(batch: Pending[]) {
    const groups = new Map<string, RunGroup>();
    const hours = new Map<string, HourGroup>();
    const ledger: LedgerRow[] = [];
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
      g.usage.input += s.inputTokens ?? 0;
      g.usage.output += s.outputTokens ?? 0;
      g.usage.cacheRead += s.cacheReadTokens ?? 0;
      g.usage.cacheCreation += s.cacheCreationTokens ?? 0;
      if (item.work) g.work++;
      if (item.work && s.model) g.models.add(s.model);
      const hourKey = `${s.agentId}:${item.run.policyId}:${item.hourStart.getTime()}`;
      let h = hours.get(hourKey);
      if (!h) {
        h = {
          teamId: s.teamId,
          agentId: s.agentId,
          policyId: item.run.policyId,
          hourStart: item.hourStart,
          account: item.hour,
          costMicros: 0,
          releasedMicros: 0,
        };
        hours.set(hourKey, h);
      }
      h.costMicros += cost;
      if (item.hour) h.account = item.hour;
      if (item.ledger) {
        ledger.push({
          id: newId('led'),
          teamId: s.teamId,
          runId: s.runId,
          stepId: s.id!,
          agentId: s.agentId,
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
    return { groups, hours, ledger };
  }
}

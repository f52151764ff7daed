import { and, eq, or, sql } from 'drizzle-orm';
import type { RunId, TeamId } from '../../core/ids.ts';
import { type Db, type DbOrTx, rawQuery } from '../../db/client.ts';
import { rollupUpsertSql } from '../../db/rollups.ts';
import { type ledgerEntries, runs, type steps } from '../../db/schema/index.ts';
import type { RunProgress, RunStatus } from './repo.ts';

// The step writer's one statement (see step-writer.ts): SQL only.

export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheCreation: number;
}

export type StepInsert = typeof steps.$inferInsert;
export type LedgerInsert = typeof ledgerEntries.$inferInsert & { createdAt: Date };

/** What a batch adds to one run. */
export interface RunTotals {
  runId: RunId;
  costMicros: number;
  /** The part of costMicros that is sandbox time. */
  sandboxCostMicros: number;
  usage: TokenUsage;
  /** Steps of work (blocked requests and failover bookkeeping are not). */
  work: number;
  lastAt: Date;
  governanceBlock: boolean;
  failover: boolean;
  /** Leaving the run's reserved totals (what its lease spent). */
  releasedMicros: number;
  releasedTokens: number;
}

/** What a batch adds to one agent+policy+hour. */
export interface HourTotals {
  teamId: TeamId;
  agentId: string;
  policyId: string;
  hourStart: Date;
  costMicros: number;
  releasedMicros: number;
}

/** A lease shrinking by what was spent from it. */
export type LeaseRelease = readonly [leaseId: string, micros: number, tokens: number];

/** What a batch consumes of one team's credits (micro-credits): one transaction per run that used them. */
export interface CreditTotals {
  teamId: TeamId;
  consumed: number;
  /** Leaving the account's held (what its lease paid). */
  released: number;
}

/** One run's consumption in a batch: a credit transaction (reference: the run). */
export interface CreditUse {
  id: string;
  teamId: TeamId;
  runId: RunId;
  amount: number;
  at: Date;
}

/** A balance a batch changed (micro-credits). */
export interface CreditBalanceRow {
  teamId: TeamId;
  balance: number;
  lowThreshold: number | null;
  state: 'ok' | 'low' | 'exhausted';
}

export interface StepBatch {
  runs: readonly RunTotals[];
  leases: readonly LeaseRelease[];
  hours: readonly HourTotals[];
  credits: readonly CreditTotals[];
  creditUses: readonly CreditUse[];
  steps: readonly StepInsert[];
  ledger: readonly LedgerInsert[];
  at: Date;
}

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

/** One column of a batch: its name, its SQL type and how to read it off a row (sent as one array per column). */
type Column<T> = readonly [name: string, type: string, read: (row: T) => unknown];

const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

const RUN_COLUMNS: ReadonlyArray<Column<RunTotals>> = [
  ['id', 'text', (g) => g.runId],
  ['cost', 'bigint', (g) => g.costMicros],
  ['sandbox_cost', 'bigint', (g) => g.sandboxCostMicros],
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
const LEASE_COLUMNS: ReadonlyArray<Column<LeaseRelease>> = [
  ['id', 'text', (x) => x[0]],
  ['micros', 'bigint', (x) => x[1]],
  ['tokens', 'bigint', (x) => x[2]],
];
const HOUR_COLUMNS: ReadonlyArray<Column<HourTotals>> = [
  ['team_id', 'text', (h) => h.teamId],
  ['agent_id', 'text', (h) => h.agentId],
  ['policy_id', 'text', (h) => h.policyId],
  ['hour_start', 'timestamptz', (h) => iso(h.hourStart)],
  ['cost_micros', 'bigint', (h) => h.costMicros],
  ['reserved_micros', 'bigint', (h) => -h.releasedMicros],
];
const CREDIT_COLUMNS: ReadonlyArray<Column<CreditTotals>> = [
  ['team_id', 'text', (c) => c.teamId],
  ['balance', 'bigint', (c) => -c.consumed],
  ['held', 'bigint', (c) => -c.released],
];
const CREDIT_USE_COLUMNS: ReadonlyArray<Column<CreditUse>> = [
  ['id', 'text', (u) => u.id],
  ['team_id', 'text', (u) => u.teamId],
  ['run_id', 'text', (u) => u.runId],
  ['amount', 'bigint', (u) => u.amount],
  ['at', 'timestamptz', (u) => iso(u.at)],
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
const LEDGER_COLUMNS: ReadonlyArray<Column<LedgerInsert>> = [
  ['id', 'text', (x) => x.id],
  ['team_id', 'text', (x) => x.teamId],
  ['run_id', 'text', (x) => x.runId],
  ['step_id', 'text', (x) => x.stepId],
  ['agent_id', 'text', (x) => x.agentId],
  ['kind', 'text', (x) => x.kind ?? 'model'],
  ['capsule_id', 'text', (x) => x.capsuleId ?? null],
  ['sandbox_seconds', 'float8', (x) => x.sandboxSeconds ?? null],
  ['vcpus', 'float8', (x) => x.vcpus ?? null],
  ['memory_mb', 'int', (x) => x.memoryMb ?? null],
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

/** What the analytics rollups read of a written step. */
const ROLLUP_SOURCE_COLUMNS =
  'team_id, run_id, agent_id, type, status, provider, model, input_tokens, output_tokens, ' +
  'cache_read_tokens, cache_creation_tokens, cost_micros, latency_ms, failover_attempts, created_at';

/**
 * The whole batch in ONE statement: per-column arrays unnested into the run
 * totals, the leases, the hours, the steps (and the analytics rollups they
 * add to) and the ledger (data-modifying
 * CTEs run once each and atomically). A statement is the unit of work the
 * database charges for — here, not per row — which is what lets one process
 * record hundreds of calls a second on embedded PGlite. Its text is built
 * once, here; a batch only fills in the arrays (drizzle would build and
 * render the query again for every batch).
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
  const credits = unnest(CREDIT_COLUMNS, 'x');
  // In the batch's order, so each transaction's balance_after is the balance after it.
  const creditUses = unnest(CREDIT_USE_COLUMNS, 'u')
    .replace(/\) as u\(/, ') with ordinality as u(')
    .replace(/\)$/, ', ord)');
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
          sandbox_cost_micros = runs.sandbox_cost_micros + g.sandbox_cost,
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
      ), c as (
        -- A team's account exists once it leased, so a fresh row never has anything to release.
        insert into credit_accounts (team_id, balance, held, state, updated_at)
        select x.team_id, x.balance, x.held, 'ok', ${now} from ${credits}
        on conflict (team_id) do update set balance = credit_accounts.balance + excluded.balance,
          held = greatest(credit_accounts.held + excluded.held, 0),
          updated_at = excluded.updated_at
        returning team_id, balance, low_threshold, state
      ), ct as (
        insert into credit_transactions (id, team_id, type, amount, balance_after, reason, action,
          reference_type, reference_id, actor_kind, created_at)
        select u.id, u.team_id, 'consume', -u.amount,
          c.balance + coalesce(sum(u.amount) over (partition by u.team_id order by u.ord
            rows between 1 following and unbounded following), 0),
          'usage recorded in the ledger', 'usage', 'run', u.run_id, 'system', u.at
        from ${creditUses} join c on c.team_id = u.team_id
        returning 1
      ), s as (
        insert into steps (${names(STEP_COLUMNS)})
        select ${stepSelect} from ${steps}
        returning ${ROLLUP_SOURCE_COLUMNS}
      ), ah as (
        ${rollupUpsertSql('hour', 's')}
        returning 1
      ), ad as (
        ${rollupUpsertSql('day', 's')}
        returning 1
      ), e as (
        insert into ledger_entries (${names(LEDGER_COLUMNS)})
        select * from ${ledger}
        returning 1
      )
      select r.*, (select count(*) from s) as steps_written, cb.credit_balances
      from (select coalesce(json_agg(c.*), '[]'::json) as credit_balances from c) cb left join r on true`;
  const arraysOf = <T>(columns: ReadonlyArray<Column<T>>, rows: readonly T[]) =>
    columns.map(([, , read]) => rows.map(read));
  return {
    text,
    /** The parameters, in the order the text numbers them. */
    params: (b: StepBatch): unknown[] => [
      ...arraysOf(RUN_COLUMNS, b.runs),
      ...arraysOf(LEASE_COLUMNS, b.leases),
      ...arraysOf(HOUR_COLUMNS, b.hours),
      ...arraysOf(CREDIT_COLUMNS, b.credits),
      ...arraysOf(CREDIT_USE_COLUMNS, b.creditUses),
      ...arraysOf(STEP_COLUMNS, b.steps),
      ...arraysOf(LEDGER_COLUMNS, b.ledger),
      b.at.toISOString(),
    ],
  };
})();

const numOrNull = (v: unknown) => (v === null ? null : Number(v));

/**
 * Writes a batch's steps, ledger entries, run and hour totals and lease
 * shrinkage atomically (one statement, through the driver: see WRITE_BATCH),
 * and answers each charged run's state after it.
 */
export async function writeStepBatch(
  db: Db,
  batch: StepBatch,
): Promise<{ runs: RunProgressRow[]; credits: CreditBalanceRow[] }> {
  const rows = await rawQuery(db, WRITE_BATCH.text, WRITE_BATCH.params(batch));
  const balances = (rows[0]?.credit_balances ?? []) as Array<Record<string, unknown>>;
  const credits = (typeof balances === 'string' ? JSON.parse(balances) : balances).map(
    (c: Record<string, unknown>): CreditBalanceRow => ({
      teamId: String(c.team_id) as TeamId,
      balance: Number(c.balance),
      lowThreshold: c.low_threshold === null ? null : Number(c.low_threshold),
      state: c.state as CreditBalanceRow['state'],
    }),
  );
  const runs = rows
    .filter((row) => row.id !== null && row.id !== undefined)
    .map((row) => ({
      id: String(row.id) as RunId,
      status: row.status as RunStatus,
      agentId: String(row.agent_id),
      policyId: String(row.policy_id),
      stepCount: Number(row.step_count),
      lastStepAt: row.last_step_at === null ? null : new Date(row.last_step_at as string),
      startedAt: new Date(row.started_at as string),
      primaryModel: (row.primary_model as string | null) ?? null,
      costMicros: Number(row.cost_micros),
      usedTokens: Number(row.used_tokens),
      hardLimitMicros: numOrNull(row.hard_limit_micros),
      hardLimitTokens: numOrNull(row.hard_limit_tokens),
      alertThresholdMicros: numOrNull(row.alert_threshold_micros),
      alertThresholdTokens: numOrNull(row.alert_threshold_tokens),
      alertThresholdExceeded: row.alert_threshold_exceeded === true,
    }));
  return { runs, credits };
}

/**
 * The runs' state as writeStepBatch answers it, read afresh: for a batch
 * that turns out to be written already (its commit's answer was lost), so
 * what it set off (a limit reached, a new primary model) is still acted on.
 */
export async function readRunProgress(
  db: DbOrTx,
  owned: ReadonlyArray<{ teamId: TeamId; runId: RunId }>,
): Promise<RunProgressRow[]> {
  if (owned.length === 0) return [];
  const rows = await db
    .select({
      id: runs.id,
      status: runs.status,
      agentId: runs.agentId,
      policyId: runs.policyId,
      stepCount: runs.stepCount,
      lastStepAt: runs.lastStepAt,
      startedAt: runs.startedAt,
      primaryModel: runs.primaryModel,
      costMicros: runs.costMicros,
      usedTokens: sql<string>`${runs.inputTokens} + ${runs.outputTokens} + ${runs.cacheReadTokens} + ${runs.cacheCreationTokens}`,
      hardLimitMicros: runs.hardLimitMicros,
      hardLimitTokens: runs.hardLimitTokens,
      alertThresholdMicros: runs.alertThresholdMicros,
      alertThresholdTokens: runs.alertThresholdTokens,
      alertThresholdExceeded: runs.alertThresholdExceeded,
    })
    .from(runs)
    .where(or(...owned.map((o) => and(eq(runs.teamId, o.teamId), eq(runs.id, o.runId)))));
  return rows.map((r) => ({ ...r, usedTokens: Number(r.usedTokens) }));
}

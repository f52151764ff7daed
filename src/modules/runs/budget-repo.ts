import { and, eq, inArray, lt, type SQL, sql } from 'drizzle-orm';
import type { RunId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { budgetLeases, creditAccounts, hourlySpend, runs } from '../../db/schema/index.ts';
import type { RunRow } from './repo.ts';

// Budget leases: the statements that make budgets hold under concurrency
// while calls are admitted in memory (see leases.ts). A lease is this
// process's own object, addressed by the id it minted (or, in the sweep, by
// ids it just read): lease statements are system-only and not scoped by team;
// the rows they grant from are (the run's team and agent are in each lease).

export type LeaseRow = typeof budgetLeases.$inferSelect;

export interface LeaseRequest {
  leaseId: string;
  holder: string;
  teamId: TeamId;
  agentId: string;
  policyId: string;
  /** The least that must be granted, or nothing is. */
  needMicros: number;
  needTokens: number;
  /** The most to take (headroom for the calls that will follow). */
  wantMicros: number;
  wantTokens: number;
  at: Date;
}

export interface RunGrant {
  grantedMicros: number;
  grantedTokens: number;
  hardLimitMicros: number | null;
  hardLimitTokens: number | null;
  /** The run's totals after the grant. */
  costMicros: number;
  reservedMicros: number;
  usedTokens: number;
  reservedTokens: number;
}

type Rows = { rows: Array<Record<string, unknown>> };

/**
 * A lease takes at most a tenth of what a limit has left (or what the call
 * needs, if more): a process that dies is charged its leases in full, so
 * this bounds what a crash can overcharge, and leaves the rest to others.
 */
const SHARE_DIVISOR = sql.raw('10');
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const first = (result: unknown) => (result as Rows).rows[0];

/**
 * The lease row a grant (CTE `u`, answering granted_micros) goes to: made on
 * the first grant, grown by the next ones (same id), and marked alive.
 */
function leaseRow(
  r: LeaseRequest,
  scope: LeaseRow['scope'],
  runId: RunId | null,
  hourStart: string | null,
  grantedTokens: SQL,
): SQL {
  const at = r.at.toISOString();
  return sql`
      insert into budget_leases (id, holder, scope, team_id, run_id, agent_id, policy_id, hour_start,
        amount_micros, tokens, created_at, renewed_at)
      select ${r.leaseId}, ${r.holder}, ${scope}, ${r.teamId}, ${runId}, ${r.agentId}, ${r.policyId},
        ${hourStart}::timestamptz, granted_micros, ${grantedTokens}, ${at}::timestamptz, ${at}::timestamptz
      from u
      on conflict (id) do update set amount_micros = budget_leases.amount_micros + excluded.amount_micros,
        tokens = budget_leases.tokens + excluded.tokens, renewed_at = excluded.renewed_at
      returning 1
    `;
}

/**
 * Takes between `need` and `want` of the run's remaining budget in ONE
 * statement, or nothing: the run row is locked (FOR UPDATE re-reads the
 * latest committed version after waiting), the grant is computed from it,
 * added to the run's reserved totals and to this holder's lease row. Only a
 * running run grants. Concurrent holders queue on the row lock, so the sum
 * of spent and held never passes a hard limit.
 */
export async function leaseOnRun(db: DbOrTx, runId: RunId, r: LeaseRequest): Promise<RunGrant | undefined> {
  const result = await db.execute(sql`
    with cur as (
      select id, hard_limit_micros, hard_limit_tokens, cost_micros, reserved_micros, reserved_tokens,
        input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens as used_tokens
      from runs
      where id = ${runId} and team_id = ${r.teamId} and agent_id = ${r.agentId} and status = 'running'
      for update
    ), g as (
      select id,
        case when hard_limit_micros is null then ${r.wantMicros}::bigint
          else least(${r.wantMicros}::bigint,
            greatest(${r.needMicros}::bigint, (hard_limit_micros - cost_micros - reserved_micros) / ${SHARE_DIVISOR})) end as micros,
        case when hard_limit_tokens is null then ${r.wantTokens}::bigint
          else least(${r.wantTokens}::bigint,
            greatest(${r.needTokens}::bigint, (hard_limit_tokens - used_tokens - reserved_tokens) / ${SHARE_DIVISOR})) end as tokens
      from cur
      where (hard_limit_micros is null or cost_micros + reserved_micros + ${r.needMicros}::bigint <= hard_limit_micros)
        and (hard_limit_tokens is null or used_tokens + reserved_tokens + ${r.needTokens}::bigint <= hard_limit_tokens)
    ), u as (
      update runs set reserved_micros = runs.reserved_micros + g.micros,
        reserved_tokens = runs.reserved_tokens + g.tokens
      from g where runs.id = g.id
      returning runs.hard_limit_micros, runs.hard_limit_tokens, runs.cost_micros, runs.reserved_micros,
        runs.reserved_tokens,
        runs.input_tokens + runs.output_tokens + runs.cache_read_tokens + runs.cache_creation_tokens as used_tokens,
        g.micros as granted_micros, g.tokens as granted_tokens
    ), l as (${leaseRow(r, 'run', runId, null, sql`granted_tokens`)})
    select u.*, (select count(*) from l) as leased from u`);
  const row = first(result);
  if (!row) return undefined;
  return {
    grantedMicros: num(row.granted_micros),
    grantedTokens: num(row.granted_tokens),
    hardLimitMicros: numOrNull(row.hard_limit_micros),
    hardLimitTokens: numOrNull(row.hard_limit_tokens),
    costMicros: num(row.cost_micros),
    reservedMicros: num(row.reserved_micros),
    usedTokens: num(row.used_tokens),
    reservedTokens: num(row.reserved_tokens),
  };
}

/**
 * The same for an hour's cap (max_cost_per_hour_usd per agent+policy+clock
 * hour): the hour's row is made first if missing (idempotent), then locked
 * and granted from. Returns the micro-dollars granted, or undefined.
 */
export async function leaseOnHour(
  db: DbOrTx,
  hourStart: Date,
  capMicros: number,
  r: LeaseRequest,
): Promise<number | undefined> {
  const hour = hourStart.toISOString();
  await db.execute(sql`
    insert into hourly_spend (team_id, agent_id, policy_id, hour_start, cost_micros, reserved_micros)
    values (${r.teamId}, ${r.agentId}, ${r.policyId}, ${hour}::timestamptz, 0, 0)
    on conflict (agent_id, policy_id, hour_start) do nothing`);
  const result = await db.execute(sql`
    with cur as (
      select agent_id, policy_id, hour_start, cost_micros, reserved_micros from hourly_spend
      where agent_id = ${r.agentId} and policy_id = ${r.policyId} and hour_start = ${hour}::timestamptz
      for update
    ), g as (
      select agent_id, policy_id, hour_start,
        least(${r.wantMicros}::bigint,
          greatest(${r.needMicros}::bigint, (${capMicros}::bigint - cost_micros - reserved_micros) / ${SHARE_DIVISOR})) as micros
      from cur where cost_micros + reserved_micros + ${r.needMicros}::bigint <= ${capMicros}::bigint
    ), u as (
      update hourly_spend h set reserved_micros = h.reserved_micros + g.micros from g
      where h.agent_id = g.agent_id and h.policy_id = g.policy_id and h.hour_start = g.hour_start
      returning g.micros as granted_micros
    ), l as (${leaseRow(r, 'hour', null, hour, sql`0`)})
    select u.granted_micros, (select count(*) from l) as leased from u`);
  const row = first(result);
  return row ? num(row.granted_micros) : undefined;
}

/**
 * The same for a team's credits (enforcement): granted from balance − held
 * of its account, in micro-credits. A team without an account has nothing.
 */
export async function leaseOnCredits(db: DbOrTx, r: LeaseRequest): Promise<number | undefined> {
  const result = await db.execute(sql`
    with cur as (
      select team_id, balance, held from credit_accounts where team_id = ${r.teamId} for update
    ), g as (
      select team_id,
        least(${r.wantMicros}::bigint, greatest(${r.needMicros}::bigint, (balance - held) / ${SHARE_DIVISOR})) as micros
      from cur where held + ${r.needMicros}::bigint <= balance
    ), u as (
      update credit_accounts c set held = c.held + g.micros from g where c.team_id = g.team_id
      returning g.micros as granted_micros
    ), l as (${leaseRow(r, 'credits', null, null, sql`0`)})
    select u.granted_micros, (select count(*) from l) as leased from u`);
  const row = first(result);
  return row ? num(row.granted_micros) : undefined;
}

/** What a team's credits look like now, to say why a lease was refused (micro-credits). */
export async function creditsState(db: DbOrTx, teamId: TeamId) {
  const [row] = await db
    .select({ balance: creditAccounts.balance, held: creditAccounts.held })
    .from(creditAccounts)
    .where(eq(creditAccounts.teamId, teamId));
  return row ?? { balance: 0, held: 0 };
}

/** What the run looks like now, to say why a lease was refused. */
export async function runBudgetState(db: DbOrTx, teamId: TeamId, runId: RunId, agentId: string) {
  const [row] = await db
    .select({
      status: runs.status,
      hardLimitMicros: runs.hardLimitMicros,
      hardLimitTokens: runs.hardLimitTokens,
      costMicros: runs.costMicros,
      reservedMicros: runs.reservedMicros,
      reservedTokens: runs.reservedTokens,
      usedTokens: sql<string>`${runs.inputTokens} + ${runs.outputTokens} + ${runs.cacheReadTokens} + ${runs.cacheCreationTokens}`,
    })
    .from(runs)
    .where(and(eq(runs.id, runId), eq(runs.teamId, teamId), eq(runs.agentId, agentId)));
  return row ? { ...row, usedTokens: Number(row.usedTokens) } : undefined;
}

export interface LeaseTarget {
  scope: 'run' | 'hour' | 'credits';
  teamId: TeamId;
  runId: RunId | null;
  agentId: string;
  policyId: string;
  hourStart: Date | null;
}

/**
 * Takes `micros`/`tokens` out of what a run or an hour holds for leases:
 * spent money moving to cost (the caller adds that), or headroom given back.
 * Never below zero.
 */
export async function releaseHeld(
  db: DbOrTx,
  target: LeaseTarget,
  micros: number,
  tokens: number,
): Promise<void> {
  if (micros <= 0 && tokens <= 0) return;
  if (target.scope === 'credits') {
    await db
      .update(creditAccounts)
      .set({ held: sql`greatest(${creditAccounts.held} - ${micros}::bigint, 0)` })
      .where(eq(creditAccounts.teamId, target.teamId));
  } else if (target.scope === 'run' && target.runId !== null) {
    await db
      .update(runs)
      .set({
        reservedMicros: sql`greatest(${runs.reservedMicros} - ${micros}::bigint, 0)`,
        reservedTokens: sql`greatest(${runs.reservedTokens} - ${tokens}::bigint, 0)`,
      })
      .where(and(eq(runs.teamId, target.teamId), eq(runs.id, target.runId)));
  } else if (target.hourStart !== null) {
    await db
      .update(hourlySpend)
      .set({ reservedMicros: sql`greatest(${hourlySpend.reservedMicros} - ${micros}::bigint, 0)` })
      .where(
        and(
          eq(hourlySpend.teamId, target.teamId),
          eq(hourlySpend.agentId, target.agentId),
          eq(hourlySpend.policyId, target.policyId),
          eq(hourlySpend.hourStart, target.hourStart),
        ),
      );
  }
}

/** Gives a whole lease back: what it held leaves its run's, hour's or team credits' reserved totals, the row goes. */
export async function dropLease(db: DbOrTx, leaseId: string): Promise<LeaseRow | undefined> {
  const [row] = await db.delete(budgetLeases).where(eq(budgetLeases.id, leaseId)).returning();
  if (row) await releaseHeld(db, row, row.amountMicros, row.tokens);
  return row;
}

/** Marks this holder alive (its leases are not charged as abandoned); returns the ids it still has. */
export async function renewLeases(db: DbOrTx, holder: string, at: Date): Promise<string[]> {
  const rows = await db
    .update(budgetLeases)
    .set({ renewedAt: at })
    .where(eq(budgetLeases.holder, holder))
    .returning({ id: budgetLeases.id });
  return rows.map((r) => r.id);
}

/** Leases of holders that stopped renewing before `before` (all but `except`'s), oldest first. */
export async function abandonedLeases(
  db: DbOrTx,
  before: Date,
  except: string,
  limit: number,
): Promise<LeaseRow[]> {
  return db
    .select()
    .from(budgetLeases)
    .where(and(lt(budgetLeases.renewedAt, before), sql`${budgetLeases.holder} <> ${except}`))
    .orderBy(budgetLeases.renewedAt)
    .limit(limit);
}

/** Deletes the given leases, returning those this call took (a lease is charged by one sweeper only). */
export async function takeLeases(db: DbOrTx, ids: string[]): Promise<LeaseRow[]> {
  if (ids.length === 0) return [];
  return db.delete(budgetLeases).where(inArray(budgetLeases.id, ids)).returning();
}

/** Adds spend to the hour's row (made when missing) and takes `releasedMicros` out of its reserved. */
export async function settleHour(
  db: DbOrTx,
  r: { teamId: TeamId; agentId: string; policyId: string; hourStart: Date },
  releasedMicros: number,
  costMicros: number,
): Promise<void> {
  await db
    .insert(hourlySpend)
    .values({
      teamId: r.teamId,
      agentId: r.agentId,
      policyId: r.policyId,
      hourStart: r.hourStart,
      costMicros,
      reservedMicros: 0,
    })
    .onConflictDoUpdate({
      target: [hourlySpend.agentId, hourlySpend.policyId, hourlySpend.hourStart],
      set: {
        costMicros: sql`${hourlySpend.costMicros} + ${costMicros}::bigint`,
        reservedMicros: sql`greatest(${hourlySpend.reservedMicros} - ${releasedMicros}::bigint, 0)`,
      },
    });
}

/**
 * An abandoned lease charged to its run in full: what it held moves from the
 * run's reserved totals to its cost (the calls it covered may have cost that
 * much). Answers the run after the charge.
 */
export async function chargeLeaseToRun(
  db: DbOrTx,
  lease: Pick<LeaseRow, 'teamId' | 'amountMicros' | 'tokens'> & { runId: RunId },
  at: Date,
): Promise<RunRow | undefined> {
  const [run] = await db
    .update(runs)
    .set({
      reservedMicros: sql`greatest(${runs.reservedMicros} - ${lease.amountMicros}::bigint, 0)`,
      reservedTokens: sql`greatest(${runs.reservedTokens} - ${lease.tokens}::bigint, 0)`,
      costMicros: sql`${runs.costMicros} + ${lease.amountMicros}::bigint`,
      updatedAt: at,
    })
    .where(and(eq(runs.teamId, lease.teamId), eq(runs.id, lease.runId)))
    .returning();
  return run;
}

import { and, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { budgetReservations, hourlySpend, runs } from '../../db/schema/index.ts';

// Budget reservations: the statements that make budgets hold under concurrency.

export type ReservationRow = typeof budgetReservations.$inferSelect;

export interface ReserveStatement {
  reservationId: string;
  teamId: string;
  runId: string;
  agentId: string;
  policyId: string;
  hourStart: Date;
  amountMicros: number;
  tokens: number;
  model: string | null;
  at: Date;
  /** Also count the amount into the hour's reserved spend (unconditionally). */
  countHour: boolean;
}

export interface ReservedRun {
  hardLimitMicros: number | null;
  hardLimitTokens: number | null;
  costMicros: number;
  reservedMicros: number;
  usedTokens: number;
  reservedTokens: number;
}

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/**
 * Reserves against the run in ONE statement: the conditional UPDATE adds the
 * amount only while the run is running and spent + outstanding + amount fits
 * under the hard limits; the reservation row (and, when asked, the hour's
 * reserved spend) is written from the UPDATE's RETURNING, so either all of it
 * happens or none of it does. Concurrent callers queue on the run's row lock
 * and each re-checks the condition against the committed totals of the ones
 * before it (READ COMMITTED re-evaluates the WHERE on the locked row), so no
 * interleaving admits more than the limit.
 */
export async function reserveOnRun(db: DbOrTx, s: ReserveStatement): Promise<ReservedRun | undefined> {
  const hour = s.hourStart.toISOString();
  const at = s.at.toISOString();
  const hourCte = s.countHour
    ? sql`, h as (
        insert into hourly_spend (team_id, agent_id, policy_id, hour_start, cost_micros, reserved_micros)
        select r.team_id, ${s.agentId}, ${s.policyId}, ${hour}::timestamptz, 0, ${s.amountMicros}::bigint from r
        on conflict (agent_id, policy_id, hour_start)
        do update set reserved_micros = hourly_spend.reserved_micros + excluded.reserved_micros
        returning 1
      )`
    : sql``;
  const result = await db.execute(sql`
    with r as (
      update runs set
        reserved_micros = reserved_micros + ${s.amountMicros}::bigint,
        reserved_tokens = reserved_tokens + ${s.tokens}::bigint
      where id = ${s.runId} and team_id = ${s.teamId} and agent_id = ${s.agentId} and status = 'running'
        and (hard_limit_micros is null
             or cost_micros + reserved_micros + ${s.amountMicros}::bigint <= hard_limit_micros)
        and (hard_limit_tokens is null
             or input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens
                + reserved_tokens + ${s.tokens}::bigint <= hard_limit_tokens)
      returning team_id, hard_limit_micros, hard_limit_tokens, cost_micros, reserved_micros, reserved_tokens,
        input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens as used_tokens
    )${hourCte}, ins as (
      insert into budget_reservations
        (id, team_id, run_id, agent_id, policy_id, hour_start, amount_micros, tokens, model, created_at)
      select ${s.reservationId}, r.team_id, ${s.runId}, ${s.agentId}, ${s.policyId}, ${hour}::timestamptz,
        ${s.amountMicros}::bigint, ${s.tokens}::bigint, ${s.model}, ${at}::timestamptz
      from r
      returning id
    )
    select r.*, (select count(*) from ins) as inserted${s.countHour ? sql`, (select count(*) from h) as hour_rows` : sql``}
    from r`);
  const row = (result as unknown as { rows: Array<Record<string, unknown>> }).rows[0];
  if (!row) return undefined;
  return {
    hardLimitMicros: numOrNull(row.hard_limit_micros),
    hardLimitTokens: numOrNull(row.hard_limit_tokens),
    costMicros: num(row.cost_micros),
    reservedMicros: num(row.reserved_micros),
    usedTokens: num(row.used_tokens),
    reservedTokens: num(row.reserved_tokens),
  };
}

/**
 * Adds `amountMicros` to the hour's reserved spend only if spent + reserved +
 * amount stays within `capMicros`. The upsert takes the row's lock (or the
 * unique index's, for a new hour) and evaluates the condition on the latest
 * committed version, so concurrent reservers of one agent+policy+hour queue.
 */
export async function reserveOnHour(
  db: DbOrTx,
  s: {
    teamId: string;
    agentId: string;
    policyId: string;
    hourStart: Date;
    amountMicros: number;
    capMicros: number;
  },
): Promise<{ costMicros: number; reservedMicros: number } | undefined> {
  const result = await db.execute(sql`
    insert into hourly_spend (team_id, agent_id, policy_id, hour_start, cost_micros, reserved_micros)
    select ${s.teamId}, ${s.agentId}, ${s.policyId}, ${s.hourStart.toISOString()}::timestamptz, 0, ${s.amountMicros}::bigint
    where ${s.amountMicros}::bigint <= ${s.capMicros}::bigint
    on conflict (agent_id, policy_id, hour_start)
    do update set reserved_micros = hourly_spend.reserved_micros + excluded.reserved_micros
    where hourly_spend.cost_micros + hourly_spend.reserved_micros + excluded.reserved_micros <= ${s.capMicros}::bigint
    returning cost_micros, reserved_micros`);
  const row = (result as unknown as { rows: Array<Record<string, unknown>> }).rows[0];
  return row ? { costMicros: num(row.cost_micros), reservedMicros: num(row.reserved_micros) } : undefined;
}

/** What the run looks like now, to say why a reservation was refused. */
export async function runBudgetState(db: DbOrTx, teamId: string, runId: string, agentId: string) {
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

/** Takes the reservation out (the delete is the claim: a settle and a sweep cannot both get it). */
export async function takeReservation(db: DbOrTx, id: string): Promise<ReservationRow | undefined> {
  const [row] = await db.delete(budgetReservations).where(eq(budgetReservations.id, id)).returning();
  return row;
}

/** Reservations created before `before`, oldest first. */
export async function staleReservationIds(db: DbOrTx, before: Date, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: budgetReservations.id })
    .from(budgetReservations)
    .where(sql`${budgetReservations.createdAt} < ${before.toISOString()}::timestamptz`)
    .orderBy(budgetReservations.createdAt)
    .limit(limit);
  return rows.map((r) => r.id);
}

/** Moves a reservation's amount out of the hour's reserved spend and `costMicros` into its spent. */
export async function settleHour(
  db: DbOrTx,
  r: { teamId: string; agentId: string; policyId: string; hourStart: Date },
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

/** Gives a reservation's amount back to the run (a call that never reached a provider). */
export async function releaseOnRun(db: DbOrTx, r: ReservationRow, at: Date): Promise<void> {
  await db
    .update(runs)
    .set({
      reservedMicros: sql`greatest(${runs.reservedMicros} - ${r.amountMicros}::bigint, 0)`,
      reservedTokens: sql`greatest(${runs.reservedTokens} - ${r.tokens}::bigint, 0)`,
      updatedAt: at,
    })
    .where(eq(runs.id, r.runId));
}

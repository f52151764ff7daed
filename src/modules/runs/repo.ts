import { and, asc, desc, eq, gt, gte, inArray, isNotNull, isNull, lt, ne, type SQL, sql } from 'drizzle-orm';
import type { AgentId, RunId, StepId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { eqIfGiven } from '../../db/query-parts.ts';
import { rollupUpsertSql } from '../../db/rollups.ts';
import { ledgerEntries, runs, steps } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';

// Runs, steps and the ledger: SQL only, scoped by team. Budget leases are in
// budget-repo.ts, the step writer's batch statement in step-batch-repo.ts.

export type RunRow = typeof runs.$inferSelect;
export type StepRow = typeof steps.$inferSelect;
export type LedgerRow = typeof ledgerEntries.$inferSelect;
export type RunStatus = RunRow['status'];

/** What a change to a run tells the caches (the resolver's, the lease book's). */
export type RunProgress = Pick<
  RunRow,
  'id' | 'status' | 'agentId' | 'policyId' | 'stepCount' | 'lastStepAt' | 'startedAt'
>;

export function insertRun(db: DbOrTx, row: typeof runs.$inferInsert): Promise<RunRow> {
  return insertOne(db, runs, row);
}

/**
 * System-only: any team's run by id, locked for the caller's transaction. For
 * the step writer's after-commit checks, whose ids come from the rows the
 * batch statement itself just updated, never from a caller.
 */
export async function lockRunForSystem(db: DbOrTx, id: RunId): Promise<RunRow | undefined> {
  const [row] = await db.select().from(runs).where(eq(runs.id, id)).for('update');
  return row;
}

export function findRun(db: DbOrTx, teamId: TeamId, id: RunId): Promise<RunRow | undefined> {
  return findInTeam(db, runs, teamId, id);
}

/** The agent's newest run (by `newestBy`) of those where every one of `conditions` holds. */
async function newestRunOfAgent(
  db: DbOrTx,
  teamId: TeamId,
  agentId: string,
  conditions: SQL[],
  newestBy: typeof runs.id | typeof runs.endedAt = runs.id,
): Promise<RunRow | undefined> {
  const [row] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.teamId, teamId), eq(runs.agentId, agentId), ...conditions))
    .orderBy(desc(newestBy))
    .limit(1);
  return row;
}

/** Runs the agent's own calls may join or end: all but tasks' runs, which their runner owns. */
const notATaskRun = ne(runs.creationMethod, 'task');

/** The agent's newest running run under `policyId` (implicit grouping joins it). */
export function latestRunningRun(db: DbOrTx, teamId: TeamId, agentId: string, policyId: string) {
  return newestRunOfAgent(db, teamId, agentId, [
    eq(runs.status, 'running'),
    eq(runs.policyId, policyId),
    notATaskRun,
  ]);
}

/** The agent's newest running run under any policy (GET /v1/runs/current). */
export function latestRunningRunOfAgent(db: DbOrTx, teamId: TeamId, agentId: string) {
  return newestRunOfAgent(db, teamId, agentId, [eq(runs.status, 'running'), notATaskRun]);
}

/** A force-stop of this agent+policy that ended after `since` and was not lifted: it blocks implicit runs. */
export function blockingForceStop(
  db: DbOrTx,
  teamId: TeamId,
  agentId: string,
  policyId: string,
  since: Date,
) {
  return newestRunOfAgent(
    db,
    teamId,
    agentId,
    [
      eq(runs.status, 'force_stopped'),
      eq(runs.policyId, policyId),
      isNull(runs.forceStopLiftedAt),
      gt(runs.endedAt, since),
    ],
    runs.endedAt,
  );
}

export interface RunEnding {
  status: Exclude<RunStatus, 'running'>;
  endedReason: string;
  completionReason: 'explicit' | 'idle_timeout' | 'server_restart' | null;
  /** Set by the caller (completion body); wins over everything. */
  outcome?: 'success' | 'partial' | 'failed' | null;
  outcomeReason?: string | null;
  /** The outcome when neither the caller, the run, nor the policy's outcome_defaults give one. */
  fallbackOutcome: 'success' | null;
  metadata?: Record<string, unknown>;
  at: Date;
}

/**
 * Which running runs to end: one run, every run of an agent (but its tasks'),
 * or the idle ones of every team (a sweep; tasks' runs end with their task).
 */
export type RunsToEnd =
  | { run: RunId; teamId: TeamId }
  | { agentId: AgentId | string; teamId: TeamId }
  | { idleBefore: Date; defaultIdleTimeoutSec: number };

function runsToEnd(which: RunsToEnd): SQL {
  if ('run' in which) return and(eq(runs.teamId, which.teamId), eq(runs.id, which.run))!;
  if ('agentId' in which)
    return and(eq(runs.teamId, which.teamId), eq(runs.agentId, which.agentId), notATaskRun)!;
  return idleRunsBefore(which.idleBefore, which.defaultIdleTimeoutSec);
}

/**
 * Running runs idle past their policy's run_idle_timeout_seconds (default 300)
 * and with nothing in flight: an outstanding reservation means a call is still
 * going (a stuck one is charged by the reservation sweep first).
 */
function idleRunsBefore(now: Date, defaultTimeoutSec: number): SQL {
  const timeout = sql`coalesce((${runs.policySnapshot} -> 'implicit_run_grouping' ->> 'run_idle_timeout_seconds')::int, ${defaultTimeoutSec})`;
  return and(
    notATaskRun,
    eq(runs.reservedMicros, 0),
    eq(runs.reservedTokens, 0),
    sql`coalesce(${runs.lastStepAt}, ${runs.startedAt}) + make_interval(secs => ${timeout}) < ${now.toISOString()}::timestamptz`,
  )!;
}

/**
 * Ends the running runs `which` names, in one statement. The outcome is
 * Rungate's COALESCE: the caller's, else one already set on the run (an agent's
 * PATCH), else the run's policy outcome_defaults[ended_reason], else the fallback.
 */
export async function endRunningRuns(db: DbOrTx, which: RunsToEnd, e: RunEnding): Promise<RunRow[]> {
  const byPolicy = sql`(${runs.policySnapshot} -> 'outcome_defaults' ->> ${e.endedReason})`;
  return db
    .update(runs)
    .set({
      status: e.status,
      endedAt: e.at,
      endedReason: e.endedReason,
      completionReason: e.completionReason,
      outcome: sql`coalesce(${e.outcome ?? null}::text, ${runs.outcome}, ${byPolicy}, ${e.fallbackOutcome}::text)`,
      outcomeReason: sql`coalesce(${e.outcomeReason ?? null}::text, ${runs.outcomeReason})`,
      ...(e.metadata ? { metadata: sql`${runs.metadata} || ${JSON.stringify(e.metadata)}::jsonb` } : {}),
      updatedAt: e.at,
    })
    .where(and(runsToEnd(which), eq(runs.status, 'running')))
    .returning();
}

export async function mergeRunMetadata(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
  metadata: Record<string, unknown>,
  at: Date,
): Promise<void> {
  await db
    .update(runs)
    .set({ metadata: sql`${runs.metadata} || ${JSON.stringify(metadata)}::jsonb`, updatedAt: at })
    .where(and(eq(runs.teamId, teamId), eq(runs.id, runId)));
}

/** What a run's owner may change in any status (PATCH): its name and outcome; null clears. */
export interface RunDetails {
  name?: string | null;
  outcome?: RunRow['outcome'];
  outcomeReason?: string | null;
}

/** The one run's row after `set`; only this file builds the change (callers name what they change). */
async function updateOneRun(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
  set: Partial<Omit<RunRow, 'id' | 'teamId'>>,
  /** Only when this also holds. */
  onlyIf?: SQL,
): Promise<RunRow | undefined> {
  return updateOne(db, runs, and(eq(runs.teamId, teamId), eq(runs.id, runId), onlyIf), set);
}

export function updateRunDetails(db: DbOrTx, teamId: TeamId, runId: RunId, details: RunDetails, at: Date) {
  return updateOneRun(db, teamId, runId, { ...details, updatedAt: at });
}

/** Lifts a force-stop's cooldown (the run stays force_stopped). */
export function liftForceStop(db: DbOrTx, teamId: TeamId, runId: RunId, at: Date) {
  return updateOneRun(db, teamId, runId, { forceStopLiftedAt: at, updatedAt: at });
}

/** Flags the run's alert threshold as reached; undefined when it already was (the alert goes out once). */
export function flagAlertThreshold(db: DbOrTx, teamId: TeamId, runId: RunId, at: Date) {
  return updateOneRun(
    db,
    teamId,
    runId,
    { alertThresholdExceeded: true, alertSentAt: at, updatedAt: at },
    eq(runs.alertThresholdExceeded, false),
  );
}

export function setPrimaryModel(db: DbOrTx, teamId: TeamId, runId: RunId, model: string | null) {
  return updateOneRun(db, teamId, runId, { primaryModel: model });
}

export interface RunFilters {
  agentId?: string;
  status?: RunStatus;
  policyId?: string;
  since?: Date;
  until?: Date;
  hadGovernanceBlock?: boolean;
  hadFailover?: boolean;
}

/** Newest first; `beforeId` is the cursor (ids sort by creation time). */
export async function listRuns(
  db: DbOrTx,
  teamId: TeamId,
  f: RunFilters,
  beforeId: string | undefined,
  limit: number,
): Promise<RunRow[]> {
  const matching = and(
    eqIfGiven(runs.agentId, f.agentId),
    eqIfGiven(runs.status, f.status),
    eqIfGiven(runs.policyId, f.policyId),
    f.since !== undefined ? gte(runs.startedAt, f.since) : undefined,
    f.until !== undefined ? lt(runs.startedAt, f.until) : undefined,
    eqIfGiven(runs.hasGovernanceBlock, f.hadGovernanceBlock),
    eqIfGiven(runs.hadFailover, f.hadFailover),
  );
  return pageInTeam(db, runs, teamId, beforeId, limit, matching);
}

export async function insertStep(db: DbOrTx, row: typeof steps.$inferInsert): Promise<StepRow | undefined> {
  // A retried write (the first one committed but its answer was lost) must not duplicate the step.
  const [inserted] = await db.insert(steps).values(row).onConflictDoNothing({ target: steps.id }).returning();
  return inserted;
}

export function findStep(db: DbOrTx, teamId: TeamId, id: StepId): Promise<StepRow | undefined> {
  return findInTeam(db, steps, teamId, id);
}

export async function stepExists(db: DbOrTx, teamId: TeamId, id: StepId): Promise<boolean> {
  const [row] = await db
    .select({ id: steps.id })
    .from(steps)
    .where(and(eq(steps.teamId, teamId), eq(steps.id, id)));
  return row !== undefined;
}

/** Adds steps written outside the step batch (the sweep's charges) to the analytics rollups. */
export async function rollUpSteps(db: DbOrTx, teamId: TeamId, ids: readonly StepId[]): Promise<void> {
  if (ids.length === 0) return;
  for (const grain of ['hour', 'day'] as const) {
    // The source appears more than once in the upsert; drizzle renders an array as a parenthesised list.
    const text = rollupUpsertSql(grain, '(select * from steps where team_id = %TEAM% and id in %IDS%)');
    const parts = text.split(/(%TEAM%|%IDS%)/).map((part) => {
      if (part === '%TEAM%') return sql`${teamId}`;
      if (part === '%IDS%') return sql`${[...ids]}`;
      return sql.raw(part);
    });
    await db.execute(sql.join(parts));
  }
}

export async function insertLedgerEntry(db: DbOrTx, row: typeof ledgerEntries.$inferInsert): Promise<void> {
  await db.insert(ledgerEntries).values(row);
}

/** The ledger entry a charged step was written with. */
export async function findLedgerEntryOfStep(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
  stepId: StepId,
): Promise<LedgerRow | undefined> {
  const [row] = await db
    .select()
    .from(ledgerEntries)
    .where(
      and(eq(ledgerEntries.teamId, teamId), eq(ledgerEntries.runId, runId), eq(ledgerEntries.stepId, stepId)),
    );
  return row;
}

/** Oldest first by id (ids sort by the time they were minted); `afterId` is the cursor. */
export async function listSteps(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
  afterId: string | undefined,
  limit: number,
): Promise<StepRow[]> {
  return db
    .select()
    .from(steps)
    .where(
      and(
        eq(steps.teamId, teamId),
        eq(steps.runId, runId),
        afterId !== undefined ? gt(steps.id, afterId as StepId) : undefined,
      ),
    )
    .orderBy(asc(steps.id))
    .limit(limit);
}

export async function listLedger(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
  afterId: string | undefined,
  limit: number,
): Promise<LedgerRow[]> {
  return db
    .select()
    .from(ledgerEntries)
    .where(
      and(
        eq(ledgerEntries.teamId, teamId),
        eq(ledgerEntries.runId, runId),
        afterId !== undefined ? gt(ledgerEntries.id, afterId as LedgerRow['id']) : undefined,
      ),
    )
    .orderBy(asc(ledgerEntries.id))
    .limit(limit);
}

/** The model used by most llm_call steps of the run (ties: the one used last). */
export async function mostUsedModel(db: DbOrTx, teamId: TeamId, runId: RunId): Promise<string | null> {
  const [row] = await db
    .select({ model: steps.model })
    .from(steps)
    .where(
      and(
        eq(steps.teamId, teamId),
        eq(steps.runId, runId),
        inArray(steps.type, ['llm_call', 'dry_run']),
        inArray(steps.status, ['success', 'error', 'timeout']),
        isNotNull(steps.model),
      ),
    )
    .groupBy(steps.model)
    .orderBy(desc(sql`count(*)`), desc(sql`max(${steps.id})`))
    .limit(1);
  return row?.model ?? null;
}

/** Governance blocks of the run by code, most frequent first. */
export async function governanceEvents(
  db: DbOrTx,
  teamId: TeamId,
  runId: RunId,
): Promise<Array<{ type: string; count: number }>> {
  const rows = await db
    .select({ type: steps.errorKind, count: sql<string>`count(*)` })
    .from(steps)
    .where(
      and(
        eq(steps.teamId, teamId),
        eq(steps.runId, runId),
        inArray(steps.status, ['budget_blocked', 'policy_blocked']),
      ),
    )
    .groupBy(steps.errorKind)
    .orderBy(desc(sql`count(*)`), asc(steps.errorKind));
  return rows.map((r) => ({ type: r.type ?? 'unknown', count: Number(r.count) }));
}

/**
 * Serialises starting a run for one agent+policy across processes: a
 * transaction-scoped advisory lock, held until the caller's transaction ends.
 */
export async function lockAgentPolicyForRunStart(
  tx: DbOrTx,
  agentId: string,
  policyId: string,
): Promise<void> {
  await tx.execute(
    sql`select pg_advisory_xact_lock(hashtextextended(${`paddock.run:${agentId}:${policyId}`}, 0))`,
  );
}

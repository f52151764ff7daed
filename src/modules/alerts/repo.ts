import { and, eq, isNull, lte, or, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { eqIfGiven } from '../../db/query-parts.ts';
import { type AlertConditionType, alertFirings, alertRules, teams } from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';

// Alert rules and their firings: SQL only (what rules measure: measures-repo.ts).

export type AlertRuleId = Id<'alr'>;
export type AlertRuleRow = typeof alertRules.$inferSelect;
export type AlertRulePatch = Partial<Omit<AlertRuleRow, 'id' | 'teamId' | 'createdAt' | 'createdBy'>>;
export type AlertFiringRow = typeof alertFirings.$inferSelect;

export function insertRule(db: DbOrTx, row: typeof alertRules.$inferInsert): Promise<AlertRuleRow> {
  return insertOne(db, alertRules, row);
}

export function findRule(db: DbOrTx, teamId: TeamId, id: AlertRuleId, lock?: 'update') {
  return findInTeam(db, alertRules, teamId, id, lock);
}

export interface RuleFilters {
  agentId?: string | undefined;
  conditionType?: AlertConditionType | undefined;
  status?: 'active' | 'disabled' | undefined;
}

export function listRules(
  db: DbOrTx,
  teamId: TeamId,
  filters: RuleFilters,
  beforeId: string | undefined,
  limit: number,
): Promise<AlertRuleRow[]> {
  const matching = and(
    eqIfGiven(alertRules.agentId, filters.agentId),
    eqIfGiven(alertRules.conditionType, filters.conditionType),
    eqIfGiven(alertRules.status, filters.status),
  );
  return pageInTeam(db, alertRules, teamId, beforeId, limit, matching);
}

export function updateRule(db: DbOrTx, teamId: TeamId, id: AlertRuleId, patch: AlertRulePatch) {
  return updateInTeam(db, alertRules, teamId, id, patch);
}

export async function deleteRule(db: DbOrTx, teamId: TeamId, id: AlertRuleId): Promise<void> {
  await deleteInTeam(db, alertRules, teamId, id);
}

// -- evaluation ---------------------------------------------------------------------------

/**
 * Active rules of live teams whose evaluation slot has come (never evaluated,
 * or last at or before `dueBefore`): never evaluated first, then oldest.
 */
export async function dueRules(db: DbOrTx, dueBefore: Date, limit: number): Promise<AlertRuleRow[]> {
  const rows = await db
    .select({ rule: alertRules })
    .from(alertRules)
    .innerJoin(teams, eq(teams.id, alertRules.teamId))
    .where(
      and(
        eq(alertRules.status, 'active'),
        isNull(teams.deletedAt),
        or(isNull(alertRules.lastEvaluatedAt), lte(alertRules.lastEvaluatedAt, dueBefore)),
      ),
    )
    .orderBy(sql`${alertRules.lastEvaluatedAt} asc nulls first`, alertRules.id)
    .limit(limit);
  return rows.map((r) => r.rule);
}

/**
 * Takes the rule's evaluation slot: one statement, so of two servers that
 * both found it due only one evaluates it. Undefined when another took it,
 * or the rule was disabled or deleted meanwhile.
 */
export async function claimEvaluation(
  db: DbOrTx,
  id: AlertRuleId,
  dueBefore: Date,
  now: Date,
): Promise<AlertRuleRow | undefined> {
  const [row] = await db
    .update(alertRules)
    .set({ lastEvaluatedAt: now })
    .where(
      and(
        eq(alertRules.id, id),
        eq(alertRules.status, 'active'),
        or(isNull(alertRules.lastEvaluatedAt), lte(alertRules.lastEvaluatedAt, dueBefore)),
      ),
    )
    .returning();
  return row;
}

/** Marks the rule triggered unless it is in its cooldown (triggered after `quietSince`): true when it fires. */
export async function markTriggered(
  db: DbOrTx,
  id: AlertRuleId,
  quietSince: Date,
  now: Date,
): Promise<boolean> {
  const rows = await db
    .update(alertRules)
    .set({ lastTriggeredAt: now })
    .where(
      and(
        eq(alertRules.id, id),
        eq(alertRules.status, 'active'),
        or(isNull(alertRules.lastTriggeredAt), lte(alertRules.lastTriggeredAt, quietSince)),
      ),
    )
    .returning({ id: alertRules.id });
  return rows.length > 0;
}

export function insertFiring(db: DbOrTx, row: typeof alertFirings.$inferInsert): Promise<AlertFiringRow> {
  return insertOne(db, alertFirings, row);
}

export function listFirings(
  db: DbOrTx,
  teamId: TeamId,
  ruleId: AlertRuleId | undefined,
  beforeId: string | undefined,
  limit: number,
): Promise<AlertFiringRow[]> {
  return pageInTeam(db, alertFirings, teamId, beforeId, limit, eqIfGiven(alertFirings.ruleId, ruleId));
}

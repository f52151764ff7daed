import { and, desc, eq, isNull, lte, or, sql } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor, rowsLocked } from '../../db/query-parts.ts';
import { type AlertConditionType, alertFirings, alertRules, teams } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

// Alert rules and their firings: SQL only (what rules measure: measures-repo.ts).

export type AlertRuleId = Id<'alr'>;
export type AlertRuleRow = typeof alertRules.$inferSelect;
export type AlertRulePatch = Partial<Omit<AlertRuleRow, 'id' | 'teamId' | 'createdAt' | 'createdBy'>>;
export type AlertFiringRow = typeof alertFirings.$inferSelect;

export async function insertRule(db: DbOrTx, row: typeof alertRules.$inferInsert): Promise<AlertRuleRow> {
  const [inserted] = await db.insert(alertRules).values(row).returning();
  return inserted!;
}

export async function findRule(
  db: DbOrTx,
  teamId: TeamId,
  id: AlertRuleId,
  lock?: 'update',
): Promise<AlertRuleRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select()
      .from(alertRules)
      .where(and(eq(alertRules.teamId, teamId), eq(alertRules.id, id))),
    lock,
  );
  return row;
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
  return db
    .select()
    .from(alertRules)
    .where(
      and(
        eq(alertRules.teamId, teamId),
        filters.agentId !== undefined ? eq(alertRules.agentId, filters.agentId) : undefined,
        filters.conditionType !== undefined ? eq(alertRules.conditionType, filters.conditionType) : undefined,
        filters.status !== undefined ? eq(alertRules.status, filters.status) : undefined,
        beforeCursor(alertRules.id, beforeId),
      ),
    )
    .orderBy(desc(alertRules.id))
    .limit(limit);
}

export function updateRule(
  db: DbOrTx,
  teamId: TeamId,
  id: AlertRuleId,
  patch: AlertRulePatch,
): Promise<AlertRuleRow | undefined> {
  return updateOne(db, alertRules, and(eq(alertRules.teamId, teamId), eq(alertRules.id, id)), patch);
}

export async function deleteRule(db: DbOrTx, teamId: TeamId, id: AlertRuleId): Promise<void> {
  await db.delete(alertRules).where(and(eq(alertRules.teamId, teamId), eq(alertRules.id, id)));
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

export async function insertFiring(
  db: DbOrTx,
  row: typeof alertFirings.$inferInsert,
): Promise<AlertFiringRow> {
  const [inserted] = await db.insert(alertFirings).values(row).returning();
  return inserted!;
}

export function listFirings(
  db: DbOrTx,
  teamId: TeamId,
  ruleId: AlertRuleId | undefined,
  beforeId: string | undefined,
  limit: number,
): Promise<AlertFiringRow[]> {
  return db
    .select()
    .from(alertFirings)
    .where(
      and(
        eq(alertFirings.teamId, teamId),
        ruleId !== undefined ? eq(alertFirings.ruleId, ruleId) : undefined,
        beforeCursor(alertFirings.id, beforeId),
      ),
    )
    .orderBy(desc(alertFirings.id))
    .limit(limit);
}

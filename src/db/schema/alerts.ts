import { index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

export const ALERT_CONDITION_TYPES = [
  'cost_threshold',
  'error_rate',
  'rate_limit_approaching',
  'approval_pending_timeout',
  'failover_rate',
  'task_failure_rate',
] as const;
export type AlertConditionType = (typeof ALERT_CONDITION_TYPES)[number];

/**
 * A team's alert rules (Rungate): a condition measured over a window, checked
 * by the alert evaluator (one leader across servers); a firing writes an
 * alert_firings row and the event alert.triggered, and e-mails notify_emails.
 */
export const alertRules = pgTable(
  'alert_rules',
  {
    id: text('id').primaryKey().$type<Id<'alr'>>(),
    teamId: teamIdColumn(),
    /** Unique per team (Rungate). */
    name: text('name').notNull(),
    description: text('description'),
    conditionType: text('condition_type', { enum: ALERT_CONDITION_TYPES }).notNull(),
    /** The type's keys only (docs/alerts.md), checked against its schema. */
    conditionConfig: jsonb('condition_config').$type<Record<string, number>>().notNull(),
    /** Null: every agent of the team. */
    agentId: text('agent_id'),
    windowSeconds: integer('window_seconds').notNull(),
    cooldownSeconds: integer('cooldown_seconds').notNull(),
    /** active | disabled */
    status: text('status', { enum: ['active', 'disabled'] }).notNull(),
    /** Team members' addresses, each sent one e-mail per firing. */
    notifyEmails: jsonb('notify_emails').$type<string[]>().notNull(),
    lastEvaluatedAt: ts('last_evaluated_at'),
    lastTriggeredAt: ts('last_triggered_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('alert_rules_team_name_key').on(t.teamId, t.name),
    index('alert_rules_team_idx').on(t.teamId, t.id),
    index('alert_rules_due_idx').on(t.status, t.lastEvaluatedAt),
  ],
);

/** What a rule measured when it fired: kept after the rule is deleted (rule_id names it). */
export interface AlertEvidence {
  value: number;
  threshold: number;
  unit: string;
  window_start: string;
  window_end: string;
  [key: string]: unknown;
}

/** One firing of a rule, with its evidence. */
export const alertFirings = pgTable(
  'alert_firings',
  {
    id: text('id').primaryKey().$type<Id<'alf'>>(),
    teamId: teamIdColumn(),
    /** No reference: a firing outlives its rule's deletion. */
    ruleId: text('rule_id').$type<Id<'alr'>>().notNull(),
    ruleName: text('rule_name').notNull(),
    conditionType: text('condition_type', { enum: ALERT_CONDITION_TYPES }).notNull(),
    agentId: text('agent_id'),
    evidence: jsonb('evidence').$type<AlertEvidence>().notNull(),
    firedAt: ts('fired_at').notNull(),
  },
  (t) => [
    index('alert_firings_team_idx').on(t.teamId, t.id),
    index('alert_firings_rule_idx').on(t.ruleId, t.id),
  ],
);

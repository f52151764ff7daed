import type { AlertFiringRow, AlertRuleRow } from './repo.ts';

export function ruleView(row: AlertRuleRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    description: row.description,
    condition_type: row.conditionType,
    condition_config: row.conditionConfig,
    agent_id: row.agentId,
    window_seconds: row.windowSeconds,
    cooldown_seconds: row.cooldownSeconds,
    notify_emails: row.notifyEmails,
    status: row.status,
    last_evaluated_at: row.lastEvaluatedAt?.toISOString() ?? null,
    last_triggered_at: row.lastTriggeredAt?.toISOString() ?? null,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function firingView(row: AlertFiringRow) {
  return {
    id: row.id,
    rule_id: row.ruleId,
    rule_name: row.ruleName,
    condition_type: row.conditionType,
    agent_id: row.agentId,
    evidence: row.evidence,
    fired_at: row.firedAt.toISOString(),
  };
}

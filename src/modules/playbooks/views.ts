import type { PlaybookRow, RunRow } from './repo.ts';

export function playbookView(row: PlaybookRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    agent_id: row.agentId,
    name: row.name,
    description: row.description,
    prompt: row.prompt,
    trigger: row.triggerType,
    schedule: row.schedule,
    timezone: row.timezone,
    interval_seconds: row.intervalSeconds,
    enabled: row.enabled,
    chain_config: row.chainConfig,
    success_criteria: row.successCriteria as Array<Record<string, unknown>> | null,
    notify_on: row.notifyOn,
    notification_channels: row.notificationChannels,
    webhook_token_prefix: row.webhookTokenPrefix,
    next_run_at: row.nextRunAt?.toISOString() ?? null,
    last_run_at: row.lastRunAt?.toISOString() ?? null,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

/** Create and rotate-token answer the token once, with the path to POST to. */
export function playbookWithToken(row: PlaybookRow, token: string | undefined) {
  const view = playbookView(row);
  return token === undefined
    ? view
    : { ...view, webhook_token: token, webhook_url: `/v1/hooks/playbooks/${token}` };
}

export function runView(row: RunRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    playbook_id: row.playbookId,
    agent_id: row.agentId,
    status: row.status,
    decision: row.decision,
    fired_by: row.firedBy,
    slot_at: row.slotAt?.toISOString() ?? null,
    task_id: row.taskId,
    workspace_id: row.workspaceId,
    chains_used: row.chainsUsed,
    turns: row.turns,
    cost_usd: row.costUsd,
    error: row.error,
    result_summary: row.resultSummary,
    created_at: row.createdAt.toISOString(),
    started_at: row.startedAt?.toISOString() ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    updated_at: row.updatedAt.toISOString(),
  };
}
export type RunView = ReturnType<typeof runView>;

// One file over 400 lines: the catalog of outbox events is one map, each
// type beside its payload, and the run-time list below it (which webhooks and
// channels check subscriptions against) is a Record over the same keys, so a
// type missing from either does not compile.

import type { ActivityLink } from '../../db/schema/activity.ts';

/** Event names (`noun.verb`) and their payloads: producers and consumers share this map. */
export interface EventMap {
  'user.signed_up': { email: string };
  /** Subject: the user; team: the session's active team. */
  'user.signed_in': { method: 'password' | 'signup' | 'magic_link' };
  // Platform admins' changes to an account (subject: the user; no team). Never its e-mail or name.
  'user.deactivated': Record<string, never>;
  'user.reactivated': Record<string, never>;
  'user.admin_granted': Record<string, never>;
  'user.admin_revoked': Record<string, never>;
  /** An erasure, by the user (DELETE /v1/me) or a platform admin: what went with it. */
  'user.deleted': { by: 'self' | 'platform_admin'; teams_deleted: string[]; api_keys_revoked: number };
  // E-mailed links (subject: the user). Never the token.
  'user.password_reset_requested': Record<string, never>;
  'user.password_reset': { sessions_ended: boolean };
  'session.magic_link_requested': Record<string, never>;
  'session.magic_link_used': Record<string, never>;
  'team.created': { name: string };
  'team.updated': { name: string };
  'team.deleted': Record<string, never>;
  /** A platform admin set the team's limits (docs/admin.md): the limits after the change. */
  'team.limits_updated': { limits: { max_concurrent_tasks?: number } };
  'member.added': { user_id: string; role: string };
  'member.role_changed': { user_id: string; from: string; to: string };
  'member.removed': { user_id: string };
  'member.ownership_transferred': { from_user_id: string; to_user_id: string };
  'invitation.created': { email: string; role: string };
  'invitation.resent': { email: string };
  'invitation.revoked': { email: string };
  'invitation.accepted': { email: string; user_id: string };
  'api_key.created': { name: string; scopes: string[] };
  'api_key.updated': { name: string };
  'api_key.revoked': { name: string };
  'api_key.rotated': { name: string; grace_hours: number };
  'api_key.rolled': { name: string };
  'api_key.deleted': { name: string };
  'policy.created': { name: string; version: number };
  'policy.updated': { name: string; version: number; changed_fields: string[] };
  'policy.deleted': { name: string; version: number };
  'policy.version_created': { name: string; version: number; changed_fields: string[] };
  'agent.created': { name: string; policy_id: string };
  'agent.updated': { name: string; changed_fields: string[] };
  'agent.disabled': { name: string };
  'agent.key_rotated': { name: string; key_prefix: string };
  'agent.deleted': { name: string };
  // An agent's presence (docs/queues.md, "Agents' presence"): pause and resume by people and keys;
  // online and offline are Paddock's (system), once per change, never per heartbeat.
  'agent.paused': { name: string };
  'agent.resumed': { name: string; paused_sec: number };
  /** offline_since: when the sweep found it silent; null for its first heartbeat ever. */
  'agent.online': { name: string; status: string; offline_since: string | null };
  'agent.offline': { name: string; last_heartbeat_at: string; heartbeat_interval_sec: number };
  // Provider keys: never the secret, sealed or not.
  'provider_key.created': { name: string; provider: string };
  'provider_key.updated': { name: string; changed_fields: string[] };
  'provider_key.rotated': { name: string };
  'provider_key.disabled': { name: string };
  'provider_key.enabled': { name: string };
  'provider_key.deleted': { name: string; remapped_to: string | null; remapped_agents: number };
  // Secrets: never the value, sealed or not.
  'secret.created': { name: string; scope: 'all' | 'agents'; agent_ids: string[] };
  'secret.updated': { name: string; changed_fields: string[]; value_version: number };
  'secret.rotated': { name: string; value_version: number };
  'secret.revealed': { name: string; value_version: number };
  'secret.deleted': { name: string };
  // Skills: names and sizes, never the content.
  'skill.created': { name: string; content_chars: number };
  'skill.updated': { name: string; changed_fields: string[] };
  'skill.deleted': { name: string };
  // Analytics (no subject): a retention cleanup of raw steps and ledger entries.
  'analytics.cleaned_up': { before: string; runs: number; steps: number; ledger_entries: number };
  // Files: names and sizes, never the bytes.
  'file.created': { filename: string; size_bytes: number };
  'file.deleted': { filename: string };
  // Memories (subject: the memory; clearing: the agent). Never the content.
  'memory.created': { agent_id: string; task_id: string | null; chars: number };
  'memory.updated': { agent_id: string; changed_fields: string[] };
  'memory.deleted': { agent_id: string };
  'memory.cleared': { agent_id: string; deleted: number };
  // Environments (subject: the environment) and their builds (subject: the version).
  'environment.created': { name: string; version: number; forked_from: string | null };
  'environment.updated': { name: string; changed_fields: string[]; version: number };
  'environment.archived': { name: string };
  'environment.build_succeeded': { environment_id: string; version: number; template: string };
  'environment.build_failed': { environment_id: string; version: number; code: string; message: string };
  // Runs (subject: the run). Money in USD.
  'run.started': { agent_id: string; policy_id: string; name: string | null; creation_method: string };
  'run.completed': {
    agent_id: string;
    ended_reason: string;
    completion_reason: string | null;
    outcome: string | null;
    cost_usd: number;
    step_count: number;
  };
  'run.budget_exceeded': {
    agent_id: string;
    ended_reason: string;
    outcome: string | null;
    cost_usd: number;
    hard_limit_usd: number | null;
    tokens_used: number;
    hard_limit_tokens: number | null;
  };
  'run.force_stopped': { agent_id: string; policy_id: string; outcome: string | null; cost_usd: number };
  'run.alert_threshold': {
    agent_id: string;
    cost_usd: number;
    alert_threshold_usd: number | null;
    tokens_used: number;
    alert_threshold_tokens: number | null;
    action: string;
  };
  'run.unblocked': { agent_id: string; policy_id: string; lifted_at: string };
  // Tasks (subject: the task). Never the prompt, the result or a tool's output.
  'task.created': { agent_id: string; agent_version: number; model: string };
  'task.started': { agent_id: string; attempt: number; run_id: string };
  'task.completed': { agent_id: string; run_id: string | null; cost_usd: number; turns: number };
  'task.failed': { agent_id: string; run_id: string | null; code: string; cost_usd: number; turns: number };
  'task.cancelled': { agent_id: string; from: string };
  'task.awaiting_approval': { agent_id: string; approval_ids: string[]; tools: string[] };
  'task.retried': { agent_id: string; attempt: number; reason: string };
  // Workspaces (subject: the workspace). Never a message or the conversation.
  'workspace.created': { agent_id: string; agent_version: number; task_id: string };
  'workspace.status_changed': { agent_id: string; from: string; to: string; reason: string };
  // Playbooks (subject: the playbook; runs: the run). Never the prompt or a webhook's body.
  'playbook.created': { name: string; agent_id: string; trigger: string; enabled: boolean };
  'playbook.updated': {
    name: string;
    changed_fields: string[];
    enabled: boolean;
    next_run_at: string | null;
  };
  'playbook.deleted': { name: string };
  'playbook.fired': { run_id: string; fired_by: string; slot_at: string | null; skipped: boolean };
  'playbook.scheduler_paused': Record<string, never>;
  'playbook.scheduler_resumed': Record<string, never>;
  'playbook_run.started': { playbook_id: string; task_id: string; workspace_id: string | null };
  'playbook_run.completed': {
    playbook_id: string;
    decision: string;
    chains_used: number;
    turns: number;
    cost_usd: number;
    /** The playbook's notification_channels, when its notify_on takes this end (the channels deliver to them). */
    notify_channel_ids?: string[];
  };
  'playbook_run.failed': {
    playbook_id: string;
    code: string;
    chains_used: number;
    cost_usd: number;
    notify_channel_ids?: string[];
  };
  'playbook_run.cancelled': { playbook_id: string; from: string; chains_used: number; cost_usd: number };
  'playbook_run.skipped': { playbook_id: string; active_run_id: string };
  // Approvals (subject: the approval).
  'approval.requested': { run_id: string; agent_id: string; tool_name: string; expires_at: string };
  'approval.approved': { run_id: string; agent_id: string; tool_name: string };
  'approval.rejected': { run_id: string; agent_id: string; tool_name: string; reason: string | null };
  /** Used by the replayed request (every approval of that request at once). */
  'approval.consumed': { run_id: string; agent_id: string; tool_name: string };
  // Capsules (subject: the capsule). Wrenn's capsule.state.changed carries from/to and a reason.
  'capsule.created': { template: string; host_id: string | null };
  'capsule.state_changed': { from: string; to: string; reason: string | null };
  'capsule.deleted': { active_seconds: number };
  'snapshot.created': { name: string; source_capsule_id: string; size_bytes: number };
  'snapshot.deleted': { name: string };
  // Hosts (subject: the host; team: a BYOC host's team, else none).
  'host.up': { address?: string; from?: string };
  'host.down': { reason?: string; from?: string };
  'host.deleted': { destroyed: number };
  // Webhooks (subject: the webhook). The URL's host only, never the secret.
  'webhook.created': { host: string; event_types: string[]; agent_id: string | null };
  'webhook.updated': { host: string; changed_fields: string[] };
  'webhook.deleted': { host: string };
  'webhook.enabled': { from: string };
  'webhook.disabled': { from: string };
  'webhook.failing': { failure_count: number };
  'webhook.secret_rotated': { previous_secret_expires_at: string };
  // Channels (subject: the channel). Never the config: it holds tokens.
  'channel.created': { name: string; provider: string; events: string[] };
  'channel.updated': { name: string; changed_fields: string[] };
  'channel.deleted': { name: string; provider: string };
  // Alert rules (subject: the rule). agent_id: the rule's agent, so an agent's webhooks get them.
  'alert_rule.created': { name: string; condition_type: string; agent_id: string | null };
  'alert_rule.updated': { name: string; changed_fields: string[]; agent_id: string | null; status?: string };
  'alert_rule.deleted': { name: string; agent_id: string | null };
  /** A rule fired (subject: the rule): what it measured (docs/alerts.md). */
  'alert.triggered': {
    rule_id: string;
    rule_name: string;
    condition_type: string;
    agent_id: string | null;
    firing_id: string;
    evidence: Record<string, unknown>;
  };
  // The work board (subject: the item). Titles, never descriptions or comments' text.
  'work_item.created': {
    title: string;
    type: string;
    priority: string;
    status: string;
    assignee_type: string | null;
    assignee_id: string | null;
  };
  'work_item.updated': { title: string; changed_fields: string[] };
  'work_item.status_changed': { title: string; from: string; to: string };
  'work_item.assigned': {
    title: string;
    assignee_type: string | null;
    assignee_id: string | null;
    previous_type: string | null;
    previous_id: string | null;
  };
  'work_item.commented': { title: string; comment_id: string; chars: number };
  'work_item.comment_deleted': { title: string; comment_id: string };
  'work_item.linked': { title: string; link_id: string; target_type: string; target_id: string };
  'work_item.unlinked': { title: string; link_id: string; target_type: string; target_id: string };
  'work_item.archived': { title: string };
  'work_item.unarchived': { title: string };
  /** What an agent reported doing (subject: the resource it names, if any); its activity entry is this event's. */
  'activity.reported': {
    action: string;
    summary: string;
    resource_type: string | null;
    resource_id: string | null;
    links: ActivityLink[];
    details: Record<string, unknown>;
  };
  // Work-queue jobs (subject: the job). Never the payload or the result.
  'queue_job.submitted': { queue: string; type: string; priority: number };
  'queue_job.completed': { queue: string; type: string; attempts: number; worker_id: string | null };
  'queue_job.failed': {
    queue: string;
    type: string;
    attempts: number;
    worker_id: string | null;
    reason: string;
  };
  'queue_job.retried': {
    queue: string;
    type: string;
    attempts: number;
    worker_id: string | null;
    reason: string;
  };
  'queue_job.cancelled': { queue: string; type: string; from: string };
  // Credits (subject: the team, or the transaction for credits.added). Amounts in credits.
  'credits.added': { type: string; amount: number; balance: number; reason: string };
  'credits.low': { balance: number; threshold: number };
  'credits.exhausted': { balance: number; enforced: boolean };
  // Billing (docs/billing.md; subject: the team, or the top-up). Amounts in USD, credits in credits.
  'billing.subscription_changed': {
    plan_id: string | null;
    status: string;
    previous_plan_id: string | null;
    previous_status: string | null;
  };
  'billing.top_up_started': { top_up_id: string; pack_id: string; credits: number; amount_usd: number };
  'billing.top_up_failed': {
    top_up_id: string | null;
    pack_id: string | null;
    code: string;
    message: string;
  };
  'billing.charge_refunded': {
    charge_id: string;
    payment_intent_id: string | null;
    amount_refunded: number;
    currency: string;
  };
  /** Never in the outbox: what POST /v1/webhooks/{id}/test sends. */
  'webhook.test': { webhook_id: string };
}
export type EventType = keyof EventMap;

/**
 * Every event type, at run time (webhook subscriptions are checked against
 * it). A Record, so an EventMap entry missing here does not compile.
 */
const EVENT_TYPE_SET: Record<EventType, true> = {
  'user.signed_up': true,
  'user.signed_in': true,
  'user.deactivated': true,
  'user.reactivated': true,
  'user.admin_granted': true,
  'user.admin_revoked': true,
  'user.deleted': true,
  'user.password_reset_requested': true,
  'user.password_reset': true,
  'session.magic_link_requested': true,
  'session.magic_link_used': true,
  'team.created': true,
  'team.updated': true,
  'team.deleted': true,
  'team.limits_updated': true,
  'member.added': true,
  'member.role_changed': true,
  'member.removed': true,
  'member.ownership_transferred': true,
  'invitation.created': true,
  'invitation.resent': true,
  'invitation.revoked': true,
  'invitation.accepted': true,
  'api_key.created': true,
  'api_key.updated': true,
  'api_key.revoked': true,
  'api_key.rotated': true,
  'api_key.rolled': true,
  'api_key.deleted': true,
  'policy.created': true,
  'policy.updated': true,
  'policy.deleted': true,
  'policy.version_created': true,
  'agent.created': true,
  'agent.updated': true,
  'agent.disabled': true,
  'agent.key_rotated': true,
  'agent.deleted': true,
  'agent.paused': true,
  'agent.resumed': true,
  'agent.online': true,
  'agent.offline': true,
  'provider_key.created': true,
  'provider_key.updated': true,
  'provider_key.rotated': true,
  'provider_key.disabled': true,
  'provider_key.enabled': true,
  'provider_key.deleted': true,
  'secret.created': true,
  'secret.updated': true,
  'secret.rotated': true,
  'secret.revealed': true,
  'secret.deleted': true,
  'skill.created': true,
  'skill.updated': true,
  'skill.deleted': true,
  'file.created': true,
  'file.deleted': true,
  'memory.created': true,
  'memory.updated': true,
  'memory.deleted': true,
  'memory.cleared': true,
  'environment.created': true,
  'environment.updated': true,
  'environment.archived': true,
  'environment.build_succeeded': true,
  'environment.build_failed': true,
  'run.started': true,
  'run.completed': true,
  'run.budget_exceeded': true,
  'run.force_stopped': true,
  'run.alert_threshold': true,
  'run.unblocked': true,
  'task.created': true,
  'task.started': true,
  'task.completed': true,
  'task.failed': true,
  'task.cancelled': true,
  'task.awaiting_approval': true,
  'task.retried': true,
  'workspace.created': true,
  'workspace.status_changed': true,
  'approval.requested': true,
  'approval.approved': true,
  'approval.rejected': true,
  'approval.consumed': true,
  'capsule.created': true,
  'capsule.state_changed': true,
  'capsule.deleted': true,
  'snapshot.created': true,
  'snapshot.deleted': true,
  'host.up': true,
  'host.down': true,
  'host.deleted': true,
  'webhook.created': true,
  'webhook.updated': true,
  'webhook.deleted': true,
  'webhook.enabled': true,
  'webhook.disabled': true,
  'webhook.failing': true,
  'webhook.secret_rotated': true,
  'webhook.test': true,
  'channel.created': true,
  'channel.updated': true,
  'channel.deleted': true,
  'analytics.cleaned_up': true,
  'alert_rule.created': true,
  'alert_rule.updated': true,
  'alert_rule.deleted': true,
  'alert.triggered': true,
  'playbook.created': true,
  'playbook.updated': true,
  'playbook.deleted': true,
  'playbook.fired': true,
  'playbook.scheduler_paused': true,
  'playbook.scheduler_resumed': true,
  'playbook_run.started': true,
  'playbook_run.completed': true,
  'playbook_run.failed': true,
  'playbook_run.cancelled': true,
  'playbook_run.skipped': true,
  'work_item.created': true,
  'work_item.updated': true,
  'work_item.status_changed': true,
  'work_item.assigned': true,
  'work_item.commented': true,
  'work_item.comment_deleted': true,
  'work_item.linked': true,
  'work_item.unlinked': true,
  'work_item.archived': true,
  'work_item.unarchived': true,
  'activity.reported': true,
  'queue_job.submitted': true,
  'queue_job.completed': true,
  'queue_job.failed': true,
  'queue_job.retried': true,
  'queue_job.cancelled': true,
  'credits.added': true,
  'credits.low': true,
  'credits.exhausted': true,
  'billing.subscription_changed': true,
  'billing.top_up_started': true,
  'billing.top_up_failed': true,
  'billing.charge_refunded': true,
};
export const EVENT_TYPES: readonly EventType[] = Object.keys(EVENT_TYPE_SET) as EventType[];

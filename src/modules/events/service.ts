import type { WithSubquery } from 'drizzle-orm';
import type { Clock } from '../../core/clock.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { type EventInsert, eventsAlongside, insertEvent } from './repo.ts';

/** Event names (`noun.verb`) and their payloads: producers and consumers share this map. */
export interface EventMap {
  'user.signed_up': { email: string };
  'team.created': { name: string };
  'team.updated': { name: string };
  'team.deleted': Record<string, never>;
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
  // Provider keys: never the secret, sealed or not.
  'provider_key.created': { name: string; provider: string };
  'provider_key.updated': { name: string; changed_fields: string[] };
  'provider_key.rotated': { name: string };
  'provider_key.disabled': { name: string };
  'provider_key.enabled': { name: string };
  'provider_key.deleted': { name: string; remapped_to: string | null; remapped_agents: number };
  // Secrets: never the value, sealed or not.
  'secret.created': { name: string; scope: 'all' | 'agents'; agent_ids: string[] };
  'secret.updated': { name: string; changed_fields: string[] };
  'secret.deleted': { name: string };
  // Skills: names and sizes, never the content.
  'skill.created': { name: string; content_chars: number };
  'skill.updated': { name: string; changed_fields: string[] };
  'skill.deleted': { name: string };
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
}
export type EventType = keyof EventMap;

export interface EventInput<T extends EventType> {
  teamId: TeamId | null;
  type: T;
  actorKind: string;
  actorId: string | null;
  subjectId?: string | null;
  data: EventMap[T];
}

export class EventsService {
  constructor(private readonly clock: Clock) {}

  /** Writes one outbox row; call it with the transaction that made the change. */
  async record<T extends EventType>(tx: DbOrTx, event: EventInput<T>): Promise<void> {
    await insertEvent(tx, this.row(event));
  }

  /**
   * Outbox rows for the statement that makes the change, as a common table
   * expression of it (its repository's `db.with(…)`): one statement, so the
   * change and its events commit together without a transaction. In order.
   */
  alongside(db: DbOrTx, events: Array<EventInput<EventType>>): WithSubquery {
    return eventsAlongside(
      db,
      events.map((e) => this.row(e)),
    );
  }

  private row<T extends EventType>(event: EventInput<T>): EventInsert {
    return {
      id: newId('evt'),
      teamId: event.teamId,
      type: event.type,
      actorKind: event.actorKind,
      actorId: event.actorId,
      subjectId: event.subjectId ?? null,
      data: event.data as Record<string, unknown>,
      createdAt: this.clock.now(),
    };
  }
}

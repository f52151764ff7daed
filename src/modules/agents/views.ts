import type { Static } from 'typebox';
import type { AgentPatch, AgentRow, WithBindings } from './repo.ts';
import type * as s from './schemas.ts';
import { SILENT_INTERVALS } from './schemas.ts';
import { definitionOf } from './versions.ts';

// The JSON an agent is answered as, and how an input maps onto its columns.

type UpdateAgentInput = Static<typeof s.UpdateAgentBody>;

type PresenceStatus = (typeof s.PRESENCE_STATUSES)[number];
type PresenceFields = Pick<
  AgentRow,
  'hosted' | 'heartbeatIntervalSec' | 'presenceStatus' | 'currentJob' | 'lastHeartbeatAt' | 'pausedAt'
>;

/** Whether the agent's last heartbeat is SILENT_INTERVALS intervals old or more at `now`. */
export function isSilent(a: Pick<AgentRow, 'heartbeatIntervalSec' | 'lastHeartbeatAt'>, now: Date): boolean {
  return (
    a.lastHeartbeatAt !== null &&
    now.getTime() - a.lastHeartbeatAt.getTime() >= a.heartbeatIntervalSec * SILENT_INTERVALS * 1000
  );
}

/** The agent's presence at `now`: paused over everything, then offline, then what it last reported. */
export function presenceView(a: PresenceFields, now: Date) {
  let status: PresenceStatus | null;
  if (a.pausedAt !== null) status = 'paused';
  else if (a.lastHeartbeatAt === null) status = a.hosted ? null : 'offline';
  else if (isSilent(a, now)) status = 'offline';
  else status = a.presenceStatus;
  return {
    status,
    last_heartbeat_at: a.lastHeartbeatAt?.toISOString() ?? null,
    current_job: a.currentJob,
  };
}

/** Never includes the key or its hash: the key is shown once, by create and rotate-key. */
export function agentView(a: AgentRow, now: Date) {
  return {
    id: a.id,
    team_id: a.teamId,
    name: a.name,
    description: a.description,
    status: a.status,
    policy_id: a.policyId,
    allowed_policies: a.allowedPolicies ?? null,
    provider_keys: a.providerKeys as Static<typeof s.ProviderKeys>,
    routing_override: (a.routingOverride ?? null) as Static<typeof s.RoutingOverride>,
    metadata: a.metadata,
    api_key_prefix: a.keyPrefix,
    version: a.currentVersion,
    hosted: a.hosted,
    heartbeat_interval_sec: a.heartbeatIntervalSec,
    paused_at: a.pausedAt?.toISOString() ?? null,
    presence: presenceView(a, now),
    ...definitionOf(a),
    created_by: a.createdBy,
    created_at: a.createdAt.toISOString(),
    updated_at: a.updatedAt.toISOString(),
  };
}
export type AgentView = ReturnType<typeof agentView>;

/** The fields of an input that map to columns (undefined = not sent). */
export function columnsOf(input: WithBindings<UpdateAgentInput>): AgentPatch {
  const patch: AgentPatch = {};
  if (input.name !== undefined) patch.name = input.name;
  if (input.description !== undefined) patch.description = input.description;
  if (input.policy_id !== undefined) patch.policyId = input.policy_id;
  if (input.allowed_policies !== undefined)
    patch.allowedPolicies = input.allowed_policies === null ? null : [...new Set(input.allowed_policies)];
  if (input.provider_keys !== undefined) patch.providerKeys = input.provider_keys;
  if (input.routing_override !== undefined) patch.routingOverride = input.routing_override;
  if (input.metadata !== undefined) patch.metadata = input.metadata;
  if (input.status !== undefined) patch.status = input.status;
  if (input.hosted !== undefined) patch.hosted = input.hosted;
  if (input.heartbeat_interval_sec !== undefined) patch.heartbeatIntervalSec = input.heartbeat_interval_sec;
  return patch;
}

/** Column → JSON field, for an update's changed_fields. */
export const COLUMN_FIELDS: Array<[keyof AgentPatch, string]> = [
  ['name', 'name'],
  ['description', 'description'],
  ['policyId', 'policy_id'],
  ['allowedPolicies', 'allowed_policies'],
  ['providerKeys', 'provider_keys'],
  ['routingOverride', 'routing_override'],
  ['metadata', 'metadata'],
  ['status', 'status'],
  ['hosted', 'hosted'],
  ['heartbeatIntervalSec', 'heartbeat_interval_sec'],
];

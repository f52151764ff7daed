import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import type { AgentId, Id, PolicyId, ProviderKeyId, RunId, StepId, TeamId } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { namedTeamRow, teamIdColumn } from './identity.ts';

type LedgerEntryId = Id<'led'>;

/** Money is stored as integer micro-dollars (1 USD = 1_000_000), so sums are exact. */
const micros = (name: string) => bigint(name, { mode: 'number' });
const tokens = (name: string) => bigint(name, { mode: 'number' }).notNull().default(0);

export const providerKeys = pgTable(
  'provider_keys',
  {
    ...namedTeamRow<ProviderKeyId>(),
    provider: text('provider', { enum: ['anthropic', 'openai', 'openai_compatible'] }).notNull(),
    baseUrl: text('base_url'),
    /** The sealed secret; null once deleted (scrubbed). */
    sealedKey: text('sealed_key'),
    /** The last 4 characters, for the masked form. */
    keyHint: text('key_hint'),
    status: text('status', { enum: ['active', 'disabled', 'deleted'] }).notNull(),
    /** Per-model price overrides: { "<model glob>": { input, output, cache_read, cache_write } } USD per Mtok. */
    priceOverrides: jsonb('price_overrides').$type<Record<string, Record<string, number>>>(),
    lastUsedAt: ts('last_used_at'),
    rotatedAt: ts('rotated_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('provider_keys_team_name_key').on(t.teamId, t.name).where(sql`status <> 'deleted'`),
    index('provider_keys_team_idx').on(t.teamId, t.id),
  ],
);

export const policies = pgTable(
  'policies',
  {
    ...namedTeamRow<PolicyId>(),
    /** The whole policy document (budget, models, tools, rate limits, routing …), defaults applied. */
    spec: jsonb('spec').$type<Record<string, unknown>>().notNull(),
    version: integer('version').notNull(),
    createdBy: text('created_by'),
    updatedBy: text('updated_by'),
    ...timestamps(),
    deletedAt: ts('deleted_at'),
  },
  (t) => [
    uniqueIndex('policies_team_name_key').on(t.teamId, t.name).where(sql`deleted_at is null`),
    index('policies_team_idx').on(t.teamId, t.id),
  ],
);

export const policyVersions = pgTable(
  'policy_versions',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    policyId: text('policy_id')
      .notNull()
      .references(() => policies.id),
    version: integer('version').notNull(),
    snapshot: jsonb('snapshot').$type<Record<string, unknown>>().notNull(),
    changedBy: text('changed_by'),
    changedFields: jsonb('changed_fields').$type<string[]>().notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [uniqueIndex('policy_versions_policy_version_key').on(t.policyId, t.version)],
);

export const agents = pgTable(
  'agents',
  {
    ...namedTeamRow<AgentId>(),
    description: text('description'),
    status: text('status', { enum: ['active', 'disabled'] }).notNull(),
    policyId: text('policy_id')
      .notNull()
      .references(() => policies.id),
    /** Policy ids this agent may pick per run; null = any. */
    allowedPolicies: jsonb('allowed_policies').$type<string[] | null>(),
    /** provider → key id, or [{key_id, weight}] for load balancing. */
    providerKeys: jsonb('provider_keys')
      .$type<Record<string, ProviderKeyId | Array<{ key_id: ProviderKeyId; weight: number }>>>()
      .notNull(),
    routingOverride: jsonb('routing_override').$type<Record<string, unknown> | null>(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    keyPrefix: text('key_prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    // The agent's definition, filled in by the task runner's issue (prompt,
    // model, tools, environment); the gateway identity works without it.
    definition: jsonb('definition').$type<Record<string, unknown> | null>(),
    environmentId: text('environment_id'),
    currentVersion: integer('current_version').notNull().default(1),
    /** false: the agent runs elsewhere (a laptop, a server, a CI runner) and reports its presence by heartbeats. */
    hosted: boolean('hosted').notNull().default(true),
    /** Silent for three of these, the agent is offline. */
    heartbeatIntervalSec: integer('heartbeat_interval_sec').notNull().default(30),
    /** What its last heartbeat reported: idle | working | blocked (null: it never beat). */
    presenceStatus: text('presence_status', { enum: ['idle', 'working', 'blocked'] }),
    currentJob: text('current_job'),
    lastHeartbeatAt: ts('last_heartbeat_at'),
    /** Set by the presence sweep when it found the agent silent (agent.offline); its next heartbeat clears it (agent.online). */
    offlineAt: ts('offline_at'),
    /** While set, the agent's claims from work queues get nothing and its queued tasks wait. */
    pausedAt: ts('paused_at'),
    createdBy: text('created_by'),
    ...timestamps(),
    deletedAt: ts('deleted_at'),
  },
  (t) => [
    uniqueIndex('agents_team_name_key').on(t.teamId, t.name).where(sql`deleted_at is null`),
    uniqueIndex('agents_key_hash_key').on(t.keyHash),
    index('agents_team_idx').on(t.teamId, t.id),
    index('agents_policy_idx').on(t.policyId),
    // The presence sweep's scan: agents that beat and are not yet marked offline, oldest beat first.
    index('agents_presence_idx')
      .on(t.lastHeartbeatAt)
      .where(sql`offline_at is null and last_heartbeat_at is not null and deleted_at is null`),
  ],
);

export const runs = pgTable(
  'runs',
  {
    id: text('id').$type<RunId>().primaryKey(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    agentId: text('agent_id')
      .notNull()
      .references(() => agents.id),
    policyId: text('policy_id').notNull(),
    policyName: text('policy_name').notNull(),
    /** The policy as it was when the run started: a live run is governed by it. */
    policySnapshot: jsonb('policy_snapshot').$type<Record<string, unknown>>().notNull(),
    name: text('name'),
    status: text('status', {
      enum: ['running', 'completed', 'failed', 'budget_exceeded', 'force_stopped'],
    }).notNull(),
    /** task: a task's own run, which the task runner starts and ends (never joined implicitly). */
    creationMethod: text('creation_method', { enum: ['explicit', 'implicit', 'sdk', 'task'] }).notNull(),
    endedReason: text('ended_reason'),
    completionReason: text('completion_reason'),
    outcome: text('outcome', { enum: ['success', 'partial', 'failed'] }),
    outcomeReason: text('outcome_reason'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    hardLimitMicros: micros('hard_limit_micros'),
    hardLimitTokens: bigint('hard_limit_tokens', { mode: 'number' }),
    alertThresholdMicros: micros('alert_threshold_micros'),
    alertThresholdTokens: bigint('alert_threshold_tokens', { mode: 'number' }),
    alertThresholdExceeded: boolean('alert_threshold_exceeded').notNull().default(false),
    alertSentAt: ts('alert_sent_at'),
    /** Every charge: model calls, reported tool costs, sandbox time (and abandoned leases, in full). */
    costMicros: micros('cost_micros').notNull().default(0),
    /** The part of cost_micros that is sandbox time (ledger entries of kind sandbox). */
    sandboxCostMicros: micros('sandbox_cost_micros').notNull().default(0),
    /** Held by budget leases (admitted calls in flight and headroom); see budget_leases. */
    reservedMicros: micros('reserved_micros').notNull().default(0),
    reservedTokens: tokens('reserved_tokens'),
    inputTokens: tokens('input_tokens'),
    outputTokens: tokens('output_tokens'),
    cacheReadTokens: tokens('cache_read_tokens'),
    cacheCreationTokens: tokens('cache_creation_tokens'),
    stepCount: integer('step_count').notNull().default(0),
    primaryModel: text('primary_model'),
    hasGovernanceBlock: boolean('has_governance_block').notNull().default(false),
    hadFailover: boolean('had_failover').notNull().default(false),
    forceStopLiftedAt: ts('force_stop_lifted_at'),
    /** The task this run belongs to, when Paddock's own runner made it. */
    taskId: text('task_id'),
    lastStepAt: ts('last_step_at'),
    startedAt: ts('started_at').notNull(),
    endedAt: ts('ended_at'),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [
    index('runs_team_idx').on(t.teamId, t.id),
    index('runs_agent_status_idx').on(t.agentId, t.status, t.id),
    index('runs_running_idx').on(t.status, t.lastStepAt).where(sql`status = 'running'`),
    // Analytics: runs started in a range.
    index('runs_team_started_idx').on(t.teamId, t.startedAt),
  ],
);

/**
 * What a step is: a model call, a tool call …, an interval of a task's sandbox
 * time (sandbox), or a token count asked of the gateway (count_tokens, free).
 */
export const STEP_TYPES = [
  'llm_call',
  'tool_call',
  'retry',
  'dry_run',
  'post_completion_sweep',
  'failover_transition',
  'sandbox',
  'count_tokens',
] as const;

export const steps = pgTable(
  'steps',
  {
    id: text('id').$type<StepId>().primaryKey(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    runId: text('run_id')
      .$type<RunId>()
      .notNull()
      .references(() => runs.id),
    agentId: text('agent_id').notNull(),
    type: text('type', { enum: STEP_TYPES }).notNull(),
    status: text('status', {
      enum: ['success', 'error', 'timeout', 'budget_blocked', 'policy_blocked'],
    }).notNull(),
    /** The tool's name on tool_call steps. */
    name: text('name'),
    provider: text('provider'),
    model: text('model'),
    providerKeyId: text('provider_key_id').$type<ProviderKeyId>(),
    streaming: boolean('streaming').notNull().default(false),
    request: jsonb('request').$type<unknown>(),
    response: jsonb('response').$type<unknown>(),
    inputTokens: tokens('input_tokens'),
    outputTokens: tokens('output_tokens'),
    cacheReadTokens: tokens('cache_read_tokens'),
    cacheCreationTokens: tokens('cache_creation_tokens'),
    costMicros: micros('cost_micros').notNull().default(0),
    latencyMs: integer('latency_ms'),
    routedFrom: text('routed_from'),
    failoverAttempts: integer('failover_attempts').notNull().default(0),
    failoverContext: jsonb('failover_context').$type<Record<string, unknown> | null>(),
    errorKind: text('error_kind'),
    errorMessage: text('error_message'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('steps_run_idx').on(t.runId, t.id), index('steps_team_idx').on(t.teamId, t.id)],
);

/**
 * Immutable cost record, one per charged step: a model call or reported tool
 * cost (kind model), or an interval of a task's capsule running time (kind
 * sandbox, with the facts it was priced from; its step has type sandbox).
 */
export const ledgerEntries = pgTable(
  'ledger_entries',
  {
    id: text('id').$type<LedgerEntryId>().primaryKey(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    runId: text('run_id').$type<RunId>().notNull(),
    stepId: text('step_id').$type<StepId>().notNull(),
    agentId: text('agent_id').notNull(),
    kind: text('kind', { enum: ['model', 'sandbox'] })
      .notNull()
      .default('model'),
    /** Sandbox entries: the capsule, the interval's length and the capsule's size it was priced at. */
    capsuleId: text('capsule_id'),
    sandboxSeconds: doublePrecision('sandbox_seconds'),
    vcpus: doublePrecision('vcpus'),
    memoryMb: integer('memory_mb'),
    provider: text('provider'),
    model: text('model'),
    providerKeyId: text('provider_key_id').$type<ProviderKeyId>(),
    inputTokens: tokens('input_tokens'),
    outputTokens: tokens('output_tokens'),
    cacheReadTokens: tokens('cache_read_tokens'),
    cacheCreationTokens: tokens('cache_creation_tokens'),
    costMicros: micros('cost_micros').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('ledger_run_idx').on(t.runId, t.id), index('ledger_team_idx').on(t.teamId, t.createdAt)],
);

/**
 * A share of a budget held by one server process (the holder): the run's
 * (scope "run") or the hour's (scope "hour") remaining money and tokens,
 * taken in one atomic statement and counted in the run's or hour's
 * reserved_*. The holder admits calls against it in memory and gives back
 * what it did not spend. A lease whose holder stopped renewing it is charged
 * in full by the sweep: calls it covered may have cost up to that much.
 */
export const budgetLeases = pgTable(
  'budget_leases',
  {
    id: text('id').primaryKey(),
    holder: text('holder').notNull(),
    scope: text('scope', { enum: ['run', 'hour', 'credits'] }).notNull(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    runId: text('run_id').$type<RunId>(),
    agentId: text('agent_id').notNull(),
    policyId: text('policy_id').notNull(),
    hourStart: ts('hour_start'),
    amountMicros: micros('amount_micros').notNull(),
    tokens: bigint('tokens', { mode: 'number' }).notNull(),
    createdAt: ts('created_at').notNull(),
    renewedAt: ts('renewed_at').notNull(),
  },
  (t) => [index('budget_leases_holder_idx').on(t.holder), index('budget_leases_renewed_idx').on(t.renewedAt)],
);

/** Spend per agent, policy and clock hour, for max_cost_per_hour_usd. */
export const hourlySpend = pgTable(
  'hourly_spend',
  {
    teamId: text('team_id').$type<TeamId>().notNull(),
    agentId: text('agent_id').notNull(),
    policyId: text('policy_id').notNull(),
    hourStart: ts('hour_start').notNull(),
    costMicros: micros('cost_micros').notNull().default(0),
    reservedMicros: micros('reserved_micros').notNull().default(0),
  },
  (t) => [uniqueIndex('hourly_spend_key').on(t.agentId, t.policyId, t.hourStart)],
);

export const approvals = pgTable(
  'approvals',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id').$type<TeamId>().notNull(),
    runId: text('run_id').notNull(),
    stepId: text('step_id'),
    agentId: text('agent_id').notNull(),
    policyId: text('policy_id').notNull(),
    toolName: text('tool_name').notNull(),
    /** Fingerprint of the request, so only the approved request is let through. */
    requestHash: text('request_hash').notNull(),
    requestSnapshot: jsonb('request_snapshot').$type<unknown>(),
    status: text('status', { enum: ['pending', 'approved', 'rejected', 'consumed'] }).notNull(),
    decidedBy: text('decided_by'),
    reason: text('reason'),
    decidedAt: ts('decided_at'),
    expiresAt: ts('expires_at').notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('approvals_team_idx').on(t.teamId, t.id), index('approvals_run_idx').on(t.runId)],
);

/**
 * An agent's definition as it was at one version: immutable, numbered per
 * agent. A change to what the agent runs (model, prompt, tools, limits,
 * environment …) makes the next one; tasks run a version.
 */
export const agentVersions = pgTable(
  'agent_versions',
  {
    id: text('id').primaryKey().$type<Id<'agtv'>>(),
    agentId: text('agent_id')
      .notNull()
      .references(() => agents.id)
      .$type<AgentId>(),
    teamId: teamIdColumn(),
    version: integer('version').notNull(),
    /** The definition (snake_case, as the API shows it), its environment version pinned. */
    definition: jsonb('definition').$type<Record<string, unknown>>().notNull(),
    createdBy: text('created_by'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [uniqueIndex('agent_versions_agent_version_key').on(t.agentId, t.version)],
);

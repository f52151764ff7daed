import type { LedgerRow, RunRow, StepRow } from './repo.ts';

// The JSON runs, steps and ledger entries are answered as. Money is stored in
// integer micro-dollars and answered in USD (cost_usd = micros / 1e6).

export const MICROS_PER_USD = 1_000_000;

export function usdOf(micros: number): number {
  return micros / MICROS_PER_USD;
}

export function microsOf(usd: number | null | undefined): number | null {
  return usd === null || usd === undefined ? null : Math.round(usd * MICROS_PER_USD);
}

function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString();
}

export function runTokens(r: RunRow) {
  return {
    input: r.inputTokens,
    output: r.outputTokens,
    cache_read: r.cacheReadTokens,
    cache_creation: r.cacheCreationTokens,
    total: r.inputTokens + r.outputTokens + r.cacheReadTokens + r.cacheCreationTokens,
  };
}

export function runView(r: RunRow) {
  return {
    id: r.id,
    team_id: r.teamId,
    agent_id: r.agentId,
    name: r.name,
    status: r.status,
    creation_method: r.creationMethod,
    ended_reason: r.endedReason,
    completion_reason: r.completionReason,
    outcome: r.outcome,
    outcome_reason: r.outcomeReason,
    metadata: r.metadata,
    policy_id: r.policyId,
    policy_name: r.policyName,
    policy_snapshot: r.policySnapshot,
    budget: {
      hard_limit_usd: r.hardLimitMicros === null ? null : usdOf(r.hardLimitMicros),
      hard_limit_tokens: r.hardLimitTokens,
      alert_threshold_usd: r.alertThresholdMicros === null ? null : usdOf(r.alertThresholdMicros),
      alert_threshold_tokens: r.alertThresholdTokens,
    },
    alert_threshold_exceeded: r.alertThresholdExceeded,
    alert_sent_at: iso(r.alertSentAt),
    cost_usd: usdOf(r.costMicros),
    sandbox_cost_usd: usdOf(r.sandboxCostMicros),
    reserved_usd: usdOf(r.reservedMicros),
    tokens_used: runTokens(r),
    step_count: r.stepCount,
    primary_model: r.primaryModel,
    has_governance_block: r.hasGovernanceBlock,
    had_failover: r.hadFailover,
    force_stop_lifted_at: iso(r.forceStopLiftedAt),
    task_id: r.taskId,
    last_step_at: iso(r.lastStepAt),
    started_at: r.startedAt.toISOString(),
    ended_at: iso(r.endedAt),
    updated_at: r.updatedAt.toISOString(),
  };
}
export type RunView = ReturnType<typeof runView>;

export function stepView(s: StepRow) {
  return {
    id: s.id,
    run_id: s.runId,
    agent_id: s.agentId,
    type: s.type,
    status: s.status,
    name: s.name,
    provider: s.provider,
    model: s.model,
    provider_key_id: s.providerKeyId,
    streaming: s.streaming,
    request: s.request ?? null,
    response: s.response ?? null,
    tokens: {
      input: s.inputTokens,
      output: s.outputTokens,
      cache_read: s.cacheReadTokens,
      cache_creation: s.cacheCreationTokens,
    },
    cost_usd: usdOf(s.costMicros),
    latency_ms: s.latencyMs,
    routed_from: s.routedFrom,
    failover_attempts: s.failoverAttempts,
    failover_context: s.failoverContext ?? null,
    error_kind: s.errorKind,
    error_message: s.errorMessage,
    created_at: s.createdAt.toISOString(),
  };
}

export function ledgerView(l: LedgerRow) {
  return {
    id: l.id,
    run_id: l.runId,
    step_id: l.stepId,
    agent_id: l.agentId,
    kind: l.kind,
    provider: l.provider,
    model: l.model,
    provider_key_id: l.providerKeyId,
    tokens:
      l.kind === 'sandbox'
        ? null
        : {
            input: l.inputTokens,
            output: l.outputTokens,
            cache_read: l.cacheReadTokens,
            cache_creation: l.cacheCreationTokens,
          },
    sandbox: sandboxOf(l),
    cost_usd: usdOf(l.costMicros),
    created_at: l.createdAt.toISOString(),
  };
}

function sandboxOf(l: LedgerRow) {
  if (l.kind !== 'sandbox') return null;
  const seconds = l.sandboxSeconds ?? 0;
  const vcpus = l.vcpus ?? 0;
  const memoryMb = l.memoryMb ?? 0;
  return {
    capsule_id: l.capsuleId ?? '',
    seconds,
    vcpus,
    memory_mb: memoryMb,
    vcpu_seconds: seconds * vcpus,
    gb_seconds: (seconds * memoryMb) / 1024,
  };
}

/** Ended reasons that come from a budget limit (completion summaries list them in limits_hit). */
const LIMIT_REASONS = new Set(['cost_limit', 'token_limit', 'alert_threshold_stop']);
/** Governance block codes that are limits rather than rules. */
const LIMIT_BLOCKS = new Set([
  'budget_exceeded',
  'hourly_budget_exceeded',
  'rate_limited',
  'runaway_prevention',
]);

/** Rungate's RunCompletionResponse. */
export function completionView(r: RunRow, governance: Array<{ type: string; count: number }>) {
  const limits = new Set<string>();
  if (r.endedReason !== null && LIMIT_REASONS.has(r.endedReason)) limits.add(r.endedReason);
  for (const g of governance) if (LIMIT_BLOCKS.has(g.type)) limits.add(g.type);
  return {
    id: r.id,
    name: r.name,
    status: r.status,
    ended_at: iso(r.endedAt),
    ended_reason: r.endedReason,
    completion_reason: r.completionReason,
    outcome: r.outcome,
    outcome_reason: r.outcomeReason,
    step_count: r.stepCount,
    cost_usd: usdOf(r.costMicros),
    tokens_used: runTokens(r),
    duration_ms: r.endedAt === null ? null : r.endedAt.getTime() - r.startedAt.getTime(),
    policy_name: r.policyName,
    primary_model: r.primaryModel,
    governance_events: governance,
    limits_hit: [...limits],
  };
}

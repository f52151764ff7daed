import { isId, newId, type ProviderKeyId, type RunId, type StepId, type TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import type * as repo from './repo.ts';
import type { StepInsert, TokenUsage } from './step-batch-repo.ts';

// What a call did, as a step: the record the proxy and the tool route hand
// in, the row it is written as, and the steps that move no money (requests
// refused by governance, failover bookkeeping).

export const NO_TOKENS: TokenUsage = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 };

export type StepType = repo.StepRow['type'];
export type StepStatus = repo.StepRow['status'];

/** One step to write: what a call (or a tool) did and what it cost. */
export interface StepRecord {
  /** Given by the proxy at admission (so response headers can name it); made here when absent (or not a step id). */
  stepId?: StepId | string;
  type: StepType;
  status: StepStatus;
  /** The tool's name (tool_call steps). */
  name?: string | null;
  provider: string | null;
  model: string | null;
  providerKeyId?: ProviderKeyId | null;
  streaming?: boolean;
  request?: unknown;
  response?: unknown;
  usage: TokenUsage;
  costMicros: number;
  latencyMs?: number | null;
  routedFrom?: string | null;
  failoverAttempts?: number;
  failoverContext?: Record<string, unknown> | null;
  errorKind?: string | null;
  errorMessage?: string | null;
  /** Sandbox steps: what the interval was priced from (its ledger entry is of kind sandbox). */
  sandbox?: SandboxFacts;
  /** Write a ledger entry; by default when the step cost money or used tokens. */
  ledger?: boolean;
  /** When the step happened (default: the clock at settle time). */
  at?: Date;
}

/** A sandbox charge's facts: the capsule, the interval's length and the size it ran at. */
export interface SandboxFacts {
  capsuleId: string;
  seconds: number;
  vcpus: number;
  memoryMb: number;
}

/** Who a step is for. */
export interface StepOwner {
  teamId: TeamId;
  runId: RunId;
  agentId: string;
}

/** The row a step is written as (its id: the proxy's when it gave one, else a new one). */
export function stepRowOf(
  r: StepOwner,
  record: StepRecord,
  u: TokenUsage,
  cost: number,
  at: Date,
): StepInsert & { id: StepId } {
  return {
    id: record.stepId !== undefined && isId(record.stepId, 'stp') ? record.stepId : newId('stp'),
    teamId: r.teamId,
    runId: r.runId,
    agentId: r.agentId,
    type: record.type,
    status: record.status,
    name: record.name ?? null,
    provider: record.provider,
    model: record.model,
    providerKeyId: record.providerKeyId ?? null,
    streaming: record.streaming ?? false,
    request: storableText(record.request ?? null),
    response: storableText(record.response ?? null),
    inputTokens: u.input,
    outputTokens: u.output,
    cacheReadTokens: u.cacheRead,
    cacheCreationTokens: u.cacheCreation,
    costMicros: cost,
    latencyMs: record.latencyMs ?? null,
    routedFrom: record.routedFrom ?? null,
    failoverAttempts: record.failoverAttempts ?? 0,
    failoverContext: record.failoverContext ?? null,
    errorKind: record.errorKind ?? null,
    errorMessage: record.errorMessage ?? null,
    createdAt: at,
  };
}

export interface BlockedRequest {
  teamId: TeamId;
  runId: string;
  agentId: string;
  status: 'budget_blocked' | 'policy_blocked';
  /** The governance code (budget_exceeded, model_not_allowed, rate_limited …). */
  code: string;
  message: string;
  model?: string | null;
  provider?: string | null;
  request?: unknown;
  at?: Date;
}

export interface FailoverTransition {
  teamId: TeamId;
  runId: string;
  agentId: string;
  attempted: Array<{
    provider: string;
    provider_key_id: string;
    status: number | null;
    error: string;
    kind?: string;
  }>;
  resolvedProvider: string | null;
  resolvedModel: string | null;
  originalModel: string;
  /** Providers that failed before one worked; default attempted.length. */
  failoverAttempts?: number;
  at?: Date;
}

/** Rungate caps a failover attempt's error text at 1000 characters. */
const MAX_ATTEMPT_ERROR = 1000;

/** A refused request as a step (status budget_blocked / policy_blocked, error_kind = the code). */
export function blockedStep(b: BlockedRequest, at: Date): StepRecord {
  return {
    type: 'llm_call',
    status: b.status,
    provider: b.provider ?? null,
    model: b.model ?? null,
    request: storableText(b.request ?? null),
    usage: NO_TOKENS,
    costMicros: 0,
    errorKind: b.code,
    errorMessage: b.message,
    at,
  };
}

/** A failover_transition step with Rungate's failover_context. */
export function failoverStep(f: FailoverTransition, at: Date): StepRecord {
  const attempted = f.attempted.map((a) => ({
    provider: a.provider,
    provider_key_id: a.provider_key_id,
    status: a.status,
    error: a.error.slice(0, MAX_ATTEMPT_ERROR),
    ...(a.kind !== undefined ? { kind: a.kind } : {}),
  }));
  return {
    type: 'failover_transition',
    status: f.resolvedProvider === null ? 'error' : 'success',
    provider: f.resolvedProvider,
    model: f.resolvedModel,
    usage: NO_TOKENS,
    costMicros: 0,
    failoverAttempts: f.failoverAttempts ?? attempted.length,
    failoverContext: {
      attempted,
      resolved_provider: f.resolvedProvider,
      resolved_model: f.resolvedModel,
      original_model: f.originalModel,
    },
    at,
  };
}

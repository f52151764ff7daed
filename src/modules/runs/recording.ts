import { NO_TOKENS, type StepRecord } from './budget.ts';

// Steps that move no money: requests refused by governance and failover bookkeeping.

export interface BlockedRequest {
  teamId: string;
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
  teamId: string;
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
    request: b.request ?? null,
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

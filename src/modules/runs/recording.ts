import { eq } from 'drizzle-orm';
import { newId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { runs } from '../../db/schema/index.ts';
import * as repo from './repo.ts';

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

/** A refused request as a step (status budget_blocked / policy_blocked, error_kind = the code); flags the run. */
export async function writeBlockedStep(db: Db, b: BlockedRequest, now: Date): Promise<void> {
  const at = b.at ?? now;
  await db.transaction(async (tx) => {
    await repo.insertStep(tx, {
      id: newId('stp'),
      teamId: b.teamId,
      runId: b.runId,
      agentId: b.agentId,
      type: 'llm_call',
      status: b.status,
      provider: b.provider ?? null,
      model: b.model ?? null,
      request: b.request ?? null,
      errorKind: b.code,
      errorMessage: b.message,
      createdAt: at,
    });
    await repo.updateRun(tx, eq(runs.id, b.runId), { hasGovernanceBlock: true, updatedAt: at });
  });
}

/** A failover_transition step with Rungate's failover_context; sets had_failover on the run. */
export async function writeFailoverStep(db: Db, f: FailoverTransition, now: Date): Promise<void> {
  const at = f.at ?? now;
  const attempted = f.attempted.map((a) => ({
    provider: a.provider,
    provider_key_id: a.provider_key_id,
    status: a.status,
    error: a.error.slice(0, MAX_ATTEMPT_ERROR),
    ...(a.kind !== undefined ? { kind: a.kind } : {}),
  }));
  await db.transaction(async (tx) => {
    await repo.insertStep(tx, {
      id: newId('stp'),
      teamId: f.teamId,
      runId: f.runId,
      agentId: f.agentId,
      type: 'failover_transition',
      status: f.resolvedProvider === null ? 'error' : 'success',
      provider: f.resolvedProvider,
      model: f.resolvedModel,
      failoverAttempts: f.failoverAttempts ?? attempted.length,
      failoverContext: {
        attempted,
        resolved_provider: f.resolvedProvider,
        resolved_model: f.resolvedModel,
        original_model: f.originalModel,
      },
      createdAt: at,
    });
    await repo.updateRun(tx, eq(runs.id, f.runId), { hadFailover: true, updatedAt: at });
  });
}

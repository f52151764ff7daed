import { statusAt } from '../../core/expiry.ts';
import type { ApprovalRow } from './repo.ts';

export function approvalView(a: ApprovalRow, now: Date) {
  return {
    id: a.id,
    team_id: a.teamId,
    run_id: a.runId,
    step_id: a.stepId,
    agent_id: a.agentId,
    policy_id: a.policyId,
    tool_name: a.toolName,
    status: statusAt(a, now),
    request_snapshot: a.requestSnapshot ?? null,
    decided_by: a.decidedBy,
    reason: a.reason,
    decided_at: a.decidedAt === null ? null : a.decidedAt.toISOString(),
    expires_at: a.expiresAt.toISOString(),
    created_at: a.createdAt.toISOString(),
  };
}

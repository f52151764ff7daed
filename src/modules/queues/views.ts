import type { JobRow } from './repo.ts';
import type { JobStatus } from './schemas.ts';

const isoOrNull = (d: Date | null) => d?.toISOString() ?? null;

export function jobView(row: JobRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    queue: row.queue,
    type: row.type,
    payload: row.payload,
    priority: row.priority,
    status: row.status as JobStatus,
    attempts: row.attempts,
    max_attempts: row.maxAttempts,
    timeout_sec: row.timeoutSec,
    run_at: row.runAt.toISOString(),
    lease_expires_at: isoOrNull(row.leaseExpiresAt),
    worker_id: row.workerId,
    idempotency_key: row.idempotencyKey,
    result: row.result ?? null,
    error: row.error,
    claimed_at: isoOrNull(row.claimedAt),
    ended_at: isoOrNull(row.endedAt),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type JobView = ReturnType<typeof jobView>;

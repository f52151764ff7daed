import type { AttemptRow, DeliveryRow, WebhookRow } from './repo.ts';

export function webhookView(row: WebhookRow, now: Date) {
  const previous =
    row.previousSecretExpiresAt && row.previousSecretExpiresAt > now ? row.previousSecretExpiresAt : null;
  return {
    id: row.id,
    team_id: row.teamId,
    url: row.url,
    event_types: row.eventTypes,
    agent_id: row.agentId,
    description: row.description,
    status: row.status as 'active' | 'paused' | 'failing',
    failure_count: row.failureCount,
    previous_secret_expires_at: previous?.toISOString() ?? null,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type WebhookView = ReturnType<typeof webhookView>;

export function attemptView(row: AttemptRow, deliveryStatus: string) {
  return {
    id: row.id,
    delivery_id: row.deliveryId,
    event_id: row.eventId,
    event_type: row.eventType,
    attempt: row.attempt,
    status_code: row.statusCode,
    duration_ms: row.durationMs,
    error: row.error,
    response_body: row.responseBody,
    next_attempt_at: row.nextAttemptAt?.toISOString() ?? null,
    delivery_status: deliveryStatus,
    created_at: row.createdAt.toISOString(),
  };
}
export type AttemptView = ReturnType<typeof attemptView>;

export function deliveryView(row: DeliveryRow) {
  return {
    id: row.id,
    webhook_id: row.webhookId,
    event_id: row.eventId,
    event_type: row.eventType,
    status: row.status,
    attempts: row.attempts,
    max_attempts: row.maxAttempts,
    next_attempt_at: row.nextAttemptAt?.toISOString() ?? null,
  };
}

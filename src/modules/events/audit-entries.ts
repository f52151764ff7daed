import { newId } from '../../core/ids.ts';
import type { RequestContext } from '../../core/request-context.ts';
import type { AuditInsert } from './audit-repo.ts';
import type { EventInsert } from './repo.ts';

/**
 * Paddock's own doings (a capsule pausing, a task starting) are in the event
 * stream, not the audit log; these are the ones an auditor asks about.
 */
const AUDITED_SYSTEM_EVENTS: ReadonlySet<string> = new Set([
  'run.budget_exceeded',
  'run.alert_threshold',
  'host.down',
  'api_key.revoked',
  'environment.build_failed',
]);

/**
 * The audit entry an event makes, if any: every change someone (a user, a
 * key, an agent, a host) made, and the notable ones Paddock made itself.
 * A change made for a request's principal carries that request's address,
 * id and route; Paddock's own changes carry none, even when a request set
 * off the work (a task started straight after its submit).
 */
export function auditEntryOf(
  event: EventInsert,
  request: RequestContext | undefined,
): AuditInsert | undefined {
  if (event.actorKind === 'system' && !AUDITED_SYSTEM_EVENTS.has(event.type)) return undefined;
  if (request) request.audited = true;
  return {
    id: newId('aud'),
    teamId: event.teamId ?? null,
    actorKind: event.actorKind,
    actorId: event.actorId ?? null,
    action: event.type,
    resourceId: event.subjectId ?? null,
    outcome: 'success',
    statusCode: null,
    ipAddress: request?.ipAddress ?? null,
    requestId: request?.requestId ?? null,
    route: request ? `${request.method} ${request.route}` : null,
    userAgent: request?.userAgent ?? null,
    details: event.data,
    createdAt: event.createdAt,
  };
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RequestContext } from '../core/request-context.ts';
import type { AuditedCall } from '../modules/events/audit-service.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the route's calls make no audit entry of their own (the LLM proxy: its blocks are audited). */
    audit?: false;
  }
  interface FastifyRequest {
    auditContext: RequestContext | null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The request as its audit entries record it: one object per request, shared by everything that records it. */
export function requestContextOf(request: FastifyRequest): RequestContext {
  if (request.auditContext) return request.auditContext;
  const ua = request.headers['user-agent'];
  request.auditContext = {
    requestId: request.id,
    ipAddress: request.ip ?? null,
    method: request.method,
    route: request.routeOptions.url ?? request.url.split('?')[0]!,
    userAgent: typeof ua === 'string' ? ua.slice(0, 500) : null,
    audited: false,
  };
  return request.auditContext;
}

/** Whether a request's principal carries its context (for the audit entries of the changes it makes). */
export function audited(request: FastifyRequest): boolean {
  return request.routeOptions.config?.audit !== false;
}

/**
 * A call that changes something but wrote no audit entry in its change's
 * transaction (refused, failed and rolled back, or a change that records no
 * event such as a sign-out) gets one of its own, written before its answer
 * is sent (onSend), so a client that reads the audit log after its call's
 * answer finds it. Reads, the LLM proxy, a sandbox host's own calls
 * (heartbeats) and calls with no credential to routes that need one get none.
 * The wait is one insert, only on the calls that get such an entry; an entry
 * that cannot be written is reported, and the answer still goes out.
 */
export function registerAuditHooks(
  app: FastifyInstance,
  record: (call: AuditedCall) => Promise<void>,
  onFailure: (err: unknown, request: FastifyRequest) => void,
): void {
  app.decorateRequest('auditContext', null);
  app.addHook('onSend', async (request, reply, payload) => {
    const config = request.routeOptions.config;
    if (
      SAFE_METHODS.has(request.method) ||
      request.routeOptions.url === undefined ||
      config?.audit === false ||
      config?.hostToken ||
      // A call with no credential on a route that needs one changed nothing and names nobody:
      // recording each would let anyone fill the table. Public routes (sign-in) are throttled.
      (request.principal === null && config?.auth !== 'public')
    )
      return payload;
    const context = requestContextOf(request);
    if (reply.statusCode < 400 && context.audited) return payload;
    const id = (request.params as Record<string, unknown> | undefined)?.id;
    await record({
      request: context,
      principal: request.principal,
      statusCode: reply.statusCode,
      errorCode: request.errorCode,
      resourceId: typeof id === 'string' ? id.slice(0, 100) : undefined,
    }).catch((err: unknown) => onFailure(err, request));
    return payload;
  });
}

/**
 * What the audit log records about the request a change came from. The HTTP
 * layer makes one per authenticated request and hangs it on the principal,
 * so a change made for that principal carries it to its audit entry (plain
 * data: services never see Fastify).
 */
export interface RequestContext {
  requestId: string;
  ipAddress: string | null;
  method: string;
  /** The route's pattern (`/v1/agents/:id`), never the raw URL with its query. */
  route: string;
  userAgent: string | null;
  /** Set once a change made for this request wrote its audit entry (the call's own is then not needed). */
  audited: boolean;
}

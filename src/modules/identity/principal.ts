import { ForbiddenError } from '../../core/errors.ts';
import { idOrNotFound, type TeamId } from '../../core/ids.ts';
import type { RequestContext } from '../../core/request-context.ts';

export const ROLES = ['owner', 'admin', 'member', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/**
 * read < write < admin, and `queue` beside them: a worker's key, which
 * claims and completes work-queue jobs and reaches nothing else; write and
 * admin include it.
 */
export const SCOPES = ['read', 'write', 'admin', 'queue'] as const;
export type Scope = (typeof SCOPES)[number];

const SCOPE_RANK: Record<Exclude<Scope, 'queue'>, number> = { read: 1, write: 2, admin: 3 };

/** A member's role grants a scope: viewers read, members write, admins and owners administer. */
export function scopeOfRole(role: Role): Scope {
  return role === 'viewer' ? 'read' : role === 'member' ? 'write' : 'admin';
}

/** Scopes are hierarchical (read < write < admin): a key's scope is its highest; `queue` alone is `queue`. */
export function highestScope(scopes: readonly Scope[]): Scope {
  if (scopes.length > 0 && scopes.every((s) => s === 'queue')) return 'queue';
  return scopes.reduce<Exclude<Scope, 'queue'>>(
    (best, s) => (s !== 'queue' && SCOPE_RANK[s] > SCOPE_RANK[best] ? s : best),
    'read',
  );
}

export function scopeAllows(have: Scope, need: Scope): boolean {
  if (need === 'queue') return have === 'queue' || have === 'write' || have === 'admin';
  if (have === 'queue') return false;
  return SCOPE_RANK[have] >= SCOPE_RANK[need];
}

/** Who is calling. Built by authentication, read by every service. */
export interface Principal {
  /**
   * `agent`: a gateway agent key (pda_), which reaches only agent-side routes.
   * `system`: Paddock acting for a team on its own (an environment build, a
   * task's capsule); never made from a request.
   */
  kind: 'session' | 'api_key' | 'agent' | 'system';
  userId: string | null;
  /** The team the call acts in: the session's active team or the key's team. */
  teamId: TeamId | null;
  /** The user's role in `teamId` (sessions only). */
  role: Role | null;
  /** What this principal may do in `teamId`. */
  scope: Scope;
  /** A team key holding `queue` beside read (read + queue): it may also do a worker's calls. */
  alsoQueue?: boolean;
  isPlatformAdmin: boolean;
  sessionId?: string;
  apiKeyId?: string;
  apiKeyVersion?: 'current' | 'previous';
  agentId?: string;
  /** For `system`: what is acting, e.g. `environment_build:envv_…`. */
  systemActor?: string;
  /** The request this principal is serving (set per request by the HTTP layer; absent for Paddock's own work). */
  request?: RequestContext;
}

/** Paddock acting inside a team on its own account, with write scope; recorded as actor kind `system`. */
export function systemPrincipal(teamId: TeamId, actor: string): Principal {
  return {
    kind: 'system',
    userId: null,
    teamId,
    role: null,
    scope: 'write',
    isPlatformAdmin: false,
    systemActor: actor,
  };
}

export function requireScope(principal: Principal, need: Scope): void {
  if (!scopeAllows(principal.scope, need) && !(need === 'queue' && principal.alsoQueue === true)) {
    const who =
      principal.kind === 'session'
        ? `your role (${principal.role})`
        : `this ${principal.kind.replace('_', ' ')} key`;
    throw new ForbiddenError('insufficient_scope', `${who} does not allow this: it needs the ${need} scope`, {
      required_scope: need,
      scope: principal.scope,
    });
  }
}

/**
 * Platform-wide routes (every team's audit log, /v1/admin/…) are for
 * platform admins' sessions: anyone else gets 403 platform_admin_required.
 */
export function requirePlatformAdmin(principal: Principal, what: string): void {
  if (!principal.isPlatformAdmin) {
    throw new ForbiddenError('platform_admin_required', `only platform admins ${what}`);
  }
}

/** The active team, or a 403 telling the caller how to get one. */
export function activeTeam(principal: Principal): TeamId {
  if (principal.teamId === null) {
    throw new ForbiddenError(
      'no_active_team',
      'this session has no active team; join or create one, then POST /v1/auth/switch-team',
    );
  }
  return principal.teamId;
}

export interface Actor {
  actorKind: string;
  actorId: string | null;
  /** The request the actor made, for the audit log. */
  via?: RequestContext;
}

/** Who a change is recorded as made by, and the request it came with. */
export function actorOf(principal: Principal): Actor {
  const via = principal.request ? { via: principal.request } : {};
  if (principal.kind === 'api_key')
    return { actorKind: 'api_key', actorId: principal.apiKeyId ?? null, ...via };
  if (principal.kind === 'agent') return { actorKind: 'agent', actorId: principal.agentId ?? null, ...via };
  if (principal.kind === 'system') return { actorKind: 'system', actorId: principal.systemActor ?? null };
  return { actorKind: 'user', actorId: principal.userId, ...via };
}

/**
 * The active team, where a person or a team key holding `need` manages
 * `what`. Agent keys call the gateway; they never manage the team's
 * resources (403 agent_key_not_allowed).
 */
export function managedTeam(principal: Principal, need: Scope, what: string): TeamId {
  if (principal.kind === 'agent') {
    throw new ForbiddenError('agent_key_not_allowed', `agent keys cannot manage ${what}`);
  }
  const teamId = activeTeam(principal);
  requireScope(principal, need);
  return teamId;
}

/** A team id from a request; anything else names no team (404, as an unknown id). */
export function teamIdOf(raw: string): TeamId {
  return idOrNotFound(raw, 'team', 'team');
}

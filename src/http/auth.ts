import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { safeEqual } from '../core/crypto.ts';
import { AppError, ForbiddenError, UnauthorizedError } from '../core/errors.ts';
import { activeTeam, type Principal, requireScope, type Scope } from '../modules/identity/principal.ts';

export const SESSION_COOKIE = 'paddock_session';
export const CSRF_COOKIE = 'paddock_csrf';
export const CSRF_HEADER = 'x-csrf-token';

/**
 * Every route says who may call it. `public` routes still see a principal when
 * one is presented. `session: true` routes refuse API keys; `team: false`
 * routes work without an active team (the service checks the team itself);
 * with `agent` set as well, a session route also takes agent keys.
 * Agent keys (`pda_`) reach only routes that say `agent: 'also'` or
 * `agent: 'only'` (the latter refuses everything but agent keys).
 */
export type AuthRule =
  | 'public'
  | { scope: Scope; session?: boolean; team?: boolean; agent?: 'also' | 'only' };

export type Authenticator = (token: string) => Promise<Principal>;

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthRule;
    /** A public route that its handler authenticates by X-Host-Token (a sandbox host's own calls). */
    hostToken?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export interface AuthOptions {
  /** By token prefix: `pds` sessions, `pdk` team API keys, and more as modules add them. */
  authenticators: Record<string, Authenticator>;
  /** Called after each response to a request made with an API key. */
  onApiKeyResponse?: (principal: Principal, request: FastifyRequest, reply: FastifyReply) => void;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function presentedToken(request: FastifyRequest): { token: string; viaCookie: boolean } | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match)
      throw new UnauthorizedError(
        'invalid_authorization',
        'the Authorization header must be "Bearer <token>"',
      );
    return { token: match[1]!, viaCookie: false };
  }
  const apiKey = request.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return { token: apiKey.trim(), viaCookie: false };
  const cookie = request.cookies?.[SESSION_COOKIE];
  if (cookie) return { token: cookie, viaCookie: true };
  return undefined;
}

/** The token is the credential; the routes say what each principal may do. */
export function registerAuth(app: FastifyInstance, options: AuthOptions): void {
  app.decorateRequest('principal', null);

  // Fail closed: a /v1 route that forgot to declare its rule does not start.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/v1/') && route.config?.auth === undefined) {
      throw new Error(`route ${route.method} ${route.url} does not declare config.auth`);
    }
  });

  app.addHook('onRequest', async (request) => {
    const rule = request.routeOptions.config?.auth;
    if (rule === undefined) return;
    const presented = presentedToken(request);
    if (presented === undefined) {
      if (rule === 'public') return;
      throw new UnauthorizedError(
        'unauthenticated',
        'authentication required: send "Authorization: Bearer <token>" with an API key or session token',
      );
    }
    const prefix = presented.token.slice(0, presented.token.indexOf('_'));
    const authenticate = options.authenticators[prefix];
    if (authenticate === undefined) {
      throw new UnauthorizedError('invalid_token', 'the token is not one this server issued');
    }
    let principal: Principal;
    try {
      principal = await authenticate(presented.token);
    } catch (err) {
      // A stale cookie on a public route (login, signup) must not block it.
      if (rule === 'public' && presented.viaCookie && err instanceof AppError && err.statusCode === 401)
        return;
      throw err;
    }
    // Cookies ride along on cross-site requests; the CSRF token does not.
    if (presented.viaCookie && !SAFE_METHODS.has(request.method)) {
      const header = request.headers[CSRF_HEADER];
      const cookie = request.cookies?.[CSRF_COOKIE];
      if (typeof header !== 'string' || !cookie || !safeEqual(header, cookie)) {
        // A public route (login, signup) works signed out: there the unchecked
        // cookie is ignored rather than used, so a live one cannot block it.
        if (rule === 'public') return;
        throw new ForbiddenError(
          'csrf_failed',
          `requests authenticated by cookie must send the ${CSRF_HEADER} header matching the ${CSRF_COOKIE} cookie`,
        );
      }
    }
    request.principal = principal;
    if (rule === 'public') return;
    if (principal.kind === 'agent' && rule.agent === undefined) {
      throw new ForbiddenError(
        'agent_key_not_allowed',
        'agent keys (pda_) cannot call this route; use a team API key',
      );
    }
    if (principal.kind !== 'agent' && rule.agent === 'only') {
      throw new ForbiddenError(
        'agent_key_required',
        'this route is for agents: authenticate with the agent key (pda_)',
      );
    }
    if (rule.session && principal.kind !== 'session' && !(principal.kind === 'agent' && rule.agent)) {
      throw new ForbiddenError(
        'session_required',
        'this route needs a signed-in user session, not an API key',
      );
    }
    if (rule.team !== false) {
      activeTeam(principal);
      requireScope(principal, rule.scope);
    }
  });

  if (options.onApiKeyResponse) {
    const onUse = options.onApiKeyResponse;
    app.addHook('onResponse', async (request, reply) => {
      if (request.principal?.kind === 'api_key') onUse(request.principal, request, reply);
    });
  }
}

export interface SessionCookieOptions {
  secure: boolean;
}

export function setSessionCookies(
  reply: FastifyReply,
  session: { token: string; csrfToken: string; expiresAt: Date },
  options: SessionCookieOptions,
): void {
  const common = { path: '/', sameSite: 'lax' as const, secure: options.secure, expires: session.expiresAt };
  reply.setCookie(SESSION_COOKIE, session.token, { ...common, httpOnly: true });
  // Readable by the dashboard's script, which echoes it in the CSRF header.
  reply.setCookie(CSRF_COOKIE, session.csrfToken, { ...common, httpOnly: false });
}

export function clearSessionCookies(reply: FastifyReply, options: SessionCookieOptions): void {
  reply.clearCookie(SESSION_COOKIE, { path: '/', secure: options.secure });
  reply.clearCookie(CSRF_COOKIE, { path: '/', secure: options.secure });
}

/** The principal of an authenticated route (the auth hook guarantees it). */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) throw new UnauthorizedError('unauthenticated', 'authentication required');
  return request.principal;
}

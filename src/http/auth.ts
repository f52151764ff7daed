import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { safeEqual } from '../core/crypto.ts';
import { AppError, ForbiddenError, UnauthorizedError } from '../core/errors.ts';
import { activeTeam, type Principal, requireScope, type Scope } from '../modules/identity/principal.ts';
import { audited, requestContextOf } from './audit.ts';

export const SESSION_COOKIE = 'paddock_session';
export const CSRF_COOKIE = 'paddock_csrf';
export const CSRF_HEADER = 'x-csrf-token';
/** Where a cookie-authenticated WebSocket upgrade carries the CSRF token: it has no other place a browser can set. */
export const CSRF_QUERY = 'csrf_token';

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

/**
 * Platform-wide routes: a signed-in session, active team or not; the service
 * then requires a platform admin (requirePlatformAdmin: 403 platform_admin_required).
 */
export const platformAdminRoute = { auth: { scope: 'read', session: true, team: false } } as const;

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
  /**
   * By token prefix: `pds` sessions, `pdk` team API keys, and more as modules
   * add them. A Map, so a made-up prefix (`constructor_…`) finds nothing.
   */
  authenticators: ReadonlyMap<string, Authenticator>;
  /** The CSRF token a session principal's cookie-authenticated requests must carry; undefined for others. */
  csrfTokenOf: (principal: Principal, sessionToken: string) => string | undefined;
  /** Origins besides the server's own whose pages may open WebSockets with the session cookie. */
  allowedOrigins: readonly string[];
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

/** Why a request authenticated by the session cookie is refused, if it is: reads pass, writes and upgrades need more. */
function cookieRefusal(
  request: FastifyRequest,
  expectedCsrfToken: () => string | undefined,
  allowedOrigins: ReadonlySet<string>,
): ForbiddenError | undefined {
  if (isUpgrade(request)) return upgradeRefusal(request, expectedCsrfToken(), allowedOrigins);
  if (SAFE_METHODS.has(request.method)) return undefined;
  return writeRefusal(request, expectedCsrfToken());
}

function writeRefusal(request: FastifyRequest, expected: string | undefined): ForbiddenError | undefined {
  const header = request.headers[CSRF_HEADER];
  if (expected !== undefined && typeof header === 'string' && safeEqual(header, expected)) return undefined;
  return new ForbiddenError(
    'csrf_failed',
    `requests authenticated by cookie must send this session's CSRF token (csrf_token from sign-in, also in the ${CSRF_COOKIE} cookie) in the ${CSRF_HEADER} header`,
  );
}

// Any Upgrade header counts: a browser cannot set one itself, and whatever asks for one is held to the stricter rule.
function isUpgrade(request: FastifyRequest): boolean {
  return request.headers.upgrade !== undefined;
}

/**
 * A browser opens a WebSocket to any address a page names, with the cookie
 * and without a CORS check, so a cookie-authenticated upgrade must come from
 * an allowed page and carry the CSRF token, which other sites cannot read.
 */
function upgradeRefusal(
  request: FastifyRequest,
  expected: string | undefined,
  allowedOrigins: ReadonlySet<string>,
): ForbiddenError | undefined {
  const origin = request.headers.origin;
  if (!originAllowed(request, origin, allowedOrigins)) {
    return new ForbiddenError(
      'origin_not_allowed',
      'a WebSocket authenticated by cookie must be opened by a page of this server (its own address, PADDOCK_PUBLIC_URL or PADDOCK_ALLOWED_ORIGINS); other clients authenticate with "Authorization: Bearer <token>"',
      { origin: origin ?? null },
    );
  }
  const given = (request.query as Record<string, unknown> | undefined)?.[CSRF_QUERY];
  if (expected !== undefined && typeof given === 'string' && safeEqual(given, expected)) return undefined;
  return new ForbiddenError(
    'csrf_failed',
    `a WebSocket authenticated by cookie must carry this session's CSRF token (csrf_token from sign-in, also in the ${CSRF_COOKIE} cookie) as the ${CSRF_QUERY} query parameter`,
  );
}

function originAllowed(
  request: FastifyRequest,
  origin: string | undefined,
  allowedOrigins: ReadonlySet<string>,
): boolean {
  // Browsers always send Origin on a WebSocket; without one (or with "null") the page cannot be told apart.
  if (origin === undefined) return false;
  let page: URL;
  try {
    page = new URL(origin);
  } catch {
    return false;
  }
  if (page.protocol !== 'http:' && page.protocol !== 'https:') return false;
  if (allowedOrigins.has(page.origin)) return true;
  // Same origin: the browser sets Origin and Host itself, so they agree only for a page of the
  // address it is talking to (a rebound DNS name agrees too, but carries that name's cookies, not ours).
  try {
    return new URL(`${page.protocol}//${request.host}`).host === page.host;
  } catch {
    return false;
  }
}

/** The token is the credential; the routes say what each principal may do. */
export function registerAuth(app: FastifyInstance, options: AuthOptions): void {
  const authenticators = new Map(options.authenticators);
  const allowedOrigins = new Set(options.allowedOrigins);
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
    let principal: Principal;
    try {
      const underscore = presented.token.indexOf('_');
      const authenticate =
        underscore > 0 ? authenticators.get(presented.token.slice(0, underscore)) : undefined;
      if (authenticate === undefined) {
        throw new UnauthorizedError('invalid_token', 'the token is not one this server issued');
      }
      principal = await authenticate(presented.token);
    } catch (err) {
      // A stale cookie on a public route (login, signup) must not block it.
      if (rule === 'public' && presented.viaCookie && err instanceof AppError && err.statusCode === 401)
        return;
      throw err;
    }
    // Cookies ride along on requests that other sites' pages make; the CSRF token does not.
    if (presented.viaCookie) {
      const expected = () => options.csrfTokenOf(principal, presented.token);
      const refusal = cookieRefusal(request, expected, allowedOrigins);
      if (refusal !== undefined) {
        // A public route (login, signup) works signed out: there the unchecked
        // cookie is ignored rather than used, so a live one cannot block it.
        if (rule === 'public') return;
        throw refusal;
      }
    }
    // Per request (an authenticator may hand out one cached principal to many): the changes it
    // makes carry this request to their audit entries.
    request.principal = audited(request) ? { ...principal, request: requestContextOf(request) } : principal;
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
    // A callback hook: it runs after every response and never waits.
    app.addHook('onResponse', (request, reply, done) => {
      if (request.principal?.kind === 'api_key') onUse(request.principal, request, reply);
      done();
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

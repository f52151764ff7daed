import { type TSchema, Type } from 'typebox';
import {
  clearSessionCookies,
  principalOf,
  type SessionCookieOptions,
  setSessionCookies,
} from '../../http/auth.ts';
import { setDeviceCookie } from '../../http/device-cookie.ts';
import { errorResponses, IdParams, PageQuery } from '../../http/schemas.ts';
import { type App, requestMeta } from '../../http/types.ts';
import type { EmailLinksService } from './email-links.ts';
import { type Principal, teamIdOf } from './principal.ts';
import * as s from './schemas.ts';
import type { AuthService, SignedIn } from './service.ts';

const tags = ['auth'];

function body(signedIn: SignedIn) {
  const { expiresAt: _cookieOnly, deviceToken: _deviceCookieOnly, ...rest } = signedIn;
  return rest;
}

/** GET /v1/me for agent keys, answered by the agents module. */
export interface AgentMeRoute {
  schema: TSchema;
  handler: (principal: Principal) => Promise<unknown>;
}

export function registerAuthRoutes(
  app: App,
  auth: AuthService,
  cookies: SessionCookieOptions,
  emailLinks: EmailLinksService,
  agentMe?: AgentMeRoute,
): void {
  const signIn = (reply: Parameters<typeof setSessionCookies>[0], result: SignedIn) => {
    setSessionCookies(
      reply,
      { token: result.session_token, csrfToken: result.csrf_token, expiresAt: result.expiresAt },
      cookies,
    );
    setDeviceCookie(reply, result.deviceToken, cookies);
    return body(result);
  };

  app.post(
    '/v1/auth/signup',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Create an account (open signup, the first user, or with an invitation token)',
        body: s.SignupBody,
        response: { 201: s.SignedIn, ...errorResponses(409, 429) },
      },
    },
    async (request, reply) => {
      const result = await auth.signup(request.body, requestMeta(request));
      return reply.status(201).send(signIn(reply, result));
    },
  );

  app.post(
    '/v1/auth/login',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Sign in with email and password',
        body: s.LoginBody,
        response: { 200: s.SignedIn, ...errorResponses(429) },
      },
    },
    async (request, reply) => signIn(reply, await auth.login(request.body, requestMeta(request))),
  );

  app.post(
    '/v1/auth/password-reset/start',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'E-mail a password reset link (the same answer whether or not the account exists)',
        body: s.EmailLinkStartBody,
        response: { 202: s.EmailLinkSent, ...errorResponses(429) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await emailLinks.startPasswordReset(request.body, requestMeta(request))),
  );

  app.post(
    '/v1/auth/password-reset/complete',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: "Set a new password with the e-mailed token (ends all the account's sessions)",
        body: s.PasswordResetCompleteBody,
        response: { 204: Type.Null(), ...errorResponses() },
      },
    },
    async (request, reply) => {
      await emailLinks.completePasswordReset(request.body, requestMeta(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/auth/magic-link/start',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'E-mail a sign-in link (the same answer whether or not the account exists)',
        body: s.EmailLinkStartBody,
        response: { 202: s.EmailLinkSent, ...errorResponses(429) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await emailLinks.startMagicLink(request.body, requestMeta(request))),
  );

  app.post(
    '/v1/auth/magic-link/verify',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Sign in with the e-mailed token, as /v1/auth/login does',
        body: s.MagicLinkVerifyBody,
        response: { 200: s.SignedIn, ...errorResponses() },
      },
    },
    async (request, reply) =>
      signIn(reply, await emailLinks.verifyMagicLink(request.body, requestMeta(request))),
  );

  app.post(
    '/v1/auth/logout',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: { tags, summary: 'End this session', response: { 204: Type.Null(), ...errorResponses() } },
    },
    async (request, reply) => {
      await auth.logout(principalOf(request));
      clearSessionCookies(reply, cookies);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/auth/logout-all',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags,
        summary: "End all of this user's sessions, this one included",
        response: { 204: Type.Null(), ...errorResponses() },
      },
    },
    async (request, reply) => {
      await auth.logoutAll(principalOf(request));
      clearSessionCookies(reply, cookies);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/auth/switch-team',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags,
        summary: 'Make another of your teams the active one (rotates the session token)',
        body: s.SwitchTeamBody,
        response: { 200: s.SignedIn, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      signIn(reply, await auth.switchTeam(principalOf(request), teamIdOf(request.body.team_id))),
  );

  app.get(
    '/v1/me',
    {
      config: { auth: { scope: 'read', session: true, team: false, agent: agentMe ? 'also' : undefined } },
      schema: {
        tags: ['me'],
        summary: 'The signed-in user, active team and role; with an agent key, the agent and its limits',
        response: { 200: agentMe ? Type.Union([s.Me, agentMe.schema]) : s.Me, ...errorResponses() },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      return principal.kind === 'agent' && agentMe ? agentMe.handler(principal) : auth.me(principal);
    },
  );

  app.patch(
    '/v1/me',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags: ['me'],
        summary: 'Change your name or password (a password change ends your other sessions)',
        body: s.UpdateMeBody,
        response: { 200: s.Me, ...errorResponses() },
      },
    },
    async (request) => auth.updateMe(principalOf(request), request.body),
  );

  app.delete(
    '/v1/me',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags: ['me'],
        summary:
          'Delete your account for good (with your password): 409 owns_teams while you own a team with other members; teams only you belong to go with it',
        body: s.DeleteMeBody,
        response: { 204: Type.Null(), ...errorResponses(409, 429) },
      },
    },
    async (request, reply) => {
      await auth.deleteMe(principalOf(request), request.body);
      clearSessionCookies(reply, cookies);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/me/sessions',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags: ['me'],
        summary: 'Your live sessions',
        querystring: PageQuery,
        response: { 200: s.Sessions, ...errorResponses() },
      },
    },
    async (request) => auth.listSessions(principalOf(request), request.query),
  );

  app.delete(
    '/v1/me/sessions/:id',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags: ['me'],
        summary: 'End one of your sessions',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await auth.revokeSession(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
}

import { Type } from 'typebox';
import { principalOf, type SessionCookieOptions, setSessionCookies } from '../../http/auth.ts';
import { setDeviceCookie } from '../../http/device-cookie.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import { type App, requestMeta } from '../../http/types.ts';
import type { InvitationsService } from './invitations-service.ts';
import * as s from './schemas.ts';
import type { AuthService } from './service.ts';

// Invitations to the active team; looking one up and accepting it are public
// (the token is the credential) and go through AuthService, which may sign
// the caller up and start a session.
export function registerInvitationRoutes(
  app: App,
  invitations: InvitationsService,
  auth: AuthService,
  cookies: SessionCookieOptions,
): void {
  const tags = ['invitations'];

  app.post(
    '/v1/invitations',
    {
      config: { auth: { scope: 'admin' } },
      schema: {
        tags,
        summary: 'Invite someone to the active team (7-day token, shown once)',
        body: s.CreateInvitationBody,
        response: { 201: s.InvitationWithToken, ...errorResponses(409, 429) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await invitations.createInvitation(principalOf(request), request.body)),
  );

  app.get(
    '/v1/invitations',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: "The active team's invitations",
        querystring: s.InvitationListQuery,
        response: { 200: s.Invitations, ...errorResponses() },
      },
    },
    async (request) => invitations.listInvitations(principalOf(request), request.query),
  );

  app.get(
    '/v1/invitations/lookup',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'What an invitation token is for, without using it up',
        querystring: Type.Object(
          { token: Type.String({ minLength: 1, maxLength: 200 }) },
          { additionalProperties: false },
        ),
        response: { 200: s.InvitationLookup, ...errorResponses(404, 409, 410, 429) },
      },
    },
    async (request) => auth.lookupInvitation(request.query.token, requestMeta(request)),
  );

  app.post(
    '/v1/invitations/accept',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        summary: 'Accept an invitation: signed in, join the team; otherwise sign up with name and password',
        body: s.AcceptInvitationBody,
        response: { 200: s.AcceptedInvitation, ...errorResponses(404, 409, 410, 429) },
      },
    },
    async (request, reply) => {
      const result = await auth.acceptInvitation(request.principal, request.body, requestMeta(request));
      if (result.session) {
        const { session } = result;
        setSessionCookies(
          reply,
          { token: session.session_token, csrfToken: session.csrf_token, expiresAt: session.expiresAt },
          cookies,
        );
        setDeviceCookie(reply, session.deviceToken, cookies);
        const { expiresAt: _cookieOnly, deviceToken: _deviceCookieOnly, ...sessionBody } = session;
        return { team: result.team, session: sessionBody };
      }
      return { team: result.team, session: null };
    },
  );

  app.get(
    '/v1/invitations/:id',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: 'One invitation of the active team',
        params: IdParams,
        response: { 200: s.Invitation, ...errorResponses(404) },
      },
    },
    async (request) => invitations.getInvitation(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/invitations/:id/revoke',
    {
      config: { auth: { scope: 'admin' } },
      schema: {
        tags,
        summary: 'Revoke a pending invitation',
        params: IdParams,
        response: { 200: s.Invitation, ...errorResponses(404, 409) },
      },
    },
    async (request) => invitations.revokeInvitation(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/invitations/:id/resend',
    {
      config: { auth: { scope: 'admin' } },
      schema: {
        tags,
        summary: 'A new token and 7 more days for a pending invitation (the old token stops working)',
        params: IdParams,
        response: { 200: s.InvitationWithToken, ...errorResponses(404, 409, 429) },
      },
    },
    async (request) => invitations.resendInvitation(principalOf(request), request.params.id),
  );
}

import { Type } from 'typebox';
import { principalOf, type SessionCookieOptions } from '../../http/auth.ts';
import { errorResponses, PageQuery } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { teamIdOf } from './principal.ts';
import * as s from './schemas.ts';
import type { AuthService } from './service.ts';
import type { TeamsService } from './teams-service.ts';

// Team routes check membership of the team in the path themselves (the
// service), so they run without requiring an active team.
const anyTeam = (scope: 'read' | 'write' | 'admin') => ({ auth: { scope, team: false } as const });

export function registerTeamRoutes(
  app: App,
  teams: TeamsService,
  _auth: AuthService,
  _cookies: SessionCookieOptions,
): void {
  const tags = ['teams'];

  app.post(
    '/v1/teams',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags,
        summary: 'Create a team; you become its owner',
        body: s.CreateTeamBody,
        response: { 201: s.Team, ...errorResponses() },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await teams.createTeam(principalOf(request), request.body)),
  );

  app.get(
    '/v1/teams',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'Your teams (an API key sees its own team)',
        querystring: PageQuery,
        response: { 200: s.Teams, ...errorResponses() },
      },
    },
    async (request) => teams.listTeams(principalOf(request), request.query),
  );

  app.get(
    '/v1/teams/:id',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'A team you belong to',
        params: s.TeamParams,
        response: { 200: s.Team, ...errorResponses(404) },
      },
    },
    async (request) => teams.getTeam(principalOf(request), teamIdOf(request.params.id)),
  );

  app.patch(
    '/v1/teams/:id',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'Rename a team (admin or owner)',
        params: s.TeamParams,
        body: s.UpdateTeamBody,
        response: { 200: s.Team, ...errorResponses(404) },
      },
    },
    async (request) => teams.updateTeam(principalOf(request), teamIdOf(request.params.id), request.body),
  );

  app.delete(
    '/v1/teams/:id',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'Delete a team (owner only; soft delete)',
        params: s.TeamParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await teams.deleteTeam(principalOf(request), teamIdOf(request.params.id));
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/teams/:id/members',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: "A team's members",
        params: s.TeamParams,
        querystring: PageQuery,
        response: { 200: s.Members, ...errorResponses(404) },
      },
    },
    async (request) => teams.listMembers(principalOf(request), teamIdOf(request.params.id), request.query),
  );

  app.post(
    '/v1/teams/:id/members',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'Add an existing account by email (admin or owner); invite people without one',
        params: s.TeamParams,
        body: s.AddMemberBody,
        response: { 201: s.Member, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await teams.addMember(principalOf(request), teamIdOf(request.params.id), request.body)),
  );

  app.patch(
    '/v1/teams/:id/members/:user_id',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: "Change a member's role (admin or owner; the owner's role is fixed)",
        params: s.MemberParams,
        body: s.UpdateMemberBody,
        response: { 200: s.Member, ...errorResponses(404, 409) },
      },
    },
    async (request) =>
      teams.updateMemberRole(
        principalOf(request),
        teamIdOf(request.params.id),
        request.params.user_id,
        request.body.role,
      ),
  );

  app.delete(
    '/v1/teams/:id/members/:user_id',
    {
      config: anyTeam('read'),
      schema: {
        tags,
        summary: 'Remove a member (admin or owner), or yourself; the owner cannot be removed',
        params: s.MemberParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await teams.removeMember(principalOf(request), teamIdOf(request.params.id), request.params.user_id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/teams/:id/leave',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags,
        summary: 'Leave a team (the owner must transfer ownership first)',
        params: s.TeamParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await teams.removeMember(principal, teamIdOf(request.params.id), principal.userId!);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/teams/:id/transfer-ownership',
    {
      config: { auth: { scope: 'read', session: true, team: false } },
      schema: {
        tags,
        summary: 'Make another member the owner; you become an admin (owner only)',
        params: s.TeamParams,
        body: s.TransferOwnershipBody,
        response: { 200: s.Member, ...errorResponses(404) },
      },
    },
    async (request) =>
      teams.transferOwnership(principalOf(request), teamIdOf(request.params.id), request.body.user_id),
  );
}

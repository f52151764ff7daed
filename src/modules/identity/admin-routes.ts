import { Type } from 'typebox';
import { platformAdminRoute, principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { AccountsService } from './accounts-service.ts';
import * as s from './admin-schemas.ts';
import type { Principal } from './principal.ts';

const tags = ['admin'];

// /v1/admin/users and /v1/admin/teams: every account and team of the server, for platform
// admins' sessions (the service checks: 403 platform_admin_required). Every change is audited.
export function registerAdminRoutes(app: App, accounts: AccountsService): void {
  app.get(
    '/v1/admin/users',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary: 'Every account, newest first; q searches e-mail and name, status and admin filter',
        querystring: s.AdminUserQuery,
        response: { 200: s.AdminUsers, ...errorResponses() },
      },
    },
    async (request) => accounts.listUsers(principalOf(request), request.query),
  );

  app.get(
    '/v1/admin/users/:id',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary: 'One account, with its team memberships',
        params: IdParams,
        response: { 200: s.AdminUserDetail, ...errorResponses(404) },
      },
    },
    async (request) => accounts.getUser(principalOf(request), request.params.id),
  );

  // Wrenn's shapes: PUT …/active {active} and PUT …/admin {admin} (Wrenn answers 204; Paddock the account).
  const flags = [
    {
      flag: 'active',
      body: s.SetActiveBody,
      summary:
        'Deactivate (false: its sessions end, the API keys it created stop at once; not yourself, never the last admin) or reactivate (true) an account',
      set: (p: Principal, id: string, on: boolean) => accounts.setActive(p, id, on),
    },
    {
      flag: 'admin',
      body: s.SetAdminBody,
      summary:
        'Make the user a platform admin (true) or take it away (false; never from the last active one)',
      set: (p: Principal, id: string, on: boolean) => accounts.setAdmin(p, id, on),
    },
  ] as const;
  for (const { flag, body, summary, set } of flags) {
    app.put(
      `/v1/admin/users/:id/${flag}`,
      {
        config: platformAdminRoute,
        schema: {
          tags,
          summary,
          params: IdParams,
          body,
          response: { 200: s.AdminUser, ...errorResponses(404, 409) },
        },
      },
      async (request) => {
        const given = request.body as Record<string, boolean>;
        return set(principalOf(request), request.params.id, given[flag] === true);
      },
    );
  }

  app.delete(
    '/v1/admin/users/:id',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary:
          'Erase an account (GDPR): personal data deleted, the row kept anonymised; 409 owns_teams while it owns a team with other members',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await accounts.deleteUser(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/admin/teams',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary: 'Every live team, newest first, with its member count and owner; q searches name and slug',
        querystring: s.AdminTeamQuery,
        response: { 200: s.AdminTeams, ...errorResponses() },
      },
    },
    async (request) => accounts.listTeams(principalOf(request), request.query),
  );

  app.get(
    '/v1/admin/teams/:id',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary: 'One team, with its member count and owner',
        params: IdParams,
        response: { 200: s.AdminTeam, ...errorResponses(404) },
      },
    },
    async (request) => accounts.getTeam(principalOf(request), request.params.id),
  );

  // Credit grants are the credits module's own route (POST /v1/admin/teams/{id}/credits).
  app.patch(
    '/v1/admin/teams/:id',
    {
      config: platformAdminRoute,
      schema: {
        tags,
        summary: 'Set a team’s limits (max_concurrent_tasks: over all its agents; null removes it)',
        params: IdParams,
        body: s.UpdateTeamBody,
        response: { 200: s.AdminTeam, ...errorResponses(404) },
      },
    },
    async (request) => accounts.updateTeam(principalOf(request), request.params.id, request.body),
  );
}

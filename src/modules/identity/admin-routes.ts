import { Type } from 'typebox';
import { platformAdminRoute, principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { AccountsService } from './accounts-service.ts';
import * as s from './admin-schemas.ts';

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

  const change = (
    method: 'post' | 'delete',
    path: string,
    summary: string,
    act: AccountsService['deactivate'],
  ) =>
    app[method](
      `/v1/admin/users/:id/${path}`,
      {
        config: platformAdminRoute,
        schema: {
          tags,
          summary,
          params: IdParams,
          response: { 200: s.AdminUser, ...errorResponses(404, 409) },
        },
      },
      async (request) => act(principalOf(request), request.params.id),
    );
  change(
    'post',
    'deactivate',
    'Deactivate an account: its sessions end and the API keys it created stop at once (not your own; never the last platform admin)',
    (p, id) => accounts.deactivate(p, id),
  );
  change(
    'post',
    'reactivate',
    'Reactivate an account: it can sign in again and the API keys it created work again',
    (p, id) => accounts.reactivate(p, id),
  );
  change('post', 'platform-admin', 'Make the user a platform admin', (p, id) => accounts.grantAdmin(p, id));
  change(
    'delete',
    'platform-admin',
    'Take platform admin from the user (never from the last active one)',
    (p, id) => accounts.revokeAdmin(p, id),
  );

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
}

import { Readable } from 'node:stream';
import { platformAdminRoute, principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './audit-schemas.ts';
import type { AuditService, AuditView } from './audit-service.ts';

// The service checks who may read: team admins and admin keys their team's, platform admins every team's.
const teamAdmin = { auth: { scope: 'admin' } as const };

/**
 * JSON lines: one entry a line, written as they are read. Typed as the
 * schema's string: Fastify sends a stream as it is, unserialised.
 */
function jsonLines(entries: AsyncIterable<AuditView>): string {
  return Readable.from(
    (async function* () {
      for await (const entry of entries) yield `${JSON.stringify(entry)}\n`;
    })(),
  ) as unknown as string;
}

export function registerAuditRoutes(app: App, audit: AuditService): void {
  app.get(
    '/v1/audit-logs',
    {
      config: teamAdmin,
      schema: {
        tags: ['audit'],
        summary:
          'The team’s audit log, newest first: who did what to which resource, from where, with what outcome',
        querystring: s.AuditQuery,
        response: { 200: s.AuditEntries, ...errorResponses(400, 403) },
      },
    },
    async (request) => audit.list(principalOf(request), request.query),
  );
  app.get(
    '/v1/audit-logs/export',
    {
      config: teamAdmin,
      schema: {
        tags: ['audit'],
        summary: 'The team’s audit log as JSON lines (application/x-ndjson), oldest first',
        querystring: s.AuditExportQuery,
        response: { 200: s.AuditLines, ...errorResponses(400, 403) },
      },
    },
    async (request, reply) => {
      const entries = audit.exportAll(principalOf(request), request.query);
      return reply.type('application/x-ndjson').send(jsonLines(entries));
    },
  );
  app.get(
    '/v1/admin/audit-logs',
    {
      config: platformAdminRoute,
      schema: {
        tags: ['audit'],
        summary: 'Every team’s audit log (platform admins), newest first; team_id narrows to one team',
        querystring: s.AdminAuditQuery,
        response: { 200: s.AuditEntries, ...errorResponses(400, 403) },
      },
    },
    async (request) => audit.list(principalOf(request), request.query, true),
  );
  app.get(
    '/v1/admin/audit-logs/export',
    {
      config: platformAdminRoute,
      schema: {
        tags: ['audit'],
        summary: 'Every team’s audit log as JSON lines (platform admins), oldest first',
        querystring: s.AdminAuditExportQuery,
        response: { 200: s.AuditLines, ...errorResponses(400, 403) },
      },
    },
    async (request, reply) => {
      const entries = audit.exportAll(principalOf(request), request.query, true);
      return reply.type('application/x-ndjson').send(jsonLines(entries));
    },
  );
}

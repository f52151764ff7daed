import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { SnapshotsService } from './snapshots.ts';

const tags = ['snapshots'];

/** Wrenn's /v1/snapshots: templates capsules start from, and live snapshots of running capsules. */
export function registerSnapshotRoutes(app: App, snapshots: SnapshotsService): void {
  app.post(
    '/v1/snapshots',
    {
      config: { auth: { scope: 'write' } },
      schema: {
        tags,
        summary: 'Snapshot a running capsule into a new template (the capsule freezes briefly, then runs on)',
        body: s.CreateSnapshotBody,
        response: { 201: s.Template, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await snapshots.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/snapshots',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: "The team's templates and the platform's (minimal)",
        querystring: s.TemplateListQuery,
        response: { 200: s.TemplateList },
      },
    },
    async (request) => snapshots.list(principalOf(request), request.query.type),
  );

  app.get(
    '/v1/snapshots/:name',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: 'One template by name',
        params: s.TemplateParams,
        response: { 200: s.Template, ...errorResponses(404) },
      },
    },
    async (request) => snapshots.get(principalOf(request), request.params.name),
  );

  app.delete(
    '/v1/snapshots/:name',
    {
      config: { auth: { scope: 'write' } },
      schema: {
        tags,
        summary: "Delete a team's template and its files (capsules started from it keep their copy)",
        params: s.TemplateParams,
        response: { 204: Type.Null(), ...errorResponses(403, 404) },
      },
    },
    async (request, reply) => {
      await snapshots.remove(principalOf(request), request.params.name);
      return reply.status(204).send(null);
    },
  );
}

import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { EnvironmentsService } from './service.ts';

const tags = ['environments'];
const read = { auth: { scope: 'read' } as const };
const write = { auth: { scope: 'write' } as const };

export function registerEnvironmentRoutes(app: App, environments: EnvironmentsService): void {
  app.post(
    '/v1/environments',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create an environment; its version 1 is queued for its build',
        body: s.CreateEnvironmentBody,
        response: { 201: s.Environment, ...errorResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await environments.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/environments',
    {
      config: read,
      schema: {
        tags,
        summary: 'The platform’s environments (first page), then the team’s, newest first',
        querystring: s.EnvironmentListQuery,
        response: { 200: s.Environments, ...errorResponses() },
      },
    },
    async (request) => environments.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/environments/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'An environment and its current version',
        params: IdParams,
        response: { 200: s.Environment, ...errorResponses(404) },
      },
    },
    async (request) => environments.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/environments/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Rename or describe in place; a change to what runs makes a new version and builds it',
        params: IdParams,
        body: s.UpdateEnvironmentBody,
        response: { 200: s.Environment, ...errorResponses(404, 409) },
      },
    },
    async (request) => environments.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/environments/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Archive the environment (its versions stay for the agent versions that pin them)',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await environments.archive(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/environments/:id/fork',
    {
      config: write,
      schema: {
        tags,
        summary: 'A new environment of the team running what this one’s current version runs',
        params: IdParams,
        body: Type.Optional(s.ForkEnvironmentBody),
        response: { 201: s.Environment, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await environments.fork(principalOf(request), request.params.id, request.body ?? {})),
  );

  app.get(
    '/v1/environments/:id/versions',
    {
      config: read,
      schema: {
        tags,
        summary: 'The environment’s versions, newest first',
        params: IdParams,
        querystring: s.EnvironmentListQuery,
        response: { 200: s.EnvironmentVersions, ...errorResponses(404) },
      },
    },
    async (request) => environments.versions(principalOf(request), request.params.id, request.query),
  );

  app.get(
    '/v1/environments/:id/versions/:n',
    {
      config: read,
      schema: {
        tags,
        summary: 'One version: what it runs and how its build went',
        params: s.VersionParams,
        response: { 200: s.EnvironmentVersion, ...errorResponses(404) },
      },
    },
    async (request) => environments.version(principalOf(request), request.params.id, request.params.n),
  );

  app.get(
    '/v1/environments/:id/versions/:n/build-log',
    {
      config: read,
      schema: {
        tags,
        summary: 'The version’s build log (text/plain): each step, its output and exit code',
        params: s.VersionParams,
        response: { 200: Type.String(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const log = await environments.buildLog(principalOf(request), request.params.id, request.params.n);
      return reply
        .type('text/plain; charset=utf-8')
        .serializer((v) => v as string)
        .send(log);
    },
  );
}

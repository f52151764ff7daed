import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { SecretsService } from './service.ts';

export function registerSecretRoutes(app: App, secrets: SecretsService): void {
  const tags = ['secrets'];
  const read = { auth: { scope: 'read' } as const };
  // Secrets are credentials: changing them takes the admin scope.
  const admin = { auth: { scope: 'admin' } as const };

  app.post(
    '/v1/secrets',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Add a secret (sealed at rest; its value is never shown again)',
        body: s.CreateSecretBody,
        response: { 201: s.Secret, ...errorResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await secrets.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/secrets',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's secrets, newest first, values redacted (?agent_id= the ones that agent gets)",
        querystring: s.SecretListQuery,
        response: { 200: s.Secrets, ...errorResponses(404) },
      },
    },
    async (request) => secrets.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/secrets/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One secret, value redacted',
        params: IdParams,
        response: { 200: s.Secret, ...errorResponses(404) },
      },
    },
    async (request) => secrets.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/secrets/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Rename, set a new value, or change which agents get it',
        params: IdParams,
        body: s.UpdateSecretBody,
        response: { 200: s.Secret, ...errorResponses(404, 409) },
      },
    },
    async (request) => secrets.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/secrets/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete the secret and its sealed value',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await secrets.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
}

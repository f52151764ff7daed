import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
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
        summary: 'One secret, by id or name, value redacted',
        params: s.SecretRefParams,
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
        params: s.SecretRefParams,
        body: s.UpdateSecretBody,
        response: { 200: s.Secret, ...errorResponses(404, 409) },
      },
    },
    async (request) => secrets.update(principalOf(request), request.params.id, request.body),
  );

  app.put(
    '/v1/secrets/:id',
    {
      config: admin,
      schema: {
        tags,
        summary:
          'By name: create the secret (201) or give it a new value (200: its next version); by id: a new value. scope and agent_ids change only when sent',
        params: s.SecretRefParams,
        body: s.PutSecretBody,
        response: { 200: s.Secret, 201: s.Secret, ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const { created, secret } = await secrets.put(principalOf(request), request.params.id, request.body);
      return reply.status(created ? 201 : 200).send(secret);
    },
  );

  app.get(
    '/v1/secrets/:id/history',
    {
      config: read,
      schema: {
        tags,
        summary: 'Who set each version of the value and when, newest first (never a value)',
        params: s.SecretRefParams,
        querystring: s.SecretHistoryQuery,
        response: { 200: s.SecretHistory, ...errorResponses(404) },
      },
    },
    async (request) => secrets.history(principalOf(request), request.params.id, request.query),
  );

  app.post(
    '/v1/secrets/:id/reveal',
    {
      config: admin,
      schema: {
        tags,
        summary:
          'The value itself, for team admins (admin or owner sessions, admin keys): throttled per team, audited as secret.revealed',
        params: s.SecretRefParams,
        response: { 200: s.RevealedSecret, ...errorResponses(404, 429) },
      },
    },
    async (request, reply) => {
      const revealed = await secrets.reveal(principalOf(request), request.params.id);
      // Neither a browser nor a proxy may keep it.
      return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(revealed);
    },
  );

  app.delete(
    '/v1/secrets/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete the secret and its sealed value',
        params: s.SecretRefParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await secrets.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
}

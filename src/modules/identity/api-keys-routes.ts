import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams, PageQuery } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { ApiKeysService } from './api-keys-service.ts';
import * as s from './schemas.ts';

export function registerApiKeyRoutes(app: App, keys: ApiKeysService): void {
  const tags = ['api-keys'];
  const admin = { auth: { scope: 'admin' } as const };

  app.post(
    '/v1/api-keys',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Create a team API key (the key is shown only in this response)',
        body: s.CreateApiKeyBody,
        response: { 201: s.ApiKeyWithSecret, ...errorResponses() },
      },
    },
    async (request, reply) => reply.status(201).send(await keys.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/api-keys',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: "The active team's API keys, masked",
        querystring: PageQuery,
        response: { 200: s.ApiKeys, ...errorResponses() },
      },
    },
    async (request) => keys.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/api-keys/:id',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: 'One API key, masked',
        params: IdParams,
        response: { 200: s.ApiKey, ...errorResponses(404) },
      },
    },
    async (request) => keys.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/api-keys/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Rename, rescope, disable/enable or change the expiry of a key',
        params: IdParams,
        body: s.UpdateApiKeyBody,
        response: { 200: s.ApiKey, ...errorResponses(404) },
      },
    },
    async (request) => keys.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/api-keys/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete a key (soft: it stops working and leaves lists)',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await keys.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/api-keys/:id/revoke',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Revoke a key: unusable at once, for good',
        params: IdParams,
        response: { 200: s.ApiKey, ...errorResponses(404) },
      },
    },
    async (request) => keys.revoke(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/api-keys/:id/rotate',
    {
      config: admin,
      schema: {
        tags,
        summary: 'New secret; the old one keeps working for grace_hours (default 24)',
        params: IdParams,
        body: Type.Optional(s.RotateApiKeyBody),
        response: { 200: s.ApiKeyWithSecret, ...errorResponses(404) },
      },
      // The body is optional (`curl -X POST …/rotate`): no body means the defaults.
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request) => keys.rotate(principalOf(request), request.params.id, request.body?.grace_hours),
  );

  app.post(
    '/v1/api-keys/:id/roll',
    {
      config: admin,
      schema: {
        tags,
        summary: 'New secret; the old one stops working at once',
        params: IdParams,
        response: { 200: s.ApiKeyWithSecret, ...errorResponses(404) },
      },
    },
    async (request) => keys.roll(principalOf(request), request.params.id),
  );

  app.get(
    '/v1/api-keys/:id/usage',
    {
      config: { auth: { scope: 'read' } },
      schema: {
        tags,
        summary: 'Recent requests made with this key, newest first',
        params: IdParams,
        querystring: PageQuery,
        response: { 200: s.ApiKeyUsages, ...errorResponses(404) },
      },
    },
    async (request) => keys.usage(principalOf(request), request.params.id, request.query),
  );
}

import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import { type ProvidersService, providerKeyIdOf } from './service.ts';

export function registerProviderRoutes(app: App, providers: ProvidersService): void {
  const tags = ['provider-keys'];
  const read = { auth: { scope: 'read' } as const };
  // Provider keys are credentials: changing them takes the admin scope.
  const admin = { auth: { scope: 'admin' } as const };

  // Batched last_used_at writes go out before the database closes.
  app.addHook('onClose', async () => providers.close());

  app.post(
    '/v1/provider-keys',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Add a provider key (the secret is sealed at rest and only ever shown masked)',
        body: s.CreateProviderKeyBody,
        response: { 201: s.ProviderKey, ...errorResponses(409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await providers.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/provider-keys',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's provider keys, newest first (deleted ones only with ?status=deleted)",
        querystring: s.ProviderKeyListQuery,
        response: { 200: s.ProviderKeys, ...errorResponses() },
      },
    },
    async (request) => providers.list(principalOf(request), request.query),
  );

  app.put(
    '/v1/provider-keys/by-name/:name',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Create (201) or update (200) the provider key of this name',
        params: s.KeyNameParams,
        body: s.UpsertProviderKeyBody,
        response: { 200: s.ProviderKey, 201: s.ProviderKey, ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const result = await providers.upsertByName(principalOf(request), request.params.name, request.body);
      return reply.status(result.created ? 201 : 200).send(result.key);
    },
  );

  app.get(
    '/v1/provider-keys/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One provider key, masked',
        params: IdParams,
        response: { 200: s.ProviderKey, ...errorResponses(404) },
      },
    },
    async (request) => providers.get(principalOf(request), providerKeyIdOf(request.params.id)),
  );

  app.put(
    '/v1/provider-keys/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Rename, change base_url or price_overrides, or rotate the secret (api_key)',
        params: IdParams,
        body: s.UpdateProviderKeyBody,
        response: { 200: s.ProviderKey, ...errorResponses(404, 409) },
      },
    },
    async (request) =>
      providers.update(principalOf(request), providerKeyIdOf(request.params.id), request.body),
  );

  app.post(
    '/v1/provider-keys/:id/disable',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Exclude the key from routing (agents keep their bindings); idempotent',
        params: IdParams,
        response: { 200: s.ProviderKey, ...errorResponses(404, 409) },
      },
    },
    async (request) => providers.setEnabled(principalOf(request), providerKeyIdOf(request.params.id), false),
  );

  app.post(
    '/v1/provider-keys/:id/enable',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Route to the key again; idempotent',
        params: IdParams,
        response: { 200: s.ProviderKey, ...errorResponses(404, 409) },
      },
    },
    async (request) => providers.setEnabled(principalOf(request), providerKeyIdOf(request.params.id), true),
  );

  app.delete(
    '/v1/provider-keys/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Delete the key and scrub its secret; ?remap_to= moves its agents to another key',
        description:
          'remap_to must be an active key of the same provider; every agent bound to the deleted key is rebound to it in the same transaction.',
        params: IdParams,
        querystring: s.DeleteQuery,
        response: { 200: s.Deleted, ...errorResponses(404) },
      },
    },
    async (request) =>
      providers.remove(principalOf(request), providerKeyIdOf(request.params.id), request.query.remap_to),
  );

  app.get(
    '/v1/provider-keys/:id/dependents',
    {
      config: read,
      schema: {
        tags,
        summary: 'What disabling or deleting the key would affect: agents, runs, last use',
        params: IdParams,
        response: { 200: s.Dependents, ...errorResponses(404) },
      },
    },
    async (request) => providers.dependents(principalOf(request), providerKeyIdOf(request.params.id)),
  );

  app.get(
    '/v1/providers/health',
    {
      config: read,
      schema: {
        tags,
        summary:
          "Circuit breaker state and p50 latency of the team's provider keys (as this server sees them)",
        response: { 200: s.ProviderHealthList, ...errorResponses() },
      },
    },
    async (request) => providers.health(principalOf(request)),
  );
}

import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { Body, errorResponses, IdParams, Nullable, Timestamp } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { hostIdOf } from './capsule-view.ts';
import type { HostsService } from './hosts.ts';

const tags = ['hosts'];
const reader = { auth: { scope: 'read', session: true } as const };
const manager = { auth: { scope: 'write', session: true } as const };
const hostAuth = { auth: 'public' as const };

const Tag = Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._:-]+$' });

const Host = Type.Object({
  id: Type.String(),
  type: Type.Enum(['regular', 'byoc', 'local']),
  team_id: Nullable(Type.String()),
  status: Type.Enum(['pending', 'online', 'offline', 'draining', 'unreachable']),
  provider: Nullable(Type.String()),
  availability_zone: Nullable(Type.String()),
  arch: Nullable(Type.String()),
  cpu_cores: Nullable(Type.Integer()),
  memory_mb: Nullable(Type.Integer()),
  disk_gb: Nullable(Type.Integer()),
  address: Nullable(Type.String()),
  isolation: Nullable(Type.Enum(['bwrap', 'none'])),
  tags: Type.Array(Type.String()),
  last_heartbeat_at: Nullable(Timestamp),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
const CreateHostResponse = Type.Object({
  host: Host,
  registration_token: Type.String({ description: 'one-time, valid for 1 hour' }),
});
const Credentials = Type.Object({
  host: Host,
  token: Type.String({ description: 'the host token (X-Host-Token), valid for 7 days' }),
  refresh_token: Type.String({ description: 'valid for 60 days; each use revokes it and returns a new one' }),
});
const Address = Type.String({
  minLength: 3,
  maxLength: 300,
  pattern: '^(\\[[0-9a-fA-F:]+\\]|[A-Za-z0-9.-]+):\\d{1,5}$',
});

/** Wrenn's /v1/hosts: creation and registration of remote `paddock host`s, heartbeats, tags, draining. */
export function registerHostRoutes(app: App, hosts: HostsService): void {
  app.post(
    '/v1/hosts',
    {
      config: manager,
      schema: {
        tags,
        summary: 'Create a host (pending) and its one-time registration token',
        body: Body({
          type: Type.Enum(['regular', 'byoc']),
          team_id: Type.Optional(Type.String({ maxLength: 100 })),
          provider: Type.Optional(Type.String({ maxLength: 100 })),
          availability_zone: Type.Optional(Type.String({ maxLength: 100 })),
          tags: Type.Optional(Type.Array(Tag, { maxItems: 50 })),
        }),
        response: { 201: CreateHostResponse, ...errorResponses(403) },
      },
    },
    async (request, reply) => reply.status(201).send(await hosts.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/hosts',
    {
      config: reader,
      schema: {
        tags,
        summary: "Hosts: all of them for platform admins, else the team's BYOC hosts",
        response: { 200: Type.Object({ data: Type.Array(Host), next_cursor: Type.Null() }) },
      },
    },
    async (request) => hosts.list(principalOf(request)),
  );

  app.get(
    '/v1/hosts/:id',
    {
      config: reader,
      schema: { tags, summary: 'A host', params: IdParams, response: { 200: Host, ...errorResponses(404) } },
    },
    async (request) => hosts.get(principalOf(request), hostIdOf(request.params.id)),
  );

  app.delete(
    '/v1/hosts/:id',
    {
      config: manager,
      schema: {
        tags,
        summary:
          'Delete a host; 409 host_has_sandboxes while it has live capsules, unless ?force=true destroys them',
        params: IdParams,
        querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errorResponses(403, 404, 409) },
      },
    },
    async (request, reply) => {
      await hosts.remove(principalOf(request), hostIdOf(request.params.id), request.query.force === true);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/hosts/:id/delete-preview',
    {
      config: manager,
      schema: {
        tags,
        summary: 'What deleting the host with force would destroy (changes nothing)',
        params: IdParams,
        response: {
          200: Type.Object({ host: Host, sandbox_ids: Type.Array(Type.String()) }),
          ...errorResponses(403, 404),
        },
      },
    },
    async (request) => hosts.deletePreview(principalOf(request), hostIdOf(request.params.id)),
  );

  app.post(
    '/v1/hosts/:id/token',
    {
      config: manager,
      schema: {
        tags,
        summary: 'A new registration token for a host still pending (the old one is revoked)',
        params: IdParams,
        response: { 201: CreateHostResponse, ...errorResponses(403, 404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await hosts.regenerateToken(principalOf(request), hostIdOf(request.params.id))),
  );

  for (const [action, draining, summary] of [
    ['drain', true, 'Stop placing new capsules on the host (its capsules run on)'],
    ['activate', false, 'Place new capsules on a draining host again'],
  ] as const) {
    app.post(
      `/v1/hosts/:id/${action}`,
      {
        config: manager,
        schema: {
          tags,
          summary,
          params: IdParams,
          response: { 200: Host, ...errorResponses(403, 404, 409) },
        },
      },
      async (request) => hosts.setDraining(principalOf(request), hostIdOf(request.params.id), draining),
    );
  }

  app.get(
    '/v1/hosts/:id/tags',
    {
      config: reader,
      schema: {
        tags,
        summary: "The host's tags (capsules ask for them with host_tags)",
        params: IdParams,
        response: { 200: Type.Array(Type.String()), ...errorResponses(404) },
      },
    },
    async (request) => hosts.tags(principalOf(request), hostIdOf(request.params.id)),
  );

  app.post(
    '/v1/hosts/:id/tags',
    {
      config: manager,
      schema: {
        tags,
        summary: 'Add a tag',
        params: IdParams,
        body: Body({ tag: Tag }),
        response: { 204: Type.Null(), ...errorResponses(403, 404) },
      },
    },
    async (request, reply) => {
      await hosts.tag(principalOf(request), hostIdOf(request.params.id), request.body.tag, true);
      return reply.status(204).send(null);
    },
  );

  app.delete(
    '/v1/hosts/:id/tags/:tag',
    {
      config: manager,
      schema: {
        tags,
        summary: 'Remove a tag',
        params: Type.Object({ id: Type.String({ maxLength: 100 }), tag: Tag }),
        response: { 204: Type.Null(), ...errorResponses(403, 404) },
      },
    },
    async (request, reply) => {
      await hosts.tag(principalOf(request), hostIdOf(request.params.id), request.params.tag, false);
      return reply.status(204).send(null);
    },
  );

  // -- the host's own calls ----------------------------------------------------

  app.post(
    '/v1/hosts/register',
    {
      config: hostAuth,
      schema: {
        tags,
        summary: 'A host registers with its one-time token (no other auth)',
        body: Body({
          token: Type.String({ minLength: 1, maxLength: 200 }),
          address: Address,
          arch: Type.Optional(Type.String({ maxLength: 50 })),
          cpu_cores: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
          memory_mb: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })),
          disk_gb: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })),
          isolation: Type.Optional(Type.Enum(['bwrap', 'none'])),
        }),
        response: {
          201: Type.Object({
            ...Credentials.properties,
            control_token: Type.String({ description: 'what the control plane presents to this host' }),
          }),
          ...errorResponses(401),
        },
      },
    },
    async (request, reply) => reply.status(201).send(await hosts.register(request.body)),
  );

  app.post(
    '/v1/hosts/auth/refresh',
    {
      config: hostAuth,
      schema: {
        tags,
        summary: 'Exchange a refresh token for a new host token and refresh token (the old one is revoked)',
        body: Body({ refresh_token: Type.String({ minLength: 1, maxLength: 200 }) }),
        response: { 200: Credentials, ...errorResponses(401) },
      },
    },
    async (request) => hosts.refresh(request.body.refresh_token),
  );

  app.post(
    '/v1/hosts/:id/heartbeat',
    {
      config: { ...hostAuth, hostToken: true },
      schema: {
        tags,
        summary: 'A host says it is alive (X-Host-Token), where it listens and which capsules it runs',
        params: IdParams,
        body: Type.Optional(
          Body({
            address: Type.Optional(Address),
            capsule_ids: Type.Optional(Type.Array(Type.String({ maxLength: 100 }), { maxItems: 100_000 })),
            stopping: Type.Optional(Type.Boolean()),
          }),
        ),
        response: { 204: Type.Null(), ...errorResponses(401, 403) },
      },
    },
    async (request, reply) => {
      const header = request.headers['x-host-token'];
      const hostId = await hosts.authenticate(typeof header === 'string' ? header : undefined);
      await hosts.heartbeat(hostId, request.params.id, request.body ?? {});
      return reply.status(204).send(null);
    },
  );
}

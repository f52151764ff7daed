import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { AgentPresence } from './presence.ts';
import * as s from './schemas.ts';
import { type AgentsService, agentIdOf } from './service.ts';

export function registerAgentRoutes(app: App, agents: AgentsService): void {
  const tags = ['agents'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/agents',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create an agent and its key (the key is shown only in this response)',
        description: 'A name already used in the team gets a suffix ("my-agent-2"); `note` then says so.',
        body: s.CreateAgentBody,
        response: { 201: s.AgentWithKey, ...errorResponses() },
      },
    },
    async (request, reply) => reply.status(201).send(await agents.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/agents',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's agents, newest first",
        querystring: s.AgentListQuery,
        response: { 200: s.Agents, ...errorResponses() },
      },
    },
    async (request) => agents.list(principalOf(request), request.query),
  );

  app.put(
    '/v1/agents/by-name/:name',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create (201, with its key) or update (200) the agent of this name',
        params: s.AgentNameParams,
        body: s.UpsertAgentBody,
        response: { 200: s.Agent, 201: s.AgentWithKey, ...errorResponses(409) },
      },
    },
    async (request, reply) => {
      const result = await agents.upsertByName(principalOf(request), request.params.name, request.body);
      return reply.status(result.created ? 201 : 200).send(result.agent);
    },
  );

  app.get(
    '/v1/agents/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One agent',
        params: IdParams,
        response: { 200: s.Agent, ...errorResponses(404) },
      },
    },
    async (request) => agents.get(principalOf(request), agentIdOf(request.params.id)),
  );

  app.patch(
    '/v1/agents/:id',
    {
      config: write,
      schema: {
        tags,
        summary:
          'Change the fields sent (status active/disabled; a disabled agent is refused by the gateway)',
        params: IdParams,
        body: s.UpdateAgentBody,
        response: { 200: s.Agent, ...errorResponses(404, 409) },
      },
    },
    async (request) => agents.update(principalOf(request), agentIdOf(request.params.id), request.body),
  );

  app.delete(
    '/v1/agents/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete an agent (soft: its key stops working and it leaves lists)',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await agents.remove(principalOf(request), agentIdOf(request.params.id));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/agents/:id/rotate-key',
    {
      config: write,
      schema: {
        tags,
        summary: 'A new agent key, shown only here; the old key stops working at once',
        params: IdParams,
        response: { 200: s.RotatedKey, ...errorResponses(404) },
      },
    },
    async (request) => agents.rotateKey(principalOf(request), agentIdOf(request.params.id)),
  );

  app.get(
    '/v1/agents/:id/models',
    {
      config: read,
      schema: {
        tags,
        summary: 'The models the agent’s usable provider keys can call, with the aliases that name them',
        description:
          'Each usable key’s own model list (`GET /v1/models` of its provider), cached for 10 minutes and ' +
          'refreshed in the background; while a list cannot be fetched, the price table’s models for the ' +
          'provider (`source: catalog`). One page: `next_cursor` is always null.',
        params: IdParams,
        response: { 200: s.AgentModels, ...errorResponses(404) },
      },
    },
    async (request) => agents.models(principalOf(request), agentIdOf(request.params.id)),
  );

  app.get(
    '/v1/agents/:id/versions',
    {
      config: read,
      schema: {
        tags,
        summary: 'The versions of the agent’s definition, newest first',
        params: IdParams,
        querystring: s.VersionsQuery,
        response: { 200: s.AgentVersions, ...errorResponses(404) },
      },
    },
    async (request) => agents.versionList(principalOf(request), agentIdOf(request.params.id), request.query),
  );

  app.get(
    '/v1/agents/:id/versions/diff',
    {
      config: read,
      schema: {
        tags,
        summary: 'What changed between two versions: each field that differs, with both values',
        params: IdParams,
        querystring: s.DiffQuery,
        response: { 200: s.AgentVersionDiff, ...errorResponses(404) },
      },
    },
    async (request) =>
      agents.versionDiff(
        principalOf(request),
        agentIdOf(request.params.id),
        Number(request.query.from),
        Number(request.query.to),
      ),
  );

  app.get(
    '/v1/agents/:id/versions/:n',
    {
      config: read,
      schema: {
        tags,
        summary: 'One version of the agent’s definition, its environment version pinned',
        params: s.AgentVersionParams,
        response: { 200: s.AgentVersion, ...errorResponses(404) },
      },
    },
    async (request) => agents.version(principalOf(request), agentIdOf(request.params.id), request.params.n),
  );

  app.post(
    '/v1/agents/:id/fork',
    {
      config: write,
      schema: {
        tags,
        summary: 'A new agent with this one’s policy, bindings and current definition, and a key of its own',
        params: IdParams,
        body: Type.Optional(s.ForkAgentBody),
        response: { 201: s.AgentWithKey, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await agents.fork(principalOf(request), agentIdOf(request.params.id), request.body ?? {})),
  );
}

export function registerAgentPresenceRoutes(app: App, presence: AgentPresence): void {
  const tags = ['agents'];
  // Heartbeats are an agent's polling: like a worker's claims they make no audit entry, and no
  // event unless the agent's presence changed (agent.online).
  const beat = { auth: { scope: 'queue', agent: 'also' } as const, audit: false as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/agents/:id/heartbeat',
    {
      config: beat,
      schema: {
        tags,
        summary: 'The agent is there: idle, working or blocked (its own key, or a key that works queues)',
        description:
          'Answers its presence and whether it is paused (then: stop claiming). Silent for ' +
          '3 × heartbeat_interval_sec, the agent is offline. Another agent’s key gets 404, as an unknown agent.',
        params: IdParams,
        body: s.HeartbeatBody,
        response: { 200: s.HeartbeatAnswer, ...errorResponses(404) },
      },
    },
    async (request) => presence.heartbeat(principalOf(request), request.params.id, request.body),
  );

  for (const [action, summary] of [
    ['pause', 'Pause the agent: its work-queue claims get nothing and its queued tasks wait'],
    ['resume', 'Resume a paused agent: its claims work again'],
  ] as const) {
    app.post(
      `/v1/agents/:id/${action}`,
      {
        config: write,
        schema: { tags, summary, params: IdParams, response: { 200: s.Agent, ...errorResponses(404) } },
      },
      async (request) => presence[action](principalOf(request), request.params.id),
    );
  }
}

import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { MemoriesService } from './service.ts';

export function registerMemoryRoutes(app: App, memories: MemoriesService): void {
  const tags = ['memories'];
  // Agent keys reach their own agent's memories (the service narrows them); team keys and members, the team's.
  const read = { auth: { scope: 'read', agent: 'also' } as const };
  const write = { auth: { scope: 'write', agent: 'also' } as const };

  app.post(
    '/v1/memories',
    {
      config: write,
      schema: {
        tags,
        summary: 'Save a memory for an agent (its tasks find it with memory_search)',
        body: s.CreateMemoryBody,
        response: { 201: s.Memory, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await memories.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/memories',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's memories, newest first (?agent_id= one agent's)",
        querystring: s.MemoryListQuery,
        response: { 200: s.Memories, ...errorResponses(404) },
      },
    },
    async (request) => memories.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/memories/search',
    {
      config: read,
      schema: {
        tags,
        summary: "An agent's memories that match q (full-text, any of its words), best first",
        querystring: s.MemorySearchQuery,
        response: { 200: s.MemorySearchResult, ...errorResponses(404) },
      },
    },
    async (request) => memories.search(principalOf(request), request.query),
  );

  app.delete(
    '/v1/memories',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete every memory of one agent (agent_id is required); answers how many',
        querystring: s.DeleteMemoriesQuery,
        response: { 200: s.MemoriesDeleted, ...errorResponses(404) },
      },
    },
    async (request) => memories.removeAll(principalOf(request), request.query.agent_id),
  );

  app.get(
    '/v1/memories/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'A memory',
        params: IdParams,
        response: { 200: s.Memory, ...errorResponses(404) },
      },
    },
    async (request) => memories.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/memories/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Change a memory’s content or metadata (metadata is replaced whole)',
        params: IdParams,
        body: s.UpdateMemoryBody,
        response: { 200: s.Memory, ...errorResponses(404) },
      },
    },
    async (request) => memories.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/memories/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a memory',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await memories.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
}

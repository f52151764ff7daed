import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import type { SkillsService } from './service.ts';

export function registerSkillRoutes(app: App, skills: SkillsService): void {
  const tags = ['skills'];
  const read = { auth: { scope: 'read' } as const };
  const write = { auth: { scope: 'write' } as const };

  app.post(
    '/v1/skills',
    {
      config: write,
      schema: {
        tags,
        summary: 'Add a skill: instructions an agent loads with load_skill when it needs them',
        body: s.CreateSkillBody,
        response: { 201: s.Skill, ...errorResponses(409) },
      },
    },
    async (request, reply) => reply.status(201).send(await skills.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/skills',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's skills, newest first, without their content",
        querystring: s.SkillListQuery,
        response: { 200: s.Skills },
      },
    },
    async (request) => skills.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/skills/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One skill, with its content',
        params: IdParams,
        response: { 200: s.Skill, ...errorResponses(404) },
      },
    },
    async (request) => skills.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/skills/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Rename a skill or change its description or content (tasks started afterwards see it)',
        params: IdParams,
        body: s.UpdateSkillBody,
        response: { 200: s.Skill, ...errorResponses(404, 409) },
      },
    },
    async (request) => skills.update(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/skills/:id',
    {
      config: write,
      schema: {
        tags,
        summary: "Delete a skill that no agent's current version lists (409 skill_in_use otherwise)",
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await skills.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );
}

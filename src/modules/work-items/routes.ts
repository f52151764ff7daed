import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import type { WorkItemThreads } from './comments-links.ts';
import * as s from './schemas.ts';
import type { WorkItemsService } from './service.ts';

export function registerWorkItemRoutes(app: App, items: WorkItemsService, threads: WorkItemThreads): void {
  const tags = ['work-items'];
  // Members, team keys and agent keys all work the board (an agent picks its next item and moves it).
  const read = { auth: { scope: 'read', agent: 'also' } as const };
  const write = { auth: { scope: 'write', agent: 'also' } as const };

  app.post(
    '/v1/work-items',
    {
      config: write,
      schema: {
        tags,
        summary: 'Put an item of work on the board',
        body: s.CreateWorkItemBody,
        response: { 201: s.WorkItem, ...errorResponses() },
      },
    },
    async (request, reply) => reply.status(201).send(await items.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/work-items',
    {
      config: read,
      schema: {
        tags,
        summary:
          'The board, newest first (archived items left out unless asked); next=true: the top todo item',
        querystring: s.WorkItemListQuery,
        response: { 200: s.WorkItems },
      },
    },
    async (request) => items.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/work-items/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'One work item',
        params: IdParams,
        response: { 200: s.WorkItem, ...errorResponses(404) },
      },
    },
    async (request) => items.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/work-items/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Change an item: the fields sent (a status moves by the transitions table)',
        params: IdParams,
        body: s.UpdateWorkItemBody,
        response: { 200: s.WorkItem, ...errorResponses(404, 409) },
      },
    },
    async (request) => items.update(principalOf(request), request.params.id, request.body),
  );

  app.post(
    '/v1/work-items/:id/transition',
    {
      config: write,
      schema: {
        tags,
        summary: 'Move an item to another status (409 invalid_transition when the table does not allow it)',
        params: IdParams,
        body: s.TransitionBody,
        response: { 200: s.WorkItem, ...errorResponses(404, 409) },
      },
    },
    async (request) => items.transition(principalOf(request), request.params.id, request.body),
  );

  for (const [path, archived, summary] of [
    ['archive', true, 'Archive an item: hidden from lists, its status kept, changes refused'],
    ['unarchive', false, 'Bring an archived item back to the board'],
  ] as const)
    app.post(
      `/v1/work-items/:id/${path}`,
      {
        config: write,
        schema: { tags, summary, params: IdParams, response: { 200: s.WorkItem, ...errorResponses(404) } },
      },
      async (request) => items.setArchived(principalOf(request), request.params.id, archived),
    );

  app.post(
    '/v1/work-items/:id/comments',
    {
      config: write,
      schema: {
        tags,
        summary: 'Comment on an item',
        params: IdParams,
        body: s.CommentBody,
        response: { 201: s.Comment, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await threads.addComment(principalOf(request), request.params.id, request.body)),
  );

  app.get(
    '/v1/work-items/:id/comments',
    {
      config: read,
      schema: {
        tags,
        summary: "An item's comments, oldest first",
        params: IdParams,
        querystring: s.CommentListQuery,
        response: { 200: s.Comments, ...errorResponses(404) },
      },
    },
    async (request) => threads.listComments(principalOf(request), request.params.id, request.query),
  );

  app.delete(
    '/v1/work-items/:id/comments/:comment_id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a comment (its author, or a team admin)',
        params: s.CommentParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await threads.deleteComment(principalOf(request), request.params.id, request.params.comment_id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/work-items/:id/links',
    {
      config: write,
      schema: {
        tags,
        summary: 'Link a task or a playbook run of the team that worked on the item',
        params: IdParams,
        body: s.LinkBody,
        response: { 201: s.Link, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await threads.addLink(principalOf(request), request.params.id, request.body)),
  );

  app.get(
    '/v1/work-items/:id/links',
    {
      config: read,
      schema: {
        tags,
        summary: "An item's links, oldest first",
        params: IdParams,
        response: { 200: s.Links, ...errorResponses(404) },
      },
    },
    async (request) => threads.listLinks(principalOf(request), request.params.id),
  );

  app.delete(
    '/v1/work-items/:id/links/:link_id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Remove a link',
        params: s.LinkParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await threads.removeLink(principalOf(request), request.params.id, request.params.link_id);
      return reply.status(204).send(null);
    },
  );
}

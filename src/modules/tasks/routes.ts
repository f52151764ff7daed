import { Type } from 'typebox';
import type { Timers } from '../../core/context.ts';
import { principalOf } from '../../http/auth.ts';
import { eventLogHandler } from '../../http/event-stream.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { sendDownload } from '../files/routes.ts';
import * as s from './schemas.ts';
import type { TasksService } from './service.ts';

const tags = ['tasks'];
const read = { auth: { scope: 'read' } as const };
const write = { auth: { scope: 'write' } as const };
export function registerTaskRoutes(app: App, tasks: TasksService, timers: Timers): void {
  app.post(
    '/v1/tasks',
    {
      config: write,
      schema: {
        tags,
        summary: 'Hand an agent a task; it is queued and runs in a capsule',
        body: s.CreateTaskBody,
        response: { 202: s.Task, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => reply.status(202).send(await tasks.submit(principalOf(request), request.body)),
  );

  app.get(
    '/v1/tasks',
    {
      config: read,
      schema: {
        tags,
        summary: 'The team’s tasks, newest first (filters: agent, status, created range)',
        querystring: s.TaskListQuery,
        response: { 200: s.Tasks, ...errorResponses() },
      },
    },
    async (request) => tasks.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/tasks/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'A task',
        params: IdParams,
        response: { 200: s.Task, ...errorResponses(404) },
      },
    },
    async (request) => tasks.get(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/tasks/:id/cancel',
    {
      config: write,
      schema: {
        tags,
        summary: 'Cancel a queued or running task (its capsule’s processes stop); an ended task is a 409',
        params: IdParams,
        response: { 200: s.Task, ...errorResponses(404, 409) },
      },
    },
    async (request) => tasks.cancel(principalOf(request), request.params.id),
  );

  app.get(
    '/v1/tasks/:id/events',
    {
      config: read,
      schema: {
        tags,
        summary:
          'The task’s event log after after_seq; with Accept: text/event-stream, the same as a stream that follows the task until it ends (resumable with Last-Event-ID)',
        params: IdParams,
        querystring: s.TaskEventsQuery,
        response: { 200: s.TaskEvents, ...errorResponses(404) },
      },
    },
    eventLogHandler(tasks, timers),
  );

  app.get(
    '/v1/tasks/:id/files',
    {
      config: read,
      schema: {
        tags,
        summary: 'The files the task left in /workspace/outputs',
        params: IdParams,
        response: { 200: s.TaskFiles, ...errorResponses(404) },
      },
    },
    async (request) => tasks.files(principalOf(request), request.params.id),
  );

  app.get(
    '/v1/tasks/:id/files/:file_id',
    {
      config: read,
      schema: {
        tags,
        summary: 'An output file of the task (or a tool output its event log cut), as a download',
        params: s.TaskFileParams,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      sendDownload(reply, await tasks.file(principalOf(request), request.params.id, request.params.file_id)),
  );
}

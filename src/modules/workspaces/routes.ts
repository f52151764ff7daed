import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Timers } from '../../core/context.ts';
import { AppError } from '../../core/errors.ts';
import { principalOf } from '../../http/auth.ts';
import { eventLogHandler } from '../../http/event-stream.ts';
import { firstFilePart, malformedUpload, requireMultipart } from '../../http/multipart.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { filenameProblem } from '../files/schemas.ts';
import { frameCheck, parse, refusal, send } from '../sandboxes/ws-routes.ts';
import { Task } from '../tasks/schemas.ts';
import type { WorkspaceFiles } from './files.ts';
import * as s from './schemas.ts';
import type { WorkspacesService } from './service.ts';

const tags = ['workspaces'];
const read = { auth: { scope: 'read' } as const };
const write = { auth: { scope: 'write' } as const };
const clientFrame = frameCheck(s.ClientFrame);

function attachment(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

export function registerWorkspaceRoutes(
  app: App,
  workspaces: WorkspacesService,
  files: WorkspaceFiles,
  timers: Timers,
): void {
  app.get(
    '/v1/workspaces',
    {
      config: read,
      schema: {
        tags,
        summary: 'The team’s workspaces, newest first (filters: status, agent, archived)',
        querystring: s.WorkspaceListQuery,
        response: { 200: s.Workspaces, ...errorResponses() },
      },
    },
    async (request) => workspaces.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/workspaces/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'A workspace',
        params: IdParams,
        response: { 200: s.Workspace, ...errorResponses(404) },
      },
    },
    async (request) => workspaces.get(principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/workspaces/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Rename, star, archive, or set the model of the next turns (model_override: null clears it)',
        params: IdParams,
        body: s.PatchWorkspaceBody,
        response: { 200: s.Workspace, ...errorResponses(404) },
      },
    },
    async (request) => workspaces.patch(principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/workspaces/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Terminate: the capsule is removed and the run ended; the workspace and its history stay',
        params: IdParams,
        response: { 200: s.Workspace, ...errorResponses(404) },
      },
    },
    async (request) => workspaces.terminate(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/workspaces/:id/messages',
    {
      config: write,
      schema: {
        tags,
        summary: 'Send a message: the next turn, a session task (202); 409 while a turn runs or once ended',
        params: IdParams,
        body: s.MessageBody,
        response: { 202: Task, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await workspaces.message(principalOf(request), request.params.id, request.body)),
  );

  app.post(
    '/v1/workspaces/:id/generate-title',
    {
      config: write,
      schema: {
        tags,
        summary:
          'Name the workspace again from its first message: one model call in its run; 409 with no message yet or once ended, 422 when the call gives no title',
        params: IdParams,
        response: { 200: s.Workspace, ...errorResponses(404, 409, 422) },
      },
    },
    async (request) => workspaces.generateTitle(principalOf(request), request.params.id),
  );

  app.get(
    '/v1/workspaces/:id/events',
    {
      config: read,
      schema: {
        tags,
        summary:
          'The workspace’s event log (every turn’s events, tagged with its task) after after_seq; with Accept: text/event-stream, a stream that follows it (resumable with Last-Event-ID)',
        params: IdParams,
        querystring: s.WorkspaceEventsQuery,
        response: { 200: s.WorkspaceEvents, ...errorResponses(404) },
      },
    },
    eventLogHandler(workspaces, timers),
  );

  app.get(
    '/v1/workspaces/:id/files',
    {
      config: read,
      schema: {
        tags,
        summary: 'What is in the workspace’s /workspace (a paused capsule is resumed)',
        params: IdParams,
        response: { 200: s.WorkspaceFiles, ...errorResponses(404, 409) },
      },
    },
    async (request) => files.list(principalOf(request), request.params.id),
  );

  app.post(
    '/v1/workspaces/:id/files',
    {
      config: write,
      validatorCompiler: () => () => true,
      schema: {
        tags,
        summary:
          'Upload a file into /workspace (multipart/form-data: an optional `path` field, a directory, then one file part)',
        consumes: ['multipart/form-data'],
        params: IdParams,
        response: { 201: Type.Object({ path: Type.String() }), ...errorResponses(404, 409, 413) },
      },
    },
    async (request, reply) => {
      requireMultipart(request, 'path?, file');
      const { fields, part } = await firstFilePart(request);
      if (part === undefined) throw malformedUpload(new Error('it has no file part'));
      const problem = filenameProblem(part.filename);
      if (problem !== undefined) {
        part.file.resume();
        throw new AppError(400, 'invalid_filename', `the file's name ${problem}`);
      }
      const id = (request.params as { id: string }).id;
      const stored = await files
        .upload(principalOf(request), id, fields.get('path') ?? '', part.filename, part.file)
        .catch((err: unknown) => {
          part.file.resume();
          throw part.file.errored ? malformedUpload(err) : err;
        });
      return reply.status(201).send(stored);
    },
  );

  app.get(
    '/v1/workspaces/:id/files/*',
    {
      config: read,
      schema: {
        tags,
        summary: 'A file of /workspace, as a download',
        params: s.WorkspaceFileParams,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      const { name, body } = await files.download(
        principalOf(request),
        request.params.id,
        request.params['*'],
      );
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-disposition', attachment(name))
        .header('x-content-type-options', 'nosniff')
        .send(body as unknown as string);
    },
  );

  app.delete(
    '/v1/workspaces/:id/files/*',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a file or directory of /workspace',
        params: s.WorkspaceFileParams,
        response: { 204: Type.Null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await files.remove(principalOf(request), request.params.id, request.params['*']);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/workspaces/:id/archive',
    {
      config: read,
      schema: {
        tags,
        summary: '/workspace as a tar.gz, streamed',
        params: IdParams,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const { name, body } = await files.archive(principalOf(request), request.params.id);
      return reply
        .header('content-type', 'application/gzip')
        .header('content-disposition', attachment(name))
        .send(body as unknown as string);
    },
  );

  app.get(
    '/v1/workspaces/:id/ws',
    {
      websocket: true,
      config: write,
      // The workspace is the caller's team's: a 404 is answered over HTTP, before any WebSocket.
      preHandler: async (request: FastifyRequest) => {
        await workspaces.get(principalOf(request), (request.params as { id: string }).id);
      },
      schema: {
        tags,
        summary:
          'WebSocket: send {type:"message", content, file_ids?} or {type:"cancel"}; receive every event of the log from ?after_seq on, then live',
        description:
          'A WebSocket: connect with `Upgrade: websocket` (ws:// or wss://); an unknown workspace is a 404 over HTTP. Frames are JSON text.\n\n' +
          'Server → client: every event of the log after `after_seq` (the same JSON as the SSE stream of `GET /v1/workspaces/{id}/events`: `{seq, type, payload, created_at, task_id}`), then each new one as it is written; `{"type":"message_accepted","task"}` and `{"type":"cancel_accepted","task"}` answer the client\'s frames, `{"type":"error","code","data"}` refuses one (`validation_failed` with `fields`, or the HTTP route\'s code such as `workspace_busy`).\n\n' +
          'Client → server: `{"type":"message","content","file_ids"?}` (the next turn, as `POST /v1/workspaces/{id}/messages`) or `{"type":"cancel"}` (cancels the running turn).',
        params: IdParams,
        querystring: s.WsQuery,
        response: {
          101: Type.Null({ description: 'Switching Protocols: the WebSocket' }),
          ...errorResponses(404),
        },
      },
    },
    (ws, request) => {
      const principal = principalOf(request);
      const id = (request.params as { id: string }).id;
      const after = (request.query as { after_seq?: number }).after_seq ?? 0;
      const closed = new AbortController();
      ws.on('close', () => closed.abort());
      const answer = (work: Promise<unknown>, kind: string) =>
        work
          .then((task) => send(ws, { type: `${kind}_accepted`, task: task as Record<string, unknown> }))
          .catch((err: unknown) =>
            send(
              ws,
              err instanceof AppError
                ? { type: 'error', code: err.code, data: err.message }
                : { type: 'error', code: 'internal_error', data: 'the request failed inside Paddock' },
            ),
          );
      ws.on('message', (raw) => {
        const { msg, refused: badFrame } = parse(raw);
        if (badFrame) return send(ws, refusal(badFrame));
        if (!msg)
          return send(ws, { type: 'error', code: 'validation_failed', data: 'frames are JSON objects' });
        const { frame, refused } = clientFrame(msg);
        if (refused) return send(ws, refusal(refused));
        if (frame.type === 'cancel') return void answer(workspaces.cancelTurn(principal, id), 'cancel');
        void answer(
          workspaces.message(principal, id, {
            content: frame.content,
            ...(frame.file_ids ? { file_ids: frame.file_ids } : {}),
          }),
          'message',
        );
      });
      void (async () => {
        try {
          for await (const e of await workspaces.follow(principal, id, after, closed.signal)) send(ws, e);
          if (!closed.signal.aborted) ws.close(1000, 'the workspace ended');
        } catch (err) {
          request.log.warn({ err }, 'a workspace WebSocket ended with an error');
          ws.close(1011, 'the event stream failed');
        }
      })();
    },
  );
}

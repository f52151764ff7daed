// One file over 400 lines: the capsule HTTP surface (Wrenn's /v1/sandboxes
// as /v1/capsules), one thin route per operation around the same upload and
// error helpers; split by file it would only scatter one table of routes.
import type { MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BadRequestError, ValidationError } from '../../core/errors.ts';
import { unsafeTextReason } from '../../core/input-guard.ts';
import type { CapsuleStatus } from '../../db/schema/index.ts';
import { principalOf } from '../../http/auth.ts';
import { firstFilePart, malformedUpload, requireMultipart } from '../../http/multipart.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { capsuleIdOf } from './capsule-view.ts';
import * as s from './schemas.ts';
import type { CapsulesService } from './service.ts';

const tags = ['capsules'];
const read = { auth: { scope: 'read' } as const };
const write = { auth: { scope: 'write' } as const };

const Upload = Type.Object(
  {
    path: Type.String({ description: 'absolute destination inside the capsule (or ?path=)' }),
    file: Type.String({ format: 'binary' }),
  },
  { description: 'multipart/form-data: the path field first, then the file' },
);
const UploadQuery = Type.Object(
  { path: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' })) },
  { additionalProperties: false },
);

/**
 * The file of a multipart upload and where it goes: `?path=` or a `path`
 * field sent before the file (the file is streamed on, not buffered, so its
 * destination must be known when it starts).
 */
async function uploadOf(request: FastifyRequest): Promise<{ path: string; file: MultipartFile }> {
  requireMultipart(request, 'path, file');
  const { fields, part } = await firstFilePart(request);
  if (part === undefined) throw new BadRequestError('file_required', 'the upload has no file part');
  const path = (request.query as { path?: string }).path ?? fields.get('path');
  if (path === undefined || !path.startsWith('/')) {
    part.file.resume();
    throw new BadRequestError(
      'path_required',
      'give the absolute destination as ?path= or as a "path" field sent before the file',
    );
  }
  const unsafe = unsafeTextReason(path);
  if (unsafe) {
    part.file.resume();
    throw new ValidationError(`the path field ${unsafe}`, { path: unsafe });
  }
  return { path, file: part };
}

/** Wrenn's capsule API under Paddock's conventions. Multipart and binary routes skip JSON validation. */
export function registerCapsuleRoutes(app: App, capsules: CapsulesService): void {
  const noBodyValidation = () => () => true;

  app.post(
    '/v1/capsules',
    {
      config: write,
      schema: {
        tags,
        summary: 'Create a capsule (202 starting → running)',
        body: s.CreateCapsuleBody,
        response: { 202: s.Capsule, ...errorResponses(404, 503) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await capsules.create(principalOf(request), request.body)),
  );

  app.get(
    '/v1/capsules/stats',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's live capsules now, its 30-day peaks and a series for charts",
        querystring: s.StatsQuery,
        response: { 200: s.CapsuleStats },
      },
    },
    async (request) => capsules.stats(principalOf(request), request.query.range ?? '1h'),
  );

  app.get(
    '/v1/capsules/usage',
    {
      config: read,
      schema: {
        tags,
        summary: 'Reserved vCPU-minutes and RAM MB-minutes per UTC day while running',
        querystring: s.UsageQuery,
        response: { 200: s.CapsuleUsageResponse, ...errorResponses(400) },
      },
    },
    async (request) => capsules.usage(principalOf(request), request.query),
  );

  app.get(
    '/v1/capsules/:id/metrics',
    {
      config: read,
      schema: {
        tags,
        summary: 'CPU, memory and disk of a running or paused capsule over a range',
        params: IdParams,
        querystring: s.MetricsQuery,
        response: { 200: s.CapsuleMetrics, ...errorResponses(404) },
      },
    },
    async (request) =>
      capsules.metrics(principalOf(request), capsuleIdOf(request.params.id), request.query.range ?? '10m'),
  );

  app.get(
    '/v1/capsules',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's capsules, newest first",
        querystring: s.CapsuleListQuery,
        response: { 200: s.CapsuleList, ...errorResponses() },
      },
    },
    async (request) => capsules.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/capsules/:id',
    {
      config: read,
      schema: {
        tags,
        summary:
          'A capsule; with ?wait_for=running (or other statuses) it answers once the capsule gets there',
        params: IdParams,
        querystring: s.GetCapsuleQuery,
        response: { 200: s.Capsule, ...errorResponses(404) },
      },
    },
    async (request) => {
      const { wait_for, timeout_ms } = request.query;
      const statuses = wait_for ? (wait_for.split(',') as CapsuleStatus[]) : [];
      return capsules.get(principalOf(request), capsuleIdOf(request.params.id), {
        statuses,
        timeoutMs: timeout_ms ?? 30_000,
      });
    },
  );

  app.delete(
    '/v1/capsules/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Destroy a capsule: processes killed, writable layer removed (202 stopping → stopped)',
        params: IdParams,
        response: { 202: s.Capsule, ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await capsules.remove(principalOf(request), capsuleIdOf(request.params.id))),
  );

  for (const [action, summary] of [
    ['pause', 'Freeze every process of a running capsule (202 pausing → paused); 409 unless running'],
    ['resume', 'Thaw a paused capsule (202 resuming → running); 409 unless paused'],
  ] as const) {
    app.post(
      `/v1/capsules/:id/${action}`,
      {
        config: write,
        schema: {
          tags,
          summary,
          params: IdParams,
          response: { 202: s.Capsule, ...errorResponses(404, 409) },
        },
      },
      async (request, reply) =>
        reply
          .status(202)
          .send(
            action === 'pause'
              ? await capsules.pause(principalOf(request), capsuleIdOf(request.params.id))
              : await capsules.resume(principalOf(request), capsuleIdOf(request.params.id)),
          ),
    );
  }

  app.post(
    '/v1/capsules/:id/ping',
    {
      config: write,
      schema: {
        tags,
        summary: "Reset a running capsule's inactivity timer",
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await capsules.ping(principalOf(request), capsuleIdOf(request.params.id));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/capsules/:id/exec',
    {
      config: write,
      schema: {
        tags,
        summary: 'Run a command: 200 with its output, or 202 {pid, tag} with background: true',
        params: IdParams,
        body: s.ExecBody,
        response: { 200: s.ExecResponse, 202: s.BackgroundExecResponse, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const result = await capsules.io.exec(
        principalOf(request),
        capsuleIdOf(request.params.id),
        request.body,
      );
      return reply.status(result.background ? 202 : 200).send(result.body);
    },
  );

  app.get(
    '/v1/capsules/:id/processes',
    {
      config: read,
      schema: {
        tags,
        summary: 'Every process in the capsule, with the tags of those started through the API',
        params: IdParams,
        response: { 200: s.ProcessList, ...errorResponses(404, 409) },
      },
    },
    async (request) => capsules.io.processes(principalOf(request), capsuleIdOf(request.params.id)),
  );

  app.delete(
    '/v1/capsules/:id/processes/:selector',
    {
      config: write,
      schema: {
        tags,
        summary: 'Signal a process by pid or tag (default SIGKILL)',
        params: s.ProcessParams,
        querystring: s.KillQuery,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await capsules.io.kill(
        principalOf(request),
        capsuleIdOf(request.params.id),
        request.params.selector,
        request.query.signal ?? 'SIGKILL',
      );
      return reply.status(204).send(null);
    },
  );

  // -- files ---------------------------------------------------------------

  for (const [route, stream] of [
    ['/v1/capsules/:id/files/write', false],
    ['/v1/capsules/:id/files/stream/write', true],
  ] as const) {
    app.post(
      route,
      {
        config: write,
        validatorCompiler: noBodyValidation,
        schema: {
          tags,
          summary: stream
            ? 'Upload a file of any size the capsule’s disk takes, streamed without buffering'
            : 'Upload a file (multipart: path, file); 413 past the size limit',
          params: IdParams,
          querystring: UploadQuery,
          consumes: ['multipart/form-data'],
          body: Upload,
          response: { 204: Type.Null(), ...errorResponses(404, 409, 413) },
        },
      },
      async (request, reply) => {
        const { path, file } = await uploadOf(request);
        await capsules.io
          .writeFile(principalOf(request), capsuleIdOf(request.params.id), path, file.file, stream)
          .catch((err: unknown) => {
            // The body ending mid-file fails the write through the file stream.
            throw file.file.errored ? malformedUpload(err) : err;
          });
        return reply.status(204).send(null);
      },
    );
  }

  app.post(
    '/v1/capsules/:id/files/read',
    {
      config: read,
      schema: {
        tags,
        summary: 'A file’s bytes (application/octet-stream); 413 past the size limit (use stream/read)',
        params: IdParams,
        body: s.PathBody,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(404, 409, 413) },
      },
    },
    async (request, reply) => {
      const data = await capsules.io.readFile(
        principalOf(request),
        capsuleIdOf(request.params.id),
        request.body.path,
      );
      // Raw bytes, not JSON: past the response schema's serializer.
      return reply
        .type('application/octet-stream')
        .serializer((v) => v as string)
        .send(data as unknown as string);
    },
  );

  app.post(
    '/v1/capsules/:id/files/stream/read',
    {
      config: read,
      schema: {
        tags,
        summary: 'A file of any size, streamed (chunked transfer encoding)',
        params: IdParams,
        body: s.PathBody,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const stream = await capsules.io.readStream(
        principalOf(request),
        capsuleIdOf(request.params.id),
        request.body.path,
      );
      return reply.type('application/octet-stream').send(stream as unknown as string);
    },
  );

  app.post(
    '/v1/capsules/:id/files/list',
    {
      config: read,
      schema: {
        tags,
        summary: 'A directory’s entries (depth N recurses N levels)',
        params: IdParams,
        body: s.ListBody,
        response: { 200: s.ListDirResponse, ...errorResponses(404, 409) },
      },
    },
    async (request) =>
      capsules.io.listFiles(
        principalOf(request),
        capsuleIdOf(request.params.id),
        request.body.path,
        request.body.depth ?? 1,
      ),
  );

  app.post(
    '/v1/capsules/:id/files/mkdir',
    {
      config: write,
      schema: {
        tags,
        summary: 'Make a directory and its parents; 409 already_exists when it is there',
        params: IdParams,
        body: s.PathBody,
        response: { 200: s.MakeDirResponse, ...errorResponses(404, 409) },
      },
    },
    async (request) =>
      capsules.io.mkdir(principalOf(request), capsuleIdOf(request.params.id), request.body.path),
  );

  app.post(
    '/v1/capsules/:id/files/remove',
    {
      config: write,
      schema: {
        tags,
        summary: 'Remove a file or a directory tree',
        params: IdParams,
        body: s.PathBody,
        response: { 204: Type.Null(), ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await capsules.io.removeFile(principalOf(request), capsuleIdOf(request.params.id), request.body.path);
      return reply.status(204).send(null);
    },
  );
}

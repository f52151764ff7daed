import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { principalOf } from '../../http/auth.ts';
import { firstFilePart, malformedUpload, requireMultipart } from '../../http/multipart.ts';
import { errorResponses, IdParams, PageQuery } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import * as s from './schemas.ts';
import { type FileDownload, type FilesService, invalidFilename } from './service.ts';

const tags = ['files'];
const read = { auth: { scope: 'read' } as const };
const write = { auth: { scope: 'write' } as const };

/**
 * `filename*` carries the name as it is (RFC 6266/8187); `filename` an ASCII
 * stand-in for clients that know only that one.
 */
function attachment(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** A file's bytes as a download, never a page of this origin: no sniffing, no scripts, even for text/html. */
export function sendDownload(reply: FastifyReply, { file, body }: FileDownload) {
  return reply
    .header('content-type', file.contentType)
    .header('content-length', String(file.sizeBytes ?? 0))
    .header('content-disposition', attachment(file.filename))
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "sandbox; default-src 'none'")
    .send(body as unknown as string);
}

export function registerFileRoutes(app: App, files: FilesService, publicUrl: string | undefined): void {
  const noBodyValidation = () => () => true;

  app.post(
    '/v1/files',
    {
      config: write,
      validatorCompiler: noBodyValidation,
      schema: {
        tags,
        summary: 'Upload a file (multipart/form-data, one file part); 413 past the size limit',
        consumes: ['multipart/form-data'],
        body: s.FileUpload,
        response: { 201: s.File, ...errorResponses(413) },
      },
    },
    async (request, reply) => {
      requireMultipart(request, 'file');
      const { part } = await firstFilePart(request);
      if (part === undefined) throw malformedUpload(new Error('it has no file part'));
      const problem = s.filenameProblem(part.filename);
      if (problem !== undefined) {
        part.file.resume();
        throw invalidFilename(problem);
      }
      const view = await files
        .upload(principalOf(request), {
          filename: part.filename,
          contentType: s.isContentType(part.mimetype) ? part.mimetype : undefined,
          source: part.file,
        })
        .catch((err: unknown) => {
          // The body ending mid-file fails the write through the file stream.
          throw part.file.errored ? malformedUpload(err) : err;
        });
      return reply.status(201).send(view);
    },
  );

  app.get(
    '/v1/files',
    {
      config: read,
      schema: {
        tags,
        summary: "The team's files, newest first",
        querystring: PageQuery,
        response: { 200: s.Files, ...errorResponses() },
      },
    },
    async (request) => files.list(principalOf(request), request.query),
  );

  app.get(
    '/v1/files/:id',
    {
      config: read,
      schema: {
        tags,
        summary: 'A file’s metadata',
        params: IdParams,
        response: { 200: s.File, ...errorResponses(404) },
      },
    },
    async (request) => files.get(principalOf(request), request.params.id),
  );

  app.get(
    '/v1/files/:id/content',
    {
      config: read,
      schema: {
        tags,
        summary: 'A file’s bytes, as a download',
        params: IdParams,
        response: { 200: Type.String({ format: 'binary' }), ...errorResponses(404) },
      },
    },
    async (request, reply) =>
      sendDownload(reply, await files.download(principalOf(request), request.params.id)),
  );

  app.delete(
    '/v1/files/:id',
    {
      config: write,
      schema: {
        tags,
        summary: 'Delete a file and its bytes',
        params: IdParams,
        response: { 204: Type.Null(), ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      await files.remove(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  // -- prepare → PUT → complete (AgentContainer's flow, for large files) --------

  app.post(
    '/v1/files/uploads',
    {
      config: write,
      schema: {
        tags,
        summary: 'Prepare an upload: PUT the bytes to upload_url, then POST …/complete',
        body: s.PrepareUploadBody,
        response: { 201: s.PreparedUpload, ...errorResponses(413) },
      },
    },
    async (request, reply) => {
      const base = publicUrl ?? `${request.protocol}://${request.host}`;
      return reply.status(201).send(await files.prepare(principalOf(request), request.body, base));
    },
  );

  // The PUT takes any body as a stream: its own content-type parsers, in their own scope.
  app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.put(
      '/v1/files/uploads/:id',
      {
        // The URL's token is the credential (a pre-signed URL): no session or key.
        config: { auth: 'public' },
        schema: {
          tags,
          summary: 'The bytes of a prepared upload (any content type); 413 past the size limit',
          params: IdParams,
          querystring: s.UploadTokenQuery,
          response: { 200: s.ReceivedUpload, ...errorResponses(404, 409, 410, 413) },
        },
      },
      async (request) => {
        const source = request.body instanceof Readable ? request.body : Readable.from([]);
        return files.receive(request.params.id, request.query.token, source);
      },
    );
  });

  app.post(
    '/v1/files/uploads/:id/complete',
    {
      config: write,
      schema: {
        tags,
        summary: 'Complete an upload whose bytes arrived: 201 with the file (200 when already completed)',
        params: IdParams,
        response: { 200: s.File, 201: s.File, ...errorResponses(404, 409, 410) },
      },
    },
    async (request, reply) => {
      const { created, file } = await files.complete(principalOf(request), request.params.id);
      return reply.status(created ? 201 : 200).send(file);
    },
  );
}

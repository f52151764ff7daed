import type { MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { AppError, BadRequestError } from '../core/errors.ts';

/**
 * The multipart parser fails on the body the client sent (no boundary, cut
 * short, a broken part header) with plain errors: those are the client's 400.
 * Its limit errors carry their own 4xx status and stay as they are.
 */
export function malformedUpload(err: unknown): unknown {
  if (err instanceof AppError || (err instanceof Error && 'statusCode' in err)) return err;
  const reason = err instanceof Error ? err.message : 'unreadable';
  return new BadRequestError('invalid_multipart', `the multipart/form-data body is malformed: ${reason}`);
}

/** Refuses a body that is not multipart/form-data, naming the fields the route expects. */
export function requireMultipart(request: FastifyRequest, fields: string): void {
  if (!request.isMultipart()) {
    throw new BadRequestError(
      'multipart_required',
      `send the file as multipart/form-data (fields: ${fields})`,
    );
  }
}

/**
 * The first file part of a multipart body, with the fields sent before it.
 * The file is streamed on, not buffered: the caller reads `part.file`.
 */
export async function firstFilePart(
  request: FastifyRequest,
): Promise<{ fields: Map<string, string>; part: MultipartFile | undefined }> {
  const fields = new Map<string, string>();
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (typeof part.value === 'string') fields.set(part.fieldname, part.value);
        continue;
      }
      return { fields, part };
    }
  } catch (err) {
    throw malformedUpload(err);
  }
  return { fields, part: undefined };
}

import { Type } from 'typebox';
import { Body, Paginated, Timestamp } from '../../http/schemas.ts';

/**
 * A file's name, as it will be called in a capsule's /workspace: one path
 * segment, no control characters (C0, DEL, C1: \p{Cc}) or invisible format
 * characters (\p{Cf}, such as U+202E, which makes a name read backwards),
 * not "." or "..". A Unicode pattern: Ajv compiles patterns with the u flag too.
 */
const FILENAME_PATTERN = '^(?!\\.{1,2}$)[^/\\\\\\p{Cc}\\p{Cf}]+$';
const FILENAME = new RegExp(FILENAME_PATTERN, 'u');
const CONTENT_TYPE_PATTERN = '^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\\s*;[\\x20-\\x7e]*)?$';
const CONTENT_TYPE = new RegExp(CONTENT_TYPE_PATTERN);

/** Why a name from a multipart part cannot be a file's name; undefined when it can. */
export function filenameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is missing: give the file part a filename';
  if (name.length > 255) return 'is longer than 255 characters';
  if (!FILENAME.test(name))
    return 'must be one path segment: no "/", "\\", control or format characters, not "." or ".."';
  return undefined;
}

export function isContentType(value: string): boolean {
  return value.length <= 255 && CONTENT_TYPE.test(value);
}

export const Filename = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: FILENAME_PATTERN,
  description: 'one path segment: no "/", "\\", control or format characters, not "." or ".."',
});

export const ContentType = Type.String({
  minLength: 3,
  maxLength: 255,
  pattern: CONTENT_TYPE_PATTERN,
  description: 'a media type, e.g. text/csv',
});

export const File = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  filename: Type.String(),
  content_type: Type.String(),
  size_bytes: Type.Integer(),
  sha256: Type.String({ description: 'hex SHA-256 of the bytes' }),
  created_at: Timestamp,
});

export const Files = Paginated(File);

export const FileUpload = Type.Object(
  { file: Type.String({ format: 'binary' }) },
  { description: 'multipart/form-data with one file part; its filename and content type are kept' },
);

export const PrepareUploadBody = Body({
  filename: Filename,
  content_type: Type.Optional(ContentType),
  size_bytes: Type.Optional(
    Type.Integer({ minimum: 0, description: 'checked against the bytes that arrive' }),
  ),
});

export const PreparedUpload = Type.Object({
  upload_id: Type.String(),
  upload_url: Type.String({ description: 'PUT the bytes here (the URL is the credential: keep it private)' }),
  expires_at: Timestamp,
  max_bytes: Type.Integer(),
});

export const UploadTokenQuery = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

export const ReceivedUpload = Type.Object({
  upload_id: Type.String(),
  status: Type.Literal('uploaded'),
  size_bytes: Type.Integer(),
  sha256: Type.String(),
});

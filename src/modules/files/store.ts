import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../../core/errors.ts';
import { type Id, isId } from '../../core/ids.ts';

export type FileId = Id<'file'>;
export type StoreKind = 'data_dir' | 'database';

/** What a store measured while it wrote a file's bytes. */
export interface StoredBytes {
  sizeBytes: number;
  sha256: string;
}

/**
 * Where files' bytes live. A file's id is its key (ids are made by the
 * server, never taken from a request, so a key is never a path a caller chose).
 */
export interface FileStore {
  readonly kind: StoreKind;
  /**
   * Writes `source` as the file's bytes, replacing any it had. Past `maxBytes`
   * it stops, keeps nothing, and throws FileTooLargeError.
   */
  write(id: FileId, source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<StoredBytes>;
  /** The file's bytes; the stream errors if the store has none. */
  read(id: FileId): Readable;
  /** Removes the bytes; no error when there are none. */
  remove(id: FileId): Promise<void>;
}

export class FileTooLargeError extends AppError {
  constructor(maxBytes: number) {
    super(413, 'file_too_large', `the file is larger than this server's limit of ${maxBytes} bytes`, {
      max_bytes: maxBytes,
    });
  }
}

/** Passes the bytes on, counting and hashing them; throws past `maxBytes`. */
export async function* metered(
  source: AsyncIterable<Uint8Array>,
  maxBytes: number,
  into: { sizeBytes: number; hash: ReturnType<typeof createHash> },
): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    into.sizeBytes += buf.length;
    if (into.sizeBytes > maxBytes) throw new FileTooLargeError(maxBytes);
    into.hash.update(buf);
    yield buf;
  }
}

export function meter() {
  return { sizeBytes: 0, hash: createHash('sha256') };
}

/**
 * Files under `<data dir>/files`, one per id, spread over 1 024 folders by
 * the id's last two characters. A write goes to a temporary name and is
 * renamed into place, so a reader never sees half a file.
 */
export class DataDirStore implements FileStore {
  readonly kind = 'data_dir' as const;

  constructor(private readonly dir: string) {}

  private pathOf(id: FileId): string {
    if (!isId(id, 'file') || !/^file_[0-9A-Z]+$/.test(id)) throw new Error(`not a file id: ${id}`);
    return path.join(this.dir, id.slice(-2), id);
  }

  async write(id: FileId, source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<StoredBytes> {
    const target = this.pathOf(id);
    await mkdir(path.dirname(target), { recursive: true });
    // Its own temporary name: two uploads to one prepared file never write into the same file.
    const partial = `${target}.${randomBytes(6).toString('hex')}.part`;
    const m = meter();
    // Opened here, before the stream: a stream destroyed while its own open
    // was still pending would create the file after the rm below.
    const handle = await open(partial, 'w');
    try {
      await pipeline(Readable.from(metered(source, maxBytes, m)), handle.createWriteStream());
      await rename(partial, target);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    } finally {
      await handle.close().catch(() => undefined);
    }
    return { sizeBytes: m.sizeBytes, sha256: m.hash.digest('hex') };
  }

  read(id: FileId): Readable {
    return createReadStream(this.pathOf(id));
  }

  async remove(id: FileId): Promise<void> {
    await rm(this.pathOf(id), { force: true });
  }
}

import { Readable } from 'node:stream';
import type { DbOrTx } from '../../db/client.ts';
import * as chunks from './chunks-repo.ts';
import { type FileId, type FileStore, meter, metered, type StoredBytes } from './store.ts';

/** 256 KiB a row: small enough to read one at a time, large enough that a file is few rows. */
const CHUNK_BYTES = 256 * 1024;

/**
 * Files in the database (`file_chunks`), so every server on one Postgres sees
 * the same files. A file is read one chunk per statement, never whole.
 */
export class DatabaseStore implements FileStore {
  readonly kind = 'database' as const;

  constructor(private readonly db: DbOrTx) {}

  async write(id: FileId, source: AsyncIterable<Uint8Array>, maxBytes: number): Promise<StoredBytes> {
    await chunks.deleteChunks(this.db, id);
    const m = meter();
    let seq = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (data: Buffer) => {
      await chunks.insertChunk(this.db, id, seq, data);
      seq += 1;
    };
    try {
      for await (const buf of metered(source, maxBytes, m)) {
        pending.push(buf);
        pendingBytes += buf.length;
        while (pendingBytes >= CHUNK_BYTES) {
          const all = Buffer.concat(pending);
          await flush(all.subarray(0, CHUNK_BYTES));
          const rest = all.subarray(CHUNK_BYTES);
          pending = rest.length > 0 ? [rest] : [];
          pendingBytes = rest.length;
        }
      }
      if (pendingBytes > 0 || seq === 0) await flush(Buffer.concat(pending));
    } catch (err) {
      await chunks.deleteChunks(this.db, id);
      throw err;
    }
    return { sizeBytes: m.sizeBytes, sha256: m.hash.digest('hex') };
  }

  read(id: FileId): Readable {
    const db = this.db;
    return Readable.from(
      (async function* () {
        for (let seq = 0; ; seq++) {
          const data = await chunks.chunkAt(db, id, seq);
          if (data === undefined) {
            if (seq === 0) throw new Error(`file ${id} has no bytes in the database`);
            return;
          }
          if (data.length > 0) yield data;
        }
      })(),
    );
  }

  async remove(id: FileId): Promise<void> {
    await chunks.deleteChunks(this.db, id);
  }
}

import { and, eq } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { fileChunks } from '../../db/schema/index.ts';
import type { FileId } from './store.ts';

export async function insertChunk(db: DbOrTx, fileId: FileId, seq: number, data: Buffer): Promise<void> {
  await db.insert(fileChunks).values({ fileId, seq, data });
}

export async function chunkAt(db: DbOrTx, fileId: FileId, seq: number): Promise<Buffer | undefined> {
  const [row] = await db
    .select({ data: fileChunks.data })
    .from(fileChunks)
    .where(and(eq(fileChunks.fileId, fileId), eq(fileChunks.seq, seq)));
  return row?.data;
}

export async function deleteChunks(db: DbOrTx, fileId: FileId): Promise<void> {
  await db.delete(fileChunks).where(eq(fileChunks.fileId, fileId));
}

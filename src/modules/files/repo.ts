import { and, desc, eq, inArray, lt } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor, rowsLocked } from '../../db/query-parts.ts';
import { files } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';
import type { FileId } from './store.ts';

export type FileRow = typeof files.$inferSelect;
export type FilePatch = Partial<Omit<FileRow, 'id' | 'teamId' | 'createdAt' | 'store'>>;

export async function insertFile(db: DbOrTx, row: typeof files.$inferInsert): Promise<FileRow> {
  const [inserted] = await db.insert(files).values(row).returning();
  return inserted!;
}

export async function findFile(
  db: DbOrTx,
  teamId: TeamId,
  id: FileId,
  lock?: 'update',
): Promise<FileRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select()
      .from(files)
      .where(and(eq(files.teamId, teamId), eq(files.id, id))),
    lock,
  );
  return row;
}

/**
 * System-only (by id alone): a prepared upload's PUT carries no team, only
 * the upload's id and token; the caller checks the token before anything else.
 */
export async function systemFindUpload(
  db: DbOrTx,
  id: FileId,
  lock?: 'update',
): Promise<FileRow | undefined> {
  const [row] = await rowsLocked(db.select().from(files).where(eq(files.id, id)), lock);
  return row;
}

/** The team's ready files among `ids` (for references from tasks and agents). */
export async function readyFilesAmong(db: DbOrTx, teamId: TeamId, ids: FileId[]): Promise<FileRow[]> {
  if (ids.length === 0) return [];
  return db
    .select()
    .from(files)
    .where(and(eq(files.teamId, teamId), inArray(files.id, ids), eq(files.status, 'ready')));
}

export async function listReadyFiles(
  db: DbOrTx,
  teamId: TeamId,
  beforeId: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(files)
    .where(and(eq(files.teamId, teamId), eq(files.status, 'ready'), beforeCursor(files.id, beforeId)))
    .orderBy(desc(files.id))
    .limit(limit);
}

export async function updateFile(db: DbOrTx, id: FileId, patch: FilePatch): Promise<FileRow | undefined> {
  return updateOne(db, files, eq(files.id, id), patch);
}

export async function deleteFile(db: DbOrTx, id: FileId): Promise<void> {
  await db.delete(files).where(eq(files.id, id));
}

/** System-only: files never completed whose last change is older than `before` (the sweep's). */
export async function systemAbandonedUploads(db: DbOrTx, before: Date, limit: number): Promise<FileRow[]> {
  return db
    .select()
    .from(files)
    .where(and(inArray(files.status, ['pending', 'uploaded']), lt(files.updatedAt, before)))
    .orderBy(files.updatedAt)
    .limit(limit);
}

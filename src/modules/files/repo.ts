import { and, eq, inArray, lt } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { rowsLocked } from '../../db/query-parts.ts';
import { files } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';
import type { FileId } from './store.ts';

export type FileRow = typeof files.$inferSelect;
export type FilePatch = Partial<Omit<FileRow, 'id' | 'teamId' | 'createdAt' | 'store'>>;

export function insertFile(db: DbOrTx, row: typeof files.$inferInsert): Promise<FileRow> {
  return insertOne(db, files, row);
}

export function findFile(db: DbOrTx, teamId: TeamId, id: FileId, lock?: 'update') {
  return findInTeam(db, files, teamId, id, lock);
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

export function listReadyFiles(db: DbOrTx, teamId: TeamId, beforeId: string | undefined, limit: number) {
  return pageInTeam(db, files, teamId, beforeId, limit, eq(files.status, 'ready'));
}

/** System-only (by id alone): callers hold a row they read with its team, or made themselves. */
export async function systemUpdateFile(
  db: DbOrTx,
  id: FileId,
  patch: FilePatch,
): Promise<FileRow | undefined> {
  return updateOne(db, files, eq(files.id, id), patch);
}

/** System-only (by id alone): callers hold a row they read with its team, or made themselves. */
export async function systemDeleteFile(db: DbOrTx, id: FileId): Promise<void> {
  await db.delete(files).where(eq(files.id, id));
}

/**
 * System-only (by id alone): claims a prepared upload for one PUT, in one
 * statement, so that of two PUTs (on any servers) or a PUT and a complete
 * only one proceeds. Undefined when the upload is not pending or uploaded.
 */
export async function systemClaimUpload(db: DbOrTx, id: FileId, now: Date): Promise<FileRow | undefined> {
  return updateOne(db, files, and(eq(files.id, id), inArray(files.status, ['pending', 'uploaded'])), {
    status: 'writing',
    updatedAt: now,
  });
}

/** System-only (by id alone): ends the PUT that claimed the upload (only while it is still 'writing'). */
export async function systemReleaseUpload(
  db: DbOrTx,
  id: FileId,
  patch: FilePatch & { status: 'pending' | 'uploaded' },
): Promise<FileRow | undefined> {
  return updateOne(db, files, and(eq(files.id, id), eq(files.status, 'writing')), patch);
}

/** System-only: files never completed whose last change is older than `before` (the sweep's). */
export async function systemAbandonedUploads(db: DbOrTx, before: Date, limit: number): Promise<FileRow[]> {
  return db
    .select()
    .from(files)
    .where(and(inArray(files.status, ['pending', 'writing', 'uploaded']), lt(files.updatedAt, before)))
    .orderBy(files.updatedAt)
    .limit(limit);
}

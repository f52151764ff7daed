import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Static } from 'typebox';
import type { Context, Timer } from '../../core/context.ts';
import { safeEqual, type TokenHasher } from '../../core/crypto.ts';
import {
  BadRequestError,
  ConflictError,
  GoneError,
  NotFoundError,
  ValidationError,
} from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { type FileId, type FileStore, FileTooLargeError, type StoredBytes, type StoreKind } from './store.ts';
import { fileView } from './views.ts';

export type PrepareUploadInput = Static<typeof s.PrepareUploadBody>;
export { FileTooLargeError } from './store.ts';
export type { FileView } from './views.ts';

export interface FilesOptions {
  /** The largest file accepted, in bytes (PADDOCK_FILE_MAX_BYTES). */
  maxBytes: number;
  /** How long a prepared upload's URL works. */
  uploadTtlMs: number;
}

/** An upload never completed is removed this long after its last change. */
const ABANDONED_AFTER_MS = 24 * 60 * 60 * 1000;
const SWEEP_EVERY_MS = 60 * 60 * 1000;
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/** A file's bytes and what to send with them. */
export interface FileDownload {
  file: repo.FileRow;
  body: Readable;
}

function fileId(raw: string, kind = 'file'): FileId {
  return idOrNotFound(raw, 'file', kind);
}

/**
 * Files (AgentContainer's): uploaded in one multipart request, or prepared,
 * PUT to a URL that is its own credential, and completed. Only ready files
 * are listed or can be referenced; the bytes live in the FileStore.
 */
export class FilesService {
  private sweepTimer: Timer | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    /** Where new files go, and every store, so files kept by an earlier setting stay readable. */
    private readonly stores: { current: StoreKind; all: Record<StoreKind, FileStore> },
    readonly options: FilesOptions,
  ) {}

  /** Agent keys never read or manage files: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'files');
  }

  /** A multipart upload: the row first (so an abandoned write is swept), then the bytes, then ready. */
  async upload(
    principal: Principal,
    input: { filename: string; contentType: string | undefined; source: AsyncIterable<Uint8Array> },
  ) {
    const teamId = this.team(principal, 'write');
    const id = await this.insertPending(principal, teamId, {
      filename: input.filename,
      contentType: input.contentType ?? DEFAULT_CONTENT_TYPE,
    });
    const stored = await this.writeOrForget(id, input.source);
    const row = await this.db.transaction(async (tx) => {
      const ready = await repo.systemUpdateFile(tx, id, {
        status: 'ready',
        sizeBytes: stored.sizeBytes,
        sha256: stored.sha256,
        updatedAt: this.ctx.clock.now(),
      });
      await this.recordCreated(tx, principal, ready!);
      return ready!;
    });
    return fileView(row);
  }

  /** A file's row before its bytes: pending, in this server's store. */
  private async insertPending(
    principal: Principal,
    teamId: TeamId,
    fields: Pick<repo.FileRow, 'filename' | 'contentType'> &
      Partial<Pick<repo.FileRow, 'expectedBytes' | 'uploadTokenHash' | 'uploadExpiresAt'>>,
  ): Promise<FileId> {
    const id = newId('file');
    const now = this.ctx.clock.now();
    await repo.insertFile(this.db, {
      ...fields,
      id,
      teamId,
      status: 'pending',
      store: this.stores.current,
      createdBy: actorOf(principal).actorId,
      createdAt: now,
      updatedAt: now,
    });
    return id;
  }

  /** Writes the bytes; on any failure removes the row and whatever was written, then rethrows. */
  private async writeOrForget(id: FileId, source: AsyncIterable<Uint8Array>) {
    try {
      return await this.storeOf(this.stores.current).write(id, source, this.options.maxBytes);
    } catch (err) {
      await this.forget(id);
      throw err;
    }
  }

  private storeOf(kind: StoreKind): FileStore {
    return this.stores.all[kind];
  }

  private async forget(id: FileId, kind: StoreKind = this.stores.current): Promise<void> {
    await this.storeOf(kind).remove(id);
    await repo.systemDeleteFile(this.db, id);
  }

  private async recordCreated(
    tx: Parameters<EventsService['record']>[0],
    principal: Principal,
    row: repo.FileRow,
  ) {
    await this.events.record(tx, {
      teamId: row.teamId,
      type: 'file.created',
      ...actorOf(principal),
      subjectId: row.id,
      data: { filename: row.filename, size_bytes: row.sizeBytes ?? 0 },
    });
  }

  // -- prepare → PUT → complete ---------------------------------------------

  /** Prepares an upload: its URL (the token in it is the only credential the PUT needs) and expiry. */
  async prepare(principal: Principal, input: PrepareUploadInput, baseUrl: string) {
    const teamId = this.team(principal, 'write');
    if (input.size_bytes !== undefined && input.size_bytes > this.options.maxBytes)
      throw new FileTooLargeError(this.options.maxBytes);
    const token = `pdu_${randomBytes(24).toString('base64url')}`;
    const expiresAt = new Date(this.ctx.clock.now().getTime() + this.options.uploadTtlMs);
    const id = await this.insertPending(principal, teamId, {
      filename: input.filename,
      contentType: input.content_type ?? DEFAULT_CONTENT_TYPE,
      expectedBytes: input.size_bytes ?? null,
      uploadTokenHash: this.hasher.hash(token),
      uploadExpiresAt: expiresAt,
    });
    return {
      upload_id: id,
      upload_url: `${baseUrl}/v1/files/uploads/${id}?token=${token}`,
      expires_at: expiresAt.toISOString(),
      max_bytes: this.options.maxBytes,
    };
  }

  /**
   * The PUT of a prepared upload's bytes. The token is checked before
   * anything else is said about the upload: a wrong one is a 404, as an
   * unknown id is. The PUT claims the upload in the database ('writing'), so
   * a second PUT or a complete meanwhile, on any server, is a 409. A later
   * PUT before complete replaces the bytes; a PUT that fails leaves none
   * (the upload is pending again, open for a retry).
   */
  async receive(rawId: string, token: string, source: AsyncIterable<Uint8Array>) {
    const id = fileId(rawId, 'upload');
    const tokenHash = this.hasher.hash(token);
    const row = this.checkUpload(await repo.systemFindUpload(this.db, id), rawId, tokenHash);
    if (!(await repo.systemClaimUpload(this.db, id, this.ctx.clock.now()))) {
      // Changed since it was read: explain it as it is now.
      this.checkUpload(await repo.systemFindUpload(this.db, id), rawId, tokenHash);
      throw uploadInProgress(id);
    }
    const store = this.storeOf(row.store);
    let stored: StoredBytes;
    try {
      stored = await store.write(id, source, this.options.maxBytes);
      if (row.expectedBytes !== null && stored.sizeBytes !== row.expectedBytes)
        throw new BadRequestError(
          'size_mismatch',
          `upload ${id} was prepared for ${row.expectedBytes} bytes but ${stored.sizeBytes} arrived`,
          { expected_bytes: row.expectedBytes, received_bytes: stored.sizeBytes },
        );
    } catch (err) {
      // Whatever this or an earlier PUT stored goes: complete answers upload_incomplete until a PUT succeeds.
      await store.remove(id);
      await repo.systemReleaseUpload(this.db, id, {
        status: 'pending',
        sizeBytes: null,
        sha256: null,
        updatedAt: this.ctx.clock.now(),
      });
      throw err;
    }
    const released = await repo.systemReleaseUpload(this.db, id, {
      status: 'uploaded',
      sizeBytes: stored.sizeBytes,
      sha256: stored.sha256,
      updatedAt: this.ctx.clock.now(),
    });
    if (!released) {
      // Swept while it was written (a PUT that ran for over a day): nothing to keep the bytes for.
      await store.remove(id);
      throw new NotFoundError('upload', rawId);
    }
    return {
      upload_id: id,
      status: 'uploaded' as const,
      size_bytes: stored.sizeBytes,
      sha256: stored.sha256,
    };
  }

  /** A prepared upload a PUT may write, or the error to answer (token first, so a wrong one learns nothing). */
  private checkUpload(row: repo.FileRow | undefined, rawId: string, tokenHash: string): repo.FileRow {
    if (!row || row.uploadTokenHash === null || !safeEqual(row.uploadTokenHash, tokenHash))
      throw new NotFoundError('upload', rawId);
    if (row.status === 'ready')
      throw new ConflictError('upload_completed', `upload ${row.id} is completed; prepare a new one`);
    if (row.uploadExpiresAt !== null && row.uploadExpiresAt <= this.ctx.clock.now())
      throw new GoneError(
        'upload_expired',
        `upload ${row.id} expired at ${row.uploadExpiresAt.toISOString()}`,
      );
    if (row.status === 'writing') throw uploadInProgress(row.id);
    return row;
  }

  /** Completes an upload whose bytes arrived: 201 with the file; again, 200 with the same file. */
  async complete(
    principal: Principal,
    rawId: string,
  ): Promise<{ created: boolean; file: ReturnType<typeof fileView> }> {
    const teamId = this.team(principal, 'write');
    const id = fileId(rawId, 'upload');
    return this.db.transaction(async (tx) => {
      const row = await repo.findFile(tx, teamId, id, 'update');
      // A prepared upload keeps its expiry after completion; a file uploaded in one request has none.
      if (!row || row.uploadExpiresAt === null) throw new NotFoundError('upload', rawId);
      if (row.status === 'ready') return { created: false, file: fileView(row) };
      if (row.status === 'writing') throw uploadInProgress(id);
      if (row.status === 'pending') {
        if (row.uploadExpiresAt !== null && row.uploadExpiresAt <= this.ctx.clock.now())
          throw new GoneError('upload_expired', `upload ${id} expired before its bytes arrived`);
        throw new ConflictError(
          'upload_incomplete',
          `upload ${id} has no bytes yet: PUT them to its upload_url first`,
        );
      }
      const ready = await repo.systemUpdateFile(tx, id, {
        status: 'ready',
        uploadTokenHash: null,
        updatedAt: this.ctx.clock.now(),
      });
      await this.recordCreated(tx, principal, ready!);
      return { created: true, file: fileView(ready!) };
    });
  }

  // -- reading and deleting ---------------------------------------------------

  async list(principal: Principal, query: PageQuery) {
    const teamId = this.team(principal, 'read');
    return pageOf(query, (cursor, rows) => repo.listReadyFiles(this.db, teamId, cursor, rows), fileView);
  }

  private async readyFile(teamId: TeamId, rawId: string): Promise<repo.FileRow> {
    const row = await repo.findFile(this.db, teamId, fileId(rawId));
    if (row?.status !== 'ready') throw new NotFoundError('file', rawId);
    return row;
  }

  async get(principal: Principal, id: string) {
    return fileView(await this.readyFile(this.team(principal, 'read'), id));
  }

  async download(principal: Principal, id: string): Promise<FileDownload> {
    const file = await this.readyFile(this.team(principal, 'read'), id);
    return { file, body: this.storeOf(file.store).read(file.id) };
  }

  /** For modules that reference files (tasks, agents): the ids among `ids` that are no ready file of the team. */
  async unknownFileIds(teamId: TeamId, ids: readonly string[]): Promise<string[]> {
    const valid = ids.filter((id): id is FileId => isId(id, 'file'));
    const found = new Set((await repo.readyFilesAmong(this.db, teamId, valid)).map((f) => f.id as string));
    return ids.filter((id) => !found.has(id));
  }

  async remove(principal: Principal, rawId: string): Promise<void> {
    const teamId = this.team(principal, 'write');
    const row = await this.readyFile(teamId, rawId);
    await this.db.transaction(async (tx) => {
      await repo.systemDeleteFile(tx, row.id);
      await this.events.record(tx, {
        teamId,
        type: 'file.deleted',
        ...actorOf(principal),
        subjectId: row.id,
        data: { filename: row.filename },
      });
    });
    // The row is gone first: nobody can reach the bytes while they are removed.
    await this.storeOf(row.store).remove(row.id);
  }

  // -- the sweep --------------------------------------------------------------

  /** Removes uploads never completed (and their bytes, even a PUT still writing) a day after their last change. */
  async sweepAbandoned(): Promise<number> {
    const before = new Date(this.ctx.clock.now().getTime() - ABANDONED_AFTER_MS);
    let removed = 0;
    for (const row of await repo.systemAbandonedUploads(this.db, before, 500)) {
      await this.forget(row.id, row.store);
      removed += 1;
    }
    return removed;
  }

  start(): void {
    this.sweepTimer ??= this.ctx.timers.every(SWEEP_EVERY_MS, () => {
      this.sweepAbandoned().catch((err: unknown) =>
        this.ctx.log.warn({ err }, 'could not sweep abandoned file uploads'),
      );
    });
  }

  close(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }
}

function uploadInProgress(id: FileId): ConflictError {
  return new ConflictError('upload_in_progress', `upload ${id} is receiving its bytes from another request`);
}

export function invalidFilename(reason: string): ValidationError {
  return new ValidationError(`the file's name ${reason}`, { filename: reason });
}

import { bigint, customType, index, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** PGlite answers bytea as a Uint8Array, node-postgres as a Buffer: both become a Buffer. */
const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (value) => (Buffer.isBuffer(value) ? value : Buffer.from(value)),
});

/**
 * Files a team uploaded (task inputs, agents' reference files) and, later,
 * task outputs. The bytes live in the file store the row names: the data dir
 * (embedded default) or `file_chunks` (Postgres, so every server sees them).
 */
export const files = pgTable(
  'files',
  {
    id: text('id').primaryKey().$type<Id<'file'>>(),
    teamId: teamIdColumn(),
    filename: text('filename').notNull(),
    contentType: text('content_type').notNull(),
    /**
     * pending: prepared, waiting for its bytes; writing: one PUT is storing them;
     * uploaded: bytes in, waiting for complete; ready: usable.
     */
    status: text('status', { enum: ['pending', 'writing', 'uploaded', 'ready'] }).notNull(),
    store: text('store', { enum: ['data_dir', 'database'] }).notNull(),
    sizeBytes: bigint('size_bytes', { mode: 'number' }),
    /** With a prepared upload: the size the client announced, checked when the bytes arrive. */
    expectedBytes: bigint('expected_bytes', { mode: 'number' }),
    sha256: text('sha256'),
    /** With a prepared upload: the HMAC of the upload URL's token, and when it stops working. */
    uploadTokenHash: text('upload_token_hash'),
    uploadExpiresAt: ts('upload_expires_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [index('files_team_idx').on(t.teamId, t.id), index('files_status_idx').on(t.status, t.updatedAt)],
);

/** The bytes of files kept in the database, in chunks of up to 256 KiB. */
export const fileChunks = pgTable(
  'file_chunks',
  {
    fileId: text('file_id').notNull().$type<Id<'file'>>(),
    seq: integer('seq').notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.fileId, t.seq] })],
);

import type { SchemaLevel } from '../db/migration-level.ts';
import { CorruptArchiveError, RefusedError } from './errors.ts';

// What a backup archive holds, in order (docs/operations.md "Backup and restore"):
//   manifest.json      this file: who made it, when, at which schema level
//   master.key         the key that opens the database's secrets (when the data dir had it)
//   files/…            uploaded files' bytes (the data-dir file store)
//   sandboxes/host-id, sandboxes/templates/…   the local host's snapshots and built environments
//   pgdata.tar         the embedded database's data dir, as PGlite dumps it
//   files/…            files that arrived while the database was dumped
//   checksums.json     every file's size and SHA-256; last, so an archive cut short has none

export const MANIFEST = 'manifest.json';
export const DATABASE = 'pgdata.tar';
export const CHECKSUMS = 'checksums.json';
export const MASTER_KEY = 'master.key';
export const FORMAT = 'paddock-backup';
export const FORMAT_VERSION = 1;

export interface Manifest {
  format: typeof FORMAT;
  format_version: number;
  paddock_version: string;
  created_at: string;
  schema: { migrations_applied: number; last_migration: string | null; last_migration_when: number };
  source: {
    data_dir: string;
    sandbox_dir: string;
    /** Whether a running server made the database's dump (else this command opened the data dir itself). */
    server_running: boolean;
  };
  /** What the archive holds besides the database. */
  contents: {
    database: typeof DATABASE;
    /** false when the key came from PADDOCK_MASTER_KEY: keep that value beside the archive. */
    master_key: boolean;
    files: boolean;
    templates: boolean;
  };
  /** What a data dir holds that a backup leaves out, and why. */
  not_included: string[];
}

export interface Checksums {
  files: Record<string, { size: number; sha256: string }>;
}

export const NOT_INCLUDED = [
  "sandboxes/capsules: running capsules' scratch trees (capsules end with their server)",
  'paddock.lock and run/: the running server itself',
  'files/**/*.part: uploads still being written',
];

export function schemaOf(level: SchemaLevel): Manifest['schema'] {
  return {
    migrations_applied: level.applied,
    last_migration: level.lastTag,
    last_migration_when: level.lastWhen,
  };
}

/** The manifest of an archive, checked to be one this build reads. */
export function parseManifest(bytes: Buffer): Manifest {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as Manifest;
  } catch {
    throw new CorruptArchiveError('its manifest.json is not JSON');
  }
  if (manifest?.format !== FORMAT || typeof manifest.format_version !== 'number')
    throw new CorruptArchiveError('it is not a Paddock backup (no manifest.json)');
  if (manifest.format_version > FORMAT_VERSION)
    throw new RefusedError(
      `the archive is in backup format ${manifest.format_version}, newer than this Paddock reads (${FORMAT_VERSION}): restore it with the Paddock that made it (${manifest.paddock_version}) or a later one`,
    );
  if (typeof manifest.schema?.last_migration_when !== 'number')
    throw new CorruptArchiveError('its manifest.json does not say its schema level');
  return manifest;
}

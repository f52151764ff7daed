import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, open, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { MIGRATIONS_DIR, openPglite } from '../db/client.ts';
import { lockHolder } from '../db/data-dir-lock.ts';
import { knownLevel, readJournal, schemaLevel } from '../db/migration-level.ts';
import { CorruptArchiveError, RefusedError } from './errors.ts';
import {
  CHECKSUMS,
  type Checksums,
  DATABASE,
  MANIFEST,
  MASTER_KEY,
  type Manifest,
  parseManifest,
} from './manifest.ts';
import { moveTemplatePaths } from './restore-repo.ts';
import { type Entry, readTar } from './tar.ts';

export interface RestoreResult {
  manifest: Manifest;
  files: number;
  /** The data dir had things in it, and --force replaced them. */
  replaced: boolean;
}

/** Names an archive may hold, and where each goes in the data dir. */
function allowedName(name: string): boolean {
  if (name.startsWith('/') || name.split('/').some((part) => part === '' || part === '.' || part === '..'))
    return false;
  return (
    [
      MASTER_KEY,
      DATABASE,
      CHECKSUMS,
      'files',
      'sandboxes',
      'sandboxes/host-id',
      'sandboxes/templates',
    ].includes(name) ||
    name.startsWith('files/') ||
    name.startsWith('sandboxes/templates/')
  );
}

function isEmptyDir(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

/** Refuses a data dir a server holds, or (unless forced) one with anything in it. */
function checkTarget(dataDir: string, force: boolean): void {
  const holder = lockHolder(dataDir);
  if (holder !== undefined)
    throw new RefusedError(
      `the data dir ${dataDir} is in use by a running Paddock (pid ${holder}): stop it before restoring into it`,
    );
  if (existsSync(dataDir) && !statSync(dataDir).isDirectory())
    throw new RefusedError(`${dataDir} is not a directory`);
  if (!force && !isEmptyDir(dataDir))
    throw new RefusedError(
      `the data dir ${dataDir} is not empty: restore into a new one, or add --force to replace what it holds`,
    );
}

/** A zlib or file error while reading is a damaged or cut archive. */
function asCorrupt(err: unknown): unknown {
  if (err instanceof CorruptArchiveError || err instanceof RefusedError) return err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && e.code.startsWith('Z_'))
    return new CorruptArchiveError(`the archive is damaged or cut short (${e.message})`);
  return err;
}

/**
 * Restores a backup into `dataDir`, which must be empty (or `force`) and not
 * in use. Everything is unpacked beside it, checked against the archive's
 * checksums, and the database opened once (which also finishes its
 * recovery); only then is it renamed into place, so a refused or failed
 * restore leaves the data dir as it was. An archive whose schema is newer
 * than this build's migrations is refused before anything is written; an
 * older one migrates forward when a server first starts on it.
 */
export async function restoreBackup(options: {
  file: string;
  dataDir: string;
  force: boolean;
}): Promise<RestoreResult> {
  const dataDir = path.resolve(options.dataDir);
  checkTarget(dataDir, options.force);
  if (!existsSync(options.file)) throw new Error(`${options.file} does not exist`);
  const journal = readJournal(MIGRATIONS_DIR);

  const gunzip = createGunzip();
  const input = createReadStream(options.file);
  input.on('error', (err) => gunzip.destroy(err));
  const entries = readTar(input.pipe(gunzip))[Symbol.asyncIterator]();
  const next = async (): Promise<Entry | undefined> => {
    try {
      const r = await entries.next();
      return r.done ? undefined : r.value;
    } catch (err) {
      throw asCorrupt(err);
    }
  };

  const first = await next();
  if (!first || first.name !== MANIFEST || first.type !== 'file')
    throw new CorruptArchiveError('it is not a Paddock backup (it does not start with manifest.json)');
  const manifest = parseManifest(await readAll(first));
  const newest = journal.at(-1);
  if (!knownLevel(journal, manifest.schema.last_migration_when))
    throw new RefusedError(
      `the archive's database is at a newer schema (migration ${manifest.schema.last_migration ?? '?'}, ` +
        `${manifest.schema.migrations_applied} applied) than this Paddock knows (up to ${newest?.tag}, ` +
        `${journal.length}): restore it with Paddock ${manifest.paddock_version} or later`,
    );

  const staging = path.join(path.dirname(dataDir), `.${path.basename(dataDir)}.restore-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: 0o700 });
  try {
    const written = new Map<string, { size: number; sha256: string }>();
    const dirModes: Array<[string, number]> = [];
    const links: Array<[string, string]> = [];
    let dump: Buffer | undefined;
    let checksums: Checksums | undefined;
    for (let entry = await next(); entry; entry = await next()) {
      if (checksums)
        throw new CorruptArchiveError(`${entry.name} comes after checksums.json, which ends a backup`);
      if (!allowedName(entry.name))
        throw new CorruptArchiveError(`it holds ${entry.name}, which is no part of a Paddock backup`);
      const target = path.join(staging, entry.name);
      if (entry.type === 'dir') {
        await mkdir(target, { recursive: true, mode: 0o700 });
        dirModes.push([target, entry.mode]);
      } else if (entry.type === 'symlink') {
        // Made last: a file written through a link could land outside the data dir.
        links.push([target, entry.linkname ?? '']);
      } else if (entry.name === DATABASE) {
        dump = await readAll(entry, (bytes) => written.set(entry.name, bytes));
      } else if (entry.name === CHECKSUMS) {
        checksums = parseChecksums(await readAll(entry));
      } else {
        await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        written.set(entry.name, await writeEntry(entry, target));
      }
    }
    if (!checksums)
      throw new CorruptArchiveError('it is cut short (it has no checksums.json, its last entry)');
    if (!dump) throw new CorruptArchiveError('it holds no database (pgdata.tar)');
    for (const [name, expected] of Object.entries(checksums.files)) {
      const got = written.get(name);
      if (!got) throw new CorruptArchiveError(`${name} is missing from it`);
      if (got.size !== expected.size || got.sha256 !== expected.sha256)
        throw new CorruptArchiveError(`${name} is damaged (its checksum does not match)`);
    }
    for (const name of written.keys())
      if (!checksums.files[name]) throw new CorruptArchiveError(`${name} is not in its checksums.json`);
    for (const [at, target] of links) {
      await mkdir(path.dirname(at), { recursive: true, mode: 0o700 });
      await symlink(target, at);
    }
    // Deepest first: a folder made read-only must not stop what goes in it.
    for (const [dir, mode] of dirModes.reverse()) await chmod(dir, mode);
    if (written.has(MASTER_KEY)) await chmod(path.join(staging, MASTER_KEY), 0o600);

    await openRestored(staging, dump, manifest, journal, dataDir);

    checkTarget(dataDir, options.force);
    let replaced: string | undefined;
    if (existsSync(dataDir)) {
      if (isEmptyDir(dataDir)) await rm(dataDir, { recursive: true });
      else {
        replaced = path.join(path.dirname(dataDir), `.${path.basename(dataDir)}.replaced-${process.pid}`);
        await rename(dataDir, replaced);
      }
    }
    await rename(staging, dataDir);
    if (replaced) await rm(replaced, { recursive: true, force: true });
    return { manifest, files: written.size, replaced: replaced !== undefined };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw asCorrupt(err);
  }
}

/**
 * Loads the database into the staging dir and opens it: its level must be
 * the manifest's; templates' paths move to where the data dir will be.
 */
async function openRestored(
  staging: string,
  dump: Buffer,
  manifest: Manifest,
  journal: ReturnType<typeof readJournal>,
  dataDir: string,
): Promise<void> {
  let database: Awaited<ReturnType<typeof openPglite>>;
  try {
    database = await openPglite({ dataDir: staging, loadDataDir: new Blob([dump]) });
  } catch (err) {
    throw new CorruptArchiveError(`its database does not open: ${(err as Error).message}`);
  }
  try {
    const level = await schemaLevel(database.db, journal);
    if (level.lastWhen !== manifest.schema.last_migration_when)
      throw new CorruptArchiveError(
        `its database is at another schema level than its manifest says (${level.lastTag ?? level.lastWhen})`,
      );
    const from = `${manifest.source.sandbox_dir}${path.sep}templates${path.sep}`;
    const to = `${path.join(dataDir, 'sandboxes', 'templates')}${path.sep}`;
    if (from !== to) await moveTemplatePaths(database.db, from, to);
  } finally {
    await database.close();
  }
}

async function readAll(
  entry: Entry,
  measured?: (m: { size: number; sha256: string }) => void,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of entry.body()) chunks.push(chunk);
  const all = Buffer.concat(chunks);
  measured?.({ size: all.length, sha256: createHash('sha256').update(all).digest('hex') });
  return all;
}

async function writeEntry(entry: Entry, target: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  // 'wx': two entries of one name, or a name a link made, are refused rather than followed.
  const handle = await open(target, 'wx', 0o600);
  let size = 0;
  try {
    for await (const chunk of entry.body()) {
      hash.update(chunk);
      size += chunk.length;
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
  await chmod(target, entry.mode);
  return { size, sha256: hash.digest('hex') };
}

function parseChecksums(bytes: Buffer): Checksums {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as Checksums;
    if (parsed && typeof parsed.files === 'object') return parsed;
  } catch {
    // below
  }
  throw new CorruptArchiveError('its checksums.json is damaged');
}

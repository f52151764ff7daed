import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, lstat, readdir, readFile, readlink, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { VERSION } from '../version.ts';
import {
  CHECKSUMS,
  type Checksums,
  DATABASE,
  FORMAT,
  FORMAT_VERSION,
  MANIFEST,
  MASTER_KEY,
  type Manifest,
  NOT_INCLUDED,
} from './manifest.ts';
import { TarWriter } from './tar.ts';

/** Where the database's dump comes from: the running server, or this process's own copy of the database. */
export interface DatabaseSource {
  serverRunning: boolean;
  schema: Manifest['schema'];
  sandboxDir: string;
  masterKey: 'file' | 'environment';
  /** Writes the database's dump to `file` (made new, mode 0600), streamed: never whole in this process. */
  dumpTo(file: string): Promise<void>;
}

export interface BackupResult {
  manifest: Manifest;
  files: number;
  bytes: number;
  /** Things in the data dir that are neither files, folders nor links (left out). */
  skipped: string[];
}

/** The folders of the sandbox dir a backup takes: the rest is capsules' scratch. */
const SANDBOX_ENTRIES = ['host-id', 'templates'];

/**
 * Writes the data dir's backup to `file` (mode 0600: it holds the master
 * key). The archive is written beside it and renamed when complete, so
 * `file` is either a whole backup or not there.
 *
 * Uploaded files are taken before the database and again after (those that
 * arrived meanwhile): a file's bytes are written before its row says it is
 * there, and removed after its row is, so the database's dump finds the bytes
 * of every file it holds — except a file uploaded and deleted while the dump
 * ran, whose row the dump may hold without bytes.
 */
export async function writeBackup(options: {
  dataDir: string;
  file: string;
  now: Date;
  source: DatabaseSource;
}): Promise<BackupResult> {
  const { dataDir, source } = options;
  const partial = `${options.file}.${process.pid}.partial`;
  // The database's dump, beside the archive until it is copied in.
  const dumpFile = `${partial}.database`;
  const gzip = createGzip();
  // flush: synced to disk before it is closed, and so before the rename.
  const done = pipeline(gzip, createWriteStream(partial, { flags: 'wx', mode: 0o600, flush: true }));
  const tar = new TarWriter(gzip, options.now);
  const checksums: Checksums = { files: {} };
  const skipped: string[] = [];
  const seen = new Set<string>();
  let bytes = 0;

  const addFile = async (name: string, absolute: string, size: number, mode: number) => {
    const hash = createHash('sha256');
    // Never past the size the header says: a file still growing is cut there.
    const stream = size > 0 ? createReadStream(absolute, { end: size - 1 }) : [];
    await tar.fileFrom(name, size, mode, stream as AsyncIterable<Buffer>, (c) => hash.update(c));
    checksums.files[name] = { size, sha256: hash.digest('hex') };
    bytes += size;
  };

  /** Adds `relative` (under `root`, named `prefix/relative`) and what it holds, except what `seen` has. */
  const walk = async (root: string, prefix: string, relative = ''): Promise<void> => {
    const absolute = path.join(root, relative);
    const name = relative ? `${prefix}/${relative}` : prefix;
    const stat = await lstat(absolute).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined; // removed since it was listed
      throw err;
    });
    if (!stat || seen.has(name)) return;
    if (stat.isDirectory()) {
      seen.add(name);
      await tar.dir(name, stat.mode);
      const entries = (await readdir(absolute)).sort();
      for (const entry of entries) await walk(root, prefix, relative ? `${relative}/${entry}` : entry);
    } else if (stat.isSymbolicLink()) {
      seen.add(name);
      await tar.symlink(name, await readlink(absolute));
    } else if (stat.isFile()) {
      if (prefix === 'files' && name.endsWith('.part')) return;
      seen.add(name);
      await addFile(name, absolute, stat.size, stat.mode);
    } else {
      seen.add(name);
      skipped.push(name);
    }
  };

  const filesDir = path.join(dataDir, 'files');
  const takeSandbox = async () => {
    for (const entry of SANDBOX_ENTRIES) {
      const absolute = path.join(source.sandboxDir, entry);
      if (existsSync(absolute)) await walk(absolute, `sandboxes/${entry}`);
    }
  };

  const manifest: Manifest = {
    format: FORMAT,
    format_version: FORMAT_VERSION,
    paddock_version: VERSION,
    created_at: options.now.toISOString(),
    schema: source.schema,
    source: { data_dir: dataDir, sandbox_dir: source.sandboxDir, server_running: source.serverRunning },
    contents: {
      database: DATABASE,
      master_key: source.masterKey === 'file' && existsSync(path.join(dataDir, MASTER_KEY)),
      files: existsSync(filesDir),
      templates: existsSync(path.join(source.sandboxDir, 'templates')),
    },
    not_included: NOT_INCLUDED,
  };

  try {
    await tar.file(MANIFEST, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    if (manifest.contents.master_key) {
      const key = await readFile(path.join(dataDir, MASTER_KEY));
      await tar.file(MASTER_KEY, key, 0o600);
      checksums.files[MASTER_KEY] = {
        size: key.length,
        sha256: createHash('sha256').update(key).digest('hex'),
      };
    }
    if (manifest.contents.files) await walk(filesDir, 'files');
    await takeSandbox();
    await source.dumpTo(dumpFile);
    await addFile(DATABASE, dumpFile, (await stat(dumpFile)).size, 0o600);
    await rm(dumpFile);
    // What arrived while the database was dumped (its rows may be in the dump).
    if (existsSync(filesDir)) await walk(filesDir, 'files');
    await takeSandbox();
    await tar.file(CHECKSUMS, Buffer.from(`${JSON.stringify(checksums)}\n`));
    await tar.finish();
    gzip.end();
    await done;
    await chmod(partial, 0o600);
    await rename(partial, options.file);
  } catch (err) {
    gzip.destroy();
    await done.catch(() => undefined);
    await rm(partial, { force: true });
    await rm(dumpFile, { force: true });
    throw err;
  }
  return { manifest, files: Object.keys(checksums.files).length, bytes, skipped };
}

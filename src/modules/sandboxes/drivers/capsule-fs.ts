import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  rmdir,
  unlink,
} from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { errno, LayerPaths, mapError } from './capsule-path.ts';
import { DriverError, type FileEntry } from './types.ts';

// File operations on a capsule's writable layer, from the host. Paths are
// resolved by LayerPaths (capsule-path.ts); each operation then works on the
// last component through its parent's descriptor, with O_NOFOLLOW, so a
// symlink swapped in after the resolution is never followed.

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

export interface CapsuleFsOptions {
  /** Host path of the capsule's "/" (its writable layer). */
  root: string;
  /** Owner given to what the host creates; null leaves Paddock's own. */
  owner: { uid: number; gid: number } | null;
  /** Host uid shown as "user" (the capsule user's). */
  userUid: number;
  /** Capsule paths mounted over the layer inside the capsule (/usr …): refused, they are not the layer. */
  systemMounts: string[];
}

export class CapsuleFs {
  private readonly paths: LayerPaths;

  constructor(private readonly options: CapsuleFsOptions) {
    this.paths = new LayerPaths(options.root, options.systemMounts, (handle) => this.chown(handle));
  }

  private async chown(handle: FileHandle): Promise<void> {
    const owner = this.options.owner;
    if (owner) await handle.chown(owner.uid, owner.gid);
  }

  /** Opens an existing regular file for reading; the last component is never followed once resolved. */
  private async openRegular(capsulePath: string): Promise<{ handle: FileHandle; size: number }> {
    const r = await this.paths.resolve(capsulePath, true);
    try {
      if (r.name === null) throw new DriverError('invalid_path', `${capsulePath} is a directory`);
      // O_NONBLOCK: a FIFO planted by the capsule must not hang the host.
      const handle = await open(r.hostPath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch((err) =>
        Promise.reject(mapError(err, capsulePath)),
      );
      const st = await handle.stat();
      if (!st.isFile()) {
        await handle.close();
        throw new DriverError(
          'invalid_path',
          `${capsulePath} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}`,
        );
      }
      return { handle, size: st.size };
    } finally {
      await r.close();
    }
  }

  async readFile(capsulePath: string, maxBytes: number): Promise<Buffer> {
    const { handle, size } = await this.openRegular(capsulePath);
    try {
      if (size > maxBytes) {
        throw new DriverError('too_large', `${capsulePath} is ${size} bytes, over ${maxBytes}`);
      }
      // Read until EOF, but never more than one byte past the limit: the file
      // may have grown since the stat.
      const chunks: Buffer[] = [];
      let length = 0;
      for (;;) {
        const buf = Buffer.allocUnsafe(Math.min(maxBytes + 1 - length, Math.max(size - length, 64 * 1024)));
        const { bytesRead } = await handle.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        length += bytesRead;
        if (length > maxBytes) throw new DriverError('too_large', `${capsulePath} is over ${maxBytes} bytes`);
      }
      return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
    } finally {
      await handle.close();
    }
  }

  async readStream(capsulePath: string): Promise<Readable> {
    const { handle } = await this.openRegular(capsulePath);
    // The stream owns the handle: it closes it at the end, on an error, or when destroyed.
    return handle.createReadStream();
  }

  async writeFile(capsulePath: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    if (Buffer.isBuffer(data) && data.length > maxBytes) {
      throw new DriverError('too_large', `${data.length} bytes is over the limit of ${maxBytes}`);
    }
    const r = await this.paths.resolve(capsulePath, true, true);
    try {
      if (r.name === null) throw new DriverError('invalid_path', `${capsulePath} is a directory`);
      const existing = await lstat(r.hostPath).catch(() => null);
      if (existing?.isDirectory()) throw new DriverError('exists', `${capsulePath} is a directory`);
      // Written beside the target and renamed over it: a write refused half
      // way leaves the old file as it was, and rename(2) replaces a symlink
      // swapped in meanwhile instead of following it.
      const temp = `/proc/self/fd/${r.parentFd}/.paddock-${randomBytes(6).toString('hex')}`;
      const mode = existing?.isFile() ? existing.mode & 0o7777 : 0o644;
      const handle = await open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
      let written = 0;
      try {
        await this.chown(handle);
        await handle.chmod(mode);
        const chunks: Iterable<Buffer> | AsyncIterable<Buffer | string> = Buffer.isBuffer(data)
          ? [data]
          : data;
        for await (const chunk of chunks) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          written += buf.length;
          if (written > maxBytes) {
            if (!Buffer.isBuffer(data)) data.destroy();
            throw new DriverError('too_large', `more than ${maxBytes} bytes for ${capsulePath}`);
          }
          await handle.write(buf, 0, buf.length, null);
        }
        await handle.close();
        await rename(temp, r.hostPath);
      } catch (err) {
        await handle.close().catch(() => {});
        await unlink(temp).catch(() => {});
        throw mapError(err, capsulePath);
      }
    } finally {
      await r.close();
    }
  }

  async list(capsulePath: string, depth: number): Promise<FileEntry[]> {
    const r = await this.paths.resolve(capsulePath, true);
    try {
      let handle: FileHandle;
      if (r.name === null) {
        handle = await open(r.hostPath, O_RDONLY | O_DIRECTORY);
      } else {
        handle = await open(r.hostPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW).catch((err) =>
          Promise.reject(mapError(err, capsulePath)),
        );
      }
      try {
        const out: FileEntry[] = [];
        await this.listInto(out, handle.fd, r.capsulePath, Math.max(1, depth));
        return out;
      } finally {
        await handle.close();
      }
    } finally {
      await r.close();
    }
  }

  private async listInto(out: FileEntry[], dirFd: number, dirPath: string, levels: number): Promise<void> {
    const names = (await readdir(`/proc/self/fd/${dirFd}`)).sort();
    for (const name of names) {
      const full = `/proc/self/fd/${dirFd}/${name}`;
      const st = await lstat(full).catch(() => null);
      if (!st) continue;
      const entryPath = dirPath === '/' ? `/${name}` : `${dirPath}/${name}`;
      out.push(await this.entry(name, entryPath, st, full));
      if (levels > 1 && st.isDirectory()) {
        const child = await open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW).catch(() => null);
        if (!child) continue;
        try {
          await this.listInto(out, child.fd, entryPath, levels - 1);
        } finally {
          await child.close();
        }
      }
    }
  }

  private async entry(name: string, entryPath: string, st: Stats, hostPath: string): Promise<FileEntry> {
    const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : 'file';
    return {
      name,
      path: entryPath,
      type,
      size: st.size,
      mode: st.mode & 0o7777,
      permissions: permissionString(st),
      owner: this.nameOf(st.uid),
      group: this.nameOf(st.gid, true),
      modified_at: Math.floor(st.mtimeMs / 1000),
      symlink_target: type === 'symlink' ? await readlink(hostPath).catch(() => null) : null,
    };
  }

  private nameOf(id: number, group = false): string {
    const userId = group ? (this.options.owner?.gid ?? this.options.userUid) : this.options.userUid;
    if (id === userId) return 'user';
    if (id === 0) return 'root';
    return String(id);
  }

  async mkdir(capsulePath: string): Promise<FileEntry> {
    const r = await this.paths.resolve(capsulePath, true, true);
    try {
      if (r.name === null) throw new DriverError('exists', '/ already exists');
      const existing = await lstat(r.hostPath).catch(() => null);
      if (existing?.isDirectory()) throw new DriverError('exists', `${capsulePath} already exists`);
      if (existing) throw new DriverError('not_a_directory', `${capsulePath} exists and is not a directory`);
      await mkdir(r.hostPath, 0o755).catch((err) => Promise.reject(mapError(err, capsulePath)));
      const handle = await open(r.hostPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      try {
        await this.chown(handle);
        return await this.entry(r.name, r.capsulePath, await handle.stat(), r.hostPath);
      } finally {
        await handle.close();
      }
    } finally {
      await r.close();
    }
  }

  async remove(capsulePath: string): Promise<void> {
    const r = await this.paths.resolve(capsulePath, false);
    try {
      if (r.name === null) throw new DriverError('invalid_path', 'cannot remove the capsule root');
      const st = await lstat(r.hostPath).catch(() => null);
      if (!st) throw new DriverError('not_found', `no such file or directory: ${capsulePath}`);
      if (st.isDirectory()) await removeTree(r.parentFd, r.name);
      else await unlink(r.hostPath);
    } catch (err) {
      throw mapError(err, capsulePath);
    } finally {
      await r.close();
    }
  }
}

/** rm -rf below an open directory, each level opened with O_NOFOLLOW so that a swapped-in symlink is only unlinked. */
async function removeTree(parentFd: number, name: string): Promise<void> {
  const full = `/proc/self/fd/${parentFd}/${name}`;
  for (let attempt = 0; ; attempt++) {
    let handle: FileHandle;
    try {
      handle = await open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return;
      if (code === 'ELOOP' || code === 'ENOTDIR') return unlink(full);
      throw err;
    }
    try {
      for (const entry of await readdir(`/proc/self/fd/${handle.fd}`, { withFileTypes: true })) {
        const child = `/proc/self/fd/${handle.fd}/${entry.name}`;
        if (entry.isDirectory()) await removeTree(handle.fd, entry.name);
        else
          await unlink(child).catch((err) =>
            errno(err) === 'EISDIR' ? removeTree(handle.fd, entry.name) : undefined,
          );
      }
    } finally {
      await handle.close();
    }
    try {
      await rmdir(full);
      return;
    } catch (err) {
      // Something was created in it meanwhile: go round again, a few times.
      if (errno(err) !== 'ENOTEMPTY' || attempt >= 5) throw err;
    }
  }
}

export function permissionString(st: Stats): string {
  const type = st.isSymbolicLink()
    ? 'l'
    : st.isDirectory()
      ? 'd'
      : st.isFIFO()
        ? 'p'
        : st.isSocket()
          ? 's'
          : '-';
  const m = st.mode;
  const triple = (shift: number, special: number, specialChar: string) => {
    const r = m & (0o4 << shift) ? 'r' : '-';
    const w = m & (0o2 << shift) ? 'w' : '-';
    const xBit = m & (0o1 << shift);
    const x = m & special ? (xBit ? specialChar : specialChar.toUpperCase()) : xBit ? 'x' : '-';
    return r + w + x;
  };
  return type + triple(6, 0o4000, 's') + triple(3, 0o2000, 's') + triple(0, 0o1000, 't');
}

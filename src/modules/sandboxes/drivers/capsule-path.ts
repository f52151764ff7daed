import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readlink } from 'node:fs/promises';
import path from 'node:path';
import { DriverError } from './types.ts';

// Resolving a capsule path on the host, inside the capsule's writable layer
// and never out of it. The capsule's own processes can change the tree while
// the host works on it (swap a directory for a symlink to "/", say), so no
// path string below the root is ever handed to the kernel in one go: each
// component is opened relative to the directory opened before it, through
// /proc/self/fd/<fd>/<name> (openat(2) semantics from Node), with
// O_NOFOLLOW. Symlinks are read and followed by hand, relative to the
// capsule's root, and `..` stops at it.

const MAX_SYMLINKS = 40;
const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;

interface Dir {
  handle: FileHandle;
  /** Component name in its parent ("" for the root). */
  name: string;
}

/** A path resolved inside the layer: the open directories down to the parent, and the last name. */
export class Resolved {
  constructor(
    readonly dirs: Dir[],
    /** null when the path is the capsule's root itself. */
    readonly name: string | null,
  ) {}

  get parentFd(): number {
    return this.dirs[this.dirs.length - 1]!.handle.fd;
  }

  /** Host path of the last component, reached through its parent's descriptor. */
  get hostPath(): string {
    return this.name === null
      ? `/proc/self/fd/${this.parentFd}`
      : `/proc/self/fd/${this.parentFd}/${this.name}`;
  }

  get capsulePath(): string {
    const names = this.dirs.slice(1).map((d) => d.name);
    if (this.name !== null) names.push(this.name);
    return `/${names.join('/')}`;
  }

  async close(): Promise<void> {
    await Promise.all(this.dirs.map((d) => d.handle.close().catch(() => {})));
  }
}

export const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

function meaningful(components: string[]): boolean {
  return components.some((c) => c !== '' && c !== '.');
}

export class LayerPaths {
  constructor(
    /** Host path of the capsule's "/". */
    private readonly root: string,
    /** Capsule paths mounted over the layer inside the capsule (/usr …): refused, they are not the layer. */
    private readonly systemMounts: string[],
    /** Given each directory the resolver creates (to set its owner). */
    private readonly onCreate: (handle: FileHandle) => Promise<void>,
  ) {}

  /** `resolved`: where the walk has got to; `requested`: what the caller asked for (for the message). */
  private checkMount(resolved: string, requested: string): void {
    for (const mount of this.systemMounts) {
      if (resolved === mount || resolved.startsWith(`${mount}/`)) {
        throw new DriverError(
          'invalid_path',
          `${requested} is in ${mount}, a system mount of the capsule (read-only or virtual), not part of its files`,
        );
      }
    }
  }

  /**
   * Resolves `capsulePath`. With `followLast`, a symlink in the last place is
   * followed too. With `createDirs`, missing directories on the way are made
   * (mkdir -p). The last component may be missing: the caller decides.
   */
  async resolve(capsulePath: string, followLast: boolean, createDirs = false): Promise<Resolved> {
    if (!capsulePath.startsWith('/') || capsulePath.includes('\0')) {
      throw new DriverError(
        'invalid_path',
        `path must be absolute inside the capsule: ${JSON.stringify(capsulePath)}`,
      );
    }
    const dirs: Dir[] = [{ handle: await open(this.root, O_RDONLY | O_DIRECTORY), name: '' }];
    const fail = async (err: unknown): Promise<never> => {
      await Promise.all(dirs.map((d) => d.handle.close().catch(() => {})));
      throw err;
    };
    const queue = capsulePath.split('/');
    let links = 0;
    try {
      while (queue.length > 0) {
        const name = queue.shift()!;
        if (name === '' || name === '.') continue;
        if (name === '..') {
          if (dirs.length > 1) await dirs.pop()!.handle.close();
          continue;
        }
        const parentFd = dirs[dirs.length - 1]!.handle.fd;
        const full = `/proc/self/fd/${parentFd}/${name}`;
        const last = !meaningful(queue);
        if (last) {
          const resolved = new Resolved(dirs, name);
          this.checkMount(resolved.capsulePath, capsulePath);
          if (!followLast) return resolved;
          const st = await lstat(full).catch((err) => (errno(err) === 'ENOENT' ? null : Promise.reject(err)));
          if (!st?.isSymbolicLink()) return resolved;
        }
        let handle: FileHandle | null = null;
        try {
          handle = await open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        } catch (err) {
          let code = errno(err);
          // With O_DIRECTORY, a symlink answers ENOTDIR rather than ELOOP.
          if (code === 'ENOTDIR' && (await lstat(full).catch(() => null))?.isSymbolicLink()) code = 'ELOOP';
          if (code === 'ELOOP') {
            if (++links > MAX_SYMLINKS) {
              throw new DriverError('invalid_path', `too many levels of symbolic links in ${capsulePath}`);
            }
            const target = await readlink(full);
            if (target.startsWith('/')) while (dirs.length > 1) await dirs.pop()!.handle.close();
            queue.unshift(...target.split('/'));
            continue;
          }
          if (code === 'ENOTDIR') {
            throw new DriverError('not_a_directory', `${capsulePath}: not a directory on the way`);
          }
          if (code !== 'ENOENT') throw err;
          if (!createDirs) throw new DriverError('not_found', `no such file or directory: ${capsulePath}`);
          await mkdir(full, 0o755).catch((e) => (errno(e) === 'EEXIST' ? undefined : Promise.reject(e)));
          handle = await open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
          await this.onCreate(handle);
        }
        dirs.push({ handle, name });
        this.checkMount(new Resolved(dirs, null).capsulePath, capsulePath);
      }
      return new Resolved(dirs, null);
    } catch (err) {
      return fail(mapError(err, capsulePath));
    }
  }
}

export function mapError(err: unknown, capsulePath: string): unknown {
  if (err instanceof DriverError) return err;
  switch (errno(err)) {
    case 'ENOENT':
      return new DriverError('not_found', `no such file or directory: ${capsulePath}`);
    case 'ENOSPC':
    case 'EDQUOT':
      return new DriverError('no_space', `no space left in the capsule writing ${capsulePath}`);
    case 'ENOTDIR':
      return new DriverError('not_a_directory', `${capsulePath}: not a directory`);
    case 'EEXIST':
      return new DriverError('exists', `${capsulePath} already exists`);
    case 'ELOOP':
      return new DriverError('invalid_path', `${capsulePath} changed into a symbolic link while in use`);
    case 'EISDIR':
      return new DriverError('invalid_path', `${capsulePath} is a directory`);
    case 'ENAMETOOLONG':
      return new DriverError('invalid_path', `${capsulePath}: name too long`);
    default:
      return err;
  }
}

/** Capsule path → host path without touching the disk (for a cwd, where the process resolves it itself). */
export function lexicalHostPath(root: string, capsulePath: string): string {
  return path.join(root, path.posix.normalize(`/${capsulePath}`));
}

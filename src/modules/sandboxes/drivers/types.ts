import type { Readable } from 'node:stream';

// What a sandbox host needs from a driver: capsules (a set of processes
// sharing one isolated filesystem and limits), processes inside them, and
// their files. The control plane never calls a driver directly; a host does
// (in process for `paddock serve`, or `paddock host` on another machine).

/** How a capsule is isolated: bubblewrap namespaces, or nothing (plain child processes). */
export type Isolation = 'bwrap' | 'none';

export interface CapsuleLimits {
  memoryMb: number;
  vcpus: number;
  /** Size of the capsule's writable layer; writes past it fail with ENOSPC. */
  diskMb: number;
  maxProcesses: number;
  maxOpenFiles: number;
}

export interface CapsuleSpec {
  /** cap_… */
  id: string;
  /** A directory of the host's own for this capsule (created by the driver, removed by destroy). */
  dir: string;
  /** Files that start in the capsule's writable layer (a template's or snapshot's tree); null = empty. */
  templateDir: string | null;
  limits: CapsuleLimits;
  /** Environment of every process started in the capsule (a process's own envs win). */
  envs: Record<string, string>;
  /**
   * Network: null = none (only the capsule's own loopback). Otherwise an HTTP
   * proxy URL reachable from inside, set as HTTP(S)_PROXY for its processes.
   */
  network: { proxyUrl: string } | null;
}

export interface SpawnOptions {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  /** Inside the capsule; default the capsule user's home. */
  cwd?: string;
  /** Run on a pseudo-terminal of this size (stdout carries the terminal's output; no stderr). */
  pty?: { cols: number; rows: number };
}

/** A process running inside a capsule, spawned by the host (stdio piped to it). */
export interface CapsuleProcess {
  /** The pid as the capsule sees it (what users pass as a selector); 0 until `started` resolves. */
  readonly pid: number;
  /**
   * Resolves once the process runs in the capsule and `pid` is set (a driver
   * may start it through a launcher that forks it in, which takes a moment;
   * it looks only once this is asked for).
   * Never rejects: a process that could not start keeps pid 0, and `exited`
   * tells how it ended.
   */
  readonly started: Promise<void>;
  readonly stdout: Readable;
  /** Empty for a pty. */
  readonly stderr: Readable;
  write(data: Buffer | string): void;
  /** Closes stdin. */
  end(): void;
  /** pty only. */
  resize(cols: number, rows: number): void;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves with the exit code (128 + n when killed by signal n). */
  readonly exited: Promise<number>;
}

export interface ProcessInfo {
  /** As the capsule sees it. */
  pid: number;
  cmd: string;
  args: string[];
}

export interface FileEntry {
  name: string;
  /** Absolute, inside the capsule. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  /** e.g. "-rwxr-xr-x" */
  permissions: string;
  owner: string;
  group: string;
  /** Unix seconds. */
  modified_at: number;
  symlink_target: string | null;
}

export interface CapsuleUsage {
  /** CPU time used by all the capsule's processes so far. */
  cpuNs: number;
  memBytes: number;
  /** Bytes used in the writable layer. */
  diskBytes: number;
}

/** Why a driver refused: the host answers each with its own status. */
export class DriverError extends Error {
  constructor(
    readonly code:
      | 'not_found'
      | 'too_large'
      | 'no_space'
      | 'invalid_path'
      | 'exists'
      | 'not_a_directory'
      /** The request itself is refused (an environment variable the rules do not allow). */
      | 'invalid'
      | 'failed',
    message: string,
  ) {
    super(message);
    this.name = 'DriverError';
  }
}

export interface CapsuleHandle {
  readonly id: string;
  readonly isolation: Isolation;
  spawn(options: SpawnOptions): CapsuleProcess;
  /**
   * Optional: prepares the next piped spawn ahead, so that it costs little
   * more than the command itself (a spare's first command; bwrap.ts).
   */
  standBy?(): void;
  /** Lets a launcher started by standBy() go unused (it holds memory while it waits). */
  standDown?(): void;
  /** Every process in the capsule, the ones it started itself included. */
  processes(): Promise<ProcessInfo[]>;
  /** Signals a process by its capsule pid; false when there is none. */
  signal(pid: number, signal: NodeJS.Signals): boolean;
  /** Freezes every process of the capsule (nothing is lost); resume thaws them. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  readonly paused: boolean;

  // Files: paths are absolute inside the capsule and never reach outside it
  // (`..` stops at its root; symlinks are followed within it).
  readFile(path: string, maxBytes: number): Promise<Buffer>;
  readStream(path: string): Promise<Readable>;
  /** Creates parent directories; replaces an existing file. */
  writeFile(path: string, data: Readable | Buffer, maxBytes: number): Promise<void>;
  list(path: string, depth: number): Promise<FileEntry[]>;
  /** mkdir -p; `exists` when a directory is already there. */
  mkdir(path: string): Promise<FileEntry>;
  /** Removes a file or a directory tree. */
  remove(path: string): Promise<void>;

  usage(): Promise<CapsuleUsage>;
  /** Copies the writable layer to `destDir` (frozen meanwhile; the capsule keeps running). */
  snapshot(destDir: string): Promise<{ sizeBytes: number }>;
  /** Kills every process and removes the capsule's directory and writable layer. */
  destroy(): Promise<void>;
  /** Resolves when the capsule's init is gone (killed, crashed or destroyed). */
  readonly ended: Promise<void>;
}

export interface Driver {
  readonly isolation: Isolation;
  /** What a person should know about this driver on this machine (limits it cannot enforce …). */
  readonly warnings: string[];
  create(spec: CapsuleSpec): Promise<CapsuleHandle>;
  /** After a restart of the host: whatever is left of a capsule's directory and processes is removed. */
  cleanup(dir: string): Promise<void>;
}

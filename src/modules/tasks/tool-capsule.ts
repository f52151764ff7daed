import type { Readable } from 'node:stream';
import { AppError, NotFoundError } from '../../core/errors.ts';
import type { CapsuleId } from '../../core/ids.ts';
import type { Principal } from '../identity/principal.ts';
import type { CapsulesService } from '../sandboxes/service.ts';

// A task's capsule as its tools see it (ToolCapsule), and that view over the
// sandboxes module's capsule I/O as the team's system principal (toolCapsule),
// with its errors sorted into the two the tools know: the capsule is gone
// (the task cannot go on), or it refused this one operation (the model is
// told why).

/** What the tools need from a running capsule (toolCapsule below gives it over the sandboxes module). */
export interface ToolCapsule {
  /** Runs a command in the capsule and waits for it; `envs` are set on that process only. */
  exec(req: {
    cmd: string;
    args: string[];
    envs?: Record<string, string>;
    /** Inside the capsule; default the capsule user's home. */
    cwd?: string;
    timeoutSec: number;
  }): Promise<ToolExecResult>;
  /** A regular file's bytes; with `maxBytes`, at most `maxBytes + 1` of them (so a longer file shows it is longer). */
  readFile(path: string, maxBytes?: number): Promise<Buffer>;
  /** Creates parent directories; replaces an existing file. */
  writeFile(path: string, data: Buffer): Promise<void>;
  /** Entries below `path`, `depth` levels down, symlinks not followed. */
  list(path: string, depth: number): Promise<ToolFileEntry[]>;
  /** mkdir -p; refused with `exists` when a directory is already there. */
  mkdir(path: string): Promise<void>;
  /**
   * Starts a long-running process in the capsule (an MCP server) whose stdin
   * the caller writes and whose output it follows; `envs` are set on that
   * process only. It ends with the capsule, or at `kill()`.
   */
  spawn(req: {
    cmd: string;
    args: string[];
    envs?: Record<string, string>;
    cwd?: string;
  }): Promise<ToolProcess>;
}

/** A process started by `ToolCapsule.spawn`. */
export interface ToolProcess {
  /** Writes to its stdin. */
  write(data: string | Buffer): void;
  /** Its output so far (the host keeps the last 256 KiB), then live; answers a function that stops listening. */
  follow(onOutput: (stream: 'stdout' | 'stderr', data: Buffer) => void): () => void;
  /** Its exit code (128 + n when killed by signal n). */
  readonly exited: Promise<number>;
  kill(): void;
}

export interface ToolExecResult {
  stdout: string;
  stderr: string;
  /** 124 when the command ran out of time, 128 + n when killed by signal n. */
  exit_code: number;
  /** `base64` when the output was not UTF-8 (both streams are then base64). */
  encoding: 'utf-8' | 'base64';
  /** The output was cut at the host's limit per stream. */
  truncated: boolean;
  timed_out: boolean;
  duration_ms: number;
}

export interface ToolFileEntry {
  name: string;
  /** Absolute, inside the capsule. */
  path: string;
  /** `other`: a FIFO, socket or device node. */
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
}

/** The capsule is no longer running (stopped, paused, deleted, or its host is gone): the task cannot go on. */
export class CapsuleGone extends Error {
  constructor(
    /** `capsule_not_running`, `capsule_not_found`, `host_unavailable` */
    readonly code: string,
    message: string,
    /** The capsule's status when known. */
    readonly status?: string,
  ) {
    super(message);
    this.name = 'CapsuleGone';
  }
}

/** The capsule refused a file operation or command (what the model is told, and can act on). */
export class CapsuleRefused extends Error {
  constructor(
    readonly reason:
      | 'not_found'
      | 'invalid_path'
      | 'not_a_directory'
      | 'exists'
      | 'too_large'
      | 'no_space'
      | 'invalid'
      | 'failed',
    message: string,
  ) {
    super(message);
    this.name = 'CapsuleRefused';
  }
}

/** The sandboxes module's error codes for what the capsule refused, as the tools name them. */
const REFUSALS = new Map<string, CapsuleRefused['reason']>([
  ['invalid_path', 'invalid_path'],
  ['not_a_directory', 'not_a_directory'],
  ['already_exists', 'exists'],
  ['payload_too_large', 'too_large'],
  ['no_space', 'no_space'],
  ['validation_failed', 'invalid'],
  ['host_error', 'failed'],
]);

/** The capsule's answer as one of the tools' two errors; anything else (a bug) as it is. */
function sorted(err: unknown, path?: string): never {
  if (!(err instanceof AppError)) throw err;
  const status = typeof err.details?.status === 'string' ? err.details.status : undefined;
  if (err.code === 'capsule_not_running') throw new CapsuleGone(err.code, err.message, status);
  if (err.code === 'host_unavailable') throw new CapsuleGone(err.code, err.message);
  if (err instanceof NotFoundError) {
    if (err.details?.kind === 'file')
      throw new CapsuleRefused('not_found', `no such file or directory: ${path}`);
    throw new CapsuleGone('capsule_not_found', err.message);
  }
  const reason = REFUSALS.get(err.code);
  if (reason) throw new CapsuleRefused(reason, err.message);
  throw err;
}

/** At most `maxBytes + 1` bytes of a stream; the stream is let go once it has given that many. */
async function head(stream: Readable, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      chunks.push(buf);
      length += buf.length;
      if (length > maxBytes) break;
    }
  } finally {
    stream.destroy();
  }
  const all = Buffer.concat(chunks, length);
  return all.length > maxBytes + 1 ? all.subarray(0, maxBytes + 1) : all;
}

/** The tools' view of capsule `id`, acting as `principal` (a task's system principal). */
export function toolCapsule(capsules: CapsulesService, principal: Principal, id: CapsuleId): ToolCapsule {
  const io = capsules.io;
  return {
    async exec(req) {
      const r = await io
        .exec(principal, id, {
          cmd: req.cmd,
          args: req.args,
          ...(req.envs ? { envs: req.envs } : {}),
          ...(req.cwd ? { cwd: req.cwd } : {}),
          timeout_sec: req.timeoutSec,
        })
        .catch((err) => sorted(err));
      if (r.background) throw new Error('a tool command ran in the background');
      return r.body;
    },
    async readFile(path, maxBytes) {
      if (maxBytes === undefined) return io.readFile(principal, id, path).catch((err) => sorted(err, path));
      const stream = await io.readStream(principal, id, path).catch((err) => sorted(err, path));
      return head(stream, maxBytes);
    },
    async writeFile(path, data) {
      await io.writeFile(principal, id, path, data, false).catch((err) => sorted(err, path));
    },
    async list(path, depth) {
      const { entries } = await io.listFiles(principal, id, path, depth).catch((err) => sorted(err, path));
      return entries.map((e) => ({
        name: e.name,
        path: e.path,
        // The file API shows FIFOs, sockets and devices as files; their mode tells them apart.
        type: e.type === 'file' && e.permissions[0] !== '-' ? ('other' as const) : e.type,
        size: e.size,
      }));
    },
    async mkdir(path) {
      await io.mkdir(principal, id, path).catch((err) => sorted(err, path));
    },
    async spawn(req) {
      const p = await io
        .startFollowed(principal, id, {
          cmd: req.cmd,
          args: req.args,
          ...(req.envs ? { envs: req.envs } : {}),
          ...(req.cwd ? { cwd: req.cwd } : {}),
        })
        .catch((err) => sorted(err));
      return {
        write: (data) => p.write(data),
        follow: (onOutput) => p.follow(onOutput),
        exited: p.exited,
        kill: () => p.kill('SIGKILL'),
      };
    },
  };
}

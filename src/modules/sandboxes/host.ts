import type { Readable } from 'node:stream';
import type { Log } from '../../core/context.ts';
import type { HostId } from '../../core/ids.ts';
import type { CapsuleLimits, CapsuleUsage, FileEntry, Isolation } from './drivers/types.ts';
import type { MetricPoint, MetricRange } from './host-side/metrics.ts';

// What the control plane asks of a sandbox host. The local host (in the
// server's process) implements it over a driver; a remote `paddock host`
// implements it over HTTP. The capsules service knows only this.

export interface HostCapsuleSpec {
  id: string;
  teamId: string;
  /** The template's tree on this host; null = minimal (empty). */
  templatePath: string | null;
  limits: CapsuleLimits;
  envs: Record<string, string>;
  /** Hosts reachable through the egress proxy; null = no network. */
  networkAllow: string[] | null;
}

export interface ExecRequest {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
  timeoutSec: number;
  /** Per stream; past it the output is cut and `truncated` says so. */
  maxOutputBytes: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** 124 when the command ran out of time (as coreutils' timeout), 128 + n when killed by signal n. */
  exit_code: number;
  duration_ms: number;
  encoding: 'utf-8' | 'base64';
  truncated: boolean;
  timed_out: boolean;
}

export interface BackgroundRequest {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
  tag?: string;
}

export interface HostProcess {
  pid: number;
  /** Set for processes started through the API (background exec, PTY). */
  tag: string | null;
  cmd: string;
  args: string[];
}

/** A process the host started, whose output can be followed (exec/stream, processes/{selector}/stream). */
export type OutputListener = (stream: 'stdout' | 'stderr', data: Buffer) => void;

/** Output of a followed process kept for followers that attach late (exec/stream attach after the start). */
const REPLAY_BYTES = 256 * 1024;

/**
 * A followed process's output: the last REPLAY_BYTES kept (whole chunks, the
 * newest always), replayed to each follower before the live output.
 */
export class OutputReplay {
  private readonly chunks: Array<{ stream: 'stdout' | 'stderr'; data: Buffer }> = [];
  private bytes = 0;
  private readonly listeners = new Set<OutputListener>();

  push(stream: 'stdout' | 'stderr', data: Buffer): void {
    this.chunks.push({ stream, data });
    this.bytes += data.length;
    while (this.bytes > REPLAY_BYTES && this.chunks.length > 1)
      this.bytes -= this.chunks.shift()!.data.length;
    for (const l of this.listeners) l(stream, data);
  }

  /** Replays what is kept, then passes on live output until the returned function is called. */
  follow(onOutput: OutputListener): () => void {
    for (const c of this.chunks) onOutput(c.stream, c.data);
    this.listeners.add(onOutput);
    return () => {
      this.listeners.delete(onOutput);
    };
  }
}

export interface FollowedProcess {
  pid: number;
  tag: string | null;
  /** Output so far (bounded), then live output until exit. */
  follow(onOutput: (stream: 'stdout' | 'stderr', data: Buffer) => void): () => void;
  write(data: Buffer | string): void;
  resize(cols: number, rows: number): void;
  kill(signal?: NodeJS.Signals): void;
  /** null while running. */
  readonly exitCode: number | null;
  readonly exited: Promise<number>;
  readonly pty: boolean;
}

export interface StartRequest {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
  tag?: string;
  pty?: { cols: number; rows: number };
}

export interface SandboxHost {
  readonly id: HostId;
  readonly isolation: Isolation;
  readonly warnings: string[];
  create(spec: HostCapsuleSpec): Promise<void>;
  /** Whether this server's last request to the host got no answer within `withinMs` (remote hosts). */
  failing?(withinMs: number): boolean;
  /** Starts the capsule from a spare started ahead, when one of its shape is ready: at once (local hosts). */
  claimSpare?(spec: HostCapsuleSpec): boolean;
  destroy(capsuleId: string): Promise<void>;
  /** Whether the host still runs the capsule (false after a crash or a restart of the host). */
  has(capsuleId: string): boolean;
  pause(capsuleId: string): Promise<void>;
  resume(capsuleId: string): Promise<void>;
  exec(capsuleId: string, req: ExecRequest): Promise<ExecResult>;
  start(capsuleId: string, req: StartRequest): Promise<FollowedProcess>;
  /** Starts a background process nobody follows yet (background exec). */
  launch(capsuleId: string, req: StartRequest): Promise<{ pid: number; tag: string }>;
  /** A process started through the API, by pid or tag. */
  followed(
    capsuleId: string,
    selector: string,
  ): FollowedProcess | undefined | Promise<FollowedProcess | undefined>;
  processes(capsuleId: string): Promise<HostProcess[]>;
  /** By pid (any process of the capsule) or tag; false when there is no such process. */
  kill(capsuleId: string, selector: string, signal: NodeJS.Signals): Promise<boolean>;
  readFile(capsuleId: string, path: string, maxBytes: number): Promise<Buffer>;
  readStream(capsuleId: string, path: string): Promise<Readable>;
  writeFile(capsuleId: string, path: string, data: Readable | Buffer, maxBytes: number): Promise<void>;
  list(capsuleId: string, path: string, depth: number): Promise<FileEntry[]>;
  mkdir(capsuleId: string, path: string): Promise<FileEntry>;
  remove(capsuleId: string, path: string): Promise<void>;
  usage(capsuleId: string): Promise<CapsuleUsage>;
  /** The capsule's sampled CPU, memory and disk over `range` (kept while it is paused). */
  metrics(capsuleId: string, range: MetricRange): MetricPoint[] | Promise<MetricPoint[]>;
  /** Copies the capsule's filesystem into a new template tree on this host. */
  snapshot(capsuleId: string, templateId: string): Promise<{ path: string; sizeBytes: number }>;
  removeTemplate(path: string): Promise<void>;
  /**
   * Clears what an earlier run of this host left of capsules it no longer
   * runs: their trees, and cgroups a killed host left empty (local hosts).
   * What cannot be cleared is logged with the directory.
   */
  cleanupLeftovers?(capsuleIds: string[], log: Log): Promise<void>;
  /** The host stopped answering: forget what it ran, and say what that was (remote hosts). */
  lost?(): string[];
  /** Told when a capsule ended by itself (its init died). */
  onEnded(listener: (capsuleId: string, reason: string) => void): void;
  close(): Promise<void>;
}

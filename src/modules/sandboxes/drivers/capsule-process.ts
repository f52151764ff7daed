import type { EventEmitter } from 'node:events';
import { PassThrough, Readable, type Writable } from 'node:stream';
import type { IPty } from '@lydell/node-pty';
import { signalNumber } from './proc.ts';
import type { CapsuleProcess } from './types.ts';

// The CapsuleProcess shape over what the host actually spawned: a child
// process with pipes, or a pseudo-terminal. The host-side process may only be
// a launcher (bwrap: nsenter, which forks the real process into the
// capsule), so the driver says how to find the real one (`locate`) and the
// pid to signal is that one, not the launcher.

export interface Located {
  /** As the capsule sees it. */
  capsulePid: number;
  /** Host pid of the process in the capsule (what signals go to). */
  hostPid: number;
}

export interface ProcessHooks {
  /** Finds the process in the capsule once the launcher (host pid given) has started it; null if it never did. */
  locate(launcherPid: number): Promise<Located | null>;
  /** Whether a host pid still is this capsule's process (a pid freed by its exit may be reused by any host process). */
  owns(hostPid: number): boolean;
  /** Called once, when the process has exited. */
  onExit?(): void;
}

/**
 * A host process with piped stdio: a ChildProcess, or a launcher the spawner
 * started (whose pid comes a moment later: `pidKnown`).
 */
export interface PipedLauncher extends EventEmitter {
  readonly pid?: number | undefined;
  readonly pidKnown?: Promise<number | undefined>;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
}

/** After the exit, how long to wait for the pipes to drain when a background child keeps them open. */
const DRAIN_GRACE_MS = 500;

abstract class BaseProcess implements CapsuleProcess {
  pid = 0;
  readonly exited: Promise<number>;
  protected located: Located | null = null;
  protected done = false;
  private resolveExit!: (code: number) => void;
  private locating: Promise<void> | null = null;

  constructor(
    private readonly launcherPid: number | undefined | Promise<number | undefined>,
    protected readonly hooks: ProcessHooks,
  ) {
    this.exited = new Promise<number>((resolve) => {
      this.resolveExit = resolve;
    });
  }

  /**
   * Finding the process in the capsule polls /proc: done only when someone
   * needs its pid (a background process, a kill), not for every exec, whose
   * polling would take the event loop from the requests meanwhile.
   */
  get started(): Promise<void> {
    this.locating ??= (async () => {
      const launcherPid = await this.launcherPid;
      if (launcherPid === undefined || this.done) return;
      const found = await this.hooks.locate(launcherPid).catch(() => null);
      if (found && !this.done) {
        this.located = found;
        this.pid = found.capsulePid;
      }
    })();
    return this.locating;
  }

  protected finish(code: number): void {
    if (this.done) return;
    this.done = true;
    this.hooks.onExit?.();
    this.resolveExit(code);
  }

  abstract readonly stdout: Readable;
  abstract readonly stderr: Readable;
  abstract write(data: Buffer | string): void;
  abstract end(): void;
  abstract resize(cols: number, rows: number): void;
  protected abstract killLauncher(signal: NodeJS.Signals): void;

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.done) return;
    const send = () => {
      if (this.done) return;
      const target = this.located;
      if (target && this.hooks.owns(target.hostPid)) {
        try {
          process.kill(target.hostPid, signal);
          return;
        } catch {
          // exited meanwhile
        }
      }
      if (!target) this.killLauncher(signal);
    };
    if (this.located) send();
    else void this.started.then(send);
  }
}

class PipedProcess extends BaseProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;

  constructor(
    private readonly child: PipedLauncher,
    hooks: ProcessHooks,
  ) {
    super(child.pidKnown ?? child.pid, hooks);
    this.stdout = child.stdout ?? Readable.from([]);
    this.stderr = child.stderr ?? Readable.from([]);
    // A write after the process is gone must not crash the host (EPIPE).
    child.stdin?.on('error', () => {});
    let exitCode: number | null = null;
    let timer: NodeJS.Timeout | undefined;
    child.on('error', () => {
      // spawn failed (the launcher itself is missing): 127, as a shell would say.
      exitCode ??= 127;
      this.finish(exitCode);
    });
    child.on('exit', (code, signal) => {
      exitCode = code ?? 128 + signalNumber(signal);
      // The timer may fire in the same loop turn as output still waiting in the pipes (a busy
      // loop runs timers before I/O): let that I/O be read first, then give up on the pipes.
      timer = setTimeout(
        () => setImmediate(() => setImmediate(() => this.finish(exitCode!))),
        DRAIN_GRACE_MS,
      );
    });
    child.on('close', () => {
      clearTimeout(timer);
      if (exitCode !== null) this.finish(exitCode);
    });
  }

  write(data: Buffer | string): void {
    if (this.child.stdin?.writable) this.child.stdin.write(data);
  }

  end(): void {
    this.child.stdin?.end();
  }

  resize(): void {
    // Not a terminal: nothing to resize.
  }

  protected killLauncher(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

class PtyProcess extends BaseProcess {
  readonly stdout = new PassThrough();
  readonly stderr: Readable = Readable.from([]);

  constructor(
    private readonly term: IPty,
    hooks: ProcessHooks,
  ) {
    super(term.pid, hooks);
    term.onData((data: string | Buffer) => {
      this.stdout.write(typeof data === 'string' ? Buffer.from(data) : data);
    });
    term.onExit(({ exitCode, signal }) => {
      this.stdout.end();
      this.finish(signal ? 128 + signal : exitCode);
    });
  }

  write(data: Buffer | string): void {
    if (!this.done) this.term.write(typeof data === 'string' ? data : data.toString('utf8'));
  }

  /** A terminal has no stdin to close: ^D is what ends input on it. */
  end(): void {
    this.write('\x04');
  }

  resize(cols: number, rows: number): void {
    if (!this.done) this.term.resize(cols, rows);
  }

  protected killLauncher(signal: NodeJS.Signals): void {
    try {
      this.term.kill(signal);
    } catch {
      // already gone
    }
  }
}

export function pipedProcess(child: PipedLauncher, hooks: ProcessHooks): CapsuleProcess {
  return new PipedProcess(child, hooks);
}

export function ptyProcess(term: IPty, hooks: ProcessHooks): CapsuleProcess {
  return new PtyProcess(term, hooks);
}

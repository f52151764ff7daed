import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants, openSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { PassThrough } from 'node:stream';
import { quietPipes } from './proc.ts';

// Starts the launchers of capsule processes from a small helper process
// instead of from the server. Node forks its whole process to spawn one
// (libuv uses fork(), not vfork), and copying the page tables of a server of
// a few hundred MB takes 20–40 ms on a busy 2-core machine, during which its
// event loop stands still: most of a first exec's time. The helper is Perl
// (already needed for a capsule's last step), a few MB, so its forks cost a
// fraction of a millisecond.
//
// The helper makes each process's three pipes and holds the server's ends
// until the server has opened them through /proc/<helper>/fd (a pipe opened
// there is the same pipe), then closes its copies. Per process it forks a
// waiter, which forks the launcher, waits for it and reports its wait status:
// the helper itself never waits, so no child's exit can be missed between two
// reads of its input.
//
// Lines to the helper: `S <id> <argv hex> <env hex>` (NUL-separated lists),
// `C <id>` (the server has its ends). From it: `P <id> <pid> <stdin> <stdout>
// <stderr>` (fds in the helper), `X <id> <wait status>`, `E <id> <message>`.
// Each of its lines is one write of under PIPE_BUF bytes, so lines from the
// helper and its waiters never interleave.

const HELPER = String.raw`
use strict; use POSIX ();
$SIG{CHLD} = 'IGNORE';
$SIG{PIPE} = 'DEFAULT';
my %held;
sub say { syswrite STDOUT, "$_[0]\n" }
while (my $line = <STDIN>) {
  chomp $line;
  my ($op, $id, $argv, $env) = split / /, $line;
  if ($op eq 'C') { close $_ for @{ delete $held{$id} // [] }; next }
  next unless $op eq 'S';
  my @argv = split /\0/, pack('H*', $argv), -1;
  my %env = map { split /=/, $_, 2 } grep { length } split /\0/, pack('H*', $env);
  pipe(my $in_r, my $in_w) && pipe(my $out_r, my $out_w) && pipe(my $err_r, my $err_w)
    or do { say("E $id pipe: $!"); next };
  my $held = join ' ', map { fileno $_ } $in_w, $out_r, $err_r;
  my $waiter = fork;
  if (!defined $waiter) { say("E $id fork: $!"); next }
  if ($waiter == 0) {
    $SIG{CHLD} = 'DEFAULT';
    # The other processes' server ends: a waiter keeping them would hold
    # their stdin open after the server closed it.
    close $_ for $in_w, $out_r, $err_r, map { @$_ } values %held;
    my $pid = fork;
    if (!defined $pid) { say("E $id fork: $!"); POSIX::_exit(0) }
    if ($pid == 0) {
      POSIX::setsid();
      POSIX::dup2(fileno $in_r, 0); POSIX::dup2(fileno $out_w, 1); POSIX::dup2(fileno $err_w, 2);
      chdir '/';
      %ENV = %env;
      exec { $argv[0] } @argv;
      POSIX::_exit(127);
    }
    close $_ for $in_r, $out_w, $err_w;
    say("P $id $pid $held");
    waitpid($pid, 0);
    say("X $id $?");
    POSIX::_exit(0);
  }
  close $_ for $in_r, $out_w, $err_w;
  $held{$id} = [$in_w, $out_r, $err_r];
}
`;

const hexList = (items: string[]) => Buffer.from(items.join('\0'), 'utf8').toString('hex');

/**
 * A launcher the helper started, in the shape of a ChildProcess with piped
 * stdio ('exit', 'close', 'error'), except that its pid comes a moment later
 * (`pidKnown`). Its streams exist at once and are joined to the pipes then.
 */
export class SpawnedLauncher extends EventEmitter {
  pid: number | undefined = undefined;
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  exitCode: number | null = null;
  /** The launcher's host pid once it is forked; undefined when it never was. */
  readonly pidKnown: Promise<number | undefined>;
  private resolvePid!: (pid: number | undefined) => void;
  private exited = false;
  private openStreams = 2;
  private pipes: net.Socket[] = [];

  constructor() {
    super();
    this.pidKnown = new Promise((resolve) => {
      this.resolvePid = resolve;
    });
    const ended = () => {
      this.openStreams -= 1;
      this.maybeClose();
    };
    this.stdout.on('end', ended);
    this.stderr.on('end', ended);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.pid === undefined || this.exited) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** @internal */
  attach(pid: number, stdin: net.Socket, stdout: net.Socket, stderr: net.Socket): void {
    this.pid = pid;
    // A write after the process is gone must not crash the host (EPIPE).
    stdin.on('error', () => {});
    stdout.on('error', () => stdout.destroy());
    stderr.on('error', () => stderr.destroy());
    this.pipes = [stdin, stdout, stderr];
    this.stdin.pipe(stdin);
    stdout.pipe(this.stdout);
    stderr.pipe(this.stderr);
    this.resolvePid(pid);
  }

  /** @internal */
  finish(status: number): void {
    this.exited = true;
    // As Node does for a child's unread output: drained, so that 'close' comes.
    for (const stream of [this.stdout, this.stderr]) if (stream.readableFlowing === null) stream.resume();
    const signal = status & 0x7f;
    if (signal === 0) this.exitCode = (status >> 8) & 0xff;
    const name = signal === 0 ? null : signalName(signal);
    this.emit('exit', this.exitCode, name);
    this.maybeClose();
  }

  /** @internal */
  fail(message: string): void {
    this.resolvePid(undefined);
    if (this.exited) return;
    this.exited = true;
    for (const pipe of this.pipes) {
      pipe.unpipe();
      pipe.destroy();
    }
    this.emit('error', new Error(message));
    this.stdout.end();
    this.stderr.end();
  }

  private maybeClose(): void {
    if (this.exited && this.openStreams === 0) {
      this.stdin.destroy();
      // The pipe to its stdin too: a process nobody wrote an end to (a capsule's
      // `sleep infinity`, one killed) would otherwise leave its descriptor open
      // in the server for good (the soak counted one a process).
      for (const pipe of this.pipes) pipe.destroy();
      this.emit('close', this.exitCode, null);
    }
  }
}

function signalName(n: number): NodeJS.Signals | null {
  for (const [name, num] of Object.entries(osConstants.signals)) {
    if (num === n) return name as NodeJS.Signals;
  }
  return null;
}

/** Opens one end of a pipe the helper holds, non-blocking, as a stream the event loop watches. */
function openHeld(helperPid: number, fd: number, write: boolean): net.Socket {
  const flags = (write ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK;
  const own = openSync(`/proc/${helperPid}/fd/${fd}`, flags);
  return new net.Socket({ fd: own, readable: !write, writable: write });
}

export class Spawner {
  private readonly pending = new Map<string, SpawnedLauncher>();
  private next = 0;
  private buffered = '';
  private dead: string | null = null;

  private constructor(private readonly helper: ChildProcess) {
    quietPipes(helper);
    helper.stdout!.setEncoding('utf8').on('data', (chunk: string) => this.read(chunk));
    helper.on('exit', (code, signal) => this.lost(`the spawner exited (${signal ?? code})`));
    helper.on('error', (err) => this.lost(`the spawner could not start: ${err.message}`));
    // Not what keeps the server alive.
    helper.unref();
    for (const pipe of [helper.stdin, helper.stdout]) (pipe as unknown as { unref(): void }).unref();
  }

  /** Starts the helper (as root with no supplementary groups when `asRoot`, as the launchers were). */
  static start(perl: string, asRoot: boolean): Spawner {
    const helper = spawn(perl, ['-e', HELPER], {
      stdio: ['pipe', 'pipe', 'ignore'],
      env: { PATH: '/usr/bin:/bin' },
      cwd: '/',
      ...(asRoot ? { uid: 0, gid: 0 } : {}),
    });
    return new Spawner(helper);
  }

  get alive(): boolean {
    return this.dead === null;
  }

  /** Starts `argv` (argv[0] a path) with exactly `env`, in `/`, in a session of its own, stdio piped. */
  spawn(argv: string[], env: Record<string, string>): SpawnedLauncher {
    const launcher = new SpawnedLauncher();
    if (this.dead !== null) {
      const reason = this.dead;
      queueMicrotask(() => launcher.fail(reason));
      return launcher;
    }
    const id = String(++this.next);
    // The helper's answers keep the event loop alive while a launcher is out.
    if (this.pending.size === 0) (this.helper.stdout as unknown as { ref(): void }).ref();
    this.pending.set(id, launcher);
    const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    this.helper.stdin!.write(`S ${id} ${hexList(argv)} ${hexList(envList)}\n`);
    return launcher;
  }

  private read(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.handle(line.split(' '));
    }
  }

  private handle(fields: string[]): void {
    this.answer(fields);
    if (this.pending.size === 0) (this.helper.stdout as unknown as { unref(): void }).unref();
  }

  private answer([op, id, ...rest]: string[]): void {
    const launcher = id === undefined ? undefined : this.pending.get(id);
    if (!launcher) return;
    if (op === 'P') {
      const [pid, stdin, stdout, stderr] = rest.map(Number);
      const opened: net.Socket[] = [];
      try {
        opened.push(openHeld(this.helper.pid!, stdin!, true));
        opened.push(openHeld(this.helper.pid!, stdout!, false));
        opened.push(openHeld(this.helper.pid!, stderr!, false));
        launcher.attach(pid!, opened[0]!, opened[1]!, opened[2]!);
      } catch (err) {
        for (const socket of opened) socket.destroy();
        try {
          process.kill(pid!, 'SIGKILL');
        } catch {
          // gone already
        }
        this.pending.delete(id!);
        launcher.fail(`the launcher's pipes could not be opened: ${(err as Error).message}`);
      } finally {
        this.helper.stdin!.write(`C ${id}\n`);
      }
    } else if (op === 'X') {
      this.pending.delete(id!);
      launcher.finish(Number(rest[0]));
    } else if (op === 'E') {
      // A waiter that could not fork leaves the pipes held: let them go.
      this.helper.stdin!.write(`C ${id}\n`);
      this.pending.delete(id!);
      launcher.fail(rest.join(' '));
    }
  }

  private lost(reason: string): void {
    if (this.dead !== null) return;
    this.dead = reason;
    for (const launcher of this.pending.values()) launcher.fail(reason);
    this.pending.clear();
  }

  close(): void {
    this.helper.stdin!.end();
  }
}

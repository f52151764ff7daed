// Child processes for benchmarks: started with piped output, the last lines of
// stderr kept for the report, and stopped by their own pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

const STDERR_LINES = 40;

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** null while it runs. */
  readonly exitCode: number | null;
  /** The first line it prints on stdout. */
  firstLine(timeoutMs: number): Promise<string>;
  stderrTail(): string[];
  /** The last lines on stdout that match `keep` (given to spawnChild), e.g. a server's error logs. */
  keptStdout(): string[];
  readonly process: ChildProcess;
}

export function spawnChild(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  keep?: (line: string) => boolean,
): Child {
  // stdin stays a pipe: a child that watches it notices when the benchmark dies.
  const proc = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error(`could not start ${name}`);
  const pid = proc.pid;
  const tail: string[] = [];
  let stdout = '';
  const kept: string[] = [];
  let partialOut = '';
  let firstLineWaiter: ((line: string) => void) | undefined;
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    if (keep) {
      const lines = (partialOut + chunk).split('\n');
      partialOut = lines.pop() ?? '';
      kept.push(...lines.filter(keep));
      if (kept.length > STDERR_LINES) kept.splice(0, kept.length - STDERR_LINES);
    }
    stdout += chunk;
    const nl = stdout.indexOf('\n');
    if (nl !== -1 && firstLineWaiter) firstLineWaiter(stdout.slice(0, nl));
    // Only the first line is read; the rest is let go so the pipe never fills.
    if (stdout.length > 65_536) stdout = stdout.slice(0, 65_536);
  });
  let partial = '';
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    tail.push(...lines);
    if (tail.length > STDERR_LINES) tail.splice(0, tail.length - STDERR_LINES);
  });
  let exitCode: number | null = null;
  proc.on('exit', (code, signal) => {
    exitCode = code ?? (signal ? 128 : 1);
  });
  return {
    name,
    pid,
    process: proc,
    get exitCode() {
      return exitCode;
    },
    firstLine(timeoutMs) {
      const nl = stdout.indexOf('\n');
      if (nl !== -1) return Promise.resolve(stdout.slice(0, nl));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${name} printed nothing in ${timeoutMs} ms`)),
          timeoutMs,
        );
        const onExit = () => reject(new Error(`${name} exited before printing a line`));
        proc.once('exit', onExit);
        firstLineWaiter = (line) => {
          clearTimeout(timer);
          proc.off('exit', onExit);
          firstLineWaiter = undefined;
          resolve(line);
        };
      });
    },
    stderrTail: () => (partial ? [...tail, partial] : [...tail]),
    keptStdout: () => [...kept],
  };
}

/** SIGTERM, then SIGKILL when it has not exited after `graceMs`. */
export async function stopChild(child: Child, graceMs = 15_000): Promise<void> {
  const proc = child.process;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  proc.stdin?.destroy();
}

/** The environment a benchmark's `paddock serve` child runs with: open signup, quiet logs, a throwaway key. */
export function paddockEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PADDOCK_SIGNUP: 'open',
    PADDOCK_LOG_LEVEL: 'warn',
    // A throwaway key for a throwaway data dir (spares the "back up the key file" warning).
    PADDOCK_MASTER_KEY: randomBytes(32).toString('hex'),
  };
  delete env.DATABASE_URL;
  delete env.PADDOCK_PUBLIC_URL;
  return { ...env, ...extra };
}

/** VmRSS of a process and all its descendants (the embedded database runs in a child), in MB (Linux). */
export function rssMb(pid: number): number {
  let kb = 0;
  const visit = (p: number) => {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      kb += Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
      const children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      for (const c of children ? children.split(/\s+/) : []) visit(Number(c));
    } catch {
      // gone meanwhile
    }
  };
  visit(pid);
  return kb === 0 ? Number.NaN : kb / 1024;
}

/** CPU time (user + system) of a process and all its descendants so far, in ms (Linux; USER_HZ is 100). */
export function cpuMs(pid: number): number {
  let ticks = 0;
  const visit = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      const children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      for (const c of children ? children.split(/\s+/) : []) visit(Number(c));
    } catch {
      // gone meanwhile
    }
  };
  visit(pid);
  return ticks * 10;
}

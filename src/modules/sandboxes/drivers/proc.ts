import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { constants } from 'node:os';

// Reading the host's /proc: the drivers find, list and signal a capsule's
// processes through it, so these helpers never throw for a process that
// vanished between two reads (they answer null or an empty list instead).

/** The direct children of a process (every thread's), from /proc/<pid>/task/<tid>/children. */
export async function childrenOf(pid: number): Promise<number[]> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const word of text.split(' ')) if (word) out.push(Number(word));
  }
  return out;
}

/** The pid namespace a process is in, as the kernel names it ("pid:[4026532…]"), or null. */
export async function pidNamespaceOf(pid: number): Promise<string | null> {
  return readlink(`/proc/${pid}/ns/pid`).catch(() => null);
}

export function pidNamespaceOfSync(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

/** The pid in the innermost namespace (the last number of `NSpid:`), or null. */
export function innermostPid(status: string): number | null {
  const line = /^NSpid:\s*(.*)$/m.exec(status);
  if (!line) return null;
  const last = line[1]!.trim().split(/\s+/).pop();
  return last ? Number(last) : null;
}

export async function statusOf(pid: number): Promise<string | null> {
  return readFile(`/proc/${pid}/status`, 'utf8').catch(() => null);
}

export function statusOfSync(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
}

/** argv of a process; empty for a zombie or a kernel thread. */
export async function cmdlineOf(pid: number): Promise<string[]> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => null);
  if (!raw || raw.length === 0) return [];
  const parts = raw.toString('utf8').split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

const numeric = (name: string) => /^\d+$/.test(name);

export async function allPids(): Promise<number[]> {
  return (await readdir('/proc')).filter(numeric).map(Number);
}

export function allPidsSync(): number[] {
  return readdirSync('/proc').filter(numeric).map(Number);
}

/** Real uid of a process (first field of `Uid:`), or null. */
export function realUid(status: string): number | null {
  const m = /^Uid:\s*(\d+)/m.exec(status);
  return m ? Number(m[1]) : null;
}

/**
 * Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): with
 * the pid it names one process for good, so a pid written down before a
 * restart is not mistaken for a newer process that reused it.
 */
export async function startTimeOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!stat) return null;
  // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? null;
}

/** The one-letter state of a process (R, S, T, Z …) from /proc/<pid>/stat, or null when it is gone. */
export async function stateOf(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat ? (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null) : null;
}

/** CPU time (user + system) of one process in nanoseconds, from /proc/<pid>/stat. */
export async function cpuNsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!stat) return 0;
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15, in USER_HZ ticks (100 on every Linux ABI).
  return (Number(rest[11]) + Number(rest[12])) * 10_000_000;
}

export function rssBytes(status: string): number {
  const m = /^VmRSS:\s*(\d+)\s*kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until it answers something other than null/undefined. The
 * first polls come right away: most of what the drivers wait for (a fork, a
 * freeze) is done in well under a millisecond.
 */
export async function waitFor<T>(
  probe: () => Promise<T | null | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (attempt < 20) await new Promise<void>((resolve) => setImmediate(resolve));
    else await sleep(attempt < 100 ? 1 : 10);
  }
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Gives every pipe of a child the host spawned an error listener. A pipe's
 * error only says the process went away: ECONNRESET when it was killed with
 * bytes the host wrote to it still unread (a capsule ended while it starts),
 * EPIPE on a write after it is gone. Its 'exit' and 'close' already tell
 * that; an error with no listener would be uncaught and end the server.
 */
export function quietPipes<T extends ChildProcess>(child: T): T {
  for (const pipe of child.stdio) pipe?.on('error', () => {});
  return child;
}

/** Runs a host command to its end (mount, cp, du …), capturing its output. */
export function runCommand(file: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = quietPipes(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs }));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 1_000_000) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 100_000) stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({ code: code ?? 128 + signalNumber(signal), stdout, stderr });
    });
  });
}

export function signalNumber(signal: NodeJS.Signals | null): number {
  if (!signal) return 0;
  return constants.signals[signal] ?? 0;
}

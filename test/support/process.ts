import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const PADDOCK_BIN = path.resolve('bin/paddock.js');

export function tempDir(label: string): string {
  return mkdtempSync(path.join(tmpdir(), `paddock-${label}-`));
}

export interface RunningServer {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Environment for child processes: this one's, minus anything that would point them at a test database. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PADDOCK_LOG_LEVEL: 'warn', ...extra };
  if (!('DATABASE_URL' in extra)) delete env.DATABASE_URL;
  return env;
}

/** Starts `paddock serve` on a free port and waits for its "listening on" line. */
export async function startServer(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 20_000,
): Promise<RunningServer> {
  const { match, ...rest } = await startPaddock(
    ['serve', '--port', '0', ...args],
    env,
    /listening on (http:\/\/[^\s]+)/,
    timeoutMs,
  );
  return { ...rest, url: match[1]! };
}

/** Starts a long-running paddock command and waits until its output matches `ready`. */
export async function startPaddock(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  timeoutMs = 20_000,
): Promise<Omit<RunningServer, 'url'> & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [PADDOCK_BIN, ...args], { env, stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not left running (with its database's process) after the test gave up on it.
      child.kill('SIGKILL');
      reject(new Error(`paddock ${args[0]} was not ready in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const check = () => {
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`paddock ${args[0]} exited with ${code} before it was ready:\n${out}`));
    });
  });
  return {
    child,
    match,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs a paddock command to completion. */
export function runPaddock(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PADDOCK_BIN, ...args], { env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`paddock ${args.join(' ')} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

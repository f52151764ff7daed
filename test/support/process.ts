import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Json } from './factories.ts';

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

/** The pids of a server's embedded database process (none on Postgres). */
export function databaseProcessesOf(server: RunningServer): number[] {
  return childPids(server.child.pid!).filter((c) => commandOf(c).includes('pglite'));
}

/** SIGKILL, as a crash: nothing of the server's own shutdown runs. Waits until its database process is gone too. */
export async function killHard(server: RunningServer): Promise<void> {
  const children = databaseProcessesOf(server);
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGKILL');
  await exited;
  const deadline = Date.now() + 30_000;
  while (children.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A JSON call to a running server; the body parsed (any field, as tests read them). */
export async function serverCall(
  server: Pick<RunningServer, 'url'>,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are read field by field in tests
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

/** A database of its own on the test's Postgres server, for processes to share; `drop()` removes it. */
export async function scratchDatabase(
  baseUrl: string,
  label: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  const name = `paddock_${label}_${process.pid}`;
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.query(`create database ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

/** Signs a new user up on a running server (signup open) and answers the session token. */
export async function signupOn(server: RunningServer, email: string): Promise<string> {
  const signup = await serverCall(server, null, 'POST', '/v1/auth/signup', {
    email,
    password: 'a long password',
    name: 'Test User',
  });
  if (signup.status !== 201)
    throw new Error(`signup failed: ${signup.status} ${JSON.stringify(signup.body)}`);
  return signup.body.session_token;
}

/** An agent on a running server whose provider key points at a mock LLM (`gpt-4o-mini`); its body (with api_key). */
export async function mockAgentOn(
  server: RunningServer,
  token: string,
  mockUrl: string,
  name: string,
): Promise<Json> {
  const key = await serverCall(server, token, 'POST', '/v1/provider-keys', {
    name: 'mock',
    provider: 'openai',
    api_key: `sk-${name}`,
    base_url: mockUrl,
  });
  if (key.status !== 201) throw new Error(`provider key failed: ${key.status} ${JSON.stringify(key.body)}`);
  const policy = await serverCall(server, token, 'POST', '/v1/policies', { name });
  const agent = await serverCall(server, token, 'POST', '/v1/agents', {
    name,
    policy_id: policy.body.id,
    provider_keys: { openai: key.body.id },
    model: 'gpt-4o-mini',
  });
  if (agent.status !== 201) throw new Error(`agent failed: ${agent.status} ${JSON.stringify(agent.body)}`);
  return agent.body;
}

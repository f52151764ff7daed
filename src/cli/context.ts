import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { createClient, type PaddockClient, PaddockError } from '../../sdk/src/index.ts';
import { EXIT } from './exit-codes.ts';

// What every API command shares: where the saved login lives, which server and
// token a command uses (PADDOCK_URL and PADDOCK_TOKEN win over the saved
// login), the typed client, and how a failure becomes a message and an exit code.

/** A failure the CLI reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.error) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export interface SavedLogin {
  url: string;
  token: string;
  /** The API key `paddock login` made with a password, revoked again by `paddock logout`. */
  key_id?: string;
}

/** `$XDG_CONFIG_HOME/paddock/config.json`, else `~/.config/paddock/config.json`. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME?.trim() ? env.XDG_CONFIG_HOME : path.join(homedir(), '.config');
  return path.join(base, 'paddock', 'config.json');
}

export function readLogin(file = configPath()): SavedLogin | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const saved = JSON.parse(text) as Partial<SavedLogin>;
    if (typeof saved.url === 'string' && typeof saved.token === 'string') return saved as SavedLogin;
  } catch {
    // Reported below, like a file without the fields.
  }
  throw new CliError(`${file} is not a saved login; run paddock login again (or delete it)`);
}

/** The file is the token: readable by its owner alone (0600), in a directory only they can list (0700). */
export function saveLogin(login: SavedLogin, file = configPath()): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  // A new file made 0600 and moved over the old one: the token is never in a file others could read,
  // even for a moment (writing over an existing file would keep its mode until a chmod after).
  const fresh = `${file}.${process.pid}.tmp`;
  rmSync(fresh, { force: true });
  writeFileSync(fresh, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(fresh, file);
}

export function forgetLogin(file = configPath()): boolean {
  try {
    rmSync(file);
    return true;
  } catch {
    return false;
  }
}

export interface Target {
  url: string;
  token: string;
}

/** The server and token a command talks to: PADDOCK_URL / PADDOCK_TOKEN, else the saved login. */
export function resolveTarget(env: NodeJS.ProcessEnv = process.env): Target {
  const saved = readLogin(configPath(env));
  const url = env.PADDOCK_URL?.trim() || saved?.url;
  const token = env.PADDOCK_TOKEN?.trim() || saved?.token;
  if (!url || !token)
    throw new CliError('not logged in: run `paddock login`, or set PADDOCK_URL and PADDOCK_TOKEN', EXIT.auth);
  return { url: normalizeUrl(url), token };
}

export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`"${raw}" is not a server address (e.g. http://127.0.0.1:8080)`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CliError(`the server address must be http or https, got "${raw}"`, EXIT.usage);
  return url.origin + url.pathname.replace(/\/+$/, '');
}

/** A list command's --limit (1 to 200, as the API takes) and --cursor (a page's next_cursor). */
export function pageQuery(flags: { limit?: string; cursor?: string }): { limit?: number; cursor?: string } {
  const query: { limit?: number; cursor?: string } = {};
  if (flags.limit !== undefined) {
    const n = Number(flags.limit);
    if (!Number.isInteger(n) || n < 1 || n > 200)
      throw new CliError(`--limit is 1 to 200, got "${flags.limit}"`, EXIT.usage);
    query.limit = n;
  }
  if (flags.cursor !== undefined) query.cursor = flags.cursor;
  return query;
}

export function clientFor(target: Target): PaddockClient {
  return createClient({ baseUrl: target.url, token: target.token });
}

/** The exit code and message of anything a command threw. */
export function describeFailure(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof PaddockError) {
    const exitCode =
      err.status === 404
        ? EXIT.notFound
        : err.status === 401 || err.status === 403
          ? EXIT.auth
          : err.status === 400 || err.status === 422
            ? EXIT.usage
            : EXIT.error;
    return { message: `${err.message} (${err.status} ${err.code})`, exitCode };
  }
  // fetch's own failure (refused, unresolved, reset): the reason is its cause.
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (err instanceof TypeError && err.message === 'fetch failed')
    return {
      message: `cannot reach the server: ${cause?.message || cause?.code || 'the connection failed'}`,
      exitCode: EXIT.error,
    };
  return { message: (err as Error)?.message ?? String(err), exitCode: EXIT.error };
}

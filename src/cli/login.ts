import { hostname } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { createClient, PaddockError, unwrap } from '../../sdk/src/index.ts';
import {
  CliError,
  clientFor,
  configPath,
  describeFailure,
  forgetLogin,
  normalizeUrl,
  readLogin,
  saveLogin,
} from './context.ts';
import { EXIT } from './exit-codes.ts';
import { printJson } from './output.ts';

// `paddock login` saves a server address and a token. Two ways in:
// - a token the user already has (a team API key, `pdk_…`, made in the
//   dashboard or with `paddock keys create`): given with --token, typed at the
//   prompt, or piped on stdin (so it stays out of the shell's history and `ps`);
// - e-mail and password: the CLI signs in, makes a team API key for this
//   machine with that session (keys do not expire after a day as sessions do)
//   and ends the session; `logout` revokes the key again. A user who may not
//   manage keys (a member, not an admin) keeps the session token instead.

export interface LoginFlags {
  url?: string;
  token?: string;
  email?: string;
  scope?: string;
  json?: boolean;
}

const DEFAULT_URL = 'http://127.0.0.1:8080';

export async function login(flags: LoginFlags): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  // Piped stdin is read only when it is needed: a script that gives --token may leave it open.
  let piped: string[] | undefined;
  const nextPiped = async () => {
    piped ??= await readStdinLines();
    return piped.shift();
  };
  const url = normalizeUrl(
    flags.url ??
      process.env.PADDOCK_URL ??
      (interactive ? (await ask(`Server address [${DEFAULT_URL}]: `)) || DEFAULT_URL : DEFAULT_URL),
  );
  const scope = (flags.scope ?? 'admin') as 'read' | 'write' | 'admin';
  if (!['read', 'write', 'admin'].includes(scope))
    throw new CliError(`--scope is read, write or admin, got "${flags.scope}"`, EXIT.usage);

  let token = flags.token;
  let email = flags.email;
  if (!token && !email) {
    if (interactive) {
      const answer = await ask('API key (pdk_…), or press Enter to sign in with e-mail and password: ', true);
      if (answer) token = answer;
      else email = await ask('E-mail: ');
    } else {
      token = await nextPiped();
    }
  }
  let saved: { url: string; token: string; key_id?: string; kind: string };
  if (token) {
    saved = { url, token: token.trim(), kind: 'token' };
  } else {
    if (!email) throw new CliError('give --token, or --email to sign in with a password', EXIT.usage);
    const password = interactive ? await ask('Password: ', true) : await nextPiped();
    if (!password) throw new CliError('no password given (type it, or pipe it on stdin)', EXIT.usage);
    saved = await signIn(url, email, password, scope);
  }
  // A token that does not work is refused now, not at the first command.
  await unwrap(clientFor(saved).GET('/v1/tasks', { params: { query: { limit: 1 } } }));
  const file = configPath();
  saveLogin({ url: saved.url, token: saved.token, ...(saved.key_id ? { key_id: saved.key_id } : {}) }, file);
  if (flags.json) return printJson({ url: saved.url, config: file, credential: saved.kind });
  process.stdout.write(`logged in to ${saved.url} (${describeCredential(saved.kind)}); saved in ${file}\n`);
}

async function signIn(
  url: string,
  email: string,
  password: string,
  scope: 'read' | 'write' | 'admin',
): Promise<{ url: string; token: string; key_id?: string; kind: string }> {
  const anonymous = createClient({ baseUrl: url });
  const session = await unwrap(anonymous.POST('/v1/auth/login', { body: { email, password } }));
  const asUser = clientFor({ url, token: session.session_token });
  try {
    const key = await unwrap(
      asUser.POST('/v1/api-keys', {
        body: {
          name: `paddock CLI on ${hostname()}`.slice(0, 100),
          description: `made by paddock login for ${email}`,
          scopes: [scope],
        },
      }),
    );
    await asUser.POST('/v1/auth/logout').catch(() => undefined);
    return { url, token: key.key, key_id: key.id, kind: `api-key:${scope}` };
  } catch (err) {
    if (!(err instanceof PaddockError) || err.status !== 403) throw err;
    process.stderr.write(
      'paddock: this account may not make API keys (team admins can); the session is saved instead and\n' +
        '  ends after 6 hours unused or 24 hours at most: run paddock login again then.\n',
    );
    return { url, token: session.session_token, kind: 'session' };
  }
}

function describeCredential(kind: string): string {
  if (kind === 'session') return 'a session';
  if (kind.startsWith('api-key:')) return `a new API key with the ${kind.slice(8)} scope`;
  return 'the token given';
}

export async function logout(flags: { json?: boolean }): Promise<void> {
  const file = configPath();
  const saved = readLogin(file);
  let revoked = false;
  if (saved?.key_id) {
    // The key login made is revoked; a key the user brought is theirs to keep.
    const client = clientFor(saved);
    revoked = await unwrap(
      client.POST('/v1/api-keys/{id}/revoke', { params: { path: { id: saved.key_id } } }),
    )
      .then(() => true)
      .catch((err: unknown) => {
        process.stderr.write(`paddock: the key was not revoked: ${describeFailure(err).message}\n`);
        return false;
      });
  } else if (saved?.token.startsWith('pds_')) {
    await clientFor(saved)
      .POST('/v1/auth/logout')
      .catch(() => undefined);
  }
  const removed = forgetLogin(file);
  if (flags.json) return printJson({ logged_out: removed, key_revoked: revoked });
  process.stdout.write(removed ? `logged out (${file} removed)\n` : 'not logged in\n');
}

/** A line from the terminal; `hidden` echoes nothing (tokens, passwords). */
async function ask(question: string, hidden = false): Promise<string> {
  if (hidden) return askHidden(question);
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}

/** Reads keys in raw mode and echoes none: Enter ends, Backspace erases, Ctrl-C and Ctrl-D give up. */
function askHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed = '';
    const done = (finish: () => void) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      finish();
    };
    const onData = (chunk: Buffer) => {
      for (const char of chunk.toString('utf8')) {
        if (char === '\r' || char === '\n') return done(() => resolve(typed.trim()));
        if (char === '\u0003' || char === '\u0004')
          return done(() => reject(new CliError('login cancelled', EXIT.interrupted)));
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
        else if (char >= ' ') typed += char;
      }
    };
    stdin.on('data', onData);
  });
}

async function readStdinLines(): Promise<string[]> {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

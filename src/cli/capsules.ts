import { openPty, type PtySession, unwrap } from '../../sdk/src/index.ts';
import { CliError, clientFor, pageQuery, resolveTarget } from './context.ts';
import { EXIT } from './exit-codes.ts';
import { printDetails, printJson, printPage } from './output.ts';

// `paddock capsules …`: sandboxes by hand. `exec` runs one command and exits
// with its exit code; `shell` is a terminal in the capsule (raw mode, the
// window's size kept in step on SIGWINCH) over the PTY WebSocket.

function integer(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    throw new CliError(`${flag} must be a whole number, got "${raw}"`, EXIT.usage);
  return n;
}

export async function createCapsule(flags: {
  template?: string;
  vcpus?: string;
  memory?: string;
  timeout?: string;
  wait?: boolean;
  json?: boolean;
}): Promise<void> {
  const client = clientFor(resolveTarget());
  const vcpus = integer('--vcpus', flags.vcpus);
  const memory = integer('--memory', flags.memory);
  const timeout = integer('--timeout', flags.timeout);
  let capsule = await unwrap(
    client.POST('/v1/capsules', {
      body: {
        ...(flags.template ? { template: flags.template } : {}),
        ...(vcpus !== undefined ? { vcpus } : {}),
        ...(memory !== undefined ? { memory_mb: memory } : {}),
        ...(timeout !== undefined ? { timeout_sec: timeout } : {}),
      },
    }),
  );
  if (flags.wait !== false) {
    capsule = await unwrap(
      client.GET('/v1/capsules/{id}', {
        params: { path: { id: capsule.id }, query: { wait_for: 'running', timeout_ms: 60_000 } },
      }),
    );
    if (capsule.status !== 'running')
      throw new CliError(
        `capsule ${capsule.id} is ${capsule.status}${capsule.status_reason ? ` (${capsule.status_reason})` : ''}`,
      );
  }
  if (flags.json) return printJson(capsule);
  process.stdout.write(`${capsule.id}\n`);
  process.stderr.write(
    `capsule ${capsule.id} ${capsule.status} (${capsule.template}, isolation ${capsule.isolation ?? 'pending'})\n`,
  );
}

export async function listCapsules(flags: {
  status?: string;
  limit?: string;
  cursor?: string;
  json?: boolean;
}): Promise<void> {
  const client = clientFor(resolveTarget());
  const page = await unwrap(
    client.GET('/v1/capsules', {
      params: {
        query: { ...pageQuery(flags), ...(flags.status ? { status: flags.status as 'running' } : {}) },
      },
    }),
  );
  printPage(
    page,
    [
      ['id', (c) => c.id],
      ['status', (c) => c.status],
      ['template', (c) => c.template],
      ['vcpus', (c) => c.vcpus],
      ['memory_mb', (c) => c.memory_mb],
      ['created', (c) => c.created_at],
    ],
    flags,
    'no capsules',
  );
}

export async function getCapsule(id: string, flags: { json?: boolean }): Promise<void> {
  const capsule = await unwrap(
    clientFor(resolveTarget()).GET('/v1/capsules/{id}', { params: { path: { id } } }),
  );
  if (flags.json) return printJson(capsule);
  printDetails(capsule);
}

export async function deleteCapsule(id: string, flags: { json?: boolean }): Promise<void> {
  const capsule = await unwrap(
    clientFor(resolveTarget()).DELETE('/v1/capsules/{id}', { params: { path: { id } } }),
  );
  if (flags.json) return printJson(capsule);
  process.stdout.write(`${id} ${(capsule as { status?: string })?.status ?? 'stopping'}\n`);
}

/**
 * One command, its output and its exit code as this process's. One word is a
 * shell line (`sh -c`, so pipes work); several are the program and its arguments.
 */
export async function execInCapsule(
  id: string,
  words: string[],
  flags: { timeout?: string; cwd?: string; json?: boolean },
): Promise<number> {
  // Options pass through after the id (`exec cap_… ls -la`); a `--` before the command is optional.
  const command = words[0] === '--' ? words.slice(1) : words;
  if (command.length === 0) throw new CliError('give the command to run after the capsule id', EXIT.usage);
  const client = clientFor(resolveTarget());
  const timeout = integer('--timeout', flags.timeout);
  const [cmd, ...args] = command as [string, ...string[]];
  const result = await unwrap(
    client.POST('/v1/capsules/{id}/exec', {
      params: { path: { id } },
      body: {
        cmd,
        ...(command.length > 1 ? { args } : {}),
        ...(timeout !== undefined ? { timeout_sec: timeout } : {}),
        ...(flags.cwd ? { cwd: flags.cwd } : {}),
      },
    }),
  );
  const done = result as {
    stdout?: string;
    stderr?: string;
    exit_code?: number;
    encoding?: string;
    timed_out?: boolean;
  };
  if (flags.json) printJson(result);
  else {
    const decode = (s: string | undefined) =>
      s === undefined ? '' : done.encoding === 'base64' ? Buffer.from(s, 'base64') : s;
    process.stdout.write(decode(done.stdout));
    process.stderr.write(decode(done.stderr));
    if (done.timed_out) process.stderr.write('paddock: the command timed out and was killed\n');
  }
  return done.exit_code ?? EXIT.error;
}

/** An interactive terminal in the capsule; exits with the shell's exit code. */
export async function shellInCapsule(id: string, flags: { cmd?: string; tag?: string }): Promise<number> {
  const target = resolveTarget();
  const { WebSocket } = await import('ws');
  const stdin = process.stdin;
  const stdout = process.stdout;
  const pty: PtySession = await openPty(
    {
      baseUrl: target.url,
      token: target.token,
      WebSocket: WebSocket as never,
      ...(flags.tag
        ? { tag: flags.tag }
        : {
            start: {
              ...(flags.cmd ? { cmd: flags.cmd } : {}),
              ...(stdout.isTTY ? { cols: stdout.columns, rows: stdout.rows } : {}),
            },
          }),
    },
    id,
  );
  pty.onOutput((bytes) => stdout.write(bytes));
  pty.onError((message) => process.stderr.write(`\r\npaddock: ${message}\r\n`));
  const onResize = () => pty.resize(stdout.columns, stdout.rows);
  if (stdout.isTTY) process.on('SIGWINCH', onResize);
  if (stdin.isTTY) stdin.setRawMode(true);
  const onInput = (chunk: Buffer) => pty.write(new Uint8Array(chunk));
  stdin.on('data', onInput);
  stdin.resume();
  const code = await pty.exited;
  stdin.off('data', onInput);
  if (stdin.isTTY) stdin.setRawMode(false);
  stdin.pause();
  process.off('SIGWINCH', onResize);
  pty.close();
  if (code === undefined) {
    process.stderr.write(`\r\npaddock: the connection closed; reattach with --tag ${pty.tag}\n`);
    return EXIT.error;
  }
  return code;
}

import { randomBytes } from 'node:crypto';
import type { Role } from '../../src/roles.ts';
import { childEnv, type RunningServer, startPaddock, startServer, tempDir } from './process.ts';

// Processes of one deployment on one Postgres: `paddock serve --role X` and
// `paddock host`, each a child process on a free port of 127.0.0.1, for tests
// that split roles, stop servers (SIGTERM) or kill them (SIGKILL).

/** A child `paddock serve` and the role it runs. */
export interface RoleServer extends RunningServer {
  role: Role;
}

/** What the processes of one deployment share: the database and the master key (tokens and seals). */
export interface Deployment {
  databaseUrl: string;
  masterKey: string;
  /** More settings for every process (PADDOCK_TASK_LOST_AFTER_SEC, …). */
  env?: Record<string, string>;
}

export function deployment(databaseUrl: string, env: Record<string, string> = {}): Deployment {
  return { databaseUrl, masterKey: randomBytes(32).toString('hex'), env };
}

function deploymentEnv(d: Deployment, extra: Record<string, string>): NodeJS.ProcessEnv {
  return childEnv({
    DATABASE_URL: d.databaseUrl,
    PADDOCK_MASTER_KEY: d.masterKey,
    PADDOCK_SIGNUP: 'open',
    PADDOCK_SANDBOX_WARM: '0',
    ...d.env,
    ...extra,
  });
}

/** Polls `url`/ready until it answers 200 (or the time is up: only a hang uses it up). */
export async function waitForReady(url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${url}/ready`).catch(() => undefined);
    if (res?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`${url} was not ready in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `paddock serve --role <role>` of the deployment on a free port and
 * resolves once its /ready answers 200. Its own data dir (the master key comes
 * from the deployment). `stop()` sends SIGTERM and resolves with the exit code.
 */
export async function startRole(
  role: Role,
  d: Deployment,
  extra: Record<string, string> = {},
  timeoutMs = 180_000,
): Promise<RoleServer> {
  const server = await startServer(
    ['--role', role, '--data-dir', tempDir(`role-${role}`)],
    deploymentEnv(d, extra),
    timeoutMs,
  );
  await waitForReady(server.url, timeoutMs);
  return { ...server, role };
}

/** A `paddock host` registered with `controlPlane` by a registration token (POST /v1/hosts). */
export async function startSandboxHost(
  controlPlane: string,
  registrationToken: string,
  extra: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<RunningServer & { hostId: string }> {
  const host = await startPaddock(
    [
      'host',
      '--control-plane',
      controlPlane,
      '--token',
      registrationToken,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
    ],
    childEnv({ PADDOCK_SANDBOX_DIR: tempDir('role-host'), PADDOCK_HOST_HEARTBEAT_MS: '300', ...extra }),
    /Paddock host (hst_\w+) serving \S+ at (\S+)/,
    timeoutMs,
  );
  return { ...host, url: `http://${host.match[2]}`, hostId: host.match[1]! };
}

/** Resolves with what `read` answers once it is not undefined (polling; only a hang uses the time up). */
export async function eventually<T>(
  what: string,
  read: () => Promise<T | undefined>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await read();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

import type { AddressInfo } from 'node:net';
import { childEnv, runPaddock, tempDir } from './process.ts';
import { startTasks, type TaskFixture } from './tasks.ts';

/**
 * A listening server for the CLI's tests (test/cli/*): the task fixture (its
 * runner on the mock provider), the address, an admin API key, and the
 * environment and runner of a `paddock` child process that talks to it.
 */
export interface CliServer {
  f: TaskFixture;
  url: string;
  key: string;
  /** A config dir of its own; PADDOCK_URL/PADDOCK_TOKEN set (to `token`, `url`) unless `loggedOut`. */
  env(options?: { config?: string; loggedOut?: boolean; token?: string; url?: string }): NodeJS.ProcessEnv;
  paddock(
    args: string[],
    env?: NodeJS.ProcessEnv,
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

export async function startCliServer(): Promise<CliServer> {
  const f = await startTasks();
  await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(f.t.app.server.address() as AddressInfo).port}`;
  const key = (await f.t.apiKey(f.user.token, ['admin'])).key;
  const env: CliServer['env'] = (options = {}) => {
    const vars = childEnv({ XDG_CONFIG_HOME: options.config ?? tempDir('cli-config') });
    if (options.loggedOut) {
      delete vars.PADDOCK_URL;
      delete vars.PADDOCK_TOKEN;
    } else {
      vars.PADDOCK_URL = options.url ?? url;
      vars.PADDOCK_TOKEN = options.token ?? key;
    }
    return vars;
  };
  return { f, url, key, env, paddock: (args, vars = env()) => runPaddock(args, vars, 60_000) };
}

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Static, Type } from 'typebox';
import type { Log } from '../../../core/context.ts';
import { describeError } from '../../../core/error-log.ts';
import { type HostId, isId } from '../../../core/ids.ts';
import { openTracer } from '../../../core/tracing.ts';
import type { TracingConfig } from '../../../tracing-config.ts';
import { VERSION } from '../../../version.ts';
import { detectDriver } from '../drivers/index.ts';
import { checker } from '../host-rpc-schemas.ts';
import { EgressProxy } from './egress.ts';
import { serveAgentApi } from './host-api.ts';
import { LocalHost } from './local-host.ts';

// `paddock host`: a sandbox host on another machine (or another port of
// this one). It registers with the control plane once (one-time token),
// keeps its credentials beside its capsules so a restart needs no new token,
// serves the agent API the control plane drives it through, and heartbeats
// which capsules it runs.

export interface HostAgentOptions {
  controlPlane: string;
  /** The one-time registration token; not needed once the credentials file exists. */
  token?: string;
  listen: string;
  port: number;
  /** host:port the control plane reaches this host at (default: listen:port). */
  advertise?: string;
  sandboxDir: string;
  driver: 'auto' | 'bwrap' | 'process';
  egressPrivate: boolean;
  /** Capsules kept started ahead. */
  warm: number;
  heartbeatMs: number;
  log: (line: string) => void;
  /** Export the spans of traced control-plane calls (OTEL_EXPORTER_OTLP_ENDPOINT); undefined: off. */
  tracing?: TracingConfig | undefined;
}

const Token = Type.String({ minLength: 1 });
/** What the host keeps in <sandbox-dir>/host-credentials.json (mode 600) once registered. */
const CredentialsFile = Type.Object({
  host_id: Type.String({ pattern: '^hst_' }),
  token: Token,
  refresh_token: Token,
  control_token: Token,
});
type Credentials = Omit<Static<typeof CredentialsFile>, 'host_id'> & { host_id: HostId };
const checkCredentials = checker(CredentialsFile, 'file');
/** The control plane's answers to a registration and to a refresh (hosts routes). */
const checkRegistered = checker(
  Type.Object({
    host: Type.Object({ id: Type.String() }),
    token: Token,
    refresh_token: Token,
    control_token: Token,
  }),
);
const checkRefreshed = checker(Type.Object({ token: Token, refresh_token: Token }));

export class HostAgentError extends Error {}

/** The credentials a previous run saved; a file that is not theirs stops the host, naming it. */
function readCredentials(file: string): Credentials {
  const advice = 'delete it and register this host again with --token';
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HostAgentError(
      `the credentials file ${file} cannot be read as JSON (${(err as Error).message}); ${advice}`,
    );
  }
  const checked = checkCredentials(parsed);
  if (!checked.ok)
    throw new HostAgentError(`the credentials file ${file} is malformed: ${checked.problems}; ${advice}`);
  const { host_id, token, refresh_token, control_token } = checked.value;
  if (!isId(host_id, 'hst'))
    throw new HostAgentError(
      `the credentials file ${file} is malformed: host_id is not a host id; ${advice}`,
    );
  return { host_id, token, refresh_token, control_token };
}

/** The daemon's line log in pino's call shape (what the local host's clean-up reports through). */
function lineLog(line: (text: string) => void): Log {
  const write = (level: string) => (obj: object, msg?: string) => {
    const { err, ...rest } = obj as { err?: unknown };
    const about = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
    line(`${level}: ${msg ?? ''}${about}${err === undefined ? '' : `: ${describeError(err)}`}`);
  };
  const log: Log = {
    debug: () => {},
    info: write('info'),
    warn: write('warning'),
    error: write('error'),
    child: () => log,
  };
  return log;
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: reported below by status
  }
  return { status: res.status, body: parsed };
}

function message(body: Record<string, unknown>): string {
  const e = body.error as { message?: string } | undefined;
  return e?.message ?? JSON.stringify(body);
}

export async function runHostAgent(o: HostAgentOptions) {
  mkdirSync(o.sandboxDir, { recursive: true });
  const base = o.controlPlane.replace(/\/$/, '');
  const credsFile = path.join(o.sandboxDir, 'host-credentials.json');
  const driver = await detectDriver({ prefer: o.driver, baseDir: o.sandboxDir });
  let host: LocalHost | undefined;
  let creds: Credentials | undefined;
  const tracer = await openTracer(o.tracing, { version: VERSION, role: 'host' }, lineLog(o.log));
  const server = await serveAgentApi(
    () => host,
    () => creds?.control_token,
    { host: o.listen, port: o.port },
    tracer,
  );
  const address = o.advertise ?? `${o.listen === '0.0.0.0' ? '127.0.0.1' : o.listen}:${server.port}`;
  const save = () => writeFileSync(credsFile, `${JSON.stringify(creds)}\n`, { mode: 0o600 });

  const refresh = async () => {
    const res = await post(`${base}/v1/hosts/auth/refresh`, { refresh_token: creds!.refresh_token });
    if (res.status !== 200) throw new HostAgentError(`cannot refresh the host token: ${message(res.body)}`);
    const answer = checkRefreshed(res.body);
    if (!answer.ok)
      throw new HostAgentError(`the control plane answered a refresh wrongly: ${answer.problems}`);
    creds = { ...creds!, token: answer.value.token, refresh_token: answer.value.refresh_token };
    save();
  };

  try {
    if (existsSync(credsFile)) {
      creds = readCredentials(credsFile);
      await refresh();
    } else {
      if (!o.token)
        throw new HostAgentError('this host is not registered yet: pass --token with a registration token');
      const res = await post(`${base}/v1/hosts/register`, {
        token: o.token,
        address,
        arch: os.arch(),
        cpu_cores: os.cpus().length,
        memory_mb: Math.round(os.totalmem() / 1024 / 1024),
        isolation: driver.isolation,
      });
      if (res.status !== 201)
        throw new HostAgentError(`registration refused (${res.status}): ${message(res.body)}`);
      const answer = checkRegistered(res.body);
      if (!answer.ok)
        throw new HostAgentError(`the control plane answered the registration wrongly: ${answer.problems}`);
      const { host, token, refresh_token, control_token } = answer.value;
      if (!isId(host.id, 'hst')) throw new HostAgentError('the control plane answered without a host id');
      creds = { host_id: host.id, token, refresh_token, control_token };
      save();
    }
  } catch (err) {
    await server.close();
    await tracer.shutdown();
    if (err instanceof HostAgentError) throw err;
    throw new HostAgentError(`cannot reach the control plane at ${base}: ${(err as Error).message}`);
  }

  const local = new LocalHost(
    creds!.host_id,
    driver,
    o.sandboxDir,
    new EgressProxy({ allowPrivate: o.egressPrivate }),
  );
  // What a previous run of this host left on disk: its capsules died with it.
  const leftovers = existsSync(path.join(o.sandboxDir, 'capsules'))
    ? readdirSync(path.join(o.sandboxDir, 'capsules'))
    : [];
  await local.cleanupLeftovers(leftovers, lineLog(o.log));
  host = local;

  const beat = async (stopping = false) => {
    const send = () =>
      post(
        `${base}/v1/hosts/${creds!.host_id}/heartbeat`,
        { address, capsule_ids: stopping ? [] : local.ids(), ...(stopping ? { stopping } : {}) },
        { 'x-host-token': creds!.token },
      );
    let res = await send();
    if (res.status === 401) {
      await refresh();
      res = await send();
    }
    if (res.status !== 204)
      throw new HostAgentError(`heartbeat refused (${res.status}): ${message(res.body)}`);
  };
  await beat();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const loop = () => {
    timer = setTimeout(() => {
      beat()
        .catch((err: unknown) => o.log(`heartbeat failed: ${describeError(err)}`))
        .finally(() => {
          if (!stopped) loop();
        });
    }, o.heartbeatMs);
  };
  loop();
  for (const w of driver.warnings) o.log(`warning: ${w}`);

  return {
    hostId: creds!.host_id,
    address,
    isolation: driver.isolation,
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await local.close();
      await beat(true).catch(() => undefined);
      await server.close();
      await tracer.shutdown();
    },
  };
}

import v8 from 'node:v8';
import { Command } from 'commander';
import { addBackupCommands } from './backup/cli.ts';
import { EXIT } from './cli/exit-codes.ts';
import { addApiCommands } from './cli/program.ts';
import { type Config, ConfigError, type ConfigFlags, loadConfig } from './config.ts';
import { describeError, serializeError } from './core/error-log.ts';
import { resolveMasterKey } from './core/master-key.ts';
import type { Database } from './db/client.ts';
import { DataDirLockedError } from './db/data-dir-lock.ts';
import type { runHostAgent } from './modules/sandboxes/host-side/host-daemon.ts';
import { ROLES, roleWork } from './roles.ts';
import { VERSION } from './version.ts';

// What a command needs is imported when it runs (`await import`): `--help`
// loads none of it, and `serve` starts the database's process before it loads
// the app's modules, so the two overlap (the compiled server in dist/ keeps
// these as chunks loaded on demand).

const SERVE_HELP = `Configuration comes from flags and environment variables:
  PADDOCK_PORT (8080)  PADDOCK_HOST (127.0.0.1)  PADDOCK_DATA_DIR (./.paddock)
  DATABASE_URL         use this Postgres instead of the embedded database
  PADDOCK_MASTER_KEY   32 bytes (64 hex chars) sealing secrets; else <data-dir>/master.key
  PADDOCK_SIGNUP       open | invite (default invite: after the first user, by invitation)
  PADDOCK_BODY_LIMIT_BYTES (1048576)  PADDOCK_LOG_LEVEL (info)  PADDOCK_PUBLIC_URL
  PADDOCK_PG_POOL_MAX (10)  PADDOCK_TRUST_PROXY (false; true: one proxy in front; or the proxies' addresses/CIDRs)
  PADDOCK_ALLOWED_ORIGINS  comma-separated origins (https://host[:port]) whose pages may open
                       WebSockets with the session cookie, besides this server's own and PADDOCK_PUBLIC_URL's
  PADDOCK_PROXY_BODY_LIMIT_BYTES (33554432)  PADDOCK_DEFAULT_MAX_TOKENS (4096)
  PADDOCK_CONTENT_LOGGING (false: steps keep no prompts or completions unless a policy says so)
  PADDOCK_ALLOW_PRIVATE_UPSTREAMS  hosts, IPs and CIDRs (comma-separated) that provider base URLs
                       and BYOC hosts may use although loopback, private or reserved (default: none)
  PADDOCK_SANDBOX_DRIVER auto | bwrap | process (auto)  PADDOCK_SANDBOX_DIR (<data-dir>/sandboxes)
  PADDOCK_SANDBOX_EGRESS_PRIVATE (false)  PADDOCK_SANDBOX_WARM (2)
  PADDOCK_SANDBOX_USD_PER_VCPU_SEC (0.000014)  PADDOCK_SANDBOX_USD_PER_GB_SEC (0.0000045)
                       what a task's capsule time costs its run (0: free)
  PADDOCK_TASK_CONCURRENCY (16)  PADDOCK_TASK_LOST_AFTER_SEC (30: a silent worker's task starts again)
  PADDOCK_HOST_HEARTBEAT_MS (5000, paddock host)  PADDOCK_HOST_UNREACHABLE_AFTER_SEC (30)
  PADDOCK_THROTTLE_STORE auto | memory | postgres (auto: postgres with DATABASE_URL, else memory)
  PADDOCK_GATEWAY_RATE_LIMIT_STORE memory | postgres (memory: each server counts its own calls)
  PADDOCK_THROTTLE_LOGIN_IP (30/15m)  PADDOCK_THROTTLE_LOGIN_ACCOUNT (10/15m)
  PADDOCK_THROTTLE_SIGNUP_IP (10/1h)  PADDOCK_THROTTLE_INVITATION_IP (20/15m)
  PADDOCK_THROTTLE_INVITATION_TOKEN (10/15m)   <count>/<window in s, m or h>
  OTEL_EXPORTER_OTLP_ENDPOINT  export traces over OTLP/HTTP (also OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS)
  PADDOCK_ROLE / --role all | api | worker | scheduler (all). With DATABASE_URL, split one
                       deployment over processes: api serves HTTP (API, gateway, SSE, WebSockets),
                       worker runs jobs and tasks, scheduler leads the schedules and runs the sweeps;
                       worker and scheduler answer only /health, /ready and /metrics; capsules then
                       live on \`paddock host\`s (only all has a sandbox host of its own)
  PADDOCK_SHUTDOWN_GRACE_SEC (30)  on SIGTERM, how long requests in flight (gateway streams) may
                       run on before they are cut; a worker gives its tasks back at once
  PADDOCK_METRICS_TOKEN  the bearer token GET /metrics asks for (default none: open to whoever reaches it)
  PADDOCK_METRICS_LISTEN host:port serving /metrics instead of the main port (e.g. 127.0.0.1:9464)
See docs/operations.md.`;

function fail(message: string): never {
  process.stderr.write(`paddock: ${message}\n`);
  process.exit(1);
}

/**
 * Anything unforeseen ends the process with what serializeError lets through:
 * Node's own report would print every property (a failed statement's parameters too).
 */
function crash(err: unknown): never {
  const frames = serializeError(err).stack?.split('\n').slice(1).join('\n');
  fail(`unexpected error: ${describeError(err)}${frames ? `\n${frames}` : ''}`);
}

async function openDatabase(config: Config): Promise<Database> {
  const { openPglite, openPostgres } = await import('./db/client.ts');
  return config.databaseUrl
    ? openPostgres(config.databaseUrl, config.pgPoolMax)
    : openPglite({ dataDir: config.dataDir });
}

function describe(config: Config): string {
  return config.databaseUrl ? 'Postgres (DATABASE_URL)' : `embedded PGlite in ${config.dataDir}`;
}

/**
 * Each proxied call leaves a little garbage that lives long enough to reach
 * V8's old generation. Letting that generation grow to three times what
 * survived its last collection (V8 picks 1.1–4× by itself, often the low
 * end on a small heap) makes its collections — a pause of 5–15 ms each on
 * two cores, felt by every call in flight — a few a minute instead of one
 * every few seconds under steady traffic, for a heap up to twice the live
 * size larger between them.
 */
const OLD_GENERATION_GROWTH = '--heap-growing-percent=200';

/**
 * What closing may take past the grace for requests in flight: giving back
 * the tasks this server runs, the last steps written, the database closed.
 */
const SHUTDOWN_MARGIN_MS = 15_000;

/**
 * Stops on SIGTERM or SIGINT with `stop`, then exits 0. A stop still under
 * way after `deadlineMs` is cut short with exit 1 (a database that no longer
 * answers would hold it forever; the embedded database's process closes
 * itself when its server goes).
 */
function onStopSignals(
  stop: (signal: string) => Promise<void>,
  deadlineMs: number,
  say: (message: string, signal: string) => void,
): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    // Once only: `npm start` passes a terminal's Ctrl-C on, so the same stop can come twice.
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      say(`still stopping after ${Math.round(deadlineMs / 1000)} s: exiting now`, signal);
      process.exit(1);
    }, deadlineMs).unref();
    stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        say(`stopping failed: ${describeError(err)}`, signal);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

async function serve(config: Config): Promise<void> {
  const started = Date.now();
  v8.setFlagsFromString(OLD_GENERATION_GROWTH);
  // The embedded database boots in its own process while this one loads the app.
  const [database, { buildApp }] = await Promise.all([openDatabase(config), import('./app.ts')]);
  const masterKey = resolveMasterKey(config.masterKey, config.dataDir, (m) =>
    process.stderr.write(`paddock: warning: ${m}\n`),
  );
  const { app, services, readiness, start, dashboard } = await buildApp({ config, database, masterKey });
  if (database.kind === 'pglite') {
    const { serveBackups } = await import('./backup/socket.ts');
    const source = config.masterKey ? 'environment' : 'file';
    await serveBackups(app, {
      dataDir: config.dataDir,
      database,
      sandboxDir: config.sandboxDir,
      masterKey: source,
    });
  }

  onStopSignals(
    async (signal) => {
      app.log.info(
        { signal, role: config.role, grace_sec: config.shutdownGraceSec },
        'shutting down: finishing in-flight requests',
      );
      try {
        await app.close();
      } finally {
        await database.close();
      }
    },
    config.shutdownGraceSec * 1000 + SHUTDOWN_MARGIN_MS,
    (message, signal) => app.log.error({ signal }, message),
  );

  const address = await app.listen({ port: config.port, host: config.host });
  await database.migrate();
  await start();
  // Asked before /ready answers, so whoever waits for ready finds the whole banner printed.
  const noUsers = await services.auth.isEmpty();
  readiness.migrated = true;
  const url = config.publicUrl ?? address;
  const role = config.role === 'all' ? '' : `, role ${config.role}`;
  process.stdout.write(
    `Paddock ${VERSION} listening on ${url} (${describe(config)}${role}), ready in ${Date.now() - started} ms\n`,
  );
  // A worker or a scheduler serves only its probes: no API, dashboard or first-user hint to print.
  if (!roleWork(config.role).http) return;
  process.stdout.write(`  API reference: ${url}/docs   OpenAPI: ${url}/v1/openapi.json\n`);
  const metricsAt = services.metrics.ownAddress;
  process.stdout.write(`  Metrics: ${metricsAt ? `http://${metricsAt}` : url}/metrics\n`);
  process.stdout.write(
    dashboard
      ? `  Dashboard: ${url}/\n`
      : '  Dashboard: not built (web/dist is missing); run `npm run build` and restart to serve it at /\n',
  );
  if (noUsers) {
    process.stdout.write(
      `  No users yet. Sign up in the dashboard (${url}/signup) or create the first one (it becomes the platform admin):\n` +
        `    curl -s ${url}/v1/auth/signup -H 'content-type: application/json' \\\n` +
        `      -d '{"email":"you@example.com","password":"a long password","name":"You"}'\n`,
    );
  }
}

async function host(
  config: Config,
  flags: { controlPlane?: string; token?: string; advertise?: string; port?: string; listen?: string },
): Promise<void> {
  if (!flags.controlPlane) fail('paddock host needs --control-plane URL (the Paddock server to serve)');
  let url: URL;
  try {
    url = new URL(flags.controlPlane);
  } catch {
    fail(`--control-plane must be a URL, got "${flags.controlPlane}"`);
  }
  const port = flags.port === undefined ? 0 : Number(flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    fail(`--port must be a port number, got "${flags.port}"`);
  const { HostAgentError, runHostAgent: run } = await import('./modules/sandboxes/host-side/host-daemon.ts');
  let agent: Awaited<ReturnType<typeof runHostAgent>>;
  try {
    agent = await run({
      controlPlane: url.toString(),
      ...(flags.token ? { token: flags.token } : {}),
      ...(flags.advertise ? { advertise: flags.advertise } : {}),
      listen: flags.listen ?? config.host,
      port,
      sandboxDir: config.sandboxDir,
      driver: config.sandboxDriver,
      egressPrivate: config.sandboxEgressPrivate,
      warm: config.sandboxWarm,
      heartbeatMs: config.hostHeartbeatMs,
      tracing: config.tracing,
      log: (line) => process.stderr.write(`paddock host: ${line}\n`),
    });
  } catch (err) {
    if (err instanceof HostAgentError) fail(err.message);
    throw err;
  }
  onStopSignals(
    () => agent.stop(),
    SHUTDOWN_MARGIN_MS,
    (message) => process.stderr.write(`paddock host: ${message}\n`),
  );
  process.stdout.write(
    `Paddock host ${agent.hostId} serving ${url.origin} at ${agent.address} (isolation: ${agent.isolation})\n`,
  );
}

async function migrate(config: Config): Promise<void> {
  const database = await openDatabase(config);
  try {
    await database.migrate();
    process.stdout.write(`migrations applied (${describe(config)})\n`);
  } finally {
    await database.close();
  }
}

/** The server side's flags; each command takes the ones it uses. */
interface ServerFlags {
  port?: string;
  host?: string;
  dataDir?: string;
  controlPlane?: string;
  token?: string;
  advertise?: string;
  role?: string;
}

async function runServerCommand(command: 'serve' | 'migrate' | 'host', flags: ServerFlags): Promise<void> {
  const configFlags: ConfigFlags = {};
  if (flags.port !== undefined) configFlags.port = flags.port;
  if (flags.host !== undefined) configFlags.host = flags.host;
  if (flags.dataDir !== undefined) configFlags.dataDir = flags.dataDir;
  if (flags.role !== undefined) configFlags.role = flags.role;
  try {
    const config = loadConfig(process.env, configFlags);
    if (command === 'serve') return await serve(config);
    if (command === 'migrate') return await migrate(config);
    return await host(config, {
      ...(flags.controlPlane !== undefined ? { controlPlane: flags.controlPlane } : {}),
      ...(flags.token !== undefined ? { token: flags.token } : {}),
      ...(flags.advertise !== undefined ? { advertise: flags.advertise } : {}),
      ...(flags.port !== undefined ? { port: flags.port } : {}),
      ...(flags.host !== undefined ? { listen: flags.host } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError || err instanceof DataDirLockedError) fail(err.message);
    // Drivers' errors arrive wrapped (drizzle's DrizzleQueryError, pg's AggregateError): find the cause.
    const cause = rootCause(err);
    if (cause.code === 'EADDRINUSE')
      fail(`the port is already in use: ${cause.message}; choose another with --port`);
    if (cause.code === 'ECONNREFUSED' || cause.code === 'ENOTFOUND' || cause.code === '3D000')
      fail(`cannot reach the database: ${cause.message}`);
    crash(err);
  }
}

const ROOT_HELP_AFTER = `
Run a server:
  paddock serve                 the API, workers and a sandbox host in one process (PGlite in ./.paddock)
  paddock serve --role worker   one part of a deployment on one Postgres: api, worker or scheduler
  paddock migrate               apply database migrations and exit
  paddock backup FILE           back up the data dir, while the server runs or not (paddock restore FILE)
  paddock host --control-plane URL --token pdhg_…   a sandbox host for another server
Use one:
  paddock login                 save the server's address and your token
  paddock tasks run "Summarise the README" --agent writer

Server configuration: paddock serve --help. Commands, exit codes, config: docs/cli.md.`;

function buildProgram(): Command {
  const program = new Command('paddock')
    .description(`paddock ${VERSION}: a self-hosted control plane for AI agents`)
    .version(VERSION, '-v, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(paddock --help lists the commands)')
    .addHelpText('after', ROOT_HELP_AFTER)
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'paddock: ')) })
    // Usage errors (an unknown command or option, a missing argument) exit 2; help and --version 0.
    // Set before the commands are added: they inherit it.
    .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage));

  const dataDir = ['--data-dir <dir>', 'the data directory (PADDOCK_DATA_DIR, default ./.paddock)'] as const;
  program
    .command('serve')
    .description('run the server (applies migrations first)')
    .option('-p, --port <n>', 'the port (PADDOCK_PORT, default 8080; 0: any free port)')
    .option('--host <addr>', 'the address to listen on (PADDOCK_HOST, default 127.0.0.1)')
    .option(...dataDir)
    .option('--role <role>', `what this process runs: ${ROLES.join(' | ')} (PADDOCK_ROLE, default all)`)
    .addHelpText('after', `\n${SERVE_HELP}`)
    .action((flags: ServerFlags) => runServerCommand('serve', flags));
  program
    .command('migrate')
    .description('apply database migrations and exit')
    .option(...dataDir)
    .action((flags: ServerFlags) => runServerCommand('migrate', flags));
  program
    .command('host')
    .description('run a sandbox host for a control plane')
    .option('--control-plane <url>', 'the Paddock server to serve')
    .option(
      '--token <token>',
      'the one-time registration token of POST /v1/hosts (not needed once registered)',
    )
    .option('-p, --port <n>', 'the port of the host API (default 0: any free port)')
    .option('--host <addr>', 'the address to listen on')
    .option('--advertise <host:port>', 'the address the control plane reaches this host at')
    .option(...dataDir)
    .action((flags: ServerFlags) => runServerCommand('host', flags));
  addBackupCommands(program, dataDir);
  addApiCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  process.on('uncaughtException', crash);
  const program = buildProgram();
  if (argv.length === 0) {
    program.outputHelp();
    return;
  }
  await program.parseAsync(argv, { from: 'user' });
}

function rootCause(err: unknown): { code?: string; message: string } {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown[] } | undefined;
  for (let depth = 0; e && depth < 6; depth++) {
    if (typeof e.code === 'string') return { code: e.code, message: String(e.message ?? '') };
    e = (e.cause ?? e.errors?.[0]) as typeof e;
  }
  return { message: String((err as Error)?.message ?? err) };
}

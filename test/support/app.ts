import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type AppOptions, type BuiltApp, buildApp, type Services } from '../../src/app.ts';
import { type Config, loadConfig, THROTTLE_VARIABLES } from '../../src/config.ts';
import { ManualClock } from '../../src/core/clock.ts';
import { ManualTimers } from '../../src/core/context.ts';
import type { TeamId } from '../../src/core/ids.ts';
import type { HostResolver } from '../../src/core/outbound-guard.ts';
import type { Database } from '../../src/db/client.ts';
import { type LogDestination, loggerOptions } from '../../src/http/logger.ts';
import type { App } from '../../src/http/types.ts';
import type { RunnerOptions } from '../../src/modules/tasks/runner.ts';
import { freshDatabase } from './db.ts';

export interface CallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  /** The client's address as the socket shows it (inject's default: 127.0.0.1). */
  remoteAddress?: string;
}

/** What a test reads a response body as: any field, no narrowing. */
// biome-ignore lint/suspicious/noExplicitAny: response bodies are read field by field in tests
type Loose = any;

export interface CallResult<T = Loose> {
  status: number;
  body: T;
  headers: Record<string, string | string[] | number | undefined>;
  cookies: Array<{ name: string; value: string }>;
}

export interface SignedUpUser {
  token: string;
  csrf: string;
  user: { id: string; email: string; name: string; is_admin: boolean };
  team: { id: TeamId; name: string; slug: string };
}

export interface TestApp {
  app: App;
  services: Services;
  clock: ManualClock;
  /** With `manualTimers`: the server's timers (sweeps, intervals), run only when the test advances them. */
  timers: ManualTimers | undefined;
  database: Database;
  config: Config;
  masterKey: Buffer;
  call<T = Loose>(method: string, url: string, options?: CallOptions): Promise<CallResult<T>>;
  /** Signs up a new user (open signup), returning its session token and personal team. */
  signup(overrides?: { email?: string; name?: string; password?: string }): Promise<SignedUpUser>;
  /** Creates a team API key with the given scopes, as `token`'s active team. */
  apiKey(token: string, scopes?: Array<'read' | 'write' | 'admin'>): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

const RAISED_THROTTLES = Object.fromEntries(
  Object.values(THROTTLE_VARIABLES).map(([name]) => [name, '1000000/1s']),
);

let counter = 0;
const TEST_PASSWORD_COST = { n: 1 << 10, r: 8, p: 1 };
export function uniqueEmail(label = 'user'): string {
  counter += 1;
  return `${label}-${counter}-${randomBytes(3).toString('hex')}@example.com`;
}

/**
 * A Paddock app on a fresh database with a clock the test moves. Requests go
 * through `inject()` (the full Fastify pipeline, no socket); call
 * `app.listen()` for tests that need a real port.
 */
export async function createTestApp(
  options: {
    config?: Partial<Config>;
    env?: NodeJS.ProcessEnv;
    start?: Date;
    /** A second server on another app's database and sandbox host directory (a restart, another node). */
    shareWith?: TestApp;
    /** DNS answers for the outbound-address guard (see support/dns.ts); the system's by default. */
    resolveHost?: HostResolver;
    /** Log as production does (loggerOptions), into this instead of nowhere. */
    logDestination?: LogDestination;
    /** Keep the sign-in, signup and invitation throttles at their defaults (else raised out of the way). */
    realThrottles?: boolean;
    /** The server's timers on the test's clock: its background sweeps run only when the test advances them. */
    manualTimers?: boolean;
    /** The task runner's timings and limits. */
    taskRunner?: Partial<RunnerOptions>;
    /** web_fetch's test-only exceptions and limits (AppOptions.webFetch). */
    webFetch?: AppOptions['webFetch'];
    /** Webhook delivery timings (AppOptions.webhooks). */
    webhooks?: AppOptions['webhooks'];
    /** The playbook scheduler's timings and the webhook throttle (AppOptions.playbooks). */
    playbooks?: AppOptions['playbooks'];
    /** The dashboard's files (AppOptions.dashboardDir; default web/dist). */
    dashboardDir?: string;
  } = {},
): Promise<TestApp> {
  const shared = options.shareWith;
  const database = shared ? shared.database : await freshDatabase();
  // Each app its own sandbox host directory (capsules, templates, host id).
  const sandboxDir = shared ? shared.config.sandboxDir : mkdtempSync(path.join(tmpdir(), 'paddock-sandbox-'));
  // And its own data dir (the file store's bytes; the database is the test's own).
  const dataDir = shared ? shared.config.dataDir : mkdtempSync(path.join(tmpdir(), 'paddock-data-'));
  const config: Config = {
    ...loadConfig({
      PADDOCK_SIGNUP: 'open',
      PADDOCK_SANDBOX_DIR: sandboxDir,
      PADDOCK_DATA_DIR: dataDir,
      // No capsules started ahead unless a test is about them: they would only compete for the CPU.
      PADDOCK_SANDBOX_WARM: '0',
      // Test files sign up and sign in many users from one inject address.
      ...(options.realThrottles ? {} : RAISED_THROTTLES),
      ...options.env,
    }),
    ...options.config,
  };
  const clock = shared ? shared.clock : new ManualClock(options.start ?? new Date('2026-01-05T09:00:00Z'));
  const masterKey = shared ? shared.masterKey : randomBytes(32);
  const timers = options.manualTimers ? new ManualTimers(clock) : undefined;
  const built: BuiltApp = await buildApp({
    config,
    database,
    clock,
    masterKey,
    logger: options.logDestination ? loggerOptions(config, options.logDestination) : false,
    migrated: true,
    ...(timers ? { timers } : {}),
    ...(options.resolveHost ? { resolveHost: options.resolveHost } : {}),
    ...(options.taskRunner ? { taskRunner: options.taskRunner } : {}),
    ...(options.webFetch ? { webFetch: options.webFetch } : {}),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
    ...(options.playbooks ? { playbooks: options.playbooks } : {}),
    ...(options.dashboardDir ? { dashboardDir: options.dashboardDir } : {}),
    // scrypt at N=2^10 rather than 2^15 (test/core/passwords.test.ts checks the server's own).
    passwordCost: TEST_PASSWORD_COST,
  });
  await built.app.ready();

  const call: TestApp['call'] = async (method, url, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const res = await built.app.inject({
      method: method as 'GET',
      url,
      query: opts.query,
      headers,
      ...(opts.remoteAddress !== undefined ? { remoteAddress: opts.remoteAddress } : {}),
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    let body: unknown = res.body;
    if (res.headers['content-type']?.toString().includes('application/json') && res.body !== '')
      body = res.json();
    return {
      status: res.statusCode,
      body: body as Loose,
      headers: res.headers,
      cookies: res.cookies.map((c) => ({ name: c.name, value: c.value })),
    };
  };

  const t: TestApp = {
    app: built.app,
    services: built.services,
    clock,
    timers,
    database,
    config,
    masterKey,
    call,
    async signup(overrides = {}) {
      const res = await call('POST', '/v1/auth/signup', {
        body: {
          email: overrides.email ?? uniqueEmail(),
          name: overrides.name ?? 'Test User',
          password: overrides.password ?? 'correct horse battery',
        },
      });
      if (res.status !== 201) throw new Error(`signup failed: ${res.status} ${JSON.stringify(res.body)}`);
      return {
        token: res.body.session_token,
        csrf: res.body.csrf_token,
        user: res.body.user,
        team: res.body.team,
      };
    },
    async apiKey(token, scopes = ['write']) {
      const res = await call('POST', '/v1/api-keys', {
        token,
        body: { name: `key ${scopes.join('+')}`, scopes },
      });
      if (res.status !== 201) throw new Error(`api key failed: ${res.status} ${JSON.stringify(res.body)}`);
      return { id: res.body.id, key: res.body.key };
    },
    async close() {
      await built.app.close();
      if (shared) return;
      await database.close();
      rmSync(sandboxDir, { recursive: true, force: true });
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}

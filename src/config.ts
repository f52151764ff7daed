// One file over 400 lines: every environment variable the server reads is
// parsed, bounded and defaulted here, in the order of docs/operations.md's
// tables, so an operator's setting has exactly one place that decides it.
import { isIP } from 'node:net';
import path from 'node:path';
import { type BillingConfig, billingConfig } from './billing-config.ts';
import { AllowList } from './core/outbound-guard.ts';
import { type MetricsConfig, metricsConfig } from './metrics-config.ts';
import { type Role, roleProblems } from './roles.ts';
import { type TracingConfig, tracingConfig } from './tracing-config.ts';

/** The one typed configuration. Parsed once at start; nothing else reads `process.env`. */
export interface Config {
  host: string;
  port: number;
  /** Where PGlite keeps its data and where the master key file lives. */
  dataDir: string;
  /** Real Postgres when set; embedded PGlite otherwise. */
  databaseUrl: string | undefined;
  pgPoolMax: number;
  /** 32 bytes from PADDOCK_MASTER_KEY; undefined means "use or create the key file". */
  masterKey: Buffer | undefined;
  signup: 'open' | 'invite';
  bodyLimitBytes: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The address users reach the server at; drives the Secure cookie flag. */
  publicUrl: string | undefined;
  /**
   * Origins (`scheme://host[:port]`) whose pages may open WebSockets with the
   * session cookie, besides the server's own address as the browser reached
   * it: PADDOCK_PUBLIC_URL's origin and each of PADDOCK_ALLOWED_ORIGINS.
   */
  allowedOrigins: string[];
  /**
   * Whose X-Forwarded-For to believe: no one (false), the one proxy in front
   * (true: whoever connects), or proxies at these addresses or CIDRs.
   */
  trustProxy: boolean | string[];
  /** Body limit of the LLM proxy endpoints (conversations with images are large). */
  proxyBodyLimitBytes: number;
  /** max_tokens assumed when a proxied request sets none (budget reservation; Anthropic requires one). */
  defaultMaxTokens: number;
  /** Store prompts and completions on steps when a policy's content_logging is "default". */
  contentLogging: boolean;
  /** Where the local sandbox host keeps capsules and templates. */
  sandboxDir: string;
  /** The largest file /v1/files accepts, in bytes. */
  fileMaxBytes: number;
  /** Where files' bytes live: auto is the data dir on embedded PGlite, the database on a Postgres server. */
  fileStore: 'auto' | 'data_dir' | 'database';
  /** Tasks this server runs at once (each holds a capsule while it runs). */
  taskConcurrency: number;
  /** A running task whose worker has not been heard from for this long is started again (or failed worker_lost). */
  taskLostAfterSec: number;
  /** Outbox events older than this many days are deleted (0: kept forever). */
  eventRetentionDays: number;
  /** How often expired work-queue leases are returned to their queue (or failed), in seconds. */
  queueSweepIntervalSec: number;
  /** How often agents silent for three heartbeat intervals are marked offline (agent.offline), in seconds. */
  presenceSweepIntervalSec: number;
  /** How often a waiting claim (wait_sec) looks for jobs again, in milliseconds. */
  queuePollIntervalMs: number;
  /** Ended work-queue jobs are deleted this many days after they ended (0: kept forever). */
  queueRetentionDays: number;
  /** How often each active alert rule is evaluated, in seconds. */
  alertEvaluationIntervalSec: number;
  /** Audit log entries older than this many days are deleted (0: kept forever). */
  auditRetentionDays: number;
  /** Activity feed entries older than this many days are deleted (0: kept forever). */
  activityRetentionDays: number;
  /** Steps' request and response are cleared this many days after the call (0: kept forever). */
  stepContentRetentionDays: number;
  /** Stored Responses API answers are deleted this many days after they were made (0: kept forever). */
  responseRetentionDays: number;
  /** Task and workspace event logs are deleted this many days after their task finished (0: kept forever). */
  taskEventRetentionDays: number;
  /** Event streams (GET /v1/events as SSE) one team may hold open on one server. */
  eventStreamsPerTeam: number;
  /** auto: bubblewrap when it works here, else plain processes (not isolated). */
  sandboxDriver: 'auto' | 'bwrap' | 'process';
  /** Capsules' allow-listed names may resolve to private and loopback addresses (off: refused). */
  sandboxEgressPrivate: boolean;
  /** Capsules each host keeps started ahead for the next create of the last shape asked for. */
  sandboxWarm: number;
  /** `paddock host`: how often it heartbeats to its control plane. */
  hostHeartbeatMs: number;
  /** A host silent this long is unreachable and its capsules missing (a few heartbeats at least). */
  hostUnreachableAfterSec: number;
  /**
   * How long the playbook scheduler's lease lasts without renewal: a leader
   * that dies is replaced after this. Every server ticks six times a lease.
   */
  schedulerLeaseSec: number;
  /**
   * Hosts, IP addresses and CIDRs that Paddock may connect to on users' behalf
   * (provider base URLs, BYOC hosts) although they are loopback, private or
   * reserved. Empty: none.
   */
  allowPrivateUpstreams: string[];
  /** Where the throttles count: auto is memory on embedded PGlite, postgres on a Postgres server. */
  throttleStore: 'auto' | 'memory' | 'postgres';
  /** Where the gateway's requests and tokens per minute count (memory: per server, on the hot path at no cost). */
  gatewayRateLimitStore: 'memory' | 'postgres';
  /** Sign-in, signup and invitation throttles (modules/identity/throttles.ts). */
  throttles: ThrottleLimits;
  /** The wait before each attempt of a webhook's or channel's delivery (undefined: the built-in schedule). */
  webhookRetryScheduleMs: number[] | undefined;
  /** smtp:// or smtps:// URL of the server that sends e-mail; undefined: e-mails are logged, not sent (docs/mail.md). */
  smtpUrl: string | undefined;
  /** Telegram's Bot API base URL (channels); tests point it at a local receiver. */
  telegramApiUrl: string;
  /** The From of every e-mail. */
  mailFrom: string;
  /** What a task's capsule running time costs, charged to its run's ledger (modules/runs/sandbox-usage.ts). */
  sandboxPrices: SandboxPrices;
  /** Credits: what ledger usage costs teams, and whether a balance is required (docs/credits.md). */
  credits: CreditsConfig;
  /** Stripe billing: plans, credit packs, auto top-up; off unless PADDOCK_STRIPE_SECRET_KEY is set (docs/billing.md). */
  billing: BillingConfig;
  /** OpenTelemetry traces over OTLP/HTTP; off (undefined) unless OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/operations.md). */
  tracing: TracingConfig | undefined;
  /** What this process runs (src/roles.ts): everything, or the API, the job workers or the scheduler. */
  role: Role;
  /** How long a stopping server lets requests in flight (gateway streams) run before it cuts them. */
  shutdownGraceSec: number;
  /** GET /metrics: its bearer token and its own address, when set (docs/operations.md, "Metrics"). */
  metrics: MetricsConfig;
}

/**
 * off: no credits are consumed and none are required; track: every ledger
 * entry consumes credits, and a balance may go below zero; enforce: as track,
 * and a team without credits gets 402 insufficient_credits before a model
 * call or a capsule starts.
 */
export interface CreditsConfig {
  mode: 'off' | 'track' | 'enforce';
  /** What one credit costs a team, in USD. */
  priceUsd: number;
  /** The platform's markup on ledger cost: 1.2 charges $1.20 of credits for $1 of usage. */
  markup: number;
  /** The default balance, in credits, below which a team is low (credits.low). */
  lowThreshold: number;
}

export const DEFAULT_CREDITS: CreditsConfig = { mode: 'off', priceUsd: 0.01, markup: 1, lowThreshold: 100 };

/** USD per vCPU-second and per GiB-second of a capsule's memory; 0 is free. */
export interface SandboxPrices {
  usdPerVcpuSec: number;
  usdPerGbSec: number;
}

/**
 * Public cloud sandbox list prices (docs/operations.md): about $0.000014 per
 * vCPU-second and $0.0000045 per GiB-second.
 */
export const DEFAULT_SANDBOX_PRICES: SandboxPrices = { usdPerVcpuSec: 0.000014, usdPerGbSec: 0.0000045 };

/** A price above this per second is a typo (a unit mix-up), not a price. */
const MAX_USD_PER_SEC = 1;

/** At most `limit` in any `windowSec`. */
export interface ThrottleLimit {
  limit: number;
  windowSec: number;
}

export interface ThrottleLimits {
  /** Failed sign-ins per client address (an IPv6 client: per /64). */
  loginIp: ThrottleLimit;
  /** Failed sign-ins per e-mail address, and per trusted browser of that account. */
  loginAccount: ThrottleLimit;
  /** Signups per client address. */
  signupIp: ThrottleLimit;
  /** Failed invitation lookups and accepts per client address. */
  invitationIp: ThrottleLimit;
  /** Lookups and accepts per invitation token. */
  invitationToken: ThrottleLimit;
  /** Password-reset and magic-link e-mails asked for per client address. */
  emailLinkIp: ThrottleLimit;
  /** Password-reset and magic-link e-mails asked for per e-mail address. */
  emailLinkAccount: ThrottleLimit;
  /** Failed playbook webhook token lookups per client address. */
  hookIp: ThrottleLimit;
  /** Invitation e-mails (create and resend) one team sends. */
  invitationMailTeam: ThrottleLimit;
  /** Invitation e-mails (create and resend) to one address, from every team. */
  invitationMailRecipient: ThrottleLimit;
  /** Secret values one team reveals (POST /v1/secrets/{id}/reveal). */
  secretReveal: ThrottleLimit;
}

/** The throttle variables, their settings and defaults (docs/operations.md lists the same). */
export const THROTTLE_VARIABLES: Record<keyof ThrottleLimits, [string, string]> = {
  loginIp: ['PADDOCK_THROTTLE_LOGIN_IP', '30/15m'],
  loginAccount: ['PADDOCK_THROTTLE_LOGIN_ACCOUNT', '10/15m'],
  signupIp: ['PADDOCK_THROTTLE_SIGNUP_IP', '10/1h'],
  invitationIp: ['PADDOCK_THROTTLE_INVITATION_IP', '20/15m'],
  invitationToken: ['PADDOCK_THROTTLE_INVITATION_TOKEN', '10/15m'],
  emailLinkIp: ['PADDOCK_THROTTLE_MAIL_IP', '20/15m'],
  emailLinkAccount: ['PADDOCK_THROTTLE_MAIL_ACCOUNT', '5/15m'],
  hookIp: ['PADDOCK_THROTTLE_HOOK_IP', '30/15m'],
  invitationMailTeam: ['PADDOCK_THROTTLE_INVITATION_MAIL_TEAM', '50/1h'],
  invitationMailRecipient: ['PADDOCK_THROTTLE_INVITATION_MAIL_EMAIL', '5/1h'],
  secretReveal: ['PADDOCK_THROTTLE_SECRET_REVEAL', '20/1h'],
};

export interface ConfigFlags {
  port?: string;
  host?: string;
  dataDir?: string;
  role?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: NodeJS.ProcessEnv = process.env, flags: ConfigFlags = {}): Config {
  const problems: string[] = [];

  const int = (name: string, raw: string | undefined, fallback: number, min: number, max: number): number => {
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };

  const oneOf = <T extends string>(
    name: string,
    raw: string | undefined,
    allowed: readonly T[],
    fallback: T,
  ): T => {
    if (raw === undefined || raw === '') return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    problems.push(`${name}=${JSON.stringify(raw)} must be one of ${allowed.join(', ')}`);
    return fallback;
  };

  /** A decimal number within bounds; `what` says what it is in the problem ("a price in USD"). */
  const decimal = (
    name: string,
    raw: string | undefined,
    fallback: number,
    [min, max]: readonly [number, number],
    what: string,
  ): number => {
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!/^\s*[0-9.eE+-]+\s*$/.test(raw) || !Number.isFinite(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be ${what} from ${min} to ${max}, e.g. ${fallback}`);
      return fallback;
    }
    return n;
  };
  const usdPerSec = (name: string, raw: string | undefined, fallback: number): number =>
    decimal(name, raw, fallback, [0, MAX_USD_PER_SEC], 'a price in USD (0: free)');

  const bool = (name: string, raw: string | undefined, fallback: boolean): boolean => {
    if (raw === undefined || raw === '') return fallback;
    if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
    problems.push(`${name}=${JSON.stringify(raw)} must be true or false`);
    return fallback;
  };

  const role = (name: string, raw: string | undefined): Role => {
    if (raw === undefined || raw === '') return 'all';
    const found = roleProblems(name, raw, databaseUrl);
    problems.push(...found);
    return found.length > 0 ? 'all' : (raw as Role);
  };

  const port = int(
    flags.port !== undefined ? '--port' : 'PADDOCK_PORT',
    flags.port ?? env.PADDOCK_PORT,
    8080,
    0,
    65535,
  );
  const host = flags.host ?? env.PADDOCK_HOST ?? '127.0.0.1';
  const dataDir = path.resolve(flags.dataDir ?? env.PADDOCK_DATA_DIR ?? '.paddock');

  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }

  let masterKey: Buffer | undefined;
  const rawKey = env.PADDOCK_MASTER_KEY;
  if (rawKey !== undefined && rawKey !== '') {
    masterKey = parseMasterKey(rawKey);
    if (masterKey === undefined) {
      problems.push(
        'PADDOCK_MASTER_KEY must be 32 bytes as 64 hex characters or base64 (try: openssl rand -hex 32)',
      );
    }
  }

  const publicUrl = env.PADDOCK_PUBLIC_URL || undefined;
  const allowedOrigins: string[] = [];
  if (publicUrl !== undefined) {
    const origin = /^https?:\/\/[^\s]+$/.test(publicUrl) ? originOf(publicUrl, 'any') : undefined;
    if (origin === undefined) problems.push('PADDOCK_PUBLIC_URL must be an http:// or https:// URL');
    else allowedOrigins.push(origin);
  }
  for (const entry of (env.PADDOCK_ALLOWED_ORIGINS ?? '').split(',')) {
    const given = entry.trim();
    if (given === '') continue;
    const origin = originOf(given, 'bare');
    if (origin === undefined) {
      problems.push(
        `PADDOCK_ALLOWED_ORIGINS entry ${JSON.stringify(given)} must be an origin: http:// or https://, a host and an optional port, nothing after (e.g. https://paddock.example.com)`,
      );
    } else if (!allowedOrigins.includes(origin)) allowedOrigins.push(origin);
  }

  // Outbound-address guard exceptions: comma- or space-separated hosts, IPs and CIDRs.
  const allowPrivateUpstreams = (env.PADDOCK_ALLOW_PRIVATE_UPSTREAMS ?? '').split(/[\s,]+/).filter(Boolean);
  for (const entry of AllowList.parse(allowPrivateUpstreams).problems) {
    problems.push(
      `PADDOCK_ALLOW_PRIVATE_UPSTREAMS: ${JSON.stringify(entry)} is not a host name, an IP address or a CIDR`,
    );
  }

  const smtpUrl = env.PADDOCK_SMTP_URL || undefined;
  if (smtpUrl !== undefined && !validSmtpUrl(smtpUrl)) {
    // Never the value: it may hold the SMTP password.
    problems.push(
      'PADDOCK_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://… (percent-encode special characters in the user and password)',
    );
  }
  const telegramApiUrl = env.PADDOCK_TELEGRAM_API_URL || 'https://api.telegram.org';
  if (!/^https?:\/\/[^\s/?#@]+(\/[^\s?#]*)?$/.test(telegramApiUrl)) {
    problems.push(
      `PADDOCK_TELEGRAM_API_URL=${JSON.stringify(telegramApiUrl)} must be an http(s) URL without a query (e.g. https://api.telegram.org)`,
    );
  }
  const mailFrom = env.PADDOCK_MAIL_FROM || 'paddock@localhost';
  if (!/^([^<>\r\n]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/.test(mailFrom.trim())) {
    problems.push(
      `PADDOCK_MAIL_FROM=${JSON.stringify(mailFrom)} must be an e-mail address, alone or as Name <address>`,
    );
  }

  const config: Config = {
    host,
    port,
    dataDir,
    databaseUrl,
    pgPoolMax: int('PADDOCK_PG_POOL_MAX', env.PADDOCK_PG_POOL_MAX, 10, 1, 500),
    masterKey,
    signup: oneOf('PADDOCK_SIGNUP', env.PADDOCK_SIGNUP, ['open', 'invite'] as const, 'invite'),
    bodyLimitBytes: int(
      'PADDOCK_BODY_LIMIT_BYTES',
      env.PADDOCK_BODY_LIMIT_BYTES,
      1024 * 1024,
      1024,
      1024 ** 3,
    ),
    logLevel: oneOf('PADDOCK_LOG_LEVEL', env.PADDOCK_LOG_LEVEL, LOG_LEVELS, 'info'),
    publicUrl,
    allowedOrigins,
    trustProxy: trustedProxies(env.PADDOCK_TRUST_PROXY, problems),
    proxyBodyLimitBytes: int(
      'PADDOCK_PROXY_BODY_LIMIT_BYTES',
      env.PADDOCK_PROXY_BODY_LIMIT_BYTES,
      32 * 1024 * 1024,
      1024,
      1024 ** 3,
    ),
    defaultMaxTokens: int('PADDOCK_DEFAULT_MAX_TOKENS', env.PADDOCK_DEFAULT_MAX_TOKENS, 4096, 1, 1_000_000),
    contentLogging: bool('PADDOCK_CONTENT_LOGGING', env.PADDOCK_CONTENT_LOGGING, false),
    sandboxDir: path.resolve(env.PADDOCK_SANDBOX_DIR || path.join(dataDir, 'sandboxes')),
    fileMaxBytes: int(
      'PADDOCK_FILE_MAX_BYTES',
      env.PADDOCK_FILE_MAX_BYTES,
      256 * 1024 ** 2,
      1024,
      5 * 1024 ** 3,
    ),
    fileStore: oneOf(
      'PADDOCK_FILE_STORE',
      env.PADDOCK_FILE_STORE,
      ['auto', 'data_dir', 'database'] as const,
      'auto',
    ),
    taskConcurrency: int('PADDOCK_TASK_CONCURRENCY', env.PADDOCK_TASK_CONCURRENCY, 16, 1, 256),
    taskLostAfterSec: int('PADDOCK_TASK_LOST_AFTER_SEC', env.PADDOCK_TASK_LOST_AFTER_SEC, 30, 2, 3600),
    eventRetentionDays: int('PADDOCK_EVENT_RETENTION_DAYS', env.PADDOCK_EVENT_RETENTION_DAYS, 30, 0, 36_500),
    queueSweepIntervalSec: int(
      'PADDOCK_QUEUE_SWEEP_INTERVAL_SEC',
      env.PADDOCK_QUEUE_SWEEP_INTERVAL_SEC,
      10,
      1,
      3600,
    ),
    presenceSweepIntervalSec: int(
      'PADDOCK_PRESENCE_SWEEP_INTERVAL_SEC',
      env.PADDOCK_PRESENCE_SWEEP_INTERVAL_SEC,
      10,
      1,
      3600,
    ),
    queuePollIntervalMs: int(
      'PADDOCK_QUEUE_POLL_INTERVAL_MS',
      env.PADDOCK_QUEUE_POLL_INTERVAL_MS,
      1000,
      50,
      30_000,
    ),
    queueRetentionDays: int('PADDOCK_QUEUE_RETENTION_DAYS', env.PADDOCK_QUEUE_RETENTION_DAYS, 7, 0, 36_500),
    alertEvaluationIntervalSec: int(
      'PADDOCK_ALERT_EVALUATION_INTERVAL_SEC',
      env.PADDOCK_ALERT_EVALUATION_INTERVAL_SEC,
      60,
      10,
      3600,
    ),
    auditRetentionDays: int('PADDOCK_AUDIT_RETENTION_DAYS', env.PADDOCK_AUDIT_RETENTION_DAYS, 365, 0, 36_500),
    activityRetentionDays: int(
      'PADDOCK_ACTIVITY_RETENTION_DAYS',
      env.PADDOCK_ACTIVITY_RETENTION_DAYS,
      90,
      0,
      36_500,
    ),
    stepContentRetentionDays: int(
      'PADDOCK_STEP_CONTENT_RETENTION_DAYS',
      env.PADDOCK_STEP_CONTENT_RETENTION_DAYS,
      0,
      0,
      36_500,
    ),
    taskEventRetentionDays: int(
      'PADDOCK_TASK_EVENT_RETENTION_DAYS',
      env.PADDOCK_TASK_EVENT_RETENTION_DAYS,
      0,
      0,
      36_500,
    ),
    responseRetentionDays: int(
      'PADDOCK_RESPONSE_RETENTION_DAYS',
      env.PADDOCK_RESPONSE_RETENTION_DAYS,
      30,
      0,
      36_500,
    ),
    eventStreamsPerTeam: int(
      'PADDOCK_EVENT_STREAMS_PER_TEAM',
      env.PADDOCK_EVENT_STREAMS_PER_TEAM,
      20,
      1,
      10_000,
    ),
    sandboxDriver: oneOf(
      'PADDOCK_SANDBOX_DRIVER',
      env.PADDOCK_SANDBOX_DRIVER,
      ['auto', 'bwrap', 'process'] as const,
      'auto',
    ),
    hostHeartbeatMs: int('PADDOCK_HOST_HEARTBEAT_MS', env.PADDOCK_HOST_HEARTBEAT_MS, 5000, 100, 60_000),
    hostUnreachableAfterSec: int(
      'PADDOCK_HOST_UNREACHABLE_AFTER_SEC',
      env.PADDOCK_HOST_UNREACHABLE_AFTER_SEC,
      30,
      1,
      3600,
    ),
    schedulerLeaseSec: int('PADDOCK_SCHEDULER_LEASE_SEC', env.PADDOCK_SCHEDULER_LEASE_SEC, 30, 2, 3600),
    sandboxWarm: int('PADDOCK_SANDBOX_WARM', env.PADDOCK_SANDBOX_WARM, 2, 0, 100),
    sandboxEgressPrivate: bool('PADDOCK_SANDBOX_EGRESS_PRIVATE', env.PADDOCK_SANDBOX_EGRESS_PRIVATE, false),
    allowPrivateUpstreams,
    throttleStore: oneOf(
      'PADDOCK_THROTTLE_STORE',
      env.PADDOCK_THROTTLE_STORE,
      ['auto', 'memory', 'postgres'] as const,
      'auto',
    ),
    gatewayRateLimitStore: oneOf(
      'PADDOCK_GATEWAY_RATE_LIMIT_STORE',
      env.PADDOCK_GATEWAY_RATE_LIMIT_STORE,
      ['memory', 'postgres'] as const,
      'memory',
    ),
    throttles: throttleLimits(env, problems),
    webhookRetryScheduleMs: retrySchedule(env.PADDOCK_WEBHOOK_RETRY_SCHEDULE, problems),
    smtpUrl,
    telegramApiUrl,
    mailFrom: mailFrom.trim(),
    sandboxPrices: {
      usdPerVcpuSec: usdPerSec(
        'PADDOCK_SANDBOX_USD_PER_VCPU_SEC',
        env.PADDOCK_SANDBOX_USD_PER_VCPU_SEC,
        DEFAULT_SANDBOX_PRICES.usdPerVcpuSec,
      ),
      usdPerGbSec: usdPerSec(
        'PADDOCK_SANDBOX_USD_PER_GB_SEC',
        env.PADDOCK_SANDBOX_USD_PER_GB_SEC,
        DEFAULT_SANDBOX_PRICES.usdPerGbSec,
      ),
    },
    credits: {
      mode: oneOf('PADDOCK_CREDITS', env.PADDOCK_CREDITS, ['off', 'track', 'enforce'] as const, 'off'),
      priceUsd: decimal(
        'PADDOCK_CREDIT_PRICE_USD',
        env.PADDOCK_CREDIT_PRICE_USD,
        DEFAULT_CREDITS.priceUsd,
        [0.000001, 1000],
        'a price in USD per credit',
      ),
      markup: decimal(
        'PADDOCK_CREDIT_MARKUP',
        env.PADDOCK_CREDIT_MARKUP,
        DEFAULT_CREDITS.markup,
        [0, 100],
        'a factor',
      ),
      lowThreshold: decimal(
        'PADDOCK_CREDITS_LOW_THRESHOLD',
        env.PADDOCK_CREDITS_LOW_THRESHOLD,
        DEFAULT_CREDITS.lowThreshold,
        [0, 1e9],
        'a number of credits',
      ),
    },
    billing: billingConfig(env, env.PADDOCK_CREDITS || 'off', problems),
    tracing: tracingConfig(env, problems),
    role: role(flags.role !== undefined ? '--role' : 'PADDOCK_ROLE', flags.role ?? env.PADDOCK_ROLE),
    shutdownGraceSec: int('PADDOCK_SHUTDOWN_GRACE_SEC', env.PADDOCK_SHUTDOWN_GRACE_SEC, 30, 0, 3600),
    metrics: metricsConfig(env, problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The origin of an http(s) URL as browsers send it (lower-case host, no
 * default port). `bare`: the URL must be an origin alone, since a path, query
 * or credentials would say its author expects more of it to be matched.
 */
function originOf(url: string, accept: 'any' | 'bare'): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
  const bare =
    parsed.pathname === '/' && !parsed.search && !parsed.hash && !parsed.username && !parsed.password;
  return accept === 'any' || bare ? parsed.origin : undefined;
}

function trustedProxies(raw: string | undefined, problems: string[]): boolean | string[] {
  const value = raw?.trim().toLowerCase() ?? '';
  if (['', '0', 'false', 'no'].includes(value)) return false;
  if (['1', 'true', 'yes'].includes(value)) return true;
  const proxies = value.split(',').map((p) => p.trim());
  const valid = (p: string) => {
    const [address = '', prefix, extra] = p.split('/');
    const family = isIP(address);
    if (family === 0 || extra !== undefined) return false;
    return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
  };
  if (proxies.every(valid)) return proxies;
  problems.push(
    `PADDOCK_TRUST_PROXY=${JSON.stringify(raw)} must be true, false, or the proxies' addresses or CIDRs separated by commas`,
  );
  return false;
}

const WINDOW_UNIT_SEC = { s: 1, m: 60, h: 3600 } as const;
const MAX_THROTTLE_WINDOW_SEC = 24 * 3600;

/** `<count>/<window>`, the window in s, m or h: `30/15m`. */
function throttleLimits(env: NodeJS.ProcessEnv, problems: string[]): ThrottleLimits {
  const limits = {} as ThrottleLimits;
  for (const [field, [name, fallback]] of Object.entries(THROTTLE_VARIABLES)) {
    const raw = env[name] || fallback;
    const match = /^(\d{1,7})\/(\d{1,5})([smh])$/.exec(raw.trim());
    const limit = match ? Number(match[1]) : 0;
    const windowSec = match ? Number(match[2]) * WINDOW_UNIT_SEC[match[3] as 's' | 'm' | 'h'] : 0;
    if (limit < 1 || windowSec < 1 || windowSec > MAX_THROTTLE_WINDOW_SEC) {
      problems.push(
        `${name}=${JSON.stringify(raw)} must be <count>/<window>, e.g. ${fallback}: a count of at least 1 and a window of 1s to 24h (s, m or h)`,
      );
    }
    limits[field as keyof ThrottleLimits] = { limit, windowSec };
  }
  return limits;
}

const MAX_RETRY_ATTEMPTS = 20;
const MAX_RETRY_WAIT_MS = 24 * 3600 * 1000;

/** Comma-separated waits, each 0 or a whole number of s, m or h up to 24h: `0,5s,5m,30m,2h`. */
function retrySchedule(raw: string | undefined, problems: string[]): number[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const waits = raw.split(',').map((part) => {
    const match = /^(?:0|(\d{1,5})([smh]))$/.exec(part.trim());
    if (!match) return Number.NaN;
    return match[1] === undefined
      ? 0
      : Number(match[1]) * WINDOW_UNIT_SEC[match[2] as 's' | 'm' | 'h'] * 1000;
  });
  if (
    waits.length > MAX_RETRY_ATTEMPTS ||
    waits.some((ms) => !Number.isFinite(ms) || ms > MAX_RETRY_WAIT_MS)
  ) {
    problems.push(
      `PADDOCK_WEBHOOK_RETRY_SCHEDULE=${JSON.stringify(raw)} must list 1 to ${MAX_RETRY_ATTEMPTS} waits, each 0 or a whole number of s, m or h up to 24h, e.g. 0,5s,5m,30m,2h`,
    );
    return undefined;
  }
  return waits;
}

function validSmtpUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return (
      (url.protocol === 'smtp:' || url.protocol === 'smtps:') &&
      url.hostname !== '' &&
      (url.pathname === '' || url.pathname === '/')
    );
  } catch {
    return false;
  }
}

function parseMasterKey(raw: string): Buffer | undefined {
  const trimmed = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  const b = Buffer.from(trimmed, 'base64');
  return b.length === 32 ? b : undefined;
}

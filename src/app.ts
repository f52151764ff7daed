// One file over 400 lines: the composition root. It builds every module's
// service with the ports it needs, in the one order their dependencies allow,
// then registers routes and lifecycle hooks; split, that order would be scattered.
import path from 'node:path';
import fastifyCookie from '@fastify/cookie';
import fastifyMultipart from '@fastify/multipart';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyServerOptions } from 'fastify';
import type { Config } from './config.ts';
import { type Clock, SECOND_MS, systemClock } from './core/clock.ts';
import { type Context, systemTimers, type Timers } from './core/context.ts';
import { type PasswordCost, Passwords, Sealer, TokenHasher } from './core/crypto.ts';
import { AppError, ServiceUnavailableError } from './core/errors.ts';
import { type HostId, isId, type TeamId, ulid } from './core/ids.ts';
import { Metrics } from './core/metrics.ts';
import {
  AllowList,
  type HostResolver,
  OutboundGuard,
  type OutboundRefusedError,
} from './core/outbound-guard.ts';
import { MemoryRateLimitStore, type RateLimitStore } from './core/rate-limit.ts';
import { openTracer } from './core/tracing.ts';
import { type Database, sqlClient } from './db/client.ts';
import { PostgresJobWake } from './db/job-wake.ts';
import { PostgresRateLimitStore } from './db/rate-limit-store.ts';
import { registerAuditHooks } from './http/audit.ts';
import { registerAuth } from './http/auth.ts';
import { DASHBOARD_DIR, registerDashboard } from './http/dashboard.ts';
import { registerDraining } from './http/draining.ts';
import { answerFrameworkError, registerErrorHandling } from './http/errors.ts';
import { registerInputGuards } from './http/input-guards.ts';
import { createLogger, loggerOptions } from './http/logger.ts';
import { registerRoleGate } from './http/role-gate.ts';
import { buildLazySerializer } from './http/serialization.ts';
import { registerRequestSpans } from './http/tracing.ts';
import type { App } from './http/types.ts';
import { validatorCompiler } from './http/validation.ts';
import { Jobs } from './jobs/jobs.ts';
import { deleteActivityBefore } from './modules/activity/repo.ts';
import { registerActivityRoutes } from './modules/activity/routes.ts';
import { ActivityService } from './modules/activity/service.ts';
import { AgentPresence } from './modules/agents/presence.ts';
import { registerAgentPresenceRoutes, registerAgentRoutes } from './modules/agents/routes.ts';
import { AgentMe } from './modules/agents/schemas.ts';
import { AgentsService, type ProviderKeyPorts } from './modules/agents/service.ts';
import { AlertEvaluator, type EvaluatorOptions, evaluatorOptions } from './modules/alerts/evaluator.ts';
import { registerAlertRoutes } from './modules/alerts/routes.ts';
import { type AlertPorts, AlertRulesService } from './modules/alerts/service.ts';
import { registerAnalyticsRoutes } from './modules/analytics/routes.ts';
import { AnalyticsService } from './modules/analytics/service.ts';
import { registerApprovalRoutes } from './modules/approvals/routes.ts';
import { ApprovalsService } from './modules/approvals/service.ts';
import { AutoTopUp } from './modules/billing/auto-top-up.ts';
import { registerBillingRoutes } from './modules/billing/routes.ts';
import { BillingService } from './modules/billing/service.ts';
import { stripeClient } from './modules/billing/stripe-client.ts';
import { StripeWebhooks } from './modules/billing/webhooks.ts';
import { ChannelDeliveries } from './modules/channels/deliveries.ts';
import { NotificationsService } from './modules/channels/notifications.ts';
import { registerChannelRoutes } from './modules/channels/routes.ts';
import { ChannelsService } from './modules/channels/service.ts';
import { registerCreditRoutes } from './modules/credits/routes.ts';
import { CreditsService } from './modules/credits/service.ts';
import { BUILD_POLICY, BUILD_QUEUE, EnvironmentBuilder } from './modules/environments/builder.ts';
import type { EnvironmentVersionId } from './modules/environments/repo.ts';
import { registerEnvironmentRoutes } from './modules/environments/routes.ts';
import { EnvironmentsService } from './modules/environments/service.ts';
import { buildCapsules, templateExists } from './modules/environments/wiring.ts';
import { deleteAuditBefore } from './modules/events/audit-repo.ts';
import { registerAuditRoutes } from './modules/events/audit-routes.ts';
import { AuditService } from './modules/events/audit-service.ts';
import { EventRetention } from './modules/events/retention.ts';
import { registerEventRoutes } from './modules/events/routes.ts';
import { EventsService } from './modules/events/service.ts';
import { EVENT_STREAM_DEFAULTS, EventStreamService } from './modules/events/stream.ts';
import { DatabaseStore } from './modules/files/database-store.ts';
import { registerFileRoutes } from './modules/files/routes.ts';
import { FilesService } from './modules/files/service.ts';
import { DataDirStore } from './modules/files/store.ts';
import { ProviderHealthRegistry } from './modules/gateway/circuit-breaker.ts';
import { ModelLists } from './modules/gateway/models.ts';
import { PriceTable } from './modules/gateway/pricing.ts';
import { RateLimiter } from './modules/gateway/rate-limit.ts';
import { systemDeleteResponsesBefore } from './modules/gateway/responses-repo.ts';
import { registerResponsesRoutes } from './modules/gateway/responses-routes.ts';
import { ResponsesService } from './modules/gateway/responses-service.ts';
import { registerGatewayRoutes } from './modules/gateway/routes.ts';
import { GatewayService } from './modules/gateway/service.ts';
import { WireTranslator } from './modules/gateway/translation.ts';
import { UpstreamClient } from './modules/gateway/upstream.ts';
import { gatewayPorts } from './modules/gateway/wiring.ts';
import { AccountsService } from './modules/identity/accounts-service.ts';
import { registerAdminRoutes } from './modules/identity/admin-routes.ts';
import { registerApiKeyRoutes } from './modules/identity/api-keys-routes.ts';
import { ApiKeysService } from './modules/identity/api-keys-service.ts';
import { registerAuthRoutes } from './modules/identity/auth-routes.ts';
import { EmailLinksService } from './modules/identity/email-links.ts';
import { registerInvitationRoutes } from './modules/identity/invitations-routes.ts';
import { InvitationsService } from './modules/identity/invitations-service.ts';
import { AuthService } from './modules/identity/service.ts';
import { registerTeamRoutes } from './modules/identity/teams-routes.ts';
import { TeamsService } from './modules/identity/teams-service.ts';
import { Throttles } from './modules/identity/throttles.ts';
import { MailService } from './modules/mail/service.ts';
import { SmtpTransport } from './modules/mail/transport.ts';
import { registerMemoryRoutes } from './modules/memories/routes.ts';
import { MemoriesService } from './modules/memories/service.ts';
import { memoryToolSource } from './modules/memories/tools.ts';
import { HOOK_LIMITS, type HookLimits, PlaybookHooks } from './modules/playbooks/hooks.ts';
import { registerPlaybookRoutes } from './modules/playbooks/routes.ts';
import { PlaybookRuns } from './modules/playbooks/runs.ts';
import {
  PlaybookScheduler,
  SCHEDULER_DEFAULTS,
  type SchedulerOptions,
  schedulerTimings,
} from './modules/playbooks/scheduler.ts';
import { PlaybooksService } from './modules/playbooks/service.ts';
import { registerPolicyRoutes } from './modules/policies/routes.ts';
import { PoliciesService, type PolicyRunsPort } from './modules/policies/service.ts';
import { registerProviderRoutes } from './modules/providers/routes.ts';
import { ProvidersService } from './modules/providers/service.ts';
import { registerQueueRoutes } from './modules/queues/routes.ts';
import { QueuesService } from './modules/queues/service.ts';
import { registerRunRoutes } from './modules/runs/routes.ts';
import { RunsService } from './modules/runs/service.ts';
import { stepContentClearer } from './modules/runs/step-content-retention.ts';
import type { SandboxHost } from './modules/sandboxes/host.ts';
import { registerHostRoutes } from './modules/sandboxes/host-routes.ts';
import { HostsService } from './modules/sandboxes/hosts.ts';
import {
  createLocalHost,
  ensurePlatformTemplate,
  registerLocalHost,
} from './modules/sandboxes/local-setup.ts';
import { registerCapsuleRoutes } from './modules/sandboxes/routes.ts';
import { CapsulesService } from './modules/sandboxes/service.ts';
import { registerSnapshotRoutes } from './modules/sandboxes/snapshot-routes.ts';
import { SnapshotsService } from './modules/sandboxes/snapshots.ts';
import { registerCapsuleStreamRoutes } from './modules/sandboxes/ws-routes.ts';
import { registerSecretRoutes } from './modules/secrets/routes.ts';
import { SecretsService } from './modules/secrets/service.ts';
import { registerSkillRoutes } from './modules/skills/routes.ts';
import { SkillsService } from './modules/skills/service.ts';
import { skillToolSource } from './modules/skills/tools.ts';
import { stateCounts } from './modules/system/metrics-repo.ts';
import { MetricsEndpoint, registerMetricsRoute } from './modules/system/metrics-routes.ts';
import { MetricsServer } from './modules/system/metrics-server.ts';
import { type Readiness, registerSystemRoutes } from './modules/system/routes.ts';
import { DelegateSource } from './modules/tasks/delegate.ts';
import { systemDeleteEventLogsBefore } from './modules/tasks/event-log-repo.ts';
import type { ToolSource } from './modules/tasks/loop-tools.ts';
import { McpToolSource } from './modules/tasks/mcp/source.ts';
import { QueueTaskRunner } from './modules/tasks/queue-runner.ts';
import { registerTaskRoutes } from './modules/tasks/routes.ts';
import { type RunnerOptions, runnerTimings, TaskRunner } from './modules/tasks/runner.ts';
import { TasksService } from './modules/tasks/service.ts';
import { WEB_FETCH_LIMITS, type WebFetchLimits } from './modules/tasks/web-fetch.ts';
import { WebFetchSource } from './modules/tasks/web-fetch-tool.ts';
import { taskPorts } from './modules/tasks/wiring.ts';
import { WEBHOOK_DEFAULTS, WebhookDeliveries, type WebhookOptions } from './modules/webhooks/deliveries.ts';
import { WebhookDispatcher } from './modules/webhooks/dispatcher.ts';
import { registerWebhookRoutes } from './modules/webhooks/routes.ts';
import { WebhookSender } from './modules/webhooks/sender.ts';
import { WebhooksService } from './modules/webhooks/service.ts';
import { WorkItemThreads } from './modules/work-items/comments-links.ts';
import { registerWorkItemRoutes } from './modules/work-items/routes.ts';
import { type WorkItemPorts, WorkItemsService } from './modules/work-items/service.ts';
import { WorkspaceFiles } from './modules/workspaces/files.ts';
import { registerWorkspaceRoutes } from './modules/workspaces/routes.ts';
import { WorkspacesService } from './modules/workspaces/service.ts';
import { roleWork } from './roles.ts';
import { VERSION } from './version.ts';

export interface AppOptions {
  config: Config;
  database: Database;
  masterKey: Buffer;
  clock?: Clock;
  /** Timers for background work and backoffs (tests pass ManualTimers to drive them). */
  timers?: Timers;
  /** Fastify's logger setting (default: loggerOptions(config)); tests pass false or their own destination. */
  logger?: FastifyServerOptions['logger'];
  /** Set when the caller has already applied migrations. */
  migrated?: boolean;
  /** DNS for the outbound-address guard (tests answer for themselves); the system resolver by default. */
  resolveHost?: HostResolver;
  /** The task runner's timings and limits (tests shorten the heartbeat). */
  taskRunner?: Partial<RunnerOptions>;
  /**
   * Tests only (no setting reaches it): host names web_fetch may reach whatever they resolve to
   * (a page server on loopback), and lower limits. Production's web_fetch has no exceptions.
   */
  webFetch?: { allowForTests?: string[]; limits?: Partial<WebFetchLimits> };
  /** Webhook delivery timings (tests shorten the retry schedule and the polls). */
  webhooks?: Partial<WebhookOptions>;
  /** The alert evaluator's tick and lease (tests call its tick themselves). */
  alerts?: Partial<EvaluatorOptions>;
  /** The playbook scheduler's tick and lease, and the webhook throttle (tests shorten and lower them). */
  playbooks?: { scheduler?: Partial<SchedulerOptions>; hooks?: Partial<HookLimits> };
  /** The built dashboard's directory (default web/dist); one without index.html serves no dashboard. */
  dashboardDir?: string;
  /**
   * Tests only (no setting reaches it): a cheaper scrypt cost for the passwords they sign up
   * with, so a file that signs in hundreds of times spends its time on what it tests.
   */
  passwordCost?: PasswordCost;
}

export interface Services {
  auth: AuthService;
  teams: TeamsService;
  invitations: InvitationsService;
  emailLinks: EmailLinksService;
  mail: MailService;
  apiKeys: ApiKeysService;
  /** Platform admins' /v1/admin/users and /v1/admin/teams, and the erasure of an account. */
  accounts: AccountsService;
  policies: PoliciesService;
  agents: AgentsService;
  events: EventsService;
  eventStream: EventStreamService;
  eventRetention: EventRetention;
  audit: AuditService;
  auditRetention: EventRetention;
  activityRetention: EventRetention;
  stepContentRetention: EventRetention;
  responseRetention: EventRetention;
  /** Task and workspace event logs (PADDOCK_TASK_EVENT_RETENTION_DAYS). */
  taskEventRetention: EventRetention;
  sealer: Sealer;
  hasher: TokenHasher;
  clock: Clock;
  ctx: Context;
  providers: ProvidersService;
  secrets: SecretsService;
  skills: SkillsService;
  files: FilesService;
  runs: RunsService;
  approvals: ApprovalsService;
  gateway: GatewayService;
  /** The provider keys' model lists (GET /v1/agents/{id}/models), cached in this process. */
  models: ModelLists;
  capsules: CapsulesService;
  snapshots: SnapshotsService;
  environments: EnvironmentsService;
  environmentBuilder: EnvironmentBuilder;
  jobs: Jobs;
  hosts: HostsService;
  tasks: TasksService;
  taskRunner: TaskRunner;
  memories: MemoriesService;
  queues: QueuesService;
  credits: CreditsService;
  agentPresence: AgentPresence;
  workspaces: WorkspacesService;
  webhooks: WebhooksService;
  webhookDeliveries: WebhookDeliveries;
  webhookDispatcher: WebhookDispatcher;
  channels: ChannelsService;
  channelDeliveries: ChannelDeliveries;
  notifications: NotificationsService;
  playbooks: PlaybooksService;
  playbookScheduler: PlaybookScheduler;
  alertRules: AlertRulesService;
  alertEvaluator: AlertEvaluator;
  workItems: WorkItemsService;
  workItemThreads: WorkItemThreads;
  activity: ActivityService;
  billing: BillingService;
  /** Off (undefined) unless billing is configured. */
  autoTopUp: AutoTopUp | undefined;
  /** GET /metrics: this app's Prometheus metrics, and their own address when PADDOCK_METRICS_LISTEN gives one. */
  metrics: MetricsEndpoint;
}

export interface BuiltApp {
  app: App;
  services: Services;
  readiness: Readiness;
  /** Starts the sweeps and the local sandbox host; call once migrations ran (buildApp does it when told they had). */
  start(): Promise<void>;
  /** Whether the dashboard is served at `/` (false when web/dist has not been built). */
  dashboard: boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;

/** One place wires everything: the context, the services, and the routes on top. */
export async function buildApp(options: AppOptions): Promise<BuiltApp> {
  const { config, database } = options;
  const clock = options.clock ?? systemClock;
  const log = createLogger(options.logger ?? loggerOptions(config));
  // Off (no OTEL_EXPORTER_OTLP_ENDPOINT): a no-op tracer, and the OpenTelemetry SDK is never loaded.
  const tracer = await openTracer(config.tracing, { version: VERSION, role: 'server' }, log);
  // One registry per app (tests run several in one process), reached through the context.
  const metrics = new Metrics(log);
  const ctx: Context = { clock, timers: options.timers ?? systemTimers, log, tracer, metrics };
  const sealer = new Sealer(options.masterKey);
  const hasher = new TokenHasher(options.masterKey);
  const passwords = new Passwords(options.passwordCost);
  const db = database.db;

  // Every connection to a user-given address (provider base URLs, BYOC hosts) passes this guard.
  // A refusal's message leaves out the address a name resolved to (tenants see it); the log keeps it.
  const logRefusal = (r: OutboundRefusedError) =>
    log.warn({ host: r.host, address: r.address, reason: r.reason }, 'an outbound connection was refused');
  const outbound = new OutboundGuard({
    allow: AllowList.parse(config.allowPrivateUpstreams).list,
    onRefused: logRefusal,
    ...(options.resolveHost ? { resolve: options.resolveHost } : {}),
  });
  const upstream = new UpstreamClient(outbound);

  const events = new EventsService(clock);
  const credits = new CreditsService(db, ctx, events, config.credits);
  const eventStream = new EventStreamService(db, ctx, {
    ...EVENT_STREAM_DEFAULTS,
    streamsPerTeam: config.eventStreamsPerTeam,
  });
  const eventRetention = new EventRetention(db, ctx, config.eventRetentionDays);
  const audit = new AuditService(db, ctx);
  const auditRetention = new EventRetention(
    db,
    ctx,
    config.auditRetentionDays,
    deleteAuditBefore,
    'audit log',
  );
  const activityRetention = new EventRetention(
    db,
    ctx,
    config.activityRetentionDays,
    deleteActivityBefore,
    'activity',
  );
  const stepContentRetention = new EventRetention(
    db,
    ctx,
    config.stepContentRetentionDays,
    stepContentClearer(),
    'step content',
  );
  const responseRetention = new EventRetention(
    db,
    ctx,
    config.responseRetentionDays,
    systemDeleteResponsesBefore,
    'stored response',
  );
  const taskEventRetention = new EventRetention(
    db,
    ctx,
    config.taskEventRetentionDays,
    systemDeleteEventLogsBefore,
    'task event log',
  );
  const nowMs = () => clock.now().getTime();
  const memoryRateLimits = new MemoryRateLimitStore(nowMs);
  const sharedRateLimits = new PostgresRateLimitStore(db, nowMs);
  // One process on embedded PGlite: memory is exact and costs nothing. On a Postgres server there
  // may be several, and the throttles are few and slow (scrypt): counting in the database makes
  // them hold across servers. The gateway's limits stay in memory unless asked: on its hot path
  // the database costs about a millisecond a call (docs/gateway.md).
  const throttleStore: RateLimitStore =
    config.throttleStore === 'postgres' || (config.throttleStore === 'auto' && database.kind === 'postgres')
      ? sharedRateLimits
      : memoryRateLimits;
  const gatewayStore: RateLimitStore =
    config.gatewayRateLimitStore === 'postgres' ? sharedRateLimits : memoryRateLimits;
  const sweepRateLimits = throttleStore === sharedRateLimits || gatewayStore === sharedRateLimits;
  const jobs = new Jobs(
    sqlClient(db),
    log,
    { pollingIntervalSec: 2, maintenanceIntervalSec: 30 },
    // Several servers share a Postgres: a job sent on one (an api server's task) starts on another at once.
    config.databaseUrl ? new PostgresJobWake(config.databaseUrl, sqlClient(db), ctx) : undefined,
  );
  // E-mail: SMTP when configured (through the outbound guard), else each message is logged.
  const mail = new MailService(
    db,
    ctx,
    sealer,
    jobs,
    config.smtpUrl ? new SmtpTransport({ url: config.smtpUrl, from: config.mailFrom }, outbound) : undefined,
  );
  // Links in e-mails point at the address users reach the server at.
  const publicBase = config.publicUrl ?? `http://${config.host}:${config.port}`;
  const teams = new TeamsService(db, clock, events);
  const throttles = new Throttles(throttleStore, hasher, config.throttles);
  const invitations = new InvitationsService(db, clock, hasher, events, mail, publicBase, throttles);
  // An erasure also deletes the account's mail and notifications (made below; used only when one runs).
  const accounts = new AccountsService(db, clock, events, {
    forgetAddress: (tx, address) => mail.forgetAddress(tx, address),
    forgetUser: (tx, userId) => notifications.forgetUser(tx, userId),
  });
  const auth = new AuthService(
    db,
    clock,
    hasher,
    events,
    teams,
    invitations,
    config.signup,
    throttles,
    accounts,
    passwords,
  );
  const emailLinks = new EmailLinksService(
    db,
    clock,
    hasher,
    events,
    throttles,
    mail,
    auth,
    publicBase,
    passwords,
  );
  const apiKeys = new ApiKeysService(db, clock, hasher, events);
  // Policies ask agents which of them use a policy; agents ask policies whether one exists.
  // Policies read their runs' stats from the runs module (made below).
  const policyRuns: PolicyRunsPort = {
    policyStats: (teamId, policyId, window) => runs.reports.policyStats(teamId, policyId, window),
    endedRunsOfPolicy: (teamId, policyId, window, limit) =>
      runs.reports.endedRunsOfPolicy(teamId, policyId, window, limit),
  };
  const policies: PoliciesService = new PoliciesService(
    db,
    ctx,
    events,
    (tx, teamId, policyId) => agents.idsUsingPolicy(tx, teamId, policyId),
    policyRuns,
  );
  // Agents ask providers whether a key exists and which they can use, and the gateway's model
  // lists what those keys can call (all made below).
  const agentProviderKeys: ProviderKeyPorts = {
    exists: (teamId, keyId, provider) => providers.exists(teamId, keyId, provider),
    usable: (teamId, keyIds) => providers.usableKeys(teamId, keyIds),
    models: (teamId, keys) => models.list(teamId, keys),
  };
  // Agents' definitions pin environment versions and name files and skills (made below).
  const agents: AgentsService = new AgentsService(db, ctx, hasher, events, policies, agentProviderKeys, {
    pinEnvironment: (teamId, asked) => environments.pin(teamId, asked),
    unknownFiles: (teamId, ids) => files.unknownFileIds(teamId, ids),
    unknownSkills: (teamId, ids) => skills.unknownSkillIds(teamId, ids),
  });
  const agentPresence = new AgentPresence(db, ctx, events, agents, {
    sweepIntervalSec: config.presenceSweepIntervalSec,
  });
  // -- module services (add new modules here) --
  const runs = new RunsService(
    db,
    ctx,
    events,
    async (agentId) => isId(agentId, 'agt') && (await agents.getForCall(agentId))?.status === 'active',
    {
      exclusiveDatabase: database.kind === 'pglite',
      ...(config.credits.mode === 'off' ? {} : { budget: { credits: credits.port() } }),
      sandboxPrices: config.sandboxPrices,
      onBlocked: (b) => audit.recordBlock(b),
    },
  );
  const approvals = new ApprovalsService(db, ctx, events);
  const providerHealth = new ProviderHealthRegistry(clock);
  const providers: ProvidersService = new ProvidersService(
    db,
    ctx,
    sealer,
    events,
    providerHealth,
    outbound,
    agents,
    runs.reports,
  );
  const secrets = new SecretsService(
    db,
    ctx,
    sealer,
    events,
    (tx, teamId, ids) => agents.unknownAgentIds(tx, teamId, ids),
    (teamId) => throttles.take('secret_reveal', teamId),
  );
  const analytics = new AnalyticsService(db, ctx, events);
  const skills = new SkillsService(db, ctx, events, (tx, teamId, skillId) =>
    agents.idsUsingSkill(tx, teamId, skillId),
  );
  const files = new FilesService(
    db,
    ctx,
    hasher,
    events,
    {
      current:
        config.fileStore === 'auto'
          ? database.kind === 'pglite'
            ? 'data_dir'
            : 'database'
          : config.fileStore,
      all: {
        data_dir: new DataDirStore(path.join(config.dataDir, 'files')),
        database: new DatabaseStore(db),
      },
    },
    { maxBytes: config.fileMaxBytes, uploadTtlMs: 60 * 60 * 1000 },
  );
  const prices = new PriceTable();
  const models = new ModelLists(ctx, upstream, {
    open: (teamId, keyId) => providers.keyForCall(teamId, keyId),
    prices,
  });
  const gatewayRateLimiter = new RateLimiter(gatewayStore, log);
  const gateway = new GatewayService(
    ctx,
    gatewayPorts({ agents, policies, providers, runs, approvals, health: providerHealth, prices }, () =>
      clock.now(),
    ),
    new WireTranslator(clock),
    gatewayRateLimiter,
    { defaultMaxTokens: config.defaultMaxTokens, logContentByDefault: config.contentLogging },
    upstream,
  );
  const responses = new ResponsesService(db, ctx, gateway, async (agentId) => {
    const agent = await agents.getForCall(agentId);
    return agent ? (agent.teamId as TeamId) : undefined;
  });
  // What this process runs (src/roles.ts; docs/operations.md, "Roles"): `all` runs everything.
  const work = roleWork(config.role);
  const localHost = work.localHost
    ? await createLocalHost({
        sandboxDir: config.sandboxDir,
        driver: config.sandboxDriver,
        egressPrivate: config.sandboxEgressPrivate,
        warm: config.sandboxWarm,
      })
    : undefined;
  const sandboxHosts = new Map<HostId, SandboxHost>(localHost ? [[localHost.id, localHost]] : []);
  const capsules = new CapsulesService(db, ctx, events, sandboxHosts, {
    admit: (teamId) => credits.requireAvailable(teamId, 'a capsule'),
  });
  const snapshots = new SnapshotsService(db, ctx, events, capsules.states);
  const queueBuild = async (versionId: string) => {
    await jobs.declare(BUILD_QUEUE, BUILD_POLICY);
    await jobs.send(BUILD_QUEUE, { version_id: versionId });
  };
  const environments = new EnvironmentsService(db, ctx, events, {
    templateExists: templateExists(snapshots),
    queueBuild,
  });
  const environmentBuilder = new EnvironmentBuilder(
    db,
    ctx,
    events,
    buildCapsules(capsules, snapshots),
    queueBuild,
  );
  const hosts = new HostsService(db, ctx, hasher, sealer, events, capsules, outbound, {
    unreachableAfterMs: config.hostUnreachableAfterSec * SECOND_MS,
  });
  const taskModules = {
    agents,
    teams,
    policies,
    providers,
    environments,
    files,
    secrets,
    gateway,
    runs,
    capsules,
    approvals,
  };
  const ports = taskPorts(taskModules);
  const tasks = new TasksService(db, ctx, events, ports);
  const workspaces = new WorkspacesService(db, ctx, events, tasks, ports);
  // Tools beyond the capsule's built-ins, each from the module that owns it (tasks/loop-tools.ts).
  const memories = new MemoriesService(
    db,
    ctx,
    events,
    async (tx, teamId, agentId) => (await agents.unknownAgentIds(tx, teamId, [agentId])).length === 0,
  );
  const queues = new QueuesService(
    db,
    ctx,
    events,
    {
      sweepIntervalSec: config.queueSweepIntervalSec,
      pollIntervalMs: config.queuePollIntervalMs,
      retentionDays: config.queueRetentionDays,
    },
    { paused: (agentId) => agentPresence.isPaused(agentId) },
  );
  // Tasks sent to a work queue (runner: {queue}) follow their paddock.task job; a paused agent's wait.
  new QueueTaskRunner(db, ctx, events, tasks, ports, queues, (teamId) => agentPresence.pausedIn(teamId));
  const toolSources: ToolSource[] = [
    new McpToolSource(ctx, outbound),
    skillToolSource(skills),
    memoryToolSource(memories),
    // web_fetch's own guard: PADDOCK_ALLOW_PRIVATE_UPSTREAMS is for provider and host connections, not for pages.
    new WebFetchSource(
      new OutboundGuard({
        allow: AllowList.parse(options.webFetch?.allowForTests ?? []).list,
        onRefused: logRefusal,
        ...(options.resolveHost ? { resolve: options.resolveHost } : {}),
      }),
      ctx.timers,
      { ...WEB_FETCH_LIMITS, ...options.webFetch?.limits },
    ),
  ];
  // Sub-agents' own tools come from the same list (the delegate source is in it too).
  toolSources.push(new DelegateSource(ctx, ports, toolSources));
  const taskRunner = new TaskRunner(
    db,
    ctx,
    events,
    tasks,
    ports,
    jobs,
    { ...runnerTimings(config.taskConcurrency, config.taskLostAfterSec), ...options.taskRunner },
    toolSources,
  );
  const webhookOptions: WebhookOptions = {
    ...WEBHOOK_DEFAULTS,
    ...(config.webhookRetryScheduleMs ? { retryScheduleMs: config.webhookRetryScheduleMs } : {}),
    ...options.webhooks,
  };
  const webhookDeliveries = new WebhookDeliveries(
    db,
    ctx,
    sealer,
    events,
    jobs,
    new WebhookSender(outbound, ctx.timers, webhookOptions.timeoutMs),
    webhookOptions,
  );
  // Channels ride on the webhooks' outbox reader, schedule and guarded sender.
  const channelSender = new WebhookSender(outbound, ctx.timers, webhookOptions.timeoutMs, 'Paddock-Channels');
  const channelDeliveries = new ChannelDeliveries(
    db,
    ctx,
    sealer,
    jobs,
    channelSender,
    (tx, teamId) => teams.memberUserIds(tx, teamId),
    { telegramApiUrl: config.telegramApiUrl },
    webhookOptions,
  );
  const webhookDispatcher = new WebhookDispatcher(db, ctx, events, webhookDeliveries, [channelDeliveries]);
  const channels = new ChannelsService(db, ctx, sealer, events, outbound, channelDeliveries, (tx, teamId) =>
    teams.memberUserIds(tx, teamId),
  );
  const notifications = new NotificationsService(db, ctx);
  const webhooks = new WebhooksService(
    db,
    ctx,
    sealer,
    events,
    outbound,
    webhookDeliveries,
    (tx, teamId, ids) => agents.unknownAgentIds(tx, teamId, ids),
  );
  // Playbooks run agents through tasks (a session task opens the run's workspace) and workspaces (each later chain).
  const playbookRuns = new PlaybookRuns(db, ctx, events, {
    submit: async (principal, input) => tasks.submit(principal, { ...input, mode: 'session' }),
    message: async (principal, workspaceId, content, limits) =>
      workspaces.message(principal, workspaceId, { content }, limits),
    task: async (principal, taskId) => tasks.get(principal, taskId),
    cancelTask: async (principal, taskId) => {
      await tasks.cancel(principal, taskId);
    },
    endWorkspace: async (principal, workspaceId) => {
      await workspaces.terminate(principal, workspaceId);
    },
  });
  // A chain's end moves its run on here and now; the scheduler's tick catches what a dead server missed.
  workspaces.onTurnEnded((teamId, taskId) => playbookRuns.chainEnded(teamId, taskId));
  const playbooks = new PlaybooksService(
    db,
    ctx,
    hasher,
    events,
    async (tx, teamId, agentId) => (await agents.unknownAgentIds(tx, teamId, [agentId])).length === 0,
    playbookRuns,
    (tx, teamId, ids) => channels.unknownIds(tx, teamId, ids),
  );
  const playbookScheduler = new PlaybookScheduler(db, ctx, events, playbooks, playbookRuns, {
    ...SCHEDULER_DEFAULTS,
    ...schedulerTimings(config.schedulerLeaseSec),
    ...options.playbooks?.scheduler,
  });
  const playbookHooks = new PlaybookHooks(
    playbooks,
    playbookRuns,
    throttleStore,
    (ip) => throttles.take('playbook_hook_ip', ip),
    {
      ...HOOK_LIMITS,
      ...options.playbooks?.hooks,
    },
  );
  const alertPorts: AlertPorts = {
    unknownAgents: (tx, teamId, ids) => agents.unknownAgentIds(tx, teamId, ids),
    memberEmailsAmong: (tx, teamId, emails) => teams.memberEmailsAmong(tx, teamId, emails),
  };
  const alertRules = new AlertRulesService(db, ctx, events, alertPorts);
  const alertEvaluator = new AlertEvaluator(db, ctx, events, mail, alertPorts, publicBase, {
    ...evaluatorOptions(config.alertEvaluationIntervalSec),
    ...options.alerts,
  });
  const workItemPorts: WorkItemPorts = {
    isMember: (tx, teamId, userId) => teams.isMember(tx, teamId, userId),
    isTeamAgent: async (tx, teamId, agentId) =>
      (await agents.unknownAgentIds(tx, teamId, [agentId])).length === 0,
    isTeamTask: (tx, teamId, id) => tasks.isTeamTask(tx, teamId, id),
    isTeamPlaybookRun: (tx, teamId, id) => playbookRuns.isTeamRun(tx, teamId, id),
  };
  const workItems = new WorkItemsService(db, ctx, events, workItemPorts);
  const workItemThreads = new WorkItemThreads(db, ctx, events, workItems, workItemPorts);
  const activity = new ActivityService(db, ctx, events);
  // Billing: only with a Stripe key (docs/billing.md); the SDK connects through the outbound guard.
  const stripe = config.billing.stripe ? stripeClient(config.billing.stripe, outbound) : undefined;
  const autoTopUp = stripe ? new AutoTopUp(db, ctx, events, config.billing, stripe) : undefined;
  if (autoTopUp) credits.onBalance(autoTopUp.listener);
  const billing = new BillingService(db, ctx, credits, config.billing, stripe, autoTopUp, config.publicUrl);
  const stripeWebhooks =
    stripe && autoTopUp
      ? new StripeWebhooks(db, ctx, events, credits, config.billing, stripe, autoTopUp)
      : undefined;
  metrics.attach({
    breakers: () => providerHealth.snapshot(),
    reservations: () => runs.budget.outstanding(),
    pool: () => database.poolStats(),
    states: () => stateCounts(db),
  });
  const stopTimingStatements = database.observeStatements((ms, ok) => metrics.statement(ms, ok));
  const metricsEndpoint = new MetricsEndpoint(metrics, config.metrics.token, clock);
  const services: Services = {
    auth,
    teams,
    invitations,
    emailLinks,
    mail,
    apiKeys,
    policies,
    agents,
    accounts,
    events,
    eventStream,
    eventRetention,
    audit,
    auditRetention,
    activityRetention,
    stepContentRetention,
    responseRetention,
    taskEventRetention,
    sealer,
    hasher,
    clock,
    ctx,
    providers,
    secrets,
    skills,
    files,
    runs,
    approvals,
    gateway,
    models,
    capsules,
    snapshots,
    environments,
    environmentBuilder,
    jobs,
    hosts,
    tasks,
    taskRunner,
    memories,
    queues,
    credits,
    agentPresence,
    workspaces,
    webhooks,
    webhookDeliveries,
    webhookDispatcher,
    channels,
    channelDeliveries,
    notifications,
    playbooks,
    playbookScheduler,
    alertRules,
    alertEvaluator,
    workItems,
    workItemThreads,
    activity,
    billing,
    autoTopUp,
    metrics: metricsEndpoint,
  };

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // true: the peer is the one proxy, and the client is the last address it appended to
    // X-Forwarded-For. Fastify's own `true` believes every hop, so the first address, which
    // the client writes itself, would be the client's own choice (and so its throttles).
    trustProxy: config.trustProxy === true ? (_address: string, hop: number) => hop === 0 : config.trustProxy,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req_${ulid()}`;
    },
    forceCloseConnections: 'idle',
    // A stopping server answers in the error shape itself (http/draining.ts).
    return503OnClosing: false,
    // Starting takes the job queue's and the sandbox host's start: on a loaded machine or a slow
    // database that passes Fastify's default 10 s, and a slow start is no reason to give up.
    pluginTimeout: 60_000,
    // The router answers a broken URL or an over-long path segment before any
    // hook runs; answer those in the error shape too.
    frameworkErrors: answerFrameworkError,
    ajv: { customOptions: { strict: false } },
    schemaController: { compilersFactory: { buildSerializer: buildLazySerializer } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  registerRequestSpans(app, tracer);
  app.setValidatorCompiler(validatorCompiler);
  const dashboard = await registerDashboard(app, options.dashboardDir ?? DASHBOARD_DIR);
  registerErrorHandling(app, config.bodyLimitBytes, dashboard.fallback);
  registerDraining(app, config.shutdownGraceSec * 1000, ctx.timers);
  registerRoleGate(app, config.role);

  registerInputGuards(app);
  registerAuditHooks(
    app,
    (call) => audit.recordCall(call),
    (err, request) => request.log.warn({ err }, 'could not write a call’s audit entry'),
  );

  // The hooks every request runs (each proxied call among them) that never wait are callback
  // hooks, not async ones: an async hook costs a promise and a microtask hop per request.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // A provider key or host pointed at this server itself would have it call itself.
  app.addHook('onListen', async () => {
    const address = app.server.address();
    if (address !== null && typeof address === 'object') outbound.protectOwnPort(address.port);
  });

  const readiness: Readiness = {
    migrated: options.migrated ?? false,
    ping: () => database.ping(),
    dbKind: database.kind,
    startedAt: Date.now(),
    role: config.role,
    ...(work.sweeps ? { leads: () => playbookScheduler.leads } : {}),
  };
  app.addHook('onRequest', (request, _reply, done) => {
    if (!readiness.migrated && request.url.startsWith('/v1/')) {
      done(
        new ServiceUnavailableError(
          'not_ready',
          'the server is still starting (applying migrations); retry shortly',
        ),
      );
      return;
    }
    done();
  });

  await app.register(fastifyCookie);
  // Uploads stream through to the capsule; the service bounds their size (the capsule's disk).
  await app.register(fastifyWebsocket, { options: { maxPayload: 1024 * 1024 } });
  // The plugin would upgrade a request to any route and then close the socket, logging the URL
  // with its query (a csrf_token among them): refuse an upgrade to a route that is not a
  // WebSocket over HTTP instead, before it happens.
  const socketRoutes = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (route.websocket) socketRoutes.add(route.url);
  });
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.ws && !socketRoutes.has(request.routeOptions.url ?? '')) {
      done(new AppError(404, 'route_not_found', `there is no WebSocket at ${request.url.split('?')[0]}`));
      return;
    }
    done();
  });
  await app.register(fastifyMultipart, {
    limits: { files: 1, fields: 10, fieldSize: 8192, fileSize: 6 * 1024 ** 3 },
  });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Paddock API',
        version: VERSION,
        description:
          'Define, run, govern and record AI agents. Errors: {"error": {"code", "message", "details"}}.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'pdk_ team API key or pds_ session token' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          session: { type: 'apiKey', in: 'cookie', name: 'paddock_session' },
          hostToken: {
            type: 'apiKey',
            in: 'header',
            name: 'X-Host-Token',
            description: 'a sandbox host (pdh_)',
          },
        },
      },
    },
    transform: ({ schema, url, route }) => {
      const auth = route.config?.auth;
      const security: Array<Record<string, string[]>> = route.config?.hostToken
        ? [{ hostToken: [] }]
        : auth === undefined || auth === 'public'
          ? []
          : [{ bearer: [] }, { apiKey: [] }, { session: [] }];
      // @fastify/websocket hides its routes; Paddock describes them (GET with a 101, the frame
      // protocol in `description`) and marks them for clients and tests as `x-websocket`.
      const socket = route.websocket === true ? { hide: false, 'x-websocket': true } : {};
      return { schema: { ...schema, security, ...socket } as typeof schema, url };
    },
  });
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
  });

  registerAuth(app, {
    authenticators: new Map([
      ['pds', (token: string) => auth.authenticateSession(token)],
      ['pdk', (token: string) => apiKeys.authenticate(token)],
      ['pda', (token: string) => agents.authenticate(token)],
      // -- more token kinds (add here) --
    ]),
    csrfTokenOf: (principal, sessionToken) => auth.csrfTokenOf(principal, sessionToken),
    allowedOrigins: config.allowedOrigins,
    onApiKeyResponse: (principal, request, reply) => {
      apiKeys
        .recordUsage(principal, {
          method: request.method,
          path: request.routeOptions.url ?? request.url.split('?')[0]!,
          statusCode: reply.statusCode,
          ipAddress: request.ip ?? null,
        })
        .catch((err: unknown) => request.log.warn({ err }, 'could not record API key usage'));
    },
  });

  const cookies = { secure: config.publicUrl?.startsWith('https://') ?? false };
  registerSystemRoutes(app, readiness);
  registerAuthRoutes(app, auth, cookies, emailLinks, { schema: AgentMe, handler: (p) => agents.me(p) });
  registerTeamRoutes(app, teams, auth, cookies);
  registerInvitationRoutes(app, invitations, auth, cookies);
  registerApiKeyRoutes(app, apiKeys);
  registerAdminRoutes(app, accounts);
  registerPolicyRoutes(app, policies);
  registerAgentRoutes(app, agents);
  registerAgentPresenceRoutes(app, agentPresence);
  registerProviderRoutes(app, providers);
  registerSecretRoutes(app, secrets);
  registerSkillRoutes(app, skills);
  registerAnalyticsRoutes(app, analytics);
  registerFileRoutes(app, files, config.publicUrl);
  // -- module routes (add new modules here) --
  registerRunRoutes(app, runs);
  registerApprovalRoutes(app, approvals);
  registerGatewayRoutes(app, gateway, config.proxyBodyLimitBytes, models);
  registerResponsesRoutes(app, responses, config.proxyBodyLimitBytes);
  registerCapsuleRoutes(app, capsules);
  registerCapsuleStreamRoutes(app, capsules, ctx.timers);
  registerWorkspaceRoutes(app, workspaces, new WorkspaceFiles(workspaces, capsules), ctx.timers);
  registerSnapshotRoutes(app, snapshots);
  registerEnvironmentRoutes(app, environments);
  registerHostRoutes(app, hosts);
  registerTaskRoutes(app, tasks, ctx.timers);
  registerMemoryRoutes(app, memories);
  registerQueueRoutes(app, queues);
  registerCreditRoutes(app, credits);
  registerEventRoutes(app, eventStream, ctx.timers);
  registerAuditRoutes(app, audit);
  registerWebhookRoutes(app, webhooks);
  registerChannelRoutes(app, channels, notifications);
  registerPlaybookRoutes(app, playbooks, playbookScheduler, playbookHooks);
  registerAlertRoutes(app, alertRules);
  registerWorkItemRoutes(app, workItems, workItemThreads);
  registerActivityRoutes(app, activity);
  registerBillingRoutes(app, billing, stripeWebhooks);
  // /metrics on its own address instead, when given one (listening with the app, so a taken port stops the start).
  const metricsAt = config.metrics.listen;
  let metricsServer: MetricsServer | undefined;
  if (metricsAt)
    app.addHook('onReady', async () => {
      metricsServer = await MetricsServer.listen(metricsEndpoint, metricsAt, log);
      metricsEndpoint.ownAddress = metricsServer.address;
    });
  else registerMetricsRoute(app, metricsEndpoint);
  // Sweeps (idle runs, stale reservations) run while the app is up; on close the write-behind queue drains.
  for (const warning of localHost?.warnings ?? []) app.log.warn({ isolation: localHost?.isolation }, warning);
  // Background work that needs the schema: at once when the caller migrated first, else after start().
  let started = false;
  const start = async () => {
    if (started) return;
    started = true;
    // Each line runs on the roles whose `work` it names (docs/operations.md has the table).
    if (localHost) await registerLocalHost(db, clock, localHost);
    else await ensurePlatformTemplate(db, clock);
    if (work.sweeps) await runs.startSweeps();
    // Any role may make a model call (a gateway request, a task's, a workspace's title): its leases are renewed.
    runs.startLeaseRenewal();
    if (work.sweeps && sweepRateLimits)
      sharedRateLimits.start((err) => app.log.warn({ err }, 'rate-limit sweep failed'));
    await capsules.recover();
    await hosts.load();
    // Several servers: a host may register with, move on or leave through another one.
    if (database.kind === 'postgres') hosts.follow();
    if (work.sweeps) capsules.start();
    if (work.sweeps) hosts.start();
    if (work.sweeps) files.start();
    if (work.jobs)
      await jobs.work<{ version_id: EnvironmentVersionId }>(BUILD_QUEUE, BUILD_POLICY, (job) =>
        environmentBuilder.build(job.data.version_id, job.id, job.signal),
      );
    if (work.sweeps) environmentBuilder.start();
    await taskRunner.declare();
    if (work.jobs) await taskRunner.start();
    if (work.sweeps) workspaces.startSweeps();
    if (work.sweeps) eventRetention.start();
    if (work.sweeps) auditRetention.start();
    if (work.sweeps) activityRetention.start();
    if (work.sweeps) stepContentRetention.start();
    if (work.sweeps) responseRetention.start();
    if (work.sweeps) taskEventRetention.start();
    if (work.jobs) await mail.start();
    if (work.jobs) await webhookDeliveries.start();
    if (work.jobs) await channelDeliveries.start();
    if (work.sweeps) webhookDispatcher.start();
    if (work.sweeps) playbookScheduler.start();
    if (work.sweeps) alertEvaluator.start();
    if (work.sweeps) queues.start();
    if (work.sweeps) agentPresence.start();
  };
  if (options.migrated) app.addHook('onReady', start);
  app.addHook('preClose', async () => {
    // Jobs first: a build in hand is told to stop (and its capsule removed) before waits end early.
    environmentBuilder.close();
    taskRunner.stop();
    queues.stop();
    agentPresence.stop();
    workspaces.stopSweeps();
    eventRetention.stop();
    auditRetention.stop();
    activityRetention.stop();
    stepContentRetention.stop();
    responseRetention.stop();
    taskEventRetention.stop();
    mail.stop();
    webhookDispatcher.stop();
    await playbookScheduler.stop();
    await alertEvaluator.stop();
    eventStream.close();
    await jobs.stop();
    capsules.stopWaiting();
  });
  app.addHook('onClose', async () => {
    await hosts.stop();
    sharedRateLimits.stop();
    await capsules.shutdown();
    await runs.shutdown();
    await providers.close();
    files.close();
    await models.close();
    await upstream.close();
    await webhookDeliveries.close();
    await channelSender.close();
    await metricsServer?.close();
    stopTimingStatements();
    // Last: the spans of everything closed above are exported before the process goes.
    await tracer.shutdown();
  });

  app.get('/v1/openapi.json', { config: { auth: 'public' }, schema: { hide: true } }, async () =>
    app.swagger(),
  );

  return { app, services, readiness, start, dashboard: dashboard.served };
}

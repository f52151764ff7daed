import { sql } from 'drizzle-orm';
import { bigint, index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { CapsuleId, HostId, TeamId } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn, teams } from './identity.ts';

export const CAPSULE_STATUSES = [
  'pending',
  'starting',
  'running',
  'pausing',
  'paused',
  'resuming',
  'stopping',
  'stopped',
  'missing',
  'error',
] as const;
export type CapsuleStatus = (typeof CAPSULE_STATUSES)[number];
/** Where a capsule ends: nothing runs, nothing will again. */
export const ENDED_STATUSES: readonly CapsuleStatus[] = ['stopped', 'missing', 'error'];

/** A machine that runs capsules: the local one in `paddock serve`, or a registered `paddock host`. */
export const hosts = pgTable(
  'hosts',
  {
    id: text('id').primaryKey().$type<HostId>(),
    type: text('type', { enum: ['regular', 'byoc', 'local'] }).notNull(),
    /** BYOC hosts belong to a team; regular and local hosts serve every team. */
    teamId: text('team_id')
      .$type<TeamId>()
      .references(() => teams.id),
    status: text('status', { enum: ['pending', 'online', 'offline', 'draining', 'unreachable'] }).notNull(),
    provider: text('provider'),
    availabilityZone: text('availability_zone'),
    arch: text('arch'),
    cpuCores: integer('cpu_cores'),
    memoryMb: integer('memory_mb'),
    diskGb: integer('disk_gb'),
    /** ip:port the control plane reaches the host at (remote hosts). */
    address: text('address'),
    isolation: text('isolation', { enum: ['bwrap', 'none'] }),
    tags: jsonb('tags').$type<string[]>().notNull(),
    /** What the control plane presents to a remote host's agent API (sealed). */
    controlToken: text('control_token'),
    lastHeartbeatAt: ts('last_heartbeat_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [index('hosts_status_idx').on(t.status)],
);

export const capsules = pgTable(
  'capsules',
  {
    id: text('id').primaryKey().$type<CapsuleId>(),
    teamId: teamIdColumn(),
    hostId: text('host_id')
      .$type<HostId>()
      .references(() => hosts.id),
    status: text('status', { enum: CAPSULE_STATUSES }).notNull(),
    /** Why it is in its status, when that is not the obvious (ttl_expired, host_failure, server_restarted …). */
    statusReason: text('status_reason'),
    template: text('template').notNull(),
    vcpus: integer('vcpus').notNull(),
    memoryMb: integer('memory_mb').notNull(),
    diskSizeMb: integer('disk_size_mb').notNull(),
    /** Auto-pause after this much inactivity; 0 = never (Wrenn). */
    timeoutSec: integer('timeout_sec').notNull(),
    /** Hosts the capsule may reach through the egress proxy; null = no network. */
    networkAllow: jsonb('network_allow').$type<string[] | null>(),
    metadata: jsonb('metadata').$type<Record<string, string>>().notNull(),
    isolation: text('isolation', { enum: ['bwrap', 'none'] }),
    createdBy: text('created_by'),
    createdAt: ts('created_at').notNull(),
    startedAt: ts('started_at'),
    lastActiveAt: ts('last_active_at'),
    /** Seconds spent running (container-seconds, for billing), up to the current running period. */
    activeSeconds: bigint('active_seconds', { mode: 'number' }).notNull().default(0),
    /** When the current running period began; null when not running. */
    runningSince: ts('running_since'),
    endedAt: ts('ended_at'),
    updatedAt: ts('updated_at').notNull(),
  },
  (t) => [
    index('capsules_team_idx').on(t.teamId, t.id),
    index('capsules_host_idx').on(t.hostId, t.status),
    index('capsules_live_idx')
      .on(t.status, t.lastActiveAt)
      .where(sql`status in ('starting', 'running', 'pausing', 'paused', 'resuming', 'stopping')`),
  ],
);

/** A filesystem tree capsules start from: platform base templates and teams' snapshots. */
export const templates = pgTable(
  'templates',
  {
    id: text('id').primaryKey(),
    /** null: a platform template, visible to every team. */
    teamId: text('team_id')
      .$type<TeamId>()
      .references(() => teams.id),
    name: text('name').notNull(),
    type: text('type', { enum: ['base', 'snapshot'] }).notNull(),
    sourceCapsuleId: text('source_capsule_id').$type<CapsuleId>(),
    vcpus: integer('vcpus'),
    memoryMb: integer('memory_mb'),
    sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
    /** Where its tree lives on the host that holds it (null for minimal: an empty tree). */
    hostId: text('host_id')
      .$type<HostId>()
      .references(() => hosts.id),
    path: text('path'),
    metadata: jsonb('metadata').$type<Record<string, string>>().notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    // Names are immutable identifiers, unique per team and among platform templates.
    uniqueIndex('templates_team_name_key').on(t.teamId, t.name).where(sql`team_id is not null`),
    uniqueIndex('templates_platform_name_key').on(t.name).where(sql`team_id is null`),
  ],
);

/** Capsule-seconds per team and UTC day, for GET /v1/capsules/usage. */
export const capsuleUsage = pgTable(
  'capsule_usage',
  {
    teamId: text('team_id').$type<TeamId>().notNull(),
    day: text('day').notNull(),
    cpuSeconds: bigint('cpu_seconds', { mode: 'number' }).notNull().default(0),
    /** vcpus × seconds running. */
    vcpuSeconds: bigint('vcpu_seconds', { mode: 'number' }).notNull().default(0),
    /** memory_mb × seconds running. */
    ramMbSeconds: bigint('ram_mb_seconds', { mode: 'number' }).notNull().default(0),
  },
  (t) => [uniqueIndex('capsule_usage_key').on(t.teamId, t.day)],
);

/** What each team had live, sampled every minute: GET /v1/capsules/stats (series and 30-day peaks). */
export const capsuleSamples = pgTable(
  'capsule_samples',
  {
    teamId: text('team_id').$type<TeamId>().notNull(),
    sampledAt: ts('sampled_at').notNull(),
    running: integer('running').notNull(),
    vcpus: integer('vcpus').notNull(),
    memoryMb: integer('memory_mb').notNull(),
  },
  (t) => [
    uniqueIndex('capsule_samples_key').on(t.teamId, t.sampledAt),
    index('capsule_samples_at_idx').on(t.sampledAt),
  ],
);

/** A remote host's credentials: its one-time registration token, access tokens and refresh tokens (hashed). */
export const hostTokens = pgTable(
  'host_tokens',
  {
    id: text('id').primaryKey(),
    hostId: text('host_id')
      .$type<HostId>()
      .notNull()
      .references(() => hosts.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['registration', 'access', 'refresh'] }).notNull(),
    hash: text('hash').notNull(),
    expiresAt: ts('expires_at').notNull(),
    /** Used (registration, refresh: one use each) or revoked. */
    usedAt: ts('used_at'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [uniqueIndex('host_tokens_hash_key').on(t.hash), index('host_tokens_host_idx').on(t.hostId)],
);

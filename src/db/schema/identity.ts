import { sql } from 'drizzle-orm';
import { boolean, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';

/** A team's limits (docs/admin.md). */
export interface TeamLimits {
  /** Tasks of the team running (or awaiting approval) at once, over all its agents. */
  max_concurrent_tasks?: number;
}

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** Stored lower-cased; unique across the server. */
    email: text('email').notNull(),
    name: text('name').notNull(),
    passwordHash: text('password_hash').notNull(),
    isAdmin: boolean('is_admin').notNull().default(false),
    /** Set by a platform admin: the user's sessions and the API keys they created stop until reactivated. */
    deactivatedAt: ts('deactivated_at'),
    /**
     * Erased (GDPR): the row stays so records that name the id keep it, with
     * the email, name and password hash replaced (docs/admin.md).
     */
    deletedAt: ts('deleted_at'),
    ...timestamps(),
  },
  (t) => [uniqueIndex('users_email_key').on(t.email)],
);

export const teams = pgTable(
  'teams',
  {
    id: text('id').primaryKey().$type<TeamId>(),
    name: text('name').notNull(),
    /** Immutable; reserved forever, even after the team is deleted (Wrenn). */
    slug: text('slug').notNull(),
    /** Set by platform admins (PATCH /v1/admin/teams/{id}); a limit left out is no limit. */
    limits: jsonb('limits').$type<TeamLimits>().notNull().default({}),
    ...timestamps(),
    deletedAt: ts('deleted_at'),
  },
  (t) => [uniqueIndex('teams_slug_key').on(t.slug)],
);

/** A team-owned row's team: required, and the team must exist. */
export const teamIdColumn = () =>
  text('team_id')
    .$type<TeamId>()
    .notNull()
    .references(() => teams.id);

/** The first columns of a named row a team owns: its id (typed, e.g. AgentId), its team, its name. */
export const namedTeamRow = <RowId extends string = string>() => ({
  id: text('id').primaryKey().$type<RowId>(),
  teamId: teamIdColumn(),
  name: text('name').notNull(),
});

export const teamMembers = pgTable(
  'team_members',
  {
    teamId: teamIdColumn(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    role: text('role', { enum: ['owner', 'admin', 'member', 'viewer'] }).notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.teamId, t.userId] }),
    index('team_members_user_idx').on(t.userId),
    // One owner per team, enforced by the database.
    uniqueIndex('team_members_one_owner').on(t.teamId).where(sql`role = 'owner'`),
  ],
);

export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    /** The session's active team; null only when the user belongs to no team. */
    teamId: text('team_id')
      .$type<TeamId>()
      .references(() => teams.id),
    tokenHash: text('token_hash').notNull(),
    userAgent: text('user_agent'),
    ipAddress: text('ip_address'),
    createdAt: ts('created_at').notNull(),
    lastSeenAt: ts('last_seen_at').notNull(),
    /** Absolute end of the session; the idle window is checked against last_seen_at. */
    expiresAt: ts('expires_at').notNull(),
    revokedAt: ts('revoked_at'),
  },
  (t) => [uniqueIndex('sessions_token_hash_key').on(t.tokenHash), index('sessions_user_idx').on(t.userId)],
);

export const invitations = pgTable(
  'invitations',
  {
    id: text('id').primaryKey(),
    teamId: teamIdColumn(),
    email: text('email').notNull(),
    role: text('role', { enum: ['admin', 'member', 'viewer'] }).notNull(),
    tokenHash: text('token_hash').notNull(),
    invitedBy: text('invited_by').notNull(),
    status: text('status', { enum: ['pending', 'accepted', 'revoked'] }).notNull(),
    expiresAt: ts('expires_at').notNull(),
    acceptedAt: ts('accepted_at'),
    acceptedBy: text('accepted_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('invitations_token_hash_key').on(t.tokenHash),
    index('invitations_team_idx').on(t.teamId, t.id),
  ],
);

export const apiKeys = pgTable(
  'api_keys',
  {
    ...namedTeamRow(),
    description: text('description'),
    keyPrefix: text('key_prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    /** After a rotate: the old key's hash, valid until previous_key_expires_at. */
    previousKeyHash: text('previous_key_hash'),
    previousKeyExpiresAt: ts('previous_key_expires_at'),
    scopes: jsonb('scopes').$type<Array<'read' | 'write' | 'admin' | 'queue'>>().notNull(),
    active: boolean('active').notNull().default(true),
    expiresAt: ts('expires_at'),
    revokedAt: ts('revoked_at'),
    deletedAt: ts('deleted_at'),
    createdBy: text('created_by'),
    lastUsedAt: ts('last_used_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('api_keys_key_hash_key').on(t.keyHash),
    index('api_keys_previous_key_hash_idx').on(t.previousKeyHash),
    index('api_keys_team_idx').on(t.teamId, t.id),
  ],
);

/** Recent requests made with each API key (`GET /v1/api-keys/{id}/usage`). */
export const apiKeyUsage = pgTable(
  'api_key_usage',
  {
    id: text('id').primaryKey(),
    apiKeyId: text('api_key_id')
      .notNull()
      .references(() => apiKeys.id),
    teamId: text('team_id').$type<TeamId>().notNull(),
    method: text('method').notNull(),
    path: text('path').notNull(),
    statusCode: integer('status_code').notNull(),
    ipAddress: text('ip_address'),
    /** Which secret was used: the current one or the previous one during a rotate grace window. */
    keyVersion: text('key_version', { enum: ['current', 'previous'] }).notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('api_key_usage_key_idx').on(t.apiKeyId, t.id)],
);

/**
 * Single-use tokens sent by e-mail (password reset, magic-link sign-in):
 * only their hash is stored; used_at is set by the one statement that spends one.
 */
export const emailTokens = pgTable(
  'email_tokens',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id),
    purpose: text('purpose', { enum: ['password_reset', 'magic_link'] }).notNull(),
    tokenHash: text('token_hash').notNull(),
    expiresAt: ts('expires_at').notNull(),
    usedAt: ts('used_at'),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    uniqueIndex('email_tokens_token_hash_key').on(t.tokenHash),
    index('email_tokens_user_idx').on(t.userId),
  ],
);

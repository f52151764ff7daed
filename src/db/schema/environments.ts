import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { namedTeamRow, teamIdColumn } from './identity.ts';

/**
 * Environments (AgentContainer's containers): what a task's capsule starts
 * from. Name and description change in place; what runs is in versions.
 */
export const environments = pgTable(
  'environments',
  {
    ...namedTeamRow<Id<'env'>>(),
    description: text('description'),
    currentVersion: integer('current_version').notNull(),
    /** Forked from (an environment of the team, or a platform one). */
    forkedFrom: text('forked_from'),
    createdBy: text('created_by'),
    ...timestamps(),
    archivedAt: ts('archived_at'),
  },
  (t) => [
    uniqueIndex('environments_team_name_key').on(t.teamId, t.name).where(sql`archived_at is null`),
    index('environments_team_idx').on(t.teamId, t.id),
  ],
);

export type EnvironmentBuildStatus = 'queued' | 'building' | 'ready' | 'failed';

/** One immutable version of what an environment runs, and its build into a template. */
export const environmentVersions = pgTable(
  'environment_versions',
  {
    id: text('id').primaryKey().$type<Id<'envv'>>(),
    environmentId: text('environment_id').notNull().$type<Id<'env'>>(),
    teamId: teamIdColumn(),
    version: integer('version').notNull(),
    /** minimal, standard, or a template (snapshot) of the team. */
    base: text('base').notNull(),
    setupCommands: jsonb('setup_commands').$type<string[]>().notNull(),
    pipPackages: jsonb('pip_packages').$type<string[]>().notNull(),
    npmPackages: jsonb('npm_packages').$type<string[]>().notNull(),
    envVars: jsonb('env_vars').$type<Record<string, string>>().notNull(),
    networkAllow: jsonb('network_allow').$type<string[]>().notNull(),
    status: text('status', { enum: ['queued', 'building', 'ready', 'failed'] }).notNull(),
    /** The template the build made (ready only). */
    templateName: text('template_name'),
    buildLog: text('build_log').notNull().default(''),
    /** The job building it now: only that job (or its retry) may write the outcome. */
    buildJobId: text('build_job_id'),
    error: jsonb('error').$type<{ code: string; message: string } | null>(),
    buildStartedAt: ts('build_started_at'),
    buildFinishedAt: ts('build_finished_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('environment_versions_env_version_key').on(t.environmentId, t.version),
    index('environment_versions_status_idx').on(t.status, t.updatedAt),
  ],
);

import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { AgentId, Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { namedTeamRow, teamIdColumn } from './identity.ts';

/**
 * A team's secrets (Vonzio's): env-var-shaped names, values sealed at rest and
 * bound to their row. A task's tool processes get them as environment
 * variables; nothing else ever sees a value.
 */
export const secrets = pgTable(
  'secrets',
  {
    ...namedTeamRow<Id<'sec'>>(),
    /** The sealed value (core/crypto.ts, bound to the id). */
    sealedValue: text('sealed_value').notNull(),
    /** all: every agent of the team; agents: only those in agent_ids. */
    scope: text('scope', { enum: ['all', 'agents'] }).notNull(),
    agentIds: jsonb('agent_ids').$type<AgentId[]>().notNull().default(sql`'[]'::jsonb`),
    /** The value's version: 1 when created, one more at each new value (secret_versions holds who and when). */
    valueVersion: integer('value_version').notNull().default(1),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('secrets_team_name_key').on(t.teamId, t.name),
    index('secrets_team_idx').on(t.teamId, t.id),
  ],
);

/**
 * A secret's value history: who set each version and when. Never the value,
 * its sealed form or a hash of it (a hash of a short value can be guessed).
 * Goes with its secret.
 */
export const secretVersions = pgTable(
  'secret_versions',
  {
    secretId: text('secret_id')
      .notNull()
      .$type<Id<'sec'>>()
      .references(() => secrets.id, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    teamId: teamIdColumn(),
    /** user, api_key, agent or system (as events name actors). */
    changedByKind: text('changed_by_kind').notNull(),
    changedBy: text('changed_by'),
    changedAt: ts('changed_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.secretId, t.version] })],
);

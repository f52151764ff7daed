import { sql } from 'drizzle-orm';
import { index, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { AgentId, Id } from '../../core/ids.ts';
import { timestamps } from './columns.ts';
import { namedTeamRow } from './identity.ts';

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
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('secrets_team_name_key').on(t.teamId, t.name),
    index('secrets_team_idx').on(t.teamId, t.id),
  ],
);

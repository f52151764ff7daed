import { sql } from 'drizzle-orm';
import { customType, index, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import type { AgentId, Id } from '../../core/ids.ts';
import { timestamps } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** Postgres's text-search document; only the database reads it (search ranks by it). */
const tsvector = customType<{ data: string }>({ dataType: () => 'tsvector' });

/**
 * An agent's memories: short texts its tasks saved (memory_save) or the team
 * wrote through the API, found again by full-text search (memory_search).
 * `search_vector` is generated from the content with the English
 * configuration (stemmed, stop words dropped) and GIN-indexed.
 */
export const memories = pgTable(
  'memories',
  {
    id: text('id').primaryKey().$type<Id<'mem'>>(),
    teamId: teamIdColumn(),
    agentId: text('agent_id').notNull().$type<AgentId>(),
    content: text('content').notNull(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    /** The task whose model saved it (memory_save); null for one written through the API. */
    taskId: text('task_id').$type<Id<'task'>>(),
    createdBy: text('created_by'),
    searchVector: tsvector('search_vector')
      .notNull()
      .generatedAlwaysAs(sql`to_tsvector('english', "content")`),
    ...timestamps(),
  },
  (t) => [
    index('memories_agent_idx').on(t.teamId, t.agentId, t.id),
    index('memories_search_idx').using('gin', t.searchVector),
  ],
);

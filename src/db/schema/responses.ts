import { index, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import type { AgentId, ResponseId, RunId, StepId } from '../../core/ids.ts';
import { ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** An item of a Responses API conversation (a message, a function call or its output), as JSON. */
export type ResponseItem = Record<string, unknown>;

/**
 * A Responses API answer the gateway stored (`store` not false), so a later
 * request can name it as `previous_response_id`: Paddock resolves the id
 * itself and sends the provider the whole conversation.
 */
export const responses = pgTable(
  'responses',
  {
    id: text('id').primaryKey().$type<ResponseId>(),
    teamId: teamIdColumn(),
    agentId: text('agent_id').$type<AgentId>().notNull(),
    runId: text('run_id').$type<RunId>(),
    stepId: text('step_id').$type<StepId>(),
    model: text('model').notNull(),
    status: text('status').notNull(),
    /** The whole input: the conversation restored from previous_response_id, then the request's items. */
    input: jsonb('input').$type<ResponseItem[]>().notNull(),
    output: jsonb('output').$type<ResponseItem[]>().notNull(),
    usage: jsonb('usage').$type<Record<string, unknown> | null>(),
    instructions: text('instructions'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    /** The request's other parameters, echoed in the response object (tools, text, temperature, …). */
    params: jsonb('params').$type<Record<string, unknown>>().notNull(),
    incompleteDetails: jsonb('incomplete_details').$type<Record<string, unknown> | null>(),
    previousResponseId: text('previous_response_id').$type<ResponseId>(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [index('responses_team_agent_idx').on(t.teamId, t.agentId, t.id)],
);

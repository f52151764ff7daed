import { and, desc, eq, lt, type SQL } from 'drizzle-orm';
import type { AgentId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { findOne, insertOne } from '../../db/one-row.ts';
import { agentVersions } from '../../db/schema/index.ts';

export type AgentVersionRow = typeof agentVersions.$inferSelect;

export function insertVersion(db: DbOrTx, row: typeof agentVersions.$inferInsert): Promise<AgentVersionRow> {
  return insertOne(db, agentVersions, row);
}

/** The agent's versions, where `also` holds too. */
function versionsOf(teamId: TeamId, agentId: AgentId, also: SQL | undefined) {
  return and(eq(agentVersions.teamId, teamId), eq(agentVersions.agentId, agentId), also);
}

export function findVersion(db: DbOrTx, teamId: TeamId, agentId: AgentId, version: number) {
  return findOne(db, agentVersions, versionsOf(teamId, agentId, eq(agentVersions.version, version)));
}

/** An agent's versions, newest first; `before` is a version number. */
export async function listVersions(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  before: number | undefined,
  limit: number,
): Promise<AgentVersionRow[]> {
  return db
    .select()
    .from(agentVersions)
    .where(versionsOf(teamId, agentId, before !== undefined ? lt(agentVersions.version, before) : undefined))
    .orderBy(desc(agentVersions.version))
    .limit(limit);
}

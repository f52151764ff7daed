import { and, desc, eq, lt } from 'drizzle-orm';
import type { AgentId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { agentVersions } from '../../db/schema/index.ts';

export type AgentVersionRow = typeof agentVersions.$inferSelect;

export async function insertVersion(
  db: DbOrTx,
  row: typeof agentVersions.$inferInsert,
): Promise<AgentVersionRow> {
  const [inserted] = await db.insert(agentVersions).values(row).returning();
  return inserted!;
}

export async function findVersion(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  version: number,
): Promise<AgentVersionRow | undefined> {
  const [row] = await db
    .select()
    .from(agentVersions)
    .where(
      and(
        eq(agentVersions.teamId, teamId),
        eq(agentVersions.agentId, agentId),
        eq(agentVersions.version, version),
      ),
    );
  return row;
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
    .where(
      and(
        eq(agentVersions.teamId, teamId),
        eq(agentVersions.agentId, agentId),
        before !== undefined ? lt(agentVersions.version, before) : undefined,
      ),
    )
    .orderBy(desc(agentVersions.version))
    .limit(limit);
}

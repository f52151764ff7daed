import { and, eq } from 'drizzle-orm';
import type { AgentId, ResponseId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { responses } from '../../db/schema/index.ts';

export type StoredResponseRow = typeof responses.$inferSelect;

export async function insertResponse(db: DbOrTx, row: typeof responses.$inferInsert): Promise<void> {
  await db.insert(responses).values(row);
}

/** A stored response of this agent of this team (another team's or agent's is not found). */
export async function findResponse(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  id: ResponseId,
): Promise<StoredResponseRow | undefined> {
  const [row] = await db
    .select()
    .from(responses)
    .where(and(eq(responses.teamId, teamId), eq(responses.agentId, agentId), eq(responses.id, id)));
  return row;
}

export async function deleteResponse(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  id: ResponseId,
): Promise<boolean> {
  const deleted = await db
    .delete(responses)
    .where(and(eq(responses.teamId, teamId), eq(responses.agentId, agentId), eq(responses.id, id)))
    .returning({ id: responses.id });
  return deleted.length > 0;
}

import { and, desc, eq, isNull, like, lt, or } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';

export { isUniqueViolation } from '../../db/errors.ts';

import { agents, teams } from '../../db/schema/index.ts';

export type AgentRow = typeof agents.$inferSelect;
export type AgentPatch = Partial<Omit<AgentRow, 'id' | 'teamId' | 'createdAt'>>;

export async function insertAgent(db: DbOrTx, row: typeof agents.$inferInsert): Promise<AgentRow> {
  const [inserted] = await db.insert(agents).values(row).returning();
  return inserted!;
}

export async function findAgent(
  db: DbOrTx,
  teamId: string,
  id: string,
  lock?: 'update',
): Promise<AgentRow | undefined> {
  const q = db
    .select()
    .from(agents)
    .where(and(eq(agents.teamId, teamId), eq(agents.id, id), isNull(agents.deletedAt)));
  const [row] = lock ? await q.for(lock) : await q;
  return row;
}

export async function findAgentByName(
  db: DbOrTx,
  teamId: string,
  name: string,
  lock?: 'update',
): Promise<AgentRow | undefined> {
  const q = db
    .select()
    .from(agents)
    .where(and(eq(agents.teamId, teamId), eq(agents.name, name), isNull(agents.deletedAt)));
  const [row] = lock ? await q.for(lock) : await q;
  return row;
}

/** Live names in the team equal to `base` or of the form `base-…` (for the auto-suffix). */
export async function namesLike(db: DbOrTx, teamId: string, base: string): Promise<Set<string>> {
  const escaped = base.replace(/[\\%_]/g, (c) => `\\${c}`);
  const rows = await db
    .select({ name: agents.name })
    .from(agents)
    .where(
      and(
        eq(agents.teamId, teamId),
        isNull(agents.deletedAt),
        or(eq(agents.name, base), like(agents.name, `${escaped}-%`)),
      ),
    );
  return new Set(rows.map((r) => r.name));
}

export async function listAgents(
  db: DbOrTx,
  teamId: string,
  filter: { status?: 'active' | 'disabled'; policyId?: string },
  beforeId: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(agents)
    .where(
      and(
        eq(agents.teamId, teamId),
        isNull(agents.deletedAt),
        filter.status ? eq(agents.status, filter.status) : undefined,
        filter.policyId ? eq(agents.policyId, filter.policyId) : undefined,
        beforeId ? lt(agents.id, beforeId) : undefined,
      ),
    )
    .orderBy(desc(agents.id))
    .limit(limit);
}

export async function updateAgent(
  db: DbOrTx,
  teamId: string,
  id: string,
  patch: AgentPatch,
): Promise<AgentRow | undefined> {
  const [row] = await db
    .update(agents)
    .set(patch)
    .where(and(eq(agents.teamId, teamId), eq(agents.id, id), isNull(agents.deletedAt)))
    .returning();
  return row;
}

/** The live agent, of a live team, whose current key hashes to `hash`. */
export async function findAgentByKeyHash(db: DbOrTx, hash: string): Promise<AgentRow | undefined> {
  const [row] = await db
    .select({ agent: agents })
    .from(agents)
    .innerJoin(teams, eq(teams.id, agents.teamId))
    .where(and(eq(agents.keyHash, hash), isNull(agents.deletedAt), isNull(teams.deletedAt)))
    .limit(1);
  return row?.agent;
}

/** A live agent of a live team, by id alone (the proxy already knows the team from the key). */
export async function findLiveAgent(db: DbOrTx, id: string): Promise<AgentRow | undefined> {
  const [row] = await db
    .select({ agent: agents })
    .from(agents)
    .innerJoin(teams, eq(teams.id, agents.teamId))
    .where(and(eq(agents.id, id), isNull(agents.deletedAt), isNull(teams.deletedAt)))
    .limit(1);
  return row?.agent;
}

export async function idsUsingPolicy(db: DbOrTx, teamId: string, policyId: string): Promise<string[]> {
  const rows = await db
    .select({ id: agents.id })
    .from(agents)
    .where(and(eq(agents.teamId, teamId), eq(agents.policyId, policyId), isNull(agents.deletedAt)))
    .orderBy(agents.id);
  return rows.map((r) => r.id);
}

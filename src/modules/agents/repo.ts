import { and, eq, inArray, isNotNull, isNull, like, or, type SQL, sql } from 'drizzle-orm';
import { type AgentId, isId, type ProviderKeyId, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { escapeLike, liveInTeam, rowsLocked } from '../../db/query-parts.ts';
import { pageInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';
import { SILENT_INTERVALS } from './schemas.ts';

export { isUniqueViolation } from '../../db/errors.ts';

import { agents, teams } from '../../db/schema/index.ts';

export type AgentRow = typeof agents.$inferSelect;
export type Bindings = AgentRow['providerKeys'];
export type Binding = Bindings[string];
/** A request's input whose provider_keys were checked, and so are typed (the service checks them). */
export type WithBindings<T> = Omit<T, 'provider_keys'> & { provider_keys?: Bindings };
export type AgentPatch = Partial<Omit<AgentRow, 'id' | 'teamId' | 'createdAt'>>;

export function insertAgent(db: DbOrTx, row: typeof agents.$inferInsert): Promise<AgentRow> {
  return insertOne(db, agents, row);
}

export async function findAgent(
  db: DbOrTx,
  teamId: TeamId,
  id: AgentId,
  lock?: 'update',
): Promise<AgentRow | undefined> {
  const q = db
    .select()
    .from(agents)
    .where(liveInTeam(agents, teamId, eq(agents.id, id)));
  const [row] = await rowsLocked(q, lock);
  return row;
}

export async function findAgentByName(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
  lock?: 'update',
): Promise<AgentRow | undefined> {
  const q = db
    .select()
    .from(agents)
    .where(liveInTeam(agents, teamId, eq(agents.name, name)));
  const [row] = await rowsLocked(q, lock);
  return row;
}

/** Live names in the team equal to `base` or of the form `base-…` (for the auto-suffix). */
export async function namesLike(db: DbOrTx, teamId: TeamId, base: string): Promise<Set<string>> {
  const rows = await db
    .select({ name: agents.name })
    .from(agents)
    .where(liveInTeam(agents, teamId, or(eq(agents.name, base), like(agents.name, `${escapeLike(base)}-%`))));
  return new Set(rows.map((r) => r.name));
}

/** A presence filter of the agent list. */
export type PresenceFilter = 'idle' | 'working' | 'blocked' | 'offline' | 'paused' | 'online';

/** The agents whose presence at `now` is `presence` (as views.ts's presenceView says it). */
function presenceIs(presence: PresenceFilter, now: Date): SQL {
  const silentSince = sql`${now.toISOString()}::timestamptz - make_interval(secs => ${agents.heartbeatIntervalSec} * ${SILENT_INTERVALS})`;
  if (presence === 'paused') return isNotNull(agents.pausedAt);
  const notPaused = isNull(agents.pausedAt);
  if (presence === 'offline')
    return and(
      notPaused,
      or(
        and(isNull(agents.lastHeartbeatAt), eq(agents.hosted, false)),
        sql`${agents.lastHeartbeatAt} <= ${silentSince}`,
      ),
    )!;
  const online = and(notPaused, sql`${agents.lastHeartbeatAt} > ${silentSince}`)!;
  return presence === 'online' ? online : and(online, eq(agents.presenceStatus, presence))!;
}

export async function listAgents(
  db: DbOrTx,
  teamId: TeamId,
  filter: {
    status?: 'active' | 'disabled';
    policyId?: string;
    presence?: PresenceFilter;
    now?: Date;
  },
  beforeId: string | undefined,
  limit: number,
) {
  return pageInTeam(
    db,
    agents,
    teamId,
    beforeId,
    limit,
    isNull(agents.deletedAt),
    filter.status ? eq(agents.status, filter.status) : undefined,
    filter.policyId ? eq(agents.policyId, filter.policyId) : undefined,
    filter.presence && filter.now ? presenceIs(filter.presence, filter.now) : undefined,
  );
}

export function updateAgent(db: DbOrTx, teamId: TeamId, id: AgentId, patch: AgentPatch) {
  return updateOne(db, agents, liveInTeam(agents, teamId, eq(agents.id, id)), patch);
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

/**
 * System-only: a live agent of a live team by id alone, for the proxy, whose
 * caller was authenticated by that agent's own key (so the id is no user input
 * that could name another team's agent). Never call it with an id from a request.
 */
export async function systemFindLiveAgent(db: DbOrTx, id: AgentId): Promise<AgentRow | undefined> {
  const [row] = await db
    .select({ agent: agents })
    .from(agents)
    .innerJoin(teams, eq(teams.id, agents.teamId))
    .where(and(eq(agents.id, id), isNull(agents.deletedAt), isNull(teams.deletedAt)))
    .limit(1);
  return row?.agent;
}

export async function idsUsingPolicy(db: DbOrTx, teamId: TeamId, policyId: string): Promise<string[]> {
  const rows = await db
    .select({ id: agents.id })
    .from(agents)
    .where(liveInTeam(agents, teamId, eq(agents.policyId, policyId)))
    .orderBy(agents.id);
  return rows.map((r) => r.id);
}

/** Live agents of the team whose current definition lists the skill. */
export async function idsListingSkill(db: DbOrTx, teamId: TeamId, skillId: string): Promise<string[]> {
  const rows = await db
    .select({ id: agents.id })
    .from(agents)
    .where(
      liveInTeam(
        agents,
        teamId,
        sql`${agents.definition} -> 'skill_ids' @> ${JSON.stringify([skillId])}::jsonb`,
      ),
    )
    .orderBy(agents.id);
  return rows.map((r) => r.id);
}

/** Which of `ids` are live agents of the team. */
export async function liveAgentIdsAmong(db: DbOrTx, teamId: TeamId, ids: string[]): Promise<Set<string>> {
  const agentIds = ids.filter((id): id is AgentId => isId(id, 'agt'));
  if (agentIds.length === 0) return new Set();
  const rows = await db
    .select({ id: agents.id })
    .from(agents)
    .where(liveInTeam(agents, teamId, inArray(agents.id, agentIds)));
  return new Set(rows.map((r) => r.id));
}

// -- agents bound to a provider key (for the providers module, through the service) --

/** JSON text of a key id as it appears inside agents.provider_keys. */
function jsonText(keyId: string): string {
  return JSON.stringify(keyId);
}

/**
 * Live agents of the team whose provider_keys name the key, in either form.
 * The text match narrows the rows; `bindingsUse` decides exactly.
 */
export async function agentsBoundToKey(db: DbOrTx, teamId: TeamId, keyId: string, lock?: 'update') {
  const q = db
    .select({ id: agents.id, name: agents.name, providerKeys: agents.providerKeys })
    .from(agents)
    .where(
      liveInTeam(
        agents,
        teamId,
        sql`${agents.providerKeys}::text like ${`%${escapeLike(jsonText(keyId))}%`}`,
      ),
    )
    .orderBy(agents.id);
  const rows = await rowsLocked(q, lock);
  return rows.filter((r) => bindingsUse(r.providerKeys, keyId).length > 0);
}

/** The providers under which `bindings` names the key. */
export function bindingsUse(bindings: Bindings, keyId: string): string[] {
  const providers: string[] = [];
  for (const [provider, b] of Object.entries(bindings ?? {})) {
    if (typeof b === 'string' ? b === keyId : Array.isArray(b) && b.some((k) => k.key_id === keyId))
      providers.push(provider);
  }
  return providers;
}

/**
 * Every key id the bindings name, each once: by provider name (jsonb keeps no
 * key order), then in the order of a provider's list.
 */
export function boundKeyIds(bindings: Bindings): ProviderKeyId[] {
  const ids = Object.entries(bindings ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .flatMap(([, b]) => (typeof b === 'string' ? [b] : b.map((k) => k.key_id)));
  return [...new Set(ids)];
}

export async function setAgentBindings(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  bindings: Bindings,
  at: Date,
): Promise<void> {
  await db
    .update(agents)
    .set({ providerKeys: bindings, updatedAt: at })
    .where(and(eq(agents.teamId, teamId), eq(agents.id, agentId)));
}

import { and, eq, isNotNull, isNull, sql } from 'drizzle-orm';
import type { AgentId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { liveInTeam, rowsLocked } from '../../db/query-parts.ts';
import { agents } from '../../db/schema/index.ts';
import { HEARTBEAT_INTERVAL, SILENT_INTERVALS } from './schemas.ts';

// Agents' presence: heartbeats, pause and the offline sweep. SQL only.

const presenceColumns = {
  id: agents.id,
  teamId: agents.teamId,
  name: agents.name,
  hosted: agents.hosted,
  heartbeatIntervalSec: agents.heartbeatIntervalSec,
  presenceStatus: agents.presenceStatus,
  currentJob: agents.currentJob,
  lastHeartbeatAt: agents.lastHeartbeatAt,
  offlineAt: agents.offlineAt,
  pausedAt: agents.pausedAt,
};

export type PresenceRow = Pick<typeof agents.$inferSelect, keyof typeof presenceColumns>;
export type ReportedStatus = NonNullable<PresenceRow['presenceStatus']>;
export interface Beat {
  status: ReportedStatus;
  currentJob: string | null;
  at: Date;
}

function beatColumns(beat: Beat) {
  return { presenceStatus: beat.status, currentJob: beat.currentJob, lastHeartbeatAt: beat.at };
}

/**
 * A heartbeat of an agent that is online (it beat before and the sweep has
 * not marked it offline), in one statement; undefined otherwise — not the
 * team's live agent, its first heartbeat, or its first since it went offline
 * (those are changes of presence: the caller records them in a transaction).
 * A sweep marking the agent this instant either sees this heartbeat (and
 * leaves it) or wins, and then this statement changes nothing.
 */
export async function beatWhileOnline(
  db: DbOrTx,
  teamId: TeamId,
  id: AgentId,
  beat: Beat,
): Promise<PresenceRow | undefined> {
  const [row] = await db
    .update(agents)
    .set(beatColumns(beat))
    .where(
      liveInTeam(
        agents,
        teamId,
        eq(agents.id, id),
        isNull(agents.offlineAt),
        isNotNull(agents.lastHeartbeatAt),
      ),
    )
    .returning(presenceColumns);
  return row;
}

/** The agent's presence, locked for the rest of the transaction when asked. */
export async function findPresence(
  db: DbOrTx,
  teamId: TeamId,
  id: AgentId,
  lock?: 'update',
): Promise<PresenceRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select(presenceColumns)
      .from(agents)
      .where(liveInTeam(agents, teamId, eq(agents.id, id))),
    lock,
  );
  return row;
}

/** Any heartbeat: the agent is online (offline_at cleared). */
export async function beatAny(db: DbOrTx, teamId: TeamId, id: AgentId, beat: Beat): Promise<PresenceRow> {
  const [row] = await db
    .update(agents)
    .set({ ...beatColumns(beat), offlineAt: null })
    .where(liveInTeam(agents, teamId, eq(agents.id, id)))
    .returning(presenceColumns);
  return row!;
}

/** The team's live agents that are paused. */
export async function pausedAgentIds(db: DbOrTx, teamId: TeamId): Promise<AgentId[]> {
  const rows = await db
    .select({ id: agents.id })
    .from(agents)
    .where(liveInTeam(agents, teamId, isNotNull(agents.pausedAt)))
    .orderBy(agents.id);
  return rows.map((r) => r.id);
}

/**
 * System-only (the sweep, for every team): up to `limit` live agents that
 * beat, are not marked offline yet and have been silent for SILENT_INTERVALS
 * of their interval at `now`, marked offline. SKIP LOCKED passes over an
 * agent whose heartbeat is being written; a heartbeat committed meanwhile
 * is seen when the row is locked, and the agent is left online.
 */
export async function systemMarkOffline(db: DbOrTx, now: Date, limit: number): Promise<PresenceRow[]> {
  const at = now.toISOString();
  // The first bound (the shortest interval's) lets the partial index narrow the scan.
  const minSilentSec = HEARTBEAT_INTERVAL.min * SILENT_INTERVALS;
  const silent = db.$with('silent').as(
    db
      .select({ id: agents.id })
      .from(agents)
      .where(
        and(
          isNull(agents.offlineAt),
          isNotNull(agents.lastHeartbeatAt),
          isNull(agents.deletedAt),
          sql`${agents.lastHeartbeatAt} <= ${at}::timestamptz - make_interval(secs => ${minSilentSec})`,
          sql`${agents.lastHeartbeatAt} <= ${at}::timestamptz - make_interval(secs => ${agents.heartbeatIntervalSec} * ${SILENT_INTERVALS})`,
        ),
      )
      .orderBy(agents.lastHeartbeatAt)
      .limit(limit)
      .for('update', { skipLocked: true }),
  );
  return db
    .with(silent)
    .update(agents)
    .set({ offlineAt: now })
    .where(sql`${agents.id} in (select id from ${silent})`)
    .returning(presenceColumns);
}

import { and, desc, eq, inArray, isNull, or, type SQL, sql, type WithSubquery } from 'drizzle-orm';
import type { CapsuleId, HostId, TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { preparedPerDb } from '../../db/prepared.ts';
import { cachedReads } from '../../db/read-cache.ts';
import {
  CAPSULE_STATUSES,
  type CapsuleStatus,
  capsules,
  capsuleUsage,
  ENDED_STATUSES,
  hosts,
  templates,
} from '../../db/schema/index.ts';

export type CapsuleRow = typeof capsules.$inferSelect;
export type HostRow = typeof hosts.$inferSelect;
export type TemplateRow = typeof templates.$inferSelect;

/** Statuses in which a capsule still holds (or is getting, or giving back) a place on a host. */
export const LIVE_STATUSES: CapsuleStatus[] = CAPSULE_STATUSES.filter((s) => !ENDED_STATUSES.includes(s));

/** A new capsule, with the events of its start written by the same statement (EventsService.alongside). */
export function insertCapsule(
  db: DbOrTx,
  row: typeof capsules.$inferInsert,
  recorded: WithSubquery[],
): Promise<CapsuleRow> {
  return insertOne(db, capsules, row, recorded);
}

const capsuleOfTeam = preparedPerDb((db) =>
  db
    .select()
    .from(capsules)
    .where(and(eq(capsules.teamId, sql.placeholder('teamId')), eq(capsules.id, sql.placeholder('id'))))
    .prepare('sandboxes_capsule_of_team'),
);

/** A capsule of the team (each request about one capsule reads it: a statement built once). */
export async function findCapsule(db: Db, teamId: TeamId, id: CapsuleId): Promise<CapsuleRow | undefined> {
  const [row] = await capsuleOfTeam(db).execute({ teamId, id });
  return row;
}

/**
 * System-only: a capsule whatever its team, for the state machine, whose ids
 * come from rows already read within a team or from a host's own report;
 * never with an id a caller typed. The row stays locked until the transaction
 * ends, so the status read cannot change before the same transaction moves it
 * on (a delete racing a start's move to running would otherwise find the row
 * moved under it and do nothing, leaving the capsule running).
 */
export async function lockCapsule(tx: DbOrTx, id: CapsuleId): Promise<CapsuleRow | undefined> {
  const [row] = await tx.select().from(capsules).where(eq(capsules.id, id)).for('update');
  return row;
}

export async function listCapsules(
  db: DbOrTx,
  teamId: TeamId,
  q: { status?: CapsuleStatus; before?: string; rows: number },
): Promise<CapsuleRow[]> {
  const where: SQL[] = [eq(capsules.teamId, teamId)];
  if (q.status) where.push(eq(capsules.status, q.status));
  // A cursor is any id string: compared as text, it need not be a capsule's.
  if (q.before) where.push(sql`${capsules.id} < ${q.before}`);
  return db
    .select()
    .from(capsules)
    .where(and(...where))
    .orderBy(desc(capsules.id))
    .limit(q.rows);
}

/**
 * Moves a capsule from one of `from` to `to` in one statement, or not at all
 * (another request moved it first): the state machine's guard.
 */
export async function transition(
  db: DbOrTx,
  id: CapsuleId,
  from: CapsuleStatus[],
  to: CapsuleStatus,
  patch: Partial<Omit<typeof capsules.$inferInsert, 'startedAt'>>,
  /** Sets started_at to this unless the capsule started before (a resume keeps its first start). */
  firstStartAt?: Date,
): Promise<CapsuleRow | undefined> {
  const [row] = await db
    .update(capsules)
    .set({
      ...patch,
      status: to,
      ...(firstStartAt
        ? { startedAt: sql`coalesce(${capsules.startedAt}, ${firstStartAt.toISOString()}::timestamptz)` }
        : {}),
    })
    .where(and(eq(capsules.id, id), inArray(capsules.status, from)))
    .returning();
  return row;
}

export async function touch(db: DbOrTx, id: CapsuleId, at: Date): Promise<void> {
  await db
    .update(capsules)
    .set({ lastActiveAt: at })
    .where(and(eq(capsules.id, id), eq(capsules.status, 'running')));
}

/** Running capsules with a timeout whose last activity is older than it (the auto-pause sweep). */
export async function idleCapsules(db: DbOrTx, hostIds: HostId[], now: Date): Promise<CapsuleRow[]> {
  if (hostIds.length === 0) return [];
  return db
    .select()
    .from(capsules)
    .where(
      and(
        eq(capsules.status, 'running'),
        inArray(capsules.hostId, hostIds),
        sql`${capsules.timeoutSec} > 0`,
        sql`coalesce(${capsules.lastActiveAt}, ${capsules.startedAt}, ${capsules.createdAt}) + make_interval(secs => ${capsules.timeoutSec}) < ${now.toISOString()}::timestamptz`,
      ),
    );
}

export async function liveCapsulesOnHost(db: DbOrTx, hostId: HostId): Promise<CapsuleRow[]> {
  return db
    .select()
    .from(capsules)
    .where(and(eq(capsules.hostId, hostId), inArray(capsules.status, LIVE_STATUSES)));
}

export async function countLiveByHost(db: DbOrTx): Promise<Map<HostId, number>> {
  const rows = await db
    .select({ hostId: capsules.hostId, n: sql<string>`count(*)` })
    .from(capsules)
    .where(inArray(capsules.status, LIVE_STATUSES))
    .groupBy(capsules.hostId);
  return new Map(rows.flatMap((r) => (r.hostId ? [[r.hostId, Number(r.n)]] : [])));
}

// -- hosts ------------------------------------------------------------------

export async function upsertLocalHost(db: DbOrTx, row: typeof hosts.$inferInsert): Promise<HostRow> {
  const [out] = await db
    .insert(hosts)
    .values(row)
    .onConflictDoUpdate({
      target: hosts.id,
      set: {
        status: row.status,
        isolation: row.isolation,
        cpuCores: row.cpuCores,
        memoryMb: row.memoryMb,
        arch: row.arch,
        lastHeartbeatAt: row.lastHeartbeatAt,
        updatedAt: row.updatedAt,
      },
    })
    .returning();
  return out!;
}

const onlineHostsOf = preparedPerDb((db) =>
  db
    .select()
    .from(hosts)
    .where(
      and(eq(hosts.status, 'online'), or(isNull(hosts.teamId), eq(hosts.teamId, sql.placeholder('teamId')))),
    )
    .prepare('sandboxes_online_hosts'),
);

const hostReads = cachedReads<TeamId, HostRow[]>(['hosts']);

/**
 * The online hosts a team may place capsules on. Each create reads them: a
 * statement built once, and on the embedded database not sent again until
 * the hosts table changes (a heartbeat, a drain).
 */
export async function onlineHosts(db: Db, teamId: TeamId): Promise<readonly HostRow[]> {
  return (await hostReads(db, teamId, () => onlineHostsOf(db).execute({ teamId }))) ?? [];
}

// -- templates --------------------------------------------------------------

/** A template the team may start from: its own snapshot or a platform template. */
export async function findTemplate(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
): Promise<TemplateRow | undefined> {
  const rows = await db
    .select()
    .from(templates)
    .where(and(eq(templates.name, name), or(eq(templates.teamId, teamId), isNull(templates.teamId))));
  // The team's own wins over a platform template of the same name.
  return rows.find((r) => r.teamId === teamId) ?? rows[0];
}

export async function insertTemplate(db: DbOrTx, row: typeof templates.$inferInsert): Promise<TemplateRow> {
  const [inserted] = await db.insert(templates).values(row).returning();
  return inserted!;
}

export async function listTemplates(
  db: DbOrTx,
  teamId: TeamId,
  type?: 'base' | 'snapshot',
): Promise<TemplateRow[]> {
  const where: SQL[] = [or(eq(templates.teamId, teamId), isNull(templates.teamId))!];
  if (type) where.push(eq(templates.type, type));
  return db
    .select()
    .from(templates)
    .where(and(...where))
    .orderBy(templates.name);
}

export async function deleteTeamTemplate(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
): Promise<TemplateRow | undefined> {
  const [row] = await db
    .delete(templates)
    .where(and(eq(templates.teamId, teamId), eq(templates.name, name)))
    .returning();
  return row;
}

export async function listPlatformTemplates(db: DbOrTx): Promise<TemplateRow[]> {
  return db.select().from(templates).where(isNull(templates.teamId));
}

export async function ensurePlatformTemplate(db: DbOrTx, row: typeof templates.$inferInsert): Promise<void> {
  await db.insert(templates).values(row).onConflictDoNothing();
}

// -- usage --------------------------------------------------------------------

/** Adds a running period's seconds to the team's day rows. */
export async function addUsage(
  db: DbOrTx,
  teamId: TeamId,
  days: Array<{ day: string; seconds: number }>,
  vcpus: number,
  memoryMb: number,
): Promise<void> {
  for (const d of days) {
    if (d.seconds <= 0) continue;
    await db
      .insert(capsuleUsage)
      .values({ teamId, day: d.day, vcpuSeconds: d.seconds * vcpus, ramMbSeconds: d.seconds * memoryMb })
      .onConflictDoUpdate({
        target: [capsuleUsage.teamId, capsuleUsage.day],
        set: {
          vcpuSeconds: sql`${capsuleUsage.vcpuSeconds} + ${d.seconds * vcpus}`,
          ramMbSeconds: sql`${capsuleUsage.ramMbSeconds} + ${d.seconds * memoryMb}`,
        },
      });
  }
}

export async function usageBetween(db: DbOrTx, teamId: TeamId, from: string, to: string) {
  return db
    .select()
    .from(capsuleUsage)
    .where(and(eq(capsuleUsage.teamId, teamId), sql`${capsuleUsage.day} between ${from} and ${to}`))
    .orderBy(capsuleUsage.day);
}

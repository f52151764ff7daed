import { and, eq, isNull, lt, ne, or, sql } from 'drizzle-orm';
import type { HostId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { capsules, hosts, hostTokens } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';
import type { HostRow } from './repo.ts';

// Hosts and their tokens. Hosts belong to the platform (regular, local) or
// to one team (BYOC); who may see which is the service's rule (admins see
// every host), so lookups by id here are system-only and named so.

export type HostTokenRow = typeof hostTokens.$inferSelect;
export type HostTokenKind = HostTokenRow['kind'];

export async function insertHost(db: DbOrTx, row: typeof hosts.$inferInsert): Promise<HostRow> {
  const [inserted] = await db.insert(hosts).values(row).returning();
  return inserted!;
}

/** System-only: a host whatever its team (the service decides who may see it). */
export async function findHostAnyTeam(db: DbOrTx, id: HostId): Promise<HostRow | undefined> {
  const [row] = await db.select().from(hosts).where(eq(hosts.id, id));
  return row;
}

/** Every host (platform admins), or one team's BYOC hosts. */
export async function listHosts(db: DbOrTx, byocOfTeam: TeamId | null): Promise<HostRow[]> {
  const where = byocOfTeam === null ? undefined : and(eq(hosts.type, 'byoc'), eq(hosts.teamId, byocOfTeam));
  return db.select().from(hosts).where(where).orderBy(hosts.createdAt);
}

/** System-only: the registered remote hosts (at start, to reach their capsules again). */
export async function registeredRemoteHosts(db: DbOrTx): Promise<HostRow[]> {
  return db
    .select()
    .from(hosts)
    .where(and(ne(hosts.type, 'local'), ne(hosts.status, 'pending')));
}

export async function updateHost(
  db: DbOrTx,
  id: HostId,
  patch: Partial<typeof hosts.$inferInsert>,
): Promise<HostRow | undefined> {
  return updateOne(db, hosts, eq(hosts.id, id), patch);
}

/**
 * A heartbeat: the status is decided in the statement, so a drain or an
 * activate that lands meanwhile is not undone.
 */
export async function recordHeartbeat(
  db: DbOrTx,
  id: HostId,
  at: Date,
  report: { stopping: boolean; address?: string },
): Promise<HostRow | undefined> {
  const status = report.stopping
    ? sql`'offline'`
    : sql`case when ${hosts.status} = 'draining' then 'draining' else 'online' end`;
  return updateHost(db, id, {
    status: status as unknown as HostRow['status'],
    lastHeartbeatAt: at,
    updatedAt: at,
    ...(report.address ? { address: report.address } : {}),
  });
}

/** Hosts whose last heartbeat is older than `cutoff`: unreachable now, in one statement. */
export async function markSilentHostsUnreachable(db: DbOrTx, cutoff: Date, at: Date): Promise<HostRow[]> {
  return db
    .update(hosts)
    .set({ status: 'unreachable', updatedAt: at })
    .where(
      and(
        ne(hosts.type, 'local'),
        or(eq(hosts.status, 'online'), eq(hosts.status, 'draining')),
        lt(hosts.lastHeartbeatAt, cutoff),
      ),
    )
    .returning();
}

/** Deletes a host; its capsules' records stay, without a host. */
export async function deleteHost(db: DbOrTx, id: HostId): Promise<void> {
  await db.update(capsules).set({ hostId: null }).where(eq(capsules.hostId, id));
  await db.delete(hosts).where(eq(hosts.id, id));
}

// -- tokens -------------------------------------------------------------------

export async function insertHostToken(db: DbOrTx, row: typeof hostTokens.$inferInsert): Promise<void> {
  await db.insert(hostTokens).values(row);
}

/** Marks the host's unused registration tokens used (a new one replaces them). */
export async function retireRegistrationTokens(db: DbOrTx, hostId: HostId, at: Date): Promise<void> {
  await db
    .update(hostTokens)
    .set({ usedAt: at })
    .where(
      and(eq(hostTokens.hostId, hostId), eq(hostTokens.kind, 'registration'), isNull(hostTokens.usedAt)),
    );
}

/** Uses a one-time token up, in one statement (two registrations with one token: one wins). */
export async function useToken(
  db: DbOrTx,
  hash: string,
  kind: HostTokenKind,
  at: Date,
): Promise<HostTokenRow | undefined> {
  const [row] = await db
    .update(hostTokens)
    .set({ usedAt: at })
    .where(and(eq(hostTokens.hash, hash), eq(hostTokens.kind, kind), isNull(hostTokens.usedAt)))
    .returning();
  return row;
}

/** The host an unused registration token is for, without using it up. */
export async function hostOfUnusedRegistration(db: DbOrTx, hash: string): Promise<HostRow | undefined> {
  const [row] = await db
    .select({ host: hosts })
    .from(hostTokens)
    .innerJoin(hosts, eq(hosts.id, hostTokens.hostId))
    .where(and(eq(hostTokens.hash, hash), eq(hostTokens.kind, 'registration'), isNull(hostTokens.usedAt)));
  return row?.host;
}

export async function findAccessToken(db: DbOrTx, hash: string): Promise<HostTokenRow | undefined> {
  const [row] = await db
    .select()
    .from(hostTokens)
    .where(and(eq(hostTokens.hash, hash), eq(hostTokens.kind, 'access')));
  return row;
}

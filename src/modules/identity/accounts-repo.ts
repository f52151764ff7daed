import { and, count, desc, eq, ilike, isNotNull, isNull, or, type SQL, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor, escapeLike } from '../../db/query-parts.ts';
import type { TeamLimits } from '../../db/schema/identity.ts';
import { emailTokens, invitations, sessions, teamMembers, teams, users } from '../../db/schema/index.ts';
import type { TeamRow, UserRow } from './repo.ts';

// Accounts as platform admins see them (every team's), and what an erasure
// deletes: SQL only.

export type AccountStatus = 'active' | 'deactivated' | 'deleted';

/**
 * Serialises changes to who is a platform admin (grant, revoke, deactivate,
 * delete) until the transaction ends, so two of them cannot both see
 * another active admin and leave none.
 */
export async function lockPlatformAdmins(tx: DbOrTx): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(727003)`);
}

const activeUser = and(isNull(users.deactivatedAt), isNull(users.deletedAt));

export async function countActiveAdmins(db: DbOrTx): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(users)
    .where(and(eq(users.isAdmin, true), activeUser));
  return row?.n ?? 0;
}

export interface UserFilter {
  /** Part of the e-mail address or the name, any case. */
  q?: string | undefined;
  status?: AccountStatus | undefined;
  admin?: boolean | undefined;
}

function statusIs(status: AccountStatus | undefined): SQL | undefined {
  if (status === 'active') return activeUser;
  if (status === 'deactivated') return and(isNotNull(users.deactivatedAt), isNull(users.deletedAt));
  if (status === 'deleted') return isNotNull(users.deletedAt);
  return undefined;
}

/** Every account of the server, newest first. */
export function listUsers(db: DbOrTx, filter: UserFilter, beforeId: string | undefined, limit: number) {
  const pattern = filter.q !== undefined ? `%${escapeLike(filter.q)}%` : undefined;
  return db
    .select()
    .from(users)
    .where(
      and(
        pattern ? or(ilike(users.email, pattern), ilike(users.name, pattern)) : undefined,
        statusIs(filter.status),
        filter.admin !== undefined ? eq(users.isAdmin, filter.admin) : undefined,
        beforeCursor(users.id, beforeId),
      ),
    )
    .orderBy(desc(users.id))
    .limit(limit);
}

/** The user's memberships of live teams, oldest first. */
export function userMemberships(db: DbOrTx, userId: string) {
  return db
    .select({ team: teams, role: teamMembers.role, joinedAt: teamMembers.createdAt })
    .from(teamMembers)
    .innerJoin(teams, eq(teams.id, teamMembers.teamId))
    .where(and(eq(teamMembers.userId, userId), isNull(teams.deletedAt)))
    .orderBy(teamMembers.createdAt, teams.id);
}

export async function updateAccount(
  db: DbOrTx,
  id: string,
  patch: Partial<
    Pick<UserRow, 'isAdmin' | 'deactivatedAt' | 'deletedAt' | 'email' | 'name' | 'passwordHash' | 'updatedAt'>
  >,
): Promise<UserRow | undefined> {
  const [row] = await db.update(users).set(patch).where(eq(users.id, id)).returning();
  return row;
}

/** Ends every session of the user at once (a deactivation). */
export async function revokeAllSessions(db: DbOrTx, userId: string, at: Date): Promise<void> {
  await db
    .update(sessions)
    .set({ revokedAt: at })
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)));
}

const memberCount = sql<number>`(select count(*)::int from ${teamMembers} where ${teamMembers.teamId} = ${teams.id})`;

/** The live teams the user owns, with how many members each has, locked until the transaction ends. */
export function ownedTeamsLocked(tx: DbOrTx, userId: string) {
  return tx
    .select({ id: teams.id, members: memberCount })
    .from(teams)
    .innerJoin(teamMembers, and(eq(teamMembers.teamId, teams.id), eq(teamMembers.userId, userId)))
    .where(and(eq(teamMembers.role, 'owner'), isNull(teams.deletedAt)))
    .orderBy(teams.id)
    .for('update', { of: teams });
}

/** An erasure's deletions: the user's sessions (with their addresses), e-mailed tokens and memberships. */
export async function deletePersonalRows(tx: DbOrTx, userId: string): Promise<void> {
  await tx.delete(sessions).where(eq(sessions.userId, userId));
  await tx.delete(emailTokens).where(eq(emailTokens.userId, userId));
  await tx.delete(teamMembers).where(eq(teamMembers.userId, userId));
}

/**
 * An erasure's invitations: those to the user's address take the
 * placeholder (and pending ones end); pending ones the user sent end.
 */
export async function settleInvitations(
  tx: DbOrTx,
  userId: string,
  email: string,
  placeholder: string,
  at: Date,
): Promise<void> {
  await tx
    .update(invitations)
    .set({
      email: placeholder,
      status: sql`case when ${invitations.status} = 'pending' then 'revoked' else ${invitations.status} end`,
      updatedAt: at,
    })
    .where(eq(invitations.email, email));
  await tx
    .update(invitations)
    .set({ status: 'revoked', updatedAt: at })
    .where(and(eq(invitations.invitedBy, userId), eq(invitations.status, 'pending')));
}

/** Soft-deletes the teams (as DELETE /v1/teams/{id}) and drops their names, often the user's own. */
export async function deleteTeamsErased(tx: DbOrTx, ids: TeamId[], name: string, at: Date): Promise<void> {
  for (const id of ids) {
    await tx.update(teams).set({ name, deletedAt: at, updatedAt: at }).where(eq(teams.id, id));
  }
}

const ownership = alias(teamMembers, 'ownership');
const owner = alias(users, 'owner');

export interface AdminTeamRow {
  team: TeamRow;
  members: number;
  owner: { id: string; email: string; name: string } | null;
}

/** Teams with their member counts and owners (a team has one, by a unique index). */
function adminTeams(db: DbOrTx) {
  return db
    .select({
      team: teams,
      members: memberCount,
      owner: { id: owner.id, email: owner.email, name: owner.name },
    })
    .from(teams)
    .leftJoin(ownership, and(eq(ownership.teamId, teams.id), eq(ownership.role, 'owner')))
    .leftJoin(owner, eq(owner.id, ownership.userId));
}

/** Every live team, newest first; `q`: part of the name or slug, any case. */
export function listTeams(
  db: DbOrTx,
  q: string | undefined,
  beforeId: string | undefined,
  limit: number,
): Promise<AdminTeamRow[]> {
  const pattern = q !== undefined ? `%${escapeLike(q)}%` : undefined;
  return adminTeams(db)
    .where(
      and(
        isNull(teams.deletedAt),
        pattern ? or(ilike(teams.name, pattern), ilike(teams.slug, pattern)) : undefined,
        beforeCursor(teams.id, beforeId),
      ),
    )
    .orderBy(desc(teams.id))
    .limit(limit);
}

export async function setTeamLimits(tx: DbOrTx, id: TeamId, limits: TeamLimits, at: Date): Promise<void> {
  await tx.update(teams).set({ limits, updatedAt: at }).where(eq(teams.id, id));
}

export async function findTeam(db: DbOrTx, id: TeamId): Promise<AdminTeamRow | undefined> {
  const [row] = await adminTeams(db).where(and(eq(teams.id, id), isNull(teams.deletedAt)));
  return row;
}

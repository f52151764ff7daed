import { and, count, desc, eq, isNull } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor } from '../../db/query-parts.ts';
import { notifications } from '../../db/schema/index.ts';

// The in-app inbox: SQL only. Every query is scoped by the user and the team.

export type NotificationId = Id<'ntf'>;
export type NotificationRow = typeof notifications.$inferSelect;
export type NotificationInsert = typeof notifications.$inferInsert;

/** New notifications; one a user already has for that event (another in_app channel) is skipped. */
export async function insertNotifications(db: DbOrTx, rows: NotificationInsert[]): Promise<number> {
  if (rows.length === 0) return 0;
  const made = await db
    .insert(notifications)
    .values(rows)
    .onConflictDoNothing({ target: [notifications.userId, notifications.teamId, notifications.eventId] })
    .returning({ id: notifications.id });
  return made.length;
}

const mine = (teamId: TeamId, userId: string) =>
  and(eq(notifications.teamId, teamId), eq(notifications.userId, userId));

export function listNotifications(
  db: DbOrTx,
  teamId: TeamId,
  userId: string,
  unreadOnly: boolean,
  beforeId: string | undefined,
  limit: number,
): Promise<NotificationRow[]> {
  return db
    .select()
    .from(notifications)
    .where(
      and(
        mine(teamId, userId),
        unreadOnly ? isNull(notifications.readAt) : undefined,
        beforeCursor(notifications.id, beforeId),
      ),
    )
    .orderBy(desc(notifications.id))
    .limit(limit);
}

export async function unreadCount(db: DbOrTx, teamId: TeamId, userId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(notifications)
    .where(and(mine(teamId, userId), isNull(notifications.readAt)));
  return Number(row?.n ?? 0);
}

/** Marks one of the user's notifications read (kept as first read); undefined when it is not theirs. */
export async function markRead(
  db: DbOrTx,
  teamId: TeamId,
  userId: string,
  id: NotificationId,
  now: Date,
): Promise<NotificationRow | undefined> {
  const [row] = await db
    .select()
    .from(notifications)
    .where(and(mine(teamId, userId), eq(notifications.id, id)));
  if (!row || row.readAt !== null) return row;
  const [updated] = await db
    .update(notifications)
    .set({ readAt: now })
    .where(and(mine(teamId, userId), eq(notifications.id, id)))
    .returning();
  return updated;
}

/** Marks every unread notification of the user read; answers how many. */
export async function markAllRead(db: DbOrTx, teamId: TeamId, userId: string, now: Date): Promise<number> {
  const rows = await db
    .update(notifications)
    .set({ readAt: now })
    .where(and(mine(teamId, userId), isNull(notifications.readAt)))
    .returning({ id: notifications.id });
  return rows.length;
}

/** An erasure: every notification of the user, in every team. */
export async function deleteUserNotifications(db: DbOrTx, userId: string): Promise<void> {
  await db.delete(notifications).where(eq(notifications.userId, userId));
}

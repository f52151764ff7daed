import type { Context } from '../../core/context.ts';
import { ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventView } from '../events/stream.ts';
import { activeTeam, type Principal } from '../identity/principal.ts';
import { messageOf } from './messages.ts';
import * as repo from './notifications-repo.ts';
import type { ChannelRow } from './repo.ts';

/** The rows an in_app channel makes of one event: one per recipient. */
export function notificationRows(
  channel: ChannelRow,
  event: EventView,
  userIds: readonly string[],
  now: Date,
): repo.NotificationInsert[] {
  const m = messageOf(event);
  return userIds.map((userId) => ({
    id: newId('ntf'),
    teamId: channel.teamId,
    userId,
    channelId: channel.id,
    eventId: event.id,
    eventType: event.type,
    subjectId: event.subject_id,
    title: m.title,
    message: m.lines.join('\n'),
    data: event.data,
    readAt: null,
    createdAt: now,
  }));
}

function notificationView(row: repo.NotificationRow) {
  return {
    id: row.id,
    event_id: row.eventId,
    event_type: row.eventType,
    subject_id: row.subjectId,
    channel_id: row.channelId,
    title: row.title,
    message: row.message,
    data: row.data,
    read: row.readAt !== null,
    read_at: row.readAt?.toISOString() ?? null,
    created_at: row.createdAt.toISOString(),
  };
}

/**
 * The in-app inbox (Orkosi's notifications): each signed-in user reads and
 * marks only their own, in their active team. API keys have no user: 403.
 */
export class NotificationsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
  ) {}

  private owner(principal: Principal): { teamId: TeamId; userId: string } {
    if (principal.kind !== 'session' || principal.userId === null)
      throw new ForbiddenError(
        'user_required',
        'notifications belong to a signed-in user; an API key has none (use a session)',
      );
    return { teamId: activeTeam(principal), userId: principal.userId };
  }

  /** An erasure (docs/admin.md): the user's inbox goes, in the caller's transaction. */
  async forgetUser(tx: DbOrTx, userId: string): Promise<void> {
    await repo.deleteUserNotifications(tx, userId);
  }

  async list(principal: Principal, query: PageQuery & { unread?: boolean }) {
    const { teamId, userId } = this.owner(principal);
    return pageOf(
      query,
      (cursor, rows) => repo.listNotifications(this.db, teamId, userId, query.unread === true, cursor, rows),
      notificationView,
    );
  }

  async unreadCount(principal: Principal) {
    const { teamId, userId } = this.owner(principal);
    return { unread: await repo.unreadCount(this.db, teamId, userId) };
  }

  /** Another user's notification, or another team's, is 404. Reading it again changes nothing. */
  async markRead(principal: Principal, id: string) {
    const { teamId, userId } = this.owner(principal);
    const ntf = idOrNotFound(id, 'ntf', 'notification');
    const row = await repo.markRead(this.db, teamId, userId, ntf, this.ctx.clock.now());
    if (!row) throw new NotFoundError('notification', id);
    return notificationView(row);
  }

  async markAllRead(principal: Principal) {
    const { teamId, userId } = this.owner(principal);
    return { marked: await repo.markAllRead(this.db, teamId, userId, this.ctx.clock.now()) };
  }
}

import type { Clock } from '../../core/clock.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import type { RequestContext } from '../../core/request-context.ts';
import type { DbOrTx } from '../../db/client.ts';
import { activityEntries, auditLogs, events } from '../../db/schema/index.ts';
import { activityEntryOf } from '../activity/entries.ts';
import { activityAlongside, eraseFromSummaries, insertActivity } from '../activity/repo.ts';
import { auditEntryOf } from './audit-entries.ts';
import { auditAlongside } from './audit-repo.ts';
import type { EventMap, EventType } from './catalog.ts';
import {
  type EventInsert,
  erasePayloads,
  eventIdsAfter,
  eventsAlongside,
  eventsByIds,
  insertEvent,
  insertEventBatch,
  latestEventId,
  type PayloadErasure,
  type WithSubquery,
} from './repo.ts';
import { type EventView, eventView } from './stream.ts';

export { EVENT_TYPES, type EventMap, type EventType } from './catalog.ts';

/** An outbox event of a team, as GET /v1/events shows it. */
export interface TeamEvent {
  teamId: TeamId;
  view: EventView;
}

export interface EventInput<T extends EventType> {
  teamId: TeamId | null;
  type: T;
  actorKind: string;
  actorId: string | null;
  subjectId?: string | null;
  data: EventMap[T];
  /** The request the change came with (from actorOf), for its audit entry. */
  via?: RequestContext;
}

export class EventsService {
  constructor(private readonly clock: Clock) {}

  /**
   * Writes one outbox row, its audit entry when it makes one and its activity
   * entry when it is a team's (one statement); call it with the transaction
   * that made the change.
   */
  async record<T extends EventType>(tx: DbOrTx, event: EventInput<T>): Promise<void> {
    await this.recordWithId(tx, event);
  }

  /** record(), answering the event's id (for a reader of what the event made, e.g. its activity entry). */
  async recordWithId<T extends EventType>(tx: DbOrTx, event: EventInput<T>): Promise<string> {
    const row = this.row(event);
    const audit = auditEntryOf(row, event.via);
    const activity = activityEntryOf(row);
    await insertEvent(tx, row, [
      ...(audit ? [auditAlongside(tx, [audit])] : []),
      ...(activity ? [activityAlongside(tx, [activity])] : []),
    ]);
    return row.id;
  }

  /** Many outbox rows and their audit entries in one statement, their activity entries in a second: in the caller's transaction. */
  async recordAll(tx: DbOrTx, events: Array<EventInput<EventType>>): Promise<void> {
    if (events.length === 0) return;
    const rows = events.map((e) => this.row(e));
    await insertEventBatch(
      tx,
      rows,
      rows.flatMap((row, i) => auditEntryOf(row, events[i]!.via) ?? []),
    );
    await insertActivity(
      tx,
      rows.flatMap((row) => activityEntryOf(row) ?? []),
    );
  }

  /**
   * Outbox rows (and their audit entries) for the statement that makes the
   * change, as common table expressions of it (its repository's
   * `db.with(…)`): one statement, so the change and its events commit
   * together without a transaction. In order.
   */
  alongside(db: DbOrTx, events: Array<EventInput<EventType>>): WithSubquery[] {
    const rows = events.map((e) => this.row(e));
    const audit = rows.flatMap((row, i) => auditEntryOf(row, events[i]!.via) ?? []);
    const activity = rows.flatMap((row) => activityEntryOf(row) ?? []);
    return [
      eventsAlongside(db, rows),
      ...(audit.length > 0 ? [auditAlongside(db, audit)] : []),
      ...(activity.length > 0 ? [activityAlongside(db, activity)] : []),
    ];
  }

  /**
   * Teams' events with ids after `floorId`, oldest first, at most `limit`
   * (events of no team are left out): what the webhook dispatcher reads.
   */
  async teamEventsAfter(
    db: DbOrTx,
    floorId: string,
    limit: number,
  ): Promise<{ events: TeamEvent[]; lastId: string | undefined; read: number }> {
    const ids = await eventIdsAfter(db, floorId, limit);
    const rows = ids.length > 0 ? await eventsByIds(db, ids) : [];
    const events = rows.flatMap((row) =>
      row.teamId === null ? [] : [{ teamId: row.teamId, view: eventView(row) }],
    );
    return { events, lastId: ids.at(-1), read: ids.length };
  }

  /**
   * An erasure (GDPR, docs/admin.md), in the caller's transaction: the
   * records keep the user's id, but the events, the audit log and the
   * activity feed no longer hold their e-mail address, nor the names of the
   * teams deleted with them.
   */
  async erasePersonalData(tx: DbOrTx, erasure: PayloadErasure): Promise<void> {
    await erasePayloads(tx, events, events.data, events.subjectId, erasure);
    await erasePayloads(tx, auditLogs, auditLogs.details, auditLogs.resourceId, erasure);
    await erasePayloads(tx, activityEntries, activityEntries.details, activityEntries.resourceId, erasure);
    await eraseFromSummaries(tx, erasure.email, erasure.replacement);
  }

  /** The newest event's id (any team), if any. */
  newestId(db: DbOrTx): Promise<string | undefined> {
    return latestEventId(db);
  }

  private row<T extends EventType>(event: EventInput<T>): EventInsert {
    return {
      id: newId('evt'),
      teamId: event.teamId,
      type: event.type,
      actorKind: event.actorKind,
      actorId: event.actorId,
      subjectId: event.subjectId ?? null,
      data: event.data as Record<string, unknown>,
      createdAt: this.clock.now(),
    };
  }
}

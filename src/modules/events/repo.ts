import { and, asc, desc, eq, gt, inArray, like, lt, or, type SQL, sql, type WithSubquery } from 'drizzle-orm';
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { deleteBatch } from '../../db/delete-batch.ts';
import { escapeLike } from '../../db/query-parts.ts';
import { events } from '../../db/schema/index.ts';
import type { AuditInsert } from './audit-repo.ts';

/** What the events service hands its callers' statements (EventsService.alongside). */
export type { WithSubquery };

// The outbox: SQL only.

export type EventInsert = typeof events.$inferInsert;

/** Outbox rows, in the caller's transaction (the one that made the change), with rows that go with them. */
export async function insertEvent(tx: DbOrTx, row: EventInsert, alongside: WithSubquery[]): Promise<void> {
  await (alongside.length > 0 ? tx.with(...alongside) : tx)
    .insert(events)
    .values(Array.isArray(row) ? row : [row]);
}

/**
 * A batch of outbox rows and their audit entries in one statement, each set
 * bound as one JSON value: building a hundred rows value by value cost more
 * than the batch's own change (a work queue's completions of fifty jobs).
 */
export async function insertEventBatch(tx: DbOrTx, rows: EventInsert[], audit: AuditInsert[]): Promise<void> {
  const recorded = JSON.stringify(
    rows.map((r) => ({
      id: r.id,
      team_id: r.teamId ?? null,
      type: r.type,
      actor_kind: r.actorKind,
      actor_id: r.actorId ?? null,
      subject_id: r.subjectId ?? null,
      data: r.data,
      created_at: r.createdAt,
    })),
  );
  const audited = JSON.stringify(
    audit.map((a) => ({
      id: a.id,
      team_id: a.teamId ?? null,
      actor_kind: a.actorKind,
      actor_id: a.actorId ?? null,
      action: a.action,
      resource_id: a.resourceId ?? null,
      outcome: a.outcome,
      status_code: a.statusCode ?? null,
      ip_address: a.ipAddress ?? null,
      request_id: a.requestId ?? null,
      route: a.route ?? null,
      user_agent: a.userAgent ?? null,
      details: a.details,
      created_at: a.createdAt,
    })),
  );
  await tx.execute(sql`
    with recorded_audit as (
      insert into audit_logs (id, team_id, actor_kind, actor_id, action, resource_id, outcome, status_code,
        ip_address, request_id, route, user_agent, details, created_at)
      select * from jsonb_to_recordset(${audited}::jsonb) as a(id text, team_id text, actor_kind text,
        actor_id text, action text, resource_id text, outcome text, status_code int, ip_address text,
        request_id text, route text, user_agent text, details jsonb, created_at timestamptz)
      returning id
    )
    insert into events (id, team_id, type, actor_kind, actor_id, subject_id, data, created_at)
    select * from jsonb_to_recordset(${recorded}::jsonb) as e(id text, team_id text, type text,
      actor_kind text, actor_id text, subject_id text, data jsonb, created_at timestamptz)`);
}

/**
 * Outbox rows as a common table expression of another module's statement
 * (`db.with(…)`): the change and its events in one statement, atomic without
 * a transaction and one round trip to the database.
 */
export function eventsAlongside(db: DbOrTx, rows: EventInsert[]): WithSubquery {
  return db.$with('recorded_events').as(db.insert(events).values(rows).returning({ id: events.id }));
}

export type EventRow = typeof events.$inferSelect;

/** Which of a team's events a reader wants: exact types, `noun.` prefixes, one subject. */
export interface EventFilter {
  types: string[];
  prefixes: string[];
  subjectId: string | undefined;
}

function matching(filter: EventFilter): SQL | undefined {
  const byType = [
    ...(filter.types.length > 0 ? [inArray(events.type, filter.types)] : []),
    ...filter.prefixes.map((p) => like(events.type, `${escapeLike(p)}%`)),
  ];
  return and(
    byType.length > 0 ? or(...byType) : undefined,
    filter.subjectId !== undefined ? eq(events.subjectId, filter.subjectId) : undefined,
  );
}

/** A page of the team's events: oldest first after `afterId`, or newest first before `beforeId`. */
export function listTeamEvents(
  db: DbOrTx,
  teamId: TeamId,
  filter: EventFilter,
  from: { afterId: string } | { beforeId: string | undefined },
  limit: number,
): Promise<EventRow[]> {
  const ascending = 'afterId' in from;
  return db
    .select()
    .from(events)
    .where(
      and(
        eq(events.teamId, teamId),
        ascending ? gt(events.id, from.afterId) : from.beforeId ? lt(events.id, from.beforeId) : undefined,
        matching(filter),
      ),
    )
    .orderBy(ascending ? asc(events.id) : desc(events.id))
    .limit(limit);
}

/** Ids of every team's events after `floorId`, oldest first: what the stream's poller looks at. */
export async function eventIdsAfter(db: DbOrTx, floorId: string, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: events.id })
    .from(events)
    .where(gt(events.id, floorId))
    .orderBy(asc(events.id))
    .limit(limit);
  return rows.map((r) => r.id);
}

export function eventsByIds(db: DbOrTx, ids: string[]): Promise<EventRow[]> {
  return db.select().from(events).where(inArray(events.id, ids)).orderBy(asc(events.id));
}

export async function latestEventId(db: DbOrTx): Promise<string | undefined> {
  const [row] = await db.select({ id: events.id }).from(events).orderBy(desc(events.id)).limit(1);
  return row?.id;
}

/** Deletes up to `batch` events made before `cutoff`; how many went. */
export async function deleteEventsBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  return deleteBatch(db, events, events.id, lt(events.createdAt, cutoff), batch);
}

/** What an erasure rewrites in the record tables' payloads (docs/admin.md). */
export interface PayloadErasure {
  /** The erased user's address, wherever a payload's `email` holds it, becomes `replacement`. */
  email: string;
  replacement: string;
  /** Rows about these (the user's deleted teams) lose the `name` they carry: it is often the user's. */
  subjectIds: string[];
  erasedName: string;
}

/**
 * Rewrites one record table's jsonb payload (events' data, audit entries'
 * details, activity entries' details) for an erasure. A scan: erasures are rare.
 */
export async function erasePayloads(
  db: DbOrTx,
  table: PgTable,
  payload: AnyPgColumn,
  subject: AnyPgColumn,
  erasure: PayloadErasure,
): Promise<void> {
  const col = sql.identifier(payload.name);
  await db.execute(sql`update ${table} set ${col} = jsonb_set(${col}, '{email}', to_jsonb(${erasure.replacement}::text))
    where ${col}->>'email' = ${erasure.email}`);
  if (erasure.subjectIds.length === 0) return;
  const ids = sql.join(
    erasure.subjectIds.map((id) => sql`${id}`),
    sql`, `,
  );
  await db.execute(sql`update ${table} set ${col} = jsonb_set(${col}, '{name}', to_jsonb(${erasure.erasedName}::text))
    where ${sql.identifier(subject.name)} in (${ids}) and ${col} ? 'name'`);
}

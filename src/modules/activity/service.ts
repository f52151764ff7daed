import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { BadRequestError, ForbiddenError, ValidationError } from '../../core/errors.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, managedTeam, type Principal, requireScope } from '../identity/principal.ts';
import * as repo from './repo.ts';
import {
  type ActivityListQuery,
  type ActivityStatsQuery,
  MAX_DETAILS_BYTES,
  type ReportActivityBody,
  STATS_DEFAULT_WINDOW_MS,
  STATS_MAX_WINDOW_MS,
  STATS_TOP,
} from './schemas.ts';

export type ReportActivityInput = Static<typeof ReportActivityBody>;

function entryView(row: repo.ActivityRow) {
  return {
    id: row.id,
    source: row.source,
    event_id: row.eventId,
    actor_type: row.actorType,
    actor_id: row.actorId,
    action: row.action,
    resource_type: row.resourceType,
    resource_id: row.resourceId,
    summary: row.summary,
    details: row.details,
    links: row.links,
    created_at: row.createdAt.toISOString(),
  };
}

const dateOf = (raw: string | undefined, field: string): Date | undefined => {
  if (raw === undefined) return undefined;
  const d = new Date(raw);
  if (Number.isNaN(d.getTime()))
    throw new ValidationError(`${field} is not a date`, { [field]: 'not a date' });
  return d;
};

/**
 * The activity feed (Orkosi's activity log): a line per team event, written
 * with the event (entries.ts), and the lines agents report. Members and team
 * keys read it; only agent keys report.
 */
export class ActivityService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
  ) {}

  async list(principal: Principal, q: Static<typeof ActivityListQuery>) {
    const teamId = managedTeam(principal, 'read', 'the activity feed');
    const filter: repo.ActivityFilter = {
      actorType: q.actor_type,
      actorId: q.actor_id,
      action: q.action,
      resourceType: q.resource_type,
      resourceId: q.resource_id,
      source: q.source,
      from: dateOf(q.from, 'from'),
      to: dateOf(q.to, 'to'),
    };
    return pageOf(q, (cursor, rows) => repo.listEntries(this.db, teamId, filter, cursor, rows), entryView);
  }

  /** An agent's own line in the feed: the event activity.reported, whose entry it is (one statement). */
  async report(principal: Principal, input: ReportActivityInput) {
    if (principal.kind !== 'agent')
      throw new ForbiddenError('agent_key_required', 'only agents (pda_ keys) report activity');
    const teamId = activeTeam(principal);
    requireScope(principal, 'write');
    const details = input.details ?? {};
    if (Buffer.byteLength(JSON.stringify(details)) > MAX_DETAILS_BYTES)
      throw new ValidationError(`the request body is invalid: details is over ${MAX_DETAILS_BYTES} bytes`, {
        details: `must be at most ${MAX_DETAILS_BYTES} bytes as JSON`,
      });
    const links = input.links ?? [];
    const bare = links.findIndex((l) => l.id === undefined && l.url === undefined);
    if (bare >= 0)
      throw new ValidationError('the request body is invalid: a link needs an id or a url', {
        [`links.${bare}`]: 'needs an id or a url',
      });
    const row = await this.db.transaction(async (tx) => {
      const eventId = await this.events.recordWithId(tx, {
        teamId,
        type: 'activity.reported',
        ...actorOf(principal),
        subjectId: input.resource_id ?? null,
        data: {
          action: input.action,
          summary: input.summary,
          resource_type: input.resource_type ?? null,
          resource_id: input.resource_id ?? null,
          links,
          details,
        },
      });
      return repo.findByEventId(tx, teamId, eventId);
    });
    return entryView(row!);
  }

  /** Counts per actor and per action over a window (a day to now unless told; at most 90 days). */
  async stats(principal: Principal, q: Static<typeof ActivityStatsQuery>) {
    const teamId = managedTeam(principal, 'read', 'the activity feed');
    const to = dateOf(q.to, 'to') ?? this.ctx.clock.now();
    const from = dateOf(q.from, 'from') ?? new Date(to.getTime() - STATS_DEFAULT_WINDOW_MS);
    if (from >= to) throw new BadRequestError('invalid_window', 'from must be before to');
    if (to.getTime() - from.getTime() > STATS_MAX_WINDOW_MS)
      throw new BadRequestError('window_too_long', 'the window is at most 90 days');
    const counted = await repo.countEntries(this.db, teamId, { from, to }, STATS_TOP);
    return {
      from: from.toISOString(),
      to: to.toISOString(),
      total: counted.total,
      by_actor: counted.byActor.map((r) => ({ actor_type: r.actorType, actor_id: r.actorId, count: r.n })),
      by_action: counted.byAction.map((r) => ({ action: r.action, count: r.n })),
    };
  }
}

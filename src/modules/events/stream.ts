import type { Context, Timer } from '../../core/context.ts';
import { BadRequestError, RateLimitedError } from '../../core/errors.ts';
import { idFloorAt, idTimeMs, isId, type TeamId } from '../../core/ids.ts';
import { type Page, pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import { activeTeam, type Principal } from '../identity/principal.ts';
import * as repo from './repo.ts';

export interface EventStreamOptions {
  /** How often the one poller of this process reads the outbox while anyone is subscribed. */
  pollMs: number;
  /**
   * How far behind the newest event seen each poll reads again. Ids are made
   * before their transaction commits, and transactions commit out of order (and
   * servers' clocks differ): an event can appear with an id older than one
   * already delivered. Within this window it is still found, once.
   */
  lookbackMs: number;
  /** Streams open at once per team, on this server. */
  streamsPerTeam: number;
  /** Events waiting for a slow client; beyond it the stream ends (it resumes with Last-Event-ID from the database). */
  queueMax: number;
}

export const EVENT_STREAM_DEFAULTS: EventStreamOptions = {
  pollMs: 250,
  lookbackMs: 10_000,
  streamsPerTeam: 20,
  queueMax: 10_000,
};

const POLL_PAGE = 1000;
const CATCH_UP_PAGE = 500;

/** What a stream sends: the SSE id (its resume point), the event type and the event. */
export interface StreamFrame {
  id: string;
  type: string;
  data: EventView;
}

export interface EventView {
  id: string;
  type: string;
  actor_kind: string;
  actor_id: string | null;
  subject_id: string | null;
  data: Record<string, unknown>;
  created_at: string;
}

export interface EventQuery {
  type?: string;
  subject_id?: string;
  after?: string;
}

/** An outbox row as GET /v1/events (and a webhook's body) shows it. */
export function eventView(row: repo.EventRow): EventView {
  return {
    id: row.id,
    type: row.type,
    actor_kind: row.actorKind,
    actor_id: row.actorId,
    subject_id: row.subjectId,
    data: row.data,
    created_at: row.createdAt.toISOString(),
  };
}

const EXACT_TYPE = /^[a-z][a-z_]*\.[a-z][a-z_]*$/;
const TYPE_PREFIX = /^[a-z][a-z_]*\.\*$/;
const MAX_TYPES = 50;

/** `type=task.completed,run.*`: exact names and `noun.*` prefixes; anything else is a 400. */
export function parseFilter(query: EventQuery): repo.EventFilter {
  const filter: repo.EventFilter = { types: [], prefixes: [], subjectId: undefined };
  if (query.type !== undefined) {
    const parts = query.type.split(',').map((p) => p.trim());
    if (parts.length > MAX_TYPES || parts.some((p) => !EXACT_TYPE.test(p) && !TYPE_PREFIX.test(p)))
      throw new BadRequestError(
        'invalid_type_filter',
        `type is up to ${MAX_TYPES} comma-separated event types (task.completed) or prefixes (task.*)`,
      );
    for (const p of parts) {
      if (p.endsWith('.*')) filter.prefixes.push(p.slice(0, -1));
      else filter.types.push(p);
    }
  }
  if (query.subject_id !== undefined) {
    if (!isId(query.subject_id))
      throw new BadRequestError('invalid_subject_id', 'subject_id is the id of a resource (task_…, agt_…)');
    filter.subjectId = query.subject_id;
  }
  return filter;
}

/** Where a stream resumes: Last-Event-ID (what a reconnecting EventSource sends) wins over `after`. */
export function resumeAfter(
  header: string | string[] | undefined,
  after: string | undefined,
): string | undefined {
  const raw = (Array.isArray(header) ? header[0] : header) || after;
  if (raw === undefined || raw === '') return undefined;
  if (!isId(raw, 'evt'))
    throw new BadRequestError('invalid_after', 'Last-Event-ID and after are the id of an event (evt_…)');
  return raw;
}

function matches(row: repo.EventRow, teamId: TeamId, filter: repo.EventFilter): boolean {
  if (row.teamId !== teamId) return false;
  if (filter.subjectId !== undefined && row.subjectId !== filter.subjectId) return false;
  if (filter.types.length === 0 && filter.prefixes.length === 0) return true;
  return filter.types.includes(row.type) || filter.prefixes.some((p) => row.type.startsWith(p));
}

/** Ids with the time they were made, forgotten once older than the look-back behind the newest. */
class RecentIds {
  private readonly ids = new Map<string, number>();
  newestMs = 0;

  constructor(private readonly windowMs: number) {}

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    const ms = idTimeMs(id);
    this.ids.set(id, ms);
    if (ms > this.newestMs) this.newestMs = ms;
    if (this.ids.size % 1000 === 0) this.prune();
  }

  prune(): void {
    const oldest = this.newestMs - this.windowMs;
    for (const [id, ms] of this.ids) if (ms < oldest) this.ids.delete(id);
  }

  clear(): void {
    this.ids.clear();
    this.newestMs = 0;
  }
}

/** One open stream: its filter, the events waiting for it and the ids it already sent. */
class Subscription {
  readonly queue: repo.EventRow[] = [];
  readonly sent: RecentIds;
  overflowed = false;
  /** Unsubscribed: the server closes, or the client went. */
  ended = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly teamId: TeamId,
    readonly filter: repo.EventFilter,
    private readonly options: EventStreamOptions,
  ) {
    this.sent = new RecentIds(options.lookbackMs);
  }

  offer(row: repo.EventRow): void {
    if (!matches(row, this.teamId, this.filter)) return;
    if (this.queue.length >= this.options.queueMax) this.overflowed = true;
    else this.queue.push(row);
    this.notify();
  }

  notify(): void {
    this.wake?.();
    this.wake = undefined;
  }

  next(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.queue.length > 0 || this.overflowed || this.ended || signal.aborted) return resolve();
      this.wake = resolve;
    });
  }
}

/**
 * The team's events from the outbox: a page, or a stream that catches up
 * from the database and then follows it live. Every server's one poller
 * reads what any server committed (no process's memory is the source), and
 * hands each new event to its streams.
 */
export class EventStreamService {
  private readonly subscriptions = new Set<Subscription>();
  private readonly perTeam = new Map<TeamId, number>();
  private readonly seen: RecentIds;
  private poller: Timer | undefined;
  private starting: Promise<void> | undefined;
  private inFlight: Promise<void> | undefined;
  /** Streams between the cap check and their first poll: the poller keeps running for them. */
  private joining = 0;
  /** Bumped when the poller stops: a scan from before forgets what it read. */
  private generation = 0;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly options: EventStreamOptions = EVENT_STREAM_DEFAULTS,
  ) {
    this.seen = new RecentIds(options.lookbackMs);
  }

  /** Newest first; with `after`, oldest first from that event on (how a reader catches up). */
  list(
    principal: Principal,
    query: EventQuery & { limit?: number; cursor?: string },
  ): Promise<Page<EventView>> {
    const teamId = activeTeam(principal);
    const filter = parseFilter(query);
    const after = resumeAfter(undefined, query.after);
    return pageOf(
      query,
      (cursor, rows) =>
        repo.listTeamEvents(
          this.db,
          teamId,
          filter,
          after !== undefined ? { afterId: cursor ?? after } : { beforeId: cursor },
          rows,
        ),
      eventView,
    );
  }

  /**
   * The stream's frames: the events after `after` (if given) from the
   * database, then live ones, each once. A frame's SSE id is the newest event
   * id sent so far, so a late event (an older id committed after a newer one)
   * never moves a client's Last-Event-ID back.
   */
  async follow(
    principal: Principal,
    query: EventQuery,
    after: string | undefined,
    signal: AbortSignal,
  ): Promise<AsyncIterable<StreamFrame>> {
    const teamId = activeTeam(principal);
    const filter = parseFilter(query);
    const open = this.perTeam.get(teamId) ?? 0;
    if (open >= this.options.streamsPerTeam)
      throw new RateLimitedError(
        `this team has ${open} event streams open on this server, the most it may; close one first`,
        5,
        { limit: 'event_streams', max: this.options.streamsPerTeam },
      );
    // Held before the first await, so concurrent requests cannot pass the cap together.
    this.perTeam.set(teamId, open + 1);
    this.joining += 1;
    const sub = new Subscription(teamId, filter, this.options);
    const end = () => this.unsubscribe(sub);
    try {
      // The events committed before a poll that ends now are this stream's past (the catch-up reads
      // those after `after`); it joins with nothing in between, so every later commit reaches it live.
      await this.startPolling();
      await this.pollNow();
    } catch (err) {
      this.release(teamId);
      throw err;
    } finally {
      this.joining -= 1;
    }
    this.subscriptions.add(sub);
    if (signal.aborted) end();
    else signal.addEventListener('abort', end, { once: true });
    return this.frames(sub, after, signal, end);
  }

  private async *frames(
    sub: Subscription,
    after: string | undefined,
    signal: AbortSignal,
    end: () => void,
  ): AsyncIterable<StreamFrame> {
    let cursor = after ?? '';
    const frame = (row: repo.EventRow): StreamFrame => {
      sub.sent.add(row.id);
      if (row.id > cursor) cursor = row.id;
      return { id: cursor, type: row.type, data: eventView(row) };
    };
    try {
      for (let from = after; from !== undefined; ) {
        const rows = await repo.listTeamEvents(
          this.db,
          sub.teamId,
          sub.filter,
          { afterId: from },
          CATCH_UP_PAGE,
        );
        for (const row of rows) if (!sub.sent.has(row.id)) yield frame(row);
        from = rows.length === CATCH_UP_PAGE ? rows.at(-1)?.id : undefined;
        if (signal.aborted || sub.ended) return;
      }
      while (!signal.aborted && !sub.overflowed && !sub.ended) {
        const row = sub.queue.shift();
        if (row === undefined) await sub.next(signal);
        else if (!sub.sent.has(row.id)) yield frame(row);
      }
    } finally {
      end();
    }
  }

  private unsubscribe(sub: Subscription): void {
    if (!this.subscriptions.delete(sub)) return;
    this.release(sub.teamId);
    sub.ended = true;
    sub.notify();
    if (this.subscriptions.size === 0 && this.joining === 0) this.stopPolling();
  }

  private release(teamId: TeamId): void {
    const left = (this.perTeam.get(teamId) ?? 1) - 1;
    if (left > 0) this.perTeam.set(teamId, left);
    else this.perTeam.delete(teamId);
  }

  /** Streams open on this server (all teams). */
  get open(): number {
    return this.subscriptions.size;
  }

  private startPolling(): Promise<void> {
    if (this.poller) return Promise.resolve();
    if (!this.starting) {
      const generation = this.generation;
      this.starting = (async () => {
        const newest = await repo.latestEventId(this.db);
        if (generation !== this.generation) return;
        if (newest !== undefined) this.seen.add(newest);
        await this.scan(generation);
        if (generation !== this.generation) return;
        this.poller = this.ctx.timers.every(this.options.pollMs, () => void this.tick());
      })().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private stopPolling(): void {
    this.generation += 1;
    this.poller?.cancel();
    this.poller = undefined;
    this.seen.clear();
  }

  /** One poll that starts now, finished when the streams have what it found (the timer polls otherwise). */
  async pollNow(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    if (this.poller) await this.tick();
  }

  /** The poll under way, or a new one: never two at once. */
  private tick(): Promise<void> {
    this.inFlight ??= this.scan(this.generation)
      .catch((err: unknown) =>
        this.ctx.log.warn({ err }, 'reading the event outbox failed; the next poll tries again'),
      )
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  /** Reads the ids of the look-back window, and hands the events among them not seen before to the streams. */
  private async scan(generation: number): Promise<void> {
    let floor = idFloorAt('evt', this.seen.newestMs - this.options.lookbackMs);
    for (;;) {
      const ids = await repo.eventIdsAfter(this.db, floor, POLL_PAGE);
      if (generation !== this.generation) return;
      const fresh = ids.filter((id) => !this.seen.has(id));
      for (let i = 0; i < fresh.length; i += CATCH_UP_PAGE) {
        const rows = await repo.eventsByIds(this.db, fresh.slice(i, i + CATCH_UP_PAGE));
        if (generation !== this.generation) return;
        for (const row of rows) {
          this.seen.add(row.id);
          for (const sub of this.subscriptions) sub.offer(row);
        }
      }
      if (ids.length < POLL_PAGE) break;
      floor = ids.at(-1) ?? floor;
    }
    this.seen.prune();
  }

  /** Ends every stream (the server is closing). */
  close(): void {
    for (const sub of [...this.subscriptions]) this.unsubscribe(sub);
  }
}

import type { Context, Timer } from '../../core/context.ts';
import { idFloorAt, idTimeMs, newId, type TeamId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService, TeamEvent } from '../events/service.ts';
import type { EventView } from '../events/stream.ts';
import type { WebhookDeliveries } from './deliveries.ts';
import * as repo from './repo.ts';

const READ_PAGE = 500;
/** With no active webhook anywhere, the cursor skips to the newest event every this many polls. */
const IDLE_SKIP_EVERY = 20;

/**
 * Another reader of the outbox that rides on this dispatcher's cursor (the
 * channels): it gets every fresh event once per server read, and must make
 * its own rows idempotently (a unique key per event), as webhooks do.
 */
export interface OutboxSink {
  /** Whether anyone anywhere would take an event now (none: the cursor may skip ahead). */
  anyActive(): Promise<boolean>;
  dispatch(fresh: TeamEvent[], now: Date): Promise<void>;
  /** Sends a job again for rows whose job was lost (run with the webhooks' sweep). */
  sweep(): Promise<number>;
}

/** Whether a subscription takes an event: its types, and only events made since it was (ids are time-sortable). */
export function matchesTypes(subscriberId: string, types: readonly string[], event: EventView): boolean {
  if (event.type === 'webhook.test') return false;
  if (idTimeMs(event.id) < idTimeMs(subscriberId)) return false;
  return types.some((t) => (t.endsWith('.*') ? event.type.startsWith(t.slice(0, -1)) : t === event.type));
}

/** Whether a webhook takes an event: its types, its agent, and only events made since it was. */
export function subscribed(hook: repo.WebhookRow, event: EventView): boolean {
  if (!matchesTypes(hook.id, hook.eventTypes, event)) return false;
  if (hook.agentId === null) return true;
  return event.subject_id === hook.agentId || event.data.agent_id === hook.agentId;
}

/** A webhook's body: the event as GET /v1/events shows it, in Standard Webhooks' envelope. */
export function webhookBody(event: EventView): string {
  return JSON.stringify({ type: event.type, timestamp: event.created_at, data: event });
}

/**
 * Reads the outbox and makes one delivery per (active webhook, event) that
 * matches. Every server runs one; the cursor is a row in the database, each
 * read starts the look-back window behind it (an event can commit after one
 * with a newer id), and the unique (webhook, event) key makes a second read
 * of an event, by this server or another, add nothing.
 */
export class WebhookDispatcher {
  private poller: Timer | undefined;
  private sweeper: Timer | undefined;
  private inFlight: Promise<void> | undefined;
  /** Events this server already handed out in the look-back window: not looked at again. */
  private readonly handled = new Map<string, number>();
  /** The newest event id this server has read up to (from the database's cursor at first). */
  private cursor: string | undefined;
  private idlePolls = 0;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly deliveries: WebhookDeliveries,
    /** The other readers of the outbox (channels), fed from the same cursor. */
    private readonly sinks: OutboxSink[] = [],
  ) {}

  private sweepAll(): void {
    for (const sweep of [() => this.deliveries.sweep(), ...this.sinks.map((s) => () => s.sweep())])
      sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'a delivery sweep failed'));
  }

  private async anyActive(): Promise<boolean> {
    if (await repo.anyActiveWebhook(this.db)) return true;
    for (const sink of this.sinks) if (await sink.anyActive()) return true;
    return false;
  }

  start(): void {
    if (this.poller) return;
    const { pollMs, sweepMs } = this.deliveries.options;
    this.poller = this.ctx.timers.every(pollMs, () => void this.pollNow());
    this.sweeper = this.ctx.timers.every(sweepMs, () => this.sweepAll());
    // At start: what a crash left behind is due now.
    this.sweepAll();
    void this.pollNow();
  }

  stop(): void {
    this.poller?.cancel();
    this.sweeper?.cancel();
    this.poller = undefined;
    this.sweeper = undefined;
  }

  /** One read of the outbox (never two at once); resolves when its deliveries' jobs are sent. */
  pollNow(): Promise<void> {
    this.inFlight ??= this.poll()
      .catch((err: unknown) =>
        this.ctx.log.warn({ err }, 'webhook dispatch failed; the next poll tries again'),
      )
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  private async poll(): Promise<void> {
    const now = this.ctx.clock.now();
    // The database's cursor is where a (re)started server begins; then each server follows its own.
    this.cursor ??= await repo.dispatchCursor(this.db, (await this.events.newestId(this.db)) ?? '', now);
    if (!(await this.anyActive())) {
      // Nobody to deliver to: what the outbox holds now is nobody's. Moved on now and then, not every poll.
      this.idlePolls += 1;
      if (this.idlePolls % IDLE_SKIP_EVERY === 0) {
        const newest = await this.events.newestId(this.db);
        if (newest !== undefined && newest > this.cursor) {
          await repo.advanceDispatchCursor(this.db, newest, now);
          this.cursor = newest;
        }
      }
      return;
    }
    const { lookbackMs } = this.deliveries.options;
    let floor = this.cursor === '' ? '' : idFloorAt('evt', idTimeMs(this.cursor) - lookbackMs);
    for (;;) {
      const { events, lastId, read } = await this.events.teamEventsAfter(this.db, floor, READ_PAGE);
      if (lastId === undefined) break;
      const fresh = events.filter((e) => !this.handled.has(e.view.id));
      if (fresh.length > 0) await this.dispatch(fresh, now);
      for (const e of fresh) this.handled.set(e.view.id, idTimeMs(e.view.id));
      if (lastId > this.cursor) {
        await repo.advanceDispatchCursor(this.db, lastId, now);
        this.cursor = lastId;
      }
      if (read < READ_PAGE) break;
      floor = lastId;
    }
    const oldest = idTimeMs(this.cursor) - lookbackMs;
    for (const [id, ms] of this.handled) if (ms < oldest) this.handled.delete(id);
  }

  private async dispatch(fresh: TeamEvent[], now: Date): Promise<void> {
    await this.dispatchToWebhooks(fresh, now);
    for (const sink of this.sinks) await sink.dispatch(fresh, now);
  }

  private async dispatchToWebhooks(fresh: TeamEvent[], now: Date): Promise<void> {
    const teamIds = [...new Set(fresh.map((e) => e.teamId))] as TeamId[];
    const hooks = await repo.activeWebhooksOf(this.db, teamIds);
    if (hooks.length === 0) return;
    const rows: repo.DeliveryInsert[] = [];
    for (const e of fresh)
      for (const hook of hooks) {
        if (hook.teamId !== e.teamId || !subscribed(hook, e.view)) continue;
        rows.push({
          id: newId('dlv'),
          teamId: e.teamId,
          webhookId: hook.id,
          eventId: e.view.id,
          eventType: e.view.type,
          payload: webhookBody(e.view),
          status: 'pending',
          attempts: 0,
          maxAttempts: this.deliveries.options.retryScheduleMs.length,
          nextAttemptAt: new Date(now.getTime() + (this.deliveries.options.retryScheduleMs[0] ?? 0)),
          createdAt: now,
          updatedAt: now,
        });
      }
    const made = await repo.insertDeliveries(this.db, rows);
    await this.deliveries.enqueue(made);
  }
}

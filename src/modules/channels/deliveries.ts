import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { Jobs } from '../../jobs/jobs.ts';
import type { TeamEvent } from '../events/service.ts';
import type { EventView } from '../events/stream.ts';
import { AttemptQueue } from '../webhooks/attempt-queue.ts';
import type { WebhookOptions } from '../webhooks/deliveries.ts';
import { matchesTypes, type OutboxSink } from '../webhooks/dispatcher.ts';
import type { PostOutcome, WebhookSender } from '../webhooks/sender.ts';
import { notificationRows } from './notifications.ts';
import { insertNotifications } from './notifications-repo.ts';
import {
  type ChannelConfig,
  type ChannelProvider,
  type RequestSettings,
  redact,
  requestFor,
  secretsOf,
} from './providers.ts';
import * as repo from './repo.ts';

export const CHANNEL_DELIVERY_QUEUE = 'channel-delivery';
const LOCK_MARGIN_MS = 5_000;

/** What channels need from the identity module: a team's members' user ids. */
export type MembersPort = (db: DbOrTx, teamId: TeamId) => Promise<string[]>;

/** An event that names its channels (a playbook run's notification_channels) goes to them whatever they subscribe to. */
function namedBy(event: EventView, channelId: string): boolean {
  const named = event.data.notify_channel_ids;
  return Array.isArray(named) && named.includes(channelId);
}

export function configContext(id: string): string {
  return `channel:${id}`;
}

/**
 * The channels' side of the outbox (an OutboxSink of the webhook
 * dispatcher): an in_app channel's events become notifications at once; any
 * other channel's become delivery rows, each attempted by a pg-boss job and
 * retried on the webhooks' schedule until the receiver answers 2xx.
 */
export class ChannelDeliveries implements OutboxSink {
  private readonly queue: AttemptQueue<repo.ChannelDeliveryId>;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    jobs: Jobs,
    private readonly sender: WebhookSender,
    private readonly members: MembersPort,
    readonly settings: RequestSettings,
    readonly options: WebhookOptions,
  ) {
    this.queue = new AttemptQueue(jobs, ctx.clock, CHANNEL_DELIVERY_QUEUE, options, (dueBefore, now, limit) =>
      repo.overdueDeliveries(db, dueBefore, now, limit),
    );
  }

  start(): Promise<void> {
    return this.queue.work((id, n) => this.attempt(id, n));
  }

  openConfig(row: repo.ChannelRow): ChannelConfig {
    return JSON.parse(this.sealer.open(row.configSealed, configContext(row.id))) as ChannelConfig;
  }

  anyActive(): Promise<boolean> {
    return repo.anyChannel(this.db);
  }

  async dispatch(fresh: TeamEvent[], now: Date): Promise<void> {
    const teamIds = [...new Set(fresh.map((e) => e.teamId))];
    const all = await repo.channelsOf(this.db, teamIds);
    if (all.length === 0) return;
    const rows: repo.ChannelDeliveryInsert[] = [];
    const members = new Map<TeamId, string[]>();
    for (const e of fresh)
      for (const channel of all) {
        if (channel.teamId !== e.teamId) continue;
        if (!matchesTypes(channel.id, channel.events, e.view) && !namedBy(e.view, channel.id)) continue;
        if (channel.provider === 'in_app') {
          await this.notify(channel, e, members, now);
          continue;
        }
        rows.push({
          id: newId('cdl'),
          teamId: e.teamId,
          channelId: channel.id,
          eventId: e.view.id,
          eventType: e.view.type,
          event: JSON.stringify(e.view),
          status: 'pending',
          attempts: 0,
          maxAttempts: this.options.retryScheduleMs.length,
          nextAttemptAt: new Date(now.getTime() + (this.options.retryScheduleMs[0] ?? 0)),
          createdAt: now,
          updatedAt: now,
        });
      }
    const made = await repo.insertDeliveries(this.db, rows);
    for (const id of made) await this.queue.send(id, 1, this.options.retryScheduleMs[0] ?? 0);
  }

  /** The in-app inbox: one notification per recipient who is a member now. */
  private async notify(
    channel: repo.ChannelRow,
    e: TeamEvent,
    members: Map<TeamId, string[]>,
    now: Date,
  ): Promise<void> {
    let teamMembers = members.get(e.teamId);
    if (!teamMembers) {
      teamMembers = await this.members(this.db, e.teamId);
      members.set(e.teamId, teamMembers);
    }
    const listed = this.openConfig(channel).user_ids as string[] | undefined;
    const recipients = listed ? teamMembers.filter((u) => listed.includes(u)) : teamMembers;
    await insertNotifications(this.db, notificationRows(channel, e.view, recipients, now));
  }

  /** Sends attempt `n` of a delivery now (a redelivery). */
  sendNow(id: repo.ChannelDeliveryId, n: number): Promise<void> {
    return this.queue.send(id, n, 0);
  }

  sweep(): Promise<number> {
    return this.queue.sweep();
  }

  /**
   * Sends one message to a provider now: what both a delivery's attempt and
   * POST /v1/channels/test make. The outcome's texts never hold a config value.
   */
  async send(
    provider: Exclude<ChannelProvider, 'in_app'>,
    config: ChannelConfig,
    event: EventView,
    messageId: string,
  ): Promise<PostOutcome> {
    const nowSec = Math.floor(this.ctx.clock.now().getTime() / 1000);
    const req = requestFor(provider, config, event, messageId, nowSec, this.settings);
    const outcome = await this.sender.post(req.url, req.headers, req.body, req.method);
    const secrets = secretsOf(config);
    return {
      ...outcome,
      error: outcome.error === null ? null : redact(outcome.error, secrets),
      responseBody: outcome.responseBody === null ? null : redact(outcome.responseBody, secrets),
    };
  }

  /** Makes attempt `n` of a delivery when it is still this attempt's turn (a duplicate job makes none). */
  async attempt(id: repo.ChannelDeliveryId, n: number): Promise<void> {
    const now = this.ctx.clock.now();
    const lockedUntil = new Date(now.getTime() + this.options.timeoutMs + LOCK_MARGIN_MS);
    const delivery = await repo.claimAttempt(this.db, id, n, now, lockedUntil);
    if (!delivery) return;
    const channel = await repo.channelById(this.db, delivery.channelId);
    if (!channel || channel.provider === 'in_app') return;
    const outcome = await this.send(
      channel.provider as Exclude<ChannelProvider, 'in_app'>,
      this.openConfig(channel),
      JSON.parse(delivery.event) as EventView,
      delivery.id,
    );
    const done = this.ctx.clock.now();
    const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
    const schedule = this.options.retryScheduleMs;
    const waitMs = !ok && n < delivery.maxAttempts ? (schedule[n] ?? schedule.at(-1) ?? 0) : undefined;
    const error = ok ? null : outcome.error;
    await repo.finishAttempt(
      this.db,
      delivery.id,
      waitMs === undefined
        ? {
            status: ok ? 'succeeded' : 'failed',
            nextAttemptAt: null,
            completedAt: done,
            lastStatusCode: outcome.statusCode,
            lastError: error,
          }
        : {
            nextAttemptAt: new Date(done.getTime() + waitMs),
            lastStatusCode: outcome.statusCode,
            lastError: error,
          },
      done,
    );
    if (!ok)
      this.ctx.log.info(
        { channel_id: channel.id, delivery_id: delivery.id, attempt: n, error },
        'a channel delivery attempt failed',
      );
    // Lost (a crash right here), the sweep sends it once it is overdue.
    if (waitMs !== undefined) await this.queue.send(delivery.id, n + 1, waitMs);
  }
}

import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { AppError, BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import { endedDelivery } from '../webhooks/attempt-queue.ts';
import { checkEventTypes, checkedDeliveryUrl } from '../webhooks/service.ts';
import { newWebhookSecret } from '../webhooks/signing.ts';
import { type ChannelDeliveries, configContext, type MembersPort } from './deliveries.ts';
import { type ChannelConfig, type ChannelProvider, URL_FIELDS, validConfig } from './providers.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';

export type CreateChannelInput = Static<typeof s.CreateChannelBody>;
export type UpdateChannelInput = Static<typeof s.UpdateChannelBody>;
export type TestChannelInput = Static<typeof s.TestChannelBody>;

function channelId(raw: string): repo.ChannelId {
  return idOrNotFound(raw, 'chn', 'channel');
}

function nameTaken(name: string): ConflictError {
  return new ConflictError('channel_name_taken', `this team already has a channel named ${name}`, { name });
}

export function channelView(row: repo.ChannelRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    provider: row.provider as ChannelProvider,
    events: row.events,
    created_by: row.createdBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

function deliveryView(row: repo.ChannelDeliveryRow) {
  return {
    id: row.id,
    channel_id: row.channelId,
    event_id: row.eventId,
    event_type: row.eventType,
    status: row.status,
    attempts: row.attempts,
    max_attempts: row.maxAttempts,
    last_status_code: row.lastStatusCode,
    last_error: row.lastError,
    next_attempt_at: row.nextAttemptAt?.toISOString() ?? null,
    completed_at: row.completedAt?.toISOString() ?? null,
    created_at: row.createdAt.toISOString(),
  };
}

/**
 * Notification channels (Wrenn): a team's Slack, Discord, Teams, Google
 * Chat, Telegram, Matrix, signed-webhook and in-app channels, each
 * subscribed to event types. The config is sealed and never returned; the
 * dispatcher (ChannelDeliveries) makes the messages.
 */
export class ChannelsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    private readonly guard: OutboundGuard,
    private readonly deliveries: ChannelDeliveries,
    private readonly members: MembersPort,
  ) {}

  /** Reading needs the read scope; changing a channel needs admin (team admins and owners, admin keys). */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'channels');
  }

  /**
   * The config as it is saved: checked against its provider's schema, its
   * URL through the outbound guard, a webhook's secret made when omitted,
   * an in_app channel's users members of the team.
   */
  private async prepare(provider: ChannelProvider, raw: unknown, teamId: TeamId): Promise<ChannelConfig> {
    const config = { ...validConfig(provider, raw) };
    const urlField = URL_FIELDS[provider];
    if (urlField)
      config[urlField] = await checkedDeliveryUrl(this.guard, String(config[urlField]), `config.${urlField}`);
    if (provider === 'webhook' && config.secret === undefined) config.secret = newWebhookSecret();
    if (provider === 'in_app' && Array.isArray(config.user_ids)) {
      const members = new Set(await this.members(this.db, teamId));
      const unknown = (config.user_ids as string[]).filter((u) => !members.has(u));
      if (unknown.length > 0)
        throw new BadRequestError(
          'unknown_user',
          `config.user_ids has users who are not members of this team`,
          {
            unknown: unknown.slice(0, 50),
          },
        );
    }
    return config;
  }

  private seal(id: string, config: ChannelConfig): string {
    return this.sealer.seal(JSON.stringify(config), configContext(id));
  }

  /** A webhook channel's answer carries its secret: on create and on a config change only. */
  private withSecret(row: repo.ChannelRow, config: ChannelConfig) {
    const view = channelView(row);
    return row.provider === 'webhook' ? { ...view, secret: String(config.secret) } : view;
  }

  private async found(db: DbOrTx, teamId: TeamId, id: string, lock?: 'update') {
    const row = await repo.findChannel(db, teamId, channelId(id), lock);
    if (!row) throw new NotFoundError('channel', id);
    return row;
  }

  async create(principal: Principal, input: CreateChannelInput) {
    const teamId = this.team(principal, 'admin');
    checkEventTypes(input.events, 'events');
    const config = await this.prepare(input.provider, input.config, teamId);
    try {
      const row = await this.db.transaction(async (tx) => {
        const id = newId('chn');
        const now = this.ctx.clock.now();
        const inserted = await repo.insertChannel(tx, {
          id,
          teamId,
          name: input.name,
          provider: input.provider,
          events: input.events,
          configSealed: this.seal(id, config),
          createdBy: actorOf(principal).actorId,
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          type: 'channel.created',
          ...actorOf(principal),
          subjectId: id,
          data: { name: input.name, provider: input.provider, events: input.events },
        });
        return inserted;
      });
      return this.withSecret(row, config);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
  }

  /** Which of `ids` are not channels of the team (for a playbook's notification_channels). */
  unknownIds(tx: DbOrTx, teamId: TeamId, ids: string[]): Promise<string[]> {
    return repo.unknownChannelIds(tx, teamId, ids);
  }

  async list(principal: Principal, query: PageQuery) {
    const teamId = this.team(principal, 'read');
    return pageOf(query, (cursor, rows) => repo.listChannels(this.db, teamId, cursor, rows), channelView);
  }

  async get(principal: Principal, id: string) {
    return channelView(await this.found(this.db, this.team(principal, 'read'), id));
  }

  /** PATCH: name and/or events (the list is replaced). */
  async update(principal: Principal, id: string, input: UpdateChannelInput) {
    const teamId = this.team(principal, 'admin');
    if (input.events !== undefined) checkEventTypes(input.events, 'events');
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await this.found(tx, teamId, id, 'update');
        const patch: repo.ChannelPatch = {};
        if (input.name !== undefined && input.name !== existing.name) patch.name = input.name;
        if (input.events !== undefined && input.events.join() !== existing.events.join())
          patch.events = input.events;
        const changed = Object.keys(patch);
        if (changed.length === 0) return existing;
        patch.updatedAt = this.ctx.clock.now();
        const updated = (await repo.updateChannel(tx, teamId, existing.id, patch))!;
        await this.events.record(tx, {
          teamId,
          type: 'channel.updated',
          ...actorOf(principal),
          subjectId: existing.id,
          data: { name: updated.name, changed_fields: changed },
        });
        return updated;
      });
      return channelView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /** PUT …/config: the provider's config replaced entirely (Wrenn "rotate channel secrets"). */
  async replaceConfig(principal: Principal, id: string, raw: unknown) {
    const teamId = this.team(principal, 'admin');
    const current = await this.found(this.db, teamId, id);
    const config = await this.prepare(current.provider as ChannelProvider, raw, teamId);
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id, 'update');
      const updated = (await repo.updateChannel(tx, teamId, existing.id, {
        configSealed: this.seal(existing.id, config),
        updatedAt: this.ctx.clock.now(),
      }))!;
      await this.events.record(tx, {
        teamId,
        type: 'channel.updated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { name: existing.name, changed_fields: ['config'] },
      });
      return updated;
    });
    return this.withSecret(row, config);
  }

  /** Deletes the channel with its deliveries (its in-app notifications stay in their inboxes). */
  async remove(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'admin');
    await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id, 'update');
      await repo.deleteChannel(tx, teamId, existing.id);
      await this.events.record(tx, {
        teamId,
        type: 'channel.deleted',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { name: existing.name, provider: existing.provider },
      });
    });
  }

  /**
   * Sends a `channel.test` message with this config now, once, saving
   * nothing: 200 {status: ok}, or 502 channel_test_failed saying why the
   * receiver refused (never a config value).
   */
  async test(principal: Principal, input: TestChannelInput) {
    const teamId = this.team(principal, 'admin');
    const config = await this.prepare(input.provider, input.config, teamId);
    if (input.provider === 'in_app') return { status: 'ok' as const };
    const now = this.ctx.clock.now();
    const actor = actorOf(principal);
    const outcome = await this.deliveries.send(
      input.provider,
      config,
      {
        id: newId('evt'),
        type: 'channel.test',
        actor_kind: actor.actorKind,
        actor_id: actor.actorId,
        subject_id: null,
        data: { provider: input.provider, message: 'a test message from Paddock' },
        created_at: now.toISOString(),
      },
      newId('cdl'),
    );
    if (outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300)
      return { status: 'ok' as const };
    const answer = outcome.responseBody?.trim().slice(0, 300);
    throw new AppError(
      502,
      'channel_test_failed',
      `the ${input.provider} receiver did not take the test message: ${outcome.error}${answer ? ` (it said: ${answer})` : ''}`,
      { status_code: outcome.statusCode, error: outcome.error },
    );
  }

  async deliveriesOf(principal: Principal, id: string, query: PageQuery) {
    const teamId = this.team(principal, 'read');
    const channel = await this.found(this.db, teamId, id);
    return pageOf(
      query,
      (cursor, rows) => repo.listDeliveries(this.db, teamId, channel.id, cursor, rows),
      deliveryView,
    );
  }

  /**
   * Sends an ended delivery (succeeded or failed) once more, with the same
   * message and id: one attempt, no retries. 409 while it is pending.
   */
  async redeliver(principal: Principal, id: string, deliveryId: string) {
    const teamId = this.team(principal, 'admin');
    const dlv = idOrNotFound(deliveryId, 'cdl', 'delivery');
    const row = await this.db.transaction(async (tx) => {
      const channel = await this.found(tx, teamId, id);
      const existing = endedDelivery(
        await repo.findDelivery(tx, teamId, channel.id, dlv, 'update'),
        deliveryId,
      );
      return repo.reopenDelivery(tx, existing, this.ctx.clock.now());
    });
    await this.deliveries.sendNow(row.id, row.attempts + 1);
    return deliveryView(row);
  }
}

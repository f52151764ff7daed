import type { Static } from 'typebox';
import { MINUTE_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { EVENT_TYPES, type EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import { endedDelivery } from './attempt-queue.ts';
import type { WebhookDeliveries } from './deliveries.ts';
import { webhookBody } from './dispatcher.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { newWebhookSecret } from './signing.ts';
import { attemptView, deliveryView, webhookView } from './views.ts';

export type CreateWebhookInput = Static<typeof s.CreateWebhookBody>;
export type UpdateWebhookInput = Static<typeof s.UpdateWebhookBody>;
export type WebhookListInput = Static<typeof s.WebhookListQuery>;

/** What webhooks need from the agents module: which of `ids` are no agent of the team. */
export type WebhookAgentsPort = (tx: DbOrTx, teamId: TeamId, ids: string[]) => Promise<string[]>;

/** Rungate: after a rotation the previous secret still signs for 10 minutes. */
export const ROTATION_GRACE_MS = 10 * MINUTE_MS;

function webhookId(raw: string): repo.WebhookId {
  return idOrNotFound(raw, 'whk', 'webhook');
}

function secretContext(id: string): string {
  return `webhook:${id}`;
}

/** Every type of the event map and every `noun.*` that names some; `webhook.test` is sent only by `test`. */
export function checkEventTypes(types: readonly string[], field = 'event_types'): void {
  const unknown = types.filter((t) =>
    t.endsWith('.*')
      ? !EVENT_TYPES.some((e) => e.startsWith(t.slice(0, -1)))
      : t === 'webhook.test' || !(EVENT_TYPES as readonly string[]).includes(t),
  );
  if (unknown.length > 0)
    throw new BadRequestError(
      'unknown_event_type',
      `${field} has ${unknown.length === 1 ? 'an unknown type' : 'unknown types'}: ${unknown.slice(0, 10).join(', ')} (see docs/events.md)`,
      { unknown: unknown.slice(0, 50) },
    );
}

/**
 * A URL Paddock will deliver to (webhooks, channels): https, or http for a
 * host on the allow-list; no credentials in it; and not a private address
 * (checked now, and again at every connection). Answers it without its fragment.
 */
export async function checkedDeliveryUrl(guard: OutboundGuard, raw: string, field: string): Promise<string> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BadRequestError(
      'invalid_url',
      `${field} is not an absolute URL (e.g. https://example.com/hooks)`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new BadRequestError('invalid_url', `${field} must be https, not ${url.protocol}`);
  if (url.username !== '' || url.password !== '')
    throw new BadRequestError('invalid_url', `${field} must not hold a user:password@ part`);
  if (url.protocol === 'http:' && !guard.allowListed(url.hostname))
    throw new BadRequestError(
      'insecure_url',
      `${field} must be https (http only for hosts the platform admin allows: PADDOCK_ALLOW_PRIVATE_UPSTREAMS)`,
    );
  url.hash = '';
  const refusal = await guard.checkUrl(url.href);
  if (refusal) throw new BadRequestError('url_not_allowed', `${field} refused: ${refusal}`);
  return url.href;
}

/**
 * Webhooks (Rungate): a team's endpoints, each subscribed to event types
 * (optionally one agent's events), signed per Standard Webhooks with a
 * secret shown once. The dispatcher (dispatcher.ts) makes their deliveries;
 * WebhookDeliveries makes the attempts.
 */
export class WebhooksService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    private readonly guard: OutboundGuard,
    private readonly deliveries: WebhookDeliveries,
    private readonly unknownAgents: WebhookAgentsPort,
  ) {}

  /** Agent keys never read or manage webhooks: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'webhooks');
  }

  private checkUrl(raw: string): Promise<string> {
    return checkedDeliveryUrl(this.guard, raw, 'url');
  }

  private async checkAgent(tx: DbOrTx, teamId: TeamId, agentId: string | null | undefined): Promise<void> {
    if (agentId === undefined || agentId === null) return;
    if ((await this.unknownAgents(tx, teamId, [agentId])).length > 0)
      throw new BadRequestError('unknown_agent', `agent_id ${agentId} is no agent of this team`, {
        agent_id: agentId,
      });
  }

  private async found(tx: DbOrTx, teamId: TeamId, id: string): Promise<repo.WebhookRow> {
    const row = await repo.findWebhook(tx, teamId, webhookId(id), 'update');
    if (!row) throw new NotFoundError('webhook', id);
    return row;
  }

  async create(principal: Principal, input: CreateWebhookInput) {
    const teamId = this.team(principal, 'write');
    checkEventTypes(input.event_types);
    const url = await this.checkUrl(input.url);
    const secret = newWebhookSecret();
    const row = await this.db.transaction(async (tx) => {
      await this.checkAgent(tx, teamId, input.agent_id);
      const id = newId('whk');
      const now = this.ctx.clock.now();
      const inserted = await repo.insertWebhook(tx, {
        id,
        teamId,
        url,
        eventTypes: input.event_types,
        agentId: input.agent_id ?? null,
        description: input.description ?? null,
        status: 'active',
        failureCount: 0,
        secretSealed: this.sealer.seal(secret, secretContext(id)),
        createdBy: actorOf(principal).actorId,
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        type: 'webhook.created',
        ...actorOf(principal),
        subjectId: id,
        data: { host: new URL(url).host, event_types: input.event_types, agent_id: inserted.agentId },
      });
      return inserted;
    });
    return { ...webhookView(row, this.ctx.clock.now()), secret };
  }

  async list(principal: Principal, query: WebhookListInput) {
    const teamId = this.team(principal, 'read');
    const now = this.ctx.clock.now();
    return pageOf(
      query,
      (cursor, rows) => repo.listWebhooks(this.db, teamId, cursor, rows),
      (row) => webhookView(row, now),
    );
  }

  async get(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const row = await repo.findWebhook(this.db, teamId, webhookId(id));
    if (!row) throw new NotFoundError('webhook', id);
    return webhookView(row, this.ctx.clock.now());
  }

  /** PATCH: the fields sent change; event_types is replaced, not merged. */
  async update(principal: Principal, id: string, input: UpdateWebhookInput) {
    const teamId = this.team(principal, 'write');
    if (input.event_types !== undefined) checkEventTypes(input.event_types);
    const url = input.url !== undefined ? await this.checkUrl(input.url) : undefined;
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      const patch: repo.WebhookPatch = {};
      if (url !== undefined && url !== existing.url) patch.url = url;
      if (input.event_types !== undefined && input.event_types.join() !== existing.eventTypes.join())
        patch.eventTypes = input.event_types;
      if (input.agent_id !== undefined && input.agent_id !== existing.agentId) {
        await this.checkAgent(tx, teamId, input.agent_id);
        patch.agentId = input.agent_id;
      }
      if (input.description !== undefined && input.description !== existing.description)
        patch.description = input.description;
      const changed = Object.keys(patch).map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
      if (changed.length === 0) return existing;
      patch.updatedAt = this.ctx.clock.now();
      const updated = (await repo.updateWebhook(tx, teamId, existing.id, patch))!;
      await this.events.record(tx, {
        teamId,
        type: 'webhook.updated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { host: new URL(updated.url).host, changed_fields: changed },
      });
      return updated;
    });
    return webhookView(row, this.ctx.clock.now());
  }

  /** Deletes the webhook with its deliveries and their log; queued attempts find nothing and end. */
  async remove(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'write');
    await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      await repo.deleteWebhook(tx, teamId, existing.id);
      await this.events.record(tx, {
        teamId,
        type: 'webhook.deleted',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { host: new URL(existing.url).host },
      });
    });
  }

  /** active (failure count back to 0) or paused; the same status again changes nothing. */
  async setStatus(principal: Principal, id: string, to: 'active' | 'paused') {
    const teamId = this.team(principal, 'write');
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      if (existing.status === to && (to === 'paused' || existing.failureCount === 0)) return existing;
      const updated = (await repo.updateWebhook(tx, teamId, existing.id, {
        status: to,
        ...(to === 'active' ? { failureCount: 0 } : {}),
        updatedAt: this.ctx.clock.now(),
      }))!;
      await this.events.record(tx, {
        teamId,
        type: to === 'active' ? 'webhook.enabled' : 'webhook.disabled',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { from: existing.status },
      });
      return updated;
    });
    return webhookView(row, this.ctx.clock.now());
  }

  /** A new secret, shown once; the old one keeps signing (a second signature) for ROTATION_GRACE_MS. */
  async rotateSecret(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const secret = newWebhookSecret();
    const now = this.ctx.clock.now();
    const expiresAt = new Date(now.getTime() + ROTATION_GRACE_MS);
    await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      await repo.updateWebhook(tx, teamId, existing.id, {
        secretSealed: this.sealer.seal(secret, secretContext(existing.id)),
        previousSecretSealed: existing.secretSealed,
        previousSecretExpiresAt: expiresAt,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        type: 'webhook.secret_rotated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { previous_secret_expires_at: expiresAt.toISOString() },
      });
    });
    return { id, secret, previous_secret_expires_at: expiresAt.toISOString() };
  }

  /** Ends a rotation's window now: only the current secret signs. Nothing pending changes nothing. */
  async expirePreviousSecret(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      if (existing.previousSecretSealed === null) return existing;
      const updated = (await repo.updateWebhook(tx, teamId, existing.id, {
        previousSecretSealed: null,
        previousSecretExpiresAt: null,
        updatedAt: this.ctx.clock.now(),
      }))!;
      await this.events.record(tx, {
        teamId,
        type: 'webhook.updated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { host: new URL(existing.url).host, changed_fields: ['previous_secret'] },
      });
      return updated;
    });
    return webhookView(row, this.ctx.clock.now());
  }

  /**
   * Sends a `webhook.test` event to the endpoint now, whatever its status
   * and subscriptions, once (no retries), and answers the attempt.
   */
  async test(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const hook = await repo.findWebhook(this.db, teamId, webhookId(id));
    if (!hook) throw new NotFoundError('webhook', id);
    const now = this.ctx.clock.now();
    const eventId = newId('evt');
    const body = webhookBody({
      id: eventId,
      type: 'webhook.test',
      ...(({ actorKind, actorId }) => ({ actor_kind: actorKind, actor_id: actorId }))(actorOf(principal)),
      subject_id: hook.id,
      data: { webhook_id: hook.id },
      created_at: now.toISOString(),
    });
    const [deliveryId] = await repo.insertDeliveries(this.db, [
      {
        id: newId('dlv'),
        teamId,
        webhookId: hook.id,
        eventId,
        eventType: 'webhook.test',
        payload: body,
        status: 'pending',
        attempts: 0,
        maxAttempts: 1,
        nextAttemptAt: now,
        createdAt: now,
        updatedAt: now,
      },
    ]);
    const attempt = await this.deliveries.attempt(deliveryId!, 1);
    if (!attempt) throw new ConflictError('test_not_sent', 'the test delivery was taken by another worker');
    const ok = attempt.statusCode !== null && attempt.statusCode >= 200 && attempt.statusCode < 300;
    return attemptView(attempt, ok ? 'succeeded' : 'failed');
  }

  /** The webhook's delivery attempts, newest first. */
  async attempts(principal: Principal, id: string, query: WebhookListInput) {
    const teamId = this.team(principal, 'read');
    const hook = await repo.findWebhook(this.db, teamId, webhookId(id));
    if (!hook) throw new NotFoundError('webhook', id);
    return pageOf(
      query,
      (cursor, rows) => repo.listAttempts(this.db, teamId, hook.id, cursor, rows),
      (r) => attemptView(r.attempt, r.deliveryStatus),
      (r) => r.attempt.id,
    );
  }

  /**
   * Sends an ended delivery (succeeded or failed) once more, with the same
   * webhook-id and body: one attempt, no retries. 409 while it is pending.
   */
  async redeliver(principal: Principal, id: string, deliveryId: string) {
    const teamId = this.team(principal, 'write');
    const whk = webhookId(id);
    const dlv = idOrNotFound(deliveryId, 'dlv', 'delivery');
    const row = await this.db.transaction(async (tx) => {
      const existing = endedDelivery(await repo.findDelivery(tx, teamId, whk, dlv, 'update'), deliveryId);
      return repo.reopenDelivery(tx, existing, this.ctx.clock.now());
    });
    await this.deliveries.sendAttempt(row.id, row.attempts + 1);
    return deliveryView(row);
  }
}

import type { Context } from '../../core/context.ts';
import { randomBase62, type TokenHasher } from '../../core/crypto.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { SuccessCriterion, TriggerType } from '../../db/schema/playbooks.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type { PlaybookRuns } from './runs.ts';
import {
  checkCriteria,
  checkTimezone,
  clampChainConfig,
  cronOf,
  nextRunAfter,
  type Timing,
} from './schedule.ts';
import type { CreatePlaybookInput, PlaybookListQueryType, UpdatePlaybookInput } from './schemas.ts';
import { playbookView, playbookWithToken } from './views.ts';

/** What playbooks need from the agents module. */
export type PlaybookAgentsPort = (tx: DbOrTx, teamId: TeamId, agentId: string) => Promise<boolean>;
/** What playbooks need from the channels module: which of these ids are not the team's channels. */
export type PlaybookChannelsPort = (tx: DbOrTx, teamId: TeamId, ids: string[]) => Promise<string[]>;

export const playbookId = (raw: string) => idOrNotFound(raw, 'pb', 'playbook');

/**
 * Playbooks (Vonzio): CRUD, the webhook token, and the scheduler's time
 * (`next_run_at`), recomputed in the statement of every change that moves it.
 * Firing and runs are in runs.ts, the leader and its tick in scheduler.ts.
 */
export class PlaybooksService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    private readonly agentExists: PlaybookAgentsPort,
    readonly runs: PlaybookRuns,
    private readonly unknownChannels: PlaybookChannelsPort,
  ) {}

  /** notification_channels must be the team's channels (a run's end is delivered to them). */
  private async checkChannels(tx: DbOrTx, teamId: TeamId, ids: string[] | undefined): Promise<void> {
    const unknown = ids ? await this.unknownChannels(tx, teamId, ids) : [];
    if (unknown.length > 0)
      throw new BadRequestError('unknown_channel', `${unknown.join(', ')} is not a channel of this team`, {
        notification_channels: unknown,
      });
  }

  team(principal: Principal, need: 'read' | 'write' | 'admin'): TeamId {
    return managedTeam(principal, need, 'playbooks');
  }

  async found(teamId: TeamId, raw: string): Promise<repo.PlaybookRow> {
    const row = await repo.findPlaybook(this.db, teamId, playbookId(raw));
    if (!row) throw new NotFoundError('playbook', raw);
    return row;
  }

  private newToken(): { token: string; hash: string; prefix: string } {
    const token = `pbh_${randomBase62(43)}`;
    return { token, hash: this.hasher.hash(token), prefix: token.slice(0, 12) };
  }

  async create(principal: Principal, input: CreatePlaybookInput) {
    const teamId = this.team(principal, 'write');
    const trigger: TriggerType = input.trigger ?? (input.interval_seconds ? 'interval' : 'cron');
    const timing = checkTiming({
      triggerType: trigger,
      schedule: input.schedule ?? null,
      timezone: input.timezone ?? 'UTC',
      intervalSeconds: input.interval_seconds ?? null,
      enabled: input.enabled ?? false,
    });
    if (input.success_criteria) checkCriteria(input.success_criteria as SuccessCriterion[]);
    const token = trigger === 'webhook' ? this.newToken() : undefined;
    const row = await this.db.transaction(async (tx) => {
      if (!(await this.agentExists(tx, teamId, input.agent_id)))
        throw new NotFoundError('agent', input.agent_id);
      await this.checkChannels(tx, teamId, input.notification_channels);
      const now = this.ctx.clock.now();
      const id = newId('pb');
      const inserted = await repo.insertPlaybook(tx, {
        id,
        teamId,
        agentId: input.agent_id,
        name: input.name,
        description: input.description ?? null,
        prompt: input.prompt,
        triggerType: timing.triggerType,
        schedule: timing.schedule,
        timezone: timing.timezone,
        intervalSeconds: timing.intervalSeconds,
        enabled: timing.enabled,
        chainConfig: clampChainConfig(input.chain_config),
        successCriteria: (input.success_criteria as SuccessCriterion[] | undefined) ?? null,
        notifyOn: input.notify_on ?? 'none',
        notificationChannels: input.notification_channels ?? [],
        webhookTokenHash: token?.hash ?? null,
        webhookTokenPrefix: token?.prefix ?? null,
        nextRunAt: nextRunAfter(timing, now),
        lastRunAt: null,
        createdBy: actorOf(principal).actorId,
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        ...actorOf(principal),
        subjectId: id,
        type: 'playbook.created',
        data: {
          name: input.name,
          agent_id: input.agent_id,
          trigger: timing.triggerType,
          enabled: timing.enabled,
        },
      });
      return inserted;
    });
    return playbookWithToken(row, token?.token);
  }

  async list(principal: Principal, q: PlaybookListQueryType) {
    const teamId = this.team(principal, 'read');
    const filter = {
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      ...(q.enabled !== undefined ? { enabled: q.enabled } : {}),
    };
    return pageOf(
      q,
      (cursor, rows) => repo.listPlaybooks(this.db, teamId, filter, cursor, rows),
      playbookView,
    );
  }

  async get(principal: Principal, id: string) {
    return playbookView(await this.found(this.team(principal, 'read'), id));
  }

  /**
   * PATCH: the fields sent change; a change of trigger, schedule, zone,
   * interval or enabled recomputes next_run_at from now. A playbook turned
   * into a webhook one gets a token (answered once); one turned away from
   * webhook loses it.
   */
  async update(principal: Principal, id: string, input: UpdatePlaybookInput) {
    const teamId = this.team(principal, 'write');
    if (input.success_criteria) checkCriteria(input.success_criteria as SuccessCriterion[]);
    let token: ReturnType<PlaybooksService['newToken']> | undefined;
    const row = await this.db.transaction(async (tx) => {
      const before = await repo.findPlaybook(tx, teamId, playbookId(id));
      if (!before) throw new NotFoundError('playbook', id);
      await this.checkChannels(tx, teamId, input.notification_channels);
      const timingFields = ['trigger', 'schedule', 'timezone', 'interval_seconds', 'enabled'] as const;
      const timingChanged = timingFields.some((f) => input[f] !== undefined);
      const timing = checkTiming({
        triggerType: input.trigger ?? before.triggerType,
        schedule: input.schedule !== undefined ? input.schedule : before.schedule,
        timezone: input.timezone ?? before.timezone,
        intervalSeconds:
          input.interval_seconds !== undefined ? input.interval_seconds : before.intervalSeconds,
        enabled: input.enabled ?? before.enabled,
      });
      const now = this.ctx.clock.now();
      const patch: repo.PlaybookPatch = {
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.prompt !== undefined ? { prompt: input.prompt } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.chain_config !== undefined
          ? { chainConfig: clampChainConfig(input.chain_config, before.chainConfig) }
          : {}),
        ...(input.success_criteria !== undefined
          ? { successCriteria: input.success_criteria as SuccessCriterion[] | null }
          : {}),
        ...(input.notify_on !== undefined ? { notifyOn: input.notify_on } : {}),
        ...(input.notification_channels !== undefined
          ? { notificationChannels: input.notification_channels }
          : {}),
        updatedAt: now,
      };
      if (timingChanged)
        Object.assign(patch, {
          triggerType: timing.triggerType,
          schedule: timing.schedule,
          timezone: timing.timezone,
          intervalSeconds: timing.intervalSeconds,
          enabled: timing.enabled,
          nextRunAt: nextRunAfter(timing, now),
        });
      if (timing.triggerType === 'webhook' && before.webhookTokenHash === null) {
        token = this.newToken();
        Object.assign(patch, { webhookTokenHash: token.hash, webhookTokenPrefix: token.prefix });
      } else if (timing.triggerType !== 'webhook' && before.webhookTokenHash !== null)
        Object.assign(patch, { webhookTokenHash: null, webhookTokenPrefix: null });
      const updated = await repo.updatePlaybook(tx, teamId, before.id, patch);
      if (!updated) throw new NotFoundError('playbook', id);
      await this.events.record(tx, {
        teamId,
        ...actorOf(principal),
        subjectId: before.id,
        type: 'playbook.updated',
        data: {
          name: updated.name,
          changed_fields: Object.keys(input),
          enabled: updated.enabled,
          next_run_at: updated.nextRunAt?.toISOString() ?? null,
        },
      });
      return updated;
    });
    return playbookWithToken(row, token?.token);
  }

  /** Its runs go with it; a run in flight is cancelled first (its task and workspace stopped). */
  async remove(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const row = await this.found(teamId, id);
    await this.runs.cancelActive(teamId, row.id, principal);
    await this.db.transaction(async (tx) => {
      const deleted = await repo.deletePlaybook(tx, teamId, row.id);
      if (!deleted) throw new NotFoundError('playbook', id);
      await this.events.record(tx, {
        teamId,
        ...actorOf(principal),
        subjectId: row.id,
        type: 'playbook.deleted',
        data: { name: row.name },
      });
    });
    return { status: 'deleted' as const, playbook_id: row.id };
  }

  /** A new webhook token (the old one stops working at once); only a webhook playbook has one. */
  async rotateToken(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const row = await this.found(teamId, id);
    if (row.triggerType !== 'webhook')
      throw new BadRequestError(
        'not_a_webhook_playbook',
        `playbook ${row.id} is triggered by ${row.triggerType}, not a webhook`,
      );
    const token = this.newToken();
    const updated = await this.db.transaction(async (tx) => {
      const u = await repo.updatePlaybook(tx, teamId, row.id, {
        webhookTokenHash: token.hash,
        webhookTokenPrefix: token.prefix,
        updatedAt: this.ctx.clock.now(),
      });
      await this.events.record(tx, {
        teamId,
        ...actorOf(principal),
        subjectId: row.id,
        type: 'playbook.updated',
        data: {
          name: row.name,
          changed_fields: ['webhook_token'],
          enabled: row.enabled,
          next_run_at: row.nextRunAt?.toISOString() ?? null,
        },
      });
      return u!;
    });
    return playbookWithToken(updated, token.token);
  }

  /** POST …/run: fires now, whatever the trigger and whether enabled. */
  async run(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const row = await this.found(teamId, id);
    const run = await this.runs.fire(row, { firedBy: 'manual', actor: actorOf(principal) });
    // Deleted at the same moment: the fire found no playbook row to move on.
    if (!run) throw new NotFoundError('playbook', id);
    this.startSoon(run, row);
    return run;
  }

  /** A fired run starts beside the answer (202); if this server dies first, the leader's tick starts it. */
  startSoon(run: { id: string; status: string } | undefined, pb: repo.PlaybookRow): void {
    if (run?.status !== 'queued') return;
    void this.runs
      .start(run.id as repo.RunId, pb)
      .catch((err: unknown) => this.ctx.log.warn({ err, run_id: run.id }, 'starting a playbook run failed'));
  }

  /**
   * The webhook token's playbook: 404 for an unknown token, a playbook that is
   * no longer a webhook one or a deleted team's; 409 while the team's scheduler is paused.
   */
  async byToken(token: string): Promise<repo.PlaybookRow> {
    const row = /^pbh_[0-9A-Za-z]{43}$/.test(token)
      ? await repo.findByTokenHash(this.db, this.hasher.hash(token))
      : undefined;
    if (row?.triggerType !== 'webhook') throw new NotFoundError('webhook');
    if (await repo.isPaused(this.db, row.teamId))
      throw new ConflictError(
        'scheduler_paused',
        'this team’s playbooks are paused; the webhook does not fire',
      );
    return row;
  }

  /** The hash that names a token to the throttle (never the token itself). */
  tokenKey(token: string): string {
    return this.hasher.hash(`playbook-hook\n${token}`).slice(0, 32);
  }
}

/** The timing fields checked together: what each trigger needs, and no more. */
function checkTiming(t: Timing): Timing {
  checkTimezone(t.timezone);
  if (t.triggerType === 'cron') {
    if (!t.schedule)
      throw new BadRequestError(
        'schedule_required',
        'a cron playbook needs schedule, a 5-field cron expression',
      );
    cronOf(t.schedule, t.timezone);
    return { ...t, schedule: t.schedule.trim(), intervalSeconds: null };
  }
  if (t.triggerType === 'interval') {
    if (!t.intervalSeconds)
      throw new BadRequestError(
        'interval_required',
        'an interval playbook needs interval_seconds (at least 60)',
      );
    if (t.intervalSeconds < 60)
      throw new BadRequestError('invalid_interval', 'interval_seconds must be at least 60');
    return { ...t, schedule: null };
  }
  return { ...t, schedule: null, intervalSeconds: null };
}

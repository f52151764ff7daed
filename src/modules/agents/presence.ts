import type { Static } from 'typebox';
import { SECOND_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import { NotFoundError } from '../../core/errors.ts';
import type { AgentId, TeamId } from '../../core/ids.ts';
import { ReadThroughCache } from '../../core/read-through-cache.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, managedTeam, type Principal, requireScope } from '../identity/principal.ts';
import * as presenceRepo from './presence-repo.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { type AgentsService, type AgentView, agentIdOf } from './service.ts';
import { presenceView } from './views.ts';

export interface PresenceOptions {
  /** How often the sweep looks for agents that fell silent (agent.offline). */
  sweepIntervalSec: number;
}
export const PRESENCE_DEFAULTS: PresenceOptions = { sweepIntervalSec: 10 };

type HeartbeatInput = Static<typeof s.HeartbeatBody>;
type HeartbeatAnswer = Static<typeof s.HeartbeatAnswer>;

const SWEEP_BATCH = 500;
/** Who did what: online and offline are Paddock's own findings, so they make no audit entry. */
const SYSTEM = { actorKind: 'system', actorId: 'agent_presence' } as const;
/** A team's paused agents, read on every claim of a team key: trusted this long (a pause here clears it). */
const PAUSED_CACHE = { ttlMs: 2000, refreshAheadMs: 500, max: 10_000 };

/**
 * Agents' presence (Orkosi's agent statuses, with the heartbeat it implies):
 * an agent says it is idle, working or blocked by heartbeats; silent for
 * three of its intervals it is offline (computed on every read, and marked by
 * a sweep that records agent.offline once; its next heartbeat records
 * agent.online). Pause and resume stop and restart its work-queue claims.
 */
export class AgentPresence {
  private readonly pausedCache = new ReadThroughCache<AgentId[]>(PAUSED_CACHE);
  private sweepTimer: Timer | undefined;
  private sweeping = false;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly agents: Pick<AgentsService, 'getForCall' | 'forgetCached' | 'view'>,
    private readonly options: PresenceOptions = PRESENCE_DEFAULTS,
  ) {}

  /**
   * Who may beat for the agent: its own key, or a person or team key that may
   * work the team's queues. Another agent's key is answered as an unknown agent.
   */
  private beater(principal: Principal, raw: string): { teamId: TeamId; id: AgentId } {
    const id = agentIdOf(raw);
    const teamId = activeTeam(principal);
    if (principal.kind === 'agent') {
      if (principal.agentId !== id) throw new NotFoundError('agent', raw);
    } else requireScope(principal, 'queue');
    return { teamId, id };
  }

  /**
   * A heartbeat: one statement while the agent stays online; its first
   * heartbeat, or its first after the sweep found it silent, records
   * agent.online with it.
   */
  async heartbeat(principal: Principal, raw: string, input: HeartbeatInput): Promise<HeartbeatAnswer> {
    const { teamId, id } = this.beater(principal, raw);
    const now = this.ctx.clock.now();
    const beat = { status: input.status, currentJob: input.current_job ?? null, at: now };
    const row =
      (await presenceRepo.beatWhileOnline(this.db, teamId, id, beat)) ??
      (await this.db.transaction(async (tx) => {
        const before = await presenceRepo.findPresence(tx, teamId, id, 'update');
        if (!before) throw new NotFoundError('agent', raw);
        const after = await presenceRepo.beatAny(tx, teamId, id, beat);
        if (before.offlineAt !== null || before.lastHeartbeatAt === null) {
          await this.events.record(tx, {
            teamId,
            type: 'agent.online',
            ...SYSTEM,
            subjectId: id,
            data: {
              name: after.name,
              status: input.status,
              offline_since: before.offlineAt?.toISOString() ?? null,
            },
          });
        }
        return after;
      }));
    return {
      agent_id: row.id,
      paused: row.pausedAt !== null,
      heartbeat_interval_sec: row.heartbeatIntervalSec,
      presence: presenceView(row, now),
    };
  }

  /** Stops the agent's work-queue claims (they answer nothing) until it is resumed; pausing a paused agent changes nothing. */
  pause(principal: Principal, raw: string): Promise<AgentView> {
    return this.setPaused(principal, raw, true);
  }

  /** Its claims work again; resuming an agent that is not paused changes nothing. */
  resume(principal: Principal, raw: string): Promise<AgentView> {
    return this.setPaused(principal, raw, false);
  }

  private async setPaused(principal: Principal, raw: string, pause: boolean): Promise<AgentView> {
    const teamId = managedTeam(principal, 'write', 'agents');
    const id = agentIdOf(raw);
    const now = this.ctx.clock.now();
    try {
      const row = await this.db.transaction(async (tx) => {
        const before = await repo.findAgent(tx, teamId, id, 'update');
        if (!before) throw new NotFoundError('agent', raw);
        if ((before.pausedAt !== null) === pause) return before;
        const after = (await repo.updateAgent(tx, teamId, id, {
          pausedAt: pause ? now : null,
          updatedAt: now,
        }))!;
        await this.events.record(
          tx,
          pause
            ? {
                teamId,
                type: 'agent.paused',
                ...actorOf(principal),
                subjectId: id,
                data: { name: after.name },
              }
            : {
                teamId,
                type: 'agent.resumed',
                ...actorOf(principal),
                subjectId: id,
                data: {
                  name: after.name,
                  paused_sec: Math.max(
                    0,
                    Math.round((now.getTime() - before.pausedAt!.getTime()) / SECOND_MS),
                  ),
                },
              },
        );
        return after;
      });
      return this.agents.view(row);
    } finally {
      this.pausedCache.clear();
      this.agents.forgetCached();
    }
  }

  // -- for the work queues --

  /** Whether the agent (an agent key's own, so no team check) is paused: the proxy's cached read. */
  async isPaused(agentId: string): Promise<boolean> {
    const row = await this.agents.getForCall(agentId as AgentId);
    return row !== undefined && row.pausedAt !== null;
  }

  /** The team's paused agents (cached briefly; a pause or resume on this server clears it). */
  pausedIn(teamId: TeamId): Promise<AgentId[]> {
    return this.pausedCache.get(teamId, () => presenceRepo.pausedAgentIds(this.db, teamId));
  }

  // -- the sweep --

  start(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = this.ctx.timers.every(this.options.sweepIntervalSec * SECOND_MS, () => {
      if (this.sweeping) return;
      void this.sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'agent presence sweep failed'));
    });
  }

  stop(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  /**
   * Marks offline every agent silent for three of its intervals that is not
   * marked yet, each with one agent.offline. Any server may run it: SKIP
   * LOCKED splits the rows, and a marked agent is not marked again.
   */
  async sweep(): Promise<number> {
    if (this.sweeping) return 0;
    this.sweeping = true;
    try {
      let marked = 0;
      for (;;) {
        const now = this.ctx.clock.now();
        const rows = await this.db.transaction(async (tx) => {
          const silent = await presenceRepo.systemMarkOffline(tx, now, SWEEP_BATCH);
          await this.events.recordAll(
            tx,
            silent.map((row) => ({
              teamId: row.teamId,
              type: 'agent.offline' as const,
              ...SYSTEM,
              subjectId: row.id,
              data: {
                name: row.name,
                last_heartbeat_at: row.lastHeartbeatAt!.toISOString(),
                heartbeat_interval_sec: row.heartbeatIntervalSec,
              },
            })),
          );
          return silent;
        });
        marked += rows.length;
        if (rows.length < SWEEP_BATCH) return marked;
      }
    } finally {
      this.sweeping = false;
    }
  }
}

import type { Timer } from '../../core/context.ts';
import type { CapsuleId } from '../../core/ids.ts';
import type { CapsuleStates } from './capsule-states.ts';
import * as repo from './repo.ts';
import type { SandboxOptions } from './service.ts';
import { SAMPLE_TEAMS_EVERY_MS, sampleTeams } from './stats.ts';

/**
 * The capsules' background work: at start, setting right what a previous
 * server left; then, every sweepIntervalMs on the context's timers (a test's
 * ManualTimers run it only when the test moves time), pausing idle capsules
 * and sampling every team's live capsules once a minute.
 */
export class CapsuleSweeps {
  private timer: Timer | undefined;
  private sweeping: Promise<void> | undefined;
  private lastTeamSample = 0;
  /**
   * Platform templates (minimal) by name: made at start, never changed, and
   * no team template may take their names, so a create from one needs no read.
   */
  readonly platformTemplates = new Map<string, repo.TemplateRow>();

  constructor(
    private readonly states: CapsuleStates,
    private readonly options: Pick<SandboxOptions, 'sweepIntervalMs'>,
    /** Pauses one capsule (the lifecycle's own pause, so a sweep and a user pause end alike). */
    private readonly pause: (c: repo.CapsuleRow, reason: string) => Promise<void>,
  ) {}

  /**
   * At start: capsules this server's hosts no longer run (their processes
   * died with the previous server) are stopped with a reason, and what they
   * left on disk is cleared; none is forgotten.
   */
  async recover(): Promise<void> {
    const { db } = this.states;
    for (const t of await repo.listPlatformTemplates(db)) this.platformTemplates.set(t.name, t);
    for (const host of this.states.localHosts()) {
      const rows = await repo.liveCapsulesOnHost(db, host.id);
      const gone = rows.filter((c) => !host.has(c.id));
      for (const c of gone) {
        await this.states.move(
          c.id,
          repo.LIVE_STATUSES,
          'stopped',
          c.status === 'stopping' ? 'deleted' : 'server_restarted',
        );
      }
      await host.cleanupLeftovers?.(
        gone.map((c) => c.id),
        this.states.ctx.log,
      );
    }
  }

  /** Pauses running capsules idle past their timeout_sec (Wrenn's TTL reaper: reason ttl_expired). */
  async sweepIdle(now: Date = this.states.ctx.clock.now()): Promise<CapsuleId[]> {
    const idle = await repo.idleCapsules(this.states.db, this.states.hostIds(), now);
    const paused: CapsuleId[] = [];
    for (const c of idle) {
      const pausing = await this.states.move(c.id, ['running'], 'pausing', 'ttl_expired');
      if (!pausing) continue;
      await this.pause(pausing, 'ttl_expired');
      paused.push(c.id);
    }
    return paused;
  }

  /** Every team's live capsules, once a minute from the sweep (stats series and peaks); `force` samples now. */
  async sampleTeams(now: Date = this.states.ctx.clock.now(), force = true): Promise<void> {
    if (!force && now.getTime() - this.lastTeamSample < SAMPLE_TEAMS_EVERY_MS) return;
    this.lastTeamSample = now.getTime();
    await sampleTeams(
      this.states.db,
      new Date(Math.floor(now.getTime() / SAMPLE_TEAMS_EVERY_MS) * SAMPLE_TEAMS_EVERY_MS),
    );
  }

  start(): void {
    this.timer = this.states.ctx.timers.every(this.options.sweepIntervalMs, () => {
      if (this.sweeping) return;
      this.sweeping = this.sweep().finally(() => (this.sweeping = undefined));
    });
  }

  /** One round; each part's failure is logged with what it was doing, and the other part still runs. */
  private async sweep(): Promise<void> {
    const { log, clock } = this.states.ctx;
    await this.sweepIdle().catch((err: unknown) =>
      log.error({ err }, 'capsule sweep: pausing idle capsules failed'),
    );
    await this.sampleTeams(clock.now(), false).catch((err: unknown) =>
      log.error({ err }, "capsule sweep: sampling the teams' capsules failed"),
    );
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    await this.sweeping;
  }
}

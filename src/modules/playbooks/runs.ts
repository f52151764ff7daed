// One file over 400 lines: a playbook run's steps (fire, start, advance from
// chain to chain, cancel) each take the same claim on the run's row and end
// in the same notifications; they are one state machine, read together.
import type { Context } from '../../core/context.ts';
import { AppError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { FiredBy, NotifyOn } from '../../db/schema/playbooks.ts';
import type { EventsService } from '../events/service.ts';
import { type Actor, actorOf, managedTeam, type Principal, systemPrincipal } from '../identity/principal.ts';
import * as repo from './repo.ts';
import { describeCriterion, failedCriteria } from './schedule.ts';
import type { RunListQueryType } from './schemas.ts';
import { runView } from './views.ts';

/** A task as a playbook run follows it. */
export interface ChainTask {
  id: string;
  status: string;
  workspace_id: string | null;
  result: unknown;
  error: { code: string; message: string } | null;
  turns: number;
  cost_usd: number;
}

/** What runs need from the tasks and workspaces modules (wired in app.ts). */
export interface PlaybookTaskPorts {
  /** A session task: it opens the run's workspace. */
  submit(
    principal: Principal,
    input: {
      agent_id: string;
      prompt: string;
      max_turns: number;
      max_budget_usd: number;
      timeout_sec: number;
      /** Kept by the workspace: every chain is offered only these. */
      allowed_tools: string[] | null;
    },
  ): Promise<ChainTask>;
  /** The next chain: a message to the run's workspace, a new session task with the chain's limits. */
  message(
    principal: Principal,
    workspaceId: string,
    content: string,
    limits: { max_turns: number; timeout_sec: number },
  ): Promise<ChainTask>;
  task(principal: Principal, taskId: string): Promise<ChainTask>;
  cancelTask(principal: Principal, taskId: string): Promise<void>;
  endWorkspace(principal: Principal, workspaceId: string): Promise<void>;
}

/**
 * Whether a run's end is one the playbook's notify_on asks for: `completion`
 * a run that passed, `failure` one that failed or whose criteria were not
 * met, `both` either; a cancelled run notifies nobody.
 */
function notifies(on: NotifyOn, failure: boolean): boolean {
  return on === 'both' || on === (failure ? 'failure' : 'completion');
}

/** A claim older than this is a process that died mid-step: another may take the run. */
const CLAIM_STALE_MS = 60_000;
const SUMMARY_CHARS = 2000;
const ENDED_TASK: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

const runId = (raw: string) => idOrNotFound(raw, 'pbr', 'playbook run');
const principalFor = (run: { teamId: TeamId; playbookId: string }) =>
  systemPrincipal(run.teamId, `playbook:${run.playbookId}`);

/**
 * Playbook runs: a fire records one (skipped when the playbook's previous
 * run is still active), its first chain is a session task, and each later
 * chain a message to the same workspace (the chain rule: docs/playbooks.md).
 * Every step is taken under a claim on the run's row, so two servers never
 * take the same step. A chain's end moves its run on at once on the server
 * that ran it (chainEnded); the leader's tick moves on what that missed (advance).
 */
export class PlaybookRuns {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly tasks: PlaybookTaskPorts,
  ) {}

  /**
   * Records a run of `pb` (for `slot`, a scheduled time, when the scheduler
   * fires it): the playbook row is updated first, which orders concurrent
   * fires of one playbook, then the overlap check. A slot already fired (or
   * moved on by another server) records nothing: undefined.
   */
  async fire(
    pb: repo.PlaybookRow,
    how: {
      firedBy: FiredBy;
      actor: { actorKind: string; actorId: string | null };
      slot?: { at: Date; next: Date | null };
      context?: string;
    },
  ) {
    const now = this.ctx.clock.now();
    const run = await this.db.transaction(async (tx) => {
      const moved = how.slot
        ? await repo.advanceSlot(tx, pb.id, how.slot.at, how.slot.next, now)
        : await repo.updatePlaybook(tx, pb.teamId, pb.id, { lastRunAt: now, updatedAt: now });
      if (!moved) return undefined;
      const active = await repo.activeRunOf(tx, pb.id);
      const row = await repo.insertRun(tx, {
        id: newId('pbr'),
        teamId: pb.teamId,
        playbookId: pb.id,
        agentId: pb.agentId,
        status: active ? 'skipped' : 'queued',
        decision: active ? 'skipped' : null,
        firedBy: how.firedBy,
        slotAt: how.slot?.at ?? null,
        context: how.context ?? null,
        finishedAt: active ? now : null,
        createdAt: now,
        updatedAt: now,
      });
      if (!row) return undefined;
      await this.events.record(tx, {
        teamId: pb.teamId,
        ...how.actor,
        subjectId: pb.id,
        type: 'playbook.fired',
        data: {
          run_id: row.id,
          fired_by: how.firedBy,
          slot_at: how.slot?.at.toISOString() ?? null,
          skipped: !!active,
        },
      });
      if (active)
        await this.events.record(tx, {
          teamId: pb.teamId,
          ...how.actor,
          subjectId: row.id,
          type: 'playbook_run.skipped',
          data: { playbook_id: pb.id, active_run_id: active.id },
        });
      return row;
    });
    return run && runView(run);
  }

  /** Starts a queued run: its first chain, a session task with the playbook's prompt (and the webhook's body). */
  async start(id: repo.RunId, pb: repo.PlaybookRow): Promise<void> {
    const now = this.ctx.clock.now();
    const run = await repo.claimRun(this.db, id, now, new Date(now.getTime() - CLAIM_STALE_MS));
    if (run?.status !== 'queued') return;
    const cc = pb.chainConfig;
    const prompt = run.context
      ? `${pb.prompt}\n\nThis run was started by a webhook. Its request body (JSON):\n\n${run.context}`
      : pb.prompt;
    let task: ChainTask;
    try {
      task = await this.tasks.submit(principalFor(run), {
        agent_id: pb.agentId,
        prompt,
        max_turns: cc.max_turns_per_chain,
        max_budget_usd: cc.budget_cap_usd,
        timeout_sec: cc.timeout_per_chain_seconds,
        allowed_tools: cc.allowed_tools,
      });
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      await this.finish(run, 'failed', 'fail', { code: err.code, message: err.message }, null);
      return;
    }
    const started = await this.db.transaction(async (tx) => {
      const row = await repo.updateActiveRun(tx, run.id, {
        status: 'running',
        taskId: task.id,
        workspaceId: task.workspace_id,
        chainsUsed: 1,
        startedAt: now,
        claimedAt: null,
        updatedAt: now,
      });
      if (row)
        await this.events.record(tx, {
          teamId: run.teamId,
          actorKind: 'system',
          actorId: 'playbooks',
          subjectId: run.id,
          type: 'playbook_run.started',
          data: { playbook_id: run.playbookId, task_id: task.id, workspace_id: task.workspace_id },
        });
      return row;
    });
    // Cancelled (or its playbook deleted) while the task was being submitted: the task is not left to run.
    if (!started) return this.abandon(run, task.id, task.workspace_id);
    // The task runs from its submit on, so its turn may have ended (and found no running run of it)
    // before this row named it: the run moves on now rather than at the leader's next tick.
    const chain = await this.tasks.task(principalFor(run), task.id);
    if (ENDED_TASK.has(chain.status)) await this.advance(run.id, pb);
  }

  /** A chain's task that no active run holds any more (the run ended meanwhile): cancelled, its workspace ended. */
  private async abandon(run: repo.RunRow, taskId: string, workspaceId: string | null): Promise<void> {
    const warn = (err: unknown) =>
      this.ctx.log.warn({ err, run_id: run.id, task_id: taskId }, 'abandoning a playbook run’s task failed');
    await this.tasks.cancelTask(principalFor(run), taskId).catch(warn);
    if (workspaceId) await this.tasks.endWorkspace(principalFor(run), workspaceId).catch(warn);
  }

  /**
   * A workspace turn ended on this server: if it was a running run's latest
   * chain, the run takes its next step now rather than at the leader's next
   * tick. A claim held elsewhere (that tick, at the same moment) leaves it to them.
   */
  async chainEnded(teamId: TeamId, taskId: string): Promise<void> {
    const run = await repo.runningRunOfTask(this.db, teamId, taskId);
    if (!run) return;
    const pb = await repo.findPlaybook(this.db, teamId, run.playbookId as repo.PlaybookId);
    if (pb) await this.advance(run.id, pb);
  }

  /**
   * One step of a running run whose chain's task has ended: the run ends
   * (pass, fail, failed) or, after chain_delay_ms, the next chain is sent.
   */
  async advance(id: repo.RunId, pb: repo.PlaybookRow): Promise<unknown> {
    const now = this.ctx.clock.now();
    const run = await repo.claimRun(this.db, id, now, new Date(now.getTime() - CLAIM_STALE_MS));
    if (!run) return;
    const release = () => repo.updateActiveRun(this.db, run.id, { claimedAt: null });
    if (run.status !== 'running' || !run.taskId) return void (await release());
    const task = await this.tasks.task(principalFor(run), run.taskId);
    if (!ENDED_TASK.has(task.status)) return void (await release());
    const totals = { turns: run.turns + task.turns, costUsd: run.costUsd + task.cost_usd };
    const answer = answerOf(task.result);
    const cc = pb.chainConfig;
    let followUp: string;
    let unmetNote = '';
    if (task.status === 'cancelled') return this.finish(run, 'cancelled', null, task.error, answer, totals);
    if (task.status === 'failed') {
      if (task.error?.code !== 'max_turns')
        return this.finish(
          run,
          'failed',
          'fail',
          task.error ?? { code: 'task_failed', message: 'the chain’s task failed' },
          answer,
          totals,
        );
      followUp = 'You ran out of turns for this step. Continue the work where you left off.';
    } else {
      const unmet = failedCriteria(pb.successCriteria ?? [], answer);
      if (unmet.length === 0) return this.finish(run, 'completed', 'pass', null, answer, totals);
      const checks = unmet.map(describeCriterion).join('; ');
      followUp = `The work is not done yet: these checks on your final answer fail: ${checks}. Continue, and answer again when they hold.`;
      unmetNote = `; failing: ${checks}`;
    }
    const cap =
      run.chainsUsed >= cc.max_chains
        ? {
            code: 'max_chains',
            message: `max_chains (${cc.max_chains}) reached before the work was done${unmetNote}`,
          }
        : totals.costUsd >= cc.budget_cap_usd
          ? {
              code: 'budget_cap',
              message: `budget_cap_usd (${cc.budget_cap_usd}) reached before the work was done${unmetNote}`,
            }
          : null;
    if (cap) return this.finish(run, 'completed', 'fail', cap, answer, totals);
    if (run.nextChainAt === null) {
      await repo.updateActiveRun(this.db, run.id, {
        nextChainAt: new Date(now.getTime() + cc.chain_delay_ms),
        claimedAt: null,
        updatedAt: now,
      });
      return;
    }
    if (run.nextChainAt > now) return void (await release());
    let next: ChainTask;
    try {
      next = await this.tasks.message(principalFor(run), run.workspaceId!, followUp, {
        max_turns: cc.max_turns_per_chain,
        timeout_sec: cc.timeout_per_chain_seconds,
      });
    } catch (err) {
      // The workspace is still closing the last turn (busy): the next tick tries again.
      if (err instanceof AppError && err.code === 'workspace_busy') return void (await release());
      if (!(err instanceof AppError)) throw err;
      return this.finish(run, 'failed', 'fail', { code: err.code, message: err.message }, answer, totals);
    }
    const moved = await repo.updateActiveRun(this.db, run.id, {
      taskId: next.id,
      chainsUsed: run.chainsUsed + 1,
      turns: totals.turns,
      costUsd: totals.costUsd,
      nextChainAt: null,
      claimedAt: null,
      updatedAt: now,
    });
    // Cancelled while the message was in flight: its chain does not run on.
    if (!moved) await this.abandon(run, next.id, run.workspaceId);
  }

  /** Ends an active run with its totals and event; its workspace (capsule) goes with it. */
  private async finish(
    run: repo.RunRow,
    status: 'completed' | 'failed' | 'cancelled',
    decision: 'pass' | 'fail' | null,
    error: { code: string; message: string } | null,
    answer: string | null,
    totals = { turns: run.turns, costUsd: run.costUsd },
    actor: Actor = { actorKind: 'system', actorId: 'playbooks' },
  ): Promise<repo.RunRow | undefined> {
    const now = this.ctx.clock.now();
    const ended = await this.db.transaction(async (tx) => {
      const row = await repo.updateActiveRun(tx, run.id, {
        status,
        decision,
        error,
        resultSummary: answer === null ? null : answer.slice(0, SUMMARY_CHARS),
        turns: totals.turns,
        costUsd: totals.costUsd,
        finishedAt: now,
        claimedAt: null,
        updatedAt: now,
      });
      if (!row) return undefined;
      const common = { playbook_id: run.playbookId, chains_used: row.chainsUsed, cost_usd: row.costUsd };
      const pb = await repo.findPlaybook(tx, run.teamId, run.playbookId as repo.PlaybookId);
      const notify = (failure: boolean) => {
        const ids = pb && notifies(pb.notifyOn, failure) ? pb.notificationChannels : [];
        return ids.length > 0 ? { notify_channel_ids: ids } : {};
      };
      if (status === 'completed')
        await this.events.record(tx, {
          teamId: run.teamId,
          ...actor,
          subjectId: run.id,
          type: 'playbook_run.completed',
          data: { ...common, decision: decision ?? 'fail', turns: row.turns, ...notify(decision !== 'pass') },
        });
      else if (status === 'failed')
        await this.events.record(tx, {
          teamId: run.teamId,
          ...actor,
          subjectId: run.id,
          type: 'playbook_run.failed',
          data: { ...common, code: error?.code ?? 'failed', ...notify(true) },
        });
      else
        await this.events.record(tx, {
          teamId: run.teamId,
          ...actor,
          subjectId: run.id,
          type: 'playbook_run.cancelled',
          data: { ...common, from: run.status },
        });
      return row;
    });
    if (ended?.workspaceId)
      await this.tasks
        .endWorkspace(principalFor(run), ended.workspaceId)
        .catch((err: unknown) =>
          this.ctx.log.warn({ err, run_id: run.id }, 'ending a playbook run’s workspace failed'),
        );
    return ended;
  }

  // -- the API ------------------------------------------------------------------------------

  async list(principal: Principal, q: RunListQueryType) {
    const teamId = managedTeam(principal, 'read', 'playbooks');
    const filter = {
      ...(q.playbook_id !== undefined ? { playbookId: q.playbook_id } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
    };
    return pageOf(q, (cursor, rows) => repo.listRuns(this.db, teamId, filter, cursor, rows), runView);
  }

  /** For modules that point at playbook runs (the work board's links): whether `raw` is a run of the team. */
  async isTeamRun(tx: DbOrTx, teamId: TeamId, raw: string): Promise<boolean> {
    return isId(raw, 'pbr') && (await repo.findRun(tx, teamId, raw)) !== undefined;
  }

  private async found(teamId: TeamId, raw: string): Promise<repo.RunRow> {
    const row = await repo.findRun(this.db, teamId, runId(raw));
    if (!row) throw new NotFoundError('playbook run', raw);
    return row;
  }

  async get(principal: Principal, id: string) {
    return runView(await this.found(managedTeam(principal, 'read', 'playbooks'), id));
  }

  /** Queued or running → cancelled (its task cancelled, its workspace ended); any other is a 409 run_not_active. */
  async cancel(principal: Principal, id: string) {
    const teamId = managedTeam(principal, 'write', 'playbooks');
    const run = await this.found(teamId, id);
    const ended = await this.cancelRun(run, principal);
    if (!ended) {
      const now = await this.found(teamId, id);
      throw new ConflictError(
        'run_not_active',
        `playbook run ${now.id} is ${now.status}; only a queued or running run can be cancelled`,
        {
          status: now.status,
        },
      );
    }
    return runView(ended);
  }

  private async cancelRun(run: repo.RunRow, principal: Principal): Promise<repo.RunRow | undefined> {
    const ended = await this.finish(
      run,
      'cancelled',
      null,
      { code: 'cancelled', message: 'the run was cancelled' },
      null,
      undefined,
      actorOf(principal),
    );
    if (ended?.taskId) await this.tasks.cancelTask(principalFor(run), ended.taskId).catch(() => undefined);
    return ended;
  }

  /** A deleted playbook's run in flight is cancelled first. */
  async cancelActive(teamId: TeamId, playbookId: repo.PlaybookId, principal: Principal): Promise<void> {
    const active = await repo.activeRunOf(this.db, playbookId);
    if (active && active.teamId === teamId) await this.cancelRun(active, principal);
  }
}

/** The chain's final answer as text: a string result as it is, anything else as JSON. */
function answerOf(result: unknown): string {
  if (result === null || result === undefined) return '';
  return typeof result === 'string' ? result : JSON.stringify(result);
}

import type { Context, Timer } from '../../core/context.ts';
import { AppError } from '../../core/errors.ts';
import type { Db } from '../../db/client.ts';
import { JobsStopping } from '../../jobs/jobs.ts';
import type { EventsService } from '../events/service.ts';
import { type Principal, systemPrincipal } from '../identity/principal.ts';
import * as repo from './repo.ts';

/** What a build does with capsules, as the team's system principal. */
export interface BuildCapsules {
  create(
    principal: Principal,
    input: { template: string; networkAllow: string[]; metadata: Record<string, string> },
  ): Promise<string>;
  /** Resolves with the capsule's status once it is running or has ended, or after `timeoutMs`. */
  waitRunning(principal: Principal, id: string, timeoutMs: number): Promise<string>;
  exec(
    principal: Principal,
    id: string,
    input: { cmd: string; args: string[]; envs: Record<string, string>; timeoutSec: number },
  ): Promise<{ stdout: string; stderr: string; exit_code: number }>;
  /** Copies the capsule's layer into the team template `name`, replacing one of that name. */
  snapshot(principal: Principal, id: string, name: string): Promise<void>;
  destroy(principal: Principal, id: string): Promise<void>;
}

/** The queue builds run on, and how long one may take before it counts as lost. */
export const BUILD_QUEUE = 'environment-build';
export const BUILD_TIME_LIMIT_SEC = 3600;
/** One retry: a build whose worker vanished (or whose server stopped) starts again from its base. */
export const BUILD_POLICY = { retryLimit: 1, retryDelaySec: 5, expireInSec: BUILD_TIME_LIMIT_SEC };
const COMMAND_TIMEOUT_SEC = 1800;
const LOG_LIMIT_BYTES = 1024 * 1024;
const SWEEP_EVERY_MS = 60_000;
/** A queued version whose job is older than this is sent again (the send after commit may have been lost). */
const REQUEUE_AFTER_MS = 2 * 60_000;

class BuildFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

class CapsuleLost extends Error {}

/** The build log: every step, its output and exit code, cut at 1 MiB. */
class BuildLog {
  private text = '';

  add(line: string): void {
    if (this.text.length >= LOG_LIMIT_BYTES) return;
    this.text += line.endsWith('\n') ? line : `${line}\n`;
    if (this.text.length >= LOG_LIMIT_BYTES)
      this.text = `${this.text.slice(0, LOG_LIMIT_BYTES)}\n[the build log is cut here at 1 MiB]\n`;
  }

  toString(): string {
    return this.text;
  }
}

interface Step {
  label: string;
  code: string;
  cmd: string;
  args: string[];
}

/**
 * The steps of a version's build, in order. Package names reach pip and npm
 * as arguments after `--` (the schema allows no option, path or URL), never
 * through a shell; setup commands are the team's own shell lines, run by
 * bash inside the capsule as its unprivileged user.
 */
function stepsOf(v: repo.VersionRow): Step[] {
  const steps: Step[] = [];
  if (v.pipPackages.length > 0)
    steps.push({
      label: `pip install ${v.pipPackages.join(' ')}`,
      code: 'packages_failed',
      cmd: 'sh',
      args: [
        '-c',
        'exec python3 -m pip install --user --no-input --disable-pip-version-check -- "$@"',
        'pip',
        ...v.pipPackages,
      ],
    });
  if (v.npmPackages.length > 0)
    steps.push({
      label: `npm install -g ${v.npmPackages.join(' ')}`,
      code: 'packages_failed',
      cmd: 'sh',
      args: [
        '-c',
        'exec npm install --global --prefix "$HOME/.local" --no-audit --no-fund -- "$@"',
        'npm',
        ...v.npmPackages,
      ],
    });
  for (const command of v.setupCommands)
    steps.push({ label: command, code: 'setup_failed', cmd: 'bash', args: ['-c', command] });
  return steps;
}

/**
 * Builds environment versions: a capsule from the version's base, its
 * packages and setup commands run in order (output to the build log), and
 * on success its layer kept as the version's template. Runs as a job (one
 * build at a time per worker, retried once after a worker vanished); a sweep
 * fails builds that outlived their time and re-sends queued ones.
 */
export class EnvironmentBuilder {
  private sweepTimer: Timer | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly capsules: BuildCapsules,
    private readonly queueBuild: (versionId: repo.EnvironmentVersionId) => Promise<void>,
  ) {}

  /**
   * The job's handler: builds the version if this job may take it (a queued
   * version, or the one this job was building before its worker vanished).
   */
  async build(versionId: repo.EnvironmentVersionId, jobId: string, signal: AbortSignal): Promise<void> {
    const v = await repo.systemClaimBuild(this.db, versionId, jobId, this.ctx.clock.now());
    if (!v) return;
    const principal = systemPrincipal(v.teamId, `environment_build:${v.id}`);
    const log = new BuildLog();
    let capsuleId: string | undefined;
    // Told to stop (time up, or the server stopping): removing the capsule ends the step in hand at once.
    const stopStep = () => {
      if (capsuleId !== undefined) void this.capsules.destroy(principal, capsuleId).catch(() => undefined);
    };
    signal.addEventListener('abort', stopStep, { once: true });
    try {
      log.add(`building ${v.environmentId} version ${v.version} from ${v.base}`);
      capsuleId = await this.capsules.create(principal, {
        template: v.base,
        networkAllow: v.networkAllow,
        metadata: { environment_version_id: v.id },
      });
      const status = await this.capsules.waitRunning(principal, capsuleId, 60_000);
      if (signal.aborted) throw signal.reason;
      if (status !== 'running')
        throw new BuildFailure('capsule_failed', `the build capsule is ${status}, not running`);
      for (const [i, step] of stepsOf(v).entries()) {
        if (signal.aborted) throw signal.reason;
        log.add(`$ ${step.label}`);
        const r = await this.capsules.exec(principal, capsuleId, {
          cmd: step.cmd,
          args: step.args,
          envs: v.envVars,
          timeoutSec: COMMAND_TIMEOUT_SEC,
        });
        if (r.stdout) log.add(r.stdout);
        if (r.stderr) log.add(r.stderr);
        log.add(`[exit ${r.exit_code}]`);
        if (r.exit_code === 0) {
          // Readers of a long build see each step's output as it ends, not all of it at the end.
          await repo.systemBuildProgress(this.db, v.id, jobId, log.toString());
          continue;
        }
        if (signal.aborted) throw signal.reason;
        if ((await this.capsules.waitRunning(principal, capsuleId, 1)) !== 'running') {
          // The capsule went away under the step (its host restarted): not the step's fault. The
          // version stays building and the job's retry builds it again.
          throw new CapsuleLost(`the build capsule ${capsuleId} ended during step ${i + 1}`);
        }
        const which =
          step.code === 'setup_failed' ? `setup command ${i + 1 - packageSteps(v)}` : 'installing packages';
        throw new BuildFailure(
          step.code,
          `${which} (${step.label.slice(0, 200)}) exited with ${r.exit_code}`,
        );
      }
      const template = `env-${v.id.toLowerCase()}`;
      await this.capsules.snapshot(principal, capsuleId, template);
      log.add(`ready: template ${template}`);
      await this.finish(v, jobId, { status: 'ready', templateName: template, buildLog: log.toString() });
    } catch (err) {
      // The server is stopping, or the capsule was lost: the version stays building for the job's retry.
      if (signal.reason instanceof JobsStopping) throw signal.reason;
      if (err instanceof CapsuleLost && !signal.aborted) throw err;
      const failure = this.failureOf(err, signal, v.id);
      log.add(`failed: ${failure.message}`);
      await this.finish(v, jobId, {
        status: 'failed',
        error: { code: failure.code, message: failure.message },
        buildLog: log.toString(),
      });
    } finally {
      signal.removeEventListener('abort', stopStep);
      if (capsuleId !== undefined) {
        await this.capsules
          .destroy(principal, capsuleId)
          .catch((err: unknown) =>
            this.ctx.log.warn({ err, capsule_id: capsuleId }, 'a build capsule could not be removed'),
          );
      }
    }
  }

  /** What a failed build says: its own failure, the time limit, a refusal with its message, or a plain "failed". */
  private failureOf(err: unknown, signal: AbortSignal, versionId: string): BuildFailure {
    if (signal.aborted)
      return new BuildFailure('build_timed_out', `the build ran past ${BUILD_TIME_LIMIT_SEC} s`);
    if (err instanceof BuildFailure) return err;
    if (err instanceof AppError)
      return new BuildFailure('capsule_failed', `the build capsule: ${err.message}`);
    // Anything else is the server's own trouble: logged, never shown (its text may name internals).
    this.ctx.log.error({ err, environment_version_id: versionId }, 'an environment build failed');
    return new BuildFailure('build_error', 'the build failed on the server; see the server log');
  }

  /** Writes the outcome and its event in one transaction, if the version is still this job's building. */
  private async finish(
    v: repo.VersionRow,
    jobId: string | null,
    patch: Pick<repo.VersionPatch, 'status' | 'templateName' | 'buildLog' | 'error'>,
  ): Promise<void> {
    const now = this.ctx.clock.now();
    await this.db.transaction(async (tx) => {
      const done = await repo.systemFinishBuild(tx, v.id, jobId, {
        ...patch,
        buildFinishedAt: now,
        updatedAt: now,
      });
      if (!done) return;
      const actor = {
        teamId: v.teamId,
        actorKind: 'system',
        actorId: `environment_build:${v.id}`,
        subjectId: v.id,
      };
      if (done.status === 'ready') {
        await this.events.record(tx, {
          ...actor,
          type: 'environment.build_succeeded',
          data: { environment_id: v.environmentId, version: v.version, template: done.templateName ?? '' },
        });
      } else {
        await this.events.record(tx, {
          ...actor,
          type: 'environment.build_failed',
          data: {
            environment_id: v.environmentId,
            version: v.version,
            code: done.error?.code ?? 'build_error',
            message: done.error?.message ?? '',
          },
        });
      }
    });
  }

  /**
   * Builds that outlived their time twice over (their worker died, and so
   * did its retry's) fail as `build_interrupted`. A version queued for a
   * while is sent again (the send after its commit may have been lost), at
   * most once per REQUEUE_AFTER_MS: a second job for it finds it taken.
   */
  async sweep(): Promise<void> {
    const now = this.ctx.clock.now();
    const lostBefore = new Date(now.getTime() - (2 * BUILD_TIME_LIMIT_SEC + 60) * 1000);
    for (const v of await repo.systemStaleVersions(this.db, ['building'], lostBefore, 100)) {
      await this.finish(v, null, {
        status: 'failed',
        error: { code: 'build_interrupted', message: 'the build stopped without an outcome' },
      });
    }
    const queuedBefore = new Date(now.getTime() - REQUEUE_AFTER_MS);
    for (const v of await repo.systemStaleVersions(this.db, ['queued'], queuedBefore, 100)) {
      await repo.systemUpdateVersion(this.db, v.id, { updatedAt: now });
      await this.queueBuild(v.id);
    }
  }

  start(): void {
    this.sweepTimer ??= this.ctx.timers.every(SWEEP_EVERY_MS, () => {
      this.sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'could not sweep environment builds'));
    });
  }

  close(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }
}

function packageSteps(v: repo.VersionRow): number {
  return (v.pipPackages.length > 0 ? 1 : 0) + (v.npmPackages.length > 0 ? 1 : 0);
}

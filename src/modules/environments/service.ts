// One file over 400 lines: every operation on an environment (create,
// update, fork, archive, pin, versions) goes through the same rule that a
// change to the spec makes the next immutable version.
import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { isId, newId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf, versionCursor } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { type EnvironmentView, environmentView, PLATFORM_ENVIRONMENTS, versionView } from './views.ts';

export type CreateEnvironmentInput = Static<typeof s.CreateEnvironmentBody>;
export type UpdateEnvironmentInput = Static<typeof s.UpdateEnvironmentBody>;
export type { EnvironmentView, VersionView } from './views.ts';

/** What a version runs: a change to any of these makes a new version. */
type Spec = Pick<
  repo.VersionRow,
  'base' | 'setupCommands' | 'pipPackages' | 'npmPackages' | 'envVars' | 'networkAllow'
>;

/** What environments need from elsewhere: whether a base template exists, and a way to start a build. */
export interface EnvironmentPorts {
  templateExists(teamId: TeamId, name: string): Promise<boolean>;
  /** Queues the build of a version (the builder's job). */
  queueBuild(versionId: repo.EnvironmentVersionId): Promise<void>;
}

function platformEnvironment(id: string): EnvironmentView | undefined {
  return PLATFORM_ENVIRONMENTS.find((e) => e.id === id || e.name === id);
}

function readOnly(name: string): ForbiddenError {
  return new ForbiddenError(
    'platform_environment',
    `${name} is a platform environment: it cannot be changed; fork it to make your own`,
  );
}

function nameTaken(name: string): ConflictError {
  return new ConflictError(
    'environment_name_taken',
    `an environment named "${name}" already exists in this team`,
    {
      name,
    },
  );
}

function specOf(input: Partial<CreateEnvironmentInput>, from?: Spec): Spec {
  return {
    base: input.base ?? from?.base ?? 'minimal',
    setupCommands: input.setup_commands ?? from?.setupCommands ?? [],
    pipPackages: input.pip_packages ?? from?.pipPackages ?? [],
    npmPackages: input.npm_packages ?? from?.npmPackages ?? [],
    envVars: input.env_vars ?? from?.envVars ?? {},
    networkAllow: input.network_allow ?? from?.networkAllow ?? [],
  };
}

function sameSpec(a: Spec, b: Spec): boolean {
  return JSON.stringify(specOf({}, a)) === JSON.stringify(specOf({}, b));
}

/**
 * Environments (AgentContainer's containers): what a task's capsule starts
 * from, as numbered, immutable versions, each built once into a template.
 * Name and description change in place; anything that changes what runs
 * makes a new version and builds it, and versions already made stay as they
 * were (agent versions pin them).
 */
export class EnvironmentsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly ports: EnvironmentPorts,
  ) {}

  /** Agent keys never read or manage environments: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'environments');
  }

  private async checkBase(teamId: TeamId, base: string): Promise<void> {
    if (PLATFORM_ENVIRONMENTS.some((e) => e.current_version.template === base)) return;
    if (!(await this.ports.templateExists(teamId, base)))
      throw new BadRequestError(
        'invalid_base',
        `base ${base} is neither minimal nor a template of this team`,
        {
          base,
        },
      );
  }

  private async found(db: DbOrTx, teamId: TeamId, id: string, lock?: 'update') {
    const env = isId(id, 'env') ? await repo.findEnvironment(db, teamId, id, lock) : undefined;
    if (!env) throw new NotFoundError('environment', id);
    return env;
  }

  private async withCurrent(db: DbOrTx, env: repo.EnvironmentRow) {
    const current = await repo.findVersion(db, env.teamId, env.id, env.currentVersion);
    return environmentView(env, current!);
  }

  /** A new version of `env` (its next number) in the transaction; the caller queues its build after commit. */
  private async addVersion(
    tx: DbOrTx,
    principal: Principal,
    env: repo.EnvironmentRow,
    spec: Spec,
    version: number,
  ) {
    const now = this.ctx.clock.now();
    return repo.insertVersion(tx, {
      id: newId('envv'),
      environmentId: env.id,
      teamId: env.teamId,
      version,
      ...spec,
      status: 'queued',
      createdBy: actorOf(principal).actorId,
      createdAt: now,
      updatedAt: now,
    });
  }

  private async insertEnvironment(
    principal: Principal,
    teamId: TeamId,
    fields: { name: string; description: string | null; forkedFrom: string | null },
    spec: Spec,
  ) {
    await this.checkBase(teamId, spec.base);
    try {
      const { env, version } = await this.db.transaction(async (tx) => {
        if (await repo.findLiveEnvironmentByName(tx, teamId, fields.name)) throw nameTaken(fields.name);
        const now = this.ctx.clock.now();
        const env = await repo.insertEnvironment(tx, {
          id: newId('env'),
          teamId,
          ...fields,
          currentVersion: 1,
          createdBy: actorOf(principal).actorId,
          createdAt: now,
          updatedAt: now,
        });
        const version = await this.addVersion(tx, principal, env, spec, 1);
        await this.events.record(tx, {
          teamId,
          type: 'environment.created',
          ...actorOf(principal),
          subjectId: env.id,
          data: { name: env.name, version: 1, forked_from: fields.forkedFrom },
        });
        return { env, version };
      });
      await this.ports.queueBuild(version.id);
      return environmentView(env, version);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(fields.name);
      throw err;
    }
  }

  async create(principal: Principal, input: CreateEnvironmentInput) {
    const teamId = this.team(principal, 'write');
    return this.insertEnvironment(
      principal,
      teamId,
      { name: input.name, description: input.description ?? null, forkedFrom: null },
      specOf(input),
    );
  }

  /** The platform's environments first (on the first page), then the team's, newest first. */
  async list(principal: Principal, query: PageQuery) {
    const teamId = this.team(principal, 'read');
    const page = await pageOf(
      query,
      (cursor, rows) => repo.listEnvironments(this.db, teamId, cursor, rows),
      (env) => env,
    );
    const data: EnvironmentView[] = query.cursor === undefined ? [...PLATFORM_ENVIRONMENTS] : [];
    for (const env of page.data) data.push(await this.withCurrent(this.db, env));
    return { data, next_cursor: page.next_cursor };
  }

  async get(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const platform = platformEnvironment(id);
    if (platform) return platform;
    return this.withCurrent(this.db, await this.found(this.db, teamId, id));
  }

  /** Name and description change in place; a change to what runs makes a new version and builds it. */
  async update(principal: Principal, id: string, input: UpdateEnvironmentInput) {
    const teamId = this.team(principal, 'write');
    const platform = platformEnvironment(id);
    if (platform) throw readOnly(platform.name);
    if (input.base !== undefined) await this.checkBase(teamId, input.base);
    try {
      const { view, queued } = await this.db.transaction(async (tx) => {
        const env = await this.found(tx, teamId, id, 'update');
        if (env.archivedAt) throw new ConflictError('environment_archived', `environment ${id} is archived`);
        const current = (await repo.findVersion(tx, teamId, env.id, env.currentVersion))!;
        const changed: string[] = [];
        const patch: Parameters<typeof repo.updateEnvironment>[3] = {};
        if (input.name !== undefined && input.name !== env.name) {
          if (await repo.findLiveEnvironmentByName(tx, teamId, input.name)) throw nameTaken(input.name);
          patch.name = input.name;
          changed.push('name');
        }
        if (input.description !== undefined && input.description !== env.description) {
          patch.description = input.description;
          changed.push('description');
        }
        const spec = specOf(input, current);
        let version = current;
        if (!sameSpec(spec, current)) {
          const next = (await repo.latestVersionNumber(tx, env.id)) + 1;
          version = await this.addVersion(tx, principal, env, spec, next);
          patch.currentVersion = next;
          changed.push('version');
        }
        if (changed.length === 0) return { view: environmentView(env, current), queued: undefined };
        patch.updatedAt = this.ctx.clock.now();
        const updated = (await repo.updateEnvironment(tx, teamId, env.id, patch))!;
        await this.events.record(tx, {
          teamId,
          type: 'environment.updated',
          ...actorOf(principal),
          subjectId: env.id,
          data: { name: updated.name, changed_fields: changed, version: updated.currentVersion },
        });
        return { view: environmentView(updated, version), queued: version === current ? undefined : version };
      });
      if (queued) await this.ports.queueBuild(queued.id);
      return view;
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /** A new environment of the team whose version 1 runs what `id`'s current version runs (built anew). */
  async fork(principal: Principal, id: string, input: { name?: string }) {
    const teamId = this.team(principal, 'write');
    const platform = platformEnvironment(id);
    let source: { name: string; id: string; spec: Spec; description: string | null };
    if (platform) {
      const v = platform.current_version;
      source = {
        id: platform.id,
        name: platform.name,
        description: platform.description,
        spec: {
          base: v.base,
          setupCommands: v.setup_commands,
          pipPackages: v.pip_packages,
          npmPackages: v.npm_packages,
          envVars: v.env_vars,
          networkAllow: v.network_allow,
        },
      };
    } else {
      const env = await this.found(this.db, teamId, id);
      const current = (await repo.findVersion(this.db, teamId, env.id, env.currentVersion))!;
      source = { id: env.id, name: env.name, description: env.description, spec: current };
    }
    const name = input.name ?? (await this.freeName(teamId, source.name));
    return this.insertEnvironment(
      principal,
      teamId,
      { name, description: source.description, forkedFrom: source.id },
      specOf({}, source.spec),
    );
  }

  /** `<name>-fork`, then `-fork-2` …, within the name's 100 characters; past 50 tries a random suffix. */
  private async freeName(teamId: TeamId, source: string): Promise<string> {
    const base = `${source.slice(0, 85)}-fork`;
    for (let i = 1; i <= 50; i++) {
      const name = i === 1 ? base : `${base}-${i}`;
      if (!(await repo.findLiveEnvironmentByName(this.db, teamId, name))) return name;
    }
    return `${base}-${newId('env').slice(-8).toLowerCase()}`;
  }

  /** Archives the environment: it leaves lists and takes no new versions; its versions stay for what pins them. */
  async archive(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'write');
    const platform = platformEnvironment(id);
    if (platform) throw readOnly(platform.name);
    await this.db.transaction(async (tx) => {
      const env = await this.found(tx, teamId, id, 'update');
      if (env.archivedAt) return;
      const now = this.ctx.clock.now();
      await repo.updateEnvironment(tx, teamId, env.id, { archivedAt: now, updatedAt: now });
      await this.events.record(tx, {
        teamId,
        type: 'environment.archived',
        ...actorOf(principal),
        subjectId: env.id,
        data: { name: env.name },
      });
    });
  }

  /**
   * For agents: the environment version a definition pins — the version named
   * (`environment_version_id`), or the current version of the environment
   * named. An archived environment takes no new pins; a 400 names what is wrong.
   */
  async pin(
    teamId: TeamId,
    asked: { environment_id?: string; environment_version_id?: string },
  ): Promise<{ environment_id: string; environment_version_id: string; environment_version: number }> {
    const invalid = (message: string) =>
      new BadRequestError('invalid_environment', message, {
        ...(asked.environment_id !== undefined ? { environment_id: asked.environment_id } : {}),
        ...(asked.environment_version_id !== undefined
          ? { environment_version_id: asked.environment_version_id }
          : {}),
      });
    const platformPin = (p: EnvironmentView) => ({
      environment_id: p.id,
      environment_version_id: p.current_version.id,
      environment_version: 1,
    });
    if (asked.environment_version_id !== undefined) {
      const vid = asked.environment_version_id;
      const platform = PLATFORM_ENVIRONMENTS.find((e) => e.current_version.id === vid);
      let pinned: { environment_id: string; environment_version_id: string; environment_version: number };
      if (platform) pinned = platformPin(platform);
      else {
        const v = isId(vid, 'envv') ? await repo.findVersionById(this.db, teamId, vid) : undefined;
        if (!v) throw invalid(`${vid} is not an environment version of this team`);
        const env = await repo.findEnvironment(this.db, teamId, v.environmentId);
        if (!env || env.archivedAt) throw invalid(`the environment of ${vid} is archived`);
        pinned = {
          environment_id: v.environmentId,
          environment_version_id: v.id,
          environment_version: v.version,
        };
      }
      if (asked.environment_id !== undefined && asked.environment_id !== pinned.environment_id)
        throw invalid(`${vid} is a version of ${pinned.environment_id}, not of ${asked.environment_id}`);
      return pinned;
    }
    const id = asked.environment_id ?? 'env_minimal';
    const platform = platformEnvironment(id);
    if (platform) return platformPin(platform);
    const env = isId(id, 'env') ? await repo.findEnvironment(this.db, teamId, id) : undefined;
    if (!env) throw invalid(`${id} is not an environment of this team`);
    if (env.archivedAt) throw invalid(`environment ${id} is archived`);
    const current = (await repo.findVersion(this.db, teamId, env.id, env.currentVersion))!;
    return {
      environment_id: env.id,
      environment_version_id: current.id,
      environment_version: current.version,
    };
  }

  /**
   * For the tasks module: what a task's capsule starts from at an environment
   * version of the team (or the platform's), as its build left it.
   */
  async forTask(teamId: TeamId, versionId: string) {
    const platform = PLATFORM_ENVIRONMENTS.find((e) => e.current_version.id === versionId);
    if (platform) {
      const v = platform.current_version;
      return {
        id: v.id,
        status: v.status,
        template: v.template,
        envVars: v.env_vars,
        networkAllow: v.network_allow,
        error: null,
      };
    }
    const v = isId(versionId, 'envv') ? await repo.findVersionById(this.db, teamId, versionId) : undefined;
    if (!v) return undefined;
    return {
      id: v.id,
      status: v.status,
      template: v.templateName,
      envVars: v.envVars,
      networkAllow: v.networkAllow,
      error: v.error ?? null,
    };
  }

  // -- versions -----------------------------------------------------------------

  async versions(principal: Principal, id: string, query: PageQuery) {
    const teamId = this.team(principal, 'read');
    const platform = platformEnvironment(id);
    if (platform) return { data: [platform.current_version], next_cursor: null };
    const env = await this.found(this.db, teamId, id);
    return pageOf(
      query,
      (cursor, rows) => repo.listVersions(this.db, teamId, env.id, versionCursor(cursor), rows),
      versionView,
      (v) => String(v.version),
    );
  }

  private async versionRow(principal: Principal, id: string, n: number) {
    const teamId = this.team(principal, 'read');
    const env = await this.found(this.db, teamId, id);
    const v = await repo.findVersion(this.db, teamId, env.id, n);
    if (!v) throw new NotFoundError('environment version', `${id} v${n}`);
    return v;
  }

  async version(principal: Principal, id: string, n: number) {
    const platform = platformEnvironment(id);
    if (platform) {
      this.team(principal, 'read');
      if (n !== 1) throw new NotFoundError('environment version', `${id} v${n}`);
      return platform.current_version;
    }
    return versionView(await this.versionRow(principal, id, n));
  }

  async buildLog(principal: Principal, id: string, n: number): Promise<string> {
    if (platformEnvironment(id)) {
      await this.version(principal, id, n);
      return '';
    }
    return (await this.versionRow(principal, id, n)).buildLog;
  }
}

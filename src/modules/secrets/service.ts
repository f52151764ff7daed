import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { BadRequestError, ConflictError, NotFoundError, ValidationError } from '../../core/errors.ts';
import { type AgentId, isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import { ENV_NAME_PATTERN, MAX_NAME_LENGTH, NAME_RULE } from '../sandboxes/envs.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { secretVersionView, secretView } from './views.ts';

export type CreateSecretInput = Static<typeof s.CreateSecretBody>;
export type UpdateSecretInput = Static<typeof s.UpdateSecretBody>;
export type PutSecretInput = Static<typeof s.PutSecretBody>;
export type SecretListInput = Static<typeof s.SecretListQuery>;
export type SecretHistoryInput = Static<typeof s.SecretHistoryQuery>;
export type { SecretView } from './views.ts';

/**
 * Counts one reveal against the team's limit, or refuses it (429
 * rate_limited). The identity module's throttles, handed in by app.ts.
 */
export type RevealThrottle = (teamId: TeamId) => Promise<unknown>;

/** What secrets need from the agents module: which named agents are not live agents of the team. */
export type SecretAgentsPort = (tx: DbOrTx, teamId: TeamId, ids: readonly string[]) => Promise<string[]>;

/** A secret as a task's tool processes get it. */
export interface OpenedSecret {
  name: string;
  value: string;
}

/** The sealed value is bound to its row: a value copied into another row does not open. */
export function secretSealContext(id: string): string {
  return `secret:${id}`;
}

function nameTaken(name: string): ConflictError {
  return new ConflictError('secret_name_taken', `a secret named ${name} already exists in this team`, {
    name,
  });
}

const SECRET_NAME = new RegExp(ENV_NAME_PATTERN);

/** `{id}` in a path: a secret's id, or its name (the two never look alike: ids are lower-case). */
async function findByRef(
  db: DbOrTx,
  teamId: TeamId,
  ref: string,
  lock?: 'update',
): Promise<repo.SecretRow | undefined> {
  if (isId(ref, 'sec')) return repo.findSecret(db, teamId, ref, lock);
  if (isSecretName(ref)) return repo.findSecretByName(db, teamId, ref, lock);
  return undefined;
}

function isSecretName(ref: string): boolean {
  return ref.length <= MAX_NAME_LENGTH && SECRET_NAME.test(ref);
}

/**
 * Secrets (Vonzio's): a team's named values for the tool processes of its
 * agents' tasks. Sealed at rest, shown only as eight bullets, never logged or
 * put in an event; `forAgent` opens them for the runner and nothing else does.
 */
export class SecretsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    private readonly unknownAgents: SecretAgentsPort,
    private readonly revealThrottle: RevealThrottle,
  ) {}

  private async mustFind(db: DbOrTx, teamId: TeamId, ref: string, lock?: 'update') {
    const row = await findByRef(db, teamId, ref, lock);
    if (!row) throw new NotFoundError('secret', ref);
    return row;
  }

  /** Version `version` of a secret's value, set now by `principal`: its history row. */
  private async recordVersion(tx: DbOrTx, principal: Principal, row: repo.SecretRow, at: Date) {
    const actor = actorOf(principal);
    await repo.insertSecretVersion(tx, {
      secretId: row.id,
      version: row.valueVersion,
      teamId: row.teamId,
      changedByKind: actor.actorKind,
      changedBy: actor.actorId,
      changedAt: at,
    });
  }

  /** Agent keys never read or manage secrets: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'secrets');
  }

  /** scope agents names at least one live agent of the team; scope all names none. */
  private async checkScope(tx: DbOrTx, teamId: TeamId, scope: 'all' | 'agents', agentIds: readonly string[]) {
    if (scope === 'all' && agentIds.length > 0)
      throw new ValidationError('the request body is invalid: agent_ids is only for scope agents', {
        agent_ids: 'is only for scope agents',
      });
    if (scope === 'agents' && agentIds.length === 0)
      throw new ValidationError(
        'the request body is invalid: agent_ids must name an agent for scope agents',
        {
          agent_ids: 'must name at least one agent for scope agents',
        },
      );
    const unknown = await this.unknownAgents(tx, teamId, agentIds);
    if (unknown.length > 0)
      throw new BadRequestError('invalid_agent', `${unknown.join(', ')} is not an agent of this team`, {
        agent_ids: unknown,
      });
  }

  async create(principal: Principal, input: CreateSecretInput) {
    const teamId = this.team(principal, 'admin');
    try {
      const row = await this.db.transaction(async (tx) => {
        if (await repo.findSecretByName(tx, teamId, input.name)) throw nameTaken(input.name);
        return this.insert(tx, principal, teamId, input);
      });
      return secretView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
  }

  /** A new secret, its version 1 and its event, in the caller's transaction. */
  private async insert(tx: DbOrTx, principal: Principal, teamId: TeamId, input: CreateSecretInput) {
    const scope = input.scope ?? (input.agent_ids?.length ? 'agents' : 'all');
    const agentIds = (input.agent_ids ?? []) as AgentId[];
    await this.checkScope(tx, teamId, scope, agentIds);
    const id = newId('sec');
    const now = this.ctx.clock.now();
    const inserted = await repo.insertSecret(tx, {
      id,
      teamId,
      name: input.name,
      sealedValue: this.sealer.seal(input.value, secretSealContext(id)),
      valueVersion: 1,
      scope,
      agentIds,
      createdBy: actorOf(principal).actorId,
      createdAt: now,
      updatedAt: now,
    });
    await this.recordVersion(tx, principal, inserted, now);
    await this.events.record(tx, {
      teamId,
      type: 'secret.created',
      ...actorOf(principal),
      subjectId: id,
      data: { name: inserted.name, scope, agent_ids: agentIds },
    });
    return inserted;
  }

  /**
   * PUT by name: creates the secret (201) or gives it a new value (200, the
   * next version; scope and agent_ids change only when sent). By id: only
   * rotates (an unknown id is a 404). Two PUTs of a new name at once: the
   * one that loses the insert rotates the other's.
   */
  async put(principal: Principal, ref: string, input: PutSecretInput) {
    const teamId = this.team(principal, 'admin');
    if (!isId(ref) && !isSecretName(ref))
      throw new ValidationError(`the secret's name is invalid: ${NAME_RULE}`, { id: NAME_RULE });
    const attempt = () =>
      this.db.transaction(async (tx) => {
        const existing = await findByRef(tx, teamId, ref, 'update');
        if (existing) return { created: false, row: await this.rotate(tx, principal, existing, input) };
        if (isId(ref)) throw new NotFoundError('secret', ref);
        return { created: true, row: await this.insert(tx, principal, teamId, { ...input, name: ref }) };
      });
    try {
      const { created, row } = await attempt();
      return { created, secret: secretView(row) };
    } catch (err) {
      if (!repo.isUniqueViolation(err)) throw err;
      const { created, row } = await attempt();
      return { created, secret: secretView(row) };
    }
  }

  /** A new value (the next version), and scope or agent_ids when given; secret.rotated. */
  private async rotate(
    tx: DbOrTx,
    principal: Principal,
    existing: repo.SecretRow,
    input: PutSecretInput,
  ): Promise<repo.SecretRow> {
    const patch: repo.SecretPatch = {
      sealedValue: this.sealer.seal(input.value, secretSealContext(existing.id)),
      valueVersion: existing.valueVersion + 1,
      updatedAt: this.ctx.clock.now(),
    };
    if (input.scope !== undefined || input.agent_ids !== undefined) {
      const { scope, agentIds } = nextScope(existing, input);
      await this.checkScope(tx, existing.teamId, scope, agentIds);
      patch.scope = scope;
      patch.agentIds = agentIds;
    }
    const updated = (await repo.updateSecret(tx, existing.teamId, existing.id, patch))!;
    await this.recordVersion(tx, principal, updated, patch.updatedAt!);
    await this.events.record(tx, {
      teamId: existing.teamId,
      type: 'secret.rotated',
      ...actorOf(principal),
      subjectId: existing.id,
      data: { name: updated.name, value_version: updated.valueVersion },
    });
    return updated;
  }

  async list(principal: Principal, query: SecretListInput) {
    const teamId = this.team(principal, 'read');
    const agentId = query.agent_id;
    // An id that is no live agent of the team (malformed, unknown, another
    // team's or deleted) is a 404, rather than the list of `all` secrets.
    if (
      agentId !== undefined &&
      (!isId(agentId, 'agt') || (await this.unknownAgents(this.db, teamId, [agentId])).length > 0)
    )
      throw new NotFoundError('agent', agentId);
    return pageOf(
      query,
      (cursor, rows) => repo.listSecrets(this.db, teamId, agentId ? { agentId } : {}, cursor, rows),
      secretView,
    );
  }

  async get(principal: Principal, ref: string) {
    const teamId = this.team(principal, 'read');
    return secretView(await this.mustFind(this.db, teamId, ref));
  }

  /** Who set each version of the value and when, newest first; never a value. */
  async history(principal: Principal, ref: string, query: SecretHistoryInput) {
    const teamId = this.team(principal, 'read');
    const row = await this.mustFind(this.db, teamId, ref);
    return pageOf(
      query,
      (cursor, rows) => repo.listSecretVersions(this.db, teamId, row.id, versionCursor(cursor), rows),
      (v) => secretVersionView(v, row.name),
      (v) => `v${v.version}`,
    );
  }

  /**
   * The value itself, for a team admin (a session of an admin or owner, or
   * a key with the admin scope): throttled per team, and audited
   * (secret.revealed, with the name and version, never the value).
   */
  async reveal(principal: Principal, ref: string) {
    const teamId = this.team(principal, 'admin');
    const row = await this.mustFind(this.db, teamId, ref);
    await this.revealThrottle(teamId);
    // The event (and its audit entry) is written before the value leaves.
    await this.events.record(this.db, {
      teamId,
      type: 'secret.revealed',
      ...actorOf(principal),
      subjectId: row.id,
      data: { name: row.name, value_version: row.valueVersion },
    });
    return {
      id: row.id,
      name: row.name,
      value: this.sealer.open(row.sealedValue, secretSealContext(row.id)),
      value_version: row.valueVersion,
    };
  }

  /** PATCH: the fields sent change; a new value is sealed again. Scope all clears agent_ids. */
  async update(principal: Principal, ref: string, input: UpdateSecretInput) {
    const teamId = this.team(principal, 'admin');
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await this.mustFind(tx, teamId, ref, 'update');
        const sid = existing.id;
        const patch: repo.SecretPatch = {};
        const changed: string[] = [];
        if (input.name !== undefined && input.name !== existing.name) {
          if (await repo.findSecretByName(tx, teamId, input.name)) throw nameTaken(input.name);
          patch.name = input.name;
          changed.push('name');
        }
        if (input.value !== undefined) {
          patch.sealedValue = this.sealer.seal(input.value, secretSealContext(sid));
          patch.valueVersion = existing.valueVersion + 1;
          changed.push('value');
        }
        const { scope, agentIds } = nextScope(existing, input);
        if (input.scope !== undefined || input.agent_ids !== undefined) {
          await this.checkScope(tx, teamId, scope, agentIds);
          if (scope !== existing.scope) changed.push('scope');
          if (!sameIds(agentIds, existing.agentIds)) changed.push('agent_ids');
          patch.scope = scope;
          patch.agentIds = agentIds;
        }
        if (changed.length === 0) return existing;
        patch.updatedAt = this.ctx.clock.now();
        const updated = await repo.updateSecret(tx, teamId, sid, patch);
        if (patch.valueVersion !== undefined)
          await this.recordVersion(tx, principal, updated!, patch.updatedAt);
        await this.events.record(tx, {
          teamId,
          type: 'secret.updated',
          ...actorOf(principal),
          subjectId: sid,
          data: { name: updated!.name, changed_fields: changed, value_version: updated!.valueVersion },
        });
        return updated!;
      });
      return secretView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /** Deletes the secret and its sealed value; tasks started afterwards no longer get it. */
  async remove(principal: Principal, ref: string): Promise<void> {
    const teamId = this.team(principal, 'admin');
    await this.db.transaction(async (tx) => {
      const sid = (await this.mustFind(tx, teamId, ref, 'update')).id;
      const row = await repo.deleteSecret(tx, teamId, sid);
      if (!row) throw new NotFoundError('secret', ref);
      await this.events.record(tx, {
        teamId,
        type: 'secret.deleted',
        ...actorOf(principal),
        subjectId: sid,
        data: { name: row.name },
      });
    });
  }

  /**
   * For the task runner only: the opened values an agent's tool processes get,
   * by name. Never call it to answer a request.
   */
  async forAgent(teamId: TeamId, agentId: AgentId): Promise<OpenedSecret[]> {
    const rows = await repo.secretsForAgent(this.db, teamId, agentId);
    return rows.map((r) => ({
      name: r.name,
      value: this.sealer.open(r.sealedValue, secretSealContext(r.id)),
    }));
  }
}

/** The scope a change makes: agent_ids alone means scope agents; scope all clears agent_ids. */
function nextScope(
  existing: repo.SecretRow,
  input: { scope?: 'all' | 'agents' | undefined; agent_ids?: string[] | undefined },
): { scope: 'all' | 'agents'; agentIds: AgentId[] } {
  const scope = input.scope ?? (input.agent_ids?.length ? 'agents' : existing.scope);
  const agentIds = (
    scope === 'all' ? (input.agent_ids ?? []) : (input.agent_ids ?? existing.agentIds)
  ) as AgentId[];
  return { scope, agentIds };
}

/** History cursors are `v<version>`. */
function versionCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  const match = /^v(\d{1,9})$/.exec(cursor);
  if (!match)
    throw new BadRequestError(
      'invalid_cursor',
      'cursor is not one this server issued; start again without it',
    );
  return Number(match[1]);
}

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

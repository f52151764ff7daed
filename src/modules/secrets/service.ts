import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { BadRequestError, ConflictError, NotFoundError, ValidationError } from '../../core/errors.ts';
import { type AgentId, idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { secretView } from './views.ts';

export type CreateSecretInput = Static<typeof s.CreateSecretBody>;
export type UpdateSecretInput = Static<typeof s.UpdateSecretBody>;
export type SecretListInput = Static<typeof s.SecretListQuery>;
export type { SecretView } from './views.ts';

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

function secretId(raw: string): repo.SecretId {
  return idOrNotFound(raw, 'sec', 'secret');
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
  ) {}

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
    const scope = input.scope ?? (input.agent_ids?.length ? 'agents' : 'all');
    const agentIds = (input.agent_ids ?? []) as AgentId[];
    try {
      const row = await this.db.transaction(async (tx) => {
        await this.checkScope(tx, teamId, scope, agentIds);
        if (await repo.findSecretByName(tx, teamId, input.name)) throw nameTaken(input.name);
        const id = newId('sec');
        const now = this.ctx.clock.now();
        const inserted = await repo.insertSecret(tx, {
          id,
          teamId,
          name: input.name,
          sealedValue: this.sealer.seal(input.value, secretSealContext(id)),
          scope,
          agentIds,
          createdBy: actorOf(principal).actorId,
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          type: 'secret.created',
          ...actorOf(principal),
          subjectId: id,
          data: { name: inserted.name, scope, agent_ids: agentIds },
        });
        return inserted;
      });
      return secretView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
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

  async get(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const row = await repo.findSecret(this.db, teamId, secretId(id));
    if (!row) throw new NotFoundError('secret', id);
    return secretView(row);
  }

  /** PATCH: the fields sent change; a new value is sealed again. Scope all clears agent_ids. */
  async update(principal: Principal, id: string, input: UpdateSecretInput) {
    const teamId = this.team(principal, 'admin');
    const sid = secretId(id);
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await repo.findSecret(tx, teamId, sid, 'update');
        if (!existing) throw new NotFoundError('secret', id);
        const patch: repo.SecretPatch = {};
        const changed: string[] = [];
        if (input.name !== undefined && input.name !== existing.name) {
          if (await repo.findSecretByName(tx, teamId, input.name)) throw nameTaken(input.name);
          patch.name = input.name;
          changed.push('name');
        }
        if (input.value !== undefined) {
          patch.sealedValue = this.sealer.seal(input.value, secretSealContext(sid));
          changed.push('value');
        }
        const scope = input.scope ?? (input.agent_ids?.length ? 'agents' : existing.scope);
        const agentIds = (
          scope === 'all' ? (input.agent_ids ?? []) : (input.agent_ids ?? existing.agentIds)
        ) as AgentId[];
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
        await this.events.record(tx, {
          teamId,
          type: 'secret.updated',
          ...actorOf(principal),
          subjectId: sid,
          data: { name: updated!.name, changed_fields: changed },
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
  async remove(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'admin');
    const sid = secretId(id);
    await this.db.transaction(async (tx) => {
      const row = await repo.deleteSecret(tx, teamId, sid);
      if (!row) throw new NotFoundError('secret', id);
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

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

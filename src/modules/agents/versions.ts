import { BadRequestError, NotFoundError } from '../../core/errors.ts';
import { type AgentId, newId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf, versionCursor } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { Principal } from '../identity/principal.ts';
import { actorLabel } from '../policies/service.ts';
import {
  changedFields,
  DEFINITION_DEFAULTS,
  type Definition,
  mergeDefinition,
  reservedMcpHeader,
  storedDefinition,
} from './definition.ts';
import { type AgentRow, findAgentByName, liveAgentIdsAmong } from './repo.ts';
import * as repo from './versions-repo.ts';

/** An environment version an agent version pins. */
export interface PinnedEnvironment {
  environment_id: string;
  environment_version_id: string;
  environment_version: number;
}

/** What agent definitions need from the environments and files modules. */
export interface DefinitionPorts {
  /**
   * The environment version to pin: the one named, or the current version of
   * the environment named; throws a 400 naming what is wrong.
   */
  pinEnvironment(
    teamId: TeamId,
    asked: { environment_id?: string; environment_version_id?: string },
  ): Promise<PinnedEnvironment>;
  /** The ids among `ids` that are no ready file of the team. */
  unknownFiles(teamId: TeamId, ids: readonly string[]): Promise<string[]>;
  /** The ids among `ids` that are no skill of the team. */
  unknownSkills(teamId: TeamId, ids: readonly string[]): Promise<string[]>;
}

/** The platform environment every agent starts on unless it names another. */
export const DEFAULT_ENVIRONMENT: PinnedEnvironment = {
  environment_id: 'env_minimal',
  environment_version_id: 'envv_minimal',
  environment_version: 1,
};

/** An agent made before definitions existed has none: its version 1 is the defaults. */
export function definitionOf(row: AgentRow): Definition {
  return row.definition
    ? storedDefinition(row.definition)
    : { ...DEFINITION_DEFAULTS, ...DEFAULT_ENVIRONMENT };
}

type DefinitionInput = Parameters<typeof mergeDefinition>[0];

/** The definition a request asks for on top of `from` (undefined: the defaults), its environment as pinned. */
export function composeDefinition(
  input: DefinitionInput,
  from: Definition | undefined,
  pinned: PinnedEnvironment | undefined,
): Definition {
  const environment =
    pinned ??
    (from
      ? {
          environment_id: from.environment_id,
          environment_version_id: from.environment_version_id,
          environment_version: from.environment_version,
        }
      : DEFAULT_ENVIRONMENT);
  return { ...mergeDefinition(input, from), ...environment };
}

function versionView(
  agentId: string,
  version: number,
  definition: Definition,
  createdAt: Date,
  createdBy: string | null,
) {
  return {
    agent_id: agentId,
    version,
    ...definition,
    created_by: createdBy,
    created_at: createdAt.toISOString(),
  };
}
export type AgentVersionView = ReturnType<typeof versionView>;

/**
 * Agent versions: the definition made immutable at each change, with its
 * environment version pinned, so a task (and a later look) sees exactly what
 * ran. Called by AgentsService inside its transactions.
 */
export class AgentVersions {
  constructor(
    private readonly db: Db,
    private readonly ports: DefinitionPorts,
  ) {}

  /**
   * Checks what a request's definition refers to, before its transaction:
   * the environment to pin (undefined when the request names none), the
   * reference files, the skills and the sub-agents (`self`: the agent being
   * changed, by id or name, which may not be its own sub-agent). Throws a 400
   * naming what is wrong.
   */
  async references(
    teamId: TeamId,
    input: DefinitionInput,
    self?: { id: string } | { name: string },
  ): Promise<PinnedEnvironment | undefined> {
    const reserved = reservedMcpHeader(input.mcp_servers ?? []);
    if (reserved !== undefined)
      throw new BadRequestError('invalid_mcp_server', `${reserved}: the MCP client sets this header itself`, {
        field: reserved,
      });
    if (input.sub_agent_ids !== undefined && input.sub_agent_ids.length > 0)
      await this.checkSubAgents(teamId, input.sub_agent_ids, self);
    if (input.reference_file_ids !== undefined) {
      const unknown = await this.ports.unknownFiles(teamId, input.reference_file_ids);
      if (unknown.length > 0)
        throw new BadRequestError('invalid_file', `${unknown.join(', ')} is not a file of this team`, {
          reference_file_ids: unknown,
        });
    }
    if (input.skill_ids !== undefined && input.skill_ids.length > 0) {
      const unknown = await this.ports.unknownSkills(teamId, input.skill_ids);
      if (unknown.length > 0)
        throw new BadRequestError('invalid_skill', `${unknown.join(', ')} is not a skill of this team`, {
          skill_ids: unknown,
        });
    }
    if (input.environment_id === undefined && input.environment_version_id === undefined) return undefined;
    return this.ports.pinEnvironment(teamId, {
      ...(input.environment_id !== undefined ? { environment_id: input.environment_id } : {}),
      ...(input.environment_version_id !== undefined
        ? { environment_version_id: input.environment_version_id }
        : {}),
    });
  }

  /**
   * Every sub-agent is a live agent of the team (disabled ones included: a
   * delegation to one answers that it is disabled) and not the agent itself;
   * another team's agent is as unknown as one that never existed.
   */
  private async checkSubAgents(
    teamId: TeamId,
    ids: readonly string[],
    self: { id: string } | { name: string } | undefined,
  ): Promise<void> {
    const selfId =
      self === undefined
        ? undefined
        : 'id' in self
          ? self.id
          : (await findAgentByName(this.db, teamId, self.name))?.id;
    if (selfId !== undefined && ids.includes(selfId))
      throw new BadRequestError('invalid_sub_agent', `an agent cannot be its own sub-agent (${selfId})`, {
        sub_agent_ids: [selfId],
      });
    const live = await liveAgentIdsAmong(this.db, teamId, [...ids]);
    const unknown = ids.filter((id) => !live.has(id));
    if (unknown.length > 0)
      throw new BadRequestError(
        'invalid_sub_agent',
        `${unknown.join(', ')} is not an agent of this team; sub_agent_ids names agents of the same team`,
        { sub_agent_ids: unknown },
      );
  }

  /** Writes version `version` of the agent. */
  async write(tx: DbOrTx, principal: Principal, agent: AgentRow, version: number, definition: Definition) {
    return repo.insertVersion(tx, {
      id: newId('agtv'),
      agentId: agent.id,
      teamId: agent.teamId,
      version,
      definition: definition as unknown as Record<string, unknown>,
      createdBy: actorLabel(principal),
      createdAt: agent.updatedAt,
    });
  }

  /** An agent made before definitions: its version 1 (the defaults) is written before its version 2. */
  async backfillFirst(tx: DbOrTx, agent: AgentRow): Promise<void> {
    if (agent.definition !== null) return;
    await repo.insertVersion(tx, {
      id: newId('agtv'),
      agentId: agent.id,
      teamId: agent.teamId,
      version: 1,
      definition: definitionOf(agent) as unknown as Record<string, unknown>,
      createdBy: agent.createdBy,
      createdAt: agent.createdAt,
    });
  }

  async list(agent: AgentRow, query: PageQuery) {
    if (agent.definition === null)
      return {
        data: [versionView(agent.id, 1, definitionOf(agent), agent.createdAt, agent.createdBy)],
        next_cursor: null,
      };
    return pageOf(
      query,
      (cursor, rows) => repo.listVersions(this.db, agent.teamId, agent.id, versionCursor(cursor), rows),
      (v) => versionView(v.agentId, v.version, storedDefinition(v.definition), v.createdAt, v.createdBy),
      (v) => String(v.version),
    );
  }

  async get(agent: AgentRow, n: number): Promise<AgentVersionView> {
    if (agent.definition === null && n === 1)
      return versionView(agent.id, 1, definitionOf(agent), agent.createdAt, agent.createdBy);
    const v = await repo.findVersion(this.db, agent.teamId, agent.id as AgentId, n);
    if (!v) throw new NotFoundError('agent version', `${agent.id} v${n}`);
    return versionView(v.agentId, v.version, storedDefinition(v.definition), v.createdAt, v.createdBy);
  }

  /** What changed from version `from` to version `to`: each field with its value in both. */
  async diff(agent: AgentRow, from: number, to: number) {
    const a = await this.get(agent, from);
    const b = await this.get(agent, to);
    const changes = changedFields(a, b).map((field) => ({ field, from: a[field], to: b[field] }));
    return { agent_id: agent.id, from, to, changes };
  }
}

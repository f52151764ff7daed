import type { Context } from '../../core/context.ts';
import { NotFoundError, ValidationError } from '../../core/errors.ts';
import { type AgentId, idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import {
  activeTeam,
  actorOf,
  managedTeam,
  type Principal,
  requireScope,
  type Scope,
} from '../identity/principal.ts';
import * as repo from './repo.ts';
import {
  type CreateMemoryInput,
  DEFAULT_SEARCH_LIMIT,
  MAX_METADATA_BYTES,
  MAX_SEARCH_LIMIT,
  type MemoryListInput,
  type MemorySearchInput,
  type UpdateMemoryInput,
} from './schemas.ts';
import { memoryHitView, memoryView } from './views.ts';

/** What memories need from the agents module: whether an id is a live agent of the team. */
export type MemoryAgentsPort = (db: DbOrTx, teamId: TeamId, agentId: AgentId) => Promise<boolean>;

/** Who may reach which memories: the team's, and for an agent key only its own agent's. */
interface Reach {
  teamId: TeamId;
  /** Set for an agent key: the one agent whose memories it reaches. */
  agentId?: AgentId;
}

const memoryId = (raw: string) => idOrNotFound(raw, 'mem', 'memory');

function checkMetadata(metadata: Record<string, unknown> | undefined): void {
  if (metadata !== undefined && Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES)
    throw new ValidationError(`the request body is invalid: metadata is over ${MAX_METADATA_BYTES} bytes`, {
      metadata: `must be at most ${MAX_METADATA_BYTES} bytes as JSON`,
    });
}

/**
 * Memories (Issue 13): texts an agent keeps between its tasks. Its tasks'
 * models save them (memory_save) and look them up (memory_search, full-text
 * ranked by Postgres); the team reads and edits them through /v1/memories.
 * An agent key reaches its own agent's memories only; anything else is a 404.
 */
export class MemoriesService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly liveAgent: MemoryAgentsPort,
  ) {}

  private reach(principal: Principal, need: Scope): Reach {
    if (principal.kind !== 'agent') return { teamId: managedTeam(principal, need, 'memories') };
    const teamId = activeTeam(principal);
    requireScope(principal, need);
    return { teamId, agentId: principal.agentId as AgentId };
  }

  /** An agent the caller may name: a live agent of the team (the key's own, for an agent key). */
  private async liveAgentOf(reach: Reach, raw: string): Promise<AgentId> {
    const agentId = this.nameable(reach, raw);
    if (!(await this.liveAgent(this.db, reach.teamId, agentId))) throw new NotFoundError('agent', raw);
    return agentId;
  }

  /** An agent to filter or clear by: a live one, or a deleted one whose memories the team still holds. */
  private async knownAgentOf(reach: Reach, raw: string): Promise<AgentId> {
    const agentId = this.nameable(reach, raw);
    await this.requireKnown(reach, agentId);
    return agentId;
  }

  /** An agent id the caller may name at all (any agent of the team, or the key's own), not looked up. */
  private nameable(reach: Reach, raw: string): AgentId {
    if (!isId(raw, 'agt') || (reach.agentId !== undefined && raw !== reach.agentId))
      throw new NotFoundError('agent', raw);
    return raw;
  }

  private async requireKnown(reach: Reach, agentId: AgentId): Promise<void> {
    const known =
      (await this.liveAgent(this.db, reach.teamId, agentId)) ||
      (await repo.agentHasMemories(this.db, reach.teamId, agentId));
    if (!known) throw new NotFoundError('agent', agentId);
  }

  private async visible(db: DbOrTx, reach: Reach, raw: string, lock?: 'update'): Promise<repo.MemoryRow> {
    const row = await repo.findMemory(db, reach.teamId, memoryId(raw), lock);
    if (!row || (reach.agentId !== undefined && row.agentId !== reach.agentId))
      throw new NotFoundError('memory', raw);
    return row;
  }

  async create(principal: Principal, input: CreateMemoryInput) {
    const reach = this.reach(principal, 'write');
    checkMetadata(input.metadata);
    const agentId = await this.liveAgentOf(reach, input.agent_id);
    const row = await this.insert(reach.teamId, agentId, {
      content: input.content,
      metadata: input.metadata ?? {},
      taskId: null,
      actor: actorOf(principal),
    });
    return memoryView(row);
  }

  async list(principal: Principal, query: MemoryListInput) {
    const reach = this.reach(principal, 'read');
    const agentId =
      query.agent_id !== undefined ? await this.knownAgentOf(reach, query.agent_id) : reach.agentId;
    return pageOf(
      query,
      (cursor, rows) => repo.listMemories(this.db, reach.teamId, agentId ? { agentId } : {}, cursor, rows),
      memoryView,
    );
  }

  async get(principal: Principal, id: string) {
    return memoryView(await this.visible(this.db, this.reach(principal, 'read'), id));
  }

  /** PATCH: content and metadata as sent (metadata is replaced whole). */
  async update(principal: Principal, id: string, input: UpdateMemoryInput) {
    const reach = this.reach(principal, 'write');
    checkMetadata(input.metadata);
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.visible(tx, reach, id, 'update');
      const patch: repo.MemoryPatch = {};
      const changed: string[] = [];
      if (input.content !== undefined && input.content !== existing.content) {
        patch.content = input.content;
        changed.push('content');
      }
      if (input.metadata !== undefined) {
        patch.metadata = input.metadata;
        changed.push('metadata');
      }
      if (changed.length === 0) return existing;
      patch.updatedAt = this.ctx.clock.now();
      const updated = await repo.updateMemory(tx, reach.teamId, existing.id, patch);
      await this.events.record(tx, {
        teamId: reach.teamId,
        type: 'memory.updated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { agent_id: existing.agentId, changed_fields: changed },
      });
      return updated!;
    });
    return memoryView(row);
  }

  async remove(principal: Principal, id: string): Promise<void> {
    const reach = this.reach(principal, 'write');
    await this.db.transaction(async (tx) => {
      const row = await this.visible(tx, reach, id, 'update');
      await repo.deleteMemory(tx, reach.teamId, row.id);
      await this.events.record(tx, {
        teamId: reach.teamId,
        type: 'memory.deleted',
        ...actorOf(principal),
        subjectId: row.id,
        data: { agent_id: row.agentId },
      });
    });
  }

  /** Every memory of one agent; answers how many went (0 when it had none). */
  async removeAll(principal: Principal, rawAgentId: string) {
    const reach = this.reach(principal, 'write');
    const agentId = await this.knownAgentOf(reach, rawAgentId);
    const deleted = await this.db.transaction(async (tx) => {
      const n = await repo.deleteAgentMemories(tx, reach.teamId, agentId);
      await this.events.record(tx, {
        teamId: reach.teamId,
        type: 'memory.cleared',
        ...actorOf(principal),
        subjectId: agentId,
        data: { agent_id: agentId, deleted: n },
      });
      return n;
    });
    return { agent_id: agentId, deleted };
  }

  async search(principal: Principal, query: MemorySearchInput) {
    const reach = this.reach(principal, 'read');
    const agentId = this.nameable(reach, query.agent_id);
    const hits = await repo.searchMemories(
      this.db,
      reach.teamId,
      agentId,
      query.q,
      query.limit ?? DEFAULT_SEARCH_LIMIT,
    );
    // A memory found is the team's, so its agent is known: only an empty answer is looked up
    // (a statement fewer for most searches), to tell an unknown agent from no match.
    if (hits.length === 0) await this.requireKnown(reach, agentId);
    return { data: hits.map(memoryHitView) };
  }

  // -- for the task runner's memory tools (tools.ts) --------------------------

  /** A memory a task's model saved (its content already redacted of the task's secrets). */
  saveFromTask(teamId: TeamId, agentId: AgentId, taskId: string, content: string) {
    return this.insert(teamId, agentId, {
      content: storableText(content),
      metadata: {},
      taskId: taskId as repo.MemoryRow['taskId'],
      actor: { actorKind: 'system', actorId: 'task_runner' },
    });
  }

  searchForTask(teamId: TeamId, agentId: AgentId, query: string, limit: number) {
    return repo.searchMemories(this.db, teamId, agentId, query, Math.min(limit, MAX_SEARCH_LIMIT));
  }

  /** The row and its memory.created event commit together. */
  private insert(
    teamId: TeamId,
    agentId: AgentId,
    m: {
      content: string;
      metadata: Record<string, unknown>;
      taskId: repo.MemoryRow['taskId'];
      actor: { actorKind: string; actorId: string | null };
    },
  ): Promise<repo.MemoryRow> {
    return this.db.transaction(async (tx) => {
      const now = this.ctx.clock.now();
      const row = await repo.insertMemory(tx, {
        id: newId('mem'),
        teamId,
        agentId,
        content: m.content,
        metadata: m.metadata,
        taskId: m.taskId,
        createdBy: m.actor.actorId,
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        type: 'memory.created',
        ...m.actor,
        subjectId: row.id,
        data: { agent_id: agentId, task_id: m.taskId, chars: m.content.length },
      });
      return row;
    });
  }
}

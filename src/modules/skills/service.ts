import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { charCount, skillSummaryView, skillView } from './views.ts';

export type CreateSkillInput = Static<typeof s.CreateSkillBody>;
export type UpdateSkillInput = Static<typeof s.UpdateSkillBody>;
export type SkillListInput = Static<typeof s.SkillListQuery>;
export type { SkillSummaryView, SkillView } from './views.ts';

/** What skills need from the agents module: the live agents whose current version lists a skill. */
export type SkillAgentsPort = (tx: DbOrTx, teamId: TeamId, skillId: string) => Promise<string[]>;

/** A skill as a task's tool source gets it. */
export interface LoadableSkill {
  name: string;
  description: string;
  content: string;
}

function nameTaken(name: string): ConflictError {
  return new ConflictError('skill_name_taken', `a skill named ${name} already exists in this team`, {
    name,
  });
}

function skillId(raw: string): repo.SkillId {
  return idOrNotFound(raw, 'skl', 'skill');
}

/**
 * Skills: a team's named instruction documents. Agents list the ones they
 * may use (definition.skill_ids); a task's prompt names each with its
 * description, and the model loads the content with load_skill (tools.ts).
 */
export class SkillsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly agentsUsing: SkillAgentsPort,
  ) {}

  /** Agent keys never read or manage skills: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'skills');
  }

  async create(principal: Principal, input: CreateSkillInput) {
    const teamId = this.team(principal, 'write');
    try {
      const row = await this.db.transaction(async (tx) => {
        if (await repo.skillNameTaken(tx, teamId, input.name)) throw nameTaken(input.name);
        const id = newId('skl');
        const now = this.ctx.clock.now();
        const inserted = await repo.insertSkill(tx, {
          id,
          teamId,
          name: input.name,
          description: input.description,
          content: input.content,
          createdBy: actorOf(principal).actorId,
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          type: 'skill.created',
          ...actorOf(principal),
          subjectId: id,
          data: { name: input.name, content_chars: charCount(input.content) },
        });
        return inserted;
      });
      return skillView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
  }

  async list(principal: Principal, query: SkillListInput) {
    const teamId = this.team(principal, 'read');
    return pageOf(query, (cursor, rows) => repo.listSkills(this.db, teamId, cursor, rows), skillSummaryView);
  }

  async get(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const row = await repo.findSkill(this.db, teamId, skillId(id));
    if (!row) throw new NotFoundError('skill', id);
    return skillView(row);
  }

  /** PATCH: the fields sent change. Agents refer to a skill by id, so a new name is what their tasks see next. */
  async update(principal: Principal, id: string, input: UpdateSkillInput) {
    const teamId = this.team(principal, 'write');
    const sid = skillId(id);
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await repo.findSkill(tx, teamId, sid, 'update');
        if (!existing) throw new NotFoundError('skill', id);
        const patch: repo.SkillPatch = {};
        if (input.name !== undefined && input.name !== existing.name) {
          if (await repo.skillNameTaken(tx, teamId, input.name)) throw nameTaken(input.name);
          patch.name = input.name;
        }
        if (input.description !== undefined && input.description !== existing.description)
          patch.description = input.description;
        if (input.content !== undefined && input.content !== existing.content) patch.content = input.content;
        const changed = Object.keys(patch);
        if (changed.length === 0) return existing;
        patch.updatedAt = this.ctx.clock.now();
        const updated = await repo.updateSkill(tx, teamId, sid, patch);
        await this.events.record(tx, {
          teamId,
          type: 'skill.updated',
          ...actorOf(principal),
          subjectId: sid,
          data: { name: updated!.name, changed_fields: changed },
        });
        return updated!;
      });
      return skillView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /**
   * A skill that a live agent's current version lists is refused (409
   * skill_in_use, naming the agents): deleting it would silently change what
   * those agents do. Older versions may still list it; their tasks skip it.
   */
  async remove(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'write');
    const sid = skillId(id);
    await this.db.transaction(async (tx) => {
      const existing = await repo.findSkill(tx, teamId, sid, 'update');
      if (!existing) throw new NotFoundError('skill', id);
      const agentIds = await this.agentsUsing(tx, teamId, sid);
      if (agentIds.length > 0)
        throw new ConflictError(
          'skill_in_use',
          `skill ${existing.name} is listed by ${agentIds.length} agent(s) (${agentIds.slice(0, 5).join(', ')}${agentIds.length > 5 ? ', …' : ''}); remove it from their skill_ids first`,
          { agent_ids: agentIds.slice(0, 100), agent_count: agentIds.length },
        );
      await repo.deleteSkill(tx, teamId, sid);
      await this.events.record(tx, {
        teamId,
        type: 'skill.deleted',
        ...actorOf(principal),
        subjectId: sid,
        data: { name: existing.name },
      });
    });
  }

  /** For agent definitions: the ids among `ids` that are no skill of the team (malformed, unknown, another team's). */
  async unknownSkillIds(teamId: TeamId, ids: readonly string[]): Promise<string[]> {
    const known = await repo.skillIdsAmong(this.db, teamId, ids);
    return ids.filter((id) => !known.has(id));
  }

  /**
   * For the task runner: the skills an agent version lists, in its order,
   * content included. A skill deleted since the version was written is left out.
   */
  async forAgent(teamId: TeamId, ids: readonly string[]): Promise<LoadableSkill[]> {
    const rows = new Map((await repo.skillsAmong(this.db, teamId, ids)).map((r) => [r.id as string, r]));
    return ids.flatMap((id) => {
      const row = rows.get(id);
      return row ? [{ name: row.name, description: row.description, content: row.content }] : [];
    });
  }
}

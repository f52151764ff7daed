import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { AssigneeType, WorkItemStatus } from '../../db/schema/work-items.ts';
import type { EventsService } from '../events/service.ts';
import {
  type Actor,
  activeTeam,
  actorOf,
  managedTeam,
  type Principal,
  requireScope,
  type Scope,
} from '../identity/principal.ts';
import * as repo from './repo.ts';
import type { CreateWorkItemBody, TransitionBody, UpdateWorkItemBody, WorkItemListQuery } from './schemas.ts';
import { checkTransition } from './transitions.ts';
import { itemView } from './views.ts';

export type CreateWorkItemInput = Static<typeof CreateWorkItemBody>;
export type UpdateWorkItemInput = Static<typeof UpdateWorkItemBody>;
export type TransitionInput = Static<typeof TransitionBody>;
export type WorkItemListInput = Static<typeof WorkItemListQuery>;

/** What the board needs from other modules: who may be assigned, and what may be linked. */
export interface WorkItemPorts {
  isMember(tx: DbOrTx, teamId: TeamId, userId: string): Promise<boolean>;
  isTeamAgent(tx: DbOrTx, teamId: TeamId, agentId: string): Promise<boolean>;
  isTeamTask(tx: DbOrTx, teamId: TeamId, taskId: string): Promise<boolean>;
  isTeamPlaybookRun(tx: DbOrTx, teamId: TeamId, runId: string): Promise<boolean>;
}

export interface Assignee {
  type: AssigneeType;
  id: string;
}

export const workItemId = (raw: string) => idOrNotFound(raw, 'wki', 'work item');

/** The board of the caller's team: members and team keys, and agent keys (which work items too). */
export function boardTeam(principal: Principal, need: Scope): TeamId {
  if (principal.kind !== 'agent') return managedTeam(principal, need, 'the work board');
  const teamId = activeTeam(principal);
  requireScope(principal, need);
  return teamId;
}

/** Who "me" is: the signed-in user, or an agent key's agent; a team key is nobody in particular. */
function callerAsAssignee(principal: Principal): Assignee {
  if (principal.kind === 'session' && principal.userId) return { type: 'user', id: principal.userId };
  if (principal.kind === 'agent' && principal.agentId) return { type: 'agent', id: principal.agentId };
  throw new BadRequestError(
    'assignee_me_unknown',
    'assignee=me needs a user session or an agent key; a team key names the assignee by id',
  );
}

/** An assignee filter: me, none, or a user or agent id (told apart by prefix). */
function assigneeFilter(principal: Principal, raw: string): Assignee | null {
  if (raw === 'me') return callerAsAssignee(principal);
  if (raw === 'none') return null;
  if (isId(raw, 'usr')) return { type: 'user', id: raw };
  if (isId(raw, 'agt')) return { type: 'agent', id: raw };
  throw new BadRequestError(
    'invalid_assignee',
    'assignee is me, none, a user id (usr_…) or an agent id (agt_…)',
    {
      assignee: raw,
    },
  );
}

export const createdByOf = (actor: Actor) =>
  actor.actorId ? `${actor.actorKind}:${actor.actorId}` : actor.actorKind;

const archivedError = (id: string) =>
  new ConflictError('work_item_archived', `work item ${id} is archived; unarchive it to change it`, { id });

/** A due date from the API (already a date-time by its schema). */
const dueAtOf = (raw: string | null | undefined) =>
  raw === undefined ? undefined : raw === null ? null : new Date(raw);

const sameDate = (a: Date | null, b: Date | null) => (a?.getTime() ?? null) === (b?.getTime() ?? null);

/**
 * The work board (Orkosi's public tasks): a team's items of work, assigned to
 * a member or an agent, moved through their statuses by a fixed table
 * (transitions.ts). Every change is a work_item.* event in its transaction.
 */
export class WorkItemsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly ports: WorkItemPorts,
  ) {}

  private async checkAssignee(tx: DbOrTx, teamId: TeamId, a: Assignee): Promise<void> {
    const known =
      a.type === 'user'
        ? isId(a.id, 'usr') && (await this.ports.isMember(tx, teamId, a.id))
        : isId(a.id, 'agt') && (await this.ports.isTeamAgent(tx, teamId, a.id));
    if (!known)
      throw new BadRequestError(
        'assignee_not_in_team',
        a.type === 'user'
          ? `user ${a.id} is no member of this team`
          : `agent ${a.id} is no agent of this team`,
        { assignee: a },
      );
  }

  /** The item, locked for a change; an archived one refuses changes (409). */
  async foundForChange(tx: DbOrTx, teamId: TeamId, raw: string): Promise<repo.WorkItemRow> {
    const row = await repo.findItem(tx, teamId, workItemId(raw), 'update');
    if (!row) throw new NotFoundError('work item', raw);
    if (row.archivedAt !== null) throw archivedError(row.id);
    return row;
  }

  async found(db: DbOrTx, teamId: TeamId, raw: string): Promise<repo.WorkItemRow> {
    const row = await repo.findItem(db, teamId, workItemId(raw));
    if (!row) throw new NotFoundError('work item', raw);
    return row;
  }

  async create(principal: Principal, input: CreateWorkItemInput) {
    const teamId = boardTeam(principal, 'write');
    const actor = actorOf(principal);
    const row = await this.db.transaction(async (tx) => {
      const assignee = input.assignee ?? null;
      if (assignee) await this.checkAssignee(tx, teamId, assignee);
      const now = this.ctx.clock.now();
      const inserted = await repo.insertItem(tx, {
        id: newId('wki'),
        teamId,
        title: input.title,
        description: input.description ?? null,
        type: input.type ?? 'other',
        priority: input.priority ?? 'medium',
        status: input.status ?? 'todo',
        resolution: input.resolution ?? null,
        assigneeType: assignee?.type ?? null,
        assigneeId: assignee?.id ?? null,
        labels: input.labels ?? [],
        dueAt: dueAtOf(input.due_date) ?? null,
        createdBy: createdByOf(actor),
        archivedAt: null,
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        type: 'work_item.created',
        ...actor,
        subjectId: inserted.id,
        data: {
          title: inserted.title,
          type: inserted.type,
          priority: inserted.priority,
          status: inserted.status,
          assignee_type: inserted.assigneeType,
          assignee_id: inserted.assigneeId,
        },
      });
      return inserted;
    });
    return itemView(row);
  }

  /** A page of the board; with next=true, the assignee's (default: the caller's) top todo item alone. */
  async list(principal: Principal, q: WorkItemListInput) {
    const teamId = boardTeam(principal, 'read');
    const statuses = q.status?.split(',') as WorkItemStatus[] | undefined;
    const filter: repo.ItemFilter = {
      statuses,
      priority: q.priority,
      type: q.type,
      label: q.label,
      archived: q.archived ?? 'exclude',
      ...(q.assignee !== undefined ? { assignee: assigneeFilter(principal, q.assignee) } : {}),
    };
    if (q.next === true) {
      if (statuses?.some((st) => st !== 'todo'))
        throw new BadRequestError(
          'invalid_filter',
          'next=true picks a todo item: leave status out or set it to todo',
        );
      if (q.assignee === undefined) filter.assignee = callerAsAssignee(principal);
      if (filter.assignee === null)
        throw new BadRequestError(
          'invalid_filter',
          'next=true picks an assignee’s item: assignee cannot be none',
        );
      const next = await repo.nextTodo(this.db, teamId, filter);
      return { data: next ? [itemView(next)] : [], next_cursor: null };
    }
    return pageOf(q, (cursor, rows) => repo.listItems(this.db, teamId, filter, cursor, rows), itemView);
  }

  async get(principal: Principal, id: string) {
    return itemView(await this.found(this.db, boardTeam(principal, 'read'), id));
  }

  /** PATCH: the fields sent change (status by the transitions table); one event per kind of change. */
  async update(principal: Principal, id: string, input: UpdateWorkItemInput) {
    const teamId = boardTeam(principal, 'write');
    const actor = actorOf(principal);
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.foundForChange(tx, teamId, id);
      const patch: repo.WorkItemPatch = {};
      const changed: string[] = [];
      const set = <K extends keyof repo.WorkItemPatch>(
        key: K,
        field: string,
        value: repo.WorkItemPatch[K],
      ) => {
        patch[key] = value;
        changed.push(field);
      };
      if (input.title !== undefined && input.title !== existing.title) set('title', 'title', input.title);
      if (input.description !== undefined && input.description !== existing.description)
        set('description', 'description', input.description);
      if (input.type !== undefined && input.type !== existing.type) set('type', 'type', input.type);
      if (input.priority !== undefined && input.priority !== existing.priority)
        set('priority', 'priority', input.priority);
      if (input.resolution !== undefined && input.resolution !== existing.resolution)
        set('resolution', 'resolution', input.resolution);
      if (input.labels !== undefined && input.labels.join('\n') !== existing.labels.join('\n'))
        set('labels', 'labels', input.labels);
      const due = dueAtOf(input.due_date);
      if (due !== undefined && !sameDate(due, existing.dueAt)) set('dueAt', 'due_date', due);
      const statusTo =
        input.status !== undefined && input.status !== existing.status ? input.status : undefined;
      if (statusTo !== undefined) {
        checkTransition(existing.status, statusTo);
        patch.status = statusTo;
      }
      let assigned = false;
      if (input.assignee !== undefined) {
        const a = input.assignee;
        if (
          a?.type !== (existing.assigneeType ?? undefined) ||
          a?.id !== (existing.assigneeId ?? undefined)
        ) {
          if (a) await this.checkAssignee(tx, teamId, a);
          patch.assigneeType = a?.type ?? null;
          patch.assigneeId = a?.id ?? null;
          assigned = true;
        }
      }
      if (changed.length === 0 && statusTo === undefined && !assigned) return existing;
      patch.updatedAt = this.ctx.clock.now();
      const updated = (await repo.updateItem(tx, teamId, existing.id, patch))!;
      const base = { teamId, ...actor, subjectId: existing.id };
      if (changed.length > 0)
        await this.events.record(tx, {
          ...base,
          type: 'work_item.updated',
          data: { title: updated.title, changed_fields: changed },
        });
      if (assigned)
        await this.events.record(tx, {
          ...base,
          type: 'work_item.assigned',
          data: {
            title: updated.title,
            assignee_type: updated.assigneeType,
            assignee_id: updated.assigneeId,
            previous_type: existing.assigneeType,
            previous_id: existing.assigneeId,
          },
        });
      if (statusTo !== undefined)
        await this.events.record(tx, {
          ...base,
          type: 'work_item.status_changed',
          data: { title: updated.title, from: existing.status, to: statusTo },
        });
      return updated;
    });
    return itemView(row);
  }

  /** A move by the transitions table (409 invalid_transition otherwise); to the same status, nothing changes. */
  async transition(principal: Principal, id: string, input: TransitionInput) {
    return this.update(principal, id, {
      status: input.status,
      ...(input.resolution !== undefined ? { resolution: input.resolution } : {}),
    });
  }

  /** Archive (hidden from lists, changes refused) or unarchive; the status stays as it was. */
  async setArchived(principal: Principal, id: string, archived: boolean) {
    const teamId = boardTeam(principal, 'write');
    const row = await this.db.transaction(async (tx) => {
      const existing = await repo.findItem(tx, teamId, workItemId(id), 'update');
      if (!existing) throw new NotFoundError('work item', id);
      if ((existing.archivedAt !== null) === archived) return existing;
      const now = this.ctx.clock.now();
      const updated = (await repo.updateItem(tx, teamId, existing.id, {
        archivedAt: archived ? now : null,
        updatedAt: now,
      }))!;
      await this.events.record(tx, {
        teamId,
        type: archived ? 'work_item.archived' : 'work_item.unarchived',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { title: existing.title },
      });
      return updated;
    });
    return itemView(row);
  }
}

import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import { isUniqueViolation } from '../../db/errors.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, type Principal, scopeAllows } from '../identity/principal.ts';
import * as repo from './repo.ts';
import { type CommentBody, type CommentListQuery, type LinkBody, MAX_LINKS_PER_ITEM } from './schemas.ts';
import { boardTeam, createdByOf, type WorkItemPorts, type WorkItemsService } from './service.ts';
import { commentView, linkView } from './views.ts';

const commentId = (raw: string) => idOrNotFound(raw, 'wkc', 'comment');
const linkId = (raw: string) => idOrNotFound(raw, 'wkl', 'link');

/**
 * A work item's comments (by members, team keys and agents; each deletes its
 * own, team admins any) and its links to the tasks and playbook runs that
 * worked on it (each of the team, once per item).
 */
export class WorkItemThreads {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly items: WorkItemsService,
    private readonly ports: WorkItemPorts,
  ) {}

  async addComment(principal: Principal, itemId: string, input: Static<typeof CommentBody>) {
    const teamId = boardTeam(principal, 'write');
    const actor = actorOf(principal);
    const row = await this.db.transaction(async (tx) => {
      const item = await this.items.foundForChange(tx, teamId, itemId);
      const comment = await repo.insertComment(tx, {
        id: newId('wkc'),
        teamId,
        workItemId: item.id,
        authorType: actor.actorKind,
        authorId: actor.actorId,
        body: input.body,
        createdAt: this.ctx.clock.now(),
      });
      await this.events.record(tx, {
        teamId,
        type: 'work_item.commented',
        ...actor,
        subjectId: item.id,
        data: { title: item.title, comment_id: comment.id, chars: input.body.length },
      });
      return comment;
    });
    return commentView(row);
  }

  async listComments(principal: Principal, itemId: string, q: Static<typeof CommentListQuery>) {
    const teamId = boardTeam(principal, 'read');
    const item = await this.items.found(this.db, teamId, itemId);
    return pageOf(
      q,
      (cursor, rows) => repo.listComments(this.db, teamId, item.id, cursor, rows),
      commentView,
    );
  }

  /** Its author deletes a comment, or a team admin; anyone else: 403 not_comment_author. */
  async deleteComment(principal: Principal, itemId: string, rawCommentId: string): Promise<void> {
    const teamId = boardTeam(principal, 'write');
    const actor = actorOf(principal);
    await this.db.transaction(async (tx) => {
      const item = await this.items.found(tx, teamId, itemId);
      const comment = await repo.findComment(tx, teamId, item.id, commentId(rawCommentId));
      if (!comment) throw new NotFoundError('comment', rawCommentId);
      const own = comment.authorType === actor.actorKind && comment.authorId === actor.actorId;
      if (!own && !(principal.kind !== 'agent' && scopeAllows(principal.scope, 'admin')))
        throw new ForbiddenError('not_comment_author', 'only its author or a team admin deletes a comment');
      await repo.deleteComment(tx, teamId, comment.id);
      await this.events.record(tx, {
        teamId,
        type: 'work_item.comment_deleted',
        ...actor,
        subjectId: item.id,
        data: { title: item.title, comment_id: comment.id },
      });
    });
  }

  async addLink(principal: Principal, itemId: string, input: Static<typeof LinkBody>) {
    const teamId = boardTeam(principal, 'write');
    const actor = actorOf(principal);
    try {
      const row = await this.db.transaction(async (tx) => {
        const item = await this.items.foundForChange(tx, teamId, itemId);
        const known =
          input.type === 'task'
            ? await this.ports.isTeamTask(tx, teamId, input.id)
            : await this.ports.isTeamPlaybookRun(tx, teamId, input.id);
        if (!known)
          throw new BadRequestError(
            'unknown_link_target',
            `${input.type.replace('_', ' ')} ${input.id} is not one of this team's`,
            { type: input.type, id: input.id },
          );
        if ((await repo.countLinks(tx, teamId, item.id)) >= MAX_LINKS_PER_ITEM)
          throw new ConflictError('too_many_links', `a work item holds at most ${MAX_LINKS_PER_ITEM} links`);
        const link = await repo.insertLink(tx, {
          id: newId('wkl'),
          teamId,
          workItemId: item.id,
          targetType: input.type,
          targetId: input.id,
          createdBy: createdByOf(actor),
          createdAt: this.ctx.clock.now(),
        });
        await this.events.record(tx, {
          teamId,
          type: 'work_item.linked',
          ...actor,
          subjectId: item.id,
          data: { title: item.title, link_id: link.id, target_type: input.type, target_id: input.id },
        });
        return link;
      });
      return linkView(row);
    } catch (err) {
      if (isUniqueViolation(err))
        throw new ConflictError('already_linked', `${input.id} is already linked to work item ${itemId}`, {
          id: input.id,
        });
      throw err;
    }
  }

  async listLinks(principal: Principal, itemId: string) {
    const teamId = boardTeam(principal, 'read');
    const item = await this.items.found(this.db, teamId, itemId);
    return { data: (await repo.listLinks(this.db, teamId, item.id)).map(linkView) };
  }

  async removeLink(principal: Principal, itemId: string, rawLinkId: string): Promise<void> {
    const teamId = boardTeam(principal, 'write');
    await this.db.transaction(async (tx) => {
      const item = await this.items.foundForChange(tx, teamId, itemId);
      const link = await repo.findLink(tx, teamId, item.id, linkId(rawLinkId));
      if (!link) throw new NotFoundError('link', rawLinkId);
      await repo.deleteLink(tx, teamId, link.id);
      await this.events.record(tx, {
        teamId,
        type: 'work_item.unlinked',
        ...actorOf(principal),
        subjectId: item.id,
        data: { title: item.title, link_id: link.id, target_type: link.targetType, target_id: link.targetId },
      });
    });
  }
}

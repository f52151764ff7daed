import { type Clock, DAY_MS } from '../../core/clock.ts';
import { generateToken, type TokenHasher } from '../../core/crypto.ts';
import { ConflictError, ForbiddenError, GoneError, NotFoundError } from '../../core/errors.ts';
import { statusAt } from '../../core/expiry.ts';
import { newId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { MailPort } from '../mail/service.ts';
import { invitationMail } from './emails.ts';
import { activeTeam, actorOf, type Principal, type Scope } from './principal.ts';
import * as repo from './repo.ts';
import { teamAccess } from './team-access.ts';
import type { Attempt, Throttles } from './throttles.ts';
import { invitationView, teamView } from './views.ts';

/** Rungate: invitations last 7 days; a resend starts the 7 days again. */
export const INVITATION_TTL_MS = 7 * DAY_MS;

export type InvitableRole = 'admin' | 'member' | 'viewer';

/**
 * Invitations to the caller's active team: created, listed, revoked and
 * resent by its admins; looked up and accepted by whoever holds the token
 * (signup through an invitation goes through AuthService, which calls
 * pendingInvitationByToken and acceptInvitationFor in its own transaction).
 */
export class InvitationsService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    private readonly mail: MailPort,
    /** Where the accept link points (PADDOCK_PUBLIC_URL, or the server's own address). */
    private readonly publicBase: string,
    private readonly throttles: Throttles,
  ) {}

  /**
   * Counts one invitation e-mail against the team's and the recipient's
   * limits (429 when either is used up), runs `send` (the transaction that
   * queues it) and gives the counts back when it fails: only e-mails queued
   * count. The recipient's limit is across teams, so no number of teams can
   * flood one address.
   */
  private async throttledMail<T>(teamId: string, email: string, send: () => Promise<T>): Promise<T> {
    const team = await this.throttles.take('invitation_mail_team', teamId);
    let recipient: Attempt;
    try {
      recipient = await this.throttles.take('invitation_mail_recipient', email);
    } catch (err) {
      await team.refund();
      throw err;
    }
    try {
      return await send();
    } catch (err) {
      await Promise.all([team.refund(), recipient.refund()]);
      throw err;
    }
  }

  /** Queues the invitation's e-mail, with its accept link, in the transaction that made the token. */
  private async queueInvitationMail(tx: DbOrTx, row: repo.InvitationRow, token: string): Promise<string> {
    const team = await repo.findLiveTeam(tx, row.teamId);
    const inviter = row.invitedBy.startsWith('usr_') ? await repo.findUserById(tx, row.invitedBy) : undefined;
    const message = invitationMail(
      this.publicBase,
      {
        email: row.email,
        teamName: team?.name ?? 'a team',
        role: row.role,
        inviterName: inviter?.name ?? null,
      },
      token,
    );
    return this.mail.queue(tx, message);
  }

  async createInvitation(principal: Principal, input: { email: string; role?: InvitableRole }) {
    const teamId = activeTeam(principal);
    await teamAccess(this.db, principal, teamId, 'admin');
    const email = input.email.trim().toLowerCase();
    const role = input.role ?? 'member';
    const now = this.clock.now();
    const token = generateToken('pdi');
    const invitation = await this.throttledMail(teamId, email, () =>
      this.db.transaction(async (tx) => {
        await repo.lockInvitationEmail(tx, teamId, email);
        const existing = await repo.findUserByEmail(tx, email);
        if (existing && (await repo.findMembership(tx, teamId, existing.id))) {
          throw new ConflictError('already_member', `${email} is already a member of this team`);
        }
        const pending = await repo.findPendingInvitationForEmail(tx, teamId, email, now);
        if (pending) {
          throw new ConflictError(
            'invitation_pending',
            `${email} already has a pending invitation; resend it instead`,
            {
              invitation_id: pending.id,
            },
          );
        }
        const row = await repo.insertInvitation(tx, {
          id: newId('inv'),
          teamId,
          email,
          role,
          tokenHash: this.hasher.hash(token),
          invitedBy: principal.kind === 'session' ? principal.userId! : `api_key:${principal.apiKeyId}`,
          status: 'pending',
          expiresAt: new Date(now.getTime() + INVITATION_TTL_MS),
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          type: 'invitation.created',
          ...actorOf(principal),
          subjectId: row.id,
          data: { email, role },
        });
        return { row, mailId: await this.queueInvitationMail(tx, row, token) };
      }),
    );
    this.mail.dispatch(invitation.mailId);
    return { ...invitationView(invitation.row, now), token };
  }

  async listInvitations(principal: Principal, query: PageQuery & { status?: repo.InvitationStatusFilter }) {
    const teamId = activeTeam(principal);
    await teamAccess(this.db, principal, teamId, 'read');
    const now = this.clock.now();
    return pageOf(
      query,
      (cursor, rows) => repo.listInvitations(this.db, teamId, query.status, now, cursor, rows),
      (r) => invitationView(r, now),
    );
  }

  private async invitationOrNotFound(principal: Principal, id: string, need: Scope) {
    const teamId = activeTeam(principal);
    await teamAccess(this.db, principal, teamId, need);
    const row = await repo.findInvitation(this.db, teamId, id);
    if (!row) throw new NotFoundError('invitation', id);
    return row;
  }

  async getInvitation(principal: Principal, id: string) {
    return invitationView(await this.invitationOrNotFound(principal, id, 'read'), this.clock.now());
  }

  async revokeInvitation(principal: Principal, id: string) {
    const row = await this.invitationOrNotFound(principal, id, 'admin');
    const now = this.clock.now();
    const updated = await this.db.transaction(async (tx) => {
      // Conditional on still pending, so a concurrent accept cannot be revoked.
      const current = await repo.findInvitation(tx, row.teamId, id);
      if (current?.status !== 'pending') {
        throw new ConflictError(
          'invitation_not_pending',
          `the invitation is ${current?.status}, not pending`,
        );
      }
      return this.changeInvitation(tx, principal, row, 'invitation.revoked', {
        status: 'revoked',
        updatedAt: now,
      });
    });
    return invitationView(updated, now);
  }

  /** An admin's change to an invitation, with its event, in the caller's transaction. */
  private async changeInvitation(
    tx: DbOrTx,
    principal: Principal,
    row: repo.InvitationRow,
    type: 'invitation.revoked' | 'invitation.resent',
    patch: Parameters<typeof repo.updateInvitation>[2],
  ) {
    const updated = await repo.updateInvitation(tx, row.id, patch);
    await this.events.record(tx, {
      teamId: row.teamId,
      type,
      ...actorOf(principal),
      subjectId: row.id,
      data: { email: row.email },
    });
    return updated;
  }

  /** A new token and 7 more days; the old token stops working. */
  async resendInvitation(principal: Principal, id: string) {
    const row = await this.invitationOrNotFound(principal, id, 'admin');
    if (row.status !== 'pending') {
      throw new ConflictError('invitation_not_pending', `the invitation is ${row.status}, not pending`);
    }
    const now = this.clock.now();
    const token = generateToken('pdi');
    const updated = await this.throttledMail(row.teamId, row.email, () =>
      this.db.transaction(async (tx) => {
        // Reviving an expired invitation must not leave two live ones for one email.
        await repo.lockInvitationEmail(tx, row.teamId, row.email);
        const live = await repo.findPendingInvitationForEmail(tx, row.teamId, row.email, now);
        if (live && live.id !== id) {
          throw new ConflictError(
            'invitation_pending',
            `${row.email} already has a newer pending invitation; resend that one instead`,
            { invitation_id: live.id },
          );
        }
        const changed = await this.changeInvitation(tx, principal, row, 'invitation.resent', {
          tokenHash: this.hasher.hash(token),
          expiresAt: new Date(now.getTime() + INVITATION_TTL_MS),
          updatedAt: now,
        });
        return { row: changed, mailId: await this.queueInvitationMail(tx, changed, token) };
      }),
    );
    this.mail.dispatch(updated.mailId);
    return { ...invitationView(updated.row, now), token };
  }

  /** The invitation a token names, if it can still be accepted; otherwise the reason. */
  async usableInvitation(db: DbOrTx, token: string) {
    const found = await repo.findInvitationByTokenHash(db, this.hasher.hash(token));
    const now = this.clock.now();
    if (!found) throw new NotFoundError('invitation');
    const status = statusAt(found.invitation, now);
    if (status === 'accepted')
      throw new ConflictError('invitation_accepted', 'this invitation was already accepted');
    if (status !== 'pending') throw new NotFoundError('invitation');
    if (found.team.deletedAt !== null)
      throw new GoneError('team_gone', 'the team of this invitation no longer exists');
    return found;
  }

  /** Public preview of an invitation; does not consume it. */
  async lookupInvitation(token: string) {
    const { invitation, team } = await this.usableInvitation(this.db, token);
    const inviter = invitation.invitedBy.startsWith('usr_')
      ? await repo.findUserById(this.db, invitation.invitedBy)
      : undefined;
    const accountExists = (await repo.findUserByEmail(this.db, invitation.email)) !== undefined;
    return {
      team: { id: team.id, name: team.name },
      email: invitation.email,
      role: invitation.role,
      invited_by: inviter ? { name: inviter.name, email: inviter.email } : null,
      expires_at: invitation.expiresAt.toISOString(),
      account_exists: accountExists,
    };
  }

  async pendingInvitationByToken(tx: DbOrTx, token: string, email: string): Promise<repo.InvitationRow> {
    const { invitation } = await this.usableInvitation(tx, token);
    if (invitation.email !== email) {
      throw new ForbiddenError('invitation_email_mismatch', `this invitation is for ${invitation.email}`);
    }
    return invitation;
  }

  async acceptInvitationFor(tx: DbOrTx, invitation: repo.InvitationRow, user: repo.UserRow): Promise<void> {
    const now = this.clock.now();
    const added = await repo.insertMemberIfAbsent(tx, {
      teamId: invitation.teamId,
      userId: user.id,
      role: invitation.role,
      createdAt: now,
    });
    if (!added) {
      throw new ConflictError('already_member', 'you are already a member of this team');
    }
    await repo.updateInvitation(tx, invitation.id, {
      status: 'accepted',
      acceptedAt: now,
      acceptedBy: user.id,
      updatedAt: now,
    });
    await this.events.record(tx, {
      teamId: invitation.teamId,
      type: 'invitation.accepted',
      actorKind: 'user',
      actorId: user.id,
      subjectId: invitation.id,
      data: { email: invitation.email, user_id: user.id },
    });
  }

  /** A signed-in user accepts an invitation addressed to their email. */
  async acceptInvitation(principal: Principal, token: string) {
    const user = await repo.findUserById(this.db, principal.userId!);
    if (!user) throw new NotFoundError('user', principal.userId!);
    const teamId = await this.db.transaction(async (tx) => {
      const invitation = await this.pendingInvitationByToken(tx, token, user.email);
      await this.acceptInvitationFor(tx, invitation, user);
      return invitation.teamId;
    });
    const membership = (await repo.findMembership(this.db, teamId, user.id))!;
    return teamView(membership.team, membership.role);
  }

  /** For signup through an invitation: the email the token is for. */
  async invitationEmail(token: string): Promise<string> {
    return (await this.usableInvitation(this.db, token)).invitation.email;
  }
}

// One file over ~400 lines for now: teams, members and invitations share the
// owner/admin access checks and the member rows an accepted invitation writes.
// Invitations are the part to move out next (their own service) when it grows.
import { randomBytes } from 'node:crypto';
import { type Clock, DAY_MS } from '../../core/clock.ts';
import { generateToken, type TokenHasher } from '../../core/crypto.ts';
import { ConflictError, ForbiddenError, GoneError, NotFoundError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import {
  activeTeam,
  actorOf,
  type Principal,
  type Role,
  requireScope,
  type Scope,
  scopeOfRole,
} from './principal.ts';
import * as repo from './repo.ts';
import { invitationStatus, invitationView, memberView, teamView } from './views.ts';

/** Rungate: invitations last 7 days; a resend starts the 7 days again. */
export const INVITATION_TTL_MS = 7 * DAY_MS;

type InvitableRole = 'admin' | 'member' | 'viewer';

function newSlug(): string {
  const hex = randomBytes(6).toString('hex');
  return `${hex.slice(0, 6)}-${hex.slice(6)}`;
}

export class TeamsService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
  ) {}

  /**
   * What `principal` may do in `teamId`. Another team's object is a 404, never
   * a 403: a caller outside the team learns nothing about it.
   */
  private async access(
    principal: Principal,
    teamId: string,
    need: Scope,
  ): Promise<{ team: repo.TeamRow; role: Role | null }> {
    let team: repo.TeamRow | undefined;
    let role: Role | null = null;
    let scope: Scope;
    if (principal.kind === 'session') {
      const membership = await repo.findMembership(this.db, teamId, principal.userId!);
      team = membership?.team;
      role = membership?.role ?? null;
      scope = role ? scopeOfRole(role) : 'read';
    } else {
      team = principal.teamId === teamId ? await repo.findLiveTeam(this.db, teamId) : undefined;
      scope = principal.scope;
    }
    if (!team) throw new NotFoundError('team', teamId);
    requireScope({ ...principal, role, scope }, need);
    return { team, role };
  }

  private async requireOwner(principal: Principal, teamId: string, action: string): Promise<repo.TeamRow> {
    const { team, role } = await this.access(principal, teamId, 'read');
    if (principal.kind !== 'session' || role !== 'owner') {
      throw new ForbiddenError('owner_required', `only the team's owner may ${action}`);
    }
    return team;
  }

  /** Creates a team with `user` as owner, inside the caller's transaction. */
  async createTeamFor(tx: DbOrTx, user: repo.UserRow, name: string): Promise<repo.TeamRow> {
    const now = this.clock.now();
    const team = await repo.insertTeam(tx, {
      id: newId('team'),
      name,
      slug: newSlug(),
      createdAt: now,
      updatedAt: now,
    });
    await repo.insertMember(tx, { teamId: team.id, userId: user.id, role: 'owner', createdAt: now });
    await this.events.record(tx, {
      teamId: team.id,
      type: 'team.created',
      actorKind: 'user',
      actorId: user.id,
      subjectId: team.id,
      data: { name },
    });
    return team;
  }

  async createTeam(principal: Principal, input: { name: string }) {
    const user = await repo.findUserById(this.db, principal.userId!);
    if (!user) throw new NotFoundError('user', principal.userId!);
    const team = await this.db.transaction((tx) => this.createTeamFor(tx, user, input.name.trim()));
    return teamView(team, 'owner');
  }

  async listTeams(principal: Principal, page: PageQuery) {
    if (principal.kind === 'api_key') {
      const team = await repo.findLiveTeam(this.db, activeTeam(principal));
      return { data: team ? [teamView(team, null)] : [], next_cursor: null };
    }
    return pageOf(
      page,
      (cursor, rows) => repo.listUserTeams(this.db, principal.userId!, cursor, rows),
      (r) => teamView(r.team, r.role),
      (r) => r.team.id,
    );
  }

  async getTeam(principal: Principal, teamId: string) {
    const { team, role } = await this.access(principal, teamId, 'read');
    return teamView(team, role);
  }

  async updateTeam(principal: Principal, teamId: string, input: { name?: string }) {
    const { team, role } = await this.access(principal, teamId, 'admin');
    if (input.name === undefined) return teamView(team, role);
    const name = input.name.trim();
    const updated = await this.db.transaction(async (tx) => {
      const row = await repo.updateTeam(tx, teamId, { name, updatedAt: this.clock.now() });
      await this.events.record(tx, {
        teamId,
        type: 'team.updated',
        ...actorOf(principal),
        subjectId: teamId,
        data: { name },
      });
      return row;
    });
    return teamView(updated, role);
  }

  /** Wrenn: owner only; a soft delete, and the slug stays reserved. */
  async deleteTeam(principal: Principal, teamId: string): Promise<void> {
    await this.requireOwner(principal, teamId, 'delete it');
    const now = this.clock.now();
    await this.db.transaction(async (tx) => {
      await repo.updateTeam(tx, teamId, { deletedAt: now, updatedAt: now });
      await this.events.record(tx, {
        teamId,
        type: 'team.deleted',
        ...actorOf(principal),
        subjectId: teamId,
        data: {},
      });
    });
  }

  async listMembers(principal: Principal, teamId: string, page: PageQuery) {
    await this.access(principal, teamId, 'read');
    return pageOf(
      page,
      (cursor, rows) => repo.listMembers(this.db, teamId, cursor, rows),
      memberView,
      (r) => r.user.id,
    );
  }

  private async memberOrNotFound(db: DbOrTx, teamId: string, userId: string) {
    const membership = await repo.findMembership(db, teamId, userId);
    if (!membership) throw new NotFoundError('member', userId);
    return membership;
  }

  private async memberResult(teamId: string, userId: string) {
    const user = (await repo.findUserById(this.db, userId))!;
    const membership = await this.memberOrNotFound(this.db, teamId, userId);
    return memberView({ user, role: membership.role, joinedAt: membership.joinedAt });
  }

  /** Wrenn: an admin adds an existing account by email, at once. */
  async addMember(principal: Principal, teamId: string, input: { email: string; role?: InvitableRole }) {
    await this.access(principal, teamId, 'admin');
    const email = input.email.trim().toLowerCase();
    const role = input.role ?? 'member';
    const user = await repo.findUserByEmail(this.db, email);
    if (!user) {
      throw new NotFoundError('user', email);
    }
    await this.db.transaction(async (tx) => {
      const added = await repo.insertMemberIfAbsent(tx, {
        teamId,
        userId: user.id,
        role,
        createdAt: this.clock.now(),
      });
      if (!added) {
        throw new ConflictError('already_member', `${email} is already a member of this team`);
      }
      await this.events.record(tx, {
        teamId,
        type: 'member.added',
        ...actorOf(principal),
        subjectId: user.id,
        data: { user_id: user.id, role },
      });
    });
    return this.memberResult(teamId, user.id);
  }

  async updateMemberRole(principal: Principal, teamId: string, userId: string, role: InvitableRole) {
    await this.access(principal, teamId, 'admin');
    await this.db.transaction(async (tx) => {
      await repo.lockTeamMembers(tx, teamId);
      const target = await this.memberOrNotFound(tx, teamId, userId);
      if (target.role === 'owner') {
        throw new ConflictError(
          'owner_role_fixed',
          "the owner's role cannot be changed; the owner can transfer ownership to another member instead",
        );
      }
      if (target.role === role) return;
      await repo.setMemberRole(tx, teamId, userId, role);
      await this.events.record(tx, {
        teamId,
        type: 'member.role_changed',
        ...actorOf(principal),
        subjectId: userId,
        data: { user_id: userId, from: target.role, to: role },
      });
    });
    return this.memberResult(teamId, userId);
  }

  /** Admins remove members; anyone may remove themselves (leave). The owner stays. */
  async removeMember(principal: Principal, teamId: string, userId: string): Promise<void> {
    const self = principal.kind === 'session' && principal.userId === userId;
    await this.access(principal, teamId, self ? 'read' : 'admin');
    await this.db.transaction(async (tx) => {
      await repo.lockTeamMembers(tx, teamId);
      const target = await this.memberOrNotFound(tx, teamId, userId);
      if (target.role === 'owner') {
        throw new ConflictError(
          'owner_cannot_leave',
          'the owner cannot be removed; transfer ownership first, or delete the team',
        );
      }
      await repo.deleteMember(tx, teamId, userId);
      await this.events.record(tx, {
        teamId,
        type: 'member.removed',
        ...actorOf(principal),
        subjectId: userId,
        data: { user_id: userId },
      });
    });
  }

  /** Rungate: the target becomes owner and the old owner an admin. */
  async transferOwnership(principal: Principal, teamId: string, toUserId: string) {
    await this.requireOwner(principal, teamId, 'transfer ownership');
    const fromUserId = principal.userId!;
    await this.db.transaction(async (tx) => {
      await repo.lockTeamMembers(tx, teamId);
      // Checked again under the lock: a concurrent transfer may have moved ownership already.
      if ((await repo.findMembership(tx, teamId, fromUserId))?.role !== 'owner') {
        throw new ForbiddenError('owner_required', "only the team's owner may transfer ownership");
      }
      await this.memberOrNotFound(tx, teamId, toUserId);
      if (toUserId === fromUserId) return;
      // Demote first: the database allows one owner per team.
      await repo.setMemberRole(tx, teamId, fromUserId, 'admin');
      await repo.setMemberRole(tx, teamId, toUserId, 'owner');
      await this.events.record(tx, {
        teamId,
        type: 'member.ownership_transferred',
        ...actorOf(principal),
        subjectId: toUserId,
        data: { from_user_id: fromUserId, to_user_id: toUserId },
      });
    });
    return this.memberResult(teamId, toUserId);
  }

  // Invitations (in the caller's active team)

  async createInvitation(principal: Principal, input: { email: string; role?: InvitableRole }) {
    const teamId = activeTeam(principal);
    await this.access(principal, teamId, 'admin');
    const email = input.email.trim().toLowerCase();
    const role = input.role ?? 'member';
    const now = this.clock.now();
    const token = generateToken('pdi');
    const invitation = await this.db.transaction(async (tx) => {
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
      return row;
    });
    return { ...invitationView(invitation, now), token };
  }

  async listInvitations(principal: Principal, query: PageQuery & { status?: repo.InvitationStatusFilter }) {
    const teamId = activeTeam(principal);
    await this.access(principal, teamId, 'read');
    const now = this.clock.now();
    return pageOf(
      query,
      (cursor, rows) => repo.listInvitations(this.db, teamId, query.status, now, cursor, rows),
      (r) => invitationView(r, now),
    );
  }

  private async invitationOrNotFound(principal: Principal, id: string, need: Scope) {
    const teamId = activeTeam(principal);
    await this.access(principal, teamId, need);
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
      const r = await repo.updateInvitation(tx, id, { status: 'revoked', updatedAt: now });
      await this.events.record(tx, {
        teamId: row.teamId,
        type: 'invitation.revoked',
        ...actorOf(principal),
        subjectId: id,
        data: { email: row.email },
      });
      return r;
    });
    return invitationView(updated, now);
  }

  /** A new token and 7 more days; the old token stops working. */
  async resendInvitation(principal: Principal, id: string) {
    const row = await this.invitationOrNotFound(principal, id, 'admin');
    if (row.status !== 'pending') {
      throw new ConflictError('invitation_not_pending', `the invitation is ${row.status}, not pending`);
    }
    const now = this.clock.now();
    const token = generateToken('pdi');
    const updated = await this.db.transaction(async (tx) => {
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
      const r = await repo.updateInvitation(tx, id, {
        tokenHash: this.hasher.hash(token),
        expiresAt: new Date(now.getTime() + INVITATION_TTL_MS),
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId: row.teamId,
        type: 'invitation.resent',
        ...actorOf(principal),
        subjectId: id,
        data: { email: row.email },
      });
      return r;
    });
    return { ...invitationView(updated, now), token };
  }

  /** The invitation a token names, if it can still be accepted; otherwise the reason. */
  async usableInvitation(db: DbOrTx, token: string) {
    const found = await repo.findInvitationByTokenHash(db, this.hasher.hash(token));
    const now = this.clock.now();
    if (!found) throw new NotFoundError('invitation');
    const status = invitationStatus(found.invitation, now);
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

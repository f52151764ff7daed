import { randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.ts';
import { ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { TeamLimits } from '../../db/schema/identity.ts';
import type { EventsService } from '../events/service.ts';
import type { InvitableRole } from './invitations-service.ts';
import { activeTeam, actorOf, type Principal, type Scope } from './principal.ts';
import * as repo from './repo.ts';
import { teamAccess } from './team-access.ts';
import { memberView, teamView } from './views.ts';

function newSlug(): string {
  const hex = randomBytes(6).toString('hex');
  return `${hex.slice(0, 6)}-${hex.slice(6)}`;
}

export class TeamsService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly events: EventsService,
  ) {}

  private access(principal: Principal, teamId: TeamId, need: Scope) {
    return teamAccess(this.db, principal, teamId, need);
  }

  private async requireOwner(principal: Principal, teamId: TeamId, action: string): Promise<repo.TeamRow> {
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

  async getTeam(principal: Principal, teamId: TeamId) {
    const { team, role } = await this.access(principal, teamId, 'read');
    return teamView(team, role);
  }

  async updateTeam(principal: Principal, teamId: TeamId, input: { name?: string }) {
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
  async deleteTeam(principal: Principal, teamId: TeamId): Promise<void> {
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

  async listMembers(principal: Principal, teamId: TeamId, page: PageQuery) {
    await this.access(principal, teamId, 'read');
    return pageOf(
      page,
      (cursor, rows) => repo.listMembers(this.db, teamId, cursor, rows),
      memberView,
      (r) => r.user.id,
    );
  }

  /** Every member's user id (in-app notifications' recipients); Paddock's own reads, no caller. */
  memberUserIds(db: DbOrTx, teamId: TeamId): Promise<string[]> {
    return repo.memberUserIds(db, teamId);
  }

  private async memberOrNotFound(db: DbOrTx, teamId: TeamId, userId: string) {
    const membership = await repo.findMembership(db, teamId, userId);
    if (!membership) throw new NotFoundError('member', userId);
    return membership;
  }

  private async memberResult(teamId: TeamId, userId: string) {
    const user = (await repo.findUserById(this.db, userId))!;
    const membership = await this.memberOrNotFound(this.db, teamId, userId);
    return memberView({ user, role: membership.role, joinedAt: membership.joinedAt });
  }

  /** Wrenn: an admin adds an existing account by email, at once. */
  async addMember(principal: Principal, teamId: TeamId, input: { email: string; role?: InvitableRole }) {
    await this.access(principal, teamId, 'admin');
    const email = input.email.trim().toLowerCase();
    const role = input.role ?? 'member';
    const user = await repo.findUserByEmail(this.db, email);
    // An erased account keeps a placeholder address; it is no one to add.
    if (!user || user.deletedAt !== null) {
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

  async updateMemberRole(principal: Principal, teamId: TeamId, userId: string, role: InvitableRole) {
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
  async removeMember(principal: Principal, teamId: TeamId, userId: string): Promise<void> {
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
  async transferOwnership(principal: Principal, teamId: TeamId, toUserId: string) {
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

  /** The team's limits (docs/admin.md); Paddock's own reads, no caller. A team gone has none. */
  async limitsOf(teamId: TeamId): Promise<TeamLimits> {
    return (await repo.findLiveTeamLimits(this.db, teamId)) ?? {};
  }

  /** Whether the user is a member of the (live) team now: whom the work board may assign. */
  async isMember(tx: DbOrTx, teamId: TeamId, userId: string): Promise<boolean> {
    return (await repo.findMembership(tx, teamId, userId)) !== undefined;
  }

  /** Which of `emails` (normalised) belong to the team's members now: who alert rules may e-mail. */
  memberEmailsAmong(tx: DbOrTx, teamId: TeamId, emails: string[]): Promise<string[]> {
    return repo.memberEmailsAmong(tx, teamId, emails);
  }
}

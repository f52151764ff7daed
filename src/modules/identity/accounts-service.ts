import type { Clock } from '../../core/clock.ts';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import type { TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { TeamLimits } from '../../db/schema/identity.ts';
import type { EventsService } from '../events/service.ts';
import * as accounts from './accounts-repo.ts';
import * as keysRepo from './api-keys-repo.ts';
import { type Actor, actorOf, type Principal, requirePlatformAdmin, teamIdOf } from './principal.ts';
import * as repo from './repo.ts';
import { iso } from './views.ts';

/** What an erased account is called from then on. */
export const ERASED_NAME = 'deleted user';
/** What the teams deleted with an account are called (their names were often the user's: "Ada's team"). */
export const ERASED_TEAM_NAME = 'deleted team';
/** Not a scrypt hash: no password ever matches it. */
const NO_PASSWORD = '!';

/** A unique address no mail can reach (.invalid is reserved, RFC 2606), so the old one can sign up again. */
export function erasedEmail(userId: string): string {
  return `deleted-${userId.toLowerCase()}@erased.invalid`;
}

/** The other modules' personal data an erasure deletes, each in the erasure's transaction. */
export interface ErasurePorts {
  /** Messages to the address (the e-mail outbox). */
  forgetAddress(tx: DbOrTx, address: string): Promise<void>;
  /** The user's in-app notifications. */
  forgetUser(tx: DbOrTx, userId: string): Promise<void>;
}

export function accountStatus(u: repo.UserRow): accounts.AccountStatus {
  return u.deletedAt !== null ? 'deleted' : u.deactivatedAt !== null ? 'deactivated' : 'active';
}

function adminUserView(u: repo.UserRow) {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    is_admin: u.isAdmin,
    status: accountStatus(u),
    deactivated_at: iso(u.deactivatedAt),
    deleted_at: iso(u.deletedAt),
    created_at: iso(u.createdAt),
    updated_at: iso(u.updatedAt),
  };
}

function adminTeamView(r: accounts.AdminTeamRow) {
  return {
    id: r.team.id,
    name: r.team.name,
    slug: r.team.slug,
    member_count: r.members,
    owner: r.owner,
    limits: { max_concurrent_tasks: r.team.limits.max_concurrent_tasks ?? null },
    created_at: iso(r.team.createdAt),
    updated_at: iso(r.team.updatedAt),
  };
}

/**
 * Platform admins' view of every account and team (/v1/admin/…), and the
 * erasure of an account, which DELETE /v1/me shares. Every change is an
 * event of no team with the acting admin as its actor, so it is in the
 * platform audit log (GET /v1/admin/audit-logs).
 */
export class AccountsService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly events: EventsService,
    private readonly erasure: ErasurePorts,
  ) {}

  async listUsers(principal: Principal, query: PageQuery & accounts.UserFilter) {
    requirePlatformAdmin(principal, 'list accounts');
    return pageOf(query, (cursor, rows) => accounts.listUsers(this.db, query, cursor, rows), adminUserView);
  }

  async getUser(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'read accounts');
    const user = await this.userOrNotFound(this.db, id);
    const memberships = await accounts.userMemberships(this.db, user.id);
    return {
      ...adminUserView(user),
      teams: memberships.map((m) => ({
        id: m.team.id,
        name: m.team.name,
        slug: m.team.slug,
        role: m.role,
        joined_at: iso(m.joinedAt),
      })),
    };
  }

  /** PUT /v1/admin/users/{id}/active. */
  setActive(principal: Principal, id: string, active: boolean) {
    return active ? this.reactivate(principal, id) : this.deactivate(principal, id);
  }

  /** PUT /v1/admin/users/{id}/admin. */
  setAdmin(principal: Principal, id: string, admin: boolean) {
    return admin ? this.grantAdmin(principal, id) : this.revokeAdmin(principal, id);
  }

  /** Ends the user's sessions and suspends the API keys they created, on every server at once (both are read per request). */
  async deactivate(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'deactivate accounts');
    if (id === principal.userId) {
      throw new ConflictError(
        'cannot_deactivate_self',
        'you cannot deactivate your own account; another platform admin can',
      );
    }
    return this.change(principal, id, 'user.deactivated', async (tx, user, now) => {
      if (user.deactivatedAt !== null) return undefined;
      await this.keepAnAdmin(tx, user);
      await accounts.revokeAllSessions(tx, user.id, now);
      return { deactivatedAt: now };
    });
  }

  /** The user can sign in again, and the API keys they created work again; ended sessions stay ended. */
  async reactivate(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'reactivate accounts');
    return this.change(principal, id, 'user.reactivated', async (_tx, user) =>
      user.deactivatedAt === null ? undefined : { deactivatedAt: null },
    );
  }

  async grantAdmin(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'make platform admins');
    return this.change(principal, id, 'user.admin_granted', async (_tx, user) =>
      user.isAdmin ? undefined : { isAdmin: true },
    );
  }

  async revokeAdmin(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'revoke platform admin');
    return this.change(principal, id, 'user.admin_revoked', async (tx, user) => {
      if (!user.isAdmin) return undefined;
      await this.keepAnAdmin(tx, user);
      return { isAdmin: false };
    });
  }

  /**
   * One change to a live account, with its event, under the platform-admin
   * lock; `apply` answers the patch, or undefined when there is nothing to do
   * (the call is then answered as it is, and records nothing).
   */
  private async change(
    principal: Principal,
    id: string,
    type: 'user.deactivated' | 'user.reactivated' | 'user.admin_granted' | 'user.admin_revoked',
    apply: (
      tx: DbOrTx,
      user: repo.UserRow,
      now: Date,
    ) => Promise<Parameters<typeof accounts.updateAccount>[2] | undefined>,
  ) {
    const user = await this.db.transaction(async (tx) => {
      await accounts.lockPlatformAdmins(tx);
      const found = await this.userOrNotFound(tx, id);
      if (found.deletedAt !== null) {
        throw new ConflictError('user_deleted', 'this account was deleted; nothing about it can change');
      }
      const now = this.clock.now();
      const patch = await apply(tx, found, now);
      if (patch === undefined) return found;
      const updated = await accounts.updateAccount(tx, id, { ...patch, updatedAt: now });
      await this.events.record(tx, {
        teamId: null,
        type,
        ...actorOf(principal),
        subjectId: id,
        data: {},
      });
      return updated!;
    });
    return adminUserView(user);
  }

  /** 409 when `user` is the last active platform admin: a server must keep one. */
  private async keepAnAdmin(tx: DbOrTx, user: repo.UserRow): Promise<void> {
    if (!user.isAdmin || accountStatus(user) !== 'active') return;
    if ((await accounts.countActiveAdmins(tx)) <= 1) {
      throw new ConflictError(
        'last_platform_admin',
        'this is the last active platform admin; make another user a platform admin first',
      );
    }
  }

  /** A platform admin erases an account (GDPR); the rules are erase()'s. */
  async deleteUser(principal: Principal, id: string): Promise<void> {
    requirePlatformAdmin(principal, 'delete accounts');
    await this.erase(actorOf(principal), id, 'platform_admin');
  }

  /**
   * Erases an account (docs/admin.md): refused while the user owns a team
   * with other members (409 owns_teams) or is the last platform admin; the
   * teams only they belong to are deleted with it. The row stays, anonymised,
   * so runs, audit entries and everything else that names the id still do;
   * its e-mail, name, password, sessions, e-mailed tokens, memberships,
   * notifications and mail go, the API keys it created are revoked, and the
   * records stop holding its address. A second erasure changes nothing.
   */
  async erase(actor: Actor, userId: string, by: 'self' | 'platform_admin'): Promise<void> {
    await this.db.transaction(async (tx) => {
      await accounts.lockPlatformAdmins(tx);
      const user = await this.userOrNotFound(tx, userId);
      if (user.deletedAt !== null) return;
      await this.keepAnAdmin(tx, user);
      const owned = await accounts.ownedTeamsLocked(tx, user.id);
      const shared = owned.filter((t) => t.members > 1).map((t) => t.id);
      if (shared.length > 0) {
        throw new ConflictError(
          'owns_teams',
          `${by === 'self' ? 'you own' : 'the user owns'} teams with other members: transfer their ownership or delete them first`,
          { team_ids: shared },
        );
      }
      const now = this.clock.now();
      const placeholder = erasedEmail(user.id);
      const soleTeams = owned.map((t) => t.id);
      const left = (await accounts.userMemberships(tx, user.id)).filter((m) => m.role !== 'owner');
      const keys = await keysRepo.revokeKeysCreatedBy(tx, user.id, now);
      await accounts.deleteTeamsErased(tx, soleTeams, ERASED_TEAM_NAME, now);
      await accounts.deletePersonalRows(tx, user.id);
      await accounts.settleInvitations(tx, user.id, user.email, placeholder, now);
      await accounts.updateAccount(tx, user.id, {
        email: placeholder,
        name: ERASED_NAME,
        passwordHash: NO_PASSWORD,
        isAdmin: false,
        deactivatedAt: null,
        deletedAt: now,
        updatedAt: now,
      });
      await this.events.recordAll(tx, [
        ...keys.map((k) => ({
          teamId: k.teamId,
          type: 'api_key.revoked' as const,
          ...actor,
          subjectId: k.id,
          data: { name: k.name },
        })),
        ...soleTeams.map((teamId) => ({
          teamId,
          type: 'team.deleted' as const,
          ...actor,
          subjectId: teamId,
          data: {},
        })),
        ...left.map((m) => ({
          teamId: m.team.id,
          type: 'member.removed' as const,
          ...actor,
          subjectId: user.id,
          data: { user_id: user.id },
        })),
        {
          teamId: null,
          type: 'user.deleted' as const,
          ...actor,
          subjectId: user.id,
          data: { by, teams_deleted: soleTeams, api_keys_revoked: keys.length },
        },
      ]);
      // After the events above, so their own entries are rewritten too.
      await this.events.erasePersonalData(tx, {
        email: user.email,
        replacement: placeholder,
        subjectIds: soleTeams,
        erasedName: ERASED_TEAM_NAME,
      });
      await this.erasure.forgetAddress(tx, user.email);
      await this.erasure.forgetUser(tx, user.id);
    });
  }

  async listTeams(principal: Principal, query: PageQuery & { q?: string }) {
    requirePlatformAdmin(principal, 'list every team');
    return pageOf(
      query,
      (cursor, rows) => accounts.listTeams(this.db, query.q, cursor, rows),
      adminTeamView,
      (r) => r.team.id,
    );
  }

  async getTeam(principal: Principal, id: string) {
    requirePlatformAdmin(principal, 'read every team');
    const teamId: TeamId = teamIdOf(id);
    const row = await accounts.findTeam(this.db, teamId);
    if (!row) throw new NotFoundError('team', id);
    return adminTeamView(row);
  }

  /**
   * PATCH /v1/admin/teams/{id}: the limits sent are set (null removes one),
   * the others kept. Credit grants are transactions of the credits module
   * (POST /v1/admin/teams/{id}/credits), not settings.
   */
  async updateTeam(
    principal: Principal,
    id: string,
    input: { limits?: { max_concurrent_tasks?: number | null } },
  ) {
    requirePlatformAdmin(principal, 'set a team’s limits');
    const teamId = teamIdOf(id);
    await this.db.transaction(async (tx) => {
      const found = await accounts.findTeam(tx, teamId);
      if (!found) throw new NotFoundError('team', id);
      if (input.limits === undefined) return;
      const limits: TeamLimits = { ...found.team.limits };
      const max = input.limits.max_concurrent_tasks;
      if (max === null) delete limits.max_concurrent_tasks;
      else if (max !== undefined) limits.max_concurrent_tasks = max;
      await accounts.setTeamLimits(tx, teamId, limits, this.clock.now());
      await this.events.record(tx, {
        teamId,
        type: 'team.limits_updated',
        ...actorOf(principal),
        subjectId: teamId,
        data: { limits },
      });
    });
    return this.getTeam(principal, id);
  }

  private async userOrNotFound(db: DbOrTx, id: string): Promise<repo.UserRow> {
    const user = await repo.findUserById(db, id);
    if (!user) throw new NotFoundError('user', id);
    return user;
  }
}

import { type Clock, HOUR_MS, MINUTE_MS } from '../../core/clock.ts';
import { generateToken, type Passwords, type TokenHasher } from '../../core/crypto.ts';
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  UnauthorizedError,
  ValidationError,
} from '../../core/errors.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import { type Page, type PageQuery, pageOf } from '../../core/pagination.ts';
import type { RequestContext } from '../../core/request-context.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { AccountsService } from './accounts-service.ts';
import type { InvitationsService } from './invitations-service.ts';
import { actorOf, type Principal, type Role, scopeOfRole } from './principal.ts';
import * as repo from './repo.ts';
import type { TeamsService } from './teams-service.ts';
import type { Throttles } from './throttles.ts';
import { sessionView, type TeamView, teamView, type UserView, userView } from './views.ts';

/** Wrenn: sessions end after 6 h without use, and 24 h after sign-in whatever happens. */
export const SESSION_IDLE_MS = 6 * HOUR_MS;
export const SESSION_ABSOLUTE_MS = 24 * HOUR_MS;
/** last_seen_at is written at most this often per session, not on every request. */
const LAST_SEEN_WRITE_EVERY_MS = MINUTE_MS;

/** How a session was begun (the `user.signed_in` event's `method`). */
export type SignInMethod = 'password' | 'signup' | 'magic_link';

export interface RequestMeta {
  userAgent: string | null;
  ipAddress: string | null;
  /** The request, for the sign-in's audit entry. */
  request?: RequestContext;
  /** The browser's `paddock_device` cookie, if any (throttles.ts, deviceToken). */
  deviceToken?: string | null;
}

export interface SignedIn {
  user: UserView;
  team: TeamView | null;
  role: Role | null;
  session_token: string;
  csrf_token: string;
  expires_at: string;
  /** For the cookie; not part of the JSON body. */
  expiresAt: Date;
  /** For the `paddock_device` cookie; not part of the JSON body. */
  deviceToken: string;
}

/** A deactivated account (docs/admin.md): told only to someone who proved who they are, or holds its session. */
function deactivated(): UnauthorizedError {
  return new UnauthorizedError(
    'user_deactivated',
    'this account has been deactivated by a platform admin; ask them to reactivate it',
  );
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

export class AuthService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    private readonly teams: TeamsService,
    private readonly invitations: InvitationsService,
    private readonly signupMode: 'open' | 'invite',
    private readonly throttles: Throttles,
    private readonly accounts: Pick<AccountsService, 'erase'>,
    private readonly passwords: Passwords,
  ) {}

  /** Whether anyone has signed up yet: the CLI prints first-user instructions when not. */
  async isEmpty(): Promise<boolean> {
    return (await repo.countUsers(this.db)) === 0;
  }

  async signup(
    input: { email: string; password: string; name: string; invitation_token?: string },
    meta: RequestMeta,
  ): Promise<SignedIn> {
    // Before the password hash: refused signups cost no scrypt. Counts every signup,
    // so the 409 email_taken below answers a bounded number of questions (docs/api.md).
    await this.throttles.take('signup_ip', meta.ipAddress);
    const email = normaliseEmail(input.email);
    const passwordHash = await this.passwords.hash(input.password);
    return this.db.transaction(async (tx) => {
      await repo.lockSignups(tx);
      const first = (await repo.countUsers(tx)) === 0;
      const invitation =
        input.invitation_token !== undefined
          ? await this.invitations.pendingInvitationByToken(tx, input.invitation_token, email)
          : undefined;
      if (!first && this.signupMode === 'invite' && invitation === undefined) {
        throw new ForbiddenError(
          'signup_closed',
          'signup on this server is by invitation: ask a team admin for an invitation and sign up with its token',
        );
      }
      if (await repo.findUserByEmail(tx, email)) {
        throw new ConflictError(
          'email_taken',
          `an account with the email ${email} already exists; log in instead`,
        );
      }
      const now = this.clock.now();
      const user = await repo.insertUser(tx, {
        id: newId('usr'),
        email,
        name: input.name.trim(),
        passwordHash,
        isAdmin: first,
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId: null,
        type: 'user.signed_up',
        actorKind: 'user',
        actorId: user.id,
        subjectId: user.id,
        data: { email },
      });
      // Wrenn: every account gets a team of its own, as owner.
      const personal = await this.teams.createTeamFor(tx, user, `${user.name}'s team`);
      let activeTeamId = personal.id;
      if (invitation !== undefined) {
        await this.invitations.acceptInvitationFor(tx, invitation, user);
        activeTeamId = invitation.teamId;
      }
      return this.startSession(tx, user, activeTeamId, meta, 'signup');
    });
  }

  /**
   * Accepts an invitation: a signed-in user joins the team; without a session
   * the invitee signs up (name and password) and joins in the same step.
   */
  async acceptInvitation(
    principal: Principal | null,
    input: { token: string; name?: string; password?: string },
    meta: RequestMeta,
  ): Promise<{ team: TeamView; session: SignedIn | null }> {
    const fromAddress = await this.throttles.take('invitation_ip', meta.ipAddress);
    await this.throttles.take('invitation_token', input.token);
    if (principal?.kind === 'session') {
      const team = await this.invitations.acceptInvitation(principal, input.token);
      await fromAddress.refund();
      return { team, session: null };
    }
    const email = await this.invitations.invitationEmail(input.token);
    if (await repo.findUserByEmail(this.db, email)) {
      throw new ConflictError(
        'account_exists',
        `${email} already has an account: log in, then accept the invitation`,
      );
    }
    if (input.name === undefined || input.password === undefined) {
      throw new ValidationError('to accept without an account, send name and password to create one', {
        ...(input.name === undefined ? { name: 'is required' } : {}),
        ...(input.password === undefined ? { password: 'is required' } : {}),
      });
    }
    const session = await this.signup(
      { email, name: input.name, password: input.password, invitation_token: input.token },
      meta,
    );
    await fromAddress.refund();
    return { team: session.team!, session };
  }

  /** The public preview of an invitation token (throttled like accepting it). */
  async lookupInvitation(token: string, meta: RequestMeta) {
    const fromAddress = await this.throttles.take('invitation_ip', meta.ipAddress);
    await this.throttles.take('invitation_token', token);
    const preview = await this.invitations.lookupInvitation(token);
    await fromAddress.refund();
    return preview;
  }

  /**
   * Failed sign-ins are counted per client address and per e-mail address
   * (known or not, so a 429 says nothing about whether an account exists); a
   * browser that signed in to the account before counts apart from the
   * e-mail. Attempts are counted before the password is checked, so parallel
   * guesses cannot slip past the limit, and given back when they succeed.
   */
  async login(input: { email: string; password: string }, meta: RequestMeta): Promise<SignedIn> {
    const email = normaliseEmail(input.email);
    const fromAddress = await this.throttles.take('login_ip', meta.ipAddress);
    const device = this.throttles.deviceOf(meta.deviceToken, email);
    const forAccount = device
      ? await this.throttles.take('login_device', device)
      : await this.throttles.take('login_account', email);
    const user = await repo.findUserByEmail(this.db, email);
    const ok = await this.passwords.verify(input.password, user?.passwordHash);
    if (!user || !ok) throw new UnauthorizedError('invalid_credentials', 'the email or password is wrong');
    await Promise.all([fromAddress.refund(), forAccount.refund()]);
    return this.signInAs(this.db, user, meta, 'password');
  }

  /** A new session for a user who proved who they are (a password, an e-mailed link), in their first team. */
  async signInAs(db: DbOrTx, user: repo.UserRow, meta: RequestMeta, method: SignInMethod): Promise<SignedIn> {
    if (user.deactivatedAt !== null) throw deactivated();
    const teamId = await repo.firstTeamOf(db, user.id);
    return this.startSession(db, user, teamId ?? null, meta, method);
  }

  private async startSession(
    db: DbOrTx,
    user: repo.UserRow,
    teamId: TeamId | null,
    meta: RequestMeta,
    method: SignInMethod,
  ): Promise<SignedIn> {
    const now = this.clock.now();
    const token = generateToken('pds');
    const expiresAt = new Date(now.getTime() + SESSION_ABSOLUTE_MS);
    const sessionId = newId('ses');
    const signedIn = this.events.alongside(db, [
      {
        teamId,
        actorKind: 'user',
        actorId: user.id,
        subjectId: user.id,
        type: 'user.signed_in',
        data: { method },
        ...(meta.request ? { via: meta.request } : {}),
      },
    ]);
    await repo.insertSession(
      db,
      {
        id: sessionId,
        userId: user.id,
        teamId,
        tokenHash: this.hasher.hash(token),
        userAgent: meta.userAgent?.slice(0, 500) ?? null,
        ipAddress: meta.ipAddress,
        createdAt: now,
        lastSeenAt: now,
        expiresAt,
      },
      signedIn,
    );
    return this.signedIn(db, user, teamId, { id: sessionId, token, expiresAt });
  }

  private async signedIn(
    db: DbOrTx,
    user: repo.UserRow,
    teamId: TeamId | null,
    session: { id: string; token: string; expiresAt: Date },
  ): Promise<SignedIn> {
    const membership = teamId ? await repo.findMembership(db, teamId, user.id) : undefined;
    return {
      user: userView(user),
      team: membership ? teamView(membership.team, membership.role) : null,
      role: membership?.role ?? null,
      session_token: session.token,
      csrf_token: this.hasher.csrfToken(session.id, session.token),
      expires_at: session.expiresAt.toISOString(),
      expiresAt: session.expiresAt,
      deviceToken: this.throttles.deviceToken(user.email),
    };
  }

  /**
   * What a cookie-authenticated write must echo in X-CSRF-Token: derived from
   * the session, so a value planted in the CSRF cookie by anyone else fails.
   */
  csrfTokenOf(principal: Principal, sessionToken: string): string | undefined {
    if (principal.kind !== 'session' || principal.sessionId === undefined) return undefined;
    return this.hasher.csrfToken(principal.sessionId, sessionToken);
  }

  /** Resolves a `pds_` token to its principal, or says why it no longer works. */
  async authenticateSession(token: string): Promise<Principal> {
    const found = await repo.findSessionByTokenHash(this.db, this.hasher.hash(token));
    // Read with the session on every request (no cache), so a deactivation stops it on every server at once.
    if (found?.user.deactivatedAt != null) throw deactivated();
    if (!found || found.session.revokedAt !== null) {
      throw new UnauthorizedError('session_invalid', 'this session has ended; log in again');
    }
    const { session, user } = found;
    const now = this.clock.now();
    if (session.expiresAt <= now || now.getTime() - session.lastSeenAt.getTime() >= SESSION_IDLE_MS) {
      throw new UnauthorizedError('session_expired', 'this session has expired; log in again');
    }
    if (now.getTime() - session.lastSeenAt.getTime() >= LAST_SEEN_WRITE_EVERY_MS) {
      await repo.updateSession(this.db, session.id, { lastSeenAt: now });
    }
    // Membership is read on every request (in the same query), so removal from a team takes effect at once.
    const role = session.teamId ? found.role : null;
    return {
      kind: 'session',
      userId: user.id,
      teamId: role ? session.teamId : null,
      role,
      scope: role ? scopeOfRole(role) : 'read',
      isPlatformAdmin: user.isAdmin,
      sessionId: session.id,
    };
  }

  async logout(principal: Principal): Promise<void> {
    await repo.revokeSession(this.db, principal.userId!, principal.sessionId!, this.clock.now());
  }

  async logoutAll(principal: Principal): Promise<void> {
    await repo.revokeUserSessions(this.db, principal.userId!, this.clock.now());
  }

  /**
   * Wrenn: switching team rotates the session token, so the old one stops
   * working; the CSRF token, derived from it, rotates with it.
   */
  async switchTeam(principal: Principal, teamId: TeamId): Promise<SignedIn> {
    const userId = principal.userId!;
    const membership = await repo.findMembership(this.db, teamId, userId);
    if (!membership) throw new NotFoundError('team', teamId);
    const user = (await repo.findUserById(this.db, userId))!;
    const token = generateToken('pds');
    await repo.updateSession(this.db, principal.sessionId!, { teamId, tokenHash: this.hasher.hash(token) });
    const found = await repo.findSessionByTokenHash(this.db, this.hasher.hash(token));
    const { id, expiresAt } = found!.session;
    return this.signedIn(this.db, user, teamId, { id, token, expiresAt });
  }

  async me(principal: Principal) {
    const user = await repo.findUserById(this.db, principal.userId!);
    if (!user) throw new NotFoundError('user', principal.userId!);
    const membership = principal.teamId
      ? await repo.findMembership(this.db, principal.teamId, user.id)
      : undefined;
    return {
      user: userView(user),
      team: membership ? teamView(membership.team, membership.role) : null,
      role: membership?.role ?? null,
    };
  }

  async updateMe(
    principal: Principal,
    input: { name?: string; password?: string; current_password?: string },
  ) {
    const user = await repo.findUserById(this.db, principal.userId!);
    if (!user) throw new NotFoundError('user', principal.userId!);
    const now = this.clock.now();
    const patch: Parameters<typeof repo.updateUser>[2] = { updatedAt: now };
    if (input.name !== undefined) patch.name = input.name.trim();
    if (input.password !== undefined) {
      await this.confirmPassword(user, input.current_password);
      patch.passwordHash = await this.passwords.hash(input.password);
    }
    await this.db.transaction(async (tx) => {
      await repo.updateUser(tx, user.id, patch);
      // Wrenn: a password change signs out every other session.
      if (input.password !== undefined) await repo.revokeUserSessions(tx, user.id, now, principal.sessionId);
    });
    return this.me(principal);
  }

  /**
   * A dangerous change to one's own account (a new password, deleting it)
   * needs the current password as well as the session.
   */
  private async confirmPassword(user: repo.UserRow, currentPassword: string | undefined): Promise<void> {
    if (currentPassword === undefined) {
      throw new UnauthorizedError('invalid_credentials', 'current_password is missing or wrong');
    }
    // Another way to test guesses of the password (with a stolen session): the same count as sign-in's.
    const guess = await this.throttles.take('login_account', user.email);
    if (!(await this.passwords.verify(currentPassword, user.passwordHash))) {
      throw new UnauthorizedError('invalid_credentials', 'current_password is missing or wrong');
    }
    await guess.refund();
  }

  /** DELETE /v1/me: the user erases their own account (AccountsService.erase has the rules). */
  async deleteMe(principal: Principal, input: { current_password: string }): Promise<void> {
    const user = await repo.findUserById(this.db, principal.userId!);
    if (!user) throw new NotFoundError('user', principal.userId!);
    await this.confirmPassword(user, input.current_password);
    await this.accounts.erase(actorOf(principal), user.id, 'self');
  }

  async listSessions(principal: Principal, page: PageQuery): Promise<Page<ReturnType<typeof sessionView>>> {
    const now = this.clock.now();
    const idleSince = new Date(now.getTime() - SESSION_IDLE_MS);
    return pageOf(
      page,
      (cursor, rows) => repo.listLiveSessions(this.db, principal.userId!, now, idleSince, cursor, rows),
      (s) => sessionView(s, principal.sessionId),
    );
  }

  async revokeSession(principal: Principal, sessionId: string): Promise<void> {
    if (!(await repo.revokeSession(this.db, principal.userId!, sessionId, this.clock.now()))) {
      throw new NotFoundError('session', sessionId);
    }
  }
}

import type { Clock } from '../../core/clock.ts';
import { MINUTE_MS } from '../../core/clock.ts';
import { generateToken, type Passwords, type TokenHasher } from '../../core/crypto.ts';
import { AppError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import type { RequestContext } from '../../core/request-context.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { MailPort } from '../mail/service.ts';
import * as tokens from './email-tokens-repo.ts';
import { magicLinkMail, passwordResetMail } from './emails.ts';
import * as repo from './repo.ts';
import { type AuthService, normaliseEmail, type RequestMeta, type SignedIn } from './service.ts';
import type { Throttles } from './throttles.ts';

export const PASSWORD_RESET_TTL_MS = 30 * MINUTE_MS;
export const MAGIC_LINK_TTL_MS = 15 * MINUTE_MS;

/** What both start routes answer, whether or not the address has an account. */
export const LINK_SENT = {
  status: 'accepted',
  message: 'if an account has this e-mail address, a message with a link is on its way',
} as const;

/**
 * Password reset and magic-link sign-in: a single-use token (stored hashed)
 * e-mailed through the outbox, spent once. Asking answers the same whether
 * or not the account exists; only an existing account gets a message.
 */
export class EmailLinksService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    private readonly throttles: Throttles,
    private readonly mail: MailPort,
    private readonly auth: Pick<AuthService, 'signInAs'>,
    /** Where the links point (PADDOCK_PUBLIC_URL, or the server's own address). */
    private readonly publicBase: string,
    private readonly passwords: Passwords,
  ) {}

  async startPasswordReset(input: { email: string }, meta: RequestMeta): Promise<typeof LINK_SENT> {
    await this.sendLink(normaliseEmail(input.email), 'password_reset', meta);
    return LINK_SENT;
  }

  async startMagicLink(input: { email: string }, meta: RequestMeta): Promise<typeof LINK_SENT> {
    await this.sendLink(normaliseEmail(input.email), 'magic_link', meta);
    return LINK_SENT;
  }

  /**
   * Counted per client address and per e-mail (known or not, so a 429 says
   * nothing about the account) before anything else: each message costs.
   */
  private async sendLink(email: string, purpose: tokens.EmailTokenPurpose, meta: RequestMeta): Promise<void> {
    const reset = purpose === 'password_reset';
    await this.throttles.take(reset ? 'password_reset_ip' : 'magic_link_ip', meta.ipAddress);
    await this.throttles.take(reset ? 'password_reset_account' : 'magic_link_account', email);
    const user = await repo.findUserByEmail(this.db, email);
    if (!user) return;
    const now = this.clock.now();
    const token = generateToken(reset ? 'pdpw' : 'pdml');
    const mailId = await this.db.transaction(async (tx) => {
      await tokens.voidEmailTokens(tx, user.id, purpose, now);
      await tokens.insertEmailToken(tx, {
        id: newId('etok'),
        userId: user.id,
        purpose,
        tokenHash: this.hasher.hash(token),
        expiresAt: new Date(now.getTime() + (reset ? PASSWORD_RESET_TTL_MS : MAGIC_LINK_TTL_MS)),
        createdAt: now,
      });
      await this.events.record(tx, {
        teamId: null,
        type: reset ? 'user.password_reset_requested' : 'session.magic_link_requested',
        actorKind: 'user',
        actorId: user.id,
        subjectId: user.id,
        data: {},
        ...via(meta),
      });
      const message = reset
        ? passwordResetMail(this.publicBase, user.email, token)
        : magicLinkMail(this.publicBase, user.email, token);
      return this.mail.queue(tx, message);
    });
    this.mail.dispatch(mailId);
  }

  /**
   * Sets a new password with a reset token; every session of the account
   * ends. Counted per client address with the reset's start, and the token
   * is checked before the password is hashed: a made-up token costs no scrypt.
   */
  async completePasswordReset(input: { token: string; password: string }, meta: RequestMeta): Promise<void> {
    await this.throttles.take('password_reset_ip', meta.ipAddress);
    await this.refuseUnspendable(input.token, 'password_reset');
    const passwordHash = await this.passwords.hash(input.password);
    await this.db.transaction(async (tx) => {
      const now = this.clock.now();
      const spent = await this.spend(tx, input.token, 'password_reset');
      await repo.updateUser(tx, spent.userId, { passwordHash, updatedAt: now });
      // Whoever asked for the reset may be locking someone out: no session of theirs survives.
      await repo.revokeUserSessions(tx, spent.userId, now);
      await this.events.record(tx, {
        teamId: null,
        type: 'user.password_reset',
        actorKind: 'user',
        actorId: spent.userId,
        subjectId: spent.userId,
        data: { sessions_ended: true },
        ...via(meta),
      });
    });
  }

  /** Signs in with a magic-link token, as a password sign-in does; counted per client address with its start. */
  async verifyMagicLink(input: { token: string }, meta: RequestMeta): Promise<SignedIn> {
    await this.throttles.take('magic_link_ip', meta.ipAddress);
    return this.db.transaction(async (tx) => {
      const spent = await this.spend(tx, input.token, 'magic_link');
      const user = (await repo.findUserById(tx, spent.userId))!;
      await this.events.record(tx, {
        teamId: null,
        type: 'session.magic_link_used',
        actorKind: 'user',
        actorId: user.id,
        subjectId: user.id,
        data: {},
        ...via(meta),
      });
      return this.auth.signInAs(tx, user, meta, 'magic_link');
    });
  }

  /** Refuses a token that cannot be spent (unknown, used, expired) without spending it. */
  private async refuseUnspendable(token: string, purpose: tokens.EmailTokenPurpose): Promise<void> {
    const found = await tokens.findEmailToken(this.db, this.hasher.hash(token), purpose);
    if (found && found.usedAt === null && found.expiresAt > this.clock.now()) return;
    throw whyUnspendable(found, purpose);
  }

  /** Spends a token, or says why it cannot be: unknown, already used (or replaced), or expired. */
  private async spend(
    tx: Parameters<typeof tokens.spendEmailToken>[0],
    token: string,
    purpose: tokens.EmailTokenPurpose,
  ): Promise<tokens.EmailTokenRow> {
    const hash = this.hasher.hash(token);
    const now = this.clock.now();
    const spent = await tokens.spendEmailToken(tx, hash, purpose, now);
    if (spent) return spent;
    throw whyUnspendable(await tokens.findEmailToken(tx, hash, purpose), purpose);
  }
}

/** The change's request, for its audit entry (the address the link was asked for or used from). */
function via(meta: RequestMeta): { via?: RequestContext } {
  return meta.request ? { via: meta.request } : {};
}

function whyUnspendable(
  found: tokens.EmailTokenRow | undefined,
  purpose: tokens.EmailTokenPurpose,
): AppError {
  const what = purpose === 'password_reset' ? 'password reset link' : 'sign-in link';
  if (!found) return new AppError(400, 'token_invalid', `this ${what} is not valid`);
  if (found.usedAt !== null) {
    return new AppError(
      400,
      'token_used',
      `this ${what} was already used or replaced by a newer one; ask for a new one`,
    );
  }
  return new AppError(400, 'token_expired', `this ${what} has expired; ask for a new one`);
}

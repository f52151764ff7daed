import { isIPv6 } from 'node:net';
import type { ThrottleLimits } from '../../config.ts';
import { randomBase62, safeEqual, type TokenHasher } from '../../core/crypto.ts';
import { RateLimitedError } from '../../core/errors.ts';
import { type RateLimitStore, type RateWindow, slidingWindow } from '../../core/rate-limit.ts';

/**
 * The throttles on unauthenticated identity routes (and on the e-mails an
 * admin can make the server send: invitations). A route that needs one
 * adds a line to its service — `await this.throttles.take('<name>', subject)` —
 * and, for a new name, a row in THROTTLES and a limit in config.ts.
 */
export type ThrottleName =
  | 'login_ip'
  | 'login_account'
  | 'login_device'
  | 'signup_ip'
  | 'invitation_ip'
  | 'invitation_token'
  | 'password_reset_ip'
  | 'password_reset_account'
  | 'magic_link_ip'
  | 'magic_link_account'
  | 'playbook_hook_ip'
  | 'invitation_mail_team'
  | 'invitation_mail_recipient'
  | 'secret_reveal';

const THROTTLES: Record<ThrottleName, { limit: keyof ThrottleLimits; what: string; byAddress: boolean }> = {
  login_ip: { limit: 'loginIp', what: 'too many failed sign-ins from this address', byAddress: true },
  login_account: { limit: 'loginAccount', what: 'too many failed sign-ins for this email', byAddress: false },
  // A browser that signed in to the account before has a limit of its own (see deviceToken).
  login_device: { limit: 'loginAccount', what: 'too many failed sign-ins for this email', byAddress: false },
  signup_ip: { limit: 'signupIp', what: 'too many signups from this address', byAddress: true },
  invitation_ip: {
    limit: 'invitationIp',
    what: 'too many failed invitation lookups from this address',
    byAddress: true,
  },
  invitation_token: {
    limit: 'invitationToken',
    what: 'too many attempts with this invitation token',
    byAddress: false,
  },
  password_reset_ip: {
    limit: 'emailLinkIp',
    what: 'too many password resets asked for from this address',
    byAddress: true,
  },
  password_reset_account: {
    limit: 'emailLinkAccount',
    what: 'too many password resets asked for this email',
    byAddress: false,
  },
  magic_link_ip: {
    limit: 'emailLinkIp',
    what: 'too many sign-in links asked for from this address',
    byAddress: true,
  },
  magic_link_account: {
    limit: 'emailLinkAccount',
    what: 'too many sign-in links asked for this email',
    byAddress: false,
  },
  playbook_hook_ip: {
    limit: 'hookIp',
    what: 'too many unknown webhook tokens from this address',
    byAddress: true,
  },
  invitation_mail_team: {
    limit: 'invitationMailTeam',
    what: 'this team has sent too many invitation e-mails',
    byAddress: false,
  },
  invitation_mail_recipient: {
    limit: 'invitationMailRecipient',
    what: 'too many invitation e-mails to this address',
    byAddress: false,
  },
  secret_reveal: {
    limit: 'secretReveal',
    what: 'this team has revealed too many secret values',
    byAddress: false,
  },
};

/** One counted attempt; `refund` gives it back when it should not count (it succeeded). */
export interface Attempt {
  refund(): Promise<void>;
}

/**
 * IPv6 clients are counted per /64, the block one subscriber usually holds,
 * so walking through its addresses gains nothing. IPv4-mapped addresses count
 * as the IPv4 address.
 */
export function clientNetwork(ip: string): string {
  const address = ip.replace(/%.*$/, '');
  if (!isIPv6(address)) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = address.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  // A dotted IPv4 tail stands for two groups; only the first four matter here.
  const width = (list: string[]) => list.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = tail === undefined ? [] : Array<string>(8 - width(front) - width(back)).fill('0');
  const prefix = [...front, ...zeros, ...back].slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16));
  return `${prefix.join(':')}::/64`;
}

export class Throttles {
  private readonly windows: Record<keyof ThrottleLimits, RateWindow>;

  constructor(
    private readonly store: RateLimitStore,
    private readonly hasher: TokenHasher,
    private readonly limits: ThrottleLimits,
  ) {
    this.windows = Object.fromEntries(
      Object.entries(limits).map(([name, l]) => [name, slidingWindow(l.windowSec)]),
    ) as Record<keyof ThrottleLimits, RateWindow>;
  }

  /**
   * Counts one attempt by `subject` (a client address, an e-mail, a token),
   * or refuses it with 429 `rate_limited` when the limit is used up; a
   * refused attempt is not counted, so a lockout ends when the window passes.
   */
  async take(name: ThrottleName, subject: string | null): Promise<Attempt> {
    const throttle = THROTTLES[name];
    const limit = this.limits[throttle.limit];
    const window = this.windows[throttle.limit];
    const who = subject === null ? 'unknown' : throttle.byAddress ? clientNetwork(subject) : subject;
    // Keyed by a keyed hash: the store holds no addresses, e-mails or tokens.
    const key = `${name}:${this.hasher.hash(`throttle\n${who}`).slice(0, 32)}`;
    const decision = await this.store.hit(key, window, { maxHits: limit.limit, maxUnits: null }, 0);
    if (!decision.ok) {
      throw new RateLimitedError(
        `${throttle.what}; retry in ${decision.retryAfterSec} s`,
        decision.retryAfterSec,
        { limit: name },
      );
    }
    return { refund: async () => this.store.adjust(key, window, -1, 0) };
  }

  /**
   * A token for a browser that has just signed in as `email` (its
   * `paddock_device` cookie). Its failed sign-ins count against a limit of
   * its own rather than the account's, so someone guessing the account's
   * password can lock out only browsers that never signed in to it
   * (OWASP's device cookies).
   */
  deviceToken(email: string): string {
    const id = randomBase62(22);
    return `${id}.${this.deviceMac(id, email)}`;
  }

  /** The device a token names, when it was issued for `email`; otherwise null. */
  deviceOf(token: string | null | undefined, email: string): string | null {
    if (!token) return null;
    const [id, mac, extra] = token.split('.');
    if (!id || !mac || extra !== undefined || !/^[0-9A-Za-z]{22}$/.test(id)) return null;
    return safeEqual(mac, this.deviceMac(id, email)) ? id : null;
  }

  private deviceMac(id: string, email: string): string {
    return this.hasher.hash(`device\n${id}\n${email}`);
  }
}

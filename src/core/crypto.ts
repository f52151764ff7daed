import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';

/**
 * Seals secrets at rest with AES-256-GCM. Sealed form:
 * `v1.<iv b64url>.<tag b64url>.<ciphertext b64url>`. The optional `context`
 * is bound as additional data, so a sealed value copied to another row
 * (another team, another field) does not open.
 */
export class Sealer {
  private readonly key: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error('master key must be 32 bytes');
    this.key = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'paddock seal v1', 32));
  }

  seal(plaintext: string, context = ''): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [
      'v1',
      iv.toString('base64url'),
      cipher.getAuthTag().toString('base64url'),
      ciphertext.toString('base64url'),
    ].join('.');
  }

  open(sealed: string, context = ''): string {
    const [version, iv, tag, ciphertext] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('not a sealed value');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }
}

/**
 * Hashes bearer tokens (API keys, session tokens, invitation tokens) for
 * storage and lookup. HMAC rather than a bare hash: a leaked database alone
 * does not let anyone test guesses offline.
 */
export class TokenHasher {
  private readonly key: Buffer;
  private readonly csrfKey: Buffer;

  constructor(masterKey: Buffer) {
    this.key = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'paddock token hmac v1', 32));
    this.csrfKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'paddock csrf v1', 32));
  }

  hash(token: string): string {
    return createHmac('sha256', this.key).update(token).digest('hex');
  }

  /**
   * The CSRF token of a session as it is now: a MAC of its id and current
   * token, so nobody without the master key can make one that passes, one
   * session's token fails for every other, and it changes whenever the
   * session token does (switch-team). Nothing is stored.
   */
  csrfToken(sessionId: string, sessionToken: string): string {
    const mac = createHmac('sha256', this.csrfKey).update(`${sessionId}\n${sessionToken}`).digest();
    return `csrf_${base62Of(mac, TOKEN_SECRET_LENGTH)}`;
  }
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Base62 text of `bytes` random bytes (uniform: rejection sampling). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Base62 characters after a token's prefix: 62^43 > 2^256. */
const TOKEN_SECRET_LENGTH = 43;

/** `bytes` as a big-endian number written in `length` base62 digits (leading zeros kept). */
function base62Of(bytes: Buffer, length: number): string {
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  for (let i = 0; i < length; i++) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out;
}

/** A bearer token: prefix + 43 base62 characters (~256 bits). */
export function generateToken(
  prefix: 'pdk' | 'pda' | 'pdh' | 'pdhg' | 'pdc' | 'pds' | 'pdi' | 'pdr' | 'pdpw' | 'pdml',
): string {
  return `${prefix}_${randomBase62(TOKEN_SECRET_LENGTH)}`;
}

/** What a masked key shows: the prefix and its first 8 secret characters. */
export function tokenDisplayPrefix(token: string): string {
  const cut = token.indexOf('_') + 1 + 8;
  return token.slice(0, cut);
}

/** scrypt's work factor: N (a power of two), r and p. */
export interface PasswordCost {
  n: number;
  r: number;
  p: number;
}

/** N=2^15, r=8, p=1: about 32 MiB and 50–80 ms on one core. */
export const PASSWORD_COST: PasswordCost = { n: 1 << 15, r: 8, p: 1 };
const SCRYPT_KEYLEN = 32;
const SCRYPT_MAXMEM = 64 * 1024 * 1024;

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, SCRYPT_KEYLEN, { N: n, r, p, maxmem: SCRYPT_MAXMEM }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** `scrypt$N$r$p$salt$hash`, so parameters can be raised without breaking old hashes. */
export async function hashPassword(password: string, cost: PasswordCost = PASSWORD_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, cost.n, cost.r, cost.p);
  return ['scrypt', cost.n, cost.r, cost.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [algo, n, r, p, salt, hash] = stored.split('$');
  if (algo !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Passwords hashed at one cost (tests choose a cheap one through AppOptions; nothing else sets it). */
export class Passwords {
  private dummy: Promise<string> | undefined;

  constructor(private readonly cost: PasswordCost = PASSWORD_COST) {}

  hash(password: string): Promise<string> {
    return hashPassword(password, this.cost);
  }

  /** Against the account's hash, or with none (an unknown address) against a real one, so both take as long. */
  async verify(password: string, stored: string | undefined): Promise<boolean> {
    if (stored !== undefined) return verifyPassword(password, stored);
    this.dummy ??= this.hash('paddock-timing-equaliser');
    await verifyPassword(password, await this.dummy);
    return false;
  }
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

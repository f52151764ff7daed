import { randomBytes } from 'node:crypto';

/** Prefixes of every typed id (DESIGN.md "IDs"). */
export const ID_PREFIXES = [
  'usr',
  'team',
  'ses',
  'inv',
  'key',
  'kus',
  'evt',
  'agt',
  'akey',
  'pol',
  'pkey',
  'run',
  'stp',
  'led',
  'apr',
  'cap',
  'tpl',
  'hst',
  'htk',
  'env',
  'envv',
  'agtv',
  'task',
  'ws',
  'pb',
  'pbr',
  'sec',
  'mem',
  'file',
  'whk',
  'dlv',
] as const;
export type IdPrefix = (typeof ID_PREFIXES)[number];

// Crockford base32, as in ULID: sorts lexically in time order.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

let lastMs = -1;
let lastRandom: Uint8Array = new Uint8Array(10);

function encodeTime(ms: number): string {
  let out = '';
  let rest = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

function encodeRandom(bytes: Uint8Array): string {
  // 80 bits -> 16 base32 characters.
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < 16; i++) {
    out = ALPHABET[Number(bits & 31n)] + out;
    bits >>= 5n;
  }
  return out;
}

function incrementRandom(bytes: Uint8Array): Uint8Array {
  const next = new Uint8Array(bytes);
  for (let i = next.length - 1; i >= 0; i--) {
    if (next[i]! < 255) {
      next[i]!++;
      return next;
    }
    next[i] = 0;
  }
  return next;
}

/**
 * A ULID: 48 bits of milliseconds then 80 random bits. Within one millisecond
 * the random part increments, so ids made by one process are strictly ordered.
 */
export function ulid(nowMs = Date.now()): string {
  if (nowMs <= lastMs) {
    lastRandom = incrementRandom(lastRandom);
    return encodeTime(lastMs) + encodeRandom(lastRandom);
  }
  lastMs = nowMs;
  lastRandom = new Uint8Array(randomBytes(10));
  return encodeTime(nowMs) + encodeRandom(lastRandom);
}

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${ulid()}`;
}

const ID_PATTERN = /^[a-z]+_[0-9A-HJKMNP-TV-Z]{26}$/;

export function isId(value: string, prefix?: IdPrefix): boolean {
  if (!ID_PATTERN.test(value)) return false;
  return prefix === undefined || value.startsWith(`${prefix}_`);
}

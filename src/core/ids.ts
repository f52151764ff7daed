import { randomFillSync } from 'node:crypto';
import { NotFoundError } from './errors.ts';

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
  // One attempt of a webhook delivery.
  'wha',
  // Skills: named instruction documents agents load on demand.
  'skl',
  // Stored Responses API answers (OpenAI's ids are resp_ too, so clients see a familiar shape).
  'resp',
  // Audit log entries.
  'aud',
  // E-mails in the outbox, and the single-use tokens (password reset, magic link) some of them carry.
  'mail',
  'etok',
  // Notification channels, their deliveries, and in-app notifications.
  'chn',
  'cdl',
  'ntf',
  // Alert rules and their firings.
  'alr',
  'alf',
  // Work board items, their comments and links; activity feed entries.
  'wki',
  'wkc',
  'wkl',
  'act',
  // Jobs of the work queues that outside workers pull.
  'qjob',
  // Credit transactions (a team's balance).
  'ctx',
  // Auto top-ups of a team's credits (billing).
  'btu',
] as const;
export type IdPrefix = (typeof ID_PREFIXES)[number];

/**
 * An id of one kind: `Id<'run'>` is `run_…`, so passing an agent id where a
 * run id is wanted does not compile. Columns that hold ids say so with
 * drizzle's `.$type<Id<'run'>>()`; a string from outside becomes one only
 * through isId().
 */
export type Id<P extends IdPrefix> = `${P}_${string}`;
export type RunId = Id<'run'>;
export type AgentId = Id<'agt'>;
export type TeamId = Id<'team'>;
export type CapsuleId = Id<'cap'>;
export type HostId = Id<'hst'>;
export type StepId = Id<'stp'>;
export type PolicyId = Id<'pol'>;
export type ProviderKeyId = Id<'pkey'>;
export type ResponseId = Id<'resp'>;

// Crockford base32, as in ULID: sorts lexically in time order.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const CODES = Array.from(ALPHABET, (c) => c.charCodeAt(0));

// Ids are made on every proxied call, several times: they are built without
// intermediate strings or BigInts, from random bytes drawn in blocks.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;
const RANDOM_BYTES = 10;
const chars = new Array<number>(26).fill(0);

function drawRandom(into: Uint8Array): void {
  if (poolOffset + RANDOM_BYTES > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  for (let i = 0; i < RANDOM_BYTES; i++) into[i] = pool[poolOffset + i]!;
  poolOffset += RANDOM_BYTES;
}

/** Adds one to the 80-bit random part (a carry out of the top byte wraps, as the spec allows no more). */
function incrementRandom(bytes: Uint8Array): void {
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 255) {
      bytes[i]!++;
      return;
    }
    bytes[i] = 0;
  }
}

/** Five base32 digits per 5 bytes: 40 bits fit a double exactly. */
function encodeForty(bytes: Uint8Array, from: number, at: number): void {
  let v = 0;
  for (let i = 0; i < 5; i++) v = v * 256 + bytes[from + i]!;
  for (let i = 7; i >= 0; i--) {
    chars[at + i] = CODES[v % 32]!;
    v = Math.floor(v / 32);
  }
}

function encode(ms: number, random: Uint8Array): string {
  let rest = ms;
  for (let i = 9; i >= 0; i--) {
    chars[i] = CODES[rest % 32]!;
    rest = Math.floor(rest / 32);
  }
  encodeForty(random, 0, 10);
  encodeForty(random, 5, 18);
  return String.fromCharCode.apply(null, chars);
}

/**
 * ULIDs: 48 bits of milliseconds then 80 random bits. Within one millisecond
 * (or when the clock goes back) the random part increments, so the ids one
 * factory makes are strictly ordered. The server has one (`ulid()`); a test of
 * the encoding makes its own, so no time it asks for carries over.
 */
export class UlidFactory {
  private readonly lastRandom = new Uint8Array(RANDOM_BYTES);
  private lastMs = -1;

  next(nowMs = Date.now()): string {
    if (nowMs <= this.lastMs) {
      incrementRandom(this.lastRandom);
      return encode(this.lastMs, this.lastRandom);
    }
    this.lastMs = nowMs;
    drawRandom(this.lastRandom);
    return encode(nowMs, this.lastRandom);
  }
}

const processUlids = new UlidFactory();

/** A ULID from the process's factory: the ids one process makes are strictly ordered. */
export function ulid(nowMs = Date.now()): string {
  return processUlids.next(nowMs);
}

export function newId<P extends IdPrefix>(prefix: P): Id<P> {
  return `${prefix}_${ulid()}`;
}

/** The milliseconds a typed id was made at (its ULID's time part). */
export function idTimeMs(id: string): number {
  const time = id.slice(id.indexOf('_') + 1, id.indexOf('_') + 11);
  let ms = 0;
  for (const c of time) ms = ms * 32 + ALPHABET.indexOf(c);
  return ms;
}

/** The lowest id of `prefix` made at or after `ms`: `id > floor` reads from that time on. */
export function idFloorAt(prefix: IdPrefix, ms: number): string {
  let rest = Math.max(0, Math.floor(ms));
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[rest % 32] + time;
    rest = Math.floor(rest / 32);
  }
  return `${prefix}_${time}`;
}

const ID_PATTERN = /^[a-z]+_[0-9A-HJKMNP-TV-Z]{26}$/;

export function isId<P extends IdPrefix>(value: string, prefix: P): value is Id<P>;
export function isId(value: string): boolean;
export function isId(value: string, prefix?: IdPrefix): boolean {
  if (!ID_PATTERN.test(value)) return false;
  return prefix === undefined || value.startsWith(`${prefix}_`);
}

/**
 * An id of one kind from a request (a path, a query, a body): anything else
 * names no `kind` either, so it is answered as an unknown id is (404).
 */
export function idOrNotFound<P extends IdPrefix>(raw: string, prefix: P, kind: string): Id<P> {
  if (!isId(raw, prefix)) throw new NotFoundError(kind, raw);
  return raw;
}

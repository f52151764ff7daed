import { type Clock, HOUR_MS } from '../../core/clock.ts';
import { generateToken, type TokenHasher, tokenDisplayPrefix } from '../../core/crypto.ts';
import { BadRequestError, NotFoundError, UnauthorizedError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import * as repo from './api-keys-repo.ts';
import { activeTeam, actorOf, highestScope, type Principal, type Scope } from './principal.ts';
import { iso } from './views.ts';

/** Orkosi: a rotated key's old secret keeps working for 24 h unless told otherwise. */
export const DEFAULT_ROTATE_GRACE_HOURS = 24;
export const DEFAULT_KEY_SCOPES: Scope[] = ['write'];

export function apiKeyStatus(k: repo.ApiKeyRow, now: Date): 'active' | 'disabled' | 'revoked' | 'expired' {
  if (k.revokedAt !== null) return 'revoked';
  if (k.expiresAt !== null && k.expiresAt <= now) return 'expired';
  return k.active ? 'active' : 'disabled';
}

export function apiKeyView(k: repo.ApiKeyRow, now: Date) {
  const graceOpen = k.previousKeyExpiresAt !== null && k.previousKeyExpiresAt > now;
  return {
    id: k.id,
    team_id: k.teamId,
    name: k.name,
    description: k.description,
    key_prefix: k.keyPrefix,
    scopes: k.scopes,
    status: apiKeyStatus(k, now),
    active: k.active,
    expires_at: iso(k.expiresAt),
    revoked_at: iso(k.revokedAt),
    previous_key_expires_at: graceOpen ? iso(k.previousKeyExpiresAt) : null,
    last_used_at: iso(k.lastUsedAt),
    created_by: k.createdBy,
    created_at: iso(k.createdAt),
    updated_at: iso(k.updatedAt),
  };
}

export interface UsageRecord {
  method: string;
  path: string;
  statusCode: number;
  ipAddress: string | null;
}

export class ApiKeysService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
  ) {}

  /** Resolves a `pdk_` key to its principal, or says exactly why it no longer works. */
  async authenticate(token: string): Promise<Principal> {
    const hash = this.hasher.hash(token);
    const found = await repo.findApiKeyByHash(this.db, hash);
    if (!found) throw new UnauthorizedError('invalid_api_key', 'this API key is not valid');
    const key = found.key;
    const now = this.clock.now();
    const version = key.keyHash === hash ? 'current' : 'previous';
    if (version === 'previous' && (key.previousKeyExpiresAt === null || key.previousKeyExpiresAt <= now)) {
      throw new UnauthorizedError(
        'api_key_rotated',
        'this API key was rotated and its grace period is over; use the new key',
      );
    }
    const status = apiKeyStatus(key, now);
    if (status !== 'active') {
      throw new UnauthorizedError(`api_key_${status}`, `this API key is ${status}`);
    }
    // Read with the key on every request (no cache): the deactivation stops it on every server at once.
    if (found.creatorDeactivatedAt !== null) {
      throw new UnauthorizedError(
        'api_key_creator_deactivated',
        'the user who created this API key is deactivated; it works again if they are reactivated',
      );
    }
    return {
      kind: 'api_key',
      userId: null,
      teamId: key.teamId,
      role: null,
      scope: highestScope(key.scopes),
      ...(key.scopes.includes('queue') ? { alsoQueue: true } : {}),
      isPlatformAdmin: false,
      apiKeyId: key.id,
      apiKeyVersion: version,
    };
  }

  private futureExpiry(expiresAt: string | null | undefined): Date | null {
    if (expiresAt === undefined || expiresAt === null) return null;
    const at = new Date(expiresAt);
    if (at <= this.clock.now()) {
      throw new BadRequestError('validation_failed', 'expires_at must be in the future', {
        fields: { expires_at: 'must be in the future' },
      });
    }
    return at;
  }

  async create(
    principal: Principal,
    input: { name: string; description?: string; scopes?: Scope[]; expires_at?: string | null },
  ) {
    const teamId = activeTeam(principal);
    const now = this.clock.now();
    const key = generateToken('pdk');
    const scopes = [...new Set(input.scopes ?? DEFAULT_KEY_SCOPES)];
    const row = await this.db.transaction(async (tx) => {
      const r = await repo.insertApiKey(tx, {
        id: newId('key'),
        teamId,
        name: input.name.trim(),
        description: input.description ?? null,
        keyPrefix: tokenDisplayPrefix(key),
        keyHash: this.hasher.hash(key),
        scopes,
        active: true,
        expiresAt: this.futureExpiry(input.expires_at),
        createdBy: principal.userId ?? (principal.apiKeyId ? `api_key:${principal.apiKeyId}` : null),
        createdAt: now,
        updatedAt: now,
      });
      await this.events.record(tx, {
        teamId,
        type: 'api_key.created',
        ...actorOf(principal),
        subjectId: r.id,
        data: { name: r.name, scopes },
      });
      return r;
    });
    return { ...apiKeyView(row, now), key };
  }

  async list(principal: Principal, page: PageQuery) {
    const now = this.clock.now();
    return pageOf(
      page,
      (cursor, rows) => repo.listApiKeys(this.db, activeTeam(principal), cursor, rows),
      (r) => apiKeyView(r, now),
    );
  }

  private async keyOrNotFound(principal: Principal, id: string) {
    const row = await repo.findApiKey(this.db, activeTeam(principal), id);
    if (!row) throw new NotFoundError('api_key', id);
    return row;
  }

  async get(principal: Principal, id: string) {
    return apiKeyView(await this.keyOrNotFound(principal, id), this.clock.now());
  }

  /** Applies a change to one key and records its event, in one transaction. */
  private async change(
    principal: Principal,
    id: string,
    type: 'api_key.updated' | 'api_key.revoked' | 'api_key.deleted',
    patch: Parameters<typeof repo.updateApiKey>[3],
  ) {
    const teamId = activeTeam(principal);
    const now = this.clock.now();
    return this.db.transaction(async (tx) => {
      const row = await repo.updateApiKey(tx, teamId, id, { ...patch, updatedAt: now });
      if (!row) throw new NotFoundError('api_key', id);
      await this.events.record(tx, {
        teamId,
        type,
        ...actorOf(principal),
        subjectId: id,
        data: { name: row.name },
      });
      return row;
    });
  }

  async update(
    principal: Principal,
    id: string,
    input: {
      name?: string;
      description?: string | null;
      scopes?: Scope[];
      active?: boolean;
      expires_at?: string | null;
    },
  ) {
    const patch: Parameters<typeof repo.updateApiKey>[3] = {};
    if (input.name !== undefined) patch.name = input.name.trim();
    if (input.description !== undefined) patch.description = input.description;
    if (input.scopes !== undefined) patch.scopes = [...new Set(input.scopes)];
    if (input.active !== undefined) patch.active = input.active;
    if (input.expires_at !== undefined) patch.expiresAt = this.futureExpiry(input.expires_at);
    const row = await this.change(principal, id, 'api_key.updated', patch);
    return apiKeyView(row, this.clock.now());
  }

  /** Orkosi: revoked keys are unusable at once, for good. */
  async revoke(principal: Principal, id: string) {
    const existing = await this.keyOrNotFound(principal, id);
    const now = this.clock.now();
    const row = await this.change(principal, id, 'api_key.revoked', {
      revokedAt: existing.revokedAt ?? now,
      previousKeyHash: null,
      previousKeyExpiresAt: null,
    });
    return apiKeyView(row, now);
  }

  async remove(principal: Principal, id: string): Promise<void> {
    await this.change(principal, id, 'api_key.deleted', { deletedAt: this.clock.now() });
  }

  /**
   * A new secret. With `graceHours` > 0 the old secret keeps working until the
   * grace ends (rotate); with 0 it dies at once (roll). Only the secret in use
   * just before survives: rotating twice ends the first grace early.
   */
  private async replaceSecret(principal: Principal, id: string, graceHours: number) {
    const existing = await this.keyOrNotFound(principal, id);
    const now = this.clock.now();
    if (apiKeyStatus(existing, now) === 'revoked') {
      throw new BadRequestError('api_key_revoked', 'a revoked key cannot be rotated; create a new key');
    }
    const key = generateToken('pdk');
    const teamId = existing.teamId;
    const row = await this.db.transaction(async (tx) => {
      const r = await repo.updateApiKey(tx, teamId, id, {
        keyHash: this.hasher.hash(key),
        keyPrefix: tokenDisplayPrefix(key),
        previousKeyHash: graceHours > 0 ? existing.keyHash : null,
        previousKeyExpiresAt: graceHours > 0 ? new Date(now.getTime() + graceHours * HOUR_MS) : null,
        updatedAt: now,
      });
      if (!r) throw new NotFoundError('api_key', id);
      await this.events.record(
        tx,
        graceHours > 0
          ? {
              teamId,
              type: 'api_key.rotated',
              ...actorOf(principal),
              subjectId: id,
              data: { name: r.name, grace_hours: graceHours },
            }
          : { teamId, type: 'api_key.rolled', ...actorOf(principal), subjectId: id, data: { name: r.name } },
      );
      return r;
    });
    return { ...apiKeyView(row, now), key };
  }

  rotate(principal: Principal, id: string, graceHours = DEFAULT_ROTATE_GRACE_HOURS) {
    return this.replaceSecret(principal, id, graceHours);
  }

  roll(principal: Principal, id: string) {
    return this.replaceSecret(principal, id, 0);
  }

  async usage(principal: Principal, id: string, page: PageQuery) {
    const key = await this.keyOrNotFound(principal, id);
    return pageOf(
      page,
      (cursor, rows) => repo.listUsage(this.db, key.teamId, id, cursor, rows),
      (r) => ({
        id: r.id,
        method: r.method,
        path: r.path,
        status_code: r.statusCode,
        ip_address: r.ipAddress,
        key_version: r.keyVersion,
        created_at: iso(r.createdAt),
      }),
    );
  }

  /** Records one request made with a key (after its response) and moves last_used_at. */
  async recordUsage(principal: Principal, usage: UsageRecord): Promise<void> {
    const now = this.clock.now();
    await repo.insertUsage(this.db, {
      id: newId('kus'),
      apiKeyId: principal.apiKeyId!,
      teamId: principal.teamId!,
      method: usage.method,
      path: usage.path,
      statusCode: usage.statusCode,
      ipAddress: usage.ipAddress,
      keyVersion: principal.apiKeyVersion ?? 'current',
      createdAt: now,
    });
    await repo.touchLastUsed(this.db, principal.apiKeyId!, now);
  }
}

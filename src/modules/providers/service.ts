// One file over ~400 lines: the key's use cases (create, update, rotate, disable, delete
// with remap, dependents, health) share the team check, the opened-key cache and the
// transaction helpers; the proxy's side already lives in call-keys.ts.
import type { Static } from 'typebox';
import { DAY_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { BadRequestError, ConflictError, NotFoundError, ValidationError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type ProviderKeyId, type TeamId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { type AgentsService, bindingsUse } from '../agents/service.ts';
import type { EventsService } from '../events/service.ts';
import type { ProviderHealthRegistry } from '../gateway/circuit-breaker.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import type { RunReports } from '../runs/reports.ts';
import { type KeyForCall, OpenedKeys, sealContext, UsageBatcher } from './call-keys.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { keyHintOf, providerKeyView } from './views.ts';

export type ProviderName = repo.ProviderName;
export type CreateProviderKeyInput = Static<typeof s.CreateProviderKeyBody>;
export type UpdateProviderKeyInput = Static<typeof s.UpdateProviderKeyBody>;
export type UpsertProviderKeyInput = Static<typeof s.UpsertProviderKeyBody>;
export { DEFAULT_BASE_URLS, type KeyForCall, sealContext } from './call-keys.ts';
export { type PriceOverrides, type ProviderKeyView, providerKeyView } from './views.ts';

/** A provider key an agent's calls can use now (no secret). */
export interface UsableKey {
  id: ProviderKeyId;
  provider: ProviderName;
  name: string;
}

/** What a key's usage report reads from the runs module. */
export type KeyRunsPort = Pick<RunReports, 'runningRunCount' | 'runsUsingKeySince'>;

/** What providers need from the agents module: the agents bound to a key, and their rewrite on a remap. */
export type AgentBindingsPort = Pick<AgentsService, 'boundToKey' | 'remapProviderKey' | 'forgetCached'>;

function invalidBody(fields: Record<string, string>): ValidationError {
  return new ValidationError(
    `the request body is invalid: ${Object.entries(fields)
      .map(([f, m]) => `${f} ${m}`)
      .join('; ')}`,
    fields,
  );
}

function nameTaken(name: string): ConflictError {
  return new ConflictError(
    'provider_key_name_taken',
    `a provider key named "${name}" already exists in this team`,
    { name },
  );
}

/** A provider key id from a request; anything else names no key (404, as an unknown id). */
export function providerKeyIdOf(raw: string): ProviderKeyId {
  return idOrNotFound(raw, 'pkey', 'provider_key');
}

function deletedKey(id: string): ConflictError {
  return new ConflictError(
    'provider_key_deleted',
    `provider key ${id} is deleted; create a new key instead`,
    { id },
  );
}

/**
 * Provider keys: the team's credentials for Anthropic, OpenAI and
 * OpenAI-compatible endpoints. The secret is sealed at rest (bound to its row)
 * and shown only masked; the proxy opens it through `keyForCall`.
 */
export class ProvidersService {
  private readonly callKeys: OpenedKeys;
  private readonly usage: UsageBatcher;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    readonly healthRegistry: ProviderHealthRegistry,
    /** Checks base URLs when they are saved (the proxy checks them again at every connection). */
    private readonly outbound: OutboundGuard,
    private readonly agents: AgentBindingsPort,
    private readonly runs: KeyRunsPort,
  ) {
    this.callKeys = new OpenedKeys(ctx, db, sealer);
    this.usage = new UsageBatcher(ctx, db);
  }

  /** Provider keys are credentials: people and team keys manage them, agent keys never. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'provider keys');
  }

  private async keyOrNotFound(db: DbOrTx, teamId: TeamId, id: ProviderKeyId, lock?: 'update') {
    const row = await repo.findKey(db, teamId, id, lock);
    if (!row) throw new NotFoundError('provider_key', id);
    return row;
  }

  /**
   * A base_url whose address is known now to be one Paddock refuses (an IP
   * literal, localhost, a name that resolves only to such addresses) is a 400
   * at once; a name that does not resolve yet is left to connect time.
   */
  private async checkBaseUrl(baseUrl: string | null | undefined): Promise<void> {
    if (baseUrl === null || baseUrl === undefined) return;
    const refusal = await this.outbound.checkUrl(baseUrl);
    if (refusal !== undefined) throw invalidBody({ base_url: `is refused: ${refusal}` });
  }

  // -- the admin side --------------------------------------------------------

  async create(principal: Principal, input: CreateProviderKeyInput) {
    const teamId = this.team(principal, 'admin');
    await this.checkBaseUrl(input.base_url);
    try {
      const row = await this.db.transaction(async (tx) => {
        if (await repo.findLiveKeyByName(tx, teamId, input.name)) throw nameTaken(input.name);
        return this.insert(tx, principal, teamId, input);
      });
      return providerKeyView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
  }

  private async insert(tx: DbOrTx, principal: Principal, teamId: TeamId, input: CreateProviderKeyInput) {
    const baseUrl = input.base_url ?? null;
    if (input.provider === 'openai_compatible' && baseUrl === null)
      throw invalidBody({ base_url: 'is required for an openai_compatible key' });
    const id = newId('pkey');
    const now = this.ctx.clock.now();
    const row = await repo.insertKey(tx, {
      id,
      teamId,
      name: input.name,
      provider: input.provider,
      baseUrl,
      sealedKey: this.sealer.seal(input.api_key, sealContext(id)),
      keyHint: keyHintOf(input.api_key),
      status: 'active',
      priceOverrides: input.price_overrides ?? null,
      lastUsedAt: null,
      rotatedAt: null,
      createdAt: now,
      updatedAt: now,
    });
    await this.events.record(tx, {
      teamId,
      type: 'provider_key.created',
      ...actorOf(principal),
      subjectId: id,
      data: { name: row.name, provider: row.provider },
    });
    return row;
  }

  async list(principal: Principal, query: PageQuery & { provider?: ProviderName; status?: repo.KeyStatus }) {
    const teamId = this.team(principal, 'read');
    const filter = {
      ...(query.provider ? { provider: query.provider } : {}),
      ...(query.status ? { status: query.status } : {}),
    };
    return pageOf(
      query,
      (cursor, rows) => repo.listKeys(this.db, teamId, filter, cursor, rows),
      providerKeyView,
    );
  }

  async get(principal: Principal, id: ProviderKeyId) {
    return providerKeyView(await this.keyOrNotFound(this.db, this.team(principal, 'read'), id));
  }

  /** PUT: the fields sent replace the key's; a new api_key is a rotation (rotated_at). */
  async update(principal: Principal, id: ProviderKeyId, input: UpdateProviderKeyInput) {
    const teamId = this.team(principal, 'admin');
    await this.checkBaseUrl(input.base_url);
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await this.keyOrNotFound(tx, teamId, id, 'update');
        return this.applyChanges(tx, principal, existing, input);
      });
      return providerKeyView(row);
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /**
   * PUT /by-name/{name}: creates the key (provider and api_key required, 201)
   * or updates the one of that name (200; provider, when sent, must match).
   * Deleted keys free their name, so a deleted key of that name is ignored.
   */
  async upsertByName(principal: Principal, name: string, input: UpsertProviderKeyInput) {
    const teamId = this.team(principal, 'admin');
    await this.checkBaseUrl(input.base_url);
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.db.transaction(async (tx) => {
          const existing = await repo.findLiveKeyByName(tx, teamId, name, 'update');
          if (!existing) {
            const missing: Record<string, string> = {};
            if (input.provider === undefined) missing.provider = 'is required to create a key';
            if (input.api_key === undefined) missing.api_key = 'is required to create a key';
            if (Object.keys(missing).length > 0) throw invalidBody(missing);
            const row = await this.insert(tx, principal, teamId, {
              name,
              provider: input.provider!,
              api_key: input.api_key!,
              ...(input.base_url !== undefined ? { base_url: input.base_url } : {}),
              ...(input.price_overrides !== undefined ? { price_overrides: input.price_overrides } : {}),
            });
            return { created: true, row };
          }
          if (input.provider !== undefined && input.provider !== existing.provider) {
            throw new ConflictError(
              'provider_mismatch',
              `provider key "${name}" is for ${existing.provider}, not ${input.provider}; delete it or pick another name`,
              { provider: existing.provider },
            );
          }
          const { provider: _provider, ...changes } = input;
          return { created: false, row: await this.applyChanges(tx, principal, existing, changes) };
        });
        return { created: result.created, key: providerKeyView(result.row) };
      } catch (err) {
        // Another upsert created the name between our look and our insert: look again (it updates).
        if (!repo.isUniqueViolation(err) || attempt >= 2) throw err;
      }
    }
  }

  /** Applies an update to a locked row and records its events. Returns the row (unchanged when nothing was). */
  private async applyChanges(
    tx: DbOrTx,
    principal: Principal,
    existing: repo.ProviderKeyRow,
    input: UpdateProviderKeyInput,
  ): Promise<repo.ProviderKeyRow> {
    if (existing.status === 'deleted') throw deletedKey(existing.id);
    const teamId = existing.teamId;
    const patch: repo.ProviderKeyPatch = {};
    const changed: string[] = [];
    if (input.name !== undefined && input.name !== existing.name) {
      if (await repo.findLiveKeyByName(tx, teamId, input.name)) throw nameTaken(input.name);
      patch.name = input.name;
      changed.push('name');
    }
    if (input.base_url !== undefined && input.base_url !== existing.baseUrl) {
      if (input.base_url === null && existing.provider === 'openai_compatible')
        throw invalidBody({ base_url: 'is required for an openai_compatible key' });
      // Else whoever may edit the key could send its stored secret to a host of their choosing.
      if (input.api_key === undefined)
        throw invalidBody({
          api_key: 'is required when base_url changes: the stored secret is never sent to a new address',
        });
      patch.baseUrl = input.base_url;
      changed.push('base_url');
    }
    if (
      input.price_overrides !== undefined &&
      JSON.stringify(input.price_overrides) !== JSON.stringify(existing.priceOverrides ?? null)
    ) {
      patch.priceOverrides = input.price_overrides;
      changed.push('price_overrides');
    }
    const now = this.ctx.clock.now();
    if (input.api_key !== undefined) {
      patch.sealedKey = this.sealer.seal(input.api_key, sealContext(existing.id));
      patch.keyHint = keyHintOf(input.api_key);
      patch.rotatedAt = now;
    }
    if (changed.length === 0 && input.api_key === undefined) return existing;
    const row = (await repo.updateKey(tx, teamId, existing.id, { ...patch, updatedAt: now }))!;
    this.callKeys.forget(existing.id);
    const actor = actorOf(principal);
    if (changed.length > 0) {
      await this.events.record(tx, {
        teamId,
        type: 'provider_key.updated',
        ...actor,
        subjectId: row.id,
        data: { name: row.name, changed_fields: changed },
      });
    }
    if (input.api_key !== undefined) {
      await this.events.record(tx, {
        teamId,
        type: 'provider_key.rotated',
        ...actor,
        subjectId: row.id,
        data: { name: row.name },
      });
    }
    return row;
  }

  /** Rungate: disable and enable are idempotent (200 when already so); bindings are kept. */
  async setEnabled(principal: Principal, id: ProviderKeyId, enabled: boolean) {
    const teamId = this.team(principal, 'admin');
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.keyOrNotFound(tx, teamId, id, 'update');
      if (existing.status === 'deleted') throw deletedKey(id);
      const status = enabled ? 'active' : 'disabled';
      if (existing.status === status) return existing;
      const updated = (await repo.updateKey(tx, teamId, id, { status, updatedAt: this.ctx.clock.now() }))!;
      this.callKeys.forget(id);
      await this.events.record(tx, {
        teamId,
        type: enabled ? 'provider_key.enabled' : 'provider_key.disabled',
        ...actorOf(principal),
        subjectId: id,
        data: { name: updated.name },
      });
      return updated;
    });
    return providerKeyView(row);
  }

  /**
   * Deletes a key: a tombstone (status deleted, listable with ?status=deleted)
   * whose sealed secret is scrubbed. With `remapTo` (an active key of the same
   * team and provider), every agent bound to the key is rebound to it in the
   * same transaction. Deleting a deleted key again is allowed, so its
   * leftover bindings can still be remapped.
   */
  async remove(principal: Principal, id: ProviderKeyId, remapTo?: string) {
    const teamId = this.team(principal, 'admin');
    const result = await this.db.transaction(async (tx) => {
      const invalid = (why: string) =>
        new BadRequestError('invalid_remap_target', `remap_to ${remapTo} ${why}`, { remap_to: remapTo });
      if (remapTo === id) throw invalid('is the key being deleted');
      // A remap_to that is no key id is no key of this team either (said below, after the key's 404).
      const targetId = remapTo !== undefined && isId(remapTo, 'pkey') ? remapTo : undefined;
      // Lock both rows in id order, so two deletes remapping onto each other cannot deadlock.
      const ids = targetId === undefined ? [id] : [id, targetId].sort();
      const locked = new Map<ProviderKeyId, repo.ProviderKeyRow | undefined>();
      for (const k of ids) locked.set(k, await repo.findKey(tx, teamId, k, 'update'));
      const key = locked.get(id);
      if (!key) throw new NotFoundError('provider_key', id);
      const target = targetId === undefined ? undefined : locked.get(targetId);
      if (remapTo !== undefined) {
        if (!target) throw invalid('is not a provider key of this team');
        if (target.status !== 'active') throw invalid(`is ${target.status}; the target must be active`);
        if (target.provider !== key.provider)
          throw invalid(`is a ${target.provider} key; the target must be a ${key.provider} key`);
      }
      const actor = actorOf(principal);
      const now = this.ctx.clock.now();
      if (key.status !== 'deleted') {
        await repo.updateKey(tx, teamId, id, {
          status: 'deleted',
          sealedKey: null,
          keyHint: null,
          updatedAt: now,
        });
      }
      const remapped = target
        ? await this.agents.remapProviderKey(tx, {
            teamId,
            fromKeyId: id,
            toKeyId: target.id,
            actor,
            at: now,
          })
        : [];
      if (key.status !== 'deleted') {
        await this.events.record(tx, {
          teamId,
          type: 'provider_key.deleted',
          ...actor,
          subjectId: id,
          data: { name: key.name, remapped_to: target?.id ?? null, remapped_agents: remapped.length },
        });
      }
      return { name: key.name, remapped };
    });
    this.callKeys.forget(id);
    this.healthRegistry.forget(id);
    if (result.remapped.length > 0) this.agents.forgetCached();
    const moved = remapTo === undefined ? '' : `; ${result.remapped.length} agent(s) now use ${remapTo}`;
    return {
      message: `provider key "${result.name}" is deleted and its secret scrubbed${moved}`,
      remapped_agents: result.remapped.length,
    };
  }

  /** Rungate: the impact of a disable or delete, before doing it. */
  async dependents(principal: Principal, id: ProviderKeyId) {
    const teamId = this.team(principal, 'read');
    const key = await this.keyOrNotFound(this.db, teamId, id);
    const bound = await this.agents.boundToKey(this.db, teamId, id);
    // The other keys those agents hold: a disabled or deleted one is no fallback.
    const others = new Set<ProviderKeyId>();
    for (const a of bound)
      for (const b of Object.values(a.providerKeys ?? {}))
        for (const k of typeof b === 'string' ? [b] : b) {
          const keyId = typeof k === 'string' ? k : k.key_id;
          if (keyId !== id) others.add(keyId);
        }
    const active = new Set((await repo.activeKeysForCall(this.db, teamId, [...others])).map((r) => r.id));
    const agents = bound.map((a) => {
      const providers = bindingsUse(a.providerKeys, id);
      const onlyKey = providers.some((p) => {
        const b = a.providerKeys[p]!;
        const ids = typeof b === 'string' ? [b] : b.map((k) => k.key_id);
        return !ids.some((k) => k !== id && active.has(k));
      });
      return { id: a.id, name: a.name, is_only_key_for_provider: onlyKey };
    });
    const since = new Date(this.ctx.clock.now().getTime() - 30 * DAY_MS);
    const [activeRuns, recentRuns] = await Promise.all([
      this.runs.runningRunCount(
        teamId,
        bound.map((a) => a.id),
      ),
      this.runs.runsUsingKeySince(teamId, id, since),
    ]);
    return {
      agents,
      active_run_count: activeRuns,
      runs_last_30_days: recentRuns,
      last_used_at: key.lastUsedAt?.toISOString() ?? null,
    };
  }

  /** GET /v1/providers/health: the circuit and latency of each of the team's keys, as this process sees them. */
  async health(principal: Principal) {
    const teamId = this.team(principal, 'read');
    const keys = await repo.liveKeys(this.db, teamId);
    const byId = new Map<string, (typeof keys)[number]>(keys.map((k) => [k.id, k]));
    const data = this.healthRegistry.snapshot(keys).map((h) => {
      const k = byId.get(h.provider_key_id)!;
      return { ...h, name: k.name, provider: k.provider };
    });
    return { data };
  }

  // -- for other modules (the proxy, agents) -----------------------------------

  /** Whether `keyId` is a key of the team (not deleted), for `provider` when given. Disabled keys count. */
  async exists(teamId: TeamId, keyId: ProviderKeyId, provider?: string): Promise<boolean> {
    const row = await repo.findKey(this.db, teamId, keyId);
    return (
      row !== undefined && row.status !== 'deleted' && (provider === undefined || row.provider === provider)
    );
  }

  /**
   * The team's active keys among `keyIds`, opened for a call (one query; the
   * secret is decrypted only when the row changed since it was last opened).
   * Keys that are disabled, deleted, of another team or unknown are absent.
   */
  keysForCall(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<Map<string, KeyForCall>> {
    return this.callKeys.open(teamId, keyIds);
  }

  /**
   * Which of `keyIds` the team's calls can use now (active, and its secret
   * opens with this server's master key), in the order given, each once:
   * what the gateway would route to, without the secrets.
   */
  async usableKeys(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<UsableKey[]> {
    if (keyIds.length === 0) return [];
    const [opened, live] = await Promise.all([
      this.callKeys.open(teamId, keyIds),
      repo.liveKeys(this.db, teamId),
    ]);
    const names = new Map<string, string>(live.map((k) => [k.id, k.name]));
    const out: UsableKey[] = [];
    for (const id of new Set(keyIds)) {
      const key = opened.get(id);
      const name = names.get(id);
      if (key && name !== undefined) out.push({ id, provider: key.provider, name });
    }
    return out;
  }

  /** One active key opened for a call, or undefined unless it is an active key of the team. */
  async keyForCall(teamId: TeamId, keyId: ProviderKeyId): Promise<KeyForCall | undefined> {
    return (await this.callKeys.open(teamId, [keyId])).get(keyId);
  }

  /** Notes that a key was used: batched, off the caller's path (see UsageBatcher). */
  markUsed(keyId: ProviderKeyId, at: Date = this.ctx.clock.now()): void {
    this.usage.mark(keyId, at);
  }

  /** Writes the batched last_used_at values now (tests, shutdown). */
  flushUsage(): Promise<void> {
    return this.usage.flush();
  }

  async close(): Promise<void> {
    await this.usage.flush();
  }
}

// One file over ~400 lines: the agent's use cases (create, update, upsert with its races,
// key rotation, delete) and the other modules' side (the proxy's cached read, policy and
// provider-key references) share the team check, the caches and the insert path.
import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { generateToken, type TokenHasher, tokenDisplayPrefix } from '../../core/crypto.ts';
import {
  BadRequestError,
  ConflictError,
  NotFoundError,
  UnauthorizedError,
  ValidationError,
} from '../../core/errors.ts';
import { type AgentId, idOrNotFound, isId, newId, type ProviderKeyId, type TeamId } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import { ReadThroughCache } from '../../core/read-through-cache.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import type { PoliciesService } from '../policies/service.ts';
import { actorLabel } from '../policies/service.ts';
import { type ProviderName, sameJson } from '../policies/spec.ts';
import type { UsableKey } from '../providers/service.ts';
import { changedFields, type Definition, sendsDefinition, storedDefinition } from './definition.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import { HEARTBEAT_INTERVAL } from './schemas.ts';
import {
  AgentVersions,
  composeDefinition,
  type DefinitionPorts,
  definitionOf,
  type PinnedEnvironment,
} from './versions.ts';
import * as versionsRepo from './versions-repo.ts';
import { type AgentView, agentView, COLUMN_FIELDS, columnsOf } from './views.ts';

export type AgentRow = repo.AgentRow;
export type CreateAgentInput = Static<typeof s.CreateAgentBody>;
export type UpdateAgentInput = Static<typeof s.UpdateAgentBody>;
export type UpsertAgentInput = Static<typeof s.UpsertAgentBody>;
type ProviderKeys = Static<typeof s.ProviderKeys>;

export { bindingsUse } from './repo.ts';
export { type AgentView, agentView } from './views.ts';

/** Whether `keyId` is a usable provider key of the team for `provider` (the providers module answers). */
export type ProviderKeyExists = (
  teamId: TeamId,
  keyId: ProviderKeyId,
  provider: ProviderName,
) => Promise<boolean>;

export type AgentModel = Static<typeof s.AgentModel>;

/** What agents ask about provider keys: the providers module and the gateway's model lists answer. */
export interface ProviderKeyPorts {
  exists: ProviderKeyExists;
  /** Which of `keyIds` the team's calls can use now, in that order. */
  usable(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<UsableKey[]>;
  /** The models those keys can use, sorted. */
  models(teamId: TeamId, keys: readonly UsableKey[]): Promise<AgentModel[]>;
}

/** What agents need from the policies module. */
export type PolicyReferences = Pick<PoliciesService, 'holdForReference' | 'missingPolicies' | 'findForTeam'>;

/**
 * The proxy reads the agent on every call: trust a read this long (reloaded
 * in the background in its last half second); changes here clear it at once.
 */
const CACHE = { ttlMs: 2000, refreshAheadMs: 500, max: 10_000 };

function nameTaken(name: string): ConflictError {
  return new ConflictError('agent_name_taken', `an agent named "${name}" already exists in this team`, {
    name,
  });
}

/** An agent id from a path; anything else names no agent (404, as an unknown id). */
export function agentIdOf(raw: string): AgentId {
  return idOrNotFound(raw, 'agt', 'agent');
}

/** A binding from a request with its key ids typed; undefined when one of them is no provider key id. */
function typedBinding(binding: NonNullable<ProviderKeys[keyof ProviderKeys]>): repo.Binding | undefined {
  if (typeof binding === 'string') return isId(binding, 'pkey') ? binding : undefined;
  const typed: Array<{ key_id: ProviderKeyId; weight: number }> = [];
  for (const b of binding) {
    if (!isId(b.key_id, 'pkey')) return undefined;
    typed.push({ key_id: b.key_id, weight: b.weight });
  }
  return typed;
}

/**
 * Rewrites every reference to `from` into `to`, in both binding forms. When the
 * weighted list already holds `to`, the two entries merge (weights add, up to
 * the maximum of 100) so that the list still names each key once.
 */
export function remapBindings(
  bindings: repo.Bindings,
  from: ProviderKeyId,
  to: ProviderKeyId,
): repo.Bindings {
  const out: repo.Bindings = {};
  for (const [provider, b] of Object.entries(bindings ?? {})) {
    if (typeof b === 'string') {
      out[provider] = b === from ? to : b;
      continue;
    }
    const merged: Array<{ key_id: ProviderKeyId; weight: number }> = [];
    for (const k of b) {
      const keyId = k.key_id === from ? to : k.key_id;
      const same = merged.find((m) => m.key_id === keyId);
      if (same) same.weight = Math.min(100, same.weight + k.weight);
      else merged.push({ key_id: keyId, weight: k.weight });
    }
    out[provider] = merged;
  }
  return out;
}

export class AgentsService {
  /** Agent versions a task ran, by `agentId:version` (immutable, so never stale). */
  private readonly pastVersions = new Map<string, Definition>();
  private readonly agentCache = new ReadThroughCache<AgentRow | undefined>(CACHE);
  private readonly keyCache = new ReadThroughCache<AgentRow>(CACHE);
  private readonly versions: AgentVersions;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly hasher: TokenHasher,
    private readonly events: EventsService,
    private readonly policies: PolicyReferences,
    private readonly providerKeys: ProviderKeyPorts,
    definitionPorts: DefinitionPorts,
  ) {
    this.versions = new AgentVersions(db, definitionPorts);
  }

  /** The agent as answered, its presence as of now. */
  view(row: AgentRow): AgentView {
    return agentView(row, this.ctx.clock.now());
  }

  /** Agents are managed by people and team keys; an agent key cannot manage agents. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'agents');
  }

  // -- the proxy's side --------------------------------------------------

  /**
   * Resolves a `pda_` key to its agent's principal. A disabled agent still
   * authenticates: the gateway answers it 403 agent_disabled.
   */
  async authenticate(token: string): Promise<Principal> {
    // Keyed by the key itself, so the HMAC (about 12 µs) runs only when the cache loads, not on
    // every proxied call. The entry lives and goes exactly as it did when keyed by the hash: any
    // change to an agent or its key clears the cache at once. An unknown key is not cached: the
    // load throws, and the next call asks again.
    const row = await this.keyCache.get(token, async () => {
      const found = await repo.findAgentByKeyHash(this.db, this.hasher.hash(token));
      if (!found) throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
      return found;
    });
    return {
      kind: 'agent',
      teamId: row.teamId,
      agentId: row.id,
      userId: null,
      role: null,
      scope: 'write',
      isPlatformAdmin: false,
    };
  }

  /**
   * System-only: the live agent's full row for the proxy (cached briefly), or
   * undefined when deleted. The id is the authenticated agent key's own.
   */
  getForCall(agentId: AgentId): Promise<AgentRow | undefined> {
    return this.agentCache.get(agentId, () => repo.systemFindLiveAgent(this.db, agentId));
  }

  /** Any change to an agent or its key: the proxy's next read goes to the database. */
  private forget(): void {
    this.forgetCached();
  }

  /** For the providers module, after its transaction rewrote agents' bindings (a key's remap). */
  forgetCached(): void {
    this.agentCache.clear();
    this.keyCache.clear();
  }

  /**
   * GET /v1/me with an agent key (Rungate): who the agent is and the limits
   * its default policy sets, so an agent can plan within them.
   */
  async me(principal: Principal) {
    const row =
      principal.kind === 'agent' && principal.agentId && isId(principal.agentId, 'agt')
        ? await this.getForCall(principal.agentId)
        : undefined;
    if (!row) throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
    const policy = await this.policies.findForTeam(row.teamId, row.policyId);
    const spec = policy?.spec;
    return {
      kind: 'agent' as const,
      id: row.id,
      team_id: row.teamId,
      name: row.name,
      description: row.description,
      status: row.status,
      policy_id: row.policyId,
      policy_name: policy?.name ?? null,
      hourly_cost_limit_usd: spec?.budget?.max_cost_per_hour_usd ?? null,
      budget_hard_limit_usd: spec?.budget?.hard_limit_usd ?? null,
      budget_hard_limit_tokens: spec?.budget?.hard_limit_tokens ?? null,
      max_steps_per_run: spec?.runaway_prevention?.max_steps_per_run ?? null,
      allowed_models: spec?.allowed_models ?? null,
      model_override: spec?.model_override ?? null,
    };
  }

  /** For the providers module: the team's live agents whose provider_keys name the key (in its transaction when given one). */
  boundToKey(db: DbOrTx, teamId: TeamId, keyId: ProviderKeyId, lock?: 'update') {
    return repo.agentsBoundToKey(db, teamId, keyId, lock);
  }

  /**
   * For the providers module, inside its transaction (a key deleted with
   * remap_to): every live agent bound to `fromKeyId` is bound to `toKeyId`
   * instead, each change with its agent.updated event. Returns their ids.
   */
  async remapProviderKey(
    tx: DbOrTx,
    r: {
      teamId: TeamId;
      fromKeyId: ProviderKeyId;
      toKeyId: ProviderKeyId;
      actor: ReturnType<typeof actorOf>;
      at: Date;
    },
  ): Promise<string[]> {
    const remapped: string[] = [];
    for (const agent of await repo.agentsBoundToKey(tx, r.teamId, r.fromKeyId, 'update')) {
      await repo.setAgentBindings(
        tx,
        r.teamId,
        agent.id,
        remapBindings(agent.providerKeys, r.fromKeyId, r.toKeyId),
        r.at,
      );
      await this.events.record(tx, {
        teamId: r.teamId,
        type: 'agent.updated',
        ...r.actor,
        subjectId: agent.id,
        data: { name: agent.name, changed_fields: ['provider_keys'] },
      });
      remapped.push(agent.id);
    }
    return remapped;
  }

  /**
   * For the tasks module: the provider keys the agent (a live agent of the
   * team) can use now — bound to it, active, and opening with this server's
   * master key — as `{id, provider, name}`, by provider name, then in the order of its list.
   */
  async usableProviderKeys(teamId: TeamId, agentId: AgentId): Promise<UsableKey[]> {
    const row = await repo.findAgent(this.db, teamId, agentId);
    if (!row) throw new NotFoundError('agent', agentId);
    return this.providerKeys.usable(teamId, repo.boundKeyIds(row.providerKeys));
  }

  /** GET /v1/agents/{id}/models: what the agent's usable keys can call (one page: every model). */
  async models(principal: Principal, id: AgentId): Promise<{ data: AgentModel[]; next_cursor: null }> {
    const teamId = this.team(principal, 'read');
    const keys = await this.usableProviderKeys(teamId, id);
    return { data: keys.length === 0 ? [] : await this.providerKeys.models(teamId, keys), next_cursor: null };
  }

  /** For the policies module: live agents whose policy is `policyId`, inside its transaction. */
  idsUsingPolicy(tx: DbOrTx, teamId: TeamId, policyId: string): Promise<string[]> {
    return repo.idsUsingPolicy(tx, teamId, policyId);
  }

  /** For the skills module: the live agents whose current version lists the skill. */
  idsUsingSkill(tx: DbOrTx, teamId: TeamId, skillId: string): Promise<string[]> {
    return repo.idsListingSkill(tx, teamId, skillId);
  }

  /** For modules that name agents (secrets): the ids among `ids` that are no live agent of the team. */
  async unknownAgentIds(tx: DbOrTx, teamId: TeamId, ids: readonly string[]): Promise<string[]> {
    const live = await repo.liveAgentIdsAmong(tx, teamId, [...ids]);
    return ids.filter((id) => !live.has(id));
  }

  // -- references ----------------------------------------------------------

  /**
   * The input with its provider_keys checked, and so typed: each key must be a
   * provider key of the team for its provider (an id that is no `pkey_` id is
   * none) and appear once per provider.
   */
  private async withCheckedBindings<T extends { provider_keys?: ProviderKeys }>(
    teamId: TeamId,
    input: T,
  ): Promise<repo.WithBindings<T>> {
    const { provider_keys: keys, ...rest } = input;
    if (!keys) return rest;
    const checked: repo.Bindings = {};
    const fields: Record<string, string> = {};
    const unknown: Array<{ provider: string; key_id: string }> = [];
    for (const [provider, binding] of Object.entries(keys)) {
      if (binding === undefined) continue;
      const ids = typeof binding === 'string' ? [binding] : binding.map((b) => b.key_id);
      if (new Set(ids).size !== ids.length)
        fields[`provider_keys.${provider}`] = 'lists a key more than once';
      for (const keyId of new Set(ids)) {
        if (
          !isId(keyId, 'pkey') ||
          !(await this.providerKeys.exists(teamId, keyId, provider as ProviderName))
        )
          unknown.push({ provider, key_id: keyId });
      }
      const typed = typedBinding(binding);
      if (typed !== undefined) checked[provider] = typed;
    }
    if (Object.keys(fields).length > 0) {
      throw new ValidationError(
        `the request body is invalid: ${Object.entries(fields)
          .map(([f, m]) => `${f} ${m}`)
          .join('; ')}`,
        fields,
      );
    }
    if (unknown.length > 0) {
      throw new BadRequestError(
        'invalid_provider_key',
        `${unknown.map((u) => `${u.key_id} (${u.provider})`).join(', ')} is not a provider key of this team for that provider`,
        { provider_keys: unknown },
      );
    }
    return { ...rest, provider_keys: checked };
  }

  /** Inside the change's transaction: the policies exist, and the default one stays until commit. */
  private async checkPolicies(
    tx: DbOrTx,
    teamId: TeamId,
    policyId: string | undefined,
    allowed: string[] | null | undefined,
  ): Promise<void> {
    if (policyId !== undefined && !(await this.policies.holdForReference(tx, teamId, policyId))) {
      throw new BadRequestError('invalid_policy', `policy ${policyId} is not a policy of this team`, {
        policy_id: policyId,
      });
    }
    if (allowed) {
      const missing = await this.policies.missingPolicies(tx, teamId, allowed);
      if (missing.length > 0) {
        throw new BadRequestError(
          'invalid_policy',
          `allowed_policies names policies that are not policies of this team: ${missing.join(', ')}`,
          { allowed_policies: missing },
        );
      }
    }
  }

  // -- the admin side --------------------------------------------------------

  /**
   * Creates an agent and its key (shown only in this answer). Rungate: a name
   * already used in the team gets the first free suffix ("my-agent-2") and
   * the answer says so in `note`.
   */
  async create(principal: Principal, input: CreateAgentInput) {
    const teamId = this.team(principal, 'write');
    const checked = await this.withCheckedBindings(teamId, input);
    const pinned = await this.versions.references(teamId, input);
    const wanted = input.name;
    for (let attempt = 0; ; attempt++) {
      try {
        const { row, apiKey } = await this.db.transaction(async (tx) => {
          await this.checkPolicies(tx, teamId, input.policy_id, input.allowed_policies);
          const taken = await repo.namesLike(tx, teamId, wanted);
          let name = wanted;
          for (let n = 2; taken.has(name); n++) name = `${wanted}-${n}`;
          return this.insert(tx, principal, teamId, { ...checked, name }, pinned);
        });
        const note =
          row.name === wanted
            ? undefined
            : `the name "${wanted}" is already used by an agent of this team, so this agent is named "${row.name}"`;
        return { ...this.view(row), api_key: apiKey, ...(note ? { note } : {}) };
      } catch (err) {
        // Another create took the same name between our look and our insert: look again.
        if (!repo.isUniqueViolation(err) || attempt >= 4) throw err;
      }
    }
  }

  private async insert(
    tx: DbOrTx,
    principal: Principal,
    teamId: TeamId,
    input: repo.WithBindings<CreateAgentInput>,
    pinned: PinnedEnvironment | undefined,
  ) {
    const apiKey = generateToken('pda');
    const now = this.ctx.clock.now();
    const definition = composeDefinition(input, undefined, pinned);
    const row = await repo.insertAgent(tx, {
      id: newId('agt'),
      teamId,
      name: input.name,
      description: input.description ?? null,
      status: 'active',
      policyId: input.policy_id,
      allowedPolicies: input.allowed_policies ? [...new Set(input.allowed_policies)] : null,
      providerKeys: input.provider_keys ?? {},
      routingOverride: input.routing_override ?? null,
      metadata: input.metadata ?? {},
      hosted: input.hosted ?? true,
      heartbeatIntervalSec: input.heartbeat_interval_sec ?? HEARTBEAT_INTERVAL.default,
      // The key is stored only as its HMAC; the prefix lets people recognise it.
      keyPrefix: tokenDisplayPrefix(apiKey),
      keyHash: this.hasher.hash(apiKey),
      definition: definition as unknown as Record<string, unknown>,
      environmentId: definition.environment_id,
      currentVersion: 1,
      createdBy: actorLabel(principal),
      createdAt: now,
      updatedAt: now,
    });
    await this.versions.write(tx, principal, row, 1, definition);
    await this.events.record(tx, {
      teamId,
      type: 'agent.created',
      ...actorOf(principal),
      subjectId: row.id,
      data: { name: row.name, policy_id: row.policyId },
    });
    return { row, apiKey };
  }

  async list(principal: Principal, query: PageQuery & Static<typeof s.AgentListQuery>) {
    const teamId = this.team(principal, 'read');
    const now = this.ctx.clock.now();
    const filter = {
      ...(query.status ? { status: query.status } : {}),
      ...(query.policy_id ? { policyId: query.policy_id } : {}),
      ...(query.presence ? { presence: query.presence, now } : {}),
    };
    return pageOf(
      query,
      (cursor, rows) => repo.listAgents(this.db, teamId, filter, cursor, rows),
      (row) => agentView(row, now),
    );
  }

  async get(principal: Principal, id: AgentId) {
    const row = await repo.findAgent(this.db, this.team(principal, 'read'), id);
    if (!row) throw new NotFoundError('agent', id);
    return this.view(row);
  }

  /** PATCH: the fields sent replace the agent's (objects included); the others are kept. */
  async update(principal: Principal, id: AgentId, input: UpdateAgentInput) {
    const teamId = this.team(principal, 'write');
    return this.view(await this.applyUpdate(principal, teamId, { id }, input));
  }

  private async applyUpdate(
    principal: Principal,
    teamId: TeamId,
    which: { id: AgentId } | { name: string },
    sent: UpdateAgentInput,
  ): Promise<AgentRow> {
    const input = await this.withCheckedBindings(teamId, sent);
    const pinned = await this.versions.references(teamId, sent, which);
    let agentId: string | undefined;
    try {
      return await this.db.transaction(async (tx) => {
        const row =
          'id' in which
            ? await repo.findAgent(tx, teamId, which.id, 'update')
            : await repo.findAgentByName(tx, teamId, which.name, 'update');
        if (!row) throw new NotFoundError('agent', 'id' in which ? which.id : which.name);
        agentId = row.id;
        const patch = columnsOf(input);
        const changed: string[] = COLUMN_FIELDS.filter(
          ([col]) => col in patch && !sameJson(patch[col], row[col]),
        ).map(([, field]) => field);
        // A change to what the agent runs makes its next version.
        const current = definitionOf(row);
        const next = sendsDefinition(sent) ? composeDefinition(sent, current, pinned) : current;
        const defChanged = changedFields(current, next);
        if (defChanged.length > 0) {
          patch.definition = next as unknown as Record<string, unknown>;
          patch.environmentId = next.environment_id;
          patch.currentVersion = row.currentVersion + 1;
          changed.push(...defChanged);
        }
        if (changed.length === 0) return row;
        await this.checkPolicies(
          tx,
          teamId,
          changed.includes('policy_id') ? input.policy_id : undefined,
          changed.includes('allowed_policies') ? input.allowed_policies : undefined,
        );
        if (patch.name !== undefined && patch.name !== row.name) {
          if (await repo.findAgentByName(tx, teamId, patch.name)) throw nameTaken(patch.name);
        }
        const updated = (await repo.updateAgent(tx, teamId, row.id, {
          ...patch,
          updatedAt: this.ctx.clock.now(),
        }))!;
        if (defChanged.length > 0) {
          await this.versions.backfillFirst(tx, row);
          await this.versions.write(tx, principal, updated, updated.currentVersion, next);
        }
        const disabled = row.status === 'active' && updated.status === 'disabled';
        const actor = actorOf(principal);
        if (disabled) {
          await this.events.record(tx, {
            teamId,
            type: 'agent.disabled',
            ...actor,
            subjectId: row.id,
            data: { name: updated.name },
          });
        }
        // A pure disable is the one event; anything else is an update as well.
        if (!(disabled && changed.length === 1)) {
          await this.events.record(tx, {
            teamId,
            type: 'agent.updated',
            ...actor,
            subjectId: row.id,
            data: { name: updated.name, changed_fields: changed },
          });
        }
        return updated;
      });
    } catch (err) {
      if (repo.isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    } finally {
      if (agentId) this.forget();
    }
  }

  /**
   * PUT /by-name/{name}: creates the agent with exactly this name (201, with
   * its key; status ignored — a new agent is active) or updates the fields
   * sent (200, no key). Never suffixes the name.
   */
  async upsertByName(
    principal: Principal,
    name: string,
    input: UpsertAgentInput,
  ): Promise<
    { created: true; agent: AgentView & { api_key: string } } | { created: false; agent: AgentView }
  > {
    const teamId = this.team(principal, 'write');
    for (let attempt = 0; ; attempt++) {
      const existing = await repo.findAgentByName(this.db, teamId, name);
      try {
        if (existing) {
          return {
            created: false,
            agent: this.view(await this.applyUpdate(principal, teamId, { name }, input)),
          };
        }
        if (input.policy_id === undefined) {
          throw new ValidationError(
            `the request body is invalid: policy_id is required to create the agent "${name}"`,
            { policy_id: 'is required when the agent is created' },
          );
        }
        const { status: _ignored, ...sent } = input;
        const fields = await this.withCheckedBindings(teamId, sent);
        const pinned = await this.versions.references(teamId, sent);
        const policyId = input.policy_id;
        const { row, apiKey } = await this.db.transaction(async (tx) => {
          await this.checkPolicies(tx, teamId, policyId, fields.allowed_policies);
          if (await repo.findAgentByName(tx, teamId, name)) throw nameTaken(name);
          return this.insert(tx, principal, teamId, { ...fields, name, policy_id: policyId }, pinned);
        });
        return { created: true, agent: { ...this.view(row), api_key: apiKey } };
      } catch (err) {
        // A concurrent upsert of the same name won (or deleted it): look again.
        const raced =
          repo.isUniqueViolation(err) ||
          (err instanceof ConflictError && err.code === 'agent_name_taken' && !existing) ||
          (err instanceof NotFoundError && existing !== undefined);
        if (!raced || attempt >= 2) throw err;
      }
    }
  }

  // -- versions and forks ------------------------------------------------------

  private async live(principal: Principal, id: AgentId): Promise<AgentRow> {
    const row = await repo.findAgent(this.db, this.team(principal, 'read'), id);
    if (!row) throw new NotFoundError('agent', id);
    return row;
  }

  /**
   * For the tasks module: the team's agent and its definition at `version`
   * (default: the current one); undefined when either is not the team's.
   */
  async forTask(
    teamId: TeamId,
    id: string,
    version?: number,
  ): Promise<{ row: AgentRow; version: number; definition: Definition } | undefined> {
    if (!isId(id, 'agt')) return undefined;
    // The proxy's cache (a change on this server clears it; another server's shows within its TTL).
    const row = await this.getForCall(id);
    if (row?.teamId !== teamId) return undefined;
    const n = version ?? row.currentVersion;
    if (n === row.currentVersion || (row.definition === null && n === 1))
      return { row, version: n, definition: definitionOf(row) };
    if (n > row.currentVersion) return undefined;
    // Versions never change: each is read once.
    const key = `${row.id}:${n}`;
    let definition = this.pastVersions.get(key);
    if (!definition) {
      const v = await versionsRepo.findVersion(this.db, teamId, row.id as AgentId, n);
      if (!v) return undefined;
      definition = storedDefinition(v.definition);
      if (this.pastVersions.size >= 10_000) this.pastVersions.clear();
      this.pastVersions.set(key, definition);
    }
    return { row, version: n, definition };
  }

  async versionList(principal: Principal, id: AgentId, query: PageQuery) {
    return this.versions.list(await this.live(principal, id), query);
  }

  async version(principal: Principal, id: AgentId, n: number) {
    return this.versions.get(await this.live(principal, id), n);
  }

  async versionDiff(principal: Principal, id: AgentId, from: number, to: number) {
    return this.versions.diff(await this.live(principal, id), from, to);
  }

  /**
   * A new agent of the team with this one's policy, bindings, routing,
   * metadata and current definition (its version 1), and a key of its own.
   * The name defaults to "<name>-fork" (suffixed like a create when taken).
   */
  async fork(principal: Principal, id: AgentId, input: { name?: string }) {
    const teamId = this.team(principal, 'write');
    const source = await repo.findAgent(this.db, teamId, id);
    if (!source) throw new NotFoundError('agent', id);
    const definition = definitionOf(source);
    const wanted = input.name ?? `${source.name.slice(0, 95)}-fork`;
    const { environment_id, environment_version_id, environment_version, ...copied } = definition;
    return this.create(principal, {
      name: wanted,
      policy_id: source.policyId,
      description: source.description,
      allowed_policies: source.allowedPolicies,
      provider_keys: source.providerKeys as ProviderKeys,
      routing_override: source.routingOverride as Static<typeof s.RoutingOverride>,
      metadata: source.metadata,
      hosted: source.hosted,
      heartbeat_interval_sec: source.heartbeatIntervalSec,
      ...copied,
      // The fork pins what the source pins.
      environment_version_id,
    });
  }

  /** Soft delete: the agent leaves lists and its key stops working at once. */
  async remove(principal: Principal, id: AgentId): Promise<void> {
    const teamId = this.team(principal, 'write');
    try {
      await this.db.transaction(async (tx) => {
        const now = this.ctx.clock.now();
        const row = await repo.updateAgent(tx, teamId, id, { deletedAt: now, updatedAt: now });
        if (!row) throw new NotFoundError('agent', id);
        await this.events.record(tx, {
          teamId,
          type: 'agent.deleted',
          ...actorOf(principal),
          subjectId: id,
          data: { name: row.name },
        });
      });
    } finally {
      this.forget();
    }
  }

  /** Rungate: a new key, shown once; the old key is invalid at once. */
  async rotateKey(principal: Principal, id: AgentId): Promise<{ api_key: string; api_key_prefix: string }> {
    const teamId = this.team(principal, 'write');
    const apiKey = generateToken('pda');
    const prefix = tokenDisplayPrefix(apiKey);
    try {
      await this.db.transaction(async (tx) => {
        const row = await repo.updateAgent(tx, teamId, id, {
          keyHash: this.hasher.hash(apiKey),
          keyPrefix: prefix,
          updatedAt: this.ctx.clock.now(),
        });
        if (!row) throw new NotFoundError('agent', id);
        await this.events.record(tx, {
          teamId,
          type: 'agent.key_rotated',
          ...actorOf(principal),
          subjectId: id,
          data: { name: row.name, key_prefix: prefix },
        });
      });
    } finally {
      this.forget();
    }
    return { api_key: apiKey, api_key_prefix: prefix };
  }
}

// One file over 400 lines: a host's whole life as the control plane sees it
// (created, registered with its tokens, heartbeating, drained, swept,
// deleted) in one service whose steps share the address guard and the
// attach to a RemoteHost. The tokens could go to a file of their own next.
import { DAY_MS, HOUR_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import { generateToken, type Sealer, type TokenHasher } from '../../core/crypto.ts';
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  UnauthorizedError,
  ValidationError,
} from '../../core/errors.ts';
import { type CapsuleId, type HostId, newId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, type Principal, teamIdOf } from '../identity/principal.ts';
import * as hostsRepo from './hosts-repo.ts';
import { RemoteHost, splitAddress } from './remote-host.ts';
import { type HostRow, liveCapsulesOnHost } from './repo.ts';
import type { CapsulesService } from './service.ts';

// Wrenn's hosts: a `paddock host` is created here (a one-time registration
// token, 1 h), registers itself with that token (an access token for 7 days
// and a refresh token for 60, rotated on use), heartbeats, and is reached by
// the control plane with a control token it was given at registration.

const REGISTRATION_TTL_MS = HOUR_MS;
const ACCESS_TTL_MS = 7 * DAY_MS;
const REFRESH_TTL_MS = 60 * DAY_MS;
const CONTROL_CONTEXT = 'host-control-token';

export interface HostsOptions {
  /** A host with no heartbeat for this long is unreachable and its capsules missing. */
  unreachableAfterMs: number;
  /** How often the control plane looks for such hosts. */
  sweepEveryMs: number;
}

export function hostView(h: HostRow) {
  return {
    id: h.id,
    type: h.type,
    team_id: h.teamId,
    status: h.status,
    provider: h.provider,
    availability_zone: h.availabilityZone,
    arch: h.arch,
    cpu_cores: h.cpuCores,
    memory_mb: h.memoryMb,
    disk_gb: h.diskGb,
    address: h.address,
    isolation: h.isolation,
    tags: h.tags,
    last_heartbeat_at: h.lastHeartbeatAt?.toISOString() ?? null,
    created_by: h.createdBy,
    created_at: h.createdAt.toISOString(),
    updated_at: h.updatedAt.toISOString(),
  };
}

export interface RegisterInput {
  token: string;
  address: string;
  arch?: string;
  cpu_cores?: number;
  memory_mb?: number;
  disk_gb?: number;
  isolation?: 'bwrap' | 'none';
}

export class HostsService {
  private readonly options: HostsOptions;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly hasher: TokenHasher,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    private readonly capsules: CapsulesService,
    /** Guards BYOC hosts' addresses (see `guardFor`). */
    private readonly outbound: OutboundGuard,
    options: Partial<HostsOptions> = {},
  ) {
    this.options = { unreachableAfterMs: 30 * SECOND_MS, sweepEveryMs: 5 * SECOND_MS, ...options };
  }

  // -- who may see and manage which host ------------------------------------

  /** Admins see every host; others only their team's BYOC hosts. */
  private async visible(principal: Principal, id: HostId): Promise<HostRow> {
    const h = await hostsRepo.findHostAnyTeam(this.db, id);
    if (!h || !(principal.isPlatformAdmin || (h.type === 'byoc' && h.teamId === principal.teamId))) {
      throw new NotFoundError('host', id);
    }
    return h;
  }

  private async manageable(principal: Principal, id: HostId): Promise<HostRow> {
    const h = await this.visible(principal, id);
    if (h.type === 'local')
      throw new ForbiddenError('local_host', "the server's own host is managed by the server");
    if (!principal.isPlatformAdmin && !(principal.role === 'owner' || principal.role === 'admin')) {
      throw new ForbiddenError(
        'forbidden',
        "only platform admins and the team's owners and admins manage hosts",
      );
    }
    return h;
  }

  private async issue(hostId: HostId, kind: 'registration' | 'access' | 'refresh', ttlMs: number) {
    const prefix = kind === 'registration' ? 'pdhg' : kind === 'access' ? 'pdh' : 'pdr';
    const token = generateToken(prefix);
    const now = this.ctx.clock.now();
    await hostsRepo.insertHostToken(this.db, {
      id: newId('htk'),
      hostId,
      kind,
      hash: this.hasher.hash(token),
      expiresAt: new Date(now.getTime() + ttlMs),
      createdAt: now,
    });
    return token;
  }

  // -- management (sessions) -------------------------------------------------

  async create(
    principal: Principal,
    input: {
      type: 'regular' | 'byoc';
      team_id?: string;
      provider?: string;
      availability_zone?: string;
      tags?: string[];
    },
  ) {
    if (input.type === 'regular' && !principal.isPlatformAdmin) {
      throw new ForbiddenError('forbidden', 'only platform admins create regular (shared) hosts');
    }
    const requested = input.type === 'byoc' ? (input.team_id ?? principal.teamId) : null;
    if (input.type === 'byoc' && !principal.isPlatformAdmin) {
      if (requested !== principal.teamId || principal.role !== 'owner') {
        throw new ForbiddenError('forbidden', 'BYOC hosts are created by platform admins or the team owner');
      }
    }
    const teamId = requested === null ? null : teamIdOf(requested);
    const now = this.ctx.clock.now();
    const id = newId('hst');
    const row = await hostsRepo.insertHost(this.db, {
      id,
      type: input.type,
      teamId,
      status: 'pending',
      provider: input.provider ?? null,
      availabilityZone: input.availability_zone ?? null,
      tags: [...new Set(input.tags ?? [])],
      createdBy: principal.userId,
      createdAt: now,
      updatedAt: now,
    });
    const registration_token = await this.issue(id, 'registration', REGISTRATION_TTL_MS);
    return { host: hostView(row), registration_token };
  }

  async list(principal: Principal) {
    // Platform admins see every host; others their team's BYOC hosts (none without an active team).
    const rows = principal.isPlatformAdmin
      ? await hostsRepo.listHosts(this.db, null)
      : principal.teamId === null
        ? []
        : await hostsRepo.listHosts(this.db, principal.teamId);
    return { data: rows.map(hostView), next_cursor: null };
  }

  async get(principal: Principal, id: HostId) {
    return hostView(await this.visible(principal, id));
  }

  /** A fresh registration token while the host is still pending (the first one was used by a failed attempt). */
  async regenerateToken(principal: Principal, id: HostId) {
    const h = await this.manageable(principal, id);
    if (h.status !== 'pending') {
      throw new ConflictError(
        'host_not_pending',
        `host ${id} is ${h.status}; only a pending host gets a new token`,
      );
    }
    await hostsRepo.retireRegistrationTokens(this.db, id, this.ctx.clock.now());
    return {
      host: hostView(h),
      registration_token: await this.issue(id, 'registration', REGISTRATION_TTL_MS),
    };
  }

  private async liveCapsuleIds(hostId: HostId): Promise<CapsuleId[]> {
    return (await liveCapsulesOnHost(this.db, hostId)).map((c) => c.id);
  }

  async deletePreview(principal: Principal, id: HostId) {
    const h = await this.manageable(principal, id);
    return { host: hostView(h), sandbox_ids: await this.liveCapsuleIds(id) };
  }

  async remove(principal: Principal, id: HostId, force: boolean): Promise<void> {
    const h = await this.manageable(principal, id);
    const live = await this.liveCapsuleIds(id);
    if (live.length > 0 && !force) {
      throw new ConflictError(
        'host_has_sandboxes',
        `host ${id} has ${live.length} live capsules; pass ?force=true`,
        {
          sandbox_ids: live,
        },
      );
    }
    await this.capsules.destroyOnHost(id, 'host_deleted');
    await this.capsules.removeHost(id);
    await this.db.transaction(async (tx) => {
      await hostsRepo.deleteHost(tx, id);
      await this.events.record(tx, {
        teamId: h.teamId,
        ...actorOf(principal),
        subjectId: id,
        type: 'host.deleted',
        data: { destroyed: live.length },
      });
    });
  }

  async setDraining(principal: Principal, id: HostId, draining: boolean) {
    const h = await this.manageable(principal, id);
    const to = draining ? 'draining' : 'online';
    if (draining ? h.status !== 'online' : h.status !== 'draining') {
      throw new ConflictError('host_state', `host ${id} is ${h.status}`, { status: h.status });
    }
    const row = await hostsRepo.updateHost(this.db, id, { status: to, updatedAt: this.ctx.clock.now() });
    if (!row) throw new NotFoundError('host', id);
    return hostView(row);
  }

  async tags(principal: Principal, id: HostId): Promise<string[]> {
    return (await this.visible(principal, id)).tags;
  }

  async tag(principal: Principal, id: HostId, tag: string, add: boolean): Promise<void> {
    const h = await this.manageable(principal, id);
    const tags = add ? [...new Set([...h.tags, tag])] : h.tags.filter((t) => t !== tag);
    if (!add && tags.length === h.tags.length) throw new NotFoundError('tag', tag);
    await hostsRepo.updateHost(this.db, id, { tags, updatedAt: this.ctx.clock.now() });
  }

  // -- the host's side (its tokens) --------------------------------------------

  private async consume(token: string, kind: 'registration' | 'refresh') {
    const now = this.ctx.clock.now();
    const row = await hostsRepo.useToken(this.db, this.hasher.hash(token), kind, now);
    if (!row || row.expiresAt <= now) {
      throw new UnauthorizedError(`invalid_${kind}_token`, `invalid, used or expired ${kind} token`);
    }
    return row.hostId;
  }

  private async credentials(hostId: HostId) {
    return {
      token: await this.issue(hostId, 'access', ACCESS_TTL_MS),
      refresh_token: await this.issue(hostId, 'refresh', REFRESH_TTL_MS),
    };
  }

  /**
   * A team's (BYOC) host reports its own address, so the control plane would
   * connect, with the host's control token, wherever a team owner says: it
   * passes the outbound-address guard like any user-given URL. Shared
   * (`regular`) hosts are the platform admin's own machines, typically on a
   * private network with the control plane (docs/sandboxes.md): trusted.
   */
  private guardFor(host: Pick<HostRow, 'type'>): OutboundGuard | undefined {
    return host.type === 'byoc' ? this.outbound : undefined;
  }

  /** 400 when a BYOC host's reported address is known now to be one the guard refuses. */
  private async checkAddress(host: Pick<HostRow, 'type'>, address: string): Promise<void> {
    const guard = this.guardFor(host);
    if (!guard) return;
    const [name, port] = splitAddress(address);
    const refusal = await guard.checkHost(name, port);
    if (refusal !== undefined) {
      throw new ValidationError(`the request body is invalid: address is refused: ${refusal}`, {
        address: `is refused: ${refusal}`,
      });
    }
  }

  /** The pending host a registration token is for, without using the token up. */
  private async hostOfRegistrationToken(token: string): Promise<HostRow | undefined> {
    return hostsRepo.hostOfUnusedRegistration(this.db, this.hasher.hash(token));
  }

  async register(input: RegisterInput) {
    // Checked before the one-time token is used, so a refused address does not burn it.
    const pending = await this.hostOfRegistrationToken(input.token);
    if (pending) await this.checkAddress(pending, input.address);
    const hostId = await this.consume(input.token, 'registration');
    const controlToken = generateToken('pdc');
    const now = this.ctx.clock.now();
    const row = await this.db.transaction(async (tx) => {
      const updated = await hostsRepo.updateHost(tx, hostId, {
        status: 'online',
        address: input.address,
        arch: input.arch ?? null,
        cpuCores: input.cpu_cores ?? null,
        memoryMb: input.memory_mb ?? null,
        diskGb: input.disk_gb ?? null,
        isolation: input.isolation ?? null,
        controlToken: this.sealer.seal(controlToken, CONTROL_CONTEXT),
        lastHeartbeatAt: now,
        updatedAt: now,
      });
      if (!updated) throw new UnauthorizedError('invalid_registration_token', 'the host no longer exists');
      await this.events.record(tx, {
        teamId: updated.teamId,
        actorKind: 'host',
        actorId: hostId,
        subjectId: hostId,
        type: 'host.up',
        data: { address: input.address },
      });
      return updated;
    });
    await this.attach(row, []);
    return { host: hostView(row), ...(await this.credentials(hostId)), control_token: controlToken };
  }

  async refresh(refreshToken: string) {
    const hostId = await this.consume(refreshToken, 'refresh');
    const row = await hostsRepo.findHostAnyTeam(this.db, hostId);
    if (!row) throw new UnauthorizedError('invalid_refresh_token', 'the host no longer exists');
    return { host: hostView(row), ...(await this.credentials(hostId)) };
  }

  /** The host an access token belongs to (X-Host-Token), or 401. */
  async authenticate(token: string | undefined): Promise<HostId> {
    if (!token) throw new UnauthorizedError('host_token_required', 'send the host token as X-Host-Token');
    const row = await hostsRepo.findAccessToken(this.db, this.hasher.hash(token));
    if (!row || row.usedAt || row.expiresAt <= this.ctx.clock.now()) {
      throw new UnauthorizedError('invalid_host_token', 'invalid or expired host token');
    }
    return row.hostId;
  }

  async heartbeat(
    hostId: HostId,
    urlId: string,
    body: { address?: string; capsule_ids?: string[]; stopping?: boolean },
  ): Promise<void> {
    if (hostId !== urlId)
      throw new ForbiddenError('host_mismatch', 'the host id does not match the host token');
    const now = this.ctx.clock.now();
    const known = await hostsRepo.findHostAnyTeam(this.db, hostId);
    if (!known) throw new NotFoundError('host', hostId);
    if (body.address && body.address !== known.address) await this.checkAddress(known, body.address);
    const row = await this.db.transaction(async (tx) => {
      const before = await hostsRepo.findHostAnyTeam(tx, hostId);
      const after = await hostsRepo.recordHeartbeat(tx, hostId, now, {
        stopping: body.stopping === true,
        ...(body.address ? { address: body.address } : {}),
      });
      if (!before || !after) throw new NotFoundError('host', hostId);
      if (before.status !== after.status && (after.status === 'online' || after.status === 'offline')) {
        await this.events.record(tx, {
          teamId: after.teamId,
          actorKind: 'host',
          actorId: hostId,
          subjectId: hostId,
          type: after.status === 'online' ? 'host.up' : 'host.down',
          data: { from: before.status },
        });
      }
      return after;
    });
    this.ctx.metrics?.hostHeartbeat();
    const remote = this.capsules.host(hostId);
    if (remote instanceof RemoteHost) remote.report(row.address ?? '', body.capsule_ids ?? [], body.stopping);
    else await this.attach(row, body.capsule_ids ?? []);
  }

  // -- the control plane's view -------------------------------------------------

  private async attach(row: HostRow, capsuleIds: string[]): Promise<void> {
    const attached = this.capsules.host(row.id);
    // Another server took its heartbeat: the address it reported is the row's.
    if (attached instanceof RemoteHost && row.address) attached.moveTo(row.address);
    if (!row.address || !row.controlToken || attached) return;
    const token = this.sealer.open(row.controlToken, CONTROL_CONTEXT);
    const known = capsuleIds.length > 0 ? capsuleIds : await this.liveCapsuleIds(row.id);
    const guard = this.guardFor(row);
    this.capsules.addHost(
      new RemoteHost(row.id, row.address, token, row.isolation ?? 'none', known, {
        clock: this.ctx.clock,
        tracer: this.ctx.tracer,
        ...(guard ? { guard } : {}),
      }),
    );
  }

  /**
   * Every registered remote host, so its capsules are reachable: at start,
   * then (follow) as hosts register with, move or are deleted on other
   * servers of the same database, whose heartbeats this one may never see.
   */
  async load(): Promise<void> {
    const rows = await hostsRepo.registeredRemoteHosts(this.db);
    for (const row of rows) await this.attach(row, []);
    // A host deleted through another server (a pending one has its row: it may be registering here).
    const known = new Set((await hostsRepo.listHosts(this.db, null)).map((r) => r.id));
    for (const host of this.capsules.remoteHosts())
      if (!known.has(host.id)) await this.capsules.removeHost(host.id);
  }

  private timer: Timer | undefined;
  private sweeping: Promise<unknown> | undefined;
  private follower: Timer | undefined;
  private following: Promise<unknown> | undefined;

  /** Loads the registered hosts again every sweepEveryMs (every role: each drives capsules). */
  follow(): void {
    this.follower ??= this.ctx.timers.every(this.options.sweepEveryMs, () => {
      this.following ??= this.load()
        .catch((err: unknown) => this.ctx.log.warn({ err }, 'could not load the registered hosts'))
        .finally(() => (this.following = undefined));
    });
  }

  /** Looks for silent hosts every sweepEveryMs (on ctx.timers: a test's ManualTimers run it only when time moves). */
  start(): void {
    this.timer = this.ctx.timers.every(this.options.sweepEveryMs, () => {
      if (this.sweeping) return;
      this.sweeping = this.sweepUnreachable()
        .catch((err: unknown) => this.ctx.log.error({ err }, 'host sweep failed'))
        .finally(() => (this.sweeping = undefined));
    });
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    this.follower?.cancel();
    this.follower = undefined;
    await Promise.all([this.sweeping, this.following]);
  }

  /** Hosts whose heartbeats stopped: unreachable (with their events, in one transaction), their capsules missing. */
  async sweepUnreachable(now: Date = this.ctx.clock.now()): Promise<string[]> {
    const cutoff = new Date(now.getTime() - this.options.unreachableAfterMs);
    const stale = await this.db.transaction(async (tx) => {
      const marked = await hostsRepo.markSilentHostsUnreachable(tx, cutoff, now);
      for (const h of marked) {
        await this.events.record(tx, {
          teamId: h.teamId,
          actorKind: 'system',
          actorId: null,
          subjectId: h.id,
          type: 'host.down',
          data: { reason: 'no_heartbeat' },
        });
      }
      return marked;
    });
    for (const h of stale) {
      try {
        await this.capsules.hostLost(h.id, 'host_unreachable');
      } catch (err) {
        this.ctx.log.error(
          { err, host_id: h.id },
          "an unreachable host's capsules could not be marked missing",
        );
      }
    }
    return stale.map((h) => h.id);
  }
}

import type http from 'node:http';
import { Readable } from 'node:stream';
import { Agent, type Dispatcher, errors as undiciErrors } from 'undici';
import { type Clock, systemClock } from '../../core/clock.ts';
import type { HostId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import { NOOP_TRACER, type Tracer } from '../../core/tracing.ts';
import { type CapsuleUsage, DriverError, type FileEntry, type Isolation } from './drivers/types.ts';
import type {
  ExecRequest,
  ExecResult,
  FollowedProcess,
  HostCapsuleSpec,
  HostProcess,
  SandboxHost,
  StartRequest,
} from './host.ts';
import {
  type Checked,
  checker,
  DRIVER_ERROR_CODES,
  HOST_RPC,
  HostErrorBody,
  type HostRpcName,
  type HostRpcRequest,
  type HostRpcResponse,
  KILL_SIGNALS,
} from './host-rpc-schemas.ts';
import type { MetricPoint, MetricRange } from './host-side/metrics.ts';
import { RemoteFollowed } from './remote-followed.ts';

/** A capsule this new is not judged missing from a heartbeat (the report may predate it). */
const REPORT_GRACE_MS = 15_000;
const DRIVER_CODES: ReadonlySet<string> = new Set(DRIVER_ERROR_CODES);

type Answers = { [N in HostRpcName]: (value: unknown) => Checked<HostRpcResponse<N>> };
/** Each operation's answer checked against the shared schema, compiled on first use. */
const ANSWERS = Object.fromEntries(
  Object.entries(HOST_RPC).map(([name, { response }]) => [name, checker(response)]),
) as Answers;
const checkError = checker(HostErrorBody);

export interface RemoteHostOptions {
  /**
   * The outbound-address guard, for a host whose address a team reported
   * (BYOC): every HTTP and WebSocket connection to it goes to an address the
   * guard checked, whatever its name resolves to meanwhile.
   */
  guard?: OutboundGuard;
  /** How long the host may take to answer, and to send the next chunk of a body. */
  timeoutMs?: number;
  /** For when capsules were handed to it (a heartbeat may predate a new one). */
  clock?: Clock;
  /** The control plane's tracer: a call made within a span carries it as `traceparent`, and the host continues it. */
  tracer?: Tracer;
}

/** Ended capsules remembered per host (has()); beyond it the oldest are forgotten. */
const ENDED_KEPT = 10_000;

/**
 * A `paddock host` on another machine (or port), seen from the control
 * plane: every operation is a call to its agent API (host-side/host-api.ts)
 * over undici, its answer checked against host-rpc-schemas.ts. Which
 * capsules it runs is learnt from its own answers and from its heartbeats,
 * so `has()` answers without a round trip. Other servers of the same
 * database start capsules on it too and may take its heartbeats: a capsule
 * this server never heard of may well run there, and only one it saw end
 * is known not to.
 */
export class RemoteHost implements SandboxHost {
  readonly warnings: string[] = [];
  /** Capsule id → when it was handed to this host (unix ms; 0: learnt from a report). */
  private readonly known = new Map<string, number>();
  /** Capsules this server saw end here (destroyed through it, or left out of a heartbeat it took). */
  private readonly ended = new Set<string>();
  private readonly endedListeners: Array<(capsuleId: string, reason: string) => void> = [];
  private readonly dispatcher: Agent;
  /** For the WebSocket follow connections; undefined: ws's own connections. */
  private readonly followAgent: http.Agent | undefined;
  private readonly timeoutMs: number;
  private readonly clock: Clock;
  private readonly tracer: Tracer;
  /** When a connection to the host last failed (ms since the epoch), until a request gets through again. */
  private failedAt: number | undefined;

  constructor(
    readonly id: HostId,
    private address: string,
    private readonly controlToken: string,
    readonly isolation: Isolation,
    capsuleIds: string[] = [],
    options: RemoteHostOptions = {},
  ) {
    for (const c of capsuleIds) this.known.set(c, 0);
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.clock = options.clock ?? systemClock;
    this.tracer = options.tracer ?? NOOP_TRACER;
    const connectTimeoutMs = Math.min(this.timeoutMs, 10_000);
    this.dispatcher = new Agent({
      connections: 64,
      keepAliveTimeout: 30_000,
      // The guard's connector resolves, refuses what it must, dials the checked address and
      // checks the socket's remote end before undici writes the request (token included) to it.
      connect: options.guard
        ? options.guard.undiciConnector({ timeoutMs: connectTimeoutMs })
        : { timeout: connectTimeoutMs },
    });
    this.followAgent = options.guard?.httpAgent();
  }

  /** A heartbeat: where the host listens now, and which capsules it runs; the others ended. */
  report(address: string, capsuleIds: string[], stopping = false): void {
    this.address = address;
    const live = new Set(capsuleIds);
    const now = this.clock.now().getTime();
    for (const [id, since] of this.known) {
      if (live.has(id) || (!stopping && now - since < REPORT_GRACE_MS)) continue;
      this.forget(id);
      for (const l of this.endedListeners) l(id, stopping ? 'host_stopped' : 'capsule_exited');
    }
    for (const id of live) if (!this.known.has(id)) this.known.set(id, 0);
  }

  /** The host stopped answering: every capsule it ran is gone from the control plane's view. */
  lost(): string[] {
    const ids = [...this.known.keys()];
    for (const id of ids) this.forget(id);
    return ids;
  }

  /** Another server took a heartbeat that moved the host (the database's row says where). */
  moveTo(address: string): void {
    this.address = address;
  }

  private forget(capsuleId: string): void {
    this.known.delete(capsuleId);
    this.ended.add(capsuleId);
    if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.values().next().value!);
  }

  private async request(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    body?: { json: unknown } | { stream: Readable },
  ): Promise<Dispatcher.ResponseData> {
    const [hostname, port] = splitAddress(this.address);
    const origin = `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}`;
    const traceparent = this.tracer.traceparent();
    try {
      const res = await this.dispatcher.request({
        origin,
        path,
        method,
        headers: {
          authorization: `Bearer ${this.controlToken}`,
          ...(traceparent ? { traceparent } : {}),
          ...(body
            ? { 'content-type': 'json' in body ? 'application/json' : 'application/octet-stream' }
            : {}),
        },
        ...(body ? { body: 'json' in body ? JSON.stringify(body.json) : body.stream } : {}),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      this.failedAt = undefined;
      return res;
    } catch (err) {
      this.failedAt = this.clock.now().getTime();
      if (err instanceof undiciErrors.HeadersTimeoutError)
        throw new DriverError('failed', `host ${this.id} did not answer in ${this.timeoutMs} ms`);
      throw new DriverError('failed', `host ${this.id} unreachable: ${(err as Error).message}`);
    }
  }

  /**
   * Whether this server's last request to the host failed to get an answer
   * (refused, reset, timed out) within `withinMs`: a host that died is
   * placed on by no one until its silence makes it unreachable for all.
   */
  failing(withinMs: number): boolean {
    return this.failedAt !== undefined && this.clock.now().getTime() - this.failedAt < withinMs;
  }

  /** The answer's JSON, or a DriverError saying what the host answered instead. */
  private async answerJson(what: string, res: Dispatcher.ResponseData): Promise<unknown> {
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw new DriverError(
        'failed',
        `host ${this.id} broke off its answer to ${what}: ${(err as Error).message}`,
      );
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new DriverError('failed', `host ${this.id} answered ${what} with ${res.statusCode} without JSON`);
    }
  }

  /** A refusal (any status but 200) as the DriverError it crossed the wire as. */
  private async refusal(what: string, res: Dispatcher.ResponseData): Promise<never> {
    const checked = checkError(await this.answerJson(what, res));
    if (!checked.ok) {
      throw new DriverError(
        'failed',
        `host ${this.id} answered ${what} with ${res.statusCode} without an error: ${checked.problems}`,
      );
    }
    const { code, message } = checked.value.error;
    throw new DriverError(DRIVER_CODES.has(code) ? (code as DriverError['code']) : 'failed', message);
  }

  private async rpc<N extends HostRpcName>(name: N, args: HostRpcRequest<N>): Promise<HostRpcResponse<N>> {
    const res = await this.request('POST', `/host/rpc/${name}`, { json: args });
    if (res.statusCode !== 200) return this.refusal(name, res);
    const answer = await this.answerJson(name, res);
    const result =
      answer !== null && typeof answer === 'object' && Object.hasOwn(answer, 'result')
        ? (answer as { result: unknown }).result
        : undefined;
    const checked = ANSWERS[name](result);
    if (!checked.ok)
      throw new DriverError('failed', `host ${this.id} answered ${name} wrongly: ${checked.problems}`);
    return checked.value as HostRpcResponse<N>;
  }

  async create(spec: HostCapsuleSpec): Promise<void> {
    this.known.set(spec.id, this.clock.now().getTime());
    try {
      await this.rpc('create', { spec });
    } catch (err) {
      this.forget(spec.id);
      throw err;
    }
  }

  async destroy(capsuleId: string): Promise<void> {
    try {
      await this.rpc('destroy', { capsuleId });
    } finally {
      this.forget(capsuleId);
    }
  }

  /** Not seen to end: started or reported here, or started through another server (see the class). */
  has(capsuleId: string): boolean {
    return this.known.has(capsuleId) || !this.ended.has(capsuleId);
  }

  async pause(capsuleId: string): Promise<void> {
    await this.rpc('pause', { capsuleId });
  }

  async resume(capsuleId: string): Promise<void> {
    await this.rpc('resume', { capsuleId });
  }

  exec(capsuleId: string, req: ExecRequest): Promise<ExecResult> {
    return this.rpc('exec', { capsuleId, req });
  }

  async start(capsuleId: string, req: StartRequest): Promise<FollowedProcess> {
    const { tag } = await this.launch(capsuleId, req);
    // The host keeps a finished process's output for a while, so a fast one is still there to follow.
    const f = await this.followed(capsuleId, tag);
    if (!f) throw new DriverError('failed', `the process ${tag} vanished on its host`);
    return f;
  }

  launch(capsuleId: string, req: StartRequest): Promise<{ pid: number; tag: string }> {
    return this.rpc('start', { capsuleId, req });
  }

  followed(capsuleId: string, selector: string): Promise<FollowedProcess | undefined> {
    const q = new URLSearchParams({ capsule: capsuleId, selector });
    return RemoteFollowed.open(`ws://${this.address}/host/follow?${q}`, this.controlToken, this.followAgent);
  }

  processes(capsuleId: string): Promise<HostProcess[]> {
    return this.rpc('processes', { capsuleId });
  }

  async kill(capsuleId: string, selector: string, signal: NodeJS.Signals): Promise<boolean> {
    const known = KILL_SIGNALS.find((s) => s === signal);
    if (!known) throw new DriverError('invalid', `${signal} is not a signal a capsule's process may be sent`);
    return (await this.rpc('kill', { capsuleId, selector, signal: known })).found;
  }

  private filesPath(capsuleId: string, path: string, max: number): string {
    const q = new URLSearchParams({ capsule: capsuleId, path, max: String(max) });
    return `/host/files?${q}`;
  }

  async readFile(capsuleId: string, path: string, maxBytes: number): Promise<Buffer> {
    const res = await this.request('GET', this.filesPath(capsuleId, path, maxBytes));
    if (res.statusCode !== 200) return this.refusal('readFile', res);
    return Buffer.from(await res.body.arrayBuffer());
  }

  async readStream(capsuleId: string, path: string): Promise<Readable> {
    const res = await this.request('GET', this.filesPath(capsuleId, path, 0));
    if (res.statusCode !== 200) return this.refusal('readStream', res);
    return res.body;
  }

  async writeFile(capsuleId: string, path: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    const stream = Buffer.isBuffer(data) ? Readable.from([data]) : data;
    const res = await this.request('PUT', this.filesPath(capsuleId, path, maxBytes), { stream });
    if (res.statusCode !== 200) return this.refusal('writeFile', res);
    await res.body.dump();
  }

  list(capsuleId: string, path: string, depth: number): Promise<FileEntry[]> {
    return this.rpc('list', { capsuleId, path, depth });
  }

  mkdir(capsuleId: string, path: string): Promise<FileEntry> {
    return this.rpc('mkdir', { capsuleId, path });
  }

  async remove(capsuleId: string, path: string): Promise<void> {
    await this.rpc('remove', { capsuleId, path });
  }

  usage(capsuleId: string): Promise<CapsuleUsage> {
    return this.rpc('usage', { capsuleId });
  }

  metrics(capsuleId: string, range: MetricRange): Promise<MetricPoint[]> {
    return this.rpc('metrics', { capsuleId, range });
  }

  snapshot(capsuleId: string, templateId: string): Promise<{ path: string; sizeBytes: number }> {
    return this.rpc('snapshot', { capsuleId, templateId });
  }

  async removeTemplate(path: string): Promise<void> {
    await this.rpc('removeTemplate', { path });
  }

  onEnded(listener: (capsuleId: string, reason: string) => void): void {
    this.endedListeners.push(listener);
  }

  /** The control plane lets go of the host; its capsules run on. */
  async close(): Promise<void> {
    await this.dispatcher.destroy();
    this.followAgent?.destroy();
  }
}

/** `host:port` or `[v6]:port` → host (unbracketed) and port. */
export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

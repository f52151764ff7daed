import http from 'node:http';
import { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import type { HostId } from '../../core/ids.ts';
import type { OutboundGuard } from '../../core/outbound-guard.ts';
import { type CapsuleUsage, DriverError, type FileEntry, type Isolation } from './drivers/types.ts';
import {
  type ExecRequest,
  type ExecResult,
  type FollowedProcess,
  type HostCapsuleSpec,
  type HostProcess,
  type OutputListener,
  OutputReplay,
  type SandboxHost,
  type StartRequest,
} from './host.ts';
import type { MetricPoint, MetricRange } from './host-side/metrics.ts';

/**
 * A process on a remote host, followed through one WebSocket to its agent
 * API: the host replays the output so far, then streams it live; input,
 * resize and kill travel back. A socket that drops without an exit frame
 * (the host gone) ends the process as 255 for its followers.
 */
class RemoteFollowed implements FollowedProcess {
  pid = 0;
  tag: string | null = null;
  pty = false;
  exitCode: number | null = null;
  readonly exited: Promise<number>;
  private resolveExit!: (code: number) => void;
  /** What a follower gets on attaching, as the host's own replay. */
  private readonly replay = new OutputReplay();

  private constructor(private readonly ws: WebSocket) {
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
  }

  static open(url: string, token: string, agent?: http.Agent): Promise<RemoteFollowed | undefined> {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: 4 * 1024 * 1024,
      ...(agent ? { agent } : {}),
    });
    const f = new RemoteFollowed(ws);
    return new Promise((resolve, reject) => {
      let attached = false;
      ws.on('message', (raw) => {
        let msg: {
          type?: string;
          pid?: number;
          tag?: string;
          pty?: boolean;
          stream?: string;
          data?: string;
          code?: number;
        };
        try {
          msg = JSON.parse(String(raw));
        } catch {
          return;
        }
        if (msg.type === 'missing') return resolve(undefined);
        if (msg.type === 'attached') {
          attached = true;
          f.pid = msg.pid ?? 0;
          f.tag = msg.tag ?? null;
          f.pty = msg.pty === true;
          return resolve(f);
        }
        if (msg.type === 'out' && typeof msg.data === 'string') {
          f.output(msg.stream === 'stderr' ? 'stderr' : 'stdout', Buffer.from(msg.data, 'base64'));
        }
        if (msg.type === 'exit') f.finish(typeof msg.code === 'number' ? msg.code : 255);
      });
      ws.on('error', (err) => {
        if (!attached)
          reject(new DriverError('failed', `cannot follow the process on its host: ${err.message}`));
      });
      ws.on('close', () => {
        if (!attached) resolve(undefined);
        f.finish(255);
      });
    });
  }

  private output(stream: 'stdout' | 'stderr', data: Buffer): void {
    this.replay.push(stream, data);
  }

  private finish(code: number): void {
    if (this.exitCode !== null) return;
    this.exitCode = code;
    this.resolveExit(code);
    this.ws.close();
  }

  follow(onOutput: OutputListener): () => void {
    return this.replay.follow(onOutput);
  }

  private send(frame: Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  write(data: Buffer | string): void {
    this.send({ type: 'input', data: Buffer.from(data).toString('base64') });
  }

  resize(cols: number, rows: number): void {
    this.send({ type: 'resize', cols, rows });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.send({ type: 'kill', signal });
  }
}

/** A capsule this new is not judged missing from a heartbeat (the report may predate it). */
const REPORT_GRACE_MS = 15_000;
const DRIVER_CODES = new Set([
  'not_found',
  'too_large',
  'no_space',
  'invalid_path',
  'exists',
  'not_a_directory',
]);

/**
 * A `paddock host` on another machine (or port), seen from the control
 * plane: every operation is a call to its agent API. Which capsules it runs
 * is learnt from its own answers and from its heartbeats, so `has()` answers
 * without a round trip.
 */
export class RemoteHost implements SandboxHost {
  readonly warnings: string[] = [];
  private readonly known = new Map<string, number>();
  private readonly endedListeners: Array<(capsuleId: string, reason: string) => void> = [];
  private readonly agent: http.Agent;
  /** For the WebSocket follow connections; undefined: ws's own connections. */
  private readonly followAgent: http.Agent | undefined;
  private readonly timeoutMs: number;

  /**
   * `guard`: the outbound-address guard, for a host whose address a team
   * reported (BYOC): every HTTP and WebSocket connection to it goes to an
   * address the guard checked, whatever its name resolves to meanwhile.
   */
  constructor(
    readonly id: HostId,
    private address: string,
    private readonly controlToken: string,
    readonly isolation: Isolation,
    capsuleIds: string[] = [],
    options: { guard?: OutboundGuard; timeoutMs?: number } = {},
  ) {
    for (const c of capsuleIds) this.known.set(c, 0);
    this.timeoutMs = options.timeoutMs ?? 60_000;
    const pooled = { keepAlive: true, maxSockets: 64 };
    this.agent = options.guard ? options.guard.httpAgent(pooled) : new http.Agent(pooled);
    this.followAgent = options.guard?.httpAgent();
  }

  /** A heartbeat: where the host listens now, and which capsules it runs; the others ended. */
  report(address: string, capsuleIds: string[], stopping = false): void {
    this.address = address;
    const live = new Set(capsuleIds);
    const now = Date.now();
    for (const [id, since] of this.known) {
      if (live.has(id) || (!stopping && now - since < REPORT_GRACE_MS)) continue;
      this.known.delete(id);
      for (const l of this.endedListeners) l(id, stopping ? 'host_stopped' : 'capsule_exited');
    }
    for (const id of live) if (!this.known.has(id)) this.known.set(id, 0);
  }

  /** The host stopped answering: every capsule it ran is gone from the control plane's view. */
  lost(): string[] {
    const ids = [...this.known.keys()];
    this.known.clear();
    return ids;
  }

  private request(
    method: string,
    path: string,
    body?: Buffer | Readable,
  ): Promise<{ status: number; res: http.IncomingMessage }> {
    const [hostname, port] = splitAddress(this.address);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent: this.agent,
          hostname,
          port,
          method,
          path,
          timeout: this.timeoutMs,
          headers: {
            authorization: `Bearer ${this.controlToken}`,
            ...(Buffer.isBuffer(body)
              ? { 'content-type': 'application/json', 'content-length': body.length }
              : {}),
          },
        },
        (res) => resolve({ status: res.statusCode ?? 0, res }),
      );
      req.on('timeout', () =>
        req.destroy(new Error(`host ${this.id} did not answer in ${this.timeoutMs} ms`)),
      );
      req.on('error', (err) =>
        reject(new DriverError('failed', `host ${this.id} unreachable: ${err.message}`)),
      );
      if (body instanceof Readable) {
        body.on('error', (err) => req.destroy(err));
        body.pipe(req);
      } else req.end(body);
    });
  }

  private async json<T>(status: number, res: http.IncomingMessage): Promise<T> {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: { result?: T; error?: { code: string; message: string } };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new DriverError('failed', `host ${this.id} answered ${status} without JSON`);
    }
    if (status === 200) return parsed.result as T;
    const code = parsed.error?.code ?? 'failed';
    throw new DriverError(
      (DRIVER_CODES.has(code) ? code : 'failed') as DriverError['code'],
      parsed.error?.message ?? `host ${this.id} answered ${status}`,
    );
  }

  private async rpc<T>(method: string, args: Record<string, unknown>): Promise<T> {
    const { status, res } = await this.request(
      'POST',
      `/host/rpc/${method}`,
      Buffer.from(JSON.stringify(args)),
    );
    return this.json<T>(status, res);
  }

  async create(spec: HostCapsuleSpec): Promise<void> {
    this.known.set(spec.id, Date.now());
    try {
      await this.rpc('create', { spec });
    } catch (err) {
      this.known.delete(spec.id);
      throw err;
    }
  }

  async destroy(capsuleId: string): Promise<void> {
    try {
      await this.rpc('destroy', { capsuleId });
    } finally {
      this.known.delete(capsuleId);
    }
  }

  has(capsuleId: string): boolean {
    return this.known.has(capsuleId);
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
    const { tag } = await this.rpc<{ pid: number; tag: string }>('start', { capsuleId, req });
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
    return (await this.rpc<{ found: boolean }>('kill', { capsuleId, selector, signal })).found;
  }

  private filesPath(capsuleId: string, path: string, max: number): string {
    const q = new URLSearchParams({ capsule: capsuleId, path, max: String(max) });
    return `/host/files?${q}`;
  }

  async readFile(capsuleId: string, path: string, maxBytes: number): Promise<Buffer> {
    const { status, res } = await this.request('GET', this.filesPath(capsuleId, path, maxBytes));
    if (status !== 200) return this.json(status, res);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async readStream(capsuleId: string, path: string): Promise<Readable> {
    const { status, res } = await this.request('GET', this.filesPath(capsuleId, path, 0));
    if (status !== 200) return this.json(status, res);
    return res;
  }

  async writeFile(capsuleId: string, path: string, data: Readable | Buffer, maxBytes: number): Promise<void> {
    const body = Buffer.isBuffer(data) ? Readable.from([data]) : data;
    const { status, res } = await this.request('PUT', this.filesPath(capsuleId, path, maxBytes), body);
    await this.json(status, res);
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
    this.agent.destroy();
    this.followAgent?.destroy();
  }
}

/** `host:port` or `[v6]:port` → host (unbracketed) and port. */
export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

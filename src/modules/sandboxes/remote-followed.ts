import type http from 'node:http';
import { WebSocket } from 'ws';
import { DriverError } from './drivers/types.ts';
import { type FollowedProcess, type OutputListener, OutputReplay } from './host.ts';
import { checker, type FollowCommand, FollowEvent, KILL_SIGNALS } from './host-rpc-schemas.ts';

const checkEvent = checker(FollowEvent);

/**
 * A process on a remote host, followed through one WebSocket to its agent
 * API: the host replays the output so far, then streams it live; input,
 * resize and kill travel back. A socket that drops without an exit frame
 * (the host gone) ends the process as 255 for its followers.
 */
export class RemoteFollowed implements FollowedProcess {
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
        let parsed: unknown;
        try {
          parsed = JSON.parse(String(raw));
        } catch {
          parsed = undefined;
        }
        const checked = checkEvent(parsed);
        if (!checked.ok) {
          // A host that breaks the protocol is not followed further: the process ends as 255 here.
          if (!attached)
            reject(new DriverError('failed', `the host broke the follow protocol: ${checked.problems}`));
          f.finish(255);
          return;
        }
        const event = checked.value;
        if (event.type === 'missing') return resolve(undefined);
        if (event.type === 'attached') {
          attached = true;
          f.pid = event.pid;
          f.tag = event.tag;
          f.pty = event.pty;
          return resolve(f);
        }
        if (event.type === 'out') f.output(event.stream, Buffer.from(event.data, 'base64'));
        else f.finish(event.code);
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

  private send(frame: FollowCommand): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  write(data: Buffer | string): void {
    this.send({ type: 'input', data: Buffer.from(data).toString('base64') });
  }

  resize(cols: number, rows: number): void {
    this.send({ type: 'resize', cols, rows });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    // The host takes the signals a caller may send (the others would be dropped there).
    this.send({ type: 'kill', signal: KILL_SIGNALS.find((s) => s === signal) ?? 'SIGKILL' });
  }
}

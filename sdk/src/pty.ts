import type { ClientOptions } from './index.ts';

// A capsule's terminal over its WebSocket (`GET /v1/capsules/{id}/pty`,
// docs/sandboxes.md "WebSockets"): the first frame starts a shell (or
// reattaches to one by its tag), then input and resize go up and output comes
// down, base64 in JSON frames both ways. The WebSocket class is the caller's:
// a browser's global `WebSocket`, or the `ws` package in Node (which can send
// the bearer token as a header; a browser sends its session cookie and the
// CSRF token in the query instead).

/** The part of a WebSocket this helper uses: the browser's and the `ws` package's both have it. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'close' | 'error' | 'message', listener: (event: unknown) => void): void;
}

/** A WebSocket class: `new WebSocket(url)` in a browser, `new WebSocket(url, { headers })` with `ws`. */
export type WebSocketClass = new (
  url: string,
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

export interface PtyOptions extends ClientOptions {
  WebSocket: WebSocketClass;
  /** Start a terminal (default `/bin/bash`, 80×24), or reattach to a running one by its `tag`. */
  start?: {
    cmd?: string;
    args?: string[];
    cols?: number;
    rows?: number;
    envs?: Record<string, string>;
    cwd?: string;
  };
  tag?: string;
}

export interface PtySession {
  /** The terminal's tag: reattach with it after a dropped connection (the session outlives its socket). */
  readonly tag: string;
  readonly pid: number;
  /** Keystrokes (text is sent as UTF-8). */
  write(data: string | Uint8Array): void;
  resize(cols: number, rows: number): void;
  /** Ends the terminal's process. */
  kill(): void;
  /** Closes the socket; the terminal runs on and can be reattached by its tag. */
  close(): void;
  /** Each piece of the terminal's output, as bytes. */
  onOutput(listener: (data: Uint8Array) => void): void;
  /** Errors the server reports about a frame that do not end the terminal. */
  onError(listener: (message: string) => void): void;
  /** The process's exit code once it ends; undefined when the socket closed first. */
  readonly exited: Promise<number | undefined>;
}

export class PtyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PtyError';
  }
}

/** The WebSocket URL of a capsule route: http(s) becomes ws(s); a browser's CSRF token goes in the query. */
export function socketUrl(options: ClientOptions, path: string): string {
  const url = new URL(`${options.baseUrl.replace(/\/+$/, '')}${path}`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const csrf = options.token ? undefined : options.csrf?.();
  if (csrf) url.searchParams.set('csrf_token', csrf);
  return url.toString();
}

/** Opens a terminal in a running capsule; resolves once the server says it started. */
export function openPty(options: PtyOptions, capsuleId: string): Promise<PtySession> {
  const url = socketUrl(options, `/v1/capsules/${encodeURIComponent(capsuleId)}/pty`);
  const ws = new options.WebSocket(
    url,
    options.token ? { headers: { authorization: `Bearer ${options.token}` } } : undefined,
  );
  const outputListeners: Array<(data: Uint8Array) => void> = [];
  const errorListeners: Array<(message: string) => void> = [];
  let exitCode: number | undefined;
  let settle: (code: number | undefined) => void = () => {};
  const exited = new Promise<number | undefined>((resolve) => {
    settle = resolve;
  });
  const send = (frame: Record<string, unknown>) => {
    if (ws.readyState === 1) ws.send(JSON.stringify(frame));
  };

  return new Promise<PtySession>((resolve, reject) => {
    let opened: PtySession | undefined;
    ws.addEventListener('open', () => {
      send(options.tag ? { type: 'connect', tag: options.tag } : { type: 'start', ...options.start });
    });
    ws.addEventListener('error', (event) => {
      if (!opened) reject(new PtyError(describeSocketError(event)));
    });
    ws.addEventListener('close', () => {
      if (!opened) reject(new PtyError('the terminal closed before it started'));
      settle(exitCode);
    });
    ws.addEventListener('message', (event) => {
      const frame = parseFrame((event as { data?: unknown }).data);
      if (!frame) return;
      if (frame.type === 'started' && !opened) {
        opened = session(String(frame.tag), Number(frame.pid));
        resolve(opened);
      } else if (frame.type === 'output' && typeof frame.data === 'string') {
        const bytes = fromBase64(frame.data);
        for (const listener of outputListeners) listener(bytes);
      } else if (frame.type === 'exit') {
        exitCode = typeof frame.exit_code === 'number' ? frame.exit_code : undefined;
        settle(exitCode);
      } else if (frame.type === 'error') {
        const message = String(frame.data ?? 'the terminal reported an error');
        if (!opened || frame.fatal === true) {
          if (!opened) reject(new PtyError(message));
          ws.close();
        }
        for (const listener of errorListeners) listener(message);
      }
    });

    function session(tag: string, pid: number): PtySession {
      return {
        tag,
        pid,
        write(data) {
          send({
            type: 'input',
            data: toBase64(typeof data === 'string' ? new TextEncoder().encode(data) : data),
          });
        },
        resize(cols, rows) {
          send({ type: 'resize', cols, rows });
        },
        kill() {
          send({ type: 'kill' });
        },
        close() {
          ws.close();
        },
        onOutput(listener) {
          outputListeners.push(listener);
        },
        onError(listener) {
          errorListeners.push(listener);
        },
        exited,
      };
    }
  });
}

function parseFrame(data: unknown): Record<string, unknown> | undefined {
  const text =
    typeof data === 'string' ? data : data instanceof Uint8Array ? new TextDecoder().decode(data) : undefined;
  if (text === undefined) return undefined;
  try {
    const frame = JSON.parse(text) as unknown;
    return frame && typeof frame === 'object' ? (frame as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function describeSocketError(event: unknown): string {
  const message = (event as { message?: unknown; error?: { message?: unknown } })?.message;
  return typeof message === 'string' && message ? message : 'the terminal could not be opened';
}

/** Base64 with btoa/atob, which both browsers and Node ≥ 16 have. */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

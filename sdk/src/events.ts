import { type ClientOptions, PaddockError } from './index.ts';

// Following an event log over Server-Sent Events with fetch (Node ≥ 20 and
// browsers alike; EventSource cannot send a bearer token). The server numbers
// each event (`id: <seq>`) and resumes after `Last-Event-ID`, so a dropped
// connection is picked up where the last whole event left it: nothing is
// missed and nothing is seen twice. The log ends with `event: end`.

/** One event of a task's or a workspace's log, as the stream's `data:` carries it. */
export interface LogEvent {
  seq: number;
  type: string;
  payload: Record<string, unknown>;
  created_at: string;
  task_id?: string | null;
  [field: string]: unknown;
}

export interface FollowOptions extends ClientOptions {
  /** Start after this seq (default 0: the whole log from its first event). */
  afterSeq?: number;
  /** Stops following: the iteration ends without an error. */
  signal?: AbortSignal;
  /** The wait before reconnecting after a dropped connection (default: the server's `retry:`, else 1000 ms). */
  reconnectDelayMs?: number;
  /** Connection attempts in a row that may fail before the iteration throws (default 10). */
  maxReconnects?: number;
}

/** Every event of a task's log after `afterSeq`, then live ones, until the task has ended. */
export function followTaskEvents(options: FollowOptions, taskId: string): AsyncGenerator<LogEvent> {
  return followLog(options, `/v1/tasks/${encodeURIComponent(taskId)}/events`);
}

/** Every event of a workspace's log after `afterSeq`, then live ones, until the workspace has ended. */
export function followWorkspaceEvents(options: FollowOptions, workspaceId: string): AsyncGenerator<LogEvent> {
  return followLog(options, `/v1/workspaces/${encodeURIComponent(workspaceId)}/events`);
}

async function* followLog(options: FollowOptions, path: string): AsyncGenerator<LogEvent> {
  const doFetch = options.fetch ?? fetch;
  const url = `${options.baseUrl.replace(/\/+$/, '')}${path}`;
  let lastSeq = options.afterSeq ?? 0;
  let delayMs = options.reconnectDelayMs ?? 1000;
  let failures = 0;
  const maxFailures = options.maxReconnects ?? 10;
  const signal = options.signal;

  while (!signal?.aborted) {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (lastSeq > 0) headers['last-event-id'] = String(lastSeq);
    let response: Response | undefined;
    try {
      response = await doFetch(url, { headers, ...(signal ? { signal } : {}), credentials: 'same-origin' });
    } catch (err) {
      if (signal?.aborted) return;
      if (++failures > maxFailures) throw err;
    }
    if (response && !response.ok) {
      const body = await response.json().catch(() => undefined);
      // A 4xx will not change by asking again (not found, no access); a 5xx or 503 not_ready might.
      if (response.status < 500 || ++failures > maxFailures) throw new PaddockError(response.status, body);
    } else if (response?.body) {
      try {
        for await (const message of readSse(response.body)) {
          if (message.retryMs !== undefined && options.reconnectDelayMs === undefined)
            delayMs = message.retryMs;
          if (message.event === 'end') return;
          if (message.data === undefined) continue;
          const event = JSON.parse(message.data) as LogEvent;
          // The server resumes after Last-Event-ID; this only guards against a proxy replaying.
          if (event.seq <= lastSeq) continue;
          lastSeq = event.seq;
          failures = 0;
          yield event;
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (++failures > maxFailures) throw err;
      }
      // The stream ended (or broke) before `end`: reconnect after the last whole event.
    }
    if (signal?.aborted) return;
    await sleep(delayMs, signal);
  }
}

export interface SseMessage {
  event: string;
  data: string | undefined;
  id: string | undefined;
  retryMs: number | undefined;
}

/**
 * Server-Sent Events (the WHATWG rules): lines end with CRLF, LF or CR; `data:` lines join
 * with `\n`; comments (`:`) are skipped; a message is dispatched at a blank line, so a
 * message cut off by a dropped connection is never yielded.
 */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  let retryMs: number | undefined;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const end = lineEnd(buffer);
        if (end === undefined) break;
        const line = buffer.slice(0, end.at);
        buffer = buffer.slice(end.at + end.length);
        if (line === '') {
          if (data.length > 0 || retryMs !== undefined || event !== '') {
            yield { event: event || 'message', data: data.length ? data.join('\n') : undefined, id, retryMs };
          }
          event = '';
          data = [];
          retryMs = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id' && !value.includes('\0')) id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) retryMs = Number(value);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** Where the buffer's first complete line ends; a CR last in the buffer waits for what follows it. */
function lineEnd(buffer: string): { at: number; length: number } | undefined {
  for (let i = 0; i < buffer.length; i++) {
    const c = buffer.charCodeAt(i);
    if (c === 10) return { at: i, length: 1 };
    if (c === 13) {
      if (i + 1 === buffer.length) return undefined;
      return { at: i, length: buffer.charCodeAt(i + 1) === 10 ? 2 : 1 };
    }
  }
  return undefined;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

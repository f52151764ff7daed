import { WebSocket } from 'ws';
import type { Json } from './factories.ts';

/** A WebSocket to `url`, with every frame it receives (parsed) and a way to wait for one. */
export async function connectWs(url: string, token: string) {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
  const frames: Json[] = [];
  const waiters: Array<{ match: (f: Json) => boolean; resolve: (f: Json) => void }> = [];
  let closed = false;
  ws.on('message', (raw) => {
    const f = JSON.parse(String(raw)) as Json;
    frames.push(f);
    for (const w of [...waiters])
      if (w.match(f)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(f);
      }
  });
  ws.on('close', () => {
    closed = true;
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    frames,
    get closed() {
      return closed;
    },
    send: (f: Json) => ws.send(JSON.stringify(f)),
    next(match: (f: Json) => boolean, timeoutMs = 5000): Promise<Json> {
      const seen = frames.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching frame; got ${JSON.stringify(frames)}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (f) => {
            clearTimeout(timer);
            resolve(f);
          },
        });
      });
    },
    closedNow: () => new Promise<void>((resolve) => (closed ? resolve() : ws.once('close', () => resolve()))),
  };
}

export const output = (frames: Json[], type = 'stdout') =>
  frames
    .filter((f) => f.type === type)
    .map((f) => f.data)
    .join('');
export const ptyText = (frames: Json[]) =>
  frames
    .filter((f) => f.type === 'output')
    .map((f) => Buffer.from(String(f.data), 'base64').toString('utf8'))
    .join('');

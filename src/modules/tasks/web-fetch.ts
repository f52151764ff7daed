import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { convert, type HtmlToTextOptions } from 'html-to-text';
import { Agent, request } from 'undici';
import type { Timers } from '../../core/context.ts';
import { type OutboundGuard, outboundRefusal } from '../../core/outbound-guard.ts';
import { VERSION } from '../../version.ts';
import { hostAllowed } from '../sandboxes/host-side/egress.ts';

// web_fetch: a page fetched by the runner, in Paddock's own process, for a
// task's model. Paddock's network position is not the capsule's, so the
// fetch is held to at least the capsule's rules and more: the host must be on
// the task's egress allow-list (the capsule egress proxy's own matcher), and
// every connection passes the outbound-address guard with no exceptions (no
// loopback, private, link-local, metadata or this machine's addresses,
// whatever the name resolves to; the socket connects to the address that was
// checked). Redirects are followed here, one hop at a time, each checked
// again. What comes back is text: HTML reduced to its readable text
// (html-to-text), text and JSON as they are, anything else refused.

export interface WebFetchLimits {
  /** Bytes read of a body (after decompression) before the page is refused as too large. */
  maxBytes: number;
  /** The whole fetch, redirects included. */
  timeoutMs: number;
  connectTimeoutMs: number;
  maxRedirects: number;
}

export const WEB_FETCH_LIMITS: WebFetchLimits = {
  maxBytes: 5 * 1024 * 1024,
  timeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  maxRedirects: 5,
};

export const WEB_FETCH_USER_AGENT = `Paddock/${VERSION} (web_fetch tool of an AI agent task)`;

export type WebPage =
  | { ok: true; url: string; title: string | undefined; contentType: string; text: string }
  | { ok: false; message: string };

/** A refusal or failure the model is told about as it is. */
class Refused extends Error {}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const TEXT_TYPES =
  /^(text\/[a-z0-9.+-]+|application\/([a-z0-9.-]+\+)?(json|xml)|application\/(javascript|x-ndjson))$/;
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/** The allow-list as the model is shown it: its first `max` entries. */
export function hostList(allow: readonly string[], max = 20): string {
  if (allow.length === 0) return 'empty';
  const shown = allow.slice(0, max).join(', ');
  return allow.length > max ? `${shown} and ${allow.length - max} more` : shown;
}

/** Why the model may not fetch `url` for a task that may reach `allow`, or undefined when it may try. */
export function urlRefusal(url: URL, allow: readonly string[]): string | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `web_fetch reads http and https URLs only, not ${url.protocol}`;
  if (url.username !== '' || url.password !== '')
    return 'web_fetch does not send credentials: remove the user:password@ part of the URL';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!hostAllowed(allow, host))
    return `${host} is not on this task's network allow-list (${hostList(allow)}); web_fetch reaches only those hosts`;
  return undefined;
}

/** One connection pool per task attempt: nothing (a keep-alive socket) is shared between tasks. */
export class WebFetcher {
  private readonly agent: Agent;

  constructor(
    guard: OutboundGuard,
    private readonly timers: Timers,
    private readonly limits: WebFetchLimits = WEB_FETCH_LIMITS,
  ) {
    this.agent = new Agent({
      connect: guard.undiciConnector({ timeoutMs: limits.connectTimeoutMs }),
      keepAliveTimeout: 10_000,
    });
  }

  /** Drops every connection at once: a server still sending must not hold up the end of the attempt. */
  close(): Promise<void> {
    return this.agent.destroy();
  }

  /** GET `raw` and what it says as text; `timeoutMs` lowers the limit's (the task's time left). */
  async fetch(
    raw: string,
    allow: readonly string[],
    signal: AbortSignal,
    timeoutMs?: number,
  ): Promise<WebPage> {
    const ms = Math.max(1, Math.min(this.limits.timeoutMs, timeoutMs ?? Number.POSITIVE_INFINITY));
    const controller = new AbortController();
    const timedOut = new Refused(`the fetch took longer than ${Math.round(ms / 100) / 10} s and was stopped`);
    const timer = this.timers.after(ms, () => controller.abort(timedOut));
    const onAbort = () => controller.abort(new Refused('the task ended while the page was being fetched'));
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    try {
      return await this.follow(raw, allow, controller.signal);
    } catch (err) {
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      return { ok: false, message: this.failure(reason) };
    } finally {
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
    }
  }

  private failure(err: unknown): string {
    if (err instanceof Refused) return err.message;
    const refusal = outboundRefusal(err);
    // Not the address the name resolved to (internal DNS): the server's log has it.
    if (refusal) return `${refusal.summary}: web_fetch reaches only public addresses`;
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e.code ?? e.cause?.code;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'the host name does not resolve';
    if (code === 'ECONNREFUSED') return 'the server refused the connection';
    if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connecting to the server timed out';
    if (code?.startsWith('ERR_TLS') || code?.includes('CERT'))
      return `the server's TLS certificate was not accepted (${code})`;
    return `the fetch failed (${code ?? e.message})`;
  }

  private async follow(raw: string, allow: readonly string[], signal: AbortSignal): Promise<WebPage> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new Refused(
        `${JSON.stringify(raw.slice(0, 200))} is not an absolute URL (send e.g. https://example.com/page)`,
      );
    }
    for (let hop = 0; ; hop++) {
      const why = urlRefusal(url, allow);
      if (why) throw new Refused(hop === 0 ? why : `the page redirected to ${url.href}: ${why}`);
      url.hash = '';
      const res = await request(url, {
        method: 'GET',
        dispatcher: this.agent,
        signal,
        headers: {
          'user-agent': WEB_FETCH_USER_AGENT,
          accept: 'text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.9,*/*;q=0.1',
          'accept-encoding': 'gzip, deflate, br',
        },
      });
      if (REDIRECTS.has(res.statusCode)) {
        discard(res.body);
        const location = res.headers.location;
        if (typeof location !== 'string' || location === '')
          throw new Refused(`${url.href} answered HTTP ${res.statusCode} with no Location to follow`);
        if (hop >= this.limits.maxRedirects)
          throw new Refused(`${url.href} redirected more than ${this.limits.maxRedirects} times; stopped`);
        try {
          url = new URL(location, url);
        } catch {
          throw new Refused(
            `${url.href} redirected to ${JSON.stringify(location.slice(0, 200))}, which is not a URL`,
          );
        }
        continue;
      }
      return await this.page(url, res, signal);
    }
  }

  private async page(
    url: URL,
    res: Awaited<ReturnType<typeof request>>,
    signal: AbortSignal,
  ): Promise<WebPage> {
    const header = (name: string) => {
      const v = res.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    };
    const [mime = '', ...params] = (header('content-type') ?? '').split(';').map((p) => p.trim());
    const type = mime.toLowerCase();
    const textual = type === '' || HTML_TYPES.has(type) || TEXT_TYPES.test(type);
    const failedStatus = res.statusCode >= 400 ? `${url.href} answered HTTP ${res.statusCode}` : undefined;
    if (!textual) {
      discard(res.body);
      throw new Refused(
        failedStatus ?? `${url.href} is ${type}, not text: web_fetch reads HTML, text and JSON only`,
      );
    }
    const length = Number(header('content-length'));
    if (Number.isFinite(length) && length > this.limits.maxBytes) {
      discard(res.body);
      throw new Refused(failedStatus ?? this.tooLarge(url, length));
    }
    const data = await this.read(url, res.body, header('content-encoding'));
    const charset = params
      .find((p) => /^charset=/i.test(p))
      ?.slice(8)
      .replace(/"/g, '');
    const body = decode(data, charset);
    if (type === '' && body.includes('\0'))
      throw new Refused(failedStatus ?? `${url.href} sent no Content-Type and is not text`);
    const html = HTML_TYPES.has(type);
    const text = html ? await readableText(body, url, signal) : body;
    if (failedStatus) throw new Refused(`${failedStatus}:\n${text.trim().slice(0, 1000)}`);
    return {
      ok: true,
      url: url.href,
      title: html ? titleOf(body) : undefined,
      contentType: type || 'unknown',
      text,
    };
  }

  private tooLarge(url: URL, bytes?: number): string {
    const mib = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10} MiB`;
    return `${url.href} is larger than web_fetch reads (${bytes ? `${mib(bytes)}; ` : ''}at most ${mib(this.limits.maxBytes)})`;
  }

  /** The body, decompressed, refused once it passes maxBytes. */
  private async read(url: URL, body: Readable, encoding: string | undefined): Promise<Buffer> {
    const coding = (encoding ?? 'identity').trim().toLowerCase();
    const decoder =
      coding === 'gzip' || coding === 'x-gzip'
        ? zlib.createGunzip()
        : coding === 'deflate'
          ? zlib.createInflate()
          : coding === 'br'
            ? zlib.createBrotliDecompress()
            : undefined;
    if (!decoder && coding !== 'identity') {
      discard(body);
      throw new Refused(`${url.href} came in an encoding web_fetch does not read (${coding})`);
    }
    const stream: Readable = decoder ? body.pipe(decoder) : body;
    if (decoder) body.once('error', (err) => decoder.destroy(err));
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of stream) {
        size += (chunk as Buffer).length;
        if (size > this.limits.maxBytes) throw new Refused(this.tooLarge(url));
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      decoder?.on('error', () => undefined);
      discard(body);
      decoder?.destroy();
      if (err instanceof Refused) throw err;
      if (decoder && (err as NodeJS.ErrnoException).code?.startsWith('Z_'))
        throw new Refused(`${url.href} sent a body that does not decompress as ${coding}`);
      throw err;
    }
    return Buffer.concat(chunks);
  }
}

/** Stops reading a body (its connection closes); the abort it reports is expected. */
function discard(body: Readable): void {
  body.on('error', () => undefined);
  body.destroy();
}

function decode(data: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder(charset || 'utf-8').decode(data);
  } catch {
    // An unknown charset label: read as UTF-8 (replacement characters where it is not).
    return new TextDecoder('utf-8').decode(data);
  }
}

/** The page's <title>, as text. */
function titleOf(html: string): string | undefined {
  const m = /<title[^>]*>([\s\S]{0,2000}?)<\/title>/i.exec(html.slice(0, 200_000));
  if (!m) return undefined;
  const title = convert(m[1]!, { wordwrap: false }).replace(/\s+/g, ' ').trim();
  return title === '' ? undefined : title;
}

const SKIPPED = [
  'nav',
  'footer',
  'aside',
  'form',
  'button',
  'img',
  'svg',
  'iframe',
  'noscript',
  'script',
  'style',
  'template',
];

/** html-to-text's settings for a page at `url`. */
function textOptions(url: URL): HtmlToTextOptions {
  return {
    wordwrap: false,
    // Deeper than this is no page a person reads; it would only cost stack.
    limits: { maxDepth: 200, maxInputLength: WEB_FETCH_LIMITS.maxBytes * 2 },
    baseElements: { selectors: ['main', 'article', 'body'], returnDomByDefault: true },
    selectors: [
      ...SKIPPED.map((selector) => ({ selector, format: 'skip' })),
      ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({
        selector,
        options: { uppercase: false },
      })),
      { selector: 'table', format: 'dataTable', options: { uppercaseHeaderCells: false } },
      { selector: 'a', options: { baseUrl: url.origin, hideLinkHrefIfSameAsText: true, ignoreHref: false } },
    ],
  };
}

/** Memory the HTML worker may use: a 5 MiB page's DOM fits several times over. */
const WORKER_HEAP_MB = 256;

/**
 * The readable text of an HTML page: its <main> (or <article>, or <body>)
 * without navigation, footers, forms and images; headings, lists and tables
 * kept as text; links as `text [url]`. Converted in a worker thread (a 5 MiB
 * page takes a second or more of CPU), stopped when `signal` aborts.
 */
export function readableText(html: string, url: URL, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./html-text-worker.mjs', import.meta.url), {
      workerData: { html, options: textOptions(url) },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    const stop = () => void worker.terminate();
    signal.addEventListener('abort', stop, { once: true });
    let answered = false;
    worker.once('message', (text: string) => {
      answered = true;
      resolve(text.replace(/\n{3,}/g, '\n\n').trim());
    });
    worker.once('error', (err) => {
      answered = true;
      reject(new Refused(`${url.href} could not be read as HTML (${err.message})`));
    });
    worker.once('exit', () => {
      signal.removeEventListener('abort', stop);
      // Terminated by the signal: the fetch's catch reports the signal's reason.
      if (!answered) reject(new Refused(`${url.href} could not be read as HTML`));
    });
  });
}

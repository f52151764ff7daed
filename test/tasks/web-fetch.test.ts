import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualTimers, systemTimers } from '../../src/core/context.ts';
import { AllowList, OutboundGuard } from '../../src/core/outbound-guard.ts';
import type { LoopTool, ToolSourceContext } from '../../src/modules/tasks/loop-tools.ts';
import { OUTPUT_LIMIT_CHARS } from '../../src/modules/tasks/tool-definitions.ts';
import type { ToolOutcome } from '../../src/modules/tasks/tools.ts';
import { WEB_FETCH_LIMITS, WEB_FETCH_USER_AGENT } from '../../src/modules/tasks/web-fetch.ts';
import { WebFetchSource } from '../../src/modules/tasks/web-fetch-tool.ts';
import { scriptedDns } from '../support/dns.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// One file over ~400 lines: one page server, one scripted DNS and one task
// fixture serve every case; split, each part would start its own.
//
// web_fetch: the runner fetches a page for the model, from Paddock's own
// process. A page server listens on loopback; the guard lets the name
// pages.test reach it only through the app's test-only exception (nothing a
// caller sends can make one), so every other way to loopback, a private
// network or the metadata address stays refused, and the server's hit count
// shows that nothing refused ever reached it.

const MIB = 1024 * 1024;
let server: http.Server;
let port: number;
const hits: string[] = [];
let hangingRequest: (() => void) | undefined;

const ARTICLE = `<!doctype html><html><head><title>Tides &amp; moons</title>
<style>body { color: red }</style><script>document.write('tracking')</script></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<main><h1>Why the sea rises</h1><p>The moon pulls the water; see <a href="/physics">the physics</a>.</p>
<ul><li>spring tides</li><li>neap tides</li></ul>
<table><tr><th>port</th><th>range</th></tr><tr><td>Brest</td><td>7 m</td></tr></table>
<img src="chart.png" alt="a chart"></main>
<footer>Copyright the sea</footer></body></html>`;

/** Answers a request (what it answers is not used: each case returns to end the switch). */
function route(req: http.IncomingMessage, res: http.ServerResponse): unknown {
  const url = new URL(req.url ?? '/', 'http://pages.test');
  hits.push(`${url.pathname} ${req.headers['user-agent']}`);
  const text = (type: string, body: string | Buffer, status = 200) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
  const redirect = (to: string) => {
    res.writeHead(302, { location: to });
    res.end();
  };
  switch (url.pathname) {
    case '/article':
      return text('text/html; charset=utf-8', ARTICLE);
    case '/deep':
      return text('text/html', `<p>surface</p>${'<div>'.repeat(2_000)}abyss${'</div>'.repeat(2_000)}`);
    case '/plain':
      return text('text/plain', 'line one\nline two\n');
    case '/json':
      return text('application/json', '{"answer": 42}');
    case '/big':
      return text('text/plain', `${'x'.repeat(99_990)}THE-END`);
    case '/gzip':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      return res.end(zlib.gzipSync('squeezed text'));
    case '/huge-declared':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(6 * MIB) });
      return res.end('a'.repeat(6 * MIB));
    case '/huge-chunked':
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < 6; i++) res.write('b'.repeat(MIB));
      return res.end();
    case '/image':
      return text('image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    case '/missing':
      return text('text/plain', 'no such page here', 404);
    case '/moved':
      return redirect('/plain');
    case '/to-private':
      return redirect('http://10.0.0.1/admin');
    case '/to-metadata':
      return redirect('http://metadata.test/latest/meta-data/');
    case '/to-loopback':
      return redirect(`http://loopback.test:${port}/plain`);
    case '/to-elsewhere':
      return redirect('https://elsewhere.test/');
    case '/to-file':
      return redirect('file:///etc/passwd');
    case '/loop':
      return redirect(`/loop?n=${Number(url.searchParams.get('n') ?? 0) + 1}`);
    case '/hang':
      hangingRequest?.();
      return; // never answers
    default:
      return text('text/plain', 'not found', 404);
  }
}

const dns = scriptedDns({
  'pages.test': [['127.0.0.1']],
  'loopback.test': [['127.0.0.1']],
  'metadata.test': [['169.254.169.254']],
  'intranet.test': [['10.1.2.3', 'fd00::1']],
});

/** The allow-list the tasks of these tests may reach (their capsule's and so web_fetch's). */
const ALLOW = [
  'pages.test',
  'loopback.test',
  'metadata.test',
  'intranet.test',
  '127.0.0.1',
  '10.0.0.1',
  '169.254.169.254',
  '::1',
  'localhost',
];

beforeAll(async () => {
  server = http.createServer(route);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** The tool as a task whose agent uses web_fetch and may reach `allow` gets it. */
async function openTool(
  allow: string[] = ALLOW,
  timers = systemTimers,
): Promise<{ tool: LoopTool; promptLines: string[]; close(): Promise<void> }> {
  const guard = new OutboundGuard({ allow: AllowList.parse(['pages.test']).list, resolve: dns.resolve });
  const source = new WebFetchSource(guard, timers);
  const set = await source.open({
    agent: { definition: { tools: ['bash', 'web_fetch'] } },
    networkAllow: allow,
  } as unknown as ToolSourceContext);
  if (!set) throw new Error('web_fetch was not offered');
  return { tool: set.tools[0]!, promptLines: set.promptLines ?? [], close: () => set.close!() };
}

let tool: LoopTool;
let closeTool: () => Promise<void>;
beforeAll(async () => {
  ({ tool, close: closeTool } = await openTool());
});
afterAll(() => closeTool());

function fetchPage(args: Record<string, unknown> | string, signal = new AbortController().signal) {
  return tool.run(typeof args === 'string' ? args : JSON.stringify(args), {
    turn: 1,
    callId: 'call_1',
    signal,
    secondsLeft: () => 600,
  });
}

/** Fetches `url`, expects a refusal, and checks that the page server saw no request. */
async function refused(url: string): Promise<ToolOutcome> {
  const before = hits.length;
  const r = await fetchPage({ url });
  expect(r.ok, r.output).toBe(false);
  expect(r.output).toMatch(/^web_fetch failed: /);
  expect(hits.length, 'the page server was reached').toBe(before);
  return r;
}

const pages = () => `http://pages.test:${port}`;

describe('what web_fetch refuses', () => {
  it('refuses loopback, private, link-local (metadata) and IPv6 loopback addresses, on the allow-list or not', async () => {
    expect((await refused(`http://127.0.0.1:${port}/plain`)).output).toContain(
      '127.0.0.1 is a loopback address: web_fetch reaches only public addresses',
    );
    expect((await refused('http://10.0.0.1/')).output).toContain('10.0.0.1 is a private address');
    expect((await refused('http://169.254.169.254/latest/meta-data/')).output).toContain(
      '169.254.169.254 is a link-local address',
    );
    expect((await refused(`http://[::1]:${port}/plain`)).output).toContain('is a loopback address');
    expect((await refused(`http://localhost:${port}/plain`)).output).toContain(
      'localhost resolves to a loopback address',
    );
  });

  it('refuses a name that resolves to loopback, private or metadata addresses', async () => {
    expect((await refused(`http://loopback.test:${port}/plain`)).output).toContain(
      'loopback.test resolves to a loopback address',
    );
    expect((await refused('http://metadata.test/latest/meta-data/')).output).toContain(
      'metadata.test resolves to a link-local address',
    );
    const intranet = (await refused('https://intranet.test/')).output;
    expect(intranet).toContain('intranet.test resolves to a private address');
    // Not the address it resolved to: the agent (and the tenant reading its steps) never learns internal DNS.
    expect(intranet).not.toContain('10.1.2.3');
  });

  it('refuses a host that is not on the task’s network allow-list, and says which hosts are', async () => {
    const r = await refused('https://example.com/');
    expect(r.output).toBe(
      `web_fetch failed: example.com is not on this task's network allow-list (${ALLOW.join(', ')}); web_fetch reaches only those hosts`,
    );
    // A look-alike of an allowed name is another name.
    expect((await refused(`http://pages.test.evil.example:${port}/plain`)).output).toContain('is not on');
  });

  it('refuses other schemes and credentials in the URL', async () => {
    expect((await refused('file:///etc/passwd')).output).toContain('http and https URLs only, not file:');
    expect((await refused(`ftp://pages.test:${port}/`)).output).toContain('not ftp:');
    expect((await refused(`http://admin:hunter2@pages.test:${port}/plain`)).output).toContain(
      'does not send credentials',
    );
    expect((await refused('not a url')).output).toContain('is not an absolute URL');
  });

  it('checks every redirect again: a public page cannot lead it to a private address or another host', async () => {
    const hop = async (path: string) => {
      const before = hits.length;
      const r = await fetchPage({ url: `${pages()}${path}` });
      expect(r.ok, r.output).toBe(false);
      // The first hop was fetched; where it pointed was not.
      expect(hits.slice(before).map((h) => h.split(' ')[0])).toEqual([path]);
      return r.output;
    };
    expect(await hop('/to-private')).toContain('10.0.0.1 is a private address');
    expect(await hop('/to-metadata')).toContain('metadata.test resolves to a link-local address');
    expect(await hop('/to-loopback')).toContain('loopback.test resolves to a loopback address');
    expect(await hop('/to-elsewhere')).toContain(
      "the page redirected to https://elsewhere.test/: elsewhere.test is not on this task's network allow-list",
    );
    expect(await hop('/to-file')).toContain('http and https URLs only, not file:');
  });

  it('follows at most 5 redirects', async () => {
    const before = hits.length;
    const r = await fetchPage({ url: `${pages()}/loop` });
    expect(r.ok).toBe(false);
    expect(r.output).toContain(`redirected more than ${WEB_FETCH_LIMITS.maxRedirects} times`);
    expect(hits.length - before).toBe(WEB_FETCH_LIMITS.maxRedirects + 1);
  });

  it('refuses what is not text, what is too large, and HTTP errors, saying which', async () => {
    expect((await fetchPage({ url: `${pages()}/image` })).output).toBe(
      `web_fetch failed: ${pages()}/image is image/png, not text: web_fetch reads HTML, text and JSON only`,
    );
    for (const path of ['/huge-declared', '/huge-chunked']) {
      const r = await fetchPage({ url: `${pages()}${path}` });
      expect(r.ok).toBe(false);
      expect(r.output).toContain(`${pages()}${path} is larger than web_fetch reads`);
      expect(r.output).toContain('at most 5 MiB');
    }
    const missing = await fetchPage({ url: `${pages()}/missing` });
    expect(missing).toEqual({
      ok: false,
      output: `web_fetch failed: ${pages()}/missing answered HTTP 404:\nno such page here`,
    });
  });

  it('tells the model how to fix bad arguments (a malformed call)', async () => {
    expect(await fetchPage('{"url":')).toMatchObject({ ok: false, malformed: true });
    const r = await fetchPage({ url: `${pages()}/plain`, method: 'POST' });
    expect(r).toMatchObject({ ok: false, malformed: true });
    expect(r.output).toContain('web_fetch takes no method');
    expect(await fetchPage({ url: `${pages()}/plain`, max_chars: 10 })).toMatchObject({
      ok: false,
      malformed: true,
    });
  });

  it('stops at its timeout (on the injected timers) and says so', async () => {
    const timers = new ManualTimers();
    const slow = await openTool(ALLOW, timers);
    try {
      const arrived = new Promise<void>((resolve) => {
        hangingRequest = resolve;
      });
      const pending = slow.tool.run(JSON.stringify({ url: `${pages()}/hang` }), {
        turn: 1,
        callId: 'c',
        signal: new AbortController().signal,
        secondsLeft: () => 600,
      });
      await arrived;
      await timers.advance(WEB_FETCH_LIMITS.timeoutMs);
      expect(await pending).toEqual({
        ok: false,
        output: 'web_fetch failed: the fetch took longer than 30 s and was stopped',
      });
    } finally {
      await slow.close();
    }
  });
});

describe('what web_fetch reads', () => {
  it('reduces HTML to its readable text, with the title and final URL first', async () => {
    const r = await fetchPage({ url: `${pages()}/article#top` });
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toBe(
      [
        'Title: Tides & moons',
        `URL: ${pages()}/article`,
        'Content-Type: text/html',
        '',
        'Why the sea rises',
        '',
        `The moon pulls the water; see the physics [${pages()}/physics].`,
        '',
        ' * spring tides',
        ' * neap tides',
        '',
        'port    range',
        'Brest   7 m',
      ].join('\n'),
    );
    // Scripts, styles, navigation, images and footers are not text a reader sees.
    for (const gone of ['tracking', 'color: red', 'About', 'chart', 'Copyright'])
      expect(r.output).not.toContain(gone);
    expect(hits.at(-1)).toBe(`/article ${WEB_FETCH_USER_AGENT}`);
  });

  it('reads a page nested too deep for a reader without failing (what is deeper is left out, marked …)', async () => {
    const r = await fetchPage({ url: `${pages()}/deep` });
    expect(r).toEqual({
      ok: true,
      output: `URL: ${pages()}/deep\nContent-Type: text/html\n\nsurface\n\n...`,
    });
  });

  it('reads plain text and JSON as they are, compressed or not, and follows a redirect to the final URL', async () => {
    expect(await fetchPage({ url: `${pages()}/plain` })).toEqual({
      ok: true,
      output: `URL: ${pages()}/plain\nContent-Type: text/plain\n\nline one\nline two\n`,
    });
    expect((await fetchPage({ url: `${pages()}/json` })).output).toBe(
      `URL: ${pages()}/json\nContent-Type: application/json\n\n{"answer": 42}`,
    );
    expect((await fetchPage({ url: `${pages()}/gzip` })).output).toContain('\n\nsqueezed text');
    expect((await fetchPage({ url: `${pages()}/moved` })).output).toBe(
      `URL: ${pages()}/plain\nContent-Type: text/plain\n\nline one\nline two\n`,
    );
  });

  it('cuts a large page like other tools, at max_chars when the model asks for less', async () => {
    const r = await fetchPage({ url: `${pages()}/big` });
    expect(r.ok).toBe(true);
    const head = `URL: ${pages()}/big\nContent-Type: text/plain\n\n`;
    const note = `\n[cut here: showing the first ${OUTPUT_LIMIT_CHARS} of ${head.length + 99_997} characters]`;
    // (Compared as booleans: a failure would print the whole page.)
    expect(
      r.output === `${head}${'x'.repeat(OUTPUT_LIMIT_CHARS - head.length)}${note}`,
      r.output.slice(-200),
    ).toBe(true);
    expect(r.full === `${head}${'x'.repeat(99_990)}THE-END`).toBe(true);
    const less = await fetchPage({ url: `${pages()}/big`, max_chars: 1000 });
    expect(less.output).toMatch(
      /\n\[cut here: showing the first 1000 of \d+ characters; max_chars up to 20000 shows more\]$/,
    );
  });

  it('is offered only to an agent that names it, with a network to reach', async () => {
    const guard = new OutboundGuard();
    const source = new WebFetchSource(guard, systemTimers);
    const open = (tools: string[], networkAllow: string[]) =>
      source.open({ agent: { definition: { tools } }, networkAllow } as unknown as ToolSourceContext);
    expect(await open(['bash'], ['example.com'])).toBeUndefined();
    expect(await open(['bash', 'web_fetch'], [])).toBeUndefined();
    const set = await open(['web_fetch'], ['example.com', '*.python.org']);
    expect(set?.tools.map((t) => t.name)).toEqual(['web_fetch']);
    expect(set?.promptLines).toEqual([
      'web_fetch reads web pages on these hosts: example.com, *.python.org.',
    ]);
    await set?.close?.();
  });
});

describe('web_fetch in a task', () => {
  let f: TaskFixture;
  beforeAll(async () => {
    f = await startTasks({ resolveHost: dns.resolve, webFetch: { allowForTests: ['pages.test'] } });
  }, 120_000);
  afterAll(() => f?.close());

  it('the model reads a page and is refused a private one; the results are in the event log', async () => {
    const agent = await f.agent({ agent: { egress: ['pages.test', '10.0.0.1', '127.0.0.1'] } });
    const pageHits = hits.length;
    f.script([
      { tool: 'web_fetch', args: { url: `${pages()}/article` } },
      { tool: 'web_fetch', args: { url: 'http://10.0.0.1/' } },
      // The platform admin let provider connections reach 127.0.0.1 (the mock model): not pages.
      { tool: 'web_fetch', args: { url: `http://127.0.0.1:${port}/plain` } },
      { tool: 'web_fetch', args: { url: 'https://example.com/' } },
      { text: 'The sea rises because the moon pulls it.' },
    ]);
    const before = f.mock.requests.length;
    const task = await f.submit({ agent_id: agent.id, prompt: 'Why does the sea rise?' });
    const { task: ended } = await f.finished(task.id);
    expect(ended.status, JSON.stringify(ended.error)).toBe('completed');
    expect(ended.result).toBe('The sea rises because the moon pulls it.');

    const calls = f.mock.requests.slice(before).filter((r) => r.path.endsWith('/chat/completions'));
    const offered = (calls[0]!.body as Json).tools.map((t: Json) => t.function.name);
    expect(offered).toContain('web_fetch');
    const toolMessages = (calls.at(-1)!.body as Json).messages.filter((m: Json) => m.role === 'tool');
    expect(toolMessages.map((m: Json) => m.content.split('\n')[0])).toEqual([
      'Title: Tides & moons',
      'web_fetch failed: 10.0.0.1 is a private address: web_fetch reaches only public addresses',
      'web_fetch failed: 127.0.0.1 is a loopback address: web_fetch reaches only public addresses',
      "web_fetch failed: example.com is not on this task's network allow-list (pages.test, 10.0.0.1, 127.0.0.1); web_fetch reaches only those hosts",
    ]);
    expect(hits.slice(pageHits).map((h) => h.split(' ')[0])).toEqual(['/article']);
    expect(toolMessages[0].content).toContain('The moon pulls the water');

    const results = (await f.events(task.id)).filter((e: Json) => e.type === 'tool_result');
    expect(results.map((e: Json) => [e.payload.name, e.payload.ok])).toEqual([
      ['web_fetch', true],
      ['web_fetch', false],
      ['web_fetch', false],
      ['web_fetch', false],
    ]);
  });

  it('is not offered to an agent whose task may reach no host, nor to one that does not name it', async () => {
    for (const definition of [{ egress: [] }, { egress: ['pages.test'], tools: ['bash', 'submit_result'] }]) {
      const agent = await f.agent({ agent: definition });
      f.script([{ text: 'done' }]);
      const before = f.mock.requests.length;
      const { task } = await f.finished((await f.submit({ agent_id: agent.id, prompt: 'hi' })).id);
      expect(task.status).toBe('completed');
      const call = f.mock.requests.slice(before).find((r) => r.path.endsWith('/chat/completions'))!;
      expect((call.body as Json).tools.map((t: Json) => t.function.name)).not.toContain('web_fetch');
    }
  });
});

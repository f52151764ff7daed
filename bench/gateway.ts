// Prints the latency Paddock's governed proxy adds on top of the provider: the
// mock LLM upstream and Paddock each in a process of their own, load sent
// straight to the mock (baseline) and through Paddock with governance on
// (budget, rate limits, model rules, runs and steps recorded). In the open loop
// a third target, the floor, is a bare proxy in a process of its own (Fastify
// and undici like Paddock, no governance: bench/floor-proxy.mjs), so the output
// shows what governance costs above the least any such proxy adds.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unusedPortUrl } from '../test/support/mock-llm.ts';
import { type LoadFigures, type OpenLoopFigures, runAutocannon, runOpenLoop, type Target } from './load.ts';
import {
  api,
  type Governed,
  type Json,
  PROVIDER_SECRET,
  positive,
  setUpAgent,
  sleep,
  waitForReady,
} from './paddock.ts';
import { type Child, cpuMs, paddockEnv, rssMb, spawnChild, stopChild } from './processes.ts';

const BIN = path.resolve('bin/paddock.js');
const MOCK_UPSTREAM = path.resolve('bench/mock-upstream.ts');
/** Parse the body, forward it, parse the answer, reply: the floor under Paddock's added latency. */
const FLOOR_PROXY = path.resolve('bench/floor-proxy.mjs');
/** Preloaded into Paddock: GC pauses, event-loop delay and CPU, a line a second (paddock-probe.cjs). */
const PROBE = path.resolve('bench/paddock-probe.cjs');
const DURATION_SEC = positive('BENCH_DURATION_SEC', 10);
const WARMUP_SEC = positive('BENCH_WARMUP_SEC', 3);
const DATABASE_URL = process.env.BENCH_DATABASE_URL || undefined;
/** When set, Paddock runs with --cpu-prof and writes its profile here on exit. */
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR || undefined;
/** Extra Node flags for the Paddock process, space-separated (A/B runs of V8 flags), e.g. --trace-gc. */
const PADDOCK_NODE_FLAGS = (process.env.BENCH_PADDOCK_NODE_FLAGS || '').split(' ').filter((f) => f !== '');
const CONNECTIONS = 50;
const RATES = [500, 1000];
/**
 * 100 rps is below what Paddock on PGlite sustains on a small machine: its overhead without a queue.
 * 1 000 rps is the rate the product's target is set at (TARGET). BENCH_OPEN_LOOP_RATES=1000 runs only it.
 */
const OPEN_LOOP_RATES = rateList('BENCH_OPEN_LOOP_RATES', [100, 500, 1000]);
/** Added latency at 1 000 requests/s with governance on, on the embedded database. */
const TARGET = { ratePerSec: 1000, addedP50Ms: 0.5, addedP99Ms: 3 };
/** Which load generators to run: BENCH_METHODS=autocannon,open (default both). */
const METHODS = new Set((process.env.BENCH_METHODS || 'autocannon,open').split(',').map((m) => m.trim()));
const BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello to the benchmark in one short sentence.' }],
  max_tokens: 64,
});

function rateList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  return raw.split(',').map((r) => {
    const n = Number(r.trim());
    if (!Number.isFinite(n) || n <= 0)
      throw new Error(`${name}=${JSON.stringify(raw)} must list positive rates`);
    return n;
  });
}

interface ProbeLine {
  at: number;
  cpuMs: number;
  delayP99Ms: number;
  delayMaxMs: number;
  gc: Array<[string, number]>;
}

/**
 * What the probe saw in Paddock between `from` and `to` (epoch ms): CPU a
 * second, garbage collection pauses by kind, and how late its event loop ran
 * (a timer's lateness, sampled every 20 ms: stalls, not the median).
 */
function probeSummary(file: string, from: number, to: number): string {
  let lines: ProbeLine[];
  try {
    lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as ProbeLine)
      // Each line covers the second before its time.
      .filter((l) => l.at > from + 1000 && l.at <= to + 1000);
  } catch {
    return 'no probe figures';
  }
  if (lines.length === 0) return 'no probe figures';
  const secs = lines.length;
  const pauses = new Map<string, number[]>();
  for (const l of lines) for (const [kind, ms] of l.gc) pauses.set(kind, [...(pauses.get(kind) ?? []), ms]);
  const gc = [...pauses]
    .map(([kind, ms]) => {
      const total = ms.reduce((a, b) => a + b, 0);
      return `${kind} ${f1(ms.length / secs)}/s, ${f1(total / secs)} ms/s, max ${f1(Math.max(...ms))} ms`;
    })
    .join('; ');
  const cpu = lines.reduce((a, l) => a + l.cpuMs, 0) / secs;
  const delayP99 = lines.map((l) => l.delayP99Ms).sort((a, b) => a - b);
  return (
    `CPU ${f1(cpu)} ms/s; GC: ${gc || 'none'}; event loop late: per-second p99 median ` +
    `${f1(delayP99[Math.floor(secs / 2)]!)} ms, worst ${f1(delayP99[secs - 1]!)} ms, max ` +
    `${f1(Math.max(...lines.map((l) => l.delayMaxMs)))} ms (${secs} s)`
  );
}

/** One allowed and one blocked call, so the output shows that governance answers. */
async function checkGovernance(paddock: Target): Promise<string[]> {
  const allowed = await fetch(paddock.url, { method: 'POST', headers: paddock.headers, body: paddock.body });
  await allowed.arrayBuffer();
  if (allowed.status !== 200) throw new Error(`a call through Paddock answered ${allowed.status}`);
  const h = (name: string) => allowed.headers.get(name) ?? '(none)';
  const blocked = await fetch(paddock.url, {
    method: 'POST',
    headers: paddock.headers,
    body: JSON.stringify({ ...(JSON.parse(paddock.body) as Json), model: 'gpt-3.5-turbo' }),
  });
  const refusal = (await blocked.json()) as { error?: { code?: string } };
  if (blocked.status !== 403) throw new Error(`a blocked model answered ${blocked.status}, not 403`);
  return [
    `  allowed call: 200, run ${h('x-paddock-run-id')}, cost $${h('x-paddock-cost-usd')}, ` +
      `budget remaining $${h('x-paddock-budget-remaining-usd')}`,
    `  blocked model gpt-3.5-turbo: ${blocked.status} ${refusal.error?.code ?? '(no code)'}`,
  ];
}

interface RunsSummary {
  steps: number;
  runs: number;
  costUsd: number;
}

async function recordedSteps(g: Governed): Promise<RunsSummary> {
  const page = await api(g.base, 'GET', `/v1/runs?agent_id=${g.agentId}&limit=200`, g.token);
  const runs = (page.data ?? []) as Array<{ step_count: number; cost_usd: number }>;
  return {
    steps: runs.reduce((n, r) => n + r.step_count, 0),
    runs: runs.length,
    costUsd: runs.reduce((n, r) => n + r.cost_usd, 0),
  };
}

/** Waits until the write-behind queue has recorded `atLeast` steps, or stops making progress. */
async function drain(g: Governed, atLeast: number, timeoutMs = 60_000): Promise<RunsSummary> {
  const started = performance.now();
  let last = await recordedSteps(g);
  let lastChangeAt = performance.now();
  while (last.steps < atLeast && performance.now() - started < timeoutMs) {
    await sleep(250);
    const now = await recordedSteps(g);
    if (now.steps !== last.steps) lastChangeAt = performance.now();
    else if (performance.now() - lastChangeAt > 5_000) break;
    last = now;
  }
  return last;
}

interface Row {
  scenario: string;
  via: 'direct' | 'floor' | 'paddock';
  method: 'autocannon' | 'undici open loop';
  rate: number | undefined;
  figures: LoadFigures;
  rssMb: number;
  /** The proxy's CPU time (Paddock with its database child, or the floor) per request answered, µs. */
  cpuUsPerRequest: number | undefined;
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f3 = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : 'n/a');

function table(rows: Row[]): string {
  const lines = [
    '| scenario | method | target rps | achieved rps | p50 ms | p99 ms | added p50 ms | added p99 ms | Paddock over floor p50 / p99 ms | errors / non-2xx | proxy CPU µs/request | Paddock RSS MB (with its database child) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const fmt = r.method === 'autocannon' ? (n: number) => String(n) : f3;
    const same = (via: Row['via']) =>
      r.via !== via && r.via !== 'direct' && r.rate !== undefined
        ? rows.find((d) => d.via === via && d.method === r.method && d.rate === r.rate)
        : undefined;
    const diff = (base: Row | undefined, pick: (x: LoadFigures) => number) =>
      base ? fmt(pick(r.figures) - pick(base.figures)) : '—';
    const [direct, floor] = [same('direct'), same('floor')];
    const overFloor = floor ? `${diff(floor, (x) => x.p50Ms)} / ${diff(floor, (x) => x.p99Ms)}` : '—';
    lines.push(
      `| ${r.scenario} | ${r.method} | ${r.rate ?? 'max'} | ${f1(r.figures.completed / r.figures.durationSec)} ` +
        `| ${fmt(r.figures.p50Ms)} | ${fmt(r.figures.p99Ms)} | ${diff(direct, (x) => x.p50Ms)} | ${diff(direct, (x) => x.p99Ms)} ` +
        `| ${overFloor} | ${r.figures.errors} / ${r.figures.non2xx} ` +
        `| ${r.cpuUsPerRequest === undefined ? '—' : f1(r.cpuUsPerRequest)} | ${r.via === 'floor' ? '—' : f1(r.rssMb)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'paddock-bench-gateway-'));
  const children: Child[] = [];
  const onSignal = () => {
    void Promise.all(children.map((c) => stopChild(c))).finally(() => {
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const mock = spawnChild(
      'mock-upstream',
      process.execPath,
      ['--import', 'tsx', MOCK_UPSTREAM],
      process.env,
    );
    children.push(mock);
    const mockUrl = (await mock.firstLine(15_000)).trim();
    if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(mockUrl)) throw new Error(`mock upstream printed ${mockUrl}`);
    const floor = spawnChild('floor-proxy', process.execPath, [FLOOR_PROXY, mockUrl], process.env);
    children.push(floor);
    const floorUrl = (await floor.firstLine(15_000)).trim();
    if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(floorUrl)) throw new Error(`floor proxy printed ${floorUrl}`);

    const port = new URL(await unusedPortUrl()).port;
    // The mock upstream listens on loopback, which the outbound-address guard refuses unless allowed.
    const probeFile = path.join(dataDir, 'probe.jsonl');
    const env = paddockEnv({
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      BENCH_PROBE_FILE: probeFile,
      ...(DATABASE_URL ? { DATABASE_URL } : {}),
    });
    const profArgs = CPU_PROF_DIR
      ? ['--cpu-prof', '--cpu-prof-interval=200', `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR)}`]
      : [];
    const paddock = spawnChild(
      'paddock',
      process.execPath,
      [
        '--require',
        PROBE,
        ...PADDOCK_NODE_FLAGS,
        ...profArgs,
        BIN,
        'serve',
        '--host',
        '127.0.0.1',
        '--port',
        port,
        '--data-dir',
        dataDir,
      ],
      env,
    );
    children.push(paddock);
    const base = `http://127.0.0.1:${port}`;
    await waitForReady(base, paddock, 60_000);
    const g = await setUpAgent(base, mockUrl);

    const direct: Target = {
      url: `${mockUrl}/v1/chat/completions`,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PROVIDER_SECRET}` },
      body: BODY,
    };
    const proxied: Target = {
      url: `${base}/v1/chat/completions`,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${g.agentKey}` },
      body: BODY,
    };
    // The same request as Paddock's; the floor ignores the key and sends the provider's own.
    const bare: Target = { ...proxied, url: `${floorUrl}/v1/chat/completions` };
    const governance = await checkGovernance(proxied);
    // Both checks above were answered, and each is a step.
    let answeredByPaddock = 2;
    const count = (via: Row['via'], figures: LoadFigures) => {
      if (via === 'paddock') answeredByPaddock += figures.completed;
    };

    const cores = os.cpus();
    console.log(
      `gateway benchmark: ${DURATION_SEC} s a scenario after ${WARMUP_SEC} s of warm-up per target`,
    );
    console.log(
      `  machine: ${cores.length} × ${cores[0]?.model ?? 'unknown CPU'}, ${f1(os.totalmem() / 2 ** 30)} GB, ` +
        `Node ${process.version}, load average ${os.loadavg().map(f1).join(' ')} at start`,
    );
    console.log(`  database: ${DATABASE_URL ? 'Postgres (BENCH_DATABASE_URL)' : 'PGlite (embedded)'}`);
    console.log(
      `  upstream: mock LLM at ${mockUrl} (pid ${mock.pid}); Paddock at ${base} (pid ${paddock.pid}); ` +
        `floor proxy at ${floorUrl} (pid ${floor.pid})`,
    );
    for (const line of governance) console.log(line);

    for (const [via, target] of [
      ['direct', direct],
      ['floor', bare],
      ['paddock', proxied],
    ] as const) {
      const warm = await runAutocannon(target, {
        ratePerSec: RATES[0],
        durationSec: WARMUP_SEC,
        connections: CONNECTIONS,
      });
      count(via, warm);
    }
    await drain(g, answeredByPaddock);

    const rows: Row[] = [];
    const probes: string[] = [];
    // The measured proxy's CPU time when the scenario being measured began.
    let cpuMark = 0;
    const proxyPid = (via: Row['via']) => (via === 'floor' ? floor.pid : paddock.pid);
    const record = async (
      row: Omit<Row, 'rssMb' | 'figures' | 'cpuUsPerRequest'>,
      figures: LoadFigures | OpenLoopFigures,
    ) => {
      const rss = rssMb(paddock.pid);
      const cpuUsPerRequest =
        row.via !== 'direct' && figures.completed > 0
          ? ((cpuMs(proxyPid(row.via)) - cpuMark) * 1000) / figures.completed
          : undefined;
      count(row.via, figures);
      rows.push({ ...row, figures, rssMb: rss, cpuUsPerRequest });
      const lag = 'sendLagP99Ms' in figures ? `, send lag p99 ${f3(figures.sendLagP99Ms)} ms` : '';
      console.log(
        `  ${row.scenario} (${row.method}): ${f1(figures.completed / figures.durationSec)} rps, ` +
          `p50 ${f3(figures.p50Ms)} ms, p99 ${f3(figures.p99Ms)} ms, ${figures.completed} answered, ` +
          `${figures.errors} errors, ` +
          `${figures.non2xx} non-2xx${lag}`,
      );
      // The next scenario starts with Paddock's write-behind queue empty.
      if (row.via === 'paddock') await drain(g, answeredByPaddock);
    };

    for (const rate of METHODS.has('autocannon') ? [...RATES, undefined] : []) {
      for (const [via, target] of [
        ['direct', direct],
        ['paddock', proxied],
      ] as const) {
        cpuMark = cpuMs(paddock.pid);
        const figures = await runAutocannon(target, {
          ratePerSec: rate,
          durationSec: DURATION_SEC,
          connections: CONNECTIONS,
        });
        await record(
          { scenario: `${via} @ ${rate ?? 'saturation'}`, via, method: 'autocannon', rate },
          figures,
        );
      }
    }
    for (const rate of METHODS.has('open') ? OPEN_LOOP_RATES : []) {
      for (const [via, target] of [
        ['direct', direct],
        ['floor', bare],
        ['paddock', proxied],
      ] as const) {
        // Steady state: the same rate for a moment first (Paddock sizes its budget leases to the
        // traffic it sees; the ramp from idle is what the warm-up absorbs).
        const warm = await runOpenLoop(target, {
          ratePerSec: rate,
          durationSec: 2,
          connections: CONNECTIONS,
        });
        count(via, warm);
        cpuMark = cpuMs(proxyPid(via));
        const from = Date.now();
        const figures = await runOpenLoop(target, {
          ratePerSec: rate,
          durationSec: DURATION_SEC,
          connections: CONNECTIONS,
        });
        const to = Date.now();
        await record({ scenario: `${via} @ ${rate}`, via, method: 'undici open loop', rate }, figures);
        if (via === 'paddock') {
          // The probe writes a line a second: wait for the one that covers the scenario's end.
          await sleep(1_100);
          probes.push(`  paddock @ ${rate}: ${probeSummary(probeFile, from, to)}`);
        }
      }
    }

    await sleep(1_000);
    const recorded = await drain(g, answeredByPaddock);
    console.log('');
    console.log(
      `governance: ${recorded.steps} steps recorded in ${recorded.runs} run(s) of the agent ` +
        `(cost $${recorded.costUsd.toFixed(4)}) for ${answeredByPaddock} requests answered by Paddock ` +
        '(warm-up and the two checks included; each autocannon run also leaves up to ' +
        `${CONNECTIONS} requests in flight when it stops, which Paddock answers and records)`,
    );
    console.log('');
    console.log(table(rows));
    console.log('');
    const at = (via: Row['via']) =>
      rows.find((r) => r.via === via && r.method === 'undici open loop' && r.rate === TARGET.ratePerSec);
    const [viaPaddock, viaDirect, viaFloor] = [at('paddock'), at('direct'), at('floor')];
    if (viaPaddock && viaDirect) {
      const p50 = viaPaddock.figures.p50Ms - viaDirect.figures.p50Ms;
      const p99 = viaPaddock.figures.p99Ms - viaDirect.figures.p99Ms;
      const held = p50 < TARGET.addedP50Ms && p99 < TARGET.addedP99Ms;
      console.log(
        `target at ${TARGET.ratePerSec} rps (open loop, governance on): added p50 ${f3(p50)} ms (< ${TARGET.addedP50Ms}), ` +
          `added p99 ${f3(p99)} ms (< ${TARGET.addedP99Ms}): ${held ? 'met' : 'NOT met'}` +
          `${DATABASE_URL ? ' (on Postgres; the target is set on PGlite)' : ''}`,
      );
      if (viaFloor) {
        const cpu = (r: Row) => (r.cpuUsPerRequest === undefined ? 'n/a' : f1(r.cpuUsPerRequest));
        console.log(
          `floor at ${TARGET.ratePerSec} rps (a bare Fastify + undici proxy, no governance): added p50 ` +
            `${f3(viaFloor.figures.p50Ms - viaDirect.figures.p50Ms)} ms, added p99 ` +
            `${f3(viaFloor.figures.p99Ms - viaDirect.figures.p99Ms)} ms, ${cpu(viaFloor)} µs CPU/request`,
        );
        console.log(
          `Paddock over floor at ${TARGET.ratePerSec} rps (what governance costs): p50 ` +
            `${f3(viaPaddock.figures.p50Ms - viaFloor.figures.p50Ms)} ms, p99 ` +
            `${f3(viaPaddock.figures.p99Ms - viaFloor.figures.p99Ms)} ms, ${cpu(viaPaddock)} µs CPU/request ` +
            '(with its database child)',
        );
      }
      console.log('');
    }
    if (probes.length > 0) {
      console.log(
        'Paddock itself during each open-loop scenario (bench/paddock-probe.cjs, its server process only):',
      );
      for (const line of probes) console.log(line);
      console.log('');
    }
    console.log(
      'autocannon: whole-millisecond latencies; its fixed rate sends each connection’s share of a second back to back. ' +
        'undici open loop: one request every 1/rate s regardless of answers, each timed with process.hrtime.bigint(), exact percentiles.',
    );
    console.log(
      `added = proxy − direct at the same rate and method. The floor (open loop only) is a bare proxy in a ` +
        'process of its own, Fastify and undici like Paddock with no governance (bench/floor-proxy.mjs: parse the ' +
        'body, forward it, parse the answer, reply): the least a proxy of this build adds on this machine. ' +
        `The load generator, Paddock, the floor and the mock share ${cores.length} cores; load average ` +
        `${os.loadavg().map(f1).join(' ')} at the end.`,
    );
    const stderr = paddock.stderrTail();
    if (stderr.length > 0)
      console.log(`\nPaddock stderr (last ${stderr.length} lines):\n${stderr.join('\n')}`);
    return 0;
  } catch (err) {
    console.error(`gateway benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    for (const c of children) {
      const tail = c.stderrTail();
      if (tail.length > 0) console.error(`${c.name} stderr:\n${tail.join('\n')}`);
    }
    return 1;
  } finally {
    await Promise.all(children.map((c) => stopChild(c)));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();

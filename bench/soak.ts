// Runs Paddock under a steady mixed load for BENCH_SOAK_MINUTES and prints, a
// minute at a time, what would show a leak: the server's resident memory (and
// its process tree's: the embedded database runs in a child), each the floor of
// the minute's samples, its V8 heap after the last full collection, its
// open file descriptors, the database's size, and the latency of each kind of
// work in that minute. At the end it compares the last three minutes with
// minutes 2–4 (the first holds the start-up and the warm-up), median against
// median, and says whether memory and descriptors stayed flat, within
// BENCH_SOAK_TOLERANCE (10%).
//   gateway: BENCH_SOAK_GATEWAY_RPS governed chat completions a second
//            through Paddock to the mock provider, every other one streamed;
//   tasks:   BENCH_SOAK_TASKS_PER_MIN trivial tasks a minute (a `bash` tool
//            call in the task's capsule, then submit_result), each read until
//            it ended;
//   capsules: BENCH_SOAK_CAPSULES_PER_MIN capsules a minute, each created,
//            run once (`true`) and deleted.
// Each kind is sent on its own clock (an open loop): a slow answer does not
// slow the sending, but no kind keeps more than MAX_IN_FLIGHT waiting, so an
// overloaded server shows as skipped sends rather than as a pile-up.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type MockCall, type MockStep, startMockLlm, unusedPortUrl } from '../test/support/mock-llm.ts';
import {
  api,
  freshPostgres,
  type Governed,
  positive,
  setUpAgent,
  sleep,
  str,
  waitForReady,
} from './paddock.ts';
import { type Child, paddockEnv, rssMb, spawnChild, stopChild } from './processes.ts';

const BIN = path.resolve('bin/paddock.js');
/** Preloaded into Paddock: its CPU, event-loop delay and heap, a line a second (paddock-probe.cjs). */
const PROBE = path.resolve('bench/paddock-probe.cjs');
const MINUTES = positive('BENCH_SOAK_MINUTES', 10);
const GATEWAY_RPS = positive('BENCH_SOAK_GATEWAY_RPS', 50);
const TASKS_PER_MIN = positive('BENCH_SOAK_TASKS_PER_MIN', 30);
const CAPSULES_PER_MIN = positive('BENCH_SOAK_CAPSULES_PER_MIN', 20);
const TOLERANCE = positive('BENCH_SOAK_TOLERANCE', 0.1);
const RSS_SAMPLE_MS = 5000;
const POSTGRES_URL = process.env.BENCH_DATABASE_URL || undefined;
const MAX_IN_FLIGHT = 64;
const TASK_TIMEOUT_MS = 60_000;
const ENDED = new Set(['completed', 'failed', 'cancelled']);
const TASK_PREFIX = 'soak task';

const BASH: MockStep = { toolCalls: [{ name: 'bash', arguments: { command: 'echo soak' } }] };
const SUBMIT: MockStep = { toolCalls: [{ name: 'submit_result', arguments: { result: { done: true } } }] };

/** A task's first call runs bash, its second (after the tool's result) submits; gateway calls get text. */
function respond({ body }: MockCall): MockStep {
  const messages = (body.messages ?? []) as Array<{ role: string; content: unknown }>;
  const prompt = String(messages.find((m) => m.role === 'user')?.content ?? '');
  if (!prompt.startsWith(TASK_PREFIX)) return { text: 'A short steady answer for the soak.' };
  return messages.at(-1)?.role === 'tool' ? SUBMIT : BASH;
}

/** One kind of work's outcomes in one minute. */
class Kind {
  readonly ms: number[] = [];
  failed = 0;
  skipped = 0;
  inFlight = 0;
  lastError = '';

  summary(): string {
    const sorted = [...this.ms].sort((a, b) => a - b);
    const at = (p: number) =>
      sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
    return `${this.ms.length} ok ${f1(at(50))}/${f1(at(99))} ms${this.failed ? `, ${this.failed} failed` : ''}${
      this.skipped ? `, ${this.skipped} skipped` : ''
    }`;
  }
}

interface Minute {
  minute: number;
  serverRssMb: number;
  treeRssMb: number;
  heapMb: number;
  fds: number;
  dbMb: number;
  loopP99Ms: number;
  gateway: string;
  tasks: string;
  capsules: string;
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');

/** Resident memory of the process alone (VmRSS), MB. */
function ownRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? Number.NaN) / 1024;
}

/** Open descriptors of the process and its live descendants (capsules come and go; the database stays). */
function openFds(pid: number): number {
  let count = 0;
  const visit = (p: number) => {
    try {
      count += readdirSync(`/proc/${p}/fd`).length;
      const children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      for (const c of children ? children.split(/\s+/) : []) visit(Number(c));
    } catch {
      // gone meanwhile
    }
  };
  visit(pid);
  return count;
}

function dirBytes(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    try {
      if (entry.isDirectory()) bytes += dirBytes(full);
      else if (entry.isFile()) bytes += statSync(full).size;
    } catch {
      // removed meanwhile
    }
  }
  return bytes;
}

/**
 * The probe's last line: the server's heap after its last full collection
 * (MB) and its event loop's p99 delay (ms) in that second.
 */
function lastProbe(file: string): { heapMb: number; loopP99Ms: number } {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { heapMb: Number.NaN, loopP99Ms: Number.NaN };
  }
  const lines = text.trimEnd().split('\n');
  const last = JSON.parse(lines.at(-1) || '{}') as { heapAfterFullGcMb?: number | null; delayP99Ms?: number };
  return { heapMb: last.heapAfterFullGcMb ?? Number.NaN, loopP99Ms: last.delayP99Ms ?? Number.NaN };
}

/** Sends `send` `perSec` times a second until `stop`, each outcome timed into the current minute's Kind. */
function openLoop(
  perSec: number,
  current: () => Kind,
  send: () => Promise<void>,
  stopped: () => boolean,
): Promise<void> {
  const intervalMs = 1000 / perSec;
  const started = performance.now();
  let sent = 0;
  const pending = new Set<Promise<void>>();
  return (async () => {
    while (!stopped()) {
      const due = started + sent * intervalMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      sent++;
      const kind = current();
      if (kind.inFlight >= MAX_IN_FLIGHT) {
        kind.skipped++;
        continue;
      }
      kind.inFlight++;
      const t0 = performance.now();
      const p = send()
        .then(
          () => {
            kind.ms.push(performance.now() - t0);
          },
          (err: unknown) => {
            kind.failed++;
            kind.lastError = err instanceof Error ? err.message : String(err);
          },
        )
        .finally(() => {
          kind.inFlight--;
          pending.delete(p);
        });
      pending.add(p);
    }
    await Promise.all(pending);
  })();
}

async function gatewayCall(g: Governed, stream: boolean): Promise<void> {
  const res = await fetch(`${g.base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${g.agentKey}` },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say something steady.' }],
      max_tokens: 32,
      stream,
    }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`gateway answered ${res.status}: ${text.slice(0, 200)}`);
}

async function runTask(g: Governed, n: number): Promise<void> {
  const task = await api(g.base, 'POST', '/v1/tasks', g.token, {
    agent_id: g.agentId,
    prompt: `${TASK_PREFIX} ${n}`,
  });
  const id = str(task.id, 'task id');
  const started = performance.now();
  for (;;) {
    await sleep(100);
    const now = await api(g.base, 'GET', `/v1/tasks/${id}`, g.token);
    if (ENDED.has(String(now.status))) {
      if (now.status !== 'completed') throw new Error(`task ${id} ended ${String(now.status)}`);
      return;
    }
    if (performance.now() - started > TASK_TIMEOUT_MS)
      throw new Error(`task ${id} still ${String(now.status)}`);
  }
}

async function churnCapsule(g: Governed): Promise<void> {
  const c = await api(g.base, 'POST', '/v1/capsules', g.token, { memory_mb: 256, disk_size_mb: 64 });
  const id = str(c.id, 'capsule id');
  try {
    const running = await api(g.base, 'GET', `/v1/capsules/${id}?wait_for=running`, g.token);
    if (running.status !== 'running') throw new Error(`capsule ${id} is ${String(running.status)}`);
    const out = await api(g.base, 'POST', `/v1/capsules/${id}/exec`, g.token, { cmd: 'true', args: [] });
    if (out.exit_code !== 0) throw new Error(`exec exited ${String(out.exit_code)}`);
  } finally {
    await api(g.base, 'DELETE', `/v1/capsules/${id}`, g.token);
  }
}

async function databaseMb(dataDir: string, databaseUrl: string | undefined): Promise<number> {
  if (!databaseUrl) return dirBytes(path.join(dataDir, 'pgdata')) / 2 ** 20;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ bytes: string }>(
      'select pg_database_size(current_database()) as bytes',
    );
    return Number(rows[0]?.bytes) / 2 ** 20;
  } finally {
    await client.end();
  }
}

function printMinute(m: Minute): void {
  console.log(
    `| ${m.minute} | ${f1(m.serverRssMb)} | ${f1(m.treeRssMb)} | ${f1(m.heapMb)} | ${m.fds} | ${f1(m.dbMb)} | ` +
      `${f1(m.loopP99Ms)} | ${m.gateway} | ${m.tasks} | ${m.capsules} |`,
  );
}

/** How far `last` is from `base`, as a fraction of `base`. */
const drift = (base: number, last: number) => (last - base) / base;

async function soak(label: string, databaseUrl: string | undefined): Promise<Minute[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'paddock-bench-soak-'));
  const probeFile = path.join(dataDir, 'probe.jsonl');
  const mock = await startMockLlm({ record: false, respond });
  let paddock: Child | undefined;
  try {
    const port = new URL(await unusedPortUrl()).port;
    paddock = spawnChild(
      'paddock',
      process.execPath,
      ['--require', PROBE, BIN, 'serve', '--host', '127.0.0.1', '--port', port, '--data-dir', dataDir],
      paddockEnv({
        // The mock listens on loopback, which the outbound-address guard refuses unless allowed.
        PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
        BENCH_PROBE_FILE: probeFile,
        ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
      }),
      (line) => /^\{"level":(5|6)\d,/.test(line),
    );
    running = paddock;
    const base = `http://127.0.0.1:${port}`;
    await waitForReady(base, paddock, 60_000);
    const g = await setUpAgent(base, mock.url, { model: 'gpt-4o-mini', concurrency_limit: 1000 });
    const server = paddock;
    console.log(`\n${label}: Paddock at ${base} (pid ${server.pid}), mock provider at ${mock.url}`);
    console.log(
      `${MINUTES} minutes of ${GATEWAY_RPS} gateway calls a second, ${TASKS_PER_MIN} tasks and ` +
        `${CAPSULES_PER_MIN} capsules a minute; latency p50/p99 of each in its minute\n`,
    );
    console.log(
      '| minute | server RSS MB (floor) | tree RSS MB (floor) | heap after full GC MB | open fds | database MB | loop p99 ms | gateway | tasks | capsules |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|');

    let kinds = { gateway: new Kind(), tasks: new Kind(), capsules: new Kind() };
    let stop = false;
    let calls = 0;
    let tasks = 0;
    const loops = [
      openLoop(
        GATEWAY_RPS,
        () => kinds.gateway,
        () => gatewayCall(g, calls++ % 2 === 1),
        () => stop,
      ),
      openLoop(
        TASKS_PER_MIN / 60,
        () => kinds.tasks,
        () => runTask(g, tasks++),
        () => stop,
      ),
      openLoop(
        CAPSULES_PER_MIN / 60,
        () => kinds.capsules,
        () => churnCapsule(g),
        () => stop,
      ),
    ];
    const minutes: Minute[] = [];
    const started = performance.now();
    for (let minute = 1; minute <= MINUTES; minute++) {
      // Resident memory rises and falls with the heap's garbage between collections: each
      // minute's figure is its floor over samples RSS_SAMPLE_MS apart, which a leak raises.
      const rss = { server: Number.POSITIVE_INFINITY, tree: Number.POSITIVE_INFINITY };
      for (;;) {
        const wait = Math.min(RSS_SAMPLE_MS, started + minute * 60_000 - performance.now());
        if (wait > 0) await sleep(wait);
        if (server.exitCode !== null) throw new Error(`paddock exited with ${server.exitCode}`);
        rss.server = Math.min(rss.server, ownRssMb(server.pid));
        rss.tree = Math.min(rss.tree, rssMb(server.pid));
        if (performance.now() >= started + minute * 60_000) break;
      }
      const done = kinds;
      kinds = { gateway: new Kind(), tasks: new Kind(), capsules: new Kind() };
      const probe = lastProbe(probeFile);
      const row: Minute = {
        minute,
        serverRssMb: rss.server,
        treeRssMb: rss.tree,
        heapMb: probe.heapMb,
        fds: openFds(server.pid),
        dbMb: await databaseMb(dataDir, databaseUrl),
        loopP99Ms: probe.loopP99Ms,
        gateway: done.gateway.summary(),
        tasks: done.tasks.summary(),
        capsules: done.capsules.summary(),
      };
      minutes.push(row);
      printMinute(row);
      for (const [name, kind] of Object.entries(done))
        if (kind.lastError) console.log(`  ${name}: last failure in minute ${minute}: ${kind.lastError}`);
    }
    stop = true;
    await Promise.all(loops);
    return minutes;
  } catch (err) {
    if (paddock) console.error(`paddock stderr:\n${paddock.stderrTail().join('\n')}`);
    throw err;
  } finally {
    if (paddock) {
      const errors = paddock.keptStdout();
      if (errors.length > 0)
        console.log(`\nPaddock's error logs (last ${errors.length}):\n${errors.join('\n')}`);
      await stopChild(paddock);
    }
    await mock.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Memory and descriptors at the end against the start: the median of the last
 * three minutes against that of minutes 2–4 (the first holds start-up and
 * warm-up), so that one minute's high or low, which resident memory has as
 * the allocator keeps or returns pages, decides nothing; a leak moves the median.
 */
function verdict(minutes: Minute[]): boolean {
  if (minutes.length < 5) {
    console.log('\n(flatness needs at least 5 minutes)');
    return true;
  }
  const early = minutes.slice(1, 4);
  const late = minutes.slice(-3);
  const median = (rows: Minute[], of: (m: Minute) => number) => rows.map(of).sort((a, b) => a - b)[1]!;
  let flat = true;
  console.log(
    `\nminutes ${late.map((m) => m.minute).join('–')} against minutes 2–4, medians (tolerance ${Math.round(TOLERANCE * 100)}%):`,
  );
  for (const [what, of] of [
    ['server RSS floor', (m: Minute) => m.serverRssMb],
    ['tree RSS floor', (m: Minute) => m.treeRssMb],
    ['heap after full GC', (m: Minute) => m.heapMb],
    ['open fds', (m: Minute) => m.fds],
  ] as const) {
    const a = median(early, of);
    const b = median(late, of);
    const d = drift(a, b);
    const ok = !Number.isFinite(d) || d <= TOLERANCE;
    flat &&= ok;
    console.log(
      `  ${what}: ${f1(a)} → ${f1(b)} (${d >= 0 ? '+' : ''}${f1(d * 100)}%) ${ok ? 'flat' : 'GREW'}`,
    );
  }
  return flat;
}

/** The server child of the soak in progress: stopped when the soak is interrupted, not left running. */
let running: Child | undefined;

async function main(): Promise<number> {
  const onSignal = () => {
    void (running ? stopChild(running) : Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const cores = os.cpus();
  console.log(
    `soak: ${cores.length} × ${cores[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ` +
      `load average ${os.loadavg().map(f1).join(' ')} at start`,
  );
  let flat = true;
  try {
    flat &&= verdict(await soak('PGlite (embedded)', undefined));
    if (POSTGRES_URL) {
      const db = await freshPostgres(POSTGRES_URL);
      try {
        flat &&= verdict(await soak('Postgres (a fresh database on BENCH_DATABASE_URL)', db.url));
      } finally {
        await db.drop();
      }
    }
  } catch (err) {
    console.error(`soak failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  console.log(`\nload average ${os.loadavg().map(f1).join(' ')} at the end`);
  return flat ? 0 : 2;
}

main().then((code) => process.exit(code));

// Prints how soon Paddock's task runner makes a task's first model call, and how
// many trivial tasks it runs a minute. `paddock serve` runs as a child process on
// a fresh data dir (PGlite; BENCH_PGLITE=0 skips it), and again on a fresh
// Postgres database when BENCH_DATABASE_URL is set; the mock provider runs in this process, so the
// moment it receives a call and the moment the task was sent are on one clock.
// Each task is trivial: the mock answers its first call with a `bash` tool call
// (`echo hi`, run in the task's capsule) and its second with `submit_result`.
//   (1) submit → first model call: BENCH_TASKS tasks one after another (each
//       waited for, then a pause), from sending POST /v1/tasks to the mock
//       receiving the call whose prompt is that task's.
//   (2) trivial tasks a minute: BENCH_IN_FLIGHT tasks kept submitted at all
//       times for BENCH_DURATION_SEC s (each client submits its next task when
//       its last one ended); the tasks completed within the window, a minute.
//   (3) a burst: BENCH_BURST (6 × PADDOCK_TASK_CONCURRENCY) tasks sent at once,
//       nothing after; how long the workers take to drain that backlog.
//   (4) submit → first streamed delta: BENCH_STREAM_SAMPLES stream-mode tasks one
//       after another, from sending POST /v1/tasks to an SSE subscriber (joined
//       right after the 202) receiving the first text_delta, less the mock's own
//       time to its first chunk (bench/first-delta.ts, which a workspace message
//       can be measured with too). Both run after (1), before (2) and (3): one
//       answer at a time on a server that is not draining a load.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type MockCall, type MockStep, startMockLlm, unusedPortUrl } from '../test/support/mock-llm.ts';
import {
  type FirstDeltaSample,
  firstDeltaReport,
  measureFirstDelta,
  StreamedAnswers,
  streamTask,
  workspaceMessage,
} from './first-delta.ts';
import { percentile } from './load.ts';
import {
  api,
  freshPostgres,
  type Governed,
  type Json,
  positive,
  setUpAgent,
  sleep,
  str,
  waitForReady,
} from './paddock.ts';
import { type Child, cpuMs, paddockEnv, spawnChild, stopChild } from './processes.ts';

const BIN = path.resolve('bin/paddock.js');
const LATENCY_TASKS = positive('BENCH_TASKS', 50);
/** The first tasks warm the server's code paths and the capsule spares; they are not counted. */
const WARMUP_TASKS = 3;
/** Between the latency runs' tasks: the last task's capsule is gone and its spare replaced. */
const SETTLE_MS = positive('BENCH_SETTLE_MS', 300);
const DURATION_SEC = positive('BENCH_DURATION_SEC', 30);
const CONCURRENCY = positive('PADDOCK_TASK_CONCURRENCY', 16);
/** Twice the server's workers: each always has a task queued for it. */
const IN_FLIGHT = positive('BENCH_IN_FLIGHT', 2 * CONCURRENCY);
/** Tasks sent all at once after the throughput run: a backlog, and how fast the workers drain it. */
const BURST = positive('BENCH_BURST', 6 * CONCURRENCY);
const POSTGRES_URL = process.env.BENCH_DATABASE_URL || undefined;
const TARGET = { firstCallP50Ms: 50, tasksPerMinute: 300 };
/** How long a task may take before the benchmark gives up on it. */
const TASK_TIMEOUT_MS = 60_000;
const ENDED = new Set(['completed', 'failed', 'cancelled']);

const BASH: MockStep = { toolCalls: [{ name: 'bash', arguments: { command: 'echo hi' } }] };
const SUBMIT: MockStep = { toolCalls: [{ name: 'submit_result', arguments: { result: { said: 'hi' } } }] };

type Turn = 'first' | 'submit';

/**
 * The mock's side of each task, found by its prompt (unique per task): when
 * each of its two calls arrived (performance.now()), and who waits for them.
 */
class Calls {
  private readonly seen = new Map<string, Partial<Record<Turn, number>>>();
  private readonly waiters = new Map<string, Array<{ turn: Turn; resolve: (at: number) => void }>>();

  /** The mock's answer: bash to the user's prompt, submit_result to a tool's result. */
  respond = ({ body }: MockCall): MockStep => {
    const messages = body.messages as Array<{ role: string; content: unknown }>;
    const prompt = String(messages.find((m) => m.role === 'user')?.content ?? '');
    const turn: Turn = messages.at(-1)?.role === 'tool' ? 'submit' : 'first';
    this.mark(prompt, turn, performance.now());
    return turn === 'first' ? BASH : SUBMIT;
  };

  private mark(prompt: string, turn: Turn, at: number): void {
    const entry = this.seen.get(prompt) ?? {};
    // A task started again (a lost worker) calls again: its first call is the first one.
    entry[turn] ??= at;
    this.seen.set(prompt, entry);
    const left = (this.waiters.get(prompt) ?? []).filter((w) => {
      if (w.turn !== turn) return true;
      w.resolve(at);
      return false;
    });
    this.waiters.set(prompt, left);
  }

  /** When the task's call of that turn arrived (at once when it already has). */
  when(prompt: string, turn: Turn): Promise<number> {
    const at = this.seen.get(prompt)?.[turn];
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve) => {
      this.waiters.set(prompt, [...(this.waiters.get(prompt) ?? []), { turn, resolve }]);
    });
  }

  forget(prompt: string): void {
    this.seen.delete(prompt);
    this.waiters.delete(prompt);
  }
}

/** performance.now() as wall-clock epoch ms, comparable with the server's timestamps. */
const wall = (at: number) => performance.timeOrigin + at;

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * Reads the task until it has ended: right after the mock answered its
 * submit_result, else once a second (a task that fails never gets there).
 */
async function untilEnded(g: Governed, calls: Calls, prompt: string, id: string): Promise<Json> {
  const started = performance.now();
  let submitted = false;
  void calls.when(prompt, 'submit').then(() => {
    submitted = true;
  });
  for (;;) {
    if (!submitted) await Promise.race([calls.when(prompt, 'submit'), sleep(1_000)]);
    const task = await api(g.base, 'GET', `/v1/tasks/${id}`, g.token);
    if (ENDED.has(String(task.status))) return task;
    if (performance.now() - started > TASK_TIMEOUT_MS)
      throw new Error(`task ${id} is still ${String(task.status)} after ${TASK_TIMEOUT_MS} ms`);
    if (submitted) await sleep(10);
  }
}

/** Seconds the machine's CPUs were busy and in all, so far (Linux /proc/stat; USER_HZ is 100). */
function machineCpu(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1);
  const ticks = fields.map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  // idle and iowait
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

interface TreeCpu {
  /** The server's own process. */
  serverMs: number;
  /** Its live descendants: the embedded database (and capsules running at that moment). */
  childrenMs: number;
  /** Its exited children: the capsules' processes, reaped by it or by their bwrap. */
  exitedMs: number;
}

/** CPU time of Paddock's process tree so far, ms (Linux; USER_HZ is 100). */
function paddockCpu(pid: number): TreeCpu {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const own = ((fields[11] ?? 0) + (fields[12] ?? 0)) * 10;
  return {
    serverMs: own,
    childrenMs: cpuMs(pid) - own,
    exitedMs: ((fields[13] ?? 0) + (fields[14] ?? 0)) * 10,
  };
}

interface Latency {
  /** Sending POST /v1/tasks → the mock receiving the task's first call. */
  firstCallMs: number;
  /** Sending → the 202. */
  answeredMs: number;
  /** Sending → created_at (the server's clock: checks before the insert). */
  createdMs: number;
  /** created_at → started_at (the submit transaction, the job's send, a worker's fetch, the claim). */
  queuedMs: number;
  /** started_at → the mock receiving the first call (the run's start, the secrets, the gateway). */
  startedToCallMs: number;
  /** Sending → finished_at, the task alone on the server. */
  endToEndMs: number;
}

interface Throughput {
  /** Per completed task sampled, ms spent in each step of its event log (see STEPS). */
  steps: Array<Record<string, number>>;
  submitted: number;
  completedInWindow: number;
  completed: number;
  failed: number;
  failures: Map<string, { count: number; message: string }>;
  perMinute: number;
  endToEndMs: number[];
  cpuBusyPct: number;
  /** Per task completed in the run: Paddock's CPU, and this process's (mock, clients). */
  paddockCpuPerTask: TreeCpu;
  benchCpuMsPerTask: number;
}

interface Burst {
  /** Sending the first → the last one's finished_at. */
  drainedMs: number;
  completed: number;
  failed: number;
}

interface Figures {
  database: string;
  latency: Latency[];
  latencyFailed: number;
  throughput: Throughput;
  burst: Burst;
  firstDelta: FirstDeltaSample[];
  workspaceDelta: FirstDeltaSample[];
  stderr: string[];
}

async function measureLatency(
  g: Governed,
  calls: Calls,
  tag: string,
): Promise<{ samples: Latency[]; failed: number }> {
  const samples: Latency[] = [];
  let failed = 0;
  for (let i = 0; i < WARMUP_TASKS + LATENCY_TASKS; i++) {
    const prompt = `bench ${tag} latency task ${i}: say hi with bash, then submit the result`;
    const firstCall = calls.when(prompt, 'first');
    const sentAt = performance.now();
    const submitted = await api(g.base, 'POST', '/v1/tasks', g.token, { agent_id: g.agentId, prompt });
    const answeredAt = performance.now();
    const firstAt = await within(firstCall, TASK_TIMEOUT_MS, `the first model call of task ${i}`);
    const id = str(submitted.id, 'task id');
    const task = await untilEnded(g, calls, prompt, id);
    calls.forget(prompt);
    if (task.status !== 'completed') {
      failed++;
      console.log(`  latency task ${id} ended ${String(task.status)}: ${JSON.stringify(task.error)}`);
    }
    if (i >= WARMUP_TASKS) {
      const createdAt = Date.parse(str(task.created_at, 'created_at'));
      const startedAt = Date.parse(str(task.started_at, 'started_at'));
      samples.push({
        firstCallMs: firstAt - sentAt,
        answeredMs: answeredAt - sentAt,
        createdMs: createdAt - wall(sentAt),
        queuedMs: startedAt - createdAt,
        startedToCallMs: wall(firstAt) - startedAt,
        endToEndMs: Date.parse(str(task.finished_at, 'finished_at')) - wall(sentAt),
      });
    }
    await sleep(SETTLE_MS);
  }
  return { samples, failed };
}

async function measureThroughput(
  g: Governed,
  calls: Calls,
  tag: string,
  paddockPid: number,
): Promise<Throughput> {
  const cpuBefore = machineCpu();
  const paddockBefore = paddockCpu(paddockPid);
  const benchBefore = process.cpuUsage();
  const start = performance.now();
  const windowEnd = start + DURATION_SEC * 1000;
  const ends: Array<{
    id: string;
    status: string;
    error: { code?: string; message?: string } | null;
    endToEndMs: number;
    finishedAt: number;
  }> = [];
  let submitted = 0;
  const client = async (c: number) => {
    for (let n = 0; performance.now() < windowEnd; n++) {
      const prompt = `bench ${tag} throughput task ${c}.${n}: say hi with bash, then submit the result`;
      const sentAt = performance.now();
      const task = await api(g.base, 'POST', '/v1/tasks', g.token, { agent_id: g.agentId, prompt });
      submitted++;
      const id = str(task.id, 'task id');
      const ended = await untilEnded(g, calls, prompt, id);
      calls.forget(prompt);
      const finishedAt = Date.parse(str(ended.finished_at, 'finished_at'));
      ends.push({
        id,
        status: String(ended.status),
        error: ended.error as { code?: string; message?: string } | null,
        endToEndMs: finishedAt - wall(sentAt),
        finishedAt,
      });
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, c) => client(c)));
  const cpuAfter = machineCpu();
  const paddockAfter = paddockCpu(paddockPid);
  const bench = process.cpuUsage(benchBefore);
  const completed = ends.filter((e) => e.status === 'completed');
  const completedInWindow = completed.filter((e) => e.finishedAt <= wall(windowEnd)).length;
  // By status and code: how many, and the first one's message.
  const failures = new Map<string, { count: number; message: string }>();
  for (const e of ends)
    if (e.status !== 'completed') {
      const key = `${e.status}${e.error?.code ? ` (${e.error.code})` : ''}`;
      const seen = failures.get(key) ?? { count: 0, message: e.error?.message ?? '' };
      failures.set(key, { ...seen, count: seen.count + 1 });
    }
  // Every tenth completed task's event log, read once the run is over.
  const steps: Array<Record<string, number>> = [];
  for (const e of completed.filter((_, i) => i % 10 === 5)) steps.push(await taskSteps(g, e.id));
  return {
    steps,
    submitted,
    completedInWindow,
    completed: completed.length,
    failed: ends.length - completed.length,
    failures,
    perMinute: (completedInWindow / DURATION_SEC) * 60,
    endToEndMs: completed.map((e) => e.endToEndMs),
    cpuBusyPct: (100 * (cpuAfter.busy - cpuBefore.busy)) / (cpuAfter.total - cpuBefore.total),
    paddockCpuPerTask: {
      serverMs: (paddockAfter.serverMs - paddockBefore.serverMs) / completed.length,
      childrenMs: (paddockAfter.childrenMs - paddockBefore.childrenMs) / completed.length,
      exitedMs: (paddockAfter.exitedMs - paddockBefore.exitedMs) / completed.length,
    },
    benchCpuMsPerTask: (bench.user + bench.system) / 1000 / completed.length,
  };
}

/** BURST tasks submitted at once (nothing else sent meanwhile); how long until the last one ended. */
async function measureBurst(g: Governed, calls: Calls, tag: string): Promise<Burst> {
  const sentAt = performance.now();
  const ended = await Promise.all(
    Array.from({ length: BURST }, async (_, i) => {
      const prompt = `bench ${tag} burst task ${i}: say hi with bash, then submit the result`;
      const task = await api(g.base, 'POST', '/v1/tasks', g.token, { agent_id: g.agentId, prompt });
      const end = await untilEnded(g, calls, prompt, str(task.id, 'task id'));
      calls.forget(prompt);
      return end;
    }),
  );
  const last = Math.max(...ended.map((t) => Date.parse(str(t.finished_at, 'finished_at'))));
  const completed = ended.filter((t) => t.status === 'completed').length;
  return { drainedMs: last - wall(sentAt), completed, failed: ended.length - completed };
}

/**
 * The steps of a trivial task, from its event log (the server's clock, ms):
 * each step ends at the first event that matches, and begins where the one
 * before it ended; `capsule ready` is measured from the run's start.
 */
const STEPS: Array<[string, (e: Json) => boolean]> = [
  ['queued → running (claim, run start)', (e) => status(e) === 'running'],
  ['running → first model call answered', (e) => e.type === 'model_call'],
  ['→ bash result (waits for the capsule, then runs echo)', (e) => toolResult(e, 'bash')],
  ['→ second model call answered', (e) => e.type === 'model_call' && turn(e) === 2],
  ['→ submit_result recorded', (e) => toolResult(e, 'submit_result')],
  ['→ completed (capsule removed, run ended, task written)', (e) => status(e) === 'completed'],
];
const CAPSULE_STEP = 'running → capsule ready (beside the first call)';
const status = (e: Json) => (e.type === 'status' ? (e.payload as Json).status : undefined);
const turn = (e: Json) => (e.payload as Json).turn;
const toolResult = (e: Json, name: string) => e.type === 'tool_result' && (e.payload as Json).name === name;

async function taskSteps(g: Governed, id: string): Promise<Record<string, number>> {
  const page = await api(g.base, 'GET', `/v1/tasks/${id}/events?limit=200`, g.token);
  const events = page.data as Json[];
  const at = (e: Json | undefined) => (e ? Date.parse(str(e.created_at, 'event created_at')) : Number.NaN);
  const out: Record<string, number> = {};
  let from = at(events[0]);
  let index = 0;
  for (const [name, matches] of STEPS) {
    const found = events.findIndex((e, i) => i >= index && matches(e));
    const end = at(events[found]);
    out[name] = end - from;
    from = end;
    if (found !== -1) index = found;
  }
  const running = events.find((e) => status(e) === 'running');
  out[CAPSULE_STEP] = at(events.find((e) => e.type === 'capsule')) - at(running);
  return out;
}

/** A database of its own on the Postgres at `url`, dropped when done. */
async function measure(database: string, databaseUrl: string | undefined): Promise<Figures> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'paddock-bench-tasks-'));
  const calls = new Calls();
  const streamed = new StreamedAnswers();
  const mock = await startMockLlm({ record: false, respond: (c) => streamed.respond(c) ?? calls.respond(c) });
  let paddock: Child | undefined;
  try {
    const port = new URL(await unusedPortUrl()).port;
    const env = paddockEnv({
      // The mock listens on loopback, which the outbound-address guard refuses unless allowed.
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_TASK_CONCURRENCY: String(CONCURRENCY),
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    });
    paddock = spawnChild(
      'paddock',
      process.execPath,
      [BIN, 'serve', '--host', '127.0.0.1', '--port', port, '--data-dir', dataDir],
      env,
      // Its log lines at error level (pino's 50 and above): what an internal_error task left.
      (line) => /^\{"level":(5|6)\d,/.test(line),
    );
    const base = `http://127.0.0.1:${port}`;
    await waitForReady(base, paddock, 60_000);
    // No agent limit below the server's: the runner's concurrency is what is measured.
    const g = await setUpAgent(base, mock.url, { model: 'gpt-4o-mini', concurrency_limit: 1000 });
    const tag = randomBytes(3).toString('hex');
    console.log(`  ${database}: Paddock at ${base} (pid ${paddock.pid}), mock provider at ${mock.url}`);
    const latency = await measureLatency(g, calls, tag);
    console.log(
      `  ${database}: submit → first model call over ${latency.samples.length} tasks, ` +
        `p50 ${f1(
          pct(
            latency.samples.map((s) => s.firstCallMs),
            50,
          ),
        )} ms`,
    );
    // One answer at a time, on a server not yet draining the throughput run's capsules.
    const firstDelta = await measureFirstDelta(g, streamed, tag, streamTask(g));
    const workspaceDelta = await measureFirstDelta(g, streamed, `${tag} ws`, workspaceMessage(g));
    const throughput = await measureThroughput(g, calls, tag, paddock.pid);
    console.log(
      `  ${database}: ${throughput.completedInWindow} trivial tasks completed in ${DURATION_SEC} s ` +
        `(${f1(throughput.perMinute)} a minute), ${throughput.failed} failed`,
    );
    const burst = await measureBurst(g, calls, tag);
    return {
      database,
      burst,
      firstDelta,
      workspaceDelta,
      latency: latency.samples,
      latencyFailed: latency.failed,
      throughput,
      stderr: [...paddock.stderrTail(), ...paddock.keptStdout()],
    };
  } catch (err) {
    if (paddock) console.error(`paddock stderr:\n${paddock.stderrTail().join('\n')}`);
    throw err;
  } finally {
    if (paddock) await stopChild(paddock);
    await mock.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const pct = (xs: number[], p: number) => percentile(Float64Array.from(xs).sort(), p);
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

function report(f: Figures): string[] {
  const first = f.latency.map((s) => s.firstCallMs);
  const t = f.throughput;
  const firstP50 = pct(first, 50);
  const cpu = t.paddockCpuPerTask;
  const lines = [
    `${f.database}: ${f.latency.length} tasks one after another, then ${IN_FLIGHT} in flight for ${DURATION_SEC} s ` +
      `(PADDOCK_TASK_CONCURRENCY=${CONCURRENCY})`,
    '',
    '| figure | value | target | |',
    '|---|---|---|---|',
    `| submit → first model call p50 | ${f1(firstP50)} ms | < ${TARGET.firstCallP50Ms} ms | ${verdict(firstP50 < TARGET.firstCallP50Ms)} |`,
    `| submit → first model call p95 / p99 / max | ${f1(pct(first, 95))} / ${f1(pct(first, 99))} / ${f1(Math.max(...first))} ms | | |`,
    `| trivial tasks completed a minute | ${f1(t.perMinute)} (${t.completedInWindow} in ${DURATION_SEC} s) | ≥ ${TARGET.tasksPerMinute} | ${verdict(t.perMinute >= TARGET.tasksPerMinute)} |`,
    `| failed tasks (latency runs + throughput runs) | ${f.latencyFailed} + ${t.failed}` +
      `${t.failures.size > 0 ? ` (${[...t.failures].map(([k, v]) => `${v.count} ${k}`).join(', ')})` : ''} | 0 | ${verdict(f.latencyFailed + t.failed === 0)} |`,
    `| a burst of ${BURST} tasks sent at once: first sent → last finished (tasks a minute) | ${f1(f.burst.drainedMs)} ms (${f1((f.burst.completed / f.burst.drainedMs) * 60_000)}), ${f.burst.failed} failed | | |`,
    `| end-to-end task latency p50 / p95 (sent → finished_at, ${IN_FLIGHT} in flight) | ${f1(pct(t.endToEndMs, 50))} / ${f1(pct(t.endToEndMs, 95))} ms | | |`,
    `| machine CPU busy during the throughput run (other processes included) | ${f1(t.cpuBusyPct)} % of ${os.cpus().length} cores | | |`,
    `| CPU per completed task: Paddock (server + database child + capsules' exited processes) | ${f1(cpu.serverMs + cpu.childrenMs + cpu.exitedMs)} ms (${f1(cpu.serverMs)} + ${f1(cpu.childrenMs)} + ${f1(cpu.exitedMs)}) | | |`,
    `| CPU per completed task: the benchmark's process (mock provider, clients) | ${f1(t.benchCpuMsPerTask)} ms | | |`,
    ...firstDeltaReport('stream-mode task', f.firstDelta, 'stream path'),
    ...firstDeltaReport('workspace message', f.workspaceDelta, 'total'),
    ...[...t.failures].map(([k, v]) => `  ${k}, the first: ${v.message}`),
    '',
    'where submit → first model call goes (p50 / p95 ms; server steps from its created_at and started_at, ms resolution):',
    '',
    '| step | p50 ms | p95 ms |',
    '|---|---|---|',
  ];
  const steps: Array<[string, (s: Latency) => number]> = [
    ['POST /v1/tasks sent → 202 received (client)', (s) => s.answeredMs],
    ['sent → created_at (auth, the checks before the insert)', (s) => s.createdMs],
    ['created_at → started_at (insert transaction, the start here or the job, claim)', (s) => s.queuedMs],
    [
      'started_at → first call at the mock (run start, secrets, environment, gateway)',
      (s) => s.startedToCallMs,
    ],
  ];
  for (const [name, pick] of steps) {
    const xs = f.latency.map(pick);
    lines.push(`| ${name} | ${f1(pct(xs, 50))} | ${f1(pct(xs, 95))} |`);
  }
  const alone = f.latency.map((s) => s.endToEndMs);
  lines.push(`| (sent → finished_at, the task alone) | ${f1(pct(alone, 50))} | ${f1(pct(alone, 95))} |`);
  lines.push(
    '',
    `where a throughput task's time goes (${t.steps.length} tasks sampled; p50 / p95 ms from its event log):`,
    '',
    '| step | p50 ms | p95 ms |',
    '|---|---|---|',
  );
  for (const name of [...STEPS.map(([n]) => n), CAPSULE_STEP]) {
    const xs = t.steps.map((s) => s[name] ?? Number.NaN).filter(Number.isFinite);
    lines.push(`| ${name} | ${f1(pct(xs, 50))} | ${f1(pct(xs, 95))} |`);
  }
  return lines;
}

async function main(): Promise<number> {
  const cores = os.cpus();
  console.log(
    `tasks benchmark: ${cores.length} × ${cores[0]?.model ?? 'unknown CPU'}, ${f1(os.totalmem() / 2 ** 30)} GB, ` +
      `Node ${process.version}, load average ${os.loadavg().map(f1).join(' ')} at start`,
  );
  const results: Figures[] = [];
  try {
    if (process.env.BENCH_PGLITE !== '0') results.push(await measure('PGlite (embedded)', undefined));
    if (POSTGRES_URL) {
      const db = await freshPostgres(POSTGRES_URL);
      try {
        results.push(await measure('Postgres (a fresh database on BENCH_DATABASE_URL)', db.url));
      } finally {
        await db.drop();
      }
    }
  } catch (err) {
    console.error(`tasks benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  for (const f of results) {
    console.log('');
    for (const line of report(f)) console.log(line);
  }
  console.log('');
  console.log(
    `Each task: POST /v1/tasks {agent_id, prompt}; the runner claims it, starts its capsule beside the first model ` +
      'call (through the governed gateway, to the mock in the benchmark’s process), runs `echo hi` in the capsule, ' +
      `and ends on submit_result. Load average ${os.loadavg().map(f1).join(' ')} at the end.`,
  );
  for (const f of results)
    if (f.stderr.length > 0)
      console.log(
        `\nPaddock’s stderr and error logs on ${f.database} (last ${f.stderr.length} lines):\n${f.stderr.join('\n')}`,
      );
  return 0;
}

process.exitCode = await main();

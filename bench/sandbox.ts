// Prints how fast a capsule is usable and how many idle ones fit in 4 GB.
// `paddock serve` runs as a child process on a fresh data dir; everything goes
// through its HTTP API, as a user's would:
//   create → first exec: POST /v1/capsules, GET …?wait_for=running (answers once running), POST …/exec
// Beside each run, the baseline: a bare `bwrap … true` spawned from this process and
// waited for (the namespaces every capsule gets, none of its layer, uid, cgroups or
// filter), so the ratio create → first exec / baseline holds on a machine of any speed.
// Runs are one after another with a pause between them (BENCH_SETTLE_MS, 1.5 s: past the spare refill's delay and its start): each
// measures a create on a settled host. The density figure creates idle capsules and reads the memory they take
// from the host (MemAvailable), then scales it to 4 GB.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unusedPortUrl } from '../test/support/mock-llm.ts';
import { paddockEnv, spawnChild, stopChild } from './processes.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const IDLE = Number(process.env.BENCH_IDLE_CAPSULES ?? 100);
/** Pause between runs, so one run's cleanup and spare refill do not land in the next run's figures. */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 1_500);
const BIN = path.resolve('bin/paddock.js');

type Json = Record<string, unknown>;

async function api(base: string, method: string, route: string, token: string | undefined, body?: Json) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const json = text ? (JSON.parse(text) as Json) : {};
  if (res.status >= 400) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return json;
}

async function untilRunning(base: string, token: string, id: string): Promise<void> {
  for (;;) {
    const c = await api(base, 'GET', `/v1/capsules/${id}?wait_for=running`, token);
    if (c.status === 'running') return;
    if (c.status === 'error') throw new Error(`capsule ${id} failed: ${String(c.status_reason)}`);
  }
}

/**
 * Memory the capsules take: what their cgroups charge (processes, page cache
 * and their tmpfs layers), where the driver made cgroups; else the resident
 * memory of the host processes running as capsule users.
 */
function capsuleMemoryMb(): { mb: number; count: number } | undefined {
  for (const root of ['/sys/fs/cgroup/memory', '/sys/fs/cgroup']) {
    const found: string[] = [];
    const walk = (dir: string, depth: number) => {
      if (depth > 4) return;
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        return;
      }
      for (const n of names) {
        // Capsules, and the spares started ahead (a capsule made from one keeps its cgroup name).
        // Only those with processes: a host killed without cleanup leaves empty ones behind.
        if (/^(cap|spare)_/.test(n)) {
          const procs = readFileSync(path.join(dir, n, 'cgroup.procs'), { encoding: 'utf8', flag: 'r' });
          if (procs.trim() !== '') found.push(path.join(dir, n));
        } else if (
          n === 'paddock' ||
          (depth < 3 && statSync(path.join(dir, n), { throwIfNoEntry: false })?.isDirectory())
        )
          walk(path.join(dir, n), depth + 1);
      }
    };
    walk(root, 0);
    if (found.length === 0) continue;
    let bytes = 0;
    for (const dir of found) {
      for (const f of ['memory.usage_in_bytes', 'memory.current']) {
        try {
          bytes += Number(readFileSync(path.join(dir, f), 'utf8').trim());
          break;
        } catch {
          // the other cgroup version's file
        }
      }
    }
    return { mb: bytes / 1024 / 1024, count: found.length };
  }
  return undefined;
}

function memAvailableMb(): number {
  const line = readFileSync('/proc/meminfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('MemAvailable:'));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

/** A bare bwrap spawn with the namespaces of a capsule (as root, nothing bound but the host's / read-only). */
function bareBwrapArgs(): string[] {
  const root = process.getuid?.() === 0;
  return [
    '--unshare-all',
    '--unshare-user',
    ...(root ? ['--disable-userns'] : []),
    '--die-with-parent',
    '--new-session',
    '--ro-bind',
    '/',
    '/',
    '--proc',
    '/proc',
    ...(root ? ['--dev', '/dev'] : ['--dev-bind', '/dev', '/dev']),
    '--',
    'true',
  ];
}

/** Milliseconds from spawning a bare bwrap to its exit. */
function bareBwrapMs(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bwrap', bareBwrapArgs(), { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`bare bwrap exited ${String(code)}`));
      else resolve(performance.now() - t0);
    });
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function main() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'paddock-bench-sandbox-'));
  const port = new URL(await unusedPortUrl()).port;
  const env = paddockEnv();
  const paddock = spawnChild(
    'paddock',
    process.execPath,
    [BIN, 'serve', '--port', port, '--data-dir', dataDir],
    env,
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      const ready = await fetch(`${base}/ready`).catch(() => undefined);
      if (ready?.status === 200) break;
      if (i > 3000) throw new Error('paddock never became ready');
      await new Promise((r) => setTimeout(r, 10));
    }
    const signup = await api(base, 'POST', '/v1/auth/signup', undefined, {
      email: 'bench@example.com',
      password: 'a long password',
      name: 'Bench',
    });
    const token = String(signup.session_token);
    const spec = { memory_mb: 256, disk_size_mb: 64 };

    const total: number[] = [];
    const toRunning: number[] = [];
    const firstExec: number[] = [];
    const bare: number[] = [];
    let isolation = '';
    for (let i = 0; i < RUNS + 3; i++) {
      // The baseline, on the settled host just before the run.
      const bareMs = await bareBwrapMs();
      const t0 = performance.now();
      const c = await api(base, 'POST', '/v1/capsules', token, spec);
      const id = String(c.id);
      await untilRunning(base, token, id);
      const t1 = performance.now();
      const out = await api(base, 'POST', `/v1/capsules/${id}/exec`, token, { cmd: 'true', args: [] });
      const t2 = performance.now();
      if (out.exit_code !== 0) throw new Error(`first exec exited ${String(out.exit_code)}`);
      isolation = String(c.isolation);
      // The first few warm the server's code paths; they are not counted.
      if (i >= 3) {
        total.push(t2 - t0);
        toRunning.push(t1 - t0);
        firstExec.push(t2 - t1);
        bare.push(bareMs);
      }
      await api(base, 'DELETE', `/v1/capsules/${id}`, token);
      // Each run measures one create on a settled host: the deleted capsule is gone and the
      // spare it took has been replaced before the next create starts.
      await api(base, 'GET', `/v1/capsules/${id}?wait_for=stopped`, token);
      await new Promise((r) => setTimeout(r, SETTLE_MS));
    }

    const before = memAvailableMb();
    const idle: string[] = [];
    for (let i = 0; i < IDLE; i++) {
      const c = await api(base, 'POST', '/v1/capsules', token, spec);
      idle.push(String(c.id));
    }
    for (const id of idle) await untilRunning(base, token, id);
    await new Promise((r) => setTimeout(r, 1000));
    const charged = capsuleMemoryMb();
    const usedMb = charged?.mb ?? Math.max(0, before - memAvailableMb());
    // Spares count as capsules here: they hold what a capsule holds.
    const counted = charged?.count ?? IDLE;
    const perCapsuleMb = usedMb / counted;
    const source = charged !== undefined ? 'their memory cgroups' : 'the drop in MemAvailable';
    for (const id of idle) await api(base, 'DELETE', `/v1/capsules/${id}`, token);

    const f = (x: number) => x.toFixed(1);
    console.log(
      `sandbox benchmark: ${RUNS} capsules one after another, isolation ${isolation}, ${os.cpus().length} cores`,
    );
    console.log('');
    console.log('| figure | p50 ms | p95 ms |');
    console.log('|---|---|---|');
    console.log(
      `| create → first exec (POST, GET ?wait_for=running, exec) | ${f(pct(total, 50))} | ${f(pct(total, 95))} |`,
    );
    console.log(`| create → running | ${f(pct(toRunning, 50))} | ${f(pct(toRunning, 95))} |`);
    console.log(`| first exec (\`true\`) | ${f(pct(firstExec, 50))} | ${f(pct(firstExec, 95))} |`);
    console.log(`| baseline: bare \`bwrap … true\` spawn | ${f(pct(bare, 50))} | ${f(pct(bare, 95))} |`);
    console.log('');
    console.log(
      `create → first exec / baseline (p50s): ${(pct(total, 50) / pct(bare, 50)).toFixed(2)} (target under 2)`,
    );
    console.log('');
    console.log(
      `idle capsules: ${counted} running (${IDLE} asked for, the rest spares) took ${f(usedMb)} MB (${source}; ${f(perCapsuleMb)} MB each): ` +
        `${perCapsuleMb > 0 ? Math.floor(4096 / perCapsuleMb) : 'more than'} fit in 4 GB`,
    );
  } finally {
    if (process.env.BENCH_TRACE) console.log(paddock.stderrTail().join('\n'));
    await stopChild(paddock);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

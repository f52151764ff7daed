// Prints how long `paddock serve` takes from the command to GET /ready = 200,
// on an empty data dir (initdb + migrations) and on an existing one, and the
// idle memory (RSS) of the server plus its embedded database's process once
// each has been ready for IDLE_MS. Spare capsules are off (PADDOCK_SANDBOX_WARM=0),
// so the figures are the server's own.
//   RUNS=5 IDLE_MS=3000 npm run bench:startup
//   BIN=/another/checkout/bin/paddock.js npm run bench:startup   (A/B against another build)
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const BIN = path.resolve(process.env.BIN ?? 'bin/paddock.js');
const RUNS = Number(process.env.RUNS ?? 5);
const IDLE_MS = Number(process.env.IDLE_MS ?? 3000);

interface Sample {
  readyMs: number;
  serverMb: number;
  databaseMb: number;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** The server's child that runs the embedded database (its command line names the worker). */
function databaseChild(pid: number): number | undefined {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
  );
  return children.find((child) => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('pglite-worker');
    } catch {
      return false;
    }
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function serveOnce(dataDir: string, port: number): Promise<Sample> {
  const started = performance.now();
  const env: NodeJS.ProcessEnv = { ...process.env, PADDOCK_LOG_LEVEL: 'warn', PADDOCK_SANDBOX_WARM: '0' };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--data-dir', dataDir], {
    env,
    stdio: 'ignore',
  });
  try {
    let readyMs: number | undefined;
    while (readyMs === undefined) {
      const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
      if (res?.status === 200) readyMs = performance.now() - started;
      else if (child.exitCode !== null) throw new Error(`paddock serve exited with ${child.exitCode}`);
      else if (performance.now() - started > 300_000) throw new Error('not ready after 300 s');
      else await sleep(10);
    }
    await sleep(IDLE_MS);
    const pid = child.pid!;
    const database = databaseChild(pid);
    return { readyMs, serverMb: rssMb(pid), databaseMb: database ? rssMb(database) : Number.NaN };
  } finally {
    await stop(child);
  }
}

const fmt = (xs: number[], unit: string) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (x: number) => `${Math.round(x)} ${unit}`;
  return `median ${r(s[Math.floor(s.length / 2)]!)}, min ${r(s[0]!)}, max ${r(s.at(-1)!)}`;
};

const empty: Sample[] = [];
const existing: Sample[] = [];
for (let i = 0; i < RUNS; i++) {
  const dir = mkdtempSync(path.join(tmpdir(), 'paddock-bench-'));
  try {
    empty.push(await serveOnce(dir, 18300 + i));
    existing.push(await serveOnce(dir, 18400 + i));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(`paddock serve (${BIN}), ${RUNS} runs each, spares off`);
for (const [name, samples] of [
  ['empty data dir   ', empty],
  ['existing data dir', existing],
] as const) {
  console.log(
    `  ${name}  command → /ready 200: ${fmt(
      samples.map((s) => s.readyMs),
      'ms',
    )}`,
  );
  console.log(
    `  ${name}  idle RSS server + database (after ${IDLE_MS} ms): ${fmt(
      samples.map((s) => s.serverMb + s.databaseMb),
      'MB',
    )} (server ${fmt(
      samples.map((s) => s.serverMb),
      'MB',
    )}; database ${fmt(
      samples.map((s) => s.databaseMb),
      'MB',
    )})`,
  );
}

// Prints how long `paddock serve` takes from process start to GET /ready = 200,
// on an empty data dir (initdb + migrations) and on an existing one.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BIN = path.resolve('bin/paddock.js');
const RUNS = Number(process.env.RUNS ?? 5);

async function timeToReady(dataDir: string, port: number): Promise<number> {
  const started = performance.now();
  const env: NodeJS.ProcessEnv = { ...process.env, PADDOCK_LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--data-dir', dataDir], {
    env,
    stdio: 'ignore',
  });
  try {
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
      if (res?.status === 200) return performance.now() - started;
      if (performance.now() - started > 30_000) throw new Error('not ready after 30 s');
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

const fmt = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${Math.round(s[Math.floor(s.length / 2)]!)} ms, min ${Math.round(s[0]!)} ms, max ${Math.round(s.at(-1)!)} ms`;
};

const empty: number[] = [];
const existing: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const dir = mkdtempSync(path.join(tmpdir(), 'paddock-bench-'));
  empty.push(await timeToReady(dir, 18300 + i));
  existing.push(await timeToReady(dir, 18400 + i));
  rmSync(dir, { recursive: true, force: true });
}
console.log(`paddock serve, process start → /ready 200 (${RUNS} runs each)`);
console.log(`  empty data dir:    ${fmt(empty)}`);
console.log(`  existing data dir: ${fmt(existing)}`);

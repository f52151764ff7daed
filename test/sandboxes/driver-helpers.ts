import { mkdtempSync } from 'node:fs';
import { chmod, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {
  CapsuleHandle,
  CapsuleLimits,
  CapsuleProcess,
  CapsuleSpec,
  Driver,
  DriverError,
} from '../../src/modules/sandboxes/drivers/types.ts';

export const LIMITS: CapsuleLimits = {
  memoryMb: 256,
  vcpus: 1,
  diskMb: 64,
  maxProcesses: 64,
  maxOpenFiles: 256,
};

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Collects a process's output to its end (or fails after `timeoutMs`, killing it). */
export async function collect(proc: CapsuleProcess, timeoutMs = 15_000): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`process did not end in ${timeoutMs} ms; stdout so far: ${stdout.slice(-500)}`));
    }, timeoutMs);
  });
  try {
    const code = await Promise.race([proc.exited, timeout]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export function run(
  handle: CapsuleHandle,
  cmd: string,
  args: string[] = [],
  timeoutMs?: number,
): Promise<RunResult> {
  return collect(handle.spawn({ cmd, args }), timeoutMs);
}

export function sh(handle: CapsuleHandle, script: string, timeoutMs?: number): Promise<RunResult> {
  return run(handle, 'sh', ['-c', script], timeoutMs);
}

/** Reads a terminal's output until `pattern` shows up in what arrived since the call. */
export function waitForOutput(proc: CapsuleProcess, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d.toString('utf8');
      if (pattern.test(seen)) {
        cleanup();
        resolve(seen);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${pattern} in terminal output: ${JSON.stringify(seen.slice(-500))}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      proc.stdout.off('data', onData);
    };
    proc.stdout.on('data', onData);
  });
}

/** Polls until `probe` is truthy. */
export async function eventually<T>(
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function driverError(promise: Promise<unknown>): Promise<DriverError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof Error && err.name === 'DriverError') return err as DriverError;
    throw err;
  }
  throw new Error('expected a DriverError, got success');
}

/**
 * Capsules of one test file: every one is destroyed in `destroyAll` (afterAll),
 * whatever the tests did, and the base directory removed.
 */
export class CapsuleTracker {
  readonly base: string;
  private readonly handles: CapsuleHandle[] = [];
  private n = 0;

  constructor(
    private readonly driver: () => Driver,
    label: string,
  ) {
    this.base = mkdtempSync(path.join(tmpdir(), `paddock-${label}-`));
  }

  spec(overrides: Partial<CapsuleSpec> = {}): CapsuleSpec {
    const id = `cap_test${process.pid}x${++this.n}`;
    return {
      id,
      dir: path.join(this.base, id),
      templateDir: null,
      limits: LIMITS,
      envs: {},
      network: null,
      ...overrides,
    };
  }

  async create(overrides: Partial<CapsuleSpec> = {}): Promise<CapsuleHandle> {
    const handle = await this.driver().create(this.spec(overrides));
    this.handles.push(handle);
    return handle;
  }

  async destroyAll(): Promise<void> {
    await Promise.allSettled(this.handles.map((h) => h.destroy()));
    await chmod(this.base, 0o700).catch(() => {});
    await rm(this.base, { recursive: true, force: true });
  }
}

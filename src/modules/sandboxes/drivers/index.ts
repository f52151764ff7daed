import { BwrapDriver } from './bwrap.ts';
import { ProcessDriver, type ProcessDriverOptions } from './process.ts';
import type { Driver } from './types.ts';

export { BwrapDriver } from './bwrap.ts';
export { ProcessDriver } from './process.ts';
export * from './types.ts';

export interface DetectDriverOptions {
  /** 'auto' (the default): bwrap when it works on this machine, else the process driver. 'bwrap' fails when it does not. */
  prefer?: 'auto' | 'bwrap' | 'process';
  /** Where capsule directories will be: the probe checks that a tmpfs can be mounted there. */
  baseDir?: string;
  process?: ProcessDriverOptions;
}

/** The sandbox driver for this machine. */
export async function detectDriver(options: DetectDriverOptions = {}): Promise<Driver> {
  const choice = options.prefer ?? 'auto';
  if (choice === 'process') return new ProcessDriver(options.process);
  try {
    return new BwrapDriver(await BwrapDriver.probe(options.baseDir));
  } catch (err) {
    if (choice === 'bwrap') throw err;
    const driver = new ProcessDriver(options.process);
    driver.warnings.unshift(`bwrap is not used: ${(err as Error).message}`);
    return driver;
  }
}

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Clock } from '../../core/clock.ts';
import { type HostId, isId, newId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { detectDriver } from './drivers/index.ts';
import { EgressProxy } from './host-side/egress.ts';
import { LocalHost } from './host-side/local-host.ts';
import * as repo from './repo.ts';

/**
 * This server's own host id, kept beside its capsules so a restart knows
 * which capsule records were its (and are now gone).
 */
function localHostId(sandboxDir: string): HostId {
  mkdirSync(sandboxDir, { recursive: true });
  const file = path.join(sandboxDir, 'host-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (/^hst_[0-9A-Z]{26}$/.test(id) && isId(id, 'hst')) return id;
  } catch {
    // first start
  }
  const id = newId('hst');
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

/** The sandbox host that `paddock serve` runs in its own process (its driver chosen for this machine). */
export async function createLocalHost(options: {
  sandboxDir: string;
  driver: 'auto' | 'bwrap' | 'process';
  /** Let allow-listed names reach private and loopback addresses. */
  egressPrivate: boolean;
  /** Capsules kept started ahead (see LocalHost). */
  warm: number;
}): Promise<LocalHost> {
  const driver = await detectDriver({ prefer: options.driver, baseDir: options.sandboxDir });
  const egress = new EgressProxy({ allowPrivate: options.egressPrivate });
  return new LocalHost(localHostId(options.sandboxDir), driver, options.sandboxDir, egress, options.warm);
}

/** Registers the local host as a host row (online), and the built-in minimal template. Needs the schema. */
export async function registerLocalHost(db: Db, clock: Clock, host: LocalHost): Promise<void> {
  const now = clock.now();
  await repo.upsertLocalHost(db, {
    id: host.id,
    type: 'local',
    status: 'online',
    arch: os.arch(),
    cpuCores: os.cpus().length,
    memoryMb: Math.round(os.totalmem() / 1024 / 1024),
    isolation: host.isolation,
    tags: ['local'],
    lastHeartbeatAt: now,
    createdAt: now,
    updatedAt: now,
  });
  await ensurePlatformTemplate(db, clock);
}

/** The built-in empty template every capsule starts from unless told otherwise (on any host). Needs the schema. */
export async function ensurePlatformTemplate(db: Db, clock: Clock): Promise<void> {
  const now = clock.now();
  await repo.ensurePlatformTemplate(db, {
    id: newId('tpl'),
    teamId: null,
    name: 'minimal',
    type: 'base',
    sizeBytes: 0,
    metadata: {},
    createdAt: now,
  });
}

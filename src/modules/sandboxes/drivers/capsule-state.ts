import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CapsuleCgroups, type CgroupState } from './cgroups.ts';
import { unmountLayer } from './layer.ts';

const STATE_FILE = 'capsule.json';

/** Written in the capsule's directory (outside its layer) so that `cleanup()` works after a restart. */
export interface CapsuleState {
  id: string;
  uid: number;
  tmpfs: boolean;
  /** Where the layer really is (`<dir>/root` may be a symlink to it). */
  layerRoot: string;
  /** The layer's directory under the portal, removed with the capsule; null when the layer is `<dir>/root` itself. */
  portal: string | null;
  cgroups: CgroupState | null;
  bwrap: { pid: number; startTime: string | null } | null;
}

/** Kills what is left in the capsule's cgroups, unmounts its layer, removes its directory and cgroups. */
export async function removeCapsule(dir: string, state: CapsuleState | null): Promise<void> {
  const cgroups = state?.cgroups ? CapsuleCgroups.fromState(state.cgroups) : null;
  await cgroups?.killAll();
  await unmountLayer(state?.layerRoot ?? path.join(dir, 'root'));
  if (state?.portal) await rm(state.portal, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
  await cgroups?.remove();
}

export async function writeState(dir: string, state: CapsuleState): Promise<void> {
  await writeFile(path.join(dir, STATE_FILE), JSON.stringify(state), { mode: 0o600 });
}

export async function readState(dir: string): Promise<CapsuleState | null> {
  const text = await readFile(path.join(dir, STATE_FILE), 'utf8').catch(() => null);
  if (!text) return null;
  try {
    return JSON.parse(text) as CapsuleState;
  } catch {
    return null;
  }
}

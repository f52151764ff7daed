import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { allPids } from './proc.ts';

// Each capsule runs as a host uid of its own, so that the kernel's own
// permission checks keep capsules apart (signals, /proc, files). Nothing is
// written down: a uid is free when no capsule of this driver holds it and no
// process on the host runs as it. The start comes from the capsule id, so two
// Paddock processes on one host rarely even probe the same uid.

export const UID_BASE = 100_000;
const UID_RANGE = 65_536;

export class UidAllocator {
  private readonly held = new Set<number>();

  async allocate(capsuleId: string): Promise<number> {
    const busy = await uidsOfRunningProcesses();
    const start = createHash('sha256').update(capsuleId).digest().readUInt32BE(0) % UID_RANGE;
    for (let i = 0; i < UID_RANGE; i++) {
      const uid = UID_BASE + ((start + i) % UID_RANGE);
      if (this.held.has(uid) || busy.has(uid)) continue;
      this.held.add(uid);
      return uid;
    }
    throw new Error('no free capsule uid left');
  }

  release(uid: number): void {
    this.held.delete(uid);
  }
}

/** Owners of /proc/<pid> (a process's effective uid) across the host. */
async function uidsOfRunningProcesses(): Promise<Set<number>> {
  const pids = await allPids();
  const uids = await Promise.all(
    pids.map((pid) =>
      stat(`/proc/${pid}`).then(
        (s) => s.uid,
        () => -1,
      ),
    ),
  );
  return new Set(uids);
}

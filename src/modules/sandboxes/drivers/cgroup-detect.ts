import { mkdir, readFile, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { writeControl } from './cgroups.ts';

// Which cgroups this machine lets Paddock create for capsules: v2 (one
// unified tree at /sys/fs/cgroup) or v1 (a tree per controller), and where.

const V1_CONTROLLERS = ['memory', 'pids', 'cpu', 'cpuacct', 'freezer'] as const;
const V2_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;

export interface CgroupSupport {
  version: 1 | 2;
  /** Where capsule cgroups are created, by controller (v2: one entry, key 'unified'). */
  bases: Record<string, string>;
  /** What this machine's cgroups cannot do (a missing controller …). */
  warnings: string[];
}

interface CgroupMount {
  fstype: 'cgroup' | 'cgroup2';
  mountPoint: string;
  /** The mount's root inside the hierarchy ("/" unless it came from a cgroup namespace). */
  root: string;
  controllers: string[];
}

async function cgroupMounts(): Promise<CgroupMount[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const mounts: CgroupMount[] = [];
  for (const line of info.split('\n')) {
    // Fields: id parent major:minor root mount-point options [optional…] - fstype source super-options
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const l = left.split(' ');
    const [fstype, , superOptions] = right.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    mounts.push({
      fstype,
      root: l[3] ?? '/',
      mountPoint: l[4] ?? '',
      controllers: fstype === 'cgroup' ? (superOptions ?? '').split(',') : [],
    });
  }
  return mounts;
}

/** Paddock's own cgroup path in each v1 hierarchy, by controller, from /proc/self/cgroup. */
async function ownV1Paths(): Promise<Map<string, string>> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [, controllers, p] = line.split(':');
    if (!controllers || p === undefined) continue;
    for (const c of controllers.split(',')) out.set(c, p);
  }
  return out;
}

async function probeWritable(base: string): Promise<boolean> {
  const probe = path.join(base, `probe-${process.pid}`);
  try {
    await mkdir(probe, { recursive: true });
    await rmdir(probe);
    return true;
  } catch {
    return false;
  }
}

/** What cgroups this machine lets Paddock create for capsules, or null with the reason. */
export async function detectCgroups(): Promise<{ support: CgroupSupport | null; reason: string | null }> {
  const mounts = await cgroupMounts();
  const unified = mounts.find((m) => m.fstype === 'cgroup2' && m.mountPoint === '/sys/fs/cgroup');
  if (unified) return detectV2(unified.mountPoint);
  const v1 = mounts.filter((m) => m.fstype === 'cgroup');
  if (v1.length === 0) return { support: null, reason: 'no cgroup filesystem is mounted' };

  const own = await ownV1Paths();
  const bases: Record<string, string> = {};
  const warnings: string[] = [];
  for (const controller of V1_CONTROLLERS) {
    const mount = v1.find((m) => m.controllers.includes(controller));
    if (!mount) {
      warnings.push(`cgroup v1 controller "${controller}" is not mounted: ${consequence(controller)}`);
      continue;
    }
    // Nested under Paddock's own cgroup so that whatever limits Paddock was
    // given also bound its capsules.
    let ownPath = own.get(controller) ?? '/';
    if (mount.root !== '/' && ownPath.startsWith(mount.root)) {
      ownPath = ownPath.slice(mount.root.length) || '/';
    }
    let base = path.join(mount.mountPoint, ownPath, 'paddock');
    if (!(await probeWritable(base))) {
      base = path.join(mount.mountPoint, 'paddock');
      if (!(await probeWritable(base))) {
        return { support: null, reason: `cannot create cgroups under ${mount.mountPoint} (not root?)` };
      }
    }
    bases[controller] = base;
  }
  if (!bases.memory && !bases.pids && !bases.freezer) {
    return { support: null, reason: 'none of the memory, pids and freezer cgroup controllers is mounted' };
  }
  return { support: { version: 1, bases, warnings }, reason: null };
}

async function detectV2(
  mountPoint: string,
): Promise<{ support: CgroupSupport | null; reason: string | null }> {
  // Capsules go in one subtree at the top: a cgroup that holds processes (as
  // Paddock's own usually does) may not also hand controllers to children.
  const base = path.join(mountPoint, 'paddock');
  const available = (await readFile(path.join(mountPoint, 'cgroup.controllers'), 'utf8').catch(() => ''))
    .trim()
    .split(/\s+/);
  if (!(await probeWritable(base))) {
    return { support: null, reason: `cannot create cgroups under ${mountPoint} (not root?)` };
  }
  const warnings: string[] = [];
  for (const controller of V2_CONTROLLERS) {
    if (!available.includes(controller)) {
      warnings.push(`cgroup v2 controller "${controller}" is not available: ${consequence(controller)}`);
      continue;
    }
    for (const dir of [mountPoint, base]) {
      await writeControl(path.join(dir, 'cgroup.subtree_control'), `+${controller}`).catch(() => {
        warnings.push(
          `cannot enable cgroup controller "${controller}" in ${dir}: ${consequence(controller)}`,
        );
      });
    }
  }
  return {
    support: { version: 2, bases: { unified: base }, warnings: [...new Set(warnings)] },
    reason: null,
  };
}

function consequence(controller: string): string {
  switch (controller) {
    case 'memory':
      return 'memoryMb is not enforced';
    case 'pids':
      return 'maxProcesses is not enforced';
    case 'cpu':
      return 'vcpus is not enforced';
    case 'cpuacct':
      return 'CPU usage is summed from /proc instead';
    default:
      return 'pause falls back to SIGSTOP/SIGCONT';
  }
}

import { constants } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CgroupSupport, detectCgroups } from './cgroup-detect.ts';
import { detectHostLayout, type HostLayout } from './layer.ts';
import type { HostTools } from './nsproc.ts';
import { runCommand } from './proc.ts';

// What the bwrap driver can do on this machine: its tools, whether it is
// root (a uid per capsule, a tmpfs per layer), its cgroups, the host's /
// layout. Probed once, when the driver is made.

const TOOL_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

/**
 * bwrap resolves the layer's path as the capsule's uid, so every directory
 * above it must be searchable by that uid; spec.dir may well sit below a
 * 0700 directory (/root/…, a mkdtemp). The tmpfs is therefore mounted in a
 * directory of its own below this one, owned by the capsule's uid with mode
 * 0700 (no other host user gets in), and `<dir>/root` links to it.
 */
const PORTAL_BASES = ['/run/paddock/layers', path.join(tmpdir(), 'paddock-layers')];

/** What a probe found out about this machine. */
export interface BwrapHost {
  tools: HostTools;
  asRoot: boolean;
  tmpfs: boolean;
  /** Where layers are mounted when running as root (see PORTAL_BASES); null: in `<dir>/root`. */
  portalBase: string | null;
  cgroups: CgroupSupport | null;
  layout: HostLayout;
  /** The seccomp filter every capsule process runs under (seccomp/); null where none is built for this architecture. */
  seccomp: Buffer | null;
  warnings: string[];
}

async function findTool(name: string): Promise<string | null> {
  for (const dir of TOOL_DIRS) {
    const file = path.join(dir, name);
    const executable = await access(file, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (executable) return file;
  }
  return null;
}

export const currentUid = () => process.getuid?.() ?? -1;
export const currentGid = () => process.getgid?.() ?? -1;

/** Checks that bwrap works here (throws with the reason when it does not) and what can be enforced. */
export async function probeBwrapHost(baseDir?: string): Promise<BwrapHost> {
  if (process.platform !== 'linux') throw new Error('bwrap needs Linux');
  const [bwrap, nsenter, setpriv, setsid, sh, perl] = await Promise.all(
    ['bwrap', 'nsenter', 'setpriv', 'setsid', 'sh', 'perl'].map(findTool),
  );
  if (!bwrap) throw new Error('bwrap is not installed (install the bubblewrap package)');
  if (!nsenter || !setpriv || !setsid) {
    throw new Error('nsenter, setpriv and setsid are needed (install util-linux)');
  }
  if (!perl) throw new Error('perl is needed for the last step into a capsule (install perl-base)');
  // Capsules see the host's /usr: the tools run inside must be found there.
  for (const tool of [setsid, nsenter, perl]) {
    if (!tool.startsWith('/usr/')) {
      throw new Error(`${tool} is not under /usr, which is all a capsule sees of the host`);
    }
  }
  const tools: HostTools = { bwrap, nsenter, setpriv, setsid, sh: sh ?? '/bin/sh', perl };
  const asRoot = currentUid() === 0;

  // The same namespaces a capsule gets, as an unprivileged uid (nobody) when root.
  const probeArgs = [
    ...(asRoot ? [setpriv, '--reuid=65534', '--regid=65534', '--clear-groups', '--'] : []),
    bwrap,
    '--unshare-all',
    '--unshare-user',
    ...(asRoot ? ['--disable-userns'] : []),
    '--die-with-parent',
    '--ro-bind',
    '/',
    '/',
    '--proc',
    '/proc',
    ...devArgs(asRoot),
    '--',
    'true',
  ];
  const probed = await runCommand(probeArgs[0]!, probeArgs.slice(1), 10_000);
  if (probed.code !== 0) {
    throw new Error(`bwrap does not work here: ${probed.stderr.trim() || `exit ${probed.code}`}`);
  }

  const warnings: string[] = [];
  const [cg, layout, tmpfs, portalBase, seccomp] = await Promise.all([
    detectCgroups(),
    detectHostLayout(),
    asRoot ? probeTmpfs(baseDir) : false,
    asRoot ? makePortalBase() : null,
    loadSeccompFilter(),
  ]);
  if (!seccomp) {
    warnings.push(
      `no seccomp filter for ${process.arch}: capsule processes may make every system call their namespaces allow`,
    );
  }
  if (!asRoot) {
    warnings.push(
      "Paddock is not running as root: every capsule runs as Paddock's own uid, so only the namespaces keep capsules from each other and from Paddock's files; run as root for a uid per capsule",
      'not root: capsule processes may create user namespaces of their own (--disable-userns would stop nsenter from joining the capsule), a shell on a terminal has no job control, and there is no /dev/pts inside',
    );
  }
  if (!tmpfs) warnings.push('no tmpfs for the writable layer (needs root): diskMb is not enforced');
  else {
    warnings.push(
      "a capsule's files live in RAM (its writable layer is a tmpfs of diskMb); what its processes write counts against its memoryMb too",
    );
  }
  if (cg.support) warnings.push(...cg.support.warnings);
  else {
    warnings.push(
      `no cgroups (${cg.reason}): memoryMb, vcpus and maxProcesses are not enforced, usage is summed from /proc, pause uses SIGSTOP`,
    );
  }
  return {
    tools,
    asRoot,
    tmpfs,
    portalBase: tmpfs ? portalBase : null,
    cgroups: cg.support,
    layout,
    seccomp,
    warnings,
  };
}

/** The committed filters (seccomp/generate.py), by Node's name for the architecture. */
const SECCOMP_FILES: Record<string, string> = { x64: 'x86_64.bpf', arm64: 'aarch64.bpf' };

async function loadSeccompFilter(): Promise<Buffer | null> {
  const file = SECCOMP_FILES[process.arch];
  if (!file) return null;
  const bpf = await readFile(new URL(`./seccomp/${file}`, import.meta.url));
  // A BPF program is a whole number of 8-byte instructions.
  if (bpf.length === 0 || bpf.length % 8 !== 0) throw new Error(`seccomp/${file} is not a BPF program`);
  return bpf;
}

/**
 * The capsule's /dev. bwrap's own (--dev) brings a devpts, and to mount it
 * unprivileged bwrap stays uid 0 in its user namespace and then nests a
 * second one for the sandbox, which nsenter, not root, cannot join past. So
 * without root /dev is put together by hand, without /dev/pts.
 */
export function devArgs(asRoot: boolean): string[] {
  if (asRoot) return ['--dev', '/dev'];
  const args = ['--tmpfs', '/dev'];
  for (const node of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
    args.push('--dev-bind', `/dev/${node}`, `/dev/${node}`);
  }
  const links: Record<string, string> = {
    fd: '/proc/self/fd',
    stdin: '/proc/self/fd/0',
    stdout: '/proc/self/fd/1',
    stderr: '/proc/self/fd/2',
  };
  for (const [name, target] of Object.entries(links)) args.push('--symlink', target, `/dev/${name}`);
  args.push('--dir', '/dev/shm');
  return args;
}

async function makePortalBase(): Promise<string | null> {
  for (const base of PORTAL_BASES) {
    try {
      await mkdir(base, { recursive: true, mode: 0o711 });
      // Searchable by every capsule uid on the way down, listable by none.
      for (let dir = base; dir !== path.dirname(dir) && dir.includes('paddock'); dir = path.dirname(dir)) {
        await chmod(dir, 0o711);
      }
      return base;
    } catch {
      // try the next
    }
  }
  return null;
}

/** Whether this host may mount a tmpfs (root without CAP_SYS_ADMIN, in a container, may not). */
async function probeTmpfs(baseDir: string | undefined): Promise<boolean> {
  const parent = baseDir ?? tmpdir();
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, '.tmpfs-probe-'));
  try {
    const mounted = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    if (mounted.code !== 0) return false;
    await runCommand('umount', [dir]);
    return true;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

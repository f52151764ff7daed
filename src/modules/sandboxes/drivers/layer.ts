import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  readFile,
  readlink,
  statfs,
  symlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from './proc.ts';
import { DriverError } from './types.ts';

// A capsule's writable layer: the tree bwrap binds as the capsule's "/". On
// a root host it is a tmpfs of diskMb (the kernel answers ENOSPC past it);
// otherwise a plain directory. bwrap runs unprivileged and cannot create
// anything in a root-owned tree, so every mount point and file the capsule
// expects is laid out here before it starts.

/** How the host lays out /: on merged-/usr systems bin, lib … are symlinks into usr. */
export interface HostLayout {
  /** Top-level links to recreate as they are (name → target), e.g. bin → usr/bin. */
  links: Record<string, string>;
  /** Top-level directories outside /usr that must be bound read-only (a system without merged /usr). */
  dirs: string[];
  /** /etc directories bound read-only into the capsule when the host has them (certificates, alternatives). */
  etcBinds: string[];
  /** Small /etc files copied into every new layer (the loader cache, shell startup files …). */
  etcCopies: string[];
}

const TOP_LEVEL = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
const ETC_BINDS = ['ssl', 'ca-certificates', 'alternatives'];
const ETC_COPIES = [
  'ld.so.cache',
  'nsswitch.conf',
  'bash.bashrc',
  'profile',
  'inputrc',
  'localtime',
  'mime.types',
];

export async function detectHostLayout(): Promise<HostLayout> {
  const layout: HostLayout = { links: {}, dirs: [], etcBinds: [], etcCopies: [] };
  for (const name of TOP_LEVEL) {
    const st = await lstat(`/${name}`).catch(() => null);
    if (st?.isSymbolicLink()) layout.links[name] = await readlink(`/${name}`);
    else if (st?.isDirectory()) layout.dirs.push(name);
  }
  for (const name of ETC_BINDS) {
    if ((await lstat(`/etc/${name}`).catch(() => null))?.isDirectory()) layout.etcBinds.push(name);
  }
  for (const name of ETC_COPIES) {
    if (await lstat(`/etc/${name}`).catch(() => null)) layout.etcCopies.push(name);
  }
  return layout;
}

/** Mount points of the capsule that are not part of its layer (what file operations refuse). */
export function systemMounts(layout: HostLayout): string[] {
  return [
    '/usr',
    '/proc',
    '/dev',
    '/run',
    ...layout.dirs.map((d) => `/${d}`),
    ...layout.etcBinds.map((d) => `/etc/${d}`),
  ];
}

export interface LayerSpec {
  root: string;
  diskMb: number;
  owner: { uid: number; gid: number };
  /** Whether Paddock runs as root (it then owns the skeleton and chowns what belongs to the user). */
  asRoot: boolean;
  templateDir: string | null;
  network: boolean;
  layout: HostLayout;
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'user:x:1000:1000::/home/user:/bin/bash',
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'user:x:1000:', 'nogroup:x:65534:', ''].join('\n');
const HOSTS = '127.0.0.1\tlocalhost capsule\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/** Creates the layer's directory and, with `tmpfs`, mounts a tmpfs of `diskMb` on it (the disk quota). */
export async function mountLayer(root: string, tmpfs: boolean, diskMb: number): Promise<void> {
  await mkdir(root, { recursive: true });
  if (!tmpfs) return;
  // nosuid, nodev: nothing in the layer may grant privileges or reach a device.
  const options = `size=${Math.max(1, Math.round(diskMb))}m,mode=755,nosuid,nodev`;
  const mounted = await runCommand('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', root]);
  if (mounted.code !== 0) {
    throw new DriverError('failed', `cannot mount the capsule's tmpfs: ${mounted.stderr.trim()}`);
  }
}

/** Fills a mounted layer: the template's tree (owned anew), then whatever of the skeleton is missing. */
export async function fillLayer(spec: LayerSpec): Promise<void> {
  const { root } = spec;
  if (spec.templateDir) {
    const copied = await runCommand('cp', ['-a', '--reflink=auto', `${spec.templateDir}/.`, `${root}/`]);
    if (copied.code !== 0) {
      if (/No space left/i.test(copied.stderr)) {
        throw new DriverError('no_space', `the template does not fit in ${spec.diskMb} MB`);
      }
      throw new DriverError('failed', `cannot copy the template: ${copied.stderr.trim()}`);
    }
    if (spec.asRoot) {
      // What a previous capsule's user owned (a snapshot's home, /tmp …) now
      // belongs to this capsule's uid; what root owned stays root's.
      const { uid, gid } = spec.owner;
      const fixed = await runCommand('find', [
        root,
        '-xdev',
        '(',
        '!',
        '-uid',
        '0',
        '-o',
        '!',
        '-gid',
        '0',
        ')',
        '-exec',
        'chown',
        '-h',
        `${uid}:${gid}`,
        '{}',
        '+',
      ]);
      if (fixed.code !== 0) {
        throw new DriverError('failed', `cannot set the template's owner: ${fixed.stderr.trim()}`);
      }
    }
  }
  await layOutSkeleton(spec);
}

async function missing(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => null)) === null;
}

async function ensureDir(p: string, mode: number, owner: { uid: number; gid: number } | null): Promise<void> {
  if (!(await missing(p))) return;
  await mkdir(p, { mode });
  await chmod(p, mode); // mkdir's mode goes through the umask
  if (owner) await chown(p, owner.uid, owner.gid);
}

async function ensureFile(p: string, content: string): Promise<void> {
  await writeFile(p, content, { flag: 'wx', mode: 0o644 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

async function layOutSkeleton(spec: LayerSpec): Promise<void> {
  const { root, layout } = spec;
  const userOwner = spec.asRoot ? spec.owner : null;
  const at = (p: string) => path.join(root, p);
  await Promise.all(['etc', 'usr', 'proc', 'dev', 'run', 'home'].map((d) => ensureDir(at(d), 0o755, null)));
  await Promise.all([
    ensureDir(at('tmp'), 0o1777, null),
    ensureDir(at('home/user'), 0o755, userOwner),
    ensureDir(at('workspace'), 0o755, userOwner),
    ...layout.dirs.map((d) => ensureDir(at(d), 0o755, null)),
    ...layout.etcBinds.map((d) => ensureDir(at(`etc/${d}`), 0o755, null)),
    ...Object.entries(layout.links).map(async ([name, target]) => {
      if (await missing(at(name))) await symlink(target, at(name));
    }),
    ensureFile(at('etc/passwd'), PASSWD),
    ensureFile(at('etc/group'), GROUP),
    ensureFile(at('etc/hosts'), HOSTS),
    ensureFile(at('etc/hostname'), 'capsule\n'),
    ...layout.etcCopies.map(async (name) => {
      const dest = at(`etc/${name}`);
      if (!(await missing(dest))) return;
      const st = await lstat(`/etc/${name}`).catch(() => null);
      if (st?.isSymbolicLink()) await symlink(await readlink(`/etc/${name}`), dest);
      else if (st?.isFile()) await copyFile(`/etc/${name}`, dest);
    }),
    spec.network
      ? readFile('/etc/resolv.conf', 'utf8')
          .catch(() => '')
          .then((text) => ensureFile(at('etc/resolv.conf'), text))
      : Promise.resolve(),
  ]);
}

/** Whether `p` is a mount point of the host's mount namespace. */
export async function isMountPoint(p: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const target = path.resolve(p);
  return info.split('\n').some((line) => unescapeMountPath(line.split(' ')[4] ?? '') === target);
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Unmounts the layer's tmpfs; lazily when something still holds it. */
export async function unmountLayer(root: string): Promise<void> {
  if (!(await isMountPoint(root))) return;
  const plain = await runCommand('umount', [root]);
  if (plain.code === 0) return;
  const lazy = await runCommand('umount', ['-l', root]);
  if (lazy.code !== 0) {
    throw new Error(`cannot unmount ${root}: ${lazy.stderr.trim() || plain.stderr.trim()}`);
  }
}

/** Bytes used in the layer: the tmpfs's own count, or a walk of a plain directory. */
export async function layerUsage(root: string, tmpfs: boolean): Promise<number> {
  if (tmpfs) {
    const st = await statfs(root);
    return (st.blocks - st.bfree) * st.bsize;
  }
  // Without a tmpfs the size is a walk of the tree (du): metrics read it every few seconds, so a
  // reading is reused for a while rather than walking every capsule's tree each round.
  const cached = duCache.get(root);
  if (cached && Date.now() - cached.at < DU_REUSE_MS) return cached.bytes;
  const du = await runCommand('du', ['-s', '-B1', '-x', root]);
  const bytes = Number(du.stdout.split(/\s/)[0]) || 0;
  if (duCache.size > 10_000) duCache.clear();
  duCache.set(root, { at: Date.now(), bytes });
  return bytes;
}

const DU_REUSE_MS = 30_000;
const duCache = new Map<string, { at: number; bytes: number }>();

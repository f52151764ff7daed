import { type ChildProcess, spawn } from 'node:child_process';
import { chown, lstat, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { BwrapCapsule, DRIVER_PIDS } from './bwrap-capsule.ts';
import { type BwrapHost, currentGid, currentUid, devArgs, probeBwrapHost } from './bwrap-host.ts';
import { CapsuleFs } from './capsule-fs.ts';
import { type CapsuleState, readState, removeCapsule, writeState } from './capsule-state.ts';
import { CapsuleCgroups } from './cgroups.ts';
import { fillLayer, mountLayer, systemMounts } from './layer.ts';
import { openProxyForwarder, type ProxyForwarder } from './network.ts';
import { joinThenExec, LAUNCHER_PATH } from './nsproc.ts';
import { childrenOf, pidNamespaceOf, quietPipes, startTimeOf, waitFor } from './proc.ts';
import { Spawner } from './spawner.ts';
import type { CapsuleHandle, CapsuleSpec, Driver } from './types.ts';
import { DriverError } from './types.ts';
import { UidAllocator } from './uids.ts';

// The bubblewrap driver. A capsule is: a writable layer (tmpfs) bound as its
// "/", the host's /usr read-only over it, new namespaces of every kind (no
// network but its own loopback), a host uid of its own, and cgroups for
// memory, processes, CPU and freezing. Its init is `sleep infinity` under
// bwrap's reaper; every other process is forked into its namespaces by
// nsenter. What this machine cannot provide (no root, no cgroups) is said in
// `warnings`, and the rest still works.

export type { BwrapHost } from './bwrap-host.ts';

export class BwrapDriver implements Driver {
  readonly isolation = 'bwrap' as const;
  readonly warnings: string[];
  private readonly uids = new UidAllocator();
  private spawner: Spawner | null = null;

  constructor(private readonly host: BwrapHost) {
    this.warnings = host.warnings;
  }

  /** Launchers come from the spawner (started at the first, and again should it die). */
  private readonly launch = (argv: string[], env: Record<string, string>) => {
    if (!this.spawner?.alive) this.spawner = Spawner.start(this.host.tools.perl, this.host.asRoot);
    return this.spawner.spawn(argv, env);
  };

  /** Checks that bwrap works here (throws with the reason when it does not) and what can be enforced. */
  static probe(baseDir?: string): Promise<BwrapHost> {
    return probeBwrapHost(baseDir);
  }

  async create(spec: CapsuleSpec): Promise<CapsuleHandle> {
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(spec.id)) {
      throw new DriverError('failed', `capsule id ${JSON.stringify(spec.id)} is not a plain name`);
    }
    const { host } = this;
    const dir = path.resolve(spec.dir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const portal = host.portalBase ? path.join(host.portalBase, spec.id) : null;
    const root = portal ? path.join(portal, 'root') : path.join(dir, 'root');
    const cgroups = host.cgroups ? CapsuleCgroups.plan(host.cgroups, spec.id) : null;
    // A second create with the same id must fail here, before its cleanup
    // path could take the first capsule's layer down with it.
    if ((await readState(dir)) || (portal && (await lstat(portal).catch(() => null)))) {
      throw new DriverError('exists', `capsule ${spec.id} already has a directory; cleanup() it first`);
    }
    // Written before anything exists: whatever a crash leaves, cleanup() finds.
    const state: CapsuleState = {
      id: spec.id,
      uid: -1,
      tmpfs: host.tmpfs,
      layerRoot: root,
      portal,
      cgroups: cgroups?.state ?? null,
      bwrap: null,
    };
    await writeState(dir, state);

    let uid: number | null = null;
    let bwrap: ChildProcess | null = null;
    let forwarder: ProxyForwarder | null = null;
    try {
      // The uid search (a /proc scan) and the mount (an exec) overlap.
      const [allocated] = await Promise.all([
        host.asRoot ? this.uids.allocate(spec.id) : currentUid(),
        (async () => {
          if (portal) await mkdir(portal, { mode: 0o700 });
          await mountLayer(root, host.tmpfs, spec.limits.diskMb);
        })(),
      ]);
      uid = allocated;
      const gid = host.asRoot ? uid : currentGid();
      state.uid = uid;
      if (portal) {
        await chown(portal, uid, gid);
        await symlink(root, path.join(dir, 'root'));
      }
      await Promise.all([
        writeState(dir, state),
        fillLayer({
          root,
          diskMb: spec.limits.diskMb,
          owner: { uid, gid },
          asRoot: host.asRoot,
          templateDir: spec.templateDir,
          network: spec.network !== null,
          layout: host.layout,
        }),
        cgroups?.create(spec.limits, DRIVER_PIDS),
      ]);
      const started = await this.startInit(root, uid, gid, spec, cgroups);
      bwrap = started.bwrap;
      state.bwrap = { pid: bwrap.pid!, startTime: await startTimeOf(bwrap.pid!) };
      await writeState(dir, state);
      const pidNs = await pidNamespaceOf(started.initPid);
      if (!pidNs) throw new DriverError('failed', 'the capsule ended as it started');

      const baseEnv: Record<string, string> = {
        HOME: '/home/user',
        USER: 'user',
        LOGNAME: 'user',
        SHELL: '/bin/bash',
        PATH: '/usr/local/bin:/usr/bin:/bin',
        LANG: 'C.UTF-8',
      };
      if (spec.network) {
        forwarder = await openProxyForwarder(host.tools.nsenter, started.initPid, spec.network.proxyUrl);
        // curl and others read only the lower-case http_proxy; most read both.
        for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
          baseEnv[name] = forwarder.insideUrl;
        }
        baseEnv.NO_PROXY = baseEnv.no_proxy = 'localhost,127.0.0.1,::1';
      }
      const fs = new CapsuleFs({
        root,
        owner: host.asRoot ? { uid, gid } : null,
        userUid: uid,
        systemMounts: systemMounts(host.layout),
      });
      return new BwrapCapsule({
        id: spec.id,
        dir,
        root,
        state,
        tmpfs: host.tmpfs,
        limits: spec.limits,
        tools: host.tools,
        asRoot: host.asRoot,
        cgroups,
        fs,
        bwrap,
        reaperPid: started.reaperPid,
        initPid: started.initPid,
        pidNs,
        baseEnv,
        envs: spec.envs,
        seccomp: host.seccomp,
        forwarder,
        ended: started.ended,
        onDestroyed: () => this.uids.release(allocated),
        launch: this.launch,
      });
    } catch (err) {
      forwarder?.close();
      if (bwrap?.pid) bwrap.kill('SIGKILL');
      await removeCapsule(dir, state).catch(() => {});
      if (uid !== null) this.uids.release(uid);
      throw err;
    }
  }

  private async startInit(
    root: string,
    uid: number,
    gid: number,
    spec: CapsuleSpec,
    cgroups: CapsuleCgroups | null,
  ): Promise<{ bwrap: ChildProcess; reaperPid: number; initPid: number; ended: Promise<void> }> {
    const { host } = this;
    const binds: string[] = [];
    for (const dir of host.layout.dirs) binds.push('--ro-bind', `/${dir}`, `/${dir}`);
    for (const dir of host.layout.etcBinds) binds.push('--ro-bind', `/etc/${dir}`, `/etc/${dir}`);
    // Options go on fd 3 (--args) rather than argv: the command line of
    // bwrap, visible as pid 1 inside, then names no host path.
    const bwrapArgs = [
      '--unshare-all',
      '--unshare-user',
      // A user namespace of the capsule's own would hand its processes a full
      // set of capabilities there (and the kernel surface that comes with it).
      ...(host.asRoot ? ['--disable-userns'] : []),
      '--die-with-parent',
      '--new-session',
      '--uid',
      '1000',
      '--gid',
      '1000',
      '--hostname',
      'capsule',
      '--bind',
      root,
      '/',
      '--ro-bind',
      '/usr',
      '/usr',
      ...binds,
      '--proc',
      '/proc',
      ...devArgs(host.asRoot),
      '--tmpfs',
      '/run',
      '--chdir',
      '/home/user',
      '--setenv',
      'HOME',
      '/home/user',
      '--setenv',
      'PATH',
      '/usr/bin:/bin',
      // The init runs under the filter too (processes started later get it in their final step).
      ...(host.seccomp ? ['--seccomp', '4'] : []),
    ];
    const setpriv = host.asRoot
      ? [host.tools.setpriv, `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--']
      : [];
    const argv = joinThenExec(cgroups?.procsFiles ?? [], spec.limits.maxOpenFiles, [
      ...setpriv,
      host.tools.bwrap,
      '--args',
      '3',
      // The command cannot come through --args: bwrap reads only options there.
      '--',
      'sleep',
      'infinity',
    ]);
    // A fixed environment and "/" as the working directory: bwrap's reaper is
    // pid 1 inside, and its environment (/proc/1/environ) is readable there.
    // Ended before it has read its options or filter (the capsule destroyed
    // as it starts), it leaves those pipes a reset: its exit is the news.
    const bwrap = quietPipes(
      spawn(host.tools.sh, argv, {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
        env: { PATH: LAUNCHER_PATH },
        cwd: '/',
        ...(host.asRoot ? { uid: 0, gid: 0 } : {}),
      }),
    );
    (bwrap.stdio[3] as Writable).end(`${bwrapArgs.join('\0')}\0`);
    (bwrap.stdio[4] as Writable).end(host.seccomp ?? Buffer.alloc(0));
    let stderr = '';
    bwrap.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    let exited = false;
    const ended = new Promise<void>((resolve) => {
      bwrap.on('exit', () => {
        exited = true;
        resolve();
      });
      bwrap.on('error', () => {
        exited = true;
        resolve();
      });
    });
    const found = await waitFor(
      async () => {
        if (exited) throw new DriverError('failed', `bwrap exited: ${stderr.trim() || 'no message'}`);
        const [reaperPid] = await childrenOf(bwrap.pid!);
        if (reaperPid === undefined) return null;
        const [initPid] = await childrenOf(reaperPid);
        return initPid === undefined ? null : { reaperPid, initPid };
      },
      10_000,
      'the capsule to start',
    ).catch((err) => {
      bwrap.kill('SIGKILL');
      throw err;
    });
    return { bwrap, ended, ...found };
  }

  async cleanup(dir: string): Promise<void> {
    const resolved = path.resolve(dir);
    const state = await readState(resolved);
    if (state?.bwrap) {
      // Only the very process written down: its start time tells a reused pid apart.
      const { pid, startTime } = state.bwrap;
      if (startTime !== null && (await startTimeOf(pid)) === startTime) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    await removeCapsule(resolved, state);
  }
}

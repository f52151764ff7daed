import { childrenOf, cmdlineOf, innermostPid, pidNamespaceOf, statusOf, waitFor } from './proc.ts';

// Command lines that start processes in a bwrap capsule, and finding them
// afterwards. Every host process of a capsule starts as `/bin/sh` running
// JOIN_SCRIPT: it writes its own pid to each of the capsule's cgroup.procs
// files and sets RLIMIT_NOFILE, then execs the real launcher. So not one
// instruction of the capsule's runs outside its cgroups, and the limit holds
// from the first exec. (Written as shell so that joining costs no extra exec.)

const JOIN_SCRIPT = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; n=$((n - 1)); shift; done',
  'ulimit -n "$1" || exit 126; shift',
  'exec "$@"',
].join('\n');

export interface HostTools {
  sh: string;
  bwrap: string;
  nsenter: string;
  setpriv: string;
  setsid: string;
}

/** argv (after /bin/sh) that joins the cgroups, sets the open-files limit and execs `command`. */
export function joinThenExec(procsFiles: string[], maxOpenFiles: number, command: string[]): string[] {
  return [
    '-c',
    JOIN_SCRIPT,
    'paddock-join',
    String(procsFiles.length),
    ...procsFiles,
    String(maxOpenFiles),
    ...command,
  ];
}

/** Inside the capsule: cd, then exec the command (a missing command exits 127, as in a shell). */
const CD_THEN_EXEC = 'cd "$1" && shift && exec "$@"';

/**
 * nsenter into every namespace of the capsule's init (with -p it forks, so
 * the process is born inside the pid namespace), become the capsule user,
 * forbid privilege gains for good, cd and exec.
 *
 * On a terminal, the launcher (made session leader by the pty spawn) owns
 * it, and from inside the capsule that session is out of sight: a shell's
 * job control fails against it ("Cannot set tty process group"). So, when
 * Paddock is root, the process first makes a session of its own inside the
 * pid namespace and takes the terminal over (setsid --ctty: stealing a
 * terminal needs host root, which it still is at that point), and only then
 * enters the user namespace.
 *
 * Not root, the launcher is the capsule's uid already: it keeps its
 * credentials (a setgroups call is refused in bwrap's user namespace).
 */
export function enterCapsule(
  tools: HostTools,
  initHostPid: number,
  command: { cwd: string; cmd: string; args: string[] },
  mode: { terminal: boolean; asRoot: boolean },
): string[] {
  const asUser = mode.asRoot ? ['-S', '1000', '-G', '1000', '--'] : ['--preserve-credentials', '--'];
  const run = [
    // Resolved inside the capsule: its /usr is the host's, read-only.
    tools.setpriv,
    '--no-new-privs',
    '--inh-caps=-all',
    '--',
    '/bin/sh',
    '-c',
    CD_THEN_EXEC,
    'sh',
    command.cwd,
    command.cmd,
    ...command.args,
  ];
  const target = ['-t', String(initHostPid)];
  const namespaces = ['-m', '-u', '-i', '-n', '-p', '-r', '-w'];
  if (!(mode.terminal && mode.asRoot)) {
    return [tools.nsenter, ...target, '-U', ...namespaces, ...asUser, ...run];
  }
  return [
    tools.nsenter,
    ...target,
    ...namespaces,
    '--',
    tools.setsid,
    '--ctty',
    '--',
    // Now inside the capsule's mounts: its /proc, where the init is pid 2.
    tools.nsenter,
    '--user=/proc/2/ns/user',
    ...asUser,
    ...run,
  ];
}

/** Whether argv is one of the steps on the way to the command (see enterCapsule). */
function onTheWay(tools: HostTools, argv: string[]): boolean {
  // Read in the middle of an exec, the command line can come back empty.
  if (argv.length === 0) return true;
  const first = argv[0];
  if (first === tools.setpriv || first === tools.setsid || first === tools.nsenter) return true;
  return argv[1] === '-c' && argv[2] === CD_THEN_EXEC;
}

/**
 * Waits for the launcher (nsenter, host pid given) to fork the process into
 * the pid namespace `pidNs`, and answers its host pid and capsule pid; null
 * when the launcher exits first (it could not enter the capsule).
 */
export async function locateForked(
  launcherPid: number,
  pidNs: string,
  tools: HostTools,
  timeoutMs = 5_000,
): Promise<{ hostPid: number; capsulePid: number } | null> {
  return waitFor(
    async () => {
      for (const child of await childrenOf(launcherPid)) {
        if ((await pidNamespaceOf(child)) !== pidNs) continue;
        const status = await statusOf(child);
        const capsulePid = status ? innermostPid(status) : null;
        if (capsulePid === null) continue;
        // Started means running the command itself, not still on the way to
        // it (setpriv, then the cd): what processes() lists and what signals hit.
        const gone = /^State:\s*Z/m.test(status!);
        if (gone || !onTheWay(tools, await cmdlineOf(child))) return { hostPid: child, capsulePid };
      }
      // Gone before it forked: say so instead of waiting out the timeout.
      const launcher = await statusOf(launcherPid);
      if (launcher === null || /^State:\s*Z/m.test(launcher)) return false;
      return null;
    },
    timeoutMs,
    'the process to start in the capsule',
  ).then((found) => found || null);
}

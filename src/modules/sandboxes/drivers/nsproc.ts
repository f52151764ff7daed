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
  /** Starts bwrap as the capsule's uid (root hosts). */
  setpriv: string;
  setsid: string;
  /** Runs the last step inside the capsule (FINAL_STEP); under /usr, so the capsule sees it too. */
  perl: string;
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

/** The search path of every launcher; nothing else of the host's environment reaches one. */
export const LAUNCHER_PATH = '/usr/bin:/bin';
/** Launcher variables that carry the capsule process's environment, hex-encoded, in pieces. */
const CARRIER = 'PADDOCK_ENV_';
/** Below the kernel's limit on one environment string (MAX_ARG_STRLEN, 128 KiB). */
const CARRIER_PIECE = 100_000;

/**
 * The environment a launcher starts with. Launchers are host processes (root
 * when Paddock is): the shell that joins the cgroups, nsenter, setsid. A
 * variable the caller names (LD_PRELOAD, GCONV_PATH, LOCPATH …) would be read
 * by them or by the C library they load, so the caller's environment travels
 * only as data, in variables none of them reads, and becomes an environment
 * in FINAL_STEP, inside the capsule, after privileges are gone.
 */
export function launcherEnv(
  capsuleEnv: Record<string, string>,
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = { ...extra, PATH: LAUNCHER_PATH };
  const flat = Object.entries(capsuleEnv)
    .map(([name, value]) => `${name}=${value}\0`)
    .join('');
  const hex = Buffer.from(flat, 'utf8').toString('hex');
  for (let i = 0, at = 0; at < hex.length; i++, at += CARRIER_PIECE) {
    env[`${CARRIER}${i}`] = hex.slice(at, at + CARRIER_PIECE);
  }
  return env;
}

/** System call numbers FINAL_STEP needs, by Node's name for the architecture. */
const SYSCALLS: Record<string, { prctl: number; capset: number }> = {
  x64: { prctl: 157, capset: 126 },
  arm64: { prctl: 167, capset: 91 },
};

/**
 * The last step before the command, in the capsule as its user: no privilege
 * gain from here on (no_new_privs), no capability left in any set, the
 * seccomp filter (argument 1, hex; empty for none), then the environment
 * carried by launcherEnv, cd (argument 2) and exec. Perl, because it makes
 * these system calls without a compiler and perl-base is part of every
 * Debian and Ubuntu system. Exits as a shell would: 2 when the directory
 * cannot be entered, 127 for a command not found, 126 otherwise.
 *
 * The standby form (a launcher started ahead, see BwrapCapsule.standBy)
 * drops its privileges alike, then waits for its command on stdin:
 * `commandFrame()`, which it reads exactly, so the command's own input stays
 * in the pipe for it. A frame is read only after the drop: the caller's data
 * reaches no process that still holds a privilege, as in the other form.
 */
/** Hex digits of a command frame's length. */
const FRAME_LENGTH_DIGITS = 8;

const finalSteps = new Map<string, string>();
function finalStep(arch: string, standby: boolean): string {
  const key = `${arch}:${standby ? 'standby' : 'argv'}`;
  let script = finalSteps.get(key);
  if (script === undefined) {
    script = writeFinalStep(arch, standby);
    finalSteps.set(key, script);
  }
  return script;
}

function writeFinalStep(arch: string, standby: boolean): string {
  const nr = SYSCALLS[arch];
  if (!nr) throw new Error(`no system call table for ${arch}`);
  const dropPrivileges = [
    'my $f = pack("H*", shift);',
    'sub fail { print STDERR "paddock: $_[0]: $!\\n"; exit 126 }',
    `syscall(${nr.prctl}, 38, 1, 0, 0, 0) == 0 or fail("no_new_privs");`,
    // In variables: a constant pack() is folded into a read-only value, which syscall() refuses.
    'my ($h, $c) = (pack("Ll", 0x20080522, 0), pack("L6", (0) x 6));',
    `syscall(${nr.capset}, $h, $c) == 0 or fail("capset");`,
    `!length($f) or syscall(${nr.prctl}, 22, 2, pack("S x![P] P", length($f) / 8, $f)) == 0 or fail("seccomp");`,
  ];
  const command = standby
    ? [
        // Exactly the frame's bytes (its length first): the rest of stdin is the command's.
        // End of input before a whole frame: the launcher was let go unused.
        'sub take { my ($want, $got) = (shift, ""); while (length($got) < $want) { sysread(STDIN, $got, $want - length($got), length($got)) or exit 0 } $got }',
        `my ($d, $e, @cmd) = map { pack("H*", $_) } split / /, take(hex(take(${FRAME_LENGTH_DIGITS}))), -1;`,
        '@ARGV = @cmd;',
      ]
    : [
        'my $d = shift;',
        `my $e = pack("H*", join "", map { $ENV{"${CARRIER}$_"} } grep { exists $ENV{"${CARRIER}$_"} } 0 .. 99);`,
      ];
  return [
    ...dropPrivileges,
    ...command,
    '%ENV = map { split /=/, $_, 2 } grep { length } split /\\0/, $e;',
    'chdir $d or do { print STDERR "cd: $d: $!\\n"; exit 2 };',
    'exec { $ARGV[0] } @ARGV;',
    // ENOENT is 2 on Linux; naming it through %! would load Errno.pm on every start.
    'my $missing = $! == 2;',
    'print STDERR "$ARGV[0]: ", ($missing ? "not found" : "$!"), "\\n";',
    'exit($missing ? 127 : 126);',
  ].join('\n');
}

/**
 * What a standby launcher runs (see finalStep): the directory, the
 * environment and the command, each hex-encoded, after the frame's length.
 */
export function commandFrame(
  env: Record<string, string>,
  command: { cwd: string; cmd: string; args: string[] },
): string {
  const flat = Object.entries(env)
    .map(([name, value]) => `${name}=${value}\0`)
    .join('');
  const hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');
  const body = [hex(command.cwd), hex(flat), hex(command.cmd), ...command.args.map(hex)].join(' ');
  return `${body.length.toString(16).padStart(FRAME_LENGTH_DIGITS, '0')}${body}`;
}

export interface CapsuleEntry {
  /** Host pid of the capsule's init, whose namespaces the process joins. */
  initHostPid: number;
  /** The seccomp filter (BPF) the process runs under; null for none. */
  seccomp: Buffer | null;
}

/**
 * nsenter into every namespace of the capsule's init (with -p it forks, so
 * the process is born inside the pid namespace), become the capsule user,
 * then FINAL_STEP.
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
  entry: CapsuleEntry,
  /** null: a standby launcher, whose command comes later on its stdin (commandFrame). */
  command: { cwd: string; cmd: string; args: string[] } | null,
  mode: { terminal: boolean; asRoot: boolean },
): string[] {
  const asUser = mode.asRoot ? ['-S', '1000', '-G', '1000', '--'] : ['--preserve-credentials', '--'];
  const run = [
    // Resolved inside the capsule: its /usr is the host's, read-only.
    tools.perl,
    '-e',
    finalStep(process.arch, command === null),
    entry.seccomp?.toString('hex') ?? '',
    ...(command ? [command.cwd, command.cmd, ...command.args] : []),
  ];
  const target = ['-t', String(entry.initHostPid)];
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
  return first === tools.perl || first === tools.setsid || first === tools.nsenter;
}

/**
 * Waits for the launcher (nsenter, host pid given) to fork a process into the
 * pid namespace `pidNs` that `accept` takes (answering what to return, or
 * null to look again); null when the launcher exits first (it could not
 * enter the capsule).
 */
async function forkedInto<T>(
  launcherPid: number,
  pidNs: string,
  accept: (child: number) => Promise<T | null>,
  timeoutMs: number,
  what: string,
): Promise<T | null> {
  return waitFor(
    async () => {
      for (const child of await childrenOf(launcherPid)) {
        if ((await pidNamespaceOf(child)) !== pidNs) continue;
        const found = await accept(child);
        if (found !== null) return found;
      }
      // Gone before it forked: say so instead of waiting out the timeout.
      const launcher = await statusOf(launcherPid);
      if (launcher === null || /^State:\s*Z/m.test(launcher)) return false as const;
      return null;
    },
    timeoutMs,
    what,
  ).then((found) => (found === false ? null : found));
}

/** The process a launcher forked into the capsule, once it runs its command: its host pid and capsule pid. */
export function locateForked(
  launcherPid: number,
  pidNs: string,
  tools: HostTools,
  timeoutMs = 5_000,
): Promise<{ hostPid: number; capsulePid: number } | null> {
  return forkedInto(
    launcherPid,
    pidNs,
    async (child) => {
      const status = await statusOf(child);
      const capsulePid = status ? innermostPid(status) : null;
      if (capsulePid === null) return null;
      // Started means running the command itself, not still on the way to
      // it (the final step): what processes() lists and what signals hit.
      const gone = /^State:\s*Z/m.test(status!);
      return gone || !onTheWay(tools, await cmdlineOf(child)) ? { hostPid: child, capsulePid } : null;
    },
    timeoutMs,
    'the process to start in the capsule',
  );
}

/** The host pid of the process a launcher forked into the capsule, at whatever step it is (a standby's). */
export function forkedChild(launcherPid: number, pidNs: string, timeoutMs = 10_000): Promise<number | null> {
  return forkedInto(launcherPid, pidNs, async (child) => child, timeoutMs, 'a launcher to enter the capsule');
}

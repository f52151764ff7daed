#!/usr/bin/python3
"""Writes the seccomp filters every bwrap capsule process runs under.

The filters are compiled by libseccomp (Debian: python3-seccomp) and
committed beside this file, one per host architecture, so that hosts need
neither libseccomp's Python binding nor a compiler. CI runs this with
--check to prove the committed files are what this policy compiles to.

    /usr/bin/python3 generate.py          # rewrite x86_64.bpf and aarch64.bpf
    /usr/bin/python3 generate.py --check  # exit 1 if they differ

The policy is a deny list: everything a capsule never needs and that widens
the kernel surface it can reach answers EPERM; the rest is allowed. Each
group says why it is here (docs/sandboxes.md has the same list).
"""

import errno
import os
import sys
import tempfile

import seccomp

DENIED = {
    # Inspecting or steering other processes: the capsule's pid namespace
    # holds root-owned launchers for a moment while they enter it.
    "process inspection": [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
    ],
    # Kernel code and machine state.
    "kernel and machine": [
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "syslog",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "iopl",
        "ioperm",
        "quotactl",
        "quotactl_fd",
        "lookup_dcookie",
        "nfsservctl",
        "uselib",
        "vhangup",
    ],
    # File handles open files by inode number, past every mount and path
    # check (the classic container escape).
    "file handles": ["open_by_handle_at", "name_to_handle_at"],
    # Large kernel interfaces with a long record of privilege escalations.
    "kernel attack surface": [
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ],
    # Kernel keyrings are not namespaced.
    "keyrings": ["keyctl", "add_key", "request_key"],
    # The capsule's mounts are made by bwrap before the filter applies;
    # nothing inside may change them.
    "mounts": [
        "mount",
        "umount",
        "umount2",
        "pivot_root",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ],
}

# Typing into a terminal's input queue (TIOCSTI) or the console (TIOCLINUX)
# could reach a terminal outside the capsule.
DENIED_IOCTLS = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}

# Per host architecture: the 32-bit ABIs its kernel may also run, filtered
# alike rather than killed.
TARGETS = {
    "x86_64": [seccomp.Arch.X86_64, seccomp.Arch.X86, seccomp.Arch.X32],
    "aarch64": [seccomp.Arch.AARCH64, seccomp.Arch.ARM],
}

HERE = os.path.dirname(os.path.abspath(__file__))


def build(target):
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    # The filter starts with this machine's arch: replace it with the target's.
    for arch in TARGETS[target]:
        if not f.exist_arch(arch):
            f.add_arch(arch)
    if os.uname().machine != target:
        f.remove_arch(seccomp.Arch.NATIVE)
    deny = seccomp.ERRNO(errno.EPERM)
    for names in DENIED.values():
        for name in names:
            try:
                f.add_rule(deny, name)
            except (RuntimeError, ValueError):
                # Not a syscall on these architectures (umount on aarch64 …).
                pass
    for request in DENIED_IOCTLS.values():
        f.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return f


def write(target, path):
    with open(path, "wb") as out:
        build(target).export_bpf(out)


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for target in TARGETS:
        committed = os.path.join(HERE, f"{target}.bpf")
        if not check:
            write(target, committed)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            fresh = os.path.join(tmp, f"{target}.bpf")
            write(target, fresh)
            with open(fresh, "rb") as a, open(committed, "rb") as b:
                if a.read() != b.read():
                    stale.append(committed)
    if stale:
        print("out of date (run generate.py):", " ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

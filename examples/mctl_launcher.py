"""A launcher sets a THP policy for the workloads it starts, three ways: not at all,
with the merged PR_SET_THP_DISABLE, and with the proposed mctl(MCTL_SET_DEFAULT_EXEC).
Each workload is a fork + exec of a real binary that then maps and faults 16 MiB of
anonymous memory, half of it madvise(MADV_HUGEPAGE)d; we print its AnonHugePages.

Run: python examples/mctl_launcher.py
"""

import shutil

import mmsim
from mmsim.uapi import (MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE, MCTL_SET_DEFAULT_EXEC,
                        MCTL_SET_HUGEPAGE, MCTL_SET_NOHUGEPAGE, PIDFD_SELF, PR_SET_THP_DISABLE,
                        PR_THP_DISABLE_EXCEPT_ADVISED, PROT_READ, PROT_WRITE)

WORKLOAD = shutil.which("true") or "/usr/bin/true"
SIZE = 16 << 20

SETTINGS = {
    "no setting": lambda p: None,
    "prctl THP_DISABLE": lambda p: p.prctl(PR_SET_THP_DISABLE, 1),
    "prctl EXCEPT_ADVISED": lambda p: p.prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED),
    "mctl NOHUGEPAGE+EXEC": lambda p: p.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC),
    "mctl HUGEPAGE+EXEC": lambda p: p.mctl(PIDFD_SELF, MCTL_SET_HUGEPAGE, MCTL_SET_DEFAULT_EXEC),
}


def anon_huge_kb(kernel, pid):
    text = kernel.proc_read(f"/proc/{pid}/smaps")
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith("AnonHugePages:"))


def run(mode, name, setting):
    k = mmsim.Kernel(thp=mode, seed=1)
    launcher = k.spawn(WORKLOAD)
    setting(launcher)
    worker = launcher.fork()
    worker.execve(WORKLOAD)
    a = worker.mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    worker.madvise(a, SIZE // 2, MADV_HUGEPAGE)       # the workload asks for THP on half
    worker.touch(a, SIZE, write=True)
    return anon_huge_kb(k, worker.pid)


def main():
    modes = ["always", "madvise", "never"]
    print(f"AnonHugePages (kB) of a workload faulting {SIZE >> 20} MiB, half of it MADV_HUGEPAGE,")
    print("started by a launcher with each setting, per THP sysfs mode:\n")
    print(f"{'launcher setting':<24}" + "".join(f"{m:>10}" for m in modes))
    for name, setting in SETTINGS.items():
        print(f"{name:<24}" + "".join(f"{run(m, name, setting):>10}" for m in modes))


if __name__ == "__main__":
    main()

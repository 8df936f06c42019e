"""Issue 11, part 1: calls whose answer differed from the kernel's.  Every case runs the
same calls on mmsim and, where the live kernel is Linux 6.x, in a forked child of the
test process (raw syscalls through ctypes), and the two answers must agree; the
expected answers written here are the ones Linux 6.18 gave on the reference machine."""

import ctypes
import errno
import os

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.mm import TASK_SIZE
from mmsim.testing import errno_of
from mmsim.uapi import (CLONE_FILES, CLONE_FS, CLONE_NEWNS, CLONE_NEWUSER, CLONE_SIGHAND,
                        CLONE_THREAD, CLONE_VM, MADV_HWPOISON, MADV_SOFT_OFFLINE,
                        MAP_32BIT, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_HUGE_SHIFT,
                        MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE,
                        MREMAP_MAYMOVE, PR_CAPBSET_READ, PR_GET_DUMPABLE, PR_GET_MDWE,
                        PR_GET_MEMORY_MERGE, PR_GET_NO_NEW_PRIVS, PR_MDWE_NO_INHERIT,
                        PR_MDWE_REFUSE_EXEC_GAIN, PR_SET_MDWE, PR_SET_MEMORY_MERGE,
                        PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, PROT_EXEC, PROT_NONE, PROT_READ,
                        PROT_WRITE, WEXITED, WNOHANG)

P = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
LIVE = live.available()[0] and os.geteuid() == 0
SYS = {"mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "mremap": 25, "madvise": 28,
       "clone": 56, "wait4": 61, "setuid": 105, "setgid": 106, "prctl": 157,
       "unshare": 272, "pidfd_open": 434}


class LiveProc:
    """Raw syscalls in the current (forked) process, answered the way Process answers:
    the value, or OSError with the errno."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.pid = os.getpid()

    def _sc(self, name, *args):
        r = self.libc.syscall(ctypes.c_long(SYS[name]),
                              *[ctypes.c_ulong(a & (2**64 - 1)) for a in args])
        if r == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return r

    def __getattr__(self, name):
        return lambda *args: self._sc(name, *args)

    def wait4(self, pid=-1, options=0):
        return self._sc("wait4", pid, 0, options, 0)

    def clone(self, flags):
        return self._sc("clone", flags, 0, 0, 0, 0)


def outcome(fn, *args):
    """'ok' if the call succeeds, else the errno's name."""
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def mdwe_steps(p):
    a = p.mmap(0, 2 * P, RW, ANON, -1, 0)
    x = p.mmap(0, P, PROT_READ | PROT_EXEC, ANON, -1, 0)
    n = p.mmap(0, P, PROT_NONE, ANON, -1, 0)
    return [outcome(p.prctl, PR_SET_MDWE, PR_MDWE_NO_INHERIT, 0, 0, 0),   # needs REFUSE
            outcome(p.prctl, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0),
            p.prctl(PR_GET_MDWE, 0, 0, 0, 0),
            outcome(p.prctl, PR_SET_MDWE, 0, 0, 0, 0),                    # cannot clear
            outcome(p.prctl, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN | PR_MDWE_NO_INHERIT, 0, 0, 0),
            outcome(p.mmap, 0, P, RW | PROT_EXEC, ANON, -1, 0),
            outcome(p.mmap, 0, P, PROT_READ | PROT_EXEC, ANON, -1, 0),
            outcome(p.mprotect, a, P, PROT_READ | PROT_EXEC),             # gains exec
            outcome(p.mprotect, x, P, PROT_READ),
            outcome(p.mprotect, x, P, PROT_READ | PROT_EXEC),             # exec lost above
            outcome(p.mprotect, n, P, PROT_EXEC)]


def cases():
    """name -> (steps, the answer Linux 6.18 gave)."""
    return {
        "mmap of a pidfd": (lambda p: outcome(p.mmap, 0, P, PROT_READ, MAP_PRIVATE,
                                              p.pidfd_open(p.pid, 0), 0), "ENODEV"),
        "brk(2**64-1) and brk(1<<47) keep the break": (
            lambda p: [p.brk(2**64 - 1) == p.brk(0), p.brk(1 << 47) == p.brk(0)], [True, True]),
        "mremap to more than TASK_SIZE": (
            lambda p: [outcome(p.mremap, p.mmap(0, P, RW, ANON, -1, 0), P, n, MREMAP_MAYMOVE, 0)
                       for n in (TASK_SIZE + 1, 1 << 47, 2**64 - P)], ["EINVAL"] * 3),
        "mremap of an address beyond TASK_SIZE": (
            lambda p: outcome(p.mremap, 1 << 47, P, 2 * P, MREMAP_MAYMOVE, 0), "EFAULT"),
        "mremap lengths that wrap or pass TASK_SIZE": (
            lambda p: [outcome(p.mremap, a, old, new, flags, 0) for a, old, new, flags in
                       ((p.mmap(0, 2 * P, RW, ANON, -1, 0), *args) for args in
                        ((1 << 47, P, 0), (2**63, P, 0), (2**64 - P, P, 0),
                         (2**64 - 1, 2 * P, 0), (0, P, MREMAP_MAYMOVE)))],
            ["EINVAL"] * 5),
        "MAP_HUGETLB with no huge pages": (
            lambda p: [outcome(p.mmap, 0, 2 << 20, RW, ANON | MAP_HUGETLB, -1, 0),
                       outcome(p.mmap, 0, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0),
                       outcome(p.mmap, 0, 1 << 30, RW, ANON | MAP_HUGETLB | 30 << MAP_HUGE_SHIFT,
                               -1, 0),
                       outcome(p.mmap, 0, P, RW, ANON | MAP_HUGETLB | 13 << MAP_HUGE_SHIFT, -1, 0),
                       outcome(p.mmap, 0, 0, RW, ANON | MAP_HUGETLB, -1, 0)],
            ["ENOMEM", "ENOMEM", "ENOMEM", "EINVAL", "EINVAL"]),
        "MAP_32BIT lands in [1 GiB, 2 GiB)": (
            lambda p: [0x40000000 <= p.mmap(0, P, RW, ANON | MAP_32BIT, -1, 0) < 0x80000000,
                       0x40000000 <= p.mmap(1 << 40, P, RW, ANON | MAP_32BIT, -1, 0) < 0x80000000,
                       outcome(p.mmap, 0, 1 << 30, RW, ANON | MAP_32BIT, -1, 0)],
            [True, True, "ENOMEM"]),
        "MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE": (
            lambda p: [outcome(p.mmap, 0x320000000, P, RW,
                               MAP_SHARED_VALIDATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0),
                       outcome(p.mmap, 0x320000000, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                               -1, 0),
                       outcome(p.mmap, 0x320000000, P, RW,
                               MAP_SHARED_VALIDATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)],
            ["EINVAL", "ok", "EEXIST"]),
        "MADV_SOFT_OFFLINE and MADV_HWPOISON without CONFIG_MEMORY_FAILURE": (
            lambda p: [outcome(p.madvise, p.mmap(0, P, RW, ANON, -1, 0), P, advice)
                       for advice in (MADV_SOFT_OFFLINE, MADV_HWPOISON)], ["EINVAL", "EINVAL"]),
        "setuid(-1), setgid(-1)": (
            lambda p: [outcome(p.setuid, -1), outcome(p.setgid, -1)], ["EINVAL", "EINVAL"]),
        "clone flag combinations": (
            lambda p: [outcome(p.clone, f) for f in
                       (-1, CLONE_THREAD, CLONE_SIGHAND, CLONE_NEWNS | CLONE_FS,
                        CLONE_NEWUSER | CLONE_FS,
                        CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_NEWUSER)],
            ["EINVAL"] * 6),
        "unshare": (lambda p: [outcome(p.unshare, f) for f in (0, CLONE_VM, CLONE_FILES, 1, -1)],
                    ["ok", "ok", "ok", "EINVAL", "EINVAL"]),
        "wait4 options": (
            lambda p: [outcome(p.wait4, -1, o) for o in (0x4000, -1, WEXITED, WNOHANG)]
            + [outcome(p.wait4, -(1 << 31), WNOHANG)],
            ["EINVAL", "EINVAL", "EINVAL", "ECHILD", "ESRCH"]),
        "prctl options a program uses": (
            lambda p: [p.prctl(PR_GET_DUMPABLE, 5, 0, 0, 0), p.prctl(PR_GET_MDWE, 0, 0, 0, 0),
                       outcome(p.prctl, PR_GET_MDWE, 1, 0, 0, 0),
                       p.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0),
                       outcome(p.prctl, PR_SET_PDEATHSIG, 65, 0, 0, 0),
                       p.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
                       outcome(p.prctl, PR_SET_NO_NEW_PRIVS, 2, 0, 0, 0),
                       p.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                       p.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
                       p.prctl(PR_CAPBSET_READ, 40, 0, 0, 0),
                       outcome(p.prctl, PR_CAPBSET_READ, 41, 0, 0, 0),
                       p.prctl(PR_SET_MEMORY_MERGE, 2, 0, 0, 0),
                       p.prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0),
                       outcome(p.prctl, PR_SET_MEMORY_MERGE, 1, 1, 0, 0),
                       p.prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0),
                       p.prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0)],
            [1, 0, "EINVAL", 0, "EINVAL", 0, "EINVAL", 0, 1, 1, "EINVAL", 0, 1, "EINVAL", 0, 0]),
        "memory-deny-write-execute": (
            mdwe_steps,
            ["EINVAL", "ok", 1, "EPERM", "EPERM", "EACCES", "ok", "EACCES", "ok", "EACCES",
             "EACCES"]),
    }


CASES = cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulator_answers_as_linux(name):
    steps, expected = CASES[name]
    proc = Kernel().spawn()
    assert steps(proc) == expected


@pytest.mark.skipif(not LIVE, reason="needs root on a live Linux 6.x kernel")
@pytest.mark.parametrize("name", sorted(CASES))
def test_live_kernel_answers_the_same(name):
    steps, expected = CASES[name]
    assert live.in_child(lambda: steps(LiveProc())) == expected


def test_memory_merge_marks_vmas():
    """PR_SET_MEMORY_MERGE marks existing private VMAs and new ones VM_MERGEABLE
    ("mg"), never shared ones, and turning it off clears the mark (checked live)."""
    k = Kernel()
    p = k.spawn()
    a = p.mmap(0, 2 * P, RW, ANON)
    s = p.mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    p.prctl(PR_SET_MEMORY_MERGE, 1)
    b = p.mmap(0, 2 * P, RW, ANON)
    flags = {v.start: v.vm_flags for v in p.mm.vmas()}
    from mmsim.vma import VM_MERGEABLE
    assert flags[a] & VM_MERGEABLE and flags[b] & VM_MERGEABLE and not flags[s] & VM_MERGEABLE
    p.prctl(PR_SET_MEMORY_MERGE, 0)
    assert not any(v.vm_flags & VM_MERGEABLE for v in p.mm.vmas())


def test_mdwe_survives_fork_unless_no_inherit():
    """Live 6.18: after PR_SET_MDWE(REFUSE|NO_INHERIT) a forked child reads 0, after
    PR_SET_MDWE(REFUSE) it reads 1 and refuses a writable executable mapping."""
    p = Kernel().spawn()
    p.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN | PR_MDWE_NO_INHERIT)
    assert p.prctl(PR_GET_MDWE) == 3 and p.fork().prctl(PR_GET_MDWE) == 0
    p = Kernel().spawn()
    p.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
    child = p.fork()
    assert child.prctl(PR_GET_MDWE) == 1
    assert errno_of(child.mmap, 0, P, RW | PROT_EXEC, ANON) == errno.EACCES


def test_ids_are_unsigned_32_bit():
    """setresuid(-2, -1, -1) sets uid 4294967294, as /proc shows it (was "-2")."""
    k = Kernel()
    p = k.spawn()
    p.setresuid(-2, -1, -1)
    p.setresgid(2**32 + 7, -1, -1)
    status = k.proc_read(f"/proc/{p.pid}/status")
    assert "Uid:\t4294967294\t0\t0\t0\n" in status and "Gid:\t7\t0\t0\t0\n" in status
    if LIVE:
        def child():
            os.setresuid(2**32 - 2, 0, 0)
            os.setresgid(7, 0, 0)
            return [ln for ln in open("/proc/self/status") if ln[:4] in ("Uid:", "Gid:")]
        assert live.in_child(child) == ["Uid:\t4294967294\t0\t0\t0\n", "Gid:\t7\t0\t0\t0\n"]

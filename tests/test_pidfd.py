"""pidfd_open(2), process_madvise(2), exit/wait and the credential checks behind them.

Expected values are the live 6.18 results recorded in the project's reference notes
(kernel-semantics.md sections 4 and 7: the process_madvise permission matrix, check
order and partial counts)."""

import errno

import pytest

from mmsim.kernel import Kernel
from mmsim.uapi import (CLONE_NEWUSER, MADV_COLD, MADV_DONTDUMP, MADV_DONTNEED, MADV_HUGEPAGE,
                        MADV_PAGEOUT, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PIDFD_SELF_THREAD,
                        PIDFD_SELF_THREAD_GROUP, PR_GET_DUMPABLE, PROT_READ, PROT_WRITE,
                        WNOHANG)
from mmsim.testing import errno_of

P = 4096
NOBODY = 65534


def mapped(proc, pages=8):
    return proc.mmap(0, pages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)


def test_pidfd_open_errors_and_zombies():
    k = Kernel()
    parent = k.spawn()
    child = parent.fork()
    assert errno_of(parent.pidfd_open, child.pid, 1) == errno.EINVAL
    assert errno_of(parent.pidfd_open, 0) == errno.EINVAL
    assert errno_of(parent.pidfd_open, -1) == errno.EINVAL
    assert errno_of(parent.pidfd_open, 9999) == errno.ESRCH
    fd = parent.pidfd_open(child.pid)
    child.exit(3)
    assert parent.pidfd_open(child.pid) > 2                     # a zombie can be opened
    status = k.proc_read(f"/proc/{child.pid}/status")
    assert "State:\tZ (zombie)" in status and "VmSize" not in status and "THP_enabled" not in status
    assert k.proc_read(f"/proc/{child.pid}/maps") == ""
    assert errno_of(parent.process_madvise, fd, [(0, P)], MADV_COLD) == errno.ESRCH
    assert parent.wait4(-1, WNOHANG) == (child.pid, 3 << 8)
    assert errno_of(parent.pidfd_open, child.pid) == errno.ESRCH   # reaped
    assert errno_of(parent.process_madvise, fd, [(0, P)], MADV_COLD) == errno.ESRCH
    assert errno_of(parent.wait4) == errno.ECHILD


def test_process_madvise_check_order():
    """flags -> iovec -> pidfd -> mm/ptrace -> remote advice -> CAP_SYS_NICE."""
    k = Kernel()
    root = k.spawn()
    other = root.fork()
    fd = root.pidfd_open(other.pid)
    assert errno_of(root.process_madvise, fd, [], MADV_COLD, 1) == errno.EINVAL
    assert errno_of(root.process_madvise, fd, [(0, P)] * 1025, MADV_COLD) == errno.EINVAL
    assert root.process_madvise(fd, [], MADV_COLD) == 0
    assert errno_of(root.process_madvise, 9999, [(0, P)], MADV_DONTNEED) == errno.EBADF
    assert errno_of(root.process_madvise, -20000, [(0, P)], MADV_COLD) == errno.EBADF
    # Remote: only COLD, PAGEOUT, WILLNEED and COLLAPSE.
    for advice in (MADV_DONTNEED, MADV_HUGEPAGE, MADV_DONTDUMP, 99):
        assert errno_of(root.process_madvise, fd, [(0, P)], advice) == errno.EINVAL


def test_process_madvise_self_takes_any_advice():
    k = Kernel()
    proc = k.spawn()
    a = mapped(proc)
    for pidfd in (PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP, proc.pidfd_open(proc.pid)):
        assert proc.process_madvise(pidfd, [(a, 2 * P)], MADV_DONTDUMP) == 2 * P
        assert proc.process_madvise(pidfd, [(a, P)], MADV_HUGEPAGE) == P


def test_process_madvise_partial_counts():
    """[good 2P, hole] -> 8192; [hole, good] -> ENOMEM; a hole inside an element fails it
    but its mapped parts are still advised; [good, unaligned, good] -> the first only."""
    k = Kernel(randomize=False)
    proc = k.spawn()
    base = 0x200000000000
    proc.mmap(base, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    hole = base + 16 * P
    self_fd = PIDFD_SELF_THREAD
    assert proc.process_madvise(self_fd, [(base, 2 * P), (hole, P)], MADV_COLD) == 2 * P
    assert errno_of(proc.process_madvise, self_fd, [(hole, P), (base, P)], MADV_COLD) == errno.ENOMEM
    proc.munmap(base + 3 * P, 2 * P)
    assert errno_of(proc.process_madvise, self_fd, [(base, 8 * P)], MADV_DONTDUMP) == errno.ENOMEM
    assert "dd" in repr(proc.mm.vma_lookup(base)) and "dd" in repr(proc.mm.vma_lookup(base + 6 * P))
    assert proc.process_madvise(self_fd, [(base, P), (base + 1, P), (base, P)], MADV_COLD) == P


@pytest.mark.parametrize("caller_uid, target_uid, target_change, expect", [
    (0, 0, None, 0),                          # root -> root child
    (0, NOBODY, None, 0),                     # root -> nobody, dumpable
    (0, NOBODY, "setresuid", 0),              # root -> nobody, not dumpable
    (NOBODY, 0, None, errno.EACCES),          # nobody -> root
    (NOBODY, NOBODY, None, errno.EPERM),      # ptrace allowed, no CAP_SYS_NICE
    (NOBODY, NOBODY, "setresuid", errno.EACCES),   # target not dumpable
    (NOBODY, NOBODY, "userns-caller", errno.EACCES),  # caller in a child user namespace
])
def test_permission_matrix(caller_uid, target_uid, target_change, expect):
    """The live process_madvise(MADV_COLD) permission matrix."""
    k = Kernel()
    target = k.spawn(uid=0)
    a = mapped(target)
    if target_uid != 0:
        target.setresuid(target_uid, target_uid, target_uid)
    if target_change == "setresuid":
        if target_uid == NOBODY and target.cred.uid == NOBODY:
            # A uid change from root made it non-dumpable already; make sure.
            assert target.prctl(PR_GET_DUMPABLE) == 0
    elif target_uid != 0:
        target.prctl(4, 1)                    # PR_SET_DUMPABLE: dumpable again
    caller = k.spawn(uid=caller_uid)
    if target_change == "userns-caller":
        caller.unshare(CLONE_NEWUSER)
    fd = caller.pidfd_open(target.pid)
    assert errno_of(caller.process_madvise, fd, [(a, 8 * P)], MADV_COLD) == expect
    if expect == 0:
        assert caller.process_madvise(fd, [(a, 8 * P)], MADV_PAGEOUT) == 8 * P


def test_setresuid_rules():
    k = Kernel()
    proc = k.spawn(uid=0)
    assert proc.prctl(PR_GET_DUMPABLE) == 1
    proc.setresuid(1000, 1000, 1000)
    assert proc.cred.cap_effective == 0 and proc.cred.cap_permitted == 0
    assert proc.prctl(PR_GET_DUMPABLE) == 0
    assert errno_of(proc.setresuid, 0, 0, 0) == errno.EPERM
    assert errno_of(proc.setuid, 0) == errno.EPERM
    assert "Uid:\t1000\t1000\t1000\t1000" in k.proc_read(f"/proc/{proc.pid}/status")


def test_exit_reparents_children_to_init():
    k = Kernel()
    init = k.spawn()
    parent = init.fork()
    grandchild = parent.fork()
    parent.exit(0)
    assert grandchild.ppid == 1
    assert init.wait4(parent.pid) == (parent.pid, 0)


def test_gid_and_capability_calls():
    """setgid/setresgid and capget/capset follow the same rules as their uid siblings:
    privileged callers may set anything, others only shuffle their own ids; permitted
    capabilities can only shrink."""
    from mmsim.cred import CAP_SYS_ADMIN, CAP_SYS_NICE
    k = Kernel()
    proc = k.spawn()
    eff, perm, inh = proc.capget()
    keep = 1 << CAP_SYS_NICE
    proc.capset(keep, keep, 0)
    assert proc.capget() == (keep, keep, 0)
    assert errno_of(proc.capset, keep | 1 << CAP_SYS_ADMIN, keep | 1 << CAP_SYS_ADMIN, 0) == errno.EPERM
    assert errno_of(proc.capset, 1 << CAP_SYS_ADMIN, keep, 0) == errno.EPERM
    other = k.spawn(uid=1000, gid=1000)
    assert errno_of(other.setgid, 0) == errno.EPERM
    other.setresgid(-1, 1000, -1)
    root = k.spawn()
    root.setresgid(5, 6, 7)
    assert "Gid:\t5\t6\t7\t6" in k.proc_read(f"/proc/{root.pid}/status")
    assert root.capget(other.pid) == (0, 0, 0)


def test_status_counts_threads():
    from mmsim.uapi import CLONE_SIGHAND, CLONE_THREAD, CLONE_VM
    k = Kernel()
    proc = k.spawn()
    proc.clone(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD)
    assert "Threads:\t2\n" in k.proc_read(f"/proc/{proc.pid}/status")

"""pidfd_open, process_madvise and execve against the live kernel: the same scenario is
played by real processes (fork, setresuid, exit, exec of a helper) and by mmsim, and
every result or errno must agree."""

import ctypes
import os
import sys
import time

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLD, MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
                        PR_GET_THP_DISABLE, PR_SET_DUMPABLE, PR_SET_THP_DISABLE,
                        PR_THP_DISABLE_EXCEPT_ADVISED, PROT_READ, PROT_WRITE)

B = live.WINDOW[0]
P = 4096
NOBODY = 65534
SYS_PIDFD_OPEN = 434
SYS_PROCESS_MADVISE = 440

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root on the live kernel")]


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def live_process_madvise(target_uid, target_dumpable, caller_uid, target_state, advice,
                         pidfd_kind="pidfd"):
    """Play one process_madvise scenario on the live kernel; returns the result or -errno."""
    def driver():
        libc = live.load_libc()
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        target = os.fork()
        if target == 0:
            libc.mmap(B, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                      -1, 0)
            if target_uid:
                os.setresuid(target_uid, target_uid, target_uid)
            if target_dumpable:
                libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            os.write(ready_w, b"x")
            if target_state != "running":
                os._exit(0)
            os.read(go_r, 1)
            os._exit(0)
        os.read(ready_r, 1)
        if target_state in ("zombie", "reaped"):
            while open(f"/proc/{target}/stat").read().split(")")[1].split()[0] != "Z":
                time.sleep(0.001)
        if target_state == "reaped":
            os.waitpid(target, 0)
        fd = libc.syscall(SYS_PIDFD_OPEN, target, 0)
        opened = fd if fd >= 0 else -ctypes.get_errno()
        if caller_uid:
            os.setresuid(caller_uid, caller_uid, caller_uid)
        pidfd = {"pidfd": fd, "bad": 9999}[pidfd_kind]
        vec = (IoVec * 1)(IoVec(B, 8 * P))
        ret = libc.syscall(SYS_PROCESS_MADVISE, pidfd, vec, 1, advice, 0)
        result = ret if ret >= 0 else -ctypes.get_errno()
        os.write(go_w, b"x")
        if target_state == "running":
            os.waitpid(target, 0)
        return [opened if opened < 0 else 0, result]
    return live.in_child(driver)


def sim_process_madvise(target_uid, target_dumpable, caller_uid, target_state, advice,
                        pidfd_kind="pidfd"):
    """The same scenario on mmsim."""
    k = Kernel()
    driver = k.spawn()
    target = driver.fork()
    target.mmap(B, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    if target_uid:
        target.setresuid(target_uid, target_uid, target_uid)
    if target_dumpable:
        target.prctl(PR_SET_DUMPABLE, 1)
    if target_state != "running":
        target.exit(0)
    if target_state == "reaped":
        driver.wait4(target.pid)

    def attempt(fn, *args):
        try:
            return fn(*args)
        except OSError as exc:
            return -exc.errno
    fd = attempt(driver.pidfd_open, target.pid, 0)
    if caller_uid:
        driver.setresuid(caller_uid, caller_uid, caller_uid)
    pidfd = {"pidfd": fd, "bad": 9999}[pidfd_kind]
    result = attempt(driver.process_madvise, pidfd, [(B, 8 * P)], advice)
    return [fd if fd < 0 else 0, result]


SCENARIOS = {
    "root_to_root": (0, False, 0, "running", MADV_COLD),
    "root_to_nobody_dumpable": (NOBODY, True, 0, "running", MADV_COLD),
    "root_to_nobody_not_dumpable": (NOBODY, False, 0, "running", MADV_COLD),
    "nobody_to_root": (0, False, NOBODY, "running", MADV_COLD),
    "nobody_to_nobody_dumpable": (NOBODY, True, NOBODY, "running", MADV_COLD),
    "nobody_to_nobody_not_dumpable": (NOBODY, False, NOBODY, "running", MADV_COLD),
    "remote_dontneed_refused": (0, False, 0, "running", MADV_DONTNEED),
    "zombie": (0, False, 0, "zombie", MADV_COLD),
    "reaped": (0, False, 0, "reaped", MADV_COLD),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_process_madvise_matches_live_kernel(name):
    args = SCENARIOS[name]
    assert sim_process_madvise(*args) == live_process_madvise(*args)


def test_bad_pidfd_matches_live_kernel():
    args = (0, False, 0, "running", MADV_COLD)
    assert sim_process_madvise(*args, pidfd_kind="bad") == \
        live_process_madvise(*args, pidfd_kind="bad")


HELPER = """
import ctypes, sys
libc = ctypes.CDLL(None)
lo, hi = int(sys.argv[1]), int(sys.argv[2])
busy = []
for line in open("/proc/self/maps"):
    a, b = (int(x, 16) for x in line.split()[0].split("-"))
    if a < hi and b > lo:
        busy.append(line)
print(libc.prctl(%d, 0, 0, 0, 0), len(busy))
""" % PR_GET_THP_DISABLE


@pytest.mark.parametrize("flags", [None, 0, PR_THP_DISABLE_EXCEPT_ADVISED])
def test_exec_keeps_thp_disable_and_empties_the_window(flags):
    """A real exec of a helper reports PR_GET_THP_DISABLE and whether anything is mapped
    in the window that was mapped before exec; mmsim's execve must agree."""
    def live_side():
        libc = live.load_libc()
        libc.mmap(B, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        if flags is not None:
            libc.prctl(PR_SET_THP_DISABLE, 1, flags, 0, 0)
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.dup2(w, 1)
            os.execv(sys.executable, [sys.executable, "-c", HELPER, str(B), str(B + 8 * P)])
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read().split()
        os.waitpid(child, 0)
        return [int(x) for x in out]

    want = live.in_child(live_side)
    k = Kernel()
    proc = k.spawn()
    proc.mmap(B, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    if flags is not None:
        proc.prctl(PR_SET_THP_DISABLE, 1, flags)
    proc.execve(os.path.realpath(sys.executable))
    got = [proc.prctl(PR_GET_THP_DISABLE), len(proc.mm.vmas(B, B + 8 * P))]
    assert got == want

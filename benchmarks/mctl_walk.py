"""mctl's walk over every VMA against the live kernel's in-kernel walk.

Both sides hold N single-page VMAs of alternating protection (none can merge).  mmsim
times MCTL_SET_NOHUGEPAGE, first (every VMA changes) and repeated (none does); the live
kernel times madvise(MADV_NOHUGEPAGE) over the whole region, first and repeated, which
is the walk mctl would do in the kernel.  Costs are per VMA, from the slope between a
1-VMA and an N-VMA region so fixed costs cancel."""

import ctypes
import json
import os
import statistics
import time

from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MCTL_CLEAR_NOHUGEPAGE,
                        MCTL_SET_NOHUGEPAGE, PIDFD_SELF, PROT_READ, PROT_WRITE)

from .fork import live_vma_budget

PAGE = 4096
BASE = 0x200000000000


def _sim(n, repeats):
    k = Kernel(randomize=False, max_map_count=max(n, 65_530))
    p = k.spawn()
    for i in range(n):
        prot = PROT_READ | PROT_WRITE if i % 2 == 0 else PROT_READ
        p.mmap(BASE + i * PAGE, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    first, again = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, 0)
        t1 = time.perf_counter()
        p.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, 0)
        t2 = time.perf_counter()
        p.mctl(PIDFD_SELF, MCTL_CLEAR_NOHUGEPAGE, 0)
        first.append(t1 - t0)
        again.append(t2 - t1)
    assert p.mm.map_count == n
    return statistics.median(first), statistics.median(again)


def _live(n, repeats):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_long]
            for name in ("mprotect", "madvise"):
                getattr(libc, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            addr = libc.mmap(BASE, n * PAGE, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            for i in range(1, n, 2):
                libc.mprotect(addr + i * PAGE, PAGE, PROT_READ)
            first, again = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                libc.madvise(addr, n * PAGE, MADV_NOHUGEPAGE)
                t1 = time.perf_counter()
                libc.madvise(addr, n * PAGE, MADV_NOHUGEPAGE)
                t2 = time.perf_counter()
                libc.madvise(addr, n * PAGE, 0)  # MADV_NORMAL leaves nh: undo by hand
                libc.munmap(addr, n * PAGE)
                addr = libc.mmap(BASE, n * PAGE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
                for i in range(1, n, 2):
                    libc.mprotect(addr + i * PAGE, PAGE, PROT_READ)
                first.append(t1 - t0)
                again.append(t2 - t1)
            os.write(w, json.dumps([statistics.median(first), statistics.median(again)]).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status or not data:
        raise RuntimeError("live madvise measurement failed")
    return json.loads(data)


def run(n=65_530, repeats=5):
    """Per-VMA costs, mmsim's walk and the live kernel's, from one run."""
    live_n = min(n, live_vma_budget())
    l1 = _live(1, repeats)
    ln = _live(live_n, repeats)
    s1 = _sim(1, repeats)
    sn = _sim(n, repeats)
    per = lambda many, one, count: (many - one) / (count - 1) * 1e9
    return {"live_vmas": live_n, "sim_vmas": n,
            "live_first": per(ln[0], l1[0], live_n), "live_again": per(ln[1], l1[1], live_n),
            "sim_first": per(sn[0], s1[0], n), "sim_again": per(sn[1], s1[1], n)}


def table(r):
    """A markdown table of one result."""
    return ("| VMAs (live / mmsim) | live madvise ns/VMA (first / again) | "
            "mmsim mctl ns/VMA (first / again) | mmsim first / live first | "
            "mmsim again / mmsim first |\n|---:|---:|---:|---:|---:|\n"
            f"| {r['live_vmas']:,} / {r['sim_vmas']:,} | {r['live_first']:.0f} / "
            f"{r['live_again']:.0f} | {r['sim_first']:.0f} / {r['sim_again']:.0f} | "
            f"{r['sim_first'] / r['live_first']:.2f} | {r['sim_again'] / r['sim_first']:.3f} |")

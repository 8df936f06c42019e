"""fork of a large address space: mmsim's fork against the live kernel's, per VMA.

Both sides build N unmergeable VMAs (pages of alternating protection) and time fork;
the per-VMA cost is the slope between a 1-VMA and an N-VMA address space, so fixed
costs (Python's os.fork, process creation) cancel.  The live kernel's fork is of
untouched VMAs: fork, the child exits at once, the parent reaps it."""

import ctypes
import json
import os
import statistics
import time

from mmsim.kernel import Kernel
from mmsim.uapi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
BASE = 0x200000000000


def _sim_fork_seconds(n, repeats):
    k = Kernel(randomize=False, max_map_count=max(n, 65_530))
    proc = k.spawn()
    for i in range(n):
        prot = PROT_READ | PROT_WRITE if i % 2 == 0 else PROT_READ
        proc.mmap(BASE + i * PAGE, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        child = proc.fork()
        times.append(time.perf_counter() - t0)
        child.exit(0)
        proc.wait4(child.pid)
    return statistics.median(times)


def _live_fork_seconds(n, repeats):
    """In a child of this process: make ``n`` VMAs, then time fork + exit + wait."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_long]
            libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            addr = libc.mmap(BASE, n * PAGE, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            for i in range(1, n, 2):
                if libc.mprotect(addr + i * PAGE, PAGE, PROT_READ) != 0:
                    raise OSError(ctypes.get_errno(), "mprotect")
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                child = os.fork()
                if child == 0:
                    os._exit(0)
                os.waitpid(child, 0)
                times.append(time.perf_counter() - t0)
            os.write(write_fd, json.dumps(statistics.median(times)).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status or not data:
        raise RuntimeError(f"live fork measurement failed (status {status})")
    return json.loads(data)


def live_vma_budget():
    """How many VMAs fit under vm.max_map_count beside this process' own."""
    with open("/proc/sys/vm/max_map_count") as f:
        limit = int(f.read())
    with open("/proc/self/maps") as f:
        own = sum(1 for _ in f)
    return limit - own - 64


def run(n=65_530, repeats=9):
    """Per-VMA fork cost of mmsim and of the live kernel, measured in one run."""
    live_n = min(n, live_vma_budget())
    live_one = _live_fork_seconds(1, repeats)
    live_many = _live_fork_seconds(live_n, repeats)
    sim_one = _sim_fork_seconds(1, repeats)
    sim_many = _sim_fork_seconds(n, repeats)
    live_ns = (live_many - live_one) / (live_n - 1) * 1e9
    sim_ns = (sim_many - sim_one) / (n - 1) * 1e9
    return {"live_vmas": live_n, "sim_vmas": n, "live_ns_per_vma": live_ns,
            "sim_ns_per_vma": sim_ns, "ratio": sim_ns / live_ns}


def table(r):
    """A markdown table of one result."""
    return ("| VMAs (live / mmsim) | live kernel ns per VMA | mmsim ns per VMA | mmsim / live |\n"
            "|---:|---:|---:|---:|\n"
            f"| {r['live_vmas']:,} / {r['sim_vmas']:,} | {r['live_ns_per_vma']:.0f} | "
            f"{r['sim_ns_per_vma']:.0f} | {r['ratio']:.2f} |")

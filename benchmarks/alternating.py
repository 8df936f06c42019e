"""N VMAs that cannot merge (pages of alternating protection), in mmsim and in a live
child of this process: the address space the fork and mctl-walk benchmarks measure."""

import ctypes

from mmsim.kernel import Kernel
from mmsim.uapi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
BASE = 0x200000000000


def sim_process(n):
    """A fresh mmsim process holding ``n`` single-page VMAs of alternating protection."""
    k = Kernel(randomize=False, max_map_count=max(n, 65_530))
    proc = k.spawn()
    for i in range(n):
        prot = PROT_READ | PROT_WRITE if i % 2 == 0 else PROT_READ
        proc.mmap(BASE + i * PAGE, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    return proc


def live_region(libc, n):
    """Map ``n`` pages at BASE in this (live) process and make every other one read-only;
    return the address.  ``libc`` is ``mmsim.live.load_libc()``."""
    addr = libc.mmap(BASE, n * PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    if addr != BASE:
        raise OSError(ctypes.get_errno(), "mmap of the benchmark region")
    for i in range(1, n, 2):
        if libc.mprotect(addr + i * PAGE, PAGE, PROT_READ) != 0:
            raise OSError(ctypes.get_errno(), "mprotect of the benchmark region")
    return addr


def live_vma_budget():
    """How many VMAs fit under vm.max_map_count beside this process' own."""
    with open("/proc/sys/vm/max_map_count") as f:
        limit = int(f.read())
    with open("/proc/self/maps") as f:
        own = sum(1 for _ in f)
    return limit - own - 64

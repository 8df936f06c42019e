"""Memory of a simulated address space: 65,530 adjacent mmaps with alternating
protections (so none merge), measured with tracemalloc; time per call alongside."""

import gc
import time
import tracemalloc

from mmsim.kernel import Kernel
from mmsim.uapi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
BASE = 0x200000000000


def alternating_mmaps(n=65_530):
    """Map ``n`` single pages back to back, RW and R in turn; returns a result dict."""
    k = Kernel(randomize=False, max_map_count=max(n, 65_530))
    proc = k.spawn()
    gc.collect()
    tracemalloc.start()
    base_mem = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for i in range(n):
        prot = PROT_READ | PROT_WRITE if i % 2 == 0 else PROT_READ
        proc.mmap(BASE + i * PAGE, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    elapsed = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert proc.mm.map_count == n
    return {"vmas": n, "peak_bytes_per_vma": (peak - base_mem) / n,
            "kept_bytes_per_vma": (current - base_mem) / n, "us_per_mmap": elapsed / n * 1e6}


def table(result):
    """A markdown table of one result."""
    return ("| VMAs | peak bytes per VMA | bytes per VMA kept | us per mmap (traced) |\n"
            "|---:|---:|---:|---:|\n"
            f"| {result['vmas']:,} | {result['peak_bytes_per_vma']:.0f} | "
            f"{result['kept_bytes_per_vma']:.0f} | {result['us_per_mmap']:.1f} |")

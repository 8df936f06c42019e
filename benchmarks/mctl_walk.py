"""mctl's walk over every VMA against the live kernel's in-kernel walk.

Both sides hold N single-page VMAs of alternating protection (none can merge).  mmsim
times MCTL_SET_NOHUGEPAGE, first (every VMA changes) and repeated (none does); the live
kernel times madvise(MADV_NOHUGEPAGE) over the whole region, first and repeated, which
is the walk mctl would do in the kernel.  Both are timed in CPU time of the process doing
the work (mmsim's, and the live child's, system time included), so waiting for a CPU on
a shared machine counts on neither side.  Costs are per VMA, from the slope between a
1-VMA and an N-VMA region so fixed costs cancel."""

import statistics
import time

from mmsim.live import in_child, load_libc
from mmsim.uapi import (MADV_NOHUGEPAGE, MCTL_CLEAR_NOHUGEPAGE, MCTL_SET_NOHUGEPAGE,
                        PIDFD_SELF)

from .alternating import PAGE, live_region, live_vma_budget, sim_process


def _sim(n, repeats):
    """CPU seconds of a first and of a repeated mctl SET over ``n`` VMAs (medians)."""
    p = sim_process(n)
    first, again = [], []
    for _ in range(repeats):
        t0 = time.process_time()
        p.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, 0)
        t1 = time.process_time()
        p.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, 0)
        t2 = time.process_time()
        p.mctl(PIDFD_SELF, MCTL_CLEAR_NOHUGEPAGE, 0)
        first.append(t1 - t0)
        again.append(t2 - t1)
    assert p.mm.map_count == n
    return statistics.median(first), statistics.median(again)


def _live(n, repeats):
    """CPU seconds of a first and of a repeated madvise(MADV_NOHUGEPAGE) over ``n`` VMAs
    in a live child (medians)."""
    def measure():
        libc = load_libc()
        addr = live_region(libc, n)
        first, again = [], []
        for _ in range(repeats):
            t0 = time.process_time()
            libc.madvise(addr, n * PAGE, MADV_NOHUGEPAGE)
            t1 = time.process_time()
            libc.madvise(addr, n * PAGE, MADV_NOHUGEPAGE)
            t2 = time.process_time()
            libc.madvise(addr, n * PAGE, 0)  # MADV_NORMAL leaves nh: undo by hand
            libc.munmap(addr, n * PAGE)
            addr = live_region(libc, n)
            first.append(t1 - t0)
            again.append(t2 - t1)
        return [statistics.median(first), statistics.median(again)]
    return in_child(measure)


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
    return ("| VMAs (live / mmsim) | live madvise CPU ns/VMA (first / again) | "
            "mmsim mctl CPU ns/VMA (first / again) | mmsim first / live first | "
            "mmsim again / mmsim first |\n|---:|---:|---:|---:|---:|\n"
            f"| {r['live_vmas']:,} / {r['sim_vmas']:,} | {r['live_first']:.0f} / "
            f"{r['live_again']:.0f} | {r['sim_first']:.0f} / {r['sim_again']:.0f} | "
            f"{r['sim_first'] / r['live_first']:.2f} | {r['sim_again'] / r['sim_first']:.3f} |")

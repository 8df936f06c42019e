"""fork of a large address space: mmsim's fork against the live kernel's, per VMA.

Both sides build N unmergeable VMAs (pages of alternating protection) and time fork;
the per-VMA cost is the slope between a 1-VMA and an N-VMA address space, so fixed
costs (Python's os.fork, process creation) cancel.  The live kernel's fork is of
untouched VMAs: fork, the child exits at once, the parent reaps it."""

import os
import statistics
import time

from mmsim.live import in_child, load_libc

from .alternating import live_region, live_vma_budget, sim_process


def _sim_fork_seconds(n, repeats):
    proc = sim_process(n)
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
    def measure():
        live_region(load_libc(), n)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    return in_child(measure)


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

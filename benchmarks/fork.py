"""fork of a large address space: mmsim's fork against the live kernel's, per VMA.

Both sides build N unmergeable VMAs (pages of alternating protection) and do the same
work: fork, the child exits at once, the parent reaps it (mmsim: ``Process.fork``,
``exit``, ``wait4``; the live kernel: ``os.fork``, ``os._exit``, ``os.waitpid``).  Both
are timed in CPU time, so time spent waiting for a CPU on a shared machine counts on
neither side: mmsim's is this process' CPU time; the live kernel's is the measuring
process' CPU time plus its reaped child's (``getrusage`` of SELF and CHILDREN), since
the child's exit, which tears its copy of the address space down, runs in the child.
The per-VMA cost is the slope between a 1-VMA and an N-VMA address space, so fixed
costs (Python's os.fork, process creation) cancel.  The VMAs are never touched, so
neither side copies a page table."""

import os
import resource
import statistics
import time

from mmsim.live import in_child, load_libc

from .alternating import live_region, live_vma_budget, sim_process


def _sim_fork_seconds(n, repeats):
    """CPU seconds of one mmsim fork + exit + wait4 of ``n`` VMAs (median of repeats)."""
    proc = sim_process(n)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        child = proc.fork()
        child.exit(0)
        proc.wait4(child.pid)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def _cpu_self_and_children():
    """CPU seconds used so far by this process, and by its reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _live_fork_seconds(n, repeats, split=False):
    """In a child of this process: make ``n`` VMAs, then take the CPU seconds of
    fork + exit + wait, parent's and child's together (median of repeats); with
    ``split``, the medians of the parent's and of the child's share as well."""
    def measure():
        live_region(load_libc(), n)
        parent, child = [], []
        for _ in range(repeats):
            me0, kids0 = _cpu_self_and_children()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            me1, kids1 = _cpu_self_and_children()
            parent.append(me1 - me0)
            child.append(kids1 - kids0)
        total = statistics.median(p + c for p, c in zip(parent, child))
        return [total, statistics.median(parent), statistics.median(child)]
    total, parent, child = in_child(measure)
    return (total, parent, child) if split else total


def run(n=65_530, repeats=9):
    """Per-VMA CPU cost of fork + exit + wait in mmsim and in the live kernel, one run."""
    live_n = min(n, live_vma_budget())
    live_one = _live_fork_seconds(1, repeats, split=True)
    live_many = _live_fork_seconds(live_n, repeats, split=True)
    sim_one = _sim_fork_seconds(1, repeats)
    sim_many = _sim_fork_seconds(n, repeats)
    live_ns, parent_ns, child_ns = ((many - one) / (live_n - 1) * 1e9
                                    for many, one in zip(live_many, live_one))
    sim_ns = (sim_many - sim_one) / (n - 1) * 1e9
    return {"live_vmas": live_n, "sim_vmas": n, "live_ns_per_vma": live_ns,
            "live_parent_ns_per_vma": parent_ns, "live_child_ns_per_vma": child_ns,
            "sim_ns_per_vma": sim_ns, "ratio": sim_ns / live_ns}


def table(r):
    """A markdown table of one result."""
    return ("| VMAs (live / mmsim) | live kernel CPU ns per VMA (parent's fork + child's exit) "
            "| mmsim CPU ns per VMA | mmsim / live |\n"
            "|---:|---:|---:|---:|\n"
            f"| {r['live_vmas']:,} / {r['sim_vmas']:,} | {r['live_ns_per_vma']:.0f} "
            f"({r['live_parent_ns_per_vma']:.0f} + {r['live_child_ns_per_vma']:.0f}) | "
            f"{r['sim_ns_per_vma']:.0f} | {r['ratio']:.2f} |")

"""The OOM killer (mm/oom_kill.c): when reclaim cannot make room, pick the process
whose death frees the most memory (``oom_badness``: its RSS, swap entries and page
tables, moved by ``oom_score_adj``) inside the cgroup that is out of memory, or on
the whole machine, and kill it with SIGKILL; its memory is freed at once (what the
OOM reaper and the exit path together do).
"""

from .defs import PAGE_SHIFT
from .memcg import memory_event

OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
SIGKILL = 9


def _pgtables_pages(mm):
    """mm_pgtables_bytes in pages: one PTE page per 2 MiB of mapped address space
    touched, estimated from the resident memory (simulator-defined)."""
    rss = mm.rss_anon + mm.rss_file + mm.rss_shmem
    return (rss + 511) // 512


def oom_badness(proc, totalpages):
    """The victim score of ``proc``, or None when it may not be killed (no mm, or
    oom_score_adj -1000)."""
    mm = proc.mm
    if mm is None or proc.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    points = (mm.rss_anon + mm.rss_file + mm.rss_shmem + mm.swap_pages + _pgtables_pages(mm))
    points += proc.oom_score_adj * (totalpages // 1000)
    return points


def oom_score(proc, totalpages):
    """/proc/PID/oom_score: the badness scaled to 0..2000 (proc_oom_score)."""
    badness = oom_badness(proc, totalpages)
    if badness is None:
        return 0
    return max(0, min(2000, 1000 + badness * 1000 // max(totalpages, 1)))


def _candidates(kernel, memcg):
    procs = [p for p in kernel.processes.values()
             if p.state == "running" and p.pid == p.tgid and p.mm is not None]
    if memcg is None:
        return [p for p in procs if p.pid != 1]   # never the global init
    inside = set(map(id, memcg.subtree()))
    return [p for p in procs if id(p.memcg) in inside]


def select_bad_process(kernel, memcg, totalpages):
    """The process with the highest badness (the first one, in pid order, on a tie)."""
    chosen, best = None, None
    for proc in sorted(_candidates(kernel, memcg), key=lambda p: p.pid):
        points = oom_badness(proc, totalpages)
        if points is None:
            continue
        if best is None or points > best:
            chosen, best = proc, points
    return chosen


def totalpages_of(kernel, memcg):
    """oc->totalpages: the cgroup's limit (with swap), or RAM plus swap."""
    total = (kernel.memory >> PAGE_SHIFT) + kernel.swap_total_pages()
    if memcg is None:
        return total
    return min(memcg.max + min(memcg.swap_max, kernel.swap_total_pages()), total)


def out_of_memory(kernel, memcg):
    """Kill the worst process of ``memcg``'s subtree (the machine's when None).
    Returns the victim, or None when there is nobody to kill."""
    totalpages = totalpages_of(kernel, memcg)
    victim = select_bad_process(kernel, memcg, totalpages)
    if victim is None:
        return None
    kernel.node.events["oom_kill"] += 1
    memory_event(victim.memcg if memcg is None else memcg, "oom_kill")
    kill(victim)
    return victim


def kill(victim):
    """SIGKILL to every thread of the victim's group: it exits at once."""
    kernel = victim.kernel
    group = [p for p in kernel.processes.values()
             if p.tgid == victim.tgid and p.state == "running"]
    for p in group:
        p.term_sig = SIGKILL
    # The method without its syscall wrapper: the victim is not the caller.
    type(victim).exit_group.__wrapped__(victim, 0)
    for p in group:
        p.exit_status = 0
        p.term_sig = SIGKILL


__all__ = ["oom_badness", "oom_score", "select_bad_process", "out_of_memory", "kill",
           "totalpages_of", "OOM_SCORE_ADJ_MIN", "OOM_SCORE_ADJ_MAX"]

"""The OOM killer (mm/oom_kill.c): when reclaim cannot make room, pick the process
whose death frees the most memory (``oom_badness``: its RSS, swap entries and page
tables, moved by ``oom_score_adj``) inside the cgroup that is out of memory, or on
the whole machine, and kill it with SIGKILL, with every other process sharing its
address space, and with its whole cgroup when that (or an ancestor up to the one out
of memory) has memory.oom.group set.  Memory is freed at once (what the OOM reaper
and the exit path together do).
"""

from .defs import PAGE_SHIFT
from .memcg import memory_event
from .procfs import pte_pages

OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
SIGKILL = 9


def _cdiv(a, b):
    """C's integer division (it truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def is_global_init(proc, memcg=None):
    """The thread group of pid 1, which the machine's OOM killer never picks.
    Simulator-defined: a cgroup's OOM killer (``memcg`` not None) may pick it, as it
    may pick a container's pid 1 (the first process spawned is pid 1, and an
    experiment that puts it in a limited cgroup expects it to be killable)."""
    return proc.tgid == 1 and memcg is None


def task_mm(proc):
    """find_lock_task_mm: the address space of a live thread of ``proc``'s group (the
    leader may have exited before its threads), or None."""
    if proc.mm is not None:
        return proc.mm
    for p in proc.kernel.processes.values():
        if p.tgid == proc.tgid and p.mm is not None:
            return p.mm
    return None


def in_vfork(proc):
    """A vfork child still borrowing its parent's address space (until it execs or
    exits): killing it would free nothing of its own."""
    parent = proc.vfork_parent
    return parent is not None and proc.mm is not None and parent.mm is proc.mm


def oom_badness(proc, totalpages, memcg=None):
    """The victim score of ``proc``, or None (the kernel's LONG_MIN) when it may not be
    killed: global init (for the machine's OOM killer: ``memcg`` None), no address
    space left, oom_score_adj -1000, or a vfork child before its exec."""
    if is_global_init(proc, memcg):
        return None
    mm = task_mm(proc)
    if mm is None or proc.oom_score_adj == OOM_SCORE_ADJ_MIN or in_vfork(proc):
        return None
    # get_mm_rss + MM_SWAPENTS + mm_pgtables_bytes in pages (the page tables counted
    # as /proc/PID/status's VmPTE counts them).
    points = mm.rss_anon + mm.rss_file + mm.rss_shmem + mm.swap_pages + pte_pages(mm)
    return points + proc.oom_score_adj * (totalpages // 1000)


def oom_score(proc, totalpages):
    """/proc/PID/oom_score (proc_oom_score): the badness mapped onto 0..1333, 0 for a
    process that may not be killed."""
    badness = oom_badness(proc, totalpages)
    if badness is None:
        return 0
    return score_points(badness, totalpages)


def score_points(badness, totalpages):
    """proc_oom_score's scaling of a badness: 1000 plus its thousandths of the memory
    (C division, truncating towards zero), times two thirds."""
    return (1000 + _cdiv(badness * 1000, max(totalpages, 1))) * 2 // 3


def _candidates(kernel, memcg):
    """The thread groups the OOM killer looks at, in the order it looks: every process
    (for_each_process: creation order) or, for a cgroup, each cgroup of its subtree
    parents first and in it its processes (simulator-defined: in pid order)."""
    leaders = sorted((p for p in kernel.processes.values() if p.pid == p.tgid),
                     key=lambda p: p.pid)
    if memcg is None:
        return leaders
    order = {}
    stack = [memcg]
    while stack:   # pre-order, as mem_cgroup_iter walks it
        m = stack.pop()
        order[id(m)] = len(order)
        stack.extend(reversed(list(m.children.values())))
    inside = [p for p in leaders if id(p.memcg) in order]
    return sorted(inside, key=lambda p: order[id(p.memcg)])


def select_bad_process(kernel, memcg, totalpages):
    """oom_evaluate_task over the candidates: the highest badness wins, the last one
    looked at on a tie (a later task replaces the chosen one at equal points)."""
    chosen, best = None, None
    for proc in _candidates(kernel, memcg):
        points = oom_badness(proc, totalpages, memcg)
        if points is None:
            continue
        if best is None or points >= best:
            chosen, best = proc, points
    return chosen


def totalpages_of(kernel, memcg):
    """oc->totalpages: the cgroup's limit (with swap), or RAM plus swap."""
    total = (kernel.memory >> PAGE_SHIFT) + kernel.swap_total_pages()
    if memcg is None:
        return total
    return max(min(memcg.max + min(memcg.swap_max, kernel.swap_total_pages()), total), 1)


def oom_group_of(victim, domain):
    """mem_cgroup_get_oom_group: the highest cgroup from the victim's up to the one out
    of memory (the root for the machine) with memory.oom.group set, or None."""
    memcg = victim.memcg
    if memcg.parent is None:
        return None
    inside = domain is None or any(m is domain for m in memcg.ancestors())
    if not inside:
        return None
    group = None
    for m in memcg.ancestors():
        if m.oom_group:
            group = m
        if m is domain:
            break
    return group


def out_of_memory(kernel, memcg):
    """Kill the worst process of ``memcg``'s subtree (the machine's when None), and
    its cgroup with it when memory.oom.group says so.  Returns the victim, or None when
    there is nobody to kill."""
    totalpages = totalpages_of(kernel, memcg)
    victim = select_bad_process(kernel, memcg, totalpages)
    if victim is None:
        return None
    group = oom_group_of(victim, memcg)
    oom_kill_process(victim, memcg)
    if group is not None:
        memory_event(group, "oom_group_kill")
        inside = {id(m) for m in group.subtree()}
        for proc in sorted(kernel.processes.values(), key=lambda p: p.pid):
            if (proc.pid == proc.tgid and id(proc.memcg) in inside
                    and not is_global_init(proc, memcg)
                    and proc.oom_score_adj != OOM_SCORE_ADJ_MIN):
                oom_kill_process(proc, memcg)
    return victim


def oom_kill_process(victim, memcg=None):
    """__oom_kill_process: count the kill (/proc/vmstat oom_kill, and memory.events
    oom_kill of the cgroup its address space is charged to) and SIGKILL its thread
    group and every other process sharing its address space (global init aside, for
    the machine's OOM killer: ``memcg`` None).  A group already gone is skipped."""
    kernel = victim.kernel
    mm = task_mm(victim)
    if mm is None:
        return
    kernel.node.events["oom_kill"] += 1
    memory_event(mm.memcg, "oom_kill")
    kill(victim)
    for proc in sorted(kernel.processes.values(), key=lambda p: p.pid):
        if proc.mm is mm and proc.pid == proc.tgid and not is_global_init(proc, memcg):
            kill(proc)


def kill(victim):
    """SIGKILL to every thread of the victim's group: it exits at once.  The group's
    pid goes on ``kernel.oom_killed`` (what a replay reports)."""
    kernel = victim.kernel
    group = [p for p in kernel.processes.values()
             if p.tgid == victim.tgid and p.state == "running"]
    if not group:
        return
    for p in group:
        p.term_sig = SIGKILL
    # The method without its syscall wrapper: the victim is not the caller (and the
    # caller stays ``kernel.current`` whatever the exit path calls).
    current = kernel.current
    try:
        type(group[0]).exit_group.__wrapped__(group[0], 0)
    finally:
        kernel.current = current
    for p in group:
        p.exit_status = 0
        p.term_sig = SIGKILL
    leader = kernel.processes.get(victim.tgid)
    if leader is not None:
        leader.term_sig = SIGKILL
        leader.exit_status = 0
    kernel.oom_killed.append(victim.tgid)


__all__ = ["oom_badness", "oom_score", "score_points", "select_bad_process", "out_of_memory",
           "oom_kill_process", "oom_group_of", "kill", "task_mm", "totalpages_of",
           "is_global_init", "in_vfork", "OOM_SCORE_ADJ_MIN", "OOM_SCORE_ADJ_MAX"]

"""Memory cgroups (mm/memcontrol.c, mm/page_counter.c): the cgroup tree, page
counters with their limits, the per-cgroup LRU lists (the ``Lruvec``) and the
counters ``memory.stat`` and ``memory.events`` show.

There is one NUMA node, so a cgroup has one lruvec.  The root cgroup always exists
and has no limit; every page charged to a cgroup is charged to all its ancestors
too (a page counter per level), and the first level whose limit a charge would pass
is the one reclaimed (``first_over``).  This module only keeps the books: reclaim and
the OOM killer are above it (``vmscan``, ``oom``) and are reached through the
``Kernel``.
"""

from collections import OrderedDict

from .defs import PAGE_SHIFT

# The LRU lists of an lruvec, in the kernel's order (enum lru_list).
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = 0, 1, 2, 3
# "max": PAGE_COUNTER_MAX, the largest count a page counter holds.
PAGE_COUNTER_MAX = ((1 << 63) - 1) >> PAGE_SHIFT

# Event counters, named as memory.stat and /proc/vmstat name them.
EVENTS = ("pgscan", "pgsteal", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
          "pgscan_proactive", "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged",
          "pgsteal_proactive", "pgfault", "pgmajfault", "pgrefill", "pgactivate",
          "pgdeactivate", "pglazyfree", "pglazyfreed",
          "workingset_refault_anon", "workingset_refault_file",
          "workingset_activate_anon", "workingset_activate_file",
          "workingset_restore_anon", "workingset_restore_file", "workingset_nodereclaim",
          "pswpin", "pswpout", "pgrotated", "thp_collapse_alloc")

# memory.events, in the kernel's order.
MEMORY_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")


class Lruvec:
    """One cgroup's LRU lists on the (only) node.  The file lists hold page-cache
    folios in age order (oldest first; the kernel's list tail); the anon lists are
    counts here, their order being kept with the anonymous pages themselves
    (``pages.lru_state``).  ``nonresident_age`` is workingset.c's clock, ``refaults``
    its snapshot at the last reclaim, ``anon_cost``/``file_cost`` the recent reclaim
    costs lru_note_cost records."""

    __slots__ = ("memcg", "lists", "nr", "nonresident_age", "refaults", "iter_pos",
                 "anon_cost", "file_cost")

    def __init__(self, memcg):
        self.memcg = memcg
        self.lists = (None, None, OrderedDict(), OrderedDict())
        self.nr = [0, 0, 0, 0]
        self.nonresident_age = 0
        self.refaults = [0, 0]   # workingset_activate_{anon,file} at the last reclaim
        self.iter_pos = 0        # where the next partial reclaim walk of this subtree starts
        self.anon_cost = self.file_cost = 0


class MemCgroup:
    """A memory cgroup: its limits (in pages), its page counter (``current``, which
    includes its descendants), its own counters, and its lruvec."""

    __slots__ = ("name", "parent", "children", "max", "high", "low", "min", "swap_max",
                 "current", "peak", "swap_current", "lruvec", "stat", "events",
                 "local_events", "procs", "oom_group", "id", "node", "subtree_memory",
                 "dying", "flushed")

    _ids = [0]

    def __init__(self, name, parent=None, node=None):
        self.name = name
        self.node = node if parent is None else parent.node   # the machine's Node
        self.parent = parent
        self.children = {}
        self.max = self.high = self.swap_max = PAGE_COUNTER_MAX
        self.low = self.min = 0
        self.current = self.peak = self.swap_current = 0
        self.lruvec = Lruvec(self)
        # Page states charged to this cgroup itself (not its children), in pages.
        self.stat = dict.fromkeys(("anon", "file", "shmem", "file_mapped", "file_dirty",
                                   "file_writeback", "swapcached", "swap"), 0)
        self.stat.update(dict.fromkeys(EVENTS, 0))
        # The subtree's statistics as of the last flush (``flush_stats``): what the
        # kernel's lruvec_page_state reads for reclaim's heuristics.
        self.flushed = {"lru": [0, 0, 0, 0], "workingset_activate_file": 0,
                        "workingset_activate_anon": 0}
        self.events = dict.fromkeys(MEMORY_EVENTS, 0)         # hierarchical
        self.local_events = dict.fromkeys(MEMORY_EVENTS, 0)   # memory.events.local
        self.procs = set()   # pids of the processes in this cgroup
        self.oom_group = False
        # "memory" in cgroup.subtree_control: the root's is on from the start (as
        # systemd leaves it), a new cgroup's off.  ``dying``: removed, still charged.
        self.subtree_memory = parent is None
        self.dying = False
        self._ids[0] += 1
        self.id = self._ids[0]
        if parent is not None:
            parent.children[name.rsplit("/", 1)[-1]] = self

    def path(self):
        """The cgroup's path below the hierarchy's root ("/" for the root)."""
        return self.name or "/"

    def subtree(self):
        """This cgroup and every descendant, parents before children."""
        out = [self]
        for m in out:
            out.extend(m.children.values())
        return out

    def ancestors(self):
        """This cgroup and each of its ancestors up to the root."""
        m = self
        while m is not None:
            yield m
            m = m.parent

    def total(self, name):
        """A ``stat`` counter summed over the subtree (what memory.stat shows)."""
        return sum(m.stat[name] for m in self.subtree())

    def lru_total(self, lru):
        """The subtree's pages on LRU list ``lru``."""
        return sum(m.lruvec.nr[lru] for m in self.subtree())


def flush_stats(memcg):
    """mem_cgroup_flush_stats: fold the statistics of ``memcg``'s subtree, so that
    the values reclaim reads (``MemCgroup.flushed``: the LRU sizes and the refault
    activations, each summed over a cgroup's subtree) are current again.  Reclaim
    itself only flushes when the periodic flusher is a cycle late (two seconds:
    mem_cgroup_flush_stats_ratelimited), which, as system calls take no simulated
    time, it never is: a flush happens when a cgroup's memory.stat is read
    (memory_stat_show), when ``Kernel.flush_stats`` runs the periodic flusher, and
    every 2 s of ``Kernel.advance``."""
    for m in memcg.subtree():
        sub = m.subtree()
        m.flushed = {"lru": [sum(c.lruvec.nr[i] for c in sub) for i in range(4)],
                     "workingset_activate_file": m.total("workingset_activate_file"),
                     "workingset_activate_anon": m.total("workingset_activate_anon")}


def charge(memcg, nr):
    """page_counter_charge: add ``nr`` pages to the counter of ``memcg`` and of every
    ancestor (no limit check; ``first_over`` is the check)."""
    m = memcg
    while m is not None:
        c = m.current + nr
        m.current = c
        if c > m.peak:
            m.peak = c
        m = m.parent


def uncharge(memcg, nr):
    """page_counter_uncharge: take ``nr`` pages off ``memcg`` and its ancestors."""
    m = memcg
    while m is not None:
        m.current -= nr
        m = m.parent


def first_over(memcg, nr):
    """The cgroup nearest to ``memcg`` whose memory.max ``nr`` more pages would pass
    (page_counter_try_charge's failing counter), or None."""
    m = memcg
    while m is not None:
        if m.current + nr > m.max:
            return m
        m = m.parent
    return None


def over_high(memcg):
    """The cgroups from ``memcg`` up whose usage is above memory.high."""
    return [m for m in memcg.ancestors() if m.current > m.high]


def swap_charge(memcg, nr):
    """Charge ``nr`` swap slots to ``memcg``'s swap counter and its ancestors' (a
    negative ``nr`` uncharges); the cgroup's own ``swap`` stat follows."""
    memcg.stat["swap"] += nr
    m = memcg
    while m is not None:
        m.swap_current += nr
        m = m.parent


def swap_room(memcg):
    """How many more slots memory.swap.max lets ``memcg`` use (the tightest ancestor)."""
    room = PAGE_COUNTER_MAX
    for m in memcg.ancestors():
        room = min(room, m.swap_max - m.swap_current)
    return max(room, 0)


SWAP_CLUSTER_MAX = 32


def lru_note_cost(memcg, file, nr_io, nr_rotated):
    """lru_note_cost: record the cost of reclaiming a list type in ``memcg``'s lruvec
    and every ancestor's: each page of I/O (a swap-out, a refault of the workingset)
    costs SWAP_CLUSTER_MAX, each page rotated back one; both costs halve once they
    pass a quarter of that lruvec's LRU pages, so recent events weigh most.
    Simulator-defined: the LRU size is the current one, not the last flushed."""
    cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
    if not cost:
        return
    m = memcg
    while m is not None:
        lv = m.lruvec
        if file:
            lv.file_cost += cost
        else:
            lv.anon_cost += cost
        if lv.file_cost + lv.anon_cost > sum(m.lru_total(i) for i in range(4)) // 4:
            lv.file_cost //= 2
            lv.anon_cost //= 2
        m = m.parent


def count_event(memcg, name, nr):
    """Add ``nr`` to event ``name`` of ``memcg`` and of the machine's /proc/vmstat."""
    memcg.stat[name] += nr
    memcg.node.events[name] += nr


def memory_event(memcg, name):
    """memcg_memory_event: count ``name`` locally and in every ancestor's memory.events."""
    memcg.local_events[name] += 1
    for m in memcg.ancestors():
        if m.parent is None:
            break   # the root has no memory.events file
        m.events[name] += 1


__all__ = ["MemCgroup", "Lruvec", "flush_stats", "charge", "uncharge", "first_over",
           "over_high", "count_event", "lru_note_cost", "memory_event", "swap_charge", "swap_room",
           "LRU_INACTIVE_ANON", "LRU_ACTIVE_ANON",
           "LRU_INACTIVE_FILE", "LRU_ACTIVE_FILE", "PAGE_COUNTER_MAX", "EVENTS",
           "MEMORY_EVENTS"]

"""The cgroup v2 file interface of the memory controller (kernel/cgroup/cgroup.c,
mm/memcontrol.c, mm/page_counter.c): cgroups made and removed as directories under
/sys/fs/cgroup, their ``cgroup.*`` and ``memory.*`` files read and written as the
kernel's handlers do, and processes moved between cgroups through ``cgroup.procs``.

The books themselves (page counters, LRU, events) are ``memcg``'s; reclaim and the
OOM killer are reached through the ``Kernel``.  docs/pressure.md, "Memory cgroups,
sysctls and the OOM killer", lists what is modelled and the simulator-defined choices.
"""

import errno
import posixpath

from . import memcg as memcg_mod
from . import oom, vmscan
from .defs import PAGE_SHIFT, PAGE_SIZE, error
from .kstrtox import kstrtoint, memparse, strstrip
from .pages import charge_anon, mlocked_lru, private_anon_pages, swap_cached, thp_count
from .memcg import (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE,
                    MEMORY_EVENTS, PAGE_COUNTER_MAX, MemCgroup)

CGROUP_ROOT = "/sys/fs/cgroup"

# The files of every cgroup, and those the memory controller adds to a non-root
# cgroup whose parent enables it in cgroup.subtree_control.  memory.stat is on the
# root too.
CORE_FILES = ("cgroup.controllers", "cgroup.procs", "cgroup.subtree_control")
CHILD_CORE_FILES = CORE_FILES + ("cgroup.events",)
MEMORY_FILES = ("memory.current", "memory.events", "memory.events.local", "memory.high",
                "memory.low", "memory.max", "memory.min", "memory.oom.group", "memory.peak",
                "memory.stat", "memory.swap.current", "memory.swap.max")
ROOT_MEMORY_FILES = ("memory.stat",)
WRITABLE = {"cgroup.procs", "cgroup.subtree_control", "memory.high", "memory.low",
            "memory.max", "memory.min", "memory.oom.group", "memory.peak",
            "memory.swap.max"}

# memory.stat as memory_stat_format prints it in 6.18 for the reference machine's
# configuration (CONFIG_SWAP, CONFIG_ZSWAP, CONFIG_TRANSPARENT_HUGEPAGE,
# CONFIG_NUMA_BALANCING; hugetlb is left out without memory_hugetlb_accounting):
# (field, source) where the source is a ``stat`` key summed over the subtree, an LRU
# list, one of the computed values below, or None for what the model does not have
# (printed as 0).  Sizes are printed in bytes, events as counts.
_LRU = {"inactive_anon": LRU_INACTIVE_ANON, "active_anon": LRU_ACTIVE_ANON,
        "inactive_file": LRU_INACTIVE_FILE, "active_file": LRU_ACTIVE_FILE}
STAT_SIZES = ("anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables",
              "percpu", "sock", "vmalloc", "shmem", "zswap", "zswapped", "file_mapped",
              "file_dirty", "file_writeback", "swapcached", "anon_thp", "file_thp",
              "shmem_thp", "inactive_anon", "active_anon", "inactive_file", "active_file",
              "unevictable", "slab_reclaimable", "slab_unreclaimable", "slab")
STAT_STATE_EVENTS = ("workingset_refault_anon", "workingset_refault_file",
                     "workingset_activate_anon", "workingset_activate_file",
                     "workingset_restore_anon", "workingset_restore_file",
                     "workingset_nodereclaim", "pgdemote_kswapd", "pgdemote_direct",
                     "pgdemote_khugepaged", "pgdemote_proactive", "pgpromote_success")
STAT_EVENTS = ("pgscan", "pgsteal", "pswpin", "pswpout", "pgscan_kswapd", "pgscan_direct",
               "pgscan_khugepaged", "pgscan_proactive", "pgsteal_kswapd", "pgsteal_direct",
               "pgsteal_khugepaged", "pgsteal_proactive", "pgfault", "pgmajfault",
               "pgrefill", "pgactivate", "pgdeactivate", "pglazyfree", "pglazyfreed",
               "swpin_zero", "swpout_zero", "zswpin", "zswpout", "zswpwb",
               "thp_fault_alloc", "thp_collapse_alloc", "thp_swpout", "thp_swpout_fallback",
               "numa_pages_migrated", "numa_pte_updates", "numa_hint_faults")
# The fields whose value the model has; every other one reads 0.
STAT_MODELLED = ({"anon", "file", "shmem", "file_mapped", "file_dirty", "file_writeback",
                  "swapcached", "anon_thp", "unevictable"} | set(_LRU)
                 | set(memcg_mod.EVENTS))


def _split(path):
    """The components of ``path`` below /sys/fs/cgroup, or None when it is not under it."""
    if not isinstance(path, str):
        raise error(errno.EFAULT, "a path must be a str")
    if "\0" in path:
        raise error(errno.EINVAL, "a path with a NUL")
    norm = posixpath.normpath(path)
    if norm == CGROUP_ROOT:
        return []
    if not norm.startswith(CGROUP_ROOT + "/"):
        return None
    return norm[len(CGROUP_ROOT) + 1:].split("/")


def is_cgroupfs(path):
    """Whether ``path`` is /sys/fs/cgroup or below it."""
    return _split(path) is not None


def files_of(memcg):
    """The names of the files in ``memcg``'s directory."""
    if memcg.parent is None:
        return CORE_FILES + ROOT_MEMORY_FILES
    if memcg.parent.subtree_memory:
        return CHILD_CORE_FILES + MEMORY_FILES
    return CHILD_CORE_FILES


def _walk(kernel, parts):
    """The cgroup named by ``parts`` (all directories), ENOTDIR when one is a file,
    ENOENT when one is missing."""
    m = kernel.root_memcg
    for i, name in enumerate(parts):
        key = "/".join(parts[:i + 1])
        child = kernel.memcgs.get(key)
        if child is None:
            if name in files_of(m):
                raise error(errno.ENOTDIR, "/".join(parts))
            raise error(errno.ENOENT, "/".join(parts))
        m = child
    return m


def resolve(kernel, path):
    """``(cgroup, file name)`` for a file path, ``(cgroup, None)`` for a directory."""
    parts = _split(path)
    if parts is None:
        raise error(errno.ENOENT, path)
    if not parts:
        return kernel.root_memcg, None
    key = "/".join(parts)
    if key in kernel.memcgs:
        return kernel.memcgs[key], None
    parent = _walk(kernel, parts[:-1])
    if parts[-1] not in files_of(parent):
        raise error(errno.ENOENT, path)
    return parent, parts[-1]


def find(kernel, name):
    """The cgroup called ``name`` ("a/b", "/a/b" or "/sys/fs/cgroup/a/b")."""
    if not isinstance(name, str):
        raise error(errno.EINVAL, "a cgroup name must be a str")
    if not name.startswith(CGROUP_ROOT):
        name = CGROUP_ROOT + "/" + name.lstrip("/")
    memcg, file = resolve(kernel, name)
    if file is not None:
        raise error(errno.ENOTDIR, name)
    return memcg


# ------------------------------------------------------------------ mkdir / rmdir

def mkdir(kernel, path):
    """cgroup_mkdir: a new child cgroup, with default limits."""
    parts = _split(path)
    if parts is None:
        raise error(errno.ENOENT, "only cgroups can be made under /sys/fs/cgroup")
    if not parts:
        raise error(errno.EEXIST, path)
    parent = _walk(kernel, parts[:-1])
    name = parts[-1]
    key = "/".join(parts)
    if key in kernel.memcgs or name in files_of(parent):
        raise error(errno.EEXIST, path)
    if "\n" in name:
        raise error(errno.EINVAL, "a cgroup name with a newline")
    if len(name.encode()) > 255:
        raise error(errno.ENAMETOOLONG, path)
    memcg = MemCgroup(key, parent)
    kernel.memcgs[key] = memcg
    return memcg


def rmdir(kernel, path):
    """cgroup_rmdir: remove an empty cgroup (no process, no child).  Its charges stay
    where they are, counted by its ancestors, until the pages go (an offline cgroup)."""
    parts = _split(path)
    if parts is None:
        raise error(errno.ENOENT, path)
    if not parts:
        raise error(errno.EBUSY, "the hierarchy's root is a mount point")
    memcg, file = resolve(kernel, path)
    if file is not None:
        raise error(errno.ENOTDIR, path)
    if any(kernel.processes[pid].state == "running" for pid in memcg.procs
           if pid in kernel.processes):
        raise error(errno.EBUSY, "the cgroup has processes")
    if any(not c.dying for c in memcg.children.values()):
        raise error(errno.EBUSY, "the cgroup has children")
    del kernel.memcgs[memcg.name]
    parent = memcg.parent
    del parent.children[parts[-1]]
    memcg.dying = True
    # A zombie left in it is accounted to the parent from now on.
    for pid in memcg.procs:
        proc = kernel.processes.get(pid)
        if proc is not None:
            proc.memcg = parent
            parent.procs.add(pid)
    memcg.procs = set()
    if memcg.current or memcg.lruvec.nr[LRU_INACTIVE_FILE] or memcg.lruvec.nr[LRU_ACTIVE_FILE]:
        # Still charged for pages: it lingers, out of sight, under another key.
        parent.children[f"{parts[-1]}\0{memcg.id}"] = memcg


# ------------------------------------------------------------------ moving processes

def move_charge(mm, dst):
    """Simulator-defined: an address space moving to another cgroup takes the charge of
    the anonymous pages it alone maps with it (uncharged from the old cgroup, charged
    to ``dst``); pages shared since a fork stay charged where they were."""
    src = mm.memcg
    if src is dst:
        return
    for active, n in enumerate(private_anon_pages(mm, by_list=True)):
        if n:
            charge_anon(src, -n, active)
            charge_anon(dst, n, active)
    mm.memcg = dst


def attach(kernel, proc, dst):
    """cgroup_attach_task for a whole thread group: every thread of ``proc``'s group
    goes to ``dst``, and so does the charge of its address space.  EBUSY when ``dst``
    enables the memory controller for its children (the no-internal-process rule)."""
    if dst.parent is not None and dst.subtree_memory:
        raise error(errno.EBUSY, "a cgroup with controllers enabled for its children "
                                 "cannot hold processes")
    if dst.dying:
        raise error(errno.ENOENT, "the cgroup was removed")
    group = [p for p in kernel.processes.values() if p.tgid == proc.tgid]
    if not any(p.state == "running" for p in group):
        return   # an exiting group is not moved (cgroup_migrate_add_task)
    for p in group:
        if p.memcg is not dst:
            p.memcg.procs.discard(p.pid)
            dst.procs.add(p.pid)
            p.memcg = dst
    for mm in {id(p.mm): p.mm for p in group if p.mm is not None}.values():
        move_charge(mm, dst)
    _enforce_max(kernel, dst)


def _enforce_max(kernel, memcg):
    """After charges moved in: reclaim, then OOM-kill, until every cgroup from
    ``memcg`` up is within memory.max again (try_charge's loop, run for no caller)."""
    current = kernel.current
    kernel.current = None
    try:
        for m in memcg.ancestors():
            _shrink_to(kernel, m, m.max, oom_kill=True)
    finally:
        kernel.current = current


def _shrink_to(kernel, memcg, limit, oom_kill):
    """memory_max_write's loop (memory_high_write's without ``oom_kill``): reclaim
    until usage is at most ``limit``, MAX_RECLAIM_RETRIES times without progress, then
    the cgroup's OOM killer for as long as it finds a victim."""
    retries = vmscan.MAX_RECLAIM_RETRIES
    while memcg.current > limit:
        if retries:
            if not vmscan.try_to_free_mem_cgroup_pages(kernel, memcg, memcg.current - limit):
                retries -= 1
            continue
        if not oom_kill:
            break
        memcg_mod.memory_event(memcg, "oom")
        if oom.out_of_memory(kernel, memcg) is None:
            break


# ------------------------------------------------------------------ reading

def _tunable(pages):
    """seq_puts_memcg_tunable: "max" or the value in bytes."""
    return "max\n" if pages >= PAGE_COUNTER_MAX else f"{pages * PAGE_SIZE}\n"


def _anon_thp_pages(kernel, memcg):
    """Pages of PMD-mapped anonymous THPs in the address spaces of the subtree,
    counted per mapper."""
    inside = {id(m) for m in memcg.subtree()}
    seen, n = set(), 0
    for p in kernel.processes.values():
        mm = p.mm
        if mm is None or id(mm) in seen or id(mm.memcg) not in inside:
            continue
        seen.add(id(mm))
        n += sum(thp_count(vma) for vma in mm.vmas() if vma.file is None) << 9
    return n


def memory_stat(kernel, memcg):
    """memory.stat: the subtree's page states (in bytes) and events (counts); reading
    it flushes the subtree's statistics (memory_stat_show)."""
    memcg_mod.flush_stats(memcg)
    sub = memcg.subtree()

    def total(key):
        return sum(m.stat[key] for m in sub)

    locked = mlocked_lru(kernel)
    held = [sum(locked.get(id(m), (0, 0, 0, 0))[i] for m in sub) for i in range(4)]
    lines = []
    for name in STAT_SIZES:
        if name in _LRU:
            lru = _LRU[name]
            pages = sum(m.lruvec.nr[lru] for m in sub) - held[lru]
        elif name == "unevictable":
            pages = sum(held)
        elif name == "swapcached":
            cached = swap_cached(kernel)
            pages = sum(cached.get(id(m), 0) for m in sub)
        elif name == "anon_thp":
            pages = _anon_thp_pages(kernel, memcg)
        elif name in STAT_MODELLED:
            pages = total(name)
        else:
            pages = 0
        lines.append(f"{name} {pages << PAGE_SHIFT}\n")
    for name in STAT_STATE_EVENTS:
        lines.append(f"{name} {total(name) if name in STAT_MODELLED else 0}\n")
    for name in STAT_EVENTS:
        if name in ("pgscan", "pgsteal"):
            n = sum(total(f"{name}_{how}") for how in ("kswapd", "direct", "khugepaged",
                                                        "proactive"))
        else:
            n = total(name) if name in STAT_MODELLED else 0
        lines.append(f"{name} {n}\n")
    return "".join(lines)


def _procs(kernel, memcg):
    """cgroup.procs: the thread-group leaders in the cgroup that still have a live
    thread, one pid a line (simulator-defined order: ascending)."""
    live = {p.tgid for p in kernel.processes.values() if p.state == "running"}
    return "".join(f"{pid}\n" for pid in sorted(memcg.procs)
                   if pid in live and kernel.processes[pid].tgid == pid)


def read(kernel, path):
    """The text of a cgroup file."""
    memcg, file = resolve(kernel, path)
    if file is None:
        raise error(errno.EISDIR, path)
    if file == "cgroup.procs":
        return _procs(kernel, memcg)
    if file == "cgroup.controllers":
        on = memcg.parent is None or memcg.parent.subtree_memory
        return "memory\n" if on else "\n"
    if file == "cgroup.subtree_control":
        return "memory\n" if memcg.subtree_memory else "\n"
    if file == "cgroup.events":
        inside = {id(m) for m in memcg.subtree()}
        populated = any(p.state == "running" and id(p.memcg) in inside
                        for p in kernel.processes.values())
        return f"populated {int(populated)}\nfrozen 0\n"
    if file == "memory.stat":
        return memory_stat(kernel, memcg)
    if file == "memory.current":
        return f"{memcg.current * PAGE_SIZE}\n"
    if file == "memory.peak":
        return f"{memcg.peak * PAGE_SIZE}\n"
    if file == "memory.swap.current":
        return f"{memcg.swap_current * PAGE_SIZE}\n"
    if file in ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max"):
        return _tunable(getattr(memcg, file[7:].replace(".", "_")))
    if file == "memory.oom.group":
        return f"{int(memcg.oom_group)}\n"
    events = memcg.local_events if file == "memory.events.local" else memcg.events
    return "".join(f"{name} {events[name]}\n" for name in MEMORY_EVENTS)


# ------------------------------------------------------------------ writing

def page_counter_memparse(text):
    """page_counter_memparse of the stripped text: "max", or bytes (memparse's
    suffixes) rounded down to pages; EINVAL for anything else."""
    text = strstrip(text)
    if text == "max":
        return PAGE_COUNTER_MAX
    value, end = memparse(text)
    if end != len(text):
        raise error(errno.EINVAL, "not a size")
    return min(value >> PAGE_SHIFT, PAGE_COUNTER_MAX)


def _subtree_control(kernel, memcg, text):
    """cgroup_subtree_control_write for the one controller there is."""
    enable = disable = False
    for tok in text.split():
        if tok[:1] not in ("+", "-") or tok[1:] != "memory":
            raise error(errno.EINVAL, f"no controller {tok!r}")
        if tok[0] == "+":
            enable, disable = True, False
        else:
            enable, disable = False, True
    if enable and not memcg.subtree_memory:
        if memcg.parent is not None and not memcg.parent.subtree_memory:
            raise error(errno.ENOENT, "memory is not in cgroup.controllers")
        if memcg.parent is not None and any(
                kernel.processes[pid].state == "running" for pid in memcg.procs
                if pid in kernel.processes):
            raise error(errno.EBUSY, "the cgroup has processes")
        memcg.subtree_memory = True
    elif disable and memcg.subtree_memory:
        if memcg.parent is None:
            # Simulator-defined: the root's memory controller stays (docs/pressure.md).
            raise error(errno.EBUSY, "the root keeps the memory controller")
        if any(c.subtree_memory for c in memcg.children.values() if not c.dying):
            raise error(errno.EBUSY, "a child enables memory for its own children")
        memcg.subtree_memory = False
        for child in memcg.children.values():
            # Its memory css goes; one made when memory is enabled again starts afresh.
            child.max = child.high = child.swap_max = PAGE_COUNTER_MAX
            child.low = child.min = 0
            child.oom_group = False


def write(kernel, path, text, writer=None):
    """Write ``text`` to a cgroup file as the process ``writer`` (None: an
    administrator's shell outside the simulation)."""
    if not isinstance(text, str):
        raise error(errno.EINVAL, "the text must be a str")
    memcg, file = resolve(kernel, path)
    if file is None:
        raise error(errno.EISDIR, path)
    if file not in WRITABLE:
        raise error(errno.EACCES, f"{file} is read-only")
    if file == "cgroup.procs":
        try:
            pid = kstrtoint(strstrip(text), 0)
        except OSError:
            raise error(errno.EINVAL, "not a pid") from None
        if pid == 0:
            if writer is None:
                raise error(errno.ESRCH, "pid 0 names the writer, which is not simulated")
            proc = writer
        else:
            proc = kernel.processes.get(pid)
            if proc is None:
                raise error(errno.ESRCH, f"no process {pid}")
        leader = kernel.processes.get(proc.tgid, proc)
        attach(kernel, leader, memcg)
        return
    if file == "cgroup.subtree_control":
        _subtree_control(kernel, memcg, text)
        return
    if file == "memory.oom.group":
        value = kstrtoint(strstrip(text), 0)
        if value not in (0, 1):
            raise error(errno.EINVAL, "memory.oom.group is 0 or 1")
        memcg.oom_group = bool(value)
        return
    if file == "memory.peak":
        # Simulator-defined: a reset every reader sees (the kernel keeps one per open
        # file, and here there are no open files).
        memcg.peak = memcg.current
        return
    pages = page_counter_memparse(text)
    if file == "memory.max":
        memcg.max = pages
        current = kernel.current
        kernel.current = None
        try:
            _shrink_to(kernel, memcg, pages, oom_kill=True)
        finally:
            kernel.current = current
    elif file == "memory.high":
        memcg.high = pages
        _shrink_to(kernel, memcg, pages, oom_kill=False)
    elif file == "memory.low":
        memcg.low = pages
    elif file == "memory.min":
        memcg.min = pages
    else:
        memcg.swap_max = pages


def proc_cgroup(proc):
    """/proc/PID/cgroup on a cgroup v2 system: "0::/PATH"."""
    return f"0::/{proc.memcg.name}\n"


__all__ = ["CGROUP_ROOT", "is_cgroupfs", "resolve", "find", "files_of", "mkdir", "rmdir",
           "attach", "move_charge", "memory_stat", "read", "write", "page_counter_memparse",
           "proc_cgroup"]

"""The anonymous LRU (docs/pressure.md, "The anonymous LRU"): where new anonymous folios
start, what activates and deactivates them, mlocked memory on the unevictable list,
reclaim's aging of the anon lists with swap (which swap is simulator-only: no test here
enables swap on the host), the reclaim costs of lru_note_cost and get_scan_count's
balance, and a property test that the lists' counts always equal the pages on them."""

import errno
import os
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmsim import memcg as memcg_mod
from mmsim import live, pagecache, pages, vmscan
from mmsim.errors import Killed
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLD, MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ,
                        PROT_WRITE)

P = 4096
MIB = 1 << 20
CG = "/sys/fs/cgroup/"
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
MADV_POPULATE_WRITE = 23


def stat(k, name="box"):
    """memory.stat of cgroup ``name``: sizes in pages, events as counts."""
    out = {}
    for line in k.proc_read(CG + name + "/memory.stat").splitlines():
        key, value = line.split()
        out[key] = int(value)
    for key in ("anon", "inactive_anon", "active_anon", "unevictable", "inactive_file",
                "active_file"):
        out[key] //= P
    return out


def meminfo(k):
    return {line.split(":")[0]: int(line.split()[1]) for line in k.meminfo().splitlines()}


def vmstat(k):
    return {line.split()[0]: int(line.split()[1]) for line in k.vmstat().splitlines()}


def boxed(k, limit=None):
    k.mkdir(CG + "box")
    if limit is not None:
        k.proc_write(CG + "box/memory.max", str(limit))
    return k.spawn(cgroup="box")


def books(k):
    pagecache.check(k)
    pages.check_anon_lru(k)
    pages.check_swap(k)
    for proc in k.processes.values():
        if proc.mm is not None:
            proc.mm.check()


# ------------------------------------------------------------------ without swap


def test_new_anonymous_memory_starts_on_the_inactive_list():
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 16 * MIB, RW, ANON)
    proc.touch(a, 16 * MIB)
    proc.touch(a, 16 * MIB)   # plain accesses only make the PTEs young
    s = stat(k)
    assert (s["inactive_anon"], s["active_anon"]) == (4096, 0)
    assert meminfo(k)["Inactive(anon)"] == 16 * 1024 and meminfo(k)["Active(anon)"] == 0


def test_populating_twice_activates_and_madv_cold_deactivates():
    """As the live kernel does (test_anon_lists_on_the_live_kernel): FOLL_TOUCH marks
    the folio accessed, the second time it goes active; MADV_COLD puts the active
    folios of its range on the inactive list (pgdeactivate)."""
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 16 * MIB, RW, ANON)
    proc.madvise(a, 16 * MIB, MADV_POPULATE_WRITE)
    assert stat(k)["active_anon"] == 0
    proc.madvise(a, 16 * MIB, MADV_POPULATE_WRITE)
    s = stat(k)
    assert (s["inactive_anon"], s["active_anon"], s["pgactivate"]) == (0, 4096, 4096)
    proc.madvise(a, 16 * MIB, MADV_POPULATE_WRITE)   # active already: nothing moves
    assert stat(k)["pgactivate"] == 4096
    before = vmstat(k)["pgdeactivate"]
    proc.madvise(a + 8 * MIB, 8 * MIB, MADV_COLD)
    s = stat(k)
    assert (s["inactive_anon"], s["active_anon"], s["pgdeactivate"]) == (2048, 2048, 2048)
    assert vmstat(k)["pgdeactivate"] - before == 2048
    proc.madvise(a + 8 * MIB, 8 * MIB, MADV_COLD)   # inactive ones stay where they are
    assert stat(k)["pgdeactivate"] == 2048


def test_madv_cold_leaves_pages_shared_since_fork_active():
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 4 * MIB, RW, ANON)
    for _ in range(2):
        proc.madvise(a, 4 * MIB, MADV_POPULATE_WRITE)
    child = proc.fork()
    assert stat(k)["active_anon"] == 1024   # the fork keeps the folios' state
    proc.madvise(a, 4 * MIB, MADV_COLD)
    assert stat(k)["active_anon"] == 1024
    child.exit(0)
    proc.wait4(child.pid, 0)
    proc.madvise(a, 4 * MIB, MADV_COLD)   # this mm's alone again
    assert stat(k)["active_anon"] == 0


def test_mlocked_memory_is_unevictable():
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 16 * MIB, RW, ANON)
    proc.touch(a, 16 * MIB)
    proc.mlock(a, 4 * MIB)
    s = stat(k)
    assert (s["inactive_anon"], s["unevictable"]) == (3072, 1024)
    info = meminfo(k)
    assert info["Unevictable"] == info["Mlocked"] == 4096
    assert info["Inactive(anon)"] == 12 * 1024
    assert vmstat(k)["nr_mlock"] == vmstat(k)["nr_unevictable"] == 1024
    proc.munlock(a, 4 * MIB)
    s = stat(k)
    assert (s["inactive_anon"], s["unevictable"]) == (4096, 0)


def test_moving_a_process_moves_its_lists_counts():
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 4 * MIB, RW, ANON)
    for _ in range(2):
        proc.madvise(a, 2 * MIB, MADV_POPULATE_WRITE)
    proc.touch(a, 4 * MIB)
    k.mkdir(CG + "other")
    k.proc_write(CG + "other/cgroup.procs", str(proc.pid))
    s = stat(k, "other")
    assert (s["inactive_anon"], s["active_anon"]) == (512, 512)
    assert stat(k)["anon"] == 0


# ------------------------------------------------------------------ with swap


def swapped_box(limit_mib, swap_mib=256):
    k = Kernel(randomize=False)
    k.swapon(swap_mib * MIB)
    proc = boxed(k, limit_mib * MIB)
    return k, proc


def test_reclaim_swaps_out_the_oldest_anonymous_memory_first():
    """The inactive list is scanned from its tail: memory faulted first goes first,
    whatever its address or process."""
    k, proc = swapped_box(8)
    other = proc.fork()
    late = proc.mmap(0, 4 * MIB, RW, ANON)
    early = other.mmap(0, 4 * MIB, RW, ANON)
    other.touch(early, 4 * MIB)          # first, in the child
    proc.touch(late, 3 * MIB)            # then in the parent, at a lower pid
    k.flush_stats()
    rest = proc.mmap(0, 4 * MIB, RW, ANON)
    proc.touch(rest, 4 * MIB)            # pushes the cgroup over its limit
    assert other.mm.swap_pages > 0
    assert proc.mm.swap_pages < other.mm.swap_pages
    # Pages faulted young get their second chance first: nothing is swapped out
    # before every older page has been scanned once.
    books(k)


def test_a_page_referenced_twice_is_activated_by_reclaim():
    k, proc = swapped_box(8)
    hot = proc.mmap(0, 1 * MIB, RW, ANON)
    proc.touch(hot, 1 * MIB)
    cold = proc.mmap(0, 32 * MIB, RW, ANON)
    for off in range(0, 32 * MIB, 2 * MIB):
        proc.touch(cold + off, 2 * MIB)
        proc.touch(hot, 1 * MIB, write=False)   # the hot pages stay young
    s = stat(k)
    assert s["pgactivate"] >= 256
    # The hot pages ended on the active list and were never swapped out.
    assert all(active for vma in [proc.mm.vma_lookup(hot)]
               for x, y, active in pages.anon_lru_states(vma))
    assert pages.swap_pages_of(proc.mm.vma_lookup(hot)) == 0
    assert s["pswpout"] > 0
    books(k)


def test_reclaim_deactivates_active_anon_when_the_inactive_list_is_low():
    k, proc = swapped_box(64)
    a = proc.mmap(0, 32 * MIB, RW, ANON)
    for _ in range(2):
        proc.madvise(a, 32 * MIB, MADV_POPULATE_WRITE)
    assert stat(k)["active_anon"] == 8192   # reading memory.stat flushes the statistics
    vmscan.try_to_free_mem_cgroup_pages(k, k.memcgs["box"], 512)
    s = stat(k)
    assert s["pgrefill"] > 0 and s["pgdeactivate"] > 0
    assert s["active_anon"] == 8192 - s["pgdeactivate"]
    books(k)


def test_no_aging_of_the_anon_lists_without_swap():
    """can_age_anon_pages: without swap nothing scans or ages the anon lists."""
    k = Kernel(randomize=False)
    k.create_file("/data", 32 * MIB)
    proc = boxed(k, 24 * MIB)
    a = proc.mmap(0, 8 * MIB, RW, ANON)
    for _ in range(2):
        proc.madvise(a, 8 * MIB, MADV_POPULATE_WRITE)
    stat(k)
    fd = proc.open("/data")
    while proc.read(fd, MIB):
        pass
    s = stat(k)
    assert s["active_anon"] == 2048 and s["pgdeactivate"] == 0
    assert s["pgscan"] > 0 and vmstat(k)["pgscan_anon"] == 0


def test_a_swapped_in_workingset_page_goes_to_the_active_list():
    """workingset_refault_anon: a page swapped out shortly before it is needed again
    comes back active (and restored when it was active before)."""
    k, proc = swapped_box(32)
    k.create_file("/data", 16 * MIB)
    fd = proc.open("/data")
    while proc.read(fd, MIB):   # the page cache the refault distance is measured with
        pass
    a = proc.mmap(0, 4 * MIB, RW, ANON)
    proc.touch(a, 4 * MIB)
    for _ in range(2):
        proc.madvise(a, 4 * MIB, MADV_POPULATE_WRITE)   # active
    proc.madvise(a, 4 * MIB, MADV_COLD)                  # inactive, PG_workingset
    proc.madvise(a, 4 * MIB, MADV_PAGEOUT)
    assert proc.mm.swap_pages == 1024
    proc.touch(a, 4 * MIB, write=False)
    s = stat(k)
    assert s["workingset_refault_anon"] == 1024
    assert s["workingset_activate_anon"] == s["workingset_restore_anon"] == 1024
    assert s["active_anon"] == 1024
    books(k)


# ------------------------------------------------------------------ lru_note_cost


def test_lru_note_cost_adds_up_and_decays():
    k = Kernel(randomize=False)
    k.mkdir(CG + "box")
    m = k.memcgs["box"]
    proc = k.spawn(cgroup="box")
    a = proc.mmap(0, 4 * MIB, RW, ANON)
    proc.touch(a, 4 * MIB)   # 1024 pages on the lists: costs decay past 256
    memcg_mod.lru_note_cost(m, False, 2, 10)   # 2 pages of I/O count 32 each
    assert (m.lruvec.anon_cost, m.lruvec.file_cost) == (74, 0)
    assert k.root_memcg.lruvec.anon_cost == 74   # every ancestor records it
    memcg_mod.lru_note_cost(m, True, 6, 0)
    assert (m.lruvec.anon_cost, m.lruvec.file_cost) == (37, 96)


def test_get_scan_count_balances_by_cost_and_swappiness():
    k, proc = swapped_box(64)
    m = k.memcgs["box"]
    sc = vmscan.ScanControl(m, 32, cgroup=True)
    sc.priority = 0
    m.lruvec.nr[:] = [4000, 0, 4000, 0]
    sc.anon_cost, sc.file_cost = 0, 0
    assert vmscan.get_scan_count(k, m, sc) == [4000, 0, 4000, 0]   # SCAN_EQUAL
    sc.priority = 1
    nr = vmscan.get_scan_count(k, m, sc)
    assert nr == [2000 * 60 // 200, 0, 2000 * 140 // 200, 0]     # equal costs
    sc.anon_cost = 1000   # anon was costly lately: less anon pressure
    nr2 = vmscan.get_scan_count(k, m, sc)
    assert nr2[0] < nr[0] and nr2[2] > nr[2]
    # At least a third of the pressure (before swappiness) stays on each type.
    sc.anon_cost, sc.file_cost = 10 ** 9, 0
    ap = 60 * (3 * 10 ** 9 + 1) // (2 * 10 ** 9 + 1)
    fp = 140 * (3 * 10 ** 9 + 1) // (10 ** 9 + 1)
    assert vmscan.get_scan_count(k, m, sc)[0] == 2000 * ap // (ap + fp)
    sc.cache_trim_mode = True
    assert vmscan.get_scan_count(k, m, sc) == [0, 0, 2000, 0]
    m.lruvec.nr[:] = [0, 0, 0, 0]


def test_anon_refaults_of_the_workingset_shift_reclaim_to_the_page_cache():
    """lru_note_cost_refault: restored anonymous refaults make anon costly, so the
    next reclaim at the same limit takes more page cache and swaps less."""
    def run(thrash_anon):
        k, proc = swapped_box(24)
        k.create_file("/data", 8 * MIB)
        fd = proc.open("/data")
        for _ in range(2):   # read twice: the cache is active, no cache-trim mode
            proc.lseek(fd, 0, 0)
            while proc.read(fd, MIB):
                pass
        a = proc.mmap(0, 8 * MIB, RW, ANON)
        proc.touch(a, 8 * MIB)
        if thrash_anon:
            for _ in range(2):
                proc.madvise(a, 8 * MIB, MADV_POPULATE_WRITE)
            proc.madvise(a, 8 * MIB, MADV_COLD)
            proc.madvise(a, 8 * MIB, MADV_PAGEOUT)
            proc.touch(a, 8 * MIB, write=False)   # restored refaults: anon cost
        m = k.memcgs["box"]
        cost = m.lruvec.anon_cost
        stat(k)
        before = vmstat(k)
        b = proc.mmap(0, 12 * MIB, RW, ANON)
        proc.touch(b, 12 * MIB)
        after = vmstat(k)
        books(k)
        return cost, after["pgscan_anon"] - before["pgscan_anon"]
    cost0, scanned0 = run(False)
    cost1, scanned1 = run(True)
    assert cost0 == 0 and cost1 > 0
    assert 0 < scanned1 < scanned0


# ------------------------------------------------------------------ the books


OPS = st.lists(st.tuples(st.sampled_from(["touch", "read", "populate", "cold", "pageout",
                                          "fork", "exit", "munmap", "mlock", "munlock",
                                          "reclaim", "move", "mremap"]),
                         st.integers(0, 2), st.integers(0, 60), st.integers(1, 40)),
               max_size=25)


@settings(max_examples=60, deadline=None)
@given(OPS, st.booleans(), st.sampled_from(["never", "always"]))
@example([("populate", 0, 0, 10), ("populate", 0, 0, 10), ("cold", 0, 0, 5),
          ("reclaim", 0, 0, 40), ("mlock", 0, 2, 4), ("fork", 0, 0, 1), ("cold", 1, 0, 9)],
         True, "never")
@example([("touch", 0, 0, 10), ("pageout", 0, 0, 10), ("read", 0, 0, 10), ("mremap", 0, 0, 1),
          ("fork", 0, 0, 1), ("reclaim", 1, 0, 40), ("touch", 1, 0, 3), ("exit", 1, 0, 1)],
         True, "always")
def test_the_anon_lists_always_count_their_pages(ops, swap, thp):
    """Every anonymous page is on exactly one list of the cgroup charged for it, and
    each list's count is the pages on it (check_anon_lru), whatever happens."""
    k = Kernel(randomize=False)
    k.proc_write("/sys/kernel/mm/transparent_hugepage/enabled", thp)
    if swap:
        k.swapon(4 * MIB)
    k.mkdir(CG + "box")
    k.mkdir(CG + "other")
    k.proc_write(CG + "box/memory.max", str(256 * P))
    first = k.spawn(cgroup="box")
    procs = [first]
    size = 1024
    maps = {first.pid: first.mmap(0, size * P, RW, ANON)}
    for op, who, off, n in ops:
        procs = [p for p in procs if p.state == "running"]
        if not procs:
            break
        proc = procs[who % len(procs)]
        a = maps[proc.pid]
        off = off * 16
        n = min(n * 16, size - off)
        try:
            if op == "touch":
                proc.touch(a + off * P, n * P)
            elif op == "read":
                proc.touch(a + off * P, n * P, write=False)
            elif op == "populate":
                proc.madvise(a + off * P, n * P, MADV_POPULATE_WRITE)
            elif op == "cold":
                proc.madvise(a + off * P, n * P, MADV_COLD)
            elif op == "pageout":
                proc.madvise(a + off * P, n * P, MADV_PAGEOUT)
            elif op == "fork":
                child = proc.fork()
                procs.append(child)
                maps[child.pid] = a
            elif op == "exit" and proc is not first:
                proc.exit(0)
            elif op == "munmap":
                proc.munmap(a + off * P, n * P)
            elif op == "mlock":
                proc.mlock(a + off * P, n * P)
            elif op == "munlock":
                proc.munlock(a + off * P, n * P)
            elif op == "reclaim":
                stat(k)
                vmscan.try_to_free_mem_cgroup_pages(k, k.memcgs["box"], n)
            elif op == "move" and proc is not first:
                k.proc_write(CG + "other/cgroup.procs", str(proc.pid))
            elif op == "mremap":
                # MREMAP_MAYMOVE|MREMAP_FIXED there and back: the swap cache's slots
                # move with the pages.
                b = proc.mremap(a, size * P, size * P, 3, a + 2 * size * P)
                maps[proc.pid] = proc.mremap(b, size * P, size * P, 3, a)
        except Killed:
            pass
        except OSError as exc:
            assert exc.errno in (errno.EFAULT, errno.ENOMEM, errno.EINVAL, errno.ESRCH,
                                 errno.EAGAIN, errno.EPERM)
        books(k)
        rows = pages.anon_lru_pages(k)
        for m in k.root_memcg.subtree():
            _, inactive, active, li, la = rows.get(id(m), (m, 0, 0, 0, 0))
            assert li <= inactive and la <= active
        info = meminfo(k)
        assert info["Active(anon)"] >= 0 and info["Inactive(anon)"] >= 0


# ------------------------------------------------------------------ live


MLOCK = "mlock"


def _libc():
    """libc through ctypes, with mmap, madvise and mlock typed."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _live_lists(steps):
    """On the host, in a v1 memory cgroup: 16 MiB of anonymous memory, then each step
    ``(advice or MLOCK, offset, length)``; memory.stat's lists (in pages, less those
    before the first step) after each one."""
    libc = _libc()

    def child(cg):
        def lists():
            time.sleep(0.3)
            d = dict(line.split() for line in open(cg + "/memory.stat"))
            return [int(d[x]) >> 12 for x in ("inactive_anon", "active_anon", "unevictable")]
        a = libc.mmap(None, 16 * MIB, RW, ANON, -1, 0)
        base = lists()
        out = []
        for advice, off, length in steps:
            if advice == MLOCK:
                libc.mlock(a + off, length)
            else:
                libc.madvise(a + off, length, advice)
            out.append([x - y for x, y in zip(lists(), base)])
        return out

    return live.in_v1_memcg("anonlru-lists", child)


def _sim_lists(steps):
    """``_live_lists`` on mmsim (without swap, as the host)."""
    k = Kernel(randomize=False)
    proc = boxed(k)
    a = proc.mmap(0, 16 * MIB, RW, ANON)
    names = ("inactive_anon", "active_anon", "unevictable")
    base = [stat(k)[x] for x in names]
    out = []
    for advice, off, length in steps:
        if advice == MLOCK:
            proc.mlock(a + off, length)
        else:
            proc.madvise(a + off, length, advice)
        s = stat(k)
        out.append([s[x] - b for x, b in zip(names, base)])
    return out


LIVE_STEPS = {
    "populate-cold-mlock": (
        [(MADV_POPULATE_WRITE, 0, 16 * MIB), (MADV_POPULATE_WRITE, 0, 16 * MIB),
         (MADV_COLD, 8 * MIB, 8 * MIB), (MLOCK, 0, 4 * MIB)],
        [[4096, 0, 0], [0, 4096, 0], [2048, 2048, 0], [2048, 1024, 1024]]),
    # Without swap, MADV_PAGEOUT's reclaim cannot take anonymous pages: they are
    # put back active (live: pgactivate 2048 for 8 MiB).
    "pageout-without-swap": (
        [(MADV_POPULATE_WRITE, 0, 16 * MIB), (MADV_PAGEOUT, 0, 8 * MIB),
         (MADV_POPULATE_WRITE, 0, 16 * MIB), (MADV_POPULATE_WRITE, 0, 16 * MIB),
         (MADV_PAGEOUT, 0, 8 * MIB)],
        [[4096, 0, 0], [2048, 2048, 0], [0, 4096, 0], [0, 4096, 0], [0, 4096, 0]]),
}


@pytest.mark.parametrize("name", sorted(LIVE_STEPS))
def test_anon_list_steps_on_mmsim(name):
    steps, want = LIVE_STEPS[name]
    assert _sim_lists(steps) == want


@pytest.mark.live
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory") or os.geteuid() != 0,
                    reason="needs root and a cgroup v1 memory controller")
@pytest.mark.parametrize("name", sorted(LIVE_STEPS))
def test_anon_lists_on_the_live_kernel(name):
    """The same steps on the host and on mmsim move the same pages between the lists
    (within 256 pages: the live Python process allocates some 100 pages of its own
    while it runs, and a few pages wait in per-CPU batches)."""
    steps, _ = LIVE_STEPS[name]
    sim = _sim_lists(steps)
    live = _live_lists(steps)
    for got, want in zip(live, sim):
        assert all(abs(g - w) <= 256 for g, w in zip(got, want)), (live, sim)


# ------------------------------------------------------------------ the swap cache


def paged_out(npages, swap_mib=64, swap_max=None):
    """``npages`` of anonymous memory written, then paged out to swap."""
    k = Kernel(randomize=False)
    k.swapon(swap_mib * MIB)
    proc = boxed(k)
    if swap_max is not None:
        k.proc_write(CG + "box/memory.swap.max", str(swap_max))
    a = proc.mmap(0, npages * P, RW, ANON)
    proc.touch(a, npages * P)
    proc.madvise(a, npages * P, MADV_PAGEOUT)
    assert proc.mm.swap_pages == npages
    return k, proc, a


def test_a_read_swap_in_stays_in_the_swap_cache():
    k, proc, a = paged_out(64)
    used = k.swap.used
    proc.touch(a, 64 * P, write=False)
    assert proc.mm.swap_pages == 0 and k.swap.used == used == 64
    assert meminfo(k)["SwapCached"] == 64 * 4
    assert stat(k)["swapcached"] == 64 * P
    assert vmstat(k)["pswpin"] == 64
    books(k)
    # Reclaimed again while clean: the slot still holds the data, nothing is written.
    out = vmstat(k)["pswpout"]
    proc.madvise(a, 64 * P, MADV_PAGEOUT)
    assert proc.mm.swap_pages == 64 and k.swap.used == 64
    assert vmstat(k)["pswpout"] == out and meminfo(k)["SwapCached"] == 0
    books(k)


def test_a_written_swap_cache_page_is_written_again_to_its_slot():
    k, proc, a = paged_out(16)
    proc.touch(a, 16 * P, write=False)
    proc.touch(a, 8 * P)   # the PTE was made writable: no fault, the folio is dirty
    assert k.swap.used == 16 and meminfo(k)["SwapCached"] == 16 * 4
    out = vmstat(k)["pswpout"]
    proc.madvise(a, 16 * P, MADV_PAGEOUT)
    assert vmstat(k)["pswpout"] - out == 8 and k.swap.used == 16
    books(k)


def test_a_write_fault_frees_the_swap_slot():
    k, proc, a = paged_out(4)   # the readahead window covers all four pages
    proc.touch(a, 4 * P)
    assert k.swap.used == 0 and meminfo(k)["SwapCached"] == 0
    books(k)


def test_a_swap_cache_page_unmapped_frees_its_slot():
    k, proc, a = paged_out(16)
    proc.touch(a, 16 * P, write=False)
    proc.munmap(a, 8 * P)
    assert k.swap.used == 8 and meminfo(k)["SwapCached"] == 8 * 4
    b = proc.mremap(a + 8 * P, 8 * P, 8 * P, 3, a + 1024 * P)   # MREMAP_MAYMOVE|FIXED
    proc.madvise(b, 8 * P, MADV_PAGEOUT)
    assert k.swap.used == 8 and proc.mm.swap_pages == 8
    books(k)
    proc.exit(0)
    assert k.swap.used == 0


@pytest.mark.parametrize("npages, swap_mib, swap_max", [(160, 1, None), (64, 64, 96 * P)])
def test_swap_half_full_frees_the_slot_on_swap_in(npages, swap_mib, swap_max):
    """should_try_to_free_swap: mem_cgroup_swap_full (half the device, or half of a
    cgroup's memory.swap.max used) frees the slot even on a read fault, fault by
    fault (each reads a window of 8 pages) until the swap is below half full."""
    k, proc, a = paged_out(npages, swap_mib, swap_max)
    limit = k.swap.total if swap_max is None else swap_max // P
    assert k.swap.used * 2 >= limit
    proc.touch(a, npages * P, write=False)
    used = k.swap.used
    assert used * 2 < limit <= (used + 8) * 2
    assert meminfo(k)["SwapCached"] == used * 4
    books(k)


def test_swap_readahead_counters():
    """swap_ra counts the pages read ahead of a fault, swap_ra_hit those then used."""
    k, proc, a = paged_out(64)
    proc.touch(a, P, write=False)          # the window is pages 0-4 (centred on 0)
    assert (vmstat(k)["swap_ra"], vmstat(k)["swap_ra_hit"]) == (4, 0)
    proc.touch(a + P, 4 * P, write=False)  # the pages read ahead, used: no fault
    proc.touch(a + 5 * P, P, write=False)  # the next fault finds them young: 4 hits
    st = vmstat(k)
    assert st["swap_ra_hit"] == 4 and st["swap_ra"] > 4
    proc.touch(a + 32 * P, 8 * P, write=False)   # a fault whose access goes on: hits
    assert vmstat(k)["swap_ra_hit"] > 4
    books(k)


def test_an_activated_swap_cache_page_gives_up_its_slot_once_swap_is_half_full():
    """shrink_folio_list's activate_locked: a swap-cache folio reclaim activates keeps
    its slot while swap is less than half full, and frees it after."""
    k = Kernel(randomize=False)
    k.swapon(MIB)                                  # 255 slots
    proc = boxed(k)
    a = proc.mmap(0, 100 * P, RW, ANON)
    proc.touch(a, 100 * P)
    proc.madvise(a, 100 * P, MADV_PAGEOUT)
    proc.touch(a, 100 * P, write=False)            # back, in the swap cache
    assert k.swap.used == 100 and meminfo(k)["SwapCached"] == 400
    m = k.memcgs["box"]

    def referenced_twice():
        for _ in range(2):
            proc.touch(a, 100 * P, write=False)    # young again
            sc = vmscan.ScanControl(m, 32, cgroup=True)
            vmscan.shrink_anon_list(k, m, 100, sc)
    referenced_twice()
    assert all(active for _, _, active in pages.anon_lru_states(proc.mm.vma_lookup(a)))
    assert k.swap.used == 100                      # not half full: the slots stay
    b = proc.mmap(0, 60 * P, RW, ANON)
    proc.touch(b, 60 * P)
    proc.madvise(b, 60 * P, MADV_PAGEOUT)
    assert k.swap.used == 160
    proc.madvise(a, 100 * P, MADV_COLD)
    referenced_twice()
    assert k.swap.used == 60 and meminfo(k)["SwapCached"] == 0
    books(k)


def _live_stream_beside_active_anon(workdir):
    """On the host, in a v1 memory cgroup limited to 48 MiB: 16 MiB of anonymous memory
    populated twice (active), then a 96 MiB file read through; memory.stat's
    active_anon before and after, and /proc/vmstat's pgscan_anon meanwhile."""
    libc = _libc()
    path = os.path.join(workdir, f"mmsim-anonlru-{os.getpid()}.dat")
    with open(path, "wb") as f:
        block = os.urandom(MIB)
        for _ in range(96):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def child(cg):
        def active_anon():
            time.sleep(0.3)
            d = dict(line.split() for line in open(cg + "/memory.stat"))
            return int(d["active_anon"]) >> 12

        def scanned():
            d = dict(line.split() for line in open("/proc/vmstat"))
            return int(d["pgscan_anon"])
        # New folios wait in a per-CPU batch (31 of them) before they are on a list:
        # on one CPU, MADV_COLD of an untouched page drains it (lru_add_drain) before
        # each count, so 4096 pages are all counted (4096 = 132 * 31 + 4).
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        spare = libc.mmap(None, 4096, RW, ANON, -1, 0)
        a = libc.mmap(None, 16 * MIB, RW, ANON, -1, 0)
        for _ in range(2):
            libc.madvise(a, 16 * MIB, MADV_POPULATE_WRITE)
        libc.madvise(spare, 4096, MADV_COLD)
        before, s0 = active_anon(), scanned()
        fd = os.open(path, os.O_RDONLY)
        while os.read(fd, MIB):
            pass
        os.close(fd)
        libc.madvise(spare, 4096, MADV_COLD)
        after, s1 = active_anon(), scanned()
        return [before, after, s1 - s0]

    try:
        return live.in_v1_memcg("anonlru-stream", child, limit=48 * MIB)
    finally:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        os.unlink(path)


@pytest.mark.live
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory") or os.geteuid() != 0,
                    reason="needs root and a cgroup v1 memory controller")
def test_no_anon_aging_without_swap_on_the_live_kernel():
    """Without swap the live kernel neither scans nor deactivates anonymous memory
    while a stream reclaims the page cache beside it; neither does mmsim
    (test_no_aging_of_the_anon_lists_without_swap)."""
    if os.path.exists("/proc/swaps") and len(open("/proc/swaps").read().splitlines()) > 1:
        pytest.skip("the host has swap; this test assumes none")
    before, after, scanned = _live_stream_beside_active_anon("/var/tmp")
    assert before >= 4096 and after == before and scanned == 0


def test_a_fork_shares_the_swap_cache():
    """A swap-cache page shared by fork keeps its slot for both: freed when the last
    mapper goes, or when the one left writes it (do_wp_page frees the swap first),
    and swapped out again to the same slot without a write."""
    k, proc, a = paged_out(16)
    proc.touch(a, 16 * P, write=False)
    child = proc.fork()
    assert k.swap.used == 16 and meminfo(k)["SwapCached"] == 64
    books(k)
    proc.touch(a, 4 * P)                  # COW: the parent's copies are new pages
    assert k.swap.used == 16 and meminfo(k)["SwapCached"] == 64
    child.touch(a, 2 * P)                 # the child alone maps these: reuse, swap freed
    assert k.swap.used == 14 and meminfo(k)["SwapCached"] == 56
    books(k)
    out = vmstat(k)["pswpout"]
    child.madvise(a + 4 * P, 4 * P, MADV_PAGEOUT)   # still shared with the parent: kept
    assert child.mm.swap_pages == 0
    proc.munmap(a + 4 * P, 12 * P)
    child.madvise(a + 4 * P, 12 * P, MADV_PAGEOUT)  # the child's alone: to their slots
    assert child.mm.swap_pages == 12 and vmstat(k)["pswpout"] == out
    # Pages 2-3, the child's alone since the parent's COW, are still in the cache.
    assert k.swap.used == 14 and meminfo(k)["SwapCached"] == 2 * 4
    books(k)
    child.exit(0)
    assert k.swap.used == 0 and meminfo(k)["SwapCached"] == 0

"""Reclaim (mmsim/vmscan.py), workingset detection (mmsim/workingset.py) and the
cgroup charges they keep: table tests of the rules, scenario tests of the classic
two-list LRU's behaviour, and a property test that the books always balance."""

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim import pagecache, vmscan, workingset
from mmsim.kernel import Kernel
from mmsim.errors import Killed
from mmsim.memcg import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, MemCgroup
from mmsim.pagecache import ACTIVE, INACTIVE
from mmsim.uapi import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE

P = 4096


def cgroup(k, name, max_pages=None, parent=None):
    """A cgroup made through the core API (the cgroup files are tested elsewhere)."""
    m = MemCgroup(name, parent=parent or k.root_memcg)
    k.memcgs[name] = m
    if max_pages is not None:
        m.max = max_pages
    return m


def enter(proc, memcg):
    """Put a process that has nothing charged yet into ``memcg``."""
    assert proc.mm.rss_anon == 0
    proc.memcg = memcg
    proc.mm.memcg = memcg


def boxed(limit_pages, **files):
    """A kernel whose one process sits in a cgroup of ``limit_pages``, and files of the
    given sizes in pages (``name=npages`` makes ``/name``)."""
    k = Kernel(randomize=False)
    p = k.spawn()
    m = cgroup(k, "box", limit_pages)
    enter(p, m)
    for name, npages in files.items():
        k.create_file("/" + name, npages * P)
    return k, p, m


def read_mapped(proc, path, npages, offset=0, keep=False):
    """Read ``npages`` of a file through a shared mapping, then unmap it (unless keep)."""
    fd = proc.open(path)
    a = proc.mmap(0, npages * P, PROT_READ, MAP_SHARED, fd, offset * P)
    proc.touch(a, npages * P, write=False)
    proc.close(fd)
    if not keep:
        proc.munmap(a, npages * P)
    return a


def cached(k, path):
    return len(k.files[path].cache)


@pytest.mark.parametrize("inactive,active,low", [
    (100, 100, False), (99, 100, True), (0, 1, True), (0, 0, False),
    # 10 GiB of file pages: the inactive list may be a tenth of the active one.
    (262144, 2359296, False), (235929, 2621440 - 235929, True)])
def test_inactive_is_low(inactive, active, low):
    k = Kernel()
    m = cgroup(k, "t")
    m.lruvec.nr[LRU_INACTIVE_FILE], m.lruvec.nr[LRU_ACTIVE_FILE] = inactive, active
    assert vmscan.inactive_is_low(m) is low
    m.lruvec.nr[LRU_INACTIVE_FILE] = m.lruvec.nr[LRU_ACTIVE_FILE] = 0


@pytest.mark.parametrize("active,distance,ws,expect", [
    (10, 10, False, (True, False)), (10, 11, False, (False, False)),
    (1, 1, True, (True, True)), (1, 2, True, (False, False)), (50, 3, True, (True, True))])
def test_refault_distance_against_the_active_list(active, distance, ws, expect):
    """A refault activates when the clock advanced by at most the active file list's
    size since the eviction (which ticks it first); it restores when the page was in
    the workingset."""
    k = Kernel()
    m = cgroup(k, "t")
    m.lruvec.nr[LRU_ACTIVE_FILE] = active
    shadow = workingset.eviction(m, 1, ws)
    workingset.age_nonresident(m, distance - 1)   # the eviction itself ticked once
    assert workingset.refault(m, 1, shadow, True, can_swap=False) == expect
    assert m.stat["workingset_refault_file"] == 1
    assert m.stat["workingset_activate_file"] == int(expect[0])
    assert m.stat["workingset_restore_file"] == int(expect[1])
    m.lruvec.nr[LRU_ACTIVE_FILE] = 0


def test_a_cgroup_stays_within_its_limit_and_evicted_pages_leave_shadows():
    k, p, m = boxed(256, big=1024)
    for chunk in range(8):
        read_mapped(p, "/big", 128, chunk * 128)
        assert m.current <= m.max
    inode = k.files["/big"]
    assert len(inode.cache) <= 256 and len(inode.shadows) == 1024 - len(inode.cache)
    assert m.stat["pgsteal"] == len(inode.shadows) and m.events["max"] > 0
    assert m.stat["pgscan_direct"] >= m.stat["pgsteal_direct"] > 0
    # /proc/vmstat's per-reclaimer counters leave out reclaim at a cgroup's limit.
    vmstat = dict(line.split() for line in k.proc_read("/proc/vmstat").splitlines())
    assert vmstat["pgscan_direct"] == vmstat["pgsteal_direct"] == "0"
    assert int(vmstat["pgsteal_file"]) == m.stat["pgsteal"]
    # The oldest pages went first: what is left is the end of the file.
    assert min(inode.cache) >= 1024 - 256


def test_pages_used_twice_survive_a_stream_that_evicts_pages_used_once():
    """Scan resistance: a file read twice sits on the active list, which a one-pass
    stream never makes the inactive list too small to leave alone."""
    k, p, m = boxed(512, hot=128, once=128, stream=2048)
    read_mapped(p, "/hot", 128)
    read_mapped(p, "/hot", 128)   # the second unmap of a young PTE activates
    assert {pg.lru for pg in k.files["/hot"].cache.values()} == {ACTIVE}
    read_mapped(p, "/once", 128)
    for chunk in range(16):
        read_mapped(p, "/stream", 128, chunk * 128)
    assert cached(k, "/hot") == 128
    assert cached(k, "/once") == 0
    assert m.stat["workingset_refault_file"] == 0


def test_refaulting_the_stream_evicted_ages_the_active_list():
    """Pages refaulting within the workingset are activated, and a refault makes the
    next reclaim deactivate active pages (the workingset shifts)."""
    k, p, m = boxed(512, hot=256, ws=320)
    read_mapped(p, "/hot", 256)
    read_mapped(p, "/hot", 256)
    for _ in range(4):
        read_mapped(p, "/ws", 320)
    assert m.stat["workingset_refault_file"] > 0
    assert m.stat["workingset_activate_file"] > 0
    assert m.stat["pgdeactivate"] > 0
    assert cached(k, "/hot") < 256


def test_a_mapped_page_in_use_is_activated_and_kept():
    k, p, m = boxed(128, lib=32, stream=1024)
    lib = read_mapped(p, "/lib", 32, keep=True)
    # 16 stream pages between two uses: with the stream's read-around and readahead
    # (some 16 pages more than it maps), reclaim scans the lib once between two uses.
    for chunk in range(64):
        p.touch(lib, 32 * P, write=False)   # in use: its PTEs are young again
        read_mapped(p, "/stream", 16, chunk * 16)
    assert p.mm.rss_file == 32 and cached(k, "/lib") == 32
    # Young at one scan (a second chance, PG_referenced set), young again at the next.
    assert {pg.lru for pg in k.files["/lib"].cache.values()} == {ACTIVE}


def test_a_mapped_page_left_alone_is_unmapped_and_evicted():
    """A young PTE buys one more trip round the inactive list, not more."""
    k, p, m = boxed(128, lib=32, stream=1024)
    read_mapped(p, "/lib", 32, keep=True)
    for chunk in range(16):
        read_mapped(p, "/stream", 64, chunk * 64)
    assert p.mm.rss_file == 0 and cached(k, "/lib") == 0
    assert len(k.files["/lib"].shadows) == 32
    assert k.node.nr_mapped == 0


def test_mapped_executable_pages_stay_on_the_active_list_when_aged():
    k = Kernel(randomize=False)
    p = k.spawn()
    k.create_file("/text", 8 * P)
    k.create_file("/data", 8 * P)
    fd = p.open("/text")
    text = p.mmap(0, 8 * P, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0)
    fd2 = p.open("/data")
    data = p.mmap(0, 8 * P, PROT_READ, MAP_SHARED, fd2, 0)
    for _ in range(2):
        p.touch(text, 8 * P, write=False)
        p.touch(data, 8 * P, write=False)
    for pg in list(k.files["/text"].cache.values()) + list(k.files["/data"].cache.values()):
        pagecache.lru_move(pg, ACTIVE)
    sc = vmscan.ScanControl(k.root_memcg, 32)
    vmscan.shrink_active_list(k, k.root_memcg, 16, sc)
    assert {pg.lru for pg in k.files["/text"].cache.values()} == {ACTIVE}
    assert {pg.lru for pg in k.files["/data"].cache.values()} == {INACTIVE}
    assert all(pg.workingset for pg in k.files["/data"].cache.values())
    assert k.node.events["pgdeactivate"] == 8


def test_dirty_pages_are_written_back_before_they_are_reclaimed():
    k, p, m = boxed(64, d=32, stream=256)
    fd = p.open("/d", 2)
    a = p.mmap(0, 32 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    p.touch(a, 32 * P, write=True)
    p.munmap(a, 32 * P)
    assert k.node.nr_dirty == 32
    for chunk in range(4):
        read_mapped(p, "/stream", 64, chunk * 64)
    assert k.node.nr_dirty == 0 and k.node.events["nr_written"] == 32
    assert cached(k, "/d") == 0


def test_machine_reclaim_keeps_free_memory_above_the_min_watermark():
    k = Kernel(memory=64 << 20, randomize=False)
    p = k.spawn()
    k.create_file("/big", 256 << 20)
    wmin, low, high = k.watermarks()
    for chunk in range(8):
        read_mapped(p, "/big", 8192, chunk * 8192)
        assert k.free_pages() >= wmin
    ev = k.node.events
    assert ev["pgsteal_kswapd"] > 0 or ev["pgsteal_direct"] > 0
    assert k.free_pages() >= low   # kswapd ran at the end of the last call


def test_an_anonymous_overrun_is_oom_killed_in_its_cgroup():
    k = Kernel(randomize=False)
    parent = k.spawn()
    m = cgroup(k, "box", 2048)
    child = parent.fork()
    enter(child, m)
    bystander = parent.fork()
    a = child.mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    with pytest.raises(Killed) as info:
        child.touch(a, 64 << 20)
    assert info.value.signal == 9 and info.value.pid == child.pid
    assert parent.wait4(child.pid, 0) == (child.pid, 9)
    assert m.events["oom"] >= 1 and m.events["oom_kill"] == 1
    assert m.current == 0 and k.node.events["oom_kill"] == 1
    assert bystander.mm is not None   # outside the cgroup: never a candidate
    with pytest.raises(OSError) as err:
        child.munmap(a, P)
    assert err.value.errno == errno.ESRCH


OPS = st.lists(st.tuples(st.sampled_from(["read", "read_keep", "anon", "munmap", "fork_exit",
                                          "write", "dontneed"]),
                         st.integers(0, 3), st.integers(1, 96)), max_size=25)


@settings(max_examples=40, deadline=None)
@given(OPS, st.integers(64, 400))
def test_books_balance_and_the_limit_holds_after_every_call(ops, limit):
    k = Kernel(randomize=False)
    p = k.spawn()
    top = cgroup(k, "top", limit)
    m = cgroup(k, "top/leaf", None, parent=top)
    enter(p, m)
    for i in range(4):
        k.create_file(f"/f{i}", 96 * P)
    maps = []
    for name, i, n in ops:
        path = f"/f{i}"
        try:
            if name in ("read", "read_keep"):
                a = read_mapped(p, path, n, 0, keep=name == "read_keep")
                if name == "read_keep":
                    maps.append((a, n))
            elif name == "anon":
                a = p.mmap(0, n * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
                p.touch(a, n * P)
                maps.append((a, n))
            elif name == "munmap" and maps:
                a, n = maps.pop(i % len(maps))
                p.munmap(a, n * P)
            elif name == "fork_exit":
                c = p.fork()
                # The child's copy of the anon charge may take the cgroup over its
                # limit at the fork's end: then it is the OOM victim (the later of
                # two equal scores), dead before it runs.
                if c.state == "running":
                    read_mapped(c, path, n)
                    c.exit(0)
                p.wait4(c.pid, 0)
            elif name == "write":
                fd = p.open(path, 2)
                a = p.mmap(0, n * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                p.touch(a, n * P)
                p.munmap(a, n * P)
            elif name == "dontneed" and maps:
                a, n = maps[i % len(maps)]
                p.madvise(a, n * P, 4)
        except Killed as e:
            assert e.signal == 9 and k.oom_killed
            break
        pagecache.check(k)
        assert top.current <= top.max
        lru = top.lruvec.lists
        assert not lru[LRU_INACTIVE_FILE] and not lru[LRU_ACTIVE_FILE]
        for inode in k.files.values():
            assert not set(inode.cache) & set(inode.shadows)


def test_tree_nodes_of_shadows_are_counted_and_shrunk_past_their_bound():
    """workingset_nodes counts the 64-page blocks holding shadow entries and no page;
    past one such node per 8 pages of memory the oldest go (workingset_nodereclaim)."""
    k = Kernel(memory=8 << 20, randomize=False)   # 2048 pages: at most 256 nodes
    p = k.spawn()
    m = cgroup(k, "box", 128)
    enter(p, m)
    k.create_file("/f", 64 * 1024 * P)
    vmstat = lambda: dict(line.split() for line in k.proc_read("/proc/vmstat").splitlines())
    read_mapped(p, "/f", 256)
    inode = k.files["/f"]
    shadow_only = {i >> 6 for i in inode.shadows} - {i >> 6 for i in inode.cache}
    assert int(vmstat()["workingset_nodes"]) == len(shadow_only) > 0
    for chunk in range(1, 160):
        read_mapped(p, "/f", 256, chunk * 256)
    assert int(vmstat()["workingset_nodes"]) <= 256
    assert int(vmstat()["workingset_nodereclaim"]) > 0
    assert min(inode.shadows) >= 64 * int(vmstat()["workingset_nodereclaim"])
    # Reading an evicted page back takes its shadow and its node off the list.
    before = int(vmstat()["workingset_nodes"])
    last = max(inode.shadows) & ~63
    read_mapped(p, "/f", 1, last)
    assert int(vmstat()["workingset_nodes"]) == before - 1


def test_an_anonymous_page_shared_after_fork_is_charged_once():
    """A fork shares the parent's anonymous pages uncharged; their charge stays with
    the cgroup that faulted them until the last mapper unmaps them, and a copy made
    on write is charged to the writer's cgroup."""
    k = Kernel(randomize=False)
    parent = k.spawn()
    m = cgroup(k, "box", None)
    other = cgroup(k, "other", None)
    enter(parent, m)
    a = parent.mmap(0, 64 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    parent.touch(a, 64 * P)
    assert m.current == 64
    child = parent.fork()
    assert m.current == 64 and parent.mm.rss_anon == child.mm.rss_anon == 64
    k.proc_write("/sys/fs/cgroup/other/cgroup.procs", str(child.pid))
    assert (m.current, other.current) == (64, 0)   # nothing of its own to take along
    child.touch(a, 16 * P)                          # copy on write: the child's own pages
    assert (m.current, other.current) == (64, 16)
    parent.munmap(a, 64 * P)                        # the 48 pages the child still maps stay
    assert (m.current, other.current) == (48, 16)
    child.exit(0)
    parent.wait4(child.pid, 0)
    assert (m.current, other.current) == (0, 0)

"""The page cache's file LRU and MCTL_SET_FADE_ON_DEATH's effect on it at teardown
(docs/mctl.md): promotion of young page-cache folios on zap, checked against the live
kernel through /proc/kpageflags, and the fade rules on exit, exec and with sharers."""

import ctypes
import os
import re
import shutil
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim.kernel import Kernel
from mmsim.pagecache import ACTIVE, INACTIVE
from mmsim.uapi import (MADV_COLD, MADV_SEQUENTIAL, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED,
                        MCTL_CLEAR_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC, MCTL_SET_FADE_ON_DEATH,
                        PIDFD_SELF, PROT_READ, PROT_WRITE)

P = 4096
RW = PROT_READ | PROT_WRITE
TRUE = shutil.which("true") or "/usr/bin/true"


def setup(npages=4):
    k = Kernel()
    k.create_file("/data", npages * P)
    proc = k.spawn()
    fd = proc.open("/data")
    return k, proc, fd, k.files["/data"]


def read_once(proc, fd, pgoff=0, npages=1, advice=None):
    """Map the file, read it, unmap it: what one round of the live probe does."""
    a = proc.mmap(0, npages * P, PROT_READ, MAP_SHARED, fd, pgoff * P)
    if advice is not None:
        proc.madvise(a, npages * P, advice)
    proc.touch(a, npages * P, write=False)
    proc.munmap(a, npages * P)


def state(page):
    return {"ref": int(page.referenced), "active": int(page.lru == ACTIVE)}


# ---------------------------------------------------------------- the LRU alone

def test_zap_of_young_pte_promotes_in_two_steps():
    k, proc, fd, inode = setup()
    seen = []
    for _ in range(3):
        read_once(proc, fd)
        seen.append(state(inode.cache[0]))
    # referenced, then active (referenced cleared), then referenced again while active
    assert seen == [{"ref": 1, "active": 0}, {"ref": 0, "active": 1}, {"ref": 1, "active": 1}]
    lru = k.node
    # the first fault's read-around cached the file's other three pages, never mapped
    assert (lru.nr_active, lru.nr_inactive, lru.pgactivate) == (1, 3, 1)
    assert lru.nr_mapped == 0 and lru.nr_file_pages == 4


def test_sequential_mapping_has_no_recency():
    k, proc, fd, inode = setup()
    for _ in range(3):
        read_once(proc, fd, advice=MADV_SEQUENTIAL)
    assert state(inode.cache[0]) == {"ref": 0, "active": 0}
    assert k.node.pgactivate == 0


def test_old_pte_does_not_promote():
    """A fork child's copied PTEs start old: its exit leaves the folio as it was.  (A
    private mapping with an anon_vma is copied at fork; a shared one is not.)"""
    k, proc, fd, inode = setup()
    a = proc.mmap(0, 2 * P, RW, MAP_PRIVATE, fd, 0)
    proc.touch(a + P, P, write=True)
    proc.touch(a, P, write=False)
    child = proc.fork()
    page = inode.cache[0]
    assert page.mapcount == 2
    child.exit(0)
    assert state(page) == {"ref": 0, "active": 0} and page.mapcount == 1


def test_mappings_share_the_cached_folio():
    k, proc, fd, inode = setup()
    a = proc.mmap(0, 2 * P, PROT_READ, MAP_SHARED, fd, 0)
    b = proc.mmap(0, P, RW, MAP_PRIVATE, fd, P)
    proc.touch(a, 2 * P, write=False)
    proc.touch(b, P, write=False)
    assert inode.cache[1].mapcount == 2 and k.node.nr_mapped == 2
    proc.touch(b, P, write=True)        # copy on write: the cache folio loses a mapping
    assert inode.cache[1].mapcount == 1 and proc.mm.rss_anon == 1


def test_madv_cold_deactivates_an_active_folio():
    k, proc, fd, inode = setup()
    read_once(proc, fd)
    read_once(proc, fd)
    a = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    proc.touch(a, P, write=False)
    assert inode.cache[0].lru == ACTIVE
    proc.madvise(a, P, MADV_COLD)
    assert inode.cache[0].lru == INACTIVE and k.node.pgdeactivate == 1


def test_meminfo_and_vmstat_report_the_lists():
    k, proc, fd, inode = setup(npages=3)
    read_once(proc, fd, npages=3)
    read_once(proc, fd, npages=1)       # page 0 becomes active
    a = proc.mmap(0, 2 * P, PROT_READ, MAP_SHARED, fd, P)
    proc.touch(a, 2 * P, write=False)
    meminfo = "".join(line for line in k.proc_read("/proc/meminfo").splitlines(keepends=True)
                      if line.split(":")[0] in ("Cached", "Active(file)", "Inactive(file)",
                                                "Mapped"))
    assert meminfo == ("Cached:               12 kB\n"
                       "Active(file):          4 kB\n"
                       "Inactive(file):        8 kB\n"
                       "Mapped:                8 kB\n")
    vmstat = dict(line.split() for line in k.proc_read("/proc/vmstat").splitlines())
    assert vmstat["nr_active_file"] == "1" and vmstat["nr_inactive_file"] == "2"
    assert vmstat["nr_file_pages"] == "3" and vmstat["nr_mapped"] == "2"
    assert vmstat["pgactivate"] == "1"


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="no /proc/meminfo here")
def test_meminfo_lines_have_the_live_format():
    k, proc, fd, inode = setup()
    read_once(proc, fd)
    with open("/proc/meminfo") as f:
        live = {line.split(":")[0]: line for line in f}
    for line in k.proc_read("/proc/meminfo").splitlines(keepends=True):
        name = line.split(":")[0]
        # a 16-column label, an 8-column number, " kB": the kernel's show_val_kb
        for text in (line, live[name]):
            assert re.fullmatch(r"\S+:\s+\d{1,8} kB\n", text) and len(text) == 28, text
    with open("/proc/vmstat") as f:
        names = [line.split()[0] for line in f]
    ours = [line.split()[0] for line in k.proc_read("/proc/vmstat").splitlines()]
    assert [n for n in names if n in ours] == ours          # the kernel's order


# ---------------------------------------------------------------- fade on death

def fade_scenario(fade, prior_reads=0, sharer=False):
    """A process reads page 0 of a file through a mapping it keeps, then exits."""
    k, proc, fd, inode = setup()
    for _ in range(prior_reads):
        read_once(proc, fd)
    if fade:
        proc.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
    a = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    proc.touch(a, P, write=False)
    other = None
    if sharer:
        other = k.spawn()
        b = other.mmap(0, P, PROT_READ, MAP_SHARED, other.open("/data"), 0)
        other.touch(b, P, write=False)
    proc.exit(0)
    return k, inode.cache[0], other


@pytest.mark.parametrize("prior_reads, without, with_fade", [
    (0, {"ref": 1, "active": 0}, {"ref": 0, "active": 0}),
    (1, {"ref": 0, "active": 1}, {"ref": 0, "active": 0}),
    (2, {"ref": 1, "active": 1}, {"ref": 0, "active": 0}),
])
def test_exit_promotes_without_fade_and_deactivates_with_it(prior_reads, without, with_fade):
    k, page, _ = fade_scenario(False, prior_reads)
    assert state(page) == without
    k, page, _ = fade_scenario(True, prior_reads)
    assert state(page) == with_fade
    assert k.node.pgdeactivate == (1 if prior_reads >= 2 else 0)


def test_fade_leaves_a_folio_another_mm_maps():
    k, page, other = fade_scenario(True, prior_reads=2, sharer=True)
    # not promoted by the dying mm, not deactivated either: the other mapping keeps it
    assert state(page) == {"ref": 0, "active": 1} and page.mapcount == 1
    assert k.node.pgdeactivate == 0


def test_fade_applies_only_at_teardown():
    k, proc, fd, inode = setup()
    proc.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
    read_once(proc, fd)
    read_once(proc, fd)                 # munmap of a live mm promotes as usual
    assert state(inode.cache[0]) == {"ref": 0, "active": 1}
    proc.mctl(PIDFD_SELF, MCTL_CLEAR_FADE_ON_DEATH, 0)
    a = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    proc.touch(a, P, write=False)
    proc.exit(0)                        # cleared again: exit promotes
    assert state(inode.cache[0]) == {"ref": 1, "active": 1}


def test_fade_leaves_anonymous_memory_and_the_lists_alone():
    k = Kernel()
    proc = k.spawn()
    proc.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
    a = proc.mmap(0, 8 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.touch(a, 8 * P)
    proc.exit(0)
    lru = k.node
    assert (lru.nr_active, lru.nr_inactive, lru.nr_file_pages, lru.pgdeactivate) == (0, 0, 0, 0)


def test_persistent_fade_reaches_a_fork_child_and_fades_at_exec():
    k, proc, fd, inode = setup()
    read_once(proc, fd)
    read_once(proc, fd)                 # page 0 active
    proc.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC)
    child = proc.fork()
    a = child.mmap(0, P, PROT_READ, MAP_SHARED, child.open("/data"), 0)
    child.touch(a, P, write=False)
    child.execve(TRUE)                  # the old mm dies with the property on
    assert state(inode.cache[0]) == {"ref": 0, "active": 0}
    assert child.mm.fade_on_death       # persistent: the new image has it too


# ---------------------------------------------------------------- live kernel

def _kpageflags_usable():
    if not os.path.exists("/proc/kpageflags") or os.geteuid() != 0:
        return "needs root and /proc/kpageflags"
    if os.path.exists("/sys/kernel/mm/lru_gen/enabled"):
        with open("/sys/kernel/mm/lru_gen/enabled") as f:
            if int(f.read().strip(), 16) & 1:
                return "multi-generational LRU is on; mmsim models the two-list LRU"
    if not os.uname().release.startswith("6."):
        return "the live comparison is for Linux 6.x"
    return None


_REASON = _kpageflags_usable()


def _live_rounds(tmp_path, advice=None, rounds=3):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    path = tmp_path / "lru.bin"
    with open(path, "wb") as f:
        f.write(b"x" * P)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    # Activation waits in a per-CPU batch that the unmap drains on its own CPU: stay on
    # one CPU, or a migration in between leaves the folio inactive for a while.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # start from a fresh folio
        seen = []
        for _ in range(rounds):
            a = libc.mmap(None, P, PROT_READ, MAP_SHARED, fd, 0)
            if advice is not None:
                libc.madvise(a, P, advice)
            ctypes.c_char.from_address(a).value
            with open("/proc/self/pagemap", "rb") as pm:
                pm.seek((a // P) * 8)
                pfn = struct.unpack("Q", pm.read(8))[0] & ((1 << 55) - 1)
            libc.munmap(a, P)
            with open("/proc/kpageflags", "rb") as kf:
                kf.seek(pfn * 8)
                bits = struct.unpack("Q", kf.read(8))[0]
            seen.append({"ref": (bits >> 2) & 1, "active": (bits >> 6) & 1})
        return seen
    finally:
        os.sched_setaffinity(0, cpus)
        os.close(fd)


@pytest.mark.live
@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
@pytest.mark.parametrize("advice", [None, MADV_SEQUENTIAL])
def test_promotion_matches_the_live_kernel(tmp_path, advice):
    k, proc, fd, inode = setup(npages=1)
    sim = []
    for _ in range(3):
        read_once(proc, fd, advice=advice)
        sim.append(state(inode.cache[0]))
    # Other work on the machine (an mlock or a migration elsewhere drains every CPU's
    # LRU batches) can catch a folio between lists; such a run loses an activation.
    # The undisturbed sequence is deterministic, so a few tries find it.
    for _ in range(4):
        live = _live_rounds(tmp_path, advice)
        if live == sim:
            break
    assert sim == live


# ---------------------------------------------------------------- invariants

def lru_consistent(k):
    """The counters agree with the folios in every inode's cache."""
    cached = [p for inode in k.files.values() for p in inode.cache.values()]
    lru = k.node
    assert lru.nr_file_pages == len(cached)
    assert lru.nr_active == sum(p.lru == ACTIVE for p in cached)
    assert lru.nr_inactive == sum(p.lru == INACTIVE for p in cached)
    assert lru.nr_mapped == sum(p.mapcount > 0 for p in cached)
    assert all(p.mapcount >= 0 for p in cached)


ops = st.lists(st.tuples(st.sampled_from(["map", "cold", "fork", "exit", "fade", "unmap"]),
                         st.integers(0, 3), st.integers(1, 3)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_lru_counters_follow_the_cache(script):
    k, first, fd, inode = setup()
    procs = [(first, fd, [])]
    for op, pgoff, n in script:
        proc, pfd, maps = procs[pgoff % len(procs)]
        n = min(n, 4 - pgoff)
        if op == "map":
            flags = MAP_SHARED if n % 2 else MAP_PRIVATE
            a = proc.mmap(0, n * P, RW if flags == MAP_PRIVATE else PROT_READ, flags, pfd, pgoff * P)
            proc.touch(a, n * P, write=flags == MAP_PRIVATE and pgoff == 1)
            proc.touch(a, n * P, write=False)
            maps.append((a, n))
        elif op == "unmap" and maps:
            a, n = maps.pop()
            proc.munmap(a, n * P)
        elif op == "cold" and maps:
            proc.madvise(maps[-1][0], maps[-1][1] * P, MADV_COLD)
        elif op == "fork":
            procs.append((proc.fork(), pfd, list(maps)))
        elif op == "fade":
            proc.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
        elif op == "exit" and len(procs) > 1:
            procs.remove((proc, pfd, maps))
            proc.exit(0)
        lru_consistent(k)
    for proc, _, _ in procs:
        proc.exit(0)
    lru_consistent(k)
    assert k.node.nr_mapped == 0


def test_madv_cold_leaves_a_shared_folio_on_its_list():
    """The reference's rule: MADV_COLD skips folios that other mappings share."""
    k, proc, fd, inode = setup()
    read_once(proc, fd)
    read_once(proc, fd)
    a = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    b = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 0)
    proc.touch(a, P, write=False)
    proc.touch(b, P, write=False)
    proc.madvise(a, P, MADV_COLD)
    assert inode.cache[0].lru == ACTIVE and k.node.pgdeactivate == 0

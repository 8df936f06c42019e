"""shmem THP (issue 15 item 4): the shmem_enabled and per-size shmem knobs, the folio
orders shmem faults allocate and how they are mapped, MADV_COLLAPSE of shmem, and the
counters (meminfo ShmemHugePages/ShmemPmdMapped, smaps ShmemPmdMapped and THPeligible,
vmstat thp_file_*, per-size stats/shmem_*).

The live checks run under the host's settings only (shmem_enabled=never, the PMD size
inherit, every other size never; no knob is ever written): there shmem faults never
allocate huge folios, and MADV_COLLAPSE still makes them.  The other settings are
checked against mm/shmem.c's rules with the simulator alone."""

import ctypes
import errno
import mmap
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import live, pagecache, pages
from mmsim.khugepaged import SCAN_PTE_MAPPED_HUGEPAGE
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLLAPSE, MADV_DONTNEED, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE,
                        MADV_HUGEPAGE, MADV_NOHUGEPAGE,
                        MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ,
                        PROT_WRITE)

T = "/sys/kernel/mm/transparent_hugepage/"
PMD = 2 << 20
P = 4096
B = 1 << 40
RW = PROT_READ | PROT_WRITE
SHANON = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED


def smaps_field(k, proc, addr, key):
    """The value of ``key`` in the smaps block of the VMA holding ``addr``."""
    cur = False
    for line in k.proc_read(f"/proc/{proc.pid}/smaps").splitlines():
        f = line.split()
        if "-" in f[0] and ":" not in f[0]:
            s, e = (int(x, 16) for x in f[0].split("-"))
            cur = s <= addr < e
        elif cur and line.startswith(key + ":"):
            return int(f[1])
    raise KeyError(key)


def meminfo(k, text=None):
    text = k.proc_read("/proc/meminfo") if text is None else text
    d = {}
    for line in text.splitlines():
        name, value = line.split(":")
        d[name] = int(value.split()[0])
    return d


def vmstat(k):
    return {a: int(b) for a, b in (line.split() for line in k.proc_read("/proc/vmstat")
                                   .splitlines())}


def stat(k, kb, name):
    return int(k.proc_read(f"{T}hugepages-{kb}kB/stats/{name}"))


def setup(shmem_enabled=None, memory=16 << 30, **sizes):
    k = Kernel(memory=memory)
    if shmem_enabled is not None:
        k.proc_write(T + "shmem_enabled", shmem_enabled)
    for kb, mode in sizes.items():
        k.proc_write(f"{T}hugepages-{kb.removeprefix('s')}kB/shmem_enabled", mode)
    return k, k.spawn()


# ---------------------------------------------------------------- knobs


def test_knobs_read_as_the_kernel_lists_them():
    k = Kernel()
    assert k.proc_read(T + "shmem_enabled") == "always within_size advise [never] deny force\n"
    assert k.proc_read(T + "hugepages-2048kB/shmem_enabled") == (
        "always [inherit] within_size advise never\n")
    for kb in (8, 16, 32, 64, 128, 256, 512, 1024):
        assert k.proc_read(f"{T}hugepages-{kb}kB/shmem_enabled") == (
            "always inherit within_size advise [never]\n")
        for name in ("shmem_alloc", "shmem_fallback", "shmem_fallback_charge"):
            assert k.proc_read(f"{T}hugepages-{kb}kB/stats/{name}") == "0\n"
    with pytest.raises(OSError) as exc:
        k.proc_read(T + "hugepages-4kB/shmem_enabled")
    assert exc.value.errno == errno.ENOENT


def test_knob_writes_and_refusals():
    k = Kernel()
    top = T + "shmem_enabled"
    for mode in ("always", "within_size", "advise", "deny", "never\n"):
        k.proc_write(top, mode)
        assert k.shmem_enabled == mode.strip()
    for text in ("never\n\n", " never", "madvise", "inherit", "x" * 20):
        with pytest.raises(OSError) as exc:
            k.proc_write(top, text)
        assert exc.value.errno == errno.EINVAL, text
    k.proc_write(top, "")   # sysfs_kf_write: nothing reaches the store handler
    assert k.shmem_enabled == "never"
    # force only while the PMD size alone inherits (shmem_parse_huge)
    k.proc_write(T + "hugepages-64kB/shmem_enabled", "inherit")
    with pytest.raises(OSError) as exc:
        k.proc_write(top, "force")
    assert exc.value.errno == errno.EINVAL and k.shmem_enabled == "never"
    k.proc_write(T + "hugepages-64kB/shmem_enabled", "never")
    k.proc_write(top, "force")
    # ... and then no other size may inherit (thpsize_shmem_enabled_store)
    with pytest.raises(OSError) as exc:
        k.proc_write(T + "hugepages-64kB/shmem_enabled", "inherit")
    assert exc.value.errno == errno.EINVAL
    k.proc_write(T + "hugepages-2048kB/shmem_enabled", "inherit")
    k.proc_write(T + "hugepages-64kB/shmem_enabled", "advise\n")
    assert k.proc_read(T + "hugepages-64kB/shmem_enabled") == (
        "always inherit within_size [advise] never\n")
    for text in ("madvise", "deny", "force", "always always"):
        with pytest.raises(OSError) as exc:
            k.proc_write(T + "hugepages-64kB/shmem_enabled", text)
        assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        k.proc_write(T + "hugepages-64kB/stats/shmem_alloc", "0")
    assert exc.value.errno == errno.EACCES


def test_shmem_pmd_size_keeps_khugepaged_running():
    # hugepage_pmd_enabled includes shmem_hpage_pmd_enabled.
    k = Kernel(thp="never")
    k.advance(0)
    assert not k.khugepaged.running
    k.proc_write(T + "shmem_enabled", "advise")
    assert k.khugepaged.running
    k.proc_write(T + "hugepages-2048kB/shmem_enabled", "never")
    assert not k.khugepaged.running
    k.proc_write(T + "hugepages-2048kB/shmem_enabled", "within_size")
    assert k.khugepaged.running


# ---------------------------------------------------------------- eligibility and faults

# (shmem_enabled, MADV_HUGEPAGE) -> THPeligible and whether a read fault on an aligned
# 8 MiB shared anonymous area gets a PMD-mapped folio (PMD size inherit).
TABLE = [("always", False, 1, True), ("always", True, 1, True),
         ("within_size", False, 1, True), ("within_size", True, 1, True),
         ("advise", False, 0, False), ("advise", True, 1, True),
         ("never", False, 0, False), ("never", True, 0, False),
         ("deny", False, 0, False), ("deny", True, 0, False),
         ("force", False, 1, True), ("force", True, 1, True)]


@pytest.mark.parametrize("mode,hg,eligible,huge", TABLE)
@pytest.mark.parametrize("memfd", [False, True])
def test_fault_follows_shmem_enabled(mode, hg, eligible, huge, memfd):
    k, p = setup(mode)
    if memfd:
        fd = p.memfd_create("m")
        p.ftruncate(fd, 4 * PMD)
        a = p.mmap(B, 4 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    else:
        a = p.mmap(B, 4 * PMD, RW, SHANON)
    if hg:
        p.madvise(a, 4 * PMD, MADV_HUGEPAGE)
    assert smaps_field(k, p, a, "THPeligible") == eligible
    p.touch(a + 5 * P, 1, write=False)   # a read fault allocates too (unlike anon)
    want = 2048 if huge else 4
    assert smaps_field(k, p, a, "Rss") == want
    assert smaps_field(k, p, a, "ShmemPmdMapped") == (2048 if huge else 0)
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"], m["Shmem"]) == (
        (2048, 2048, 2048) if huge else (0, 0, 4))
    v = vmstat(k)
    assert (v["thp_file_alloc"], v["thp_file_mapped"]) == ((1, 1) if huge else (0, 0))
    assert stat(k, 2048, "shmem_alloc") == (1 if huge else 0)


def test_nohugepage_and_thp_disable_override_always():
    k, p = setup("always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.madvise(a, PMD, MADV_NOHUGEPAGE)
    assert smaps_field(k, p, a, "THPeligible") == 0
    p.touch(a, 1)
    assert smaps_field(k, p, a, "Rss") == 4
    p.prctl(41, 1, 0, 0, 0)   # PR_SET_THP_DISABLE
    assert smaps_field(k, p, a + PMD, "THPeligible") == 0
    p.touch(a + PMD, 1)
    assert meminfo(k)["ShmemHugePages"] == 0


def test_unaligned_or_short_vma_gets_small_pages():
    k, p = setup("always")
    a = p.mmap(B + P, 2 * PMD - 2 * P, RW, SHANON)   # no aligned 2 MiB block inside
    assert smaps_field(k, p, a, "THPeligible") == 0
    p.touch(a, 2 * PMD - 2 * P)
    assert meminfo(k)["ShmemHugePages"] == 0
    assert vmstat(k)["thp_file_alloc"] == 0


def test_within_size_needs_the_block_inside_the_file():
    k, p = setup("within_size")
    fd = p.memfd_create("m")
    p.ftruncate(fd, PMD + PMD // 2)
    a = p.mmap(B, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(a, 1)                 # block 0 ends inside i_size: huge
    p.touch(a + PMD, 1)           # block 1 does not: small (no MADV_HUGEPAGE)
    assert meminfo(k)["ShmemHugePages"] == 2048
    assert smaps_field(k, p, a, "Rss") == 2048 + 4
    p.madvise(a, 2 * PMD, MADV_HUGEPAGE)   # within_size falls through to advise
    p.ftruncate(fd, 4 * PMD)
    b = p.mmap(B + 4 * PMD, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 2 * PMD)
    p.madvise(b, 2 * PMD, MADV_HUGEPAGE)
    p.touch(b, 1)
    assert meminfo(k)["ShmemHugePages"] == 4096


def test_per_size_always_gives_mthp_mapped_by_ptes():
    # Per-size always works with the top level at never; a 64 KiB VMA is eligible.
    k, p = setup(s64="always")
    a = p.mmap(B, 64 << 10, RW, SHANON)
    assert smaps_field(k, p, a, "THPeligible") == 1
    p.touch(a + P, 1)
    # finish_fault maps the whole folio of anonymous shmem by PTEs.
    assert smaps_field(k, p, a, "Rss") == 64
    assert smaps_field(k, p, a, "ShmemPmdMapped") == 0
    assert stat(k, 64, "shmem_alloc") == 1 and stat(k, 2048, "shmem_alloc") == 0
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["Shmem"]) == (0, 64)   # mTHP is not ShmemHugePages


def test_per_size_advise_needs_madv_hugepage():
    k, p = setup(s32="advise")
    a = p.mmap(B, 64 << 10, RW, SHANON)
    assert smaps_field(k, p, a, "THPeligible") == 0
    p.touch(a, 1)
    assert smaps_field(k, p, a, "Rss") == 4
    p.madvise(a, 64 << 10, MADV_HUGEPAGE)
    assert smaps_field(k, p, a, "THPeligible") == 1
    p.touch(a + (32 << 10), 1)
    assert smaps_field(k, p, a, "Rss") == 4 + 32
    assert stat(k, 32, "shmem_alloc") == 1


def test_order_choice_skips_a_block_the_cache_already_holds():
    # shmem_suitable_orders tests the page cache, not the PTEs: a page cached by a
    # small fault under never keeps its PMD block small later, under always.
    k, p = setup(None, s64="always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    k.proc_write(T + "hugepages-64kB/shmem_enabled", "never")
    p.touch(a, 1)
    k.proc_write(T + "shmem_enabled", "always")
    k.proc_write(T + "hugepages-64kB/shmem_enabled", "always")
    p.touch(a + 16 * P, 1)   # PMD block holds page 0: 64 KiB instead
    assert stat(k, 2048, "shmem_alloc") == 0 and stat(k, 64, "shmem_alloc") == 1
    p.touch(a + PMD, 1)
    assert stat(k, 2048, "shmem_alloc") == 1


def test_allocation_failure_falls_back_order_by_order():
    # Simulator-defined: a large folio fails only below the min watermark.
    k, p = setup("always", memory=256 << 20, s64="always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    wmin = k.watermarks()[0]
    filler = p.mmap(B + 64 * PMD, (k.free_pages() - wmin - 300) * P, RW,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    p.touch(filler, (k.free_pages() - wmin - 300) * P)
    p.touch(a, 1)
    v = vmstat(k)
    assert (v["thp_file_fallback"], v["thp_file_fallback_charge"]) == (1, 0)
    assert stat(k, 2048, "shmem_fallback") == 1 and stat(k, 64, "shmem_alloc") == 1
    assert smaps_field(k, p, a, "Rss") == 64


def test_charge_failure_falls_back_to_one_page():
    k = Kernel()
    k.proc_write(T + "shmem_enabled", "always")
    k.mkdir("/sys/fs/cgroup/small")
    k.proc_write("/sys/fs/cgroup/small/memory.max", str(1 << 20))
    p = k.spawn(cgroup="small")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.touch(a, 1)
    v = vmstat(k)
    assert (v["thp_file_fallback"], v["thp_file_fallback_charge"], v["thp_file_alloc"]) == (
        1, 1, 0)
    assert stat(k, 2048, "shmem_fallback") == 1
    assert stat(k, 2048, "shmem_fallback_charge") == 1
    assert smaps_field(k, p, a, "Rss") == 4


def test_shared_write_to_a_page_another_process_maps_is_not_copied():
    k, p = setup(None)
    a = p.mmap(B, 2 * P, RW, SHANON)
    p.touch(a, 2 * P)
    c = p.fork()
    c.touch(a, 2 * P)
    p.touch(a, 2 * P)
    m = meminfo(k)
    assert (m["AnonPages"], m["Shmem"]) == (0, 8)


def test_a_write_through_a_mapped_shmem_page_is_counted_dirty():
    # _access marked the folio dirty without counting it; truncation then uncounted
    # it, and file_dirty went below zero.
    k, p = setup(None)
    fd = p.memfd_create("m")
    p.ftruncate(fd, 2 * P)
    a = p.mmap(B, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(a, P, write=False)
    p.touch(a, P)
    p.ftruncate(fd, 0)
    pagecache.check(k)


def test_mremap_off_pmd_alignment_keeps_counters():
    k, p = setup("always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.touch(a, 1)
    p.mremap(a, 2 * PMD, 2 * PMD, 3, B + 8 * PMD + P)   # MREMAP_MAYMOVE|MREMAP_FIXED
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"]) == (2048, 0)
    for vma in p.mm.vmas():
        pages.check_vma(vma)
    pagecache.check(k)


def test_a_second_mapper_maps_the_folio_by_pmd_and_a_private_write_splits_it():
    k, p = setup("always")
    fd = p.memfd_create("m")
    p.ftruncate(fd, 2 * PMD)
    a = p.mmap(B, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(a, 1)
    c = p.fork()
    assert smaps_field(k, c, a, "Rss") == 0   # fork copies no shared file mapping
    c.touch(a + 7 * P, 1, write=False)
    assert smaps_field(k, c, a, "ShmemPmdMapped") == 2048
    b = p.mmap(B + 8 * PMD, 2 * PMD, RW, MAP_PRIVATE | MAP_FIXED, fd, 0)
    p.touch(b + P, 1, write=False)
    assert smaps_field(k, p, b, "ShmemPmdMapped") == 2048
    p.touch(b + P, 1)   # COW: the PMD goes, one private copy
    assert smaps_field(k, p, b, "Rss") == 4 and smaps_field(k, p, b, "Anonymous") == 4
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"]) == (2048, 2048)
    assert vmstat(k)["thp_file_mapped"] == 3
    c.exit(0)
    p.munmap(a, 2 * PMD)
    assert meminfo(k)["ShmemPmdMapped"] == 0 and meminfo(k)["ShmemHugePages"] == 2048


def test_partial_munmap_drops_the_whole_pmd_mapping():
    k, p = setup("always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.touch(a, 1)
    p.munmap(a + PMD - P, P)
    assert smaps_field(k, p, a, "Rss") == 0
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"]) == (2048, 0)
    p.touch(a, 1)   # refaults by PTE: the block no longer fits the VMA
    assert smaps_field(k, p, a, "Rss") == 4   # finish_fault: one page, the folio is cut


def test_mprotect_of_part_drops_the_pmd_mapping():
    k, p = setup("always")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.touch(a, 1)
    p.mprotect(a, P, PROT_READ)
    assert smaps_field(k, p, a, "Rss") == 0 and smaps_field(k, p, a + P, "Rss") == 0
    assert meminfo(k)["ShmemPmdMapped"] == 0


def test_truncate_splits_and_frees_the_tail():
    k, p = setup("always")
    fd = p.memfd_create("m")
    p.ftruncate(fd, 2 * PMD)
    a = p.mmap(B, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(a, 1)
    p.ftruncate(fd, PMD // 2)
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"], m["Shmem"]) == (0, 0, 1024)
    assert smaps_field(k, p, a, "Rss") == 0


# ---------------------------------------------------------------- MADV_COLLAPSE


def test_collapse_under_never_matches_the_live_run():
    """What tests/test_shmem_thp.py's live check saw (shmem_enabled=never)."""
    k, p = setup(None)
    a = p.mmap(B, 4 * PMD, RW, SHANON)
    p.touch(a, 1)
    p.madvise(a, PMD, MADV_COLLAPSE)
    p.touch(a + PMD + P, 1, write=False)
    p.madvise(a + PMD, PMD, MADV_COLLAPSE)
    with pytest.raises(OSError) as exc:
        p.madvise(a + 2 * PMD, PMD, MADV_COLLAPSE)   # nothing in the block
    assert exc.value.errno == errno.EINVAL
    assert smaps_field(k, p, a, "ShmemPmdMapped") == 4096
    assert smaps_field(k, p, a, "THPeligible") == 0
    v = vmstat(k)
    assert (v["thp_collapse_alloc"], v["thp_file_mapped"], v["thp_file_alloc"]) == (3, 2, 0)
    assert stat(k, 2048, "shmem_alloc") == 0
    m = meminfo(k)
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"], m["Shmem"]) == (4096, 4096, 4096)


def test_collapse_refused_by_per_size_never_and_by_deny():
    k, p = setup(None, s2048="never")
    a = p.mmap(B, 2 * PMD, RW, SHANON)
    p.touch(a, 1)
    with pytest.raises(OSError) as exc:
        p.madvise(a, PMD, MADV_COLLAPSE)
    assert exc.value.errno == errno.EINVAL
    k.proc_write(T + "hugepages-2048kB/shmem_enabled", "inherit")
    k.proc_write(T + "shmem_enabled", "deny")
    with pytest.raises(OSError):
        p.madvise(a, PMD, MADV_COLLAPSE)
    k.proc_write(T + "shmem_enabled", "never")
    p.madvise(a, PMD, MADV_COLLAPSE)
    assert meminfo(k)["ShmemHugePages"] == 2048


def test_collapse_unaligned_pgoff_is_einval():
    k, p = setup(None)
    fd = p.memfd_create("m")
    p.ftruncate(fd, 4 * PMD)
    a = p.mmap(B, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, P)
    p.touch(a, 1)
    with pytest.raises(OSError) as exc:
        p.madvise(a, 2 * PMD, MADV_COLLAPSE)
    assert exc.value.errno == errno.EINVAL


def test_collapse_takes_other_mappings_of_the_small_pages_away():
    k, p = setup(None)
    fd = p.memfd_create("m")
    p.ftruncate(fd, PMD)
    a = p.mmap(B, PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    b = p.mmap(B + 4 * PMD, PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(a, 64 * P)
    p.touch(b, 64 * P, write=False)
    p.madvise(a, PMD, MADV_COLLAPSE)
    assert smaps_field(k, p, b, "Rss") == 0
    p.touch(b, 1, write=False)
    assert smaps_field(k, p, b, "ShmemPmdMapped") == 2048
    assert meminfo(k)["Shmem"] == 2048


# ---------------------------------------------------------------- khugepaged


def _khugepaged_case(mode, hg, touched, max_ptes_none=None):
    k = Kernel(thp="never")
    if max_ptes_none is not None:
        k.proc_write(T + "khugepaged/max_ptes_none", str(max_ptes_none))
    p = k.spawn()
    a = p.mmap(B, 4 * PMD, RW, SHANON)
    for block, n in enumerate(touched):
        if n:
            p.touch(a + block * PMD, n * P)   # small pages: shmem_enabled is never
    k.proc_write(T + "shmem_enabled", mode)
    if hg:
        p.madvise(a, 4 * PMD, MADV_HUGEPAGE)
    k.advance(30)
    return k, p, a


def test_khugepaged_collapses_shmem_the_knobs_allow():
    k, p, a = _khugepaged_case("advise", True, (100, 512, 1, 0))
    assert k.proc_read(T + "khugepaged/pages_collapsed") == "3\n"
    m = meminfo(k)
    # collapse_file installs no PMD: the mappings refault (by a PMD).
    assert (m["ShmemHugePages"], m["ShmemPmdMapped"], m["Shmem"]) == (6144, 0, 6144)
    assert smaps_field(k, p, a, "Rss") == 0
    assert vmstat(k)["thp_collapse_alloc"] == 3 and vmstat(k)["thp_file_alloc"] == 0
    p.touch(a + 2 * PMD + 9 * P, 1, write=False)
    assert smaps_field(k, p, a, "ShmemPmdMapped") == 2048
    pagecache.check(k)


def test_khugepaged_leaves_shmem_alone_under_never_or_without_advice():
    for mode, hg in (("never", True), ("advise", False)):
        k, p, a = _khugepaged_case(mode, hg, (100, 512, 1, 0))
        assert k.proc_read(T + "khugepaged/pages_collapsed") == "0\n", mode
        assert meminfo(k)["ShmemHugePages"] == 0


@pytest.mark.parametrize("present,collapsed", [(111, False), (112, True)])
def test_khugepaged_shmem_max_ptes_none_boundary(present, collapsed):
    # hpage_collapse_scan_file: fewer than 512 - max_ptes_none pages is too few.
    k, p, a = _khugepaged_case("advise", True, (present,), max_ptes_none=400)
    assert meminfo(k)["ShmemHugePages"] == (2048 if collapsed else 0)
    assert k.khugepaged.pages_collapsed == collapsed


def test_khugepaged_retracts_ptes_of_a_folio_already_huge():
    # A PMD-order folio mapped by PTEs (a guard marker kept the PMD out at its
    # fault): khugepaged finds the folio huge already (SCAN_PTE_MAPPED_HUGEPAGE) and
    # drops the PTEs, so the next fault maps it by a PMD; nothing is allocated.
    k, p = setup("always")
    a = p.mmap(B, PMD, RW, SHANON)
    p.madvise(a + PMD - P, P, MADV_GUARD_INSTALL)
    p.touch(a, 1)
    assert meminfo(k)["ShmemHugePages"] == 2048 and smaps_field(k, p, a, "Rss") == 4
    p.madvise(a + PMD - P, P, MADV_GUARD_REMOVE)
    p.touch(a + P, 1, write=False)
    assert smaps_field(k, p, a, "Rss") == 64   # fault-around, by PTEs
    k.advance(30)
    assert smaps_field(k, p, a, "Rss") == 0
    assert k.khugepaged.last_result == SCAN_PTE_MAPPED_HUGEPAGE
    assert vmstat(k)["thp_collapse_alloc"] == 0
    p.touch(a + 2 * P, 1, write=False)
    assert smaps_field(k, p, a, "ShmemPmdMapped") == 2048


# ---------------------------------------------------------------- properties


def _shmem_inodes(k, seen):
    for proc in k.processes.values():
        mm = proc.mm
        if mm is not None:
            for vma in mm.vmas():
                if vma.file is not None and vma.file.shmem:
                    seen[id(vma.file.inode)] = vma.file.inode
        for f in proc.fds.values():
            inode = getattr(f, "inode", None)
            if inode is not None and getattr(f, "shmem", False):
                seen[id(inode)] = inode


def check_shmem(k, seen):
    """ShmemHugePages is the PMD-order shmem folios' pages, ShmemPmdMapped those with a
    PMD mapping; every PMD mapping maps its folio's pages in order; smaps agrees."""
    _shmem_inodes(k, seen)
    heads, mapped, total = 0, 0, 0
    maps = {}
    for proc in k.processes.values():
        mm = proc.mm
        if mm is None or id(mm) in maps:
            continue
        maps[id(mm)] = 0
        for vma in mm.vmas():
            pages.check_vma(vma)
            for x, y, span in (vma.pages.items() if vma.pages else ()):
                if span.kind == pages.CACHED and span.pmd:
                    page = span.pool
                    assert page.order == 9
                    if not x % 512:
                        maps[(id(page))] = maps.get(id(page), 0) + 1
    for inode in seen.values():
        cache = inode.cache
        total += len(cache)
        for index, page in cache.items():
            nr = 1 << page.order
            head = index & ~(nr - 1)
            assert all(cache.get(i) is not None and cache[i].order == page.order
                       for i in range(head, head + nr)), (index, page.order)
            if page.order == 9 and index == head:
                heads += 1
                assert page.pmd_maps == maps.get(id(page), 0)
                mapped += page.pmd_maps > 0
    m = meminfo(k)
    assert m["ShmemHugePages"] == heads * 2048
    assert m["ShmemPmdMapped"] == mapped * 2048
    assert m["Shmem"] == total * 4
    assert vmstat(k)["thp_file_alloc"] == stat(k, 2048, "shmem_alloc")
    pagecache.check(k)


OPS = st.lists(st.tuples(
    st.sampled_from(["touch_r", "touch_w", "hugepage", "collapse", "dontneed", "munmap",
                     "truncate", "fork", "exit", "mode", "size", "mprotect", "memfd",
                     "mremap"]),
    st.integers(0, 7), st.integers(1, 1100)), max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_counters_stay_consistent(ops):
    k, p = setup("always", s64="always")
    seen = {}
    procs = [p]
    areas = []
    a = p.mmap(B, 8 * PMD, RW, SHANON)
    areas.append((a, 8 * PMD))
    fd = p.memfd_create("m")
    p.ftruncate(fd, 8 * PMD)
    m = p.mmap(B + 16 * PMD, 8 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    areas.append((m, 8 * PMD))
    for op, which, n in ops:
        proc = procs[which % len(procs)]
        start, length = areas[which % len(areas)]
        addr = start + (n * 37 % (length // P)) * P
        size = min(n * P, start + length - addr)
        try:
            if op == "touch_r":
                proc.touch(addr, size, write=False)
            elif op == "touch_w":
                proc.touch(addr, size)
            elif op == "hugepage":
                proc.madvise(addr, size, MADV_HUGEPAGE)
            elif op == "collapse":
                proc.madvise(start + (n % 8) * PMD, PMD, MADV_COLLAPSE)
            elif op == "dontneed":
                proc.madvise(addr, size, MADV_DONTNEED)
            elif op == "munmap":
                proc.munmap(addr, size)
            elif op == "mprotect":
                proc.mprotect(addr, size, PROT_READ)
            elif op == "truncate":
                p.ftruncate(fd, n * P * 13)
            elif op == "fork" and len(procs) < 4:
                procs.append(proc.fork())
            elif op == "exit" and proc is not p:
                proc.exit(0)
                procs.remove(proc)
            elif op == "mode":
                k.proc_write(T + "shmem_enabled",
                             ("always", "within_size", "advise", "never", "deny")[n % 5])
            elif op == "size":
                k.proc_write(f"{T}hugepages-{(16, 64, 256, 2048)[n % 4]}kB/shmem_enabled",
                             ("always", "inherit", "within_size", "advise", "never")[which % 5])
            elif op == "memfd":
                proc.mmap(start, length, RW, MAP_PRIVATE | MAP_FIXED, fd, 0)
            elif op == "mremap":
                # MREMAP_MAYMOVE|MREMAP_FIXED, to a place aligned or not
                proc.mremap(addr, size, size, 3, B + 40 * PMD + (n % 3) * 256 * P)
        except OSError:
            pass
        check_shmem(k, seen)
    for proc in procs[1:]:
        proc.exit(0)
    p.munmap(B, 64 * PMD)
    check_shmem(k, seen)
    assert meminfo(k)["ShmemPmdMapped"] == 0


# ---------------------------------------------------------------- the live kernel


def _host_shmem_defaults():
    try:
        with open(T + "shmem_enabled") as f:
            top = f.read()
        sizes = {}
        for kb in (16, 32, 64, 128, 256, 512, 1024, 2048):
            with open(f"{T}hugepages-{kb}kB/shmem_enabled") as f:
                sizes[kb] = f.read().split("[")[1].split("]")[0]
    except OSError:
        return False
    want = {kb: "inherit" if kb == 2048 else "never" for kb in sizes}
    return "[never]" in top and sizes == want


def _live_shmem():
    """In a child: the live kernel's answers for the cases of
    test_collapse_under_never_matches_the_live_run and the fault table's never rows."""
    libc = live.load_libc()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def area(flags, fd=-1, size=4 * PMD):
        raw = libc.mmap(None, size + PMD, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        base = (raw + PMD - 1) & ~(PMD - 1)
        got = libc.mmap(base, size, RW, flags | MAP_FIXED, fd, 0)
        assert got == base
        return base

    def fields(addr):
        with open("/proc/self/smaps") as f:
            text = f.read()
        out, cur = {}, False
        for line in text.splitlines():
            w = line.split()
            if "-" in w[0] and ":" not in w[0]:
                s, e = (int(x, 16) for x in w[0].split("-"))
                cur = s <= addr < e
            elif cur and w[0].rstrip(":") in ("Rss", "ShmemPmdMapped", "THPeligible",
                                             "Anonymous"):
                out[w[0].rstrip(":")] = int(w[1])
        return out

    def counters():
        with open("/proc/vmstat") as f:
            v = dict(line.split() for line in f)
        with open(f"{T}hugepages-2048kB/stats/shmem_alloc") as f:
            alloc = int(f.read())
        return {n: int(v[n]) for n in ("thp_collapse_alloc", "thp_file_mapped",
                                       "thp_file_alloc")} | {"shmem_alloc": alloc}

    out = {}
    c0 = counters()
    a = area(mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    libc.madvise(a, 4 * PMD, MADV_HUGEPAGE)
    out["hg_eligible"] = fields(a)["THPeligible"]
    ctypes.c_char.from_address(a + 3 * PMD).value
    out["hg_read_rss"] = fields(a)["Rss"]
    ctypes.c_char.from_address(a).value = b"x"
    out["c1"] = libc.madvise(a, PMD, MADV_COLLAPSE)
    ctypes.c_char.from_address(a + PMD + P).value
    out["c2"] = libc.madvise(a + PMD, PMD, MADV_COLLAPSE)
    r = libc.madvise(a + 2 * PMD, PMD, MADV_COLLAPSE)
    out["c3"] = ctypes.get_errno() if r else 0
    out["after"] = fields(a)
    fd = os.memfd_create("shmemthp")
    try:
        os.ftruncate(fd, 2 * PMD)
        m = area(mmap.MAP_SHARED, fd, 2 * PMD)
        ctypes.c_char.from_address(m).value = b"x"
        out["memfd_collapse"] = libc.madvise(m, PMD, MADV_COLLAPSE)
        m2 = area(mmap.MAP_SHARED, fd, 2 * PMD)
        ctypes.c_char.from_address(m2 + 7 * P).value
        out["second"] = fields(m2)
        m3 = area(mmap.MAP_PRIVATE, fd, 2 * PMD)
        ctypes.c_char.from_address(m3 + P).value
        out["private_read"] = fields(m3)
        ctypes.c_char.from_address(m3 + P).value = b"y"
        out["private_write"] = fields(m3)
    finally:
        os.close(fd)
    out["counters"] = {n: v - c0[n] for n, v in counters().items()}
    return out


def _sim_shmem():
    k, p = setup(None)
    out = {}
    c0 = {n: vmstat(k)[n] for n in ("thp_collapse_alloc", "thp_file_mapped",
                                    "thp_file_alloc")}
    a = p.mmap(B, 4 * PMD, RW, SHANON)
    p.madvise(a, 4 * PMD, MADV_HUGEPAGE)
    out["hg_eligible"] = smaps_field(k, p, a, "THPeligible")
    p.touch(a + 3 * PMD, 1, write=False)
    out["hg_read_rss"] = smaps_field(k, p, a, "Rss")
    p.touch(a, 1)
    out["c1"] = p.madvise(a, PMD, MADV_COLLAPSE)
    p.touch(a + PMD + P, 1, write=False)
    out["c2"] = p.madvise(a + PMD, PMD, MADV_COLLAPSE)
    try:
        out["c3"] = p.madvise(a + 2 * PMD, PMD, MADV_COLLAPSE)
    except OSError as exc:
        out["c3"] = exc.errno

    def fields(addr):
        return {n: smaps_field(k, p, addr, n) for n in ("Rss", "ShmemPmdMapped",
                                                        "THPeligible", "Anonymous")}
    out["after"] = fields(a)
    fd = p.memfd_create("shmemthp")
    p.ftruncate(fd, 2 * PMD)
    m = p.mmap(B + 16 * PMD, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(m, 1)
    out["memfd_collapse"] = p.madvise(m, PMD, MADV_COLLAPSE)
    m2 = p.mmap(B + 32 * PMD, 2 * PMD, RW, MAP_SHARED | MAP_FIXED, fd, 0)
    p.touch(m2 + 7 * P, 1, write=False)
    out["second"] = fields(m2)
    m3 = p.mmap(B + 48 * PMD, 2 * PMD, RW, MAP_PRIVATE | MAP_FIXED, fd, 0)
    p.touch(m3 + P, 1, write=False)
    out["private_read"] = fields(m3)
    p.touch(m3 + P, 1)
    out["private_write"] = fields(m3)
    v = vmstat(k)
    out["counters"] = {n: v[n] - c0[n] for n in c0} | {
        "shmem_alloc": stat(k, 2048, "shmem_alloc")}
    return out


@pytest.mark.live
def test_live_shmem_thp_under_the_host_settings():
    if not _host_shmem_defaults():
        pytest.skip("the host's shmem THP knobs are not never / 2048kB inherit / others never")
    got = live.in_child(_live_shmem, "shmem THP live check")
    want = _sim_shmem()
    # Other processes may collapse or map file THPs meanwhile: the host's counters
    # may only be larger.
    for name, n in want.pop("counters").items():
        assert got["counters"][name] >= n, (name, got["counters"], n)
    got.pop("counters")
    assert got == want
    assert want["after"]["ShmemPmdMapped"] == 4096 and want["c3"] == errno.EINVAL

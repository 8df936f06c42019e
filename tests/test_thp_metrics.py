"""THP's costs and gains in mmsim.metrics: coverage per folio size, the TLB proxy,
collapse work per process and per cgroup (docs/thp.md, "What THP costs and gives")."""

import pytest

from mmsim import metrics
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLLAPSE, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE,
                        MAP_PRIVATE, PROT_READ, PROT_WRITE)

P = 4096
PMD = 2 << 20
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
BASE = 1 << 40
T = "/sys/kernel/mm/transparent_hugepage/"


def machine(**sizes):
    """A kernel under madvise with the given per-size modes (``kb64="always"``)."""
    k = Kernel(thp="madvise", randomize=False)
    for key, mode in sizes.items():
        k.proc_write(T + f"hugepages-{key[2:]}kB/enabled", mode)
    k.proc_write(T + "khugepaged/scan_sleep_millisecs", "10")
    k.mkdir("/sys/fs/cgroup/box")
    return k


def test_coverage_per_size_counts_pte_mapped_mthp_and_pmd_thp_apart():
    k = machine(kb64="always")
    small = k.spawn(cgroup="box")
    small.mmap(BASE, 1 << 20, RW, ANON)
    small.touch(BASE, 1 << 20)
    huge = k.spawn(cgroup="box")
    huge.mmap(BASE, PMD, RW, ANON)
    huge.madvise(BASE, PMD, MADV_HUGEPAGE)
    huge.touch(BASE, P)
    s = metrics.sample(k)
    m = s["processes"][small.pid]
    assert m["anon_kb"] == 1024
    assert m["anon_kb.64kB"] == 1024 and m["thp_coverage.64kB"] == 1.0
    assert m["anon_kb.2048kB"] == 0 and m["thp_coverage"] == 0.0
    assert m["mthp_coverage"] == 1.0
    # No contiguous-PTE entries on x86-64: 256 pages in 64 kB folios are 256 entries.
    assert m["tlb_entries"] == 256
    h = s["processes"][huge.pid]
    assert h["anon_kb.2048kB"] == 2048 and h["thp_coverage.2048kB"] == 1.0
    assert h["thp_coverage"] == 1.0 and h["anon_kb.64kB"] == 0
    assert h["tlb_entries"] == 1
    # The cgroup sums its processes; the root holds the box.
    for path in ("box", "/"):
        c = s["cgroups"][path]
        assert c["anon_kb.64kB"] == 1024 and c["anon_kb.2048kB"] == 2048
        assert c["thp_coverage.64kB"] == pytest.approx(1024 / 3072)
        assert c["mthp_coverage"] == 1.0
    assert set(metrics.SIZES) == {f"{4 << o}kB" for o in range(2, 10)}


def test_a_pte_mapped_thp_keeps_its_size_but_leaves_the_pmd_coverage():
    """mprotect of one page splits the PMD, not the folio: the 2 MiB folio is still
    there (per-size figure), no longer PMD-mapped (thp_coverage, AnonHugePages), and
    its translations are 512 again."""
    k = machine()
    proc = k.spawn()
    proc.mmap(BASE, PMD, RW, ANON)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.touch(BASE, P)
    proc.mprotect(BASE, P, PROT_READ)
    m = metrics.process_metrics(proc)
    assert m["anon_kb.2048kB"] == 2048 and m["thp_coverage.2048kB"] == 1.0
    assert m["thp_coverage"] == 0.0 and m["anon_huge_kb"] == 0
    assert m["tlb_entries"] == 512


def test_collapse_work_is_counted_per_process_and_per_cgroup():
    k = machine()
    by_madvise = k.spawn(cgroup="box")
    by_daemon = k.spawn()
    idle = k.spawn()
    for proc in (by_madvise, by_daemon, idle):
        proc.mmap(BASE, 2 * PMD, RW, ANON)
        proc.touch(BASE, 16 * P)
        proc.touch(BASE + PMD, 16 * P)
    by_madvise.madvise(BASE, 2 * PMD, MADV_COLLAPSE)
    by_daemon.madvise(BASE, PMD, MADV_HUGEPAGE)
    k.advance(1)
    s = metrics.sample(k)
    m = s["processes"][by_madvise.pid]
    assert (m["collapsed_madvise"], m["collapsed_khugepaged"], m["collapsed_kb"]) == (2, 0, 4096)
    d = s["processes"][by_daemon.pid]
    assert (d["collapsed_madvise"], d["collapsed_khugepaged"], d["collapsed_kb"]) == (0, 1, 2048)
    assert s["processes"][idle.pid]["collapsed_kb"] == 0
    # memory.stat's thp_collapse_alloc, per cgroup (hierarchical at the root).
    assert s["cgroups"]["box"]["collapsed_kb"] == 4096
    assert s["cgroups"]["/"]["collapsed_kb"] == 6144
    # MADV_COLLAPSE over blocks already huge makes nothing new.
    by_madvise.madvise(BASE, 2 * PMD, MADV_COLLAPSE)
    assert metrics.process_metrics(by_madvise)["collapsed_madvise"] == 2


def test_bloat_is_the_large_folio_pages_never_written():
    """A sparse writer (one page in 16) under a PMD THP and under 64 kB mTHP, and
    with base pages: the large folios hold 15 zero-filled pages for each written one;
    base pages hold none.  A discard forgets what was written; a fork keeps it."""
    k = machine(kb64="always")
    sparse = [BASE + i * 16 * P for i in range(32)]   # 2 MiB, every 64 kB
    huge, small = k.spawn(), k.spawn()
    plain = k.spawn()
    plain.prctl(41, 1, 0, 0, 0)   # PR_SET_THP_DISABLE: base pages only
    for proc in (huge, small, plain):
        proc.mmap(BASE, PMD, RW, ANON)
    huge.madvise(BASE, PMD, MADV_HUGEPAGE)
    for proc in (huge, small, plain):
        proc.access(sparse)
    s = metrics.sample(k)
    h, m, b = (s["processes"][p.pid] for p in (huge, small, plain))
    assert (h["written_kb"], h["bloat_kb"], h["anon_kb"]) == (128, 2048 - 128, 2048)
    assert (m["written_kb"], m["bloat_kb"], m["anon_kb"]) == (128, 2048 - 128, 2048)
    assert (b["written_kb"], b["bloat_kb"], b["anon_kb"]) == (128, 0, 128)
    assert s["cgroups"]["/"]["bloat_kb"] == 2 * (2048 - 128)
    child = huge.fork()
    assert metrics.process_metrics(child)["bloat_kb"] == 2048 - 128
    # MADV_DONTNEED of the block, then one write: a new THP, one page written.
    huge.madvise(BASE, PMD, 4)
    huge.touch(BASE + 5 * P, P)
    m = metrics.process_metrics(huge)
    assert (m["written_kb"], m["bloat_kb"]) == (4, 2048 - 4)


def test_mremap_moves_what_was_written():
    k = machine()
    proc = k.spawn()
    proc.mmap(BASE, PMD, RW, ANON)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.touch(BASE, 4 * P)
    new = proc.mremap(BASE, PMD, PMD, 3, BASE + 8 * PMD)   # MAYMOVE | FIXED
    assert new == BASE + 8 * PMD
    m = metrics.process_metrics(proc)
    assert (m["written_kb"], m["bloat_kb"]) == (16, 2048 - 16)
    assert proc.mm.find_vma(BASE + 8 * PMD).unwritten.ranges() == [
        ((BASE + 8 * PMD) // P + 4, (BASE + 8 * PMD) // P + 512)]

"""Zero-page mappings: a read fault of private anonymous memory maps the shared zero
page (or the huge zero folio by a PMD where a write would have made a THP), and those
entries decide later faults, collapses and splits.  Scenarios run on mmsim and, where
the host's THP settings allow, on the live kernel in a child process."""

import ctypes
import os
import errno

import pytest

from mmsim import live, pages, thp
from mmsim.errors import Killed
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLD, MADV_COLLAPSE, MADV_DONTNEED, MADV_FREE,
                        MADV_GUARD_INSTALL, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_POPULATE_READ,
                        MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ,
                        PROT_WRITE)

P = 4096
PMD = 2 << 20
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
T = "/sys/kernel/mm/transparent_hugepage/"
BASE = 0x7e0000001000          # an unaligned start, as the live mmap's usually is
SPAN = 8 * PMD
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
EVENTS = ("thp_fault_alloc", "thp_split_pmd", "thp_collapse_alloc", "thp_split_page")

# name -> steps; offsets are from the first PMD-aligned address of the mapping, and
# the result is measured over [a + at, a + at + PMD) (``at`` is the last step's "to"
# for an mremap).
SCENARIOS = {
    "read, MADV_HUGEPAGE, write: the zero-page PTE stays a page table": [
        ("madvise", 0, PMD, MADV_NOHUGEPAGE), ("read", 0),
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("write", P)],
    "read then write under MADV_HUGEPAGE: a THP replaces the huge zero PMD": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0), ("write", P)],
    "huge zero PMD, then MADV_NOHUGEPAGE, write: still a THP": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0),
        ("madvise", 0, PMD, MADV_NOHUGEPAGE), ("write", P)],
    "huge zero PMD, mprotect of half: split": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0), ("mprotect", 0, PMD // 2, PROT_READ)],
    "huge zero PMD, MADV_DONTNEED of one page, write: a base page": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0), ("madvise", 0, P, MADV_DONTNEED),
        ("write", 2 * P)],
    "huge zero PMD, MADV_DONTNEED of all, write: a THP": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0), ("madvise", 0, PMD, MADV_DONTNEED),
        ("write", 2 * P)],
    "zero-page PTEs only, MADV_COLLAPSE: EINVAL, nothing allocated": [
        ("madvise", 0, PMD, MADV_NOHUGEPAGE), ("populate_read", 0, 10 * P),
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("collapse", 0, PMD)],
    "one page and zero-page PTEs, MADV_COLLAPSE: a THP": [
        ("madvise", 0, PMD, MADV_NOHUGEPAGE), ("write", 0), ("populate_read", P, 10 * P),
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("collapse", 0, PMD)],
    "huge zero PMD, MADV_COLLAPSE: done already": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0), ("collapse", 0, PMD)],
    "a guard marker in the block: the write takes a base page": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("madvise", 100 * P, P, MADV_GUARD_INSTALL),
        ("write", 0)],
    "a THP moved off PMD alignment is split": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("write", 0),
        ("mremap", 0, PMD, 3 * PMD + P)],
    "a huge zero PMD moved off PMD alignment is split": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("read", 0),
        ("mremap", 0, PMD, 3 * PMD + 2 * P)],
    "a THP with 64 pages written, MADV_COLD of one page: its zero-filled pages go": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("write_pages", 0, 64),
        ("madvise", 100 * P, P, MADV_COLD)],
    "a THP populated, never written, MADV_COLD of one page: all of it goes": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("madvise", 0, PMD, MADV_POPULATE_WRITE),
        ("madvise", 100 * P, P, MADV_COLD)],
    "a THP with 64 pages written, mlocked, MADV_COLD: EINVAL, nothing splits": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("write_pages", 0, 64),
        ("mlock", 0, PMD), ("madvise", 100 * P, P, MADV_COLD)],
    "a THP with 64 pages written, MADV_FREE of one page: the zero-filled pages go": [
        ("madvise", 0, PMD, MADV_HUGEPAGE), ("write_pages", 0, 64),
        ("madvise", 100 * P, P, MADV_FREE)],
}


class _Sim:
    """The scenario's calls on an mmsim process."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.proc = kernel.spawn()
        raw = self.proc.mmap(BASE, SPAN + PMD, RW, ANON | MAP_FIXED)
        self.a = (raw + PMD - 1) & ~(PMD - 1)

    def call(self, name, *args):
        try:
            return getattr(self.proc, name)(*args)
        except OSError as e:
            return -e.errno

    def access(self, addr, write):
        self.proc.touch(addr, 1, write)

    def measure(self, lo, hi):
        text = self.kernel.proc_read(f"/proc/{self.proc.pid}/smaps")
        vm = dict(line.split() for line in self.kernel.proc_read("/proc/vmstat").splitlines())
        return _sums(text, lo, hi), {e: int(vm[e]) for e in EVENTS}


class _Live:
    """The same calls on the live kernel (in a child process)."""

    def __init__(self):
        self.libc = libc = live.load_libc()
        libc.mremap.restype = ctypes.c_void_p
        libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                ctypes.c_int, ctypes.c_void_p]
        raw = libc.mmap(None, SPAN + PMD, RW, ANON, -1, 0)
        assert raw not in (None, ctypes.c_void_p(-1).value)
        self.a = (raw + PMD - 1) & ~(PMD - 1)

    def call(self, name, *args):
        if name == "mremap":
            r = self.libc.mremap(*args)
            return -ctypes.get_errno() if r == ctypes.c_void_p(-1).value else r
        r = getattr(self.libc, name)(*args)
        return -ctypes.get_errno() if r == -1 else r

    def access(self, addr, write):
        cell = ctypes.c_char.from_address(addr)
        if write:
            cell.value = b"x"
        else:
            assert cell.value == b"\0"

    def measure(self, lo, hi):
        with open("/proc/self/smaps") as f:
            text = f.read()
        with open("/proc/vmstat") as f:
            vm = dict(line.split() for line in f)
        return _sums(text, lo, hi), {e: int(vm.get(e, 0)) for e in EVENTS}


def _sums(smaps_text, lo, hi):
    """(Rss, AnonHugePages) in kB over the smaps blocks meeting [lo, hi)."""
    rss = huge = 0
    inside = False
    for line in smaps_text.splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            a, b = (int(x, 16) for x in head.split("-"))
            inside = a < hi and b > lo
        elif inside and line.startswith("Rss:"):
            rss += int(line.split()[1])
        elif inside and line.startswith("AnonHugePages:"):
            huge += int(line.split()[1])
    return rss, huge


def run_steps(env, steps):
    """Run ``steps`` on ``env``: (Rss, AnonHugePages) of the measured PMD, the vm event
    deltas, and each call's result."""
    a = env.a
    at = 0
    results = []
    _, before = env.measure(a, a + PMD)
    for step in steps:
        what = step[0]
        if what == "read":
            env.access(a + step[1], False)
        elif what == "write":
            env.access(a + step[1], True)
        elif what == "write_pages":
            for i in range(step[2]):
                env.access(a + step[1] + i * P, True)
        elif what == "mlock":
            results.append(env.call("mlock", a + step[1], step[2]))
        elif what == "madvise":
            results.append(env.call("madvise", a + step[1], step[2], step[3]))
        elif what == "populate_read":
            results.append(env.call("madvise", a + step[1], step[2], MADV_POPULATE_READ))
        elif what == "collapse":
            results.append(env.call("madvise", a + step[1], step[2], MADV_COLLAPSE))
        elif what == "mprotect":
            results.append(env.call("mprotect", a + step[1], step[2], step[3]))
        elif what == "mremap":
            got = env.call("mremap", a + step[1], step[2], step[2],
                           MREMAP_MAYMOVE | MREMAP_FIXED, a + step[3])
            results.append(got - a if got >= 0 else got)
            at = step[3]
    sums, after = env.measure(a + at, a + at + PMD)
    return sums, {e: after[e] - before[e] for e in EVENTS}, results


def _sim(steps, mode="madvise"):
    return run_steps(_Sim(Kernel(thp=mode, randomize=False)), steps)


def _host_ok(host_thp):
    """Why the live runs cannot compare (None: they can)."""
    if not live.available()[0]:
        return live.available()[1]
    if host_thp != "madvise":
        return f"needs THP madvise on the host (it is {host_thp})"
    try:
        with open(T + "hugepages-2048kB/enabled") as f:
            if "[inherit]" not in f.read():
                return "needs hugepages-2048kB/enabled inherit on the host"
        with open(T + "use_zero_page") as f:
            if f.read().strip() != "1":
                return "needs use_zero_page 1 on the host"
    except OSError as e:
        return f"cannot read the host's THP settings: {e}"
    return None


def _run_live(steps):
    return live.in_child(lambda: run_steps(_Live(), steps), "zero-page scenario")


@pytest.mark.live
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_matches_live_kernel(name, host_thp):
    """Rss and AnonHugePages of the measured block, each call's result, and the vm
    events (machine-wide on the host, so a live delta can only be larger; a run in
    which khugepaged collapsed anything on the host is repeated)."""
    why = _host_ok(host_thp)
    if why:
        pytest.skip(why)
    steps = SCENARIOS[name]
    want_sums, want_ev, want_res = _sim(steps, host_thp)
    for _ in range(6):
        got_sums, got_ev, got_res = _run_live(steps)
        if got_ev["thp_collapse_alloc"] <= want_ev["thp_collapse_alloc"]:
            break
    else:
        pytest.skip("khugepaged kept collapsing during the run (a busy host)")
    assert list(got_res) == list(want_res)
    assert tuple(got_sums) == tuple(want_sums)
    for e in EVENTS:
        assert got_ev[e] >= want_ev[e], (e, got_ev, want_ev)


# What the simulator gives, scenario by scenario: (Rss kB, AnonHugePages kB), events.
WANT = {
    "read, MADV_HUGEPAGE, write: the zero-page PTE stays a page table": ((4, 0), {}),
    "read then write under MADV_HUGEPAGE: a THP replaces the huge zero PMD":
        ((2048, 2048), {"thp_fault_alloc": 1}),
    "huge zero PMD, then MADV_NOHUGEPAGE, write: still a THP":
        ((2048, 2048), {"thp_fault_alloc": 1}),
    "huge zero PMD, mprotect of half: split": ((0, 0), {"thp_split_pmd": 1}),
    "huge zero PMD, MADV_DONTNEED of one page, write: a base page":
        ((4, 0), {"thp_split_pmd": 1}),
    "huge zero PMD, MADV_DONTNEED of all, write: a THP": ((2048, 2048), {"thp_fault_alloc": 1}),
    "zero-page PTEs only, MADV_COLLAPSE: EINVAL, nothing allocated": ((0, 0), {}),
    "one page and zero-page PTEs, MADV_COLLAPSE: a THP":
        ((2048, 2048), {"thp_collapse_alloc": 1}),
    "huge zero PMD, MADV_COLLAPSE: done already": ((0, 0), {}),
    "a guard marker in the block: the write takes a base page": ((4, 0), {}),
    "a THP moved off PMD alignment is split":
        ((2048, 0), {"thp_fault_alloc": 1, "thp_split_pmd": 1}),
    "a huge zero PMD moved off PMD alignment is split": ((0, 0), {"thp_split_pmd": 1}),
    "a THP with 64 pages written, MADV_COLD of one page: its zero-filled pages go":
        ((256, 0), {"thp_fault_alloc": 1, "thp_split_pmd": 1, "thp_split_page": 1}),
    "a THP populated, never written, MADV_COLD of one page: all of it goes":
        ((0, 0), {"thp_fault_alloc": 1, "thp_split_pmd": 1, "thp_split_page": 1}),
    "a THP with 64 pages written, mlocked, MADV_COLD: EINVAL, nothing splits":
        ((2048, 2048), {"thp_fault_alloc": 1}),
    "a THP with 64 pages written, MADV_FREE of one page: the zero-filled pages go":
        ((256, 0), {"thp_fault_alloc": 1, "thp_split_pmd": 1, "thp_split_page": 1}),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_in_the_simulator(name):
    """The table the live runs confirm, checked on every machine."""
    sums, ev, results = _sim(SCENARIOS[name])
    want_sums, want_ev = WANT[name]
    assert sums == want_sums
    assert {e: n for e, n in ev.items() if n} == want_ev
    if "EINVAL" in name:
        assert results[-1] == -errno.EINVAL
    else:
        assert all(r >= 0 for r in results)


# ------------------------------------------------------------------ simulator rules


def _proc(mode="always"):
    k = Kernel(thp=mode, randomize=False)
    p = k.spawn()
    raw = p.mmap(BASE, SPAN + PMD, RW, ANON | MAP_FIXED)
    return k, p, (raw + PMD - 1) & ~(PMD - 1)


def _zero(p, addr):
    vma = p.mm.find_vma(addr)
    return pages.zero_pages(vma)


def test_read_fault_maps_huge_zero_pmd_and_counts_the_folio_once():
    k, p, a = _proc()
    p.touch(a, 1, False)
    p.touch(a + PMD, 1, False)
    vma = p.mm.find_vma(a)
    assert pages.zero_pages(vma) == [(a // P, a // P + 1024, True)]
    assert p.mm.rss_anon == 0 and vma.anon_vma is not None
    assert k.node.events["thp_zero_page_alloc"] == 1
    assert "thp_zero_page_alloc 1\n" in k.proc_read("/proc/vmstat")


def test_read_fault_outside_a_pmd_block_maps_zero_ptes_without_an_anon_vma():
    k, p, a = _proc("never")
    p.touch(a, 3 * P, False)
    vma = p.mm.find_vma(a)
    assert pages.zero_pages(vma) == [(a // P, a // P + 3, False)]
    assert vma.anon_vma is None
    p.touch(a + P, 1, True)
    assert pages.zero_pages(vma) == [(a // P, a // P + 1, False), (a // P + 2, a // P + 3, False)]
    assert p.mm.rss_anon == 1


def test_use_zero_page_knob_and_a_read_fault_without_it_allocates_a_thp():
    k, p, a = _proc()
    assert k.proc_read(T + "use_zero_page") == "1\n"
    for bad in ("2", "x", "-1", "1 "):
        with pytest.raises(OSError) as e:
            k.proc_write(T + "use_zero_page", bad)
        assert e.value.errno in (errno.EINVAL, errno.ERANGE)
    k.proc_write(T + "use_zero_page", "0\n")
    assert k.proc_read(T + "use_zero_page") == "0\n"
    p.touch(a, 1, False)
    assert p.mm.rss_anon == 512 and k.node.events["thp_fault_alloc"] == 1
    assert _zero(p, a) == []
    assert k.node.events["thp_zero_page_alloc"] == 0


def test_zero_ptes_keep_mthp_from_the_block_and_a_write_on_them_is_order_zero():
    """alloc_anon_folio needs every PTE of the block none: a zero-page PTE is not."""
    k, p, a = _proc("never")
    k.proc_write(T + "hugepages-64kB/enabled", "always")
    p.touch(a, 1, False)          # a zero-page PTE at page 0
    p.touch(a + P, 1, True)       # block [0, 16) holds it: order 0
    p.touch(a + 16 * P, 1, True)  # an empty block: a 64 kB folio
    vma = p.mm.find_vma(a)
    orders = {x - a // P: span.order for x, _, span in vma.pages.items()}
    assert orders == {1: 0, 16: 4}
    p.touch(a, 1, True)           # the zero-page PTE copied: a base page
    assert p.mm.rss_anon == 2 + 16 and _zero(p, a) == []


def test_fork_copies_zero_mappings_only_with_an_anon_vma():
    k, p, a = _proc()
    p.madvise(a, PMD, MADV_NOHUGEPAGE)
    p.touch(a, 1, False)                       # zero PTE, no anon_vma
    p.touch(a + PMD, 1, False)                 # huge zero PMD, anon_vma prepared
    child = p.fork()
    assert _zero(child, a) == []
    assert _zero(child, a + PMD) == [(a // P + 512, a // P + 1024, True)]
    child.touch(a + PMD + P, 1, True)          # the child's write: its own THP
    assert child.mm.rss_anon == 512 and _zero(p, a + PMD) == [(a // P + 512, a // P + 1024, True)]
    for proc in (p, child):
        for vma in proc.mm.vmas():
            pages.check_vma(vma)


def test_madvise_free_keeps_zero_mappings_and_dontneed_drops_them():
    k, p, a = _proc("never")
    p.touch(a, 4 * P, False)
    p.madvise(a, 4 * P, MADV_FREE)
    assert _zero(p, a) == [(a // P, a // P + 4, False)]
    p.madvise(a, 2 * P, MADV_DONTNEED)
    assert _zero(p, a) == [(a // P + 2, a // P + 4, False)]
    p.munmap(a + 3 * P, P)
    assert _zero(p, a) == [(a // P + 2, a // P + 3, False)]


def test_khugepaged_sees_zero_ptes_as_none_and_skips_a_huge_zero_pmd():
    from mmsim import khugepaged as kh
    k, p, a = _proc()
    p.madvise(a, PMD, MADV_NOHUGEPAGE)
    p.touch(a, PMD, False)                    # 512 zero-page PTEs
    p.madvise(a, PMD, MADV_HUGEPAGE)
    p.touch(a + PMD, 1, False)                # a huge zero PMD
    d = k.khugepaged
    assert d.scan_pmd(p.mm, p.mm.find_vma(a), a)[0] == kh.SCAN_EXCEED_NONE_PTE
    assert d.scan_pmd(p.mm, p.mm.find_vma(a + PMD), a + PMD)[0] == kh.SCAN_PMD_MAPPED
    p.touch(a + 5 * P, 1, True)               # one written page among the zero PTEs
    assert d.scan_pmd(p.mm, p.mm.find_vma(a), a)[0] == kh.SCAN_SUCCEED
    assert p.mm.rss_anon == 512 and _zero(p, a) == []
    assert thp.allowed(p.mm.find_vma(a), p.mm.flags, "always", thp.TVA_PAGEFAULT)


# ------------------------------------------------------------------ zero-filled pages


def _thps(k, n, mode="madvise"):
    p = k.spawn()
    raw = p.mmap(BASE, (n + 1) * PMD, RW, ANON | MAP_FIXED)
    a = (raw + PMD - 1) & ~(PMD - 1)
    p.madvise(a, n * PMD, MADV_HUGEPAGE)
    return p, a


def test_split_pmd_zero_pages_setup_frees_every_zero_filled_page():
    """split_huge_page_test's split_pmd_zero_pages: THPs whose contents are all zero
    (made here by MADV_POPULATE_WRITE, which stores nothing) lose every page when split,
    so RssAnon drops; the written pages of another THP stay."""
    k = Kernel(thp="madvise", randomize=False)
    p, a = _thps(k, 4)
    p.madvise(a, 3 * PMD, MADV_POPULATE_WRITE)
    p.touch(a + 3 * PMD, 10 * P)
    assert p.mm.rss_anon == 4 * 512
    for i in range(4):
        p.madvise(a + i * PMD + 100 * P, P, MADV_COLD)
    assert p.mm.rss_anon == 10
    assert k.node.events["thp_split_page"] == 4
    vma = p.mm.find_vma(a)
    assert pages.zero_pages(vma) == [(a // P, a // P + 3 * 512, False),
                                     (a // P + 3 * 512 + 10, a // P + 4 * 512, False)]


def test_underused_shrinker_splits_sparse_thps_under_reclaim():
    """deferred_split_scan's thp_underused: with max_ptes_none below 511, a THP queued at
    fault with more zero-filled pages than that is split under reclaim
    (thp_underused_split_page) and its zero-filled pages freed; one that is not
    underused leaves the queue for good."""
    from mmsim import vmscan
    k = Kernel(thp="madvise", randomize=False)
    k.proc_write(T + "khugepaged/max_ptes_none", "409")
    p, a = _thps(k, 2)
    p.touch(a, 64 * P)                 # 448 zero-filled pages: underused
    p.touch(a + PMD, 200 * P)          # 312: not underused
    assert p.mm.rss_anon == 1024
    vmscan.try_to_free_pages(k)
    assert k.node.events["thp_underused_split_page"] == 1
    assert p.mm.rss_anon == 64 + 512
    assert k.underused == {}
    k.proc_write(T + "khugepaged/max_ptes_none", "100")
    vmscan.try_to_free_pages(k)        # the second THP was dropped for good
    assert k.node.events["thp_underused_split_page"] == 1 and p.mm.rss_anon == 576


@pytest.mark.parametrize("knob, value", [("khugepaged/max_ptes_none", "511"),
                                         ("shrink_underused", "0")])
def test_underused_shrinker_is_off(knob, value):
    """max_ptes_none 511 (the default) makes no THP underused; shrink_underused 0
    queues none."""
    from mmsim import vmscan
    k = Kernel(thp="madvise", randomize=False)
    if knob != "khugepaged/max_ptes_none":
        k.proc_write(T + "khugepaged/max_ptes_none", "100")
    k.proc_write(T + knob, value)
    p, a = _thps(k, 1)
    p.touch(a, P)
    vmscan.try_to_free_pages(k)
    assert k.node.events["thp_underused_split_page"] == 0 and p.mm.rss_anon == 512


def test_never_written_pages_follow_fork_mremap_and_zap():
    """``vma.unwritten`` holds the resident pages nothing was stored in: none for
    pages the program wrote (so a dense writer keeps no ranges), the pages a
    MADV_POPULATE_WRITE faulted, the rest of a THP around a write; a later store, a
    zap or a split that frees them takes them out."""
    k = Kernel(thp="never", randomize=False)
    p = k.spawn()
    a = p.mmap(BASE, 16 * P, RW, ANON | MAP_FIXED)
    p.touch(a, 4 * P)
    assert p.mm.find_vma(a).unwritten is None
    p.madvise(a + 8 * P, 4 * P, MADV_POPULATE_WRITE)
    assert p.mm.find_vma(a).unwritten.ranges() == [(a // P + 8, a // P + 12)]
    child = p.fork()
    assert child.mm.find_vma(a).unwritten.ranges() == [(a // P + 8, a // P + 12)]
    p.madvise(a + 9 * P, P, MADV_DONTNEED)
    p.touch(a + 11 * P, P)
    assert p.mm.find_vma(a).unwritten.ranges() == [(a // P + 8, a // P + 9),
                                                   (a // P + 10, a // P + 11)]
    to = p.mremap(a, 16 * P, 16 * P, MREMAP_MAYMOVE | MREMAP_FIXED, a + PMD)
    assert p.mm.find_vma(to).unwritten.ranges() == [(to // P + 8, to // P + 9),
                                                    (to // P + 10, to // P + 11)]
    for proc in (p, child):
        for vma in proc.mm.vmas():
            pages.check_vma(vma)


def _vmpte_steps(env):
    """VmPTE (kB) added by 10 THPs, 10 huge zero PMDs and one zero-page PTE."""
    def vmpte():
        text = env.status()
        return int(text.split("VmPTE:")[1].split()[0])
    a = env.a
    env.call("madvise", a, 6 * PMD, MADV_HUGEPAGE)
    out = []
    b = vmpte()
    for i in range(3):
        env.access(a + i * PMD, True)
    out.append(vmpte() - b)
    b = vmpte()
    for i in range(3, 6):
        env.access(a + i * PMD, False)
    out.append(vmpte() - b)
    env.call("madvise", a + 6 * PMD, PMD, MADV_NOHUGEPAGE)
    b = vmpte()
    env.access(a + 6 * PMD + P, False)
    out.append(vmpte() - b)
    return out


class _SimStatus(_Sim):
    def status(self):
        return self.kernel.proc_read(f"/proc/{self.proc.pid}/status")


class _LiveStatus(_Live):
    def status(self):
        with open("/proc/self/status") as f:
            return f.read()


def test_vmpte_counts_the_tables_of_anonymous_pmds_and_zero_ptes():
    """A THP and a huge zero PMD each deposit a page table (4 kB of VmPTE), as do the
    PTEs of the zero page (the live kernel's numbers: 12, 12, 4)."""
    assert _vmpte_steps(_SimStatus(Kernel(thp="madvise", randomize=False))) == [12, 12, 4]


@pytest.mark.live
def test_vmpte_matches_live_kernel(host_thp):
    why = _host_ok(host_thp)
    if why:
        pytest.skip(why)
    want = _vmpte_steps(_SimStatus(Kernel(thp=host_thp, randomize=False)))
    for _ in range(5):
        # The child's own Python may add a page table now and then (a new arena in
        # a new 2 MiB region): a run that differs is repeated, and in the end up to
        # two such tables are let pass.
        got = list(live.in_child(lambda: _vmpte_steps(_LiveStatus()), "VmPTE"))
        if got == want:
            break
    assert all(w <= g <= w + 8 for g, w in zip(got, want)), (got, want)


# ------------------------------------------------------------------ PMD fault fallback


def _in_cgroup(k, p, room):
    k.mkdir("/sys/fs/cgroup/g")
    k.proc_write("/sys/fs/cgroup/g/cgroup.procs", str(p.pid))
    memcg = p.mm.memcg
    memcg.max = memcg.current + room
    return memcg


def test_pmd_fault_falls_back_when_the_charge_fails_without_reclaim():
    """THP always, defrag madvise, a VMA not advised: GFP_TRANSHUGE_LIGHT cannot
    reclaim, so a charge past memory.max fails and the fault takes base pages
    (thp_fault_fallback, _charge, and the 2048kB anon_fault_fallback stats)."""
    k = Kernel(thp="always", randomize=False)
    p = k.spawn()
    raw = p.mmap(BASE, 3 * PMD, RW, ANON | MAP_FIXED)
    a = (raw + PMD - 1) & ~(PMD - 1)
    _in_cgroup(k, p, 600)           # room for one THP, not two
    p.touch(a, PMD + 10 * P)
    ev = k.node.events
    assert (ev["thp_fault_alloc"], ev["thp_fault_fallback"], ev["thp_fault_fallback_charge"]) \
        == (1, 1, 1)
    st = k.mthp_stats[9]
    assert (st["anon_fault_alloc"], st["anon_fault_fallback"],
            st["anon_fault_fallback_charge"]) == (1, 1, 1)
    vma = p.mm.find_vma(a)
    assert [(x - a // P, y - x, span.pmd) for x, y, span in vma.pages.items()] == [
        (0, 512, True), (512, 10, False)]


@pytest.mark.parametrize("defrag, advise, want", [
    ("madvise", True, (2, 0)),     # GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM
    ("always", False, (2, 0)),     # GFP_TRANSHUGE
    ("madvise", False, (1, 1)),    # GFP_TRANSHUGE_LIGHT: no reclaim, fallback
    ("never", True, (1, 1)),
])
def test_pmd_fault_reclaims_page_cache_when_its_gfp_may(defrag, advise, want):
    """A cgroup full of page cache: a THP fault whose gfp may reclaim evicts some and
    takes its THP; one whose gfp may not falls back to base pages."""
    k = Kernel(thp="always", randomize=False)
    k.proc_write(T + "defrag", defrag)
    p = k.spawn()
    raw = p.mmap(BASE, 3 * PMD, RW, ANON | MAP_FIXED)
    a = (raw + PMD - 1) & ~(PMD - 1)
    if advise:
        p.madvise(a, 2 * PMD, MADV_HUGEPAGE)
    k.create_file("/cache", 4 * PMD)
    memcg = _in_cgroup(k, p, 4096)
    fd = p.open("/cache")
    while p.read(fd, 1 << 20):
        pass
    memcg.max = memcg.current + 600     # room for one THP; the cache is reclaimable
    p.touch(a, PMD + 10 * P)
    ev = k.node.events
    assert (ev["thp_fault_alloc"], ev["thp_fault_fallback"]) == want
    assert memcg.current <= memcg.max


def test_pmd_fault_that_may_reclaim_falls_back_when_reclaim_cannot_help():
    """A MADV_HUGEPAGE VMA (defrag madvise) in a cgroup holding only anonymous memory and
    no swap: reclaim frees nothing, the costly charge fails without an OOM kill, and
    the fault takes a base page."""
    k = Kernel(thp="madvise", randomize=False)
    p = k.spawn()
    raw = p.mmap(BASE, 3 * PMD, RW, ANON | MAP_FIXED)
    a = (raw + PMD - 1) & ~(PMD - 1)
    p.madvise(a, 2 * PMD, MADV_HUGEPAGE)
    memcg = _in_cgroup(k, p, 600)
    p.touch(a, PMD + 10 * P)
    ev = k.node.events
    assert (ev["thp_fault_alloc"], ev["thp_fault_fallback"], ev["thp_fault_fallback_charge"]) \
        == (1, 1, 1)
    assert memcg.events["max"] > 0 and p.state == "running"


def test_huge_zero_write_falls_back_to_a_split_and_a_base_page():
    k = Kernel(thp="always", randomize=False)
    p = k.spawn()
    raw = p.mmap(BASE, 2 * PMD, RW, ANON | MAP_FIXED)
    a = (raw + PMD - 1) & ~(PMD - 1)
    p.touch(a, 1, False)
    _in_cgroup(k, p, 100)
    p.touch(a + P, 1)
    ev = k.node.events
    assert (ev["thp_fault_fallback"], ev["thp_fault_fallback_charge"], ev["thp_split_pmd"]) \
        == (1, 1, 1)
    assert p.mm.rss_anon == 1
    assert _zero(p, a) == [(a // P, a // P + 1, False), (a // P + 2, a // P + 512, False)]


def _fallback_steps(env, cg=None):
    """A MADV_HUGEPAGE area: write a byte in one block, then in the next one, with
    room in the cgroup for one THP only; (Rss, AnonHugePages) of the two blocks."""
    a = env.a
    env.call("madvise", a, 2 * PMD, MADV_HUGEPAGE)
    env.access(a, True)
    env.measure(a, a + 2 * PMD)    # (the live child's allocator warmed up first)
    if cg is not None:
        with open(cg + "/memory.usage_in_bytes") as f:
            used = int(f.read())
        with open(cg + "/memory.limit_in_bytes", "w") as f:
            f.write(str(used + 1536 * 1024))
    else:
        env.proc.mm.memcg.max = env.proc.mm.memcg.current + 384
    env.access(a + PMD + P, True)
    sums, ev = env.measure(a, a + 2 * PMD)
    return list(sums)


# Run in a fresh interpreter: a child forked from the test runner copies its big heap
# on write, charging the cgroup more than the room left for the test.
_LIVE_FALLBACK = """
import sys
sys.path.insert(0, sys.argv[1])
from mmsim import live
import test_zero_page as t
print(live.in_v1_memcg("thp-fallback", lambda cg: t._fallback_steps(t._Live(), cg)))
"""


@pytest.mark.live
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory") or os.geteuid() != 0,
                    reason="needs root and a cgroup v1 memory controller")
def test_thp_charge_that_reclaim_cannot_help_falls_back_on_live_kernel(host_thp):
    """A THP charge past memory.max in a cgroup with nothing reclaimable: the live
    kernel takes a base page (and no OOM kill), as mmsim does."""
    import subprocess
    import sys
    why = _host_ok(host_thp)
    if why:
        pytest.skip(why)
    with open("/proc/swaps") as f:
        if len(f.read().splitlines()) > 1:
            pytest.skip("the host has swap: the THP's room could come from swapping")
    k = Kernel(thp=host_thp, randomize=False)
    sim = _Sim(k)
    k.mkdir("/sys/fs/cgroup/g")
    k.proc_write("/sys/fs/cgroup/g/cgroup.procs", str(sim.proc.pid))
    want = _fallback_steps(sim)
    assert want == [2052, 2048]
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", _LIVE_FALLBACK, here], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == repr(want)

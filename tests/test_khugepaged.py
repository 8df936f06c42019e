"""khugepaged and the simulated clock (mmsim/khugepaged.py, Kernel.advance).

The collapse cases are ported from tools/testing/selftests/mm/khugepaged.c (anon, the
khugepaged context): each sets up a PMD-aligned anonymous area under THP ``madvise``,
faults it without MADV_HUGEPAGE (so it is made of small pages), then does what the
selftest's wait_for_scan does: MADV_HUGEPAGE and wait until full_scans has moved by 2,
then MADV_NOHUGEPAGE, and checks AnonHugePages in smaps.  The live test at the end
runs the same kind of area on the host's khugepaged and compares."""

import ctypes
import errno
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import khugepaged as bench
from mmsim import cli, live, pagecache
from mmsim import pages as pages_mod
from mmsim.kernel import Kernel
from mmsim.replay import replay_trace
from mmsim.strace import TraceError, parse
from mmsim.khugepaged import (SCAN_CGROUP_CHARGE_FAIL, SCAN_EXCEED_NONE_PTE,
                              SCAN_EXCEED_SHARED_PTE, SCAN_EXCEED_SWAP_PTE,
                              SCAN_LACK_REFERENCED_PAGE, SCAN_PMD_MAPPED, msecs_to_jiffies)
from mmsim.thp import MMF_VM_HUGEPAGE
from mmsim.uapi import (MADV_COLD, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE,
                        MADV_NOHUGEPAGE, MADV_PAGEOUT, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE,
                        MAP_PRIVATE, MCTL_SET_HUGEPAGE, MCTL_SET_NOHUGEPAGE, PIDFD_SELF,
                        PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED, PROT_READ,
                        PROT_WRITE)

P = 4096
PMD = 2 << 20
NR = PMD // P
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
BASE = 1 << 40   # PMD-aligned, like the selftest's BASE_ADDR
KH = "/sys/kernel/mm/transparent_hugepage/khugepaged/"


def knob(k, name):
    return int(k.proc_read(KH + name))


def vmstat(k):
    return {n: int(v) for n, v in (line.split() for line in k.proc_read("/proc/vmstat")
                                   .splitlines())}


def huge_kb(proc, start=BASE, end=None):
    """AnonHugePages of the VMAs in [start, end), summed, from /proc/PID/smaps."""
    end = end if end is not None else start + 64 * PMD
    total, inside = 0, False
    for line in proc.kernel.proc_read(f"/proc/{proc.pid}/smaps").splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo = int(head.split("-")[0], 16)
            inside = start <= lo < end
        elif inside and line.startswith("AnonHugePages:"):
            total += int(line.split()[1])
    return total


def is_huge(proc, addr):
    """Whether the block at ``addr`` is a PMD-mapped THP (the page model)."""
    vma = proc.mm.vma_lookup(addr)
    pm = vma.pages if vma is not None else None
    i = pm.index(addr // P) if pm else -1
    return i >= 0 and pm.tag[i].pmd is True


def setup(nr=1, thp="madvise", selftest=True, **kw):
    """A kernel and a process with ``nr`` PMDs of anonymous memory mapped at BASE; with
    ``selftest``, khugepaged's sleeps are the selftest's (10 ms each)."""
    k = Kernel(thp=thp, randomize=False, **kw)
    if selftest:
        k.proc_write(KH + "scan_sleep_millisecs", "10")
        k.proc_write(KH + "alloc_sleep_millisecs", "10")
    proc = k.spawn()
    assert proc.mmap(BASE, nr * PMD, RW, ANON) == BASE
    return k, proc


def wait_for_scan(proc, nr=1, addr=BASE):
    """The selftest's khugepaged collapse: MADV_HUGEPAGE, then wait (at most 3 s, in
    ticks of 0.5 s) until the area is huge or full_scans has moved by 2, then
    MADV_NOHUGEPAGE.  Returns the THPs in the area."""
    k = proc.kernel
    proc.madvise(addr, nr * PMD, MADV_HUGEPAGE)
    target = knob(k, "full_scans") + 2
    for _ in range(6):
        if all(is_huge(proc, addr + b * PMD) for b in range(nr)):
            break
        if knob(k, "full_scans") >= target:
            break
        k.advance(0.5)
    proc.madvise(addr, nr * PMD, MADV_NOHUGEPAGE)
    return sum(is_huge(proc, addr + b * PMD) for b in range(nr))


# ---------------------------------------------------------------- the selftest's cases


def test_collapse_full():
    k, proc = setup(4)
    proc.touch(BASE, 4 * PMD)
    assert huge_kb(proc) == 0
    before = vmstat(k)
    assert wait_for_scan(proc, 4) == 4
    assert knob(k, "pages_collapsed") == 4
    after = vmstat(k)
    assert after["thp_collapse_alloc"] - before["thp_collapse_alloc"] == 4
    assert after["nr_anon_pages"] == before["nr_anon_pages"]   # the same memory, now huge


def test_collapse_empty_area_is_not_collapsed():
    k, proc = setup(1)
    assert wait_for_scan(proc) == 0
    # Without an anon_vma the VMA is not eligible: the mm was never registered.
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    assert knob(k, "pages_collapsed") == 0


def test_collapse_single_pte_entry():
    k, proc = setup(1)
    proc.touch(BASE, P)
    assert wait_for_scan(proc) == 1
    assert proc.mm.rss_anon == NR   # max_ptes_none 511 lets the block fill up


@pytest.mark.parametrize("filled, collapsed", [(NR - NR // 2 - 1, 0), (NR - NR // 2, 1)])
def test_collapse_max_ptes_none_boundary(filled, collapsed):
    k, proc = setup(1)
    k.proc_write(KH + "max_ptes_none", str(NR // 2))
    proc.touch(BASE, filled * P)
    before = vmstat(k)["thp_scan_exceed_none_pte"]
    assert wait_for_scan(proc) == collapsed
    assert (vmstat(k)["thp_scan_exceed_none_pte"] > before) == (not collapsed)
    if not collapsed:
        assert k.khugepaged.last_result == SCAN_EXCEED_NONE_PTE
        assert proc.mm.rss_anon == filled


def test_collapse_swapin_single_pte():
    k, proc = setup(1)
    k.swapon(64 << 20)
    proc.touch(BASE, PMD)
    proc.madvise(BASE, P, MADV_PAGEOUT)
    assert proc.mm.swap_pages == 1
    assert wait_for_scan(proc) == 1
    assert proc.mm.swap_pages == 0 and proc.mm.rss_anon == NR


def test_collapse_max_ptes_swap_boundary():
    k, proc = setup(1)
    k.swapon(64 << 20)
    max_swap = knob(k, "max_ptes_swap")
    assert max_swap == NR // 8
    proc.touch(BASE, PMD)
    proc.madvise(BASE, (max_swap + 1) * P, MADV_PAGEOUT)
    assert proc.mm.swap_pages == max_swap + 1
    before = vmstat(k)["thp_scan_exceed_swap_pte"]
    assert wait_for_scan(proc) == 0
    assert vmstat(k)["thp_scan_exceed_swap_pte"] > before
    assert k.khugepaged.last_result == SCAN_EXCEED_SWAP_PTE
    proc.touch(BASE, PMD)
    proc.madvise(BASE, max_swap * P, MADV_PAGEOUT)
    assert proc.mm.swap_pages == max_swap
    assert wait_for_scan(proc) == 1
    assert proc.mm.swap_pages == 0


def test_collapse_fork_single_shared_page():
    k, parent = setup(1)
    parent.touch(BASE, P)
    child = parent.fork()
    child.touch(BASE + P, P)
    assert wait_for_scan(child) == 1
    assert huge_kb(parent) == 0 and parent.mm.rss_anon == 1


def alloc_hpage(proc):
    """The selftest's alloc_hpage: fault a block, MADV_COLLAPSE it, MADV_HUGEPAGE."""
    proc.touch(BASE, PMD)
    proc.madvise(BASE, PMD, MADV_COLLAPSE)
    assert huge_kb(proc) == 2048
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)


@pytest.mark.parametrize("cow, collapsed", [(NR - NR // 2 - 1, 0), (NR - NR // 2, 1)])
def test_collapse_max_ptes_shared_boundary(cow, collapsed):
    k, parent = setup(1)
    alloc_hpage(parent)
    assert parent.mm.flags & MMF_VM_HUGEPAGE
    child = parent.fork()
    assert child.mm.flags & MMF_VM_HUGEPAGE   # khugepaged_fork
    assert huge_kb(child) == 2048
    child.touch(BASE, cow * P)   # CoW: the PMD is split, the written pages copied
    assert huge_kb(child) == 0
    before = vmstat(k)["thp_scan_exceed_share_pte"]
    assert wait_for_scan(child) == collapsed
    assert (vmstat(k)["thp_scan_exceed_share_pte"] > before) == (not collapsed)
    if not collapsed:
        assert k.khugepaged.last_result == SCAN_EXCEED_SHARED_PTE
    assert huge_kb(parent) == 2048   # the parent keeps its THP


def test_already_huge_range_is_left_alone():
    k, proc = setup(1)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.touch(BASE, P)   # a THP at fault time, and the fault registers the mm
    assert huge_kb(proc) == 2048 and proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(30)
    assert knob(k, "pages_collapsed") == 0 and vmstat(k)["thp_collapse_alloc"] == 0
    assert k.khugepaged.last_result == SCAN_PMD_MAPPED
    proc.madvise(BASE, PMD, MADV_COLLAPSE)   # the selftest's re-collapse succeeds
    assert huge_kb(proc) == 2048


# ---------------------------------------------------------------- eligibility


def test_vm_nohugepage_is_skipped_though_registered():
    k, proc = setup(2)
    proc.touch(BASE, 2 * PMD)
    proc.madvise(BASE, 2 * PMD, MADV_HUGEPAGE)
    proc.madvise(BASE + PMD, PMD, MADV_NOHUGEPAGE)
    assert proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(30)
    assert is_huge(proc, BASE) and not is_huge(proc, BASE + PMD)


def test_pr_set_thp_disable_stops_collapse():
    k, proc = setup(1)
    proc.touch(BASE, PMD)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.prctl(PR_SET_THP_DISABLE, 1)
    k.advance(30)
    assert huge_kb(proc) == 0
    assert knob(k, "full_scans") >= 2   # the mm is visited, and skipped whole
    proc.prctl(PR_SET_THP_DISABLE, 0)
    k.advance(10)
    assert huge_kb(proc) == 2048


@pytest.mark.parametrize("advised, collapsed", [(False, 0), (True, 1)])
def test_thp_disable_except_advised_under_always(advised, collapsed):
    k, proc = setup(1, thp="never")
    proc.prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED)
    proc.touch(BASE, 8 * P)
    k.proc_write("/sys/kernel/mm/transparent_hugepage/enabled", "always")
    if advised:
        proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    else:
        proc.touch(BASE + 8 * P, P)   # a fault: the path that registers under always
    k.advance(30)
    assert huge_kb(proc) == collapsed * 2048


def test_mctl_hugepage_registers_the_mm():
    k, proc = setup(1)
    proc.touch(BASE, 8 * P)
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    proc.mctl(PIDFD_SELF, MCTL_SET_HUGEPAGE)
    assert proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(0)
    assert huge_kb(proc) == 2048


def test_a_block_with_nothing_referenced_is_not_collapsed():
    k, proc = setup(1)
    proc.touch(BASE, 100 * P)
    proc.madvise(BASE, PMD, MADV_COLD)   # old PTEs, PG_referenced cleared
    assert wait_for_scan(proc) == 0
    assert k.khugepaged.last_result == SCAN_LACK_REFERENCED_PAGE
    proc.touch(BASE + 100 * P, P)   # one young page is enough
    assert wait_for_scan(proc) == 1


def test_read_only_range_is_collapsed_too():
    # 6.18 dropped the writable-PTE requirement (the live test checks the same).
    k, proc = setup(1)
    proc.touch(BASE, 100 * P)
    proc.mprotect(BASE, PMD, PROT_READ)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    k.advance(0)
    assert huge_kb(proc) == 2048


def test_exit_and_exec_leave_the_list_fork_joins_it():
    k, proc = setup(1)
    proc.touch(BASE, P)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    child = proc.fork()
    assert k.khugepaged.slots == [proc.mm, child.mm]
    child.exit(0)
    assert k.khugepaged.slots == [proc.mm]
    k.advance(0)   # the cursor is on proc.mm: its exit leaves the slot to the scan
    proc.exit(0)
    assert k.khugepaged.slots == []


# ---------------------------------------------------------------- time and budget


def test_full_scans_progression_follows_scan_sleep():
    k, proc = setup(1, selftest=False)
    proc.touch(BASE, P)
    assert knob(k, "full_scans") == 0
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)   # the first mm wakes the idle thread
    k.advance(0)
    assert knob(k, "full_scans") == 1
    k.advance(9.999)
    assert knob(k, "full_scans") == 1
    k.advance(0.001)
    assert knob(k, "full_scans") == 2 and k.now == pytest.approx(10.0)
    k.proc_write(KH + "scan_sleep_millisecs", "1001")   # wakes the sleeping thread
    k.advance(0)
    assert knob(k, "full_scans") == 3
    k.advance(1.003)
    assert knob(k, "full_scans") == 3   # 1001 ms is 251 jiffies: 1.004 s
    k.advance(0.001)
    assert knob(k, "full_scans") == 4
    assert msecs_to_jiffies(1001) == 251


def test_pages_to_scan_budget_counts_as_the_kernel_does():
    k, proc = setup(64, selftest=False)
    proc.touch(BASE, 64 * PMD)
    k.proc_write(KH + "max_ptes_none", "0")
    k.proc_write(KH + "pages_to_scan", "4096")
    proc.madvise(BASE + 63 * PMD + 511 * P, P, MADV_DONTNEED)   # the last block: 511 pages
    proc.madvise(BASE, 64 * PMD, MADV_HUGEPAGE)
    k.advance(0)
    # One unit per visit of the mm, 512 per PMD; a collapse ends the visit, so the
    # first wake makes 8 visits of 513 units (4104 >= 4096) and collapses 8 blocks.
    kh = k.khugepaged
    assert knob(k, "pages_collapsed") == 8 and kh.scanned == 8 * (1 + NR)
    k.advance(60)
    assert knob(k, "pages_collapsed") == 56 and knob(k, "full_scans") == 0
    # The eighth wake collapses blocks 56..62 and finds block 63 one page short
    # (max_ptes_none 0): its budget is spent with the cursor at the mm's end, so only
    # the ninth wake walks off the end and wraps (then starts the next pass).
    k.advance(10)
    assert knob(k, "pages_collapsed") == 63 and knob(k, "full_scans") == 0
    assert kh.scanned == 8 * 8 * (1 + NR)
    k.advance(10)
    assert knob(k, "full_scans") == 1
    assert all(is_huge(proc, BASE + b * PMD) for b in range(63))
    assert not is_huge(proc, BASE + 63 * PMD)


def test_advance_is_deterministic_and_checks_its_argument():
    def run():
        k, proc = setup(8)
        proc.touch(BASE, 8 * PMD)
        proc.madvise(BASE, 8 * PMD, MADV_HUGEPAGE)
        k.advance(25.5)
        return k.now, knob(k, "full_scans"), knob(k, "pages_collapsed"), k.vmstat()
    assert run() == run()
    k = Kernel()
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            k.advance(bad)
    for bad in ("1", None, True):
        with pytest.raises(TypeError):
            k.advance(bad)
    assert k.now == 0


# ---------------------------------------------------------------- memory


def test_failed_allocation_counts_and_sleeps_without_oom():
    k, proc = setup(4, selftest=False, memory=64 << 20)
    proc.touch(BASE, 4 * PMD)
    wmin = k.watermarks()[0]
    # Fill memory until a huge page no longer fits above the min watermark.
    filler = k.spawn()
    a = filler.mmap(0, 64 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    n = k.free_pages() - wmin - NR // 2
    filler.touch(a, n * P)
    proc.madvise(BASE, 4 * PMD, MADV_HUGEPAGE)
    k.advance(0)
    st = vmstat(k)
    assert st["thp_collapse_alloc_failed"] >= 1 and st["oom_kill"] == 0
    assert huge_kb(proc) == 0
    kh = k.khugepaged
    assert kh.sleeping == "alloc"
    assert kh.wake_at == msecs_to_jiffies(60000) * 4_000_000   # alloc_sleep_millisecs


def test_cgroup_limit_makes_the_charge_fail_without_oom():
    k = Kernel(randomize=False)
    k.mkdir("/sys/fs/cgroup/box")
    proc = k.spawn(cgroup="box")
    assert proc.mmap(BASE, PMD, RW, ANON) == BASE
    proc.touch(BASE, 16 * P)
    k.proc_write("/sys/fs/cgroup/box/memory.max", str(100 * P))
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    k.advance(0)
    assert huge_kb(proc) == 0
    assert k.khugepaged.last_result == SCAN_CGROUP_CHARGE_FAIL
    st = vmstat(k)
    assert st["thp_collapse_alloc"] == 1 and st["thp_collapse_alloc_failed"] == 0
    assert st["oom_kill"] == 0 and proc.state == "running"
    events = dict(line.split() for line in
                  k.proc_read("/sys/fs/cgroup/box/memory.events").splitlines())
    assert int(events["max"]) >= 1 and int(events["oom"]) == 0
    k.proc_write("/sys/fs/cgroup/box/memory.max", "max")
    k.advance(10)
    assert huge_kb(proc) == 2048
    stat = dict(line.split() for line in
                k.proc_read("/sys/fs/cgroup/box/memory.stat").splitlines())
    assert int(stat["thp_collapse_alloc"]) == 1 and int(stat["anon_thp"]) == PMD


# ---------------------------------------------------------------- sysfs


def test_knob_defaults():
    k = Kernel()
    assert {n: knob(k, n) for n in ("pages_to_scan", "scan_sleep_millisecs",
                                    "alloc_sleep_millisecs", "max_ptes_none", "max_ptes_swap",
                                    "max_ptes_shared", "defrag", "full_scans",
                                    "pages_collapsed")} == {
        "pages_to_scan": 4096, "scan_sleep_millisecs": 10000, "alloc_sleep_millisecs": 60000,
        "max_ptes_none": 511, "max_ptes_swap": 64, "max_ptes_shared": 256, "defrag": 1,
        "full_scans": 0, "pages_collapsed": 0}


REFUSED = [
    ("pages_to_scan", "0", errno.EINVAL), ("pages_to_scan", "abc", errno.EINVAL),
    ("pages_to_scan", "4294967296", errno.EINVAL), ("pages_to_scan", "-1", errno.EINVAL),
    ("scan_sleep_millisecs", "0x10", errno.EINVAL), ("alloc_sleep_millisecs", "\n", errno.EINVAL),
    ("max_ptes_none", "512", errno.EINVAL), ("max_ptes_swap", "1 ", errno.EINVAL),
    ("max_ptes_shared", "99999999999999999999999", errno.EINVAL),
    ("defrag", "2", errno.EINVAL), ("defrag", "x", errno.EINVAL),
    ("defrag", "99999999999999999999999", errno.ERANGE),
    ("full_scans", "1", errno.EACCES), ("pages_collapsed", "0", errno.EACCES),
]


@pytest.mark.parametrize("name, text, err", REFUSED)
def test_knob_writes_refused_with_the_kernels_errno(name, text, err):
    k = Kernel()
    before = k.proc_read(KH + name)
    with pytest.raises(OSError) as exc:
        k.proc_write(KH + name, text)
    assert exc.value.errno == err
    assert k.proc_read(KH + name) == before


@pytest.mark.parametrize("name, text, value", [
    ("pages_to_scan", "", 4096), ("pages_to_scan", "1\n", 1), ("scan_sleep_millisecs", "+0", 0),
    ("max_ptes_none", "511", 511), ("max_ptes_swap", "0", 0), ("defrag", "0\n", 0),
    ("alloc_sleep_millisecs", "4294967295", 4294967295),
])
def test_knob_writes_accepted(name, text, value):
    k = Kernel()
    k.proc_write(KH + name, text)
    assert k.proc_read(KH + name) == f"{value}\n"


def test_thp_never_stops_the_thread_and_always_restarts_it():
    k, proc = setup(1)
    proc.touch(BASE, P)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    k.proc_write("/sys/kernel/mm/transparent_hugepage/enabled", "never")
    k.advance(60)
    assert knob(k, "full_scans") == 0 and huge_kb(proc) == 0
    k.proc_write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise")
    k.advance(0)
    assert huge_kb(proc) == 2048


# ---------------------------------------------------------------- the live kernel

NBLOCKS = 5


def _live_khugepaged(nblocks_touched):
    """In a child of this process: an aligned area of NBLOCKS PMDs, block 0 with 100
    pages written, block 1 full, block 2 with 100 pages then PROT_READ, block 3 empty,
    block 4 with 100 pages then MADV_COLD (old PTEs, nothing referenced); MADV_HUGEPAGE,
    then wait (at most 30 s) for full_scans to move by 2.  Returns the seconds waited
    and AnonHugePages (kB) per block, or None when it timed out."""
    libc = live.load_libc()
    raw = libc.mmap(None, (NBLOCKS + 1) * PMD, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    base = (raw + PMD - 1) & ~(PMD - 1)
    buf = (ctypes.c_char * (NBLOCKS * PMD)).from_address(base)
    for block, n in enumerate(nblocks_touched):
        for i in range(n):
            buf[block * PMD + i * P] = b"x"
    if libc.mprotect(base + 2 * PMD, PMD, PROT_READ) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    if libc.madvise(base + 4 * PMD, PMD, MADV_COLD) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_COLD)")
    with open(KH + "full_scans") as f:
        target = int(f.read()) + 2
    if libc.madvise(base, NBLOCKS * PMD, MADV_HUGEPAGE) != 0:
        raise OSError(ctypes.get_errno(), "madvise")
    t0 = time.monotonic()
    while True:
        with open(KH + "full_scans") as f:
            if int(f.read()) >= target:
                break
        if time.monotonic() - t0 > 30:
            return None
        time.sleep(0.05)
    waited = time.monotonic() - t0
    # One VMA per block (a flag change at the block's edges splits no THP), so that
    # smaps' AnonHugePages is per block.
    libc.madvise(base + PMD, PMD, MADV_NOHUGEPAGE)
    libc.madvise(base + 3 * PMD, PMD, MADV_NOHUGEPAGE)
    with open("/proc/self/smaps") as f:
        vmas = live.smaps_vmas(f.read(), (base, base + NBLOCKS * PMD))
    per_block = [0] * NBLOCKS
    for v in vmas:
        assert v["end"] - v["start"] == PMD, v
        per_block[(v["start"] - base) // PMD] = v["anon_huge_kb"]
    return {"waited": waited, "blocks": per_block}


@pytest.mark.live
def test_live_khugepaged_agrees_with_the_simulation(host_thp):
    if host_thp != "madvise":
        pytest.skip(f"the host's THP mode is {host_thp!r}; this check is written for madvise")
    defaults = {"pages_to_scan": 4096, "scan_sleep_millisecs": 10000, "max_ptes_none": 511}
    for name, want in defaults.items():
        with open(KH + name) as f:
            if int(f.read()) != want:
                pytest.skip(f"the host's khugepaged/{name} is not {want}")
    touched = (100, NR, 100, 0, 100)
    got = live.in_child(lambda: _live_khugepaged(touched), "khugepaged live check")
    if got is None:
        pytest.skip("the host's khugepaged did not finish two full scans in 30 s (busy)")
    # The simulation: the same area, and the same time waited.
    k, proc = setup(NBLOCKS, selftest=False)
    for block, n in enumerate(touched):
        if n:
            proc.touch(BASE + block * PMD, n * P)
    proc.mprotect(BASE + 2 * PMD, PMD, PROT_READ)
    proc.madvise(BASE + 4 * PMD, PMD, MADV_COLD)
    target = knob(k, "full_scans") + 2
    proc.madvise(BASE, NBLOCKS * PMD, MADV_HUGEPAGE)
    k.advance(got["waited"])
    assert knob(k, "full_scans") >= target
    sim = [2048 if is_huge(proc, BASE + b * PMD) else 0 for b in range(NBLOCKS)]
    assert got["blocks"] == sim


# ---------------------------------------------------------------- the replayer

TRACE = """\
mmap(0x10000000000, 4194304, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x10000000000
madvise(0x10000000000, 4194304, MADV_POPULATE_WRITE) = 0
madvise(0x10000000000, 4194304, MADV_HUGEPAGE) = 0
# vmstat
# advance {seconds}
# vmstat
"""


def _collapses(outcomes):
    return [int(line.split()[1]) for o in outcomes if o.event.kind == "show"
            for line in o.smaps.splitlines() if line.startswith("thp_collapse_alloc ")]


def test_trace_advance_lines_run_khugepaged():
    assert _collapses(replay_trace(TRACE.format(seconds="0"), Kernel())) == [0, 2]
    k = Kernel()
    k.proc_write(KH + "pages_to_scan", "512")   # one PMD per wake: 10 s for the second
    assert _collapses(replay_trace(TRACE.format(seconds="9.99"), k)) == [0, 1]
    assert k.now == pytest.approx(9.99)


@pytest.mark.parametrize("bad", ["-1", "1e3", "ten", "", "1 2", "nan"])
def test_trace_advance_line_must_be_a_number(bad):
    with pytest.raises(TraceError, match="advance"):
        parse(f"# advance {bad}\n")


def test_trace_advance_after_every_process_exited():
    k = Kernel()
    replay_trace("exit_group(0) = ?\n+++ exited with 0 +++\n# advance 5\n", k)
    assert k.now == 5


def test_cli_advance_at_exit_dumps_what_khugepaged_made(tmp_path, capsys):
    trace = tmp_path / "t.strace"
    trace.write_text(TRACE.format(seconds="0").replace("# advance 0\n", ""))
    assert cli.main(["replay", str(trace), "--advance-at-exit", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "# dump pid 1 (at end)" in out
    assert "AnonHugePages:      4096 kB" in out
    assert cli.main(["replay", str(trace)]) == 0
    assert "(at end)" not in capsys.readouterr().out


def test_benchmark_smoke():
    nothing = bench.run_case(8 * PMD, collapse=False)
    every = bench.run_case(8 * PMD, collapse=True)
    assert nothing["collapsed"] == 0 and every["collapsed"] == 8
    # One visit of 8 PMDs and the wrap: the kernel's units, whatever collapses.
    assert nothing["scanned"] >= 8 * NR and every["scanned"] >= 8 * NR
    assert "pages scanned per CPU s" in bench.table([nothing, every], 8 * PMD)


def test_mctl_nohugepage_stops_collapse_of_a_registered_mm():
    k, proc = setup(1)
    proc.touch(BASE, PMD)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE)   # VM_NOHUGEPAGE on every VMA
    assert proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(5)
    assert huge_kb(proc) == 0 and knob(k, "full_scans") >= 2


def test_brk_growth_registers_the_heap_under_always():
    k = Kernel(thp="always", randomize=False)
    proc = k.spawn()
    start = proc.brk(0)
    proc.brk(start + P)
    proc.touch(start, P)   # a small heap: no PMD fits, the fault does not register
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    proc.brk(start + 8 * PMD)   # do_brk_flags: the grown heap now holds aligned PMDs
    assert proc.mm.flags & MMF_VM_HUGEPAGE


def _live_shared_after_fork(cows):
    """In a child of this process: an aligned area of len(cows) PMDs written in full
    (small pages), then a fork; the grandchild writes the first ``cows[b]`` pages of
    block b (CoW), MADV_HUGEPAGE, and waits (at most 30 s) for full_scans to move by 2.
    Returns the seconds waited and the grandchild's AnonHugePages per block (None on a
    timeout)."""
    n = len(cows)
    libc = live.load_libc()
    raw = libc.mmap(None, (n + 1) * PMD, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    base = (raw + PMD - 1) & ~(PMD - 1)
    buf = (ctypes.c_char * (n * PMD)).from_address(base)
    for i in range(n * NR):
        buf[i * P] = b"p"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            for b, k in enumerate(cows):
                for i in range(k):
                    buf[b * PMD + i * P] = b"c"
            with open(KH + "full_scans") as f:
                target = int(f.read()) + 2
            libc.madvise(base, n * PMD, MADV_HUGEPAGE)
            t0 = time.monotonic()
            result = None
            while time.monotonic() - t0 <= 30:
                with open(KH + "full_scans") as f:
                    if int(f.read()) >= target:
                        waited = time.monotonic() - t0
                        # One VMA per block, so that AnonHugePages is per block.
                        for b in range(1, n, 2):
                            libc.madvise(base + b * PMD, PMD, MADV_NOHUGEPAGE)
                        with open("/proc/self/smaps") as f:
                            vmas = live.smaps_vmas(f.read(), (base, base + n * PMD))
                        result = {"waited": waited,
                                  "blocks": [v["anon_huge_kb"] for v in vmas]}
                        break
                time.sleep(0.05)
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.live
def test_live_max_ptes_shared_boundary_after_fork(host_thp):
    if host_thp != "madvise":
        pytest.skip(f"the host's THP mode is {host_thp!r}; this check is written for madvise")
    with open(KH + "max_ptes_shared") as f:
        shared = int(f.read())
    with open(KH + "pages_to_scan") as f:
        if int(f.read()) < 2 * (NR + 1):
            pytest.skip("the host's pages_to_scan is too small for two PMDs per wake-up")
    cows = (NR - shared - 1, NR - shared)   # shared + 1 pages still shared, then shared
    got = live.in_child(lambda: _live_shared_after_fork(cows), "max_ptes_shared live check")
    if got is None:
        pytest.skip("the host's khugepaged did not finish two full scans in 30 s (busy)")
    k, parent = setup(2, selftest=False)
    k.proc_write(KH + "max_ptes_shared", str(shared))
    parent.touch(BASE, 2 * PMD)
    child = parent.fork()
    for b, n in enumerate(cows):
        child.touch(BASE + b * PMD, n * P)
    child.madvise(BASE, 2 * PMD, MADV_HUGEPAGE)
    k.advance(got["waited"])
    assert knob(k, "full_scans") >= 2
    sim = [2048 if is_huge(child, BASE + b * PMD) else 0 for b in range(2)]
    assert got["blocks"] == sim


def _steady(k=None):
    """Three processes whose blocks khugepaged scans and refuses, again and again:
    one page short of max_ptes_none 0, a VM_NOHUGEPAGE VMA, and a block shared with a
    fork child beyond max_ptes_shared."""
    k, proc = setup(6, selftest=False)
    k.proc_write(KH + "max_ptes_none", "0")
    k.proc_write(KH + "max_ptes_shared", "0")
    k.proc_write(KH + "pages_to_scan", "3000")
    proc.touch(BASE, 6 * PMD)
    for b in range(4):
        proc.madvise(BASE + b * PMD + 7 * P, P, MADV_DONTNEED)
    proc.madvise(BASE, 6 * PMD, MADV_HUGEPAGE)
    proc.madvise(BASE + 4 * PMD, PMD, MADV_NOHUGEPAGE)
    child = proc.fork()
    child.touch(BASE + 5 * PMD, P)   # CoW one page: the rest of the block stays shared
    other = k.spawn()
    assert other.mmap(BASE, 2 * PMD, RW, ANON) == BASE
    other.touch(BASE, P)
    other.madvise(BASE, 2 * PMD, MADV_COLD)
    other.madvise(BASE, 2 * PMD, MADV_HUGEPAGE)
    return k


def _state(k):
    kh = k.khugepaged
    return (k.now_ns, kh.full_scans, kh.scanned, kh.pages_collapsed, kh.address,
            kh.slots.index(kh.cursor) if kh.cursor is not None else None, kh.wake_at,
            k.vmstat(), k.meminfo(), k.root_memcg.flushed)


def test_fast_forward_gives_what_wake_by_wake_gives():
    one = _steady()
    one.advance(3600.5)
    steps = _steady()
    for _ in range(7201):
        steps.advance(0.5)   # each advance starts afresh: no skipping across calls
    assert _state(one) == _state(steps)
    assert one.khugepaged.runs < steps.khugepaged.runs
    assert one.khugepaged.full_scans > 100
    assert vmstat(one)["thp_scan_exceed_none_pte"] > 0
    assert vmstat(one)["thp_scan_exceed_share_pte"] > 0


def test_a_very_long_advance_skips_the_repeats():
    k = _steady()
    k.advance(10 ** 9)   # thirty years
    kh = k.khugepaged
    assert kh.runs < 100 and kh.full_scans > 10 ** 7
    assert k.now == 10 ** 9
    idle = Kernel()
    idle.advance(10 ** 12)   # no mm registered: only the stats flush, folded once
    assert idle.now == 10 ** 12


def _charge_failing():
    """A process in a cgroup whose memory.max leaves no room for a huge page: every
    wake-up tries a collapse, and the charge fails."""
    k = Kernel(randomize=False)
    k.mkdir("/sys/fs/cgroup/box")
    proc = k.spawn(cgroup="box")
    assert proc.mmap(BASE, 4 * PMD, RW, ANON) == BASE
    proc.touch(BASE, 4 * PMD - 8 * P)
    k.proc_write("/sys/fs/cgroup/box/memory.max", str(4 * PMD))
    proc.madvise(BASE, 4 * PMD, MADV_HUGEPAGE)
    return k


def test_fast_forward_over_failing_charges_counts_every_attempt():
    one, steps = _charge_failing(), _charge_failing()
    one.advance(600)
    for _ in range(60):
        steps.advance(10)
    assert _state(one) == _state(steps)
    ev = [k.proc_read("/sys/fs/cgroup/box/memory.events") for k in (one, steps)]
    assert ev[0] == ev[1] and vmstat(one)["thp_collapse_alloc"] > 60
    assert one.khugepaged.runs < steps.khugepaged.runs


def _alloc_failing():
    """A machine whose free memory leaves no room for a huge page above the min
    watermark: every scan fails to allocate, sleeps alloc_sleep, fails again."""
    k, proc = setup(4, selftest=False, memory=64 << 20)
    proc.touch(BASE, 4 * PMD)
    filler = k.spawn()
    a = filler.mmap(0, 64 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    filler.touch(a, (k.free_pages() - k.watermarks()[0] - NR // 2) * P)
    proc.madvise(BASE, 4 * PMD, MADV_HUGEPAGE)
    return k


def test_fast_forward_over_failing_allocations():
    one, steps = _alloc_failing(), _alloc_failing()
    one.advance(3600)
    for _ in range(360):
        steps.advance(10)
    assert _state(one) == _state(steps)
    assert vmstat(one)["thp_collapse_alloc_failed"] > 50
    assert one.khugepaged.runs < steps.khugepaged.runs


@pytest.mark.live
def test_live_knob_writes_refused_with_the_same_errno():
    """Only writes the kernel refuses (so no host setting changes): each errno is the
    simulator's.  Should one ever be accepted, the old value is put back."""
    k = Kernel()
    for name, text, err in REFUSED:
        with open(KH + name) as f:
            before = f.read()
        try:
            fd = os.open(KH + name, os.O_WRONLY)
        except OSError as exc:
            got = exc.errno
        else:
            try:
                os.write(fd, text.encode())
                got = 0
            except OSError as exc:
                got = exc.errno
            finally:
                os.close(fd)
        if got == 0:
            with open(KH + name, "w") as f:
                f.write(before)
        assert got == err, (name, text)
        with pytest.raises(OSError) as exc:
            k.proc_write(KH + name, text)
        assert exc.value.errno == got


# ---------------------------------------------------------------- properties

_BLOCKS = 4
_OPS = st.one_of(
    st.tuples(st.just("touch"), st.integers(0, 1), st.integers(0, _BLOCKS * NR - 1),
              st.integers(1, 2 * NR), st.booleans()),
    st.tuples(st.just("madvise"), st.integers(0, 1), st.integers(0, _BLOCKS - 1),
              st.integers(1, _BLOCKS),
              st.sampled_from([MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTNEED, MADV_COLD,
                               MADV_PAGEOUT, MADV_COLLAPSE])),
    st.tuples(st.just("fork")), st.tuples(st.just("exit")),
    st.tuples(st.just("madvise"), st.integers(0, 1), st.integers(0, _BLOCKS - 1),
              st.integers(1, _BLOCKS), st.just(MADV_HUGEPAGE)),
    st.tuples(st.just("advance"), st.sampled_from([0, 0.004, 1, 10, 25, 600])),
    st.tuples(st.just("advance"), st.sampled_from([3, 600])),
    st.tuples(st.just("knob"), st.sampled_from(["max_ptes_none", "max_ptes_swap",
                                                "max_ptes_shared"]),
              st.sampled_from([0, 1, 64, 256, 511])),
)


def _play(ops, split_advance):
    """Run ``ops`` on a fresh machine (two processes, 4 PMDs each, 16 MiB of swap);
    with ``split_advance``, each advance runs as steps of at most one second."""
    k = Kernel(randomize=False)
    k.swapon(16 << 20)
    k.proc_write(KH + "scan_sleep_millisecs", "1000")
    procs = [k.spawn(), k.spawn()]
    for i, p in enumerate(procs):
        assert p.mmap(BASE, _BLOCKS * PMD, RW, ANON) == BASE
        for b in range(_BLOCKS):   # small pages to collapse: a few, or most of a block
            p.touch(BASE + b * PMD, (1 + 300 * ((b + i) % 2)) * P)
    for op in ops:
        kind = op[0]
        if kind == "touch":
            _, who, first, n, write = op
            n = min(n, _BLOCKS * NR - first)
            procs[who].touch(BASE + first * P, n * P, write=write)
        elif kind == "madvise":
            _, who, block, n, advice = op
            n = min(n, _BLOCKS - block)
            try:
                procs[who].madvise(BASE + block * PMD, n * PMD, advice)
            except OSError as exc:
                assert advice == MADV_COLLAPSE, exc
        elif kind == "fork":
            procs[1].exit(0)
            procs[1] = procs[0].fork()
        elif kind == "exit":
            procs[1].exit(0)
            procs[1] = k.spawn()
            assert procs[1].mmap(BASE, _BLOCKS * PMD, RW, ANON) == BASE
        elif kind == "advance":
            seconds = op[1]
            if split_advance:
                while seconds > 1:
                    k.advance(1)
                    seconds -= 1
            k.advance(seconds)
        else:
            k.proc_write(KH + op[1], str(op[2]))
    return k, procs


def _check_books(k, procs):
    kh = k.khugepaged
    for p in procs:
        mm = p.mm
        for vma in mm.vmas():
            pages_mod.check_vma(vma)
        assert bool(mm.flags & MMF_VM_HUGEPAGE) == (mm in kh.slots)
        assert mm.rss_anon == sum(pages_mod.rss_pages(v) for v in mm.vmas())
    assert kh.cursor is None or kh.cursor in kh.slots
    assert len(set(map(id, kh.slots))) == len(kh.slots)
    pages_mod.check_pools(k)
    pages_mod.check_swap(k)
    pagecache.check(k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_OPS, max_size=25))
def test_khugepaged_keeps_the_books_and_a_long_advance_equals_its_steps(ops):
    k, procs = _play(ops, split_advance=False)
    _check_books(k, procs)
    k2, procs2 = _play(ops, split_advance=True)
    assert _state(k) == _state(k2)
    for p, q in zip(procs, procs2):
        assert (k.proc_read(f"/proc/{p.pid}/smaps")
                == k2.proc_read(f"/proc/{q.pid}/smaps"))


def test_madv_collapse_counts_thp_collapse_alloc_per_new_thp():
    # As on the live kernel: two blocks with pages and an empty one give 2 (and
    # EINVAL for the empty one); a block already PMD-mapped counts nothing.
    k, proc = setup(3)
    proc.touch(BASE, 10 * P)
    proc.touch(BASE + PMD, 10 * P)
    with pytest.raises(OSError) as exc:
        proc.madvise(BASE, 3 * PMD, MADV_COLLAPSE)
    assert exc.value.errno == errno.EINVAL
    assert vmstat(k)["thp_collapse_alloc"] == 2
    proc.madvise(BASE, 2 * PMD, MADV_COLLAPSE)
    assert vmstat(k)["thp_collapse_alloc"] == 2
    assert k.root_memcg.stat["thp_collapse_alloc"] == 2


# ------------------------------------------- registration by a merge of existing VMAs


@pytest.mark.parametrize("fast", [True, False])
def test_an_mprotect_merge_that_makes_a_pmd_block_registers_the_mm(fast):
    """vma_merge_existing_range calls khugepaged_enter_vma on the merged VMA: two
    MADV_HUGEPAGE halves of a PMD block (each too small for a THP, so neither the
    madvise nor a fault registered the mm) joined by an mprotect put the mm on
    khugepaged's list, which then collapses the block.  ``fast``: the right half has
    no pages (mprotect's fused path), else both have."""
    k, proc = setup(1)
    half = PMD // 2
    if not fast:
        proc.touch(BASE + half, 8 * P)
    proc.mprotect(BASE + half, half, PROT_READ)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.touch(BASE, 8 * P)
    assert len([v for v in proc.mm.vmas() if BASE <= v.start < BASE + PMD]) == 2
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    proc.mprotect(BASE + half, half, RW)
    assert proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(1)
    assert huge_kb(proc) == 2048


def test_a_merge_into_an_ineligible_vma_does_not_register():
    """The same join under MADV_NOHUGEPAGE leaves the mm off the list."""
    k, proc = setup(1)
    half = PMD // 2
    proc.mprotect(BASE + half, half, PROT_READ)
    proc.madvise(BASE, PMD, MADV_NOHUGEPAGE)
    proc.touch(BASE, 8 * P)
    proc.mprotect(BASE + half, half, RW)
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    k.advance(1)
    assert huge_kb(proc) == 0

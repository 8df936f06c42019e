"""The address space's own bookkeeping (mmsim/mm.py): VmPeak/VmHWM high-water marks
against the live kernel, the vm_flags setter and the tree's flag summaries, and the one
"merge, else insert" step that every new range goes through."""

import ctypes
import errno
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim import live, mman
from mmsim.defs import PAGE_SIZE
from mmsim.kernel import Kernel
from mmsim.mm import Mm
from mmsim.uapi import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE,
                        MAP_PRIVATE, MREMAP_MAYMOVE, PROT_NONE, PROT_READ, PROT_WRITE)
from mmsim.vma import (VM_ACCOUNT, VM_HUGEPAGE, VM_IO, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE,
                       VM_NOHUGEPAGE, VM_READ, VM_WRITE, MergeProposal, Vma)
from mmsim.vma_tree import VmaTree

P = PAGE_SIZE
KB = 1024
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE
BIG = 1 << 30      # dwarfs whatever else the live process maps meanwhile
SPAN = BIG + PAGE_SIZE   # not a whole number of PMDs, so not THP-aligned
TOUCH = 32 << 20
# The live child is a Python process: between two reads of its status it may map or
# fault a little memory of its own.
SLACK_KB = 16 << 10

LIVE = pytest.mark.skipif(not live.available()[0], reason=live.available()[1] or "")


def _status(text):
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmPeak", "VmSize", "VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def _read_status():
    with open("/proc/self/status", encoding="ascii") as fh:
        return _status(fh.read())


# ---------------------------------------------------------------------- VmPeak / VmHWM


def _live_map_unmap():
    libc = live.load_libc()
    before = _read_status()
    addr = libc.mmap(None, BIG, PROT_NONE, ANON | MAP_NORESERVE, -1, 0)
    libc.munmap(addr, BIG)
    return before, _read_status()


def _sim(act, setup=None):
    """On a fresh simulated process, run ``setup(proc)``, read its status, run
    ``act(proc, prepared)``; the status before and after, and what ``act`` returned."""
    k = Kernel(randomize=False)
    proc = k.spawn()
    prepared = setup(proc) if setup else None
    before = _status(k.proc_read(f"/proc/{proc.pid}/status"))
    result = act(proc, prepared)
    proc.mm.check()
    return before, _status(k.proc_read(f"/proc/{proc.pid}/status")), result


def _sim_map_unmap():
    def act(proc, _):
        proc.munmap(proc.mmap(0, BIG, PROT_NONE, ANON | MAP_NORESERVE), BIG)
    return _sim(act)[:2]


def _peak_rule(before, after, size_kb):
    """What VmPeak must be after mapping ``size_kb`` and unmapping it again."""
    return max(before["VmPeak"], before["VmSize"] + size_kb)


def test_vmpeak_remembers_an_unmapped_mapping():
    """Map then unmap: VmPeak keeps the size the address space had in between, although
    /proc was never read while the mapping existed."""
    before, after = _sim_map_unmap()
    assert after["VmSize"] == before["VmSize"]
    assert after["VmPeak"] == _peak_rule(before, after, BIG // KB)


@LIVE
def test_vmpeak_after_map_unmap_matches_the_live_kernel():
    """The same rule holds on the live kernel (within what the Python child maps itself)."""
    before, after = live.in_child(_live_map_unmap)
    assert abs(after["VmPeak"] - _peak_rule(before, after, BIG // KB)) <= SLACK_KB
    sim_before, sim_after = _sim_map_unmap()
    assert sim_after["VmPeak"] - sim_before["VmSize"] == BIG // KB
    assert abs((after["VmPeak"] - before["VmSize"]) - BIG // KB) <= SLACK_KB


def _live_move():
    libc = live.load_libc()
    # A big reservation, and a page right above it unless something is there already:
    # growing the reservation by a page has to move it.
    addr = libc.mmap(None, SPAN, PROT_NONE, ANON | MAP_NORESERVE, -1, 0)
    libc.mmap(addr + SPAN, P, PROT_NONE, ANON | MAP_FIXED_NOREPLACE, -1, 0)
    before = _read_status()
    new = libc.mremap(addr, SPAN, SPAN + P, MREMAP_MAYMOVE, None)
    return before, _read_status(), new != addr


def _sim_move():
    def setup(proc):
        addr = proc.mmap(0, SPAN, PROT_NONE, ANON | MAP_NORESERVE)
        proc.mmap(addr + SPAN, P, PROT_NONE, ANON | MAP_FIXED_NOREPLACE)
        return addr

    def act(proc, addr):
        return proc.mremap(addr, SPAN, SPAN + P, MREMAP_MAYMOVE) != addr
    return _sim(act, setup)


def test_vmpeak_does_not_count_a_moved_mapping_twice():
    """mremap moves by mapping the copy before unmapping the source; move_vma puts the
    high-water mark back, so VmPeak only sees the final size."""
    before, after, moved = _sim_move()
    assert moved
    assert after["VmSize"] == before["VmSize"] + P // KB
    assert after["VmPeak"] == max(before["VmPeak"], after["VmSize"])


@LIVE
def test_vmpeak_after_a_move_matches_the_live_kernel():
    before, after, moved = live.in_child(_live_move)
    assert moved
    # Counted twice, the peak would be a whole BIG above this.
    assert abs(after["VmPeak"] - max(before["VmPeak"], after["VmSize"])) <= SLACK_KB


def _live_touch_unmap():
    libc = live.load_libc()
    before = _read_status()
    addr = libc.mmap(None, TOUCH, RW, ANON, -1, 0)
    ctypes.memset(addr, 1, TOUCH)
    libc.munmap(addr, TOUCH)
    return before, _read_status()


def _sim_touch_unmap():
    def act(proc, _):
        addr = proc.mmap(0, TOUCH, RW, ANON)
        proc.touch(addr, TOUCH)
        proc.munmap(addr, TOUCH)
    return _sim(act)[:2]


def test_vmhwm_remembers_unmapped_resident_memory():
    before, after = _sim_touch_unmap()
    assert after["VmRSS"] == before["VmRSS"]
    assert after["VmHWM"] == max(before["VmHWM"], before["VmRSS"] + TOUCH // KB)


@LIVE
def test_vmhwm_after_touch_unmap_matches_the_live_kernel():
    before, after = live.in_child(_live_touch_unmap)
    assert abs(after["VmHWM"] - max(before["VmHWM"], before["VmRSS"] + TOUCH // KB)) <= SLACK_KB


def test_fork_child_starts_its_peak_at_what_it_has():
    """dup_mm: the child's high-water marks start at its own total_vm and rss."""
    k = Kernel(randomize=False)
    parent = k.spawn()
    addr = parent.mmap(0, 64 * P, RW, ANON)
    parent.munmap(addr, 64 * P)
    child = parent.fork()
    st = _status(k.proc_read(f"/proc/{child.pid}/status"))
    assert st["VmPeak"] == st["VmSize"] == child.mm.total_vm * P // KB


# ---------------------------------------------------------------------- vm_flags setter


def _narrow_mm(n):
    """An mm with ``n`` one-page VMAs two pages apart (so none merge), in a narrow tree
    so that the walk has several levels of summaries to skip."""
    mm = Mm(Kernel(randomize=False))
    mm.tree = VmaTree(width=4)
    for i in range(n):
        mm.insert(Vma((2 * i + 16) * P, (2 * i + 17) * P, FLAGS, 2 * i + 16))
    return mm


BITS = (VM_HUGEPAGE, VM_NOHUGEPAGE, VM_IO)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40),
       steps=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(BITS), st.booleans(),
                                st.sampled_from(BITS)), max_size=30))
def test_set_vm_flags_keeps_tree_summaries_right(n, steps):
    """Flag changes made through Mm.set_vm_flags between summarized walks never leave a
    summary that lets a walk skip a VMA it has to see."""
    mm = _narrow_mm(n)
    vmas = mm.vmas()
    key = lambda vma: vma.vm_flags  # noqa: E731
    for index, bit, on, wanted in steps:
        # A walk looking for VMAs without ``wanted`` must reach every one of them.
        seen = set()
        for leaf in mm.tree.summarized_walk(key, lambda o, a, w=wanted: bool(a & w)):
            seen.update(id(v) for v in leaf)
        missing = [v for v in vmas if not v.vm_flags & wanted and id(v) not in seen]
        assert not missing
        vma = vmas[index % n]
        mm.set_vm_flags(vma, vma.vm_flags | bit if on else vma.vm_flags & ~bit)
        # Every summary the walk left clean is still exact (VmaTree.check recomputes them).
        mm.check()


# ---------------------------------------------------------------------- merge, else insert


def test_merge_or_insert_grows_a_compatible_neighbour():
    mm = Mm(Kernel(randomize=False))
    prev = mm.insert(Vma(16 * P, 20 * P, FLAGS, 16))
    got = mm.merge_or_insert(MergeProposal(20 * P, 24 * P, FLAGS, 20), prev, None)
    assert got is prev and (prev.start, prev.end) == (16 * P, 24 * P)
    assert mm.map_count == 1 and mm.total_vm == 8
    mm.check()


def test_merge_or_insert_links_a_new_vma_with_the_proposals_properties():
    mm = Mm(Kernel(randomize=False))
    prev = mm.insert(Vma(16 * P, 20 * P, FLAGS, 16))
    prop = MergeProposal(20 * P, 24 * P, FLAGS | VM_HUGEPAGE, 20, anon_name="x")
    got = mm.merge_or_insert(prop, prev, None)
    assert got is not prev and mm.map_count == 2 and mm.total_vm == 8
    assert (got.start, got.end, got.vm_flags, got.pgoff, got.anon_name) == (
        20 * P, 24 * P, FLAGS | VM_HUGEPAGE, 20, "x")
    mm.check()


def test_merge_or_insert_just_expand_leaves_next_alone():
    """brk's and vm_brk's form: only the VMA below may grow; the next one is not merged."""
    mm = Mm(Kernel(randomize=False))
    prev = mm.insert(Vma(16 * P, 20 * P, FLAGS, 16))
    nxt = mm.insert(Vma(24 * P, 28 * P, FLAGS, 24))
    got = mm.merge_or_insert(MergeProposal(20 * P, 24 * P, FLAGS, 20), prev, nxt,
                             just_expand=True)
    assert got is prev and mm.vmas() == [prev, nxt] and prev.end == 24 * P
    mm.check()


def test_expand_refuses_a_vma_the_merge_rules_refuse():
    """vma_merge_extend never grows a VM_SPECIAL VMA: ENOMEM, nothing changed."""
    mm = Mm(Kernel(randomize=False))
    vma = mm.insert(Vma(16 * P, 20 * P, FLAGS | VM_IO, 16))
    with pytest.raises(OSError) as exc:
        mm.expand(vma, 24 * P)
    assert exc.value.errno == errno.ENOMEM
    assert (vma.start, vma.end) == (16 * P, 20 * P) and mm.total_vm == 4
    mm.check()


def test_every_new_range_takes_the_one_merge_path(monkeypatch):
    """mmap, brk, mremap's move and ELF's vm_brk all link new ranges through
    Mm.merge_or_insert, and mremap's growth in place through Mm.expand."""
    callers = []
    real = Mm.merge_or_insert
    real_expand = Mm.expand

    def spy(self, prop, *args, **kwargs):
        callers.append(sys._getframe(1).f_code.co_name)
        return real(self, prop, *args, **kwargs)

    def spy_expand(self, vma, new_end):
        callers.append("expand:" + sys._getframe(1).f_code.co_name)
        return real_expand(self, vma, new_end)

    monkeypatch.setattr(Mm, "merge_or_insert", spy)
    monkeypatch.setattr(Mm, "expand", spy_expand)
    k = Kernel(randomize=False)
    proc = k.spawn()
    addr = proc.mmap(0, 4 * P, RW, ANON)
    proc.brk(proc.brk(0) + P)
    proc.mremap(addr, 4 * P, 8 * P, MREMAP_MAYMOVE)
    low, high = 0x10000000, 0x10000000 + P
    proc.mmap(low, P, RW, ANON | MAP_FIXED)
    proc.mmap(high, P, PROT_READ, ANON | MAP_FIXED)
    proc.mremap(high, P, 2 * P, MREMAP_MAYMOVE)   # free space above: grows in place
    proc.mremap(low, P, 2 * P, MREMAP_MAYMOVE)    # blocked by the next VMA: moves
    assert {"mmap_region", "brk", "_move", "expand:mremap"} <= set(callers)
    proc.mm.check()
    true = "/usr/bin/true"
    if os.path.exists(true):
        callers.clear()
        proc.execve(true)
        assert "mmap_region" in callers
        proc.mm.check()


def test_insert_leaves_overlaps_to_check():
    """Mm.insert links what it is given; an overlap is an internal error that check()
    reports, not an errno."""
    mm = Mm(Kernel(randomize=False))
    mm.insert(Vma(16 * P, 24 * P, FLAGS, 16))
    mm.insert(Vma(20 * P, 28 * P, FLAGS, 20))
    with pytest.raises(AssertionError):
        mm.check()


def test_vm_brk_merges_with_the_vma_below():
    """binfmt_elf's vm_brk grows an anonymous VMA ending at its start."""
    from mmsim.binfmt_elf import _vm_brk
    from mmsim.defs import TASK_SIZE
    k = Kernel(randomize=False)
    proc = k.spawn()
    mm = proc.mm
    base = 0x20000000
    mman.mmap_region(mm, base, 4 * P, mm.def_flags | FLAGS | VM_MAYEXEC | VM_ACCOUNT, base // P,
                     None)
    _vm_brk(mm, base + 4 * P, base + 8 * P, 0)
    assert [(v.start, v.end) for v in mm.vmas(base, base + 8 * P)] == [(base, base + 8 * P)]
    with pytest.raises(OSError):
        _vm_brk(mm, TASK_SIZE - P, TASK_SIZE + P, 0)
    mm.check()


def test_set_flags_until_merge_stops_before_a_change_that_may_merge():
    """The walk's run form of the setter: flags change in place up to the first VMA whose
    new flags a touching neighbour shares; that one and the rest are left alone, and the
    tree's summaries see the changes made."""
    mm = _narrow_mm(0)
    rw, ro = FLAGS, VM_READ | VM_MAYREAD | VM_MAYWRITE
    for i, flags in enumerate([rw, ro, rw, ro | VM_NOHUGEPAGE, ro]):
        mm.insert(Vma((16 + i) * P, (17 + i) * P, flags, 16 + i))
    vmas = mm.vmas()
    key = lambda vma: vma.vm_flags  # noqa: E731
    list(mm.tree.summarized_walk(key, lambda o, a: False))   # summaries now clean
    stop = mm.set_flags_until_merge(vmas, ~VM_HUGEPAGE, VM_NOHUGEPAGE, None, None)
    # The fourth VMA has the flags already; the fifth's new flags equal the fourth's.
    assert stop == 4
    assert [v.vm_flags for v in vmas] == [rw | VM_NOHUGEPAGE, ro | VM_NOHUGEPAGE,
                                          rw | VM_NOHUGEPAGE, ro | VM_NOHUGEPAGE, ro]
    mm.check()


def test_fork_child_keeps_the_program_file_and_vdso():
    """dup_mm copies exe_file and the vDSO address with the rest of the mm."""
    true = "/usr/bin/true"
    if not os.path.exists(true):
        pytest.skip("no /usr/bin/true to exec")
    proc = Kernel(randomize=False).spawn(true)
    child = proc.fork()
    assert child.mm.exe_file is proc.mm.exe_file is not None
    assert child.mm.vdso == proc.mm.vdso != 0

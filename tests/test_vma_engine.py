"""The merge/modify engine (mmsim.mm) against the cases of the kernel's userland VMA
tests, tools/testing/vma/vma.c (v6.13-v6.18).  Each test names its source.

Addresses are in pages (P = 4096) as in the kernel's tests; flags are
VM_READ|VM_WRITE|VM_MAYREAD|VM_MAYWRITE unless stated.
"""

import errno

import pytest

from mmsim.kernel import Kernel
from mmsim.mman import mmap_region
from mmsim.vma import (VM_DONTEXPAND, VM_IO, VM_MAYREAD, VM_MAYWRITE, VM_MIXEDMAP, VM_PFNMAP,
                       VM_READ, VM_SPECIAL, VM_WRITE, AnonVma, MergeProposal, Vma)

P = 4096
FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE


def new_mm(max_map_count=65530):
    return Kernel(randomize=False, max_map_count=max_map_count).new_mm()


def link(mm, start, end, pgoff, flags=FLAGS):
    """alloc_and_link_vma(): a VMA over pages [start, end)."""
    return mm.insert(Vma(start * P, end * P, flags, pgoff))


def layout(mm):
    return [(v.start // P, v.end // P, v.pgoff) for v in mm.vmas()]


def merge_new(mm, start, end, pgoff, flags=FLAGS, just_expand=False):
    """merge_new(): neighbours of the gap [start, end) are prev and next."""
    prop = MergeProposal(start * P, end * P, flags, pgoff)
    return mm.merge_new(prop, mm.prev_of(start * P), mm.next_of(end * P), just_expand)


def merge_existing(mm, vma, start, end, flags=FLAGS, prev=None):
    """merge_existing(): change [start, end) of ``vma``; prev as the caller passes it."""
    prop = MergeProposal.for_change(vma, start * P, end * P, flags)
    if prev is None:
        prev = mm.prev_of(vma.start) if start * P == vma.start else vma
    return mm.merge_existing(prop, prev)


def try_merge_new_vma(mm, start, end, pgoff, flags=FLAGS):
    """try_merge_new_vma(): merge, else link a new VMA; returns (vma, merged)."""
    vma = merge_new(mm, start, end, pgoff, flags)
    if vma is not None:
        return vma, True
    return link(mm, start, end, pgoff, flags), False


def test_simple_merge():
    """vma.c test_simple_merge: L[0,1) + new [1,2) + R[2,3) -> one VMA."""
    mm = new_mm()
    left = link(mm, 0, 1, 0)
    link(mm, 2, 3, 2)
    assert merge_new(mm, 1, 2, 1) is left
    assert layout(mm) == [(0, 3, 0)]
    assert left.vm_flags == FLAGS
    mm.check()


def test_simple_modify():
    """vma.c test_simple_modify: changing the middle of [0,3) splits it in three and
    returns the original VMA, now [1,2)."""
    mm = new_mm()
    init = link(mm, 0, 3, 0)
    vma = mm.modify(init, 1 * P, 2 * P, VM_READ | VM_MAYREAD)
    assert vma is init
    assert layout(mm) == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]
    mm.check()


def test_simple_expand():
    """vma.c test_simple_expand: [0,1) expanded to [0,3) (here through an expand-only
    merge, which is vma_expand's caller)."""
    mm = new_mm()
    vma = link(mm, 0, 1, 0)
    assert merge_new(mm, 1, 3, 1, just_expand=True) is vma
    assert layout(mm) == [(0, 3, 0)]


def test_simple_shrink():
    """vma.c test_simple_shrink: [0,3) shrunk to [0,1) (through munmap of the tail)."""
    mm = new_mm()
    vma = link(mm, 0, 3, 0)
    mm.unmap(1 * P, 3 * P)
    assert layout(mm) == [(0, 1, 0)]
    assert mm.vmas()[0].vm_flags == vma.vm_flags


def test_merge_new():
    """vma.c test_merge_new: seven new ranges merging prev, next, both, or nothing."""
    mm = new_mm()
    dummy = AnonVma("dummy")
    a = link(mm, 0, 2, 0)
    b = link(mm, 3, 4, 3)
    c = link(mm, 0xB, 0xC, 0xB)
    d, merged = try_merge_new_vma(mm, 7, 9, 7)
    assert not merged and mm.map_count == 4
    a.close_hook = True          # no impact: prev is never removed
    b.anon_vma = dummy
    vma, merged = try_merge_new_vma(mm, 2, 3, 2)
    assert merged and vma is a
    assert (a.start, a.end, a.pgoff, a.anon_vma) == (0, 4 * P, 0, dummy)
    assert mm.map_count == 3
    vma, merged = try_merge_new_vma(mm, 4, 5, 4)
    assert merged and vma is a and a.end == 5 * P and mm.map_count == 3
    d.anon_vma = dummy
    d.close_hook = True          # no impact: d is only expanded
    vma, merged = try_merge_new_vma(mm, 6, 7, 6)
    assert merged and vma is d and (d.start, d.end, d.pgoff) == (6 * P, 9 * P, 6)
    assert mm.map_count == 3
    d.close_hook = False         # otherwise the both-sides merge would stop at a
    vma, merged = try_merge_new_vma(mm, 5, 6, 5)
    assert merged and vma is a and (a.start, a.end) == (0, 9 * P) and mm.map_count == 2
    c.anon_vma = dummy
    vma, merged = try_merge_new_vma(mm, 0xA, 0xB, 0xA)
    assert merged and vma is c and (c.start, c.end, c.pgoff) == (0xA * P, 0xC * P, 0xA)
    vma, merged = try_merge_new_vma(mm, 9, 0xA, 9)
    assert merged and vma is a
    assert layout(mm) == [(0, 0xC, 0)] and a.anon_vma is dummy
    mm.check()


@pytest.mark.parametrize("special", [VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP])
def test_vma_merge_special_flags(special):
    """vma.c test_vma_merge_special_flags: VM_SPECIAL ranges never merge, new or existing."""
    assert VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP == VM_SPECIAL
    mm = new_mm()
    left = link(mm, 0, 3, 0, FLAGS | special)
    assert merge_new(mm, 3, 4, 3, FLAGS | special) is None
    vma = link(mm, 3, 4, 3, FLAGS)
    left.vm_flags = FLAGS | special
    assert merge_existing(mm, vma, 3, 4, FLAGS | special) is None
    assert mm.map_count == 2


def test_vma_merge_with_close():
    """vma.c test_vma_merge_with_close: a VMA with a close hook is never removed."""
    # New range between P and N(close): P grows, N stays.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    nxt = link(mm, 5, 9, 5)
    nxt.close_hook = True
    assert merge_new(mm, 3, 5, 3) is prev
    assert layout(mm) == [(0, 5, 0), (5, 9, 5)]
    # Changing all of V(close) next to P: no merge.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 5, 3)
    vma.close_hook = True
    assert merge_existing(mm, vma, 3, 5, prev=prev) is None
    assert mm.map_count == 2
    # Changing all of V(close) next to N: no merge.
    mm = new_mm()
    vma = link(mm, 3, 5, 3)
    link(mm, 5, 9, 5)
    vma.close_hook = True
    assert merge_existing(mm, vma, 3, 5) is None
    assert mm.map_count == 2
    # P, V(close), N: no merge at all.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 5, 3)
    link(mm, 5, 9, 5)
    vma.close_hook = True
    assert merge_existing(mm, vma, 3, 5, prev=prev) is None
    assert mm.map_count == 3
    # P, V, N(close): reduced to P + V.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 5, 3)
    nxt = link(mm, 5, 9, 5)
    nxt.close_hook = True
    assert merge_existing(mm, vma, 3, 5, prev=prev) is prev
    assert layout(mm) == [(0, 5, 0), (5, 9, 5)]
    mm.check()


def test_vma_merge_new_with_close():
    """vma.c test_vma_merge_new_with_close: both neighbours have close hooks; the new range
    extends prev and next is left alone."""
    mm = new_mm()
    prev = link(mm, 0, 2, 0)
    nxt = link(mm, 5, 7, 5)
    prev.close_hook = nxt.close_hook = True
    vma = merge_new(mm, 2, 5, 2)
    assert vma is prev and (vma.start, vma.end, vma.pgoff) == (0, 5 * P, 0)
    assert vma.close_hook and mm.map_count == 2


def test_merge_existing():
    """vma.c test_merge_existing: the five merge cases and the no-merge set."""
    dummy = AnonVma("dummy")
    # Merge right, partial span: V[2,6) changes [3,6) -> N=[3,9) p3, V=[2,3).
    mm = new_mm()
    vma = link(mm, 2, 6, 2)
    vma.close_hook = True
    nxt = link(mm, 6, 9, 6)
    nxt.close_hook = True
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 6) is nxt
    assert (nxt.start, nxt.end, nxt.pgoff, nxt.anon_vma) == (3 * P, 9 * P, 3, dummy)
    assert (vma.start, vma.end, vma.pgoff) == (2 * P, 3 * P, 2)
    assert mm.map_count == 2
    # Merge right, full span: V[2,6) changes all -> N=[2,9) p2, V gone.
    mm = new_mm()
    vma = link(mm, 2, 6, 2)
    nxt = link(mm, 6, 9, 6)
    nxt.close_hook = True
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 2, 6) is nxt
    assert layout(mm) == [(2, 9, 2)] and nxt.anon_vma is dummy
    # Merge left, partial span: P[0,3), V[3,7) changes [3,6) -> P=[0,6), V=[6,7) p6.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    prev.close_hook = True
    vma = link(mm, 3, 7, 3)
    vma.close_hook = True
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 6, prev=prev) is prev
    assert layout(mm) == [(0, 6, 0), (6, 7, 6)] and prev.anon_vma is dummy
    # Merge left, full span: -> P=[0,7), V gone.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    prev.close_hook = True
    vma = link(mm, 3, 7, 3)
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 7, prev=prev) is prev
    assert layout(mm) == [(0, 7, 0)]
    # Merge both: P[0,3) V[3,7) N[7,9) -> P=[0,9).
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    prev.close_hook = True
    vma = link(mm, 3, 7, 3)
    vma.anon_vma = dummy
    link(mm, 7, 9, 7)
    assert merge_existing(mm, vma, 3, 7, prev=prev) is prev
    assert layout(mm) == [(0, 9, 0)]
    mm.check()
    # Ranges that touch neither side of V, or leave part of it on a side: no merge.
    for s, e in [(4, 5), (5, 6), (6, 7), (4, 7), (4, 6), (5, 6)]:
        mm = new_mm()
        prev = link(mm, 0, 3, 0)
        vma = link(mm, 3, 8, 3)
        link(mm, 8, 0xA, 8)
        assert merge_existing(mm, vma, s, e, prev=vma) is None, (s, e)
        assert mm.map_count == 3


def test_anon_vma_non_mergeable():
    """vma.c test_anon_vma_non_mergeable: prev and next carry different anon_vmas, so a
    change (or a new range) between them merges with prev only."""
    anon1, anon2 = AnonVma("1"), AnonVma("2")
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 7, 3)
    nxt = link(mm, 7, 9, 7)
    prev.anon_vma, nxt.anon_vma = anon1, anon2
    assert merge_existing(mm, vma, 3, 7, prev=prev) is prev
    assert layout(mm) == [(0, 7, 0), (7, 9, 7)] and nxt.anon_vma is anon2
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    nxt = link(mm, 7, 9, 7)
    prev.anon_vma, nxt.anon_vma = anon1, anon2
    assert merge_new(mm, 3, 7, 3) is prev
    assert layout(mm) == [(0, 7, 0), (7, 9, 7)]


def test_dup_anon_vma():
    """vma.c test_dup_anon_vma: the surviving VMA takes the anon_vma of one it absorbs."""
    dummy = AnonVma("dummy")
    # Expanding P over N, which has an anon_vma: P takes it.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    nxt = link(mm, 3, 5, 3)
    nxt.anon_vma = dummy
    assert merge_existing(mm, nxt, 3, 5, prev=prev) is prev
    assert layout(mm) == [(0, 5, 0)] and prev.anon_vma is dummy
    # A new range between P and N(anon) also hands N's anon_vma to P.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    nxt = link(mm, 5, 8, 5)
    nxt.anon_vma = dummy
    assert merge_new(mm, 3, 5, 3) is prev and prev.anon_vma is dummy
    # P, V, N(anon): changing all of V merges all three into P, which takes N's anon_vma.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 5, 3)
    nxt = link(mm, 5, 8, 5)
    nxt.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 5, prev=prev) is prev
    assert layout(mm) == [(0, 8, 0)] and prev.anon_vma is dummy
    # The same with V holding the anon_vma.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 5, 3)
    link(mm, 5, 8, 5)
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 5, prev=prev) is prev and prev.anon_vma is dummy
    # P, V(anon) [3,8): changing [3,5) merges left; P takes V's anon_vma.
    mm = new_mm()
    prev = link(mm, 0, 3, 0)
    vma = link(mm, 3, 8, 3)
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 5, prev=prev) is prev
    assert layout(mm) == [(0, 5, 0), (5, 8, 5)] and prev.anon_vma is dummy
    # V(anon) [0,5), N [5,8): changing [3,5) merges right; N takes V's anon_vma.
    mm = new_mm()
    vma = link(mm, 0, 5, 0)
    nxt = link(mm, 5, 8, 5)
    vma.anon_vma = dummy
    assert merge_existing(mm, vma, 3, 5, prev=vma) is nxt
    assert layout(mm) == [(0, 3, 0), (3, 8, 3)] and nxt.anon_vma is dummy


# vma.c test_vmi_prealloc_fail is left out: it needs a tree-node allocation to fail, and
# the simulator's tree stores cannot fail for lack of memory.


def test_merge_extend():
    """vma.c test_merge_extend: A[0,1) extended by 2 pages reaches B[3,4) and merges."""
    mm = new_mm()
    a = link(mm, 0, 1, 0)
    link(mm, 3, 4, 3)
    prop = MergeProposal(1 * P, 3 * P, FLAGS, 1)
    assert mm.merge_new(prop, a, mm.next_of(3 * P)) is a
    assert layout(mm) == [(0, 4, 0)] and mm.map_count == 1


def test_copy_vma():
    """vma.c test_copy_vma: copying a VMA to a free spot gives a new VMA, or merges with a
    compatible neighbour there."""
    mm = new_mm()
    vma = link(mm, 3, 5, 3)
    prop = MergeProposal(0, 2 * P, FLAGS, 0, copied_from=vma)
    assert mm.merge_new(prop, None, mm.next_of(2 * P)) is None
    mm = new_mm()
    vma = link(mm, 0, 2, 0)
    nxt = link(mm, 6, 8, 6)
    prop = MergeProposal(4 * P, 6 * P, FLAGS, 4, copied_from=vma)
    assert mm.merge_new(prop, mm.prev_of(4 * P), nxt) is nxt
    assert (nxt.start, nxt.end, nxt.pgoff) == (4 * P, 8 * P, 4)


def test_expand_only_mode():
    """vma.c test_expand_only_mode: with just_expand only prev grows, never next."""
    mm = new_mm()
    x = link(mm, 0, 2, 0)
    prev = link(mm, 3, 5, 3)
    assert merge_new(mm, 5, 9, 5, just_expand=True) is prev
    assert (prev.start, prev.end, prev.pgoff) == (3 * P, 9 * P, 3)
    assert (x.start, x.end) == (0, 2 * P)


def test_mmap_region_basic():
    """vma.c test_mmap_region_basic: four mmap_region calls merge into two VMAs."""
    mm = new_mm()
    for page, pgoff in [(0x300, 0x300), (0x250, 0x250), (0x303, 0x303), (0x24D, 0x24D)]:
        assert mmap_region(mm, page * P, 3 * P, FLAGS, pgoff, None) == page * P
    assert layout(mm) == [(0x24D, 0x253, 0x24D), (0x300, 0x306, 0x300)]
    mm.check()


def test_split_respects_max_map_count():
    """mm/vma.c split_vma: a split at max_map_count is ENOMEM; munmap's own rule charges
    only splits that leave a VMA on both sides (vms_gather_munmap_vmas)."""
    mm = new_mm(max_map_count=2)
    link(mm, 0, 4, 0)
    link(mm, 8, 12, 8)
    with pytest.raises(OSError) as exc:
        mm.modify(mm.vma_lookup(0), 1 * P, 2 * P, VM_READ | VM_MAYREAD)
    assert exc.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as exc:
        mm.unmap(1 * P, 2 * P)
    assert exc.value.errno == errno.ENOMEM
    mm.unmap(0, 1 * P)              # trims an edge: no new VMA, allowed
    assert layout(mm) == [(1, 4, 1), (8, 12, 8)]

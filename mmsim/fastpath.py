"""Fused fast paths for the commonest shapes of mmap, munmap, mprotect and madvise.

Each function here does, for one shape of call, exactly what the general path (mman,
madvise and the merge engine in mm) does, step for step and in the same order, with the
argument checks, the helper calls and the merge proposal written out in line (on the
replay benchmark, 30 function calls per syscall where the general path makes 74).  A call of any other shape, or one that meets something
the fused code does not know (a special mapping, a locked VMA, a sealed one, a VMA the
kernel would refuse to split), gets ``None`` back before anything is changed, and the
caller then runs the general path.  A step whose helper only has work to do when a VMA
has pages, swap entries or guard markers calls that helper (the general code) in that
case, and skips it only where it would do nothing.

The tree's entry count is read as ``tree._len``: ``len(tree)`` is the same number through
a Python-level ``__len__`` call, which these paths would pay on every call.

The arguments are the syscall's after its ABI conversions (Process' @syscall wrapper,
or the replayer's direct handlers): ints, addresses and lengths unsigned 64-bit.

A fast path returns what the call returns, or the negative errno it fails with (no
exception to raise and catch: a replay's calls fail often); the caller raises OSError.

``ENABLED`` turns every fast path off (the general path then runs alone): the
property test tests/test_fastpath.py runs the same calls both ways and compares.
"""

import errno

from . import overcommit, pages
from .defs import MMAP_MIN_ADDR, PAGE_SHIFT, error
from .mm import MMF_HAS_MDWE, MMF_VM_MERGE_ANY, Mm, _anon_compatible, _dup_anon_vma
from .uapi import (MADV_DONTNEED, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE)
from .vma import (VM_ACCOUNT, VM_ACCESS_FLAGS, VM_HUGEPAGE, VM_HUGETLB, VM_LOCKED,
                  VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_MERGE_MASK,
                  VM_NOHUGEPAGE, VM_NORESERVE, VM_PFNMAP, VM_SEALED, VM_SHARED, VM_SPECIAL,
                  VM_WRITE, dup_vma, new_vma)

#: Whether the fast paths run (tests turn them off to run the general path alone).
ENABLED = True

_FIXED_ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
_MAY = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
# calc_vm_prot_bits for PROT_NONE..PROT_READ|PROT_WRITE|PROT_EXEC: the bits are the same.
_PROT_BITS = tuple(range(8))
# The def_flags bits the fused mmap knows: they change nothing but the VMA's flags.
_PLAIN_DEF_FLAGS = VM_NOHUGEPAGE | VM_HUGEPAGE
_NOT_PLAIN_DEF_FLAGS = ~_PLAIN_DEF_FLAGS
# The mm flags under which the fused mmap steps aside (KSM merging, MDWE).
_MMAP_REFUSE_MM = MMF_VM_MERGE_ANY | MMF_HAS_MDWE
_PAGE_MASK = ~((1 << PAGE_SHIFT) - 1)
_OFFSET = (1 << PAGE_SHIFT) - 1
_MAX_END = 1 << 64
# A piece the fused flag change refuses: changing it takes the general path.
_MPROTECT_REFUSE = VM_SEALED | VM_LOCKED | VM_SPECIAL
_NOHUGE_REFUSE = VM_SPECIAL


def _bare(vma):
    """No pages, swap entries, zero-page mappings or guard markers: nothing to move,
    split or zap."""
    return not (vma.pages or vma.swap or vma.guards or vma.zero)


def mmap(mm: Mm, addr, length, prot, flags, offset):
    """mmap(2) of private anonymous memory at a fixed address (mman.mmap then
    mmap_region); None when the call is of another shape."""
    if (flags != _FIXED_ANON or prot & ~7 or offset or addr & _OFFSET or not length
            or addr < MMAP_MIN_ADDR or not ENABLED):
        return None
    end = addr + ((length + _OFFSET) & _PAGE_MASK)
    kernel = mm.kernel
    tree = mm.tree
    if (end > mm.task_size or tree._len > kernel.max_map_count
            or mm.flags & _MMAP_REFUSE_MM or mm.def_flags & _NOT_PLAIN_DEF_FLAGS):
        return None
    before, existing, after = tree.span(addr, end)
    # One pass over what the mapping replaces, changing nothing: the pages each VMA
    # has inside the range, and those of them accounted, are what unmap_vmas takes off
    # total_vm and Committed_AS once the edge splits have cut the VMAs to the range.
    gone = accounted = 0
    for v in existing:
        if v.special is not None or v.pages or v.swap or v.zero:
            # A special VMA, or pages to zap (large folios partly unmapped go to the
            # deferred split queue): the general path.
            return None
        n = ((v.end if v.end < end else end) - (v.start if v.start > addr else addr)) >> PAGE_SHIFT
        gone += n
        if v.vm_flags & VM_ACCOUNT:
            accounted += n
    vm_flags = _PROT_BITS[prot] | mm.def_flags | _MAY
    npages = (end - addr) >> PAGE_SHIFT
    pgoff = addr >> PAGE_SHIFT
    # mmap_region: the charge first, what is replaced already charged carried over.
    old_accounted = charged = 0
    if vm_flags & VM_WRITE:
        old_accounted = accounted
        charged = npages - old_accounted
        overcommit.charge(mm, charged)
        vm_flags |= VM_ACCOUNT
    below = above = None
    if existing:
        # unmap_vmas with overwrite: split at the edges, drop what lies inside.
        first = existing[0]
        last = existing[-1]
        cut_below = addr > first.start
        if cut_below and end < first.end and tree._len >= kernel.max_map_count:
            overcommit.vm_unacct_memory(kernel, charged)
            return -errno.ENOMEM
        if cut_below:
            if first.guards:   # (no pages or swap: those went to the general path)
                below = Mm._cut(first, addr, True)
            else:
                # _cut_below, written out
                below = dup_vma(first)
                below.end = addr
                first.pgoff += (addr - first.start) >> PAGE_SHIFT
                first.start = addr
        if last.end > end:
            if last.guards:
                above = Mm._cut(last, end, False)
            else:
                # _cut_above, written out
                above = dup_vma(last)
                above.start = end
                above.pgoff += (end - last.start) >> PAGE_SHIFT
                last.end = end
        if mm.total_vm > mm.hiwater_vm:
            mm.hiwater_vm = mm.total_vm
        mm.total_vm -= gone
        kernel.committed_as -= accounted
    kernel.committed_as += old_accounted
    # The neighbours: what the edge splits left, else the VMAs either side of the range
    # (prev_of(addr) and next_of(end) when no VMA straddles that edge).
    prev = below if below is not None else before
    nxt = above if above is not None else after
    # merge_new of a proposal with no file, anon_vma, name, uffd context or policy.
    # (is_mergeable_vma and is_mergeable_anon_vma written out, the flags first)
    left = (prev is not None and prev.end == addr
            and not (prev.vm_flags ^ vm_flags) & VM_MERGE_MASK
            and prev.pgoff + ((addr - prev.start) >> PAGE_SHIFT) == pgoff
            and prev.file is None and prev.uffd_ctx is None and prev.anon_name is None
            and prev.policy == None  # noqa: E711
            and (prev.anon_vma is None or not prev.forked))
    right = (nxt is not None and nxt.start == end
             and not (nxt.vm_flags ^ vm_flags) & VM_MERGE_MASK and nxt.pgoff == pgoff + npages
             and nxt.file is None and nxt.uffd_ctx is None and nxt.anon_name is None
             and nxt.policy == None  # noqa: E711
             and (nxt.anon_vma is None or not nxt.forked)
             and (not left or _anon_compatible(prev, nxt)))
    if left or right:
        start, stop, off = addr, end, pgoff
        if right:
            stop = nxt.end
            new = nxt
        if left:
            start = prev.start
            off = prev.pgoff
            new = prev
            if right and nxt.close_hook:
                stop = end
        if nxt is not None and new is not nxt and stop == nxt.end:
            _dup_anon_vma(new, nxt)
            _move_all(nxt, new)
        new.start, new.end, new.pgoff = start, stop, off
    else:
        new = new_vma(addr, end, vm_flags, pgoff)
    # The store of the new (or grown) VMA and relink's of the split VMAs either side,
    # as one change of the tree: no range straddles either end of it.
    if below is not None and below is not new:
        bounds = [below.start, below.end, new.start, new.end]
        entries = [below, new]
    else:
        bounds = [new.start, new.end]
        entries = [new]
    if above is not None and above is not new and new.end <= above.start:
        bounds += (above.start, above.end)
        entries.append(above)
    tree.replace(bounds[0], bounds[-1], bounds, entries, False)
    mm.total_vm += npages
    if new.anon_vma is not None:
        # __mmap_region's khugepaged_enter_vma, as mman.mmap_region.  (It passes over
        # an anonymous VMA with no anon_vma yet, the common new mapping, without a
        # look: so is it passed here, without the call.)
        kernel.khugepaged.enter_vma(mm, new)
    return addr


def _cut_below(vma, addr):
    """Mm._cut with new_below: the new VMA below ``addr``; ``vma`` keeps the rest."""
    if not _bare(vma):
        return Mm._cut(vma, addr, True)
    new = dup_vma(vma)
    new.end = addr
    vma.pgoff += (addr - vma.start) >> PAGE_SHIFT
    vma.start = addr
    return new


def _cut_above(vma, addr):
    """Mm._cut without new_below: the new VMA above ``addr``; ``vma`` keeps the rest."""
    if not _bare(vma):
        return Mm._cut(vma, addr, False)
    new = dup_vma(vma)
    new.start = addr
    new.pgoff += (addr - vma.start) >> PAGE_SHIFT
    vma.end = addr
    return new


def _move_all(src, dst):
    """pages.move_all where it has something to do."""
    if src.pages is not None or src.swap or src.guards or src.zero:
        pages.move_all(src, dst)


def munmap(mm: Mm, addr, length):
    """munmap(2) (mman.munmap, Mm.unmap); None when the fused path does not apply,
    else 0 or the negative errno."""
    if addr & _OFFSET or not length or not ENABLED:
        return None
    task_size = mm.task_size
    if addr > task_size or length > task_size - addr:
        return None
    end = addr + ((length + _OFFSET) & _PAGE_MASK)
    tree = mm.tree
    victims = tree.values(addr, end, False)
    if not victims:
        return 0
    first = victims[0]
    last = victims[-1]
    if len(victims) == tree._len or first.special is not None or last.special is not None:
        return None   # _unmap_all, or a split the kernel may refuse
    for v in victims:
        if v.pages or v.swap or v.zero:
            # Resident or swapped pages: the general path's zap decides what becomes
            # of partly unmapped large folios (the deferred split queue).
            return None
    cut_below = addr > first.start
    kernel = mm.kernel
    if cut_below and end < first.end and tree._len >= kernel.max_map_count:
        return -errno.ENOMEM
    below = _cut_below(first, addr) if cut_below else None
    above = _cut_above(last, end) if last.end > end else None
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    unacct = 0
    for v in victims:
        n = (v.end - v.start) >> PAGE_SHIFT
        mm.total_vm -= n
        if v.vm_flags & VM_ACCOUNT:
            unacct += n
    # The erase and relink's stores of the split VMAs, as one change of the tree.
    bounds = []
    entries = []
    lo, hi = addr, end
    if below is not None:
        lo = below.start
        bounds += (lo, addr)
        entries.append(below)
    if above is not None:
        hi = above.end
        bounds += (end, hi)
        entries.append(above)
    tree.replace(lo, hi, bounds, entries, False)
    kernel.committed_as -= unacct
    return 0


def mprotect(mm: Mm, addr, length, prot):
    """mprotect(2) to PROT_NONE, READ, WRITE or both (mman.mprotect, mprotect_fixup,
    Mm.modify); None when the fused path does not apply."""
    if addr & _OFFSET or prot & ~3 or not length or not ENABLED:
        return None
    end = addr + ((length + _OFFSET) & _PAGE_MASK)
    if end >= _MAX_END or mm.flags & MMF_HAS_MDWE:
        return None
    tree = mm.tree
    vmas = tree.values(addr, end, False)
    for v in vmas:
        if (v.vm_flags & _MPROTECT_REFUSE or v.special is not None
                or v.pages or v.swap or v.guards or v.zero):   # (not _bare(v))
            return None
    if not vmas:
        return -errno.ENOMEM
    vma = vmas[0]   # find_vma_intersection
    if vma.start > addr:
        return -errno.ENOMEM
    bits = _PROT_BITS[prot]
    kernel = mm.kernel
    tmp = vma.start
    nstart = addr
    j = 0
    nv = len(vmas)
    while tmp < end and vma is not None and vma.start < end:
        if vma.start != tmp:
            return -errno.ENOMEM
        oldflags = vma.vm_flags
        newflags = bits | (oldflags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            return -errno.EACCES
        tmp = min(vma.end, end)
        if newflags != oldflags:
            # mprotect_fixup
            nrpages = (tmp - nstart) >> PAGE_SHIFT
            charged = 0
            if newflags & VM_WRITE:
                if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED
                                   | VM_NORESERVE):
                    overcommit.charge(mm, nrpages)
                    charged = nrpages
                    newflags |= VM_ACCOUNT
            elif (oldflags & VM_ACCOUNT and vma.file is None and vma.special is None
                  and not oldflags & VM_MAYSHARE and vma.anon_vma is None):
                newflags &= ~VM_ACCOUNT
            try:
                vma = _modify(mm, tree, vma, nstart, tmp, newflags)
            except OSError:
                kernel.committed_as -= charged
                raise
            if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
                kernel.committed_as -= nrpages
        tmp = vma.end
        nstart = tmp
        if tmp >= end:
            break
        vma, j = _next(vmas, j, nv, tmp)
    if tmp < end:
        return -errno.ENOMEM
    return 0


def _next(vmas, j, n, addr):
    """find_vma(addr) in a walk over ``vmas`` (every VMA in the range, as it was
    before the walk) at ``vmas[j]``, where ``addr`` is the end of the VMA the change of
    ``vmas[j]`` left (itself, or a neighbour it merged into): the next VMA in the range
    that starts at or above it, and its index.  A later VMA of the list is unchanged,
    except the one after ``vmas[j]``, which a merge may have grown down over ``vmas[j]``
    or taken into the VMA before: then it starts below ``addr`` and is passed.  None when
    the list runs out: no VMA then lies between ``addr`` and the range's end."""
    j += 1
    while j < n:
        vma = vmas[j]
        if vma.start >= addr:
            return vma, j
        j += 1
    return None, j


def madvise(mm: Mm, start, len_in, advice):
    """madvise(2) with MADV_DONTNEED or MADV_NOHUGEPAGE (madvise.madvise, walk,
    vma_behavior); None when the fused path does not apply."""
    if (start & _OFFSET or not len_in or not ENABLED
            or (advice != MADV_DONTNEED and advice != MADV_NOHUGEPAGE)):
        return None
    end = start + ((len_in + _OFFSET) & _PAGE_MASK)
    if end >= _MAX_END:
        return None
    tree = mm.tree
    if advice == MADV_DONTNEED:
        # Every piece is zapped, which for a VMA without pages or swap is nothing: what
        # is left is the walk's answer, ENOMEM for any hole.
        pos = start
        hole = False
        for v in tree.values(start, end, False):
            flags = v.vm_flags
            if (flags & (VM_PFNMAP | VM_LOCKED) and not flags & VM_HUGETLB) or v.pages \
                    or v.swap or v.zero:
                return None
            if v.start > pos:
                hole = True
            pos = v.end
        if hole or pos < end:
            return -errno.ENOMEM
        return 0
    vmas = tree.values(start, end, False)
    for v in vmas:
        if (v.vm_flags & _NOHUGE_REFUSE or v.special is not None
                or v.pages or v.swap or v.guards or v.zero):   # (not _bare(v))
            return None
    if not vmas:
        return -errno.ENOMEM   # the walk's first find_vma finds none in the range
    vma = vmas[0]
    j = 0
    nv = len(vmas)
    unmapped = False
    while True:
        if start < vma.start:
            unmapped = True
            start = vma.start
            if start >= end:
                break
        tmp = min(vma.end, end)
        flags = vma.vm_flags
        new = (flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
        if new != flags:
            try:
                vma = _modify(mm, tree, vma, start, tmp, new)
            except OSError as exc:
                if exc.errno == errno.ENOMEM:
                    return -errno.EAGAIN   # split would exceed max_map_count
                raise
        start = tmp if vma.end < tmp else vma.end
        if start >= end:
            break
        vma, j = _next(vmas, j, nv, start)
        if vma is None:
            return -errno.ENOMEM   # none left in the range: a hole up to its end
    if unmapped:
        return -errno.ENOMEM
    return 0


def _modify(mm, tree, vma, start, end, vm_flags):
    """Mm.modify (vma_modify_flags through merge_existing, else splits) for a VMA that
    is not special and has no pages, swap entries or guard markers."""
    vstart = vma.start
    vend = vma.end
    left_side = start == vstart
    right_side = end == vend
    if not vm_flags & VM_SPECIAL and (left_side or right_side):
        # merge_existing, the proposal being vma's own properties at [start, end).
        pgoff = vma.pgoff + ((start - vstart) >> PAGE_SHIFT)
        anon = vma.anon_vma
        # prev_of(vstart) and next_of(vend): the VMAs either side of vma, one lookup.
        prev, _, nxt = tree.span(vstart, vend)
        # (the flags, likeliest to differ, compared before the rest of mergeable_with)
        merge_left = (left_side and prev is not None and prev.end == start
                      and not (prev.vm_flags ^ vm_flags) & VM_MERGE_MASK
                      and _change_mergeable(prev, vma, vm_flags, anon)
                      and prev.pgoff + ((prev.end - prev.start) >> PAGE_SHIFT) == pgoff)
        merge_right = (right_side and nxt is not None and nxt.start == end
                       and not (nxt.vm_flags ^ vm_flags) & VM_MERGE_MASK
                       and _change_mergeable(nxt, vma, vm_flags, anon)
                       and nxt.pgoff == pgoff + ((end - start) >> PAGE_SHIFT)
                       and (not merge_left or _anon_compatible(prev, nxt)))
        if merge_left or merge_right:
            remove_middle = left_side and right_side
            if not (remove_middle and vma.close_hook):
                if merge_left and merge_right and nxt.close_hook:
                    merge_right = False
                if merge_left and merge_right:
                    _dup_anon_vma(prev, nxt if nxt.anon_vma is not None else vma)
                    _move_all(vma, prev)
                    _move_all(nxt, prev)
                    prev.end = nxt.end
                    tree.store(prev.start, prev.end, prev)
                    mm.kernel.khugepaged.enter_vma(mm, prev, vm_flags)
                    return prev
                if merge_left:
                    _dup_anon_vma(prev, vma)
                    if remove_middle:
                        _move_all(vma, prev)
                    else:
                        vma.pgoff += (end - vstart) >> PAGE_SHIFT
                        vma.start = end
                    prev.end = end
                    tree.store(prev.start, end, prev)
                    mm.kernel.khugepaged.enter_vma(mm, prev, vm_flags)
                    return prev
                _dup_anon_vma(nxt, vma)
                if remove_middle:
                    nxt.pgoff -= (vend - vstart) >> PAGE_SHIFT
                    _move_all(vma, nxt)
                else:
                    nxt.pgoff -= (nxt.start - start) >> PAGE_SHIFT
                    vma.end = start
                nxt.start = start
                tree.store(start, nxt.end, nxt)
                mm.kernel.khugepaged.enter_vma(mm, nxt, vm_flags)
                return nxt
    cut_below = vstart < start
    cut_above = vend > end
    if not (cut_below or cut_above):
        vma.vm_flags = vm_flags
        tree.touch(vstart)
        return vma
    # Mm.split at each edge (max_map_count checked before each, as split does), the
    # tree changed once for both.
    count = tree._len
    limit = mm.kernel.max_map_count
    if cut_below and count >= limit:
        raise error(errno.ENOMEM, "split at max_map_count")
    if cut_above and count + cut_below >= limit:
        if cut_below:
            below = _cut_below(vma, start)
            tree.store(vstart, start, below)
        raise error(errno.ENOMEM, "split at max_map_count")
    bounds = []
    entries = []
    if cut_below:
        below = _cut_below(vma, start)
        bounds += (vstart, start)
        entries.append(below)
    bounds += (start, end)
    entries.append(vma)
    if cut_above:
        entries.append(_cut_above(vma, end))
        bounds += (end, vend)
    vma.vm_flags = vm_flags
    tree.replace(vstart, vend, bounds, entries, False)
    return vma


def _change_mergeable(t, vma, vm_flags, anon):
    """A change of part of ``vma`` to ``vm_flags`` may merge with ``t`` (the
    proposal's mergeable_with: is_mergeable_vma and is_mergeable_anon_vma)."""
    if (t.policy != vma.policy or (t.vm_flags ^ vm_flags) & VM_MERGE_MASK
            or t.file is not vma.file or t.uffd_ctx is not vma.uffd_ctx
            or t.anon_name != vma.anon_name):
        return False
    tgt_anon = t.anon_vma
    if tgt_anon is None and anon is not None:
        return not vma.forked
    if tgt_anon is not None and anon is None:
        return not t.forked
    return anon is tgt_anon

"""madvise(2) (mm/madvise.c, 6.18): validation order, the walk over every VMA in the
range (holes give ENOMEM after the mapped parts were advised), per-advice rejections,
flag changes through the merge engine, and the memory-side advice."""

import errno

from . import filemap, pages, thp
from .defs import PAGE_SHIFT, PAGE_SIZE, error, offset_in_page, page_align
from .uapi import (MADV_COLD, MADV_COLLAPSE, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP,
                   MADV_DONTFORK, MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE,
                   MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_HUGEPAGE,
                   MADV_KEEPONFORK, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT,
                   MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM, MADV_REMOVE,
                   MADV_SEQUENTIAL, MADV_UNMERGEABLE, MADV_WILLNEED,
                   MADV_WIPEONFORK)
from .files import REG
from .vma import (VM_DONTCOPY, VM_DONTDUMP, VM_DONTEXPAND, VM_DROPPABLE, VM_HUGEPAGE,
                  VM_HUGETLB, VM_IO, VM_LOCKED, VM_MAYBE_GUARD, VM_MAYSHARE, VM_MERGEABLE,
                  VM_MIXEDMAP, VM_NOHUGEPAGE, VM_PFNMAP, VM_RAND_READ, VM_SEQ_READ, VM_SHARED,
                  VM_SPECIAL, VM_WIPEONFORK, VM_WRITE)

VALID = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE,
         MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE,
         MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK,
         MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
         MADV_DONTNEED_LOCKED, MADV_COLLAPSE, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE}
# MADV_HWPOISON and MADV_SOFT_OFFLINE are valid only with CONFIG_MEMORY_FAILURE, which the
# reference kernel lacks: there they are unknown advice (EINVAL), checked live.

# Advice another process may give through process_madvise (madvise_behavior_valid remote).
REMOTE_OK = {MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED, MADV_COLLAPSE}

_KSM_INCOMPATIBLE = (VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB
                     | VM_MIXEDMAP | VM_DROPPABLE)


def check_range(start, len_in, advice):
    """madvise_should_skip's checks; returns ``end``, or None when there is nothing to do."""
    if advice not in VALID:
        raise error(errno.EINVAL, "unknown advice")
    if offset_in_page(start):
        raise error(errno.EINVAL, "start not page aligned")
    length = page_align(len_in)
    if len_in and not length:
        raise error(errno.EINVAL)
    end = start + length
    if end >= 1 << 64:
        raise error(errno.EINVAL, "range wraps")
    if end == start:
        return None
    return end


def madvise(mm, start, len_in, advice):
    """madvise(2) on ``mm``; returns 0 or raises OSError."""
    end = check_range(start, len_in, advice)
    if end is None:
        return 0
    if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        return _populate(mm, start, end, advice == MADV_POPULATE_WRITE)
    return walk(mm, start, end, lambda vma, s, e: vma_behavior(mm, vma, s, e, advice))


def walk(mm, start, end, visit):
    """madvise_walk_vmas: ``visit`` every VMA piece in ``[start, end)``; a hole means
    ENOMEM at the end, a visit error stops the walk at once."""
    unmapped = False
    while True:
        vma = mm.find_vma(start)
        if vma is None:
            raise error(errno.ENOMEM)
        if start < vma.start:
            unmapped = True
            start = vma.start
            if start >= end:
                break
        tmp = min(vma.end, end)
        done = visit(vma, start, tmp)
        # A merge may have grown the advised VMA past tmp: go on after it (prev->vm_end).
        start = tmp if done is None or done.end < tmp else done.end
        if start >= end:
            break
    if unmapped:
        raise error(errno.ENOMEM)
    return 0


# The advice new_flags answers (any other changes no flag).
FLAG_ADVICE = frozenset((MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM, MADV_DONTFORK, MADV_DOFORK,
                         MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTDUMP, MADV_DODUMP,
                         MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE))


def new_flags(vma, advice):
    """The flags ``advice`` gives ``vma``, or None for advice that changes no flag."""
    if advice not in FLAG_ADVICE:
        return None   # the memory-side advice, without going through the list below
    flags = vma.vm_flags
    if advice == MADV_NORMAL:
        return flags & ~(VM_RAND_READ | VM_SEQ_READ)
    if advice == MADV_SEQUENTIAL:
        return (flags & ~VM_RAND_READ) | VM_SEQ_READ
    if advice == MADV_RANDOM:
        return (flags & ~VM_SEQ_READ) | VM_RAND_READ
    if advice == MADV_DONTFORK:
        return flags | VM_DONTCOPY
    if advice == MADV_DOFORK:
        if flags & VM_IO:
            raise error(errno.EINVAL)
        return flags & ~VM_DONTCOPY
    if advice == MADV_WIPEONFORK:
        if vma.file is not None or flags & VM_SHARED or vma.special is not None and flags & VM_SHARED:
            raise error(errno.EINVAL)
        return flags | VM_WIPEONFORK
    if advice == MADV_KEEPONFORK:
        if flags & VM_DROPPABLE:
            raise error(errno.EINVAL)
        return flags & ~VM_WIPEONFORK
    if advice == MADV_DONTDUMP:
        return flags | VM_DONTDUMP
    if advice == MADV_DODUMP:
        if flags & VM_SPECIAL and not flags & VM_HUGETLB or flags & VM_DROPPABLE:
            raise error(errno.EINVAL)
        return flags & ~VM_DONTDUMP
    if advice == MADV_MERGEABLE:
        if flags & VM_MERGEABLE or flags & _KSM_INCOMPATIBLE:
            return flags  # ksm_madvise leaves what KSM cannot handle alone
        return flags | VM_MERGEABLE
    if advice == MADV_UNMERGEABLE:
        return flags & ~VM_MERGEABLE
    if advice == MADV_HUGEPAGE:
        return (flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
    if advice == MADV_NOHUGEPAGE:
        return (flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
    return None


def update_vma(mm, vma, start, end, flags):
    """madvise_update_vma: change flags through the merge engine; ENOMEM becomes EAGAIN."""
    if flags == vma.vm_flags:
        return vma
    try:
        return mm.modify(vma, start, end, flags)
    except OSError as exc:
        if exc.errno == errno.ENOMEM:
            raise error(errno.EAGAIN, "split would exceed max_map_count") from None
        raise


def vma_behavior(mm, vma, start, end, advice):
    """madvise_vma_behavior for one VMA piece."""
    flags = new_flags(vma, advice)
    if flags is not None:
        if advice == MADV_HUGEPAGE:
            # hugepage_madvise: the VMA as it is, with its new flags, may register
            # the mm with khugepaged before the flags are stored.
            mm.kernel.khugepaged.enter_vma(mm, vma, flags)
        return update_vma(mm, vma, start, end, flags)
    vm_flags = vma.vm_flags
    if advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE):
        forbidden = VM_PFNMAP | (0 if advice == MADV_DONTNEED_LOCKED else VM_LOCKED)
        if vm_flags & forbidden and not vm_flags & VM_HUGETLB:
            raise error(errno.EINVAL)
        if advice == MADV_FREE and not vma.is_anonymous():
            raise error(errno.EINVAL)
        if advice == MADV_FREE:
            # madvise_free_pte_range splits a large folio it covers in part.
            pages.split_partial(mm, vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
        # madvise_free_pte_range skips the zero page (not a normal folio).
        pages.zap_vma(mm, vma, start, end, keep_zero=advice == MADV_FREE)
        return vma
    if advice == MADV_REMOVE:
        if vm_flags & VM_LOCKED:
            raise error(errno.EINVAL)
        if vma.file is None:
            raise error(errno.EINVAL)
        if (vm_flags & (VM_SHARED | VM_WRITE)) != (VM_SHARED | VM_WRITE):
            raise error(errno.EACCES)
        if vma.file.shmem:
            pages.punch_hole(mm.kernel, vma.file.inode, vma.pgoff_at(start),
                             vma.pgoff_at(end))
        else:
            pages.zap_vma(mm, vma, start, end)
        return vma
    if advice in (MADV_COLD, MADV_PAGEOUT):
        if vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            raise error(errno.EINVAL)
        if vma.file is None:
            # madvise_cold_or_pageout_pte_range: a large folio this mm alone maps and
            # the range covers in part is split.
            pages.split_partial(mm, vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
        if advice == MADV_COLD:
            pages.deactivate(vma, start, end, mm)
        else:
            # madvise_pageout: reclaim now what this mm alone maps; anonymous pages
            # go to swap when there is room, and are put back active otherwise.
            pages.pageout_anon(mm, vma, start, end)
            pages.pageout_file(mm, vma, start, end)
        return vma
    if advice == MADV_WILLNEED:
        f = vma.file
        if f is not None and not f.shmem and f.inode.kind == REG:
            # madvise_willneed: POSIX_FADV_WILLNEED on the file range behind it (the
            # anonymous and shmem cases read from swap, which holds nothing here).
            offset = start - vma.start + (vma.pgoff << PAGE_SHIFT)
            filemap.fadvise(mm.kernel, mm.memcg, f, offset, end - start,
                            filemap.POSIX_FADV_WILLNEED)
        return vma
    if advice == MADV_COLLAPSE:
        if not thp.allowed(vma, mm.flags, mm.kernel.thp_pmd_policy, thp.TVA_FORCED_COLLAPSE,
                           kernel=mm.kernel):
            raise error(errno.EINVAL)
        before = pages.thp_count(vma)
        allocs = mm.kernel.node.events["thp_collapse_alloc"]
        ok = pages.collapse(mm, vma, start, end)
        made = pages.thp_count(vma) - before
        if made and vma.file is None:   # a shmem collapse counts its own
            # alloc_charge_folio counts each new huge page, for the machine and the
            # cgroup it is charged to (checked live).
            mm.kernel.node.events["thp_collapse_alloc"] += made
            mm.memcg.stat["thp_collapse_alloc"] += made
        mm.thp_collapsed[1] += mm.kernel.node.events["thp_collapse_alloc"] - allocs
        if not ok:
            raise error(errno.EINVAL)
        return vma
    if advice == MADV_GUARD_INSTALL:
        if vm_flags & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED):
            raise error(errno.EINVAL)
        if vma.is_anonymous():
            pages.anon_vma_prepare(vma)
        pages.install_guards(mm, vma, start, end)
        # This 6.18 build marks the whole VMA, without splitting it (VM_MAYBE_GUARD).
        mm.set_vm_flags(vma, vma.vm_flags | VM_MAYBE_GUARD)
        return vma
    if advice == MADV_GUARD_REMOVE:
        if vm_flags & (VM_SPECIAL | VM_HUGETLB):
            raise error(errno.EINVAL)
        pages.remove_guards(vma, start, end)
        return vma
    raise error(errno.EINVAL)


def _populate_pieces(mm, start, end, write):
    """The VMA pieces madvise_populate faults before its first error, and that error
    (an OSError, or None)."""
    pieces = []
    addr = start
    while addr < end:
        vma = mm.vma_lookup(addr)
        if vma is None:
            return pieces, error(errno.ENOMEM)
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            return pieces, error(errno.EINVAL)
        stop = min(vma.end, end)
        need = VM_WRITE if write else 0x1
        if not vma.vm_flags & need:
            return pieces, error(errno.EINVAL)
        pieces.append((vma, addr, stop))
        addr = stop
    return pieces, None


def _populate(mm, start, end, write):
    """madvise_populate: fault the whole range in, read or write.  The memory it needs
    is checked first, so a range too large for the machine fails with ENOMEM before
    any page is faulted (simulator-defined: the kernel would OOM-kill)."""
    pieces, failure = _populate_pieces(mm, start, end, write)
    pinned = (sum(pages.pinned_cost(vma, s, e, write) for vma, s, e in pieces)
              if mm.kernel.swap is not None else 0)
    pages.check_room(mm, sum(pages.populate_cost(vma, s, e, write) for vma, s, e in pieces),
                     pinned)
    for vma, s, e in pieces:
        pages.populate(mm, vma, s, e, write, touch=True)
    if failure is not None:
        raise failure
    return 0

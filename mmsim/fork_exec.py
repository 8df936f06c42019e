"""fork: duplicating an address space by the kernel's rules (kernel/fork.c dup_mm and
mm_init, mm/mmap.c dup_mmap).  Exec arrives with the ELF loader."""

from . import pages
from .mm import (MMF_DISABLE_THP_MASK, MMF_DUMP_FILTER_DEFAULT, MMF_DUMPABLE_MASK, MMF_HAS_MDWE,
                 MMF_HAS_MDWE_NO_INHERIT, MMF_TOPDOWN, MMF_VM_MERGE_ANY, Mm)
from .vma import VM_DONTCOPY, VM_INIT_DEF_MASK, VM_LOCKED_MASK, VM_MIXEDMAP, VM_PFNMAP, VM_WIPEONFORK, \
    AnonVma, dup_vma

# The mm flags a new mm takes over from the one it is made from (MMF_INIT_LEGACY_MASK).
MMF_DUMP_FILTER_MASK = 0x1FF << 2
MMF_INIT_LEGACY_MASK = (MMF_DUMPABLE_MASK | MMF_DUMP_FILTER_MASK | MMF_DISABLE_THP_MASK
                        | MMF_HAS_MDWE | MMF_VM_MERGE_ANY | MMF_TOPDOWN)


def mmf_init_legacy_flags(flags):
    """The flags a new mm inherits: MDWE is dropped entirely when it was set NO_INHERIT."""
    if flags & MMF_HAS_MDWE_NO_INHERIT:
        flags &= ~(MMF_HAS_MDWE | MMF_HAS_MDWE_NO_INHERIT)
    return flags & MMF_INIT_LEGACY_MASK


def mm_init(kernel, oldmm):
    """A new, empty mm whose flags and def_flags come from ``oldmm`` (mm_init)."""
    if oldmm is None:
        return Mm(kernel, flags=MMF_DUMP_FILTER_DEFAULT | 1)
    return Mm(kernel, flags=mmf_init_legacy_flags(oldmm.flags),
              def_flags=oldmm.def_flags & VM_INIT_DEF_MASK)


def vma_needs_copy(vma):
    """copy_page_range is only needed where there is private anonymous memory or raw
    page frames; shared file and shmem pages are faulted back in on demand."""
    return vma.anon_vma is not None or bool(vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP))


def dup_mm(kernel, oldmm):
    """fork's copy of ``oldmm`` (dup_mm + dup_mmap)."""
    mm = mm_init(kernel, oldmm)
    mm.task_size = oldmm.task_size
    mm.mmap_base = oldmm.mmap_base
    mm.start_brk, mm.brk, mm.start_stack = oldmm.start_brk, oldmm.brk, oldmm.start_stack
    for old in oldmm.vmas():
        if old.vm_flags & VM_DONTCOPY:
            continue
        new = dup_vma(old)
        new.vm_flags &= ~VM_LOCKED_MASK
        if old.vm_flags & VM_WIPEONFORK:
            # The child sees the range empty, as if freshly mapped.
            new.anon_vma = None
            new.forked = False
        elif old.anon_vma is not None:
            # anon_vma_fork: a new anon_vma of the child's own, chained to the parent's:
            # the VMA now has unCoWed parents, which the merge rules look at.
            new.anon_vma = AnonVma(f"fork of {old.anon_vma.name}")
            new.forked = True
        if vma_needs_copy(old) and not old.vm_flags & VM_WIPEONFORK:
            pages.share_pages(mm, old, new)
        mm.insert(new)
    mm.hiwater_rss = mm.rss_anon + mm.rss_file + mm.rss_shmem
    return mm

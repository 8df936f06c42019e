"""The address space (``struct mm_struct``) and the one merge/modify engine every VMA
change goes through, modelled on ``mm/vma.c``: ``vma_merge_new_range``,
``vma_merge_existing_range``, ``vma_modify``, ``__split_vma`` and munmap's
gather-and-split, plus ``get_unmapped_area`` (``mm/mmap.c``, ``arch/x86``).

Failures raise ``OSError`` with the kernel's errno; argument checking belongs to the
syscall layer above.
"""

import errno
import os

from . import overcommit, pages
from .uapi import MAP_FIXED, MAP_SHARED
from .vma import (PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED_MASK,
                  VM_SHADOW_STACK, VM_SPECIAL, MergeProposal, Vma, dup_vma)
from .vma_tree import VmaTree

# x86-64 layout with 4-level page tables (arch/x86/include/asm/page_64_types.h).
TASK_SIZE = (1 << 47) - PAGE_SIZE          # DEFAULT_MAP_WINDOW
STACK_TOP = TASK_SIZE
TASK_UNMAPPED_BASE = (TASK_SIZE // 3 + PAGE_SIZE - 1) & PAGE_MASK
# The effective mmap_min_addr on the reference machine is 64 KiB (LSM_MMAP_MIN_ADDR),
# although /proc/sys/vm/mmap_min_addr shows 4096.
MMAP_MIN_ADDR = 0x10000
STACK_GUARD_GAP = 256 << PAGE_SHIFT
STACK_RND_PAGES = 0x3FFFFF                 # STACK_RND_MASK: up to 16 GiB of stack offset
MMAP_RND_BITS = 28
SIZE_128M = 128 << 20
RLIMIT_STACK_DEFAULT = 8 << 20

# mm->flags bits (include/linux/mm_types.h, 6.18).
MMF_DUMPABLE_MASK = 0x3
MMF_DUMP_FILTER_SHIFT = 2
MMF_DUMP_FILTER_DEFAULT = 0x33 << MMF_DUMP_FILTER_SHIFT
MMF_VM_MERGEABLE = 1 << 16
MMF_VM_HUGEPAGE = 1 << 17
MMF_DISABLE_THP_EXCEPT_ADVISED = 1 << 23
MMF_DISABLE_THP_COMPLETELY = 1 << 24
MMF_HAS_MDWE = 1 << 28
MMF_HAS_MDWE_NO_INHERIT = 1 << 29
MMF_VM_MERGE_ANY = 1 << 30
MMF_TOPDOWN = 1 << 31
MMF_DISABLE_THP_MASK = MMF_DISABLE_THP_EXCEPT_ADVISED | MMF_DISABLE_THP_COMPLETELY


def error(code, what=""):
    """An OSError carrying ``code``, worded like the os module's."""
    msg = os.strerror(code)
    return OSError(code, f"{msg}: {what}" if what else msg)


def page_align(n):
    """Round ``n`` up to a page boundary (PAGE_ALIGN)."""
    return (n + PAGE_SIZE - 1) & PAGE_MASK


def vm_start_gap(vma):
    """Lowest address a new mapping may end at below ``vma`` (stack guard gap)."""
    start = vma.start
    if vma.vm_flags & VM_GROWSDOWN:
        gap = start - STACK_GUARD_GAP
        return gap if gap <= start and gap > 0 else 0
    if vma.vm_flags & VM_SHADOW_STACK:
        return max(start - PAGE_SIZE, 0)
    return start


def thp_aligned(ret, addr, off, topdown):
    """__thp_get_unmapped_area's last step: ``ret`` came from a search padded by one PMD
    for a mapping at file offset ``off`` (hint ``addr``); return the start that gives the
    mapping the same offset within a PMD as the file, or the hint if it was granted."""
    if ret == addr:
        return addr
    off_sub = (off - ret) & (PMD_SIZE - 1)
    if topdown and not off_sub:
        return ret + PMD_SIZE
    return ret + off_sub


class Mm:
    """An address space: its VMAs in a VmaTree, mm flags, def_flags and layout."""

    def __init__(self, kernel, flags=MMF_DUMP_FILTER_DEFAULT | 1, def_flags=0):
        self.kernel = kernel
        self.tree = VmaTree()
        self.flags = flags
        self.def_flags = def_flags
        self.task_size = TASK_SIZE
        self.mmap_base = TASK_SIZE - SIZE_128M
        self.start_brk = self.brk = 0
        self.start_stack = 0
        # The layout fields /proc/PID/stat shows and PR_SET_MM sets (set by exec).
        self.start_code = self.end_code = self.start_data = self.end_data = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        self.users = 1
        self.user_ns = None   # the user namespace the mm was created in (mm->user_ns)
        self.rss_anon = self.rss_file = self.rss_shmem = 0   # resident pages
        self.hiwater_rss = 0
        self.fade_on_death = False   # MMF_FADE_ON_DEATH: set through mctl

    # ------------------------------------------------------------------ lookups

    @property
    def map_count(self):
        """Number of VMAs (mm->map_count)."""
        return len(self.tree)

    def find_vma(self, addr):
        """The first VMA ending above ``addr`` (find_vma), or None."""
        found = self.tree.find(addr)
        return found[2] if found else None

    def vma_lookup(self, addr):
        """The VMA containing ``addr``, or None."""
        return self.tree.load(addr)

    def find_vma_intersection(self, start, end):
        """The first VMA overlapping ``[start, end)``, or None."""
        found = self.tree.find(start, end)
        return found[2] if found else None

    def prev_of(self, addr):
        """The last VMA starting below ``addr``."""
        found = self.tree.find_prev(addr)
        return found[2] if found else None

    def next_of(self, addr):
        """The first VMA starting at or above ``addr``."""
        found = self.tree.find(addr)
        if found and found[0] < addr:
            found = self.tree.find(found[1])
        return found[2] if found else None

    def vmas(self, start=0, end=None):
        """The VMAs overlapping ``[start, end)``, in order, as a list."""
        return self.tree.values(start, end)

    # ------------------------------------------------------------------ tree upkeep

    def _store(self, vma):
        self.tree.store(vma.start, vma.end, vma)

    def _max_map_count(self):
        return self.kernel.max_map_count

    def _remove(self, vma, into=None):
        """Drop ``vma`` from the mm (its range is being taken over or unmapped)."""
        if into is not None:
            pages.move_all(vma, into)
        else:
            pages.zap_vma(self, vma, vma.start, vma.end)

    # ------------------------------------------------------------------ merge engine

    def merge_new(self, prop, prev, nxt, just_expand=False):
        """vma_merge_new_range: grow a neighbour over the free range ``prop``; the VMA
        that now covers it, or None when no neighbour is compatible."""
        if prop.vm_flags & VM_SPECIAL or (prev is None and nxt is None):
            return None
        left = prev is not None and prop.can_merge_after(prev)
        right = (not just_expand and nxt is not None and prop.can_merge_before(nxt)
                 and (not left or _anon_compatible(prev, nxt)))
        start, end, pgoff = prop.start, prop.end, prop.pgoff
        target = None
        if right:
            end = nxt.end
            target = nxt
        if left:
            start = prev.start
            pgoff = prev.pgoff
            target = prev
            if right and nxt.close_hook:
                end = prop.end
        if target is None:
            return None
        # vma_expand: grow the target, swallowing next when the range reaches its end.
        if nxt is not None and target is not nxt and end == nxt.end:
            _dup_anon_vma(target, nxt)
            self._remove(nxt, into=target)
        target.start, target.end, target.pgoff = start, end, pgoff
        self._store(target)
        return target

    def merge_existing(self, prop, prev):
        """vma_merge_existing_range: ``prop`` changes part of ``prop.middle``; merge that
        part into a compatible neighbour.  The VMA now covering it, or None."""
        middle = prop.middle
        start, end = prop.start, prop.end
        left_side = start == middle.start
        right_side = end == middle.end
        if prop.vm_flags & VM_SPECIAL or not (left_side or right_side):
            return None
        merge_left = left_side and prev is not None and prop.can_merge_after(prev)
        nxt = None
        merge_right = False
        if right_side:
            nxt = self.next_of(middle.end)
            merge_right = (nxt is not None and prop.can_merge_before(nxt)
                           and (not merge_left or _anon_compatible(prev, nxt)))
        if not merge_left and not merge_right:
            return None
        remove_middle = left_side and right_side
        if remove_middle and middle.close_hook:
            return None
        merge_both = merge_left and merge_right
        if merge_both and nxt.close_hook:
            merge_right = merge_both = False
        if merge_both:
            _dup_anon_vma(prev, nxt if nxt.anon_vma is not None else middle)
            self._remove(middle, into=prev)
            self._remove(nxt, into=prev)
            prev.end = nxt.end
            self._store(prev)
            return prev
        if merge_left:
            _dup_anon_vma(prev, middle)
            if remove_middle:
                self._remove(middle, into=prev)
            else:
                pages.split_huge_at(middle, end)
                pages.move_range(middle, prev, start, end)
                middle.pgoff += (end - middle.start) >> PAGE_SHIFT
                middle.start = end
            prev.end = end
            self._store(prev)
            return prev
        # merge_right
        _dup_anon_vma(nxt, middle)
        if remove_middle:
            nxt.pgoff -= middle.npages
            self._remove(middle, into=nxt)
        else:
            pages.split_huge_at(middle, start)
            pages.move_range(middle, nxt, start, end)
            nxt.pgoff -= (nxt.start - start) >> PAGE_SHIFT
            middle.end = start
        nxt.start = start
        self._store(nxt)
        return nxt

    def modify(self, vma, start, end, vm_flags, anon_name=None):
        """vma_modify_flags: make ``[start, end)`` (inside ``vma``) a VMA of its own with
        ``vm_flags`` (and ``anon_name``), merging with neighbours where they are
        compatible and splitting otherwise.  Returns that VMA, flags already set."""
        prev = self.prev_of(vma.start) if start == vma.start else vma
        prop = MergeProposal.for_change(vma, start, end, vm_flags, anon_name)
        merged = self.merge_existing(prop, prev)
        if merged is not None:
            return merged
        if vma.start < start:
            self.split(vma, start, new_below=True)
        if vma.end > end:
            self.split(vma, end, new_below=False)
        vma.vm_flags = vm_flags
        self.tree.touch(vma.start)   # the flag summaries see in-place changes only so
        if anon_name is not None:
            vma.anon_name = anon_name or None
        return vma

    def split(self, vma, addr, new_below, check_limit=True):
        """split_vma / __split_vma: cut ``vma`` at ``addr``; ``vma`` keeps the upper part
        when ``new_below``, else the lower.  Returns the new VMA."""
        if check_limit and self.map_count >= self._max_map_count():
            raise error(errno.ENOMEM, "split at max_map_count")
        if vma.special is not None:
            # special_mapping_split(): the vdso and friends may not be split.
            raise error(errno.EINVAL, "cannot split a special mapping")
        pages.split_huge_at(vma, addr)
        new = dup_vma(vma)
        if new_below:
            new.end = addr
            pages.move_range(vma, new, vma.start, addr)
            vma.pgoff += (addr - vma.start) >> PAGE_SHIFT
            vma.start = addr
        else:
            new.start = addr
            new.pgoff += (addr - vma.start) >> PAGE_SHIFT
            pages.move_range(vma, new, addr, vma.end)
            vma.end = addr
        self._store(new)
        return new

    def insert(self, vma):
        """Link a new VMA into the (free) range it covers."""
        self._store(vma)
        return vma

    def unmap(self, start, end):
        """do_vmi_munmap on page-aligned ``[start, end)``: split the VMAs at the edges,
        zap and drop everything inside.  Holes are fine."""
        vma = self.find_vma_intersection(start, end)
        if vma is None:
            return
        if start > vma.start:
            # Only a split that leaves a VMA on both sides is charged against the limit.
            if end < vma.end and self.map_count >= self._max_map_count():
                raise error(errno.ENOMEM, "munmap would exceed max_map_count")
            self.split(vma, start, new_below=True, check_limit=False)
        last = self.vma_lookup(end - 1)
        if last is not None and last.end > end:
            self.split(last, end, new_below=False, check_limit=False)
        unacct = 0
        for victim in self.vmas(start, end):
            if victim.vm_flags & VM_ACCOUNT:
                unacct += victim.npages
            self._remove(victim)
        self.tree.erase(start, end)
        # vms_complete_munmap_vmas: the commitment of accounted VMAs goes back.
        overcommit.vm_unacct_memory(self.kernel, unacct)

    # ------------------------------------------------------------------ placement

    def get_unmapped_area(self, addr, length, pgoff, flags, file=None):
        """__get_unmapped_area: where a new mapping of ``length`` bytes goes."""
        if length > self.task_size:
            raise error(errno.ENOMEM)
        if file is None:
            pgoff = 0
        if flags & MAP_FIXED:
            found = addr
        elif file is None and not (flags & MAP_SHARED) and not addr and length % PMD_SIZE == 0:
            found = self._thp_area(addr, length, pgoff << PAGE_SHIFT, flags)
        else:
            found = self._arch_area(addr, length, flags)
        if found > self.task_size - length:
            raise error(errno.ENOMEM)
        if found & ~PAGE_MASK:
            raise error(errno.EINVAL)
        return found

    def _thp_area(self, addr, length, off, flags):
        """__thp_get_unmapped_area: search with a PMD of padding, then align the start."""
        padded = length + PMD_SIZE
        try:
            ret = self._arch_area(addr, padded, flags)
        except OSError:
            return self._arch_area(addr, length, flags)
        return thp_aligned(ret, addr, off, self.flags & MMF_TOPDOWN)

    def _arch_area(self, addr, length, flags):
        """arch_get_unmapped_area_topdown (x86): honour a free hint, else search down
        from mmap_base, else up from TASK_UNMAPPED_BASE."""
        if length > self.task_size:
            raise error(errno.ENOMEM)
        if flags & MAP_FIXED:
            return addr
        if addr:
            addr &= PAGE_MASK  # x86 rounds the hint down
            if self.task_size - length >= addr:
                vma = self.find_vma(addr)
                if vma is None or addr + length <= vm_start_gap(vma):
                    return addr
        if self.flags & MMF_TOPDOWN:
            found = self.unmapped_area_topdown(length, PAGE_SIZE, self.mmap_base)
            if found is not None:
                return found
        found = self.unmapped_area(length, TASK_UNMAPPED_BASE, self.task_size)
        if found is None:
            raise error(errno.ENOMEM)
        return found

    def unmapped_area_topdown(self, length, low, high):
        """The highest free range of ``length`` below ``high``, respecting stack guard
        gaps (mm/vma.c unmapped_area_topdown); None when nothing fits."""
        low = max(low, MMAP_MIN_ADDR)
        while high > low:
            s = self.tree.empty_area_rev(low, high, length)
            if s is None:
                return None
            gap_end = s + length
            nxt = self.next_of(gap_end)
            if nxt is not None and nxt.vm_flags & (VM_GROWSDOWN | VM_SHADOW_STACK):
                if vm_start_gap(nxt) < gap_end:
                    high = vm_start_gap(nxt)
                    continue
            return s
        return None

    def unmapped_area(self, length, low, high):
        """The lowest free range of ``length`` in ``[low, high)`` (unmapped_area)."""
        low = max(low, MMAP_MIN_ADDR)
        while low < high:
            s = self.tree.empty_area(low, high, length)
            if s is None:
                return None
            nxt = self.next_of(s + length)
            if nxt is not None and nxt.vm_flags & (VM_GROWSDOWN | VM_SHADOW_STACK):
                if vm_start_gap(nxt) < s + length:
                    low = nxt.end
                    continue
            return s
        return None

    # ------------------------------------------------------------------ checking

    def check(self):
        """Verify the tree and that every VMA sits exactly at its own range."""
        self.tree.check()
        for start, end, vma in self.tree.items():
            if vma.start != start or vma.end != end:
                raise AssertionError(f"{vma!r} is stored at [{start:#x}, {end:#x})")
            pages.check_vma(vma)


def _anon_compatible(prev, nxt):
    """prev and next may both be kept by a three-way merge (can_vma_merge_right)."""
    return prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma


def _dup_anon_vma(dst, src):
    """dup_anon_vma: an unfaulted target takes the anon_vma of the VMA it absorbs."""
    if src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        dst.forked = src.forked


__all__ = ["Mm", "Vma", "error", "page_align", "TASK_SIZE", "STACK_TOP", "MMAP_MIN_ADDR",
           "VM_LOCKED_MASK"]

"""The address space (``struct mm_struct``) and the one merge/modify engine every VMA
change goes through, modelled on ``mm/vma.c``: ``vma_merge_new_range``,
``vma_merge_existing_range``, ``vma_modify``, ``__split_vma`` and munmap's
gather-and-split, plus ``get_unmapped_area`` (``mm/mmap.c``, ``arch/x86``).

Failures raise ``OSError`` with the kernel's errno; argument checking belongs to the
syscall layer above.
"""

import errno
from itertools import chain, islice

from . import overcommit, pages
# The layout constants, page_align and error are re-exported for code that imports them
# from here; mmsim's own modules take them from mmsim.defs.
from .defs import (MMAP_MIN_ADDR, MMAP_RND_BITS, PAGE_SHIFT, PAGE_SIZE,  # noqa: F401
                   PMD_SIZE, RLIMIT_STACK_DEFAULT, SIZE_128M, STACK_GUARD_GAP, STACK_RND_PAGES,
                   STACK_TOP, TASK_SIZE, TASK_UNMAPPED_BASE, error, offset_in_page, page_align,
                   page_align_down)
from .uapi import MAP_32BIT, MAP_FIXED, MAP_SHARED
from .vma import (VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED_MASK, VM_MERGE_MASK, VM_SHADOW_STACK, VM_SPECIAL,
                  MergeProposal, Vma, dup_vma)
from .vma_tree import VmaTree

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

    # Every field is declared here: other modules read and set them, never add their own.
    __slots__ = ("kernel", "tree", "flags", "def_flags", "task_size", "mmap_base", "start_brk",
                 "brk", "start_stack", "start_code", "end_code", "start_data", "end_data",
                 "arg_start", "arg_end", "env_start", "env_end", "users", "user_ns",
                 "total_vm", "hiwater_vm", "rss_anon", "rss_file", "rss_shmem", "hiwater_rss",
                 "exe_file", "vdso", "fade_on_death", "mctl", "mctl_bits", "memcg",
                 "maj_flt", "min_flt", "swap_pages", "thp_collapsed")

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
        # Pages mapped, and their high-water mark as of the last unmap: /proc shows the
        # larger of the two as VmPeak, as task_mem() does.
        self.total_vm = 0
        self.hiwater_vm = 0
        self.rss_anon = self.rss_file = self.rss_shmem = 0   # resident pages
        self.hiwater_rss = 0
        self.exe_file = None   # the program's OpenFile (set by exec)
        self.vdso = 0          # where the [vdso] text is (set by exec)
        self.fade_on_death = False   # MMF_FADE_ON_DEATH: set through mctl
        self.mctl = None       # mctl's property states, made on first use (mctl.states)
        self.mctl_bits = 0     # the def_flags bits mctl put there (mctl.sync_def_flags)
        # The memory cgroup its anonymous pages are charged to (its owner's).
        self.memcg = kernel.root_memcg
        self.maj_flt = self.min_flt = 0   # page faults, major and minor
        self.swap_pages = 0   # MM_SWAPENTS: its pages out on swap
        # Huge pages made for this mm by collapse: [khugepaged, MADV_COLLAPSE] (no kernel
        # counter: per-process collapse work for mmsim.metrics).
        self.thp_collapsed = [0, 0]

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

    def set_vm_flags(self, vma, vm_flags):
        """Give the linked ``vma`` new flags in place (vm_flags_reset): the one way to
        change a VMA's flags without the merge engine, keeping the tree's per-node flag
        summaries right."""
        vma.vm_flags = vm_flags
        self.tree.touch(vma.start)

    def set_flags_until_merge(self, leaf, keep, add, prev, nxt):
        """set_vm_flags for a run of whole-VMA changes that merge with nothing: give each
        VMA of ``leaf`` (VMAs of one tree leaf, in order; ``prev`` just below them and
        ``nxt`` just above, or None) the flags ``vm_flags & keep | add``, in order, and
        stop before the first change that may merge with a neighbour: one where a
        neighbour is adjacent with flags a merge accepts.  Until then vma_modify would
        neither merge nor split.  Returns the index it stopped at, or ``len(leaf)``."""
        mask = _MERGE_BITS
        before_flags = prev.vm_flags if prev is not None else 0
        # Each VMA beside the one after it (``nxt`` after the last, or a stand-in whose
        # flags match none), unchanged yet.
        afters = chain(islice(leaf, 1, None), (nxt if nxt is not None else _NO_VMA,))
        stop = len(leaf)
        for vma, after in zip(leaf, afters):
            old = vma.vm_flags
            new = old & keep | add
            if new != old:
                # Cheapest first: adjacent neighbours usually differ in flags.
                if (before_flags ^ new) & mask and (after.vm_flags ^ new) & mask:
                    vma.vm_flags = new
                else:
                    i = leaf.index(vma)
                    before = leaf[i - 1] if i else prev
                    if (not (before_flags ^ new) & mask and before is not None
                            and before.end == vma.start):
                        stop = i
                        break
                    if (after is not _NO_VMA and not (after.vm_flags ^ new) & mask
                            and after.start == vma.end):
                        stop = i
                        break
                    vma.vm_flags = new
            before_flags = new
        if stop > 0:
            self.tree.touch(leaf[0].start)
        return stop

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
        self.total_vm += (prop.end - prop.start) >> PAGE_SHIFT
        return target

    def merge_or_insert(self, prop, prev, nxt, just_expand=False, vma=None):
        """The one "merge, else insert" step for a free range (mmap_region, brk,
        vm_brk, mremap's copy): grow a compatible neighbour over ``prop``
        (vma_merge_new_range), else link ``vma``, by default a new VMA with the
        proposal's properties.  Returns the VMA now covering the range."""
        merged = self.merge_new(prop, prev, nxt, just_expand)
        if merged is not None:
            # vma_merge_new_range registers the mm when the grown VMA is eligible.
            self.kernel.khugepaged.enter_vma(self, merged, prop.vm_flags)
            return merged
        return self.insert(prop.new_vma() if vma is None else vma)

    def expand(self, vma, new_end):
        """vma_merge_extend: grow ``vma`` up to ``new_end`` over free space, merging with
        the VMA there if it is compatible.  A VMA the merge rules refuse (VM_SPECIAL)
        cannot grow: ENOMEM, with nothing changed."""
        prop = MergeProposal.for_growth(vma, new_end)
        if self.merge_new(prop, vma, self.next_of(new_end)) is None:
            raise error(errno.ENOMEM, "the VMA cannot be expanded")
        return vma

    def merge_existing(self, prop, prev):
        """vma_merge_existing_range: ``prop`` changes part of ``prop.middle``; merge that
        part into a compatible neighbour.  The VMA now covering it, or None.  A merge
        that makes the VMA eligible registers the mm with khugepaged, as the kernel's
        does (an mprotect joining two halves of a PMD block, say)."""
        merged = self._merge_existing(prop, prev)
        if merged is not None:
            self.kernel.khugepaged.enter_vma(self, merged, prop.vm_flags)
        return merged

    def _merge_existing(self, prop, prev):
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
                pages.split_huge_at(middle, end, self)
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
            pages.split_huge_at(middle, start, self)
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
        self.set_vm_flags(vma, vm_flags)
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
        new = self._cut(vma, addr, new_below, self)
        self._store(new)
        return new

    @staticmethod
    def _cut(vma, addr, new_below, mm=None):
        """split's work on the VMAs and their pages, leaving the tree to the caller: the
        new VMA, not linked yet."""
        pages.split_huge_at(vma, addr, mm)
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
        return new

    def insert(self, vma):
        """Link a new VMA into the range it covers, which must be free: an overlap is an
        internal error that ``check()`` reports, not something to refuse here."""
        self._store(vma)
        self.total_vm += (vma.end - vma.start) >> PAGE_SHIFT
        return vma

    def unmap(self, start, end):
        """do_vmi_munmap on page-aligned ``[start, end)``: split the VMAs at the edges,
        zap and drop everything inside.  Holes are fine."""
        victims = self.tree.values(start, end)
        if victims:
            self.unmap_vmas(victims, start, end)

    def unmap_vmas(self, victims, start, end, overwrite=False):
        """unmap of ``[start, end)`` given ``victims``, every VMA overlapping it, in
        order (the edge ones may reach past it).  Returns the VMAs the edge splits left
        below ``start`` and above ``end`` (None where there was no split), which are the
        neighbours a new mapping of the range sees.

        With ``overwrite`` (mmap over mapped space) the range is left in the tree: the
        caller's store of the new mapping over it must follow, then ``relink`` of the
        two VMAs returned, so the whole replacement costs one tree store.  Until then
        the tree still shows the old VMAs there (prev_of(start) and next_of(end) still
        find the right neighbours when there was no split on that side)."""
        vma = victims[0]
        last = victims[-1]
        if (not overwrite and vma.start >= start and last.end <= end
                and len(victims) == len(self.tree)):
            self._unmap_all()
            return None, None
        cut_below = start > vma.start
        cut_above = last.end > end
        # Only a split that leaves a VMA on both sides is charged against the limit.
        if cut_below and end < vma.end and self.map_count >= self._max_map_count():
            raise error(errno.ENOMEM, "munmap would exceed max_map_count")
        if (cut_below and vma.special is not None) or (cut_above and last.special is not None):
            # A split refused (special_mapping_split): as in the kernel, a split made
            # before it stays.
            if cut_below:
                self.split(vma, start, new_below=True, check_limit=False)
            self.split(last, end, new_below=False, check_limit=False)
        # The splits, done on the VMAs only: the tree learns of them in relink().
        # (After the first, ``last`` may be ``vma``: it now starts at ``start``.)
        below = self._cut(vma, start, True, self) if cut_below else None
        above = self._cut(last, end, False, self) if cut_above else None
        if self.total_vm > self.hiwater_vm:
            self.hiwater_vm = self.total_vm   # update_hiwater_vm, before total_vm drops
        unacct = 0
        pages.hold_folios(self.kernel)
        for victim in victims:
            self.total_vm -= (victim.end - victim.start) >> PAGE_SHIFT
            if victim.vm_flags & VM_ACCOUNT:
                unacct += victim.npages
            self._remove(victim)
        if not overwrite:
            self.tree.erase(start, end)
            self.relink(below, above)
        pages.settle_folios(self.kernel)
        # vms_complete_munmap_vmas: the commitment of accounted VMAs goes back.
        overcommit.vm_unacct_memory(self.kernel, unacct)
        return below, above

    def relink(self, below, above, new=None):
        """After ``unmap_vmas``: the tree keeps the split VMAs' old entries on either
        side of the freed (or overwritten) range; put ``below`` and ``above`` there, the
        ones not merged into ``new`` (the VMA stored over the range, if any).  Each is
        an exact overwrite of one range: the cheapest store there is."""
        tree = self.tree
        if below is not None and below is not new:
            tree.store(below.start, below.end, below)
        if above is not None and above is not new and (new is None or new.end <= above.start):
            tree.store(above.start, above.end, above)

    def _unmap_all(self):
        """unmap of a range that holds every VMA (exit_mmap, exec's old mm): no split,
        and a new empty tree instead of erasing the old one range by range."""
        victims = self.tree.values()
        if self.total_vm > self.hiwater_vm:
            self.hiwater_vm = self.total_vm   # update_hiwater_vm, before total_vm drops
        zap = pages.zap_vma
        account = VM_ACCOUNT
        size = unacct = 0
        for victim in victims:
            start = victim.start
            end = victim.end
            size += end - start
            if victim.vm_flags & account:
                unacct += end - start
            zap(self, victim, start, end)
        self.total_vm -= size >> PAGE_SHIFT
        self.tree = VmaTree()
        overcommit.vm_unacct_memory(self.kernel, unacct >> PAGE_SHIFT)

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
        elif file is not None and file.mappable and file.inode.thp_area:
            # The filesystem's get_unmapped_area is thp_get_unmapped_area (ext4, xfs).
            found = self._thp_area(addr, length, pgoff << PAGE_SHIFT, flags)
        else:
            found = self._arch_area(addr, length, flags)
        if found > self.task_size - length:
            raise error(errno.ENOMEM)
        if offset_in_page(found):
            raise error(errno.EINVAL)
        return found

    def _thp_area(self, addr, length, off, flags):
        """__thp_get_unmapped_area: search with a PMD of padding, then align the start;
        the ordinary search when the mapping covers no whole PMD-aligned 2 MiB of the
        file (anonymous memory: offset 0, a PMD multiple long, always does)."""
        off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
        if off + length <= off_align or off + length - off_align < PMD_SIZE:
            return self._arch_area(addr, length, flags)
        padded = length + PMD_SIZE
        try:
            ret = self._arch_area(addr, padded, flags)
        except OSError:
            return self._arch_area(addr, length, flags)
        return thp_aligned(ret, addr, off, self.flags & MMF_TOPDOWN and not flags & MAP_32BIT)

    def _arch_area(self, addr, length, flags):
        """arch_get_unmapped_area_topdown (x86): honour a free hint, else search down
        from mmap_base, else up from TASK_UNMAPPED_BASE."""
        if length > self.task_size:
            raise error(errno.ENOMEM)
        if flags & MAP_FIXED:
            return addr
        if flags & MAP_32BIT:
            return self._area_32bit(addr, length)
        if addr:
            addr = page_align_down(addr)  # x86 rounds the hint down
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

    def _area_32bit(self, addr, length):
        """MAP_32BIT (x86 find_start_end): a bottom-up search of [1 GiB, 2 GiB), its
        start moved up by a random up to 32 MiB when layouts are randomised."""
        begin, end = 0x40000000, 0x80000000
        if self.kernel.randomize:
            begin += self.kernel.rng.randrange(0x02000000 >> PAGE_SHIFT) << PAGE_SHIFT
        if length > end:
            raise error(errno.ENOMEM)
        if addr:
            addr = page_align(addr)
            vma = self.find_vma(addr)
            if end - length >= addr and (vma is None or addr + length <= vm_start_gap(vma)):
                return addr
        found = self.unmapped_area(length, begin, end)
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
        """Verify the tree, that every VMA sits exactly at its own range, and that
        total_vm counts their pages."""
        self.tree.check()
        total = 0
        for start, end, vma in self.tree.items():
            if vma.start != start or vma.end != end:
                raise AssertionError(f"{vma!r} is stored at [{start:#x}, {end:#x})")
            pages.check_vma(vma)
            total += (end - start) >> PAGE_SHIFT
        if total != self.total_vm:
            raise AssertionError(f"total_vm is {self.total_vm} pages, the VMAs hold {total}")


# VM_MERGE_MASK as a non-negative int (flags are below 2**64): & on it is cheaper.
_MERGE_BITS = VM_MERGE_MASK & ((1 << 64) - 1)


class _NoVma:
    """What set_flags_until_merge puts after the last VMA when nothing follows: flags
    with a merge-relevant bit no VMA has (bit 63), so they never match.  (Were one to
    match, the careful path, which knows this stand-in, would take the VMA.)"""

    __slots__ = ()
    vm_flags = 1 << 63


_NO_VMA = _NoVma()


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

"""The memory model: resident pages behind each VMA, page faults, zapping, and the
bookkeeping that keeps pages with their VMA when VMAs split, merge or move.

A VMA keeps PTE-mapped pages in ``vma.pages`` (page number -> Page) and PMD-mapped
THPs in ``vma.huge`` (page number of the first page -> Page).  A Page shared with
other address spaces (after fork) carries a ``mapcount`` above one.  Guard markers
(``vma.guards``) are page ranges, so a guard region costs the same at any size.
"""

import errno
from bisect import bisect_left, bisect_right

from . import pagecache, thp
from .defs import (HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_down, align_up, error,
                   pfn_up)
from .vma import (VM_MAYSHARE, VM_READ, VM_SHARED,
                  VM_RAND_READ, VM_SEQ_READ, VM_WRITE, AnonVma)

PMD_PAGES = HPAGE_PMD_NR


class Page:
    """A folio mapped somewhere: base (order 0) or a PMD-sized THP (order 9)."""

    __slots__ = ("mapcount", "anon", "dirty", "order", "referenced", "lru", "cache")

    def __init__(self, anon=True, dirty=True, order=0, mapcount=1):
        self.mapcount = mapcount
        self.anon = anon
        self.dirty = dirty
        self.order = order
        # PG_referenced: set when a FOLL_TOUCH populate (mlock, MAP_POPULATE) marks the
        # folio accessed; counts as Referenced through any mapping, old PTE or not.
        self.referenced = False
        # A page-cache folio of a regular file: its LRU list and the FileLru holding it.
        self.lru = None
        self.cache = None


class GuardRanges:
    """The guard markers of one VMA (MADV_GUARD_INSTALL) as sorted, disjoint,
    non-touching half-open page-number ranges ``[lo, hi)``."""

    __slots__ = ("starts", "ends")

    def __init__(self, ranges=()):
        self.starts = []
        self.ends = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def __bool__(self):
        return bool(self.starts)

    def __contains__(self, vpn):
        i = bisect_right(self.starts, vpn) - 1
        return i >= 0 and vpn < self.ends[i]

    def __eq__(self, other):
        return (isinstance(other, GuardRanges) and self.starts == other.starts
                and self.ends == other.ends)

    def __repr__(self):
        return f"GuardRanges({self.ranges()!r})"

    def ranges(self):
        """The ranges as a list of ``(lo, hi)`` pairs, in order."""
        return list(zip(self.starts, self.ends))

    def npages(self):
        """How many pages carry a marker."""
        return sum(e - s for s, e in zip(self.starts, self.ends))

    def add(self, lo, hi):
        """Mark every page of ``[lo, hi)``."""
        if lo >= hi:
            return
        i = bisect_left(self.ends, lo)       # first range ending at or after lo
        j = bisect_right(self.starts, hi)    # ranges starting at or before hi
        if i < j:
            lo = min(lo, self.starts[i])
            hi = max(hi, self.ends[j - 1])
        self.starts[i:j] = [lo]
        self.ends[i:j] = [hi]

    def remove(self, lo, hi):
        """Drop the markers in ``[lo, hi)``."""
        if lo >= hi:
            return
        i = bisect_right(self.ends, lo)      # first range ending after lo
        j = bisect_left(self.starts, hi)     # ranges starting before hi
        if i >= j:
            return
        starts, ends = [], []
        if self.starts[i] < lo:
            starts.append(self.starts[i])
            ends.append(lo)
        if self.ends[j - 1] > hi:
            starts.append(hi)
            ends.append(self.ends[j - 1])
        self.starts[i:j] = starts
        self.ends[i:j] = ends

    def first_in(self, lo, hi):
        """The lowest marked page in ``[lo, hi)``, or None."""
        i = bisect_right(self.ends, lo)
        if i < len(self.starts) and self.starts[i] < hi:
            return max(self.starts[i], lo)
        return None

    def take(self, lo, hi):
        """Remove and return the markers in ``[lo, hi)`` (None when there are none)."""
        if self.first_in(lo, hi) is None:
            return None
        part = GuardRanges()
        i = bisect_right(self.ends, lo)
        while i < len(self.starts) and self.starts[i] < hi:
            part.starts.append(max(self.starts[i], lo))
            part.ends.append(min(self.ends[i], hi))
            i += 1
        self.remove(lo, hi)
        return part

    def update(self, other):
        """Add every marker of ``other``."""
        for lo, hi in other.ranges():
            self.add(lo, hi)

    def shifted(self, delta):
        """A copy moved by ``delta`` pages."""
        out = GuardRanges()
        out.starts = [s + delta for s in self.starts]
        out.ends = [e + delta for e in self.ends]
        return out

    def copy(self):
        """An independent copy."""
        return self.shifted(0)


def merge_guards(dst, marks):
    """Give ``dst`` the guard markers ``marks`` (a GuardRanges or None) as well."""
    if marks:
        if dst.guards is None:
            dst.guards = GuardRanges()
        dst.guards.update(marks)


def _pages(vma):
    if vma.pages is None:
        vma.pages = {}
    return vma.pages


def _huge(vma):
    if vma.huge is None:
        vma.huge = {}
    return vma.huge


def rss_pages(vma):
    """Resident pages of ``vma``, a THP counting 512."""
    n = len(vma.pages) if vma.pages else 0
    if vma.huge:
        n += len(vma.huge) * PMD_PAGES
    return n


def split_huge_at(vma, addr):
    """split_huge_pmd: a THP straddling ``addr`` becomes 512 PTE-mapped pages."""
    if not vma.huge or not addr % PMD_SIZE:
        return
    head = align_down(addr, PMD_SIZE) >> PAGE_SHIFT
    page = vma.huge.pop(head, None)
    if page is None:
        return
    _remap_as_base(vma, head, page)


def _remap_as_base(vma, head, page):
    base = _pages(vma)
    for vpn in range(head, head + PMD_PAGES):
        small = base[vpn] = Page(page.anon, page.dirty, 0, page.mapcount)
        small.referenced = page.referenced
    if vma.old and head in vma.old:
        vma.old.update(range(head, head + PMD_PAGES))


def move_range(src, dst, start, end):
    """Hand the pages of ``src`` in ``[start, end)`` to ``dst`` (THPs at the edges must
    have been split already)."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    if src.pages:
        if hi - lo < len(src.pages):
            keys = [vpn for vpn in range(lo, hi) if vpn in src.pages]
        else:
            keys = [vpn for vpn in src.pages if lo <= vpn < hi]
        if keys:
            d = _pages(dst)
            for vpn in keys:
                d[vpn] = src.pages.pop(vpn)
    if src.huge:
        keys = [vpn for vpn in src.huge if lo <= vpn < hi]
        if keys:
            d = _huge(dst)
            for vpn in keys:
                d[vpn] = src.huge.pop(vpn)
    if src.guards:
        merge_guards(dst, src.guards.take(lo, hi))
    marks = src.old
    if marks:
        keys = {vpn for vpn in marks if lo <= vpn < hi}
        if keys:
            marks -= keys
            dst.old = (dst.old or set()) | keys


def move_all(src, dst):
    """Hand every page (and guard marker) of ``src`` to ``dst`` (a merge)."""
    if src.pages:
        _pages(dst).update(src.pages)
        src.pages = None
    if src.huge:
        _huge(dst).update(src.huge)
        src.huge = None
    if src.guards:
        merge_guards(dst, src.guards)
        src.guards = None
    if src.old:
        dst.old = (dst.old or set()) | src.old
        src.old = None


def install_guards(mm, vma, start, end):
    """MADV_GUARD_INSTALL: zap ``[start, end)`` and mark every page in it."""
    zap_vma(mm, vma, start, end)
    if vma.guards is None:
        vma.guards = GuardRanges()
    vma.guards.add(start >> PAGE_SHIFT, end >> PAGE_SHIFT)


def remove_guards(vma, start, end):
    """MADV_GUARD_REMOVE: drop the markers in ``[start, end)``."""
    if vma.guards:
        vma.guards.remove(start >> PAGE_SHIFT, end >> PAGE_SHIFT)
        if not vma.guards:
            vma.guards = None


def first_guard(vma, start, end):
    """The address of the first guard-marked page of ``[start, end)`` in ``vma``, or None."""
    if not vma.guards:
        return None
    vpn = vma.guards.first_in(start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT)
    return None if vpn is None else vpn << PAGE_SHIFT


def guarded(vma, start, end):
    """Whether any page of ``[start, end)`` in ``vma`` carries a guard marker."""
    return first_guard(vma, start, end) is not None


def resident_in(vma, start, end):
    """Pages of ``vma`` resident in ``[start, end)`` (a THP counts the pages it has
    there), found in time proportional to the smaller of the range and the pages."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    n = 0
    if vma.pages:
        if hi - lo < len(vma.pages):
            n += sum(1 for vpn in range(lo, hi) if vpn in vma.pages)
        else:
            n += sum(1 for vpn in vma.pages if lo <= vpn < hi)
    for head in vma.huge or ():
        n += max(0, min(hi, head + PMD_PAGES) - max(lo, head))
    return n


def _resident_vpns(vma, lo, hi):
    """One page number inside each resident page or THP of ``vma`` in ``[lo, hi)``."""
    found = []
    if vma.pages:
        if hi - lo < len(vma.pages):
            found += [vpn for vpn in range(lo, hi) if vpn in vma.pages]
        else:
            found += [vpn for vpn in vma.pages if lo <= vpn < hi]
    for head in vma.huge or ():
        if head < hi and head + PMD_PAGES > lo:
            found.append(max(head, lo))
    found.sort()
    return found


def zero_page_read(vma, write):
    """A read of a missing page of a private anonymous VMA maps the shared zero page:
    nothing is allocated and nothing observable changes."""
    return not write and vma.file is None and not vma.vm_flags & VM_MAYSHARE


def populate_cost(vma, start, end, write):
    """An upper bound on the pages a fault of every page of ``[start, end)`` makes
    resident: the pages not resident yet (below EOF for a file), none for reads of
    private anonymous memory."""
    if zero_page_read(vma, write):
        return 0
    if vma.file is not None:
        if not write:
            # A read fault maps the cached pages of its fault-around window too: the
            # aligned block, or 16 pages from the VMA's start when that cuts the block.
            block = FAULT_AROUND_PAGES << PAGE_SHIFT
            start = max(vma.start, align_down(start, block))
            end = min(vma.end, max(align_up(end, block), start + block))
        eof = pfn_up(vma.file.inode.size)
        first = vma.pgoff_at(start)
        end = min(end, start + max(0, eof - first) * PAGE_SIZE)
        if end <= start:
            return 0
    return max(0, ((end - start) >> PAGE_SHIFT) - resident_in(vma, start, end))


def machine_resident(kernel):
    """Simulator-defined resident total: the RSS of every address space (a page shared
    after fork counts once per mapper), kept up to date by every rss change."""
    return kernel.nr_resident


def resident_by_mms(kernel):
    """``machine_resident`` recomputed from the live address spaces (a checking aid)."""
    seen = set()
    n = 0
    for proc in kernel.processes.values():
        mm = proc.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        n += mm.rss_anon + mm.rss_file + mm.rss_shmem
    return n


def check_room(mm, need):
    """Raise ENOMEM when ``need`` more resident pages would take the machine past its
    memory (``Kernel(memory=...)``): where the kernel would start the OOM killer, the
    simulator refuses before doing anything (docs/mm.md)."""
    if need and machine_resident(mm.kernel) + need > mm.kernel.memory >> PAGE_SHIFT:
        raise error(errno.ENOMEM, "more than the machine's memory")


def populate(mm, vma, start, end, write, force=False, touch=False):
    """Fault every page of ``[start, end)`` in ``vma`` in order (GUP, or a loop of
    accesses).  Where a missing page would only map the zero page, only the resident
    pages are visited, so a huge read of untouched anonymous memory costs nothing."""
    policy = mm.kernel.thp
    if not zero_page_read(vma, write):
        addr = start
        while addr < end:
            fault(mm, vma, addr, write, policy, force, touch)
            head = (addr >> PAGE_SHIFT) & ~(PMD_PAGES - 1)
            if vma.huge and head in vma.huge:
                # The other faults inside a PMD-mapped THP would repeat what this one
                # did (young, accessed, dirty): go on after it.
                addr = max(addr + PAGE_SIZE, (head + PMD_PAGES) << PAGE_SHIFT)
            else:
                addr += PAGE_SIZE
        return
    fault(mm, vma, start, write, policy, force, touch)   # the access checks, once
    stop = first_guard(vma, start, end)
    lo = (start >> PAGE_SHIFT) + 1
    hi = (stop if stop is not None else end) >> PAGE_SHIFT
    for vpn in _resident_vpns(vma, lo, hi):
        fault(mm, vma, vpn << PAGE_SHIFT, write, policy, force, touch)
    if stop is not None and stop > start:
        fault(mm, vma, stop, write, policy, force, touch)   # EFAULT on the guard page


def _kind(vma, page):
    """Which rss counter a page is charged to: anon, shmem or file."""
    if page.anon:
        return "rss_anon"
    return "rss_shmem" if vma.file is not None and vma.file.shmem else "rss_file"


def _charge(mm, vma, page, n):
    counter = _kind(vma, page)
    setattr(mm, counter, getattr(mm, counter) + n)
    mm.kernel.nr_resident += n
    if n > 0:
        total = mm.rss_anon + mm.rss_file + mm.rss_shmem
        if total > mm.hiwater_rss:
            mm.hiwater_rss = total


def _drop(mm, vma, page, n=1):
    page.mapcount -= 1
    if page.mapcount == 0 and page.cache is not None:
        page.cache.nr_mapped -= 1
    _charge(mm, vma, page, -n)


def _map_cached(page):
    page.mapcount += 1
    if page.mapcount == 1 and page.cache is not None:
        page.cache.nr_mapped += 1


def _touch(page):
    """FOLL_TOUCH's folio_mark_accessed (only the page cache has LRU lists here)."""
    if page.cache is not None:
        page.cache.mark_accessed(page)
    else:
        page.referenced = True


def has_recency(vma):
    """vma_has_recency: MADV_SEQUENTIAL and MADV_RANDOM mappings do not age the LRU."""
    return not vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ)


def zap_vma(mm, vma, start, end):
    """Unmap the pages of ``vma`` in ``[start, end)`` (zap_page_range_single)."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    if vma.huge:
        for head in [h for h in vma.huge if h < hi and h + PMD_PAGES > lo]:
            if head < lo or head + PMD_PAGES > hi:
                # A partial zap splits the PMD first, then drops the covered pages.
                _remap_as_base(vma, head, vma.huge.pop(head))
            else:
                _drop(mm, vma, vma.huge.pop(head), PMD_PAGES)
    if vma.pages:
        if hi - lo < len(vma.pages):
            keys = [vpn for vpn in range(lo, hi) if vpn in vma.pages]
        else:
            keys = [vpn for vpn in vma.pages if lo <= vpn < hi]
        # Zapping a young PTE of a page-cache folio marks it accessed, unless the mm is
        # being torn down with FADE_ON_DEATH on: then the folio is not promoted, and
        # one this mapping alone maps goes to the inactive list.
        fade = mm.users == 0 and mm.fade_on_death
        recency = not fade and has_recency(vma)
        pop = vma.pages.pop
        for vpn in keys:
            page = pop(vpn)
            lru = page.cache
            if lru is None:
                _drop(mm, vma, page)
            elif fade:
                _drop(mm, vma, page)
                if page.mapcount == 0:
                    lru.deactivate_file(page)
            else:
                if recency and is_young(vma, vpn):
                    lru.mark_accessed(page)
                _drop(mm, vma, page)


def punch_hole(kernel, inode, lo, hi):
    """shmem_fallocate(PUNCH_HOLE) for file pages ``[lo, hi)``: every mapping of them
    in every address space loses them (unmap_mapping_range), then the cache does."""
    seen = set()
    for proc in kernel.processes.values():
        mm = proc.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        for vma in mm.tree.values():
            if vma.file is None or vma.file.inode is not inode:
                continue
            first = vma.pgoff
            last = first + ((vma.end - vma.start) >> PAGE_SHIFT)
            if first < hi and lo < last:
                zap_vma(mm, vma, vma.start + (max(lo, first) - first) * PAGE_SIZE,
                        vma.start + (min(hi, last) - first) * PAGE_SIZE)
    cache = inode.cache
    for index in [i for i in cache if lo <= i < hi]:
        del cache[index]


def truncate_pages(kernel, inode, lo, hi=1 << 64):
    """truncate_pagecache_range: file pages ``[lo, hi)`` leave every mapping (private
    copies included) and then the page cache and its LRU."""
    gone = [page for index, page in inode.cache.items() if lo <= index < hi]
    if hi > lo:
        punch_hole(kernel, inode, lo, hi)
    for page in gone:
        if page.cache is not None:
            page.cache.remove(page)


def anon_vma_prepare(vma):
    """Give ``vma`` an anon_vma on its first anonymous fault (anon_vma_prepare)."""
    if vma.anon_vma is None:
        vma.anon_vma = AnonVma()
        vma.forked = False
    return vma.anon_vma


def fault(mm, vma, addr, write, policy, force=False, touch=False):
    """Handle a fault at ``addr`` inside ``vma``: raise EFAULT where the kernel would
    deliver SIGSEGV, else make the page resident.  Returns the number of new pages.
    ``force`` is FOLL_FORCE: populate through missing read or write permission;
    ``touch`` is FOLL_TOUCH: the folio is marked accessed (PG_referenced)."""
    vm_flags = vma.vm_flags
    need = VM_WRITE if write else VM_READ
    if (not vm_flags & need and not force) or vma.special is not None:
        raise OSError(errno.EFAULT, "fault on a page without access")
    vpn = addr >> PAGE_SHIFT
    if vma.guards and vpn in vma.guards:
        raise OSError(errno.EFAULT, "fault on a guard page")
    head = vpn & ~(PMD_PAGES - 1)
    # Any access makes the PTE young; a page faulted anew starts young.
    _make_young(vma, vpn)
    if vma.huge and head in vma.huge:
        page = vma.huge[head]
        if write and page.mapcount > 1:
            # A write to a shared THP: the kernel splits the PMD and copies one page.
            _remap_as_base(vma, head, vma.huge.pop(head))
        else:
            _make_young(vma, head)
            if touch:
                _touch(page)
            if write:
                page.dirty = True
            return 0
    if vma.pages and vpn in vma.pages:
        page = vma.pages[vpn]
        _make_young(vma, vpn)
        if touch:
            _touch(page)
        if write:
            if page.mapcount > 1 or not page.anon and not vm_flags & VM_SHARED:
                # Copy on write: a private copy replaces the shared page.
                _drop(mm, vma, page)
                anon_vma_prepare(vma)
                new = vma.pages[vpn] = Page(anon=True, dirty=True)
                new.referenced = touch
                _charge(mm, vma, new, 1)
            else:
                page.dirty = True
        return 0
    shared = vm_flags & VM_MAYSHARE
    if vma.file is None and not shared:
        if not write:
            return 0  # the shared zero page: nothing resident, no anon_vma
        anon_vma_prepare(vma)
        if (thp.allowed(vma, mm.flags, policy, thp.TVA_PAGEFAULT)
                and head << PAGE_SHIFT >= vma.start
                and (head + PMD_PAGES) << PAGE_SHIFT <= vma.end
                and not _any_base_in(vma, head)):
            page = _huge(vma)[head] = Page(anon=True, dirty=True, order=9)
            _make_young(vma, head)
            page.referenced = touch
            _charge(mm, vma, page, PMD_PAGES)
            return PMD_PAGES
        page = _pages(vma)[vpn] = Page(anon=True, dirty=True)
        page.referenced = touch
        _charge(mm, vma, page, 1)
        return 1
    # File or shared memory.  A regular file's page comes from the page cache (read
    # into it on first use); a private write maps a copy of it instead.
    cached = None
    if vma.file is not None:
        shmem = vma.file.shmem
        if not write:
            n = _fault_around(mm, vma, vpn, shmem)
            page = vma.pages.get(vpn) if vma.pages else None
            if page is not None:
                if touch:
                    _touch(page)
                return n
        index = vma.pgoff + vpn - (vma.start >> PAGE_SHIFT)
        if index << PAGE_SHIFT >= vma.file.inode.size:
            # filemap_fault / shmem_fault: a page wholly past EOF is SIGBUS (after the
            # fault-around above has mapped what lies below EOF).
            raise OSError(errno.EFAULT, "SIGBUS: page beyond the end of the file")
        if shmem:
            # shmem_fault: the file's folio, allocated (even for a read) if not there;
            # it stays in the shmem cache when unmapped, for every mapper to find.
            if shared or not write:
                cache = vma.file.inode.cache
                cached = cache.get(index)
                if cached is None:
                    cached = cache[index] = Page(anon=False, dirty=False, mapcount=0)
        else:
            cached = pagecache.find_or_read(mm.kernel.file_lru, vma.file.inode, index, Page)
    if write and not shared:
        anon_vma_prepare(vma)
        page = _pages(vma)[vpn] = Page(anon=True, dirty=True)
        page.referenced = touch
    elif cached is not None:
        page = _pages(vma)[vpn] = cached
        _map_cached(page)
        if write:
            page.dirty = True
        if touch:
            _touch(page)
    else:
        page = _pages(vma)[vpn] = Page(anon=False, dirty=bool(write))
        page.referenced = touch
    _charge(mm, vma, page, 1)
    return 1


FAULT_AROUND_PAGES = 16   # fault_around_bytes, 64 KiB by default, in pages


def _fault_around(mm, vma, vpn, shmem=False):
    """do_fault_around + filemap_map_pages: a read fault on a file also maps the file's
    cached pages in the aligned 16-page block around it, inside the VMA and the page
    table.  A regular file's every page below EOF counts as cached (docs/mm.md); shmem
    has only the pages written or faulted so far.  Returns how many pages it mapped."""
    inode = vma.file.inode
    npages = pfn_up(inode.size)
    cache = inode.cache
    first = vma.start >> PAGE_SHIFT
    pte = vpn & (PMD_PAGES - 1)
    lo = max(pte & ~(FAULT_AROUND_PAGES - 1), pte - min(pte, vpn - first))
    hi = min(lo + FAULT_AROUND_PAGES, PMD_PAGES, pte + (vma.end >> PAGE_SHIFT) - vpn)
    base = vpn - pte
    pages = _pages(vma)
    guards = vma.guards
    lru = mm.kernel.file_lru
    n = 0
    for v in range(base + lo, base + hi):
        index = vma.pgoff + v - first
        if v in pages or index >= npages or (guards and v in guards):
            continue
        if shmem:
            page = cache.get(index)
            if page is None:
                continue
            pages[v] = page
        else:
            page = pages[v] = pagecache.find_or_read(lru, inode, index, Page)
        _map_cached(page)
        _charge(mm, vma, page, 1)
        _make_young(vma, v)
        n += 1
    return n


def _make_young(vma, vpn):
    if vma.old:
        vma.old.discard(vpn)


def _any_base_in(vma, head):
    pages = vma.pages
    if not pages:
        return False
    if len(pages) < PMD_PAGES:
        return any(head <= vpn < head + PMD_PAGES for vpn in pages)
    return any(vpn in pages for vpn in range(head, head + PMD_PAGES))


def collapse(mm, vma, start, end):
    """MADV_COLLAPSE over ``[start, end)``: every aligned 2 MiB block inside it that has
    at least one resident page becomes one THP.  Returns True when every block did;
    a range inside a single block, with no block in it, fails like the kernel's
    ``thps == (hend - hstart) >> HPAGE_PMD_SHIFT`` test with hstart past hend."""
    ok = True
    first = align_up(start, PMD_SIZE)
    last = align_down(end, PMD_SIZE)
    if first > last:
        return False
    anon = vma.file is None
    # Only blocks holding something need work; any other block fails the call
    # (SCAN_PMD_NULL: nothing to collapse), however large the range.
    lo, hi = first >> PAGE_SHIFT, last >> PAGE_SHIFT
    held = {vpn & ~(PMD_PAGES - 1) for vpn in _resident_vpns(vma, lo, hi)}
    if len(held) < (hi - lo) // PMD_PAGES:
        ok = False
    for head in sorted(held):
        if vma.huge and head in vma.huge:
            continue
        present = [vpn for vpn in range(head, head + PMD_PAGES) if vma.pages and vpn in vma.pages]
        for vpn in present:
            _drop(mm, vma, vma.pages.pop(vpn))
        page = _huge(vma)[head] = Page(anon=anon, dirty=True, order=9)
        _charge(mm, vma, page, PMD_PAGES)
    return ok


def deactivate(vma, start, end):
    """MADV_COLD: make the PTEs old and clear PG_referenced for the pages in
    ``[start, end)``; an active page-cache folio moves to the inactive list (the
    anonymous LRU is not modelled)."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    old = vma.old if vma.old is not None else set()
    # Folios other mappings share are left alone altogether: PTE, flag and list.
    for vpn, page in (vma.pages or {}).items():
        if lo <= vpn < hi and page.mapcount == 1:
            page.referenced = False
            if page.cache is not None:
                page.cache.deactivate(page)
            old.add(vpn)
    for head, page in (vma.huge or {}).items():
        if lo <= head and head + PMD_PAGES <= hi and page.mapcount == 1:
            page.referenced = False
            old.add(head)
    vma.old = old


def is_young(vma, vpn):
    """The mapping's PTE (or PMD) for page ``vpn`` has its accessed bit set."""
    return not vma.old or vpn not in vma.old


def share_pages(mm, src, dst):
    """copy_page_range for fork: the child maps the very same pages (copy on write for
    private memory), each one's mapcount going up by one."""
    if src.pages:
        dst.pages = dict(src.pages)
        for page in dst.pages.values():
            page.mapcount += 1
            _charge(mm, dst, page, 1)
    if src.huge:
        dst.huge = dict(src.huge)
        for page in dst.huge.values():
            page.mapcount += 1
            _charge(mm, dst, page, PMD_PAGES)
    if src.guards:
        dst.guards = src.guards.copy()
    # copy_present_pte(): the child's PTEs start out old.
    dst.old = set(dst.pages or ()) | set(dst.huge or ())


def check_vma(vma):
    """Pages lie inside their VMA and THPs are aligned and do not overlap base pages."""
    lo, hi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
    for vpn in vma.pages or ():
        if not lo <= vpn < hi:
            raise AssertionError(f"page {vpn:#x} lies outside {vma!r}")
    for first, last in vma.guards.ranges() if vma.guards else ():
        if not lo <= first < last <= hi:
            raise AssertionError(f"guard markers [{first:#x}, {last:#x}) lie outside {vma!r}")
    for head in vma.huge or ():
        if head % PMD_PAGES or head < lo or head + PMD_PAGES > hi:
            raise AssertionError(f"THP at page {head:#x} does not fit {vma!r}")
        if vma.pages and any(head <= vpn < head + PMD_PAGES for vpn in vma.pages):
            raise AssertionError(f"THP at page {head:#x} overlaps base pages")


__all__ = ["Page", "fault", "zap_vma", "move_range", "move_all", "split_huge_at", "collapse",
           "rss_pages", "check_vma", "PAGE_SIZE"]

"""File I/O through the page cache (mm/filemap.c, mm/fadvise.c, mm/truncate.c,
generic_perform_write): read(2) with readahead, write(2) into cached dirty pages,
fsync's writeback, and posix_fadvise.  It runs the plans of ``readahead`` on a file's
``Inode.cache`` through ``pagecache``: the pages a plan reads are added (charged to
the reader's memory cgroup, counted in pgpgin) and the folio it marks carries
PG_readahead.

A marked folio is modelled on base pages: each page of it holds, in ``page.readahead``,
the folio's size in pages (0 when unmarked), so a read reaching any of them starts the
next readahead and clears the mark on all of them.  Writeback is immediate: a dirty
page becomes clean at fsync (or when fadvise(DONTNEED) starts writeback).
"""

import errno

from . import pagecache, readahead
from .defs import PAGE_SHIFT, PAGE_SIZE
from .readahead import (POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE, POSIX_FADV_NORMAL,
                        POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED)

#: /proc/vmstat's pgpgin counts KiB read from storage.
_KB_PER_PAGE = PAGE_SIZE >> 10
#: sb->s_maxbytes of the simulated file systems (MAX_LFS_FILESIZE).
MAX_BYTES = (1 << 63) - 1
_LLONG_MAX = (1 << 63) - 1
FADVICES = (POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL,
            POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE)


def count_pgpgin(memcg, nr):
    """Count ``nr`` pages read from storage in /proc/vmstat's pgpgin (KiB)."""
    memcg.node.events["pgpgin"] += nr * _KB_PER_PAGE


def read_page(kernel, memcg, inode, index, charged=False, order=0):
    """Read page ``index`` into the cache (filemap_create_folio, or one page of a
    readahead): a new folio on the LRU, counted as read from storage."""
    page = pagecache.add(kernel, memcg, inode, index, charged=charged, order=order)
    count_pgpgin(memcg, 1)
    return page


def run_plan(kernel, memcg, inode, plan):
    """Read what a readahead ``plan`` decided and set its marker.  Readahead is best
    effort, as ``ra_alloc_folio`` failing stops it: the first page the cgroup cannot
    get (ENOMEM) ends the plan there.  Returns the pages read."""
    cache = inode.cache
    n = 0
    heads = dict(plan.folios)
    try:
        for lo, hi in plan.ranges:
            index = lo
            while index < hi:
                order = heads.get(index, 0)
                nr = 1 << order
                if order and not any(i in cache for i in range(index, index + nr)):
                    # A large folio is charged whole (mem_cgroup_charge of the folio),
                    # so a charge at the limit reclaims at least its size.
                    kernel.try_charge(memcg, nr)
                    for i in range(index, index + nr):
                        read_page(kernel, memcg, inode, i, charged=True, order=order)
                    n += nr
                    index += nr
                    continue
                if index not in cache:
                    read_page(kernel, memcg, inode, index)
                    n += 1
                index += 1
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            raise
    for head, order in plan.folios:
        for i in range(head, head + (1 << order)):
            page = cache.get(i)
            if page is not None:
                page.order = order
        if order == pagecache.PMD_ORDER and cache.get(head) is not None:
            memcg.node.nr_file_thps += 1   # NR_FILE_THPS (FileHugePages)
    if plan.mark is not None:
        head, nr = plan.mark
        pages = [cache.get(i) for i in range(head, head + nr)]
        if all(p is not None for p in pages):
            for p in pages:
                p.readahead = nr
    return n


#: Host files up to this size start cached (as mmsim.live warms them on its side).
WARM_LIMIT = 64 << 20


def warm(kernel, inode, memcg=None):
    """Cache every page of ``inode`` below EOF that is not cached, without I/O or
    readahead marks: the state of a host file that programs used before (what
    ``mmsim.live`` prepares with a read of the whole file before a differential run).
    The pages are charged to ``memcg`` (the root cgroup by default)."""
    memcg = kernel.root_memcg if memcg is None else memcg
    cache = inode.cache
    for index in range(-(-inode.size // PAGE_SIZE)):
        if index not in cache:
            pagecache.add(kernel, memcg, inode, index)


def split_at(inode, edge):
    """Split the large folio that page ``edge`` cuts (truncate_inode_partial_folio's
    split): its cached pages become base pages, keeping any readahead mark."""
    cache = inode.cache
    page = cache.get(edge)
    if page is None:
        page = cache.get(edge - 1)
    order = page.order if page is not None else 0
    if not order:
        return
    nr = 1 << order
    index = edge if edge in cache else edge - 1
    head = index & ~(nr - 1)
    if head == edge:
        return   # the folio starts at the edge: nothing is cut
    first = cache.get(head)
    if first is not None and first.lru == 0 and first.memcg is not None:
        pagecache.split_folio(first.memcg.node, first)   # a shmem folio
        return
    if order == pagecache.PMD_ORDER and first is not None and first.memcg is not None:
        first.memcg.node.nr_file_thps -= 1
    for i in range(head, head + nr):
        p = cache.get(i)
        if p is not None:
            p.order = 0
            if p.readahead:
                p.readahead = 1 if i == head else 0


def warm_pending(kernel, inode):
    """Cache a host file taken to be fully cached (``Inode.warm``) at its first
    page-cache access: a call that fails before using the file changes nothing."""
    if inode.warm:
        inode.warm = False
        warm(kernel, inode)


def marked_folio(inode, index):
    """``(head, nr)`` of the marked folio page ``index`` belongs to, or None."""
    page = inode.cache.get(index)
    if page is None or not page.readahead:
        return None
    nr = int(page.readahead)
    return index & ~(nr - 1), nr


def clear_mark(inode, head, nr):
    """folio_clear_readahead on every page of the folio."""
    cache = inode.cache
    for i in range(head, head + nr):
        p = cache.get(i)
        if p is not None:
            p.readahead = 0


def _bdi(inode):
    return getattr(inode, "bdi", readahead.DEFAULT_BDI)


def _get_pages(kernel, memcg, f, pos, count):
    """filemap_get_pages: the cached pages from ``pos`` on, up to the end of the
    request, the first gap, or a marked folio (which starts async readahead); a miss
    at ``pos`` runs sync readahead first, then reads the page alone if still needed."""
    inode = f.inode
    cache = inode.cache
    ra = f.ra
    index = pos >> PAGE_SHIFT
    last_index = -(-(pos + count) // PAGE_SIZE)
    if index not in cache:
        plan = readahead.sync_ra(cache, inode.size, _bdi(inode), ra, index,
                                 last_index - index, f.random)
        run_plan(kernel, memcg, inode, plan)
        if index not in cache:
            read_page(kernel, memcg, inode, index)
    batch = []
    i = index
    while i < last_index:
        page = cache.get(i)
        if page is None:
            break
        batch.append(page)
        i += 1
        if page.readahead:
            head, nr = marked_folio(inode, i - 1)
            if ra.ra_pages:
                clear_mark(inode, head, nr)   # page_cache_async_ra clears it
            plan = readahead.async_ra(cache, inode.size, _bdi(inode), ra, head, nr,
                                      last_index - head)
            run_plan(kernel, memcg, inode, plan)
            break
    return batch


def read(kernel, memcg, f, pos, count):
    """filemap_read: read ``count`` bytes at ``pos`` of regular file ``f`` through the
    page cache; returns the bytes read (none at or past EOF).  Each page touched is
    marked accessed, except the first of a read that stays in the page where the
    previous read ended (ra->prev_pos)."""
    if count <= 0 or pos >= MAX_BYTES:
        return 0
    count = min(count, MAX_BYTES - pos)
    inode = f.inode
    warm_pending(kernel, inode)
    ra = f.ra
    last_pos = ra.prev_pos
    done = 0
    try:
        while done < count and pos < inode.size:
            batch = _get_pages(kernel, memcg, f, pos, count - done)
            isize = inode.size
            if pos >= isize:
                break
            end = min(isize, pos + count - done)
            # pos_same_folio on base pages: the same page as the previous read's end
            if pos >> PAGE_SHIFT != (last_pos - 1) >> PAGE_SHIFT:
                pagecache.mark_accessed(batch[0])
            first = pos >> PAGE_SHIFT
            for k, page in enumerate(batch):
                if end < (first + k) << PAGE_SHIFT:
                    break
                if k:
                    pagecache.mark_accessed(page)
                n = min(end - pos, PAGE_SIZE - (pos & (PAGE_SIZE - 1)))
                pos += n
                done += n
                last_pos = pos
    except OSError as exc:
        if exc.errno != errno.ENOMEM or not done:
            raise
    finally:
        ra.prev_pos = last_pos
    return done


def write(kernel, memcg, inode, pos, count):
    """generic_perform_write of ``count`` bytes at ``pos`` (already clamped): every page
    written is cached and dirty; a page written only in part that held data below the
    old EOF is read first (pgpgin, not a major fault); a page wholly overwritten, or
    past EOF, is not.  Writes do not mark pages accessed.  The size grows with the bytes
    written; returns them (short when the cgroup runs out of memory part-way)."""
    if count <= 0:
        return 0
    warm_pending(kernel, inode)
    cache = inode.cache
    done = 0
    end = pos + count
    try:
        while pos < end:
            index = pos >> PAGE_SHIFT
            off = pos & (PAGE_SIZE - 1)
            n = min(PAGE_SIZE - off, end - pos)
            page = cache.get(index)
            if page is None:
                partial = n < PAGE_SIZE
                if partial and index << PAGE_SHIFT < inode.size:
                    page = read_page(kernel, memcg, inode, index)
                else:
                    page = pagecache.add(kernel, memcg, inode, index)
            pagecache.set_dirty(page)
            pos += n
            done += n
            if pos > inode.size:
                inode.size = pos
    except OSError as exc:
        if exc.errno != errno.ENOMEM or not done:
            raise
    return done


def writeback(inode, lo=0, hi=None):
    """Write back (at once) the dirty pages ``[lo, hi)`` of ``inode``; returns them."""
    n = 0
    for index, page in list(inode.cache.items()):
        if page.dirty and index >= lo and (hi is None or index < hi):
            pagecache.set_clean(page)
            n += 1
    return n


def invalidate(kernel, inode, lo, hi, under_writeback=()):
    """mapping_try_invalidate over pages ``[lo, hi]`` (inclusive), folio by folio (one
    partly outside the range is skipped): each clean, unmapped page not under
    writeback leaves the cache without a shadow; a mapped (or dirty)
    one is deactivated instead (deactivate_file_folio, which leaves a mapped one
    alone).  The shadow entries in the range go too.  Returns the pages dropped."""
    cache = inode.cache
    n = 0
    for index in sorted(i for i in cache if lo <= i <= hi):
        page = cache.get(index)
        if page is None:
            continue
        nr = 1 << page.order
        head = index & ~(nr - 1)
        if head < lo or head + nr - 1 > hi:
            continue   # find_lock_entries: a folio partly outside the range is left
        if page.mapcount or page.dirty or index in under_writeback:
            if index not in under_writeback:
                pagecache.deactivate_file(page)
            continue
        pagecache.delete(kernel, page)
        n += 1
    pagecache.drop_shadows(kernel.node, inode, lo, hi + 1)
    return n


def fadvise(kernel, memcg, f, offset, length, advice):
    """generic_fadvise on regular file ``f`` (checked by the caller: not a pipe,
    ``length`` not negative, ``advice`` valid): NORMAL, RANDOM, SEQUENTIAL and
    NOREUSE set the file's readahead mode; WILLNEED reads the range ahead (forced
    readahead, at most the device's larger of io_pages and ra_pages); DONTNEED writes
    the range back and drops its clean, unmapped whole pages.  Pages still under
    writeback stay: writeback is immediate in mmsim, so a page DONTNEED itself found
    dirty is taken as still being written (on the live kernel the I/O it starts has
    not finished when invalidation runs)."""
    inode = f.inode
    warm_pending(kernel, inode)
    bdi = _bdi(inode)
    if length == 0 or offset + length > _LLONG_MAX:
        endbyte = _LLONG_MAX
    else:
        endbyte = offset + length - 1
    if advice == POSIX_FADV_NORMAL:
        f.ra.ra_pages = bdi.ra_pages
        f.random = f.noreuse = False
    elif advice == POSIX_FADV_RANDOM:
        f.random = True
    elif advice == POSIX_FADV_SEQUENTIAL:
        f.ra.ra_pages = bdi.ra_pages * 2
        f.random = False
    elif advice == POSIX_FADV_NOREUSE:
        f.noreuse = True
    elif advice == POSIX_FADV_WILLNEED:
        if offset < 0:
            return 0   # a negative start index is far past any EOF
        start = offset >> PAGE_SHIFT
        nr = (endbyte >> PAGE_SHIFT) - start + 1
        plan = readahead.force_page_cache_ra(inode.cache, inode.size, bdi, f.ra, start, nr)
        run_plan(kernel, memcg, inode, plan)
    elif advice == POSIX_FADV_DONTNEED:
        if offset < 0:
            return 0
        first = offset >> PAGE_SHIFT
        last = endbyte >> PAGE_SHIFT
        written = {i for i, p in inode.cache.items() if p.dirty and first <= i <= last}
        for i in written:
            pagecache.set_clean(inode.cache[i])
        start = (offset + PAGE_SIZE - 1) >> PAGE_SHIFT
        end = endbyte >> PAGE_SHIFT
        if endbyte & (PAGE_SIZE - 1) != PAGE_SIZE - 1 and endbyte != inode.size - 1:
            # the partial last page stays, unless it is the file's last
            if end == 0:
                return 0
            end -= 1
        if end >= start:
            invalidate(kernel, inode, start, end, written)
    return 0


__all__ = ["read", "write", "writeback", "invalidate", "fadvise", "run_plan", "read_page",
           "marked_folio", "clear_mark", "warm", "warm_pending", "split_at", "count_pgpgin", "FADVICES"]

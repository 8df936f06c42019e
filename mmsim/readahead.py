"""File readahead (mm/readahead.c, and the mmap side of mm/filemap.c), as a pure
algorithm: it keeps a file's readahead state (``FileRaState``, struct file_ra_state)
and answers which page ranges of the file to read and which folio gets the
PG_readahead marker.  It never touches the page cache itself: it only asks whether a
page is cached (``cache``: anything supporting ``in`` with page indexes, such as
``Inode.cache``), and the caller adds the missing pages of each range it returns.

Folio sizes are modelled where they shape the windows: a mapping with large folios
(``BackingDev.max_order`` above 0, as ext4 and xfs have on Linux 6.18) reads its
async windows in folios of growing order (``ra.order``), the window end is trimmed to
that alignment, and the marker covers the whole folio it lands in, so a read reaching
any page of that folio starts the next readahead.  The page cache itself holds base
pages (docs/pressure.md).

Every function that reads returns a ``Plan``: ``ranges``, a list of ``(lo, hi)`` page
index ranges, every page of which was not cached when planned and should be added in
order; ``folios``, the ``(head, order)`` of each large folio among them (the caller
records the order on each of its pages: ``Page.order``, which the page-cache walks
below read); and ``mark``, ``(head, nr)`` of the folio to mark with PG_readahead
(inside the ranges), or None.
"""

from .defs import PAGE_SHIFT, PAGE_SIZE, U64

#: VM_READAHEAD_PAGES: the default read_ahead_kb (128 KiB) in pages.
VM_READAHEAD_PAGES = (128 << 10) // PAGE_SIZE
#: Simulator-defined default bdi->io_pages: max_sectors_kb of 1280 KiB
#: (BLK_DEF_MAX_SECTORS_CAP) in pages.
DEFAULT_IO_PAGES = (1280 << 10) // PAGE_SIZE
#: MAX_PAGECACHE_ORDER on x86-64: the PMD order.
MAX_PAGECACHE_ORDER = 9
#: force_page_cache_ra reads in chunks of 2 MiB.
FORCE_CHUNK = (2 << 20) // PAGE_SIZE
#: MMAP_LOTSAMISS: past this many mmap misses without hits, no read-around.
MMAP_LOTSAMISS = 100

#: include/uapi/linux/fadvise.h (x86-64).
(POSIX_FADV_NORMAL, POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED,
 POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE) = 0, 1, 2, 3, 4, 5


class BackingDev:
    """What readahead takes from a file's backing device (struct backing_dev_info):
    ``ra_pages`` (read_ahead_kb / 4), ``io_pages`` (max_sectors_kb / 4), and the largest
    page-cache folio order the file system supports (0: base pages only)."""

    __slots__ = ("ra_pages", "io_pages", "max_order")

    def __init__(self, ra_pages=VM_READAHEAD_PAGES, io_pages=DEFAULT_IO_PAGES,
                 max_order=MAX_PAGECACHE_ORDER):
        self.ra_pages = ra_pages
        self.io_pages = io_pages
        self.max_order = max_order

    def __repr__(self):
        return f"<BackingDev ra={self.ra_pages} io={self.io_pages} order<={self.max_order}>"


#: The backing device simulated files get unless told otherwise.
DEFAULT_BDI = BackingDev()


class FileRaState:
    """struct file_ra_state: the last readahead window (``start``, ``size``,
    ``async_size``), its folio order, the per-file maximum ``ra_pages``, the mmap miss
    count and ``prev_pos``, the last byte position of the previous read (-1: none)."""

    __slots__ = ("start", "size", "async_size", "ra_pages", "order", "mmap_miss",
                 "prev_pos")

    def __init__(self, ra_pages=VM_READAHEAD_PAGES):
        self.start = self.size = self.async_size = 0
        self.ra_pages = ra_pages
        self.order = 0
        self.mmap_miss = 0
        self.prev_pos = -1

    def window(self):
        """``(start, size, async_size)``: the last window, for tests and tracing."""
        return (self.start, self.size, self.async_size)

    def __repr__(self):
        return (f"<FileRaState start={self.start} size={self.size} "
                f"async={self.async_size} ra_pages={self.ra_pages} order={self.order} "
                f"mmap_miss={self.mmap_miss} prev_pos={self.prev_pos}>")


class Plan:
    """What one readahead decided: page ranges to add and the folio to mark."""

    __slots__ = ("ranges", "mark", "folios")

    def __init__(self):
        self.ranges = []
        self.mark = None
        self.folios = []   # (head, order) of each large folio read

    def _add(self, lo, hi):
        r = self.ranges
        if r and r[-1][1] == lo:
            r[-1] = (r[-1][0], hi)
        else:
            r.append((lo, hi))

    def pages(self):
        """How many pages the plan reads."""
        return sum(hi - lo for lo, hi in self.ranges)

    def indexes(self):
        """Every page index the plan reads, in order."""
        return [i for lo, hi in self.ranges for i in range(lo, hi)]

    def __repr__(self):
        return f"<Plan {self.ranges} mark={self.mark}>"


def _pow2_up(n):
    return 1 << max(0, (n - 1).bit_length())


def get_init_ra_size(size, max_pages):
    """The first window for a request of ``size`` pages: its power of two up, times
    four when small, times two when medium, else the maximum."""
    newsize = _pow2_up(size)
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(size, max_pages):
    """The window after one of ``size`` pages: four times it while small, twice it up
    to half the maximum, then the maximum."""
    if size < max_pages // 16:
        return 4 * size
    if size <= max_pages // 2:
        return 2 * size
    return max_pages


def _last_page(isize):
    """The index of the page holding the last byte, or -1 for an empty file."""
    return (isize - 1) >> PAGE_SHIFT if isize > 0 else -1


def _unbounded(plan, cache, index, nr, lookahead):
    """page_cache_ra_unbounded with base pages: every page of ``[index, index + nr)``
    not cached is read; the one at ``nr - lookahead`` gets the marker."""
    mark = index + nr - lookahead if lookahead <= nr else None
    i, end = index, index + nr
    while i < end:
        if i in cache:
            i += 1
            continue
        j = i + 1
        while j < end and j not in cache:
            j += 1
        plan._add(i, j)
        if mark is not None and i <= mark < j:
            plan.mark = (mark, 1)
        i = j


def do_page_cache_ra(plan, cache, isize, index, nr, lookahead):
    """do_page_cache_ra: ``nr`` pages from ``index``, never past the page holding the
    last byte of the file."""
    end_index = _last_page(isize)
    if index > end_index:
        return
    nr = min(nr, end_index - index + 1)
    _unbounded(plan, cache, index, nr, lookahead)


def _ra_order(plan, ra, cache, isize, bdi, start):
    """page_cache_ra_order: read window ``ra`` from ``start`` in folios of up to
    ``ra.order`` (naturally aligned, never past EOF or the window), stopping at the
    first folio that overlaps a cached page; the rest is read in base pages."""
    mark = start + ra.size - ra.async_size
    index = start
    if bdi.max_order <= 0:
        ra.order = 0
    else:
        limit = min(_last_page(isize), start + ra.size - 1)
        order = min(bdi.max_order, ra.order, max(ra.size, 1).bit_length() - 1)
        ra.order = order
        while index <= limit:
            o = order
            if index & ((1 << o) - 1):
                o = (index & -index).bit_length() - 1
            while o > 0 and index + (1 << o) - 1 > limit:
                o -= 1
            n = 1 << o
            if any(i in cache for i in range(index, index + n)):
                break   # filemap_add_folio: EEXIST
            plan._add(index, index + n)
            if o:
                plan.folios.append((index, o))
            if index == mark & ~(n - 1):
                plan.mark = (index, n)
            index += n
        else:
            return plan
    if ra.size > index - start:
        do_page_cache_ra(plan, cache, isize, index, ra.size - (index - start), ra.async_size)
    return plan


def _max_pages(ra, bdi, req):
    """ractl_max_pages: a request larger than the window may read up to the device's
    optimal I/O size."""
    m = ra.ra_pages
    if req > m and bdi.io_pages > m:
        m = min(req, bdi.io_pages)
    return m


def force_page_cache_ra(cache, isize, bdi, ra, index, nr):
    """force_page_cache_ra: read ``nr`` pages from ``index`` (at most the larger of
    io_pages and ra_pages) in 2 MiB chunks, without markers or window state."""
    plan = Plan()
    nr = min(nr, max(bdi.io_pages, ra.ra_pages))
    while nr > 0:
        chunk = min(FORCE_CHUNK, nr)
        do_page_cache_ra(plan, cache, isize, index, chunk, 0)
        index += chunk
        nr -= chunk
    plan.mark = None
    return plan


#: XA_CHUNK_SHIFT: an xarray node holds 64 slots.
_XA_CHUNK = 64


def folio_order(cache, index):
    """The order of the cached folio holding page ``index`` (0 without folio sizes:
    a ``cache`` that is a plain set of indexes, or a page not cached)."""
    get = getattr(cache, "get", None)
    if get is None:
        return 0
    page = get(index)
    return getattr(page, "order", 0) if page is not None else 0


def _skew(cache, index):
    """How far into its large folio page ``index`` lies, when that folio sits in a leaf
    xarray node (order below 6): an xarray walk that starts there loads the folio's
    head slot but keeps ``index``, so it reports every later slot that many pages
    off, until it crosses into another node."""
    order = folio_order(cache, index)
    if 0 < order < 6:
        return index & ((1 << order) - 1)
    return 0


def _prev_miss(cache, index, max_scan):
    """page_cache_prev_miss: scanning down from ``index`` (included) at most
    ``max_scan`` slots, the index of the first gap; when there is none, the last index
    scanned; U64 (ULONG_MAX) when the scan runs below page 0.  The index is reported
    the way the kernel's walk reports it, skewed when the walk starts inside a large
    folio (``_skew``)."""
    if max_scan <= 0:
        return index
    if index not in cache:
        return index
    x, slot = index, index - _skew(cache, index)
    for _ in range(max_scan - 1):
        x -= 1
        if x < 0:
            return U64
        slot = x if slot % _XA_CHUNK == 0 else slot - 1
        if slot not in cache:
            return x
    return x


def _next_miss(cache, index, max_scan):
    """page_cache_next_miss: scanning up from ``index`` (included) at most
    ``max_scan`` slots, the index of the first gap, else ``index + max_scan``; skewed
    like ``_prev_miss`` when the walk starts inside a large folio (on Linux 6.18 a
    read hitting a mark in the middle of a folio so starts its window a few pages past
    the first page not cached)."""
    if max_scan <= 0:
        return index + max_scan
    if index not in cache:
        return index
    x, slot = index, index - _skew(cache, index)
    for _ in range(max_scan - 1):
        x += 1
        slot = x if slot % _XA_CHUNK == _XA_CHUNK - 1 else slot + 1
        if slot not in cache:
            return x
    return index + max_scan


def sync_ra(cache, isize, bdi, ra, index, req, random=False):
    """page_cache_sync_ra: a read missed the cache at page ``index`` wanting ``req``
    pages.  FMODE_RANDOM (``random``) or a zero ra_pages reads just the request; a
    read at page 0, one larger than the window, or one following the previous read
    starts a window of get_init_ra_size; a read after a run of cached pages takes a
    window that long; anything else is a small random read of just the request."""
    plan = Plan()
    if not ra.ra_pages:
        req = 1
        random = True
    if random:
        return force_page_cache_ra(cache, isize, bdi, ra, index, req)
    max_pages = _max_pages(ra, bdi, req)
    prev_index = (ra.prev_pos & U64) >> PAGE_SHIFT
    if not index or req > max_pages or (index - prev_index) & U64 <= 1:
        ra.start = index
        ra.size = get_init_ra_size(req, max_pages)
        ra.async_size = ra.size - req if ra.size > req else ra.size >> 1
    else:
        miss = _prev_miss(cache, index - 1, max_pages)
        contig = (index - miss - 1) & U64
        if contig <= req:
            do_page_cache_ra(plan, cache, isize, index, req, 0)
            return plan
        if miss == U64:
            contig *= 2   # cached from the start of the file: a long stream
        ra.start = index
        ra.size = min(contig + req, max_pages)
        ra.async_size = 1
    ra.order = 0
    return _ra_order(plan, ra, cache, isize, bdi, ra.start)


def async_ra(cache, isize, bdi, ra, index, nr, req):
    """page_cache_async_ra: a read reached the marked folio ``(index, nr)`` (the caller
    clears its marker first) wanting ``req`` pages from it.  At the expected place the
    window moves on and grows; elsewhere (interleaved streams) its size is guessed
    from the cached pages ahead.  The window end is trimmed to the folio alignment the
    next order allows."""
    plan = Plan()
    if not ra.ra_pages:
        return plan
    max_pages = _max_pages(ra, bdi, req)
    expected = (ra.start + ra.size - ra.async_size) & ~(nr - 1)
    if index == expected:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra.size, max_pages))
    else:
        start = _next_miss(cache, index + 1, max_pages)
        if not start or start - index > max_pages:
            return plan
        ra.start = start
        ra.size = get_next_ra_size(start - index + req, max_pages)
    ra.order += 2
    low = (max_pages & -max_pages).bit_length() - 1 if max_pages else 0
    align = 1 << min(ra.order, low)
    end = ra.start + ra.size
    aligned_end = end & ~(align - 1)
    if aligned_end > ra.start:
        ra.size -= end - aligned_end
    ra.async_size = ra.size
    return _ra_order(plan, ra, cache, isize, bdi, ra.start)


def sync_mmap_ra(cache, isize, bdi, ra, pgoff, seq=False, rand=False, hugepage=False):
    """do_sync_mmap_readahead for a fault at file page ``pgoff`` that missed the cache:
    in a VM_HUGEPAGE mapping (``hugepage``), even with readahead off, two PMD-order
    folios from the aligned block of the fault (one with VM_RAND_READ), the second
    asynchronous; else VM_RAND_READ (``rand``) reads nothing ahead, VM_SEQ_READ
    (``seq``) a sync readahead of ra_pages; otherwise mmap_miss counts the miss and,
    unless the file misses far more than it hits (MMAP_LOTSAMISS), ra_pages are read
    around the fault with the marker a quarter from the end.  Returns a Plan (empty:
    the caller reads the one page)."""
    if hugepage:
        pmd = 1 << MAX_PAGECACHE_ORDER
        ra.start = pgoff & ~(pmd - 1)
        ra.size = pmd if rand else 2 * pmd
        ra.async_size = pmd
        ra.order = MAX_PAGECACHE_ORDER
        return _ra_order(Plan(), ra, cache, isize, bdi, ra.start)
    if rand or not ra.ra_pages:
        return Plan()
    if seq:
        return sync_ra(cache, isize, bdi, ra, pgoff, ra.ra_pages)
    if ra.mmap_miss < MMAP_LOTSAMISS * 10:
        ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        return Plan()
    ra.start = max(0, pgoff - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    ra.order = 0
    return _ra_order(Plan(), ra, cache, isize, bdi, ra.start)


def async_mmap_ra(cache, isize, bdi, ra, index, nr, marked, rand=False):
    """do_async_mmap_readahead for a fault that found its page cached: a hit lowers
    mmap_miss; a marked folio ``(index, nr)`` (``marked``; the caller clears the
    marker) starts an async readahead of ra_pages."""
    if rand or not ra.ra_pages:
        return Plan()
    if ra.mmap_miss:
        ra.mmap_miss -= 1
    if not marked:
        return Plan()
    return async_ra(cache, isize, bdi, ra, index, nr, ra.ra_pages)


def fadvise_range(offset, length):
    """The inclusive last byte of an fadvise range: ``len`` 0 (or one that overflows)
    means to the end of any file."""
    end = offset + length
    if not length or end > (1 << 63) - 1:
        return (1 << 63) - 1
    return end - 1


__all__ = ["FileRaState", "BackingDev", "DEFAULT_BDI", "Plan", "get_init_ra_size",
           "get_next_ra_size", "sync_ra", "async_ra", "force_page_cache_ra",
           "do_page_cache_ra", "folio_order", "sync_mmap_ra", "async_mmap_ra", "fadvise_range",
           "VM_READAHEAD_PAGES", "MMAP_LOTSAMISS", "POSIX_FADV_NORMAL",
           "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL", "POSIX_FADV_WILLNEED",
           "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE"]

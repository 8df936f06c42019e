"""shmem transparent huge pages (mm/shmem.c): the knobs ``shmem_enabled`` and
``hugepages-<N>kB/shmem_enabled``, which folio orders a shmem file may use at a page
(shmem_huge_global_enabled, shmem_allowable_huge_orders, shmem_suitable_orders), and
the allocation of a large shmem folio with its per-order fallback and counters
(shmem_alloc_and_add_folio, shmem_get_folio_gfp).

The shmem files on the internal mount (``shm_mnt``) are unlinked: the object behind a
MAP_SHARED|MAP_ANONYMOUS mapping and memfd_create's files.  Their mappings are
anonymous shmem (vma_is_anon_shmem: shmem_mmap gives an unlinked inode
shmem_anon_vm_ops) and follow the per-size knobs.  The files of the tmpfs mount at
/dev/shm (``Inode.tmpfs``) follow its ``huge=never`` (the default) and shmem_enabled's
deny and force only.  Mapping the folios (do_set_pmd,
finish_fault) is ``mmsim.pages``' work.
"""

import errno

from . import memcg as memcg_mod
from . import pagecache
from .defs import PAGE_SHIFT, PAGE_SIZE, error
from .thp import ALL_ORDERS, PMD_ORDER, count, vma_thp_disabled
from .vma import VM_HUGEPAGE

#: /sys/kernel/mm/transparent_hugepage/shmem_enabled, in the order the file lists them.
TOP_MODES = ("always", "within_size", "advise", "never", "deny", "force")
#: hugepages-<N>kB/shmem_enabled, in the order the file lists them.
SIZE_MODES = ("always", "inherit", "within_size", "advise", "never")

PMD_BIT = 1 << PMD_ORDER
#: THP_ORDERS_ALL_FILE_DEFAULT: the page cache takes orders 1 to the PMD order here.
FILE_ORDERS = sum(1 << o for o in ALL_ORDERS)


def default_size_modes():
    """The per-size knobs at boot: the PMD size inherits, every other size is never."""
    return {o: "inherit" if o == PMD_ORDER else "never" for o in ALL_ORDERS}


def _bits(kernel, mode):
    """The orders whose per-size knob is ``mode``, as a bitmap."""
    return sum(1 << o for o, m in kernel.shmem_size_modes.items() if m == mode)


def _highest(orders):
    return orders.bit_length() - 1


def within_size(orders, index, write_end, i_size):
    """shmem_get_orders_within_size: from the highest order down, the first whose
    aligned block holding page ``index`` ends inside the file (its size or the end of
    the write being made), with every lower order of ``orders``; 0 if none fits."""
    size = -(-max(write_end, i_size) // PAGE_SIZE)
    while orders:
        order = _highest(orders)
        end = -(-(index + 1) // (1 << order)) << order
        if size >= end:
            return orders
        orders &= ~(1 << order)
    return 0


def global_orders(kernel, inode, index, write_end, force, has_vma, vm_flags):
    """shmem_huge_global_enabled for a file of the internal mount, whose ``huge``
    option is the last of always/within_size/advise/never written to shmem_enabled,
    or of a tmpfs mount (huge=never, the default; shmem_enabled's deny and force
    override every mount)."""
    huge = kernel.shmem_enabled
    if huge == "deny":
        return 0
    if force or huge == "force":
        return PMD_BIT
    if inode.tmpfs:
        return 0
    if not has_vma:
        # write and fallocate: with no VMA to fit, always offers every page-cache
        # order (the PMD size tried first) and within_size those that end inside the
        # file or the write; advise never applies (no VM_HUGEPAGE without a VMA).
        # Checked on a private tmpfs mount of the live kernel (docs/thp.md).
        if huge == "always":
            return FILE_ORDERS
        if huge == "within_size":
            return within_size(FILE_ORDERS, index, write_end, inode.size)
        return 0
    if huge == "always":
        return PMD_BIT
    if huge == "within_size" and within_size(PMD_BIT, index, write_end, inode.size):
        return PMD_BIT
    if huge in ("within_size", "advise") and vm_flags & VM_HUGEPAGE:
        return PMD_BIT
    return 0


def allowable_orders(kernel, inode, vma, mm_flags, index, write_end=0, force=False):
    """shmem_allowable_huge_orders: the folio orders allowed at page ``index`` of
    ``inode`` mapped by ``vma`` (None: read, write or fallocate), as a bitmap."""
    vm_flags = vma.vm_flags if vma is not None else 0
    if vma is not None and vma_thp_disabled(vm_flags, mm_flags, force):
        return 0
    glob = global_orders(kernel, inode, index, write_end, force, vma is not None, vm_flags)
    if vma is None or inode.tmpfs:
        return glob   # the per-size knobs are anonymous shmem's only
    huge = kernel.shmem_enabled
    if huge == "deny":
        return 0
    if huge == "force":
        return _bits(kernel, "inherit")
    mask = _bits(kernel, "always")
    mask |= within_size(_bits(kernel, "within_size"), index, 0, inode.size)
    if vm_flags & VM_HUGEPAGE:
        mask |= _bits(kernel, "advise")
    if glob:
        mask |= _bits(kernel, "inherit")
    return mask & FILE_ORDERS


def suitable_order(vma, addr, order):
    """thp_vma_suitable_order: the aligned block of ``order`` around ``addr`` lies in
    ``vma`` and lines up with the file offset."""
    size = PAGE_SIZE << order
    if ((vma.start >> PAGE_SHIFT) - vma.pgoff) & ((1 << order) - 1):
        return False
    head = addr & ~(size - 1)
    return head >= vma.start and head + size <= vma.end


def vma_orders(kernel, vma, mm_flags, forced):
    """__thp_vma_allowable_orders for a shmem VMA outside a fault (smaps, MADV_COLLAPSE):
    the orders whose aligned block at the VMA's end fits, from the highest that does
    down, that shmem allows at the VMA's first file page."""
    orders = FILE_ORDERS
    while orders:
        order = _highest(orders)
        if suitable_order(vma, vma.end - (PAGE_SIZE << order), order):
            break
        orders &= ~(1 << order)
    if not orders:
        return 0
    return orders & allowable_orders(kernel, vma.file.inode, vma, mm_flags, vma.pgoff,
                                     force=forced)


def suitable_orders(vma, addr, inode, index, orders):
    """shmem_suitable_orders: of ``orders``, those whose block fits the VMA at
    ``addr`` (any, without a VMA), from the highest whose aligned page-cache range is
    empty down."""
    if vma is not None:
        orders = sum(1 << o for o in ALL_ORDERS if orders >> o & 1 and
                     suitable_order(vma, addr, o))
    cache = inode.cache
    while orders:
        order = _highest(orders)
        head = index & ~((1 << order) - 1)
        if not any(i in cache for i in range(head, head + (1 << order))):
            return orders
        orders &= ~(1 << order)
    return 0


def _can_allocate(kernel, nr):
    """Simulator-defined: physical memory is never fragmented and a large folio's
    allocation neither reclaims nor kills, so it fails only when taking ``nr`` pages
    would leave free memory below the min watermark."""
    return kernel.free_pages() - nr >= kernel.watermarks()[0]


def get_folio(kernel, memcg, vma, mm_flags, inode, index, addr):
    """shmem_get_folio_gfp for a fault at ``addr`` on page ``index`` that is not
    cached: allocate a folio of the highest allowed and suitable order whose
    allocation succeeds (each failing order counts its fallback), charge it, and put
    it in the cache; a refused charge (memory.max: a large folio's charge never
    reclaims nor kills, simulator-defined) falls back to one page.  Returns the page
    at ``index``."""
    orders = allowable_orders(kernel, inode, vma, mm_flags, index)
    if orders:
        orders = suitable_orders(vma, addr, inode, index, orders)
    return _alloc_and_add(kernel, memcg, inode, index, orders)


def get_folio_nofault(kernel, memcg, inode, index, write_end):
    """shmem_get_folio for write (SGP_WRITE) and fallocate (SGP_FALLOC) of page
    ``index``, not cached, the write or allocation ending at byte ``write_end``: the
    orders shmem_enabled allows without a VMA (the per-size knobs do not apply), the
    highest whose aligned range of the cache is empty first, with the fault's
    fallbacks and counters.  Returns the page at ``index``."""
    orders = allowable_orders(kernel, inode, None, 0, index, write_end)
    if orders:
        orders = suitable_orders(None, 0, inode, index, orders)
    return _alloc_and_add(kernel, memcg, inode, index, orders)


def _alloc_and_add(kernel, memcg, inode, index, orders):
    """shmem_alloc_and_add_folio over ``orders`` (a bitmap, highest first), then one
    page: the page at ``index``."""
    ev = kernel.node.events
    while orders:
        order = _highest(orders)
        orders &= ~(1 << order)
        nr = 1 << order
        pmd = order == PMD_ORDER
        if not _can_allocate(kernel, nr):
            if pmd:
                ev["thp_file_fallback"] += 1
            count(kernel, order, "shmem_fallback")
            continue
        if memcg_mod.first_over(memcg, nr) is not None:
            if pmd:
                ev["thp_file_fallback"] += 1
                ev["thp_file_fallback_charge"] += 1
            count(kernel, order, "shmem_fallback")
            count(kernel, order, "shmem_fallback_charge")
            break
        head = index & ~(nr - 1)
        pagecache.add_shmem(kernel, memcg, inode, head, order)
        if pmd:
            ev["thp_file_alloc"] += 1
        count(kernel, order, "shmem_alloc")
        return inode.cache[index]
    return pagecache.add_shmem(kernel, memcg, inode, index)


def missing(inode, lo, hi):
    """How many of pages ``[lo, hi)`` of ``inode`` are not in its cache."""
    cache = inode.cache
    if len(cache) < hi - lo:
        return hi - lo - sum(1 for i in cache if lo <= i < hi)
    return sum(1 for i in range(lo, hi) if i not in cache)


def _mark_uptodate(inode, page):
    """folio_mark_uptodate of the folio holding ``page``."""
    nr = 1 << page.order
    head = page.index & ~(nr - 1)
    cache = inode.cache
    for i in range(head, head + nr):
        p = cache.get(i)
        if p is not None:
            p.uptodate = True


def write(kernel, memcg, inode, pos, count):
    """shmem_file_write_iter of ``count`` bytes at ``pos`` (already clamped; the caller
    has made sure the new pages fit): each page of the range not cached gets its folio
    from ``get_folio_nofault`` (SGP_WRITE); every folio written is dirty and up to
    date, all of it (shmem_write_end), and the size grows to the write's end.  Returns
    ``count``."""
    if count <= 0:
        return 0
    end = pos + count
    cache = inode.cache
    index = pos >> PAGE_SHIFT
    last = (end - 1) >> PAGE_SHIFT
    while index <= last:
        page = cache.get(index)
        if page is None:
            page = get_folio_nofault(kernel, memcg, inode, index, end)
        nr = 1 << page.order
        head = index & ~(nr - 1)
        for i in range(head, head + nr):
            p = cache.get(i)
            if p is not None:
                pagecache.set_dirty(p)
                p.uptodate = True
        index = head + nr
    if end > inode.size:
        inode.size = end
    return count


def fallocate(kernel, memcg, inode, offset, length, keep_size):
    """shmem_fallocate's allocation (mode 0 or FALLOC_FL_KEEP_SIZE; the caller has
    made sure the new pages fit): every page of the range not cached gets its folio
    (SGP_FALLOC, the range's end as the write end), dirty but not up to date, so
    fault-around does not map it until a fault or a write has cleared it; then the
    size grows to the range's end unless ``keep_size``."""
    end = offset + length
    cache = inode.cache
    index = offset >> PAGE_SHIFT
    stop = -(-end // PAGE_SIZE)
    while index < stop:
        page = cache.get(index)
        if page is None:
            page = get_folio_nofault(kernel, memcg, inode, index, end)
            nr = 1 << page.order
            head = index & ~(nr - 1)
            for i in range(head, head + nr):
                p = cache[i]
                p.uptodate = False
                pagecache.set_dirty(p)
        nr = 1 << page.order
        index = (index & ~(nr - 1)) + nr
    if not keep_size and end > inode.size:
        inode.size = end


def fault_clear(inode, page):
    """shmem_get_folio_gfp finding a fallocated folio for a fault: it is cleared and
    marked up to date."""
    if not page.uptodate:
        _mark_uptodate(inode, page)


# ---------------------------------------------------------------------- the knobs


def read_top(kernel):
    """shmem_enabled_show: every mode, the current one in brackets."""
    cur = kernel.shmem_enabled
    return " ".join(f"[{m}]" if m == cur else m for m in TOP_MODES) + "\n"


def write_top(kernel, text):
    """shmem_enabled_store: at most 15 bytes, one trailing newline dropped, then an
    exact mode; ``force`` only while the PMD size is the one size set to inherit
    (EINVAL otherwise)."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) + 1 > 16:
        raise error(errno.EINVAL, "shmem_enabled takes at most 15 bytes")
    if data.endswith(b"\n"):
        data = data[:-1]
    mode = data.decode("utf-8", "surrogateescape")
    if mode not in TOP_MODES:
        raise error(errno.EINVAL, f"shmem_enabled takes one of {' '.join(TOP_MODES)}")
    if mode == "force" and _bits(kernel, "inherit") != PMD_BIT:
        raise error(errno.EINVAL, "force needs the PMD size alone to inherit")
    kernel.shmem_enabled = mode


def read_size(kernel, order):
    """thpsize_shmem_enabled_show."""
    cur = kernel.shmem_size_modes[order]
    return " ".join(f"[{m}]" if m == cur else m for m in SIZE_MODES) + "\n"


def write_size(kernel, order, text):
    """thpsize_shmem_enabled_store: a mode (sysfs_streq); ``inherit`` of a size other
    than the PMD size is refused while shmem_enabled is ``force`` (EINVAL)."""
    for mode in SIZE_MODES:
        if text.removesuffix("\n") == mode:
            break
    else:
        raise error(errno.EINVAL, f"shmem_enabled takes one of {' '.join(SIZE_MODES)}")
    if mode == "inherit" and kernel.shmem_enabled == "force" and order != PMD_ORDER:
        raise error(errno.EINVAL, "inherit of a small size while shmem_enabled is force")
    kernel.shmem_size_modes[order] = mode


def pmd_enabled(kernel):
    """shmem_hpage_pmd_enabled: whether shmem may use the PMD size at all (khugepaged
    runs for it)."""
    huge = kernel.shmem_enabled
    if huge == "deny":
        return False
    mode = kernel.shmem_size_modes[PMD_ORDER]
    if mode in ("always", "advise", "within_size"):
        return True
    return mode == "inherit" and huge != "never"


__all__ = ["TOP_MODES", "SIZE_MODES", "allowable_orders", "vma_orders", "suitable_order",
           "suitable_orders", "get_folio", "get_folio_nofault", "missing", "write",
           "fallocate", "fault_clear", "within_size", "global_orders", "read_top",
           "write_top", "read_size", "write_size", "pmd_enabled", "default_size_modes"]

"""The page cache (mm/filemap.c, mm/swap.c): folios of regular files and shmem files,
the file LRU lists they sit on (the classic two-list LRU, as on a kernel without
multi-generational LRU), the node-wide counters /proc/meminfo and /proc/vmstat show,
and the moves between lists that accesses and madvise make.

A cached folio is a ``Page`` kept in ``Inode.cache`` (file page index -> Page); every
mapping of that file page maps the same object, so its ``mapcount`` counts mappings
across address spaces.  A regular file's folio is charged to a memory cgroup and sits
on one of its lruvec's file lists (``lru``: INACTIVE or ACTIVE); a shmem folio is
charged too but, being swap-backed, counts on the anon lists.  When reclaim evicts a
folio it leaves a shadow entry in ``Inode.shadows`` (``workingset.eviction``); adding
the page again consults it (``workingset.refault``).

Allocation goes through the ``Kernel`` (``try_charge``/``uncharge``), which may
reclaim to make room; this module only keeps the lists and counters.
"""

from collections import OrderedDict

from .defs import HPAGE_PMD_NR

from . import workingset
from .memcg import (EVENTS, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE,
                    count_event, swap_room)

INACTIVE, ACTIVE = 1, 2
PMD_ORDER = HPAGE_PMD_NR.bit_length() - 1
_LIST = {INACTIVE: LRU_INACTIVE_FILE, ACTIVE: LRU_ACTIVE_FILE}


class Page:
    """A folio of the page cache (a regular file's) or of a shmem file."""

    __slots__ = ("mapcount", "anon", "dirty", "order", "referenced", "lru", "memcg",
                 "inode", "index", "workingset", "readahead", "pmd_maps", "uptodate")

    def __init__(self, anon=True, dirty=True, order=0, mapcount=1):
        self.mapcount = mapcount
        self.anon = anon
        self.dirty = dirty
        self.order = order
        # PG_referenced: set by folio_mark_accessed's first call; counts as
        # Referenced through any mapping, old PTE or not.
        self.referenced = False
        self.lru = 0           # INACTIVE or ACTIVE for a regular file's folio on the LRU
        self.memcg = None      # the cgroup charged for it
        self.inode = None
        self.index = 0
        self.workingset = False   # PG_workingset
        self.readahead = False    # PG_readahead: reading it starts async readahead
        # On the first page of a PMD-order folio: the PMD mappings of the folio
        # (its entire mapcount).
        self.pmd_maps = 0
        # PG_uptodate: False only for a shmem folio fallocate made and nothing has
        # written or faulted yet (fault-around skips it).
        self.uptodate = True


# An xarray leaf node holds 64 slots; the shadow shrinker keeps at most one such node
# of shadow entries per 8 pages (count_shadow_nodes).
XA_CHUNK_SHIFT = 6


class Node:
    """The machine's one NUMA node (``pglist_data``): page counts by kind and the
    vm event counters, as /proc/meminfo and /proc/vmstat show them, and the list of
    page-cache tree nodes that hold only shadow entries (``shadow_nodes``: the
    workingset shrinker's list, oldest first)."""

    __slots__ = ("nr_inactive", "nr_active", "nr_file_pages", "nr_mapped", "nr_dirty",
                 "nr_writeback", "nr_shmem", "nr_anon", "events", "shadow_nodes",
                 "nr_shmem_thps", "nr_shmem_pmdmapped", "nr_file_thps", "nr_file_pmdmapped")

    def __init__(self):
        self.nr_inactive = self.nr_active = 0      # the file lists, in pages
        self.nr_file_pages = self.nr_mapped = 0    # page cache (shmem included), mapped
        self.nr_dirty = self.nr_writeback = self.nr_shmem = self.nr_anon = 0
        self.shadow_nodes = OrderedDict()   # (inode, block) -> None
        # PMD-order shmem folios in the page cache (NR_SHMEM_THPS), and those of them
        # mapped by at least one PMD (NR_SHMEM_PMDMAPPED), in folios.
        self.nr_shmem_thps = self.nr_shmem_pmdmapped = 0
        # PMD-order folios of regular files, and those a PMD maps (FileHugePages,
        # FilePmdMapped).
        self.nr_file_thps = self.nr_file_pmdmapped = 0
        self.events = dict.fromkeys(EVENTS + ("nr_dirtied", "nr_written", "pgpgin", "oom_kill",
                                                 "pgscan_file", "pgsteal_file", "pgscan_anon",
                                                 "pgsteal_anon", "thp_collapse_alloc",
                                                 "thp_collapse_alloc_failed",
                                                 "thp_scan_exceed_none_pte",
                                                 "thp_scan_exceed_swap_pte",
                                                 "thp_scan_exceed_share_pte",
                                                 "thp_file_alloc", "thp_file_fallback",
                                                 "thp_file_fallback_charge",
                                                 "thp_file_mapped", "swap_ra",
                                                 "swap_ra_hit"), 0)

    @property
    def pgactivate(self):
        return self.events["pgactivate"]

    @property
    def pgdeactivate(self):
        return self.events["pgdeactivate"]

    @property
    def pgrotated(self):
        return self.events["pgrotated"]


def _block(node, inode, index, dpages, dshadows):
    """Keep a tree node's page and shadow counts, and the shadow-node list: a node is
    on it while it holds shadow entries and no page."""
    blocks = inode.blocks
    b = index >> XA_CHUNK_SHIFT
    counts = blocks.get(b)
    if counts is None:
        counts = blocks[b] = [0, 0]
    was = counts[1] and not counts[0]
    counts[0] += dpages
    counts[1] += dshadows
    now = counts[1] and not counts[0]
    if now != was:
        if now:
            node.shadow_nodes[(inode, b)] = None
        else:
            del node.shadow_nodes[(inode, b)]
    if not counts[0] and not counts[1]:
        del blocks[b]


def shrink_shadow_nodes(node, pages):
    """The shadow shrinker (workingset.c's shadow_lru_isolate): while more tree nodes
    hold only shadows than one per 8 of ``pages``, the oldest such node is freed with
    its shadow entries (workingset_nodereclaim).  Returns the nodes freed."""
    excess = len(node.shadow_nodes) - (pages >> (XA_CHUNK_SHIFT - 3))
    freed = 0
    while excess > 0:
        (inode, b), _ = node.shadow_nodes.popitem(last=False)
        lo = b << XA_CHUNK_SHIFT
        shadows = inode.shadows
        for index in range(lo, lo + (1 << XA_CHUNK_SHIFT)):
            shadows.pop(index, None)
        del inode.blocks[b]
        node.events["workingset_nodereclaim"] += 1
        excess -= 1
        freed += 1
    return freed


def lookup(inode, index):
    """filemap_get_folio: the cached folio of page ``index`` of ``inode``, or None."""
    return inode.cache.get(index)


def _lru_add(page, lru, tail=False):
    lruvec = page.memcg.lruvec
    page.lru = lru
    lst = _LIST[lru]
    d = lruvec.lists[lst]
    d[page] = None
    if tail:
        d.move_to_end(page, last=False)
    lruvec.nr[lst] += 1
    node = page.memcg.node
    if lru == ACTIVE:
        node.nr_active += 1
    else:
        node.nr_inactive += 1


def _lru_del(page):
    lruvec = page.memcg.lruvec
    lst = _LIST[page.lru]
    del lruvec.lists[lst][page]
    lruvec.nr[lst] -= 1
    node = page.memcg.node
    if page.lru == ACTIVE:
        node.nr_active -= 1
    else:
        node.nr_inactive -= 1
    page.lru = 0


def lru_move(page, lru, tail=False):
    """Move a file folio to the head (or the tail) of list ``lru`` of its lruvec."""
    _lru_del(page)
    _lru_add(page, lru, tail)


def _new_folio(kernel, memcg, inode, index, charged=False, order=0):
    """Charge ``memcg`` for a new folio of page ``index`` (unless the caller
    ``charged`` its whole folio already) and put it in the cache."""
    if not charged:
        kernel.try_charge(memcg, 1)
    page = Page(anon=False, dirty=False, mapcount=0, order=order)
    page.memcg = memcg
    page.inode = inode
    page.index = index
    inode.cache[index] = page
    node = memcg.node
    node.nr_file_pages += 1
    memcg.stat["file"] += 1
    shadow = inode.shadows.pop(index, None) if inode.shadows else None
    _block(node, inode, index, 1, -1 if shadow is not None else 0)
    return page, shadow


def add(kernel, memcg, inode, index, can_swap=False, charged=False, order=0):
    """filemap_add_folio: charge ``memcg`` for a new folio of page ``index`` of a
    regular file (unless the caller ``charged`` its whole folio already), put it in
    the cache and on the file LRU: the inactive list, or the active one when its
    shadow entry says it refaulted within the workingset."""
    page, shadow = _new_folio(kernel, memcg, inode, index, charged, order)
    lru = INACTIVE
    if shadow is not None:
        # workingset_test_recent: the anon lists count while the evicting cgroup
        # could swap (mem_cgroup_get_nr_swap_pages).
        dev = getattr(kernel, "swap", None)
        if dev is not None and dev.free() > 0 and swap_room(shadow[0]) > 0:
            can_swap = True
        activate, restore = workingset.refault(memcg, 1, shadow, True, can_swap)
        if activate:
            lru = ACTIVE
        page.workingset = restore
    _lru_add(page, lru)
    return page


def add_shmem(kernel, memcg, inode, index, order=0, charged=False):
    """shmem_alloc_and_add_folio: charge ``memcg`` for a new shmem folio of ``order``
    starting at page ``index`` (unless the caller ``charged`` it whole already; it is
    swap-backed, so it counts on the inactive anon list) and put its pages in the
    file's cache.  Returns the folio's first page."""
    nr = 1 << order
    if order and not charged:
        kernel.try_charge(memcg, nr)
        charged = True
    first = None
    for i in range(index, index + nr):
        page, _ = _new_folio(kernel, memcg, inode, i, charged, order)
        if first is None:
            first = page
    memcg.node.nr_shmem += nr
    memcg.stat["shmem"] += nr
    memcg.lruvec.nr[LRU_INACTIVE_ANON] += nr
    if order == PMD_ORDER:
        memcg.node.nr_shmem_thps += 1
    return first


def folio_head(page):
    """The first page of the folio ``page`` belongs to."""
    if not page.order:
        return page
    return page.inode.cache[page.index & ~((1 << page.order) - 1)]


def is_shmem(page):
    """Whether ``page`` is a shmem folio's (the internal mount or a tmpfs)."""
    inode = page.inode
    return inode.tmpfs or inode.dev == (0x00, 0x01)


def note_pmd_mapped(head, delta):
    """A PMD mapping of the PMD-order folio starting at ``head`` was made (+1) or
    removed (-1): the folio counts in NR_SHMEM_PMDMAPPED (NR_FILE_PMDMAPPED for a
    regular file's) while it has one."""
    head.pmd_maps += delta
    if head.pmd_maps == (1 if delta > 0 else 0) and head.memcg is not None:
        node = head.memcg.node
        if is_shmem(head):
            node.nr_shmem_pmdmapped += delta
        else:
            node.nr_file_pmdmapped += delta


def split_folio(node, head):
    """The large folio starting at ``head`` becomes base pages (its PMD mappings must
    be gone already)."""
    order = head.order
    if order == PMD_ORDER and head.lru == 0 and head.memcg is not None:
        node.nr_shmem_thps -= 1
    cache = head.inode.cache
    for i in range(head.index, head.index + (1 << order)):
        p = cache.get(i)
        if p is not None:
            p.order = 0


def _remove(kernel, page):
    """Take a folio out of its file's cache, its LRU list and its cgroup's charge."""
    memcg = page.memcg
    node = memcg.node
    if page.lru:
        _lru_del(page)
        if page.order == PMD_ORDER and not page.index & ((1 << PMD_ORDER) - 1):
            node.nr_file_thps -= 1   # a regular file's PMD-order folio leaves whole
    elif memcg is not None and page.inode is not None:
        node.nr_shmem -= 1
        memcg.stat["shmem"] -= 1
        memcg.lruvec.nr[LRU_INACTIVE_ANON] -= 1
        if page.order == PMD_ORDER and not page.index & ((1 << PMD_ORDER) - 1):
            # A PMD-order folio leaves whole (a partial removal splits it first):
            # counted when its first page goes.
            node.nr_shmem_thps -= 1
    if page.dirty:
        set_clean(page)
    del page.inode.cache[page.index]
    _block(node, page.inode, page.index, -1, 0)
    node.nr_file_pages -= 1
    memcg.stat["file"] -= 1
    kernel.uncharge(memcg, 1)


def delete(kernel, page):
    """Truncation or invalidation: the folio leaves the cache without a shadow."""
    _remove(kernel, page)
    page.memcg = None


def evict(kernel, page, target):
    """__remove_mapping for reclaim of ``target``'s subtree: the folio leaves the cache
    and a shadow entry takes its place (workingset_eviction)."""
    node = page.memcg.node
    _remove(kernel, page)
    inode = page.inode
    inode.shadows[page.index] = workingset.eviction(target, 1, page.workingset)
    _block(node, inode, page.index, 0, 1)
    page.memcg = None


def mark_accessed(page):
    """folio_mark_accessed: the first access sets PG_referenced; the next moves an
    inactive folio to the active list (pgactivate, and the workingset clock ticks)
    and clears PG_referenced again."""
    if not page.referenced:
        page.referenced = True
    elif page.lru == INACTIVE:
        lru_move(page, ACTIVE)
        memcg = page.memcg
        count_event(memcg, "pgactivate", 1)
        workingset.age_nonresident(memcg, 1)
        page.referenced = False


def deactivate(page):
    """folio_deactivate (MADV_COLD): an active folio moves to the head of the
    inactive list; PG_referenced is cleared."""
    if page.lru == ACTIVE:
        lru_move(page, INACTIVE)
        count_event(page.memcg, "pgdeactivate", 1)
    page.referenced = False


def deactivate_file(page):
    """deactivate_file_folio: an unmapped folio goes to the inactive list with its
    referenced bit cleared; a clean one to the tail, next in line for reclaim."""
    if page.mapcount or not page.lru:
        return  # someone still maps it: left alone
    was_active = page.lru == ACTIVE
    page.referenced = False
    if page.dirty:
        lru_move(page, INACTIVE)
    else:
        lru_move(page, INACTIVE, tail=True)
        count_event(page.memcg, "pgrotated", 1)
    if was_active:
        count_event(page.memcg, "pgdeactivate", 1)


def set_dirty(page):
    """folio_mark_dirty: count a newly dirty folio (nr_dirty, file_dirty)."""
    if not page.dirty:
        page.dirty = True
        memcg = page.memcg
        if memcg is not None:
            memcg.node.nr_dirty += 1
            memcg.node.events["nr_dirtied"] += 1
            memcg.stat["file_dirty"] += 1


def set_clean(page):
    """Writeback of a dirty folio, simulated as done at once (nr_written)."""
    if page.dirty:
        page.dirty = False
        memcg = page.memcg
        if memcg is not None:
            memcg.node.nr_dirty -= 1
            memcg.node.events["nr_written"] += 1
            memcg.stat["file_dirty"] -= 1


def note_mapped(page, delta):
    """A folio gained its first mapping (+1) or lost its last one (-1): NR_FILE_MAPPED."""
    memcg = page.memcg
    if memcg is not None:
        memcg.node.nr_mapped += delta
        memcg.stat["file_mapped"] += delta


def drop_shadows(node, inode, lo, hi):
    """Truncation also removes the shadow entries of pages ``[lo, hi)``."""
    shadows = inode.shadows
    if shadows:
        for index in [i for i in shadows if lo <= i < hi]:
            del shadows[index]
            _block(node, inode, index, 0, -1)


def check(kernel):
    """Assert that the LRU lists, the cgroups' charges and counters and the node's
    counts agree with each other (a checking aid for tests)."""
    node = kernel.node
    memcgs = list(kernel.root_memcg.subtree())
    sums = dict.fromkeys(("anon", "file", "shmem", "file_mapped", "file_dirty"), 0)
    lru_sums = [0, 0, 0, 0]
    for m in memcgs:
        lruvec = m.lruvec
        for lst, lru in ((LRU_INACTIVE_FILE, INACTIVE), (LRU_ACTIVE_FILE, ACTIVE)):
            pages = lruvec.lists[lst]
            assert len(pages) == lruvec.nr[lst], (m.name, lst, len(pages), lruvec.nr[lst])
            for page in pages:
                assert page.memcg is m and page.lru == lru, (m.name, page.index)
                assert page.inode.cache.get(page.index) is page
                assert page.index not in page.inode.shadows
        for i in range(4):
            lru_sums[i] += lruvec.nr[i]
        for name in sums:
            assert m.stat[name] >= 0, (m.name, name, m.stat[name])
            sums[name] += m.stat[name]
        subtree = sum(c.stat["anon"] + c.stat["file"] for c in m.subtree())
        assert m.current == subtree, (m.name, m.current, subtree)
    for m in memcgs:
        swap = sum(c.stat["swap"] for c in m.subtree())
        assert m.stat["swap"] >= 0 and m.swap_current == swap, (m.name, m.swap_current, swap)
    dev = getattr(kernel, "swap", None)
    if dev is not None:
        assert 0 <= dev.used <= dev.total, (dev.used, dev.total)
        assert dev.used == dev.slots.npages() == kernel.root_memcg.swap_current, (
            dev.used, dev.slots.npages(), kernel.root_memcg.swap_current)
    assert (node.nr_inactive, node.nr_active) == (lru_sums[2], lru_sums[3])
    for inode, b in node.shadow_nodes:
        counts = inode.blocks[b]
        assert counts[0] == 0 and counts[1] > 0, (inode.path, b, counts)
    for inode in kernel.files.values():
        blocks = {}
        for index in inode.cache:
            blocks.setdefault(index >> XA_CHUNK_SHIFT, [0, 0])[0] += 1
        for index in inode.shadows:
            blocks.setdefault(index >> XA_CHUNK_SHIFT, [0, 0])[1] += 1
        assert blocks == inode.blocks, (inode.path, blocks, inode.blocks)
        for b, (npages, nshadows) in blocks.items():
            assert ((inode, b) in node.shadow_nodes) == (nshadows > 0 and npages == 0)
    assert lru_sums[0] + lru_sums[1] == sums["anon"] + sums["shmem"]
    assert (node.nr_anon, node.nr_file_pages, node.nr_shmem, node.nr_mapped, node.nr_dirty) == (
        sums["anon"], sums["file"], sums["shmem"], sums["file_mapped"], sums["file_dirty"]), (
        node.nr_anon, node.nr_file_pages, node.nr_shmem, node.nr_mapped, node.nr_dirty, sums)


__all__ = ["Page", "check", "shrink_shadow_nodes", "Node", "lookup", "add", "add_shmem", "delete", "evict",
           "mark_accessed", "deactivate", "deactivate_file", "set_dirty", "set_clean",
           "note_mapped", "lru_move", "drop_shadows", "INACTIVE", "ACTIVE"]

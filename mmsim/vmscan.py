"""Page reclaim (mm/vmscan.c, the classic two-list LRU): kswapd, direct reclaim at
the min watermark, reclaim at a memory cgroup's limit, and the list scans they share.

A reclaim pass walks priorities from DEF_PRIORITY (12) down; at each one every cgroup
in the target's subtree has ``size >> priority`` pages of each file list scanned, 32 at
a time.  The active list is only aged (``shrink_active_list``) when the inactive one
is too small for its size (``inactive_is_low``) or when file pages refaulted into the
active list since the last pass; an aged folio goes to the inactive list with
PG_workingset set unless it is mapped, referenced and executable.  The inactive scan
(``shrink_folio_list``) gives a second chance to folios referenced through a mapping,
activates those referenced twice or mapped executable, and evicts the rest, leaving
shadow entries for workingset detection.

Without swap (the machine has none until ``Kernel.swapon``), anonymous memory is not
scanned at all (get_scan_count's SCAN_FILE), as on the reference machine.
"""

from math import isqrt

from . import pagecache, pages, workingset
from .defs import PAGE_SHIFT, PAGE_SIZE
from .memcg import (LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE, count_event,
                    memory_event)
from .pagecache import ACTIVE, INACTIVE
from .vma import VM_EXEC, VM_LOCKED, VM_MAYSHARE

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16


class ScanControl:
    """struct scan_control: one reclaim invocation's goal, progress and choices."""

    __slots__ = ("nr_to_reclaim", "nr_reclaimed", "nr_scanned", "priority", "kswapd",
                 "target", "may_deactivate", "skipped_deactivate", "force_deactivate",
                 "cgroup", "rmap", "memcg_low_reclaim", "memcg_low_skipped", "full_walk",
                 "writeback", "inside")

    def __init__(self, target, nr_to_reclaim, kswapd=False, cgroup=False):
        self.target = target          # the cgroup whose subtree is reclaimed
        self.nr_to_reclaim = nr_to_reclaim
        self.nr_reclaimed = self.nr_scanned = 0
        self.priority = DEF_PRIORITY
        self.kswapd = kswapd
        self.cgroup = cgroup          # reclaim at a cgroup's limit (cgroup_reclaim)
        self.may_deactivate = False
        self.skipped_deactivate = self.force_deactivate = False
        self.memcg_low_reclaim = self.memcg_low_skipped = False
        self.full_walk = kswapd       # walk every cgroup of the subtree in each pass
        self.rmap = None              # inode -> [(mm, vma)], built on first need
        self.writeback = []           # dirty folios written back during this reclaim
        # Cgroup reclaim only looks at the young bits of the target's own mappings.
        self.inside = {id(m) for m in target.subtree()} if cgroup else None


def inactive_is_low(memcg, sizes=None):
    """inactive_is_low for the file lists of ``memcg``'s subtree: the inactive list
    should hold at least 1/sqrt(10 * GiB of file pages) of them.  ``sizes``: the
    four LRU sizes to judge by (reclaim passes the flushed ones); by default the
    current ones."""
    if sizes is None:
        inactive = memcg.lru_total(LRU_INACTIVE_FILE)
        active = memcg.lru_total(LRU_ACTIVE_FILE)
    else:
        inactive, active = sizes[LRU_INACTIVE_FILE], sizes[LRU_ACTIVE_FILE]
    gb = (inactive + active) >> (30 - PAGE_SHIFT)
    ratio = isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


def isolate(memcg, lst, nr_to_scan):
    """isolate_lru_folios: folios off the tail of list ``lst`` until ``nr_to_scan``
    pages were taken; a large folio is taken whole (every page of it on that list),
    so one scan takes at least one folio whatever its size."""
    pages_ = memcg.lruvec.lists[lst]
    taken, seen = [], set()
    for page in pages_:
        if len(taken) >= nr_to_scan:
            break
        if page in seen:
            continue
        if page.order:
            nr = 1 << page.order
            head = page.index & ~(nr - 1)
            cache = page.inode.cache
            folio = [p for p in (cache.get(i) for i in range(head, head + nr))
                     if p is not None and p.order == page.order and p.memcg is memcg
                     and p.lru == page.lru]
        else:
            folio = [page]
        for p in folio:
            if p not in seen:
                seen.add(p)
                taken.append(p)
    return taken


def _rmap(kernel, sc):
    """The file mappings of every live address space, by inode (the i_mmap trees)."""
    if sc.rmap is None:
        rmap = {}
        for mm in pages._live_mms(kernel):
            for vma in mm.tree.values():
                f = vma.file
                if f is not None and vma.pages:
                    rmap.setdefault(f.inode, []).append((mm, vma))
        sc.rmap = rmap
    return sc.rmap


def _mappings(kernel, sc, page):
    """Each ``(mm, vma, vpn)`` whose page table maps ``page``."""
    out = []
    index = page.index
    for mm, vma in _rmap(kernel, sc).get(page.inode, ()):
        first = vma.pgoff
        if not first <= index < first + ((vma.end - vma.start) >> PAGE_SHIFT):
            continue
        vpn = (vma.start >> PAGE_SHIFT) + index - first
        pm = vma.pages
        i = pm.index(vpn) if pm else -1
        if i >= 0 and pm.tag[i].pool is page:
            out.append((mm, vma, vpn))
    return out


def folio_referenced(kernel, sc, page):
    """folio_referenced: how many mappings had the folio's PTE young (clearing them),
    whether one of those is executable, and whether a mapping is mlocked.  Mappings
    without recency (MADV_SEQUENTIAL/RANDOM) and, for cgroup reclaim, mappings of
    address spaces outside the target are not looked at."""
    if not page.mapcount:
        return 0, False, False
    n, exec_ = 0, False
    inside = sc.inside
    for mm, vma, vpn in _mappings(kernel, sc, page):
        if inside is not None and id(mm.memcg) not in inside:
            continue
        if vma.vm_flags & VM_LOCKED:
            return n, exec_, True
        pm = vma.pages
        i = pm.index(vpn)
        span = pm.tag[i]
        if span.young and pages.has_recency(vma):
            pm.tag[i] = pages.cached_span(page, False)
            n += 1
            if vma.vm_flags & VM_EXEC:
                exec_ = True
    return n, exec_, False


def _activate(page, memcg):
    """move_folios_to_lru of a folio put back active: the workingset clock ticks."""
    pagecache.lru_move(page, ACTIVE)
    workingset.age_nonresident(memcg, 1)


def _try_to_unmap(kernel, sc, page):
    for mm, vma, vpn in _mappings(kernel, sc, page):
        addr = vpn << PAGE_SHIFT
        pages.zap_vma(mm, vma, addr, addr + PAGE_SIZE)


def _count(memcg, sc, base, nr, kind="_file"):
    """pgscan/pgsteal: the cgroup counts every scan; /proc/vmstat's per-reclaimer
    counters leave out reclaim at a cgroup's limit, its _file (or _anon) ones do not."""
    stat = memcg.stat
    which = base + ("_kswapd" if sc.kswapd else "_direct")
    stat[base] += nr
    stat[which] += nr
    events = memcg.node.events
    events[base + kind] += nr
    if not sc.cgroup:
        events[which] += nr


def shrink_active_list(kernel, memcg, nr_to_scan, sc):
    """Age up to ``nr_to_scan`` folios off the tail of the active file list."""
    taken = isolate(memcg, LRU_ACTIVE_FILE, nr_to_scan)
    if not taken:
        return
    memcg.stat["pgrefill"] += len(taken)
    if not sc.cgroup:
        memcg.node.events["pgrefill"] += len(taken)
    deactivated = 0
    for page in taken:
        refs, exec_, locked = folio_referenced(kernel, sc, page)
        if (refs and exec_) or locked:
            _activate(page, memcg)   # mapped executable text stays active
            continue
        page.workingset = True
        pagecache.lru_move(page, INACTIVE)
        deactivated += 1
    if deactivated:
        count_event(memcg, "pgdeactivate", deactivated)


def shrink_inactive_list(kernel, memcg, nr_to_scan, sc):
    """Scan up to ``nr_to_scan`` folios off the tail of the inactive file list and
    reclaim what shrink_folio_list allows; returns the pages reclaimed."""
    taken = isolate(memcg, LRU_INACTIVE_FILE, nr_to_scan)
    if not taken:
        return 0
    sc.nr_scanned += len(taken)
    _count(memcg, sc, "pgscan", len(taken))
    reclaimed = activated = 0
    target = sc.target
    for page in taken:
        refs, exec_, locked = folio_referenced(kernel, sc, page)
        if locked:
            # Simulator-defined: an mlocked folio goes back to the active list (the
            # kernel culls it to the unevictable list); it is never evicted.
            _activate(page, memcg)
            continue
        referenced = page.referenced
        page.referenced = False
        if refs:
            page.referenced = True
            if referenced or refs > 1 or exec_:
                _activate(page, memcg)
                activated += 1
            else:
                pagecache.lru_move(page, INACTIVE)   # second chance
            continue
        if page.dirty:
            # The kernel activates a dirty file folio and has the flushers write it;
            # when writeback ends it rotates to the inactive tail.  Simulator-defined:
            # the writeback ends when this reclaim does (finish_writeback).
            pagecache.set_clean(page)
            _activate(page, memcg)
            activated += 1
            sc.writeback.append(page)
            continue
        if page.mapcount:
            _try_to_unmap(kernel, sc, page)
        pagecache.evict(kernel, page, target)
        reclaimed += 1
    if activated:
        count_event(memcg, "pgactivate", activated)
    if reclaimed:
        _count(memcg, sc, "pgsteal", reclaimed)
    return reclaimed


def _protected(memcg, sc):
    """memory.low: a cgroup within its protection is skipped until nothing else is left."""
    if memcg.low and memcg.current <= memcg.low:
        if not sc.memcg_low_reclaim:
            sc.memcg_low_skipped = True
            return True
        memory_event(memcg, "low")
    return False


def shrink_lruvec(kernel, memcg, sc):
    """One cgroup's share of a reclaim pass at ``sc.priority`` (SCAN_FILE)."""
    lruvec = memcg.lruvec
    nr = [0, 0, lruvec.nr[LRU_INACTIVE_FILE] >> sc.priority,
          lruvec.nr[LRU_ACTIVE_FILE] >> sc.priority]
    if kernel.swap is not None:
        nr = get_scan_count_swap(kernel, memcg, sc, nr)
    proportional = not sc.cgroup and not sc.kswapd and sc.priority == DEF_PRIORITY
    reclaimed = 0
    while nr[LRU_INACTIVE_ANON] or nr[LRU_INACTIVE_FILE] or nr[LRU_ACTIVE_FILE]:
        if nr[LRU_INACTIVE_ANON]:
            n = min(nr[LRU_INACTIVE_ANON], SWAP_CLUSTER_MAX)
            nr[LRU_INACTIVE_ANON] -= n
            reclaimed += shrink_anon_list(kernel, memcg, n, sc)
        for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            n = min(nr[lru], SWAP_CLUSTER_MAX)
            if not n:
                continue
            nr[lru] -= n
            if lru == LRU_ACTIVE_FILE:
                if sc.may_deactivate:
                    shrink_active_list(kernel, memcg, n, sc)
                else:
                    sc.skipped_deactivate = True
            else:
                reclaimed += shrink_inactive_list(kernel, memcg, n, sc)
        if reclaimed < sc.nr_to_reclaim or proportional:
            continue
        break   # only file lists are scanned: nothing to rebalance
    sc.nr_reclaimed += reclaimed


# ---------------------------------------------------------------- anonymous memory (swap)


def get_scan_count_swap(kernel, memcg, sc, nr):
    """get_scan_count once there is swap: ``nr`` (the file-only targets) with the
    anonymous share.  SCAN_FILE when the cgroup has no swap room, for cgroup reclaim
    at swappiness 0, and in cache-trim mode (enough inactive file and no reason to
    deactivate); SCAN_EQUAL at priority 0; SCAN_ANON when the machine's file pages
    are tiny; else SCAN_FRACT by swappiness (simulator-defined: the recent reclaim
    costs lru_note_cost records are not kept, so the fraction is swappiness against
    200 - swappiness)."""
    lruvec = memcg.lruvec
    anon = lruvec.nr[LRU_INACTIVE_ANON] >> sc.priority
    swappiness = kernel.swappiness
    if pages.swap_room(kernel, memcg) <= 0 or (sc.cgroup and not swappiness):
        return nr
    if not sc.priority and swappiness:
        return [anon, 0, nr[2], nr[3]]
    target = sc.target
    if not sc.cgroup:
        file = target.lru_total(LRU_INACTIVE_FILE) + target.lru_total(LRU_ACTIVE_FILE)
        if (file + kernel.free_pages() <= kernel.watermarks()[2]
                and target.lru_total(LRU_INACTIVE_ANON) >> sc.priority):
            return [anon, 0, 0, 0]   # file_is_tiny
    if not sc.may_deactivate and target.lru_total(LRU_INACTIVE_FILE) >> sc.priority:
        return nr                    # cache_trim_mode
    ap, fp = swappiness, 200 - swappiness
    denominator = ap + fp
    return [anon * ap // denominator, 0, nr[2] * fp // denominator,
            nr[3] * fp // denominator]


def _anon_vmas(kernel, memcg):
    """The swappable VMAs charged to ``memcg``: private anonymous, not mlocked, with
    resident pages, of its address spaces (by pid), in address order."""
    out = []
    for mm in pages._live_mms(kernel):
        if mm.memcg is not memcg:
            continue
        for vma in mm.tree.values():
            if (vma.pages and vma.file is None and vma.special is None
                    and not vma.vm_flags & (VM_LOCKED | VM_MAYSHARE)):
                out.append((mm, vma))
    return out


def shrink_anon_list(kernel, memcg, nr_to_scan, sc):
    """Scan ``nr_to_scan`` private anonymous pages of ``memcg`` and swap out the cold
    ones; returns the pages reclaimed.

    Simulator-defined (the range model keeps no per-page anon LRU): the inactive anon
    list is a clock over the cgroup's swappable VMAs in address order, its hand kept
    in the lruvec.  An extent whose PTEs are young gets its second chance as
    folio_check_references gives it (young cleared, PG_referenced set; counted
    pgactivate when it was already referenced); an old one is swapped out while the
    cgroup has swap room.  A THP is swapped out whole.  A page shared after fork
    (pooled) is swapped out of one mapping at a time: that mapping gets its own slot
    and the others keep the page (docs/pressure.md, "Swap")."""
    room = pages.swap_room(kernel, memcg)
    if room <= 0:
        return 0
    vmas = _anon_vmas(kernel, memcg)
    if not vmas:
        return 0
    hand = memcg.lruvec.anon_hand
    first, start = 0, vmas[0][1].start >> PAGE_SHIFT
    if hand is not None:
        for idx, (mm, vma) in enumerate(vmas):
            if mm is hand[0] and vma.end >> PAGE_SHIFT > hand[1]:
                first, start = idx, max(hand[1], vma.start >> PAGE_SHIFT)
                break
    # The clock from the hand round to it again.
    mm0, vma0 = vmas[first]
    segments = [(mm0, vma0, start, vma0.end >> PAGE_SHIFT)]
    segments += [(mm, vma, vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT)
                 for mm, vma in vmas[first + 1:] + vmas[:first]]
    if start > vma0.start >> PAGE_SHIFT:
        segments.append((mm0, vma0, vma0.start >> PAGE_SHIFT, start))
    budget = nr_to_scan
    scanned = reclaimed = activated = 0
    target = sc.target
    stop = None
    for mm, vma, lo, hi in segments:
        pm = vma.pages
        plan = []
        if pm:
            i, j = pm.overlap(lo, hi)
            for k in range(i, j):
                span = pm.tag[k]
                kind = span.kind
                if kind == pages.CACHED or (kind == pages.PRIVATE and not span.anon):
                    continue
                x, y = max(pm.lo[k], lo), min(pm.hi[k], hi)
                if span.pmd:
                    x &= pages._PMD_MASK
                    y = min(pm.hi[k], ((y - 1) & pages._PMD_MASK) + pages.PMD_PAGES)
                if y - x > budget:
                    y = x + budget
                    if span.pmd:
                        y = ((y - 1) & pages._PMD_MASK) + pages.PMD_PAGES
                plan.append((x, y, span))
                budget -= y - x
                if budget <= 0:
                    stop = (mm, y)
                    break
        for x, y, span in plan:
            scanned += y - x
            if span.young:
                if span.referenced:
                    activated += y - x
                i, j = pm.carve(x, y)
                for k in range(i, j):
                    pm.tag[k] = pages._with(pm.tag[k], young=False, referenced=True)
                pm.join(i - 1, j + 1)
                continue
            n = min(y - x, room)
            if n <= 0:
                continue
            if span.pmd and n < y - x:
                continue   # a THP goes out whole or not at all
            pages.swap_out(mm, vma, x, x + n, target)
            room -= n
            reclaimed += n
        if stop is not None:
            break
    memcg.lruvec.anon_hand = stop
    if scanned:
        _count(memcg, sc, "pgscan", scanned, "_anon")
    if activated:
        count_event(memcg, "pgactivate", activated)
    if reclaimed:
        _count(memcg, sc, "pgsteal", reclaimed, "_anon")
    sc.nr_scanned += scanned
    return reclaimed


def shrink_node(kernel, sc):
    """One pass over the target's subtree at ``sc.priority``."""
    target = sc.target
    # prepare_scan_control reads the cgroup statistics as last flushed (only the
    # rate-limited flush, two seconds late, would refresh them here): during a burst
    # of reclaim the list sizes and activations it judges by are those of before it.
    flushed = target.flushed
    refaults = flushed["workingset_activate_file"]
    sc.may_deactivate = (sc.force_deactivate or refaults != target.lruvec.refaults[1]
                         or inactive_is_low(target, flushed["lru"]))
    subtree = target.subtree()
    lruvec = target.lruvec
    # A partial walk (direct and cgroup reclaim) goes on from where the last one
    # stopped and ends once the goal is met; kswapd walks every cgroup.
    start = 0 if sc.full_walk or lruvec.iter_pos >= len(subtree) else lruvec.iter_pos
    for i in range(start, len(subtree)):
        memcg = subtree[i]
        if memcg is target or not _protected(memcg, sc):
            shrink_lruvec(kernel, memcg, sc)
        if not sc.full_walk:
            lruvec.iter_pos = i + 1
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
    else:
        lruvec.iter_pos = 0
    # shrink_slab: the shadow shrinker with the node-wide bound (the node's present
    # pages).  Simulator-defined: one list for the node, trimmed to the bound at once;
    # the kernel also keeps per-cgroup lists bounded by a cgroup's LRU pages, and
    # trims them gradually.
    pagecache.shrink_shadow_nodes(kernel.node, kernel.memory >> PAGE_SHIFT)


def finish_writeback(sc):
    """The writeback started by this reclaim ends: each folio still active and clean
    rotates to the tail of the inactive list (folio_rotate_reclaimable)."""
    for page in sc.writeback:
        if page.lru == ACTIVE and not page.dirty:
            pagecache.lru_move(page, INACTIVE, tail=True)
            count_event(page.memcg, "pgrotated", 1)
    sc.writeback = []


def do_try_to_free_pages(kernel, sc):
    """Reclaim passes at falling priority until ``sc.nr_to_reclaim`` pages are freed;
    retried once forcing deactivation, and once into memory.low protection, when a
    full round freed nothing.  Returns the pages reclaimed."""
    initial = sc.priority
    while True:
        while sc.priority >= 0:
            shrink_node(kernel, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            sc.priority -= 1
        target = sc.target
        target.lruvec.refaults[1] = target.flushed["workingset_activate_file"]
        finish_writeback(sc)
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        if not sc.full_walk:
            sc.priority, sc.full_walk = initial, True
            continue
        if sc.skipped_deactivate:
            sc.priority, sc.force_deactivate, sc.skipped_deactivate = initial, True, False
            continue
        if sc.memcg_low_skipped and not sc.memcg_low_reclaim:
            sc.priority, sc.memcg_low_reclaim, sc.force_deactivate = initial, True, False
            continue
        return 0


def try_to_free_mem_cgroup_pages(kernel, memcg, nr_pages):
    """Reclaim at a cgroup's limit: at least SWAP_CLUSTER_MAX pages from its subtree."""
    sc = ScanControl(memcg, max(nr_pages, SWAP_CLUSTER_MAX), cgroup=True)
    return do_try_to_free_pages(kernel, sc)


def try_to_free_pages(kernel, nr_pages=SWAP_CLUSTER_MAX):
    """Direct reclaim of the whole machine (an allocation below the min watermark)."""
    sc = ScanControl(kernel.root_memcg, max(nr_pages, SWAP_CLUSTER_MAX))
    return do_try_to_free_pages(kernel, sc)


def balance_pgdat(kernel):
    """kswapd: reclaim until free memory is back above the high watermark, or every
    priority has been tried.  Returns the pages reclaimed."""
    sc = ScanControl(kernel.root_memcg, 0, kswapd=True)
    while sc.priority >= 1:
        high = kernel.watermarks()[2]
        if kernel.free_pages() >= high:
            break
        # kswapd_shrink_node: the goal is the high watermark itself; the priority
        # rises unless a round scanned that much and reclaimed something.
        sc.nr_to_reclaim = max(SWAP_CLUSTER_MAX, high)
        sc.nr_scanned = 0
        before = sc.nr_reclaimed
        shrink_node(kernel, sc)
        if sc.nr_scanned < sc.nr_to_reclaim or sc.nr_reclaimed == before:
            sc.priority -= 1
    root = kernel.root_memcg
    root.lruvec.refaults[1] = root.flushed["workingset_activate_file"]
    finish_writeback(sc)
    return sc.nr_reclaimed


__all__ = ["ScanControl", "inactive_is_low", "shrink_active_list", "shrink_inactive_list",
           "shrink_lruvec", "shrink_node", "do_try_to_free_pages", "finish_writeback",
           "try_to_free_mem_cgroup_pages", "try_to_free_pages", "balance_pgdat",
           "SWAP_CLUSTER_MAX", "DEF_PRIORITY", "MAX_RECLAIM_RETRIES"]

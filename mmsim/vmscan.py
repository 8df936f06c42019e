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
scanned at all (get_scan_count's SCAN_FILE), as on the reference machine.  With swap,
get_scan_count balances anon against file by swappiness and the recent reclaim costs
lru_note_cost records, and the anon lists (whose order is kept with the anonymous
pages, ``pages.lru_state``) are scanned and aged by the same rules for anonymous
folios: an inactive anon folio referenced twice is activated, an old one swapped out,
and an active one is always deactivated when the active list is aged.
"""

from math import isqrt

from . import pagecache, pages, workingset
from .defs import PAGE_SHIFT, PAGE_SIZE
from .memcg import (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE,
                    count_event, lru_note_cost, memory_event)
from .pagecache import ACTIVE, INACTIVE
from .vma import VM_EXEC, VM_LOCKED, VM_MAYSHARE

SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
MAX_RECLAIM_RETRIES = 16
MAX_SWAPPINESS = 200
DEACTIVATE_ANON, DEACTIVATE_FILE = 1, 2


class ScanControl:
    """struct scan_control: one reclaim invocation's goal, progress and choices."""

    __slots__ = ("nr_to_reclaim", "nr_reclaimed", "nr_scanned", "priority", "kswapd",
                 "target", "may_deactivate", "skipped_deactivate", "force_deactivate",
                 "cgroup", "rmap", "memcg_low_reclaim", "memcg_low_skipped", "full_walk",
                 "writeback", "inside", "anon_cost", "file_cost", "cache_trim_mode",
                 "file_is_tiny", "anon_lists")

    def __init__(self, target, nr_to_reclaim, kswapd=False, cgroup=False):
        self.target = target          # the cgroup whose subtree is reclaimed
        self.nr_to_reclaim = nr_to_reclaim
        self.nr_reclaimed = self.nr_scanned = 0
        self.priority = DEF_PRIORITY
        self.kswapd = kswapd
        self.cgroup = cgroup          # reclaim at a cgroup's limit (cgroup_reclaim)
        self.may_deactivate = 0       # DEACTIVATE_ANON | DEACTIVATE_FILE
        self.skipped_deactivate = self.force_deactivate = False
        self.anon_cost = self.file_cost = 0
        self.cache_trim_mode = self.file_is_tiny = False
        self.anon_lists = {}          # (cgroup id, active) -> [extents oldest first, next]
        self.memcg_low_reclaim = self.memcg_low_skipped = False
        self.full_walk = kswapd       # walk every cgroup of the subtree in each pass
        self.rmap = None              # inode -> [(mm, vma)], built on first need
        self.writeback = []           # dirty folios written back during this reclaim
        # Cgroup reclaim only looks at the young bits of the target's own mappings.
        self.inside = {id(m) for m in target.subtree()} if cgroup else None


def inactive_is_low(memcg, sizes=None, lru=LRU_INACTIVE_FILE):
    """inactive_is_low for the file (or, with ``lru`` LRU_INACTIVE_ANON, the anon)
    lists of ``memcg``'s subtree: the inactive list should hold at least
    1/sqrt(10 * GiB on both lists) of them.  ``sizes``: the four LRU sizes to judge
    by (reclaim passes the flushed ones); by default the current ones."""
    if sizes is None:
        inactive = memcg.lru_total(lru)
        active = memcg.lru_total(lru + 1)
    else:
        inactive, active = sizes[lru], sizes[lru + 1]
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
    deactivated = rotated = 0
    for page in taken:
        refs, exec_, locked = folio_referenced(kernel, sc, page)
        if (refs and exec_) or locked:
            _activate(page, memcg)   # mapped executable text stays active
            rotated += bool(refs and exec_)
            continue
        page.workingset = True
        pagecache.lru_move(page, INACTIVE)
        deactivated += 1
    if deactivated:
        count_event(memcg, "pgdeactivate", deactivated)
    lru_note_cost(memcg, True, 0, rotated)


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
    # No file page is written by reclaim itself here (the flushers' writeback is
    # simulated apart): the cost is the pages that were not reclaimed.
    lru_note_cost(memcg, True, 0, len(taken) - reclaimed)
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
    """One cgroup's share of a reclaim pass at ``sc.priority``: the four lists scanned
    32 pages at a time in the kernel's order (inactive anon, active anon, inactive
    file, active file) with get_scan_count's targets; once the goal is met (outside
    proportional direct reclaim) the type with less left to scan stops and the other
    is cut to the share of its target the first has left.  Then the anon lists are
    rebalanced if their inactive list is low (with swap)."""
    lruvec = memcg.lruvec
    nr = get_scan_count(kernel, memcg, sc)
    targets = list(nr)
    proportional = not sc.cgroup and not sc.kswapd and sc.priority == DEF_PRIORITY
    reclaimed = 0
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            n = min(nr[lru], SWAP_CLUSTER_MAX)
            if not n:
                continue
            nr[lru] -= n
            if lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE):
                if sc.may_deactivate & (DEACTIVATE_FILE if lru == LRU_ACTIVE_FILE
                                        else DEACTIVATE_ANON):
                    if lru == LRU_ACTIVE_FILE:
                        shrink_active_list(kernel, memcg, n, sc)
                    else:
                        shrink_active_anon(kernel, memcg, n, sc)
                else:
                    sc.skipped_deactivate = True
            elif lru == LRU_INACTIVE_FILE:
                reclaimed += shrink_inactive_list(kernel, memcg, n, sc)
            else:
                reclaimed += shrink_anon_list(kernel, memcg, n, sc)
        if reclaimed < sc.nr_to_reclaim or proportional:
            continue
        nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
        nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
        if not nr_file or not nr_anon:
            break
        if nr_file > nr_anon:
            base = LRU_INACTIVE_ANON
            percentage = nr_anon * 100 // (targets[0] + targets[1] + 1)
        else:
            base = LRU_INACTIVE_FILE
            percentage = nr_file * 100 // (targets[2] + targets[3] + 1)
        nr[base] = nr[base + 1] = 0
        other = LRU_INACTIVE_FILE if base == LRU_INACTIVE_ANON else LRU_INACTIVE_ANON
        for lru in (other, other + 1):
            scanned = targets[lru] - nr[lru]
            nr[lru] = targets[lru] * (100 - percentage) // 100
            nr[lru] -= min(nr[lru], scanned)
    sc.nr_reclaimed += reclaimed
    if kernel.swap is not None and inactive_is_low(memcg, memcg.flushed["lru"],
                                                   LRU_INACTIVE_ANON):
        shrink_active_anon(kernel, memcg, SWAP_CLUSTER_MAX, sc)


# ---------------------------------------------------------------- anonymous memory (swap)


def prepare_scan_control(kernel, sc):
    """prepare_scan_control: the anon/file costs of the target, which active lists may
    be aged (refaults since the last reclaim, or an inactive list too small, judged
    by the statistics as last flushed), cache-trim mode and file_is_tiny."""
    target = sc.target
    flushed = target.flushed
    lruvec = target.lruvec
    sc.anon_cost, sc.file_cost = lruvec.anon_cost, lruvec.file_cost
    if sc.force_deactivate:
        sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
    else:
        sc.may_deactivate = 0
        if (flushed["workingset_activate_anon"] != lruvec.refaults[0]
                or inactive_is_low(target, flushed["lru"], LRU_INACTIVE_ANON)):
            sc.may_deactivate |= DEACTIVATE_ANON
        if (flushed["workingset_activate_file"] != lruvec.refaults[1]
                or inactive_is_low(target, flushed["lru"])):
            sc.may_deactivate |= DEACTIVATE_FILE
    sc.cache_trim_mode = bool(flushed["lru"][LRU_INACTIVE_FILE] >> sc.priority
                              and not sc.may_deactivate & DEACTIVATE_FILE)
    if not sc.cgroup:
        root = kernel.root_memcg
        file = root.lru_total(LRU_INACTIVE_FILE) + root.lru_total(LRU_ACTIVE_FILE)
        sc.file_is_tiny = bool(file + kernel.free_pages() <= kernel.watermarks()[2]
                               and not sc.may_deactivate & DEACTIVATE_ANON
                               and root.lru_total(LRU_INACTIVE_ANON) >> sc.priority)


def snapshot_refaults(target):
    """snapshot_refaults: the refault activations reclaim of ``target`` has seen."""
    target.lruvec.refaults[0] = target.flushed["workingset_activate_anon"]
    target.lruvec.refaults[1] = target.flushed["workingset_activate_file"]


def get_scan_count(kernel, memcg, sc):
    """get_scan_count: how many pages of each list of ``memcg`` to scan at this
    priority.  SCAN_FILE without swap room for the cgroup, and for cgroup reclaim at
    swappiness 0; SCAN_EQUAL at priority 0; SCAN_ANON when file_is_tiny; SCAN_FILE
    in cache-trim mode; otherwise SCAN_FRACT: anon and file in inverse proportion to
    their recent reclaim costs (lru_note_cost), weighted by swappiness against
    200 - swappiness, each type getting at least a third before that weighting."""
    nr = [n >> sc.priority for n in memcg.lruvec.nr]
    swappiness = kernel.swappiness
    if (kernel.swap is None or pages.swap_room(kernel, memcg) <= 0
            or (sc.cgroup and not swappiness)):
        return [0, 0, nr[2], nr[3]]                         # SCAN_FILE
    if not sc.priority and swappiness:
        return nr                                           # SCAN_EQUAL
    if sc.file_is_tiny:
        return [nr[0], nr[1], 0, 0]                         # SCAN_ANON
    if sc.cache_trim_mode:
        return [0, 0, nr[2], nr[3]]                         # SCAN_FILE
    total = sc.anon_cost + sc.file_cost
    anon_cost = total + sc.anon_cost
    file_cost = total + sc.file_cost
    total = anon_cost + file_cost
    ap = swappiness * (total + 1) // (anon_cost + 1)
    fp = (MAX_SWAPPINESS - swappiness) * (total + 1) // (file_cost + 1)
    denominator = ap + fp
    if not denominator:
        return [0, 0, 0, 0]
    return [nr[0] * ap // denominator, nr[1] * ap // denominator,
            nr[2] * fp // denominator, nr[3] * fp // denominator]


def _anon_extents(kernel, memcg, active):
    """The anonymous pages on ``memcg``'s active (or inactive) anon list, oldest first:
    ``(stamp, pid, first page, mm, vma, end)`` per extent of the cgroup's address
    spaces (private pages, and pages shared since a fork whose pool is charged to
    it, seen through each mapping).  Mlocked mappings are on the unevictable list."""
    out = []
    for pid, mm in enumerate(pages._live_mms(kernel)):   # in pid order
        if mm.memcg is not memcg:
            continue
        for vma in mm.tree.values():
            pm = vma.pages
            if (not pm or vma.file is not None or vma.special is not None
                    or vma.vm_flags & (VM_LOCKED | VM_MAYSHARE)):
                continue
            for x, y, span in pm.items():
                if span.kind == pages.PRIVATE:
                    if span.anon and span.lru[0] == active:
                        out.append((span.lru[2], pid, x, mm, vma, y))
                elif span.kind == pages.POOLED and span.pool.memcg is memcg:
                    d = span.delta
                    for a, b, st in span.pool.runs(x - d, y - d):
                        if st[1] and st[4][0] == active:
                            out.append((st[4][2], pid, a + d, mm, vma, b + d))
    out.sort(key=lambda e: e[:3])
    return out


def _take_anon(kernel, memcg, active, nr_to_scan, sc):
    """isolate_lru_folios on an anon list: ``(mm, vma, x, y, span)`` pieces off the
    list's tail until ``nr_to_scan`` pages (a THP whole).  Each piece is still on
    that list with the stamp it was found with."""
    key = (id(memcg), active)
    state = sc.anon_lists.get(key)
    taken = []
    budget = nr_to_scan
    regathered = False
    while budget > 0:
        if state is None or state[1] >= len(state[0]):
            if regathered or taken:
                break   # what this scan took is off the list until it is put back
            state = sc.anon_lists[key] = [_anon_extents(kernel, memcg, active), 0]
            regathered = True
            if not state[0]:
                break
        ext, pos = state
        stamp, _, lo, mm, vma, hi = ext[pos]
        pm = vma.pages
        if pm is None:
            state[1] += 1
            continue
        got = []
        i, j = pm.overlap(lo, hi)
        for k in range(i, j):
            span = pm.tag[k]
            x, y = max(pm.lo[k], lo), min(pm.hi[k], hi)
            if span.kind == pages.PRIVATE:
                if not span.anon or span.lru[0] != active or span.lru[2] != stamp:
                    continue
                got.append((x, y, span))
            elif span.kind == pages.POOLED and span.pool.memcg is memcg:
                d = span.delta
                for a, b, st in span.pool.runs(x - d, y - d):
                    if st[1] and st[4][0] == active and st[4][2] == stamp:
                        got.append((a + d, b + d, span))
        used = lo
        for x, y, span in got:
            if budget <= 0:
                break
            if y - x > budget:
                y = x + budget
                if span.pmd:
                    size = 1 << pages.folio_order(span.pmd)
                    y = min(((y - 1) & ~(size - 1)) + size, hi)
            taken.append((mm, vma, x, y, span))
            budget -= y - x
            used = y
        if budget > 0 or used >= hi:
            state[1] += 1
        else:
            ext[pos] = (stamp, ext[pos][1], used, mm, vma, hi)
    return taken


def shrink_anon_list(kernel, memcg, nr_to_scan, sc):
    """shrink_inactive_list on the inactive anon list: ``nr_to_scan`` pages off its
    tail through shrink_folio_list's rules for anonymous folios; returns the pages
    reclaimed.  folio_check_references: a young PTE (cleared) sets PG_referenced and
    keeps the folio on the inactive list, or activates it if PG_referenced was set
    already; without one the folio (PG_referenced cleared) is swapped out while the
    cgroup has swap room, and activated when it has none (add_to_swap failing).  A
    THP goes out whole.  A page shared since a fork goes out of one mapping at a time
    (simulator-defined; docs/pressure.md, "Swap").  Then lru_note_cost: the pages
    written and the pages not reclaimed."""
    taken = _take_anon(kernel, memcg, False, nr_to_scan, sc)
    if not taken:
        return 0
    scanned = sum(y - x for _, _, x, y, _ in taken)
    stamp = pages.new_stamp()
    room = pages.swap_room(kernel, memcg)
    reclaimed = activated = written = 0
    target = sc.target
    for mm, vma, x, y, span in taken:
        n = y - x
        if span.kind == pages.PRIVATE:
            referenced, workingset_ = span.referenced, span.lru[1]
        else:
            st = span.pool.runs(x - span.delta, x - span.delta + 1)[0][2]
            referenced, workingset_ = st[3], st[4][1]
        if span.young and pages.has_recency(vma):
            active = bool(referenced)
            pages.set_anon_lru(mm, vma, x, y, pages.lru_state(active, workingset_, stamp),
                               young=False, referenced=True)
            if active:
                activated += n
                workingset.age_nonresident(memcg, n)
                if pages.swap_full(kernel, memcg):
                    # activate_locked: not a candidate for swapping, so its swap
                    # space is reclaimed once swap is half full.
                    pages.free_swap_cache(mm, vma, x, y)
            continue
        need = pages.swap_need(vma, x, y)
        if span.kind == pages.PRIVATE and span.pmd:
            pages.large_swapout(mm, vma, x, y, need <= room)
        if need <= room:
            written += pages.swap_out(mm, vma, x, y, target)
            room -= need
            reclaimed += n
            continue
        # No slot for it: activate_locked.
        pages.set_anon_lru(mm, vma, x, y, pages.lru_state(True, workingset_, stamp),
                           referenced=False)
        activated += n
        workingset.age_nonresident(memcg, n)
    _count(memcg, sc, "pgscan", scanned, "_anon")
    sc.nr_scanned += scanned
    if activated:
        count_event(memcg, "pgactivate", activated)
    if reclaimed:
        _count(memcg, sc, "pgsteal", reclaimed, "_anon")
    lru_note_cost(memcg, False, written, scanned - reclaimed)
    return reclaimed


def shrink_active_anon(kernel, memcg, nr_to_scan, sc):
    """shrink_active_list on the active anon list: ``nr_to_scan`` pages off its tail
    (``pgrefill``) go to the head of the inactive list with PG_workingset set
    (``pgdeactivate``).  folio_referenced clears their young PTEs, but only
    executable page cache stays active for them: an anonymous folio never does."""
    taken = _take_anon(kernel, memcg, True, nr_to_scan, sc)
    if not taken:
        return
    n = sum(y - x for _, _, x, y, _ in taken)
    memcg.stat["pgrefill"] += n
    if not sc.cgroup:
        memcg.node.events["pgrefill"] += n
    head = pages.lru_state(False, True, pages.new_stamp())
    for mm, vma, x, y, span in taken:
        pages.set_anon_lru(mm, vma, x, y, head,
                           young=False if pages.has_recency(vma) else None)
    count_event(memcg, "pgdeactivate", n)


def shrink_node(kernel, sc):
    """One pass over the target's subtree at ``sc.priority``."""
    target = sc.target
    # prepare_scan_control reads the cgroup statistics as last flushed (only the
    # rate-limited flush, two seconds late, would refresh them here): during a burst
    # of reclaim the list sizes and activations it judges by are those of before it.
    prepare_scan_control(kernel, sc)
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
    # The deferred split shrinker (thp-deferred_split, memcg aware): queued partially
    # mapped folios are split.
    pages.deferred_split_scan(kernel, target if sc.cgroup else None)


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
        snapshot_refaults(sc.target)
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
    snapshot_refaults(kernel.root_memcg)
    finish_writeback(sc)
    return sc.nr_reclaimed


__all__ = ["ScanControl", "inactive_is_low", "shrink_active_list", "shrink_inactive_list",
           "shrink_anon_list", "shrink_active_anon", "get_scan_count", "prepare_scan_control",
           "shrink_lruvec", "shrink_node", "do_try_to_free_pages", "finish_writeback",
           "try_to_free_mem_cgroup_pages", "try_to_free_pages", "balance_pgdat",
           "SWAP_CLUSTER_MAX", "DEF_PRIORITY", "MAX_RECLAIM_RETRIES"]

"""The memory model: resident pages behind each VMA, page faults, zapping, and the
bookkeeping that keeps pages with their VMA when VMAs split, merge or move.

Resident memory is kept as ranges, not pages.  A VMA's ``pages`` is a ``PageMap``:
sorted, disjoint extents of page numbers, each with a ``Span`` saying what every page
of the extent maps, so a run of pages in the same state costs one extent whatever its
length, and faults, zaps, fork and COW cost O(extents touched).  A Span is one of:

- private: pages this mapping alone maps (mapcount 1), their folio state in the Span
  (for anonymous pages also their place on the anon LRU and, in the swap cache, their
  slot);
- pooled: folios shared with other mappings since a fork.  Their folio state
  (mapcount, anon, dirty, PG_referenced) lives in a ``Pool``, itself runs of indices in
  the same state, which every mapper reads; the Span says where its pages sit in the
  pool (``delta``: page number minus pool index);
- a cached folio: one page-cache or shmem ``Page`` (file pages stay one object each).

Every Span also carries what belongs to the mapping rather than to the folio: whether
the PTE (or PMD) is young, and the folio size (``pmd``: True for PMD-mapped THPs, each
aligned 512-page block of such an extent being one THP; an order 2..9 for PTE-mapped
large folios, each naturally aligned block of that order being one folio; False for
base pages; see ``folio_order``).  Spans are interned, so equal
neighbours are recognised by identity and coalesce.  Guard markers (``vma.guards``) are
page ranges, so a guard region costs the same at any size.
"""

import errno
from array import array
from bisect import bisect_left, bisect_right

from . import memcg as memcg_mod
from . import filemap, pagecache, readahead, thp, workingset
from . import shmem as shmem_mod
from .defs import (HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_down, align_up, error,
                   pfn_up)
from .pagecache import Page
from .memcg import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON
from .vma import (VM_HUGEPAGE, VM_LOCKED, VM_MAYSHARE, VM_READ, VM_SHARED, VM_UFFD_MISSING,
                  VM_RAND_READ, VM_SEQ_READ, VM_WRITE, AnonVma)

PMD_PAGES = HPAGE_PMD_NR
_PMD_MASK = ~(PMD_PAGES - 1)

PRIVATE, POOLED, CACHED = 0, 1, 2
PMD_ORDER = thp.PMD_ORDER


def folio_order(code):
    """The folio order a Span's ``pmd`` field stands for: True is a PMD-mapped THP
    (order 9), False base pages, an int 2..9 a PTE-mapped large folio of that order."""
    if code is True:
        return PMD_ORDER
    return code or 0


class Span:
    """What every page of an extent maps (see the module's docstring); interned."""

    __slots__ = ("kind", "pool", "delta", "young", "pmd", "anon", "dirty", "referenced",
                 "lru", "swap")

    def __init__(self, kind, pool, delta, young, pmd, anon, dirty, referenced, lru=None,
                 swap=None):
        self.kind = kind
        self.pool = pool
        self.delta = delta
        self.young = young
        self.pmd = pmd
        self.anon = anon
        self.dirty = dirty
        self.referenced = referenced
        self.lru = lru   # private anonymous pages: their place on the anon LRU
        # Private anonymous pages in the swap cache: page number minus slot number.
        self.swap = swap

    @property
    def order(self):
        """The order of the folios of this extent (0: base pages)."""
        return folio_order(self.pmd)

    def __repr__(self):
        where = ("private", "pooled", "cached")[self.kind]
        return (f"<Span {where} young={self.young} pmd={self.pmd} anon={self.anon} "
                f"dirty={self.dirty} referenced={self.referenced} delta={self.delta} "
                f"lru={self.lru} swap={self.swap}>")


# ------------------------------------------------------------------ the anonymous LRU
#
# An anonymous folio's place on its lruvec's anon lists is kept with its folio state,
# not on a list: ``(active, workingset, stamp)`` (PG_active, PG_workingset, and when
# it was last put at the head of a list).  ``stamp`` is read from one clock that ticks
# only when something is moved between or within the lists (reclaim's scans, MADV_COLD,
# activation); pages added between two ticks share a stamp, so a run of pages faulted
# in one go stays one extent.  A list's order, oldest first, is by stamp, then (within
# one stamp, simulator-defined) by the pid of the mm and the page's address.

_LRU_CLOCK = [1]
_LRU_STATES = {}
_LRU_OWNER = [None]   # id() of the address space that last put new anonymous pages on a list


def lru_owner(mm):
    """New anonymous pages of ``mm`` are about to be added.  Once the machine has swap
    (when the order of the anon lists decides what reclaim takes) the clock ticks when
    the adding address space changes, so that interleaved processes keep their order;
    one address space's pages added between two ticks are ordered by address
    (simulator-defined).  Without swap nothing ages anonymous memory, and pages keep
    coalescing into the fewest extents."""
    if mm.kernel.swap is not None and _LRU_OWNER[0] != id(mm):
        _LRU_OWNER[0] = id(mm)
        _LRU_CLOCK[0] += 1


def lru_state(active, workingset, stamp=None):
    """The interned anon LRU state; ``stamp`` None: now (the head of the list)."""
    key = (active, workingset, _LRU_CLOCK[0] if stamp is None else stamp)
    st = _LRU_STATES.get(key)
    if st is None:
        st = _LRU_STATES[key] = key
    return st


def new_stamp():
    """A stamp younger than every page on the lists now and older than every page put
    on them from now on: the head of a list, for a batch of pages moved there."""
    _LRU_CLOCK[0] += 2
    return _LRU_CLOCK[0] - 1


_PRIVATE_SPANS = {}


def private_span(young, pmd, anon, dirty, referenced, lru=None, swap=None):
    """The interned Span of private pages in this state; anonymous pages without an
    ``lru`` state are new folios, at the head of the inactive list
    (folio_add_lru_vma).  ``swap``: the pages are in the swap cache, page number
    minus slot number."""
    if anon:
        if lru is None:
            lru = _LRU_STATES.get((False, False, _LRU_CLOCK[0])) or lru_state(False, False)
    else:
        lru = swap = None
    key = (young, pmd, anon, dirty, referenced, lru, swap)
    span = _PRIVATE_SPANS.get(key)
    if span is None:
        span = _PRIVATE_SPANS[key] = Span(PRIVATE, None, 0, young, pmd, anon, dirty,
                                          referenced, lru, swap)
    return span


def pooled_span(pool, delta, young, pmd):
    """The interned Span of pages of ``pool`` at page number = index + ``delta``."""
    key = (delta, young, pmd)
    span = pool.spans.get(key)
    if span is None:
        span = pool.spans[key] = Span(POOLED, pool, delta, young, pmd, None, None, None)
    return span


def cached_span(page, young, pmd=False):
    """A Span mapping the single cached page ``page`` (``pmd``: as one page of a PMD
    mapping of its folio)."""
    return Span(CACHED, page, 0, young, pmd, None, None, None)


def _with(span, young=None, pmd=None, referenced=None):
    """``span`` with the mapping's young or PMD bit, or a private span's PG_referenced,
    changed (None leaves a field as it is)."""
    y = span.young if young is None else young
    p = span.pmd if pmd is None else pmd
    kind = span.kind
    if kind == PRIVATE:
        r = span.referenced if referenced is None else referenced
        return private_span(y, p, span.anon, span.dirty, r, span.lru, span.swap)
    if kind == POOLED:
        return pooled_span(span.pool, span.delta, y, p)
    if y == span.young and p == span.pmd:
        return span
    return cached_span(span.pool, y, p)


# The state of pooled folios: (mapcount, anon, dirty, referenced, anon LRU state, swap
# cache: pool index minus slot number or None), interned.
_STATES = {}


def folio_state(mapcount, anon, dirty, referenced, lru=None, swap=None):
    """The interned pool state tuple."""
    key = (mapcount, anon, dirty, referenced, lru, swap)
    st = _STATES.get(key)
    if st is None:
        st = _STATES[key] = key
    return st


class RangeMap:
    """Sorted, disjoint half-open ranges ``[lo, hi)`` of page numbers, each with a tag;
    neighbours that touch and have the same tag coalesce (see ``joinable``)."""

    __slots__ = ("lo", "hi", "tag")

    def __init__(self):
        self.lo = array("q")
        self.hi = array("q")
        self.tag = []

    def __len__(self):
        return len(self.tag)

    def __bool__(self):
        return bool(self.tag)

    def npages(self):
        """Pages covered by every range."""
        return sum(self.hi) - sum(self.lo)

    def items(self):
        """``(lo, hi, tag)`` of every range, in order."""
        return zip(self.lo, self.hi, self.tag)

    def index(self, v):
        """The range holding ``v``, or -1."""
        i = bisect_right(self.lo, v) - 1
        return i if i >= 0 and v < self.hi[i] else -1

    def overlap(self, a, b):
        """``(i, j)``: ranges ``i .. j-1`` are those meeting ``[a, b)``."""
        return bisect_right(self.hi, a), bisect_left(self.lo, b)

    def cut(self, v):
        """Split the range that has ``v`` strictly inside it at ``v``."""
        i = bisect_right(self.lo, v) - 1
        if i >= 0 and v < self.hi[i] and self.lo[i] != v:
            self.lo.insert(i + 1, v)
            self.hi.insert(i + 1, self.hi[i])
            self.hi[i] = v
            self.tag.insert(i + 1, self.tag[i])

    def carve(self, a, b):
        """Cut at ``a`` and ``b``; return ``(i, j)``: the ranges inside ``[a, b)``."""
        self.cut(a)
        self.cut(b)
        return self.overlap(a, b)

    def replace(self, i, j, los, his, tags):
        """Put the ranges of ``los``/``his``/``tags`` in the place of ranges ``i .. j-1``
        and coalesce around them."""
        self.lo[i:j] = array("q", los)
        self.hi[i:j] = array("q", his)
        self.tag[i:j] = tags
        self.join(i - 1, i + len(tags) + 1)

    def insert(self, a, b, tag):
        """Add ``[a, b)`` (free of ranges) with ``tag``, coalescing with neighbours."""
        i = bisect_left(self.lo, a)
        self.lo.insert(i, a)
        self.hi.insert(i, b)
        self.tag.insert(i, tag)
        self.join(i - 1, i + 2)

    def delete(self, i, j):
        """Drop ranges ``i .. j-1``."""
        del self.lo[i:j]
        del self.hi[i:j]
        del self.tag[i:j]

    def joinable(self, tag):
        """Whether ranges with this tag coalesce with equal touching neighbours."""
        return True

    def join(self, i, j):
        """Coalesce equal touching neighbours among ranges ``i .. j-1``."""
        i = max(i, 0)
        j = min(j, len(self.tag))
        lo, hi, tag = self.lo, self.hi, self.tag
        k = i + 1
        while k < j:
            t = tag[k]
            if t is tag[k - 1] and hi[k - 1] == lo[k] and self.joinable(t):
                hi[k - 1] = hi[k]
                del lo[k], hi[k], tag[k]
                j -= 1
            else:
                k += 1

    def take(self, a, b):
        """Remove the ranges inside ``[a, b)`` (cut at its ends) and return them as a
        new map."""
        i, j = self.carve(a, b)
        part = type(self)()
        part.lo = self.lo[i:j]
        part.hi = self.hi[i:j]
        part.tag = self.tag[i:j]
        self.delete(i, j)
        return part

    def put(self, part, shift=0, retag=None):
        """Add every range of ``part`` (free of ranges here), moved by ``shift``, each
        tag passed through ``retag`` when given."""
        if not part:
            return
        los = [v + shift for v in part.lo] if shift else part.lo
        his = [v + shift for v in part.hi] if shift else part.hi
        tags = [retag(t) for t in part.tag] if retag is not None else part.tag
        i = bisect_left(self.lo, los[0])
        self.lo[i:i] = array("q", los)
        self.hi[i:i] = array("q", his)
        self.tag[i:i] = tags
        self.join(i - 1, i + len(tags) + 1)


class PageMap(RangeMap):
    """The resident pages of one VMA: extents of page numbers tagged with Spans."""

    __slots__ = ()

    def joinable(self, tag):
        return tag.kind != CACHED


class Pool(RangeMap):
    """Folios shared by several mappings since a fork: runs of pool indices tagged with
    their state tuple ``(mapcount, anon, dirty, referenced)``."""

    __slots__ = ("spans", "memcg")

    def __init__(self, memcg=None):
        super().__init__()
        self.spans = {}
        self.memcg = memcg   # the cgroup its anonymous folios are charged to

    def append(self, a, b, st):
        """Add ``[a, b)`` above every run."""
        if self.tag and self.hi[-1] == a and self.tag[-1] is st:
            self.hi[-1] = b
        else:
            self.lo.append(a)
            self.hi.append(b)
            self.tag.append(st)

    def runs(self, a, b):
        """``(x, y, state)`` of the runs in ``[a, b)``, clipped to it."""
        i, j = self.overlap(a, b)
        lo, hi, tag = self.lo, self.hi, self.tag
        return [(max(lo[k], a), min(hi[k], b), tag[k]) for k in range(i, j)]

    def apply(self, a, b, fn):
        """Give every run in ``[a, b)`` the state ``fn(state)``; a run whose new state is
        None leaves the pool (its folios are freed)."""
        i, j = self.carve(a, b)
        los, his, tags = [], [], []
        lo, hi, tag = self.lo, self.hi, self.tag
        for k in range(i, j):
            st = fn(tag[k])
            if st is not None:
                los.append(lo[k])
                his.append(hi[k])
                tags.append(st)
        self.replace(i, j, los, his, tags)


def _inc(st):
    return folio_state(st[0] + 1, st[1], st[2], st[3], st[4], st[5])


def _dec(st):
    if st[0] == 1:
        return None
    return folio_state(st[0] - 1, st[1], st[2], st[3], st[4], st[5])


def _set_dirty(st):
    return st if st[2] else folio_state(st[0], st[1], True, st[3], st[4], st[5])


def _set_referenced(st):
    return st if st[3] else folio_state(st[0], st[1], st[2], True, st[4], st[5])


def _clear_referenced(st):
    return folio_state(st[0], st[1], st[2], False, st[4], st[5]) if st[3] else st


class PageRanges:
    """A set of page numbers as sorted, disjoint, non-touching half-open ranges
    ``[lo, hi)``: the guard markers of one VMA (MADV_GUARD_INSTALL), or the pages the
    program never stored data in (``vma.unwritten``)."""

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
        return (isinstance(other, PageRanges) and self.starts == other.starts
                and self.ends == other.ends)

    def __repr__(self):
        return f"PageRanges({self.ranges()!r})"

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

    def count(self, lo, hi):
        """How many pages of ``[lo, hi)`` the set holds."""
        i = bisect_right(self.ends, lo)
        n = 0
        starts, ends = self.starts, self.ends
        while i < len(starts) and starts[i] < hi:
            n += min(ends[i], hi) - max(starts[i], lo)
            i += 1
        return n

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
        part = PageRanges()
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
        out = PageRanges()
        out.starts = [s + delta for s in self.starts]
        out.ends = [e + delta for e in self.ends]
        return out

    def copy(self):
        """An independent copy."""
        return self.shifted(0)


class ZeroMap(RangeMap):
    """The zero-page mappings of one VMA: page ranges whose PTEs map the shared zero
    page (tag False) or whose PMDs map the huge zero folio (tag True; whole aligned
    blocks).  A read fault of private anonymous memory leaves them; they hold no memory
    and count in no RSS, but they are page-table entries: a later write copies (a base
    page, or a THP over a huge zero PMD), and a block holding one is not empty for the
    choice of a large folio."""

    __slots__ = ()

    def copy(self):
        """An independent copy (fork's copy_page_range)."""
        out = ZeroMap()
        out.lo = self.lo[:]
        out.hi = self.hi[:]
        out.tag = self.tag[:]
        return out


def _zero_map(vma):
    z = vma.zero
    if z is None:
        z = vma.zero = ZeroMap()
    return z


def _split_zero_pmd(vma, head, mm=None):
    """__split_huge_pmd of a huge zero PMD at page ``head``: 512 zero-page PTEs
    (``thp_split_pmd`` of ``mm``'s machine, when given)."""
    z = vma.zero
    if not z:
        return
    i = z.index(head)
    if i < 0 or z.tag[i] is not True:
        return
    i, _ = z.carve(head, head + PMD_PAGES)
    z.tag[i] = False
    z.join(i - 1, i + 2)
    if mm is not None:
        mm.kernel.node.events["thp_split_pmd"] += 1


def drop_zero(vma, lo, hi, mm=None):
    """Clear the zero-page mappings of pages ``[lo, hi)`` (a zap); a huge zero PMD the
    range covers in part is split first."""
    z = vma.zero
    if not z:
        return
    if lo & (PMD_PAGES - 1):
        _split_zero_pmd(vma, lo & _PMD_MASK, mm)
    if hi & (PMD_PAGES - 1):
        _split_zero_pmd(vma, hi & _PMD_MASK, mm)
    i, j = z.carve(lo, hi)
    if i < j:
        z.delete(i, j)
    if not z:
        vma.zero = None


def huge_zero_at(vma, head):
    """Whether the huge zero folio is PMD-mapped at page ``head`` of ``vma``."""
    z = vma.zero
    if not z:
        return False
    i = z.index(head)
    return i >= 0 and z.tag[i] is True


def zero_pages(vma):
    """``(x, y, huge)`` for every zero-page mapping of ``vma`` (a checking aid)."""
    return list(vma.zero.items()) if vma.zero else []


def merge_guards(dst, marks):
    """Give ``dst`` the guard markers ``marks`` (a PageRanges or None) as well."""
    if marks:
        if dst.guards is None:
            dst.guards = PageRanges()
        dst.guards.update(marks)


def _map(vma):
    pm = vma.pages
    if pm is None:
        pm = vma.pages = PageMap()
    return pm


def span_pieces(span, a, b):
    """``(x, y, mapcount, anon, dirty, referenced)`` for the folio state of the pages
    ``[a, b)`` of an extent tagged ``span``."""
    kind = span.kind
    if kind == PRIVATE:
        return ((a, b, 1, span.anon, span.dirty, span.referenced),)
    if kind == CACHED:
        page = span.pool
        return ((a, b, page.mapcount, page.anon, page.dirty, page.referenced),)
    d = span.delta
    return [(x + d, y + d, st[0], st[1], st[2], st[3])
            for x, y, st in span.pool.runs(a - d, b - d)]


def _shared_in(span, a, b):
    """Whether any folio of ``[a, b)`` (an extent tagged ``span``) has other mappers."""
    kind = span.kind
    if kind == PRIVATE:
        return False
    if kind == CACHED:
        return span.pool.mapcount > 1
    d = span.delta
    return any(st[0] > 1 for _, _, st in span.pool.runs(a - d, b - d))


def page_states(vma):
    """Every resident folio of ``vma`` as ``(vpn, npages, mapcount, anon, dirty,
    referenced, young, pmd)``: one row per base page and one per PMD-mapped THP whose
    pages share one state (``pmd``: PMD-mapped; a checking aid, O(pages))."""
    rows = []
    for x, y, span in (vma.pages.items() if vma.pages else ()):
        for a, b, mapcount, anon, dirty, referenced in span_pieces(span, x, y):
            # A THP whose pages differ (some lost a mapper to COW) is shown page by page.
            step = PMD_PAGES if span.pmd is True and not a % PMD_PAGES and not b % PMD_PAGES else 1
            for vpn in range(a, b, step):
                rows.append((vpn, step, mapcount, anon, dirty, referenced, span.young,
                             span.pmd is True))
    return rows


def anon_lru_states(vma):
    """``(x, y, active)`` for the anonymous pages of ``vma``: whether each run is on
    the active anon list (a checking aid)."""
    out = []
    for x, y, span in (vma.pages.items() if vma.pages else ()):
        if span.kind == PRIVATE and span.anon:
            out.append((x, y, span.lru[0]))
        elif span.kind == POOLED:
            d = span.delta
            out.extend((a + d, b + d, st[4][0]) for a, b, st in span.pool.runs(x - d, y - d)
                       if st[1])
    return out


def rss_pages(vma):
    """Resident pages of ``vma``, a THP counting 512."""
    return vma.pages.npages() if vma.pages else 0


def thp_count(vma):
    """PMD-mapped THPs of ``vma``."""
    pm = vma.pages
    if not pm:
        return 0
    return sum(y - x for x, y, span in pm.items() if span.pmd is True) // PMD_PAGES


def charge_anon(memcg, n, active=False):
    """Charge ``n`` anonymous pages to ``memcg`` (uncharge when negative): its page
    counter, its anon statistics and the count of its anon list (the active one with
    ``active``), and the node's."""
    if n > 0:
        memcg_mod.charge(memcg, n)
    else:
        memcg_mod.uncharge(memcg, -n)
    memcg.stat["anon"] += n
    memcg.lruvec.nr[LRU_ACTIVE_ANON if active else LRU_INACTIVE_ANON] += n
    memcg.node.nr_anon += n


def anon_lru_move(memcg, n, active):
    """``n`` anonymous pages of ``memcg`` move to the active (or inactive) list."""
    nr = memcg.lruvec.nr
    if active:
        nr[LRU_INACTIVE_ANON] -= n
        nr[LRU_ACTIVE_ANON] += n
    else:
        nr[LRU_ACTIVE_ANON] -= n
        nr[LRU_INACTIVE_ANON] += n


def _count(mm, vma, anon, n, charge=True, active=False):
    """Count ``n`` pages (negative: fewer) in the rss counter of their kind; anonymous
    pages allocated or freed (``charge``) are charged to the mm's cgroup too, on the
    anon list ``active`` says.  A page shared since a fork is charged once, to its
    pool's cgroup (``_unmap``)."""
    if anon:
        mm.rss_anon += n
        if charge:
            memcg = mm.memcg
            charge_anon(memcg, n, active)
            if n > 0:
                mm.kernel.note_alloc(memcg)
    elif vma.file is not None and vma.file.shmem:
        mm.rss_shmem += n
    else:
        mm.rss_file += n
    mm.kernel.nr_resident += n
    if n > 0:
        total = mm.rss_anon + mm.rss_file + mm.rss_shmem
        if total > mm.hiwater_rss:
            mm.hiwater_rss = total


def _drop_page(mm, vma, page):
    """A cached folio loses this mapping."""
    page.mapcount -= 1
    if page.mapcount == 0:
        pagecache.note_mapped(page, -1)
    _count(mm, vma, page.anon, -1)


def _map_cached(page):
    page.mapcount += 1
    if page.mapcount == 1:
        pagecache.note_mapped(page, 1)


def _unmap(mm, vma, x, y, span):
    """The pages ``[x, y)`` of an extent tagged ``span`` lose this mapping."""
    kind = span.kind
    if kind == PRIVATE:
        _count(mm, vma, span.anon, x - y, active=span.anon and span.lru[0])
        if span.swap is not None:
            # The last mapping of a swap-cache folio goes: free_swap_cache.
            _slots_put(mm.kernel, x - span.swap, y - span.swap)
    elif kind == CACHED:
        _drop_page(mm, vma, span.pool)
    else:
        d = span.delta
        pool = span.pool
        pool_runs_before = pool.runs(x - d, y - d)
        for a, b, st in pool_runs_before:
            _count(mm, vma, st[1], a - b, charge=False)
            if st[0] == 1 and st[1]:
                # The last mapper: the folios are freed, and their swap cache.
                charge_anon(pool.memcg, a - b, st[4][0])
                if st[5] is not None:
                    _slots_put(mm.kernel, a - st[5], b - st[5])
        pool.apply(x - d, y - d, _dec)
        if span.pmd:
            _pool_unmapped(mm.kernel, pool, folio_order(span.pmd),
                           [(a, b) for a, b, st in pool_runs_before if st[0] == 1])


def _touch(page):
    """FOLL_TOUCH's folio_mark_accessed."""
    pagecache.mark_accessed(page)


def has_recency(vma):
    """vma_has_recency: MADV_SEQUENTIAL and MADV_RANDOM mappings, and mappings of a file
    advised POSIX_FADV_NOREUSE (FMODE_NOREUSE), do not age the LRU."""
    if vma.vm_flags & (VM_SEQ_READ | VM_RAND_READ):
        return False
    f = vma.file
    return f is None or not getattr(f, "noreuse", False)


def _split_pmd(pm, head, mm=None):
    """split_huge_pmd of the THP at page ``head`` (if that block is PMD-mapped): its 512
    pages become PTE-mapped, keeping their folio state and young bit."""
    i = pm.index(head)
    if i < 0 or pm.tag[i].pmd is not True:
        return
    if pm.tag[i].kind == CACHED:
        # A shmem folio's PMD mapping seen without its mm (split_huge_at's fallback):
        # its pages stay mapped, by PTEs.
        pagecache.note_pmd_mapped(pm.tag[i].pool, -1)
        i, j = pm.carve(head, head + PMD_PAGES)
        for k in range(i, j):
            pm.tag[k] = _with(pm.tag[k], pmd=False)
        return
    i, _ = pm.carve(head, head + PMD_PAGES)
    # The folio stays whole, PTE-mapped (AnonHugePages no longer counts it).
    pm.tag[i] = _with(pm.tag[i], pmd=PMD_ORDER if pm.tag[i].anon or pm.tag[i].kind == POOLED
                      else False)
    if mm is not None:
        mm.kernel.node.events["thp_split_pmd"] += 1
    pm.join(i - 1, i + 2)


def split_huge_at(vma, addr, mm=None):
    """split_huge_pmd: a THP straddling ``addr`` becomes PTE-mapped (``thp_split_pmd``
    of ``mm``'s machine, when given); a PMD mapping of a shmem folio is removed instead
    (the pages refault), for which the caller passes the VMA's ``mm`` (without it,
    simulator-defined, the folio stays mapped by PTEs).  A huge zero PMD there becomes
    zero-page PTEs."""
    if not addr % PMD_SIZE:
        return
    head = (addr >> PAGE_SHIFT) & _PMD_MASK
    if vma.zero:
        _split_zero_pmd(vma, head, mm)
    if not vma.pages:
        return
    if mm is not None and _zap_file_pmd(mm, vma, head):
        return
    _split_pmd(vma.pages, head, mm)


def split_pmds(mm, vma, start, end):
    """Split every anonymous PMD mapping (THP or huge zero folio) wholly inside
    ``[start, end)``: move_page_tables moving it off PMD alignment splits it
    (``thp_split_pmd`` each)."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    pm = vma.pages
    if pm:
        i, j = pm.overlap(lo, hi)
        heads = [h for k in range(i, j) if pm.tag[k].pmd is True and pm.tag[k].kind != CACHED
                 for h in range(max(pm.lo[k], lo), min(pm.hi[k], hi), PMD_PAGES)]
        for head in heads:
            _split_pmd(pm, head, mm)
    z = vma.zero
    if z:
        i, j = z.overlap(lo, hi)
        heads = [h for k in range(i, j) if z.tag[k] is True
                 for h in range(max(z.lo[k], lo), min(z.hi[k], hi), PMD_PAGES)]
        for head in heads:
            _split_zero_pmd(vma, head, mm)


def _widen(pm, a, b):
    """``[a, b)`` grown to whole THPs where its ends fall inside PMD-mapped blocks."""
    i = pm.index(a)
    if i >= 0 and pm.tag[i].pmd is True:
        a &= _PMD_MASK
    i = pm.index(b - 1)
    if i >= 0 and pm.tag[i].pmd is True:
        b = ((b - 1) & _PMD_MASK) + PMD_PAGES
    return a, b


def _narrow(pm, a, b):
    """``[a, b)`` shrunk to leave out THPs it only partly covers."""
    i = pm.index(a)
    if i >= 0 and pm.tag[i].pmd is True and a & (PMD_PAGES - 1):
        a = (a & _PMD_MASK) + PMD_PAGES
    i = pm.index(b - 1)
    if i >= 0 and pm.tag[i].pmd is True and b & (PMD_PAGES - 1):
        b &= _PMD_MASK
    return a, b


def move_range(src, dst, start, end):
    """Hand the pages of ``src`` in ``[start, end)`` to ``dst`` (THPs at the edges must
    have been split already)."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    if src.pages:
        part = src.pages.take(lo, hi)
        if part:
            _map(dst).put(part)
    if src.guards:
        merge_guards(dst, src.guards.take(lo, hi))
    if src.swap:
        _move_swap(src, dst, lo, hi)
    if src.zero:
        _move_zero(src, dst, lo, hi)
    if src.unwritten:
        _merge_unwritten(dst, src.unwritten.take(lo, hi))


def _merge_unwritten(dst, part, shift=0):
    """Give ``dst`` the never-written pages ``part`` (a PageRanges or None), ``shift``
    pages on."""
    if part:
        if shift:
            part = part.shifted(shift)
        if dst.unwritten is None:
            dst.unwritten = part
        else:
            dst.unwritten.update(part)


def mark_unwritten(vma, ranges):
    """New pages ``ranges`` (``(lo, hi)`` pairs) of private anonymous ``vma`` hold
    zeros: nothing has been stored in them."""
    w = vma.unwritten
    if w is None:
        w = vma.unwritten = PageRanges()
    for lo, hi in ranges:
        w.add(lo, hi)


def forget_unwritten(vma, lo, hi):
    """Pages ``[lo, hi)`` are no longer resident zeros: the program stored data in
    them, or they are gone (a zap)."""
    w = vma.unwritten
    if w:
        w.remove(lo, hi)
        if not w:
            vma.unwritten = None


def _move_zero(src, dst, lo, hi, shift=0):
    """Hand the zero-page mappings of ``src`` in ``[lo, hi)`` to ``dst``, ``shift``
    pages on (huge zero PMDs there must lie wholly inside, and stay aligned)."""
    part = src.zero.take(lo, hi)
    if not src.zero:
        src.zero = None
    if part:
        _zero_map(dst).put(part, shift)


def move_all(src, dst):
    """Hand every page (and guard marker) of ``src`` to ``dst`` (a merge)."""
    if src.pages:
        _map(dst).put(src.pages)
    src.pages = None
    if src.swap:
        _move_swap(src, dst, src.start >> PAGE_SHIFT, src.end >> PAGE_SHIFT)
    if src.guards:
        merge_guards(dst, src.guards)
        src.guards = None
    if src.zero:
        _zero_map(dst).put(src.zero)
        src.zero = None
    if src.unwritten:
        _merge_unwritten(dst, src.unwritten)
        src.unwritten = None


def take_range(vma, start, end, mm=None):
    """Remove and return ``(pages, guards)`` of ``vma`` in ``[start, end)`` for a move
    (THPs there must lie wholly inside); either may be None.  Pages of a large folio
    whose other pages ``mm`` still maps (every other page, without ``mm``) leave it."""
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    part = vma.pages.take(lo, hi) if vma.pages else None
    if part:
        _leave_cut_folios(part, lo, hi, mm)
    marks = vma.guards.take(lo, hi) if vma.guards else None
    swapped = zeros = None
    if vma.swap:
        # Swap entries move with the page tables: they travel in the page part.
        holder = _SwapHolder()
        _move_swap(vma, holder, lo, hi)
        swapped = holder.swap
    if vma.zero:
        zeros = vma.zero.take(lo, hi) or None
        if not vma.zero:
            vma.zero = None
    unwritten = vma.unwritten.take(lo, hi) if vma.unwritten else None
    if vma.unwritten is not None and not vma.unwritten:
        vma.unwritten = None
    if swapped or zeros or unwritten:
        part = (part or None, swapped, zeros, unwritten)
    return part or None, marks


def _leave_cut_folios(part, lo, hi, mm=None):
    """Pages ``[lo, hi)`` taken away from the rest of their large folio leave it, as
    base pages (simulator-defined: a folio is its aligned block of addresses), unless
    ``mm`` maps nothing else of it."""
    for v in (lo, hi - 1):
        i = part.index(v)
        if i < 0:
            continue
        span = part.tag[i]
        if span.kind == CACHED or not span.pmd:
            continue
        order = folio_order(span.pmd)
        size = 1 << order
        h = v & ~(size - 1)
        if (h < lo or h + size > hi) and (
                mm is None or span.kind != PRIVATE or _folio_left(mm, h, order)):
            i, j = part.carve(max(h, lo), min(h + size, hi))
            for k in range(i, j):
                part.tag[k] = _with(part.tag[k], pmd=False)
            part.join(i - 1, j + 1)


def put_range(vma, part, marks, shift):
    """Give ``vma`` pages and guard markers taken by ``take_range``, ``shift`` pages
    from where they were."""
    if type(part) is tuple:
        part, swapped, zeros, unwritten = part
        _merge_unwritten(vma, unwritten, shift)
        if swapped:
            holder = _SwapHolder()
            holder.swap = swapped
            _move_swap(holder, vma, -(1 << 62), 1 << 62, shift)
        if zeros:
            _zero_map(vma).put(zeros, shift)
    if part:
        def moved(span):
            if span.pmd and span.pmd is not True and shift % (1 << span.pmd):
                # Simulator-defined: a large folio is its aligned block of addresses,
                # so pages moved off that alignment leave it (as base pages).
                span = _with(span, pmd=False)
            if span.kind == POOLED:
                return pooled_span(span.pool, span.delta + shift, span.young, span.pmd)
            if span.kind == PRIVATE and span.swap is not None:
                return private_span(span.young, span.pmd, True, span.dirty, span.referenced,
                                    span.lru, span.swap + shift)
            if span.kind == CACHED and span.pmd and shift % PMD_PAGES:
                # A shmem PMD mapping moved off PMD alignment: mapped by PTEs
                # (simulator-defined: the kernel's split would drop the mapping).
                if not span.pool.index & (PMD_PAGES - 1):
                    pagecache.note_pmd_mapped(span.pool, -1)
                return _with(span, pmd=False)
            return span
        _map(vma).put(part, shift, moved)
    if marks:
        merge_guards(vma, marks.shifted(shift))


def install_guards(mm, vma, start, end):
    """MADV_GUARD_INSTALL: zap ``[start, end)`` and mark every page in it."""
    zap_vma(mm, vma, start, end)
    if vma.guards is None:
        vma.guards = PageRanges()
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
    there), in time proportional to the extents there."""
    pm = vma.pages
    if not pm:
        return 0
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    i, j = pm.overlap(lo, hi)
    if i >= j:
        return 0
    los, his = pm.lo, pm.hi
    n = sum(his[i:j]) - sum(los[i:j])
    if los[i] < lo:
        n -= lo - los[i]
    if his[j - 1] > hi:
        n -= his[j - 1] - hi
    return n


def zero_page_read(vma, write):
    """A read of a missing page of a private anonymous VMA maps the shared zero page:
    nothing is allocated (with use_zero_page 0 a THP-eligible block allocates a THP,
    which this test does not see)."""
    return not write and vma.file is None and not vma.vm_flags & VM_MAYSHARE


def populate_cost(vma, start, end, write):
    """An upper bound on the pages a fault of every page of ``[start, end)`` makes
    resident: the pages not resident yet (below EOF for a file), none for reads of
    private anonymous memory."""
    if zero_page_read(vma, write):
        return 0
    if vma.swap and _private_anon(vma):
        # Swapped pages come back without adding to anonymous memory plus swap.
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        sw = vma.swap
        i, j = sw.overlap(lo, hi)
        swapped = sum(min(sw.hi[k], hi) - max(sw.lo[k], lo) for k in range(i, j))
        return max(0, ((end - start) >> PAGE_SHIFT) - resident_in(vma, start, end) - swapped)
    f = vma.file
    if f is not None and not f.shmem and (not write or vma.vm_flags & VM_SHARED):
        return 0   # page cache: reclaim makes room for it
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


def _live_mms(kernel):
    seen = set()
    for proc in kernel.processes.values():
        mm = proc.mm
        if mm is None or id(mm) in seen:
            continue
        seen.add(id(mm))
        yield mm


def resident_by_mms(kernel):
    """``machine_resident`` recomputed from the live address spaces (a checking aid)."""
    return sum(mm.rss_anon + mm.rss_file + mm.rss_shmem for mm in _live_mms(kernel))


def check_room(mm, need, pinned=0):
    """Raise ENOMEM when ``need`` more unreclaimable pages (anonymous and shmem, beside
    the mlocked page cache) would take the machine past its memory (``Kernel(memory=...)``) less the min watermark:
    where the kernel would start the OOM killer, the simulator refuses before doing
    anything (docs/mm.md).  With swap, unlocked private anonymous memory may go past
    RAM into free swap; ``pinned`` is the part of ``need`` that cannot (locked, shmem)."""
    kernel = mm.kernel
    node = kernel.node
    room = (kernel.memory >> PAGE_SHIFT) - kernel.watermarks()[0]
    used = node.nr_anon + node.nr_shmem + need
    dev = kernel.swap
    if need and dev is not None and used > room:
        # What swap cannot hold must fit in RAM: shmem, mlocked anonymous memory and
        # mlocked page cache, and the pinned part of the need.
        fixed = node.nr_shmem + pinned + _mlocked_anon(kernel)
        if used > room + dev.free() or fixed > room or fixed + _mlocked_cache(kernel) > room:
            raise error(errno.ENOMEM, "more than the machine's memory and swap")
        return
    if need and used > room:
        raise error(errno.ENOMEM, "more than the machine's memory")
    # Page cache mapped by an mlocked VMA is never reclaimed either; it is counted only
    # when mapped page cache could matter at all, as finding it walks the VMAs.
    if need and used + node.nr_mapped > room and used + _mlocked_cache(kernel) > room:
        raise error(errno.ENOMEM, "more than the machine's memory")


def _mlocked_anon(kernel):
    """Resident private anonymous pages of VM_LOCKED mappings (never swapped)."""
    n = 0
    for mm in _live_mms(kernel):
        for vma in mm.tree.values():
            if vma.vm_flags & VM_LOCKED and vma.pages and _private_anon(vma):
                n += vma.pages.npages()
    return n


def pinned_cost(vma, start, end, write):
    """The part of ``populate_cost`` that could not go to swap: all of it for a locked
    or shared mapping or a file's, nothing for unlocked private anonymous memory."""
    if _private_anon(vma) and not vma.vm_flags & VM_LOCKED:
        return 0
    return populate_cost(vma, start, end, write)


def _mlocked_cache(kernel):
    """The page-cache folios some VM_LOCKED mapping of a regular file maps."""
    seen = set()
    for mm in _live_mms(kernel):
        for vma in mm.tree.values():
            f = vma.file
            if not vma.vm_flags & VM_LOCKED or f is None or f.shmem or not vma.pages:
                continue
            seen.update(id(span.pool) for span in vma.pages.tag if span.kind == CACHED)
    return len(seen)


def _check_access(vma, write, force):
    need = VM_WRITE if write else VM_READ
    if (not vma.vm_flags & need and not force) or vma.special is not None:
        raise OSError(errno.EFAULT, "fault on a page without access")


def _private_anon(vma):
    return vma.file is None and not vma.vm_flags & VM_MAYSHARE


def populate(mm, vma, start, end, write, force=False, touch=False):
    """Fault every page of ``[start, end)`` in ``vma`` in order (GUP, or a loop of
    accesses), stopping with EFAULT at the first guard page.  Private anonymous memory
    is faulted a range at a time; file pages one by one."""
    policy = mm.kernel.thp_pmd_policy
    if _private_anon(vma):
        _check_access(vma, write, force)
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        stop = first_guard(vma, start, end)
        top = hi if stop is None else stop >> PAGE_SHIFT
        if top > lo:
            _anon_fault(mm, vma, lo, top, write, touch, policy)
        if stop is not None:
            raise OSError(errno.EFAULT, "fault on a guard page")
        return
    addr = start
    while addr < end:
        fault(mm, vma, addr, write, policy, force, touch)
        vpn = addr >> PAGE_SHIFT
        pm = vma.pages
        i = pm.index(vpn) if pm else -1
        if i >= 0 and pm.tag[i].pmd is True:
            # The other faults inside a PMD-mapped THP would repeat what this one
            # did (young, accessed, dirty): go on after it.
            addr = max(addr + PAGE_SIZE, ((vpn & _PMD_MASK) + PMD_PAGES) << PAGE_SHIFT)
        else:
            addr += PAGE_SIZE


def anon_vma_prepare(vma):
    """Give ``vma`` an anon_vma on its first anonymous fault (anon_vma_prepare)."""
    if vma.anon_vma is None:
        vma.anon_vma = AnonVma()
        vma.forked = False
    return vma.anon_vma


def _access(mm, vma, a, b, write, touch):
    """An access to every resident page of ``[a, b)`` (no PMD-mapped block may be cut
    by its ends, and none inside it may be shared when ``write``): the PTEs become
    young, FOLL_TOUCH marks the folios accessed, and a write dirties the folio or
    breaks COW (a private anonymous copy replaces a folio that is shared, or that is
    not anonymous in a private mapping)."""
    pm = vma.pages
    i, j = pm.carve(a, b)
    if i >= j:
        return
    shared_vma = vma.vm_flags & VM_SHARED
    los, his, tags = [], [], []
    lo, hi, tag = pm.lo, pm.hi, pm.tag
    if write:
        lru_owner(mm)
    fresh = private_span(True, False, True, True, touch)
    # folio_mark_accessed of FOLL_TOUCH on a referenced inactive anonymous folio
    # activates it (an mlocked one, on the unevictable list, is left as it is).
    activate = touch and not vma.vm_flags & VM_LOCKED
    stamp = None   # one head-of-list stamp for the pages this access activates
    for k in range(i, j):
        x, y, span = lo[k], hi[k], tag[k]
        kind = span.kind
        if kind == PRIVATE:
            if write and not span.pmd and not span.anon and not shared_vma:
                _count(mm, vma, False, x - y)
                anon_vma_prepare(vma)
                _count(mm, vma, True, y - x)
                new = fresh
            elif activate and span.anon and span.referenced and not span.lru[0]:
                _mark_active(mm.memcg, y - x)
                if stamp is None:
                    stamp = new_stamp()
                new = private_span(True, span.pmd, True, span.dirty or bool(write), False,
                                   lru_state(True, span.lru[1], stamp), span.swap)
            else:
                new = private_span(True, span.pmd, span.anon, span.dirty or bool(write),
                                   span.referenced or touch, span.lru, span.swap)
            los.append(x)
            his.append(y)
            tags.append(new)
        elif kind == CACHED:
            page = span.pool
            if touch:
                _touch(page)
            if write and not shared_vma and (page.mapcount > 1 or not page.anon):
                _drop_page(mm, vma, page)
                anon_vma_prepare(vma)
                _count(mm, vma, True, 1)
                new = fresh
            else:
                if write:
                    pagecache.set_dirty(page)   # counted, as truncation uncounts it
                new = _with(span, young=True)
            los.append(x)
            his.append(y)
            tags.append(new)
        else:
            pool = span.pool
            d = span.delta
            kept = pooled_span(pool, d, True, span.pmd)
            for px, py, st in pool.runs(x - d, y - d):
                if write and span.pmd is not True and (st[0] > 1 or not st[1] and not shared_vma):
                    # Copy on write: the mapping gets copies; the pool's folios lose
                    # it (FOLL_TOUCH marked them accessed first).
                    pool.apply(px, py, (lambda s: _dec(_set_referenced(s))) if touch
                               else _dec)
                    _count(mm, vma, st[1], px - py, charge=False)
                    if st[0] == 1 and st[1]:
                        charge_anon(pool.memcg, px - py, st[4][0])
                        if st[5] is not None:
                            _slots_put(mm.kernel, px - st[5], py - st[5])
                    anon_vma_prepare(vma)
                    _count(mm, vma, True, py - px)
                    new = fresh
                else:
                    if write and st[5] is not None:
                        # do_wp_page reusing a swap-cache folio frees its swap first.
                        _slots_put(mm.kernel, px - st[5], py - st[5])
                        pool.apply(px, py, lambda s: folio_state(s[0], s[1], True, s[3],
                                                                 s[4]))
                    if activate and st[1] and st[3] and not st[4][0]:
                        _mark_active(pool.memcg, py - px)
                        if stamp is None:
                            stamp = new_stamp()
                        pool.apply(px, py, lambda s, w=bool(write), t=stamp:
                                   folio_state(s[0], s[1], s[2] or w, False,
                                               lru_state(True, s[4][1], t), s[5]))
                    elif touch or write:
                        pool.apply(px, py, _touch_state(touch, write))
                    new = kept
                los.append(px + d)
                his.append(py + d)
                tags.append(new)
    pm.replace(i, j, los, his, tags)


def _mark_active(memcg, n):
    """folio_activate of ``n`` anonymous pages of ``memcg`` (``pgactivate``) and the
    workingset_activation that goes with folio_mark_accessed."""
    anon_lru_move(memcg, n, True)
    memcg_mod.count_event(memcg, "pgactivate", n)
    workingset.age_nonresident(memcg, n)


def _touch_state(touch, write):
    if touch and write:
        return lambda st: _set_dirty(_set_referenced(st))
    return _set_referenced if touch else _set_dirty


def _anon_fault(mm, vma, lo, hi, write, touch, policy):
    """Fault the pages ``[lo, hi)`` of a private anonymous VMA in order, as one range
    (access checked, no guard page inside).  Swapped pages are swapped in first.  A
    read maps the zero page where nothing is resident.  A write allocates a PMD THP
    for every empty aligned block inside the VMA when THP is allowed (the whole block,
    even the part outside the range), base pages elsewhere, and breaks COW on shared
    pages.  Returns the new pages."""
    if not mm.flags & thp.MMF_VM_HUGEPAGE:
        mm.kernel.khugepaged.fault(mm, vma, lo, hi)
    if vma.swap:
        swap_in(mm, vma, lo, hi, write)
    pm = _map(vma)
    lru_owner(mm)
    if not write:
        if pm:
            a, b = _widen(pm, lo, hi)
            _access(mm, vma, a, b, False, touch)
        if vma.vm_flags & VM_UFFD_MISSING:
            return 0   # handle_userfault: the fault goes to userspace (not modelled)
        return _read_empty(mm, vma, lo, hi, policy, touch)
    thp_ok = thp.allowed(vma, mm.flags, policy, thp.TVA_PAGEFAULT)
    vlo, vhi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
    zero = vma.zero
    new = 0
    fresh = []   # the ranges of new pages (zero-filled but for the program's stores)
    v = lo
    while v < hi:
        k = bisect_right(pm.hi, v)
        n = len(pm.tag)
        if zero:
            z = zero.index(v)
            if z >= 0:
                v = min(hi, zero.hi[z])   # written after the loop (_write_zero)
                continue
        if k < n and pm.lo[k] <= v:
            span = pm.tag[k]
            e = pm.hi[k]
            if span.pmd is True:
                head = v & _PMD_MASK
                top = min(e, ((hi - 1) & _PMD_MASK) + PMD_PAGES)
                if _shared_in(span, head, top):
                    top = head + PMD_PAGES   # then one THP at a time
                if not _shared_in(span, head, top):
                    _access(mm, vma, head, top, True, touch)
                    v = top
                    continue
                # A write to a shared THP splits the PMD, then copies page by page.
                _split_pmd(pm, head, mm)
                top = min(hi, head + PMD_PAGES)
            else:
                top = min(hi, e)
            _access(mm, vma, v, top, True, touch)
            v = top
            continue
        nxt = pm.lo[k] if k < n else vhi
        prev_end = max(pm.hi[k - 1] if k > 0 else vlo, vlo)
        if zero or vma.swap or vma.guards:
            # Any entry in the page table bounds the empty stretch, not pages alone.
            prev_end, nxt = _entries_around(vma, v, prev_end, nxt)
        gap_end = min(hi, nxt)
        anon_vma_prepare(vma)
        if thp_ok:
            head = v & _PMD_MASK
            first = head if head >= prev_end else head + PMD_PAGES
            last = min(min(nxt, vhi) & _PMD_MASK, ((hi - 1) & _PMD_MASK) + PMD_PAGES)
            if last > first:
                if first > v:
                    new += _fill_small(mm, vma, v, first, prev_end, first, touch, fresh)
                if _pmd_alloc_fails(mm, vma, last - first, count=False):
                    # Not all of them: one at a time, and the first that fails falls
                    # back to the PTE path for the rest of its block.
                    last = first + PMD_PAGES
                    if _pmd_alloc_fails(mm, vma, PMD_PAGES):
                        stop = min(hi, last)
                        new += _fill_small(mm, vma, max(v, first), stop, first,
                                           min(nxt, vhi), touch, fresh)
                        v = stop
                        continue
                pm.insert(first, last, private_span(True, True, True, True, touch))
                _count(mm, vma, True, last - first)
                fresh.append((first, last))
                queue_underused(mm, first, last)
                nthp = (last - first) // PMD_PAGES
                mm.kernel.node.events["thp_fault_alloc"] += nthp
                thp.count(mm.kernel, PMD_ORDER, "anon_fault_alloc", nthp)
                new += last - first
                v = last
                continue
        new += _fill_small(mm, vma, v, gap_end, prev_end, min(nxt, vhi), touch, fresh)
        v = gap_end
    if zero:
        new += _write_zero(mm, vma, lo, hi, touch, fresh)
    if touch:
        # GUP's write faults store nothing: every new page holds zeros.
        if fresh:
            mark_unwritten(vma, fresh)
    else:
        # The program's own stores fill [lo, hi); the other pages of the folios they
        # fault in stay zero-filled.
        if fresh:
            out = [(a, min(b, lo)) for a, b in fresh if a < lo]
            out += [(max(a, hi), b) for a, b in fresh if b > hi]
            if out:
                mark_unwritten(vma, out)
        if vma.unwritten:
            forget_unwritten(vma, lo, hi)
    return new


def _pmd_alloc_fails(mm, vma, nr, count=True):
    """Whether vma_alloc_anon_folio_pmd fails for ``nr`` pages of THPs at fault, as
    ``_alloc_ok`` decides (reclaiming first where the gfp may; ``count`` False: a
    quick check that all of them fit, without reclaim); with ``count``, the failure is
    counted (``thp_fault_fallback``, ``anon_fault_fallback`` and their ``_charge``
    forms when the charge failed)."""
    kernel = mm.kernel
    failed = _alloc_ok(mm, nr, vma if count else None)
    if failed is None:
        return False
    if count:
        kernel.node.events["thp_fault_fallback"] += 1
        thp.count(kernel, PMD_ORDER, "anon_fault_fallback")
        if failed == "charge":
            kernel.node.events["thp_fault_fallback_charge"] += 1
            thp.count(kernel, PMD_ORDER, "anon_fault_fallback_charge")
    return True


def _entries_around(vma, v, lower, upper):
    """``[lower, upper)`` (the stretch without pages around the empty page ``v``)
    narrowed to leave out swap entries, zero-page mappings and guard markers too."""
    for rm in (vma.swap, vma.zero):
        if rm:
            k = bisect_right(rm.hi, v)
            if k > 0 and rm.hi[k - 1] > lower:
                lower = rm.hi[k - 1]
            if k < len(rm.lo) and rm.lo[k] < upper:
                upper = rm.lo[k]
    g = vma.guards
    if g:
        k = bisect_right(g.ends, v)
        if k > 0 and g.ends[k - 1] > lower:
            lower = g.ends[k - 1]
        if k < len(g.starts) and g.starts[k] < upper:
            upper = g.starts[k]
    return lower, upper


def _read_empty(mm, vma, lo, hi, policy, touch):
    """Read faults on the pages of ``[lo, hi)`` that nothing maps (private anonymous
    memory): where the PMD path takes the fault (THP allowed, the aligned block inside
    the VMA and empty) the huge zero folio is mapped by a PMD, or with use_zero_page
    off a THP is allocated; elsewhere each page's PTE maps the shared zero page
    (do_huge_pmd_anonymous_page, do_anonymous_page).  Returns the new pages."""
    kernel = mm.kernel
    pm = vma.pages
    zero = vma.zero
    holes = []   # the stretches of [lo, hi) with no page and no zero-page mapping
    v = lo
    marks = []
    for rm in (pm, zero, vma.swap):
        if rm:
            i, j = rm.overlap(lo, hi)
            marks.extend(zip(rm.lo[i:j], rm.hi[i:j]))
    marks.sort()
    for x, y in marks:
        if x > v:
            holes.append((v, x))
        v = max(v, y)
    if v < hi:
        holes.append((v, hi))
    if not holes:
        return 0
    thp_ok = policy != "never" and thp.allowed(vma, mm.flags, policy, thp.TVA_PAGEFAULT)
    vlo, vhi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
    new = 0
    for a, b in holes:
        if not thp_ok:
            _zero_map(vma).insert(a, b, False)
            continue
        v = a
        while v < b:
            head = v & _PMD_MASK
            stop = min(b, head + PMD_PAGES)
            if head >= vlo and head + PMD_PAGES <= vhi and pmd_none(vma, head):
                if kernel.use_zero_page:
                    _zero_map(vma).insert(head, head + PMD_PAGES, True)
                    if not kernel.huge_zero_folio:
                        kernel.huge_zero_folio = True
                        kernel.node.events["thp_zero_page_alloc"] += 1
                elif _pmd_alloc_fails(mm, vma, PMD_PAGES):
                    _zero_map(vma).insert(v, stop, False)   # the PTE path's read
                else:
                    anon_vma_prepare(vma)
                    _map(vma).insert(head, head + PMD_PAGES,
                                     private_span(True, True, True, True, touch))
                    _count(mm, vma, True, PMD_PAGES)
                    mark_unwritten(vma, ((head, head + PMD_PAGES),))
                    queue_underused(mm, head, head + PMD_PAGES)
                    kernel.node.events["thp_fault_alloc"] += 1
                    thp.count(kernel, PMD_ORDER, "anon_fault_alloc")
                    new += PMD_PAGES
            else:
                _zero_map(vma).insert(v, stop, False)
            v = stop
    return new


def _write_zero(mm, vma, lo, hi, touch, fresh):
    """Write faults on the zero-page mappings of ``[lo, hi)``: a huge zero PMD gives
    way to a new THP (do_huge_zero_wp_pmd: whatever the VMA's THP setting now), or if
    that cannot be allocated is split, and a zero-page PTE gives way to a new base page
    (wp_page_copy never makes a large folio).
    Returns the new pages."""
    zero = vma.zero
    i, j = zero.overlap(lo, hi)
    if i >= j:
        return 0
    kernel = mm.kernel
    pm = _map(vma)
    anon_vma_prepare(vma)
    new = 0
    heads = [h for k in range(i, j) if zero.tag[k] is True
             for h in range(max(zero.lo[k], lo & _PMD_MASK), min(zero.hi[k], hi), PMD_PAGES)]
    for head in heads:
        if _pmd_alloc_fails(mm, vma, PMD_PAGES):
            # do_huge_pmd_wp_page: the zero PMD is split, the write copies one page.
            _split_zero_pmd(vma, head, mm)
            continue
        k, _ = zero.carve(head, head + PMD_PAGES)
        zero.delete(k, k + 1)
        pm.insert(head, head + PMD_PAGES, private_span(True, True, True, True, touch))
        fresh.append((head, head + PMD_PAGES))
        _count(mm, vma, True, PMD_PAGES)
        queue_underused(mm, head, head + PMD_PAGES)
        kernel.node.events["thp_fault_alloc"] += 1
        thp.count(kernel, PMD_ORDER, "anon_fault_alloc")
        new += PMD_PAGES
    i, j = zero.carve(lo, hi)
    if i < j:
        copy = private_span(True, False, True, True, touch)
        for x, y in list(zip(zero.lo[i:j], zero.hi[i:j])):
            pm.insert(x, y, copy)
            _count(mm, vma, True, y - x)
            fresh.append((x, y))
            new += y - x
        zero.delete(i, j)
    if not zero:
        vma.zero = None
    return new


# ------------------------------------------------------------------ large folios
#
# A private anonymous large folio is the naturally aligned block of its order in the
# address space of its mm (the Span's ``pmd`` field gives the order).  The deferred
# split queue (kernel.deferred_split) holds the partially mapped ones:
# (id(mm), order, first page) -> (mm, memcg), or for a folio shared since a fork
# (id(pool), order, first pool index) -> (pool, memcg).


def _folio_left(mm, head, order):
    """Whether any page of ``mm``'s folio of ``order`` at page ``head`` is mapped."""
    end = head + (1 << order)
    for vma in mm.vmas(head << PAGE_SHIFT, end << PAGE_SHIFT):
        pm = vma.pages
        if not pm:
            continue
        i, j = pm.overlap(head, end)
        for k in range(i, j):
            span = pm.tag[k]
            if span.kind == PRIVATE and folio_order(span.pmd) == order:
                return True
    return False


def _dequeue(kernel, key):
    """__folio_unqueue_deferred_split: the folio leaves the queue (freed or split)."""
    if kernel.deferred_split.pop(key, None) is not None:
        kernel.mthp_stats[key[1]]["nr_anon_partially_mapped"] -= 1
    if key[1] == PMD_ORDER and kernel.underused:
        _unqueue_underused(kernel, key[0], key[2], key[2] + PMD_PAGES)


# The PMD-order THPs a fault or a collapse queued whole (deferred_split_folio with
# partially_mapped false, when shrink_underused is on), for the shrinker's
# thp_underused test: kernel.underused, id(mm) -> {first page: mm}.  A folio that
# becomes partially mapped moves to kernel.deferred_split; one split or freed leaves.


def queue_underused(mm, lo, hi):
    """The THPs of ``mm`` at pages ``[lo, hi)`` (whole blocks) were just mapped."""
    kernel = mm.kernel
    if not kernel.shrink_underused:
        return
    heads = kernel.underused.get(id(mm))
    if heads is None:
        heads = kernel.underused[id(mm)] = {}
    for h in range(lo, hi, PMD_PAGES):
        heads[h] = mm


def _unqueue_underused(kernel, ident, lo, hi):
    """The THPs at pages ``[lo, hi)`` of the mm ``ident`` leave the underused queue."""
    heads = kernel.underused.get(ident)
    if not heads:
        return
    lo &= _PMD_MASK
    if (hi - lo) // PMD_PAGES < len(heads):
        for h in range(lo, hi, PMD_PAGES):
            heads.pop(h, None)
    else:
        for h in [h for h in heads if lo <= h < hi]:
            del heads[h]
    if not heads:
        del kernel.underused[ident]


def thp_underused(mm, head):
    """thp_underused: more than ``max_ptes_none`` of the THP's 512 pages are
    zero-filled (never written), unless max_ptes_none is 511."""
    limit = mm.kernel.khugepaged.max_ptes_none
    if limit >= PMD_PAGES - 1:
        return False
    zeroed = 0
    for vma in mm.vmas(head << PAGE_SHIFT, (head + PMD_PAGES) << PAGE_SHIFT):
        if vma.unwritten:
            zeroed += vma.unwritten.count(head, head + PMD_PAGES)
    return zeroed > limit


def _whole_private_thp(mm, head):
    """Whether ``mm`` maps all 512 pages of a private PMD-order folio at page ``head``,
    none of them in an mlocked VMA."""
    n = 0
    for vma in mm.vmas(head << PAGE_SHIFT, (head + PMD_PAGES) << PAGE_SHIFT):
        pm = vma.pages
        if not pm or vma.vm_flags & VM_LOCKED:
            return False
        i, j = pm.overlap(head, head + PMD_PAGES)
        for k in range(i, j):
            span = pm.tag[k]
            if span.kind != PRIVATE or folio_order(span.pmd) != PMD_ORDER:
                return False
            n += min(pm.hi[k], head + PMD_PAGES) - max(pm.lo[k], head)
    return n == PMD_PAGES


def folios_unmapped(mm, pieces):
    """The private pages ``(x, y, order)`` of ``mm``'s large folios lost their mapping
    (zap): a folio with pages still mapped is partially mapped and queued for the
    deferred split (deferred_split_folio from __folio_remove_rmap), one with none left
    is freed and leaves the queue.  Until ``mm.kernel.settle_folios`` is False (munmap
    links its split VMAs back first), the decision waits in ``pending_folios``."""
    kernel = mm.kernel
    queue = kernel.deferred_split
    edges = set()
    for x, y, order in pieces:
        size = 1 << order
        first = x & ~(size - 1)
        last = (y - 1) & ~(size - 1)
        if first != x:
            edges.add((first, order))
        if last + size != y:
            edges.add((last, order))
        if queue:
            ident = id(mm)
            for key in [key for key in queue if key[0] == ident and key[1] == order
                        and x <= key[2] and key[2] + size <= y]:
                _dequeue(kernel, key)
        if order == PMD_ORDER and kernel.underused:
            # Freed whole, or partly unmapped (then queued partially mapped below).
            _unqueue_underused(kernel, id(mm), first, y)
    if not edges:
        return
    if kernel.hold_folios:
        kernel.pending_folios.append((mm, edges))
        return
    _settle(mm, edges)


def _settle(mm, edges):
    kernel = mm.kernel
    for head, order in sorted(edges):
        key = (id(mm), order, head)
        if not _folio_left(mm, head, order):
            _dequeue(kernel, key)
        elif key not in kernel.deferred_split:
            _enqueue(kernel, key, mm, mm.memcg)


def _pool_unmapped(kernel, pool, order, gone):
    """Pages ``gone`` (pool index runs) of a pool's large folios lost their last
    mapping: a folio with pages still mapped by another process is queued partially
    mapped (per-page mapcounts, CONFIG_PAGE_MAPCOUNT); one with none left is freed."""
    if not gone:
        return
    size = 1 << order
    heads = set()
    for a, b in gone:
        heads.add(a & ~(size - 1))
        heads.add((b - 1) & ~(size - 1))
        if kernel.deferred_split:
            for key in [key for key in kernel.deferred_split if key[0] == id(pool)
                        and key[1] == order and a <= key[2] < b]:
                heads.add(key[2])
    for head in sorted(heads):
        key = (id(pool), order, head)
        if not pool.runs(head, head + size):
            _dequeue(kernel, key)
        elif key not in kernel.deferred_split:
            _enqueue(kernel, key, pool, pool.memcg)


def _enqueue(kernel, key, owner, memcg):
    """deferred_split_folio(folio, partially_mapped=true) on a folio not yet flagged."""
    order = key[1]
    if order == PMD_ORDER and kernel.underused:
        _unqueue_underused(kernel, key[0], key[2], key[2] + PMD_PAGES)
    kernel.deferred_split[key] = (owner, memcg)
    if order >= PMD_ORDER:
        kernel.node.events["thp_deferred_split_page"] += 1
    thp.count(kernel, order, "split_deferred")
    thp.count(kernel, order, "nr_anon_partially_mapped")


def _split_pooled(kernel, pool, head, order):
    """split_folio of a pool's partially mapped folio: every mapping of it (found
    through the live address spaces, the rmap walk) maps base pages from now on."""
    size = 1 << order
    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            pm = vma.pages
            if not pm:
                continue
            for k in range(len(pm.tag) - 1, -1, -1):
                span = pm.tag[k]
                if span.kind != POOLED or span.pool is not pool or not span.pmd:
                    continue
                d = span.delta
                lo, hi = max(pm.lo[k], head + d), min(pm.hi[k], head + d + size)
                if lo < hi:
                    i, j = pm.carve(lo, hi)
                    for kk in range(i, j):
                        pm.tag[kk] = _with(pm.tag[kk], pmd=False)
                    pm.join(i - 1, j + 1)
    thp.count(kernel, order, "split")
    if order == PMD_ORDER:
        kernel.node.events["thp_split_page"] += 1
    _dequeue(kernel, (id(pool), order, head))


def folios_moved(mm, lo, hi, shift):
    """mremap moved pages ``[lo, hi)`` of ``mm`` by ``shift`` pages: a queued large
    folio with nothing left at its old place is queued at the new one if it moved
    there staying aligned, else (simulator-defined: a folio is its aligned block, so
    pages moved off it left it) it is gone from the queues."""
    kernel = mm.kernel
    ident = id(mm)
    queue = kernel.deferred_split
    if queue:
        for key in [key for key in queue if key[0] == ident
                    and key[2] < hi and key[2] + (1 << key[1]) > lo]:
            order, head = key[1], key[2]
            if _folio_left(mm, head, order):
                continue   # some of it stayed: queued there still
            if not shift % (1 << order) and _folio_left(mm, head + shift, order):
                queue[(ident, order, head + shift)] = queue.pop(key)
            else:
                _dequeue(kernel, key)
    heads = kernel.underused.get(ident)
    if heads:
        for head in [h for h in heads if h < hi and h + PMD_PAGES > lo]:
            if _folio_left(mm, head, PMD_ORDER):
                continue
            entry = heads.pop(head)
            if not shift % PMD_PAGES and _whole_private_thp(mm, head + shift):
                heads[head + shift] = entry
        if not heads:
            del kernel.underused[ident]


def settle_folios(kernel):
    """Decide the partial unmaps ``folios_unmapped`` held back (see there)."""
    kernel.hold_folios = False
    pending, kernel.pending_folios = kernel.pending_folios, []
    for mm, edges in pending:
        _settle(mm, edges)


def hold_folios(kernel):
    """Hold partial-unmap decisions until ``settle_folios`` (munmap's VMA splits)."""
    kernel.hold_folios = True


def split_folio(mm, head, order, remap=True):
    """split_folio of ``mm``'s (private, or shared since a fork but mapped by it alone)
    large folio of ``order`` at page ``head`` to
    order 0 (a PMD mapping is split first): ``split`` (and ``thp_split_page`` for the
    PMD order) counts it, and it leaves the deferred split queue.  With ``remap``, its
    zero-filled pages (never written: ``vma.unwritten``) outside mlocked VMAs are freed
    and mapped by the zero page instead (remap_page with RMP_USE_SHARED_ZEROPAGE)."""
    kernel = mm.kernel
    end = head + (1 << order)
    for vma in mm.vmas(head << PAGE_SHIFT, end << PAGE_SHIFT):
        pm = vma.pages
        if not pm:
            continue
        if order == PMD_ORDER:
            _split_pmd(pm, head, mm)
        i, j = pm.carve(max(head, vma.start >> PAGE_SHIFT), min(end, vma.end >> PAGE_SHIFT))
        members = []   # the folio's pages here (others in the block are other folios)
        for k in range(i, j):
            span = pm.tag[k]
            if span.kind != CACHED and folio_order(span.pmd) == order:
                pm.tag[k] = _with(span, pmd=False)
                members.append((pm.lo[k], pm.hi[k]))
        pm.join(i - 1, j + 1)
        if remap and members and not vma.vm_flags & VM_LOCKED and _private_anon(vma):
            for a, b in members:
                _remap_zero_filled(mm, vma, a, b)
    thp.count(kernel, order, "split")
    if order == PMD_ORDER:
        kernel.node.events["thp_split_page"] += 1
    _dequeue(kernel, (id(mm), order, head))


def _remap_zero_filled(mm, vma, a, b):
    """try_to_map_unused_to_zeropage over pages ``[a, b)`` of ``vma``, base pages now:
    each resident page never written is freed and the zero page mapped instead."""
    pm = vma.pages
    w = vma.unwritten
    if not w:
        return
    holes = [(max(x, a), min(y, b)) for x, y in w.ranges() if y > a and x < b]
    w.remove(a, b)   # what is freed is no longer a resident zero page
    if not w:
        vma.unwritten = None
    for x, y in holes:
        i, j = pm.carve(x, y)
        if i >= j:
            continue
        gone = [(pm.lo[k], pm.hi[k], pm.tag[k]) for k in range(i, j)
                if pm.tag[k].kind != CACHED]
        if not gone:
            continue
        for lo_, hi_, span in gone:
            _unmap(mm, vma, lo_, hi_, span)
        keep = [(pm.lo[k], pm.hi[k], pm.tag[k]) for k in range(i, j)
                if pm.tag[k].kind == CACHED]
        pm.replace(i, j, [r[0] for r in keep], [r[1] for r in keep], [r[2] for r in keep])
        z = _zero_map(vma)
        for lo_, hi_, _ in gone:
            z.insert(lo_, hi_, False)


def split_partial(mm, vma, a, b):
    """madvise COLD/PAGEOUT/FREE over ``[a, b)`` (pages): the private large folios the
    range covers only in part are split (madvise_cold_or_pageout_pte_range,
    madvise_free_pte_range: an exclusive folio partly covered)."""
    pm = vma.pages
    if not pm:
        return
    for v in (a, b - 1):
        i = pm.index(v)
        if i < 0:
            continue
        span = pm.tag[i]
        if span.kind == CACHED or not span.pmd:
            continue
        order = folio_order(span.pmd)
        size = 1 << order
        head = v & ~(size - 1)
        # A folio shared since a fork is split only once this mm alone maps it
        # (folio_maybe_mapped_shared).
        if (head < a or head + size > b) and not (
                span.kind == POOLED and _shared_in(span, head, head + size)):
            split_folio(mm, head, order)


def deferred_split_scan(kernel, memcg=None):
    """The deferred split shrinker (deferred_split_scan) under reclaim: every queued
    partially mapped folio (of ``memcg``'s subtree, or all) is split.  Returns how
    many."""
    n = 0
    for key, (mm, owner) in list(kernel.deferred_split.items()):
        if memcg is not None:
            m = owner
            while m is not None and m is not memcg:
                m = m.parent
            if m is None:
                continue
        if isinstance(mm, Pool):
            if mm.runs(key[2], key[2] + (1 << key[1])):
                _split_pooled(kernel, mm, key[2], key[1])
                n += 1
            else:
                _dequeue(kernel, key)
        elif _folio_left(mm, key[2], key[1]):
            split_folio(mm, key[2], key[1])
            n += 1
        else:
            _dequeue(kernel, key)
    # THPs queued whole: split when underused (thp_underused_split_page), else they
    # leave the queue for good.  Simulator-defined: the partially mapped ones first.
    for ident, heads in list(kernel.underused.items()):
        for head, mm in list(heads.items()):
            if memcg is not None:
                m = mm.memcg
                while m is not None and m is not memcg:
                    m = m.parent
                if m is None:
                    continue
            if heads.pop(head, None) is None:
                continue
            if _whole_private_thp(mm, head) and thp_underused(mm, head):
                split_folio(mm, head, PMD_ORDER)
                kernel.node.events["thp_underused_split_page"] += 1
                n += 1
        if not heads:
            kernel.underused.pop(ident, None)
    return n


def large_swapout(mm, vma, x, y, ok):
    """shrink_folio_list's large-folio steps for the private pages ``[x, y)`` about to
    be swapped out (``ok``: swap slots for all of them) or refused: a partially mapped
    folio is split first; one with slots goes out whole (``swpout``, and for the PMD
    order ``thp_swpout``, after its PMD is split: 6.18 has no PMD swap entries);
    without, it is split to base pages (``swpout_fallback``, ``thp_swpout_fallback``)."""
    pm = vma.pages
    i = pm.index(x)
    if i < 0:
        return
    span = pm.tag[i]
    if span.kind != PRIVATE or not span.pmd:
        return
    kernel = mm.kernel
    order = folio_order(span.pmd)
    size = 1 << order
    for head in range(x & ~(size - 1), y, size):
        key = (id(mm), order, head)
        if key in kernel.deferred_split:
            split_folio(mm, head, order, remap=False)
            continue
        if ok:
            thp.count(kernel, order, "swpout")
            if order == PMD_ORDER:
                kernel.node.events["thp_swpout"] += 1
                _split_pmd(pm, head, mm)
        else:
            thp.count(kernel, order, "swpout_fallback")
            if order == PMD_ORDER:
                kernel.node.events["thp_swpout_fallback"] += 1
            split_folio(mm, head, order, remap=False)


def anon_pmd_mapped(kernel):
    """NR_ANON_THPS: anonymous folios mapped by a PMD somewhere, each counted once
    however many processes map it (meminfo's AnonHugePages, in THPs)."""
    seen = set()
    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            pm = vma.pages
            if not pm:
                continue
            for x, y, span in pm.items():
                if span.pmd is not True or span.kind == CACHED or not (
                        span.kind == POOLED or span.anon):
                    continue
                owner = id(mm) if span.kind == PRIVATE else id(span.pool)
                d = 0 if span.kind == PRIVATE else span.delta
                seen.update((owner, h) for h in range(x - d, y - d, PMD_PAGES))
    return len(seen)


def thp_gauges(kernel):
    """Refresh the per-size gauges of kernel.mthp_stats: ``nr_anon`` (the anonymous
    large folios that exist, counted from the page maps) and
    ``nr_anon_partially_mapped`` (the queue)."""
    stats = kernel.mthp_stats
    counts = dict.fromkeys(thp.ANON_ORDERS, 0)
    seen = set()   # a folio shared since a fork is seen by each mapper: count it once
    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            pm = vma.pages
            if not pm:
                continue
            for x, y, span in pm.items():
                if not span.pmd or span.kind == CACHED:
                    continue
                order = folio_order(span.pmd)
                size = 1 << order
                owner = id(mm) if span.kind == PRIVATE else id(span.pool)
                d = 0 if span.kind == PRIVATE else span.delta
                for h in range((x - d) & ~(size - 1), y - d, size):
                    seen.add((owner, order, h))
    for _, order, _ in seen:
        counts[order] += 1
    for order in thp.ANON_ORDERS:
        stats[order]["nr_anon"] = counts[order]
    part = dict.fromkeys(thp.ANON_ORDERS, 0)
    for key in kernel.deferred_split:
        part[key[1]] += 1
    for order in thp.ANON_ORDERS:
        stats[order]["nr_anon_partially_mapped"] = part[order]
    return stats


def _fault_orders(mm, vma):
    """alloc_anon_folio's candidate orders below the PMD order for ``vma``, highest
    first (empty: order 0): the per-size knobs and switches, none for a VMA registered
    with userfaultfd (per-page fault fidelity)."""
    kernel = mm.kernel
    sizes = kernel.thp_sizes
    if all(sizes[o] == "never" for o in thp.ANON_ORDERS if o != PMD_ORDER):
        return ()
    if vma.uffd_ctx is not None:
        return ()
    return thp.allowable_orders(vma, mm.flags, kernel, thp.TVA_PAGEFAULT,
                                tuple(o for o in thp.ANON_ORDERS if o != PMD_ORDER))


def _alloc_ok(mm, nr, vma=None):
    """Whether a large folio of ``nr`` pages can be allocated and charged at fault:
    ``None`` if so, else the failing step ("alloc" or "charge").  Simulator-defined:
    memory is never fragmented, so an allocation fails only when it would take free
    memory below the min watermark; the charge fails when it would pass a memory.max
    of the mm's cgroup or an ancestor's.  Without reclaim, unless ``vma`` is given and
    its fault's gfp may reclaim (``may_reclaim``): then reclaim runs first
    (Kernel.costly_alloc_fails), so the caller's page maps must be up to date."""
    kernel = mm.kernel
    failed = None
    if kernel.free_pages() - nr < kernel.watermarks()[0]:
        failed = "alloc"
    elif memcg_mod.first_over(mm.memcg, nr) is not None:
        failed = "charge"
    if failed is not None and vma is not None and may_reclaim(kernel, vma):
        return kernel.costly_alloc_fails(mm.memcg, nr)
    return failed


def may_reclaim(kernel, vma):
    """vma_thp_gfp_mask: whether a large folio's allocation at a fault in ``vma`` may
    reclaim (transparent_hugepage/defrag ``always``, or ``madvise`` and
    ``defer+madvise`` for a MADV_HUGEPAGE VMA)."""
    defrag = kernel.thp_defrag
    return defrag == "always" or (defrag in ("madvise", "defer+madvise")
                                  and bool(vma.vm_flags & VM_HUGEPAGE))


def _fill_small(mm, vma, v, end, lower, upper, touch, fresh):
    """Write faults over the empty pages ``[v, end)`` of a private anonymous VMA, in
    order, the PMD path refused: each fault maps the largest allowed folio whose
    naturally aligned block around the faulting page lies in the VMA and holds only
    empty entries (``[lower, upper)`` is the empty stretch around), falling back order
    by order when an allocation or charge fails (do_anonymous_page, alloc_anon_folio).
    Returns the new pages, whose range it adds to ``fresh``."""
    orders = _fault_orders(mm, vma)
    pm = vma.pages
    if not orders:
        pm.insert(v, end, private_span(True, False, True, True, touch))
        _count(mm, vma, True, end - v)
        fresh.append((v, end))
        return end - v
    kernel = mm.kernel
    guards, sw = vma.guards, vma.swap
    new = 0
    run_lo, run_code = v, False   # pages mapped with one Span, inserted in one go
    first = v
    while v < end:
        code, step, h = False, 1, v
        for o in thp.suitable_orders(vma, v << PAGE_SHIFT, orders):
            size = 1 << o
            # The pages of [lower, upper) are empty (lower moves past each mapping).
            h = v & ~(size - 1)
            if h < lower or h + size > upper:
                continue
            if guards and guards.first_in(h, h + size) is not None:
                continue
            if sw:
                i, j = sw.overlap(h, h + size)
                if i < j:
                    continue
            failed = _alloc_ok(mm, size)
            if failed is not None and may_reclaim(kernel, vma):
                if v > run_lo:
                    # Reclaim is about to look at the page maps: the run so far in.
                    pm.insert(run_lo, v, private_span(True, run_code, True, True, touch))
                    run_lo = v
                failed = _alloc_ok(mm, size, vma)
            if failed is not None:
                thp.count(kernel, o, "anon_fault_fallback")
                if failed == "charge":
                    thp.count(kernel, o, "anon_fault_fallback_charge")
                continue
            thp.count(kernel, o, "anon_fault_alloc")
            code, step = o, size
            break
        if code is False:
            h = v
        if code != run_code or h < run_lo:
            if h > run_lo:
                pm.insert(run_lo, h, private_span(True, run_code, True, True, touch))
            run_lo, run_code = h, code
        first = min(first, h)
        _count(mm, vma, True, step)
        new += step
        v = lower = h + step
    pm.insert(run_lo, v, private_span(True, run_code, True, True, touch))
    fresh.append((first, v))   # contiguous: each folio starts where the last ended
    return new


def _filemap_fault(mm, vma, vpn, index, write):
    """filemap_fault for page ``index`` of a regular file.  A cached page runs the async
    mmap readahead (a hit lowers mmap_miss; a PG_readahead folio starts the next
    window).  A page not in the cache is a major fault (pgmajfault, maj_flt): the sync
    mmap readahead (read-around, sequential or none) reads it in, then the fault is
    retried, and a read fault's retry maps the cached pages around it first.  Returns
    ``(page, 0)`` for the caller to map, or ``(None, n)`` when the retry's
    fault-around mapped it among ``n`` pages."""
    f = vma.file
    inode = f.inode
    kernel, memcg = mm.kernel, mm.memcg
    filemap.warm_pending(kernel, inode)
    cache = inode.cache
    rand = bool(vma.vm_flags & VM_RAND_READ)
    page = cache.get(index)
    if page is not None:
        mark = filemap.marked_folio(inode, index)
        if mark is not None and not rand and f.ra.ra_pages:
            filemap.clear_mark(inode, *mark)   # page_cache_async_ra clears it
        plan = readahead.async_mmap_ra(cache, inode.size, inode.bdi, f.ra, index,
                                       mark[1] if mark else 1, mark is not None, rand)
        filemap.run_plan(kernel, memcg, inode, plan)
        return page, 0
    memcg_mod.count_event(memcg, "pgmajfault", 1)
    mm.maj_flt += 1
    plan = readahead.sync_mmap_ra(cache, inode.size, inode.bdi, f.ra, index,
                                  seq=bool(vma.vm_flags & VM_SEQ_READ), rand=rand,
                                  hugepage=bool(vma.vm_flags & VM_HUGEPAGE))
    filemap.run_plan(kernel, memcg, inode, plan)
    page = cache.get(index)
    if page is None:
        page = filemap.read_page(kernel, memcg, inode, index)
    if not write:
        n = _fault_around(mm, vma, vpn)
        if vma.pages.index(vpn) >= 0:
            return None, n
    return page, 0


def fault(mm, vma, addr, write, policy, force=False, touch=False):
    """Handle a fault at ``addr`` inside ``vma``: raise EFAULT where the kernel would
    deliver SIGSEGV, else make the page resident.  Returns the number of new pages.
    ``force`` is FOLL_FORCE: populate through missing read or write permission;
    ``touch`` is FOLL_TOUCH: the folio is marked accessed (PG_referenced)."""
    _check_access(vma, write, force)
    vpn = addr >> PAGE_SHIFT
    if vma.guards and vpn in vma.guards:
        raise OSError(errno.EFAULT, "fault on a guard page")
    if _private_anon(vma):
        return _anon_fault(mm, vma, vpn, vpn + 1, write, touch, policy)
    pm = _map(vma)
    i = pm.index(vpn)
    if i >= 0:
        span = pm.tag[i]
        if span.pmd is True:
            head = vpn & _PMD_MASK
            if span.kind == CACHED:
                if write and not vma.vm_flags & VM_SHARED:
                    # wp_huge_pmd on a file PMD: the PMD goes, the fault is retried
                    # at PTE level (a copy for this private mapping).
                    _zap_file_pmd(mm, vma, head)
                    return fault(mm, vma, addr, write, policy, force, touch)
                _access(mm, vma, head, head + PMD_PAGES, write, touch)
            elif write and _shared_in(span, head, head + PMD_PAGES):
                _split_pmd(pm, head, mm)
                _access(mm, vma, vpn, vpn + 1, True, touch)
            else:
                _access(mm, vma, head, head + PMD_PAGES, write, touch)
        else:
            _access(mm, vma, vpn, vpn + 1, write, touch)
        return 0
    shared = vma.vm_flags & VM_MAYSHARE
    # File or shared memory.  A regular file's page comes from the page cache (read
    # into it on first use); a private write maps a copy of it instead.
    cached = None
    if vma.file is not None:
        shmem = vma.file.shmem
        if not write:
            n = _fault_around(mm, vma, vpn, shmem)
            i = pm.index(vpn)
            if i >= 0:
                if touch:
                    _touch(pm.tag[i].pool)
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
                inode = vma.file.inode
                cached = inode.cache.get(index)
                if cached is None:
                    cached = shmem_mod.get_folio(mm.kernel, mm.memcg, vma, mm.flags, inode,
                                                 index, addr)
                elif not cached.uptodate:
                    shmem_mod.fault_clear(inode, cached)
        else:
            cached, n = _filemap_fault(mm, vma, vpn, index, write)
            if cached is None:
                if touch:
                    _touch(pm.tag[pm.index(vpn)].pool)
                return n
    if write and not shared:
        anon_vma_prepare(vma)
        lru_owner(mm)
        pm.insert(vpn, vpn + 1, private_span(True, False, True, True, touch))
        _count(mm, vma, True, 1)
    elif cached is not None and cached.order and _map_folio(mm, vma, vpn, cached):
        if write:
            pagecache.set_dirty(cached)
        if touch:
            _touch(cached)
        return 1 << cached.order
    elif cached is not None:
        _map_cached(cached)
        if write:
            pagecache.set_dirty(cached)
        if touch:
            _touch(cached)
        pm.insert(vpn, vpn + 1, cached_span(cached, True))
        _count(mm, vma, cached.anon, 1)
    else:
        pm.insert(vpn, vpn + 1, private_span(True, False, False, bool(write), touch))
        _count(mm, vma, False, 1)
    return 1


FAULT_AROUND_PAGES = 16   # fault_around_bytes, 64 KiB by default, in pages


def _fault_around(mm, vma, vpn, shmem=False):
    """do_fault_around + filemap_map_pages: a read fault on a file also maps the file's
    cached pages in the aligned 16-page block around it, inside the VMA and the page
    table and below EOF.  It never reads a page in, and it skips a page carrying the
    PG_readahead mark (left for a fault to find and start the next readahead); each
    page it maps that is not PG_workingset lowers the file's mmap_miss.  Returns how
    many pages it mapped."""
    inode = vma.file.inode
    if not shmem:
        filemap.warm_pending(mm.kernel, inode)
    npages = pfn_up(inode.size)
    cache = inode.cache
    # filemap_map_pmd: a PMD-order folio at the fault is mapped by a PMD (not one
    # next_uptodate_folio skips: not up to date, or carrying the readahead mark).
    page = cache.get(vma.pgoff + vpn - (vma.start >> PAGE_SHIFT))
    if (page is not None and page.order == shmem_mod.PMD_ORDER and page.uptodate
            and not (pagecache.folio_head(page).readahead and not shmem)
            and _set_pmd(mm, vma, vpn, page)):
        return PMD_PAGES
    first = vma.start >> PAGE_SHIFT
    pte = vpn & (PMD_PAGES - 1)
    lo = max(pte & ~(FAULT_AROUND_PAGES - 1), pte - min(pte, vpn - first))
    hi = min(lo + FAULT_AROUND_PAGES, PMD_PAGES, pte + (vma.end >> PAGE_SHIFT) - vpn)
    base = vpn - pte
    pm = _map(vma)
    guards = vma.guards
    n = hits = 0
    for v in range(base + lo, base + hi):
        index = vma.pgoff + v - first
        if index >= npages or pm.index(v) >= 0 or (guards and v in guards):
            continue
        page = cache.get(index)
        if page is None or page.readahead or not page.uptodate:
            continue   # next_uptodate_folio skips a fallocated folio too
        pm.insert(v, v + 1, cached_span(page, True))
        _map_cached(page)
        _count(mm, vma, page.anon, 1)
        n += 1
        if not page.workingset:
            hits += 1
    if hits and not shmem:
        ra = vma.file.ra
        ra.mmap_miss = max(0, ra.mmap_miss - hits)
    return n


def pmd_none(vma, head, n=PMD_PAGES):
    """No page, swap entry, zero-page mapping or guard marker in the ``n`` pages from
    ``head`` (the simulator's pmd_none / pte_range_none)."""
    pm = vma.pages
    if pm:
        i, j = pm.overlap(head, head + n)
        if i < j:
            return False
    if vma.zero:
        i, j = vma.zero.overlap(head, head + n)
        if i < j:
            return False
    if vma.swap:
        i, j = vma.swap.overlap(head, head + n)
        if i < j:
            return False
    return not (vma.guards and vma.guards.first_in(head, head + n) is not None)


def _set_pmd(mm, vma, vpn, page):
    """do_set_pmd: map the PMD-order folio of ``page`` (mapped at ``vpn``) by one PMD
    when THP is not disabled for the VMA (VM_NOHUGEPAGE, PR_SET_THP_DISABLE: taken
    as a forced collapse, so sysfs does not matter), its block fits the VMA and the
    file offset, and nothing is mapped there yet.  Returns whether it did."""
    if thp.vma_thp_disabled(vma.vm_flags, mm.flags, True):
        return False
    if not shmem_mod.suitable_order(vma, vpn << PAGE_SHIFT, shmem_mod.PMD_ORDER):
        return False
    head = vpn & _PMD_MASK
    if not pmd_none(vma, head):
        return False
    cache = page.inode.cache
    first = page.index - (vpn - head)
    pages = [cache[first + d] for d in range(PMD_PAGES)]
    pm = _map(vma)
    i, _ = pm.overlap(head, head + PMD_PAGES)
    pm.replace(i, i, range(head, head + PMD_PAGES), range(head + 1, head + PMD_PAGES + 1),
               [cached_span(p, True, True) for p in pages])
    for p in pages:
        _map_cached(p)
    _count(mm, vma, False, PMD_PAGES)
    pagecache.note_pmd_mapped(pages[0], 1)
    mm.kernel.node.events["thp_file_mapped"] += 1
    return True


def _map_folio(mm, vma, vpn, page):
    """finish_fault for a large page-cache folio: a PMD-order one by a PMD
    (do_set_pmd) when it can; otherwise, in anonymous shmem only (a tmpfs or regular
    file maps one page, not to inflate RSS), the whole folio by PTEs when it lies
    inside the VMA and the page table and none of its PTEs is set.  Returns whether it
    did (else the caller maps the one page)."""
    if page.order == shmem_mod.PMD_ORDER and _set_pmd(mm, vma, vpn, page):
        return True
    if vma.uffd_ctx is not None or not vma.file.shmem or vma.file.inode.tmpfs:
        return False
    nr = 1 << page.order
    idx = page.index & (nr - 1)
    vlo = vma.start >> PAGE_SHIFT
    first = vpn - idx
    if first < vlo or first + nr > vma.end >> PAGE_SHIFT:
        return False
    if (vpn & (PMD_PAGES - 1)) < idx or (vpn & (PMD_PAGES - 1)) - idx + nr > PMD_PAGES:
        return False
    if not pmd_none(vma, first, nr):
        return False
    cache = page.inode.cache
    pm = _map(vma)
    for d in range(nr):
        p = cache[page.index - idx + d]
        pm.insert(first + d, first + d + 1, cached_span(p, True))
        _map_cached(p)
    _count(mm, vma, False, nr)
    return True


def _zap_file_pmd(mm, vma, head, split=True):
    """__split_huge_pmd of a PMD mapping of a page-cache folio at page ``head``: the
    PMD is cleared (``thp_split_pmd``, unless ``split`` is False: the whole mapping
    goes) and its pages refault later.  Returns whether there was one."""
    pm = vma.pages
    if not pm:
        return False
    i = pm.index(head)
    if i < 0:
        return False
    span = pm.tag[i]
    if not span.pmd or span.kind != CACHED:
        return False
    i, j = pm.carve(head, head + PMD_PAGES)
    pagecache.note_pmd_mapped(span.pool, -1)
    for k in range(i, j):
        _drop_page(mm, vma, pm.tag[k].pool)
    pm.delete(i, j)
    if split:
        mm.kernel.node.events["thp_split_pmd"] += 1
    return True


def _mappings_of(kernel, inode, lo, hi):
    """``(mm, vma, first vpn, last vpn)`` of every live mapping of file pages
    ``[lo, hi)`` of ``inode``."""
    for mm in _live_mms(kernel):
        for vma in mm.tree.values():
            if vma.file is None or vma.file.inode is not inode:
                continue
            first = vma.pgoff
            last = first + ((vma.end - vma.start) >> PAGE_SHIFT)
            if first < hi and lo < last:
                base = (vma.start >> PAGE_SHIFT) - first
                yield mm, vma, max(lo, first) + base, min(hi, last) + base


def _unmap_folio_pmds(kernel, head):
    """Before a PMD-order folio is split or replaced: every PMD mapping of it goes."""
    if not head.pmd_maps:
        return
    for mm, vma, a, _b in _mappings_of(kernel, head.inode, head.index,
                                       head.index + PMD_PAGES):
        if not a & (PMD_PAGES - 1):
            _zap_file_pmd(mm, vma, a, split=False)


def _unmap_cached(kernel, inode, lo, hi):
    """Every mapping of the cached pages ``[lo, hi)`` of ``inode`` goes (private
    copies stay)."""
    for mm, vma, a, b in _mappings_of(kernel, inode, lo, hi):
        pm = vma.pages
        if not pm:
            continue
        for head in range(a & _PMD_MASK, b, PMD_PAGES):
            _zap_file_pmd(mm, vma, head, split=bool((a | b) & (PMD_PAGES - 1)))
        i, j = pm.carve(a, b)
        keep_lo, keep_hi, keep = [], [], []
        for k in range(i, j):
            span = pm.tag[k]
            if span.kind == CACHED:
                _drop_page(mm, vma, span.pool)
            else:
                keep_lo.append(pm.lo[k])
                keep_hi.append(pm.hi[k])
                keep.append(span)
        pm.replace(i, j, keep_lo, keep_hi, keep)


def collapse_shmem(mm, vma, start, end):
    """MADV_COLLAPSE of a shmem mapping (hpage_collapse_scan_file, collapse_file,
    collapse_pte_mapped_thp), block by aligned block inside ``[start, end)``: a block
    already PMD-mapped here is done; one whose file pages are a PMD-order folio
    already is mapped by a PMD; otherwise a new PMD-order folio is allocated
    (thp_collapse_alloc) and takes the place of the block's pages in the file (every
    mapping of the old pages goes; holes become part of it too, even past EOF), then
    is mapped by a PMD here, unless no page of the block was in the file (the new
    folio is dropped: the live kernel fails such a block after allocating).  A block
    where this mapping holds private copies fails (simulator-defined).  Returns True
    when every block succeeded."""
    first = align_up(start, PMD_SIZE)
    last = align_down(end, PMD_SIZE)
    if first > last:
        return False
    kernel = mm.kernel
    inode = vma.file.inode
    cache = inode.cache
    base = (vma.start >> PAGE_SHIFT) - vma.pgoff
    ok = True
    for head in range(first >> PAGE_SHIFT, last >> PAGE_SHIFT, PMD_PAGES):
        pm = _map(vma)
        i = pm.index(head)
        if i >= 0 and pm.tag[i].pmd:
            continue
        index = head - base
        i, j = pm.overlap(head, head + PMD_PAGES)
        if any(pm.tag[k].kind != CACHED for k in range(i, j)):
            ok = False
            continue
        page = cache.get(index)
        if page is None or page.order != shmem_mod.PMD_ORDER:
            kernel.node.events["thp_collapse_alloc"] += 1
            mm.memcg.stat["thp_collapse_alloc"] += 1
            page = collapse_file(kernel, mm.memcg, inode, index)
            if page is None:
                ok = False
                continue
        else:
            _unmap_cached_in(mm, vma, head)
        if not _set_pmd(mm, vma, head, page):
            ok = False
    return ok


def collapse_file(kernel, memcg, inode, index):
    """collapse_file for the 512 pages of shmem file ``inode`` from ``index`` (the new
    folio allocated and counted by the caller): a PMD-order folio charged to
    ``memcg`` takes the place of the pages in the file, holes filled, and every
    mapping of the old pages goes (retract_page_tables).  Returns its first page, or
    None when no page of the range was in the file (the new folio is dropped)."""
    cache = inode.cache
    present = [i for i in range(index, index + PMD_PAGES) if i in cache]
    if not present:
        return None
    for i in present:
        p = cache[i]
        if p.order:
            head = pagecache.folio_head(p)
            _unmap_folio_pmds(kernel, head)
            pagecache.split_folio(kernel.node, head)
    _unmap_cached(kernel, inode, index, index + PMD_PAGES)
    for i in present:
        pagecache.delete(kernel, cache[i])
    return pagecache.add_shmem(kernel, memcg, inode, index, shmem_mod.PMD_ORDER)


def retract_ptes(mm, vma, head):
    """collapse_pte_mapped_thp without installing the PMD: this mapping's PTEs of the
    block at page ``head``, which map the PMD-order folio there, go (the next fault
    maps the folio by a PMD).  Returns whether it did (no private copy there)."""
    pm = vma.pages
    if not pm:
        return True
    i, j = pm.overlap(head, head + PMD_PAGES)
    if any(pm.tag[k].kind != CACHED or pm.tag[k].pmd for k in range(i, j)):
        return False
    _unmap_cached_in(mm, vma, head)
    return True


def _unmap_cached_in(mm, vma, head):
    """This mapping's PTEs of the block at page ``head`` go (collapse_pte_mapped_thp
    replaces them with the PMD)."""
    pm = vma.pages
    i, j = pm.carve(head, head + PMD_PAGES)
    for k in range(i, j):
        _drop_page(mm, vma, pm.tag[k].pool)
    pm.delete(i, j)


def zap_vma(mm, vma, start, end, keep_zero=False):
    """Unmap the pages of ``vma`` in ``[start, end)`` (zap_page_range_single); its
    zero-page mappings go too, unless ``keep_zero`` (MADV_FREE leaves them)."""
    if vma.swap:
        _zap_swap(mm, vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    if vma.zero and not keep_zero:
        drop_zero(vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT, mm)
    if vma.unwritten:
        forget_unwritten(vma, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    pm = vma.pages
    if not pm:
        return
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    # A partial zap of a THP splits its PMD first, then drops the covered pages (a
    # shmem folio's PMD split drops the whole PMD mapping).
    if lo & (PMD_PAGES - 1) and not _zap_file_pmd(mm, vma, lo & _PMD_MASK):
        _split_pmd(pm, lo & _PMD_MASK, mm)
    if hi & (PMD_PAGES - 1) and not _zap_file_pmd(mm, vma, hi & _PMD_MASK):
        _split_pmd(pm, hi & _PMD_MASK, mm)
    i, j = pm.carve(lo, hi)
    if i >= j:
        return
    # Zapping a young PTE of a page-cache folio marks it accessed, unless the mm is
    # being torn down with FADE_ON_DEATH on: then the folio is not promoted, and one
    # this mapping alone maps goes to the inactive list.
    fade = mm.users == 0 and mm.fade_on_death
    recency = not fade and has_recency(vma)
    lo_, hi_, tag = pm.lo, pm.hi, pm.tag
    large = None
    for k in range(i, j):
        span = tag[k]
        if span.kind != CACHED:
            if span.pmd and span.kind == PRIVATE:
                if large is None:
                    large = []
                large.append((lo_[k], hi_[k], folio_order(span.pmd)))
            _unmap(mm, vma, lo_[k], hi_[k], span)
            continue
        page = span.pool
        lru = page.lru
        if lru and not fade and recency and span.young:
            pagecache.mark_accessed(page)
        if span.pmd and not page.index & (PMD_PAGES - 1):
            pagecache.note_pmd_mapped(page, -1)   # the first page of a PMD mapping
        _drop_page(mm, vma, page)
        if lru and fade and page.mapcount == 0:
            pagecache.deactivate_file(page)
    pm.delete(i, j)
    if large:
        folios_unmapped(mm, large)


def punch_hole(kernel, inode, lo, hi):
    """shmem_fallocate(PUNCH_HOLE) for file pages ``[lo, hi)``: every mapping of them
    in every address space loses them (unmap_mapping_range), then the cache does."""
    for mm in _live_mms(kernel):
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
        pagecache.delete(kernel, cache[index])
    pagecache.drop_shadows(kernel.node, inode, lo, hi)


def truncate_pages(kernel, inode, lo, hi=1 << 64):
    """truncate_pagecache_range: file pages ``[lo, hi)`` leave every mapping (private
    copies included) and then the page cache and its LRU; a large folio the range cuts
    is split first."""
    if hi > lo:
        filemap.warm_pending(kernel, inode)
        for edge in (lo, hi):
            page = inode.cache.get(edge)
            if page is not None and page.order == shmem_mod.PMD_ORDER and edge & (
                    PMD_PAGES - 1):
                _unmap_folio_pmds(kernel, pagecache.folio_head(page))
        filemap.split_at(inode, lo)
        if hi < 1 << 64:
            filemap.split_at(inode, hi)
        punch_hole(kernel, inode, lo, hi)


def collapse(mm, vma, start, end):
    """MADV_COLLAPSE over ``[start, end)``: every aligned 2 MiB block inside it that has
    at least one resident page becomes one THP.  Returns True when every block did;
    a range inside a single block, with no block in it, fails like the kernel's
    ``thps == (hend - hstart) >> HPAGE_PMD_SHIFT`` test with hstart past hend."""
    if vma.file is not None and vma.file.shmem:
        return collapse_shmem(mm, vma, start, end)
    first = align_up(start, PMD_SIZE)
    last = align_down(end, PMD_SIZE)
    if first > last:
        return False
    lo, hi = first >> PAGE_SHIFT, last >> PAGE_SHIFT
    pm = vma.pages
    # Only blocks holding something need work; any other block fails the call
    # (SCAN_PMD_NULL: nothing to collapse), however large the range.
    held = []
    if pm:
        i, j = pm.overlap(lo, hi)
        for k in range(i, j):
            b = max(pm.lo[k], lo) & _PMD_MASK
            if held and held[-1] >= b:
                b = held[-1] + PMD_PAGES
            held.extend(range(b, min(pm.hi[k], hi), PMD_PAGES))
    # A huge zero PMD is a block done already (SCAN_PMD_MAPPED); zero-page PTEs alone
    # are no writable page to collapse (SCAN_PAGE_RO).
    z = vma.zero
    done = sum(1 for h in range(lo, hi, PMD_PAGES) if huge_zero_at(vma, h)) if z else 0
    ok = len(held) + done == (hi - lo) // PMD_PAGES
    anon = vma.file is None
    thp_span = private_span(True, True, anon, True, False)
    for head in held:
        i = pm.index(head)
        if i >= 0 and pm.tag[i].pmd is True:
            continue
        i, j = pm.carve(head, head + PMD_PAGES)
        large = []
        if anon:
            # The empty entries become pages of zeros.
            holes, v = [], head
            for k in range(i, j):
                if pm.lo[k] > v:
                    holes.append((v, pm.lo[k]))
                v = pm.hi[k]
            if v < head + PMD_PAGES:
                holes.append((v, head + PMD_PAGES))
            if holes:
                mark_unwritten(vma, holes)
        for k in range(i, j):
            span = pm.tag[k]
            if span.pmd and span.kind == PRIVATE:
                large.append((pm.lo[k], pm.hi[k], folio_order(span.pmd)))
            _unmap(mm, vma, pm.lo[k], pm.hi[k], span)
        pm.delete(i, j)
        if large:
            folios_unmapped(mm, large)   # the old folios are freed
        if z:
            drop_zero(vma, head, head + PMD_PAGES)
        pm.insert(head, head + PMD_PAGES, thp_span)
        _count(mm, vma, anon, PMD_PAGES)
        if anon:
            queue_underused(mm, head, head + PMD_PAGES)
    return ok


def deactivate(vma, start, end, mm=None):
    """MADV_COLD: make the PTEs old and clear PG_referenced for the pages in
    ``[start, end)``; an active folio, page cache or anonymous (of ``mm``, charged to
    its cgroup or its pool's), moves to the head of the inactive list with
    PG_workingset set (folio_deactivate, ``pgdeactivate``); an inactive one stays
    where it is.  Folios other mappings share are left alone altogether, and a THP
    unless the range covers all of it."""
    pm = vma.pages
    if not pm:
        return
    a, b = _narrow(pm, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    if a >= b:
        return
    head = None
    moved = {}   # cgroup id -> [cgroup, anonymous pages deactivated]

    def _cold_lru(memcg, n):
        nonlocal head
        if head is None:
            head = lru_state(False, True, new_stamp())
        anon_lru_move(memcg, n, False)
        moved.setdefault(id(memcg), [memcg, 0])[1] += n
        return head

    def _cool(pool, pa, pb):
        n = sum(y - x for x, y, st in pool.runs(pa, pb) if st[1] and st[4][0])
        if not n:
            pool.apply(pa, pb, _clear_referenced)
            return
        st_head = _cold_lru(pool.memcg, n)
        pool.apply(pa, pb, lambda st: folio_state(st[0], True, st[2], False, st_head, st[5])
                   if st[1] and st[4][0] else _clear_referenced(st))

    i, j = pm.carve(a, b)
    los, his, tags = [], [], []
    lo, hi, tag = pm.lo, pm.hi, pm.tag
    for k in range(i, j):
        x, y, span = lo[k], hi[k], tag[k]
        kind = span.kind
        if kind == PRIVATE:
            if span.anon and span.lru[0] and mm is not None:
                new = private_span(False, span.pmd, True, span.dirty, False,
                                   _cold_lru(mm.memcg, y - x), span.swap)
            else:
                new = _with(span, young=False, referenced=False)
        elif kind == CACHED:
            page = span.pool
            new = span
            if page.mapcount == 1:
                page.referenced = False
                if page.lru:
                    pagecache.deactivate(page)
                new = _with(span, young=False)
        else:
            pool = span.pool
            d = span.delta
            cold = pooled_span(pool, d, False, span.pmd)
            if span.pmd is True:
                # A PMD-mapped THP is aged whole, or left alone whole when any of its
                # pages has another mapper.
                whole = not _shared_in(span, x, y)
                step = y - x if whole else PMD_PAGES
                for bx in range(x, y, step):
                    by = bx + step
                    if whole or not _shared_in(span, bx, by):
                        _cool(pool, bx - d, by - d)
                        new = cold
                    else:
                        new = span
                    los.append(bx)
                    his.append(by)
                    tags.append(new)
                continue
            for px, py, st in pool.runs(x - d, y - d):
                new = span
                if st[0] == 1:
                    _cool(pool, px, py)
                    new = cold
                los.append(px + d)
                his.append(py + d)
                tags.append(new)
            continue
        los.append(x)
        his.append(y)
        tags.append(new)
    pm.replace(i, j, los, his, tags)
    for memcg, n in moved.values():
        memcg_mod.count_event(memcg, "pgdeactivate", n)


def is_young(vma, vpn):
    """The mapping's PTE (or PMD) for page ``vpn`` has its accessed bit set."""
    pm = vma.pages
    i = pm.index(vpn) if pm else -1
    return i < 0 or pm.tag[i].young


def share_pages(mm, src, dst):
    """copy_page_range for fork: the child maps the very same folios (copy on write for
    private memory), each one's mapcount going up by one, and its PTEs start out old.
    The parent's private pages move into a pool both now read their state from."""
    if src.guards:
        dst.guards = src.guards.copy()
    if src.swap:
        _copy_swap(mm, src, dst)
    if src.zero:
        dst.zero = src.zero.copy()
    if src.unwritten:
        dst.unwritten = src.unwritten.copy()
    pm = src.pages
    if not pm:
        return
    child = PageMap()
    child.lo = array("q", pm.lo)
    child.hi = array("q", pm.hi)
    ptags = pm.tag
    ctags = [None] * len(ptags)
    pool = None
    anon = other = 0
    for k, (x, y, span) in enumerate(pm.items()):
        kind = span.kind
        if kind == PRIVATE:
            if pool is None:
                pool = Pool(mm.memcg)
            # Pool index = page number here: a swap-cache page keeps its slot.
            pool.append(x, y, folio_state(2, span.anon, span.dirty, span.referenced,
                                          span.lru, span.swap))
            ptags[k] = pooled_span(pool, 0, span.young, span.pmd)
            ctags[k] = pooled_span(pool, 0, False, span.pmd)
            if span.anon:
                anon += y - x
            else:
                other += y - x
        elif kind == POOLED:
            d = span.delta
            for a, b, st in span.pool.runs(x - d, y - d):
                if st[1]:
                    anon += b - a
                else:
                    other += b - a
            span.pool.apply(x - d, y - d, _inc)
            ctags[k] = pooled_span(span.pool, d, False, span.pmd)
        else:
            page = span.pool
            page.mapcount += 1
            ctags[k] = cached_span(page, False)
            if page.anon:
                anon += 1
            else:
                other += 1
    child.tag = ctags
    pm.join(0, len(ptags))
    child.join(0, len(ctags))
    dst.pages = child
    if anon:
        _count(mm, dst, True, anon, charge=False)
    if other:
        _count(mm, dst, False, other)


# --------------------------------------------------------------------------- swap


class SwapDevice:
    """The swap space (all swapon'd devices as one): ``total`` usable slots, ``used``
    of them, and ``slots``: the used slot numbers as runs tagged ``(count, memcg,
    shadow)`` (swap_map's reference count, the cgroup charged for the slot, and the
    workingset shadow of the evicted page).  Slot numbers are never reused."""

    __slots__ = ("total", "used", "next", "slots")

    def __init__(self, total):
        self.total = total
        self.used = 0
        self.next = 0
        self.slots = Pool()

    def free(self):
        """Slots left (get_nr_swap_pages)."""
        return self.total - self.used


class SwapRef:
    """What a swapped-out extent holds: page number minus slot number; interned."""

    __slots__ = ("delta",)

    def __init__(self, delta):
        self.delta = delta


_SWAP_REFS = {}


def _swap_ref(delta):
    ref = _SWAP_REFS.get(delta)
    if ref is None:
        ref = _SWAP_REFS[delta] = SwapRef(delta)
    return ref


class SwapEntries(RangeMap):
    """The swap entries of one VMA: extents of page numbers tagged with a SwapRef, and
    the swap readahead state (vma->swap_readahead_info): the page of the last fault or
    readahead hit, the last window, the hits counted since, and the readahead pages of
    the last window whose use is judged later by their young bit."""

    __slots__ = ("ra", "ra_win", "ra_hits", "ra_out")

    def __init__(self):
        super().__init__()
        # An unused readahead state reads as four hits (GET_SWAP_RA_VAL).
        self.ra, self.ra_win, self.ra_hits, self.ra_out = 0, 0, 4, ()


def swap_pages_of(vma):
    """Swap entries in ``vma``'s page tables."""
    return vma.swap.npages() if vma.swap else 0


def swap_room(kernel, memcg):
    """How many pages ``memcg`` may swap out now: free slots within its
    memory.swap.max (mem_cgroup_get_nr_swap_pages)."""
    dev = kernel.swap
    if dev is None:
        return 0
    return min(dev.total - dev.used, memcg_mod.swap_room(memcg))


def _slots_get(kernel, a, b):
    """Every slot of ``[a, b)`` gains a reference (swap_duplicate, at fork)."""
    kernel.swap.slots.apply(a, b, lambda st: (st[0] + 1, st[1], st[2]))


def _slots_put(kernel, a, b):
    """Every slot of ``[a, b)`` loses a reference (swap_free, or the swap cache's);
    the last one frees the slot and its swap charge."""
    dev = kernel.swap
    slots = dev.slots
    for x, y, st in slots.runs(a, b):
        if st[0] == 1:
            dev.used -= y - x
            memcg_mod.swap_charge(st[1], x - y)
    slots.apply(a, b, lambda st: None if st[0] == 1 else (st[0] - 1, st[1], st[2]))


def _refault_runs(kernel, a, b, memcg):
    """workingset_refault on the shadow of each run of slots ``[a, b)`` being read in
    for ``memcg``: ``(x, y, activate, workingset)`` per run.  The shadow is used up."""
    out = []
    for x, y, st in kernel.swap.slots.runs(a, b):
        if st[2] is None:
            out.append((x, y, False, False))
            continue
        act, ws = workingset.refault(memcg, y - x, st[2], False, True)
        out.append((x, y, act, ws))
    kernel.swap.slots.apply(a, b, lambda st: (st[0], st[1], None))
    return out


def _zap_swap(mm, vma, lo, hi):
    """The swap entries of ``[lo, hi)`` leave ``vma`` (zap_pte_range's free_swap_and_cache)."""
    sw = vma.swap
    i, j = sw.carve(lo, hi)
    if i >= j:
        return
    n = 0
    kernel = mm.kernel
    for k in range(i, j):
        x, y, d = sw.lo[k], sw.hi[k], sw.tag[k].delta
        _slots_put(kernel, x - d, y - d)
        n += y - x
    sw.delete(i, j)
    mm.swap_pages -= n
    if not sw:
        vma.swap = None


def set_anon_lru(mm, vma, x, y, lru, young=None, referenced=None):
    """Give the anonymous pages of ``[x, y)`` of ``vma`` (no THP cut by the ends) the
    anon LRU state ``lru`` (a state, or a function of the old one), and the mapping's
    young bit and PG_referenced when not None, moving their count between the lists
    of the cgroup charged for them.  Returns ``[(memcg, pages)]`` of the pages set."""
    pm = vma.pages
    i, j = pm.carve(x, y)
    tag = pm.tag
    new = lru if callable(lru) else (lambda old: lru)
    done = []
    for k in range(i, j):
        span = tag[k]
        if span.kind == PRIVATE:
            if not span.anon:
                continue
            n = pm.hi[k] - pm.lo[k]
            st = new(span.lru)
            if span.lru[0] != st[0]:
                anon_lru_move(mm.memcg, n, st[0])
            tag[k] = private_span(span.young if young is None else young, span.pmd, True,
                                  span.dirty,
                                  span.referenced if referenced is None else referenced, st,
                                  span.swap)
            done.append((mm.memcg, n))
        elif span.kind == POOLED:
            pool = span.pool
            d = span.delta
            for a, b, st in pool.runs(pm.lo[k] - d, pm.hi[k] - d):
                if st[1]:
                    if st[4][0] != new(st[4])[0]:
                        anon_lru_move(pool.memcg, b - a, not st[4][0])
                    done.append((pool.memcg, b - a))
            r = referenced
            pool.apply(pm.lo[k] - d, pm.hi[k] - d, lambda st: folio_state(
                st[0], st[1], st[2], st[3] if r is None else r, new(st[4]), st[5])
                if st[1] else st)
            if young is not None:
                tag[k] = _with(span, young=young)
    pm.join(i - 1, j + 1)
    return done


def _workingset_runs(span, a, b):
    """``(x, y, PG_workingset)`` of the anonymous pages ``[a, b)`` of an extent."""
    if span.kind == PRIVATE:
        return ((a, b, span.lru[1]),)
    d = span.delta
    return [(x + d, y + d, st[4][1]) for x, y, st in span.pool.runs(a - d, b - d)]


def swap_need(vma, x, y):
    """The new slots swapping out ``[x, y)`` of ``vma`` takes: its pages not in the
    swap cache already."""
    pm = vma.pages
    i, j = pm.overlap(x, y)
    n = 0
    for k in range(i, j):
        span = pm.tag[k]
        a, b = max(pm.lo[k], x), min(pm.hi[k], y)
        if span.kind == POOLED:
            d = span.delta
            n += sum(rb - ra for ra, rb, st in span.pool.runs(a - d, b - d) if st[5] is None)
        elif span.kind != PRIVATE or span.swap is None:
            n += b - a
    return n


def swap_out(mm, vma, x, y, target):
    """Swap out the anonymous pages ``[x, y)`` of ``vma`` (a private anonymous VMA; no
    THP cut by the ends) from this mapping: each gets a slot charged to the mm's cgroup
    (add_to_swap) unless it is in the swap cache already, the memory charge moves to
    the swap counter, and the page-table entries become swap entries carrying the
    workingset shadow of reclaim of ``target``.  A swap-cache page that is clean goes
    without being written.  Returns the pages written (``pswpout``)."""
    kernel = mm.kernel
    dev = kernel.swap
    n = y - x
    pm = vma.pages
    memcg = mm.memcg
    sw = vma.swap
    if sw is None:
        sw = vma.swap = SwapEntries()
    written = new = 0
    i, j = pm.carve(x, y)
    for k in range(i, j):
        a, b, span = pm.lo[k], pm.hi[k], pm.tag[k]
        if span.kind == PRIVATE and span.swap is not None:
            # Its slot's swap-cache reference becomes the page table's.
            d = span.swap
            shadow = workingset.eviction(target, b - a, span.lru[1])
            dev.slots.apply(a - d, b - d, lambda st: (st[0], st[1], shadow))
            if span.dirty:
                written += b - a
            _count(mm, vma, True, a - b, active=span.lru[0])
            sw.insert(a, b, _swap_ref(d))
            continue
        if span.kind == POOLED:
            dd = span.delta
            runs = span.pool.runs(a - dd, b - dd)
            if any(st[5] is not None for _, _, st in runs):
                # Shared since a fork and in the swap cache: this mapping's entry names
                # the folio's slot; the folio goes when its last mapper does.
                for ra, rb, st in runs:
                    pa, pb = ra + dd, rb + dd
                    if st[5] is None:
                        s = dev.next
                        dev.slots.insert(s, s + pb - pa, (1, memcg, workingset.eviction(
                            target, pb - pa, st[4][1])))
                        dev.next += pb - pa
                        new += pb - pa
                        sw.insert(pa, pb, _swap_ref(pa - s))
                    else:
                        sd = dd + st[5]
                        _slots_get(kernel, pa - sd, pb - sd)
                        if st[0] == 1:
                            shadow = workingset.eviction(target, pb - pa, st[4][1])
                            dev.slots.apply(pa - sd, pb - sd,
                                            lambda t: (t[0], t[1], shadow))
                        sw.insert(pa, pb, _swap_ref(sd))
                _unmap(mm, vma, a, b, span)
                continue
        s = dev.next
        for pa, pb, ws in _workingset_runs(span, a, b):
            # The shadow keeps PG_workingset: a page aged off the active list.
            dev.slots.insert(s + pa - a, s + pb - a,
                             (1, memcg, workingset.eviction(target, pb - pa, ws)))
        _unmap(mm, vma, a, b, span)
        dev.next += b - a
        new += b - a
        sw.insert(a, b, _swap_ref(a - s))
    pm.delete(i, j)
    dev.used += new
    memcg_mod.swap_charge(memcg, new)
    written += new
    mm.swap_pages += n
    if written:
        memcg_mod.count_event(memcg, "pswpout", written)
    return written


def free_swap_cache(mm, vma, x, y):
    """folio_free_swap for the swap-cache pages of ``[x, y)`` of ``vma``: their slots
    are released, and the pages, no longer backed, count as dirty."""
    pm = vma.pages
    i, j = pm.overlap(x, y)
    if not any(pm.tag[k].kind == PRIVATE and pm.tag[k].swap is not None
               for k in range(i, j)):
        return
    i, j = pm.carve(x, y)
    for k in range(i, j):
        span = pm.tag[k]
        if span.kind == PRIVATE and span.swap is not None:
            _slots_put(mm.kernel, pm.lo[k] - span.swap, pm.hi[k] - span.swap)
            pm.tag[k] = private_span(span.young, span.pmd, True, True, span.referenced,
                                     span.lru)
    pm.join(i - 1, j + 1)


def swap_full(kernel, memcg):
    """mem_cgroup_swap_full: half the swap space is used (vm_swap_full), or half of
    ``memcg``'s or an ancestor's memory.swap.max."""
    dev = kernel.swap
    if dev.free() * 2 < dev.total:
        return True
    for m in memcg.ancestors():
        if m.swap_current * 2 >= m.swap_max:
            return True
    return False


def _swap_in_range(mm, vma, a, b, lo=0, hi=0, write=False):
    """do_swap_page (and the swap readahead around it) for every swapped page of
    ``[a, b)``: each comes back as a private anonymous page, charged again, PTE old
    until accessed, on the list workingset_refault says.  Its swap entry is dropped;
    the page stays in the swap cache, holding its slot, unless should_try_to_free_swap
    frees it: a write fault (``write``, for the pages of ``[lo, hi)`` the access
    reaches), a VM_LOCKED mapping, or swap half full (``swap_full``).  Returns the
    ranges brought in."""
    sw = vma.swap
    i, j = sw.carve(a, b)
    if i >= j:
        return ()
    kernel = mm.kernel
    memcg = mm.memcg
    pm = _map(vma)
    pieces = [(sw.lo[k], sw.hi[k], sw.tag[k].delta) for k in range(i, j)]
    sw.delete(i, j)
    free_all = bool(vma.vm_flags & VM_LOCKED) or swap_full(kernel, memcg)
    n = 0
    for x, y, d in pieces:
        # A page read in goes to the inactive list, or straight to the active one when
        # workingset_refault finds its eviction recent (PG_workingset kept with it).
        for sx, sy, act, ws in _refault_runs(kernel, x - d, y - d, memcg):
            lru = lru_state(act, act and ws)
            cuts = [sx + d, sy + d]
            if write and not free_all:
                cuts += [v for v in (lo, hi) if sx + d < v < sy + d]
            cuts.sort()
            for px, py in zip(cuts, cuts[1:]):
                freed = free_all or (write and lo <= px and py <= hi)
                if freed:
                    _slots_put(kernel, px - d, py - d)
                pm.insert(px, py, private_span(False, False, True, freed, False, lru,
                                               None if freed else d))
            _count(mm, vma, True, sy - sx, active=act)
        n += y - x
    mm.swap_pages -= n
    memcg_mod.count_event(memcg, "pswpin", n)
    if not sw:
        vma.swap = None
    return [(x, y) for x, y, _ in pieces]


SWAP_RA_ORDER_CEILING = 5   # the largest swap readahead window is 32 pages
SWAP_RA_HITS_MAX = 63


def _young_near(pm, pieces, f):
    """Young resident pages in the ranges ``pieces`` of ``pm``, and the one nearest to
    page ``f`` (None when there are none)."""
    n, near = 0, None
    for x, y in pieces:
        i, j = pm.overlap(x, y) if pm else (0, 0)
        for k in range(i, j):
            if pm.tag[k].young:
                a, b = max(pm.lo[k], x), min(pm.hi[k], y)
                n += b - a
                c = min(max(f, a), b - 1)
                if near is None or abs(c - f) < abs(near - f):
                    near = c
    return n, near


def _ra_window(vma, sw, f, max_win):
    """swap_ra_info's window size and the previous page it is placed against: hits + 2
    rounded up to a power of two (at least 4), one page without hits unless the fault
    is next to the last one, at most ``max_win``, never below half the last window.
    Also returns the pages of the last window judged hits now (young)."""
    prev, hits = sw.ra, sw.ra_hits
    n = 0
    if sw.ra_out:
        n, near = _young_near(vma.pages, sw.ra_out, f)
        if n:
            hits = min(hits + n, SWAP_RA_HITS_MAX)
            if not sw.ra_hits:
                prev = near
    pages = hits + 2
    if pages == 2:
        if f != prev + 1 and f != prev - 1:
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    pages = max(min(pages, max_win), sw.ra_win // 2)
    return pages, prev, n


def swap_in(mm, vma, lo, hi, write=False):
    """Faults on the swapped pages of ``[lo, hi)`` in address order: each is a major
    fault that reads in the swap readahead window (swap_vma_readahead): its size from
    the readahead hits since the last fault (``_ra_window``), placed ahead of a forward
    run, behind a backward one, around the fault otherwise, clipped to the VMA and its
    page table.  The window's pages inside ``[lo, hi)`` are hits (this access reaches
    them next); the others are hits if they are young by the next fault.  Returns the
    pages read."""
    sw = vma.swap
    kernel = mm.kernel
    max_win = 1 << min(kernel.page_cluster, SWAP_RA_ORDER_CEILING)
    vlo, vhi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
    got = faults = ra = ra_hit = 0
    v = lo
    while sw is not None:
        k = bisect_right(sw.hi, v)
        if k >= len(sw.tag) or sw.lo[k] >= hi:
            break
        f = max(v, sw.lo[k])
        if max_win == 1:
            win, prev = 1, f
        else:
            win, prev, late = _ra_window(vma, sw, f, max_win)
            ra_hit += late
        if win == 1:
            a, b = f, f + 1
        else:
            if f == prev + 1:
                a, b = f, f + win
            elif prev == f + 1:
                a, b = f - win + 1, f + 1
            else:
                left = (win - 1) // 2
                a, b = f - left, f + win - left
            head = f & _PMD_MASK
            a, b = max(a, vlo, head), min(b, vhi, head + PMD_PAGES)
        read = _swap_in_range(mm, vma, a, b, lo, hi, write)
        faults += 1
        # The readahead state after this fault, kept on the VMA's swap entries: the
        # pages read ahead inside the range are hits, the others are judged later.
        inside = -1
        out = []
        for x, y in read:
            got += y - x
            ra += y - x
            inside += max(0, min(y, hi) - max(x, lo))
            if x < lo:
                out.append((x, min(y, lo)))
            if y > hi:
                out.append((max(x, hi), y))
        ra -= 1          # the page that faulted is not read ahead
        ra_hit += inside
        sw = vma.swap
        if sw is not None:
            sw.ra_win = win
            sw.ra_hits = min(inside, SWAP_RA_HITS_MAX)
            sw.ra = min(b, hi) - 1 if inside else f
            sw.ra_out = tuple(out)
        v = b
    if faults:
        memcg_mod.count_event(mm.memcg, "pgmajfault", faults)
        mm.maj_flt += faults
        events = kernel.node.events
        events["swap_ra"] += ra
        events["swap_ra_hit"] += ra_hit
    return got


def _copy_swap(mm, src, dst):
    """copy_page_range's swap entries: the child's page tables get the same entries and
    every slot gains a reference."""
    sw = src.swap
    kernel = mm.kernel
    out = SwapEntries()
    out.lo = array("q", sw.lo)
    out.hi = array("q", sw.hi)
    out.tag = list(sw.tag)
    for x, y, ref in sw.items():
        _slots_get(kernel, x - ref.delta, y - ref.delta)
    dst.swap = out
    mm.swap_pages += out.npages()


def pageout_file(mm, vma, start, end):
    """MADV_PAGEOUT's page-cache half: every clean folio of a regular file that lies
    wholly in ``[start, end)`` and that no other mapping maps loses this mapping (its
    PTE aged first, so the unmap does not mark it accessed) and leaves the cache.  A
    large folio the range cuts is left alone (as the reference kernel did).  Returns
    the pages evicted."""
    pm = vma.pages
    f = vma.file
    if not pm or f is None or f.shmem:
        return 0
    cache = f.inode.cache
    first = vma.start >> PAGE_SHIFT
    lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    index_lo, index_hi = vma.pgoff + lo - first, vma.pgoff + hi - first
    i, j = pm.overlap(lo, hi)
    folios = []
    seen = set()
    for k in range(i, j):
        span = pm.tag[k]
        if span.kind != CACHED or span.pool.anon:
            continue
        page = span.pool
        nr = 1 << page.order
        head = page.index & ~(nr - 1)
        if head in seen:
            continue
        seen.add(head)
        if head < index_lo or head + nr > index_hi:
            continue
        members = [p for p in (cache.get(x) for x in range(head, head + nr)) if p is not None]
        here = []
        for p in members:
            if p.dirty or not p.lru or p.mapcount > 1:
                break
            if p.mapcount:
                v = first + p.index - vma.pgoff
                x = pm.index(v)
                if x < 0 or pm.tag[x].pool is not p:
                    break   # mapped by another mapping
                here.append(v)
        else:
            folios.append((members, here))
    kernel = mm.kernel
    n = 0
    for members, here in folios:
        for v in here:
            x = pm.index(v)
            pm.tag[x] = cached_span(pm.tag[x].pool, False)
            zap_vma(mm, vma, v << PAGE_SHIFT, (v + 1) << PAGE_SHIFT)
        for p in members:
            if not p.mapcount and p.lru and p.inode.cache.get(p.index) is p:
                pagecache.evict(kernel, p, p.memcg)
                n += 1
    return n


class _SwapHolder:
    """Swap entries in transit (mremap's take_range/put_range)."""

    __slots__ = ("swap",)

    def __init__(self):
        self.swap = None


def _move_swap(src, dst, lo, hi, shift=0):
    """Hand the swap entries of ``src`` in ``[lo, hi)`` to ``dst``, ``shift`` pages on."""
    part = src.swap.take(lo, hi)
    if not src.swap:
        src.swap = None
    if part:
        if dst.swap is None:
            dst.swap = SwapEntries()
        dst.swap.put(part, shift, (lambda r: _swap_ref(r.delta + shift)) if shift else None)


def pageout_anon(mm, vma, start, end):
    """MADV_PAGEOUT's anonymous half: swap out, while slots are left, the
    anonymous pages of ``[start, end)`` this mapping alone maps, young or not
    (reclaim_pages ignores references); a THP only when the range covers all of it.
    What gets no slot (all of it without swap) is put back active, PG_referenced
    cleared (shrink_folio_list's activate_locked after add_to_swap fails;
    ``pgactivate``), as the live kernel does without swap.  Returns the pages
    swapped out."""
    pm = vma.pages
    if not pm or not _private_anon(vma):
        return 0
    a, b = _narrow(pm, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    if a >= b:
        return 0
    i, j = pm.overlap(a, b)
    todo = []
    for x, y, span in zip(pm.lo[i:j], pm.hi[i:j], pm.tag[i:j]):
        x, y = max(x, a), min(y, b)
        if span.kind == PRIVATE:
            todo.append((x, y))
        elif span.kind == POOLED:
            # Pages shared since a fork whose other mappers are gone are this mm's alone.
            d = span.delta
            step = PMD_PAGES if span.pmd is True else None
            for px, py, st in span.pool.runs(x - d, y - d):
                if st[0] == 1 and (step is None or not (px + d) % step and not (py + d) % step):
                    todo.append((px + d, py + d))
    done = 0
    failed = []
    for x, y in todo:
        # Pages in the swap cache already need no new slot.
        room = swap_room(mm.kernel, mm.memcg) + (y - x) - swap_need(vma, x, y)
        if y - x > room:
            k = pm.index(x)
            if room <= 0 or pm.tag[k].pmd is True:
                large_swapout(mm, vma, x, y, False)
                failed.append((x, y))
                continue
            # Simulator-defined: large folios of a run that does not fit whole are
            # all split (swpout_fallback), then the pages go out while slots last.
            large_swapout(mm, vma, x, y, False)
            failed.append((x + room, y))
            y = x + room
        large_swapout(mm, vma, x, y, True)
        swap_out(mm, vma, x, y, mm.memcg)
        done += y - x
    if failed:
        stamp = new_stamp()
        back = {}
        for x, y in failed:
            for memcg, n in set_anon_lru(mm, vma, x, y,
                                         lambda old: lru_state(True, old[1], stamp),
                                         referenced=False):
                back.setdefault(id(memcg), [memcg, 0])[1] += n
        # reclaim_folio_list puts them back with folio_putback_lru, which, unlike
        # move_folios_to_lru, does not age the workingset clock.
        for memcg, n in back.values():
            memcg_mod.count_event(memcg, "pgactivate", n)
    return done


def private_anon_pages(mm, by_list=False):
    """The anonymous pages only this mm maps that are charged to its cgroup (its
    private extents), O(extents); with ``by_list``, ``[inactive, active]``."""
    n = [0, 0]
    for vma in mm.vmas():
        pm = vma.pages
        if pm:
            for x, y, span in pm.items():
                if span.kind == PRIVATE and span.anon:
                    n[span.lru[0]] += y - x
    return n if by_list else n[0] + n[1]


def check_vma(vma):
    """Extents are sorted, disjoint, coalesced and inside their VMA, THPs are aligned,
    pooled pages are in their pool, and guard markers lie inside the VMA."""
    lo, hi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
    pm = vma.pages
    prev_end, prev_span = lo, None
    for x, y, span in (pm.items() if pm else ()):
        if not prev_end <= x < y <= hi:
            raise AssertionError(f"extent [{x:#x}, {y:#x}) out of order or outside {vma!r}")
        if span.pmd is True and span.kind == CACHED:
            page = span.pool
            if page.order != shmem_mod.PMD_ORDER or (x - page.index) & (PMD_PAGES - 1):
                raise AssertionError(f"PMD-mapped page {x:#x} is not its folio's in {vma!r}")
        elif span.pmd is True and (x % PMD_PAGES or y % PMD_PAGES):
            raise AssertionError(f"THP extent [{x:#x}, {y:#x}) is not aligned in {vma!r}")
        code = span.pmd
        if code is not True and code is not False and not (
                type(code) is int and 2 <= code <= PMD_ORDER and span.kind != CACHED
                and (span.kind == POOLED or span.anon)):
            raise AssertionError(f"extent [{x:#x}, {y:#x}) has folio code {code!r}")
        if span.kind == CACHED and y - x != 1:
            raise AssertionError(f"cached folio extent [{x:#x}, {y:#x}) in {vma!r}")
        if span is prev_span and x == prev_end and span.kind != CACHED:
            raise AssertionError(f"equal extents not coalesced at {x:#x} in {vma!r}")
        if span.kind == POOLED:
            d = span.delta
            if sum(b - a for a, b, _ in span.pool.runs(x - d, y - d)) != y - x:
                raise AssertionError(f"pages [{x:#x}, {y:#x}) missing from their pool")
        prev_end, prev_span = y, span
    for x, y, ref in (vma.swap.items() if vma.swap else ()):
        if not lo <= x < y <= hi or not isinstance(ref, SwapRef) or (pm and resident_in(
                vma, x << PAGE_SHIFT, y << PAGE_SHIFT)):
            raise AssertionError(f"swap entries [{x:#x}, {y:#x}) misplaced in {vma!r}")
    for first, last in vma.guards.ranges() if vma.guards else ():
        if not lo <= first < last <= hi:
            raise AssertionError(f"guard markers [{first:#x}, {last:#x}) lie outside {vma!r}")
    prev_end, prev_tag = lo, None
    for x, y, huge in (vma.zero.items() if vma.zero else ()):
        if not prev_end <= x < y <= hi or (x == prev_end and huge is prev_tag):
            raise AssertionError(f"zero-page mappings [{x:#x}, {y:#x}) misplaced in {vma!r}")
        if huge is True and (x % PMD_PAGES or y % PMD_PAGES):
            raise AssertionError(f"huge zero PMD [{x:#x}, {y:#x}) is not aligned in {vma!r}")
        if huge is not True and huge is not False:
            raise AssertionError(f"zero-page mapping [{x:#x}, {y:#x}) tagged {huge!r}")
        if resident_in(vma, x << PAGE_SHIFT, y << PAGE_SHIFT) or (
                vma.swap and vma.swap.overlap(x, y)[0] < vma.swap.overlap(x, y)[1]) or (
                vma.guards and vma.guards.first_in(x, y) is not None):
            raise AssertionError(f"zero-page mappings [{x:#x}, {y:#x}) overlap other "
                                 f"entries in {vma!r}")
        prev_end, prev_tag = y, huge
    sw = vma.swap
    for x, y in (vma.unwritten.ranges() if vma.unwritten else ()):
        swapped = 0
        if sw:
            i, j = sw.overlap(x, y)
            swapped = sum(min(sw.hi[k], y) - max(sw.lo[k], x) for k in range(i, j))
        if not lo <= x < y <= hi or (
                resident_in(vma, x << PAGE_SHIFT, y << PAGE_SHIFT) + swapped != y - x):
            raise AssertionError(f"never-written pages [{x:#x}, {y:#x}) neither resident "
                                 f"nor swapped in {vma!r}")


def check_pools(kernel):
    """Every pool's mapcounts equal the number of mappings of each folio across the
    live address spaces, and no pool keeps a folio nobody maps (a checking aid)."""
    events = {}
    pools = {}
    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            for x, y, span in (vma.pages.items() if vma.pages else ()):
                if span.kind == POOLED:
                    d = span.delta
                    pools[id(span.pool)] = span.pool
                    ev = events.setdefault(id(span.pool), {})
                    ev[x - d] = ev.get(x - d, 0) + 1
                    ev[y - d] = ev.get(y - d, 0) - 1
    for key, pool in pools.items():
        want = _depths(events[key])
        have = [(a, b, st[0]) for a, b, st in pool.items()]
        if _flat(want) != _flat(have):
            raise AssertionError(f"pool mapcounts {have[:8]} != mappings {want[:8]}")


def _depths(ev):
    """From +1/-1 events at range ends, the runs ``(a, b, depth)`` covered at all."""
    points = sorted(ev)
    depth = 0
    out = []
    for a, b in zip(points, points[1:]):
        depth += ev[a]
        if depth:
            out.append((a, b, depth))
    return out


def check_swap(kernel):
    """Every swap slot's reference count equals the swap entries naming it across the
    live address spaces, each mm's swap_pages counts its entries, and the device's
    ``used`` counts the slots (a checking aid)."""
    ev = {}
    pools = {}
    for mm in _live_mms(kernel):
        n = 0
        for vma in mm.vmas():
            for x, y, ref in (vma.swap.items() if vma.swap else ()):
                d = ref.delta
                ev[x - d] = ev.get(x - d, 0) + 1
                ev[y - d] = ev.get(y - d, 0) - 1
                n += y - x
            for x, y, span in (vma.pages.items() if vma.pages else ()):
                if span.kind == PRIVATE and span.swap is not None:
                    # A swap-cache page holds its slot (SWAP_HAS_CACHE).
                    d = span.swap
                    ev[x - d] = ev.get(x - d, 0) + 1
                    ev[y - d] = ev.get(y - d, 0) - 1
                elif span.kind == POOLED:
                    pools[id(span.pool)] = span.pool
    for pool in pools.values():
        for a, b, st in pool.items():
            if st[5] is not None:
                ev[a - st[5]] = ev.get(a - st[5], 0) + 1
                ev[b - st[5]] = ev.get(b - st[5], 0) - 1
        if n != mm.swap_pages:
            raise AssertionError(f"mm swap_pages {mm.swap_pages} != its entries {n}")
    dev = kernel.swap
    if dev is None:
        if ev:
            raise AssertionError("swap entries without a swap device")
        return
    want = _depths(ev)
    have = [(a, b, st[0]) for a, b, st in dev.slots.items()]
    if _flat(want) != _flat(have):
        raise AssertionError(f"swap counts {have[:8]} != entries {want[:8]}")
    if dev.used != dev.slots.npages() or not 0 <= dev.used <= dev.total:
        raise AssertionError(f"swap used {dev.used} of {dev.total}, slots {dev.slots.npages()}")


def anon_lru_pages(kernel):
    """``{id(memcg): [memcg, inactive, active, mlocked inactive, mlocked active]}``:
    the private anonymous pages each cgroup is charged for, by the anon list their
    folio state names, and those of them mapped by a VM_LOCKED mapping (O(extents))."""
    out = {}
    pools = {}
    locked_pools = set()

    def row(memcg):
        r = out.get(id(memcg))
        if r is None:
            r = out[id(memcg)] = [memcg, 0, 0, 0, 0]
        return r

    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            pm = vma.pages
            if not pm:
                continue
            locked = vma.vm_flags & VM_LOCKED
            for x, y, span in pm.items():
                if span.kind == PRIVATE and span.anon:
                    r = row(mm.memcg)
                    r[1 + span.lru[0]] += y - x
                    if locked:
                        r[3 + span.lru[0]] += y - x
                elif span.kind == POOLED:
                    pool = span.pool
                    pools[id(pool)] = pool
                    if locked:
                        d = span.delta
                        locked_pools.update((id(pool), a, b) for a, b, st in
                                            pool.runs(x - d, y - d) if st[1])
    for pool in pools.values():
        for a, b, st in pool.items():
            if st[1]:
                row(pool.memcg)[1 + st[4][0]] += b - a
    if locked_pools:
        # A folio mapped by several locked mappings is counted once.
        by_pool = {}
        for key, a, b in locked_pools:
            by_pool.setdefault(key, []).append((a, b))
        for key, ranges in by_pool.items():
            pool = pools[key]
            ranges.sort()
            merged = []
            for a, b in ranges:
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            for a, b in merged:
                for x, y, st in pool.runs(a, b):
                    if st[1]:
                        row(pool.memcg)[3 + st[4][0]] += y - x
    return out


def mlocked_lru(kernel):
    """``{id(memcg): [anon inactive, anon active, file inactive, file active]}``: the
    pages VM_LOCKED mappings map, by the list their state names, per cgroup charged.
    Simulator-defined: mlocked folios keep their list state and are shown on the
    unevictable list (``Unevictable``/``Mlocked``, memory.stat ``unevictable``)
    rather than moved there; reclaim passes over them."""
    out = {}
    for key, (memcg, _, _, li, la) in anon_lru_pages(kernel).items():
        if li or la:
            out[key] = [li, la, 0, 0]
    seen = set()
    for mm in _live_mms(kernel):
        for vma in mm.tree.values():
            f = vma.file
            if not vma.vm_flags & VM_LOCKED or f is None or f.shmem or not vma.pages:
                continue
            for span in vma.pages.tag:
                page = span.pool
                if span.kind != CACHED or id(page) in seen or not page.lru:
                    continue
                seen.add(id(page))
                row = out.setdefault(id(page.memcg), [0, 0, 0, 0])
                row[2 + (page.lru == pagecache.ACTIVE)] += 1
    return out


def swap_cached(kernel):
    """``{id(memcg): pages}``: the pages in the swap cache, by the cgroup their memory
    is charged to (``SwapCached``, memory.stat ``swapcached``), O(extents)."""
    out = {}
    if kernel.swap is None:
        return out
    pools = {}
    for mm in _live_mms(kernel):
        for vma in mm.vmas():
            for x, y, span in (vma.pages.items() if vma.pages else ()):
                if span.kind == PRIVATE and span.swap is not None:
                    out[id(mm.memcg)] = out.get(id(mm.memcg), 0) + y - x
                elif span.kind == POOLED:
                    pools[id(span.pool)] = span.pool
    for pool in pools.values():
        for a, b, st in pool.items():
            if st[5] is not None:
                out[id(pool.memcg)] = out.get(id(pool.memcg), 0) + b - a
    return out


def check_folios(kernel):
    """The large-folio books: ``nr_anon_partially_mapped`` equals the deferred split
    queue, order by order, and nothing is held for a munmap still (a checking aid)."""
    part = dict.fromkeys(thp.ANON_ORDERS, 0)
    for key in kernel.deferred_split:
        part[key[1]] += 1
    for order in thp.ANON_ORDERS:
        if kernel.mthp_stats[order]["nr_anon_partially_mapped"] != part[order]:
            raise AssertionError(f"nr_anon_partially_mapped[{order}] is "
                                 f"{kernel.mthp_stats[order]['nr_anon_partially_mapped']}, "
                                 f"the queue holds {part[order]}")
    if kernel.hold_folios or kernel.pending_folios:
        raise AssertionError("partial unmaps left undecided")


def check_anon_lru(kernel):
    """Every cgroup's anon list counts equal the pages on them: the anonymous pages
    charged to it by the list their LRU state names, shmem on the inactive one (a
    checking aid)."""
    rows = anon_lru_pages(kernel)
    for m in kernel.root_memcg.subtree():
        _, inactive, active, _, _ = rows.get(id(m), (m, 0, 0, 0, 0))
        if inactive + active != m.stat["anon"]:
            # Some of its pages belong to an address space no process has (a test's
            # Kernel.new_mm): they cannot be told apart.
            continue
        nr = m.lruvec.nr
        if (nr[LRU_INACTIVE_ANON], nr[LRU_ACTIVE_ANON]) != (inactive + m.stat["shmem"], active):
            raise AssertionError(
                f"cgroup {m.path()} anon lists {nr[LRU_INACTIVE_ANON]}/{nr[LRU_ACTIVE_ANON]} "
                f"!= pages {inactive}+{m.stat['shmem']} shmem/{active}")


def _flat(runs):
    """Runs ``(a, b, n)`` with equal touching neighbours merged."""
    out = []
    for a, b, n in runs:
        if out and out[-1][1] == a and out[-1][2] == n:
            out[-1] = (out[-1][0], b, n)
        else:
            out.append((a, b, n))
    return out


__all__ = ["Page", "Span", "PageMap", "Pool", "fault", "zap_vma", "move_range", "move_all",
           "split_huge_at", "collapse", "rss_pages", "check_vma", "PAGE_SIZE"]

"""A maple-tree-like store of half-open ranges ``[start, end) -> entry`` with gap tracking.

The kernel keeps an address space's VMAs in a maple tree: a B-tree of ranges whose
internal nodes remember the largest free gap below each child, so lookups, range stores
and free-area searches are all O(log n).  ``VmaTree`` gives the same observable behaviour
in pure Python, shaped for CPython speed:

* A leaf holds up to ``width`` ranges as one interleaved list of bounds
  ``[s0, e0, s1, e1, ...]`` beside a list of entries.  One C ``bisect`` over the bounds
  answers "which range covers this index": an odd position ``p`` means inside range
  ``p >> 1``.
* Internal nodes form a B-tree over the leaves.  Each holds, per child, the first start
  and last end of the child's subtree (the pivots) and the child's largest gap.  The
  free range between two subtrees belongs to their lowest common ancestor, so a store
  never touches a neighbouring leaf's summary.
* A leaf keeps its largest inner gap ``mg``, how many gaps have that size ``mgc``, and
  ``sec``, a bound that no smaller gap exceeds.  Most stores leave them alone or move
  them with a compare: filling part of a gap smaller than the largest changes nothing,
  freeing a range makes a gap larger than either of its neighbours, and cutting the
  last gap of the largest size leaves the larger piece as the new largest whenever it
  is above ``sec`` (as a top-down mmap does to the hole below the mappings).  Only
  otherwise, and on a leaf split, is a rescan needed: the leaf then marks its largest
  gap unknown (``_STALE``, above any real gap, so no search skips it) and the next gap
  search rescans it first.  A random-order build never pays for a rescan it does not
  use, and every search answers exactly as if no rescan had been put off.
* A leaf that a gap search has read keeps its gaps in a list beside the bounds, which
  the common stores and erases update in place; a search rules that list out a chunk
  at a time with one C ``max`` per chunk.
* An internal node keeps a sorted multiset ``gaps`` of the positive free ranges it
  accounts for (its children's largest and those between children); its largest gap is
  ``gaps[-1]``, kept exact with a few C-level bisects.
* Beside the tree, a flat index of the leaves in address order (their first starts and
  the leaves themselves) lets a lookup or a store reach its leaf with one bisect, whatever
  the height; nodes point to their parents, so a change climbs the tree only as far as
  a summary actually changes.
* Free space is never stored.  Entries are never coalesced: the caller (the VMA merge
  engine) decides what merges.

Indices are ints in ``[0, 2**64)``; a range's ``end`` may be ``2**64``.
"""

from bisect import bisect_left, bisect_right, insort
from functools import reduce
from itertools import chain, islice
from operator import and_, le, lt, or_, sub

__all__ = ["VmaTree", "INDEX_LIMIT", "DEFAULT_WIDTH"]

#: One past the largest index (the kernel's ULONG_MAX + 1 on 64-bit).
INDEX_LIMIT = 1 << 64

#: Default node width, chosen by ``python -m benchmarks width`` (see BENCHMARKS.md).
DEFAULT_WIDTH = 256

# A gap search reads the first few gaps or children of a node one by one (where most
# searches end), then a chunk at a time at C speed, looking closer only at a chunk that
# can hold the fit.
_NEAR = 4
_SCAN_CHUNK = 32
# A leaf's gap list is read this many gaps at a time (one C ``max`` over a slice).
_GAP_CHUNK = 64
_GAP_FINE = 8

# A leaf's largest gap when it is not known: above any real gap, so every store's
# bookkeeping leaves it alone (no gap equals it or exceeds it) and every gap search
# reads the leaf rather than skip it.  Ancestors carry it up like any gap.  A store that
# would have to rescan the leaf marks it so instead and lists it in the tree's
# ``_stale``; the next gap search rescans the listed leaves first (``_settle``).
_STALE = 1 << 65


class _Leaf:
    """A leaf: interleaved bounds, entries and its largest inner gap with its count."""

    __slots__ = ("b", "v", "mg", "mgc", "sec", "gl", "parent", "dirty", "sor", "sand")

    def __init__(self, b, v, parent=None, stale=False):
        self.b = b          # [s0, e0, s1, e1, ...], sorted, ranges disjoint
        self.v = v          # entries, one per range
        # Largest gap, how many gaps have that size, and a bound on every smaller gap;
        # ``(_STALE, 1, 0)`` until a gap search needs them, for a ``stale`` leaf.
        if stale:
            self.mg, self.mgc, self.sec = _STALE, 1, 0
        else:
            self.mg, self.mgc, self.sec = _leaf_max(b)
        # Every inner gap in order, ``gl[j] = b[2j+2] - b[2j+1]``, once a gap search has
        # read the leaf (None before): the common stores keep it up to date, the rare
        # ones drop it, and a search reads it at C speed a chunk at a time.
        self.gl = None
        self.parent = parent
        # Summary of the entries' keys (OR and AND), valid only while not dirty.
        self.dirty = True
        self.sor = 0
        self.sand = 0


class _Node:
    """An internal node: per-child pivots and largest gaps, and its gap multiset."""

    __slots__ = ("firsts", "lasts", "cg", "gaps", "children", "parent", "dirty", "sor", "sand")

    def __init__(self, firsts, lasts, children, parent=None):
        self.firsts = firsts      # firsts[i]: start of child i's first range
        self.lasts = lasts        # lasts[i]: end of child i's last range
        self.children = children
        self.parent = parent
        self.dirty = True
        self.sor = 0
        self.sand = 0
        for child in children:
            child.parent = self
        self.cg = [_gap_of(c) for c in children]   # cg[i]: child i's largest gap
        self.gaps = _node_gaps(self)


def _gap_of(node):
    """Largest free range inside ``node``'s span (0 if none)."""
    if type(node) is _Leaf:
        return node.mg
    gaps = node.gaps
    return gaps[-1] if gaps else 0


def _span(node):
    """First start and last end of the ranges under ``node``."""
    if type(node) is _Leaf:
        b = node.b
        return b[0], b[-1]
    return node.firsts[0], node.lasts[-1]


def _leaf_add_gap(leaf, g):
    """Account for a new positive gap ``g`` in ``leaf``'s largest gap, count and bound."""
    top = leaf.mg
    if g > top:
        if top > leaf.sec:
            leaf.sec = top
        leaf.mg = g
        leaf.mgc = 1
    elif g == top:
        leaf.mgc += 1
    elif g > leaf.sec:
        leaf.sec = g


def _leaf_max(b):
    """Largest gap between consecutive ranges of interleaved bounds ``b``, how many gaps
    have that size, and the largest smaller gap: ``(0, 0, 0)`` when no two ranges have
    free space between them."""
    if len(b) < 4:
        return 0, 0, 0
    # One C sort gives all three about as cheaply as max() and count() give two.
    gaps = sorted(map(sub, b[2::2], b[1:-1:2]))
    top = gaps[-1]
    if not top:
        return 0, 0, 0
    i = bisect_left(gaps, top)
    return top, len(gaps) - i, gaps[i - 1] if i else 0


def _node_gaps(node):
    """Sorted positive gaps an internal node accounts for: its children's and those between them."""
    between = map(sub, islice(node.firsts, 1, None), node.lasts)
    return sorted(filter(None, chain(node.cg, between)))


def _bad_index(name, value, upper):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    raise ValueError(f"{name} {value:#x} is outside [0, {upper:#x}]")


class VmaTree:
    """A B-tree of disjoint half-open ranges ``[start, end) -> entry`` tracking free gaps.

    ``items()`` is a lazy iterator and, like a ``dict`` view, must not be used across a
    change to the tree; ``values()`` returns a list, so a walk may change the tree.
    """

    __slots__ = ("_root", "_height", "_len", "_width", "_bcap", "_min", "_lf", "_ll", "_key",
                 "_stale", "_mapped")

    def __init__(self, width=DEFAULT_WIDTH):
        """Create an empty tree whose nodes hold at most ``width`` ranges or children."""
        if isinstance(width, bool) or not isinstance(width, int) or width < 4:
            raise ValueError("width must be an int >= 4")
        self._width = width
        self._bcap = 2 * width   # bounds in a full leaf
        # A quarter full at least; a pair is merged only when the result is at most
        # three quarters full, so an erase after a merge or a split after an insert
        # is never one operation away.
        self._min = max(2, width // 4)
        self._root = _Leaf([], [])
        self._height = 0
        self._len = 0
        self._lf = []   # first start of every non-empty leaf, in address order
        self._ll = []   # those leaves
        self._key = None  # the key of the last summarized_walk (for check())
        self._stale = []  # leaves whose largest gap may be _STALE (see _settle)
        self._mapped = None  # (keep, add) from keys_mapped, for the leaf a walk handed out

    @classmethod
    def from_sorted(cls, items, width=DEFAULT_WIDTH):
        """A tree holding ``items``, an iterable of ``(start, end, entry)`` already in
        address order and disjoint, built level by level in O(n) (fork's tree copy)."""
        tree = cls(width)
        bounds = []
        entries = []
        last_end = 0
        for start, end, entry in items:
            if (type(start) is not int or type(end) is not int
                    or not last_end <= start < end <= INDEX_LIMIT or entry is None):
                if entry is None:
                    raise ValueError("entries must not be None")
                if type(start) is int and type(end) is int and 0 <= start < end <= INDEX_LIMIT:
                    raise ValueError(f"range [{start:#x}, {end:#x}) is out of order or overlaps")
                tree._bad_range(start, end)
            bounds += (start, end)
            entries.append(entry)
            last_end = end
        return cls._build(tree, bounds, entries)

    @classmethod
    def from_parts(cls, bounds, entries, width=DEFAULT_WIDTH, check=True):
        """Like ``from_sorted`` from interleaved ``bounds`` ``[s0, e0, s1, e1, ...]`` and
        the matching ``entries`` (the lists are taken over).  ``check=False`` skips the
        validation: only for parts read out of another VmaTree, as fork does."""
        if not check:
            return cls._build(cls(width), bounds, entries)
        if (len(bounds) != 2 * len(entries) or not set(map(type, bounds)) <= {int}
                or (bounds and (bounds[0] < 0 or bounds[-1] > INDEX_LIMIT))
                or not all(map(le, bounds, islice(bounds, 1, None)))
                or not all(map(lt, islice(bounds, 0, None, 2), islice(bounds, 1, None, 2)))
                or None in entries):
            raise ValueError("bounds must be ints, sorted, non-empty and disjoint ranges "
                             "with one non-None entry each")
        return cls._build(cls(width), bounds, entries)

    @staticmethod
    def _build(tree, bounds, entries):
        width = tree._width
        n = len(entries)
        if not n:
            return tree
        sizes = _chunk_sizes(n, width, tree._min)
        leaves = []
        pos = 0
        for size in sizes:
            leaves.append(_Leaf(bounds[2 * pos:2 * (pos + size)], entries[pos:pos + size]))
            pos += size
        tree._ll = leaves
        tree._lf = [leaf.b[0] for leaf in leaves]
        tree._len = n
        level = leaves
        height = 0
        while len(level) > 1:
            parents = []
            pos = 0
            for size in _chunk_sizes(len(level), width, tree._min):
                group = level[pos:pos + size]
                pos += size
                parents.append(_Node([_span(c)[0] for c in group], [_span(c)[1] for c in group],
                                     group))
            level = parents
            height += 1
        tree._root = level[0]
        tree._height = height
        return tree

    # ------------------------------------------------------------------ reading

    def __len__(self):
        """Number of entries (ranges) stored."""
        return self._len

    def __iter__(self):
        """Iterate ``(start, end, entry)`` in address order."""
        return self.items()

    def __repr__(self):
        return f"<VmaTree {self._len} entries, height {self._height + 1}, width {self._width}>"

    @property
    def width(self):
        """Maximum ranges per leaf and children per internal node."""
        return self._width

    @property
    def height(self):
        """Number of levels, leaves included (1 for a tree that is a single leaf)."""
        return self._height + 1

    def load(self, index):
        """The entry whose range covers ``index``, or ``None``."""
        if type(index) is not int:
            _bad_index("index", index, INDEX_LIMIT - 1)
        i = bisect_right(self._lf, index) - 1
        if i >= 0:
            leaf = self._ll[i]
            p = bisect_right(leaf.b, index)
            if p & 1:
                return leaf.v[p >> 1]
        # Only an index in no range can be out of bounds: check it on this path alone.
        if not 0 <= index < INDEX_LIMIT:
            _bad_index("index", index, INDEX_LIMIT - 1)
        return None

    def find(self, index, limit=None):
        """First ``(start, end, entry)`` with ``end > index`` and ``start < limit``, or ``None``."""
        if type(index) is not int or not 0 <= index <= INDEX_LIMIT:
            _bad_index("index", index, INDEX_LIMIT)
        if limit is None:
            limit = INDEX_LIMIT
        elif type(limit) is not int or not 0 <= limit <= INDEX_LIMIT:
            _bad_index("limit", limit, INDEX_LIMIT)
        li, k = self._locate(index)
        ll = self._ll
        if li == len(ll):
            return None
        b = ll[li].b
        if 2 * k == len(b):
            li += 1
            if li == len(ll):
                return None
            b = ll[li].b
            k = 0
        start = b[2 * k]
        if start >= limit:
            return None
        return start, b[2 * k + 1], ll[li].v[k]

    def find_prev(self, index):
        """Last ``(start, end, entry)`` with ``start < index``, or ``None``."""
        if type(index) is not int or not 0 <= index <= INDEX_LIMIT:
            _bad_index("index", index, INDEX_LIMIT)
        i = bisect_left(self._lf, index) - 1
        if i < 0:
            return None
        leaf = self._ll[i]
        b = leaf.b
        # The last range whose start lies below ``index``.
        k = (bisect_left(b, index) - 1) >> 1
        return b[2 * k], b[2 * k + 1], leaf.v[k]

    def items(self, start=0, end=None):
        """Iterate ``(start, end, entry)`` for every range overlapping ``[start, end)``, in order."""
        return chain.from_iterable(
            zip(islice(b, 0, None, 2), islice(b, 1, None, 2), v)
            for b, v in self._slices(start, end))

    def values(self, start=0, end=None, check=True):
        """List of the entries overlapping ``[start, end)``, in order (the fast walk).

        A new list, so the caller may change the tree while going through it.
        ``check=False`` skips checking the bounds: only for ints with ``0 <= start <
        end <= 2**64`` (a syscall's range, already checked).
        """
        out = []
        if start == 0 and end is None:
            for leaf in self._ll:
                out += leaf.v
            return out
        if not check or (type(start) is int and type(end) is int
                         and 0 <= start < end <= INDEX_LIMIT):
            # _slices_gen's walk written out, with no generator: the common case.
            ll = self._ll
            li = bisect_right(self._lf, start) - 1
            if li < 0:
                li = k = 0
            else:
                k = bisect_right(ll[li].b, start) >> 1
            for li in range(li, len(ll)):
                leaf = ll[li]
                b = leaf.b
                m = (bisect_left(b, end, 2 * k) + 1) >> 1   # ranges k..m-1 start below end
                if k < m:
                    out += leaf.v[k:m]
                if 2 * m < len(b):
                    break
                k = 0
            return out
        for _, v in self._slices(start, end):
            out += v
        return out

    def span(self, start, end):
        """``(before, entries, after)``: the entries overlapping ``[start, end)`` as
        ``values`` gives them, with the entry of the range just before the first of them
        and just after the last (None where there is none), in one walk.  Without an
        overlap, ``before`` and ``after`` are the entries either side of ``start``."""
        if not (type(start) is int and type(end) is int and 0 <= start < end <= INDEX_LIMIT):
            self._bad_range(start, end)
        ll = self._ll
        if not ll:
            return None, [], None
        out = []
        li = bisect_right(self._lf, start) - 1
        if li < 0:
            li = k = 0
            before = None
        else:
            k = bisect_right(ll[li].b, start) >> 1
            before = ll[li].v[k - 1] if k else ll[li - 1].v[-1] if li else None
        n = len(ll)
        while True:
            leaf = ll[li]
            b = leaf.b
            m = (bisect_left(b, end, 2 * k) + 1) >> 1   # ranges k..m-1 start below end
            if k < m:
                out += leaf.v[k:m]
            if 2 * m < len(b):
                return before, out, leaf.v[m]
            li += 1
            if li == n:
                return before, out, None
            k = 0

    def touch(self, index):
        """Say that the entry covering ``index`` changed in place (its key for
        ``summarized_walk`` may differ now)."""
        if self._lf:
            i = bisect_right(self._lf, index) - 1
            leaf = self._ll[i if i > 0 else 0]
            if not leaf.dirty:
                _touch(leaf)

    def summarized_walk(self, key, skip):
        """Yield, in order, the entry lists of the leaves a walk has to visit: every
        subtree whose summary (OR and AND of ``key(entry)``) satisfies ``skip(or_, and_)``
        is passed over without reading its entries.  Summaries are computed where out of
        date, and a yielded leaf is summarized again once the caller moves on, so the
        caller may change its entries' keys in place.  The tree's shape must not change
        during the walk (close the generator first)."""
        self._key = key
        if not self._len:
            return iter(())
        return _sweep(self, self._root, key, skip)

    def keys_mapped(self, keep, add):
        """Say that the caller of ``summarized_walk`` gave every entry of the leaf it was
        last handed the key ``old & keep | add`` (``old`` that entry's key before) and
        changed the keys no other way.  The leaf's summary then follows from its old
        one, if it had one, without reading the entries: OR and AND both commute with
        that map, bit by bit."""
        self._mapped = (keep, add)

    def _slices(self, start, end):
        """Yield ``(bounds, entries)`` of the ranges overlapping ``[start, end)``, leaf by leaf."""
        if type(start) is not int or not 0 <= start <= INDEX_LIMIT:
            _bad_index("start", start, INDEX_LIMIT)
        if end is None:
            end = INDEX_LIMIT
        elif type(end) is not int or not 0 <= end <= INDEX_LIMIT:
            _bad_index("end", end, INDEX_LIMIT)
        return self._slices_gen(start, end)

    def _slices_gen(self, start, end):
        if start >= end:
            return
        li, k = self._locate(start)
        ll = self._ll
        for li in range(li, len(ll)):
            leaf = ll[li]
            b = leaf.b
            if k == 0 and b[-2] < end:
                yield b, leaf.v
            else:
                m = (bisect_left(b, end, 2 * k) + 1) >> 1  # ranges k..m-1 start below ``end``
                if k < m:
                    yield b[2 * k:2 * m], leaf.v[k:m]
                if 2 * m < len(b):
                    return
            k = 0

    def _locate(self, index):
        """Flat leaf index, and how many of its ranges end at or below ``index``."""
        li = bisect_right(self._lf, index) - 1
        if li < 0:
            return 0, 0
        return li, bisect_right(self._ll[li].b, index) >> 1

    # ------------------------------------------------------------------ gap search

    def empty_area(self, low, high, size):
        """Lowest ``s`` with ``[s, s + size)`` free and inside ``[low, high)``, or ``None``."""
        if (type(low) is not int or type(high) is not int or type(size) is not int
                or not 0 <= low <= high <= INDEX_LIMIT or size <= 0):
            self._check_area(low, high, size)
        if high - low < size:
            return None
        if self._len == 0:
            return low
        if self._stale:
            self._settle()
        root = self._root
        first, last = _span(root)
        if low + size <= first:
            return low
        if _gap_of(root) >= size and first < high - size and last > low + size:
            found = _lowest(root, low, high, size)
            if found is not None:
                return found
        s = last if last > low else low
        if s + size <= high:
            return s
        return None

    def empty_area_rev(self, low, high, size):
        """Highest ``s`` with ``[s, s + size)`` free and inside ``[low, high)``, or ``None``.

        The block is placed at the top of the highest free range that can hold it.
        """
        if (type(low) is not int or type(high) is not int or type(size) is not int
                or not 0 <= low <= high <= INDEX_LIMIT or size <= 0):
            self._check_area(low, high, size)
        if high - low < size:
            return None
        if self._len == 0:
            return high - size
        if self._stale:
            self._settle()
        root = self._root
        first, last = _span(root)
        if high - size >= last:
            return high - size
        if _gap_of(root) >= size and first < high - size and last > low + size:
            found = _highest(root, low, high, size)
            if found is not None:
                return found
        e = first if first < high else high
        if e - size >= low:
            return e - size
        return None

    @staticmethod
    def _check_area(low, high, size):
        for name, value in (("low", low), ("high", high)):
            if type(value) is not int or not 0 <= value <= INDEX_LIMIT:
                _bad_index(name, value, INDEX_LIMIT)
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"size must be an int, not {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"size must be positive, not {size}")
        if low > high:
            raise ValueError(f"low {low:#x} is above high {high:#x}")

    # ------------------------------------------------------------------ writing

    def erase(self, start, end):
        """Free ``[start, end)``: same as ``store(start, end, None)``."""
        # Finding the leaf repeats store()'s first lines: a shared helper would cost a
        # call, a tenth of an erase.
        if (type(start) is not int or type(end) is not int
                or not 0 <= start < end <= INDEX_LIMIT):
            self._bad_range(start, end)
        lf = self._lf
        li = bisect_right(lf, start) - 1
        if li < 0:
            if not lf:
                return
            li = 0
        leaf = self._ll[li]
        if not leaf.dirty:
            _touch(leaf)
        b = leaf.b
        nb = len(b)
        p = bisect_right(b, start)
        if not (p & 1 and start == b[p - 1] and end == b[p]):
            # Anything but exactly one whole range: the general path, if anything is there.
            if p & 1 or (end > b[p] if p < nb else li + 1 < len(lf) and end > lf[li + 1]):
                self._overwrite(leaf, li, p, start, end, None)
            return
        # Erasing exactly one range.
        k = p >> 1
        v = leaf.v
        old_gap = leaf.mg
        if p > 1 and p + 1 < nb:
            # Its two neighbouring gaps join into one larger than either.
            # (_leaf_add_gap, written out: this is every interior erase.)  A stale
            # leaf's gaps wait for the rescan.
            if old_gap != _STALE:
                g = b[p + 1] - b[p - 2]
                if g > old_gap:
                    if old_gap > leaf.sec:
                        leaf.sec = old_gap
                    leaf.mg = g
                    leaf.mgc = 1
                elif g == old_gap:
                    leaf.mgc += 1
                elif g > leaf.sec:
                    leaf.sec = g
            del b[p - 1:p + 1], v[k]
            gl = leaf.gl
            if gl is not None:
                gl[k - 1:k + 1] = (b[p - 1] - b[p - 2],)
        else:
            # The first or last range: the gap beside it, if any, goes.
            lost = start - b[p - 2] if p > 1 else b[p + 1] - end if p + 1 < nb else 0
            del b[p - 1:p + 1], v[k]
            gl = leaf.gl
            if gl:
                del gl[0 if p == 1 else -1]
            if lost and lost == old_gap:
                leaf.mgc -= 1
                if not leaf.mgc:
                    leaf.mg = _STALE
                    leaf.mgc = 1
                    self._stale.append(leaf)
        self._len -= 1
        n = len(v)
        if n < self._min and (self._height or not n):
            self._fix(leaf, li, start if k == 0 else b[0])
        elif self._height and (k == 0 or k == n or old_gap != leaf.mg):
            if k == 0:
                lf[li] = b[0]
                self._propagate(leaf, start, b[0], b[-1], leaf.mg)
            else:
                self._propagate(leaf, b[0], b[0], b[-1], leaf.mg)
        elif k == 0:
            lf[li] = b[0]

    def store(self, start, end, entry):
        """Make ``[start, end)`` map to ``entry`` (``None`` frees it), trimming what was there."""
        if entry is None:
            return self.erase(start, end)
        if (type(start) is not int or type(end) is not int
                or not 0 <= start < end <= INDEX_LIMIT):
            self._bad_range(start, end)
        lf = self._lf
        li = bisect_right(lf, start) - 1
        if li < 0:
            if not lf:
                self._store_first(start, end, entry)
                return
            li = 0
        leaf = self._ll[li]
        if not leaf.dirty:
            _touch(leaf)
        b = leaf.b
        nb = len(b)
        p = bisect_right(b, start)
        if p & 1:
            if end > b[p]:
                return self._overwrite(leaf, li, p, start, end, entry)
            # The store lies within range p >> 1, splitting or replacing it: the taken
            # space, and so every gap and pivot, stays as it is.
            k = p >> 1
            v = leaf.v
            s = b[p - 1]
            e = b[p]
            old = v[k]
            gl = leaf.gl
            if s < start:
                if end < e:
                    b[p:p] = (start, start, end, end)
                    v[k + 1:k + 1] = (entry, old)
                    if gl is not None:
                        gl[k:k] = (0, 0)
                else:
                    b[p:p] = (start, start)
                    v.insert(k + 1, entry)
                    if gl is not None:
                        gl.insert(k, 0)
            elif end < e:
                b[p:p] = (end, end)
                v.insert(k, entry)
                if gl is not None:
                    gl.insert(k, 0)
            else:
                v[k] = entry
                return
            self._len += len(v) - (nb >> 1)
            if len(v) > self._width:
                self._fix(leaf, li, b[0])
            return
        if p < nb:
            if end > b[p]:
                return self._overwrite(leaf, li, p, start, end, entry)
        elif li + 1 < len(lf) and end > lf[li + 1]:
            return self._overwrite(leaf, li, p, start, end, entry)
        # ``[start, end)`` is free: a pure insertion (the common case for mmap).
        if 0 < p < nb:
            # The two new gaps are smaller than the one they cut, which was at most
            # ``sec`` unless it was one of the largest.
            mg = leaf.mg
            moved = mg != _STALE and b[p] - b[p - 1] == mg
            b[p:p] = (start, end)
            leaf.v.insert(p >> 1, entry)
            gl = leaf.gl
            if gl is not None:
                gl[(p >> 1) - 1:p >> 1] = (start - b[p - 1], b[p + 2] - end)
            self._len += 1
            if moved:
                g = start - b[p - 1]
                h = b[p + 2] - end
                if g < h:
                    g, h = h, g
                if leaf.mgc > 1:
                    leaf.mgc -= 1
                    moved = False
                    if g > leaf.sec:
                        leaf.sec = g
                elif g > leaf.sec:
                    # The larger piece is still above every other gap.
                    leaf.mg = g
                    if h == g:
                        leaf.mgc = 2
                    elif h > leaf.sec:
                        leaf.sec = h
                else:
                    # Which gap is largest now needs a rescan: leave it to a gap search.
                    leaf.mg = _STALE
                    self._stale.append(leaf)
            # The first start stays as it was.
            if nb >= self._bcap:
                self._fix(leaf, li, b[0])
            elif moved and self._height:
                self._propagate(leaf, b[0], b[0], b[-1], leaf.mg)
            return
        old_first = b[0]
        b[p:p] = (start, end)
        leaf.v.insert(p >> 1, entry)
        if p:
            g = start - b[p - 1]
            if leaf.gl is not None:
                leaf.gl.append(g)
        else:
            g = b[2] - end
            lf[li] = start
            if leaf.gl is not None:
                leaf.gl.insert(0, g)
        if g:
            _leaf_add_gap(leaf, g)
        self._len += 1
        if nb >= self._bcap:
            self._fix(leaf, li, old_first)
        elif self._height:
            self._propagate(leaf, old_first, b[0], b[-1], leaf.mg)

    def replace(self, start, end, bounds, entries, check=True):
        """Make ``[start, end)`` hold exactly the ranges ``bounds`` (interleaved ``[s0,
        e0, s1, e1, ...]``: sorted, disjoint, non-empty, inside ``[start, end)``), mapping
        to ``entries``: what was there is trimmed at the edges and dropped inside.  The
        same as ``erase(start, end)`` then a ``store`` of each range, in one leaf change
        when the range lies in one leaf (an unmap with its edge splits, a mapping over
        mapped space with the split VMAs either side).  ``check=False`` skips checking
        the arguments: only for ranges made from VMAs, whose bounds are valid."""
        if check:
            if (type(start) is not int or type(end) is not int
                    or not 0 <= start < end <= INDEX_LIMIT):
                self._bad_range(start, end)
            if len(bounds) != 2 * len(entries) or None in entries:
                raise ValueError("bounds must be two per entry, and entries not None")
            last = start
            odd = False
            for x in bounds:
                if type(x) is not int or x < last or (odd and x == last):
                    raise ValueError("bounds must be ints, sorted, non-empty and disjoint "
                                     "ranges inside [start, end)")
                last = x
                odd = not odd
            if last > end:
                raise ValueError("bounds must lie inside [start, end)")
        lf = self._lf
        li = bisect_right(lf, start) - 1
        if li < 0:
            li = 0
        if lf:
            leaf = self._ll[li]
            b = leaf.b
            nb = len(b)
            p = bisect_right(b, start)
            m = (bisect_left(b, end, p) + 1) >> 1   # ranges p >> 1 .. m-1 start below end
        if not lf or (2 * m == nb and li + 1 < len(lf) and lf[li + 1] < end):
            # An empty tree, or a range that runs on into later leaves.
            self.erase(start, end)
            for i, entry in enumerate(entries):
                self.store(bounds[2 * i], bounds[2 * i + 1], entry)
            return
        if not leaf.dirty:
            _touch(leaf)
        k = p >> 1
        v = leaf.v
        new_b = []
        new_v = []
        if k < m and b[2 * k] < start:
            new_b += (b[2 * k], start)
            new_v.append(v[k])
        new_b += bounds
        new_v += entries
        if k < m and b[2 * m - 1] > end:
            new_b += (end, b[2 * m - 1])
            new_v.append(v[m - 1])
        old_first = b[0]
        old_gap = leaf.mg
        _replace(leaf, k, m, new_b, new_v)
        self._len += len(new_v) - (m - k)
        n = len(v)
        if n > self._width or (n < self._min and (self._height or not n)):
            self._fix(leaf, li, old_first)
        elif self._height and (k == 0 or 2 * m == nb or old_gap != leaf.mg):
            self._lf[li] = b[0]
            self._propagate(leaf, old_first, b[0], b[-1], leaf.mg)
        else:
            self._lf[li] = b[0]

    def _store_first(self, start, end, entry):
        """Store into an empty tree."""
        root = self._root
        root.b[:] = (start, end)
        root.v[:] = (entry,)
        root.gl = None
        self._lf.append(start)
        self._ll.append(root)
        self._len = 1

    def _overwrite(self, leaf, li, p, start, end, entry):
        """Store over a range that is at least partly taken (the general path)."""
        b = leaf.b
        nb = len(b)
        k = p >> 1                             # first range ending above ``start``
        m = (bisect_left(b, end, p) + 1) >> 1  # ranges k..m-1 start below ``end``
        if 2 * m == nb and li + 1 < len(self._lf) and self._lf[li + 1] < end:
            # The range runs on into later leaves: free it leaf by leaf, then insert.
            self._clear_span(start, end)
            if entry is not None:
                self.store(start, end, entry)
            return
        v = leaf.v
        first_start = b[2 * k]
        last_end = b[2 * m - 1]
        new_b = []
        new_v = []
        if first_start < start:
            new_b += (first_start, start)
            new_v.append(v[k])
        if entry is not None:
            new_b += (start, end)
            new_v.append(entry)
        if last_end > end:
            new_b += (end, last_end)
            new_v.append(v[m - 1])
        old_first = b[0]
        old_gap = leaf.mg
        _replace(leaf, k, m, new_b, new_v)
        self._len += len(new_v) - (m - k)
        n = len(v)
        if n > self._width or (n < self._min and (self._height or not n)):
            self._fix(leaf, li, old_first)
        elif self._height and (k == 0 or 2 * m == nb or old_gap != leaf.mg):
            self._lf[li] = b[0]
            self._propagate(leaf, old_first, b[0], b[-1], leaf.mg)
        else:
            self._lf[li] = b[0]

    def _bad_range(self, start, end):
        for name, value in (("start", start), ("end", end)):
            if type(value) is not int:
                _bad_index(name, value, INDEX_LIMIT)
        if start < 0 or end > INDEX_LIMIT:
            raise ValueError(f"range [{start:#x}, {end:#x}) is outside [0, {INDEX_LIMIT:#x})")
        raise ValueError(f"empty range: start {start:#x} >= end {end:#x}")

    def _clear_span(self, start, end):
        """Free ``[start, end)`` one leaf at a time (a store that spans leaves)."""
        lf = self._lf
        while lf:
            li, k = self._locate(start)
            leaf = self._ll[li]
            b = leaf.b
            if 2 * k == len(b):
                li += 1
                if li == len(lf) or lf[li] >= end:
                    return
                leaf = self._ll[li]
                b = leaf.b
                k = 0
            if b[2 * k] >= end:
                return
            m = (bisect_left(b, end, 2 * k) + 1) >> 1
            _touch(leaf)
            v = leaf.v
            new_b = []
            new_v = []
            if b[2 * k] < start:
                new_b += (b[2 * k], start)
                new_v.append(v[k])
            if b[2 * m - 1] > end:
                new_b += (end, b[2 * m - 1])
                new_v.append(v[m - 1])
            old_first = b[0]
            _replace(leaf, k, m, new_b, new_v)
            self._len += len(new_v) - (m - k)
            self._fix(leaf, li, old_first)

    def _propagate(self, node, old_first, first, last, gap):
        """``node``'s summary became (first, last, gap): carry it up while anything changes."""
        parent = node.parent
        while parent is not None:
            firsts = parent.firsts
            lasts = parent.lasts
            gaps = parent.gaps
            i = bisect_left(firsts, old_first)
            old_first = firsts[0]
            old_last = lasts[-1]
            old_gap = gaps[-1] if gaps else 0
            cg = parent.cg
            g = cg[i]
            if g != gap:
                if g:
                    del gaps[bisect_left(gaps, g)]
                if gap:
                    insort(gaps, gap)
                cg[i] = gap
            f = firsts[i]
            if f != first:
                if i:
                    prev_last = lasts[i - 1]
                    g = f - prev_last
                    if g:
                        del gaps[bisect_left(gaps, g)]
                    g = first - prev_last
                    if g:
                        insort(gaps, g)
                firsts[i] = first
            f = lasts[i]
            if f != last:
                if i + 1 < len(firsts):
                    next_first = firsts[i + 1]
                    g = next_first - f
                    if g:
                        del gaps[bisect_left(gaps, g)]
                    g = next_first - last
                    if g:
                        insort(gaps, g)
                lasts[i] = last
            first = firsts[0]
            last = lasts[-1]
            gap = gaps[-1] if gaps else 0
            if first == old_first and last == old_last and gap == old_gap:
                return
            parent = parent.parent

    def _settle(self):
        """Rescan every stale leaf and carry its largest gap up (before a gap search)."""
        for leaf in self._stale:
            # A leaf may be listed twice, or made exact again by a rebalance.
            if leaf.mg == _STALE:
                b = leaf.b
                leaf.mg, leaf.mgc, leaf.sec = _leaf_max(b)
                if leaf.parent is not None:
                    self._propagate(leaf, b[0], b[0], b[-1], leaf.mg)
        del self._stale[:]

    def _fix(self, leaf, li, old_first):
        """``leaf`` (flat index ``li``, pivot ``old_first`` in its parent) changed size or
        content: restore its fill, the flat index and every summary above it."""
        if len(self._stale) > 2 * len(self._ll) + 64:
            # Long without a gap search: drop the entries that are no longer stale and
            # the repeats, so the list stays within the number of leaves.
            seen = {}
            for stale in self._stale:
                if stale.mg == _STALE:
                    seen[id(stale)] = stale
            self._stale[:] = seen.values()
        ll = self._ll
        lf = self._lf
        n = len(leaf.v)
        parent = leaf.parent
        if parent is None:
            if n > self._width:
                right = _split(leaf)
                if right.mg:
                    self._stale += (leaf, right)
                ll.insert(li + 1, right)
                lf.insert(li + 1, right.b[0])
                lf[li] = leaf.b[0]
                self._root = _Node([leaf.b[0], right.b[0]], [leaf.b[-1], right.b[-1]], [leaf, right])
                self._height = 1
            elif n:
                lf[li] = leaf.b[0]
            else:
                del ll[:], lf[:]
            return
        if n > self._width:
            # Both halves go stale (unless the leaf has no gap): mark the leaf so and
            # bring the parent's record of it up to date, then hand the upper half to a
            # new sibling.  The parent's largest gap stays _STALE (or 0), so nothing
            # above the parent changes unless it overflows in turn.
            b = leaf.b
            if leaf.mg:
                leaf.mg = _STALE
                leaf.mgc = 1
            self._propagate(leaf, old_first, b[0], b[-1], leaf.mg)
            i = bisect_left(parent.firsts, b[0])
            right = _split(leaf)
            if right.mg:
                self._stale += (leaf, right)
            ll.insert(li + 1, right)
            lf.insert(li + 1, right.b[0])
            lf[li] = b[0]
            _adopt_half(parent, i, leaf, right)
            if len(parent.children) > self._width:
                self._fix_node(parent, parent.firsts[0], refresh=False)
            return
        i = bisect_left(parent.firsts, old_first)
        parent_first = parent.firsts[0]
        if n < self._min:
            j, merged = _rebalance(parent, i, self._width)
            # The pair is j, j+1 under ``parent``, and adjacent in the flat index too.
            lj = li if j == i else li - 1
            if merged:
                del ll[lj + 1], lf[lj + 1]
            else:
                lf[lj + 1] = ll[lj + 1].b[0]
            lf[lj] = ll[lj].b[0]
        else:
            lf[li] = leaf.b[0]
            self._propagate(leaf, old_first, leaf.b[0], leaf.b[-1], leaf.mg)
            return
        self._fix_node(parent, parent_first)

    def _fix_node(self, node, old_first, refresh=True):
        """Internal ``node``'s children changed: rebuild its summary (unless it is already
        exact), fix its fill, go up."""
        if refresh:
            _refresh(node)
        while True:
            n = len(node.children)
            parent = node.parent
            if parent is None:
                if n > self._width:
                    right = _split(node)
                    self._root = _Node([node.firsts[0], right.firsts[0]],
                                       [node.lasts[-1], right.lasts[-1]], [node, right])
                    self._height += 1
                elif n == 1:
                    self._root = node.children[0]
                    self._root.parent = None
                    self._height -= 1
                return
            if n > self._width:
                self._propagate(node, old_first, node.firsts[0], node.lasts[-1], _gap_of(node))
                i = bisect_left(parent.firsts, node.firsts[0])
                _adopt_half(parent, i, node, _split(node))
                node = parent
                old_first = parent.firsts[0]
                continue
            i = bisect_left(parent.firsts, old_first)
            parent_first = parent.firsts[0]
            if n < self._min:
                _rebalance(parent, i, self._width)
            else:
                self._propagate(node, old_first, node.firsts[0], node.lasts[-1], _gap_of(node))
                return
            _refresh(parent)
            node = parent
            old_first = parent_first

    # ------------------------------------------------------------------ checking

    def check(self):
        """Verify every structural invariant; raise ``AssertionError`` naming the first violation."""
        leaves = []
        if self._root.parent is not None:
            raise AssertionError("the root has a parent")
        count = self._check_node(self._root, self._height, True, leaves)
        if count != self._len:
            raise AssertionError(f"len() is {self._len} but the leaves hold {count} ranges")
        leaves = [leaf for leaf in leaves if leaf.v]
        if leaves != self._ll or any(a is not b for a, b in zip(leaves, self._ll)):
            raise AssertionError("the flat leaf index does not list the tree's leaves in order")
        if self._lf != [leaf.b[0] for leaf in leaves]:
            raise AssertionError("the flat index's first starts are stale")
        last_end = 0
        for leaf in leaves:
            if leaf.b[0] < last_end:
                raise AssertionError(f"range at {leaf.b[0]:#x} overlaps the previous leaf")
            last_end = leaf.b[-1]

    def _check_node(self, node, level, is_root, leaves):
        width = self._width
        if level == 0:
            if type(node) is not _Leaf:
                raise AssertionError("a node at leaf depth is not a leaf")
            b, v = node.b, node.v
            n = len(v)
            if len(b) != 2 * n:
                raise AssertionError(f"a leaf has {len(b)} bounds for {n} entries")
            if n > width or (not is_root and n < self._min):
                raise AssertionError(f"leaf holds {n} ranges, outside [{self._min}, {width}]")
            for k in range(n):
                s, e = b[2 * k], b[2 * k + 1]
                if type(s) is not int or type(e) is not int or not 0 <= s < e <= INDEX_LIMIT:
                    raise AssertionError(f"bad range [{s!r}, {e!r})")
                if v[k] is None:
                    raise AssertionError(f"range [{s:#x}, {e:#x}) stores None")
                if k and b[2 * k - 1] > s:
                    raise AssertionError(f"range [{s:#x}, {e:#x}) is out of order or overlaps")
            if node.gl is not None and node.gl != list(map(sub, b[2::2], b[1:-1:2])):
                raise AssertionError(f"leaf gap list {node.gl} is stale")
            top, count, second = _leaf_max(b)
            if (node.mg, node.mgc) == (_STALE, 1):
                # Not known until the next gap search, which has to find it listed.
                if not any(x is node for x in self._stale):
                    raise AssertionError("a leaf's largest gap is stale but not listed")
                top, count, second = _STALE, 1, 0
            if (node.mg, node.mgc) != (top, count):
                raise AssertionError(f"leaf largest gap and count {(node.mg, node.mgc)} "
                                     f"should be {(top, count)}")
            if node.sec < second:
                raise AssertionError(f"leaf bound {node.sec} on smaller gaps is under the "
                                     f"gap {second}")
            if not node.dirty and self._key is not None:
                keys = [self._key(x) for x in v]
                if (node.sor, node.sand) != (reduce(or_, keys, 0), reduce(and_, keys, -1)):
                    raise AssertionError("a clean leaf's key summary is stale")
            leaves.append(node)
            return n
        if type(node) is not _Node:
            raise AssertionError("a node above leaf depth is not an internal node")
        children = node.children
        n = len(children)
        if not (len(node.firsts) == len(node.lasts) == len(node.cg) == n):
            raise AssertionError("an internal node's arrays differ in length")
        if n > width or n < (2 if is_root else self._min):
            raise AssertionError(f"internal node has {n} children, outside its bounds")
        count = 0
        for i, child in enumerate(children):
            if child.parent is not node:
                raise AssertionError(f"child {i} does not point back to its parent")
            count += self._check_node(child, level - 1, False, leaves)
            first, last = _span(child)
            if node.firsts[i] != first or node.lasts[i] != last:
                raise AssertionError(
                    f"pivots of child {i} are [{node.firsts[i]:#x}, {node.lasts[i]:#x}), "
                    f"its span is [{first:#x}, {last:#x})")
            if node.cg[i] != _gap_of(child):
                raise AssertionError(
                    f"gap of child {i} is {node.cg[i]}, its largest is {_gap_of(child)}")
            if i + 1 < n and node.lasts[i] > node.firsts[i + 1]:
                raise AssertionError(f"children {i} and {i + 1} overlap")
        if node.gaps != _node_gaps(node):
            raise AssertionError(f"node gap multiset {node.gaps} should be {_node_gaps(node)}")
        if not node.dirty:
            if any(c.dirty for c in children):
                raise AssertionError("a clean node has a child whose summary is out of date")
            if (node.sor, node.sand) != (reduce(or_, [c.sor for c in children], 0),
                                         reduce(and_, [c.sand for c in children], -1)):
                raise AssertionError("a clean node's key summary is stale")
        return count


# ---------------------------------------------------------------------- gap search


def _lowest(node, low, high, size):
    """Lowest fit among the free ranges strictly inside ``node``'s span."""
    top = high - size
    if type(node) is _Leaf:
        b = node.b
        p = bisect_right(b, low)
        # The first candidate is the gap after the range at or below ``low``.
        q = p if p & 1 else p - 1 if p else 1
        last = len(b) - 3   # the last gap
        near = q + 2 * _NEAR
        while q <= last:
            if q == near:
                return _lowest_far(node, q, top, size)
            s = b[q]
            if s < low:
                s = low
            if s > top:
                return None
            if s + size <= b[q + 1]:
                return s
            q += 2
        return None
    firsts = node.firsts
    lasts = node.lasts
    cg = node.cg
    children = node.children
    i = bisect_right(firsts, low) - 1
    if i < 0:
        i = 0
    last_child = len(children) - 1
    floor = low + size
    plain = i + _NEAR   # children below this one are read one by one
    while i <= last_child:
        if i >= plain and i < last_child:
            # Past the first children nothing starts below ``low``: rule out a chunk of
            # children at C speed when none of them, and no free range between them,
            # is large enough; else read that chunk one by one.
            hi = i + _SCAN_CHUNK - 1
            if hi >= last_child:
                hi = last_child - 1
            if max(cg[i:hi + 1]) < size:
                tops = firsts[i + 1:hi + 2]
                bottoms = lasts[i:hi + 1]
                if tops == bottoms or max(map(sub, tops, bottoms)) < size:
                    i = hi + 1
                    continue
            plain = hi + 1
        if firsts[i] > top:
            return None
        if cg[i] >= size and lasts[i] > floor:
            found = _lowest(children[i], low, high, size)
            if found is not None:
                return found
        if i < last_child:
            s = lasts[i]
            if s < low:
                s = low
            if s > top:
                return None
            if s + size <= firsts[i + 1]:
                return s
        i += 1
    return None


def _gap_list(leaf):
    """``leaf``'s inner gaps in order, built once and kept up to date by the stores."""
    gl = leaf.gl
    if gl is None:
        b = leaf.b
        gl = leaf.gl = list(map(sub, islice(b, 2, None, 2), islice(b, 1, len(b) - 1, 2)))
    return gl


def _lowest_far(leaf, q, top, size):
    """Lowest fit in ``leaf`` from gap ``q`` (of its bounds) up, where no gap starts
    below the window: rule its gap list out a chunk at a time at C speed."""
    b = leaf.b
    gl = _gap_list(leaf)
    r = bisect_right(b, top)
    stop = r - 2 if r & 1 else r - 1   # the last gap starting at ``top`` or below
    if stop > len(b) - 3:
        stop = len(b) - 3
    j = q >> 1          # gap q of the bounds is gl[q >> 1]
    last = stop >> 1
    while j <= last:
        hi = j + _GAP_CHUNK
        if hi > last + 1:
            hi = last + 1
        if max(gl[j:hi]) >= size:
            # The fit is in this chunk: narrow it down a few gaps at a time.
            while True:
                k = j + _GAP_FINE
                if k > hi:
                    k = hi
                if max(gl[j:k]) >= size:
                    break
                j = k
            while gl[j] < size:
                j += 1
            return b[2 * j + 1]
        j = hi
    return None


def _highest(node, low, high, size):
    """Highest fit among the free ranges strictly inside ``node``'s span."""
    floor = low + size
    if type(node) is _Leaf:
        b = node.b
        c = bisect_left(b, high)  # bounds below ``high``; gap q is [b[q], b[q+1]) for odd q
        q = c - 2 if c & 1 else c - 1
        if q > len(b) - 3:
            q = len(b) - 3
        near = q - 2 * _NEAR
        while q > 0:
            if q == near:
                return _highest_far(node, q, floor, size)
            e = b[q + 1]
            if e > high:
                e = high
            if e < floor:
                return None
            if e - size >= b[q]:
                return e - size
            q -= 2
        return None
    firsts = node.firsts
    lasts = node.lasts
    cg = node.cg
    children = node.children
    last_child = len(children) - 1
    i = bisect_left(firsts, high) - 1
    plain = i - _NEAR   # children above this one are read one by one
    while i >= 0:
        if i <= plain:
            # Below the first children nothing ends above ``high``: rule out a chunk of
            # children at C speed when none of them, and no free range between them,
            # is large enough; else read that chunk one by one.
            lo = i - _SCAN_CHUNK + 1
            if lo < 0:
                lo = 0
            if max(cg[lo:i + 1]) < size:
                tops = firsts[lo + 1:i + 2]
                bottoms = lasts[lo:i + 1]
                if tops == bottoms or max(map(sub, tops, bottoms)) < size:
                    i = lo - 1
                    continue
            plain = lo - 1
        if i < last_child:
            e = firsts[i + 1]
            if e > high:
                e = high
            if e < floor:
                return None
            if e - size >= lasts[i]:
                return e - size
        if lasts[i] < floor:
            return None
        if cg[i] >= size and firsts[i] < high - size:
            found = _highest(children[i], low, high, size)
            if found is not None:
                return found
        i -= 1
    return None


def _highest_far(leaf, q, floor, size):
    """Highest fit in ``leaf`` from gap ``q`` (of its bounds) down, where no gap ends
    above the window: rule its gap list out a chunk at a time at C speed."""
    b = leaf.b
    gl = _gap_list(leaf)
    r = bisect_left(b, floor)
    stop = r if r & 1 else r - 1   # the lowest gap ending at ``floor`` or above
    if stop < 1:
        stop = 1
    j = q >> 1          # gap q of the bounds is gl[q >> 1]
    first = stop >> 1
    while j >= first:
        lo = j - _GAP_CHUNK + 1
        if lo < first:
            lo = first
        if max(gl[lo:j + 1]) >= size:
            # The fit is in this chunk: narrow it down a few gaps at a time.
            while True:
                k = j - _GAP_FINE + 1
                if k < lo:
                    k = lo
                if max(gl[k:j + 1]) >= size:
                    break
                j = k - 1
            while gl[j] < size:
                j -= 1
            return b[2 * j + 2] - size
        j = lo - 1
    return None


# ---------------------------------------------------------------------- summaries


def _summarize(node, key):
    """Recompute ``node``'s OR/AND summary (from its children's, which must be clean)."""
    if type(node) is _Leaf:
        # Entries share few distinct keys: a set of them is built at C speed, and
        # the reductions then read only those.
        keys = set(map(key, node.v))
        node.sor = reduce(or_, keys, 0)
        node.sand = reduce(and_, keys, -1)
    else:
        children = node.children
        node.sor = reduce(or_, [c.sor for c in children], 0)
        node.sand = reduce(and_, [c.sand for c in children], -1)
    node.dirty = False


def _sweep(tree, node, key, skip):
    # Whatever is handed out, or entered, is dirty until the walk has finished with it,
    # so a walk abandoned half way never leaves a stale summary that looks valid.
    if type(node) is _Leaf:
        # A dirty leaf has to be read anyway: hand it out and summarize it afterwards.
        clean = not node.dirty
        if clean and skip(node.sor, node.sand):
            return
        node.dirty = True
        tree._mapped = None
        yield node.v
        mapped = tree._mapped
        if clean and mapped is not None:
            # The caller mapped every key the same way (keys_mapped): so are OR and AND.
            keep, add = mapped
            node.sor = node.sor & keep | add
            node.sand = node.sand & keep | add
            node.dirty = False
        else:
            _summarize(node, key)
        return
    if not node.dirty and skip(node.sor, node.sand):
        return
    node.dirty = True
    for child in list(node.children):
        yield from _sweep(tree, child, key, skip)
    _summarize(node, key)


# ---------------------------------------------------------------------- structure


def _touch(node):
    """Mark ``node`` and its ancestors' summaries out of date."""
    while node is not None and not node.dirty:
        node.dirty = True
        node = node.parent


def _chunk_sizes(n, width, low):
    """Sizes for cutting ``n`` items into nodes three quarters full, none under ``low``
    (a lone root may be smaller)."""
    fill = max(low, width * 3 // 4)
    count = max(1, -(-n // fill))
    base, extra = divmod(n, count)
    return [base + 1] * extra + [base] * (count - extra)



def _replace(leaf, k, m, new_b, new_v):
    """Replace ranges ``k..m-1`` of ``leaf`` with the given ones, keeping its largest gap exact."""
    b = leaf.b
    top = leaf.mg
    if top == _STALE:
        # Its gaps wait for the rescan (_settle), which recomputes all three figures:
        # nothing to keep up.  (A stream of MAP_FIXED calls, no gap search between
        # them, leaves nearly every leaf so.)
        b[2 * k:2 * m] = new_b
        leaf.v[k:m] = new_v
        leaf.gl = None
        return
    count = leaf.mgc
    sec = leaf.sec
    n = len(b) >> 1
    # Only the gaps from range k-1 to the range after the replaced ones change.
    if top:
        for q in range(2 * k - 1 if k else 1, min(2 * m, 2 * n - 1), 2):
            if b[q + 1] - b[q] == top:
                count -= 1
    b[2 * k:2 * m] = new_b
    leaf.v[k:m] = new_v
    leaf.gl = None
    n = len(b) >> 1
    for q in range(2 * k - 1 if k else 1, min(2 * k + len(new_b), 2 * n - 1), 2):
        g = b[q + 1] - b[q]
        if g > top:
            if top > sec:
                sec = top
            top = g
            count = 1
        elif g == top:
            if g:
                count += 1
        elif g > sec:
            sec = g
    if top and not count:
        top, count, sec = _leaf_max(b)
    leaf.mg = top
    leaf.mgc = count
    leaf.sec = sec


def _split(node):
    """Move the upper half of ``node`` into a new right sibling (same parent) and return it."""
    if type(node) is _Leaf:
        # Which half holds the largest gap takes a rescan: both halves go stale, for
        # the caller to list in the tree's ``_stale``, unless the leaf has no gap.
        half = len(node.v) // 2
        b = node.b
        right = _Leaf(b[2 * half:], node.v[half:], node.parent, node.mg != 0)
        del b[2 * half:], node.v[half:]
        node.gl = None
        if node.mg:
            node.mg = _STALE
            node.mgc = 1
        return right
    half = len(node.children) // 2
    right = _Node(node.firsts[half:], node.lasts[half:], node.children[half:], node.parent)
    del node.firsts[half:], node.lasts[half:], node.children[half:], node.cg[half:]
    node.gaps = _node_gaps(node)
    return right


def _adopt_half(parent, i, left, right):
    """``right`` was just split off ``left``, child ``i`` of ``parent``: record it in
    ``parent`` and move the parent's gap multiset to match."""
    gaps = parent.gaps
    cg = parent.cg
    g = cg[i]
    if g:
        del gaps[bisect_left(gaps, g)]
    first, last = _span(right)
    left_last = _span(left)[1]
    for g in (_gap_of(left), _gap_of(right), first - left_last):
        if g:
            insort(gaps, g)
    cg[i] = _gap_of(left)
    cg.insert(i + 1, _gap_of(right))
    parent.lasts[i] = left_last
    parent.lasts.insert(i + 1, last)
    parent.firsts.insert(i + 1, first)
    parent.children.insert(i + 1, right)
    right.parent = parent


def _refresh(node):
    """Recompute an internal node's pivots, child gaps and multiset from its children."""
    children = node.children
    if type(children[0]) is _Leaf:
        node.firsts[:] = [c.b[0] for c in children]
        node.lasts[:] = [c.b[-1] for c in children]
    else:
        node.firsts[:] = [c.firsts[0] for c in children]
        node.lasts[:] = [c.lasts[-1] for c in children]
    node.cg[:] = list(map(_gap_of, children))
    node.gaps = _node_gaps(node)


def _rebalance(parent, i, width):
    """Child ``i`` of ``parent`` is underfull: merge it with a sibling, or even the two out.

    Returns the index of the left one of the pair, and whether they were merged into it.
    Only ``parent.children`` is updated; the caller refreshes the parent's summary.
    """
    children = parent.children
    j = i if i + 1 < len(children) else i - 1
    left = children[j]
    right = children[j + 1]
    left.dirty = right.dirty = True   # their contents change (the parent already is)
    if type(left) is _Leaf:
        left.gl = right.gl = None
    most = 3 * width // 4
    if type(left) is _Leaf:
        total = len(left.v) + len(right.v)
        if total <= most:
            left.b += right.b
            left.v += right.v
        else:
            keep = total // 2
            both = left.b + right.b
            left.b[:] = both[:2 * keep]
            right.b[:] = both[2 * keep:]
            both = left.v + right.v
            left.v[:] = both[:keep]
            right.v[:] = both[keep:]
            right.mg, right.mgc, right.sec = _leaf_max(right.b)
        left.mg, left.mgc, left.sec = _leaf_max(left.b)
    else:
        total = len(left.children) + len(right.children)
        if total <= most:
            for child in right.children:
                child.parent = left
            left.firsts += right.firsts
            left.lasts += right.lasts
            left.children += right.children
            left.cg += right.cg
        else:
            keep = total // 2
            for name in ("firsts", "lasts", "children", "cg"):
                a = getattr(left, name)
                c = getattr(right, name)
                both = a + c
                a[:] = both[:keep]
                c[:] = both[keep:]
            for child in right.children:
                child.parent = right
            for child in left.children:
                child.parent = left
            right.gaps = _node_gaps(right)
        left.gaps = _node_gaps(left)
    merged = total <= most
    if merged:
        del children[j + 1]
        if type(right) is _Leaf:
            right.mg = 0   # out of the tree: if listed as stale, it is passed over
    return j, merged

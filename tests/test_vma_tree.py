"""Tests of mmsim.vma_tree.VmaTree: a stateful model test, the kernel's maple-tree
free-area examples, and edge cases."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from mmsim.vma_tree import INDEX_LIMIT, VmaTree


class Model:
    """A deliberately simple reference: a sorted list of (start, end, entry)."""

    def __init__(self):
        self.ranges = []

    def store(self, start, end, entry):
        out = []
        for s, e, x in self.ranges:
            if e <= start or s >= end:
                out.append((s, e, x))
                continue
            if s < start:
                out.append((s, start, x))
            if e > end:
                out.append((end, e, x))
        if entry is not None:
            out.append((start, end, entry))
        out.sort(key=lambda r: r[0])
        self.ranges = out

    def load(self, index):
        for s, e, x in self.ranges:
            if s <= index < e:
                return x
        return None

    def find(self, index, limit):
        for s, e, x in self.ranges:
            if e > index:
                return (s, e, x) if s < limit else None
        return None

    def find_prev(self, index):
        found = None
        for r in self.ranges:
            if r[0] < index:
                found = r
        return found

    def items(self, start, end):
        if start >= end:
            return []  # an empty window overlaps nothing
        return [r for r in self.ranges if r[1] > start and r[0] < end]

    def free(self):
        pos = 0
        for s, e, _ in self.ranges:
            if s > pos:
                yield pos, s
            pos = e
        if pos < INDEX_LIMIT:
            yield pos, INDEX_LIMIT

    def lowest(self, low, high, size):
        for a, b in self.free():
            s = max(a, low)
            if s + size <= min(b, high):
                return s
        return None

    def highest(self, low, high, size):
        best = None
        for a, b in self.free():
            e = min(b, high)
            if e - size >= max(a, low):
                best = e - size
        return best


# Indices cluster around a few bases so that ranges collide, nest and abut, with the
# ends of the index space in play.
BASES = [0, 1 << 20, 0x7FFF_F000_0000, INDEX_LIMIT - (1 << 16)]
offsets = st.integers(min_value=0, max_value=1 << 16)
points = st.builds(lambda b, o: min(b + o, INDEX_LIMIT), st.sampled_from(BASES), offsets)


@st.composite
def ranges(draw, max_len=1 << 14):
    start = draw(points)
    if start >= INDEX_LIMIT:
        start = INDEX_LIMIT - 1
    length = draw(st.integers(min_value=1, max_value=max_len))
    return start, min(start + length, INDEX_LIMIT)


class Entry:
    """A distinct entry object (the tree must keep identities)."""

    __slots__ = ("tag",)

    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f"E{self.tag}"


class TreeMachine(RuleBasedStateMachine):
    """Drive VmaTree and the model side by side; ``check()`` after every step."""

    @initialize(width=st.sampled_from([4, 5, 6, 8, 16, 64]))
    def setup(self, width):
        self.tree = VmaTree(width)
        self.model = Model()
        self.tags = 0

    @rule(r=ranges())
    def store(self, r):
        self.tags += 1
        entry = Entry(self.tags)
        self.tree.store(r[0], r[1], entry)
        self.model.store(r[0], r[1], entry)

    @rule(r=ranges(max_len=1 << 18))
    def store_wide(self, r):
        self.tags += 1
        entry = Entry(self.tags)
        self.tree.store(r[0], r[1], entry)
        self.model.store(r[0], r[1], entry)

    @rule(r=ranges())
    def erase(self, r):
        self.tree.erase(r[0], r[1])
        self.model.store(r[0], r[1], None)

    @precondition(lambda self: self.model.ranges)
    @rule(data=st.data())
    def erase_exact(self, data):
        s, e, _ = data.draw(st.sampled_from(self.model.ranges))
        self.tree.erase(s, e)
        self.model.store(s, e, None)

    @precondition(lambda self: self.model.ranges)
    @rule(data=st.data())
    def split_inside(self, data):
        s, e, _ = data.draw(st.sampled_from(self.model.ranges))
        a = data.draw(st.integers(min_value=s, max_value=e - 1))
        b = data.draw(st.integers(min_value=a + 1, max_value=e))
        self.tags += 1
        entry = Entry(self.tags)
        self.tree.store(a, b, entry)
        self.model.store(a, b, entry)

    @precondition(lambda self: self.model.ranges)
    @rule(data=st.data())
    def insert_adjacent(self, data):
        s, e, _ = data.draw(st.sampled_from(self.model.ranges))
        length = data.draw(st.integers(min_value=1, max_value=1 << 12))
        self.tags += 1
        entry = Entry(self.tags)
        if data.draw(st.booleans()) or s - length < 0:
            a, b = e, min(e + length, INDEX_LIMIT)
        else:
            a, b = s - length, s
        if a < b:
            self.tree.store(a, b, entry)
            self.model.store(a, b, entry)

    @rule(index=points)
    def load(self, index):
        if index < INDEX_LIMIT:
            assert self.tree.load(index) is self.model.load(index)

    @rule(index=points, limit=st.one_of(st.none(), points))
    def find(self, index, limit):
        want = self.model.find(index, INDEX_LIMIT if limit is None else limit)
        assert self.tree.find(index, limit) == want

    @rule(index=points)
    def find_prev(self, index):
        assert self.tree.find_prev(index) == self.model.find_prev(index)

    @rule(a=points, b=points)
    def walk(self, a, b):
        lo, hi = min(a, b), max(a, b)
        want = self.model.items(lo, hi)
        assert list(self.tree.items(lo, hi)) == want
        assert self.tree.values(lo, hi) == [x for _, _, x in want]

    @rule(a=points, b=points, size=st.integers(min_value=1, max_value=1 << 17))
    def gap_search(self, a, b, size):
        lo, hi = min(a, b), max(a, b)
        assert self.tree.empty_area(lo, hi, size) == self.model.lowest(lo, hi, size)
        assert self.tree.empty_area_rev(lo, hi, size) == self.model.highest(lo, hi, size)

    @invariant()
    def consistent(self):
        self.tree.check()
        assert len(self.tree) == len(self.model.ranges)
        assert list(self.tree.items()) == self.model.ranges
        assert self.tree.values() == [x for _, _, x in self.model.ranges]


TreeMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                         deadline=None)
test_tree_against_model = TreeMachine.TestCase


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 40), st.booleans()),
                min_size=50, max_size=600),
       st.sampled_from([4, 7, 16]))
def test_many_small_stores_keep_structure(ops, width):
    """Long runs of stores and erases on a small width drive many splits and merges."""
    tree = VmaTree(width)
    model = Model()
    for i, (start, length, keep) in enumerate(ops):
        entry = Entry(i) if keep else None
        tree.store(start, start + length, entry)
        model.store(start, start + length, entry)
    tree.check()
    assert list(tree.items()) == model.ranges
    for start, end, _ in model.ranges[::7]:
        tree.erase(start, end)
        model.store(start, end, None)
    tree.check()
    assert list(tree.items()) == model.ranges


# -------------------------------------------------------------------- kernel examples


def window_tree():
    """lib/test_maple_tree.c check_empty_area_window(): entries over [i*10, i*10+9] for
    i = 1..20, then [160, 169] erased.  Free: [0,9], [160,169], [210, ULONG_MAX]."""
    tree = VmaTree()
    for i in range(1, 21):
        tree.store(i * 10, i * 10 + 10, i)
    tree.erase(160, 170)
    return tree


# (call, min, max, size, expected index) with the kernel's inclusive [min, max]
# window; None stands for -EBUSY.  Our half-open window is [min, max + 1).
EMPTY_AREA_WINDOW = [
    ("rev", 5, 90, 10, None),
    ("rev", 6, 90, 5, None),
    ("rev", 5, 90, 5, 5),
    ("rev", 5, 217, 9, 161),
    ("rev", 100, 218, 3, 216),
    ("rev", 100, 218, 16, None),
    ("rev", 167, 200, 4, None),
    ("rev", 100, 162, 4, None),
    ("fwd", 0, 100, 9, 0),
    ("fwd", 0, 100, 4, 0),
    ("fwd", 0, 100, 11, None),
    ("fwd", 5, 100, 6, None),
    # The kernel returns -EINVAL when the window is smaller than the size; our contract
    # reports that as nothing fitting (None).
    ("fwd", 0, 8, 10, None),
    ("fwd", 100, 163, 6, None),
]


@pytest.mark.parametrize("call, lo, hi, size, want", EMPTY_AREA_WINDOW)
def test_check_empty_area_window(call, lo, hi, size, want):
    tree = window_tree()
    tree.check()
    search = tree.empty_area_rev if call == "rev" else tree.empty_area
    assert search(lo, hi + 1, size) == want


def test_check_empty_area_window_layout():
    tree = window_tree()
    free = [(0, 10), (160, 170), (210, INDEX_LIMIT)]
    model = Model()
    model.ranges = list(tree.items())
    assert list(model.free()) == free


def test_check_empty_area_fill():
    """lib/test_maple_tree.c check_empty_area_fill(), first part: allocate the lowest fit
    for sizes 2^12 .. 2^16, 5000 times each, in [0, 0x25D78000]; then nothing fits."""
    top = 0x25D78000
    tree = VmaTree()
    for shift in range(12, 17):
        size = 1 << shift
        for _ in range(5000):
            start = tree.empty_area(0, top + 1, size)
            assert start is not None
            tree.store(start, start + size, size)
    tree.check()
    assert tree.empty_area(0, top + 1, 0x1000) is None
    assert tree.empty_area(0, top + 1, 1) == top  # the one index left
    assert len(tree) == 25000


# -------------------------------------------------------------------- edge cases


def test_empty_tree():
    tree = VmaTree()
    tree.check()
    assert len(tree) == 0
    assert tree.load(0) is None
    assert tree.load(INDEX_LIMIT - 1) is None
    assert tree.find(0) is None
    assert tree.find_prev(INDEX_LIMIT) is None
    assert list(tree.items()) == []
    assert tree.values() == []
    assert tree.empty_area(0, INDEX_LIMIT, INDEX_LIMIT) == 0
    assert tree.empty_area_rev(0, INDEX_LIMIT, 1) == INDEX_LIMIT - 1
    assert tree.empty_area_rev(5, 5, 1) is None
    tree.erase(0, INDEX_LIMIT)
    tree.check()


def test_full_range_and_extremes():
    tree = VmaTree()
    tree.store(0, INDEX_LIMIT, "all")
    tree.check()
    assert tree.load(0) == "all"
    assert tree.load(INDEX_LIMIT - 1) == "all"
    assert tree.find(INDEX_LIMIT - 1) == (0, INDEX_LIMIT, "all")
    assert tree.find(INDEX_LIMIT) is None
    assert tree.find_prev(1) == (0, INDEX_LIMIT, "all")
    assert tree.find_prev(0) is None
    assert tree.empty_area(0, INDEX_LIMIT, 1) is None
    assert tree.empty_area_rev(0, INDEX_LIMIT, 1) is None
    tree.store(INDEX_LIMIT - 1, INDEX_LIMIT, "top")
    tree.store(0, 1, "zero")
    tree.check()
    assert list(tree.items()) == [(0, 1, "zero"), (1, INDEX_LIMIT - 1, "all"),
                                  (INDEX_LIMIT - 1, INDEX_LIMIT, "top")]
    tree.erase(1, INDEX_LIMIT - 1)
    assert tree.empty_area(0, INDEX_LIMIT, INDEX_LIMIT - 2) == 1
    assert tree.empty_area(0, INDEX_LIMIT, INDEX_LIMIT - 1) is None
    assert tree.empty_area_rev(0, INDEX_LIMIT, 5) == INDEX_LIMIT - 6
    tree.check()


def test_store_replaces_and_trims():
    tree = VmaTree()
    tree.store(10, 20, "a")
    tree.store(20, 30, "b")
    tree.store(15, 25, "c")
    assert list(tree.items()) == [(10, 15, "a"), (15, 25, "c"), (25, 30, "b")]
    tree.store(12, 13, "d")
    assert list(tree.items()) == [(10, 12, "a"), (12, 13, "d"), (13, 15, "a"),
                                  (15, 25, "c"), (25, 30, "b")]
    tree.erase(11, 29)
    assert list(tree.items()) == [(10, 11, "a"), (29, 30, "b")]
    tree.check()


def test_adjacent_entries_are_never_coalesced():
    tree = VmaTree()
    x = object()
    tree.store(0, 10, x)
    tree.store(10, 20, x)
    assert [(s, e) for s, e, _ in tree.items()] == [(0, 10), (10, 20)]
    assert len(tree) == 2


def test_find_and_find_prev_semantics():
    tree = VmaTree(4)
    for i in range(40):
        tree.store(i * 100, i * 100 + 50, i)
    assert tree.find(0) == (0, 50, 0)
    assert tree.find(50) == (100, 150, 1)
    assert tree.find(149) == (100, 150, 1)
    assert tree.find(150, 200) is None
    assert tree.find(150, 201) == (200, 250, 2)
    assert tree.find(3951) is None
    assert tree.find_prev(100) == (0, 50, 0)
    assert tree.find_prev(101) == (100, 150, 1)
    assert tree.find_prev(0) is None
    assert tree.find_prev(INDEX_LIMIT) == (3900, 3950, 39)


def test_values_is_a_snapshot():
    """A walk may change the tree: values() hands out a list of its own."""
    tree = VmaTree(4)
    for i in range(20):
        tree.store(i * 10, i * 10 + 5, i)
    seen = []
    for x in tree.values():
        seen.append(x)
        tree.erase(x * 10, x * 10 + 5)
    assert seen == list(range(20))
    assert len(tree) == 0
    tree.check()


BAD_RANGES = [(5, 5), (6, 5), (-1, 5), (0, INDEX_LIMIT + 1), (1.0, 5), (0, "8"),
              (None, 3), (True, 3)]


@pytest.mark.parametrize("start, end", BAD_RANGES)
def test_bad_ranges_raise_and_change_nothing(start, end):
    tree = VmaTree()
    tree.store(0, 10, "a")
    before = list(tree.items())
    with pytest.raises(ValueError):
        tree.store(start, end, "x")
    with pytest.raises(ValueError):
        tree.erase(start, end)
    assert list(tree.items()) == before
    tree.check()


@pytest.mark.parametrize("ranges", [[], [(0, INDEX_LIMIT)], [(0, 10), (20, 30)]])
@pytest.mark.parametrize("index", [-1, INDEX_LIMIT, 1.5, "3", None])
def test_bad_indices(index, ranges):
    tree = VmaTree()
    for start, end in ranges:
        tree.store(start, end, "x")
    with pytest.raises(ValueError):
        tree.load(index)
    if index != INDEX_LIMIT:
        with pytest.raises(ValueError):
            tree.find(index)
        with pytest.raises(ValueError):
            tree.find_prev(index)


@pytest.mark.parametrize("low, high, size", [(0, 10, 0), (0, 10, -1), (10, 9, 1),
                                             (-1, 10, 1), (0, INDEX_LIMIT + 1, 1),
                                             (0, 10, 1.0)])
def test_bad_gap_search_arguments(low, high, size):
    tree = VmaTree()
    with pytest.raises(ValueError):
        tree.empty_area(low, high, size)
    with pytest.raises(ValueError):
        tree.empty_area_rev(low, high, size)


def test_bad_width():
    for width in (3, 0, -1, 4.0, True):
        with pytest.raises(ValueError):
            VmaTree(width)


def test_check_detects_corruption():
    """check() is not a formality: damage each kind of invariant and see it caught."""
    def fresh():
        tree = VmaTree(4)
        for i in range(50):
            tree.store(i * 10, i * 10 + 5, i)
        return tree

    tree = fresh()
    tree._root.gaps.append(10 ** 6)
    with pytest.raises(AssertionError, match="gap"):
        tree.check()
    tree = fresh()
    tree._ll[2].mgc += 1
    with pytest.raises(AssertionError, match="largest gap"):
        tree.check()
    tree = fresh()
    tree._ll[2].mg += 1
    with pytest.raises(AssertionError, match="largest gap"):
        tree.check()
    tree = VmaTree(4)
    for start in (0, 3, 10):
        tree.store(start, start + 1, start)
    assert (tree._root.mg, tree._root.mgc, tree._root.sec) == (6, 1, 2)
    tree._root.sec = 1
    with pytest.raises(AssertionError, match="bound"):
        tree.check()
    tree = fresh()
    tree._root.firsts[1] += 1
    with pytest.raises(AssertionError, match="pivots"):
        tree.check()
    tree = fresh()
    tree._len += 1
    with pytest.raises(AssertionError, match="len"):
        tree.check()
    tree = fresh()
    leaf = tree._ll[3]
    leaf.b[1], leaf.b[2] = leaf.b[2], leaf.b[1]
    with pytest.raises(AssertionError):
        tree.check()
    tree = fresh()
    tree._lf[2] -= 1
    with pytest.raises(AssertionError, match="flat"):
        tree.check()
    tree = fresh()
    leaf = tree._ll[0]
    del leaf.b[-2:], leaf.v[-1]
    with pytest.raises(AssertionError):
        tree.check()


def test_gap_search_is_logarithmic_not_a_scan():
    """A failing search must not visit every leaf: count the leaves it reads."""
    import mmsim.vma_tree as vt

    tree = VmaTree(8)
    for i in range(20_000):
        tree.store(i * 3, i * 3 + 2, i)  # every gap is 1...
    tree.erase(30_000, 30_030)           # ...but one in the middle, [29_999, 30_030)
    reads = []
    original = vt._highest

    def counting(node, low, high, size):
        reads.append(node)
        return original(node, low, high, size)

    vt._highest = counting
    try:
        # The only fit lies below the window: the search must give up near the top.
        assert tree.empty_area_rev(30_031, 60_000, 5) is None
        assert 0 < len(reads) <= 2 * tree.height
        reads.clear()
        assert tree.empty_area_rev(0, 60_000, 5) == 30_025
        assert 0 < len(reads) <= 2 * tree.height
        reads.clear()
        assert tree.empty_area_rev(0, 59_998, 1) == 59_996
    finally:
        vt._highest = original
    assert len(reads) <= 2 * tree.height


@pytest.mark.parametrize("width, n", [(16, 3000), (64, 3000), (256, 8000)])
def test_gap_searches_agree_with_the_model_on_wide_nodes(width, n):
    """Mostly adjacent ranges with holes, as mmap and munmap leave them: the searches
    skip runs of children and of leaf gaps a chunk at a time, and must still find
    exactly the model's fit for every window and size."""
    import random

    rnd = random.Random(width * 1000 + n)
    tree, model = VmaTree(width), Model()
    pos = 1000
    layout = []
    for i in range(n):
        length = rnd.randint(1, 8)
        layout.append((pos, pos + length))
        r = rnd.random()
        pos += length + (0 if r < 0.7 else rnd.randint(1, 3) if r < 0.95 else rnd.randint(10, 100))
    for i in rnd.sample(range(n), n):
        tree.store(*layout[i], i)
    model.ranges = [(s, e, i) for i, (s, e) in enumerate(layout)]
    for i in rnd.sample(range(n), n // 10):   # holes, as munmap leaves them
        tree.erase(*layout[i])
        model.store(*layout[i], None)
    tree.check()
    top = pos + 50
    for _ in range(150):
        low = rnd.randrange(0, top)
        high = rnd.randrange(low, top + 100)
        size = rnd.choice([1, 2, 5, 9, 20, 60, 200])
        assert tree.empty_area_rev(low, high, size) == model.highest(low, high, size)
        assert tree.empty_area(low, high, size) == model.lowest(low, high, size)
    for size in (1, 9, 60, 200, 10_000):   # from the very top: the mmap case
        assert tree.empty_area_rev(0, top, size) == model.highest(0, top, size)


def test_gap_search_skips_packed_runs_but_not_the_one_hole():
    """Adjacent ranges everywhere but for one hole, placed in turn inside a leaf and
    between two leaves: chunks of empty gaps and of full children are passed over at C
    speed, and the one fit must still be found."""
    top = 48 * 48   # 48 leaves three quarters full under one root
    tree = VmaTree.from_sorted(((i, i + 1, i) for i in range(top)), width=64)
    assert len(tree._lf) == 48 and tree.height == 2
    # Inside a leaf: free three ranges in the middle of leaf 20.
    start = tree._lf[20] + 10
    tree.erase(start, start + 3)
    assert tree.empty_area_rev(0, top, 3) == start
    assert tree.empty_area_rev(0, top, 4) is None
    assert tree.empty_area(0, top, 3) == start
    tree.store(start, start + 3, "back")
    # Between two leaves: free the first three ranges of leaf 25, so that the gap lies
    # between leaf 24's last range and leaf 25's new first one.
    start = tree._lf[25]
    tree.erase(start, start + 3)
    tree.check()
    assert tree._lf[25] == start + 3
    assert tree.empty_area_rev(0, top, 3) == start
    assert tree.empty_area_rev(0, top, 4) is None
    assert tree.empty_area_rev(0, start + 2, 2) == start
    assert tree.empty_area(0, top, 3) == start


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30)), max_size=700),
       st.sampled_from([4, 5, 8, 16, 256]))
def test_from_sorted_builds_a_valid_tree(gaps_and_lengths, width):
    """The bulk loader gives the same tree contents as stores, and a tree that keeps
    working afterwards."""
    items, pos = [], 0
    for i, (gap, length) in enumerate(gaps_and_lengths):
        pos += gap
        items.append((pos, pos + length, Entry(i)))
        pos += length
    tree = VmaTree.from_sorted(items, width)
    tree.check()
    assert list(tree.items()) == items
    model = Model()
    model.ranges = list(items)
    for start, end, _ in items[::3]:
        tree.erase(start, end)
        model.store(start, end, None)
    tree.store(pos + 5, pos + 9, "tail")
    model.store(pos + 5, pos + 9, "tail")
    tree.check()
    assert list(tree.items()) == model.ranges
    for lo, hi, size in [(0, pos + 20, 1), (0, pos + 20, 7), (3, pos + 3, 2)]:
        assert tree.empty_area(lo, hi, size) == model.lowest(lo, hi, size)
        assert tree.empty_area_rev(lo, hi, size) == model.highest(lo, hi, size)


def test_from_sorted_rejects_bad_input():
    with pytest.raises(ValueError):
        VmaTree.from_sorted([(0, 10, "a"), (5, 20, "b")])
    with pytest.raises(ValueError):
        VmaTree.from_sorted([(0, 10, None)])
    with pytest.raises(ValueError):
        VmaTree.from_sorted([(10, 10, "a")])
    assert len(VmaTree.from_sorted([])) == 0


def test_from_parts_checks_its_input():
    tree = VmaTree.from_parts([0, 5, 5, 9], ["a", "b"], 4)
    tree.check()
    assert list(tree.items()) == [(0, 5, "a"), (5, 9, "b")]
    for bounds, entries in [([0, 5, 4, 9], ["a", "b"]), ([0, 0], ["a"]), ([0, 5], [None]),
                            ([0, 5, 6], ["a"]), ([0.0, 5], ["a"]), ([-1, 5], ["a"])]:
        with pytest.raises(ValueError):
            VmaTree.from_parts(bounds, entries)


class Flagged:
    """An entry with a mutable key (like a VMA's flags)."""

    __slots__ = ("flags",)

    def __init__(self, flags):
        self.flags = flags


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["store", "erase", "walk_set", "walk_clear", "poke"]),
                          st.integers(0, 400), st.integers(1, 30), st.integers(0, 7)),
                max_size=80),
       st.sampled_from([4, 6, 16]))
def test_summarized_walk_skips_only_what_needs_nothing(ops, width):
    """Walks that set or clear a bit skip subtrees by their summaries; after each walk
    every entry has the bit as asked, and check() finds every clean summary exact."""
    from operator import attrgetter
    key = attrgetter("flags")
    tree = VmaTree(width)
    for op, start, length, bits in ops:
        if op == "store":
            tree.store(start, start + length, Flagged(bits))
        elif op == "erase":
            tree.erase(start, start + length)
        elif op == "poke" and tree.load(start) is not None:
            tree.load(start).flags ^= bits     # an in-place change, announced
            tree.touch(start)
        elif op in ("walk_set", "walk_clear"):
            bit = 1 << (bits % 3)
            if op == "walk_set":
                skip = lambda o, a: a & bit == bit
            else:
                skip = lambda o, a: not o & bit
            seen = 0
            for leaf in tree.summarized_walk(key, skip):
                for entry in leaf:
                    seen += 1
                    entry.flags = entry.flags | bit if op == "walk_set" else entry.flags & ~bit
            for _, _, entry in tree.items():
                assert bool(entry.flags & bit) == (op == "walk_set")
            assert seen <= len(tree)
        # Entries trimmed by a store are shared by two ranges; give every range its
        # own object again so that in-place changes stay local, as VMAs are.
        for s, e, entry in list(tree.items()):
            tree.store(s, e, Flagged(entry.flags))
        tree.check()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["store", "poke", "walk", "walk_stop"]),
                          st.integers(0, 400), st.integers(1, 30), st.integers(0, 7),
                          st.integers(0, 7)),
                max_size=60),
       st.sampled_from([4, 6, 16]))
def test_keys_mapped_gives_exact_summaries(ops, width):
    """A walk that maps every key of a leaf with ``k & keep | add`` and says so through
    keys_mapped leaves summaries check() finds exact, also when a walk stops half way
    through a leaf or a leaf it was handed was dirty."""
    from operator import attrgetter
    key = attrgetter("flags")
    tree = VmaTree(width)
    for op, start, length, clear, add in ops:
        if op == "store":
            tree.store(start, start + length, Flagged(start & 7))
        elif op == "poke" and tree.load(start) is not None:
            tree.load(start).flags ^= clear
            tree.touch(start)
        elif op in ("walk", "walk_stop"):
            clear &= ~add
            keep = ~clear
            sweep = tree.summarized_walk(key, lambda o, a: a & add == add and not o & clear)
            for n, leaf in enumerate(sweep):
                for entry in leaf:
                    entry.flags = entry.flags & keep | add
                if op == "walk_stop" and n == 1:
                    leaf[0].flags ^= 1      # a change of another kind: no keys_mapped
                    sweep.close()
                    break
                tree.keys_mapped(keep, add)
            for _, _, entry in tree.items():
                assert op == "walk_stop" or entry.flags & add == add and not entry.flags & clear
        if op == "store":
            # Give every range its own entry again (a store shares the one it trims);
            # only after a store, so that walks in a row find clean leaves.
            for s, e, entry in list(tree.items()):
                tree.store(s, e, Flagged(entry.flags))
        tree.check()


def test_summarized_walk_skips_clean_subtrees():
    from operator import attrgetter
    tree = VmaTree(4)
    for i in range(200):
        tree.store(i * 10, i * 10 + 5, Flagged(1))
    key = attrgetter("flags")
    assert sum(len(leaf) for leaf in tree.summarized_walk(key, lambda o, a: a & 1)) == 200
    assert list(tree.summarized_walk(key, lambda o, a: a & 1)) == []     # all clean now
    tree.store(1000, 1005, Flagged(0))                                  # one new entry
    visited = sum(len(leaf) for leaf in tree.summarized_walk(key, lambda o, a: a & 1))
    assert 0 < visited <= 4
    tree.check()


@pytest.mark.parametrize("width", [8, 64])
def test_deferred_rescans_and_gap_lists_follow_mmap_churn(width):
    """Top-down mmaps, munmaps and random-order stores: leaves whose largest gap waits
    for a rescan, and the gap lists that searched leaves keep, must leave every search
    answering as the model does and check() passing throughout."""
    import random

    rnd = random.Random(width)
    tree, model = VmaTree(width), Model()
    top = 1 << 24
    live = []
    for step in range(1500):
        r = rnd.random()
        if live and r < 0.2:
            start, end = live.pop(rnd.randrange(len(live)))
            tree.erase(start, end)
            model.store(start, end, None)
        elif r < 0.4:
            # A store anywhere, free or not, as a random-order build or MAP_FIXED does.
            start = rnd.randrange(top)
            end = start + rnd.randint(1, 16)
            tree.store(start, end, step)
            model.store(start, end, step)
        else:
            size = rnd.randint(1, 8)
            low = rnd.randrange(top // 2) if r < 0.5 else 0
            want = model.highest(low, top, size)
            assert tree.empty_area_rev(low, top, size) == want
            assert tree.empty_area(low, top, size) == model.lowest(low, top, size)
            tree.store(want, want + size, step)
            model.store(want, want + size, step)
            live.append((want, want + size))
        if step % 50 == 0:
            tree.check()
            assert list(tree.items()) == model.ranges
    tree.check()
    assert list(tree.items()) == model.ranges


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 6)), min_size=1, max_size=120),
       st.sampled_from([4, 5, 8]), st.integers(0, 420), st.integers(1, 40), st.booleans())
def test_span_is_values_with_its_neighbours(ranges, width, start, length, at_a_start):
    """span(start, end) gives values(start, end), the entry just before the first of
    them and just after the last (or either side of ``start`` when none overlaps), on
    trees of several leaves."""
    tree = VmaTree(width)
    model = {}
    for s, n in ranges:
        tree.store(s, s + n, (s, s + n))
        for k in [k for k, (a, b) in model.items() if a < s + n and s < b]:
            a, b = model.pop(k)
            if a < s:
                model[a] = (a, s)
            if b > s + n:
                model[s + n] = (s + n, b)
        model[s] = (s, s + n)
    spans = sorted(model.values())
    if at_a_start:   # start where a range starts: often a leaf's first
        start = spans[start % len(spans)][0]
    end = start + length
    over = [r for r in spans if r[0] < end and start < r[1]]
    lower = [r for r in spans if r[1] <= (over[0][0] if over else start)]
    higher = [r for r in spans if r[0] >= (over[-1][1] if over else end)]
    # the tree's entries are stale tuples once trimmed: compare by the tree's own items
    items = [(s, e) for s, e, _ in tree.items()]
    assert items == spans
    entries = {(s, e): v for s, e, v in tree.items()}
    before, got, after = tree.span(start, end)
    assert got == tree.values(start, end) == [entries[r] for r in over]
    assert before == (entries[lower[-1]] if lower else None)
    assert after == (entries[higher[0]] if higher else None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 6)), max_size=120),
       st.sampled_from([4, 5, 8]),
       st.lists(st.tuples(st.sampled_from(["replace", "gap"]), st.integers(0, 420),
                          st.integers(1, 40), st.lists(st.integers(0, 40), max_size=6)),
                min_size=1, max_size=8))
def test_replace_is_erase_then_stores(ranges, width, ops):
    """replace(start, end, bounds, entries) leaves the tree erase(start, end) and a
    store of each range leave, with a consistent structure (check()), and gap searches
    answer alike after it."""
    trees = [VmaTree(width), VmaTree(width)]
    for tree in trees:
        for s, n in ranges:
            tree.store(s, s + n, (s, s + n))
    for kind, start, length, cuts in ops:
        end = start + length
        if kind == "gap":
            for tree in trees:
                tree.check()
            assert (trees[0].empty_area(0, 1000, length)
                    == trees[1].empty_area(0, 1000, length))
            continue
        points = sorted({start + c for c in cuts if c < length} | {start, end})
        # every other piece between the cut points, as new ranges
        bounds = []
        for i in range(0, len(points) - 1, 2):
            bounds += (points[i], points[i + 1])
        entries = [("new", s) for s in bounds[::2]]
        trees[0].replace(start, end, list(bounds), list(entries))
        trees[1].erase(start, end)
        for i, entry in enumerate(entries):
            trees[1].store(bounds[2 * i], bounds[2 * i + 1], entry)
        for tree in trees:
            tree.check()
        assert list(trees[0].items()) == list(trees[1].items())
        assert len(trees[0]) == len(trees[1])


def test_replace_rejects_bad_bounds():
    tree = VmaTree()
    tree.store(10, 20, "a")
    for bounds, entries in [([5, 12], ["x"]), ([12, 12], ["x"]), ([12, 14, 13, 15], ["x", "y"]),
                            ([12, 30], ["x"]), ([12, 14], []), ([12, 14], [None])]:
        with pytest.raises(ValueError):
            tree.replace(10, 20, bounds, entries)
    assert list(tree.items()) == [(10, 20, "a")]


@pytest.mark.parametrize("width", [4, 8, 256])
def test_replace_is_erase_then_stores_seeded(width):
    """The same comparison over long seeded runs: edges at, inside and beside ranges,
    leaves splitting and merging."""
    import random
    rng = random.Random(width)
    trees = [VmaTree(width), VmaTree(width)]
    for step in range(3000):
        start = rng.randrange(2000)
        end = start + rng.randint(1, 30)
        cuts = sorted({start, end} | {rng.randrange(start, end) for _ in range(rng.randint(0, 4))})
        bounds = []
        for i in range(rng.randint(0, 1), len(cuts) - 1, 2):
            bounds += (cuts[i], cuts[i + 1])
        entries = [("r", step, s) for s in bounds[::2]]
        trees[0].replace(start, end, list(bounds), list(entries))
        trees[1].erase(start, end)
        for i, entry in enumerate(entries):
            trees[1].store(bounds[2 * i], bounds[2 * i + 1], entry)
        if step % 100 == 0:
            for tree in trees:
                tree.check()
            assert list(trees[0].items()) == list(trees[1].items())
    assert list(trees[0].items()) == list(trees[1].items())
    assert trees[0].empty_area(0, 3000, 5) == trees[1].empty_area(0, 3000, 5)


def test_values_unchecked_is_values():
    """values(start, end, check=False) gives what the checked call gives on good bounds."""
    tree = VmaTree(4)
    for s in range(0, 200, 3):
        tree.store(s, s + 2, s)
    for start, end in [(0, 1), (1, 2), (5, 40), (199, 300), (0, INDEX_LIMIT), (250, 260)]:
        assert tree.values(start, end, False) == tree.values(start, end)

"""The structures compared: mmsim's VmaTree and its baselines, behind one small interface.

Every peer answers the same questions and the runner checks that the answers agree.
"""

from bisect import bisect_left, bisect_right

from mmsim.vma_tree import VmaTree

from .workload import Vma


class TreePeer:
    """mmsim.vma_tree.VmaTree."""

    name = "VmaTree"

    def __init__(self, width=None):
        self.width = width

    def new(self):
        """An empty store."""
        return VmaTree() if self.width is None else VmaTree(self.width)

    def build(self, starts, ends, order):
        t = self.new()
        store = t.store
        for i in order:
            s = starts[i]
            e = ends[i]
            store(s, e, Vma(s, e, 0))
        self.t = t

    def build_from(self, vmas, order):
        t = self.new()
        store = t.store
        for i in order:
            v = vmas[i]
            store(v.start, v.end, v)
        self.t = t

    def insert(self, s, e):
        """Store one new range into free space."""
        self.t.store(s, e, Vma(s, e, 0))

    def lookup(self, addrs):
        load = self.t.load
        hits = 0
        for a in addrs:
            if load(a) is not None:
                hits += 1
        return hits

    def split(self, mids):
        t = self.t
        load = t.load
        store = t.store
        for mid in mids:
            v = load(mid)
            new = Vma(mid, v.end, v.flags)
            v.end = mid
            store(mid, new.end, new)
        return len(t)

    def erase(self, ranges):
        erase = self.t.erase
        for s, e in ranges:
            erase(s, e)
        return len(self.t)

    def walk(self):
        for v in self.t.values():
            v.flags = v.flags ^ 1

    def walk_sum(self):
        return sum(v.end - v.start for v in self.t.values())

    def gap(self, low, limits, size):
        rev = self.t.empty_area_rev
        return [rev(low, lim, size) for lim in limits]


class SortedDictPeer:
    """sortedcontainers.SortedDict keyed by start, with its fastest public calls."""

    name = "SortedDict"

    def build(self, starts, ends, order):
        from sortedcontainers import SortedDict
        d = SortedDict()
        for i in order:
            s = starts[i]
            d[s] = Vma(s, ends[i], 0)
        self.d = d

    def build_from(self, vmas, order):
        from sortedcontainers import SortedDict
        d = SortedDict()
        for i in order:
            v = vmas[i]
            d[v.start] = v
        self.d = d

    def insert(self, s, e):
        """Store one new range into free space."""
        self.d[s] = Vma(s, e, 0)

    def _find(self, addr):
        d = self.d
        for k in d.irange(maximum=addr, reverse=True):
            v = d[k]
            return v if addr < v.end else None
        return None

    def lookup(self, addrs):
        d = self.d
        irange = d.irange
        hits = 0
        for a in addrs:
            for k in irange(maximum=a, reverse=True):
                if a < d[k].end:
                    hits += 1
                break
        return hits

    def split(self, mids):
        d = self.d
        irange = d.irange
        for mid in mids:
            for k in irange(maximum=mid, reverse=True):
                v = d[k]
                break
            new = Vma(mid, v.end, v.flags)
            v.end = mid
            d[mid] = new
        return len(d)

    def erase(self, ranges):
        d = self.d
        for s, _ in ranges:
            del d[s]
        return len(d)

    def walk(self):
        d = self.d
        for v in map(d.__getitem__, d):
            v.flags = v.flags ^ 1

    def walk_sum(self):
        d = self.d
        return sum(v.end - v.start for v in map(d.__getitem__, d))

    def gap(self, low, limits, size):
        d = self.d
        irange = d.irange
        out = []
        for limit in limits:
            hi = limit
            found = None
            for k in irange(maximum=limit, inclusive=(True, False), reverse=True):
                e = d[k].end
                if e < hi:
                    floor = e if e > low else low
                    if hi - size >= floor:
                        found = hi - size
                        break
                if k < hi:
                    hi = k
                if hi - size < low:
                    break
            else:
                if hi - size >= low:
                    found = hi - size
            out.append(found)
        return out


class ListPeer:
    """A sorted list of starts beside a list of VMAs, searched with bisect."""

    name = "list+bisect"

    def build(self, starts, ends, order):
        ss, vs = [], []
        for i in order:
            s = starts[i]
            j = bisect_left(ss, s)
            ss.insert(j, s)
            vs.insert(j, Vma(s, ends[i], 0))
        self.ss, self.vs = ss, vs

    def build_from(self, vmas, order):
        ss, vs = [], []
        for i in order:
            v = vmas[i]
            j = bisect_left(ss, v.start)
            ss.insert(j, v.start)
            vs.insert(j, v)
        self.ss, self.vs = ss, vs

    def insert(self, s, e):
        """Store one new range into free space."""
        j = bisect_left(self.ss, s)
        self.ss.insert(j, s)
        self.vs.insert(j, Vma(s, e, 0))

    def lookup(self, addrs):
        ss, vs = self.ss, self.vs
        hits = 0
        for a in addrs:
            i = bisect_right(ss, a) - 1
            if i >= 0 and a < vs[i].end:
                hits += 1
        return hits

    def split(self, mids):
        ss, vs = self.ss, self.vs
        for mid in mids:
            i = bisect_right(ss, mid) - 1
            v = vs[i]
            new = Vma(mid, v.end, v.flags)
            v.end = mid
            ss.insert(i + 1, mid)
            vs.insert(i + 1, new)
        return len(vs)

    def erase(self, ranges):
        ss, vs = self.ss, self.vs
        for s, _ in ranges:
            i = bisect_left(ss, s)
            del ss[i], vs[i]
        return len(vs)

    def walk(self):
        for v in self.vs:
            v.flags = v.flags ^ 1

    def walk_sum(self):
        return sum(v.end - v.start for v in self.vs)

    def gap(self, low, limits, size):
        ss, vs = self.ss, self.vs
        out = []
        for limit in limits:
            hi = limit
            found = None
            for i in range(bisect_left(ss, limit) - 1, -1, -1):
                v = vs[i]
                e = v.end
                if e < hi:
                    floor = e if e > low else low
                    if hi - size >= floor:
                        found = hi - size
                        break
                if v.start < hi:
                    hi = v.start
                if hi - size < low:
                    break
            else:
                if hi - size >= low:
                    found = hi - size
            out.append(found)
        return out


class IntervalTreePeer:
    """intervaltree.IntervalTree (no ordered walk and no gap search of its own)."""

    name = "IntervalTree"

    def build(self, starts, ends, order):
        from intervaltree import IntervalTree
        t = IntervalTree()
        addi = t.addi
        for i in order:
            s = starts[i]
            e = ends[i]
            addi(s, e, Vma(s, e, 0))
        self.t = t

    def build_from(self, vmas, order):
        from intervaltree import IntervalTree
        t = IntervalTree()
        addi = t.addi
        for i in order:
            v = vmas[i]
            addi(v.start, v.end, v)
        self.t = t

    def lookup(self, addrs):
        at = self.t.at
        hits = 0
        for a in addrs:
            if at(a):
                hits += 1
        return hits

    def split(self, mids):
        t = self.t
        for mid in mids:
            iv = next(iter(t.at(mid)))
            v = iv.data
            new = Vma(mid, v.end, v.flags)
            t.remove(iv)
            v.end = mid
            t.addi(iv.begin, mid, v)
            t.addi(mid, new.end, new)
        return len(t)

    def erase(self, ranges):
        t = self.t
        for s, e in ranges:
            t.remove(next(iter(t.at(s))))
        return len(t)

    def walk(self):
        for iv in sorted(self.t):
            v = iv.data
            v.flags = v.flags ^ 1

    def walk_sum(self):
        return sum(iv.end - iv.begin for iv in self.t)

    def gap(self, low, limits, size):
        t = self.t
        bounds = t.boundary_table
        covered = t.overlaps_point
        out = []
        for limit in limits:
            hi = limit
            found = None
            # Walk boundaries downwards; the segment above a boundary is free unless covered.
            for b in bounds.irange(maximum=limit, inclusive=(True, False), reverse=True):
                if covered(b):
                    hi = b
                elif hi - size >= max(b, low):
                    found = hi - size
                    break
                if hi - size < low:
                    break
            out.append(found)
        return out


class PlainListFloor:
    """The interpreter's floor: the same loop body over a plain list of the same entries."""

    name = "plain list"

    def __init__(self, vmas):
        self.vs = vmas

    def walk(self):
        for v in self.vs:
            v.flags = v.flags ^ 1

"""The pages a process has accessed itself, for the bloat figure of mmsim.metrics
(simulator-defined: the kernel keeps no such record; docs/thp.md, "What THP costs
and gives").

A set of page numbers kept as sorted, disjoint, non-adjacent ``[lo, hi)`` runs: a
sparse toucher costs one run per touched stretch, a dense one a single run.
"""

from bisect import bisect_left, bisect_right

__all__ = ["Touched"]


class Touched:
    """Page numbers as disjoint runs, ``lo`` and ``hi`` (parallel sorted lists)."""

    __slots__ = ("lo", "hi")

    def __init__(self):
        self.lo = []
        self.hi = []

    def copy(self):
        """A copy (fork: the child's memory holds what the parent put there)."""
        t = Touched()
        t.lo = self.lo[:]
        t.hi = self.hi[:]
        return t

    def add(self, lo, hi):
        """Add pages ``[lo, hi)``."""
        if lo >= hi:
            return
        # Runs ending at or after lo and starting at or before hi touch or overlap it.
        i = bisect_left(self.hi, lo)
        j = bisect_right(self.lo, hi)
        if i < j:
            lo = min(lo, self.lo[i])
            hi = max(hi, self.hi[j - 1])
        self.lo[i:j] = [lo]
        self.hi[i:j] = [hi]

    def remove(self, lo, hi):
        """Remove pages ``[lo, hi)``."""
        if lo >= hi:
            return
        i = bisect_right(self.hi, lo)
        j = bisect_left(self.lo, hi)
        if i >= j:
            return
        keep_lo, keep_hi = [], []
        if self.lo[i] < lo:
            keep_lo.append(self.lo[i])
            keep_hi.append(lo)
        if self.hi[j - 1] > hi:
            keep_lo.append(hi)
            keep_hi.append(self.hi[j - 1])
        self.lo[i:j] = keep_lo
        self.hi[i:j] = keep_hi

    def move(self, lo, hi, to):
        """The pages ``[lo, hi)`` now live at ``[to, to + hi - lo)`` (mremap)."""
        runs = list(self.runs(lo, hi))
        self.remove(lo, hi)
        self.remove(to, to + hi - lo)
        for a, b in runs:
            self.add(a - lo + to, b - lo + to)

    def runs(self, lo, hi):
        """The runs clipped to ``[lo, hi)``."""
        i = bisect_right(self.hi, lo)
        n = len(self.lo)
        while i < n and self.lo[i] < hi:
            yield max(self.lo[i], lo), min(self.hi[i], hi)
            i += 1

    def count(self, lo, hi):
        """How many pages of ``[lo, hi)`` are in the set."""
        return sum(b - a for a, b in self.runs(lo, hi))

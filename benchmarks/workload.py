"""The shared VMA workload: N ranges laid out like a large process's mappings.

Addresses start at 0x5555_0000_0000; lengths are 1-8 pages, gaps 1-4 pages with a
64-page gap at 1 % probability, and one 8192-page hole between range 0 and range 1,
so a top-down search for 4096 pages has exactly one fit, at the very bottom.
"""

import random

PAGE = 4096
BASE = 0x5555_0000_0000
HOLE_PAGES = 8192


class Vma:
    """A minimal VMA record for the store benchmarks."""

    __slots__ = ("start", "end", "flags")

    def __init__(self, start, end, flags):
        self.start = start
        self.end = end
        self.flags = flags


class Workload:
    """Ranges, random query addresses and operation targets for one N, from one seed."""

    def __init__(self, n, seed=1):
        rnd = random.Random(seed * 1_000_003 + n)
        self.n = n
        starts, ends = [], []
        addr = BASE
        for i in range(n):
            length = rnd.randint(1, 8) * PAGE
            starts.append(addr)
            ends.append(addr + length)
            if i == 0:
                gap = HOLE_PAGES
            elif rnd.random() < 0.01:
                gap = 64
            else:
                gap = rnd.randint(1, 4)
            addr += length + gap * PAGE
        self.starts = starts
        self.ends = ends
        self.low = BASE
        self.top = ends[-1]
        self.hole_end = starts[1]
        order = list(range(n))
        rnd.shuffle(order)
        self.order = order
        self.lookups = [rnd.randrange(BASE, self.top) for _ in range(100_000)]
        k = max(1, min(10_000, n // 4))
        picks = rnd.sample(range(1, n), 2 * k)
        # Split targets: the midpoint (page-aligned) of ranges at least two pages long.
        self.split_mids = []
        for i in picks[:k]:
            pages = (ends[i] - starts[i]) // PAGE
            if pages >= 2:
                self.split_mids.append(starts[i] + (pages // 2) * PAGE)
        self.erase_idx = picks[k:]
        self.gap_limits = [rnd.randrange(BASE + HOLE_PAGES * PAGE, self.top) for _ in range(2_000)]

    def vmas(self):
        """Fresh VMA objects for every range, in address order."""
        return [Vma(s, e, 0) for s, e in zip(self.starts, self.ends)]

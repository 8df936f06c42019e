"""How cheap can a store method be?  The least a ``store(start, end, entry)`` and an
``erase(start, end)`` can do in CPython and still keep the ranges in order, beside
SortedDict's insertion and deletion and VmaTree's, in one process run.

The floor checks its arguments as VmaTree does, finds the place with one C bisect in a
single flat list (the best case, at a size where the list's memmove costs nothing) and
inserts or deletes there: no overlap handling, no gap tracking, no nodes.  Whatever a
real store adds comes on top, so if the floor's ratio to SortedDict is above the bar,
no pure-Python store method meets the bar.

The checked floor adds only what no correct store can skip: it looks at the
neighbouring bounds to tell a free range from a taken one (and an exact range from a
part of one) before it changes anything.  It still keeps no gaps and no nodes.
"""

import gc
import statistics
import time
from bisect import bisect_left, bisect_right
from operator import truediv

from .peers import SortedDictPeer, TreePeer
from .workload import Workload

LIMIT = 1 << 64


class Floor:
    """Sorted interleaved bounds and entries in two flat lists; nothing else."""

    __slots__ = ("b", "v")

    def __init__(self):
        self.b = []
        self.v = []

    def store(self, start, end, entry):
        """Insert ``[start, end) -> entry`` into free space (the only case it handles)."""
        if type(start) is not int or type(end) is not int or not 0 <= start < end <= LIMIT:
            raise ValueError("bad range")
        b = self.b
        p = bisect_right(b, start)
        b[p:p] = (start, end)
        self.v.insert(p >> 1, entry)

    def erase(self, start, end):
        """Remove the range that is exactly ``[start, end)``."""
        if type(start) is not int or type(end) is not int or not 0 <= start < end <= LIMIT:
            raise ValueError("bad range")
        b = self.b
        p = bisect_left(b, start)
        del b[p:p + 2], self.v[p >> 1]

    def __len__(self):
        return len(self.v)


class CheckedFloor(Floor):
    """The floor, plus the look at the neighbours that tells free from taken."""

    __slots__ = ()

    def store(self, start, end, entry):
        """Insert ``[start, end) -> entry`` into free space; refuse anything else."""
        if type(start) is not int or type(end) is not int or not 0 <= start < end <= LIMIT:
            raise ValueError("bad range")
        b = self.b
        p = bisect_right(b, start)
        if p & 1 or (p < len(b) and end > b[p]):
            raise NotImplementedError("overlap: only a real store handles this")
        b[p:p] = (start, end)
        self.v.insert(p >> 1, entry)

    def erase(self, start, end):
        """Remove the range that is exactly ``[start, end)``; refuse anything else."""
        if type(start) is not int or type(end) is not int or not 0 <= start < end <= LIMIT:
            raise ValueError("bad range")
        b = self.b
        p = bisect_right(b, start)
        if not (p & 1 and b[p - 1] == start and b[p] == end):
            raise NotImplementedError("not one whole range: only a real store handles this")
        del b[p - 1:p + 1], self.v[p >> 1]


class FloorPeer(TreePeer):
    """The floor, driven exactly as the VmaTree peer drives VmaTree."""

    name = "floor"

    def new(self):
        return Floor()


class CheckedFloorPeer(TreePeer):
    """The checked floor, driven the same way."""

    name = "checked floor"

    def new(self):
        return CheckedFloor()


# Issue 13's bar: VmaTree's time over the checked floor's, per operation.
GOAL = 1.3


def run(n=1_000, repeats=15):
    """Median CPU ns per build and per erase operation of each peer at size ``n``, and
    (under VmaTree's, as ``"build / checked floor"`` and ``"erase / checked floor"``) the
    median over repeats of VmaTree's time over the checked floor's in that repeat.

    CPU time of this process (``process_time_ns``); the peers run back to back inside
    each repeat, so the paired ratio cancels drift that the medians alone would not."""
    w = Workload(n)
    ranges = [(w.starts[i], w.ends[i]) for i in w.erase_idx]
    peers = [SortedDictPeer(), TreePeer(), FloorPeer(), CheckedFloorPeer()]
    times = {p.name: {"build": [], "erase": []} for p in peers}
    for _ in range(repeats):
        for peer in peers:
            gc.collect()
            t0 = time.process_time_ns()
            peer.build(w.starts, w.ends, w.order)
            times[peer.name]["build"].append((time.process_time_ns() - t0) / n)
            gc.collect()
            t0 = time.process_time_ns()
            left = peer.erase(ranges)
            times[peer.name]["erase"].append((time.process_time_ns() - t0) / len(ranges))
            assert left == n - len(ranges)
    result = {name: {op: statistics.median(v) for op, v in ops.items()}
              for name, ops in times.items()}
    for op in ("build", "erase"):
        result["VmaTree"][op + " / checked floor"] = statistics.median(
            map(truediv, times["VmaTree"][op], times["checked floor"][op]))
    return result


def table(result, n=1_000):
    """Markdown table of the medians, their ratios to SortedDict, and VmaTree's paired
    ratio to the checked floor against the bar."""
    ref = result["SortedDict"]
    others = ("VmaTree", "floor", "checked floor")
    rows = ["| op | N | SortedDict | " + " | ".join(f"{o} | {o} ratio" for o in others)
            + " | VmaTree / checked floor | goal |",
            "|---|---:|---:|" + "---:|---:|" * len(others) + "---:|---|"]
    for op in ("build", "erase"):
        sd = ref[op]
        cells = " | ".join(f"{result[o][op]:.0f} ns | {result[o][op] / sd:.2f}" for o in others)
        r = result["VmaTree"].get(op + " / checked floor")
        if r is None:
            r = result["VmaTree"][op] / result["checked floor"][op]
        verdict = "pass" if r <= GOAL else "FAIL"
        rows.append(f"| {op} | {n:,} | {sd:.0f} ns | {cells} | {r:.2f} | <= {GOAL:g}: {verdict} |")
    return "\n".join(rows)

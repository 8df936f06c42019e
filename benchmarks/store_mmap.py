"""mmap and munmap the way a process does: the pattern mmsim's address spaces put on the store.

Every mapping without MAP_FIXED is placed by a top-down search, the highest free block
of its size below mmap_base, and then stored; now and then a live mapping is unmapped,
leaving a hole that a later search may fill.  So most stores cut the largest gap of a
leaf, the hole below the mappings, which the random-order build of ``store`` hardly
ever does.  This is the case the store's gap bookkeeping has to keep cheap.

Every peer runs the same operations through its own top-down search and insert, and
the runner checks that they place every mapping at the same address.
"""

import gc
import random
import statistics
import time

from .peers import ListPeer, SortedDictPeer, TreePeer
from .workload import PAGE

LOW = 0x10000
MMAP_BASE = 0x7FFF_F000_0000
# Program text, heap and stack, as a freshly exec'd process has them.
LAYOUT = [(0x40_0000, 0x60_0000), (0x80_0000, 0x90_0000), (0x7FFF_F800_0000, 0x7FFF_F802_1000)]


def operations(n, seed=1):
    """``n`` operations: ``("map", pages)`` or ``("unmap", k)`` for the k-th live mapping."""
    rnd = random.Random(seed * 7919 + n)
    ops = []
    live = 0
    for _ in range(n):
        if live > 10 and rnd.random() < 0.2:
            ops.append(("unmap", rnd.randrange(live)))
            live -= 1
        else:
            ops.append(("map", rnd.randint(1, 8)))
            live += 1
    return ops


def replay(peer, ops):
    """Run ``ops`` on a fresh store of ``peer``; return the address of every mapping."""
    starts = [s for s, _ in LAYOUT]
    ends = [e for _, e in LAYOUT]
    peer.build(starts, ends, range(len(LAYOUT)))
    gap = peer.gap
    insert = peer.insert
    remove = peer.erase
    live = []
    placed = []
    for op, arg in ops:
        if op == "map":
            size = arg * PAGE
            s = gap(LOW, [MMAP_BASE], size)[0]
            insert(s, s + size)
            live.append((s, s + size))
            placed.append(s)
        else:
            remove([live.pop(arg)])
    return placed


def run(sizes=(1_000, 10_000), repeats=5, tree_only_sizes=(65_530,)):
    """Median CPU ns per operation of each peer at each size.

    CPU time of this process (``process_time_ns``), not wall time: the machine is
    shared, and a peer should not be charged for another process's time slice.  Every
    peer does the same work (the same search, then the same store or erase), from the
    same fresh layout, interleaved repeat by repeat."""
    rows = []
    for n in list(sizes) + list(tree_only_sizes):
        ops = operations(n)
        peers = [TreePeer()] if n in tree_only_sizes else [TreePeer(), SortedDictPeer(), ListPeer()]
        times = {p.name: [] for p in peers}
        answers = {}
        for _ in range(repeats):
            for peer in peers:
                gc.collect()
                t0 = time.process_time_ns()
                answers[peer.name] = replay(peer, ops)
                times[peer.name].append((time.process_time_ns() - t0) / n)
        ref = answers[peers[0].name]
        for name, got in answers.items():
            if got != ref:
                raise AssertionError(f"N={n}: {name} places mappings elsewhere than VmaTree")
        rows.append({"n": n, "ns": {k: statistics.median(v) for k, v in times.items()}})
    return rows


# Issue 13's bar: VmaTree's CPU time over SortedDict's, per number of operations.
GOALS = {1_000: 0.5, 10_000: 0.1}


def table(rows):
    """Markdown table: CPU ns per operation and ratios to SortedDict."""
    out = ["| operations | VmaTree | SortedDict | list+bisect | VmaTree / SortedDict | goal |",
           "|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        ns = row["ns"]
        tree = ns["VmaTree"]
        sd = ns.get("SortedDict")
        lb = ns.get("list+bisect")
        cells = [f"{tree:.0f} ns",
                 "-" if sd is None else f"{sd:.0f} ns",
                 "-" if lb is None else f"{lb:.0f} ns",
                 "-" if sd is None else f"{tree / sd:.3f}"]
        goal = GOALS.get(row["n"])
        cells.append("-" if goal is None or sd is None else
                     f"<= {goal:g}: {'pass' if tree / sd <= goal else 'FAIL'}")
        out.append(f"| {row['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)

"""mremap over several VMAs (6.17+), checked call for call against the live kernel.

Three VMAs with gaps, [0,1) RW, [2,3) R, [4,7) RW (in pages): a move-only mremap
(MAYMOVE|FIXED, same length) carries all of them and keeps the gaps; resizing across
them is EFAULT; a start inside a gap is EFAULT; an in-place shrink across them works.
"""

import pytest

from mmsim import live
from mmsim.uapi import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_DONTUNMAP, MREMAP_FIXED,
                        MREMAP_MAYMOVE, PROT_READ, PROT_WRITE)

B = live.WINDOW[0]
P = 4096
RW = PROT_READ | PROT_WRITE
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
MOVE = MREMAP_MAYMOVE | MREMAP_FIXED
SETUP = [("mmap", B, P, RW, FIXED, -1, 0), ("mmap", B + 2 * P, P, PROT_READ, FIXED, -1, 0),
         ("mmap", B + 4 * P, 3 * P, RW, FIXED, -1, 0)]

CASES = {
    "move_only_keeps_gaps": ("mremap", B, 7 * P, 7 * P, MOVE, B + 0x100 * P),
    "move_and_grow": ("mremap", B, 7 * P, 8 * P, MOVE, B + 0x100 * P),
    "move_and_shrink": ("mremap", B, 7 * P, 5 * P, MOVE, B + 0x100 * P),
    "shrink_in_place": ("mremap", B, 7 * P, 2 * P, 0, 0),
    "grow_in_place": ("mremap", B, 7 * P, 9 * P, 0, 0),
    "same_size_no_move": ("mremap", B, 7 * P, 7 * P, MREMAP_MAYMOVE, 0),
    "dontunmap": ("mremap", B, 7 * P, 7 * P, MOVE | MREMAP_DONTUNMAP, B + 0x100 * P),
    "start_in_gap": ("mremap", B + P, 6 * P, 6 * P, MOVE, B + 0x100 * P),
    "part_of_one_vma": ("mremap", B + 5 * P, 2 * P, 2 * P, MOVE, B + 0x100 * P),
}


def spans(vmas):
    return [(v["start"], v["end"], v["perms"]) for v in vmas]


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_live_kernel(name, run_sim):
    calls = SETUP + [CASES[name]]
    want = live.run(calls)
    got = run_sim(calls)
    assert got["results"] == want["results"]
    assert spans(got["vmas"]) == spans(want["vmas"])


def test_move_only_keeps_gaps_without_live_kernel(run_sim):
    """The same first case with its expected layout written out, for machines without
    a Linux 6.x kernel to compare against."""
    got = run_sim(SETUP + [CASES["move_only_keeps_gaps"]])
    assert got["results"][-1] == B + 0x100 * P
    assert [(s - B) // P for s, _, _ in spans(got["vmas"])] == [0x100, 0x102, 0x104]

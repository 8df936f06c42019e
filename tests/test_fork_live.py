"""fork against the live kernel: the same calls, with a real fork in the middle, on the
kernel (mmsim.live) and on mmsim; the child's results and smaps text must agree."""

import re

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_DONTDUMP, MADV_DONTFORK, MADV_HUGEPAGE, MADV_WIPEONFORK,
                        MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PR_GET_THP_DISABLE,
                        PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED, PROT_READ, PROT_WRITE)

B = live.WINDOW[0]
P = 4096
RW = PROT_READ | PROT_WRITE
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED

BASE = [("mmap", B, 16 * P, RW, FIXED, -1, 0), ("touch", B, 16 * P, 1)]
SCENARIOS = {
    "dontfork_and_wipeonfork": BASE + [
        ("madvise", B, 2 * P, MADV_DONTFORK), ("madvise", B + 4 * P, 2 * P, MADV_WIPEONFORK),
        ("fork",), ("touch", B + 8 * P, P, 1)],
    "flags_and_locks_in_child": BASE + [
        ("madvise", B, 2 * P, MADV_HUGEPAGE), ("madvise", B + 4 * P, 2 * P, MADV_DONTDUMP),
        ("mlock", B + 8 * P, 2 * P), ("fork",)],
    "child_cow_write": BASE + [("fork",), ("touch", B, 4 * P, 1)],
    "shared_anon_not_copied": [("mmap", B, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
                               ("touch", B, 4 * P, 1), ("fork",)],
    "forked_vma_does_not_merge": BASE + [("fork",), ("mmap", B + 16 * P, 4 * P, RW, FIXED, -1, 0)],
    "thp_disable_completely_survives": [("prctl", PR_SET_THP_DISABLE, 1, 0, 0, 0), ("fork",),
                                        ("prctl", PR_GET_THP_DISABLE, 0, 0, 0, 0)],
    "thp_disable_except_advised_survives": [
        ("prctl", PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0), ("fork",),
        ("prctl", PR_GET_THP_DISABLE, 0, 0, 0, 0)],
}


def simulate(calls):
    k = Kernel(thp="madvise", randomize=False)
    proc = k.spawn()
    results = []
    for name, *args in calls:
        if name == "fork":
            proc = proc.fork()
            results.append(0)
            continue
        if name == "mmap":
            args = args[:4]
        try:
            out = getattr(proc, name)(*args)
            results.append(0 if out is None else out)
        except OSError as exc:
            results.append(-exc.errno)
    proc.mm.check()
    return results, live.smaps_blocks(k.proc_read(f"/proc/{proc.pid}/smaps"), live.WINDOW)


SHMEM = re.compile(r" 00:01 \d+ +")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_child_matches_live_kernel(name):
    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    want = live.run(SCENARIOS[name])
    results, text = simulate(SCENARIOS[name])
    assert results == want["results"]
    # A shmem inode number is the kernel's running count: mask it on both sides.
    assert SHMEM.sub(" 00:01 N ", text) == SHMEM.sub(" 00:01 N ", want["smaps_text"])

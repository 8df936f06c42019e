"""/proc/PID/smaps and maps, byte for byte against the live kernel.

The same calls run on the live kernel (mmsim.live, fixed addresses in its window) and
on mmsim; the smaps text of the window must be identical, character for character."""

import re

import pytest

from mmsim import live
from mmsim.uapi import (MADV_COLD, MADV_DONTDUMP, MADV_DONTNEED, MADV_HUGEPAGE, MAP_ANONYMOUS,
                        MAP_FIXED, MAP_GROWSDOWN, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED,
                        MLOCK_ONFAULT, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE)

B = live.WINDOW[0]
P = 4096
PMD = 2 << 20
RW = PROT_READ | PROT_WRITE
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED

SCENARIOS = {
    "private_rw_touched": [("mmap", B, 8 * P, RW, FIXED, -1, 0), ("touch", B, 3 * P, 1)],
    "prot_none_and_rx": [("mmap", B, 4 * P, PROT_NONE, FIXED, -1, 0),
                         ("mmap", B + 4 * P, 2 * P, PROT_READ | PROT_EXEC, FIXED, -1, 0)],
    "noreserve_split": [("mmap", B, 6 * P, RW, FIXED | MAP_NORESERVE, -1, 0),
                        ("mprotect", B + 2 * P, P, PROT_READ)],
    "shared_anon_touched": [("mmap", B, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
                            ("touch", B, 2 * P, 1)],
    "growsdown": [("mmap", B + 16 * P, 4 * P, RW, FIXED | MAP_GROWSDOWN, -1, 0)],
    "locked_onfault_and_dontdump": [("mmap", B, 4 * P, RW, FIXED, -1, 0),
                                    ("mlock2", B, 2 * P, MLOCK_ONFAULT),
                                    ("madvise", B + 2 * P, 2 * P, MADV_DONTDUMP)],
    "mlocked": [("mmap", B, 4 * P, RW, FIXED, -1, 0), ("mlock", B + P, 2 * P)],
    "dontneed": [("mmap", B, 4 * P, RW, FIXED, -1, 0), ("touch", B, 4 * P, 1),
                 ("madvise", B + P, P, MADV_DONTNEED)],
    "thp_hugepage": [("mmap", B, 2 * PMD, RW, FIXED, -1, 0),
                     ("madvise", B, 2 * PMD, MADV_HUGEPAGE), ("touch", B, P, 1)],
    "cold": [("mmap", B, 4 * P, RW, FIXED, -1, 0), ("touch", B, 4 * P, 1),
             ("madvise", B, 2 * P, MADV_COLD)],
}


# A shmem inode number is the kernel's running count, which no simulation can share:
# it is the one field compared loosely (the padding after it still has to match).
SHMEM_INODE = re.compile(r" 00:01 (\d+) +/dev/zero \(deleted\)$", re.M)


def _norm(text):
    out = []
    for line in text.splitlines(keepends=True):
        m = SHMEM_INODE.search(line)
        if m:
            # Keep the layout check: the name must start at column 73 either way.
            assert line.index("/dev/zero") == max(73, m.end(1) + 1), line
            line = line[:m.start(1)] + "INODE /dev/zero (deleted)\n"
        out.append(line)
    return "".join(out)


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_smaps_text_matches_live_kernel(name, run_sim, host_thp):
    if name.startswith("thp") and host_thp != "madvise":
        pytest.skip("this machine's THP mode is not 'madvise'")
    want = live.run(SCENARIOS[name])
    assert want["smaps_text"], "the live run left nothing in the window"
    got = run_sim(SCENARIOS[name])
    assert got["results"] == want["results"]
    assert _norm(got["smaps_text"]) == _norm(want["smaps_text"])

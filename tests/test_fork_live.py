"""fork against the live kernel: the same calls, with a real fork in the middle, on the
kernel (mmsim.live) and on mmsim; the child's results and smaps text must agree, except
that the live child's Referenced may be higher by pages that DAMON or idle page
tracking sampled before the fork (``assert_same_smaps`` says why and how it checks)."""

import re

import pytest

from mmsim import live
from mmsim import pages
from mmsim.live.child import _child
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
    # Big enough that a kdamond's sampling usually marks some pages young before the fork.
    "many_pages_touched_before_fork": [("mmap", B, 8192 * P, RW, FIXED, -1, 0),
                                       ("touch", B, 8192 * P, 1), ("fork",)],
}


KPF_IDLE = 25    # include/uapi/linux/kernel-page-flags.h


def idle_pages(window):
    """Addresses of this process' resident pages in ``window`` whose frame has PG_idle
    set (/proc/kpageflags' KPF_IDLE), or None when the flags cannot be read (not root)."""
    try:
        kpageflags = open("/proc/kpageflags", "rb")
    except OSError:
        return None
    with kpageflags, open("/proc/self/maps") as f, open("/proc/self/pagemap", "rb") as pagemap:
        idle = []
        for vma in live.smaps_vmas(f.read(), window):
            pagemap.seek(vma["start"] // P * 8)
            entries = pagemap.read((vma["end"] - vma["start"]) // P * 8)
            for i in range(len(entries) // 8):
                entry = int.from_bytes(entries[8 * i:8 * i + 8], "little")
                pfn = entry & ((1 << 55) - 1)
                if not entry >> 63 or not pfn:    # not present, or PFNs hidden from us
                    continue
                kpageflags.seek(pfn * 8)
                if int.from_bytes(kpageflags.read(8), "little") >> KPF_IDLE & 1:
                    idle.append(vma["start"] + i * P)
        return idle


def live_run(calls):
    """``live.run``, plus the pages idle tracking has sampled (``idle``) in the end."""
    def child():
        report = _child(calls, live.WINDOW)
        report["idle"] = idle_pages(live.WINDOW)
        return report
    return live.in_child(child)


def unreferenced_pages(proc):
    """Addresses of the resident pages mmsim counts as not Referenced: an old PTE and no
    PG_referenced."""
    out = set()
    lo, hi = live.WINDOW
    for vma in proc.mm.vmas(lo, hi):
        for vpn, n, _, _, _, referenced, young, _ in pages.page_states(vma):
            if not referenced and not young:
                out.update((vpn + i) * P for i in range(n))
    return out


SHMEM = re.compile(r" 00:01 \d+ +")
HEADER = re.compile(r"([0-9a-f]+)-([0-9a-f]+) ")
REFERENCED = re.compile(r"^Referenced: +(\d+) kB$", re.M)


def blocks(text):
    """smaps text split into one block per VMA: (start, end, text)."""
    out = []
    for line in text.splitlines(keepends=True):
        m = HEADER.match(line)
        if m:
            out.append([int(m[1], 16), int(m[2], 16), ""])
        out[-1][2] += line
    return out


def assert_same_smaps(sim_text, live_text, idle, unreferenced):
    """The child's smaps agree line for line, shmem inode numbers aside; a VMA's
    Referenced may exceed mmsim's only by pages that both idle tracking sampled on the
    live kernel and mmsim holds unreferenced.

    Why: DAMON (here a kdamond monitors physical memory) and idle page tracking clear a
    sampled page's accessed bit and, if it was set, mark the folio young.  smaps counts a
    young folio as Referenced even through the old PTEs a fork child starts with, so a
    page the parent touched counts in the child when a sample fell between the touch and
    the fork.  No simulation can know when a sample falls; the frame's idle flag
    (KPF_IDLE), set by every sample, tells which pages may carry the mark."""
    sim_blocks = blocks(SHMEM.sub(" 00:01 N ", sim_text))
    live_blocks = blocks(SHMEM.sub(" 00:01 N ", live_text))
    assert [b[:2] for b in sim_blocks] == [b[:2] for b in live_blocks], (sim_text, live_text)
    for (start, end, sim), (_, _, real) in zip(sim_blocks, live_blocks):
        sim_ref, live_ref = (int(REFERENCED.search(t)[1]) for t in (sim, real))
        # Everything but the Referenced line must be identical.
        assert REFERENCED.sub("", sim) == REFERENCED.sub("", real), (sim, real)
        sampled = {a for a in idle or () if start <= a < end} & unreferenced
        assert sim_ref <= live_ref <= sim_ref + 4 * len(sampled), (
            f"Referenced {live_ref} kB on the live kernel, {sim_ref} kB in mmsim, and "
            f"{len(sampled)} sampled pages that mmsim holds unreferenced:\n{sim}{real}")


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_child_matches_live_kernel(name, run_sim):
    want = live_run(SCENARIOS[name])
    got = run_sim(SCENARIOS[name])
    assert got["results"] == want["results"]
    assert_same_smaps(got["smaps_text"], want["smaps_text"], want["idle"],
                      unreferenced_pages(got["proc"]))


# The comparison itself, on mmsim's own text: no live kernel needed.

def _sampled_case(run_sim):
    got = run_sim(SCENARIOS["child_cow_write"])      # 4 pages written again, 12 old
    unreferenced = unreferenced_pages(got["proc"])
    assert len(unreferenced) == 12
    return got["smaps_text"], unreferenced


def _bump(text, field, kb):
    m = re.search(rf"^{field}: +(\d+) kB$", text, re.M)
    old = m[0]
    new = f"{field}:".ljust(16) + f"{int(m[1]) + kb:>8} kB"
    return text.replace(old, new, 1)


def test_referenced_by_sampled_unreferenced_pages_is_allowed(run_sim):
    text, unreferenced = _sampled_case(run_sim)
    sampled = sorted(unreferenced)[:2]
    assert_same_smaps(text, _bump(text, "Referenced", 8), sampled, unreferenced)
    assert_same_smaps(text, text, sampled, unreferenced)


def test_referenced_beyond_sampled_pages_is_a_difference(run_sim):
    text, unreferenced = _sampled_case(run_sim)
    referenced = [B + i * P for i in range(4)]       # the child wrote these: young PTEs
    for idle, kb in ((sorted(unreferenced)[:1], 8), (referenced, 4), ((), 4), (None, 4),
                     (sorted(unreferenced), -4)):
        with pytest.raises(AssertionError, match="Referenced"):
            assert_same_smaps(text, _bump(text, "Referenced", kb), idle, unreferenced)


def test_other_fields_must_match_exactly(run_sim):
    text, unreferenced = _sampled_case(run_sim)
    with pytest.raises(AssertionError):
        assert_same_smaps(text, _bump(text, "Rss", 4), sorted(unreferenced), unreferenced)

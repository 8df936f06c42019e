"""Tests of mmsim.live: the smaps parser, and syscalls run on the live kernel.

The expectations below were checked on Linux 6.18 x86-64 (4 KiB pages)."""

import pytest

from mmsim import live

PAGE = 4096
A = live.WINDOW[0]

PROT_READ, PROT_WRITE = 1, 2
RW = PROT_READ | PROT_WRITE
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 2, 0x10, 0x20, 0x100000
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
MREMAP_MAYMOVE = 1
MLOCK_ONFAULT = 1
MADV_HUGEPAGE = 14
EINVAL, EEXIST, EFAULT = 22, 17, 14

RW_FLAGS = ["rd", "wr", "mr", "mw", "me", "ac"]


needs_live = pytest.mark.live


def mmap(addr, length, prot=RW, flags=ANON):
    return ("mmap", addr, length, prot, flags, -1, 0)


def spans(vmas):
    return [(v["start"] - A, v["end"] - A, v["perms"]) for v in vmas]


SMAPS = """\
1ffffffff000-200000000000 rw-p 00000000 00:00 0 
Size:                  4 kB
Rss:                   4 kB
VmFlags: rd wr mr mw me ac 
200000000000-200000003000 rw-p 00000000 00:00 0 
Size:                 12 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Anonymous:             8 kB
AnonHugePages:         0 kB
Locked:                4 kB
THPeligible:           0
VmFlags: rd wr mr mw me lo ac 
200000003000-200000004000 r--p 00000002 08:01 1234                       /tmp/some file
Size:                  4 kB
Rss:                   0 kB
THPeligible:           1
VmFlags: rd mr mw me 
7ffdfa659000-7ffdfa67a000 rw-p 00000000 00:00 0                          [stack]
Rss:                  44 kB
VmFlags: rd wr mr mw me gd ac 
"""


def test_smaps_vmas_parses_fields_and_clips_to_window():
    vmas = live.smaps_vmas(SMAPS, live.WINDOW)
    assert vmas == [
        {"start": A, "end": A + 3 * PAGE, "perms": "rw-p", "pgoff": 0,
         "flags": ["rd", "wr", "mr", "mw", "me", "lo", "ac"], "thp_eligible": 0,
         "rss_kb": 8, "anon_kb": 8, "anon_huge_kb": 0, "locked_kb": 4},
        {"start": A + 3 * PAGE, "end": A + 4 * PAGE, "perms": "r--p", "pgoff": 2,
         "flags": ["rd", "mr", "mw", "me"], "thp_eligible": 1,
         "rss_kb": 0, "anon_kb": 0, "anon_huge_kb": 0, "locked_kb": 0},
    ]


def test_smaps_vmas_window_is_half_open():
    assert [v["start"] for v in live.smaps_vmas(SMAPS, (A - 1, A))] == [A - PAGE]
    assert [v["start"] for v in live.smaps_vmas(SMAPS, (A + 3 * PAGE, A + 3 * PAGE + 1))] \
        == [A + 3 * PAGE]


def test_smaps_vmas_accepts_maps_text():
    maps = "".join(line + "\n" for line in SMAPS.splitlines() if line[:1] in "127")
    assert [(v["start"], v["flags"], v["rss_kb"]) for v in live.smaps_vmas(maps, live.WINDOW)] \
        == [(A, [], 0), (A + 3 * PAGE, [], 0)]


def test_available_reports_reason():
    ok, reason = live.available()
    assert isinstance(ok, bool) and isinstance(reason, str)
    assert (reason == "") == ok


@pytest.mark.parametrize("call", [("brk", 0), ("munmap", A), mmap(A, PAGE)[:-2] + (3, 0)])
def test_run_rejects_bad_calls(call):
    with pytest.raises(ValueError):
        live.run([call])


@needs_live
def test_mmap_anonymous():
    out = live.run([mmap(A, 3 * PAGE)])
    assert out["results"] == [A]
    assert out["vmas"] == [
        {"start": A, "end": A + 3 * PAGE, "perms": "rw-p", "pgoff": 0, "flags": RW_FLAGS,
         "thp_eligible": 0, "rss_kb": 0, "anon_kb": 0, "anon_huge_kb": 0, "locked_kb": 0}]


@needs_live
def test_each_run_starts_with_an_empty_window():
    assert live.run([mmap(A, PAGE)])["results"] == [A]
    assert live.run([]) == {"results": [], "vmas": [], "smaps_text": ""}


@needs_live
def test_mmap_fixed_noreplace_over_existing_fails_fixed_replaces():
    out = live.run([mmap(A, 3 * PAGE), mmap(A + PAGE, PAGE),
                    mmap(A + PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)])
    assert out["results"] == [A, -EEXIST, A + PAGE]
    assert spans(out["vmas"]) == [(0, PAGE, "rw-p"), (PAGE, 2 * PAGE, "r--p"),
                                  (2 * PAGE, 3 * PAGE, "rw-p")]


@needs_live
def test_mprotect_middle_page_splits_into_three():
    out = live.run([mmap(A, 3 * PAGE), ("mprotect", A + PAGE, PAGE, PROT_READ)])
    assert out["results"] == [A, 0]
    assert spans(out["vmas"]) == [(0, PAGE, "rw-p"), (PAGE, 2 * PAGE, "r--p"),
                                  (2 * PAGE, 3 * PAGE, "rw-p")]
    # A mapping that was never writable is not accountable: no "wr", no "ac".
    assert [v["flags"] for v in out["vmas"]] == [RW_FLAGS, ["rd", "mr", "mw", "me"], RW_FLAGS]


@needs_live
def test_invalid_arguments_give_einval():
    out = live.run([mmap(A, PAGE), ("munmap", A + 1, PAGE), ("madvise", A, PAGE, 99),
                    ("mprotect", A + 1, PAGE, PROT_READ)])
    assert out["results"] == [A, -EINVAL, -EINVAL, -EINVAL]
    assert spans(out["vmas"]) == [(0, PAGE, "rw-p")]


@needs_live
def test_touch_write_populates_pages():
    out = live.run([mmap(A, 3 * PAGE), ("touch", A, 2 * PAGE, True)])
    assert out["results"] == [A, 0]
    (vma,) = out["vmas"]
    assert (vma["rss_kb"], vma["anon_kb"]) == (8, 8)


@needs_live
def test_touch_read_maps_the_zero_page_which_rss_does_not_count():
    out = live.run([mmap(A, 2 * PAGE), ("touch", A, 2 * PAGE, False)])
    assert out["results"] == [A, 0]
    assert out["vmas"][0]["rss_kb"] == 0


@needs_live
def test_touch_refused_as_a_whole_when_any_page_is_inaccessible():
    out = live.run([("touch", A, PAGE, True),                       # unmapped
                    mmap(A, PAGE),
                    ("touch", A, 2 * PAGE, True),                   # second page unmapped
                    mmap(A + PAGE, PAGE, PROT_READ),
                    ("touch", A, 2 * PAGE, True),                   # second page read-only
                    ("touch", A, 2 * PAGE, False)])                 # reading both is fine
    assert out["results"] == [-EFAULT, A, -EFAULT, A + PAGE, -EFAULT, 0]
    assert [v["rss_kb"] for v in out["vmas"]] == [0, 0]


@needs_live
def test_touch_across_adjacent_vmas():
    out = live.run([mmap(A, PAGE), mmap(A + PAGE, PAGE, PROT_READ),
                    ("mprotect", A + PAGE, PAGE, RW), ("touch", A + 100, PAGE, True)])
    # Making the read-only VMA writable makes it accountable too, so it merges with its
    # neighbour; the unaligned touch still faults both pages.
    assert out["results"] == [A, A + PAGE, 0, 0]
    assert spans(out["vmas"]) == [(0, 2 * PAGE, "rw-p")]
    assert out["vmas"][0]["rss_kb"] == 8


@needs_live
def test_mremap_grow_in_place_with_maymove():
    out = live.run([mmap(A, 3 * PAGE), ("touch", A, PAGE, True),
                    ("mremap", A, 3 * PAGE, 5 * PAGE, MREMAP_MAYMOVE, 0)])
    assert out["results"] == [A, 0, A]
    assert spans(out["vmas"]) == [(0, 5 * PAGE, "rw-p")]
    assert out["vmas"][0]["rss_kb"] == 4


@needs_live
def test_mremap_grow_blocked_moves_outside_the_window():
    out = live.run([mmap(A, 3 * PAGE), mmap(A + 3 * PAGE, PAGE, PROT_READ),
                    ("mremap", A, 3 * PAGE, 5 * PAGE, 0, 0),
                    ("mremap", A, 3 * PAGE, 5 * PAGE, MREMAP_MAYMOVE, 0)])
    assert out["results"][:3] == [A, A + 3 * PAGE, -12]    # ENOMEM without MAYMOVE
    moved = out["results"][3]
    # The kernel picks the new place top-down from mmap_base, far above the window.
    assert moved >= live.WINDOW[1]
    assert spans(out["vmas"]) == [(3 * PAGE, 4 * PAGE, "r--p")]


@needs_live
def test_mremap_fixed_into_the_window():
    out = live.run([mmap(A, PAGE), ("touch", A, PAGE, True),
                    ("mremap", A, PAGE, 2 * PAGE, MREMAP_MAYMOVE | 2, A + 8 * PAGE)])
    assert out["results"] == [A, 0, A + 8 * PAGE]
    assert spans(out["vmas"]) == [(8 * PAGE, 10 * PAGE, "rw-p")]
    assert out["vmas"][0]["rss_kb"] == 4


@needs_live
def test_mlock_and_mlock2_onfault():
    out = live.run([mmap(A, 3 * PAGE), ("mlock", A, PAGE),
                    ("mlock2", A + 2 * PAGE, PAGE, MLOCK_ONFAULT)])
    assert out["results"] == [A, 0, 0]
    assert spans(out["vmas"]) == [(0, PAGE, "rw-p"), (PAGE, 2 * PAGE, "rw-p"),
                                  (2 * PAGE, 3 * PAGE, "rw-p")]
    flags = [v["flags"] for v in out["vmas"]]
    assert flags == [["rd", "wr", "mr", "mw", "me", "lo", "ac"], RW_FLAGS,
                     ["rd", "wr", "mr", "mw", "me", "lo", "lf", "ac"]]
    # mlock() populates at once; MLOCK_ONFAULT waits for a fault.
    assert [v["locked_kb"] for v in out["vmas"]] == [4, 0, 0]


@needs_live
def test_munlock_merges_back():
    out = live.run([mmap(A, 3 * PAGE), ("mlock", A + PAGE, PAGE), ("munlock", A, 3 * PAGE)])
    assert out["results"] == [A, 0, 0]
    assert spans(out["vmas"]) == [(0, 3 * PAGE, "rw-p")]
    assert out["vmas"][0]["flags"] == RW_FLAGS
    assert out["vmas"][0]["rss_kb"] == 4          # the page mlock() faulted in stays


@needs_live
def test_madvise_hugepage():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read()
    except OSError:
        pytest.skip("no transparent hugepage support")
    if "[never]" in thp:
        pytest.skip("transparent hugepages are disabled")
    size = 4 << 20
    out = live.run([mmap(A, size), ("madvise", A, size, MADV_HUGEPAGE)])
    assert out["results"] == [A, 0]
    (vma,) = out["vmas"]
    assert vma["flags"] == RW_FLAGS + ["hg"]
    assert vma["thp_eligible"] == 1


@needs_live
def test_custom_window():
    out = live.run([mmap(A, 3 * PAGE), ("mprotect", A + PAGE, PAGE, PROT_READ)],
                   window=(A + PAGE, A + 2 * PAGE))
    assert spans(out["vmas"]) == [(PAGE, 2 * PAGE, "r--p")]


@needs_live
def test_child_exception_becomes_runtime_error():
    # An unaligned window makes the child's initial munmap fail.
    with pytest.raises(RuntimeError, match="cannot clear window"):
        live.run([], window=(A + 1, A + PAGE))


@needs_live
def test_child_death_becomes_runtime_error():
    # Unmapping all of user space under the child takes its code with it.  (User space
    # ends one page below 2**47, and munmap() rejects a range reaching past it.)
    task_size = (1 << 47) - PAGE
    assert live.run([("munmap", 0, 1 << 47)])["results"] == [-EINVAL]
    with pytest.raises(RuntimeError, match="killed by signal 11"):
        live.run([("munmap", 0, task_size)])

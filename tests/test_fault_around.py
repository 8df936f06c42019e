"""Fault-around (mm/memory.c: do_fault_around; mm/filemap.c: filemap_map_pages): a read
fault on a regular file maps the cached pages of the aligned 16-page block around it,
clipped to the VMA, the page table and EOF, skipping guard pages.  Each scenario's Rss
is checked in mmsim and, where possible, the same trace runs on the live kernel."""

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.live import smaps_vmas
from mmsim.trace import Replayer, parse

P = 4096
W = 0x200000000000

# (trace lines after the open, expected Rss in kB of each VMA in the window, in order)
CASES = {
    # A fault in the middle of a 32-page mapping at file page 3: its 16-page block.
    "aligned_block": (
        f"mmap({W:#x}, {32 * P}, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, {3 * P})\n"
        f"madvise({W + 5 * P:#x}, {P}, MADV_POPULATE_READ)\n", [64]),
    # Near the end of a page table: the block stops at the PMD boundary.
    "pmd_boundary": (
        f"mmap({W + 0x1fc000:#x}, {8 * P}, PROT_READ, MAP_SHARED|MAP_FIXED, 3, 0)\n"
        f"madvise({W + 0x1fd000:#x}, {P}, MADV_POPULATE_READ)\n", [16]),
    # Past EOF nothing is cached; a guard page is skipped; MADV_RANDOM changes nothing.
    "eof_guard_random": (
        f"mmap({W + 0x400000:#x}, {16 * P}, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, {32 * P})\n"
        f"madvise({W + 0x400000:#x}, {16 * P}, MADV_RANDOM)\n"
        f"madvise({W + 0x401000:#x}, {P}, MADV_GUARD_INSTALL)\n"
        f"madvise({W + 0x400000:#x}, {P}, MADV_POPULATE_READ)\n", [32]),
    # A write fault copies one page and maps nothing around it; a read then fills the
    # rest of the block but leaves the private copy.
    "write_then_read": (
        f"mmap({W + 0x500000:#x}, {16 * P}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, 3, 0)\n"
        f"madvise({W + 0x502000:#x}, {P}, MADV_POPULATE_WRITE)\n"
        f"madvise({W + 0x503000:#x}, {P}, MADV_POPULATE_READ)\n", [64]),
    # A VMA of two pages: the block is clipped to it.
    "small_vma": (
        f"mmap({W + 0x600000:#x}, {2 * P}, PROT_READ, MAP_SHARED|MAP_FIXED, 3, {8 * P})\n"
        f"madvise({W + 0x600000:#x}, {P}, MADV_POPULATE_READ)\n", [8]),
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fault_around") / "data.bin"
    path.write_bytes(b"y" * (40 * P + 100))    # 41 pages, the last one partial
    return str(path)


def trace_of(path, body):
    return f'openat(AT_FDCWD, "{path}", O_RDONLY) = 3\n{body}# dump\n'


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_around_in_mmsim(name, data_file):
    body, rss = CASES[name]
    rep = Replayer(Kernel(randomize=False))
    outs = rep.run(parse(trace_of(data_file, body)))
    assert all(o.result is None or o.result >= 0 for o in outs[:-1])
    vmas = smaps_vmas(outs[-1].smaps, live.WINDOW)
    assert [v["rss_kb"] for v in vmas] == rss


def test_a_read_fault_without_fault_around_maps_one_page(data_file, monkeypatch):
    # The check above can fail: with the block cut to one page, Rss drops to one page.
    from mmsim import pages
    monkeypatch.setattr(pages, "FAULT_AROUND_PAGES", 1)
    rep = Replayer(Kernel(randomize=False))
    outs = rep.run(parse(trace_of(data_file, CASES["aligned_block"][0])))
    assert [v["rss_kb"] for v in smaps_vmas(outs[-1].smaps, live.WINDOW)] == [4]


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_around_matches_the_live_kernel(name, data_file):
    diffs, skipped = live.diff_trace(trace_of(data_file, CASES[name][0]))
    assert diffs == [] and skipped == [], diffs


def test_shmem_pages_are_shared_through_the_file_cache():
    # The expectations are the live kernel's (tests/data/diff/14_shmem.strace).
    import pathlib
    path = pathlib.Path(__file__).parent / "data" / "diff" / "14_shmem.strace"
    outs = Replayer(Kernel(randomize=False)).run(parse(path.read_text()))
    rss = [sum(v["rss_kb"] for v in smaps_vmas(o.smaps, live.WINDOW))
           for o in outs if o.event.kind == "dump"]
    assert rss == [20, 24, 16, 12, 20]
    assert all(o.matches() for o in outs)


PAST_EOF = (
    # File pages 36..43 of a 41-page file: the last three lie wholly past EOF.
    f"mmap({W:#x}, {8 * P}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED, 3, {36 * P:#x})\n"
    f"madvise({W + 6 * P:#x}, {P}, MADV_POPULATE_READ)\n"
    f"madvise({W + 5 * P:#x}, {P}, MADV_POPULATE_WRITE)\n"
    f"mlock({W:#x}, {8 * P})\n")


def test_a_fault_past_eof_is_sigbus_after_fault_around(data_file):
    outs = Replayer(Kernel(randomize=False)).run(parse(trace_of(data_file, PAST_EOF)))
    import errno
    assert [o.result for o in outs[1:5]] == [W, -errno.EFAULT, -errno.EFAULT, -errno.ENOMEM]
    (vma,) = smaps_vmas(outs[-1].smaps, live.WINDOW)
    # Fault-around mapped the five pages below EOF; mlock set VM_LOCKED all the same.
    assert (vma["rss_kb"], vma["locked_kb"], "lo" in vma["flags"]) == (20, 20, True)


@pytest.mark.live
def test_past_eof_matches_the_live_kernel(data_file):
    diffs, skipped = live.diff_trace(trace_of(data_file, PAST_EOF))
    assert diffs == [] and skipped == [], diffs

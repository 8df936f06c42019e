"""Regular-file THP: a fault in a MADV_HUGEPAGE mapping of a file reads PMD-order
folios (do_sync_mmap_readahead's VM_HUGEPAGE branch) and maps the one it faulted by a
PMD (filemap_map_pmd, do_set_pmd): FilePmdMapped in smaps and meminfo, FileHugePages,
thp_file_mapped.  Scenarios run on mmsim and on the live kernel (an ext4 file, which
has large folios in 6.18, in /var/tmp, removed afterwards)."""

import ctypes
import os
import re

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_RANDOM, MADV_SEQUENTIAL

P = 4096
PMD = 2 << 20
SIZE = 4 * PMD
EVENTS = ("thp_file_mapped", "thp_split_pmd")

SCENARIOS = {
    "MADV_HUGEPAGE, read: two PMD folios read, the first PMD-mapped":
        ([MADV_HUGEPAGE], [("r", 0)]),
    "MADV_HUGEPAGE and MADV_RANDOM, read: one PMD folio": ([MADV_HUGEPAGE, MADV_RANDOM],
                                                           [("r", 0)]),
    "MADV_HUGEPAGE and MADV_SEQUENTIAL, read": ([MADV_HUGEPAGE, MADV_SEQUENTIAL], [("r", 0)]),
    "no advice, read: read-around and fault-around of base pages": ([], [("r", 0)]),
    "MADV_HUGEPAGE, reads in two blocks": ([MADV_HUGEPAGE], [("r", 0), ("r", 3 * PMD)]),
    "MADV_HUGEPAGE, read, then a private write: the PMD goes, one page is copied":
        ([MADV_HUGEPAGE], [("r", 0), ("w", P)]),
    "MADV_NOHUGEPAGE: no PMD mapping": ([MADV_NOHUGEPAGE], [("r", 0)]),
}


def _fields(smaps_text, addr):
    for b in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", smaps_text):
        if int(b.split("-")[0], 16) == addr:
            return [int(re.search(rf"^{k}:\s+(\d+)", b, re.M).group(1))
                    for k in ("Rss", "FilePmdMapped", "Anonymous")]
    raise AssertionError(f"no VMA at {addr:#x}")


def _meminfo(text):
    return int(re.search(r"^FileHugePages:\s+(\d+)", text, re.M).group(1))


def _vmstat(text):
    d = dict(line.split() for line in text.splitlines())
    return {e: int(d.get(e, 0)) for e in EVENTS}


def run_sim(advices, steps):
    k = Kernel(thp="madvise", randomize=False)
    k.create_file("/data", SIZE)
    p = k.spawn()
    fd = p.open("/data")
    a = 0x7f0000000000
    p.mmap(a, SIZE, 3, 0x12, fd, 0)     # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED
    for adv in advices:
        p.madvise(a, SIZE, adv)
    huge0, ev0 = _meminfo(k.proc_read("/proc/meminfo")), _vmstat(k.proc_read("/proc/vmstat"))
    for kind, off in steps:
        p.touch(a + off, 1, kind == "w")
    ev = _vmstat(k.proc_read("/proc/vmstat"))
    return (_fields(k.proc_read(f"/proc/{p.pid}/smaps"), a),
            _meminfo(k.proc_read("/proc/meminfo")) - huge0, {e: ev[e] - ev0[e] for e in EVENTS})


def run_live(advices, steps):
    libc = live.load_libc()
    path = f"/var/tmp/mmsim-filethp-{os.getpid()}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        block = os.urandom(1 << 20)
        for _ in range(SIZE >> 20):
            os.write(fd, block)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        raw = libc.mmap(None, SIZE + PMD, 0, 0x22, -1, 0)
        a = (raw + PMD - 1) & ~(PMD - 1)
        libc.munmap(raw, SIZE + PMD)
        assert libc.mmap(a, SIZE, 3, 0x12, fd, 0) == a
        for adv in advices:
            assert libc.madvise(a, SIZE, adv) == 0
        with open("/proc/meminfo") as f:
            huge0 = _meminfo(f.read())
        with open("/proc/vmstat") as f:
            ev0 = _vmstat(f.read())
        for kind, off in steps:
            cell = ctypes.c_char.from_address(a + off)
            if kind == "w":
                cell.value = b"x"
            else:
                cell.value
        with open("/proc/vmstat") as f:
            ev = _vmstat(f.read())
        with open("/proc/meminfo") as f:
            huge = _meminfo(f.read()) - huge0
        with open("/proc/self/smaps") as f:
            fields = _fields(f.read(), a)
        libc.munmap(a, SIZE)
        return fields, huge, {e: ev[e] - ev0[e] for e in EVENTS}
    finally:
        os.close(fd)
        os.unlink(path)


WANT = {
    "MADV_HUGEPAGE, read: two PMD folios read, the first PMD-mapped":
        ([2048, 2048, 0], 4096, {"thp_file_mapped": 1, "thp_split_pmd": 0}),
    "MADV_HUGEPAGE and MADV_RANDOM, read: one PMD folio":
        ([2048, 2048, 0], 2048, {"thp_file_mapped": 1, "thp_split_pmd": 0}),
    "MADV_HUGEPAGE and MADV_SEQUENTIAL, read":
        ([2048, 2048, 0], 4096, {"thp_file_mapped": 1, "thp_split_pmd": 0}),
    "no advice, read: read-around and fault-around of base pages":
        ([64, 0, 0], 0, {"thp_file_mapped": 0, "thp_split_pmd": 0}),
    "MADV_HUGEPAGE, reads in two blocks":
        ([4096, 4096, 0], 6144, {"thp_file_mapped": 2, "thp_split_pmd": 0}),   # EOF
    "MADV_HUGEPAGE, read, then a private write: the PMD goes, one page is copied":
        ([4, 0, 4], 4096, {"thp_file_mapped": 1, "thp_split_pmd": 1}),
    "MADV_NOHUGEPAGE: no PMD mapping": ([64, 0, 0], 0, {"thp_file_mapped": 0,
                                                        "thp_split_pmd": 0}),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_file_thp_in_the_simulator(name):
    assert list(run_sim(*SCENARIOS[name])) == list(WANT[name])


@pytest.mark.live
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_file_thp_matches_live_kernel(name):
    """smaps exactly; FileHugePages and the vm events are machine-wide, so a live
    delta may be larger (another process reading a file THP meanwhile): a run that
    differs is repeated."""
    if not live.available()[0] or not os.path.isdir("/var/tmp"):
        pytest.skip("needs a Linux host with /var/tmp")
    with open("/proc/mounts") as f:
        mounts = [line.split() for line in f]
    # The file system /var/tmp is on: the longest mount point that holds it.
    fstype = max((m for m in mounts if "/var/tmp/".startswith(m[1].rstrip("/") + "/")),
                 key=lambda m: len(m[1]))[2]
    if fstype not in ("ext4", "xfs"):
        pytest.skip(f"needs /var/tmp on ext4 or xfs (large folios), not {fstype}")
    want = run_sim(*SCENARIOS[name])
    for _ in range(5):
        got = live.in_child(lambda: run_live(*SCENARIOS[name]), "file THP")
        if list(got[0]) == list(want[0]) and got[1] == want[1] and dict(got[2]) == want[2]:
            break
    assert list(got[0]) == list(want[0])
    assert got[1] >= want[1]
    for e in EVENTS:
        assert got[2][e] >= want[2][e]

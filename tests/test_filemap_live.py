"""Differential tests of the page cache and readahead against the live kernel.

Each scenario runs a sequence of read(2), pread, mmap touches, posix_fadvise and
readahead(2) calls on a file of the ext4 root file system (its cache emptied first with
POSIX_FADV_DONTNEED on that file only) and, with the same sequence, on mmsim; after
every step the pages cached (mincore on a mapping of the whole file, once the I/O has
settled) and the major faults the mmap touches took (getrusage's ru_majflt) must be the
same.  The simulated file gets the live device's read_ahead_kb and max_sectors_kb.
Beside them, PG_referenced and PG_active (/proc/kpageflags) after a few preads check
folio_mark_accessed's rule for read(2).

MADV_WILLNEED on a file mapping is POSIX_FADV_WILLNEED on the range behind it.

This host runs a DAMON pageout scheme that may evict cold page cache in the background:
a live run in which a cached page vanished without a DONTNEED step is disturbed and is
repeated (a few times) before the test fails; so is one that disagrees with mmsim (a
fault that waited for a page still under I/O counts as major in getrusage, however
long the pauses).  The simulator is deterministic, so a model error fails every run.
The file is removed afterwards."""

import ctypes
import os
import resource
import struct
import time

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.pagecache import ACTIVE
from mmsim.readahead import BackingDev
from mmsim.uapi import (MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MAP_SHARED, O_RDWR,
                        PROT_READ)

P = 4096
NPAGES = 16384
DIRECTORY = "/var/tmp"
SETTLE = 0.03
RETRIES = 4

FADV = {"normal": 0, "random": 1, "sequential": 2, "willneed": 3, "dontneed": 4,
        "noreuse": 5}

# Each step: (op, args...), pages and lengths in pages unless said otherwise.
SCENARIOS = {
    "sequential_preads": [("pread", i * P, P) for i in range(90)],
    "read_10000_bytes": [("read", 10000)] * 24,
    "big_reads": [("read", 64 * P), ("read", 64 * P), ("read", 300 * P), ("read", 64 * P)],
    "mmap_read_around": [("touch", [5000], None), ("touch", [5001, 5010, 5511], None),
                         ("touch", [5512], None), ("touch", [10000], MADV_RANDOM),
                         ("touch", [12000], MADV_SEQUENTIAL), ("touch", [12001], None),
                         ("touch", [3000, 3001, 3002], MADV_RANDOM)],
    "mark_left_by_a_random_mapping": [("touch", [5000], None), ("touch", [5512], MADV_RANDOM),
                                      ("touch", [5512], None)],
    "mmap_sequential_scan": [("touch", list(range(0, 3000, 7)), None)],
    "willneed_readahead_dontneed": [
        ("fadvise", 100 * P, 5000 * P, "willneed"), ("readahead", 3 * P + 5, 10 * P),
        ("fadvise", 200 * P + 1, 300 * P, "dontneed"), ("pread", 250 * P, P),
        ("fadvise", 0, 0, "dontneed"), ("readahead", 9000 * P, 1 << 30)],
    "random_then_sequential_advice": [
        ("fadvise", 0, 0, "random"), ("pread", 0, 3 * P), ("pread", 3 * P, 3 * P),
        ("fadvise", 0, 0, "sequential"), ("pread", 6 * P, P), ("pread", 7 * P, P),
        ("pread", 100 * P, 2 * P), ("fadvise", 0, 0, "normal"), ("pread", 4000 * P, P)],
    "small_random_and_cached_runs": [
        ("pread", 0, P), ("pread", 300 * P, 2 * P), ("pread", 302 * P, P),
        ("readahead", 990 * P, 10 * P), ("pread", 1000 * P, P), ("pread", 7000 * P, P)],
    "interleaved_streams": [step for i in range(40)
                            for step in (("pread", i * P, P), ("pread", (8000 + i) * P, P))],
    "madvise_willneed": [("willneed", 10 * P, 10 * P + 5), ("willneed", 1000 * P, 3000 * P),
                         ("touch", [1500, 2990], None)],
    "writes": [("pwrite", 10 * P + 5, 100), ("pwrite", 20 * P, P), ("fsync",),
               ("pread", 10 * P, P), ("fadvise", 0, 0, "dontneed")],
}


def _queue_value(dev, name, default):
    base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    for q in (f"{base}/queue/{name}", f"{base}/../queue/{name}"):
        try:
            with open(q) as f:
                return int(f.read())
        except OSError:
            continue
    return default


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.readahead.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_size_t]
    libc.readahead.restype = ctypes.c_ssize_t
    return libc


class Live:
    """The scenario on the live kernel."""

    def __init__(self, path):
        self.libc = _libc()
        self.path = path

    def cached(self):
        time.sleep(SETTLE)
        fd = os.open(self.path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        n = -(-size // P)
        addr = self.libc.mmap(None, n * P, PROT_READ, MAP_SHARED, fd, 0)
        os.close(fd)
        buf = ctypes.create_string_buffer(n)
        assert self.libc.mincore(ctypes.c_void_p(addr), n * P, buf) == 0
        self.libc.munmap(ctypes.c_void_p(addr), n * P)
        return frozenset(i for i in range(n) if buf.raw[i] & 1)

    def run(self, steps):
        """Cached pages and major faults after each step, and whether a page vanished."""
        fd = os.open(self.path, os.O_RDWR)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        time.sleep(SETTLE)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out, majflt, prev = [], 0, self.cached()
        self.disturbed = disturbed = bool(prev)
        try:
            for step in steps:
                majflt += self.step(fd, step)
                now = self.cached()
                if not (step[0] == "fadvise" and step[3] == "dontneed") and prev - now:
                    disturbed = True
                out.append((now, majflt))
                prev = now
        finally:
            os.close(fd)
        return out, disturbed or self.disturbed

    def step(self, fd, step):
        op, args = step[0], step[1:]
        libc = self.libc
        if op == "pread":
            os.pread(fd, args[1], args[0])
        elif op == "read":
            os.read(fd, args[0])
        elif op == "pwrite":
            os.pwrite(fd, b"w" * args[1], args[0])
        elif op == "fsync":
            os.fsync(fd)
        elif op == "fadvise":
            os.posix_fadvise(fd, args[0], args[1], FADV[args[2]])
        elif op == "readahead":
            assert libc.readahead(fd, args[0], args[1]) == 0
        elif op == "willneed":
            length = NPAGES * P
            addr = libc.mmap(None, length, PROT_READ, MAP_SHARED, fd, 0)
            assert libc.madvise(ctypes.c_void_p(addr + args[0]), args[1], 3) == 0
            libc.munmap(ctypes.c_void_p(addr), length)
        elif op == "touch":
            pages, advice = args
            length = NPAGES * P
            addr = libc.mmap(None, length, PROT_READ, MAP_SHARED, fd, 0)
            if advice is not None:
                libc.madvise(ctypes.c_void_p(addr), length, advice)
            faults = 0
            buf = ctypes.create_string_buffer(NPAGES)
            seen = frozenset()
            for page in pages:
                # one fault at a time: a fault waiting on I/O another one started would
                # be retried, which getrusage counts as major
                before = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
                ctypes.c_char.from_address(addr + page * P).value
                faults += resource.getrusage(resource.RUSAGE_SELF).ru_majflt - before
                time.sleep(SETTLE)
                # background reclaim taking a page between two touches
                libc.mincore(ctypes.c_void_p(addr), length, buf)
                now = frozenset(i for i, b in enumerate(buf.raw) if b & 1)
                if seen - now:
                    self.disturbed = True
                seen = now
            libc.munmap(ctypes.c_void_p(addr), length)
            return faults
        return 0


def simulate(steps, size, ra_pages, io_pages):
    """The scenario on mmsim: the same observations."""
    k = Kernel(seed=1)
    inode = k.create_file("/data", size)
    inode.bdi = BackingDev(ra_pages=ra_pages, io_pages=io_pages)
    proc = k.spawn()
    fd = proc.open("/data", O_RDWR)
    out = []
    for step in steps:
        op, args = step[0], step[1:]
        before = proc.mm.maj_flt
        if op == "pread":
            proc.pread(fd, args[1], args[0])
        elif op == "read":
            proc.read(fd, args[0])
        elif op == "pwrite":
            proc.pwrite(fd, args[1], args[0])
        elif op == "fsync":
            proc.fsync(fd)
        elif op == "fadvise":
            proc.fadvise(fd, args[0], args[1], FADV[args[2]])
        elif op == "readahead":
            proc.readahead(fd, args[0], args[1])
        elif op == "willneed":
            length = NPAGES * P
            addr = proc.mmap(0, length, PROT_READ, MAP_SHARED, fd, 0)
            proc.madvise(addr + args[0], args[1], MADV_WILLNEED)
            proc.munmap(addr, length)
        elif op == "touch":
            pages, advice = args
            length = NPAGES * P
            addr = proc.mmap(0, length, PROT_READ, MAP_SHARED, fd, 0)
            if advice is not None:
                proc.madvise(addr, length, advice)
            for page in pages:
                proc.touch(addr + page * P, 1, write=False)
            proc.munmap(addr, length)
        out.append((frozenset(inode.cache), proc.mm.maj_flt))
        del before
    return out


def ranges(pages):
    out = []
    for i in sorted(pages):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [tuple(r) for r in out]


@pytest.fixture(scope="module")
def live_file():
    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    os.makedirs(DIRECTORY, exist_ok=True)
    path = os.path.join(DIRECTORY, f"mmsim-filemap-live-{os.getpid()}.bin")
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(NPAGES * P // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    try:
        yield path
    finally:
        os.unlink(path)


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_page_cache_matches_the_live_kernel(name, live_file):
    steps = SCENARIOS[name]
    st = os.stat(live_file)
    # a fresh copy of the file's first state: writes change its size only past EOF
    os.truncate(live_file, NPAGES * P)
    ra_pages = _queue_value(st.st_dev, "read_ahead_kb", 128) // 4
    io_pages = _queue_value(st.st_dev, "max_sectors_kb", 1280) // 4
    sim = simulate(steps, NPAGES * P, ra_pages, io_pages)
    want = [(i, step, ranges(sc), sm) for i, (step, (sc, sm)) in enumerate(zip(steps, sim))]
    live = Live(live_file)
    seen = None
    for attempt in range(RETRIES):
        got, disturbed = live.run(steps)
        if disturbed:
            continue
        seen = [(i, step, ranges(lc), lm) for i, (step, (lc, lm)) in enumerate(zip(steps, got))]
        if seen == want:
            return
    if seen is None:
        pytest.fail(f"{name}: every live run lost cached pages to background reclaim")
    # The first step where the last undisturbed live run and mmsim part.
    for w, g in zip(want, seen):
        assert w == g


# (preads as (offset, bytes), page) -> the page's PG_referenced after them.  Pages 0-3
# come in order-0 folios from the first window.
ACCESS_CASES = {
    "two_reads_in_one_page": ([(0, 100), (100, 100)], 0),
    "same_position_twice": ([(0, 100), (0, 100)], 0),
    "read_over_two_pages_then_the_second": ([(0, 2 * P), (P, 10)], 1),
    "back_to_the_first_page": ([(0, 100), (P, 100), (0, 100)], 0),
}


def _kpageflags(libc, path, page):
    """(PG_referenced, PG_active) of a cached page, through a mapping of it."""
    fd = os.open(path, os.O_RDONLY)
    length = (page + 1) * P
    addr = libc.mmap(None, length, PROT_READ, MAP_SHARED, fd, 0)
    os.close(fd)
    try:
        ctypes.c_char.from_address(addr + page * P).value   # maps it; marks nothing
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(((addr >> 12) + page) * 8)
            pfn = struct.unpack("Q", f.read(8))[0] & ((1 << 55) - 1)
        with open("/proc/kpageflags", "rb") as f:
            f.seek(pfn * 8)
            flags = struct.unpack("Q", f.read(8))[0]
    finally:
        libc.munmap(ctypes.c_void_p(addr), length)
    return (flags >> 2) & 1, (flags >> 6) & 1


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(ACCESS_CASES))
def test_read_marks_pages_accessed_as_the_live_kernel(name, live_file):
    if not os.access("/proc/kpageflags", os.R_OK):
        pytest.skip("/proc/kpageflags needs root")
    reads, page = ACCESS_CASES[name]
    libc = _libc()
    fd = os.open(live_file, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    for off, n in reads:
        os.pread(fd, n, off)
    os.close(fd)
    ref, active = _kpageflags(libc, live_file, page)
    k = Kernel(seed=1)
    inode = k.create_file("/data", NPAGES * P)
    proc = k.spawn()
    sfd = proc.open("/data")
    for off, n in reads:
        proc.pread(sfd, n, off)
    sim = inode.cache[page]
    assert ref == int(sim.referenced)
    # An activation waits in a per-CPU batch on the live kernel (PG_active not yet set,
    # PG_referenced already cleared): PG_active is compared where none is pending.
    if not (sim.lru == ACTIVE and not ref):
        assert active == int(sim.lru == ACTIVE)

"""read(2), pread, write, fsync, posix_fadvise and readahead(2) through the page cache
(mmsim/filemap.py), mmap faults that read (major faults, read-around, async readahead),
the replayer's file calls, and invariants of the page cache under random file I/O."""

import errno
import shutil

from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim.defs import pfn_up
from mmsim.kernel import Kernel
from mmsim.pagecache import ACTIVE, INACTIVE
from mmsim.readahead import (POSIX_FADV_DONTNEED, POSIX_FADV_NOREUSE, POSIX_FADV_NORMAL,
                             POSIX_FADV_RANDOM, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED,
                             BackingDev)
from mmsim.replay import replay_trace
from mmsim.testing import errno_of
from mmsim.uapi import (MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MAP_ANONYMOUS, MAP_FIXED,
                        MAP_PRIVATE, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE)

P = 4096


def machine(npages=64, ra_pages=32):
    k = Kernel(seed=1)
    inode = k.create_file("/data", npages * P)
    inode.bdi = BackingDev(ra_pages=ra_pages)
    proc = k.spawn()
    fd = proc.open("/data", O_RDWR)
    return k, proc, fd, inode


def cached(inode):
    return sorted(inode.cache)


def test_read_returns_bytes_up_to_eof_and_moves_the_offset():
    k, proc, fd, inode = machine(npages=2)
    inode.size = 2 * P - 100
    assert proc.read(fd, 5000) == 5000
    assert proc.read(fd, 5000) == 2 * P - 100 - 5000
    assert proc.read(fd, 5000) == 0
    assert proc.pread(fd, 10, 2 * P) == 0
    assert proc.pread(fd, 10, P) == 10
    assert cached(inode) == [0, 1]


def test_first_read_starts_a_window_and_the_marker_continues_it():
    k, proc, fd, inode = machine()
    proc.read(fd, P)
    assert cached(inode) == [0, 1, 2, 3]
    assert inode.cache[1].readahead and not inode.cache[2].readahead
    proc.read(fd, P)     # reaches the marker: the next window, 8 pages
    assert cached(inode) == list(range(12))
    assert not inode.cache[1].readahead
    # each page read came from storage: pgpgin in KiB
    assert k.node.events["pgpgin"] == 12 * 4
    assert k.node.events["pgmajfault"] == 0     # read(2) takes no page faults


def test_random_small_read_reads_only_the_request():
    k, proc, fd, inode = machine()
    proc.pread(fd, P, 0)
    proc.pread(fd, 2 * P, 40 * P)
    assert cached(inode) == [0, 1, 2, 3, 40, 41]


def test_fadv_random_sequential_normal():
    k, proc, fd, inode = machine(npages=256)
    proc.fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
    proc.read(fd, 3 * P)
    assert cached(inode) == [0, 1, 2]
    proc.fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    assert proc.fds[fd].ra.ra_pages == 64
    proc.pread(fd, 40 * P, 3 * P)            # sequential, larger than 16: the whole 64
    assert cached(inode) == list(range(3 + 64))
    proc.pread(fd, 2 * P, 100 * P)           # random: just the request
    assert cached(inode) == list(range(3 + 64)) + [100, 101]
    proc.fadvise(fd, 0, 0, POSIX_FADV_NORMAL)
    assert proc.fds[fd].ra.ra_pages == 32 and not proc.fds[fd].random


def test_a_read_within_the_previous_reads_last_page_does_not_mark_it_again():
    k, proc, fd, inode = machine()
    proc.read(fd, 100)
    proc.read(fd, 100)        # the same page as the previous read's end
    page = inode.cache[0]
    assert page.referenced and page.lru == INACTIVE
    proc.pread(fd, 10, P)     # another page
    proc.pread(fd, 10, 0)     # back to page 0: marked a second time, activated
    assert page.lru == ACTIVE


def test_partial_page_write_reads_the_page_first():
    k, proc, fd, inode = machine(npages=4)
    proc.pwrite(fd, 100, 5)               # partial, below EOF: read first
    assert k.node.events["pgpgin"] == 4
    proc.pwrite(fd, P, P)                 # a whole page: no read
    proc.pwrite(fd, 10, 10 * P)           # past EOF: nothing to read
    assert k.node.events["pgpgin"] == 4
    assert cached(inode) == [0, 1, 10]
    assert all(inode.cache[i].dirty for i in (0, 1, 10))
    assert k.node.nr_dirty == 3 and inode.size == 10 * P + 10
    assert k.node.events["pgmajfault"] == 0
    assert inode.cache[0].lru == INACTIVE and not inode.cache[0].referenced
    assert proc.fsync(fd) == 0
    assert k.node.nr_dirty == 0 and not any(p.dirty for p in inode.cache.values())


def test_fadv_dontneed_drops_clean_unmapped_whole_pages():
    k, proc, fd, inode = machine()
    proc.pread(fd, 8 * P, 0)                 # caches 0..31
    proc.pwrite(fd, P, 20 * P)               # dirty: under writeback when advised
    a = proc.mmap(0, P, PROT_READ, MAP_SHARED, fd, 10 * P)
    proc.touch(a, P, write=False)            # mapped
    # bytes 4097..16384: the whole pages 2 and 3; the partial last page 4 stays
    proc.fadvise(fd, P + 1, 3 * P, POSIX_FADV_DONTNEED)
    assert {1, 4} <= set(inode.cache) and not {2, 3} & set(inode.cache)
    proc.fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    assert cached(inode) == [10, 20]
    assert not inode.cache[20].dirty         # written back
    proc.fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    assert cached(inode) == [10]


def test_fadv_willneed_and_readahead_force_the_range():
    k, proc, fd, inode = machine(npages=2048)
    assert proc.readahead(fd, 3 * P + 5, 10 * P) == 0
    assert cached(inode) == list(range(3, 14))
    assert not any(p.readahead for p in inode.cache.values())
    proc.fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    proc.fadvise(fd, 100 * P, 5000 * P, POSIX_FADV_WILLNEED)
    assert cached(inode) == list(range(100, 100 + 320))    # io_pages (1280 KiB)


def test_errnos():
    k, proc, fd, inode = machine()
    r, w = proc.pipe2(0)
    assert errno_of(proc.fadvise, r, 0, 0, 0) == errno.ESPIPE
    assert errno_of(proc.fadvise, fd, 0, -1, 0) == errno.EINVAL
    assert errno_of(proc.fadvise, fd, 0, 0, 9) == errno.EINVAL
    assert errno_of(proc.fadvise, 99, 0, 0, 0) == errno.EBADF
    assert proc.fadvise(fd, -P, 0, POSIX_FADV_DONTNEED) == 0
    assert errno_of(proc.readahead, r, 0, P) == errno.EINVAL
    assert errno_of(proc.readahead, w, 0, P) == errno.EBADF
    assert errno_of(proc.readahead, fd, 0, 1 << 63) == errno.EINVAL
    assert errno_of(proc.fsync, r) == errno.EINVAL
    assert errno_of(proc.pread, r, 1, 0) == errno.ESPIPE
    assert errno_of(proc.pread, fd, 1, -1) == errno.EINVAL
    assert errno_of(proc.read, w, 1) == errno.EBADF
    d = proc.open("/", 0)
    assert errno_of(proc.read, d, 1) == errno.EISDIR
    assert proc.fsync(d) == 0


def mmap_touch(proc, fd, npages, touches, advice=None):
    a = proc.mmap(0, npages * P, PROT_READ, MAP_SHARED, fd, 0)
    if advice is not None:
        proc.madvise(a, npages * P, advice)
    before = proc.mm.maj_flt
    for t in touches:
        proc.touch(a + t * P, 1, write=False)
    proc.munmap(a, npages * P)
    return proc.mm.maj_flt - before


def test_mmap_miss_is_a_major_fault_with_read_around():
    k, proc, fd, inode = machine(npages=256)
    assert mmap_touch(proc, fd, 256, [100]) == 1
    assert cached(inode) == list(range(84, 116))
    assert inode.cache[108].readahead
    assert k.node.events["pgmajfault"] == 1
    assert proc.mm.memcg.stat["pgmajfault"] == 1
    # fault-around maps cached pages but not the marked one; touching it starts the
    # async readahead, a minor fault
    assert mmap_touch(proc, fd, 256, [101, 108]) == 0
    assert cached(inode) == list(range(84, 116 + 32))
    assert mmap_touch(proc, fd, 256, [200], MADV_RANDOM) == 1
    assert 199 not in inode.cache and 201 not in inode.cache
    assert mmap_touch(proc, fd, 256, [20], MADV_SEQUENTIAL) == 1
    assert set(range(20, 52)) <= set(inode.cache)


def test_fault_around_maps_only_cached_pages():
    k, proc, fd, inode = machine()
    proc.readahead(fd, 33 * P, 2 * P)      # pages 33, 34, unmarked
    a = proc.mmap(0, 64 * P, PROT_READ, MAP_PRIVATE, fd, 0)
    proc.touch(a + 34 * P, 1, write=False)       # cached: minor, maps 33 and 34 only
    assert proc.mm.maj_flt == 0
    assert k.proc_read(f"/proc/{proc.pid}/smaps").count("Rss:                   8 kB") == 1


def test_noreuse_mapping_does_not_promote_on_unmap():
    k, proc, fd, inode = machine()
    proc.fadvise(fd, 0, 0, POSIX_FADV_NOREUSE)
    for _ in range(3):
        mmap_touch(proc, fd, 1, [0])
    assert inode.cache[0].lru == INACTIVE and not inode.cache[0].referenced
    proc.fadvise(fd, 0, 0, POSIX_FADV_NORMAL)
    for _ in range(2):
        mmap_touch(proc, fd, 1, [0])
    assert inode.cache[0].lru == ACTIVE


def test_replayer_runs_the_file_calls():
    k = Kernel(seed=1)
    inode = k.create_file("/data", 64 * P)
    text = "\n".join([
        '100 openat(AT_FDCWD, "/data", O_RDWR) = 3',
        '100 read(3, "xx"..., 4096) = 4096',
        '100 pread64(3, "xx"..., 8192, 163840) = 8192',
        '100 readahead(3, 204800, 8192) = 0',
        '100 fadvise64(3, 0, 0, POSIX_FADV_SEQUENTIAL) = 0',
        '100 pwrite64(3, "x", 1, 250000) = 1',
        '100 fdatasync(3) = 0',
        '100 fsync(3) = 0',
        '100 fadvise64(3, 0, 0, 77) = -1 EINVAL (Invalid argument)',
        '100 pread64(3, "", 10, -1) = -1 EINVAL (Invalid argument)',
        '100 read(3, "", 4096) = 4096', ""])
    outs = replay_trace(text, k)
    assert all(o.matches() for o in outs)
    assert [o.result for o in outs[1:4]] == [4096, 8192, 0]
    assert set(range(4)) | {40, 41, 50, 51, 61} <= set(inode.cache)
    assert k.node.nr_dirty == 0
    assert k.processes[min(k.processes)].fds[3].ra.ra_pages == 64
    # bytes past the size the simulator knows (a /proc file) are the log's
    k2 = Kernel(seed=1)
    k2.create_file("/data", 64 * P)
    outs = replay_trace('100 openat(AT_FDCWD, "/data", O_RDONLY) = 3\n'
                        '100 pread64(3, "", 100, 262100) = 100\n'
                        '100 lseek(3, 262100, SEEK_SET) = 262100\n'
                        '100 read(3, "", 100) = 100\n'
                        '100 lseek(3, 0, SEEK_CUR) = 262200\n', k2)
    assert all(o.matches() for o in outs)
    assert not k2.files["/data"].cache


# ---------------------------------------------------------------- invariants

OPS = st.one_of(
    st.tuples(st.just("read"), st.integers(0, 40 * P)),
    st.tuples(st.just("pread"), st.integers(0, 40 * P), st.integers(0, 150 * P)),
    st.tuples(st.just("pwrite"), st.integers(0, 6 * P), st.integers(0, 150 * P)),
    st.tuples(st.just("fadvise"), st.integers(-P, 150 * P), st.integers(0, 80 * P),
              st.sampled_from([0, 1, 2, 3, 4, 5])),
    st.tuples(st.just("readahead"), st.integers(0, 150 * P), st.integers(0, 80 * P)),
    st.tuples(st.just("touch"), st.integers(0, 127), st.sampled_from([0, MADV_RANDOM,
                                                                     MADV_SEQUENTIAL])),
    st.tuples(st.just("ftruncate"), st.integers(0, 140 * P)),
    st.tuples(st.just("lseek"), st.integers(0, 150 * P)),
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(OPS, max_size=25), st.sampled_from([0, 32, 2048]), st.sampled_from([0, 9]))
def test_page_cache_invariants(ops, ra_pages, max_order):
    k = Kernel(seed=1)
    inode = k.create_file("/data", 100 * P + 123)
    inode.bdi = BackingDev(ra_pages=ra_pages, io_pages=64, max_order=max_order)
    proc = k.spawn()
    fd = proc.open("/data", O_RDWR)
    f = proc.fds[fd]
    for op in ops:
        name = op[0]
        if name == "read":
            pos, size = f.pos, inode.size
            n = proc.read(fd, op[1])
            assert n == max(0, min(op[1], size - pos))
            assert not n or set(range(pos // P, pfn_up(pos + n))) <= set(inode.cache)
        elif name == "pread":
            size = inode.size
            n = proc.pread(fd, op[1], op[2])
            assert n == max(0, min(op[1], size - op[2]))
            assert not n or set(range(op[2] // P, pfn_up(op[2] + n))) <= set(inode.cache)
        elif name == "pwrite":
            n = proc.pwrite(fd, op[1], op[2])
            assert n == op[1]
            assert not n or all(inode.cache[i].dirty
                                for i in range(op[2] // P, pfn_up(op[2] + n)))
        elif name == "fadvise":
            proc.fadvise(fd, *op[1:])
        elif name == "readahead":
            proc.readahead(fd, *op[1:])
        elif name == "touch":
            npages = pfn_up(inode.size)
            if op[1] < npages:
                mmap_touch(proc, fd, npages, [op[1]], op[2] or None)
        elif name == "ftruncate":
            proc.ftruncate(fd, op[1])
        elif name == "lseek":
            proc.lseek(fd, op[1], 0)
        # the cache never holds a page wholly past EOF
        assert all(i < pfn_up(inode.size) for i in inode.cache)
        node = k.node
        pages = list(inode.cache.values())
        assert node.nr_file_pages == len(pages)
        assert node.nr_dirty == sum(p.dirty for p in pages)
        assert node.nr_active + node.nr_inactive == len(pages)
        assert node.nr_active == sum(p.lru == ACTIVE for p in pages)
        # a mark covers a whole, naturally aligned folio of cached pages
        for i, p in inode.cache.items():
            if p.readahead:
                nr = int(p.readahead)
                head = i & ~(nr - 1)
                assert all(inode.cache.get(j) is not None and inode.cache[j].readahead == nr
                           for j in range(head, head + nr))


def test_madvise_willneed_reads_the_file_range_ahead():
    k, proc, fd, inode = machine(npages=4096)
    a = proc.mmap(0, 4096 * P, PROT_READ, MAP_SHARED, fd, 0)
    proc.madvise(a + 10 * P, 10 * P + 5, MADV_WILLNEED)
    assert cached(inode) == list(range(10, 21))
    proc.madvise(a + 1000 * P, 3000 * P, MADV_WILLNEED)    # at most io_pages
    assert cached(inode) == list(range(10, 21)) + list(range(1000, 1320))
    assert proc.mm.maj_flt == 0 and not any(p.readahead for p in inode.cache.values())


def test_a_mark_stays_where_no_async_readahead_runs():
    k, proc, fd, inode = machine(npages=256)
    assert mmap_touch(proc, fd, 256, [100]) == 1
    assert inode.cache[108].readahead
    # VM_RAND_READ: do_async_mmap_readahead returns before page_cache_async_ra
    mmap_touch(proc, fd, 256, [108], MADV_RANDOM)
    assert inode.cache[108].readahead and 116 not in inode.cache
    mmap_touch(proc, fd, 256, [108])
    assert not inode.cache[108].readahead and 116 in inode.cache


def test_truncation_splits_the_large_folio_it_cuts():
    k, proc, fd, inode = machine(npages=2048, ra_pages=32)
    for i in range(13):
        proc.pread(fd, P, i * P)
    # pages 12..15 came in one order-2 folio
    assert [inode.cache[i].order for i in range(12, 16)] == [2, 2, 2, 2]
    proc.ftruncate(fd, 14 * P)
    assert [inode.cache[i].order for i in (12, 13)] == [0, 0]
    # DONTNEED of page 13 alone now drops it
    proc.fadvise(fd, 13 * P, P, POSIX_FADV_DONTNEED)
    assert 13 not in inode.cache and 12 in inode.cache


def test_pidfd_file_calls_answer_as_6_18():
    # Found by the hostile-argument fuzzer: these raised AttributeError on a pidfd.
    k, proc, fd, inode = machine()
    pidfd = proc.pidfd_open(proc.pid)
    assert errno_of(proc.lseek, pidfd, 0, 0) == errno.ESPIPE
    assert errno_of(proc.write, pidfd, 8) == errno.EINVAL
    assert errno_of(proc.pwrite, pidfd, 8, 0) == errno.EINVAL
    assert errno_of(proc.ftruncate, pidfd, 0) == errno.EOPNOTSUPP
    assert errno_of(proc.fallocate, pidfd, 0, 0, P) == errno.EOPNOTSUPP
    assert errno_of(proc.read, pidfd, 8) == errno.EINVAL
    assert errno_of(proc.pread, pidfd, 8, 0) == errno.EINVAL
    assert errno_of(proc.readahead, pidfd, 0, P) == errno.EINVAL
    assert errno_of(proc.fsync, pidfd) == errno.EINVAL
    assert proc.fadvise(pidfd, 0, 0, POSIX_FADV_WILLNEED) == 0
    assert errno_of(proc.openat, pidfd, "x") == errno.ENOTDIR


def test_a_host_file_is_cached_at_its_first_use_only():
    true = shutil.which("true") or "/usr/bin/true"
    k = Kernel(seed=1)
    proc = k.spawn()
    before = k.node.nr_file_pages
    assert errno_of(proc.execve, "/etc/hostname") == errno.ENOEXEC
    assert k.node.nr_file_pages == before      # a failed exec read nothing in
    proc.execve(true)
    assert k.node.nr_file_pages > before and k.node.events["pgmajfault"] == 0


def test_mlocked_page_cache_counts_as_unreclaimable_room():
    # Found by test_resources' fuzzer once mlock's fault read a file ahead: the check
    # before an anonymous touch ignored the mlocked page, the touch failed part-way.
    k = Kernel(memory=64 * P, overcommit_memory=1)
    proc = k.spawn()
    k.create_file("/f", 20 * P)
    fd = proc.open("/f")
    base = proc.mmap(0, 8 * 32 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.mmap(base + 4 * 32 * P, 32 * P, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)
    proc.mlock(base + 4 * 32 * P, P)
    before = k.proc_read(f"/proc/{proc.pid}/smaps"), k.proc_read("/proc/meminfo")
    assert errno_of(proc.touch, base, 32 * P) == errno.ENOMEM
    assert (k.proc_read(f"/proc/{proc.pid}/smaps"), k.proc_read("/proc/meminfo")) == before

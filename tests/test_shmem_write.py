"""shmem pages from write(2) and fallocate(2) (shmem_write_begin and shmem_fallocate
through shmem_get_folio with SGP_WRITE / SGP_FALLOC): the folio orders shmem_enabled
allows without a VMA, fallocated folios not up to date until used, and the room check.

Live checks: the host's memfd under its own settings (shmem_enabled=never), and a
tmpfs mounted in a private mount namespace with each ``huge=`` value, whose write and
fallocate paths run the same shmem_huge_global_enabled as the internal mount does with
the top-level shmem_enabled (nothing host-wide is changed; the mount goes with the
child that made it)."""

import ctypes
import errno
import mmap
import os
import tempfile

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import MAP_SHARED, PROT_READ, PROT_WRITE

T = "/sys/kernel/mm/transparent_hugepage/"
P = 4096
PMD = 2 << 20
MiB = 1 << 20
RW = PROT_READ | PROT_WRITE
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 0x10


def setup(shmem_enabled=None, memory=1 << 30, **sizes):
    k = Kernel(memory=memory)
    if shmem_enabled is not None:
        k.proc_write(T + "shmem_enabled", shmem_enabled)
    for kb, mode in sizes.items():
        k.proc_write(f"{T}hugepages-{kb.removeprefix('s')}kB/shmem_enabled", mode)
    return k, k.spawn()


def folios(p, fd):
    """The file's folios as (first index, order), in index order."""
    cache = p.fds[fd].inode.cache
    out = []
    for i in sorted(cache):
        page = cache[i]
        if not i & ((1 << page.order) - 1):
            out.append((i, page.order))
    return out


def meminfo(k):
    return {line.split(":")[0]: int(line.split()[1])
            for line in k.proc_read("/proc/meminfo").splitlines()}


def stat(k, kb, name):
    return int(k.proc_read(f"{T}hugepages-{kb}kB/stats/{name}"))


def vmstat(k, name):
    for line in k.proc_read("/proc/vmstat").splitlines():
        a, b = line.split()
        if a == name:
            return int(b)
    raise KeyError(name)


# --------------------------------------------------- the cases both kernels run

def _cases(write, pwrite, ftruncate, fallocate):
    """(name, action) pairs: what each does to a new, empty file."""
    return [
        ("write1@0", lambda fd: pwrite(fd, 1, 0)),
        ("write64k@0", lambda fd: pwrite(fd, 65536, 0)),
        ("write1@1M", lambda fd: pwrite(fd, 1, MiB)),
        ("write4k@16k_size4k", lambda fd: (ftruncate(fd, P), pwrite(fd, P, 16384))),
        ("falloc64k", lambda fd: fallocate(fd, 0, 0, 65536)),
        ("falloc2M", lambda fd: fallocate(fd, 0, 0, PMD)),
        ("falloc_keep64k_size0", lambda fd: fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 65536)),
        ("falloc4k@8k_size3M", lambda fd: (ftruncate(fd, 3 * MiB), fallocate(fd, 0, 8192, P))),
        ("write4k@2M+8k_size3M", lambda fd: (ftruncate(fd, 3 * MiB),
                                              pwrite(fd, P, PMD + 8192))),
    ]


def _sim_blocks(mode):
    """{case: (size, 512-byte blocks)} of mmsim's memfd under shmem_enabled ``mode``."""
    k, p = setup(mode)
    out = {}
    cases = _cases(p.write, lambda fd, n, off: p.pwrite(fd, n, off), p.ftruncate,
                   p.fallocate)
    for name, action in cases:
        fd = p.memfd_create(name)
        action(fd)
        inode = p.fds[fd].inode
        out[name] = [inode.size, len(inode.cache) * 8]
        p.close(fd)
    return out


# What the live kernel's tmpfs answered (tests/test_shmem_write.py's live check
# compares it again where it can mount one): sizes, then blocks, per huge= value.
BLOCKS = {
    "always": [4096] * 9,
    "within_size": [8, 128, 8, 8, 128, 4096, 128, 4096, 2048],
    "advise": [8, 128, 8, 8, 128, 4096, 128, 8, 8],
    "never": [8, 128, 8, 8, 128, 4096, 128, 8, 8],
}
SIZES = [1, 65536, MiB + 1, 20480, 65536, PMD, 0, 3 * MiB, 3 * MiB]


@pytest.mark.parametrize("mode", sorted(BLOCKS))
def test_write_and_fallocate_allocate_what_the_kernel_does(mode):
    got = _sim_blocks(mode)
    assert [v[0] for v in got.values()] == SIZES
    assert [v[1] for v in got.values()] == BLOCKS[mode]


def test_always_tries_the_pmd_size_first_for_a_one_byte_write():
    k, p = setup("always")
    fd = p.memfd_create("x")
    alloc, file_alloc = stat(k, 2048, "shmem_alloc"), vmstat(k, "thp_file_alloc")
    p.pwrite(fd, 1, 0)
    assert folios(p, fd) == [(0, 9)]
    assert stat(k, 2048, "shmem_alloc") == alloc + 1
    assert vmstat(k, "thp_file_alloc") == file_alloc + 1
    assert meminfo(k)["ShmemHugePages"] == 2048 and meminfo(k)["Shmem"] >= 2048
    # A page of the next block cached already (written under never): a write there
    # takes the largest order whose aligned range of the cache is empty.
    k.proc_write(T + "shmem_enabled", "never")
    p.pwrite(fd, 1, PMD + 5 * P)
    k.proc_write(T + "shmem_enabled", "always")
    p.pwrite(fd, 2 * P, PMD - P)
    assert folios(p, fd) == [(0, 9), (512, 2), (517, 0)]
    assert stat(k, 16, "shmem_alloc") == 1


def test_within_size_orders_end_inside_the_file_or_the_write():
    k, p = setup("within_size")
    fd = p.memfd_create("x")
    p.fallocate(fd, 0, 0, 65536)                 # write end 64 kB: one 64 kB folio
    assert folios(p, fd) == [(0, 4)]
    assert stat(k, 64, "shmem_alloc") == 1
    p.ftruncate(fd, 3 * MiB)
    p.pwrite(fd, P, PMD + 8192)                  # 1 MiB block ends at 3 MiB
    assert (512, 8) in folios(p, fd)
    assert stat(k, 1024, "shmem_alloc") == 1


def test_write_ignores_the_per_size_knobs_and_madvise_modes():
    """Without a VMA only the top-level value counts: advise has no VM_HUGEPAGE to
    see, and hugepages-<N>kB/shmem_enabled is for mappings of anonymous shmem."""
    for mode, sizes in (("never", {"s64": "always", "s2048": "always"}),
                        ("advise", {}), ("deny", {}),
                        ("never", {"s2048": "advise"})):
        k, p = setup(mode, **sizes)
        fd = p.memfd_create("x")
        p.write(fd, 4 * MiB)
        p.fallocate(fd, 0, 4 * MiB, 4 * MiB)
        assert {o for _, o in folios(p, fd)} == {0}, (mode, sizes)


def test_force_gives_the_pmd_size_only():
    """force offers the PMD order alone: a block holding a page already gets base
    pages, an empty one a PMD-size folio."""
    k, p = setup()
    fd = p.memfd_create("x")
    p.pwrite(fd, 1, 5 * P)
    k.proc_write(T + "shmem_enabled", "force")
    p.pwrite(fd, 1, 0)
    p.pwrite(fd, 1, PMD)
    assert folios(p, fd) == [(0, 0), (5, 0), (512, 9)]


def test_fallocated_pages_wait_for_a_fault_or_a_write():
    """A fallocated folio is not up to date: fault-around skips it, a fault clears
    and maps it, a write marks it up to date (live: Rss 4 kB after fallocate, 64 kB
    after a write, below)."""
    k, p = setup()
    fd = p.memfd_create("x")
    p.fallocate(fd, 0, 0, 64 * 1024)
    a = p.mmap(0, PMD, RW, MAP_SHARED, fd, 0)
    p.touch(a, 1, write=False)
    assert p.mm.rss_shmem == 1
    p.pwrite(fd, 8 * P, 8 * P)
    p.munmap(a, PMD)
    a = p.mmap(0, PMD, RW, MAP_SHARED, fd, 0)
    p.touch(a, 1, write=False)
    assert p.mm.rss_shmem == 9   # page 0 (cleared by the first fault) and pages 8..15


def test_a_fallocated_pmd_folio_is_mapped_by_the_fault_that_clears_it():
    k, p = setup("always")
    fd = p.memfd_create("x")
    p.fallocate(fd, 0, 0, PMD)
    assert meminfo(k)["ShmemHugePages"] == 2048 and meminfo(k)["ShmemPmdMapped"] == 0
    a = p.mmap(1 << 40, PMD, RW, MAP_SHARED | 0x10, fd, 0)   # MAP_FIXED, aligned
    p.touch(a + 5 * P, 1, write=False)
    assert meminfo(k)["ShmemPmdMapped"] == 2048
    assert p.mm.rss_shmem == 512


def test_zero_range_is_refused_and_a_write_that_does_not_fit_allocates_nothing():
    k, p = setup(memory=256 * MiB)
    fd = p.memfd_create("x")
    with pytest.raises(OSError) as e:
        p.fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, P)
    assert e.value.errno == errno.EOPNOTSUPP
    before = meminfo(k)["Shmem"]
    for call in (lambda: p.write(fd, 512 * MiB), lambda: p.fallocate(fd, 0, 0, 512 * MiB)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENOMEM
    assert meminfo(k)["Shmem"] == before and p.fds[fd].inode.size == 0
    # What fits is allocated, and freed by a truncation.
    p.write(fd, 8 * MiB)
    assert meminfo(k)["Shmem"] == before + 8 * 1024
    p.ftruncate(fd, 0)
    assert meminfo(k)["Shmem"] == before


def test_punch_hole_drops_what_write_made():
    k, p = setup()
    fd = p.memfd_create("x")
    p.ftruncate(fd, PMD)
    p.write(fd, 65536)
    p.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 32768)
    assert [i for i, _ in folios(p, fd)] == list(range(8, 16))


# ---------------------------------------------------------------- the live kernel

def _live_memfd():
    """In a child: size, st_blocks and Rss after a read of the first page of a shared
    mapping, for memfd writes and fallocates under the host's settings."""
    libc = live.load_libc()
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

    def fallocate(fd, mode, off, n):
        if libc.fallocate(fd, mode, off, n):
            raise OSError(ctypes.get_errno(), "fallocate")

    def rss(addr):
        cur = False
        with open("/proc/self/smaps") as f:
            for line in f:
                w = line.split()
                if "-" in w[0] and ":" not in w[0]:
                    s, e = (int(x, 16) for x in w[0].split("-"))
                    cur = s <= addr < e
                elif cur and w[0] == "Rss:":
                    return int(w[1])

    out = {}
    for name, action in _memfd_cases(lambda fd, n, off: os.pwrite(fd, b"x" * n, off),
                                     os.ftruncate, fallocate):
        fd = os.memfd_create(name)
        try:
            try:
                action(fd)
                err = 0
            except OSError as exc:
                err = exc.errno
            st = os.fstat(fd)
            addr = libc.mmap(None, PMD, RW, mmap.MAP_SHARED, fd, 0)
            ctypes.c_char.from_address(addr).value
            out[name] = [err, st.st_size, st.st_blocks, rss(addr)]
            libc.munmap(addr, PMD)
        finally:
            os.close(fd)
    return out


def _memfd_cases(pwrite, ftruncate, fallocate):
    return [
        ("write64k", lambda fd: pwrite(fd, 65536, 0)),
        ("pwrite_mid", lambda fd: (ftruncate(fd, PMD), pwrite(fd, 8192, 16384))),
        ("falloc64k", lambda fd: fallocate(fd, 0, 0, 65536)),
        ("falloc_keep", lambda fd: (ftruncate(fd, PMD), fallocate(fd, FALLOC_FL_KEEP_SIZE,
                                                                  0, 65536))),
        ("zero_range", lambda fd: (ftruncate(fd, PMD), fallocate(fd, FALLOC_FL_ZERO_RANGE,
                                                                 0, 65536))),
        ("punch", lambda fd: (ftruncate(fd, PMD), pwrite(fd, 65536, 0),
                              fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        0, 32768))),
        ("partial", lambda fd: (ftruncate(fd, PMD), pwrite(fd, 1, 8191))),
        ("big_aligned", lambda fd: pwrite(fd, PMD, 0)),
    ]


def _sim_memfd():
    k, p = setup()
    out = {}

    def fallocate(fd, mode, off, n):
        p.fallocate(fd, mode, off, n)

    for name, action in _memfd_cases(lambda fd, n, off: p.pwrite(fd, n, off), p.ftruncate,
                                     fallocate):
        fd = p.memfd_create(name)
        try:
            action(fd)
            err = 0
        except OSError as exc:
            err = exc.errno
        inode = p.fds[fd].inode
        blocks = len(inode.cache) * 8
        a = p.mmap(0, PMD, RW, MAP_SHARED, fd, 0)
        p.touch(a, 1, write=False)
        out[name] = [err, inode.size, blocks, p.mm.rss_shmem * 4]
        p.munmap(a, PMD)
        p.close(fd)
    return out


def _host_never():
    try:
        with open(T + "shmem_enabled") as f:
            return "[never]" in f.read()
    except OSError:
        return False


@pytest.mark.live
def test_live_memfd_write_and_fallocate_under_the_host_settings():
    if not _host_never():
        pytest.skip("the host's shmem_enabled is not never")
    got = live.in_child(_live_memfd, "memfd write/fallocate")
    assert got == _sim_memfd()
    assert got["big_aligned"][2] == 4096 and got["falloc64k"][3] == 4


def _live_tmpfs(huge):
    """In a child with its own mount namespace: a tmpfs mounted with ``huge=`` and the
    size and st_blocks of each of ``_cases`` there; None when it cannot mount."""
    libc = live.load_libc()
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x20000, 0x4000, 1 << 18
    if libc.unshare(CLONE_NEWNS):
        return None
    # Nothing this namespace mounts may reach the host's.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None):
        return None
    where = tempfile.mkdtemp()
    if libc.mount(b"none", where.encode(), b"tmpfs", 0,
                  f"huge={huge},size=64m".encode()):
        os.rmdir(where)
        return None

    def fallocate(fd, mode, off, n):
        if libc.fallocate(fd, mode, off, n):
            raise OSError(ctypes.get_errno(), "fallocate")

    out = {}
    try:
        for name, action in _cases(None, lambda fd, n, off: os.pwrite(fd, b"x" * n, off),
                                   os.ftruncate, fallocate):
            path = os.path.join(where, name)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                action(fd)
                st = os.fstat(fd)
                out[name] = [st.st_size, st.st_blocks]
            finally:
                os.close(fd)
                os.unlink(path)
    finally:
        libc.umount2(where.encode(), 0)
        os.rmdir(where)
    return out


@pytest.mark.live
@pytest.mark.parametrize("huge", sorted(BLOCKS))
def test_live_tmpfs_huge_option_matches_shmem_enabled_for_write_and_fallocate(huge):
    if os.geteuid() != 0:
        pytest.skip("mounting a private tmpfs needs root")
    got = live.in_child(lambda: _live_tmpfs(huge), f"tmpfs huge={huge}")
    if got is None:
        pytest.skip("could not mount a tmpfs in a private mount namespace")
    assert got == _sim_blocks(huge)


# ------------------------------------------------- the file's last reference frees it

def shmem_kb(k):
    return meminfo(k)["Shmem"]


def test_pages_go_with_the_last_descriptor_or_mapping():
    """shmem_evict_inode at the file's last reference: a memfd's pages stay while a
    descriptor or a mapping (a fork child's too) holds it, and go with the last;
    a shared anonymous mapping's go with its munmap."""
    k, p = setup()
    fd = p.memfd_create("x")
    p.write(fd, MiB)
    a = p.mmap(0, MiB, RW, MAP_SHARED, fd, 0)
    p.touch(a, P)
    p.close(fd)
    assert shmem_kb(k) == 1024
    child = p.fork()
    p.munmap(a, MiB)
    assert shmem_kb(k) == 1024
    child.exit(0)
    assert shmem_kb(k) == 0
    fd = p.memfd_create("y")
    p.fallocate(fd, 0, 0, MiB)
    dup = p.dup(fd)
    p.close(fd)
    assert shmem_kb(k) == 1024
    p.exit(0)
    assert shmem_kb(k) == 0
    q = k.spawn()
    b = q.mmap(0, MiB, RW, MAP_SHARED | 0x20)   # MAP_ANONYMOUS
    q.touch(b, MiB)
    q.mmap(b, P, RW, MAP_SHARED | 0x20 | 0x10)  # MAP_FIXED over one page: still held
    assert shmem_kb(k) == 1024
    q.munmap(b, MiB)
    assert shmem_kb(k) == 0
    del dup


def _live_release():
    """Shmem (meminfo, kB) after 64 MiB written to a memfd, and after its close."""
    def shm():
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Shmem:"))
    s0 = shm()
    fd = os.memfd_create("release")
    os.write(fd, b"\0" * (64 * MiB))
    s1 = shm()
    os.close(fd)
    return [s1 - s0, shm() - s0]


@pytest.mark.live
def test_live_memfd_pages_go_with_its_last_descriptor():
    grew, left = live.in_child(_live_release, "memfd release")
    k, p = setup()
    fd = p.memfd_create("release")
    p.write(fd, 64 * MiB)
    sim_grew = shmem_kb(k)
    p.close(fd)
    assert sim_grew == 64 * 1024 and shmem_kb(k) == 0
    # Other processes' shmem moves meanwhile: a margin of 8 MiB either way.
    assert abs(grew - sim_grew) < 8 * 1024 and abs(left) < 8 * 1024

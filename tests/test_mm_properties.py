"""Property tests of the single-process core: any sequence of memory syscalls keeps the
address space consistent, and nothing but OSError ever escapes a syscall."""

import errno

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mmsim import pages
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLD, MADV_COLLAPSE, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP,
                        MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_GUARD_INSTALL,
                        MADV_HUGEPAGE, MADV_KEEPONFORK, MADV_MERGEABLE, MADV_NOHUGEPAGE,
                        MADV_NORMAL, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM,
                        MADV_REMOVE, MADV_SEQUENTIAL, MADV_UNMERGEABLE, MADV_WILLNEED,
                        MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE,
                        MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE,
                        MAP_SHARED, MLOCK_ONFAULT, MREMAP_DONTUNMAP, MREMAP_FIXED,
                        MREMAP_MAYMOVE, PROT_EXEC, PROT_GROWSDOWN, PROT_NONE, PROT_READ,
                        PROT_WRITE)

P = 4096
BASE = 0x200000000000
REGION = 64 * P  # a small window so calls collide
PMD = 2 << 20

page_no = st.integers(0, 63)
prots = st.sampled_from([PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC,
                         PROT_READ | PROT_WRITE | PROT_EXEC])
# Mostly well-formed arguments, sometimes deliberately bad ones.
lengths = st.one_of(st.integers(1, 16).map(lambda n: n * P), st.integers(0, 5 * P),
                    st.sampled_from([-1, 0, 1 << 63, (1 << 64) - P]))
addrs = st.one_of(page_no.map(lambda n: BASE + n * P), st.integers(BASE, BASE + REGION),
                  st.sampled_from([0, -P, 1 << 47, (1 << 64) - P]))
ADVICE = [MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE,
          MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE,
          MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK,
          MADV_KEEPONFORK, MADV_COLD, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_COLLAPSE,
          MADV_GUARD_INSTALL, 99, -1]
map_flags = st.builds(
    lambda kind, fixed, extra: kind | MAP_ANONYMOUS | fixed | extra,
    st.sampled_from([MAP_PRIVATE, MAP_SHARED, 0]),
    st.sampled_from([MAP_FIXED, MAP_FIXED_NOREPLACE, 0]),
    st.sampled_from([0, MAP_NORESERVE, MAP_POPULATE, MAP_LOCKED, MAP_GROWSDOWN]))


def call(fn, *args):
    """Run a syscall; only OSError may come out (anything else fails the test)."""
    try:
        return fn(*args)
    except OSError as exc:
        assert exc.errno in errno.errorcode, exc
        return -exc.errno


class SyscallMachine(RuleBasedStateMachine):
    """Random memory syscalls on one process; check every invariant after each."""

    @initialize(thp=st.sampled_from(["always", "madvise", "never"]),
                limit=st.sampled_from([65530, 12, 24]))
    def setup(self, thp, limit):
        self.kernel = Kernel(thp=thp, seed=1, max_map_count=limit)
        self.proc = self.kernel.spawn()

    @rule(addr=addrs, length=lengths, prot=prots, flags=map_flags)
    def mmap(self, addr, length, prot, flags):
        result = call(self.proc.mmap, addr, length, prot, flags)
        if result >= 0 and flags & MAP_FIXED:
            assert result == addr

    @rule(start=page_no, pages_=st.integers(1, 1024))
    def mmap_big(self, start, pages_):
        call(self.proc.mmap, BASE + start * P, pages_ * P, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)

    @rule(addr=addrs, length=lengths)
    def munmap(self, addr, length):
        call(self.proc.munmap, addr, length)

    @rule(addr=addrs, length=lengths, prot=prots, grows=st.sampled_from([0, 0, PROT_GROWSDOWN]))
    def mprotect(self, addr, length, prot, grows):
        call(self.proc.mprotect, addr, length, prot | grows)

    @rule(addr=addrs, length=lengths, advice=st.sampled_from(ADVICE))
    def madvise(self, addr, length, advice):
        call(self.proc.madvise, addr, length, advice)

    @rule(old=addrs, old_len=lengths, new_len=lengths, new=addrs,
          flags=st.sampled_from([0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED,
                                 MREMAP_MAYMOVE | MREMAP_DONTUNMAP, MREMAP_FIXED, 8]))
    def mremap(self, old, old_len, new_len, new, flags):
        call(self.proc.mremap, old, old_len, new_len, flags, new)

    @rule(addr=addrs, length=lengths, how=st.sampled_from(["mlock", "onfault", "munlock"]))
    def lock(self, addr, length, how):
        if how == "mlock":
            call(self.proc.mlock, addr, length)
        elif how == "onfault":
            call(self.proc.mlock2, addr, length, MLOCK_ONFAULT)
        else:
            call(self.proc.munlock, addr, length)

    @rule(addr=addrs, length=lengths, write=st.booleans())
    def touch(self, addr, length, write):
        call(self.proc.touch, addr, length, write)

    @rule(delta=st.integers(-8, 40))
    def brk(self, delta):
        mm = self.proc.mm
        call(self.proc.brk, mm.brk + delta * P)

    @rule(bad=st.sampled_from([1.5, "x", None, [1]]))
    def wrong_types(self, bad):
        assert call(self.proc.munmap, bad, P) == -errno.EINVAL
        assert call(self.proc.madvise, BASE, bad, MADV_DONTNEED) == -errno.EINVAL

    @invariant()
    def consistent(self):
        mm = self.proc.mm
        mm.check()
        vmas = mm.vmas()
        assert mm.map_count == len(vmas)
        resident = {"anon": 0, "file": 0, "shmem": 0}
        for vma in vmas:
            for _, n, _, anon, *_ in pages.page_states(vma):
                kind = "anon" if anon else ("shmem" if vma.file and vma.file.shmem else "file")
                resident[kind] += n
        assert (mm.rss_anon, mm.rss_file, mm.rss_shmem) == (
            resident["anon"], resident["file"], resident["shmem"])
        assert mm.hiwater_rss >= mm.rss_anon + mm.rss_file + mm.rss_shmem
        # /proc views render without error and agree with the VMA list.
        maps = self.kernel.proc_read(f"/proc/{self.proc.pid}/maps").splitlines()
        assert len(maps) == len(vmas) + 1     # the vsyscall gate area is no VMA
        self.kernel.proc_read(f"/proc/{self.proc.pid}/smaps")
        self.kernel.proc_read(f"/proc/{self.proc.pid}/status")


SyscallMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_syscall_sequences = SyscallMachine.TestCase


def test_rss_counts_faults_minus_zaps():
    """rss equals the pages faulted minus those zapped, THPs counting 512."""
    k = Kernel(thp="always", randomize=False)
    p = k.spawn()
    a = p.mmap(0, 4 * PMD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    assert a % PMD == 0
    p.touch(a, 3 * P)                      # first touch of an aligned PMD: one THP
    assert p.mm.rss_anon == 512
    p.madvise(a + P, P, MADV_DONTNEED)     # a partial zap splits it: 511 stay
    assert p.mm.rss_anon == 511
    p.touch(a + 2 * PMD, 1, write=False)   # a read maps the zero page: nothing resident
    assert p.mm.rss_anon == 511
    p.munmap(a, PMD)
    assert p.mm.rss_anon == 0
    assert p.mm.hiwater_rss == 512
    assert pages.rss_pages(p.mm.vma_lookup(a + PMD)) == 0


def test_guard_regions():
    """MADV_GUARD_INSTALL zaps and marks pages so a touch faults; markers survive
    MADV_DONTNEED, follow their pages through a split and a move, and GUARD_REMOVE
    clears them (mm/madvise.c madvise_guard_install/remove)."""
    from mmsim.uapi import MADV_GUARD_REMOVE
    k = Kernel(randomize=False)
    p = k.spawn()
    a = p.mmap(0, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    p.touch(a, 8 * P)
    p.madvise(a + 2 * P, 2 * P, MADV_GUARD_INSTALL)
    assert p.mm.rss_anon == 6
    assert "gu" in k.proc_read(f"/proc/{p.pid}/smaps")
    assert call(p.touch, a + 3 * P, 1) == -errno.EFAULT
    assert call(p.madvise, a + 3 * P, P, MADV_POPULATE_WRITE) == -errno.EFAULT
    p.madvise(a, 8 * P, MADV_DONTNEED)
    assert call(p.touch, a + 2 * P, 1) == -errno.EFAULT
    p.mprotect(a + 2 * P, P, PROT_READ)          # split: the markers go with their pages
    assert call(p.touch, a + 2 * P, 1, False) == -errno.EFAULT
    p.mprotect(a + 2 * P, P, PROT_READ | PROT_WRITE)
    b = p.mremap(a, 8 * P, 8 * P, MREMAP_MAYMOVE | MREMAP_FIXED, a + 64 * P)
    assert call(p.touch, b + 3 * P, 1) == -errno.EFAULT
    p.madvise(b, 8 * P, MADV_GUARD_REMOVE)
    assert p.touch(b, 8 * P) == 0
    p.mm.check()


def test_brk_rules():
    """SYSCALL_DEFINE1(brk) / do_brk_flags: growth extends the heap VMA, stops a page
    short of the next mapping, never merges with a VMA below start_brk, and a failed
    request returns the old break."""
    k = Kernel(randomize=False)
    p = k.spawn()
    mm = p.mm
    base = mm.start_brk
    # An anonymous RW mapping ending exactly at start_brk must not be extended.
    p.mmap(base - P, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert p.brk(base + 3 * P) == base + 3 * P
    heap = mm.vma_lookup(base)
    assert (heap.start, heap.end) == (base, base + 3 * P)
    assert mm.map_count == 2
    assert p.brk(base + 5 * P) == base + 5 * P and mm.map_count == 2   # extended in place
    assert "[heap]" in k.proc_read(f"/proc/{p.pid}/maps")
    # A mapping 2 pages above the break: growing up to it would leave no free page.
    p.mmap(base + 8 * P, P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert p.brk(base + 8 * P) == base + 5 * P
    assert p.brk(base + 7 * P) == base + 7 * P
    assert p.brk(base - 1) == base + 7 * P        # below start_brk: refused
    assert p.brk(base + P) == base + P            # shrink
    assert mm.vma_lookup(base + P) is None
    mm.check()

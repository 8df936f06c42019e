"""The fused fast paths (mmsim.fastpath) do what the general path does: random calls run
on two kernels, one with the fast paths and one without, give the same results and
errnos and leave the same VMAs, accounting and /proc/PID/smaps after every step.  The
calls include what must leave the fast paths (file and shared mappings, mlocked VMAs,
resident pages, guard markers, fork children, MDWE, max_map_count, bad arguments)."""

import collections
import errno
import random
import re

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mmsim import fastpath
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_DONTNEED, MADV_GUARD_INSTALL, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
                        MADV_WILLNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_LOCKED, MAP_NORESERVE,
                        MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MCL_FUTURE, O_RDWR,
                        PR_SET_MDWE, PR_SET_THP_DISABLE, PROT_EXEC, PROT_READ, PROT_WRITE)

P = 4096
BASE = 0x200000000000
FIXED_ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED

page_no = st.integers(0, 47)
addrs = st.one_of(page_no.map(lambda n: BASE + n * P), page_no.map(lambda n: BASE + n * P),
                  st.integers(BASE, BASE + 48 * P), st.sampled_from([0, P, 1 << 47]))
lengths = st.one_of(st.integers(1, 12).map(lambda n: n * P), st.integers(1, 12).map(lambda n: n * P),
                    st.integers(0, 3 * P), st.sampled_from([1 << 63, (1 << 64) - P]))
prots = st.one_of(st.integers(0, 3), st.integers(0, 7), st.sampled_from([8, 0x01000000]))
map_flags = st.one_of(st.just(FIXED_ANON), st.just(FIXED_ANON),
                      st.sampled_from([FIXED_ANON | MAP_LOCKED, FIXED_ANON | MAP_POPULATE,
                                       FIXED_ANON | MAP_NORESERVE,
                                       MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                                       MAP_PRIVATE | MAP_ANONYMOUS, "file", "shared-file"]))
advices = st.sampled_from([MADV_DONTNEED, MADV_DONTNEED, MADV_NOHUGEPAGE, MADV_NOHUGEPAGE,
                           MADV_HUGEPAGE, MADV_WILLNEED, MADV_GUARD_INSTALL, -1])


def state(kernel, proc):
    """Everything the comparison looks at, for one process."""
    mm = proc.mm
    vmas = [(v.start, v.end, v.vm_flags, v.pgoff, v.anon_vma is not None, v.forked,
             bool(v.pages), bool(v.guards)) for v in mm.vmas()]
    mm.tree.check()
    return (vmas, mm.total_vm, mm.hiwater_vm, mm.map_count, kernel.committed_as,
            mm.rss_anon, _INODE.sub(r"\1 0", kernel.proc_read(f"/proc/{proc.pid}/smaps")))


# The inode column of a smaps header: inode numbers come from a counter shared by every
# Kernel in the interpreter, so the two kernels' files differ there.
_INODE = re.compile(r"(?m)^([0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+) +\d+")


def outcome(fn):
    """A call's result, or its errno."""
    try:
        return "ok", fn()
    except OSError as e:
        return "err", e.errno


class FastVsGeneral(RuleBasedStateMachine):
    """The same calls on a kernel with the fast paths and on one without them."""

    @initialize(max_map_count=st.sampled_from([8, 16, 65530]))
    def setup(self, max_map_count):
        self.sides = []
        for fast in (True, False):
            kernel = Kernel(seed=0, max_map_count=max_map_count)
            kernel.create_file("/f", 64 * P)
            proc = kernel.spawn()
            fd = proc.open("/f", O_RDWR)
            self.sides.append([fast, kernel, proc, fd])

    def both(self, call):
        results = []
        try:
            for side in self.sides:
                fastpath.ENABLED = side[0]
                results.append(outcome(lambda: call(side)))
        finally:
            fastpath.ENABLED = True
        assert results[0] == results[1]
        return results[0]

    @rule(addr=addrs, length=lengths, prot=prots, flags=map_flags)
    def mmap(self, addr, length, prot, flags):
        def call(side):
            proc, fd = side[2], side[3]
            if flags == "file":
                return proc.mmap(addr, length, prot, MAP_PRIVATE | MAP_FIXED, fd, 0)
            if flags == "shared-file":
                return proc.mmap(addr, length, prot, MAP_SHARED | MAP_FIXED, fd, 0)
            return proc.mmap(addr, length, prot, flags, -1, 0)
        self.both(call)

    @rule(addr=addrs, length=lengths)
    def munmap(self, addr, length):
        self.both(lambda side: side[2].munmap(addr, length))

    @rule(addr=addrs, length=lengths, prot=prots)
    def mprotect(self, addr, length, prot):
        self.both(lambda side: side[2].mprotect(addr, length, prot))

    @rule(addr=addrs, length=lengths, advice=advices)
    def madvise(self, addr, length, advice):
        self.both(lambda side: side[2].madvise(addr, length, advice))

    @rule(addr=page_no.map(lambda n: BASE + n * P), n=st.integers(1, 4), write=st.booleans())
    def touch(self, addr, n, write):
        self.both(lambda side: side[2].touch(addr, n * P, write))

    @rule(addr=page_no.map(lambda n: BASE + n * P), n=st.integers(1, 8))
    def mlock(self, addr, n):
        self.both(lambda side: side[2].mlock(addr, n * P))

    @rule()
    def fork(self):
        """Go on in a fork child: its VMAs are fork children's copies."""
        def call(side):
            side[2] = side[2].fork()
            return 0
        self.both(call)

    @rule(option=st.sampled_from(["mdwe", "thp", "mlockall"]))
    def mm_setting(self, option):
        def call(side):
            proc = side[2]
            if option == "mdwe":
                return proc.prctl(PR_SET_MDWE, 1)
            if option == "thp":
                return proc.prctl(PR_SET_THP_DISABLE, 1)
            return proc.mlockall(MCL_FUTURE)
        self.both(call)

    @invariant()
    def same_state(self):
        if hasattr(self, "sides"):
            a, b = (state(side[1], side[2]) for side in self.sides)
            assert a == b


FastVsGeneral.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestFastVsGeneral = FastVsGeneral.TestCase


def test_fast_paths_are_taken_and_left(monkeypatch):
    """The comparison above is not vacuous: on random calls of the replay benchmark's
    shapes, each fast path answers many calls itself and leaves some (resident pages,
    a locked VMA) to the general path."""
    taken = collections.Counter()
    for name in ("mmap", "munmap", "mprotect", "madvise"):
        fn = getattr(fastpath, name)

        def counted(*args, fn=fn, name=name):
            result = fn(*args)
            taken[name, "general" if result is None else "fast"] += 1
            if result is not None and result < 0:
                taken[name, "error"] += 1
            return result
        monkeypatch.setattr(fastpath, name, counted)
    rng = random.Random(5)
    proc = Kernel(seed=0).spawn()
    for _ in range(3000):
        addr = BASE + rng.randrange(256) * P
        length = rng.randint(1, 16) * P
        op = rng.random()
        try:
            if op < 0.3:
                proc.mmap(addr, length, rng.choice([PROT_READ, PROT_READ | PROT_WRITE]),
                          FIXED_ANON | (MAP_LOCKED if rng.random() < 0.02 else 0))
            elif op < 0.5:
                proc.mprotect(addr, length, rng.choice([PROT_READ, PROT_READ | PROT_WRITE]))
            elif op < 0.7:
                proc.madvise(addr, length, rng.choice([MADV_DONTNEED, MADV_NOHUGEPAGE]))
            elif op < 0.85:
                proc.munmap(addr, length)
            else:
                proc.touch(addr, P, True)
        except OSError:
            pass
    for name in ("mmap", "munmap", "mprotect", "madvise"):
        assert taken[name, "fast"] > 50, (name, taken)
    for name in ("mprotect", "madvise"):
        assert taken[name, "general"] > 5, (name, taken)
    assert taken["mprotect", "error"] > 5 and taken["madvise", "error"] > 5


def _random_call(rng, window):
    """One random call, mostly of the fast paths' shapes: a function of a side."""
    addr = BASE + rng.randrange(window) * P
    if rng.random() < 0.03:
        addr += rng.randrange(1, P)
    length = rng.randint(1, 16) * P if rng.random() < 0.95 else rng.randrange(0, 3 * P)
    prot = rng.choice([PROT_READ, PROT_READ | PROT_WRITE, PROT_READ, PROT_READ | PROT_WRITE,
                       0, PROT_READ | PROT_EXEC, PROT_WRITE | PROT_EXEC, 8])
    op = rng.random()
    if op < 0.3:
        flags = FIXED_ANON
        if rng.random() < 0.08:
            flags = rng.choice([FIXED_ANON | MAP_LOCKED, FIXED_ANON | MAP_NORESERVE,
                                FIXED_ANON | MAP_POPULATE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                                MAP_PRIVATE | MAP_FIXED, MAP_SHARED | MAP_FIXED])
        return lambda side: side[2].mmap(addr, length, prot, flags,
                                         -1 if flags & MAP_ANONYMOUS else side[3], 0)
    if op < 0.5:
        return lambda side: side[2].mprotect(addr, length, prot)
    if op < 0.7:
        advice = rng.choice([MADV_DONTNEED, MADV_NOHUGEPAGE, MADV_DONTNEED, MADV_NOHUGEPAGE,
                             MADV_HUGEPAGE, MADV_GUARD_INSTALL])
        return lambda side: side[2].madvise(addr, length, advice)
    if op < 0.85:
        return lambda side: side[2].munmap(addr, length)
    if op < 0.97:
        write = rng.random() < 0.7
        size = rng.randint(1, 3) * P
        return lambda side: side[2].touch(addr, size, write)
    if op < 0.985:
        return lambda side: side[2].mlock(addr, length)

    def fork(side):
        side[2] = side[2].fork()
        return 0
    return fork


@pytest.mark.parametrize("seed", range(9))
def test_random_sequences_agree(seed):
    """Long seeded sequences of calls, compared after every step (and /proc/PID/smaps
    every tenth): they reach the rarer merges (three-way, with anon_vmas, with fork
    children) that short examples seldom do."""
    rng = random.Random(seed)
    pair = FastVsGeneral()
    pair.setup(max_map_count=rng.choice([12, 65530]))
    window = (16, 32, 96)[seed % 3]
    for step in range(1500):
        call = _random_call(rng, window)
        pair.both(call)
        if step % 10:
            a, b = ([(v.start, v.end, v.vm_flags, v.pgoff, v.anon_vma is not None, v.forked)
                     for v in side[2].mm.vmas()] + [side[2].mm.total_vm, side[1].committed_as,
                                                    side[2].mm.hiwater_vm]
                    for side in pair.sides)
            assert a == b, step
        else:
            pair.same_state()


@pytest.mark.parametrize("fast", [True, False])
def test_split_at_max_map_count(fast):
    """A fused mprotect that must split at vm.max_map_count fails as the general one:
    ENOMEM, and a madvise that must split gives EAGAIN."""
    kernel = Kernel(seed=0, max_map_count=3)
    proc = kernel.spawn()
    base = proc.mmap(BASE, 8 * P, PROT_READ, FIXED_ANON)
    fastpath.ENABLED = fast
    try:
        while proc.mm.map_count < 3:
            proc.mmap(base + 2 * P * proc.mm.map_count, P, PROT_READ | PROT_WRITE, FIXED_ANON)
        with pytest.raises(OSError) as e:
            proc.mprotect(base + 7 * P, P, PROT_READ | PROT_EXEC)
        assert e.value.errno == errno.ENOMEM
        with pytest.raises(OSError) as e:
            proc.madvise(base + 7 * P, P, MADV_NOHUGEPAGE)
        assert e.value.errno == errno.EAGAIN
    finally:
        fastpath.ENABLED = True


def test_replay_direct_handlers_agree():
    """The replayer's direct handlers reach the fast paths: a benchmark-shaped trace
    replays to the same results and VMAs with them on and off."""
    from benchmarks import replay as replay_bench
    from mmsim.trace import Replayer, parse
    text, _ = replay_bench.workload(3000, seed=7)
    got = []
    for fast in (True, False):
        fastpath.ENABLED = fast
        try:
            rep = Replayer(Kernel(seed=0))
            outs = rep.run(parse(text, "bench"))
        finally:
            fastpath.ENABLED = True
        mm = rep.procs[None].mm
        got.append(([o.result for o in outs],
                    [(v.start, v.end, v.vm_flags, v.pgoff) for v in mm.vmas()],
                    mm.total_vm, rep.kernel.committed_as))
    assert got[0] == got[1]


@pytest.mark.parametrize("touched", ["prev", "next", "both", "none"])
@pytest.mark.parametrize("change", ["mprotect", "madvise"])
def test_three_way_merge_with_pages(touched, change):
    """A change of a whole untouched VMA to its neighbours' flags merges all three,
    the neighbours' pages (and anon_vma) going to the one VMA left."""
    pair = FastVsGeneral()
    pair.setup(max_map_count=65530)
    rw, nohuge = PROT_READ | PROT_WRITE, MADV_NOHUGEPAGE
    steps = [lambda side: side[2].mmap(BASE, 12 * P, rw, FIXED_ANON),
             lambda side: side[2].mmap(BASE + 4 * P, 4 * P, PROT_READ, FIXED_ANON)]
    if change == "madvise":
        steps = [lambda side: side[2].mmap(BASE, 12 * P, rw, FIXED_ANON),
                 lambda side: side[2].madvise(BASE, 4 * P, nohuge),
                 lambda side: side[2].madvise(BASE + 8 * P, 4 * P, nohuge)]
    if touched in ("prev", "both"):
        steps.append(lambda side: side[2].touch(BASE, 2 * P, True))
    if touched in ("next", "both"):
        steps.append(lambda side: side[2].touch(BASE + 9 * P, 2 * P, True))
    if change == "mprotect":
        steps.append(lambda side: side[2].mprotect(BASE + 4 * P, 4 * P, rw))
    else:
        steps.append(lambda side: side[2].madvise(BASE + 4 * P, 4 * P, nohuge))
    for step in steps:
        pair.both(step)
        pair.same_state()
    if touched != "both":
        assert pair.sides[0][2].mm.map_count == 1   # (two anon_vmas may keep two)


@pytest.mark.parametrize("fast", [True, False])
def test_mmap_that_grows_a_vma_registers_the_mm_with_khugepaged(fast):
    """A fixed mmap merged into a neighbour with an anon_vma makes it big enough for a
    huge page: both paths register the mm with khugepaged (__mmap_region's
    khugepaged_enter_vma), as they do nothing else differently."""
    from mmsim.khugepaged import MMF_VM_HUGEPAGE
    kernel = Kernel(seed=0, thp="always")
    proc = kernel.spawn()
    base = proc.mmap(BASE, P, PROT_READ | PROT_WRITE, FIXED_ANON)
    proc.touch(base, P, True)      # an anon_vma, but no aligned 2 MiB block to fault
    assert not proc.mm.flags & MMF_VM_HUGEPAGE
    fastpath.ENABLED = fast
    try:
        proc.mmap(base + P, 4 << 20, PROT_READ | PROT_WRITE, FIXED_ANON)
    finally:
        fastpath.ENABLED = True
    assert proc.mm.map_count == 1
    assert proc.mm.flags & MMF_VM_HUGEPAGE

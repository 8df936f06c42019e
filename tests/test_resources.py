"""Bounded resources: guard markers as ranges, populate / touch / mlock over huge
ranges (bounded work, ENOMEM before any change when the machine's memory would not
hold the pages), touch past EOF, RLIMIT_MEMLOCK, and process_madvise's MAX_RW_COUNT
cap and 32-bit flags; the kernel's answers are checked on the live kernel."""

import ctypes
import json
import os
import resource
import tracemalloc

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmsim import live, pages
from mmsim.kernel import Kernel
from mmsim.pages import PageRanges
from mmsim.vma import VM_LOCKED
from mmsim.uapi import (MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_NOHUGEPAGE,
                        MADV_POPULATE_READ, MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_LOCKED,
                        MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT,
                        MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MLOCK_ONFAULT,
                        MREMAP_MAYMOVE, PIDFD_SELF, PROT_READ, PROT_WRITE, RLIM_INFINITY,
                        RLIMIT_MEMLOCK, RLIMIT_STACK)

P = 4096
G = 1 << 30
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
HUGE = 64 << 40

needs_live = pytest.mark.skipif(not live.available()[0] or os.geteuid() != 0,
                                reason="needs the live Linux 6.x kernel and root: "
                                       f"{live.available()[1] or 'not root'}")


def errno_of(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        return -exc.errno


@pytest.fixture
def faults(monkeypatch):
    """Counts calls of pages.fault (the per-page work)."""
    calls = []
    real = pages.fault

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(pages, "fault", counting)
    return calls


def state(k, p):
    return k.proc_read(f"/proc/{p.pid}/smaps"), k.proc_read("/proc/meminfo")


# ---------------------------------------------------------------- guard markers


def test_guard_install_over_a_huge_range_keeps_one_range():
    k = Kernel()
    p = k.spawn()
    a = p.mmap(0, HUGE, RW, ANON | MAP_NORESERVE)
    tracemalloc.start()
    p.madvise(a, HUGE, MADV_GUARD_INSTALL)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 10        # independent of the range's size
    vma = p.mm.vma_lookup(a)
    assert vma.guards.ranges() == [(a >> 12, (a + HUGE) >> 12)]
    assert errno_of(p.touch, a + HUGE // 2, 1) == -14
    p.madvise(a + G, G, MADV_GUARD_REMOVE)
    p.touch(a + G, P)
    assert errno_of(p.touch, a + G - P, 1) == -14
    p.mm.check()


def test_guard_markers_follow_split_and_move():
    k = Kernel()
    p = k.spawn()
    a = p.mmap(0, 16 * P, RW, ANON)
    p.madvise(a + 2 * P, 4 * P, MADV_GUARD_INSTALL)
    p.mprotect(a + 4 * P, 8 * P, PROT_READ)         # splits through the guard region
    assert errno_of(p.touch, a + 3 * P, 1, False) == -14
    assert errno_of(p.touch, a + 5 * P, 1, False) == -14
    p.touch(a + 6 * P, P, False)
    b = p.mremap(a + 4 * P, 8 * P, 8 * P, MREMAP_MAYMOVE, 0)
    assert errno_of(p.touch, b + P, 1, False) == -14
    p.touch(b + 2 * P, P, False)
    child = p.fork()
    assert errno_of(child.touch, b + P, 1, False) == -14
    p.mm.check()
    child.mm.check()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "take"]), st.integers(0, 40),
                          st.integers(0, 12)), max_size=30), st.integers(0, 50))
def test_guard_ranges_behave_like_a_set_of_pages(ops, probe):
    ranges, model = PageRanges(), set()
    for op, lo, n in ops:
        hi = lo + n
        if op == "add":
            ranges.add(lo, hi)
            model |= set(range(lo, hi))
        elif op == "remove":
            ranges.remove(lo, hi)
            model -= set(range(lo, hi))
        else:
            part = ranges.take(lo, hi)
            taken = {v for v in model if lo <= v < hi}
            model -= taken
            got = set() if part is None else {v for s, e in part.ranges() for v in range(s, e)}
            assert got == taken
        pairs = ranges.ranges()
        assert all(s < e for s, e in pairs)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(pairs, pairs[1:]))   # disjoint, apart
        assert {v for s, e in pairs for v in range(s, e)} == model
        assert (probe in ranges) == (probe in model)
        first = ranges.first_in(probe, probe + 7)
        inside = [v for v in range(probe, probe + 7) if v in model]
        assert first == (inside[0] if inside else None)


# ---------------------------------------------------------------- bounded populate


def test_reading_huge_untouched_memory_visits_only_resident_pages(faults):
    k = Kernel()
    p = k.spawn()
    a = p.mmap(0, HUGE, RW, ANON | MAP_NORESERVE)
    p.touch(a + G, 3 * P)                          # three resident pages
    faults.clear()
    p.madvise(a, HUGE, MADV_POPULATE_READ)
    p.touch(a, HUGE, False)
    ro = p.mmap(0, HUGE // 4, PROT_READ, ANON | MAP_NORESERVE)
    p.mlock(ro, HUGE // 4)                              # read-only: the zero page, nothing new
    assert len(faults) <= 3 * (1 + 3)
    assert p.mm.rss_anon == 3
    p.mm.check()


@pytest.mark.parametrize("how", ["touch", "populate_write", "mlock", "map_populate",
                                 "map_locked"])
def test_populating_more_than_the_machine_has_changes_nothing(how, faults):
    k = Kernel(memory=64 << 20, overcommit_memory=1)
    p = k.spawn()
    a = p.mmap(0, 48 << 20, RW, ANON)
    p.touch(a, 32 << 20)                           # half the machine is in use
    b = p.mmap(0, HUGE, RW, ANON)
    before = state(k, p)
    faults.clear()
    if how == "touch":
        assert errno_of(p.touch, b, 64 << 20) == -12
    elif how == "populate_write":
        assert errno_of(p.madvise, b, 64 << 20, MADV_POPULATE_WRITE) == -12
    elif how == "mlock":
        assert errno_of(p.mlock, b, HUGE) == -11       # populate's ENOMEM reads EAGAIN
    elif how == "map_populate":
        # Simulator-defined: the mapping is made, the populate that would OOM is skipped.
        c = p.mmap(0, G, RW, ANON | MAP_POPULATE)
        assert pages.resident_in(p.mm.vma_lookup(c), c, c + G) == 0
        p.munmap(c, G)
    else:
        c = p.mmap(0, G, RW, ANON | MAP_LOCKED)
        p.munlock(c, G)
        p.munmap(c, G)
    assert state(k, p) == before
    assert faults == []
    # Within the machine's memory the same calls work.
    assert p.touch(b, 8 << 20) == 0 and p.mlock(b, 8 << 20) == 0
    p.mm.check()


def test_mlock_onfault_of_a_huge_range_needs_no_memory(faults):
    k = Kernel(memory=64 << 20, overcommit_memory=1)
    p = k.spawn()
    b = p.mmap(0, HUGE, RW, ANON)
    assert p.mlock2(b, HUGE, MLOCK_ONFAULT) == 0
    assert faults == []


# ---------------------------------------------------------------- touch past EOF


def test_touch_past_eof_faults_nothing():
    k = Kernel()
    k.create_file("/f", P + 100)
    p = k.spawn()
    fd = p.open("/f")
    a = p.mmap(0, 4 * P, PROT_READ, MAP_SHARED, fd, 0)
    before = state(k, p)
    assert errno_of(p.touch, a, 4 * P, False) == -14
    assert errno_of(p.touch, a, 3 * P, False) == -14   # page 2 starts past EOF
    assert state(k, p) == before
    assert p.touch(a, 2 * P, False) == 0              # the page holding EOF is fine
    assert p.mm.rss_file == 2


# ---------------------------------------------------------------- RLIMIT_MEMLOCK


def _mlock_scenario(do, limit):
    """The calls below, as ``do(name, *args)`` gives them; returns {label: result}."""
    out = {}
    a = do("mmap", 1 << 20, ANON)
    out["root_wrap"] = do("mlock", a, (1 << 64) - 4096)
    do("drop", limit)
    if limit == 0:
        out["len0"] = do("mlock", a, 0)
        out["page"] = do("mlock", a, P)
        out["mlock2_badflags"] = do("mlock2", a, P, 8)
        out["munlock"] = do("munlock", a, P)
        out["map_locked"] = do("mmap", P, ANON | MAP_LOCKED) < 0 and do("mmap", P,
                                                                       ANON | MAP_LOCKED)
    else:
        out["128k"] = do("mlock", a, 128 << 10)
        out["64k"] = do("mlock", a, 64 << 10)
        out["64k_again"] = do("mlock", a, 64 << 10)
        out["overlap"] = do("mlock", a + P, 64 << 10)
        out["other"] = do("mlock", a + (512 << 10), P)
        out["wrap"] = do("mlock", a, (1 << 64) - 4096)
        out["map_locked"] = min(do("mmap", P, ANON | MAP_LOCKED), 0)
        do("munlock", a, 64 << 10)
        m = do("mmap", 64 << 10, ANON | MAP_LOCKED)
        out["map_locked_64k"] = m > 0
        out["map_locked_68k"] = min(do("mmap", 68 << 10, ANON | MAP_LOCKED), 0)
        out["mremap_grow_locked"] = min(do("mremap", m, 64 << 10, 128 << 10, MREMAP_MAYMOVE), 0)
        do("munlock", m, 64 << 10)
        out["mremap_grow_unlocked"] = do("mremap", m, 64 << 10, 128 << 10, MREMAP_MAYMOVE) > 0
    return out


def _mlockall_scenario(do, limit):
    """mlockall/munlockall for an unprivileged caller with RLIMIT_MEMLOCK ``limit``."""
    out = {}
    do("mmap", 1 << 20, ANON)
    do("drop", limit)
    out["zero"] = do("mlockall", 0)
    out["onfault_alone"] = do("mlockall", MCL_ONFAULT)
    out["unknown"] = do("mlockall", 8)
    out["current"] = do("mlockall", MCL_CURRENT)
    out["future"] = do("mlockall", MCL_FUTURE)
    if limit:
        out["map_128k"] = min(do("mmap", 128 << 10, ANON), 0)
        out["map_32k"] = do("mmap", 32 << 10, ANON) > 0
        out["munlockall"] = do("munlockall")
        out["map_128k_after"] = do("mmap", 128 << 10, ANON) > 0
    return out


def _sim_mlock(limit, scenario=_mlock_scenario):
    k = Kernel()
    p = k.spawn()

    def do(name, *args):
        if name == "drop":
            p.setrlimit(RLIMIT_MEMLOCK, (args[0], args[0]))
            p.setgid(65534)
            p.setuid(65534)
            return 0
        if name == "mmap":
            args = (0, args[0], RW, args[1])
        return errno_of(getattr(p, name), *args)
    return scenario(do, limit)


def _live_mlock(limit, scenario=_mlock_scenario):
    libc = live.load_libc()

    def do(name, *args):
        if name == "drop":
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (args[0], args[0]))
            os.setgid(65534)
            os.setuid(65534)
            return 0
        if name == "mmap":
            r = libc.mmap(None, args[0], RW, args[1], -1, 0)
            return -ctypes.get_errno() if r in (None, (1 << 64) - 1) else r
        if name == "mremap":
            r = libc.mremap(*args, None)
            return -ctypes.get_errno() if r in (None, (1 << 64) - 1) else r
        r = getattr(libc, name)(*args)
        return r if r == 0 else -ctypes.get_errno()
    return scenario(do, limit)


@pytest.mark.parametrize("limit", [0, 64 << 10])
def test_rlimit_memlock_for_unprivileged_mlock(limit):
    got = _sim_mlock(limit)
    assert got["root_wrap"] == -22
    if limit == 0:
        assert got["page"] == got["len0"] == got["map_locked"] == -1     # EPERM
        assert got["mlock2_badflags"] == -22 and got["munlock"] == 0
    else:
        assert got["128k"] == got["overlap"] == got["other"] == got["wrap"] == -12
        assert got["64k"] == got["64k_again"] == 0
        assert got["map_locked"] == got["map_locked_68k"] == -11          # EAGAIN
        assert got["map_locked_64k"] is True
        assert got["mremap_grow_locked"] == -11 and got["mremap_grow_unlocked"] is True


@needs_live
@pytest.mark.parametrize("limit", [0, 64 << 10])
def test_rlimit_memlock_matches_the_live_kernel(limit):
    assert _sim_mlock(limit) == live.in_child(lambda: _live_mlock(limit))


@pytest.mark.parametrize("limit", [0, 64 << 10])
def test_mlockall_under_rlimit_memlock(limit):
    got = _sim_mlock(limit, _mlockall_scenario)
    assert got["zero"] == got["onfault_alone"] == got["unknown"] == -22
    if limit == 0:
        assert got["current"] == got["future"] == -1
    else:
        assert got["current"] == -12 and got["future"] == 0
        assert got["map_128k"] == -11 and got["map_32k"] is True
        assert got["munlockall"] == 0 and got["map_128k_after"] is True


@needs_live
@pytest.mark.parametrize("limit", [0, 64 << 10])
def test_mlockall_matches_the_live_kernel(limit):
    assert (_sim_mlock(limit, _mlockall_scenario)
            == live.in_child(lambda: _live_mlock(limit, _mlockall_scenario)))


def test_mlockall_locks_current_and_future_mappings():
    k = Kernel()
    p = k.spawn()
    a = p.mmap(0, 4 * P, RW, ANON)
    p.mlockall(MCL_CURRENT | MCL_FUTURE)
    assert p.mm.vma_lookup(a).vm_flags & VM_LOCKED and p.mm.rss_anon == 4
    b = p.mmap(0, 2 * P, RW, ANON)
    assert p.mm.vma_lookup(b).vm_flags & VM_LOCKED and p.mm.rss_anon == 6
    old = p.brk(0)
    p.brk(old + 2 * P)
    assert p.mm.rss_anon == 8
    p.munlockall()
    assert not any(v.vm_flags & VM_LOCKED for v in p.mm.vmas()) and not p.mm.def_flags
    p.mm.check()


def test_setrlimit_and_prlimit():
    k = Kernel()
    p = k.spawn()
    assert p.getrlimit(RLIMIT_MEMLOCK) == (8 << 20, 8 << 20)
    assert p.getrlimit(RLIMIT_STACK) == (8 << 20, RLIM_INFINITY)
    p.setrlimit(RLIMIT_MEMLOCK, (1 << 20, -1))      # -1 is RLIM_INFINITY; root may raise
    child = p.fork()
    assert child.getrlimit(RLIMIT_MEMLOCK) == (1 << 20, RLIM_INFINITY)
    assert errno_of(p.setrlimit, RLIMIT_MEMLOCK, (2, 1)) == -22
    assert errno_of(p.setrlimit, 16, (1, 1)) == -22
    assert p.prlimit(child.pid, RLIMIT_MEMLOCK, (0, 0)) == (1 << 20, RLIM_INFINITY)
    assert child.getrlimit(RLIMIT_MEMLOCK) == (0, 0)
    user = k.spawn(uid=1000, gid=1000)
    assert errno_of(user.setrlimit, RLIMIT_MEMLOCK, (1 << 30, 1 << 30)) == -1
    assert errno_of(user.prlimit, p.pid, RLIMIT_MEMLOCK) == -1
    assert errno_of(user.prlimit, 99999, RLIMIT_MEMLOCK) == -3
    assert user.setrlimit(RLIMIT_MEMLOCK, (0, 1 << 20)) == 0


# ---------------------------------------------------------------- process_madvise


def _pm_scenario(do):
    out = {}
    a = do("mmap", 3 * G)
    out["max_rw"] = do("pm", [(a, 3 * G)], MADV_NOHUGEPAGE, 0)
    out["split_at"] = do("vma_end", a) - a
    out["max_rw_two"] = do("pm", [(a, 0x7FFFF000 - P), (a + G, 2 * P)], 4, 0)
    out["flags_hi"] = do("pm", [(a, P)], 4, 1 << 32)
    out["flags_lo"] = do("pm", [(a, P)], 4, 1)
    out["neg"] = do("pm", [(a, 1 << 63)], 4, 0)
    out["neg2"] = do("pm", [(a, P), (a, 1 << 63)], 4, 0)
    t = 1 << 47
    for name, base, n in [("top_ok", t - 2 * P, P), ("top_end", t - P, P),
                          ("top_plus1", t - P, P + 1), ("at_t", t, 0), ("wrap", (1 << 64) - P, 2 * P)]:
        out[name] = do("pm", [(base, n)], 4, 0)
    return out


def _sim_pm():
    k = Kernel()
    p = k.spawn()

    def do(name, *args):
        if name == "mmap":
            return p.mmap(0, args[0], RW, ANON | MAP_NORESERVE)
        if name == "vma_end":
            return p.mm.vma_lookup(args[0]).end
        return errno_of(p.process_madvise, PIDFD_SELF, *args)
    return _pm_scenario(do)


def _live_pm():
    libc = live.load_libc()
    pidfd = libc.syscall(434, os.getpid(), 0)

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    def do(name, *args):
        if name == "mmap":
            return libc.mmap(None, args[0], RW, ANON | MAP_NORESERVE, -1, 0)
        if name == "vma_end":
            with open("/proc/self/maps") as f:
                for line in f:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    if lo <= args[0] < hi:
                        return hi
        pairs, advice, flags = args
        iov = (IoVec * len(pairs))(*[IoVec(b, n) for b, n in pairs])
        r = libc.syscall(440, ctypes.c_long(pidfd), iov, ctypes.c_long(len(pairs)),
                         ctypes.c_long(advice), ctypes.c_ulong(flags))
        return r if r >= 0 else -ctypes.get_errno()
    return _pm_scenario(do)


def test_process_madvise_caps_the_total_and_truncates_flags():
    got = _sim_pm()
    assert got["max_rw"] == got["split_at"] == got["max_rw_two"] == 0x7FFFF000
    assert got["flags_hi"] == P and got["flags_lo"] == -22
    assert got["neg"] == got["neg2"] == -22
    assert got["top_ok"] == -12
    assert got["top_end"] == got["top_plus1"] == got["at_t"] == got["wrap"] == -14


@needs_live
def test_process_madvise_matches_the_live_kernel():
    assert _sim_pm() == live.in_child(_live_pm)


# ---------------------------------------------------------------- invariants

CALLS = st.lists(st.tuples(
    st.sampled_from(["touch_w", "touch_r", "populate_w", "populate_r", "mlock", "mlock_onfault",
                     "map_populate", "map_locked", "guard", "unguard", "munmap", "mprotect_rw"]),
    st.integers(0, 7), st.integers(1, 40)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(CALLS)
# A read fault at a file VMA's unaligned start maps 16 pages from there (fault-around).
@example([("touch_w", 0, 9), ("touch_w", 1, 40), ("touch_r", 3, 33)])
def test_resident_memory_never_exceeds_the_machine_and_failed_touch_changes_nothing(calls):
    """With one process (no page shared twice), whatever is called, the resident pages
    stay within Kernel(memory=...), and a touch that fails leaves everything as it was."""
    memory = 64 * P
    k = Kernel(memory=memory, overcommit_memory=1)
    p = k.spawn()
    k.create_file("/f", 20 * P)
    fd = p.open("/f")
    base = p.mmap(0, 8 * 32 * P, RW, ANON)
    p.mmap(base + 4 * 32 * P, 32 * P, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)
    for name, slot, n in calls:
        a = base + slot * 32 * P
        size = n * P
        before = state(k, p)
        try:
            if name == "touch_w":
                p.touch(a, size)
            elif name == "touch_r":
                p.touch(a, size, False)
            elif name == "populate_w":
                p.madvise(a, size, MADV_POPULATE_WRITE)
            elif name == "populate_r":
                p.madvise(a, size, MADV_POPULATE_READ)
            elif name == "mlock":
                p.mlock(a, size)
            elif name == "mlock_onfault":
                p.mlock2(a, size, MLOCK_ONFAULT)
            elif name == "map_populate":
                p.mmap(a, size, RW, ANON | MAP_FIXED | MAP_POPULATE)
            elif name == "map_locked":
                p.mmap(a, size, RW, ANON | MAP_FIXED | MAP_LOCKED)
            elif name == "guard":
                p.madvise(a, size, MADV_GUARD_INSTALL)
            elif name == "unguard":
                p.madvise(a, size, MADV_GUARD_REMOVE)
            elif name == "munmap":
                p.munmap(a, size)
            else:
                p.mprotect(a, size, RW)
        except OSError:
            if name.startswith("touch"):
                assert state(k, p) == before
        assert pages.machine_resident(k) == pages.resident_by_mms(k) <= memory // P
        p.mm.check()


"""The kernel's VMA-merge selftests, ported to mmsim.

Sources (Linux, tools/testing/selftests/mm/):

* ``merge.c``: every case mmsim can express.  The cases that need fork, uprobes or the
  KSM prctl are listed too and skip with the reason.
* ``mremap_test.c``: ``mremap_expand_merge`` and ``mremap_expand_merge_offset``.
* ``mlock2-tests.c``: ``test_vma_management``.

Every test is written once against the ``Process`` API and runs twice:

* ``[mmsim]`` on a simulated process; this is the port.
* ``[live]`` on this machine's kernel, through ``mmsim.live``.  The calls are recorded,
  and each VMA lookup replays everything recorded so far in a fresh forked child,
  with every mapping at a fixed address in ``live.WINDOW``.  This checks that each
  expectation below is what Linux 6.18 really does.

The layout follows merge.c.  Each test first maps a 30-page PROT_NONE "carveout" with
no address hint, then maps over parts of it with MAP_FIXED.  Positions are in pages
from the start of the carveout.  A result is checked by looking up the VMA that holds
an address and comparing its bounds, as the selftests do with PROCMAP_QUERY or
/proc/self/maps.

The mremap_test.c and mlock2-tests.c cases map their three pages without a hint and
have no neighbours.  Here those pages go inside the carveout.  The carveout's PROT_NONE
pages cannot merge with read-write ones, so the result is the same.
"""

import os

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import (MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MLOCK_ONFAULT,
                        MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC, PROT_NONE,
                        PROT_READ, PROT_WRITE)
from mmsim.vma import vmflags_mnemonics

PAGE = 4096
CARVEOUT_PAGES = 30
RW = PROT_READ | PROT_WRITE
ANON = MAP_ANONYMOUS | MAP_PRIVATE
FIXED = ANON | MAP_FIXED
MOVE = MREMAP_MAYMOVE | MREMAP_FIXED


# --------------------------------------------------------------------------- live stand-in


class LiveVma:
    """The part of a VMA the tests read, taken from the live child's smaps."""

    def __init__(self, entry):
        self.start = entry["start"]
        self.end = entry["end"]
        self.perms = entry["perms"]
        self.flags = entry["flags"]

    def __repr__(self):
        return f"<LiveVma {self.start:#x}-{self.end:#x} {self.perms} {' '.join(self.flags)}>"


class LiveMm:
    """``proc.mm`` for a LiveProcess: each lookup replays the recorded calls."""

    def __init__(self, proc):
        self._proc = proc

    def vmas(self):
        return [LiveVma(entry) for entry in self._proc.replay()]

    def vma_lookup(self, addr):
        return next((v for v in self.vmas() if v.start <= addr < v.end), None)

    def check(self):
        """The live kernel's layout is correct by definition. Only check that every call
        succeeded."""
        self._proc.replay()


class LiveProcess:
    """Stands in for ``mmsim.task.Process`` and records calls for ``live.run``.

    Only the calls these tests make are supported.  The carveout has no address hint,
    so it is placed at a fixed address in the live window.  All other mappings and
    moves are already MAP_FIXED or MREMAP_FIXED, or grow in place.  So every return
    value is known when the call is recorded.  If a call fails on the live kernel, the
    next lookup raises OSError and names that call."""

    BASE = live.WINDOW[0] + (1 << 30)

    def __init__(self):
        self.calls = []
        self.mm = LiveMm(self)
        self._next_base = self.BASE
        self._cache = None

    def _record(self, *call):
        self.calls.append(call)
        self._cache = None

    def replay(self):
        if self._cache is None:
            report = live.run(self.calls)
            for call, result in zip(self.calls, report["results"]):
                if result < 0:
                    raise OSError(-result, f"{os.strerror(-result)}: live {call!r}")
            self._cache = report["vmas"]
        return self._cache

    def mmap(self, addr, length, prot, flags, fd=-1, offset=0):
        assert fd == -1 and offset == 0, "the live runner maps anonymous memory only"
        if not flags & MAP_FIXED:
            assert addr == 0, "hinted mmap is not supported by the live stand-in"
            addr = self._next_base
            self._next_base += 1 << 30
            flags |= MAP_FIXED
        self._record("mmap", addr, length, prot, flags, -1, 0)
        return addr

    def munmap(self, addr, length):
        self._record("munmap", addr, length)
        return 0

    def mprotect(self, addr, length, prot):
        self._record("mprotect", addr, length, prot)
        return 0

    def mremap(self, old_addr, old_size, new_size, flags=0, new_addr=0):
        self._record("mremap", old_addr, old_size, new_size, flags, new_addr)
        if flags & MREMAP_FIXED:
            return new_addr
        assert not flags & MREMAP_MAYMOVE, "a move to an unknown address is not supported"
        return old_addr

    def mlock2(self, addr, length, flags):
        self._record("mlock2", addr, length, flags)
        return 0

    def munlock(self, addr, length):
        self._record("munlock", addr, length)
        return 0

    def touch(self, addr, length, write=True):
        self._record("touch", addr, length, int(write))
        return 0

    def fork(self):
        """The live child goes on with the calls after the fork, so it is this process."""
        self._record("fork")
        return self


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["mmsim", pytest.param("live", marks=pytest.mark.live)])
def proc(request):
    """A process to run a case on: simulated, or recorded and replayed on this kernel."""
    if request.param == "mmsim":
        return Kernel(seed=0).spawn()
    return LiveProcess()


@pytest.fixture
def carveout(proc):
    """merge.c's fixture: 30 PROT_NONE pages to map over.  Unmapped afterwards, as the
    selftest's teardown does."""
    addr = proc.mmap(0, CARVEOUT_PAGES * PAGE, PROT_NONE, ANON)
    yield addr
    proc.munmap(addr, CARVEOUT_PAGES * PAGE)


def at(carveout, page):
    """The address ``page`` pages into the carveout (``&carveout[page * page_size]``)."""
    return carveout + page * PAGE


def layout(proc, carveout):
    """Every VMA in the process, as (first page, end page, perms/flags) relative to the
    carveout.  Used in assertion messages."""
    rows = []
    for vma in proc.mm.vmas():
        if isinstance(vma, LiveVma):
            what = " ".join([vma.perms] + vma.flags)
        else:
            what = " ".join(vmflags_mnemonics(vma.vm_flags))
            what += f" pgoff={vma.pgoff:#x}" + (" faulted" if vma.anon_vma is not None else "")
        rows.append(((vma.start - carveout) // PAGE, (vma.end - carveout) // PAGE, what))
    return rows


def vma_pages(proc, carveout, addr):
    """The VMA holding ``addr`` as (first page, end page) relative to the carveout,
    from ``proc.mm.vma_lookup`` (PROCMAP_QUERY in the selftests)."""
    vma = proc.mm.vma_lookup(addr)
    assert vma is not None, f"no VMA at page {(addr - carveout) / PAGE}: {layout(proc, carveout)}"
    return (vma.start - carveout) // PAGE, (vma.end - carveout) // PAGE


def assert_vma(proc, carveout, addr, first, end):
    """The VMA holding ``addr`` covers exactly pages ``[first, end)`` of the carveout."""
    got = vma_pages(proc, carveout, addr)
    assert got == (first, end), (
        f"VMA at page {(addr - carveout) // PAGE} is {got}, expected {(first, end)}; "
        f"layout {layout(proc, carveout)}")


# --------------------------------------------------------------------------- merge.c: mprotect


def test_mprotect_unfaulted_left(proc, carveout):
    """merge.c mprotect_unfaulted_left.

    An RW NORESERVE mapping at [1,11).  Its first half is made read-only, and then one
    page of its second half is written.  Making the second half (which now has an
    anon_vma) read-only must merge it with the read-only first half, which never
    faulted."""
    ptr = proc.mmap(at(carveout, 1), 10 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.mprotect(ptr, 5 * PAGE, PROT_READ)
    proc.touch(ptr + 5 * PAGE, 1)
    proc.mprotect(ptr + 5 * PAGE, 5 * PAGE, PROT_READ)
    assert_vma(proc, carveout, ptr, 1, 11)
    proc.mm.check()


def test_mprotect_unfaulted_right(proc, carveout):
    """merge.c mprotect_unfaulted_right.

    The mirror case.  [6,11) becomes read-only, [1,6) is faulted, then [1,6) becomes
    read-only and must merge with the unfaulted [6,11)."""
    ptr = proc.mmap(at(carveout, 1), 10 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.mprotect(ptr + 5 * PAGE, 5 * PAGE, PROT_READ)
    proc.touch(ptr, 1)
    proc.mprotect(ptr, 5 * PAGE, PROT_READ)
    assert_vma(proc, carveout, ptr, 1, 11)
    proc.mm.check()


def test_mprotect_unfaulted_both(proc, carveout):
    """merge.c mprotect_unfaulted_both.

    RW [2,11).  [2,5) and [8,11) become read-only, and the middle [5,8) is faulted.
    When the middle becomes read-only it must merge with both unfaulted sides into
    [2,11)."""
    ptr = proc.mmap(at(carveout, 2), 9 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.mprotect(ptr, 3 * PAGE, PROT_READ)
    proc.mprotect(ptr + 6 * PAGE, 3 * PAGE, PROT_READ)
    proc.touch(ptr + 3 * PAGE, 1)
    proc.mprotect(ptr + 3 * PAGE, 3 * PAGE, PROT_READ)
    assert_vma(proc, carveout, ptr, 2, 11)
    proc.mm.check()


def test_mprotect_faulted_left_unfaulted_right(proc, carveout):
    """merge.c mprotect_faulted_left_unfaulted_right.

    RW [2,11).  [8,11) becomes read-only while still unfaulted.  [2,8) is faulted, and
    its first three pages become read-only, so [2,5) shares the anon_vma.  When the
    middle [5,8) becomes read-only it must merge with the faulted left side and the
    unfaulted right side."""
    ptr = proc.mmap(at(carveout, 2), 9 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.mprotect(ptr + 6 * PAGE, 3 * PAGE, PROT_READ)
    proc.touch(ptr, 1)
    proc.mprotect(ptr, 3 * PAGE, PROT_READ)
    proc.mprotect(ptr + 3 * PAGE, 3 * PAGE, PROT_READ)
    assert_vma(proc, carveout, ptr, 2, 11)
    proc.mm.check()


def test_mprotect_unfaulted_left_faulted_right(proc, carveout):
    """merge.c mprotect_unfaulted_left_faulted_right.

    The mirror case.  [2,5) becomes read-only while still unfaulted.  [5,11) is faulted,
    then [8,11) becomes read-only.  When the middle [5,8) becomes read-only the whole
    range must be one VMA."""
    ptr = proc.mmap(at(carveout, 2), 9 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.mprotect(ptr, 3 * PAGE, PROT_READ)
    proc.touch(ptr + 3 * PAGE, 1)
    proc.mprotect(ptr + 6 * PAGE, 3 * PAGE, PROT_READ)
    proc.mprotect(ptr + 3 * PAGE, 3 * PAGE, PROT_READ)
    assert_vma(proc, carveout, ptr, 2, 11)
    proc.mm.check()


# ----------------------------------------------------------------------- merge.c: fork, uprobe, KSM


def test_forked_target_vma(proc, carveout):
    """merge.c forked_target_vma.

    A faulted RW [1,6) is inherited by a fork child.  The child writes to every page,
    then maps RW [6,11).  The new mapping must not merge into the child's forked
    VMA."""
    ptr = proc.mmap(at(carveout, 1), 5 * PAGE, RW, FIXED)
    proc.touch(ptr, 5 * PAGE)
    child = proc.fork()
    child.touch(ptr, 5 * PAGE)
    ptr2 = child.mmap(at(carveout, 6), 5 * PAGE, RW, FIXED)
    assert_vma(child, carveout, ptr, 1, 6)
    assert_vma(child, carveout, ptr2, 6, 11)
    child.mm.check()


def test_forked_source_vma(proc, carveout):
    """merge.c forked_source_vma.

    A faulted RW NORESERVE [1,6) is inherited by a fork child.  The child maps RWX
    [6,11), then mprotects [1,6) to RWX.  Neither step may merge the forked VMA with
    [6,11)."""
    ptr = proc.mmap(at(carveout, 1), 5 * PAGE, RW, FIXED | MAP_NORESERVE)
    proc.touch(ptr, 5 * PAGE)
    child = proc.fork()
    rwx = RW | PROT_EXEC
    ptr2 = child.mmap(at(carveout, 6), 5 * PAGE, rwx, FIXED | MAP_NORESERVE)
    assert_vma(child, carveout, ptr, 1, 6)
    assert_vma(child, carveout, ptr2, 6, 11)
    child.mprotect(ptr, 5 * PAGE, rwx)
    assert_vma(child, carveout, ptr, 1, 6)
    assert_vma(child, carveout, ptr2, 6, 11)
    child.mm.check()


# merge.c handle_uprobe_upon_merged_vma is left out: it needs a uprobe (perf_event_open)
# on a file mapping, and mmsim simulates neither.


def test_ksm_merge(proc, carveout):
    """merge.c ksm_merge, the part before PR_SET_MEMORY_MERGE.

    Two one-page RW mappings at [1,2) and [2,3) merge into [1,3), and unmapping [2,3)
    leaves [1,2).  (The selftest then turns on PR_SET_MEMORY_MERGE and checks that
    merges still happen; that part waits for mmsim to model the prctl.)"""
    ptr = proc.mmap(at(carveout, 1), PAGE, RW, FIXED)
    ptr2 = proc.mmap(at(carveout, 2), PAGE, RW, FIXED)
    assert_vma(proc, carveout, ptr, 1, 3)
    proc.munmap(ptr2, PAGE)
    assert_vma(proc, carveout, ptr, 1, 2)
    proc.mm.check()


# --------------------------------------------------------------------------- merge.c: mremap


def test_mremap_unfaulted_to_faulted(proc, carveout):
    """merge.c mremap_unfaulted_to_faulted.

    A at [1,6) and B at [7,12), both unfaulted.  B is moved 1000 pages away, and A is
    faulted.  Moving B to [6,11), right after A, must merge it into A: [1,11)."""
    ptr = proc.mmap(at(carveout, 1), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mmap(at(carveout, 7), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 1000 * PAGE)
    proc.touch(ptr, 1)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 11)
    proc.mm.check()


def test_mremap_unfaulted_behind_faulted(proc, carveout):
    """merge.c mremap_unfaulted_behind_faulted.

    A at [6,11) and B at [14,19).  B is moved 1000 pages away, and A is faulted.
    Moving the unfaulted B to [1,6), right before A, must merge them into [1,11)."""
    ptr = proc.mmap(at(carveout, 6), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mmap(at(carveout, 14), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 1000 * PAGE)
    proc.touch(ptr, 1)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, at(carveout, 1))
    assert_vma(proc, carveout, ptr2, 1, 11)
    proc.mm.check()


def test_mremap_unfaulted_between_faulted(proc, carveout):
    """merge.c mremap_unfaulted_between_faulted.

    A [1,6), B [7,12) and C [14,19).  C is moved 2000 pages away and B 1000 pages away.
    A and C are faulted, which gives them different anon_vmas.  C comes back to
    [11,16).  The unfaulted B then goes into the gap [6,11).  It can merge with A or
    with C but not with both, so the result is A+B = [1,11) and C = [11,16)."""
    ptr = proc.mmap(at(carveout, 1), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mmap(at(carveout, 7), 5 * PAGE, RW, FIXED)
    ptr3 = proc.mmap(at(carveout, 14), 5 * PAGE, RW, FIXED)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr3 + 2000 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 1000 * PAGE)
    proc.touch(ptr, 1)
    proc.touch(ptr3, 1)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr + 10 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 11)
    assert_vma(proc, carveout, ptr3, 11, 16)
    proc.mm.check()


def test_mremap_unfaulted_between_faulted_unfaulted(proc, carveout):
    """merge.c mremap_unfaulted_between_faulted_unfaulted.

    The same as the previous test, except that only A is faulted.  When B goes into
    the gap all three become one VMA: [1,16)."""
    ptr = proc.mmap(at(carveout, 1), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mmap(at(carveout, 7), 5 * PAGE, RW, FIXED)
    ptr3 = proc.mmap(at(carveout, 14), 5 * PAGE, RW, FIXED)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr3 + 2000 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 1000 * PAGE)
    proc.touch(ptr, 1)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr + 10 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 16)
    proc.mm.check()


def test_mremap_unfaulted_between_correctly_placed_faulted(proc, carveout):
    """merge.c mremap_unfaulted_between_correctly_placed_faulted.

    One RW mapping [1,16) is faulted, and its middle [6,11) is unmapped.  The two halves
    keep the same anon_vma and consistent page offsets.  A new unfaulted mapping at
    [20,25) is moved into the hole, and all three must merge into [1,16)."""
    ptr = proc.mmap(at(carveout, 1), 15 * PAGE, RW, FIXED)
    proc.touch(ptr, 1)
    proc.munmap(ptr + 5 * PAGE, 5 * PAGE)
    ptr2 = proc.mmap(at(carveout, 20), 5 * PAGE, RW, FIXED)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 16)
    proc.mm.check()


def test_mremap_correct_placed_faulted(proc, carveout):
    """merge.c mremap_correct_placed_faulted.

    One faulted RW mapping [1,16), cut into three 5-page pieces P1 [1,6), P2 [6,11)
    and P3 [11,16).  The pieces are moved away and back in several orders.  A faulted
    piece keeps its anon_vma and page offset when it moves, so a piece put back at its
    original address must re-merge with whichever neighbours are in place."""
    ptr = proc.mmap(at(carveout, 1), 15 * PAGE, RW, FIXED)
    proc.touch(ptr, 1)

    # Move P3, then P2, far away.  Bring P2 back: P1+P2 = [1,11).
    ptr3 = proc.mremap(ptr + 10 * PAGE, 5 * PAGE, 5 * PAGE, MOVE, ptr + 2010 * PAGE)
    ptr2 = proc.mremap(ptr + 5 * PAGE, 5 * PAGE, 5 * PAGE, MOVE, ptr + 1005 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 11)

    # Move P1 away and back: [1,11) again.
    ptr = proc.mremap(ptr, 5 * PAGE, 5 * PAGE, MOVE, ptr + 1000 * PAGE)
    ptr = proc.mremap(ptr, 5 * PAGE, 5 * PAGE, MOVE, at(carveout, 1))
    assert_vma(proc, carveout, ptr, 1, 11)

    # Move P1 away again.  Bring P3 back next to P2: P2+P3 = [6,16).
    ptr = proc.mremap(ptr, 5 * PAGE, 5 * PAGE, MOVE, ptr + 1000 * PAGE)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 5 * PAGE)
    assert_vma(proc, carveout, ptr2, 6, 16)

    # Bring P1 back: [1,16).
    ptr = proc.mremap(ptr, 5 * PAGE, 5 * PAGE, MOVE, at(carveout, 1))
    assert_vma(proc, carveout, ptr, 1, 16)

    # Move P2 (the middle) out and back: [1,16).
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr2 + 1000 * PAGE)
    ptr2 = proc.mremap(ptr2, 5 * PAGE, 5 * PAGE, MOVE, ptr + 5 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 16)

    # Move P3 (the tail) out and back: [1,16).
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr3 + 1000 * PAGE)
    ptr3 = proc.mremap(ptr3, 5 * PAGE, 5 * PAGE, MOVE, ptr + 10 * PAGE)
    assert_vma(proc, carveout, ptr, 1, 16)
    proc.mm.check()


def test_mremap_faulted_to_unfaulted_prev(proc, carveout):
    """merge.c mremap_faulted_to_unfaulted_prev.

    A at [4,7) is faulted, then moved to [20,23).  An unfaulted B is mapped at [1,4).
    A is moved back to [4,7) with MREMAP_DONTUNMAP, and must merge into B: [1,7)."""
    ptr_a = proc.mmap(at(carveout, 4), 3 * PAGE, RW, FIXED)
    proc.touch(ptr_a, 1)
    ptr_a = proc.mremap(ptr_a, 3 * PAGE, 3 * PAGE, MOVE, at(carveout, 20))
    ptr_b = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    ptr_a = proc.mremap(ptr_a, 3 * PAGE, 3 * PAGE, MOVE | MREMAP_DONTUNMAP, at(carveout, 4))
    assert_vma(proc, carveout, ptr_b, 1, 7)
    proc.mm.check()


def test_mremap_faulted_to_unfaulted_next(proc, carveout):
    """merge.c mremap_faulted_to_unfaulted_next.

    The mirror case.  A at [1,4) is faulted, then moved to [20,23).  An unfaulted B is
    mapped at [4,7).  A is moved back to [1,4) with MREMAP_DONTUNMAP, and must merge
    with B: [1,7)."""
    ptr_a = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    proc.touch(ptr_a, 1)
    ptr_a = proc.mremap(ptr_a, 3 * PAGE, 3 * PAGE, MOVE, at(carveout, 20))
    proc.mmap(at(carveout, 4), 3 * PAGE, RW, FIXED)
    ptr_a = proc.mremap(ptr_a, 3 * PAGE, 3 * PAGE, MOVE | MREMAP_DONTUNMAP, at(carveout, 1))
    assert_vma(proc, carveout, ptr_a, 1, 7)
    proc.mm.check()


def test_mremap_faulted_to_unfaulted_prev_unfaulted_next(proc, carveout):
    """merge.c mremap_faulted_to_unfaulted_prev_unfaulted_next.

    B at [4,7) is faulted, then moved to [20,23).  Unfaulted A [1,4) and C [7,10) are
    mapped.  B is moved back between them with MREMAP_DONTUNMAP, and all three must
    merge: [1,10)."""
    ptr_b = proc.mmap(at(carveout, 4), 3 * PAGE, RW, FIXED)
    proc.touch(ptr_b, 1)
    ptr_b = proc.mremap(ptr_b, 3 * PAGE, 3 * PAGE, MOVE, at(carveout, 20))
    ptr_a = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    proc.mmap(at(carveout, 7), 3 * PAGE, RW, FIXED)
    ptr_b = proc.mremap(ptr_b, 3 * PAGE, 3 * PAGE, MOVE | MREMAP_DONTUNMAP, at(carveout, 4))
    assert_vma(proc, carveout, ptr_a, 1, 10)
    proc.mm.check()


def test_mremap_faulted_to_unfaulted_prev_faulted_next(proc, carveout):
    """merge.c mremap_faulted_to_unfaulted_prev_faulted_next.

    BC at [4,10) is faulted.  Its first half B is moved to [20,23), which leaves C
    [7,10) in place with the shared anon_vma.  An unfaulted A is mapped at [1,4).  B
    is moved back to [4,7) with MREMAP_DONTUNMAP, and A, B and C must merge:
    [1,10)."""
    ptr_bc = proc.mmap(at(carveout, 4), 6 * PAGE, RW, FIXED)
    proc.touch(ptr_bc, 1)
    ptr_b = proc.mremap(ptr_bc, 3 * PAGE, 3 * PAGE, MOVE, at(carveout, 20))
    ptr_a = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    ptr_b = proc.mremap(ptr_b, 3 * PAGE, 3 * PAGE, MOVE | MREMAP_DONTUNMAP, at(carveout, 4))
    assert_vma(proc, carveout, ptr_a, 1, 10)
    proc.mm.check()


# --------------------------------------------------------------------------- mremap_test.c


def test_mremap_expand_merge(proc, carveout):
    """mremap_test.c mremap_expand_merge.

    Three RW pages, [1,4).  The middle page is unmapped, and then the first page is
    grown in place to two pages with mremap (no flags).  The grown VMA must merge with
    the third page, so [1,4) is one mapping again."""
    start = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    proc.munmap(start + PAGE, PAGE)
    assert proc.mremap(start, PAGE, 2 * PAGE, 0) == start
    assert_vma(proc, carveout, start, 1, 4)
    proc.mm.check()


def test_mremap_expand_merge_offset(proc, carveout):
    """mremap_test.c mremap_expand_merge_offset.

    Three RW pages, [1,4).  The last page is unmapped.  Then the second page, which is
    the end of the remaining VMA but not its start, is grown in place to two pages.
    The mapping must be [1,4) again."""
    start = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    proc.munmap(start + 2 * PAGE, PAGE)
    assert proc.mremap(start + PAGE, PAGE, 2 * PAGE, 0) == start + PAGE
    assert_vma(proc, carveout, start, 1, 4)
    proc.mm.check()


# --------------------------------------------------------------------------- mlock2-tests.c


def test_vma_management(proc, carveout):
    """mlock2-tests.c test_vma_management, with mlock2.

    Three RW pages [1,4), locked with mlock2(MLOCK_ONFAULT) and checked to be one VMA.
    munlock of the middle page splits it into three.  munlock of all three pages
    merges them back into one.  (The selftest also runs this under
    mlockall(MCL_CURRENT | MCL_ONFAULT | MCL_FUTURE), which mmsim does not simulate.)"""
    start = proc.mmap(at(carveout, 1), 3 * PAGE, RW, FIXED)
    proc.mlock2(start, 3 * PAGE, MLOCK_ONFAULT)
    for page in range(3):
        assert_vma(proc, carveout, start + page * PAGE, 1, 4)

    proc.munlock(start + PAGE, PAGE)
    assert_vma(proc, carveout, start, 1, 2)
    assert_vma(proc, carveout, start + PAGE, 2, 3)
    assert_vma(proc, carveout, start + 2 * PAGE, 3, 4)

    proc.munlock(start, 3 * PAGE)
    for page in range(3):
        assert_vma(proc, carveout, start + page * PAGE, 1, 4)
    proc.mm.check()

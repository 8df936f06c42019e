"""The range page model (extents, pools, PMD spans) against a per-page reference.

Random faults, MADV_POPULATE_*, DONTNEED, COLD, COLLAPSE, mprotect splits and merges,
fork and exit run through real processes; the same page-level operations run on a
plain model that keeps one record per page and per mapping, written from the rules
alone.  After every step every page of every process must agree: resident or not,
mapcount, dirty, PG_referenced, young PTE and PMD mapping, the zero-page mappings a
read leaves, and the rss counters.
The VMA layout is the simulator's (the reference asks the mm for VMA bounds and THP
eligibility): this tests the pages, not the merge rules."""

import ctypes
import errno
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mmsim import live, pages, thp
from mmsim.kernel import Kernel
from mmsim.testing import errno_of
from mmsim.uapi import (MADV_COLD, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MADV_POPULATE_READ,
                        MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC,
                        PROT_READ, PROT_WRITE)

P = 4096
PMD = 2 << 20
BLOCK = 512
BASE = 0x7f0000000000
NPAGES = 3 * BLOCK
VLO = BASE // P
RW = PROT_READ | PROT_WRITE


class Folio:
    """One page's folio state in the reference."""

    __slots__ = ("mapcount", "referenced", "active")

    def __init__(self, referenced):
        self.mapcount = 1
        self.referenced = referenced
        self.active = False   # a new anonymous folio starts on the inactive list

    def mark_accessed(self):
        """folio_mark_accessed: referenced first, active (PG_referenced cleared) the
        second time."""
        if not self.referenced:
            self.referenced = True
        elif not self.active:
            self.active, self.referenced = True, False


class Pte:
    """One mapping of one page in the reference."""

    __slots__ = ("folio", "young", "pmd", "large", "written")

    def __init__(self, folio, young=True, pmd=False, large=None, written=False):
        self.folio = folio
        self.young = young
        self.pmd = pmd
        self.large = large       # the first page of its large folio, or None
        self.written = written   # the program stored data in it (else zero-filled)


class Zero:
    """A mapping of the zero page (``pmd``: by the huge zero PMD of its block)."""

    __slots__ = ("pmd",)

    def __init__(self, pmd):
        self.pmd = pmd


class Reference:
    """Per-page private anonymous memory: each process maps vpn -> Pte or Zero."""

    def __init__(self):
        self.maps = {}

    def split(self, m, vpn):
        """split_huge_pmd of the block holding ``vpn`` in mapping ``m``."""
        head = vpn - vpn % BLOCK
        if head in m and m[head].pmd:
            for v in range(head, head + BLOCK):
                m[v].pmd = False

    def fault(self, proc, lo, hi, write, touch):
        m = self.maps[proc.pid]
        v = lo
        while v < hi:
            pte = m.get(v)
            head = v - v % BLOCK
            if type(pte) is Zero:
                if not write:
                    v = head + BLOCK if pte.pmd else v + 1
                elif pte.pmd:
                    # do_huge_zero_wp_pmd: a THP in place of the huge zero PMD.
                    for u in range(head, head + BLOCK):
                        m[u] = Pte(Folio(touch), pmd=True, large=head)
                    v = head + BLOCK
                else:
                    m[v] = Pte(Folio(touch))   # wp_page_copy: a base page
                    v += 1
                continue
            if pte is not None and pte.pmd:
                block = range(head, head + BLOCK)
                if write and any(m[u].folio.mapcount > 1 for u in block):
                    self.split(m, v)
                else:
                    for u in block:
                        m[u].young = True
                        if touch:
                            m[u].folio.mark_accessed()
                    v = head + BLOCK
                    continue
            if pte is not None:
                pte.young = True
                if write and pte.folio.mapcount > 1:
                    if touch:
                        pte.folio.referenced = True   # mmsim marks the old folio
                    pte.folio.mapcount -= 1
                    m[v] = Pte(Folio(touch), written=pte.written)   # a copy
                elif touch:
                    pte.folio.mark_accessed()
                v += 1
                continue
            if write:
                vma = proc.mm.vma_lookup(v * P)
                if (thp.allowed(vma, proc.mm.flags, proc.kernel.thp, thp.TVA_PAGEFAULT)
                        and head * P >= vma.start and (head + BLOCK) * P <= vma.end
                        and not any(u in m for u in range(head, head + BLOCK))):
                    for u in range(head, head + BLOCK):
                        m[u] = Pte(Folio(touch), pmd=True, large=head)
                    v = head + BLOCK
                    continue
                m[v] = Pte(Folio(touch))
            else:
                # A read maps the zero page: by the huge zero PMD where a write would
                # have made a THP.
                vma = proc.mm.vma_lookup(v * P)
                if (thp.allowed(vma, proc.mm.flags, proc.kernel.thp, thp.TVA_PAGEFAULT)
                        and head * P >= vma.start and (head + BLOCK) * P <= vma.end
                        and not any(u in m for u in range(head, head + BLOCK))):
                    for u in range(head, head + BLOCK):
                        m[u] = Zero(True)
                    v = head + BLOCK
                    continue
                m[v] = Zero(False)
            v += 1
        if write and not touch:
            for v in range(lo, hi):
                m[v].written = True   # the program's stores (GUP stores nothing)

    def split_folio(self, m, head):
        """split_folio of the large folio at ``head``: base pages, and those never
        written are freed and the zero page mapped instead."""
        for u in range(head, head + BLOCK):
            pte = m.get(u)
            if type(pte) is Pte and pte.large == head:
                pte.large, pte.pmd = None, False
                if not pte.written:
                    pte.folio.mapcount -= 1
                    m[u] = Zero(False)

    def zap(self, m, lo, hi):
        if lo % BLOCK:
            self.split(m, lo)
        if hi % BLOCK:
            self.split(m, hi)
        for v in range(lo, hi):
            pte = m.pop(v, None)
            if type(pte) is Pte:
                pte.folio.mapcount -= 1

    def cold(self, m, lo, hi):
        for v in (lo, hi - 1):
            # A large folio the range covers in part is split, unless shared.
            pte = m.get(v)
            if type(pte) is not Pte or pte.large is None:
                continue
            head = pte.large
            if lo <= head and head + BLOCK <= hi:
                continue
            members = [m[u] for u in range(head, head + BLOCK)
                       if type(m.get(u)) is Pte and m[u].large == head]
            if not any(p.folio.mapcount > 1 for p in members):
                self.split_folio(m, head)
        for v in range(lo, hi):
            pte = m.get(v)
            if type(pte) is not Pte or pte.folio.mapcount != 1:
                continue
            if pte.pmd:
                head = v - v % BLOCK
                shared = any(m[u].folio.mapcount != 1 for u in range(head, head + BLOCK)
                             if u in m)
                if shared:
                    continue       # a THP with any page mapped elsewhere is left alone
                if head < lo or head + BLOCK > hi:
                    self.split(m, v)   # one this mm alone maps, partly covered, is split
            pte.folio.referenced = False
            pte.folio.active = False
            pte.young = False

    def collapse(self, m, lo, hi):
        first = -(-lo // BLOCK) * BLOCK
        last = hi // BLOCK * BLOCK
        if first > last:
            return False
        ok = True
        for head in range(first, last, BLOCK):
            block = range(head, head + BLOCK)
            if type(m.get(head)) is Zero and m[head].pmd:
                continue   # the huge zero PMD: PMD-mapped already
            if not any(type(m.get(u)) is Pte for u in block):
                ok = False   # nothing, or only zero-page PTEs: nothing writable
                continue
            if m.get(head) is not None and m[head].pmd:
                continue
            written = {u for u in block if type(m.get(u)) is Pte and m[u].written}
            self.zap(m, head, head + BLOCK)
            for u in block:
                m[u] = Pte(Folio(False), pmd=True, large=head, written=u in written)
        return ok

    def fork(self, parent, child):
        m = self.maps[parent.pid]
        out = {}
        for v, p in m.items():
            if type(p) is Pte:
                p.folio.mapcount += 1
                out[v] = Pte(p.folio, False, p.pmd, p.large, p.written)
            elif parent.mm.vma_lookup(v * P).anon_vma is not None:
                # copy_page_range runs only for a VMA with an anon_vma (a read of the
                # zero page by PTE prepares none).
                out[v] = Zero(p.pmd)
        self.maps[child.pid] = out


def observed(proc):
    """vpn -> (mapcount, referenced, young, pmd, active, written), or ("zero", huge),
    of the range model."""
    out = {}
    for vma in proc.mm.vmas(BASE, BASE + NPAGES * P):
        for vpn, n, mapcount, anon, dirty, referenced, young, pmd in pages.page_states(vma):
            assert anon and dirty
            for v in range(vpn, vpn + n):
                out[v] = (mapcount, referenced, young, pmd)
        for x, y, active in pages.anon_lru_states(vma):
            for v in range(x, y):
                out[v] += (active, not (vma.unwritten and v in vma.unwritten))
        for x, y, huge in pages.zero_pages(vma):
            for v in range(x, y):
                assert v not in out
                out[v] = ("zero", huge)
    return out


def expected(m):
    return {v: (p.folio.mapcount, p.folio.referenced, p.young, p.pmd, p.folio.active,
                p.written)
            if type(p) is Pte else ("zero", p.pmd) for v, p in m.items()}


ranges = st.tuples(st.integers(0, NPAGES - 1), st.integers(1, 2 * BLOCK))


def replay_steps(policy, steps):
    """Run rules of the machine below in order, checking after each."""
    machine = PageModelMachine()
    machine.setup(policy=policy)
    for name, kwargs in steps:
        getattr(machine, name)(**kwargs)
        machine.same_pages()


class PageModelMachine(RuleBasedStateMachine):
    """Every step runs on mmsim and on the reference; their pages must agree."""

    @initialize(policy=st.sampled_from(["always", "never"]))
    def setup(self, policy):
        self.kernel = Kernel(thp=policy)
        proc = self.kernel.spawn()
        proc.mmap(BASE, NPAGES * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        self.procs = [proc]
        self.ref = Reference()
        self.ref.maps[proc.pid] = {}

    def pick(self, who, rng):
        proc = self.procs[who % len(self.procs)]
        start, n = rng
        return proc, VLO + start, VLO + min(start + n, NPAGES)

    def pieces(self, proc, lo, hi):
        """The VMA pieces of ``[lo, hi)``, in order."""
        return [(max(v.start // P, lo), min(v.end // P, hi))
                for v in proc.mm.vmas(lo * P, hi * P)]

    @rule(who=st.integers(0, 3), rng=ranges, write=st.booleans())
    def touch(self, who, rng, write):
        proc, lo, hi = self.pick(who, rng)
        assert errno_of(proc.touch, lo * P, (hi - lo) * P, write) == 0
        self.ref.fault(proc, lo, hi, write, False)

    @rule(who=st.integers(0, 3), rng=ranges, write=st.booleans())
    def populate(self, who, rng, write):
        proc, lo, hi = self.pick(who, rng)
        advice = MADV_POPULATE_WRITE if write else MADV_POPULATE_READ
        assert errno_of(proc.madvise, lo * P, (hi - lo) * P, advice) == 0
        self.ref.fault(proc, lo, hi, write, True)

    @rule(who=st.integers(0, 3), rng=ranges, cold=st.booleans())
    def dontneed_or_cold(self, who, rng, cold):
        """MADV_DONTNEED zaps, MADV_COLD ages: each VMA piece of the range in turn."""
        proc, lo, hi = self.pick(who, rng)
        pieces = self.pieces(proc, lo, hi)
        advice, step = (MADV_COLD, self.ref.cold) if cold else (MADV_DONTNEED, self.ref.zap)
        assert errno_of(proc.madvise, lo * P, (hi - lo) * P, advice) == 0
        for a, b in pieces:
            step(self.ref.maps[proc.pid], a, b)

    @rule(who=st.integers(0, 3), rng=ranges)
    def collapse(self, who, rng):
        proc, lo, hi = self.pick(who, rng)
        pieces = [(proc.mm.vma_lookup(a * P), a, b) for a, b in self.pieces(proc, lo, hi)]
        got = errno_of(proc.madvise, lo * P, (hi - lo) * P, MADV_COLLAPSE)
        want = 0
        for vma, a, b in pieces:
            if not thp.allowed(vma, proc.mm.flags, proc.kernel.thp, thp.TVA_FORCED_COLLAPSE):
                want = errno.EINVAL
                break
            if not self.ref.collapse(self.ref.maps[proc.pid], a, b):
                want = errno.EINVAL
                break
        assert got == want

    @rule(who=st.integers(0, 3), rng=ranges, exe=st.booleans())
    def mprotect(self, who, rng, exe):
        """Split and merge VMAs: a THP across a new VMA boundary is PTE-mapped."""
        proc, lo, hi = self.pick(who, rng)
        before = {b for v in proc.mm.vmas() for b in (v.start, v.end)}
        assert errno_of(proc.mprotect, lo * P, (hi - lo) * P, RW | (PROT_EXEC if exe else 0)) == 0
        after = {b for v in proc.mm.vmas() for b in (v.start, v.end)}
        for b in after - before:
            if b % (BLOCK * P):
                self.ref.split(self.ref.maps[proc.pid], b // P)

    @rule(who=st.integers(0, 3))
    def fork(self, who):
        if len(self.procs) < 4:
            parent = self.procs[who % len(self.procs)]
            child = parent.fork()
            self.ref.fork(parent, child)
            self.procs.append(child)

    @rule(who=st.integers(1, 3))
    def exit(self, who):
        if who < len(self.procs):
            proc = self.procs.pop(who)
            proc.exit(0)
            m = self.ref.maps.pop(proc.pid)
            self.ref.zap(m, VLO, VLO + NPAGES)

    @invariant()
    def same_pages(self):
        for proc in self.procs:
            m = self.ref.maps[proc.pid]
            assert observed(proc) == expected(m)
            assert proc.mm.rss_anon == sum(type(p) is Pte for p in m.values())
            for vma in proc.mm.vmas():
                pages.check_vma(vma)
        pages.check_pools(self.kernel)


PageModelMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestPageModel = PageModelMachine.TestCase


def test_reference_detects_a_difference():
    """The comparison can fail: one page's PG_referenced changed behind the model's
    back shows up."""
    kernel = Kernel(thp="never")
    proc = kernel.spawn()
    proc.mmap(BASE, 8 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.touch(BASE, 8 * P, True)
    ref = Reference()
    ref.maps[proc.pid] = {}
    ref.fault(proc, VLO, VLO + 8, True, False)
    assert observed(proc) == expected(ref.maps[proc.pid])
    ref.maps[proc.pid][VLO + 3].folio.referenced = True
    assert observed(proc) != expected(ref.maps[proc.pid])


def test_uniform_ranges_stay_one_extent():
    """A GiB touched, forked and written by the child stays a handful of extents."""
    kernel = Kernel(thp="never", memory=16 << 30)
    proc = kernel.spawn()
    size = 1 << 30
    proc.mmap(BASE, size, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.touch(BASE, size, True)
    vma = proc.mm.vma_lookup(BASE)
    assert len(vma.pages) == 1 and pages.rss_pages(vma) == size // P
    child = proc.fork()
    child.touch(BASE + size // 2, P, True)
    assert len(child.mm.vma_lookup(BASE).pages) == 3
    assert len(vma.pages) == 1
    assert len(vma.pages.tag[0].pool) == 3       # mapcount 2, 1, 2
    child.exit(0)
    assert len(vma.pages.tag[0].pool) == 1


# ------------------------------------------------------------ against the live kernel

THP_FIELDS = ("Rss", "Pss", "Shared_Dirty", "Private_Dirty", "AnonHugePages")


def _fields(text, start):
    """The THP_FIELDS of the smaps block holding ``start``, as ints of kB."""
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        lo, hi = (int(x, 16) for x in block.split(None, 1)[0].split("-"))
        if lo <= start < hi:
            return {k: int(v) for k, v in re.findall(r"^(\w+): +(\d+) kB$", block, re.M)
                    if k in THP_FIELDS}
    return None


def _live_thp_cow():
    """On the live kernel: a THP, a fork, the parent writes one page of it; both views."""
    libc = live.load_libc()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    raw = libc.mmap(None, 2 * PMD, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    start = -(-raw // PMD) * PMD
    if libc.madvise(ctypes.c_void_p(start), PMD, MADV_HUGEPAGE):
        return None
    ctypes.memset(start, 1, PMD)
    if _fields(open("/proc/self/smaps").read(), start)["AnonHugePages"] != PMD >> 10:
        return None                       # no THP to be had right now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    ctypes.memset(start, 2, 1)
    views = [_fields(open(f"/proc/{p}/smaps").read(), start) for p in (os.getpid(), pid)]
    os.write(w, b"x")
    os.waitpid(pid, 0)
    return views


@pytest.mark.live
def test_thp_written_after_fork_matches_live_kernel():
    """The writer's THP is split and one page copied; the other process still maps the
    THP by PMD, its pages now with different mapcounts: both smaps views as on Linux."""
    if live.host_thp() == "never":
        pytest.skip("THP is off on this host")
    want = live.in_child(_live_thp_cow)
    if want is None:
        pytest.skip("the live kernel gave no THP for the probe")
    kernel = Kernel(thp="madvise")
    proc = kernel.spawn()
    proc.mmap(BASE, PMD, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.madvise(BASE, PMD, MADV_HUGEPAGE)
    proc.touch(BASE, PMD, True)
    child = proc.fork()
    proc.touch(BASE, 1, True)
    got = [_fields(kernel.proc_read(f"/proc/{p.pid}/smaps"), BASE) for p in (proc, child)]
    assert got == want
    assert got[1]["AnonHugePages"] == 2048 and got[1]["Pss"] == 1026


# ------------------------------------------------------------ the access stream

def _two_machines(policy):
    out = []
    for _ in range(2):
        kernel = Kernel(thp=policy, seed=3)
        proc = kernel.spawn()
        proc.mmap(BASE, 2 * BLOCK * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        proc.mmap(BASE + 2 * BLOCK * P + 8 * P, 8 * P, PROT_READ,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        out.append((kernel, proc))
    return out


@settings(max_examples=80, deadline=None)
@given(policy=st.sampled_from(["always", "never"]), write=st.booleans(),
       stream=st.lists(st.one_of(
           st.integers(0, 2 * BLOCK + 20),                       # pages, holes included
           st.tuples(st.integers(0, 2 * BLOCK), st.integers(1, 600))), max_size=12))
def test_access_stream_equals_page_by_page_touches(policy, write, stream):
    """Process.access over a stream leaves exactly the pages, counters and errno a
    touch of each address in turn leaves: runs are only a shortcut."""
    addrs = []
    for item in stream:
        first, n = (item, 1) if isinstance(item, int) else item
        addrs += [BASE + (first + i) * P + 8 * (i % 3) for i in range(n)]
    (k1, fast), (k2, slow) = _two_machines(policy)
    got = errno_of(fast.access, addrs, write)
    want = 0
    for addr in addrs:
        want = errno_of(slow.touch, addr, 1, write)
        if want:
            break
    assert got == want
    assert k1.proc_read(f"/proc/{fast.pid}/smaps") == k2.proc_read(f"/proc/{slow.pid}/smaps")
    assert observed(fast) == observed(slow)
    assert (fast.mm.rss_anon, fast.mm.hiwater_rss) == (slow.mm.rss_anon, slow.mm.hiwater_rss)


def test_access_stream_is_read_lazily():
    """A stream is consumed as it runs: a bad element raises EFAULT after the accesses
    before it, and a generator of a GiB of addresses runs in one range."""
    kernel = Kernel(thp="never", memory=16 << 30)
    proc = kernel.spawn()
    proc.mmap(BASE, 1 << 30, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    with pytest.raises(OSError) as exc:
        proc.access([BASE, BASE + P, "x", BASE + 2 * P])
    assert exc.value.errno == errno.EFAULT and proc.mm.rss_anon == 2
    assert proc.access(BASE + i * P for i in range((1 << 30) // P)) == (1 << 30) // P
    assert proc.mm.rss_anon == (1 << 30) // P and len(proc.mm.vma_lookup(BASE).pages) == 1


def test_a_write_across_two_thps_splits_only_the_shared_one():
    """Found by the machine: a write fault range ending one page into a shared THP
    split the exclusive THP before it too."""
    replay_steps("always", [
        ("collapse", dict(rng=(0, 1), who=0)),
        ("populate", dict(rng=(1, 1024), who=0, write=True)),
        ("fork", dict(who=0)),
        ("dontneed_or_cold", dict(cold=False, rng=(0, 1), who=0)),
        ("dontneed_or_cold", dict(cold=False, rng=(0, 1024), who=1)),
        ("populate", dict(rng=(1, 1024), who=0, write=True))])


def test_cold_leaves_a_thp_alone_when_any_page_of_it_is_shared():
    """Found by the machine: MADV_COLD aged the unshared pages of a partly shared
    PMD-mapped THP, cutting the PMD extent at an unaligned page."""
    replay_steps("always", [
        ("populate", dict(rng=(512, 512), who=0, write=True)),
        ("fork", dict(who=0)),
        ("touch", dict(rng=(600, 100), who=1, write=True)),
        ("dontneed_or_cold", dict(cold=True, rng=(0, 1024), who=0))])

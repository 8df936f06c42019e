"""How cheap can the replay row of issue 13's Goals table be?  The least code that
parses the replay workload's trace (benchmarks/replay.py) and applies its calls to an
address space, in this interpreter, beside mmsim's parse + replay and the live kernel.

The floor knows the workload's four line shapes and nothing else: each line is split
on its punctuation (no regex, no prefixes, no strings, no errors), its constants are
looked up in a small table, and the call is applied to three flat sorted lists (VMA
starts, ends and flags; one C bisect each way to find the VMAs a range touches).  It
does the address-space work every call needs: it splits the VMAs at the range's
edges, replaces, removes or changes what lies inside, finds holes (ENOMEM), and merges
neighbours with equal flags, so it ends with the same VMAs as mmsim (checked: ``run``
compares the final layouts and every result).  It keeps no pages, no accounting, no
tree, no per-VMA objects, and checks no argument.  Whatever a simulator of the real
calls adds comes on top, so ours / floor says what mmsim's layers cost and floor /
kernel what any pure-Python replay costs."""

import errno
import os
import tempfile
import time
from bisect import bisect_left, bisect_right

from mmsim.kernel import Kernel
from mmsim.trace import Replayer, parse
from mmsim.uapi import MADV_DONTNEED, MADV_NOHUGEPAGE, PROT_READ, PROT_WRITE
from mmsim.vma import VM_NOHUGEPAGE, VM_READ, VM_WRITE

from . import kernel as kernel_bench
from . import replay as replay_bench

ENOMEM = -errno.ENOMEM
# The floor's flags: the PROT bits, and VM_NOHUGEPAGE's own bit (never faulted and all
# private anonymous, so nothing else decides a merge in this workload).
NOHUGE = 1 << 8
CONSTANTS = {"PROT_READ": PROT_READ, "PROT_READ|PROT_WRITE": PROT_READ | PROT_WRITE,
             "MADV_DONTNEED": MADV_DONTNEED, "MADV_NOHUGEPAGE": MADV_NOHUGEPAGE}


def floor_parse(text):
    """The trace's lines as ``(name, addr, length, arg, result)`` tuples."""
    out = []
    append = out.append
    consts = CONSTANTS
    for line in text.split("\n"):
        if not line:
            continue
        name, rest = line.split("(", 1)
        args, result = rest.rsplit(") = ", 1)
        a = args.split(", ")
        append((name, int(a[0], 16), int(a[1]), consts.get(a[2]) if len(a) > 2 else 0,
                int(result, 0)))
    return out


class FloorSpace:
    """An address space as three flat sorted lists, changed by range operations."""

    __slots__ = ("st", "en", "fl")

    def __init__(self):
        self.st, self.en, self.fl = [], [], []

    def _replace(self, s, e, change, contiguous):
        """Apply ``change`` (old flags -> new flags, or None to unmap) to the mapped parts
        of ``[s, e)`` after splitting at its edges, then merge equal neighbours.  With
        ``contiguous`` (mprotect) it stops at the first hole.  Whether a hole was seen."""
        st, en, fl = self.st, self.en, self.fl
        i = bisect_right(en, s)
        j = bisect_left(st, e)
        lo = i - 1 if i else 0
        hi = j + 1 if j < len(st) else j
        # The VMAs lo..hi-1 after the change, equal neighbours merged as they come.
        ns, ne, nf = st[lo:i], en[lo:i], fl[lo:i]
        hole = False
        pos = s
        k = i
        while k < j:
            a, b, f = st[k], en[k], fl[k]
            if a > pos:
                hole = True
                if contiguous:
                    break
            if a < s:
                ns.append(a)
                ne.append(s)
                nf.append(f)
                a = s
            cut = b > e
            if cut:
                b = e
            new = change(f)
            if new is not None:
                if ne and ne[-1] == a and nf[-1] == new:
                    ne[-1] = b
                else:
                    ns.append(a)
                    ne.append(b)
                    nf.append(new)
            if cut:
                if ne and ne[-1] == e and nf[-1] == f:
                    ne[-1] = en[k]
                else:
                    ns.append(e)
                    ne.append(en[k])
                    nf.append(f)
            pos = b
            k += 1
        else:
            hole = hole or pos < e
        for k in range(k, hi):
            a, f = st[k], fl[k]
            if ne and ne[-1] == a and nf[-1] == f:
                ne[-1] = en[k]
            else:
                ns.append(a)
                ne.append(en[k])
                nf.append(f)
        st[lo:hi] = ns
        en[lo:hi] = ne
        fl[lo:hi] = nf
        return hole

    def mmap(self, s, e, flags):
        """A MAP_FIXED mapping over whatever is there."""
        st, en, fl = self.st, self.en, self.fl
        i = bisect_right(en, s)
        j = bisect_left(st, e)
        ns, ne, nf = [], [], []
        lo, hi = i, j
        if i < j and st[i] < s:                       # the part left below
            if fl[i] == flags:
                s = st[i]
            else:
                ns.append(st[i])
                ne.append(s)
                nf.append(fl[i])
        elif i and en[i - 1] == s and fl[i - 1] == flags:   # merge with the VMA below
            lo = i - 1
            s = st[lo]
        ns.append(s)
        ne.append(e)
        nf.append(flags)
        if i < j and en[j - 1] > e:                   # the part left above
            if fl[j - 1] == flags:
                ne[-1] = en[j - 1]
            else:
                ns.append(e)
                ne.append(en[j - 1])
                nf.append(fl[j - 1])
        elif j < len(st) and st[j] == e and fl[j] == flags:  # merge with the VMA above
            ne[-1] = en[j]
            hi = j + 1
        st[lo:hi] = ns
        en[lo:hi] = ne
        fl[lo:hi] = nf

    def hole(self, s, e):
        """Whether ``[s, e)`` has an unmapped page (madvise's ENOMEM), changing nothing."""
        st, en = self.st, self.en
        k = bisect_right(en, s)
        pos, n = s, len(st)
        while k < n and st[k] < e:
            if st[k] > pos:
                return True
            pos = en[k]
            k += 1
        return pos < e

    def vmas(self):
        """``(start, end, flags)`` of every VMA, in order."""
        return list(zip(self.st, self.en, self.fl))


def _unmap(f):
    return None


def _nohuge(f):
    return f | NOHUGE


_PROTECT = {p: (lambda f, p=p: (f & ~(PROT_READ | PROT_WRITE)) | p)
            for p in (PROT_READ, PROT_READ | PROT_WRITE)}
PAGE = 4096


def floor_apply(calls):
    """Apply parsed calls; the space and every call's result (0 or -ENOMEM)."""
    space = FloorSpace()
    results = []
    append = results.append
    for name, addr, length, arg, _ in calls:
        end = addr + ((length + PAGE - 1) & -PAGE)
        if name == "mmap":
            space.mmap(addr, end, arg)
            append(addr)
        elif name == "munmap":
            space._replace(addr, end, _unmap, False)
            append(0)
        elif name == "mprotect":
            append(ENOMEM if space._replace(addr, end, _PROTECT[arg], True) else 0)
        elif arg == MADV_NOHUGEPAGE:
            append(ENOMEM if space._replace(addr, end, _nohuge, False) else 0)
        else:
            append(ENOMEM if space.hole(addr, end) else 0)
    return space, results


def floor_replay(text):
    """Parse and apply: the floor of what sim_replay times."""
    return floor_apply(floor_parse(text))


def _sim_vmas(proc):
    out = []
    for v in proc.mm.vmas():
        f = v.vm_flags
        prot = (PROT_READ if f & VM_READ else 0) | (PROT_WRITE if f & VM_WRITE else 0)
        out.append((v.start, v.end, prot | (NOHUGE if f & VM_NOHUGEPAGE else 0)))
    return out


def same_as_mmsim(text):
    """Whether the floor ends with the VMAs mmsim's replay of ``text`` ends with, each
    call's result the same: that it did the same address-space work."""
    space, results = floor_replay(text)
    rep = Replayer(Kernel(seed=0))
    outs = rep.run(parse(text, "bench"))
    return (space.vmas() == _sim_vmas(rep.procs[None])
            and results == [o.result for o in outs])


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def run(lines=100_000, repeats=3):
    """CPU seconds, best of ``repeats``, for the floor (parse, apply, both), mmsim's
    parse + replay (as the Goals table times it) and the live kernel's calls (None
    without a C compiler); and whether the floor ended with mmsim's VMAs and results."""
    text, calls = replay_bench.workload(lines)
    parsed = floor_parse(text)
    r = {"lines": lines}
    r["floor_parse"] = _best(lambda: floor_parse(text), repeats)
    r["floor_apply"] = _best(lambda: floor_apply(parsed), repeats)
    r["floor"] = _best(lambda: floor_replay(text), repeats)
    r["sim_parse"] = _best(lambda: parse(text, "bench"), repeats)
    r["sim"] = kernel_bench.sim_replay(text, repeats)
    r["same"] = same_as_mmsim(text)
    r["live"] = None
    if kernel_bench.find_compiler() is not None:
        with tempfile.TemporaryDirectory(prefix="mmsim-floor-") as tmp:
            h = kernel_bench.Helper(tmp)
            path = os.path.join(tmp, "calls.txt")
            kernel_bench.write_calls(calls, path)
            r["live"] = h.run("calls", lines, repeats, path)
    return r


def table(r):
    """The markdown table for BENCHMARKS.md: per call, and the two ratios."""
    n = r["lines"]
    us = lambda s: f"{s / n * 1e6:.2f} us"   # noqa: E731
    live = r["live"]
    rows = [("floor: parse only", r["floor_parse"]), ("floor: apply only", r["floor_apply"]),
            ("floor: parse + apply", r["floor"]), ("mmsim: parse only", r["sim_parse"]),
            ("mmsim: parse + replay (Goals row)", r["sim"])]
    if live is not None:
        rows.append(("kernel: the calls (C helper)", live))
    out = ["| per call | CPU |", "|---|---:|"]
    out += [f"| {name} | {us(t)} |" for name, t in rows]
    out.append("")
    ratios = [f"ours / floor = {r['sim'] / r['floor']:.2f}"]
    if live:
        ratios += [f"floor / kernel = {r['floor'] / live:.2f}",
                   f"ours / kernel = {r['sim'] / live:.2f}"]
    out.append("; ".join(ratios) + f"; floor ends with mmsim's VMAs and results: {r['same']}")
    return "\n".join(out)

"""Replay speed: a 100,000-line trace of mixed mmap, mprotect, madvise and munmap calls,
parsed and replayed, against the same calls made through the Python API."""

import random
import time

from mmsim.kernel import Kernel
from mmsim.trace import Replayer, parse
from mmsim.uapi import (MADV_DONTNEED, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
                        PROT_READ, PROT_WRITE)

W = 0x200000000000
PAGE = 4096
SPAN_PAGES = 16384          # a 64 MiB window
PROTS = {"PROT_READ": PROT_READ, "PROT_READ|PROT_WRITE": PROT_READ | PROT_WRITE}
ADVICE = {"MADV_DONTNEED": MADV_DONTNEED, "MADV_NOHUGEPAGE": MADV_NOHUGEPAGE}


def workload(lines, seed=1):
    """The trace text and the same calls as ``(name, args)`` tuples."""
    rng = random.Random(seed)
    text, calls = [], []
    for _ in range(lines):
        addr = W + rng.randrange(SPAN_PAGES) * PAGE
        length = rng.randint(1, 16) * PAGE
        op = rng.random()
        if op < 0.4:
            pname = rng.choice(list(PROTS))
            text.append(f"mmap({addr:#x}, {length}, {pname}, "
                        f"MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {addr:#x}")
            calls.append(("mmap", (addr, length, PROTS[pname],
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)))
        elif op < 0.65:
            pname = rng.choice(list(PROTS))
            text.append(f"mprotect({addr:#x}, {length}, {pname}) = 0")
            calls.append(("mprotect", (addr, length, PROTS[pname])))
        elif op < 0.85:
            aname = rng.choice(list(ADVICE))
            text.append(f"madvise({addr:#x}, {length}, {aname}) = 0")
            calls.append(("madvise", (addr, length, ADVICE[aname])))
        else:
            text.append(f"munmap({addr:#x}, {length}) = 0")
            calls.append(("munmap", (addr, length)))
    return "\n".join(text) + "\n", calls


def _api(calls):
    proc = Kernel(seed=0).spawn()
    for name, args in calls:
        try:
            getattr(proc, name)(*args)
        except OSError:
            pass
    return proc


def run(lines=100_000, repeats=3):
    """Best-of-``repeats`` seconds for parsing, replaying parsed events, and the API."""
    text, calls = workload(lines)
    best = {"parse": float("inf"), "replay": float("inf"), "api": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        events = parse(text, "bench")
        t1 = time.perf_counter()
        outs = Replayer(Kernel(seed=0)).run(events)
        t2 = time.perf_counter()
        proc = _api(calls)
        t3 = time.perf_counter()
        best["parse"] = min(best["parse"], t1 - t0)
        best["replay"] = min(best["replay"], t2 - t1)
        best["api"] = min(best["api"], t3 - t2)
    # The two runs must have made the same address space.
    replay_maps = Replayer(Kernel(seed=0))
    replay_maps.run(events)
    same = ([(v.start, v.end, v.vm_flags) for v in replay_maps.procs[None].mm.vmas()]
            == [(v.start, v.end, v.vm_flags) for v in proc.mm.vmas()])
    return {"lines": lines, "seconds": best, "same_layout": same, "calls": len(outs)}


def table(r):
    """The markdown table for BENCHMARKS.md."""
    s = r["seconds"]
    n = r["lines"]
    rows = [("parse only", s["parse"]), ("replay of parsed events", s["replay"]),
            ("parse + replay", s["parse"] + s["replay"]), ("Python API, same calls", s["api"])]
    out = ["| phase | seconds | calls/s |", "|---|---:|---:|"]
    out += [f"| {name} | {t:.3f} | {n / t:,.0f} |" for name, t in rows]
    out.append("")
    out.append(f"parse / API = {s['parse'] / s['api']:.2f} (must be <= 1); "
               f"replay / API = {s['replay'] / s['api']:.2f}; "
               f"same final layout as the API run: {r['same_layout']}")
    return "\n".join(out)


def criterion(r):
    """Parsing costs no more than the simulation itself."""
    return r["seconds"]["parse"] <= r["seconds"]["api"] and r["same_layout"]

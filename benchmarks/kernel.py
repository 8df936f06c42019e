"""mmsim against the live kernel, the same work on both sides: issue 13's Goals table.

The live side is a small C helper (benchmarks/kernel_helper.c) compiled at run time with
the system compiler into a temporary directory; it does the work and prints its own CPU
time (getrusage of RUSAGE_SELF, plus RUSAGE_CHILDREN where a child does part of the work),
best of ``repeats``.  mmsim's side is timed with time.process_time(), best of ``repeats``.
CPU time on both sides, so waiting for a CPU on a shared machine counts on neither.
Each row does the same number of pages, VMAs or calls on both sides."""

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

from mmsim.kernel import Kernel
from mmsim.trace import Replayer, parse
from mmsim.uapi import MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE

from . import fork as fork_bench
from . import mctl_walk
from . import replay as replay_bench
from .alternating import live_vma_budget, sim_process

PAGE = 4096
HERE = os.path.dirname(os.path.abspath(__file__))
EXIT0 = ("void _start(void) { __asm__ volatile("
         "\"mov $60, %eax\\n\\txor %edi, %edi\\n\\tsyscall\"); }\n")
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE


def find_compiler():
    """The system C compiler, or None."""
    return shutil.which("cc") or shutil.which("gcc")


class Helper:
    """The compiled live-side helper and a static do-nothing binary that both sides exec."""

    def __init__(self, tmp):
        cc = find_compiler()
        self.bin = os.path.join(tmp, "kernel_helper")
        subprocess.run([cc, "-O2", "-o", self.bin, os.path.join(HERE, "kernel_helper.c")],
                       check=True, capture_output=True)
        # A static binary whose _start exits at once: exec then costs the same ELF load on
        # both sides, with no dynamic loader run only by the live process.
        src = os.path.join(tmp, "exit0.c")
        with open(src, "w") as f:
            f.write(EXIT0)
        self.exit0 = os.path.join(tmp, "exit0")
        try:
            subprocess.run([cc, "-O2", "-static", "-nostdlib", "-o", self.exit0, src],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError:
            self.exit0 = shutil.which("true") or "/usr/bin/true"

    def run(self, mode, n, repeats, *extra):
        """Best-of-``repeats`` CPU seconds of ``mode`` over ``n`` units, live."""
        out = subprocess.run([self.bin, mode, str(n), str(repeats), *extra], check=True,
                             capture_output=True, text=True).stdout
        return float(out)


def _best(fn, repeats):
    return min(fn() for _ in range(repeats))


def _touched(pages):
    proc = Kernel(randomize=False).spawn()
    addr = proc.mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, ANON)
    proc.touch(addr, pages * PAGE, True)
    return proc


def sim_touch(pages, repeats):
    """CPU seconds of a write-fault touch of ``pages`` fresh pages (one Process.touch)."""
    def once():
        proc = Kernel(randomize=False).spawn()
        addr = proc.mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, ANON)
        t0 = time.process_time()
        proc.touch(addr, pages * PAGE, True)
        return time.process_time() - t0
    return _best(once, repeats)


def sim_fork(pages, repeats):
    """CPU seconds of Process.fork of a process with ``pages`` resident pages."""
    def once():
        proc = _touched(pages)
        t0 = time.process_time()
        child = proc.fork()
        t1 = time.process_time()
        child.exit(0)
        proc.wait4(child.pid)
        return t1 - t0
    return _best(once, repeats)


def sim_exit(pages, repeats):
    """CPU seconds of exit + wait4 of a child that has ``pages`` pages of its own."""
    def once():
        parent = Kernel(randomize=False).spawn()
        child = parent.fork()
        addr = child.mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, ANON)
        child.touch(addr, pages * PAGE, True)
        t0 = time.process_time()
        child.exit(0)
        parent.wait4(child.pid)
        return time.process_time() - t0
    return _best(once, repeats)


def sim_smaps(n, repeats):
    """CPU seconds of reading /proc/PID/smaps of ``n`` VMAs."""
    proc = sim_process(n)
    path = f"/proc/{proc.pid}/smaps"
    def once():
        t0 = time.process_time()
        proc.kernel.proc_read(path)
        return time.process_time() - t0
    return _best(once, repeats)


def sim_forkexec(n, repeats, binary):
    """CPU seconds of ``n`` rounds of fork + execve(binary) + exit + wait4."""
    parent = Kernel(randomize=False).spawn()
    def once():
        t0 = time.process_time()
        for _ in range(n):
            child = parent.fork()
            child.execve(binary)
            child.exit(0)
            parent.wait4(child.pid)
        return time.process_time() - t0
    return _best(once, repeats)


def sim_replay(text, repeats):
    """CPU seconds of parsing and replaying the trace text."""
    def once():
        t0 = time.process_time()
        Replayer(Kernel(seed=0)).run(parse(text, "bench"))
        return time.process_time() - t0
    return _best(once, repeats)


def write_calls(calls, path):
    """The replay workload's calls in the helper's format: op addr len arg per line."""
    code = {"mmap": "m", "mprotect": "p", "madvise": "a", "munmap": "u"}
    with open(path, "w") as f:
        for name, args in calls:
            arg = args[2] if name in ("mmap", "mprotect", "madvise") else 0
            f.write(f"{code[name]} {args[0]:x} {args[1]} {arg}\n")


def sim_memory_per_page(pages):
    """Python bytes (tracemalloc) per resident page, worst case: every other page touched,
    so no resident page has a resident neighbour."""
    proc = Kernel(randomize=False).spawn()
    addr = proc.mmap(0, 2 * pages * PAGE, PROT_READ | PROT_WRITE, ANON)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(pages):
        proc.touch(addr + 2 * i * PAGE, PAGE, True)
    kept = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return kept / pages


BIG_CODE = """
import sys, time
from mmsim.kernel import Kernel
from mmsim.uapi import MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE
pages = int(sys.argv[1])
t0 = time.process_time()
proc = Kernel(randomize=False, memory=max(pages * 4096 * 2, 1 << 34)).spawn()
addr = proc.mmap(0, pages * 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
proc.touch(addr, pages * 4096, True)
child = proc.fork()
child.exit(0)
proc.wait4(child.pid)
cpu = time.process_time() - t0
# VmHWM, not ru_maxrss: exec keeps the launching process' peak in ru_maxrss.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(cpu, hwm * 1024)
"""


def sim_big(pages):
    """In a fresh interpreter: CPU seconds and peak RSS bytes of touch + fork + child exit
    of ``pages`` private pages (peak RSS includes the interpreter's own)."""
    out = subprocess.run([sys.executable, "-c", BIG_CODE, str(pages)], check=True,
                         capture_output=True, text=True, env=dict(os.environ)).stdout.split()
    return float(out[0]), int(out[1])


def run(quick=False, repeats=3, log=lambda msg: None):
    """Every row of the Goals table: a list of dicts (work, sim, live, unit, ratio, goal, met)."""
    pages = 1024 if quick else 262_144                     # 1 GiB of 4 KiB pages
    vmas = 2_000 if quick else 65_530
    lines = 2_000 if quick else 100_000
    procs = 20 if quick else 200
    mem_pages = 2_000 if quick else 100_000
    big_pages = 4096 if quick else 16 << 20                # 64 GiB
    rows = []

    def row(work, sim, live, unit, goal, limit, scale=1e9, note=""):
        ratio = sim / live if live else None
        rows.append({"work": work, "sim": sim * scale, "live": live * scale if live else None,
                     "unit": unit, "ratio": ratio, "goal": goal,
                     "met": ratio is not None and 0 < ratio <= limit, "note": note})

    with tempfile.TemporaryDirectory(prefix="mmsim-kbench-") as tmp:
        h = Helper(tmp)
        log("touch")
        row(f"write-fault touch of {pages * PAGE >> 20} MiB, per page",
            sim_touch(pages, repeats) / pages, h.run("touch", pages, repeats) / pages,
            "ns", "<= 0.25x kernel", 0.25)
        log("fork per page")
        row(f"fork, per resident page ({pages:,} pages)", sim_fork(pages, repeats) / pages,
            h.run("fork", pages, repeats) / pages, "ns", "<= 0.5x kernel", 0.5)
        log("exit per page")
        row(f"exit teardown, per page ({pages:,} pages)", sim_exit(pages, repeats) / pages,
            h.run("exit", pages, repeats) / pages, "ns", "<= 0.5x kernel", 0.5)
        # fork and mctl per VMA: the existing benchmarks (median of repeats, slope between
        # 1 and N VMAs, live side in a Python child through ctypes and os.fork).
        log("fork per VMA")
        fk = fork_bench.run(vmas, repeats)
        row(f"fork, per VMA ({fk['live_vmas']:,} live / {fk['sim_vmas']:,} mmsim VMAs)",
            fk["sim_ns_per_vma"] / 1e9, fk["live_ns_per_vma"] / 1e9, "ns", "<= 1.0x kernel", 1.0,
            note="median of repeats (benchmarks/fork.py)")
        log("mctl walk")
        mw = mctl_walk.run(vmas, repeats)
        row(f"mctl SET walk vs madvise walk, per VMA ({mw['live_vmas']:,} / "
            f"{mw['sim_vmas']:,} VMAs)", mw["sim_first"] / 1e9, mw["live_first"] / 1e9, "ns",
            "<= 1.0x", 1.0, note="median of repeats (benchmarks/mctl_walk.py)")
        log("smaps")
        sv = min(vmas, live_vma_budget())
        row(f"/proc/PID/smaps, per VMA ({sv:,} VMAs)", sim_smaps(sv, repeats) / sv,
            h.run("smaps", sv, repeats) / sv, "ns", "<= 2x kernel", 2.0)
        log("replay")
        text, calls = replay_bench.workload(lines)
        cpath = os.path.join(tmp, "calls.txt")
        write_calls(calls, cpath)
        row(f"replay of a mixed {lines:,}-line trace (parse + replay), per call",
            sim_replay(text, repeats) / lines, h.run("calls", lines, repeats, cpath) / lines,
            "ns", "<= 4x kernel", 4.0)
        log("fork+exec")
        row(f"fork + exec + exit + wait, per process ({procs} x {os.path.basename(h.exit0)})",
            sim_forkexec(procs, repeats, h.exit0) / procs,
            h.run("forkexec", procs, repeats, h.exit0) / procs, "ns", "<= 1.5x kernel", 1.5)
    log("memory")
    per_page = sim_memory_per_page(mem_pages)
    rows.append({"work": f"Python memory per resident base page, worst case ({mem_pages:,} "
                 "pages, every other page touched)", "sim": per_page, "live": 72.0, "unit": "B",
                 "ratio": per_page / 72.0, "goal": "<= 48 B", "met": per_page <= 48,
                 "note": "kernel: 64 B struct page + 8 B PTE"})
    log("big")
    cpu, rss = sim_big(big_pages)
    size = big_pages * PAGE
    label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    scale = (64 << 30) / size
    note = "" if size == 64 << 30 else (
        f"measured at {label}; CPU scaled x{scale:g} to 64 GiB, RSS as measured")
    rows.append({"work": f"64 GiB private memory: touch, fork, child exit ({label} run)",
                 "sim": cpu * scale, "live": None, "unit": "s CPU", "ratio": None,
                 "goal": "<= 10 s CPU, <= 1 GB peak RSS",
                 "met": cpu * scale <= 10 and rss <= 1e9,
                 "note": f"peak RSS {rss / 1e9:.3f} GB" + (f"; {note}" if note else "")})
    return rows


def _num(x):
    """A measured value: one decimal, or three significant digits below 10."""
    return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"


def table(rows):
    """The markdown table: work, mmsim, kernel, ratio, goal, met?."""
    out = ["| work | mmsim | kernel | ratio | goal | met? |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        live = "-" if r["live"] is None else f"{_num(r['live'])} {r['unit']}"
        ratio = "-" if r["ratio"] is None else f"{_num(r['ratio'])}x"
        note = f" ({r['note']})" if r["note"] else ""
        out.append(f"| {r['work']}{note} | {_num(r['sim'])} {r['unit']} | {live} | {ratio} | "
                   f"{r['goal']} | {'yes' if r['met'] else 'no'} |")
    return "\n".join(out)

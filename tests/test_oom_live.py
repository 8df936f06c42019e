"""Differential: /proc/PID/oom_score of real processes with known anonymous memory, at
several oom_score_adj values, against mmsim's for the same memory on a Kernel as
large as this machine.  Only the children's own oom_score_adj is written; they are
killed at the end."""

import mmap
import os
import subprocess
import sys

import pytest

from mmsim import Kernel, oom
from mmsim.cred import CAP_SYS_RESOURCE, Cred
from mmsim.procfs import pte_pages

pytestmark = pytest.mark.live

CHILD = """
import mmap, sys, time
n = int(sys.argv[1]) << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, n, 4096):
    m[i] = 1
print("ready", flush=True)
time.sleep(120)
"""

ADJS = (0, 300, 1000, 500, 0, -300, 1000, -999, -1000)


def _cap_eff():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) // 4   # pages
    return out


def _memtotal():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no MemTotal")


def _swaptotal_pages():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) // 4
    return 0


def _sim_process(k, target):
    """A simulated process whose rss + page tables come to ``target`` pages (or one
    more, when the last page table it needs tips it over)."""
    p = k.spawn()
    mm = p.mm
    # A first guess leaving room for one page table per 512 pages (and one spare).
    n = target - (target + 511) // 512 - 2
    while n > 0:
        addr = p.mmap(0, n << 12, mmap.PROT_READ | mmap.PROT_WRITE,
                      mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        p.touch(addr, n << 12)
        n = target - mm.rss_anon - pte_pages(mm)
    return p


@pytest.mark.skipif(os.geteuid() != 0, reason="writing another process' oom_score_adj")
@pytest.mark.parametrize("mib", [64, 256])
def test_oom_score_matches_the_live_kernel(mib):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(mib)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pid = child.pid
        total = (_memtotal() >> 12) + _swaptotal_pages()
        k = Kernel(memory=_memtotal())
        k.spawn()   # init
        assert oom.totalpages_of(k, None) == total
        st = _status(pid)
        base = st["VmRSS"] + st.get("VmSwap", 0) + st["VmPTE"]
        assert st["RssAnon"] >= mib << 8   # the touched memory is resident
        sim = _sim_process(k, base)
        sim_base = sim.mm.rss_anon + pte_pages(sim.mm)
        assert base <= sim_base <= base + 1
        # The simulated writer has this test's capabilities: without CAP_SYS_RESOURCE
        # (a container), going below 0 is EACCES on both sides.
        caps = _cap_eff()
        writer = k.spawn()
        writer.cred = Cred(0, 0, caps=caps)
        for adj in ADJS:
            try:
                with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                    f.write(str(adj))
            except PermissionError:
                assert adj < 0 and not caps >> CAP_SYS_RESOURCE & 1
                with pytest.raises(PermissionError):
                    k.proc_write(f"/proc/{sim.pid}/oom_score_adj", str(adj), writer)
                continue
            with open(f"/proc/{pid}/oom_score") as f:
                live = int(f.read())
            assert _status(pid)["VmRSS"] + _status(pid)["VmPTE"] == st["VmRSS"] + st["VmPTE"]
            # the kernel's formula, fed the live process' own counts
            expect = 0 if adj == -1000 else oom.score_points(base + adj * (total // 1000), total)
            assert live == expect, (adj, live, expect)
            k.proc_write(f"/proc/{sim.pid}/oom_score_adj", str(adj), writer)
            got = int(k.proc_read(f"/proc/{sim.pid}/oom_score"))
            if sim_base == base:
                assert got == live, (adj, got, live)
            else:
                assert abs(got - live) <= 1, (adj, got, live)
    finally:
        child.kill()
        child.wait()

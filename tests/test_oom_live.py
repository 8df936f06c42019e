"""Differential: /proc/PID/oom_score of real processes with known anonymous memory, at
several oom_score_adj values, against mmsim's for the same memory on a Kernel as
large as this machine.  Only the children's own oom_score_adj is written; they are
killed at the end."""

import errno
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


# The numbers the kernel's parsers take: page_counter_memparse through cgroup v1's
# memory.soft_limit_in_bytes on this host (the same parser as v2's memory.max, with
# "-1" for "max"; setting a soft limit reclaims nothing), and kstrtoint through a
# child's own oom_score_adj.
SIZES = ["0", "4096", "8191", "1k", "4K", "8M", "8m\n", "  1G  ", "1T", "0x2000", "020000",
         "k", "m", "9223372036854775807", "64E", "100E", "-2", "8MB", "8 M", "1.5G", "abc",
         "0x", "09", "max", "1KK", "\n"]
V1 = "/sys/fs/cgroup/memory"


def _write(path, text):
    """0 or the errno of writing ``text`` in one write(2)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
    return 0


@pytest.mark.skipif(not os.path.isdir(V1) or os.geteuid() != 0,
                    reason="needs root and the cgroup v1 memory controller")
def test_limit_parsing_matches_page_counter_memparse():
    from mmsim import cgroup
    path = f"{V1}/mmsim-memparse-{os.getpid()}"
    os.mkdir(path)
    try:
        knob = f"{path}/memory.soft_limit_in_bytes"
        for text in SIZES:
            _write(knob, "0")
            err = _write(knob, text)
            live = err or int(open(knob).read())
            try:
                sim = cgroup.page_counter_memparse(text) * 4096
                if text.strip() == "max":
                    sim = errno.EINVAL   # v1 calls it "-1"
            except OSError as e:
                sim = e.errno
            assert sim == live, (text, sim, live)
    finally:
        os.rmdir(path)


ADJ_TEXTS = [" 300\n", "0x12c", "+300", "0300", "1001", "-1001", "abc", "", "99999999999",
             "3 00", "300abc", "1000", "   1000000000000   "]


@pytest.mark.skipif(os.geteuid() != 0, reason="writing another process' oom_score_adj")
def test_oom_score_adj_parsing_matches_the_live_kernel():
    child = subprocess.Popen(["sleep", "60"])
    try:
        k = Kernel()
        k.spawn()
        sim = k.spawn()
        for text in ADJ_TEXTS:
            err = _write(f"/proc/{child.pid}/oom_score_adj", text)
            live = err or int(open(f"/proc/{child.pid}/oom_score_adj").read())
            try:
                k.proc_write(f"/proc/{sim.pid}/oom_score_adj", text)
                got = int(k.proc_read(f"/proc/{sim.pid}/oom_score_adj"))
            except OSError as e:
                got = e.errno
            assert got == live, (text, got, live)
    finally:
        child.kill()
        child.wait()

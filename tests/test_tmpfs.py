"""The tmpfs at /dev/shm: its files are shmem (Shmem in meminfo, swap-backed, kept
while linked), follow its huge=never and shmem_enabled's deny and force, and show the
mount's device in /proc; checked against the live kernel's /dev/shm."""

import ctypes
import os
import re

import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import MADV_HUGEPAGE

P = 4096
PMD = 2 << 20
SIZE = 4 * PMD
T = "/sys/kernel/mm/transparent_hugepage/"
FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
          "Referenced", "Anonymous", "ShmemPmdMapped", "FilePmdMapped", "THPeligible")


def _block(text, addr):
    """The smaps block of the VMA at ``addr``: its maps line without the device and
    inode numbers (the host's own), FIELDS and VmFlags."""
    for b in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        if int(b.split("-")[0], 16) == addr:
            head = b.splitlines()[0].split()
            fields = {k: int(re.search(rf"^{k}:\s+(\d+)", b, re.M).group(1)) for k in FIELDS}
            flags = re.search(r"^VmFlags: (.*)$", b, re.M).group(1).split()
            return [head[1], head[2], head[5]], fields, flags
    raise AssertionError(f"no VMA at {addr:#x}")


def _sim(shmem_enabled="never"):
    k = Kernel(thp="madvise", randomize=False)
    k.proc_write(T + "shmem_enabled", shmem_enabled)
    p = k.spawn()
    fd = p.open("/dev/shm/probe", os.O_CREAT | os.O_RDWR, 0o600)
    p.ftruncate(fd, SIZE)
    a = 0x7f0000000000
    p.mmap(a, SIZE, 3, 0x11, fd, 0)   # MAP_SHARED | MAP_FIXED
    p.madvise(a, SIZE, MADV_HUGEPAGE)
    p.touch(a, SIZE)
    head, fields, flags = _block(k.proc_read(f"/proc/{p.pid}/smaps"), a)
    head[2] = "/dev/shm/probe"
    return k, p, fd, a, (head, fields, flags)


def _live():
    libc = live.load_libc()
    path = f"/dev/shm/mmsim-tmpfs-{os.getpid()}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        raw = libc.mmap(None, SIZE + PMD, 0, 0x22, -1, 0)
        a = (raw + PMD - 1) & ~(PMD - 1)
        libc.munmap(raw, SIZE + PMD)
        assert libc.mmap(a, SIZE, 3, 0x11, fd, 0) == a
        assert libc.madvise(a, SIZE, MADV_HUGEPAGE) == 0
        for off in range(0, SIZE, P):
            ctypes.c_char.from_address(a + off).value = b"x"
        with open("/proc/self/smaps") as f:
            head, fields, flags = _block(f.read(), a)
        head[2] = "/dev/shm/probe"
        return head, fields, flags
    finally:
        os.close(fd)
        os.unlink(path)


def test_a_dev_shm_file_is_shmem_and_stays_while_linked():
    k, p, fd, a, _ = _sim()
    maps = k.proc_read(f"/proc/{p.pid}/maps")
    assert " 00:1b " in maps and maps.splitlines()[0].endswith("/dev/shm/probe")
    meminfo = dict(line.split(":") for line in k.proc_read("/proc/meminfo").splitlines())
    assert int(meminfo["Shmem"].split()[0]) == SIZE >> 10
    p.munmap(a, SIZE)
    p.close(fd)
    meminfo = dict(line.split(":") for line in k.proc_read("/proc/meminfo").splitlines())
    assert int(meminfo["Shmem"].split()[0]) == SIZE >> 10   # its name holds it
    fd = p.open("/dev/shm/probe", os.O_RDWR)
    assert p.pread(fd, 10, 0) == 10


def test_dev_shm_huge_never_ignores_madvise_and_per_size_knobs():
    """huge=never: no huge folio even with MADV_HUGEPAGE, shmem_enabled always and
    every per-size shmem knob on; shmem_enabled force overrides the mount."""
    k, p, fd, a, (_, fields, _) = _sim("always")
    assert fields["ShmemPmdMapped"] == 0 and fields["THPeligible"] == 0
    k, p, fd, a, (_, fields, _) = _sim("force")
    assert fields["ShmemPmdMapped"] == SIZE >> 10 and fields["THPeligible"] == 1


@pytest.mark.live
def test_dev_shm_file_smaps_matches_live_kernel():
    if not os.path.isdir("/dev/shm") or not live.available()[0]:
        pytest.skip("needs /dev/shm on a Linux host")
    with open("/proc/mounts") as f:
        mounts = [line.split() for line in f]
    shm = [m for m in mounts if m[1] == "/dev/shm"]
    if not shm or shm[-1][2] != "tmpfs" or "huge=" in shm[-1][3]:
        pytest.skip("needs /dev/shm as a tmpfs with the default huge=never")
    with open(T + "shmem_enabled") as f:
        mode = re.search(r"\[(\w+)\]", f.read()).group(1)
    if mode in ("force", "deny"):
        pytest.skip(f"shmem_enabled is {mode} on the host")
    want = _sim(mode)[4]
    got = live.in_child(_live, "tmpfs smaps")
    assert [list(x) if isinstance(x, (list, tuple)) else x for x in got] == [
        list(want[0]), want[1], want[2]]

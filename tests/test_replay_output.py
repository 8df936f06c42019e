"""Issue 12, parts 5 and 7: layout details (the vsyscall page, file mappings placed as
thp_get_unmapped_area places them, --follow keyed by the mm) and output a user can act
on (--check in strace's terms, policies before the first line, dumps, --json, and
streaming in flat memory)."""

import json
import os

import pytest

from mmsim import cli
from mmsim.kernel import Kernel
from mmsim.replay import replay_trace


def _run(capsys, argv):
    status = cli.main(argv)
    cap = capsys.readouterr()
    return status, cap.out, cap.err


def _trace(tmp_path, text, name="t.strace"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_follow_takes_each_new_address_space_first_brk():
    """--follow sets the break from each address space's first brk(NULL), keyed by the
    Mm itself: forty short-lived children, whose freed Mm objects Python reuses the
    memory (and so the id()) of, each get their own recorded break."""
    lines = []
    for i in range(40):
        pid = 100 + i
        lines += [f"fork() = {pid}",
                  f"[pid {pid}] brk(NULL) = {0x560000000000 + i * 0x100000:#x}",
                  f"[pid {pid}] exit_group(0) = ?",
                  f"wait4({pid}, NULL, 0, NULL) = {pid}"]
    out = replay_trace("\n".join(lines) + "\n", Kernel(), follow=True)
    assert [o.line() for o in out if not o.matches()] == []


# ---------------------------------------------------------------- file mmap placement

PMD = 2 << 20
# (length, offset): covers a whole 2 MiB-aligned stretch of the file or not
_FILE_CASES = [(8 << 20, 0, True), (3 << 20, 0, True), (2 << 20, 0, True),
               (4 << 20, 4096, True), (4 << 20, 2 << 20, True), (4 << 20, 1 << 20, True),
               (2 << 20, 4096, False), (1 << 20, 0, False)]


def _big_file(tmp_path, size=16 << 20):
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
    return str(path)


def _thp_fs(path):
    from mmsim.binfmt_elf import THP_AREA_FILESYSTEMS, _fs_type
    return _fs_type(os.stat(path).st_dev) in THP_AREA_FILESYSTEMS


@pytest.mark.parametrize("length,offset,covers", _FILE_CASES)
@pytest.mark.parametrize("shared", [False, True])
def test_file_mmap_is_placed_like_thp_get_unmapped_area(tmp_path, length, offset, covers,
                                                        shared):
    """On ext4/xfs, a file mapping covering a whole PMD-aligned 2 MiB of the file starts
    at the file offset's place within a PMD (as the live kernel does: checked below);
    otherwise the ordinary search places it, exactly as on a filesystem without the
    rule."""
    path = _big_file(tmp_path)
    if not _thp_fs(path):
        pytest.skip("the temporary folder is not on ext4 or xfs")
    from mmsim.uapi import MAP_PRIVATE, MAP_SHARED, O_RDONLY, PROT_READ

    def place(thp_area):
        k = Kernel(seed=3)
        p = k.spawn()
        p.mmap(0, 5 * 4096, PROT_READ, 0x22, -1, 0)   # a small anonymous mapping first
        if thp_area:
            # as replay opens a host file: its real inode, filesystem rule included
            from mmsim.binfmt_elf import _inode_for
            _inode_for(k, path, os.stat(path))
            fd = p.open(path, O_RDONLY)
        else:
            k.create_file(path + ".plain", 16 << 20)
            fd = p.open(path + ".plain", O_RDONLY)
        return p.mmap(0, length, PROT_READ, MAP_SHARED if shared else MAP_PRIVATE, fd, offset)

    addr = place(True)
    if covers:
        assert (addr - offset) % PMD == 0
    else:
        assert addr == place(False)


@pytest.mark.live
def test_file_mmap_placement_matches_the_live_kernel(tmp_path):
    """The live kernel aligns exactly the mappings the model aligns (ext4/xfs here)."""
    import ctypes
    import platform
    if platform.system() != "Linux" or not platform.release().startswith("6."):
        pytest.skip("needs a Linux 6.x kernel")
    path = _big_file(tmp_path)
    if not _thp_fs(path):
        pytest.skip("the temporary folder is not on ext4 or xfs")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        for length, offset, covers in _FILE_CASES:
            if not covers:
                continue    # the ordinary search's address is random under ASLR
            addr = libc.mmap(None, length, 1, 2, fd, offset)
            assert addr not in (None, ctypes.c_void_p(-1).value)
            libc.munmap(addr, length)
            assert (addr - offset) % PMD == 0, (length, offset, hex(addr))
    finally:
        os.close(fd)


def test_replayed_file_mmap_is_pmd_aligned(tmp_path):
    """A replayed mmap of a large file on ext4/xfs lands where the kernel put it: with
    the offset's place within a PMD, so the recorded result reproduces."""
    path = _big_file(tmp_path)
    if not _thp_fs(path):
        pytest.skip("the temporary folder is not on ext4 or xfs")
    text = (f'openat(AT_FDCWD, "{path}", O_RDONLY) = 3\n'
            "mmap(NULL, 8388608, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0000000000\n")
    out = replay_trace(text, Kernel(seed=1))
    assert out[1].result % PMD == 0

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


# ---------------------------------------------------------------- part 7: output

W = 0x200000000000
MAP = f"mmap({W:#x}, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"


def test_check_prints_results_as_strace_does(tmp_path, capsys):
    """--check names each mismatch by the call as strace prints it: hex addresses and
    ``-1 ENAME (text)``, for the actual and the recorded result."""
    path = _trace(tmp_path, f"{MAP} = {W:#x}\n"
                            f"munmap({W + 4096:#x}, 4096) = -1 ENOMEM (Cannot allocate memory)\n"
                            f"mmap(NULL, 4096, PROT_READ, MAP_SHARED, 99, 0) = {W:#x}\n")
    status, out, err = _run(capsys, ["replay", path, "--check"])
    assert status == 1
    lines = [ln.split(": ", 1)[1] for ln in err.splitlines()]
    assert lines[0] == (f"{path}:2: munmap({W + 4096:#x}, 4096) = 0, but the trace recorded "
                        "-1 ENOMEM (Cannot allocate memory)")
    assert lines[-1] == (f"{path}:3: mmap(NULL, 4096, PROT_READ, MAP_SHARED, 99, 0) = -1 EBADF "
                         f"(Bad file descriptor), but the trace recorded {W:#x}")


def test_check_advises_on_an_exec_layout_mismatch(tmp_path, capsys):
    """The first mismatch is an mprotect of memory no logged call mapped (ld.so's RELRO
    in the program exec placed under ASLR): --check says what to do."""
    path = _trace(tmp_path, "brk(NULL) = 0x55d4c2f1e000\n"
                            "mprotect(0x55d4c1a3b000, 4096, PROT_READ) = 0\n")
    status, _, err = _run(capsys, ["replay", path, "--check", "--norandmaps"])
    assert status == 1
    assert "--follow" in err and "setarch -R" in err and "--norandmaps" in err
    # A mismatch that is not about the layout gets no such advice.
    path = _trace(tmp_path, f"{MAP} = {W:#x}\nmprotect({W:#x}, 4096, PROT_READ) = -1 EINVAL "
                            "(Invalid argument)\n", "u.strace")
    status, _, err = _run(capsys, ["replay", path, "--check"])
    assert status == 1 and "setarch" not in err


def test_show_lines_print_meminfo_vmstat_and_status(tmp_path, capsys):
    """``# meminfo``, ``# vmstat`` and ``# status`` print those files where they stand."""
    path = _trace(tmp_path, f"{MAP}\n# meminfo\n# vmstat\n# status\n")
    status, out, _ = _run(capsys, ["replay", path])
    k = Kernel()
    assert status == 0
    assert "\n# meminfo\nMemTotal:" in out and "\n# vmstat\n" in out
    assert "# status pid 1\nName:\tsim\n" in out and "VmSize:\t       8 kB\n" in out
    status, out, _ = _run(capsys, ["replay", path, "--json"])
    doc = json.loads(out)
    kinds = [e["type"] for e in doc["events"]]
    assert kinds == ["call", "meminfo", "vmstat", "status"]
    assert doc["events"][1]["fields"]["MemTotal"] == k.memory >> 10
    assert doc["events"][3]["fields"]["VmSize"] == 8


def test_dump_at_exit_prints_smaps_before_teardown(tmp_path, capsys):
    """--dump-at-exit: each process' smaps just before exit or exec tears its address
    space down (not at a vfork child's exit, which does not)."""
    text = (f"fork() = 7\n[pid 7] {MAP} = {W:#x}\n[pid 7] exit_group(0) = ?\n"
            "wait4(7, NULL, 0, NULL) = 7\n")
    path = _trace(tmp_path, text)
    status, out, _ = _run(capsys, ["replay", path, "--dump-at-exit"])
    lines = out.splitlines()
    i = lines.index("# dump pid 7 (at exit)")
    assert lines[i + 1].startswith(f"{W:x}-{W + 8192:x} rw-p")
    assert lines[-1] == "wait4(7, NULL, 0, NULL) = 7"
    status, out2, _ = _run(capsys, ["replay", path])
    assert "(at exit)" not in out2
    status, out, _ = _run(capsys, ["replay", path, "--dump-at-exit", "--json"])
    dumps = [e for e in json.loads(out)["events"] if e["type"] == "dump"]
    assert dumps[0]["at_exit"] and dumps[0]["smaps"][0]["start"] == W


def test_policies_apply_before_the_first_line(tmp_path, capsys):
    """--prctl, --mctl and --before act on the initial process before the first line."""
    path = _trace(tmp_path, "prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) = 0\n"
                            "mctl(PIDFD_SELF, MCTL_GET, 0) = 0\n")
    assert _run(capsys, ["replay", path, "--check"])[0] == 0
    status, out, _ = _run(capsys, ["replay", path, "--prctl", "PR_SET_THP_DISABLE,1,0,0,0"])
    assert out.splitlines()[0].endswith("= 1")
    status, out, _ = _run(capsys, ["replay", path, "--mctl",
                                   "MCTL_SET_NOHUGEPAGE,MCTL_SET_DEFAULT_EXEC"])
    assert status == 0 and out.splitlines()[1] == "mctl(PIDFD_SELF, MCTL_GET, 0) = 2"
    before = _trace(tmp_path, "prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) = 0\n", "b.strace")
    status, out, _ = _run(capsys, ["replay", path, "--before", before])
    assert out.splitlines() == ["prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) = 0",
                                "prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) = 1",
                                "mctl(PIDFD_SELF, MCTL_GET, 0) = 0"]
    status, _, err = _run(capsys, ["replay", path, "--mctl", "MCTL_NOPE"])
    assert status == 2 and "unknown constant MCTL_NOPE" in err
    status, _, err = _run(capsys, ["replay", path, "--prctl", "PR_SET_THP_DISABLE,1,1,0,0"])
    assert status == 2 and "--prctl: prctl(PR_SET_THP_DISABLE, 1, 1, 0, 0) = -1 EINVAL" in err


def test_json_carries_the_diagnostics(tmp_path, capsys):
    path = _trace(tmp_path, "brk(NULL) = 0x55d4c2f1e000\n")
    status, out, _ = _run(capsys, ["replay", path, "--json", "--norandmaps"])
    doc = json.loads(out)
    assert status == 0 and doc["mismatches"] == 1
    assert doc["events"][0]["recorded_text"] == "0x55d4c2f1e000"
    assert "but the trace recorded 0x55d4c2f1e000" in doc["diagnostics"][0]
    assert "--follow" in doc["diagnostics"][1]


def test_a_malformed_line_stops_the_run_before_anything_runs(tmp_path, capsys):
    """Streamed output still checks the whole trace first (and stdin is read twice)."""
    path = _trace(tmp_path, f"{MAP}\n" * 3 + "frob(1)\n")
    status, out, err = _run(capsys, ["replay", path])
    assert status == 2 and out == "" and ":4: unknown call frob()" in err


def _generated(tmp_path, n):
    path = tmp_path / "long.strace"
    with open(path, "w") as fh:
        for i in range(n // 4):
            a = 0x7f0000000000 + (i % 64) * 0x10000
            fh.write(f"mmap({a:#x}, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|"
                     f"MAP_FIXED, -1, 0) = {a:#x}\nmprotect({a:#x}, 4096, PROT_READ) = 0\n"
                     f'read(0, "abc", 3) = 3\nmunmap({a:#x}, 65536) = 0\n')
    return str(path)


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_memory_stays_flat_in_the_trace_length(tmp_path, fmt):
    """A 24,000-line trace replays within a few MiB of Python allocations (the whole
    parsed trace and its outcomes, held at once, took about 15 MiB)."""
    import contextlib
    import io
    import tracemalloc

    class Sink(io.TextIOBase):
        lines = 0

        def write(self, s):
            self.lines += s.count("\n")
            return len(s)

    path = _generated(tmp_path, 24000)
    sink = Sink()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(sink):
            status = cli.main(["replay", path, "--check", *fmt])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0 and sink.lines >= 24000
    assert peak < 6 << 20, peak


def test_lazy_parser_gives_what_parse_gives(tmp_path):
    """iter_parse(iter_lines(path)) yields exactly parse(read_trace(path)): every trace
    in tests/data, an unfinished fork whose child's lines come before it resumes, and a
    non-UTF-8 byte."""
    import glob
    from mmsim.strace import TraceError, iter_lines, iter_parse, parse, read_trace
    root = os.path.join(os.path.dirname(__file__), "data")
    paths = sorted(glob.glob(os.path.join(root, "**", "*.strace"), recursive=True))
    extra = tmp_path / "fork.strace"
    extra.write_bytes(b"100 fork( <unfinished ...>\n101 mmap(NULL, 4096, PROT_READ, "
                      b"MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
                      b"100 <... fork resumed>) = 101\n# caf\xe9\n100 exit_group(0) = ?\n")
    paths.append(str(extra))
    assert len(paths) > 5
    def outcome(fn):
        try:
            return fn()
        except TraceError as e:
            return str(e)
    for path in paths:
        assert (outcome(lambda: list(iter_parse(iter_lines(path), path)))
                == outcome(lambda: parse(read_trace(path), path))), path


@pytest.mark.live
def test_diff_accepts_show_lines(tmp_path, capsys):
    """``mmsim diff`` on a trace with ``# meminfo``/``# status`` lines: they show
    nothing on the live side, and are no difference."""
    from mmsim.live import available
    ok, why = available()
    if not ok:
        pytest.skip(why)
    path = _trace(tmp_path, f"mmap({W:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|"
                            f"MAP_FIXED_NOREPLACE, -1, 0) = {W:#x}\n# meminfo\n# status\n# dump\n")
    status, out, err = _run(capsys, ["diff", path])
    assert status == 0, out + err

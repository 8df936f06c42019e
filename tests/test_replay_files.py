"""Issue 12 part 4: files as the log saw them.  Sizes set by write, pwrite, ftruncate and
fallocate; a file offset per open file description; a working directory per process
and a path per descriptor; dup/dup2/dup3/fcntl, pipes, sockets, eventfds and memfds;
--root and, under --follow, files missing here simulated as the log saw them;
/proc/PID/maps naming files by their resolved path."""

import errno
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess

import pytest

from mmsim import cli
from mmsim.kernel import Kernel
from mmsim.replay import FILE_CALLS, replay_trace
from mmsim.testing import errno_of
from mmsim.uapi import (AT_FDCWD, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, O_APPEND, O_CLOEXEC,
                        O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY,
                        PROT_READ, PROT_WRITE)

P = 4096
RW = PROT_READ | PROT_WRITE
DATA = pathlib.Path(__file__).parent / "data" / "strace" / "files"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
LIVE = os.uname().sysname == "Linux" and os.uname().release.startswith("6.")


def machine():
    k = Kernel(seed=1)
    proc = k.spawn()
    proc.chdir("/")
    return k, proc


def maps_names(k, proc):
    return [line.split(None, 5)[5] for line in k.proc_read(f"/proc/{proc.pid}/maps").splitlines()
            if len(line.split(None, 5)) == 6]


# ---------------------------------------------------------------- sizes and offsets

def test_write_at_the_offset_sizes_the_file_and_sigbus_follows_the_size():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT, 0o644)
    assert k.files["/data"].size == 0
    addr = proc.mmap(0, 4 * P, RW, MAP_SHARED, fd, 0)
    assert errno_of(proc.touch, addr, 1, False) == errno.EFAULT     # SIGBUS: empty file
    assert proc.write(fd, 5000) == 5000
    assert proc.touch(addr, 2 * P) == 0
    assert errno_of(proc.touch, addr + 2 * P, 1, False) == errno.EFAULT
    assert proc.pwrite(fd, 100, 12000) == 100
    assert proc.lseek(fd, 0, 1) == 5000          # pwrite leaves the offset
    assert proc.lseek(fd, 0, 2) == 12100
    assert proc.touch(addr + 2 * P, P) == 0
    assert proc.write(fd, 10) == 10              # at the offset: the end now
    assert k.files["/data"].size == 12110


def test_ftruncate_shrinking_drops_the_pages_past_the_end_from_every_mapping():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT)
    proc.ftruncate(fd, 4 * P)
    shared = proc.mmap(0, 4 * P, RW, MAP_SHARED, fd, 0)
    private = proc.mmap(0, 4 * P, RW, MAP_PRIVATE, fd, 0)
    proc.touch(shared, 4 * P)
    proc.touch(private, 4 * P)                   # private copies of every page
    assert proc.mm.rss_file + proc.mm.rss_anon == 8
    cached = k.node.nr_file_pages
    proc.ftruncate(fd, P)
    assert proc.mm.rss_file + proc.mm.rss_anon == 2
    assert k.node.nr_file_pages == cached - 3
    assert errno_of(proc.touch, shared + P, 1, False) == errno.EFAULT
    assert errno_of(proc.touch, private + 3 * P, 1, False) == errno.EFAULT
    proc.mm.check()


def test_fallocate_extends_unless_keep_size_and_punches_holes():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT)
    assert proc.fallocate(fd, 0, 0, 4 * P) == 0
    assert k.files["/data"].size == 4 * P
    assert proc.fallocate(fd, 1, 0, 8 * P) == 0
    assert k.files["/data"].size == 4 * P
    addr = proc.mmap(0, 4 * P, RW, MAP_SHARED, fd, 0)
    proc.touch(addr, 4 * P)
    assert proc.fallocate(fd, 3, P, 2 * P) == 0   # PUNCH_HOLE | KEEP_SIZE
    assert proc.mm.rss_file == 2
    assert k.files["/data"].size == 4 * P


def test_o_append_writes_at_the_end_and_o_trunc_empties():
    k, proc = machine()
    a = proc.open("/log", O_WRONLY | O_CREAT | O_APPEND)
    proc.write(a, 3000)
    proc.lseek(a, 0, 0)
    proc.write(a, 3000)
    assert proc.lseek(a, 0, 1) == 6000
    r = proc.open("/log", O_RDONLY)
    assert proc.lseek(r, 0, 2) == 6000
    proc.open("/log", O_WRONLY | O_TRUNC)
    assert k.files["/log"].size == 0


def test_a_file_offset_is_shared_by_dup_and_fork():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT)
    d = proc.dup(fd)
    proc.write(fd, 100)
    assert proc.lseek(d, 0, 1) == 100
    child = proc.fork()
    child.write(fd, 50)
    assert proc.lseek(fd, 0, 1) == 150


# ---------------------------------------------------------------- descriptors

def test_dup_dup2_dup3_fcntl_give_the_right_numbers_and_flags():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT)
    assert proc.dup(fd) == fd + 1
    assert proc.fcntl(fd, 1030, 20) == 20         # F_DUPFD_CLOEXEC
    assert proc.fcntl(20, 1) == 1                 # F_GETFD: FD_CLOEXEC
    assert proc.dup2(fd, 30) == 30 and proc.fcntl(30, 1) == 0
    assert proc.dup3(fd, 31, O_CLOEXEC) == 31 and proc.fcntl(31, 1) == 1
    assert proc.fds[30] is proc.fds[fd]
    proc.execve("/bin/true")
    assert 20 not in proc.fds and 31 not in proc.fds and 30 in proc.fds


def test_pipes_sockets_eventfds_and_directories_cannot_be_mapped():
    k, proc = machine()
    r, w = proc.pipe2(O_CLOEXEC)
    s = proc.socket(1, 1, 0)
    e = proc.eventfd2(0, 0)
    d = proc.open("/", O_RDONLY | O_DIRECTORY)
    for fd in (r, s, e, d):
        assert errno_of(proc.mmap, 0, P, PROT_READ, MAP_SHARED, fd, 0) == errno.ENODEV
    assert errno_of(proc.mmap, 0, P, PROT_WRITE, MAP_SHARED, w, 0) == errno.EACCES
    assert errno_of(proc.lseek, r, 0, 0) == errno.ESPIPE
    assert errno_of(proc.ftruncate, w, 0) == errno.EINVAL


def test_memfd_is_a_shmem_file_whose_mappings_share_pages():
    k, proc = machine()
    m = proc.memfd_create("buf", 1)
    a = proc.mmap(0, 2 * P, RW, MAP_SHARED, m, 0)
    assert errno_of(proc.touch, a, 1, False) == errno.EFAULT   # size 0: SIGBUS
    proc.ftruncate(m, 2 * P)
    proc.touch(a, 2 * P)
    child = proc.fork()
    b = child.mmap(0, 2 * P, PROT_READ, MAP_SHARED, m, 0)
    child.touch(b, 2 * P, False)
    # Its new mapping only: fork copies no page table of a shared mapping (dup_mmap).
    assert child.mm.rss_shmem == 2
    inode = proc.fds[m].inode
    assert child.mm.vma_lookup(b).file.inode is inode
    assert "/memfd:buf (deleted)" in maps_names(k, proc)
    assert len(inode.cache) == 2                  # one set of pages, shared


def test_openat_resolves_against_dirfd_and_cwd():
    k, proc = machine()
    k.make_dirs("/w/d")
    proc.chdir("/w")
    dfd = proc.open("d", O_RDONLY | O_DIRECTORY)
    fd = proc.openat(dfd, "f", O_RDWR | O_CREAT)
    assert "/w/d/f" in k.files and proc.fds[fd].path == "/w/d/f"
    assert errno_of(proc.openat, fd, "x", O_RDONLY) == errno.ENOTDIR
    assert errno_of(proc.openat, 999, "x", O_RDONLY) == errno.EBADF
    assert proc.openat(999, "/w/d/f", O_RDONLY) > 0   # absolute: dirfd unused
    proc.fchdir(dfd)
    assert proc.getcwd() == "/w/d"
    assert proc.open("../d/./f") > 0
    child = proc.fork()
    assert child.getcwd() == "/w/d"
    assert errno_of(proc.chdir, "f") == errno.ENOTDIR
    assert errno_of(proc.chdir, "nope") == errno.ENOENT
    assert errno_of(proc.open, "f", O_RDONLY | O_CREAT | O_EXCL) == errno.EEXIST
    assert errno_of(proc.open, "f/x") == errno.ENOTDIR
    assert errno_of(proc.open, ".", O_RDWR) == errno.EISDIR


def test_descriptor_limit_gives_emfile_and_ebadf():
    k, proc = machine()
    fd = proc.open("/data", O_RDWR | O_CREAT)
    limit = proc.rlimits[7][0]                    # RLIMIT_NOFILE
    assert errno_of(proc.dup2, fd, limit) == errno.EBADF
    assert errno_of(proc.fcntl, fd, 0, limit) == errno.EINVAL
    assert proc.fcntl(fd, 0, limit - 1) == limit - 1
    assert errno_of(proc.fcntl, fd, 0, limit - 1) == errno.EMFILE


# ---------------------------------------------------------------- against the live kernel

def _live(fn):
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return 0


def _cases(tmp):
    """(name, live call, simulated call) with the same meaning on both."""
    f = os.open(tmp / "f", os.O_RDWR | os.O_CREAT, 0o644)
    ro = os.open(tmp / "f", os.O_RDONLY)
    d = os.open(tmp, os.O_RDONLY)
    r, w = os.pipe()
    k = Kernel()
    proc = k.spawn()
    k.make_dirs(str(tmp))
    sf = proc.open(str(tmp / "f"), O_RDWR | O_CREAT)
    sro = proc.open(str(tmp / "f"), O_RDONLY)
    sd = proc.open(str(tmp), O_RDONLY)
    sr, sw = proc.pipe2(0)
    pidfd = os.pidfd_open(os.getpid())
    spidfd = proc.pidfd_open(proc.pid)
    return [
        ("ftruncate ro", lambda: os.ftruncate(ro, 0), lambda: proc.ftruncate(sro, 0)),
        ("ftruncate negative", lambda: os.ftruncate(f, -1), lambda: proc.ftruncate(sf, -1)),
        ("ftruncate pipe", lambda: os.ftruncate(w, 0), lambda: proc.ftruncate(sw, 0)),
        ("ftruncate dir", lambda: os.ftruncate(d, 0), lambda: proc.ftruncate(sd, 0)),
        ("write ro", lambda: os.write(ro, b"x"), lambda: proc.write(sro, 1)),
        ("write dir", lambda: os.write(d, b"x"), lambda: proc.write(sd, 1)),
        ("pwrite pipe", lambda: os.pwrite(w, b"x", 0), lambda: proc.pwrite(sw, 1, 0)),
        ("pwrite negative", lambda: os.pwrite(f, b"x", -1), lambda: proc.pwrite(sf, 1, -1)),
        ("lseek pipe", lambda: os.lseek(r, 0, 0), lambda: proc.lseek(sr, 0, 0)),
        ("lseek negative", lambda: os.lseek(f, -1, 0), lambda: proc.lseek(sf, -1, 0)),
        ("lseek whence", lambda: os.lseek(f, 0, 9), lambda: proc.lseek(sf, 0, 9)),
        ("lseek data past", lambda: os.lseek(f, 100, 3), lambda: proc.lseek(sf, 100, 3)),
        ("posix_fallocate ro", lambda: os.posix_fallocate(ro, 0, 10),
         lambda: proc.fallocate(sro, 0, 0, 10)),
        ("posix_fallocate pipe", lambda: os.posix_fallocate(w, 0, 10),
         lambda: proc.fallocate(sw, 0, 0, 10)),
        ("dup bad", lambda: os.dup(999), lambda: proc.dup(999)),
        ("dup2 bad", lambda: os.dup2(999, 5), lambda: proc.dup2(999, 5)),
        ("dup2 same", lambda: os.dup2(f, f), lambda: proc.dup2(sf, sf)),
        ("F_DUPFD negative", lambda: fcntl.fcntl(f, fcntl.F_DUPFD, -1),
         lambda: proc.fcntl(sf, 0, -1)),
        ("fchdir file", lambda: os.fchdir(f), lambda: proc.fchdir(sf)),
        ("fchdir bad", lambda: os.fchdir(999), lambda: proc.fchdir(999)),
        ("fchdir pidfd", lambda: os.fchdir(pidfd), lambda: proc.fchdir(spidfd)),
        ("chdir file", lambda: os.chdir(tmp / "f"), lambda: proc.chdir(str(tmp / "f"))),
        ("chdir missing", lambda: os.chdir(tmp / "nope"), lambda: proc.chdir(str(tmp / "nope"))),
        ("chdir empty", lambda: os.chdir(""), lambda: proc.chdir("")),
        ("memfd flags", lambda: os.memfd_create("x", 0x1000),
         lambda: proc.memfd_create("x", 0x1000)),
        ("memfd long name", lambda: os.memfd_create("x" * 300),
         lambda: proc.memfd_create("x" * 300)),
        ("eventfd flags", lambda: os.eventfd(0, 2), lambda: proc.eventfd2(0, 2)),
        ("open dir rw", lambda: os.open(tmp, os.O_RDWR), lambda: proc.open(str(tmp), O_RDWR)),
        ("open excl", lambda: os.open(tmp / "f", os.O_CREAT | os.O_EXCL),
         lambda: proc.open(str(tmp / "f"), O_CREAT | O_EXCL)),
        ("open through a file", lambda: os.open(tmp / "f" / "x", 0),
         lambda: proc.open(str(tmp / "f" / "x"))),
        ("open O_DIRECTORY file", lambda: os.open(tmp / "f", os.O_DIRECTORY),
         lambda: proc.open(str(tmp / "f"), O_DIRECTORY)),
        ("openat file dirfd", lambda: os.open("x", 0, dir_fd=f),
         lambda: proc.openat(sf, "x")),
        ("openat bad dirfd", lambda: os.open("x", 0, dir_fd=999),
         lambda: proc.openat(999, "x")),
    ], [f, ro, d, r, w, pidfd]


@pytest.mark.skipif(not LIVE, reason="needs a Linux 6.x kernel")
def test_errnos_match_the_live_kernel(tmp_path):
    cwd = os.getcwd()
    cases, fds = _cases(tmp_path)
    try:
        got = {name: (_live(live), _live(sim)) for name, live, sim in cases}
    finally:
        os.chdir(cwd)
        for fd in fds:
            os.close(fd)
    bad = {name: (errno.errorcode.get(a, a), errno.errorcode.get(b, b))
           for name, (a, b) in got.items() if a != b}
    assert not bad, bad


@pytest.mark.skipif(not LIVE, reason="needs a Linux 6.x kernel")
def test_mmap_of_descriptor_kinds_matches_the_live_kernel():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def live_mmap(fd):
        addr = libc.mmap(None, P, PROT_READ, MAP_SHARED, fd, 0)
        if addr == ctypes.c_void_p(-1).value:
            return ctypes.get_errno()
        libc.munmap(addr, P)
        return 0
    r, w = os.pipe()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    e = os.eventfd(0)
    m = os.memfd_create("x")
    try:
        live = [live_mmap(fd) for fd in (r, s.fileno(), e, m)]
    finally:
        for fd in (r, w, e, m):
            os.close(fd)
        s.close()
    k, proc = machine()
    sr, _ = proc.pipe2(0)
    sim = [errno_of(proc.mmap, 0, P, PROT_READ, MAP_SHARED, fd, 0)
           for fd in (sr, proc.socket(1, 1, 0), proc.eventfd2(0, 0), proc.memfd_create("x"))]
    assert [errno.errorcode.get(x, x) for x in sim] == [errno.errorcode.get(x, x) for x in live]


# ---------------------------------------------------------------- replaying logs

def test_relocated_descriptors_keep_the_numbers_the_log_shows():
    text = ('openat(AT_FDCWD, "/w", O_RDONLY|O_DIRECTORY) = 3\n'
            'openat(3, "a", O_RDWR|O_CREAT, 0644) = 7\n'
            'ftruncate(7, 8192) = 0\n'
            'dup2(7, 12) = 12\n'
            'fcntl(12, F_DUPFD_CLOEXEC, 40) = 40\n'
            'mmap(NULL, 8192, PROT_READ, MAP_SHARED, 40, 0) = 0x7f0000000000\n'
            'pipe2([5, 6], O_CLOEXEC) = 0\n'
            'mmap(NULL, 4096, PROT_READ, MAP_SHARED, 5, 0) = -1 ENODEV (No such device)\n'
            'socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 9\n'
            'mmap(NULL, 4096, PROT_READ, MAP_SHARED, 9, 0) = -1 ENODEV (No such device)\n'
            'socketpair(AF_UNIX, SOCK_STREAM, 0, [10, 11]) = 0\n'
            'write(10, "x", 1) = 1\n'
            'fcntl(7, F_SETLKW, {l_type=F_WRLCK, l_whence=SEEK_SET, l_start=0, l_len=0}) = 0\n'
            'lseek(7, 0, SEEK_END) = 8192\n'
            'write(7, "xx", 2) = 2\n'
            'lseek(12, 0, SEEK_CUR) = 8194\n')
    k = Kernel(seed=1)
    k.make_dirs("/w")
    outs = replay_trace(text, k, follow=True)
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]


def test_follow_simulates_files_missing_here_as_large_as_their_mappings():
    text = ('openat(AT_FDCWD, "/nowhere/lib.so", O_RDONLY|O_CLOEXEC) = 3\n'
            'mmap(NULL, 20480, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0000000000\n'
            'mmap(0x7f0000002000, 8192, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, 0x1000) '
            '= 0x7f0000002000\n'
            'close(3) = 0\n'
            'madvise(0x7f0000000000, 20480, MADV_POPULATE_READ) = 0\n'
            'mmap(NULL, 8192, PROT_READ, MAP_SHARED, 5, 0x2000) = 0x7f0000100000\n'
            'madvise(0x7f0000100000, 8192, MADV_POPULATE_READ) = 0\n')
    outs = replay_trace(text, Kernel(seed=1), follow=True)
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]
    outs = replay_trace(text, Kernel(seed=1))
    assert outs[0].result == -errno.ENOENT


def test_maps_names_files_by_their_resolved_path(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "lib.so").write_bytes(b"\0" * 8192)
    (tmp_path / "link").symlink_to(real)
    text = (f'chdir("{tmp_path}/link") = 0\n'
            'openat(AT_FDCWD, "../link/./lib.so", O_RDONLY) = 3\n'
            'mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0000000000\n'
            'mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 4, 0) = 0x7f0000010000\n')
    k = Kernel(seed=1)
    from mmsim.replay import Replayer
    from mmsim.strace import parse
    rep = Replayer(k, follow=True)
    outs = rep.run(parse(text, "<t>"))
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]
    names = maps_names(k, rep.procs[None])
    assert f"{real}/lib.so" in names
    assert any(n.startswith("/mmsim-hidden/") and n.endswith("-fd4") for n in names)


def test_root_is_looked_up_first_and_not_shown(tmp_path):
    (tmp_path / "opt" / "app").mkdir(parents=True)
    (tmp_path / "opt" / "app" / "data.bin").write_bytes(b"\0" * 3 * P)
    text = ('openat(AT_FDCWD, "/opt/app/data.bin", O_RDONLY) = 3\n'
            'mmap(NULL, 16384, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000\n'
            'madvise(0x7f0000000000, 12288, MADV_POPULATE_READ) = 0\n'
            'madvise(0x7f0000003000, 4096, MADV_POPULATE_READ) = -1 EFAULT (Bad address)\n')
    from mmsim.replay import Replayer
    from mmsim.strace import parse
    k = Kernel(seed=1)
    rep = Replayer(k, follow=True, root=str(tmp_path))
    outs = rep.run(parse(text, "<t>"))
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]
    assert "/opt/app/data.bin" in maps_names(k, rep.procs[None])


def test_execve_of_a_missing_elf_says_it_needs_the_real_file(tmp_path, capsys):
    log = tmp_path / "x.strace"
    log.write_text('execve("/opt/nothere/app", ["app"], 0x7ffc0 /* 1 var */) = 0\n')
    assert cli.main(["replay", str(log), "--follow", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{log}:1:" in err and "needs the real ELF file /opt/nothere/app" in err
    assert "--root" in err


def test_initial_cwd_is_worked_out_from_getcwd():
    text = ('openat(AT_FDCWD, "sub", O_RDONLY|O_DIRECTORY) = 3\n'
            'fchdir(3) = 0\n'
            'chdir("deeper") = 0\n'
            'getcwd("/srv/job/sub/deeper", 4096) = 20\n')
    k = Kernel(seed=1)
    from mmsim.replay import Replayer
    from mmsim.strace import parse
    rep = Replayer(k, follow=True)
    outs = rep.run(parse(text, "<t>"))
    assert rep.procs[None].getcwd() == "/srv/job/sub/deeper"
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]


# ---------------------------------------------------------------- the recorded corpus

def _root(tmp_path):
    """A --root holding only the binaries the logs exec, rebuilt from their sources."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    where = tmp_path / "root" / "tmp" / "mmsim-files"
    where.mkdir(parents=True)
    for name, digest in MANIFEST["binaries"].items():
        subprocess.run(["gcc", "-O1", "-o", str(where / name), str(DATA / f"{name}.c")],
                       check=True)
        if hashlib.sha256((where / name).read_bytes()).hexdigest() != digest:
            pytest.skip(f"gcc here builds {name} differently from the recording machine")
    return tmp_path / "root"


def _host_differs(log):
    for path, size in MANIFEST["logs"][log].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return f"{path} differs from the machine the log was recorded on"
    return None


LOGS = sorted(MANIFEST["logs"])


@pytest.mark.parametrize("log", LOGS)
def test_recorded_log_reproduces_every_file_result(log, tmp_path, capsys):
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    root = _root(tmp_path)
    args = ["replay", str(DATA / log), "--follow", "--check", "--root", str(root),
            "--cwd", "/tmp/mmsim-files"]
    if "_norand" in log:
        args.append("--norandmaps")
    status = cli.main(args)
    err = capsys.readouterr().err
    if "_norand" in log:
        assert status == 0, err
        return
    # Under ASLR only the exec layout (issue 12 part 1, not this part) may differ: the
    # loader's first mprotect calls of memory no logged call mapped.
    lines = (DATA / log).read_text().splitlines()
    bad = [int(e.split(":")[2]) for e in err.splitlines() if e.startswith("mmsim: ")]
    calls = [lines[n - 1].split(None, 1)[1].split("(")[0] for n in bad]
    assert set(calls) <= {"mprotect"}, err
    first_file_call = next(i for i, ln in enumerate(lines, 1)
                           if ln.split(None, 1)[1].split("(")[0] in FILE_CALLS - {"read"})
    assert all(n < first_file_call for n in bad), err


def test_creat_and_truncate_size_files_and_errno_aliases_parse():
    text = ('creat("/w/new", 0644) = 3\n'
            'write(3, "abc", 5000) = 5000\n'
            'mmap(NULL, 8192, PROT_READ, MAP_SHARED, 3, 0) = -1 EACCES (Permission denied)\n'
            'truncate("/w/new", 100) = 0\n'
            'openat(AT_FDCWD, "/w/new", O_RDONLY) = 4\n'
            'lseek(4, 0, SEEK_END) = 100\n'
            'ioctl(4, BTRFS_IOC_CLONE or FICLONE, 3) = -1 EOPNOTSUPP (Operation not supported)\n'
            'read(4, "", 10) = -1 EWOULDBLOCK (Resource temporarily unavailable)\n'
            'pipe2([5, 6], 0) = 0\n'
            'write(6, "x", 1) = -1 EPIPE (Broken pipe)\n'
            'write(5, "x", 1) = -1 EBADF (Bad file descriptor)\n')
    k = Kernel(seed=1)
    k.make_dirs("/w")
    outs = replay_trace(text, k)
    assert all(o.matches() for o in outs), [o.line() for o in outs if not o.matches()]
    assert k.files["/w/new"].size == 100


def test_dev_tty_is_enxio_without_a_controlling_terminal():
    """A simulated process has no controlling terminal: /dev/tty is ENXIO, as for a
    process started without one (python3 under strace probes it)."""
    k = Kernel()
    p = k.spawn()
    with pytest.raises(OSError) as exc:
        p.open("/dev/tty", os.O_RDWR)
    assert exc.value.errno == errno.ENXIO
    outs = replay_trace('openat(AT_FDCWD, "/dev/tty", O_RDWR|O_NONBLOCK) = -1 ENXIO '
                        '(No such device or address)\n', Kernel())
    assert outs[0].matches()


def test_a_gcc_compile_log_needs_getrusage_accepted():
    """gcc's driver asks getrusage for each pass it ran: the call is accepted."""
    outs = replay_trace("getrusage(RUSAGE_CHILDREN, {ru_utime={tv_sec=0, tv_usec=1}, "
                        "...}) = 0\n", Kernel())
    assert outs[0].matches()

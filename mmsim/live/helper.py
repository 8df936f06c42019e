"""The helper protocol: live helper processes, one per trace pid, each making the calls
its coordinator sends over a socket (JSON lines; a fork hands the child's socket back
with SCM_RIGHTS), and the Replayer that drives them in trace order."""

import ctypes
import errno
import json
import os
import resource
import socket
import sys
import time
import traceback
from typing import Any

import attrs

from ..errors import NotComparable
from ..replay import Outcome, Replayer, c_string
from ..strace import Event, Str
from ..uapi import CLONE_VM
from .child import _MAP_FAILED, load_libc
from .smaps import smaps_vmas

__all__ = ["NotComparable", "LiveProc", "LiveReplayer"]


_HELPER = ("import sys; from mmsim.live.helper import _serve; "
           "_serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), False)")


def _send(sock, msg, fds=()):
    data = json.dumps(msg).encode() + b"\n"
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def _recv(sock, with_fds=False):
    if with_fds:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
        return json.loads(data), fds
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("a live helper process went away")
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return json.loads(b"".join(chunks))


# x86-64 system call numbers of the calls a helper makes raw.
_NR = {"open": 2, "close": 3, "wait4": 61, "setuid": 105, "setgid": 106, "setresuid": 117,
       "setresgid": 119, "unshare": 272, "pidfd_open": 434, "process_madvise": 440}
_U64 = (1 << 64) - 1


def _raw(libc, name, *args):
    """The system call itself, each argument passed as a full register (the kernel
    narrows an int argument itself), so no value makes the helper raise; -errno."""
    ret = libc.syscall(_NR[name], *[a if isinstance(a, (bytes, ctypes.Array)) else
                                    ctypes.c_ulong(a & _U64) for a in args])
    return -ctypes.get_errno() if ret == -1 else ret


def _helper_call(libc, name, args):
    """One call made by a helper process; its result, or -errno."""
    if name == "open":
        # os.open's mode, and a path as the kernel reads it: bytes up to a NUL.
        return _raw(libc, "open", os.fsencode(args[0]), args[1], 0o777)
    if name in ("close", "pidfd_open", "setuid", "setgid", "setresuid", "setresgid",
                "unshare"):
        return _raw(libc, name, *args)
    if name == "wait4":
        return _raw(libc, "wait4", args[0], 0, args[1], 0)
    if name == "process_madvise":
        pidfd, pairs, advice, flags = args
        iov = (ctypes.c_uint64 * (2 * len(pairs) or 2))(*[x & _U64 for p in pairs for x in p])
        return _raw(libc, "process_madvise", pidfd, iov, len(pairs), advice, flags)
    if name == "prctl":
        # A struct argument (PR_SET_MM_MAP's) arrives as a dict: pass its address.
        structs = [_PrctlMmMap(**a) if isinstance(a, dict) else None for a in args]
        ret = libc.prctl(*[ctypes.addressof(st) if st is not None else a & (2**64 - 1)
                           for a, st in zip(args, structs)])
        return -ctypes.get_errno() if ret == -1 else ret
    if name == "brk":
        moved = _glibc_break(libc)
        if moved is not None:
            return {"error": moved}
        return libc.syscall(SYS_brk, ctypes.c_ulong(args[0]))
    if name in ("mmap", "mremap"):
        ret = getattr(libc, name)(*args)
        return -ctypes.get_errno() if ret == _MAP_FAILED else (ret or 0)
    ret = getattr(libc, name)(*args)
    return -ctypes.get_errno() if ret != 0 else 0


SYS_brk = 12
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_BREAK = {}


class _PrctlMmMap(ctypes.Structure):
    """struct prctl_mm_map, for PR_SET_MM_MAP."""
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
        "start_stack", "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
        ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def _keep_malloc_off_brk(libc):
    """Give glibc's main arena tens of MiB to spare and forbid trimming, so that malloc
    never moves the program break again: a trace's brk calls then own it alone."""
    libc.malloc.restype = ctypes.c_void_p
    libc.mallopt(M_TRIM_THRESHOLD, 0x7FFFFFFF)
    libc.mallopt(M_TOP_PAD, 64 << 20)
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.free(ctypes.c_void_p(libc.malloc(16 << 20)))
    libc.mallopt(M_MMAP_THRESHOLD, 128 << 10)
    _BREAK["glibc"] = ctypes.c_void_p.in_dll(libc, "__curbrk").value


def _glibc_break(libc):
    """None while glibc's idea of the break is where _keep_malloc_off_brk left it;
    otherwise why the live side cannot be trusted any more."""
    now = ctypes.c_void_p.in_dll(libc, "__curbrk").value
    if now != _BREAK.get("glibc"):
        return f"glibc moved the helper's break ({_BREAK.get('glibc')} -> {now})"
    return None


def _serve(fd, lo, hi, clear):
    """A helper process: make the calls its coordinator sends, in order, until told to
    exit.  It forks (handing the child's channel back), execs a fresh helper, and
    reports its VMAs inside the window."""
    status = 1
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        sock = socket.socket(fileno=fd)
        libc = load_libc()
        libc.unshare.argtypes = [ctypes.c_int]
        _keep_malloc_off_brk(libc)
        if clear:
            libc.munmap(lo, hi - lo)
        else:
            _send(sock, {"result": 0})      # the exec that made this process succeeded
        while True:
            msg = _recv(sock)
            op = msg["op"]
            if op == "call":
                _send(sock, {"result": _helper_call(libc, msg["name"], msg["args"])})
            elif op == "vmas":
                with open("/proc/self/smaps") as f:
                    _send(sock, {"vmas": smaps_vmas(f.read(), (lo, hi))})
            elif op == "fork":
                mine, theirs = socket.socketpair()
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    mine.close()
                    sock = theirs
                    continue
                theirs.close()
                _send(sock, {"result": pid}, [mine.fileno()])
                mine.close()
            elif op == "exec":
                os.set_inheritable(sock.fileno(), True)
                env = dict(os.environ)
                # The directory holding the mmsim package: mmsim/live/helper.py, 3 up.
                root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
                try:
                    os.execve(sys.executable, [sys.executable, "-c", _HELPER,
                                               str(sock.fileno()), str(lo), str(hi)], env)
                except OSError as e:
                    _send(sock, {"result": -e.errno})
            elif op == "exit":
                status = msg["status"]
                return
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status & 0xFF)


class LiveProc:
    """The coordinator's handle on one live helper process: the same methods as a
    simulated Process, made by the helper on the live kernel."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.fds = {0: True, 1: True, 2: True}
        self.mm = None

    def _call(self, name, *args):
        _send(self.sock, {"op": "call", "name": name, "args": list(args)})
        ret = _recv(self.sock)["result"]
        if isinstance(ret, dict):
            raise NotComparable(ret["error"])
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))
        return ret

    def vmas(self) -> list[dict]:
        """The helper's VMAs inside the window, parsed from its smaps."""
        _send(self.sock, {"op": "vmas"})
        return _recv(self.sock)["vmas"]

    def __getattr__(self, name):
        if name in ("mmap", "munmap", "mprotect", "madvise", "mremap", "mlock", "mlock2",
                    "munlock", "setuid", "setgid", "setresuid", "setresgid", "unshare"):
            return lambda *args: self._call(name, *args)
        raise AttributeError(name)

    def brk(self, addr: int) -> int:
        """brk(2) in the helper (NotComparable once glibc moved its break)."""
        return self._call("brk", addr)

    def mctl(self, *args: int) -> int:
        """The live kernel has no mctl: NotComparable."""
        raise NotComparable("the live kernel has no mctl")

    def prctl(self, *args: Any) -> int:
        """prctl(2); a PrctlMmMap record travels as a dict."""
        args = [attrs.asdict(a) if attrs.has(type(a)) else a for a in args]
        return self._call("prctl", *(args + [0] * (5 - len(args))))

    def open(self, path: str, flags: int = 0) -> int:
        """open(2) in the helper; the new descriptor."""
        fd = self._call("open", path, flags)
        self.fds[fd] = True
        return fd

    def close(self, fd: int) -> int:
        """close(2) in the helper."""
        self.fds.pop(fd, None)
        return self._call("close", fd)

    def pidfd_open(self, pid: int, flags: int = 0) -> int:
        """pidfd_open(2) in the helper; the new descriptor."""
        fd = self._call("pidfd_open", pid, flags)
        self.fds[fd] = True
        return fd

    def process_madvise(self, pidfd: int, pairs: list[tuple[int, int]], advice: int,
                        flags: int = 0) -> int:
        """process_madvise(2) in the helper over ``(base, length)`` pairs."""
        return self._call("process_madvise", pidfd, [list(p) for p in pairs], advice, flags)

    def wait4(self, pid: int = -1, options: int = 0) -> tuple[int, int]:
        """wait4(2) in the helper; (pid, 0): the status is not reported."""
        return self._call("wait4", pid, options), 0

    def fork(self) -> "LiveProc":
        """fork(2) of the helper; the child's handle."""
        _send(self.sock, {"op": "fork"})
        msg, fds = _recv(self.sock, with_fds=True)
        child = LiveProc(socket.socket(fileno=fds[0]), msg["result"])
        child.fds = dict(self.fds)
        return child

    vfork = fork

    def clone(self, flags: int) -> "LiveProc":
        """clone without CLONE_VM, as a fork (a shared mm is NotComparable)."""
        if flags & CLONE_VM:
            raise NotComparable("a helper cannot share its address space")
        return self.fork()

    def execve(self, path: str, argv: list[str] | None = None) -> int:
        """An exec of a fresh helper in place of ``path``: a fresh address space."""
        if not os.access(path, os.X_OK):
            raise OSError(errno.ENOENT if not os.path.exists(path) else errno.EACCES, path)
        _send(self.sock, {"op": "exec"})
        ret = _recv(self.sock)["result"]
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))
        return 0

    def exit(self, status: int = 0) -> None:
        """exit(2) of the helper, waited for until it is a zombie."""
        _send(self.sock, {"op": "exit", "status": status})
        self.sock.close()
        # The simulator's exit is synchronous; wait until the helper is a zombie (or
        # reaped), so that a wait4(WNOHANG) right after finds it as mmsim does.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        return
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.001)

    exit_group = exit   # a helper has one thread: its exit is its group's


WARM_LIMIT = 64 << 20


def _warm(path):
    """Read a host file through once, so that all its pages sit in the page cache,
    uptodate and without readahead marks, as mmsim starts a host file (filemap.warm,
    up to the same size): a file mapping's fault-around then maps the same pages on
    both sides."""
    try:
        with open(path, "rb", buffering=0) as f:
            if os.fstat(f.fileno()).st_size <= WARM_LIMIT:
                while f.read(1 << 20):
                    pass
    except OSError:
        pass    # the helper's own open reports the error


class LiveReplayer(Replayer):
    """The Replayer driving live helper processes instead of simulated ones."""

    def __init__(self, window: tuple[int, int]) -> None:
        super().__init__(kernel=None, follow=False)
        self.window = window
        self.root = None

    def spawn_initial(self) -> LiveProc:
        """The initial helper process, which clears the window first."""
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            mine.close()
            _serve(os.dup(theirs.fileno()), self.window[0], self.window[1], True)
        theirs.close()
        self.root = LiveProc(mine, pid)
        return self.root

    def call(self, ev: Event) -> int | str:
        """Run one call; "not comparable" where the live kernel has no answer."""
        try:
            return super().call(ev)
        except NotComparable:
            return "not comparable"

    def _openat(self, proc, ev, dirfd, path, flags=0, mode=0):
        if not isinstance(path, Str):
            return -errno.EFAULT
        _warm(c_string(path))
        return self._new_fd(ev, proc.open(c_string(path), flags))

    def dump(self, ev: Event) -> Outcome:
        """The helper's VMAs in the window, parsed."""
        proc = self.procs[ev.pid]
        out = Outcome(ev, label=self._label(ev.pid))
        out.smaps = proc.vmas() if proc.sock.fileno() >= 0 else []
        return out

    def finish(self) -> None:
        """Stop every helper still running."""
        for proc in self.procs.values():
            if proc.sock.fileno() >= 0:
                try:
                    os.kill(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.sock.close()
        if self.root is not None:
            try:
                os.waitpid(self.root.pid, 0)
            except ChildProcessError:
                pass

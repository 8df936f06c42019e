"""Run memory syscalls on the live kernel, so tests can compare the simulator with it.

``run(calls)`` forks a child, executes ``calls`` there (the parent's address space is
never touched), and returns each call's result plus the child's VMAs inside an address
window, as parsed from ``/proc/self/smaps``::

    run([("mmap", 0x200000000000, 3 * 4096, 3, 0x100022, -1, 0)])
    -> {"results": [0x200000000000], "vmas": [{"start": 0x200000000000, ...}]}

Supported calls, with arguments in the C order: ``mmap`` (anonymous only: fd -1),
``munmap``, ``mprotect``, ``madvise``, ``mremap`` (always five arguments), ``mlock``,
``mlock2``, ``munlock``, and ``touch(addr, length, write)``, which faults every page of
the range by reading or writing one byte per page.  A result is the call's return value
(an address for mmap/mremap, else 0) or ``-errno``.
"""

import ctypes
import errno
import json
import mmap as _mmap
import os
import platform
import re
import resource
import socket
import sys
import time
import traceback

import attrs

__all__ = ["WINDOW", "available", "run", "smaps_vmas"]

#: Default address window (half-open): far above where CPython's allocator, shared
#: libraries and the stack live, so the child can clear it and own it outright.
WINDOW = (0x200000000000, 0x300000000000)

PAGE_SIZE = _mmap.PAGESIZE
EFAULT = 14

# Argument count of each supported call (after the name); checked before forking so a
# malformed call is a plain ValueError rather than a child failure.
_ARITY = {"mmap": 6, "munmap": 2, "mprotect": 3, "madvise": 3, "mremap": 5,
          "mlock": 2, "mlock2": 3, "munlock": 2, "touch": 3, "prctl": 5, "fork": 0}

# The value of MAP_FAILED, ((void *)-1), as ctypes reads a c_void_p back.
_MAP_FAILED = (1 << 64) - 1

_HEADER = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ")
_KB_FIELDS = {"Rss": "rss_kb", "Anonymous": "anon_kb", "AnonHugePages": "anon_huge_kb",
              "Locked": "locked_kb"}


def available():
    """Return ``(True, "")`` if calls can run on this kernel, else ``(False, reason)``."""
    # The expectations built on this module (flag mnemonics, smaps fields, errno
    # choices) were checked on Linux 6.x x86-64 only.
    uname = os.uname()
    if platform.system() != "Linux":
        return False, f"live kernel calls need Linux, not {platform.system()}"
    if uname.machine != "x86_64":
        return False, f"live kernel calls need x86_64, not {uname.machine}"
    major = uname.release.split(".", 1)[0]
    if major != "6":
        return False, f"live kernel calls need kernel 6.x, not {uname.release}"
    return True, ""


def smaps_vmas(text, window):
    """Parse smaps (or maps) text into the VMAs overlapping ``window``, in address order."""
    lo, hi = window
    vmas = []
    vma = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            start, end = int(header[1], 16), int(header[2], 16)
            vma = {"start": start, "end": end, "perms": header[3], "pgoff": int(header[4], 16),
                   "flags": [], "thp_eligible": 0, "rss_kb": 0, "anon_kb": 0,
                   "anon_huge_kb": 0, "locked_kb": 0}
            if start < hi and end > lo:
                vmas.append(vma)
            continue
        if vma is None or ":" not in line:
            continue
        key, value = line.split(":", 1)
        if key == "VmFlags":
            vma["flags"] = value.split()
        elif key == "THPeligible":
            vma["thp_eligible"] = int(value)
        elif key in _KB_FIELDS:
            vma[_KB_FIELDS[key]] = int(value.split()[0])
    vmas.sort(key=lambda v: v["start"])
    return vmas


def smaps_blocks(text, window):
    """The raw smaps text of the VMAs overlapping ``window``, header lines included."""
    lo, hi = window
    out = []
    keep = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            keep = int(header[1], 16) < hi and int(header[2], 16) > lo
        if keep:
            out.append(line)
    return "".join(out)


def run(calls, window=WINDOW):
    """Run ``calls`` in order in a fresh forked child; return its results, the window's
    VMAs parsed, and their raw smaps text (``smaps_text``).

    A ``("fork",)`` call forks: the child goes on with the remaining calls and is the
    process reported (its result for the fork is 0); the parent waits, keeping its own
    mappings alive meanwhile, as a parent would."""
    calls = [tuple(call) for call in calls]
    for call in calls:
        if not call or call[0] not in _ARITY or len(call) - 1 != _ARITY[call[0]]:
            raise ValueError(f"unsupported call {call!r}")
        if call[0] == "mmap" and call[5] != -1:
            raise ValueError(f"only anonymous mmap (fd -1) is supported: {call!r}")
    window = (int(window[0]), int(window[1]))

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Child: whatever happens, never return into the caller's (e.g. pytest's) code.
        status = 1
        try:
            os.close(read_fd)
            try:
                report = {"ok": True, **_child(calls, window)}
            except BaseException:
                report = {"ok": False, "error": traceback.format_exc()}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_fd, data):]
            status = 0
        finally:
            os._exit(status)

    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not os.WIFEXITED(wait_status) or os.WEXITSTATUS(wait_status) != 0 or not data:
        if os.WIFSIGNALED(wait_status):
            how = f"was killed by signal {os.WTERMSIG(wait_status)}"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
        raise RuntimeError(f"live child {how} after sending {len(data)} bytes; calls={calls!r}")
    report = json.loads(data)
    if not report["ok"]:
        raise RuntimeError(f"live child raised:\n{report['error']}")
    return {"results": report["results"], "vmas": report["vmas"],
            "smaps_text": report["smaps_text"]}


def load_libc():
    """Load libc with prototypes wide enough that 64-bit addresses survive the call."""
    libc = ctypes.CDLL(None, use_errno=True)
    vp, size, c_int = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    protos = {
        "mmap": (vp, [vp, size, c_int, c_int, c_int, ctypes.c_long]),
        "munmap": (c_int, [vp, size]),
        "mprotect": (c_int, [vp, size, c_int]),
        "madvise": (c_int, [vp, size, c_int]),
        # mremap is variadic; declaring the optional new_address as a fifth fixed
        # argument is safe on x86-64, where both conventions pass integers in registers.
        "mremap": (vp, [vp, size, size, c_int, vp]),
        "mlock": (c_int, [vp, size]),
        "mlock2": (c_int, [vp, size, ctypes.c_uint]),
        "munlock": (c_int, [vp, size]),
        "prctl": (c_int, [c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]),
    }
    for name, (restype, argtypes) in protos.items():
        func = getattr(libc, name)
        func.restype, func.argtypes = restype, argtypes
    libc.syscall.restype = ctypes.c_long   # variadic: arguments are passed as given
    return libc


def in_child(fn):
    """Run ``fn`` in a forked child of this process and return its JSON-able result
    (credentials, mappings and limits may change there); RuntimeError if the child fails."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(fn()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status or not data:
        raise RuntimeError(f"the measuring child failed (wait status {status})")
    return json.loads(data)


def _child(calls, window):
    """The child's work: clear the window, run the calls, report results and VMAs."""
    # Experiments may legitimately crash the child; don't leave core files behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = load_libc()
    if libc.munmap(window[0], window[1] - window[0]) != 0:
        raise OSError(ctypes.get_errno(), f"cannot clear window {window[0]:#x}-{window[1]:#x}")
    results = []
    for name, *args in calls:
        if name == "touch":
            results.append(_touch(*args))
            continue
        if name == "fork":
            # The child carries on with the remaining calls and is the one reported;
            # this process just waits for it and passes its exit status on.
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF or 0)
            results.append(0)
            continue
        if name == "prctl":
            ret = libc.prctl(*args)
            results.append(-ctypes.get_errno() if ret == -1 else ret)
            continue
        ret = getattr(libc, name)(*args)
        if name in ("mmap", "mremap"):
            # c_void_p turns NULL into None; MAP_FAILED comes back as 2**64 - 1.
            ret = -ctypes.get_errno() if ret == _MAP_FAILED else (ret or 0)
        elif ret != 0:
            ret = -ctypes.get_errno()
        results.append(ret)
    with open("/proc/self/smaps") as f:
        text = f.read()
    return {"results": results, "vmas": smaps_vmas(text, window),
            "smaps_text": smaps_blocks(text, window)}


def _touch(addr, length, write):
    """Fault each page of [addr, addr+length), or return -EFAULT without touching any."""
    # A fault on memory we may not access would kill the child, so check the whole
    # range against /proc/self/maps first.  This is stricter than the hardware (x86
    # lets a write-only page be read), but it never crashes.
    end = addr + length
    need = "w" if write else "r"
    with open("/proc/self/maps") as f:
        vmas = smaps_vmas(f.read(), (addr, max(end, addr + 1)))
    cursor = addr
    for vma in vmas:
        if cursor >= end or vma["start"] > cursor or need not in vma["perms"]:
            break
        cursor = vma["end"]
    if cursor < end:
        return -EFAULT
    page = addr - addr % PAGE_SIZE
    while page < end:
        at = max(page, addr)
        if write:
            ctypes.memset(at, 1, 1)
        else:
            ctypes.string_at(at, 1)
        page += PAGE_SIZE
    return 0


# ---------------------------------------------------------------------- traces

class NotComparable(Exception):
    """A call the live kernel has no counterpart for (mctl), or that a helper process
    cannot make safely (brk would move the helper's own heap)."""


_HELPER = ("import sys; from mmsim.live import _serve; "
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


def _helper_call(libc, name, args):
    """One call made by a helper process; its result, or -errno."""
    try:
        if name == "open":
            return os.open(args[0], args[1])
        if name == "close":
            os.close(args[0])
            return 0
        if name == "pidfd_open":
            return os.pidfd_open(args[0], args[1])
        if name in ("setuid", "setgid"):
            getattr(os, name)(args[0])
            return 0
        if name in ("setresuid", "setresgid"):
            getattr(os, name)(*args)
            return 0
        if name == "wait4":
            pid, status = os.waitpid(args[0], args[1])
            return pid
        if name == "process_madvise":
            pidfd, pairs, advice, flags = args
            iov = (ctypes.c_uint64 * (2 * len(pairs) or 2))(*[x for p in pairs for x in p])
            ret = libc.syscall(440, pidfd, iov, len(pairs), advice, flags)
            return -ctypes.get_errno() if ret == -1 else ret
    except OSError as e:
        return -e.errno
    if name == "unshare":
        ret = libc.unshare(args[0])
        return -ctypes.get_errno() if ret == -1 else ret
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
                root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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

    def __init__(self, sock, pid):
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

    def vmas(self):
        """The helper's VMAs inside the window, parsed from its smaps."""
        _send(self.sock, {"op": "vmas"})
        return _recv(self.sock)["vmas"]

    def __getattr__(self, name):
        if name in ("mmap", "munmap", "mprotect", "madvise", "mremap", "mlock", "mlock2",
                    "munlock", "setuid", "setgid", "setresuid", "setresgid", "unshare"):
            return lambda *args: self._call(name, *args)
        raise AttributeError(name)

    def brk(self, addr):
        return self._call("brk", addr)

    def mctl(self, *args):
        raise NotComparable("the live kernel has no mctl")

    def prctl(self, *args):
        args = [attrs.asdict(a) if attrs.has(type(a)) else a for a in args]
        return self._call("prctl", *(args + [0] * (5 - len(args))))

    def open(self, path, flags=0):
        fd = self._call("open", path, flags)
        self.fds[fd] = True
        return fd

    def close(self, fd):
        self.fds.pop(fd, None)
        return self._call("close", fd)

    def pidfd_open(self, pid, flags=0):
        fd = self._call("pidfd_open", pid, flags)
        self.fds[fd] = True
        return fd

    def process_madvise(self, pidfd, pairs, advice, flags=0):
        return self._call("process_madvise", pidfd, [list(p) for p in pairs], advice, flags)

    def wait4(self, pid=-1, options=0):
        return self._call("wait4", pid, options), 0

    def fork(self):
        _send(self.sock, {"op": "fork"})
        msg, fds = _recv(self.sock, with_fds=True)
        child = LiveProc(socket.socket(fileno=fds[0]), msg["result"])
        child.fds = dict(self.fds)
        return child

    vfork = fork

    def clone(self, flags):
        from .uapi import CLONE_VM
        if flags & CLONE_VM:
            raise NotComparable("a helper cannot share its address space")
        return self.fork()

    def execve(self, path, argv=None):
        if not os.access(path, os.X_OK):
            raise OSError(errno.ENOENT if not os.path.exists(path) else errno.EACCES, path)
        _send(self.sock, {"op": "exec"})
        ret = _recv(self.sock)["result"]
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))
        return 0

    def exit(self, status=0):
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


WARM_LIMIT = 64 << 20


def _warm(path):
    """Read a host file through once, so that all its pages sit in the page cache,
    uptodate and without readahead marks, as mmsim takes every file page to be: a file
    mapping's fault-around then maps the same pages on both sides."""
    try:
        with open(path, "rb", buffering=0) as f:
            if os.fstat(f.fileno()).st_size <= WARM_LIMIT:
                while f.read(1 << 20):
                    pass
    except OSError:
        pass    # the helper's own open reports the error


def _trace_classes():
    from .trace import Outcome, Replayer

    class LiveReplayer(Replayer):
        """The Replayer driving live helper processes instead of simulated ones."""

        def __init__(self, window):
            super().__init__(kernel=None, follow=False)
            self.window = window
            self.root = None

        def spawn_initial(self):
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                mine.close()
                _serve(os.dup(theirs.fileno()), self.window[0], self.window[1], True)
            theirs.close()
            self.root = LiveProc(mine, pid)
            return self.root

        def call(self, ev):
            try:
                return super().call(ev)
            except NotComparable:
                return "not comparable"

        def _openat(self, proc, ev, dirfd, path, flags=0, mode=0):
            _warm(path.value)
            return self._new_fd(ev, proc.open(path.value, flags))

        def dump(self, ev):
            proc = self.procs[ev.pid]
            out = Outcome(ev, label=self._label(ev.pid))
            out.smaps = proc.vmas() if proc.sock.fileno() >= 0 else []
            return out

        def finish(self):
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

    return LiveReplayer


VMA_FIELDS = ("start", "end", "perms", "flags", "rss_kb", "anon_kb", "anon_huge_kb",
              "locked_kb", "thp_eligible")


def _vma_text(v):
    return (f"{v['start']:x}-{v['end']:x} {v['perms']} rss {v['rss_kb']} kB anon "
            f"{v['anon_kb']} kB thp {v['anon_huge_kb']} kB locked {v['locked_kb']} kB "
            f"eligible {v['thp_eligible']} [{' '.join(v['flags'])}]")


def _compare_vmas(where, sim, live):
    sim = [{k: v[k] for k in VMA_FIELDS} for v in sim]
    live = [{k: v[k] for k in VMA_FIELDS} for v in live]
    if sim == live:
        return []
    lines = [f"{where}: the VMAs in the window differ"]
    lines += ["  - simulator " + _vma_text(v) for v in sim if v not in live]
    lines += ["  + live      " + _vma_text(v) for v in live if v not in sim]
    return lines


def host_thp():
    """The live kernel's THP mode (sysfs), for a simulator run to match it."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return "madvise"


def diff_trace(text, file="<trace>", window=WINDOW):
    """Run a trace in the simulator and on the live kernel, one real process per trace
    pid; the list of differences (results, and VMAs in ``window`` at every dump and
    at the end), and the calls that could not be compared."""
    from .kernel import Kernel
    from .trace import Replayer, parse
    events = parse(text, file)
    sim = Replayer(Kernel(thp=host_thp(), randomize=False))
    sim_out = sim.run(events)
    live = _trace_classes()(window)
    try:
        live_out = live.run(parse(text, file))
        finals = {}
        for who, proc in live.procs.items():
            if proc.sock.fileno() >= 0:
                finals[who] = proc.vmas()
    finally:
        live.finish()
    diffs, skipped = [], []
    for s, lv in zip(sim_out, live_out):
        ev = s.event
        where = f"{file}:{ev.line}"
        if ev.kind == "dump":
            diffs += _compare_vmas(f"{where} dump pid {s.label}",
                                   smaps_vmas(s.smaps, window), lv.smaps)
        elif lv.result == "not comparable":
            skipped.append(f"{where}: {ev.name}() not comparable")
        elif s.result != lv.result:
            diffs.append(f"{where}: {s.line()} but the live kernel returned "
                         f"{_fmt(ev.name, lv.result)}")
    for who, vmas in finals.items():
        proc = sim.procs.get(who)
        if proc is None or proc.mm is None:
            continue
        text = sim.kernel.proc_read(f"/proc/{proc.pid}/smaps")
        label = sim._label(who)
        diffs += _compare_vmas(f"{file}: at the end, pid {label}", smaps_vmas(text, window), vmas)
    return diffs, skipped


def _fmt(name, result):
    from .trace import format_result
    return format_result(name, result)

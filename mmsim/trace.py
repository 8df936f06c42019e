"""Traces in strace syntax: the parser (one event per line, as ``strace -f`` prints
them), the checks a whole trace must pass before any of it runs, and the replayer.

A trace is read completely and checked first, so a malformed line stops the run before
anything executes; each problem is a ``TraceError`` naming the file, the line and what
is wrong.  A call that fails in the simulator is not bad input: its errno is its result.
"""

import errno
import os
import re

import attrs

from . import uapi
from .defs import page_align as _page_align

# Calls the replayer runs in the simulator: their constant arguments are evaluated here.
EXECUTED = frozenset("""
    mmap munmap mprotect mremap madvise mlock mlock2 munlock brk fork vfork clone execve
    exit exit_group wait4 open openat close pidfd_open process_madvise prctl mctl
    setuid setresuid setgid setresgid unshare
""".split())

# Calls that do not touch memory: accepted and ignored, so real logs replay.
IGNORED = frozenset("""
    read write pread64 pwrite64 readv writev fstat newfstatat stat lstat statx statfs fstatfs
    access faccessat faccessat2 arch_prctl set_tid_address set_robust_list get_robust_list
    rseq rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack prlimit64 getrlimit setrlimit
    getrandom ioctl fcntl lseek getpid getppid gettid getuid geteuid getgid getegid
    getresuid getresgid getgroups uname futex clock_gettime clock_getres clock_nanosleep
    nanosleep gettimeofday time times dup dup2 dup3 pipe pipe2 readlink readlinkat getcwd
    chdir fchdir sysinfo getdents64 sched_getaffinity sched_setaffinity sched_yield kill
    tgkill tkill poll ppoll select pselect6 epoll_create1 epoll_ctl epoll_wait epoll_pwait
    eventfd2 socket connect bind listen accept accept4 sendto recvfrom sendmsg recvmsg
    socketpair getsockname getpeername setsockopt getsockopt shutdown umask mkdir mkdirat
    unlink unlinkat rename renameat renameat2 chmod fchmod fchmodat chown fchown fchownat
    truncate ftruncate fsync fdatasync fadvise64 waitid membarrier getpgrp getpgid setpgid
    getsid setsid capget capset personality sync sync_file_range utimensat
    flock close_range memfd_create mincore msync inotify_init1 inotify_add_watch
    rt_sigsuspend rt_sigtimedwait rt_sigqueueinfo pause alarm setitimer getitimer
    restart_syscall sched_getparam sched_setparam sched_getscheduler sched_setscheduler
    getpriority setpriority ioprio_get ioprio_set getxattr lgetxattr fgetxattr listxattr
    llistxattr flistxattr timerfd_create timerfd_settime signalfd4 copy_file_range sendfile
    splice fallocate getcpu
""".split())

KNOWN = EXECUTED | IGNORED

# How many positional arguments each executed call takes (strace prints prctl with as
# many as the option uses, and clone with named arguments).
ARITY = {
    "mmap": (6,), "munmap": (2,), "mprotect": (3,), "mremap": (4, 5), "madvise": (3,),
    "mlock": (2,), "mlock2": (3,), "munlock": (2,), "brk": (1,), "fork": (0,), "vfork": (0,),
    "execve": (3,), "exit": (1,), "exit_group": (1,), "wait4": (4,), "open": (2, 3),
    "openat": (3, 4), "close": (1,), "pidfd_open": (2,), "process_madvise": (5,),
    "prctl": (1, 2, 3, 4, 5), "mctl": (3,), "setuid": (1,), "setresuid": (3,), "setgid": (1,),
    "setresgid": (3,), "unshare": (1,),
}


class TraceError(ValueError):
    """A malformed trace: ``file``, ``line`` (1-based) and what is wrong."""

    def __init__(self, file, line, message):
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


@attrs.define(slots=True)
class Raw:
    """An argument kept as written: a struct, or an expression the replay never reads."""
    text: str


@attrs.define(slots=True)
class Str:
    """A string argument; ``truncated`` when strace cut it short (``"..."...``)."""
    value: str
    truncated: bool = False


@attrs.define(slots=True)
class Event:
    """One line of a trace.

    ``kind`` is ``"call"``, ``"dump"``, ``"exit"`` (``+++ ... +++``), ``"signal"``
    (``--- ... ---``) or ``"note"`` (``strace: ...``).  ``prefix`` is the ``[pid N]``
    written on the line (None without one); ``pid`` is the process it names, None for
    the initial process (``check_pids`` decides).  For a call, ``args`` holds ints (numbers,
    NULL and constants), ``Str``, lists (arrays) and ``Raw``; ``kwargs`` the
    ``name=value`` arguments (clone); ``result`` is None when not recorded, ``"?"``,
    an int, or a negative errno for ``-1 ENAME (text)``."""
    line: int
    kind: str
    pid: int | None = None
    name: str = ""
    args: list = attrs.Factory(list)
    kwargs: dict = attrs.Factory(dict)
    result: object = None
    text: str = ""
    prefix: int | None = None


# "[pid N] " on the terminal; "N " when strace -f writes to a file (-o).
_PREFIX = re.compile(r"(?:\[pid\s+(\d+)\]|(\d+))\s+")
_CALL = re.compile(r"([a-z_][a-z0-9_]*)\(")
_RESUMED = re.compile(r"<\.\.\. ([a-z_][a-z0-9_]*) resumed>\s*")
_UNFINISHED = " <unfinished ...>"
_RESULT = re.compile(
    r"\s*=\s*(?:(\?)(?:\s+E[A-Z0-9_]+)?|(-1)\s+(E[A-Z0-9]+)\s*(?:\(.*\))?|(-?(?:0x[0-9a-fA-F]+|\d+)))"
    r"(?:\s*<[^>]*>)?(?:\s*\(.*\))?\s*\Z")
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a", "b": "\b",
            '"': '"', "\\": "\\", "'": "'", "?": "?"}
_EXPR_TOKEN = re.compile(r"\s*(<<|[|~()]|[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9a-fA-F]+|\d+|-\d+)")
_ERRNO = {name: code for code, name in errno.errorcode.items()}


def parse(text, file="<trace>"):
    """Parse a whole trace; a list of Events, or TraceError at the first bad line."""
    events = []
    pending = {}   # pid -> (Event, argument text so far) of an <unfinished ...> call
    slots = {}     # id(Event) -> where an unfinished fork goes in ``events``
    for lineno, raw in enumerate(text.splitlines(), 1):
        before = len(pending)
        event = parse_line(raw, lineno, file, pending)
        if event is None:
            if len(pending) > before:
                started = next(reversed(pending.values()))[0]
                if started.name in FORKS:
                    # The child exists from the moment the fork starts: its lines may
                    # come before the parent's "resumed" line, so the fork runs here.
                    slots[id(started)] = len(events)
                    events.append(None)
            continue
        slot = slots.pop(id(event), None)
        if slot is None:
            events.append(event)
        else:
            events[slot] = event
    if pending:
        ev, _ = next(iter(pending.values()))
        raise TraceError(file, ev.line, f"{ev.name}() is never resumed")
    check_pids(events, file)
    return events


def parse_line(raw, lineno, file="<trace>", pending=None):
    """Parse one line; None for a blank line or a comment."""
    line = raw.strip()
    if not line:
        return None
    if line.startswith("strace:"):
        return Event(lineno, "note", text=line[7:].strip())
    pid = None
    m = _PREFIX.match(line)
    if m:
        pid = int(m.group(1) or m.group(2))
        line = line[m.end():]
    if line.startswith("#"):
        body = line[1:].strip()
        if body != "dump" and not body.startswith("dump "):
            return None
        event = Event(lineno, "dump", pid, text=body[4:].strip())
    else:
        event = _parse_body(line, pid, lineno, file, pending)
    if event is not None:
        event.prefix = pid
    return event


# Values of argument texts already evaluated ("PROT_READ|PROT_WRITE", "0x7f0000"...):
# traces repeat the same few constants, and a lookup is far cheaper than a parse.
_VALUES = {"NULL": 0}
_SIMPLE_BREAKERS = ('"', "[", "{", "<", "/*", "=")


def _fast_call(line, pid, lineno, file):
    """The common line, ``name(a, b, c) = result`` with plain arguments, or None to
    let the general parser take it (which also reports any error)."""
    p = line.find("(")
    close = line.rfind(")")
    if p <= 0 or close < p:
        return None
    name = line[:p]
    if name not in EXECUTED:
        return None
    args_text = line[p + 1:close]
    if "(" in args_text or ")" in args_text:
        return None
    for c in _SIMPLE_BREAKERS:
        if c in args_text:
            return None
    rest = line[close + 1:].strip()
    result = None
    if rest:
        if not rest.startswith("="):
            return None
        value = rest[1:].strip()
        if value == "?":
            result = "?"
        else:
            try:
                result = int(value, 0)
            except ValueError:
                return None
    args = []
    values = _VALUES
    if args_text.strip():
        for a in args_text.split(","):
            a = a.strip()
            v = values.get(a)
            if v is None:
                if not a:
                    return None
                v = values[a] = _expr(a, file, lineno)
            args.append(v)
    counts = ARITY.get(name)
    if counts is not None and len(args) not in counts:
        return None
    return Event(lineno, "call", pid, name, args, {}, result, args_text)


def _parse_body(line, pid, lineno, file, pending):
    fast = _fast_call(line, pid, lineno, file)
    if fast is not None:
        return fast
    if line.startswith("+++") or line.startswith("---"):
        mark = line[:3]
        if not line.endswith(mark) or len(line) < 6:
            raise TraceError(file, lineno, f"unterminated {mark} line")
        return Event(lineno, "exit" if mark == "+++" else "signal", pid, text=line[3:-3].strip())
    resumed = _RESUMED.match(line)
    if resumed:
        name = resumed.group(1)
        key = pid
        if pending is None or key not in pending or pending[key][0].name != name:
            raise TraceError(file, lineno, f"{name} resumed but never left unfinished")
        event, head = pending.pop(key)
        body = head + line[resumed.end():]
        event.line = lineno
    else:
        m = _CALL.match(line)
        if not m:
            raise TraceError(file, lineno, f"cannot parse {line!r}")
        name = m.group(1)
        if name == "dump" and line[m.end():].strip().startswith(")"):
            return Event(lineno, "dump", pid)
        if name not in KNOWN:
            raise TraceError(file, lineno, f"unknown call {name}()")
        event = Event(lineno, "call", pid, name)
        body = line[m.end():]
        if body.endswith(_UNFINISHED):
            if pending is None:
                raise TraceError(file, lineno, "an unfinished call outside a whole trace")
            if pid in pending:
                raise TraceError(file, lineno, "a second call left unfinished")
            pending[pid] = (event, body[:-len(_UNFINISHED)])
            return None
    args_text, rest = _split_args(body, file, lineno)
    event.text = args_text
    if rest.strip():
        rm = _RESULT.match(rest)
        if not rm:
            raise TraceError(file, lineno, f"cannot parse the result {rest.strip()!r}")
        if rm.group(1):
            event.result = "?"
        elif rm.group(2):
            code = _ERRNO.get(rm.group(3))
            if code is None:
                raise TraceError(file, lineno, f"unknown errno {rm.group(3)}")
            event.result = -code
        else:
            event.result = int(rm.group(4), 0)
    evaluate = event.name in EXECUTED
    for arg in _split_top(args_text, file, lineno):
        key, eq, val = arg.partition("=")
        if eq and re.fullmatch(r"[a-z_][a-z0-9_]*", key) and not val.startswith("="):
            event.kwargs[key] = _value(val.strip(), evaluate, file, lineno)
        else:
            event.args.append(_value(arg, evaluate, file, lineno))
    counts = ARITY.get(event.name)
    if counts is not None and len(event.args) not in counts:
        want = " or ".join(map(str, counts))
        raise TraceError(file, lineno, f"{event.name}() takes {want} arguments, not {len(event.args)}")
    return event


def _split_args(body, file, lineno):
    """The text inside the call's parentheses and what follows the closing one."""
    i, n = 0, len(body)
    stack = []
    while i < n:
        c = body[i]
        if c == '"':
            i = _skip_string(body, i, file, lineno)
            continue
        if c == "/" and body.startswith("/*", i):
            end = body.find("*/", i + 2)
            if end < 0:
                raise TraceError(file, lineno, "unterminated comment")
            i = end + 2
            continue
        if c in "([{":
            stack.append(_CLOSE[c])
        elif c in ")]}":
            if not stack:
                if c != ")":
                    raise TraceError(file, lineno, f"unbalanced {c!r}")
                return body[:i], body[i + 1:]
            if stack.pop() != c:
                raise TraceError(file, lineno, f"unbalanced {c!r}")
        i += 1
    raise TraceError(file, lineno, "unbalanced brackets: the call's ')' is missing")


def _skip_string(s, i, file, lineno):
    """The index just past the string literal starting at ``s[i]`` (and a ``...``)."""
    j = i + 1
    n = len(s)
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            j += 1
            if s.startswith("...", j):
                j += 3
            return j
        j += 1
    raise TraceError(file, lineno, "unterminated string")


def _split_top(text, file, lineno):
    """Split the argument text at its top-level commas, comments dropped."""
    out, start, i, n = [], 0, 0, len(text)
    depth = 0
    pieces = []
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_string(text, i, file, lineno)
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            pieces.append(text[start:i])
            i = start = end + 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            pieces.append(text[start:i])
            out.append("".join(pieces).strip())
            pieces = []
            start = i + 1
        i += 1
    pieces.append(text[start:])
    last = "".join(pieces).strip()
    if last or out:
        out.append(last)
    return out


def _value(arg, evaluate, file, lineno):
    if not arg:
        raise TraceError(file, lineno, "an empty argument")
    c = arg[0]
    if c == '"':
        return _string(arg, file, lineno)
    if c == "[":
        inner = arg[1:-1]
        return [_value(a, evaluate, file, lineno) for a in _split_top(inner, file, lineno)]
    if c == "{":
        return Raw(arg)
    if arg == "NULL":
        return 0
    if arg == "...":
        return Raw(arg)
    if not evaluate:
        try:
            return int(arg, 0)
        except ValueError:
            return Raw(arg)
    return _expr(arg, file, lineno)


def _string(arg, file, lineno):
    truncated = arg.endswith("...")
    body = arg[1:-4] if truncated else arg[1:-1]
    out = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif nxt.isdigit():
            j = i + 1
            while j < min(i + 4, n) and body[j] in "01234567":
                j += 1
            out.append(chr(int(body[i + 1:j], 8)))
            i = j
        else:
            raise TraceError(file, lineno, f"bad escape in {arg!r}")
    return Str("".join(out), truncated)


def _expr(arg, file, lineno):
    """A constant expression as strace prints flags: names and numbers joined with
    ``|``, with ``~`` and ``<<`` (``1<<MAP_HUGE_SHIFT``) and parentheses."""
    tokens, pos = [], 0
    while pos < len(arg):
        m = _EXPR_TOKEN.match(arg, pos)
        if not m:
            raise TraceError(file, lineno, f"cannot parse the argument {arg!r}")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(arg) and arg[pos].isspace():
            pos += 1
    tokens.append(None)
    at = 0

    def atom():
        nonlocal at
        tok = tokens[at]
        at += 1
        if tok == "~":
            return ~atom()
        if tok == "(":
            v = orexpr()
            if tokens[at] != ")":
                raise TraceError(file, lineno, f"unbalanced brackets in {arg!r}")
            at += 1
            return v
        if tok is None or tok in ("|", "<<", ")"):
            raise TraceError(file, lineno, f"cannot parse the argument {arg!r}")
        try:
            return uapi.value(tok)
        except KeyError:
            raise TraceError(file, lineno, f"unknown constant {tok} in {arg!r}") from None

    def shift():
        nonlocal at
        v = atom()
        while tokens[at] == "<<":
            at += 1
            v <<= atom()
        return v

    def orexpr():
        nonlocal at
        v = shift()
        while tokens[at] == "|":
            at += 1
            v |= shift()
        return v

    v = orexpr()
    if tokens[at] is not None:
        raise TraceError(file, lineno, f"cannot parse the argument {arg!r}")
    return v


FORKS = ("fork", "vfork", "clone", "clone3")


def check_pids(events, file="<trace>"):
    """Name every event's process: the initial process is ``None`` until its real pid
    shows up as a prefix no fork created; a child is the pid its fork returned.  A line
    for a pid never created, or for a process that has exited, is an error."""
    initial = None          # the initial process' pid, once a prefix names it
    created = set()
    exited = set()
    for ev in events:
        pid = ev.pid
        if pid is not None and pid not in created:
            if initial is None and None not in exited:
                initial = pid
            elif pid != initial:
                raise TraceError(file, ev.line, f"pid {pid} was never created")
        who = None if pid == initial else pid
        if who in exited and ev.kind != "exit":
            name = f"pid {pid}" if who is not None else "the initial process"
            raise TraceError(file, ev.line, f"{name} has exited")
        if ev.kind == "call":
            if ev.name in FORKS and isinstance(ev.result, int) and ev.result > 0:
                created.add(ev.result)
            elif ev.name in ("exit", "exit_group"):
                exited.add(who)
        elif ev.kind == "exit":
            exited.add(who)
        ev.pid = who
    return events


# ---------------------------------------------------------------------- replay

ADDRESS_RESULTS = ("mmap", "mremap", "brk")
_FIELD = re.compile(r"\s*(\w+)\s*=\s*([^,]+?)\s*(?:,|\Z)")


def _mm_map(text):
    """struct prctl_mm_map as strace prints it, ``{start_code=0x..., ..., exe_fd=-1}``;
    a field left out is 0 (exe_fd: -1).  ValueError for anything else."""
    from .prctl import PrctlMmMap
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"not a struct: {text!r}")
    fields = {}
    for m in _FIELD.finditer(body[1:-1]):
        name, raw = m.group(1), m.group(2)
        fields[name] = 0 if raw == "NULL" else uapi.value(raw)
    names = {f.name for f in attrs.fields(PrctlMmMap)}
    if not fields or set(fields) - names:
        raise ValueError(f"unknown fields in {text!r}")
    fields.setdefault("exe_fd", -1)
    return PrctlMmMap(**fields)


_IOV = re.compile(r"iov_base=(0x[0-9a-fA-F]+|\d+|NULL),\s*iov_len=(\d+|0x[0-9a-fA-F]+)")


@attrs.define(slots=True)
class Outcome:
    """What replaying one event gave: a call's actual result (an int, ``"?"``, or a
    negative errno), or a dump's /proc text."""
    event: Event
    result: object = None
    smaps: str = ""
    thp_enabled: str = ""
    label: int | None = None   # the process as the trace names it

    def line(self):
        """The event as strace would print it, with the actual result."""
        ev = self.event
        prefix = f"[pid {self.label}] " if ev.prefix is not None else ""
        if ev.kind == "dump":
            return f"# dump pid {self.label}"
        return f"{prefix}{ev.name}({ev.text}) = {format_result(ev.name, self.result)}"

    def matches(self):
        """The actual result is the one the trace recorded (or none was recorded)."""
        rec = self.event.result
        return self.event.kind != "call" or rec is None or rec == self.result


def format_result(name, result):
    """A result the way strace prints it: hex for addresses, ``-1 ENAME (text)``."""
    if result == "?" or result is None:
        return "?"
    if result < 0:
        code = -result
        return f"-1 {errno.errorcode.get(code, str(code))} ({os.strerror(code)})"
    if name in ADDRESS_RESULTS:
        return hex(result)
    return str(result)


class Replayer:
    """Runs checked events on a Kernel, one logical process per trace pid.

    Simulator-defined naming: a fork's child is known by the pid the trace recorded for
    it (its actual simulator pid is internal), so results that are pids (fork, clone,
    vfork, wait4) are reported as the trace's pids; file descriptors likewise map from
    the trace's numbers to the simulator's.  Calls that do not touch memory return the
    result the trace recorded (0 where none was).  ``follow`` places a non-fixed mmap
    or a moving mremap at its recorded address when that range is free, and the first
    recorded ``brk(NULL)`` sets the break, so a real program's layout reproduces."""

    def __init__(self, kernel, follow=False):
        self.kernel = kernel
        self.follow = follow
        self.procs = {}      # logical pid (None: initial) -> Process
        self.names = {}      # simulator pid -> logical pid
        self.fds = {}        # (logical pid, trace fd) -> simulator fd
        self.initial_label = None
        self._brk_set = set()

    def run(self, events):
        """Replay ``events`` (from ``parse``); a list of Outcomes, in trace order."""
        for ev in events:
            if ev.pid is None and ev.prefix is not None:
                self.initial_label = ev.prefix
                break
        if None not in self.procs:
            self._adopt(None, self.spawn_initial())
        out = []
        for ev in events:
            if ev.kind == "call":
                out.append(Outcome(ev, self.call(ev), label=self._label(ev.pid)))
            elif ev.kind == "dump":
                out.append(self.dump(ev))
        return out

    def spawn_initial(self):
        """The initial process: like a program started from a shell, it has standard
        input, output and error open (on a simulated /dev/null)."""
        init = self.kernel.spawn()
        null = self.kernel.files.get("/dev/null")
        if null is None:
            null = self.kernel.create_file("/dev/null", 0, dev=(0x00, 0x05))
        for fd in (0, 1, 2):
            init.fds[fd] = self.kernel.open_file(null, readable=True, writable=True)
        return init

    def _label(self, who):
        if who is not None:
            return who
        if self.initial_label is not None:
            return self.initial_label
        return self.procs[None].pid

    def _adopt(self, who, proc):
        self.procs[who] = proc
        self.names[proc.pid] = who

    def dump(self, ev):
        """/proc/PID/smaps and the THP_enabled line of the event's process."""
        proc = self.procs[ev.pid]
        kernel = self.kernel
        smaps = kernel.proc_read(f"/proc/{proc.pid}/smaps") if proc.mm is not None else ""
        status = kernel.proc_read(f"/proc/{proc.pid}/status") if proc.mm is not None else ""
        thp = next((ln for ln in status.splitlines() if ln.startswith("THP_enabled:")), "")
        return Outcome(ev, smaps=smaps, thp_enabled=thp, label=self._label(ev.pid))

    def call(self, ev):
        """Run one call event; its actual result (negative errno on failure)."""
        proc = self.procs[ev.pid]
        name = ev.name
        if name not in EXECUTED:
            return ev.result if ev.result is not None else 0
        handler = getattr(self, "_" + name, None)
        try:
            if handler is not None:
                return handler(proc, ev, *ev.args)
            return getattr(proc, name)(*ev.args)
        except OSError as e:
            return -e.errno
        except (TypeError, ValueError, AttributeError, IndexError):
            # An argument of the wrong shape (a string where a number belongs): what
            # the kernel answers for a pointer it cannot read.
            return -errno.EFAULT

    # Calls whose arguments or results need translating.

    def _fd(self, ev, fd):
        return self.fds.get((ev.pid, fd), fd) if fd >= 0 else fd

    def _mmap(self, proc, ev, addr, length, prot, flags, fd, off):
        rec = ev.result
        if (self.follow and not flags & uapi.MAP_FIXED and isinstance(rec, int) and rec > 0
                and not addr and proc.mm.tree.find(rec, rec + _page_align(length)) is None):
            addr = rec   # a hint the kernel takes when the range is free
        return proc.mmap(addr, length, prot, flags, self._fd(ev, fd), off)

    def _mremap(self, proc, ev, old, old_size, new_size, flags=0, new_addr=0):
        rec = ev.result
        if (self.follow and flags & uapi.MREMAP_MAYMOVE and not flags & uapi.MREMAP_FIXED
                and isinstance(rec, int) and rec > 0 and rec != old
                and proc.mm.tree.find(rec, rec + _page_align(new_size)) is None):
            flags |= uapi.MREMAP_FIXED
            new_addr = rec
        return proc.mremap(old, old_size, new_size, flags, new_addr)

    def _brk(self, proc, ev, addr):
        rec = ev.result
        mm = proc.mm
        if (self.follow and addr == 0 and isinstance(rec, int) and rec > 0
                and id(mm) not in self._brk_set and mm.brk == mm.start_brk):
            mm.start_brk = mm.brk = rec
        self._brk_set.add(id(mm))
        return proc.brk(addr)

    def _open(self, proc, ev, path, flags=0, mode=0):
        return self._openat(proc, ev, uapi.AT_FDCWD, path, flags, mode)

    def _openat(self, proc, ev, dirfd, path, flags=0, mode=0):
        name = path.value
        if name not in self.kernel.files and os.path.exists(name):
            # A host file a real program opened: visible to the simulator read-only.
            from .binfmt_elf import _inode_for
            _inode_for(self.kernel, name, os.stat(name))
        return self._new_fd(ev, proc.open(name, flags))

    def _new_fd(self, ev, fd):
        """A descriptor is known by the number the trace recorded for it."""
        if isinstance(ev.result, int) and ev.result >= 0:
            self.fds[(ev.pid, ev.result)] = fd
            return ev.result
        return fd

    def _close(self, proc, ev, fd):
        sim = self.fds.pop((ev.pid, fd), fd)
        if sim not in proc.fds and isinstance(ev.result, int) and ev.result == 0:
            # A descriptor an ignored call made (a pipe, a socket, a dup): it was never
            # open here, and closing it does not touch memory.
            return 0
        return proc.close(sim)

    def _fork(self, proc, ev):
        return self._child(proc, ev, proc.fork())

    def _vfork(self, proc, ev):
        return self._child(proc, ev, proc.vfork())

    def _clone(self, proc, ev, *args):
        flags = ev.kwargs.get("flags", args[0] if args else 0)
        return self._child(proc, ev, proc.clone(flags))

    def _child(self, proc, ev, child):
        who = ev.result if isinstance(ev.result, int) and ev.result > 0 else child.pid
        self._adopt(who, child)
        for (owner, tfd), sfd in list(self.fds.items()):
            if owner == ev.pid:
                self.fds[(who, tfd)] = sfd
        return who

    def _sim_pid(self, who):
        proc = self.procs.get(None if who == self.initial_label else who)
        return proc.pid if proc is not None else who

    def _wait4(self, proc, ev, pid=-1, status=0, options=0, rusage=0):
        target = self._sim_pid(pid) if pid > 0 else pid
        got, _ = proc.wait4(target, options)
        return self.names.get(got, got) if got else 0

    def _prctl(self, proc, ev, option, *args):
        if (option == uapi.PR_SET_MM and len(args) > 1 and args[0] == uapi.PR_SET_MM_MAP
                and isinstance(args[1], Raw)):
            args = (args[0], _mm_map(args[1].text), *args[2:])
        return proc.prctl(option, *args)

    def _pidfd_open(self, proc, ev, pid, flags=0):
        return self._new_fd(ev, proc.pidfd_open(self._sim_pid(pid), flags))

    def _mctl(self, proc, ev, pidfd, action, flags):
        return proc.mctl(self._fd(ev, pidfd), action, flags)

    def _execve(self, proc, ev, path, argv=(), envp=0):
        argv = [a.value for a in argv] if isinstance(argv, list) else None
        return proc.execve(path.value, argv)

    def _exit(self, proc, ev, status=0):
        proc.exit(status)
        return "?"

    _exit_group = _exit

    def _process_madvise(self, proc, ev, pidfd, iov, vlen, advice, flags=0):
        pairs = []
        for item in iov if isinstance(iov, list) else ():
            m = _IOV.search(item.text) if isinstance(item, Raw) else None
            if m is None:
                return -errno.EFAULT
            base = 0 if m.group(1) == "NULL" else int(m.group(1), 0)
            pairs.append((base, int(m.group(2), 0)))
        return proc.process_madvise(self._fd(ev, pidfd), pairs[:vlen], advice, flags)


def replay(text, kernel, file="<trace>", follow=False):
    """Parse, check and replay a trace on ``kernel``; the list of Outcomes."""
    return Replayer(kernel, follow).run(parse(text, file))


__all__ = ["parse", "parse_line", "check_pids", "replay", "Replayer", "Outcome", "Event",
           "Raw", "Str", "TraceError", "format_result", "EXECUTED", "IGNORED"]

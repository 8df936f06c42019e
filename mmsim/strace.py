"""Traces in strace syntax: the parser (one event per line, as ``strace -f`` prints
them) and the checks a whole trace must pass before any of it runs (mmsim.replay runs
them).

A trace is read completely and checked first, so a malformed line stops the run before
anything executes; each problem is a ``TraceError`` naming the file, the line and what
is wrong.  A call that fails in the simulator is not bad input: its errno is its result.
"""

import errno
import itertools
import re
import sys
from collections.abc import Iterable, Iterator

import attrs

from . import uapi
from .defs import bulk_build
from .errors import TraceError
from .prctl import PrctlMmMap

# Calls the replayer runs in the simulator: their constant arguments are evaluated here.
EXECUTED = frozenset("""
    mmap munmap mprotect mremap madvise mlock mlock2 munlock brk fork vfork clone clone3 execve
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
    splice fallocate getcpu getrusage
    futex_wake futex_wait futex_requeue futex_waitv sched_get_priority_max
    sched_get_priority_min sched_getattr sched_setattr sched_rr_get_interval
    creat readahead
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
    "setresgid": (3,), "unshare": (1,), "clone3": (2,),
}


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
    (``--- ... ---``), ``"note"`` (``strace: ...``), ``"advance"`` (``# advance
    SECONDS``: ``args`` holds the seconds) or ``"access"`` (``# access ADDR LENGTH
    r|w``: ``args`` holds the address, the length and whether it writes).  ``prefix`` is the ``[pid N]``
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
    start: int | None = None   # the line of its "<unfinished ...>" half, when split


# What strace writes before the call, each part optional, in its order: the pid ("[pid
# N] " on the terminal, "N " when strace -f writes to a file with -o; -Y adds the
# command, "N<sh> "); a timestamp (-t
# "12:34:56", -tt "12:34:56.123456", -ttt "1700000000.123456", -r "0.000123", and -r
# with -t "12:34:56 (+     0.000123)"); the syscall number (-n "[  9]"); the
# instruction pointer (-i "[00007f...]", "[????????????????]" where there is none).
_PREFIX = re.compile(
    r"(?:(?:\[pid\s+([0-9]{1,10})(?:<[^>]{0,64}>)?\]|([0-9]{1,10})(?:<[^>]{0,64}>)?)\s+)?"
    r"(?:(?:[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?|[0-9]{1,20}\.[0-9]{1,9})\s+"
    r"(?:\(\+\s*[0-9]{1,20}\.[0-9]{1,9}\)\s+)?)?"
    r"(?:\[\s*[0-9]{1,5}\]\s+)?"
    r"(?:\[(?:[0-9a-f]{8,16}|\?{8,16})\]\s+)?", re.ASCII)
_PREFIX_STARTS = frozenset("0123456789[")
# How a call's name starts: a line starting so has no prefix.
_PLAIN_STARTS = frozenset("abcdefghijklmnopqrstuvwxyz_")
_CALL = re.compile(r"([a-z_][a-z0-9_]*)\(")
_RESUMED = re.compile(r"<\.\.\. ([a-z_][a-z0-9_]*) resumed>\s*")
_UNFINISHED = " <unfinished ...>"
_RESULT = re.compile(
    r"\s*=\s*(?:(\?)(?:\s+E[A-Z0-9_]+)?|(-1)\s+(E[A-Z0-9]+)\s*(?:\(.*\))?|(-?[0-9][0-9a-zA-Z]*))"
    r"(?:\s*\(.*\))?\s*\Z", re.ASCII)
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a", "b": "\b",
            '"': '"', "\\": "\\", "'": "'", "?": "?"}
_EXPR_TOKEN = re.compile(r"\s*(<<|[|~()]|[A-Za-z_][A-Za-z0-9_]*|-?[0-9][0-9A-Za-z]*)", re.ASCII)
# A number as C writes it (0x hex, 0 octal, decimal); strace prints nothing else.
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z", re.ASCII)
# A value travels in a 64-bit register: strace prints it signed or unsigned.
LOWEST, HIGHEST = -(1 << 63), (1 << 64) - 1
# How deep arrays, parentheses and ~ may nest (strace nests two or three levels).
MAX_DEPTH = 32
# The longest line read (/dev/zero has none): strace's own are a few KiB at most.
MAX_LINE = 1 << 20
# Every errno name, aliases included (errno.errorcode keeps one name per number, but
# strace prints EOPNOTSUPP, EWOULDBLOCK and EDEADLOCK by those names).
_ERRNO = {name: getattr(errno, name) for name in dir(errno)
          if name.startswith("E") and isinstance(getattr(errno, name), int)}


def read_trace(path: str) -> str:
    """A trace file's text ('-': standard input), bytes that are not UTF-8 replaced by
    U+FFFD; TraceError for a line longer than MAX_LINE (so /dev/zero ends), OSError
    when the file cannot be read (a directory)."""
    chunks, lines, run = [], 1, 0
    with (open(sys.stdin.fileno(), "rb", closefd=False) if path == "-" else open(path, "rb")) as f:
        while chunk := f.read(1 << 16):
            first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
            if run + (len(chunk) if first < 0 else first) > MAX_LINE:
                raise TraceError(path, lines, f"a line longer than {MAX_LINE} bytes: not a trace")
            if last >= 0:
                lines += chunk.count(b"\n")
                run = len(chunk) - last - 1
            else:
                run += len(chunk)
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


# Comment lines that print a /proc file: "# meminfo" and "# vmstat" (the machine's),
# "# status" (the process').
SHOW_FILES = ("meminfo", "vmstat", "status")


def iter_lines(path: str):
    """A trace file's lines ('-': standard input), one at a time, without their "\\n",
    bytes that are not UTF-8 replaced by U+FFFD; TraceError for a line longer than
    MAX_LINE, OSError when the file cannot be read.  Memory stays flat in the length."""
    lineno = 0
    with (open(sys.stdin.fileno(), "rb", closefd=False) if path == "-" else open(path, "rb")) as f:
        while True:
            raw = f.readline(MAX_LINE + 2)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE + (raw.endswith(b"\n")):
                raise TraceError(path, lineno, f"a line longer than {MAX_LINE} bytes: not a trace")
            yield raw.rstrip(b"\n").decode("utf-8", errors="replace")


def iter_parse(lines: Iterable[str], file: str = "<trace>") -> Iterator[Event]:
    """Parse a trace given as an iterable of lines (without their "\\n"), yielding each
    Event (its process named as ``check_pids`` names it) as soon as it is known, so a
    long trace is never held in memory; TraceError at the first bad line.  Events after
    an unfinished fork wait until it resumes (the fork runs where it started)."""
    pending = {}   # pid -> (Event, argument text so far) of an <unfinished ...> call
    held = []      # events from an unfinished fork's start on: [fork slot or Event]
    slots = {}     # id(Event) -> index in ``held``
    namer = _PidNamer(file)
    # A C-level enumerate, not a wrapper with a Python-level __next__ for every line:
    # only a summary table needs the lines after one, and _skip_summary_table reads
    # those itself.
    lines = enumerate(lines, 1)
    exited = namer.exited   # (one set, changed in place)
    for lineno, raw in lines:
        if (raw and raw[0] in _PLAIN_STARTS and "<" not in raw and not raw[-1].isspace()
                and not slots):
            # A line with no prefix, decoration or surrounding blank (nothing for
            # parse_line to strip or take off): parse_line would hand it to _fast_call
            # as it is, so that comes first.
            try:
                event = _fast_call(raw, None, lineno, file)
            except TraceError:
                event = None   # parse_line reports it (or it starts a summary table)
            if event is not None:
                if held:
                    for ev in held:
                        yield namer.name(ev)
                    held.clear()
                if event.name in _NAMED_CALLS or None in exited:
                    yield namer.name(event)
                else:
                    # namer.name of an unprefixed call that neither forks nor exits,
                    # its process not gone: it only notes that an event was named.
                    namer.seen = True
                    yield event
                continue
        before = len(pending)
        try:
            event = parse_line(raw, lineno, file, pending)
        except TraceError:
            if not _skip_summary_table(raw, lines):
                raise
            if not namer.seen:
                raise TraceError(file, lineno, "a strace -c summary table, not a log: record "
                                 "without -c (with -C the log comes first)") from None
            continue       # -C: the table after the log sums it up; the log replays
        if event is None:
            if len(pending) > before:
                started = next(reversed(pending.values()))[0]
                if started.name in FORKS:
                    # The child exists from the moment the fork starts: its lines may
                    # come before the parent's "resumed" line, so the fork runs here.
                    slots[id(started)] = len(held)
                    held.append(None)
            continue
        if not slots:
            # Nothing held back (the common case): the event goes out at once.
            for ev in held:
                yield namer.name(ev)
            held.clear()
            yield namer.name(event)
            continue
        slot = slots.pop(id(event), None)
        if slot is not None:
            held[slot] = event
        else:
            held.append(event)
        if not slots:
            for ev in held:
                yield namer.name(ev)
            held.clear()
    if pending:
        ev, _ = next(iter(pending.values()))
        raise TraceError(file, ev.line, f"{ev.name}() is never resumed")
    for ev in held:
        yield namer.name(ev)


_TABLE_HEADER = re.compile(r"[%A-Za-z/ \t]+\Z", re.ASCII)
_TABLE_RULE = re.compile(r"\s*-{3,}(?:\s+-{3,})*\s*\Z", re.ASCII)


def _skip_summary_table(line, lines):
    """Whether ``line`` starts a strace -c table (a header that a dashed rule follows:
    ``% time     seconds ...``, or -U's own columns; "System call usage summary for ..."
    may come first); if so the table, up to its closing rule and "total" row, is read
    past.  ``lines`` is the parse's iterator of numbered lines: the two looked at
    after ``line`` are read from it, and when the answer is no the caller stops on the
    line's error, so no line read here is ever needed again."""
    ahead = list(itertools.islice(lines, 2))
    header, *rest = [line, *(text for _, text in ahead)]
    if header.startswith("System call usage summary"):
        header, *rest = rest or [""]
        skip = 2
    else:
        skip = 1
    if (not rest or not _TABLE_HEADER.match(header)
            or not ("calls" in header or "syscall" in header)
            or not _TABLE_RULE.match(rest[0])):
        return False
    rows = itertools.chain(ahead[skip:], lines)   # the header's lines passed
    for _, row in rows:
        if _TABLE_RULE.match(row):
            next(rows, None)   # the "total" row
            break
    return True


class _PidNamer:
    """Names each event's process, one event at a time: the initial process is ``None``
    until its real pid shows up as a prefix no fork created; a child is the pid its fork
    returned.  A line for a pid never created, or for a process that has exited, is an
    error; but in a log with no fork at all (``-e trace=memory`` hides them) a new pid
    is a process of its own, named by that pid (so such a pid is an error only once a
    fork shows up: at its own line)."""

    def __init__(self, file):
        self.file = file
        self.initial = None
        self.created = set()
        self.exited = set()
        self.forks = False
        self.unforked = None    # (line, pid) of the first pid no fork created
        self.seen = False       # whether any event was named yet

    def name(self, ev):
        """Name ``ev``'s process; ``ev``."""
        if ev.kind == "advance":
            return ev   # the clock is the machine's, not a process'
        self.seen = True
        pid = ev.pid
        if pid is not None and pid not in self.created:
            if self.initial is None and None not in self.exited:
                self.initial = pid
            elif pid != self.initial:
                if self.forks:
                    raise TraceError(self.file, ev.line, f"pid {pid} was never created")
                if self.unforked is None:
                    self.unforked = (ev.line, pid)
                self.created.add(pid)
        who = None if pid == self.initial else pid
        if who in self.exited and ev.kind != "exit":
            name = f"pid {pid}" if who is not None else "the initial process"
            raise TraceError(self.file, ev.line, f"{name} has exited")
        if ev.kind == "call":
            if ev.name in FORKS:
                self.forks = True
                if self.unforked is not None:
                    line, unknown = self.unforked
                    raise TraceError(self.file, line, f"pid {unknown} was never created")
                if isinstance(ev.result, int) and ev.result > 0:
                    self.created.add(ev.result)
            elif ev.name in ("exit", "exit_group"):
                self.exited.add(who)
        elif ev.kind == "exit":
            self.exited.add(who)
        ev.pid = who
        return ev


def check_pids(events: list[Event], file: str = "<trace>") -> list[Event]:
    """Name every event's process in a list of events parsed line by line (as
    ``iter_parse`` does on the way); ``events``."""
    namer = _PidNamer(file)
    for ev in events:
        namer.name(ev)
    return events


def parse(text: str, file: str = "<trace>") -> list[Event]:
    """Parse a whole trace; a list of Events, or TraceError at the first bad line.
    Lines end at "\\n" only (str.splitlines also cuts at \\f, \\v, \\x1c-\\x1e, \\x85,
    \\u2028 and \\u2029, which may sit inside a comment), so a line's number is an
    editor's."""
    # The events are all kept: the cyclic collector, which would walk them again and
    # again as the list grows (a third of a long trace's parse), leaves them be.
    with bulk_build():
        return list(iter_parse(text.split("\n"), file))


def _advance_seconds(body, file, lineno):
    """The SECONDS of a ``# advance SECONDS`` line: a plain non-negative decimal number."""
    parts = body.split()
    if len(parts) != 2 or not re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", parts[1]):
        raise TraceError(file, lineno, "# advance takes one number of seconds (>= 0)")
    return float(parts[1])


def _access_args(body, file, lineno):
    """``[addr, length, write]`` of a ``# access ADDR LENGTH r|w`` line (mmsim.access)."""
    parts = body.split()
    try:
        if len(parts) != 4 or parts[3] not in ("r", "w"):
            raise ValueError
        addr, length = int(parts[1], 0), int(parts[2], 0)
    except ValueError:
        raise TraceError(file, lineno, "# access takes ADDR LENGTH r|w") from None
    if addr < 0 or length <= 0 or addr + length > 1 << 64:
        raise TraceError(file, lineno, "# access: address or length out of range")
    return [addr, length, parts[3] == "w"]


def parse_line(raw: str, lineno: int, file: str = "<trace>",
               pending: dict | None = None) -> Event | None:
    """Parse one line; None for a blank line or a comment."""
    line = raw.strip()
    if not line:
        return None
    if line.startswith("strace:"):
        return Event(lineno, "note", text=line[7:].strip())
    pid = None
    c = line[0]
    if c in _PREFIX_STARTS:
        m = _PREFIX.match(line)
        if m.end():
            p = m.group(1) or m.group(2)
            if p is not None:
                pid = int(p)
            line = line[m.end():]
    elif c == ">":
        return None      # a -k stack frame of the call above: " > /lib/...(func+0x1f) [0x...]"
    if line.startswith("#"):
        body = line[1:].strip()
        word = body.split(None, 1)[0] if body else ""
        if word == "advance":
            return Event(lineno, "advance", args=[_advance_seconds(body, file, lineno)])
        if word == "access":
            # A memory access of that process (mmsim.access merges them into logs).
            return Event(lineno, "access", pid, args=_access_args(body, file, lineno),
                         prefix=pid)
        if word in SHOW_FILES:
            # "# meminfo", "# vmstat", "# status": print that /proc file here.
            return Event(lineno, "show", pid, name=word, text=body[len(word):].strip(),
                         prefix=pid)
        if body != "dump" and not body.startswith("dump "):
            return None
        event = Event(lineno, "dump", pid, text=body[4:].strip())
    else:
        if "<" in line and line[0] not in "+-":
            # (comments and +++/--- lines are free text: nothing to undecorate)
            line = _undecorate(line, file, lineno)
        event = _parse_body(line, pid, lineno, file, pending)
    if event is not None:
        event.prefix = pid
    return event


# -T's time spent in the call, at the end of the line ("<0.000012>").
_DURATION = re.compile(r"<(?:[0-9]{1,20}\.[0-9]{1,9}|unavailable)>", re.ASCII)
_DECOR_SCAN = re.compile(r'"|/\*|<')
_WORD_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def _undecorate(line, file, lineno):
    """The line without -T's duration and without the ``<...>`` -y/-yy put after a
    descriptor (``3</etc/passwd>``, ``AT_FDCWD</home>``, ``5<pipe:[1234]>``,
    ``4<TCP:[1.2.3.4:80->5.6.7.8:9]>``, ``11</dev/null<char 1:3>>``), as an argument
    or as a result: what remains is the plain log's line.  A decoration's ``<`` follows
    a number, a name or -X verbose's comment directly (``-100 /* AT_FDCWD */</>``);
    ``1<<MAP_HUGE_SHIFT`` is a shift, and ``<unfinished ...>`` and ``<... name
    resumed>`` follow a space.  Strings and comments are skipped."""
    if line.endswith(">"):
        # Found from the end (a regex search would retry at every blank: quadratic).
        k = line.rfind("<")
        if k > 0 and line[k - 1] in " \t" and _DURATION.fullmatch(line, k):
            line = line[:k].rstrip()
    pieces, start, pos = [], 0, 0
    while (m := _DECOR_SCAN.search(line, pos)) is not None:
        pos = m.start()
        tok = m.group()
        if tok == '"':
            pos = _skip_string(line, pos, file, lineno)
            continue
        if tok == "/*":
            end = line.find("*/", pos + 2)
            if end < 0:
                break          # the parser reports the unterminated comment
            pos = end + 2
            continue
        if (pos == 0 or line.startswith("<", pos + 1) or line[pos - 1] == "<"
                or (line[pos - 1] not in _WORD_CHARS and line[pos - 2:pos] != "*/")):
            pos += 1
            continue
        end = _decoration_end(line, pos, file, lineno)
        pieces.append(line[start:pos])
        start = pos = end
    if not pieces:
        return line
    pieces.append(line[start:])
    return "".join(pieces)


def _decoration_end(line, pos, file, lineno):
    """The index just past the decoration opening at ``line[pos] == "<"``: nested
    ``<...>`` (a device's ``</dev/null<char 1:3>>``) counted, and a socket's
    ``[...]`` (which may hold ``->``) and strings skipped whole; a path's own ``<``
    and ``>`` are escaped (``\\74``, ``\\76``)."""
    depth, square, i, n = 0, 0, pos, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            i = _skip_string(line, i, file, lineno)
            continue
        if c == "[":
            square += 1
        elif c == "]" and square:
            square -= 1
        elif not square:
            if c == "<":
                depth += 1
            elif c == ">":
                depth -= 1
                if not depth:
                    return i + 1
        i += 1
    raise TraceError(file, lineno, f"unterminated descriptor decoration {line[pos:pos + 40]!r}")


# Values of argument texts already evaluated ("PROT_READ|PROT_WRITE", "0x7f0000"...):
# traces repeat the same few constants, and a lookup is far cheaper than a parse.
_VALUES = {"NULL": 0}
_VALUES_MAX = 1 << 16
# Results already read ("0", "0x7f0000"...), each an int in a register's range; cleared
# when it grows past _RESULTS_MAX, so a trace of ever-new addresses keeps memory flat.
_RESULTS = {"?": "?"}
_RESULTS_MAX = 1 << 16
# The values of argument lists' tails, from the third argument on ("PROT_READ,
# MAP_PRIVATE|MAP_ANONYMOUS, -1, 0"), each a tuple of what _VALUES holds for its
# arguments; cleared as _VALUES is.
_TAILS = {}
_new = object.__new__


def _fast_call(line, pid, lineno, file):
    """The common line, ``name(a, b, c) = result`` with plain arguments, or None to
    let the general parser take it (which also reports any error)."""
    # (Two partitions cut the line with fewer calls than finds and slices.)
    name, opened, body = line.partition("(")
    if not opened or name not in EXECUTED:   # ("" is no call name either)
        return None
    args_text, closed, rest = body.rpartition(")")   # the line's last ")" is the call's
    if not closed:
        return None
    # Strings, arrays, structures, decorations, comments, name=value arguments and
    # nested parentheses go to the general parser.  (Each "in" is a C-speed scan; one
    # regex search for these alternatives costs several times all of them.)
    if ('"' in args_text or "[" in args_text or "{" in args_text or "<" in args_text
            or "=" in args_text or "(" in args_text or ")" in args_text
            or "/*" in args_text):
        return None
    # " = value" with a value read before (so no blank around it): one lookup.
    lead, equals, value = rest.partition(" = ")
    result = _RESULTS.get(value) if equals and not lead else None
    if result is None:
        rest = rest.strip()
        if rest:
            if not rest.startswith("="):
                return None
            value = rest[1:].strip()
            result = _RESULTS.get(value)
            if result is None:
                if len(value) < 24 and _NUMBER.match(value):
                    result = _c_int(value)
                    if not LOWEST <= result <= HIGHEST:
                        return None
                else:
                    return None
                if len(_RESULTS) >= _RESULTS_MAX:
                    _RESULTS.clear()
                    _RESULTS["?"] = "?"
                _RESULTS[value] = result
    values = _VALUES
    # strace separates arguments with ", ": every one already seen is one lookup each,
    # and those after the second (mmap's protection, flags, descriptor and offset: the
    # same few combinations all through a trace) one lookup together.
    if not args_text:
        args = []
    else:
        parts = args_text.split(", ", 2)
        if len(parts) < 3:
            args = list(map(values.get, parts))
        else:
            tail = _TAILS.get(parts[2])
            if tail is not None:
                args = [values.get(parts[0]), values.get(parts[1]), *tail]
            else:
                args = list(map(values.get, args_text.split(", ")))
                if None not in args:
                    if len(_TAILS) >= _VALUES_MAX:
                        _TAILS.clear()   # memory flat, as for _VALUES below
                    _TAILS[parts[2]] = tuple(args[2:])
    if None in args:
        args = []
        if args_text.strip():
            for a in args_text.split(","):
                a = a.strip()
                v = values.get(a)
                if v is None:
                    if not a:
                        return None
                    v = _expr(a, file, lineno)
                    if len(values) >= _VALUES_MAX:
                        # Addresses and lengths are kept too (a repeated one is then
                        # one lookup), so the cache is emptied now and then to keep
                        # memory flat over a trace of ever-new values.
                        values.clear()
                        values["NULL"] = 0
                    values[a] = v
                args.append(v)
    counts = ARITY.get(name)
    if counts is not None and len(args) not in counts:
        return None
    # Event(lineno, "call", pid, name, args, {}, result, args_text), made field by
    # field: CPython 3.11 runs a class's __init__ through a generic slot call that costs
    # more than the stores.  (test_fast_path_parses_like_the_general_parser compares
    # every field with the general parser's Event.)
    event = _new(Event)
    event.line = lineno
    event.kind = "call"
    event.pid = pid
    event.name = name
    event.args = args
    event.kwargs = {}
    event.result = result
    event.text = args_text
    event.prefix = None
    event.start = None
    return event


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
        cut = body.rfind(_UNFINISHED + ")")
        if cut >= 0 and _RESULT.match(body[cut + len(_UNFINISHED) + 1:]):
            # "call(args <unfinished ...>) = ?": its thread died in the call.
            body = body[:cut] + body[cut + len(_UNFINISHED):]
        if body.endswith(_UNFINISHED):
            if pending is None:
                raise TraceError(file, lineno, "an unfinished call outside a whole trace")
            if pid in pending:
                raise TraceError(file, lineno, "a second call left unfinished")
            event.start = lineno
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
            event.result = _number(rm.group(4), file, lineno, rest.strip(), "result")
    evaluate = event.name in EXECUTED
    for arg in _split_top(args_text, file, lineno):
        key, eq, val = arg.partition("=")
        if eq and _KEY.fullmatch(key) and not val.startswith("="):
            event.kwargs[key] = _value(val.strip(), evaluate, file, lineno)
        else:
            event.args.append(_value(arg, evaluate, file, lineno))
    counts = ARITY.get(event.name)
    if counts is not None and len(event.args) not in counts:
        want = " or ".join(map(str, counts))
        raise TraceError(file, lineno, f"{event.name}() takes {want} arguments, not {len(event.args)}")
    if evaluate:
        _check_shapes(event, file, lineno)
    return event


# The arguments of executed calls that may be something other than a number (a string,
# an array, a struct); strace prints every other one as a number.
_NOT_NUMBERS = {"open": {0}, "openat": {1}, "execve": {0, 1, 2}, "process_madvise": {1},
                "wait4": {1, 3}, "prctl": {1, 2, 3, 4}, "clone3": {0}}


_KEY = re.compile(r"[a-z_][a-z0-9_]*", re.ASCII)


def _check_shapes(event, file, lineno):
    """A string, array or struct where strace prints a number is a malformed trace, and
    so is a PR_SET_MM_MAP struct that is not a struct prctl_mm_map."""
    free = _NOT_NUMBERS.get(event.name, ())
    for i, a in enumerate(event.args):
        if i not in free and type(a) is not int:
            raise TraceError(file, lineno, f"argument {i + 1} of {event.name}() must be a number")
    if "flags" in event.kwargs and type(event.kwargs["flags"]) is not int:
        raise TraceError(file, lineno, f"flags of {event.name}() must be a number")
    a = event.args
    if event.name == "clone3" and a:
        clone_args(a[0], file, lineno)
    if (event.name == "prctl" and len(a) > 2 and a[0] == uapi.PR_SET_MM
            and a[1] == uapi.PR_SET_MM_MAP and isinstance(a[2], Raw)):
        _mm_map(a[2].text, file, lineno)
    if event.name == "process_madvise" and len(a) > 1 and isinstance(a[1], list):
        iovecs(a[1], file, lineno)


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
            i = _comment_end(body, i, file, lineno)
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


def _comment_end(s, i, file, lineno):
    """The index just past the ``/* comment */`` starting at ``s[i]``."""
    end = s.find("*/", i + 2)
    if end < 0:
        raise TraceError(file, lineno, "unterminated comment")
    return end + 2


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
            pieces.append(text[start:i])
            i = start = _comment_end(text, i, file, lineno)
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


def _value(arg, evaluate, file, lineno, depth=0):
    if not arg:
        raise TraceError(file, lineno, "an empty argument")
    c = arg[0]
    if c == '"':
        return _string(arg, file, lineno)
    if c == "[":
        if depth >= MAX_DEPTH:
            raise TraceError(file, lineno, "brackets nested too deeply")
        if not arg.endswith("]"):
            raise TraceError(file, lineno, f"cannot parse the argument {arg!r}")
        return [_value(a, evaluate, file, lineno, depth + 1)
                for a in _split_top(arg[1:-1], file, lineno)]
    if c == "{":
        return Raw(arg)
    if arg == "NULL":
        return 0
    if arg == "...":
        return Raw(arg)
    if not evaluate:
        # A call that is not run: its arguments are kept, as numbers where they are.
        if len(arg) < 24 and _NUMBER.match(arg):
            v = _c_int(arg)
            if LOWEST <= v <= HIGHEST:
                return v
        return Raw(arg)
    return _expr(arg, file, lineno)


def _c_int(tok):
    """The value of a token ``_NUMBER`` matched: C's bases (a leading 0 is octal)."""
    digits = tok.lstrip("-")
    return int(tok, 16 if digits[:2] in ("0x", "0X") else 8 if digits[:1] == "0" else 10)


def _number(tok, file, lineno, arg, what="argument"):
    """A number token as C writes it, within a 64-bit register's range."""
    if not _NUMBER.match(tok):
        raise TraceError(file, lineno, f"cannot parse the {what} {arg!r}")
    digits = tok.lstrip("-")
    if len(digits) > 24:
        # Checked before int(): a long run of digits is never a register's value.
        raise TraceError(file, lineno, f"a number out of range in {arg[:40]!r}")
    v = _c_int(tok)
    if not LOWEST <= v <= HIGHEST:
        raise TraceError(file, lineno, f"a number out of range in {arg[:40]!r}")
    return v


_HEX = frozenset("0123456789abcdefABCDEF")


def _string(arg, file, lineno):
    if _skip_string(arg, 0, file, lineno) != len(arg):
        raise TraceError(file, lineno, f"something after the string in {arg[:40]!r}")
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
            j = i + 2
            while j < min(i + 4, n) and body[j] in _HEX:
                j += 1
            if j == i + 2:
                raise TraceError(file, lineno, f"bad escape in {arg[:40]!r}")
            out.append(chr(int(body[i + 2:j], 16)))
            i = j
        elif nxt and nxt in "01234567":
            j = i + 1
            while j < min(i + 4, n) and body[j] in "01234567":
                j += 1
            out.append(chr(int(body[i + 1:j], 8)))
            i = j
        else:
            raise TraceError(file, lineno, f"bad escape in {arg[:40]!r}")
    return Str("".join(out), truncated)


def _expr(arg, file, lineno):
    """A constant expression as strace prints flags: names and numbers joined with
    ``|``, with ``~`` and ``<<`` (``1<<MAP_HUGE_SHIFT``) and parentheses.  Evaluated
    with explicit stacks (no recursion), every value kept to a register's range."""
    def fail(why="cannot parse the argument"):
        return TraceError(file, lineno, f"{why} {arg[:60]!r}")

    values, ops = [], []

    def apply(op):
        if op == "~":
            values.append(~values.pop())
            return
        b, a = values.pop(), values.pop()
        if op == "|":
            values.append(a | b)
            return
        if not 0 <= b < 64:
            raise fail(f"a shift by {b} in")
        v = a << b
        if not -(1 << 64) < v < (1 << 64):
            raise fail("a number out of range in")
        values.append(v)

    pos, n = 0, len(arg)
    operand = True          # an operand comes next (else an operator or ")")
    while pos < n:
        m = _EXPR_TOKEN.match(arg, pos)
        if not m:
            raise fail()
        tok = m.group(1)
        pos = m.end()
        if operand:
            if tok in ("~", "("):
                if len(ops) >= MAX_DEPTH:
                    raise fail("brackets nested too deeply in")
                ops.append(tok)
            elif tok[0] == "-" or tok[0].isdigit():
                values.append(_number(tok, file, lineno, arg))
                operand = False
            elif tok[0].isalpha() or tok[0] == "_":
                try:
                    values.append(uapi.value(tok))
                except KeyError:
                    raise TraceError(file, lineno, f"unknown constant {tok} in {arg[:60]!r}") from None
                operand = False
            else:
                raise fail()
        elif tok in ("|", "<<"):
            rank = _RANK[tok]
            while ops and ops[-1] != "(" and _RANK[ops[-1]] >= rank:
                apply(ops.pop())
            ops.append(tok)
            operand = True
        elif tok == ")":
            while ops and ops[-1] != "(":
                apply(ops.pop())
            if not ops:
                raise fail("unbalanced brackets in")
            ops.pop()
        else:
            raise fail()
    if operand:
        raise fail()
    while ops:
        op = ops.pop()
        if op == "(":
            raise fail("unbalanced brackets in")
        apply(op)
    v = values.pop()
    if not LOWEST <= v <= HIGHEST:
        raise fail("a number out of range in")
    return v


_RANK = {"|": 1, "<<": 2, "~": 3}
_IOVEC = re.compile(r"\{\s*iov_base=(\S+?),\s*iov_len=(\S+?)\s*\}", re.ASCII)


def iovecs(items: list, file: str = "<trace>", lineno: int = 0) -> list[tuple[int, int]]:
    """The ``(base, length)`` pairs of an array of struct iovec as strace prints it,
    ``[{iov_base=0x..., iov_len=N}, ...]`` (a final ``...``: the ones shown)."""
    pairs = []
    for k, item in enumerate(items):
        if item == Raw("...") and k == len(items) - 1:
            break
        m = _IOVEC.fullmatch(item.text) if isinstance(item, Raw) else None
        if m is None:
            raise TraceError(file, lineno, f"not a struct iovec: {getattr(item, 'text', item)!r}")
        base = 0 if m.group(1) == "NULL" else _number(m.group(1), file, lineno, item.text)
        pairs.append((base, _number(m.group(2), file, lineno, item.text)))
    return pairs


FORKS = ("fork", "vfork", "clone", "clone3")
# The calls whose name _PidNamer.name reads.
_NAMED_CALLS = frozenset(FORKS + ("exit", "exit_group"))


_CLONE3_KEEP = ("flags", "exit_signal")


def clone_args(arg, file: str = "<trace>", lineno: int = 0) -> tuple[int, int]:
    """``(flags, exit_signal)`` of clone3's struct clone_args as strace prints it,
    ``{flags=CLONE_VM|..., exit_signal=SIGCHLD, stack=..., ...}``, with or without the
    ``=> {parent_tid=[N]}`` strace adds on return; a field left out is 0."""
    text = arg.text if isinstance(arg, Raw) else ""
    head = text.split("=>", 1)[0].strip()
    if not (head.startswith("{") and head.endswith("}")):
        raise TraceError(file, lineno, f"not a struct clone_args: {text[:60]!r}")
    fields = {}
    for item in _split_top(head[1:-1], file, lineno):
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or not _KEY.fullmatch(name):
            raise TraceError(file, lineno, f"not a struct clone_args field: {item[:40]!r}")
        if name in _CLONE3_KEEP:
            fields[name] = 0 if raw.strip() == "NULL" else _expr(raw.strip(), file, lineno)
    return fields.get("flags", 0), fields.get("exit_signal", 0)


def _mm_map(text, file="<trace>", lineno=0):
    """struct prctl_mm_map as strace prints it, ``{start_code=0x..., ..., exe_fd=-1}``;
    a field left out is 0 (exe_fd: -1).  TraceError for anything else."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise TraceError(file, lineno, f"not a struct: {text!r}")
    fields = {}
    names = {f.name for f in attrs.fields(PrctlMmMap)}
    for item in _split_top(body[1:-1], file, lineno):
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or name not in names:
            raise TraceError(file, lineno, f"struct prctl_mm_map has no field {name!r}")
        if name in fields:
            raise TraceError(file, lineno, f"field {name} given twice")
        fields[name] = 0 if raw == "NULL" else _expr(raw, file, lineno)
    fields.setdefault("exe_fd", -1)
    return PrctlMmMap(**fields)


__all__ = ["read_trace", "iovecs", "clone_args", "parse", "parse_line", "check_pids", "Event", "Raw", "Str", "TraceError",
           "EXECUTED", "IGNORED", "KNOWN", "ARITY", "FORKS"]

"""Replaying a parsed trace (mmsim.strace) on a simulated Kernel: one simulated process
per trace pid, each call's actual result next to the recorded one."""

import collections
import errno
import heapq
import itertools
import os
import posixpath
import stat

from collections.abc import Iterable, Iterator

import attrs

from . import binfmt_elf, exec_follow, fastpath, uapi
from .errors import Killed
from .files import DIR, REG
from .kernel import Kernel
from .defs import PAGE_SIZE, TASK_SIZE, U64, bulk_build, error, page_align, page_align_down
from .task import (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, RUNNING, SEEK_DATA, SEEK_HOLE,
                   Process, resolve_at)
from .strace import (EXECUTED, FORKS, Event, Raw, Str, TraceError, _mm_map, clone_args,
                     iovecs, parse, read_trace)

# File calls the replayer runs although the parser keeps their arguments as written
# (strace.IGNORED): a flag name the table below lacks then never rejects a log; the
# call just returns its recorded result.
FILE_CALLS = frozenset("""
    read readv write writev pwrite64 lseek ftruncate fallocate dup dup2 dup3 fcntl pipe
    pipe2 socket eventfd2 memfd_create chdir fchdir getcwd close_range mkdir mkdirat unlink
    unlinkat creat truncate pread64 readahead fadvise64 fsync fdatasync
""".split())

# The names those calls' flags are printed with (include/uapi/linux/*.h, x86-64).
_FILE_NAMES = {
    "SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2, "SEEK_DATA": SEEK_DATA, "SEEK_HOLE": SEEK_HOLE,
    "F_DUPFD": F_DUPFD, "F_DUPFD_CLOEXEC": F_DUPFD_CLOEXEC, "F_GETFD": F_GETFD,
    "F_SETFD": F_SETFD, "FD_CLOEXEC": 1,
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10,
    "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40, "AF_ALG": 38,
    "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_RDM": 4, "SOCK_SEQPACKET": 5,
    "SOCK_PACKET": 10, "SOCK_CLOEXEC": uapi.O_CLOEXEC, "SOCK_NONBLOCK": uapi.O_NONBLOCK,
    "EFD_SEMAPHORE": 1, "EFD_CLOEXEC": uapi.O_CLOEXEC, "EFD_NONBLOCK": uapi.O_NONBLOCK,
    "MFD_CLOEXEC": 1, "MFD_ALLOW_SEALING": 2, "MFD_HUGETLB": 4, "MFD_NOEXEC_SEAL": 8,
    "MFD_EXEC": 0x10, "FALLOC_FL_KEEP_SIZE": 1, "FALLOC_FL_PUNCH_HOLE": 2,
    "FALLOC_FL_ZERO_RANGE": 0x10, "O_DIRECT": 0o40000, "O_LARGEFILE": 0o100000,
    "CLOSE_RANGE_UNSHARE": 2, "CLOSE_RANGE_CLOEXEC": 4,
    "POSIX_FADV_NORMAL": 0, "POSIX_FADV_RANDOM": 1, "POSIX_FADV_SEQUENTIAL": 2,
    "POSIX_FADV_WILLNEED": 3, "POSIX_FADV_DONTNEED": 4, "POSIX_FADV_NOREUSE": 5,
}


def _regular(f):
    """Whether open file ``f`` is a regular file read through the page cache."""
    inode = getattr(f, "inode", None)
    return inode is not None and inode.kind == REG and not f.shmem


class _Unmodelled(Exception):
    """An argument the replayer cannot evaluate: the call keeps its recorded result."""


def _num(arg):
    """A file call's argument as a number: an int, or names and numbers ORed."""
    if isinstance(arg, bool) or not isinstance(arg, (int, Raw)):
        raise _Unmodelled
    if isinstance(arg, int):
        return arg
    total = 0
    for tok in arg.text.split("|"):
        tok = tok.strip()
        v = _FILE_NAMES.get(tok)
        if v is None:
            try:
                v = uapi.value(tok)
            except (KeyError, ValueError):
                raise _Unmodelled from None
        total |= v
    return total

ADDRESS_RESULTS = ("mmap", "mremap", "brk")
# Calls whose recorded result is "?" when they succeed.
NO_RETURN = ("exit", "exit_group", "execve")
# Calls after which a process' address space may be gone (--dump-at-exit).
TEARDOWN = ("exit", "exit_group", "execve", "execveat")
# How many events past the running one the replayer keeps at hand: enough for a call
# strace -f split to be seen resumed, and under --follow exec_follow's look-ahead after
# an execve.
AHEAD = 1000




@attrs.define(slots=True)
class Outcome:
    """What replaying one event gave: a call's actual result (an int, ``"?"``, or a
    negative errno), or a dump's /proc text."""
    event: Event
    result: object = None
    smaps: str = ""
    thp_enabled: str = ""
    label: int | None = None   # the process as the trace names it

    def line(self) -> str:
        """The event as strace would print it, with the actual result."""
        ev = self.event
        prefix = f"[pid {self.label}] " if ev.prefix is not None else ""
        if ev.kind == "dump":
            return f"# dump pid {self.label}" + (f" ({ev.name})" if ev.name else "")
        if ev.kind == "exit":
            return f"{prefix}+++ {ev.text} +++"
        if ev.kind == "show":
            return f"# {ev.name}" + (f" pid {self.label}" if ev.name == "status" else "")
        if ev.kind == "access":
            addr, length, write = ev.args
            return (f"{prefix}# access {addr:#x} {length} {'w' if write else 'r'} = "
                    f"{format_result('access', self.result)}")
        return f"{prefix}{ev.name}({ev.text}) = {format_result(ev.name, self.result)}"

    def matches(self) -> bool:
        """The actual result is the one the trace recorded (or none was recorded)."""
        rec = self.event.result
        return self.event.kind != "call" or rec is None or rec == self.result


_new = object.__new__


def _call_outcome(ev, result, label):
    """``Outcome(ev, result, "", "", label)``, made field by field: CPython 3.11 runs a
    class's __init__ through a generic slot call that costs more than the stores, once
    per replayed call.  (tests/test_replay.py checks that it matches.)"""
    out = _new(Outcome)
    out.event = ev
    out.result = result
    out.smaps = ""
    out.thp_enabled = ""
    out.label = label
    return out


def format_result(name: str, result: int | str | None) -> str:
    """A result the way strace prints it: hex for addresses, ``-1 ENAME (text)``."""
    if result == "?" or result is None:
        return "?"
    if result < 0:
        code = -result
        return f"-1 {errno.errorcode.get(code, str(code))} ({os.strerror(code)})"
    if name in ADDRESS_RESULTS:
        return hex(result)
    return str(result)


def proc_cwd_default() -> str:
    """Where a replayed log starts when it does not say: the replayer's own directory."""
    try:
        return os.getcwd()
    except OSError:
        return "/"


def c_string(s: Str) -> str:
    """A string argument as the kernel reads it: up to its first NUL."""
    return s.value.split("\0", 1)[0]


def _free(mm, addr, length):
    """Whether ``length`` bytes at ``addr`` are below TASK_SIZE and unmapped: where a
    recorded address can be followed."""
    end = addr + page_align(length)
    return end <= TASK_SIZE and mm.tree.find(addr, end) is None


# FORKS as a set: prescan asks of every call of a trace.
_FORK_NAMES = frozenset(FORKS)
# The calls CwdWitness.feed looks at.
CWD_CALLS = frozenset(("open", "openat", "chdir", "fchdir", "getcwd"))


class CwdWitness:
    """The initial process' working directory, worked out from its first ``getcwd`` as
    the trace's calls are fed in: what it printed, less the relative ``chdir``/``fchdir``
    steps taken before it.  ``cwd`` stays None without such a witness (the replayer then
    starts in its own: simulator-defined, a log does not record where it started)."""

    def __init__(self):
        self.cwd = None
        self.done = False
        self.rel = "."       # the working directory relative to the unknown start
        self.dirs = {}       # descriptor -> directory relative to the start

    def feed(self, ev: Event) -> None:
        """One call of the trace, in order."""
        if self.done or ev.pid is not None:
            return
        name, args, rec = ev.name, ev.args, ev.result
        if not isinstance(rec, int) or rec < 0:
            return
        if name in ("open", "openat"):
            at = args[0] if name == "openat" and args else uapi.AT_FDCWD
            path = args[1] if name == "openat" and len(args) > 1 else (args[0] if args else None)
            if isinstance(path, Str) and not c_string(path).startswith("/"):
                base = self.rel if at == uapi.AT_FDCWD else self.dirs.get(at)
                if base is not None:
                    self.dirs[rec] = posixpath.normpath(base + "/" + c_string(path))
        elif name == "chdir":
            if not args or not isinstance(args[0], Str) or c_string(args[0]).startswith("/"):
                self.done = True
                return
            self.rel = posixpath.normpath(self.rel + "/" + c_string(args[0]))
        elif name == "fchdir":
            if not args or args[0] not in self.dirs:
                self.done = True
                return
            self.rel = self.dirs[args[0]]
        elif name == "getcwd" and args and isinstance(args[0], Str) and rec > 0:
            self.done = True
            seen = "/" + posixpath.normpath(c_string(args[0])).lstrip("/")
            rel = self.rel
            if rel == ".":
                self.cwd = seen
            elif not rel.startswith("..") and seen.endswith("/" + rel):
                self.cwd = seen[:-len(rel) - 1] or "/"


class Replayer:
    """Runs checked events on a Kernel, one logical process per trace pid.

    Simulator-defined naming: a fork's child is known by the pid the trace recorded for
    it (its actual simulator pid is internal), so results that are pids (fork, clone,
    vfork, wait4) are reported as the trace's pids; file descriptors likewise map from
    the trace's numbers to the simulator's.  Calls that do not touch memory return the
    result the trace recorded (0 where none was).  ``follow`` places a non-fixed mmap
    or a moving mremap at its recorded address when that range is free, and the first
    recorded ``brk(NULL)`` sets the break, so a real program's layout reproduces."""

    def __init__(self, kernel: Kernel | None, follow: bool = False, root: str | None = None,
                 file: str = "<trace>", cwd: str | None = None,
                 dump_at_exit: bool = False) -> None:
        self.kernel = kernel
        self.follow = follow
        self.file = file
        self.cwd = cwd   # where the log started, when the user says
        self.dump_at_exit = dump_at_exit
        if root is not None:
            kernel.root = root
        self._cwd_known = set()   # processes whose working directory the log showed
        self._need = {}           # open event line -> bytes its later mappings need
        self._hidden = {}         # (logical pid, fd) -> bytes mapped with no open seen
        self.procs = {}      # logical pid (None: initial) -> Process
        self.names = {}      # simulator pid -> logical pid
        self.cgroup = None   # the cgroup the initial process starts in (None: the root)
        self.fds = {}        # (table owner, trace fd) -> simulator fd
        self._tables = {}    # logical pid -> the pid whose fd table it shares (CLONE_FILES)
        self.initial_label = None
        # The address spaces whose first brk has been seen, by the Mm object itself: an
        # id() is reused once an exited process' Mm is freed, so a later process would
        # wrongly count as seen.  Torn-down ones (no users) are dropped as it grows.
        self._brk_set = set()
        self._window = ()    # the event running and the AHEAD after it (stream)
        self._base = 0       # the index of the event running
        self._forks = True   # whether the trace shows forks (prescan)
        self._splits = True  # whether the trace has a call strace -f split (prescan)
        self._cwd_seen = None  # the initial directory the trace shows (prescan)
        self._exit_lines = set()  # logical pids whose "+++ exited" line is in the trace
        self._exits = {}          # logical pid -> (call, status) deferred to "+++"
        self._pending = {}        # index -> Event: split calls started, not yet run
        self._early = {}          # index -> result of a call run before its line
        self._handlers = {}       # call name -> its _name method (None: none), as looked up
        self._direct = {}         # call name -> its direct handler's runner, as made (_DIRECT)

    def run(self, events: list[Event]) -> list[Outcome]:
        """Replay ``events`` (from ``parse``); a list of Outcomes, in trace order."""
        self.prescan(events)
        # Every Outcome is kept and a replay leaves little cyclic garbage: the cyclic
        # collector, which would walk the trace's events and the growing list again and
        # again (about a tenth of a long replay), waits until the end.
        with bulk_build():
            if not self._splits and not self.follow:
                return self._run_plain(events)
            return list(self.stream(events))

    def prescan(self, events: Iterable[Event]) -> None:
        """Read the whole trace once before any of it runs (when ``events`` parses
        lazily, a malformed line stops it here): what replaying needs to know of the
        trace as a whole.  That is the initial process' pid as the trace names it, the
        processes whose ``+++ exited`` line is in it (they exit there), whether it shows
        forks at all, where the initial process started, and under --follow how large
        each file must be for its later mappings."""
        self.initial_label = None
        self._exit_lines = set()
        self._forks = False
        self._splits = False
        cwd = CwdWitness()
        open_at = {}   # (pid, fd) -> line of the open that made it
        follow = self.follow
        label = None   # self.initial_label, kept in a local while it is found
        for ev in events:
            kind = ev.kind
            if kind == "exit":
                self._exit_lines.add(ev.pid)
                continue
            if label is None and ev.pid is None and ev.prefix is not None:
                label = self.initial_label = ev.prefix
            if kind != "call":
                continue
            name = ev.name
            if name in _FORK_NAMES:
                self._forks = True
            if ev.start is not None:
                self._splits = True
            if name in CWD_CALLS:   # feed() passes any other call by
                cwd.feed(ev)
            if follow:
                self._scan_mapping(ev, open_at)
        self._cwd_seen = cwd.cwd

    def facts(self) -> tuple:
        """What ``prescan`` learnt of the trace (to ``restore`` after running another)."""
        return (self.initial_label, self._exit_lines, self._forks, self._cwd_seen,
                self._splits)

    def restore(self, facts: tuple) -> None:
        """Take back what ``facts`` returned."""
        (self.initial_label, self._exit_lines, self._forks, self._cwd_seen,
         self._splits) = facts

    def stream(self, events: Iterable[Event]) -> Iterator[Outcome]:
        """Replay events that ``prescan`` has read, yielding each Outcome as soon as it
        is known.  Only the running event and the AHEAD events after it are held (what
        --follow and split calls look ahead at), so memory stays flat in the trace's
        length."""
        source = iter(events)
        window = self._window = collections.deque()
        self._base = 0
        split = []   # heap of (start line, index): calls strace -f split, in the window
        ahead = max(AHEAD, exec_follow.LOOKAHEAD) if self.follow else AHEAD
        exhausted = False
        self.start()
        pending = self._pending
        early = self._early
        procs = self.procs
        killed = self.kernel.oom_killed if self.kernel is not None else None
        while True:
            while not exhausted and len(window) <= ahead:
                ev = next(source, None)
                if ev is None:
                    exhausted = True
                    break
                if ev.kind == "call" and ev.start is not None and ev.name in EXECUTED:
                    heapq.heappush(split, (ev.start, self._base + len(window)))
                window.append(ev)
            if not window:
                return
            ev, i = window[0], self._base
            # The split calls started before this event and not run yet are pending
            # here (see _run_pinned).
            if split:
                at = _placed(ev)
                while split and split[0][0] < at:
                    j = heapq.heappop(split)[1]
                    if j > i:
                        self._pending[j] = window[j - i]
            if pending:
                pending.pop(i, None)
            if not self._forks and ev.pid not in procs and ev.kind in ("call", "dump", "access"):
                # A process whose fork a filtered log (-e trace=memory) hid: it starts
                # as the initial process does, assuming nothing the log did not show.
                # (Where the log shows forks, a pid whose fork failed here stays unknown.)
                self._adopt(ev.pid, self.spawn_initial())
            if ev.kind == "call" and not self.dump_at_exit:
                # step() for the common event, written out: a call whose Outcome is
                # all it gives.
                result = early.pop(i) if early and i in early else self.call(ev)
                pid = ev.pid
                if pid is None:
                    # _label(None), written out
                    pid = self.initial_label
                    if pid is None:
                        pid = procs[None].pid
                yield Outcome(ev, result, "", "", pid)
                if killed:
                    yield from self._killed(ev)
            else:
                yield from self.step(ev, i)
            window.popleft()
            self._base += 1

    def _run_plain(self, events):
        """``list(self.stream(events))`` for a trace with no split call, not under
        --follow: stream's loop without the look-ahead window (nothing is ever pending
        or run early), filling the list itself rather than through a generator."""
        out = []
        append = out.append
        self._window = ()
        self._base = 0
        self.start()
        procs = self.procs
        killed = self.kernel.oom_killed if self.kernel is not None else None
        forks = self._forks
        dump_at_exit = self.dump_at_exit
        call = self.call
        pending = self._pending
        early = self._early
        kernel = self.kernel
        # call() is written out below for a call whose handler it has looked up (so a
        # call it runs), unless a subclass has its own call().
        own_call = type(self).call is Replayer.call
        handlers = self._handlers if own_call else {}
        direct = self._direct if own_call else {}
        # _label(None), worked out once: start() above is what adopts the initial
        # process (a fork adopts its child under the child's pid), and only prescan
        # and restore, outside a run, set initial_label.
        initial = self._label(None)
        i = -1
        for i, ev in enumerate(events):
            self._base = i
            if pending:
                pending.pop(i, None)
            kind = ev.kind
            if not forks and kind in ("call", "dump", "access") and ev.pid not in procs:
                self._adopt(ev.pid, self.spawn_initial())
            if kind == "call" and not dump_at_exit:
                run = direct.get(ev.name)
                proc = procs.get(ev.pid)
                if (run is not None and type(proc) is Process and proc.state == RUNNING
                        and not early and not pending and ev.result != "?"):
                    # The commonest calls (mmap, munmap, mprotect, madvise of a simulated
                    # process): call()'s last step with the direct handler's runner,
                    # which takes the argument list as it is (no *args to pack twice).
                    # (A direct handler exists only with a simulated kernel.)
                    try:
                        result = run(proc, ev, ev.args)
                        if kernel.pressure:
                            kernel.current = proc
                            kernel.balance(proc)
                    except OSError as e:
                        result = -e.errno
                    except Killed:
                        result = "?"
                    except _Unmodelled:
                        result = ev.result if ev.result is not None else 0
                    pid = ev.pid
                    append(_call_outcome(ev, result, initial if pid is None else pid))
                    if killed:
                        out += self._killed(ev)
                    continue
                handler = handlers.get(ev.name)
                proc = procs.get(ev.pid) if handler is not None else None
                if early and i in early:
                    result = early.pop(i)
                elif (proc is None or ev.result == "?" or pending
                      or getattr(proc, "state", "running") != "running"):
                    result = call(ev)
                else:
                    # call()'s last step: a running process, a result not "?", no
                    # split call pending.
                    try:
                        result = handler(proc, ev, *ev.args)
                        if kernel is not None and kernel.pressure:
                            kernel.current = proc
                            kernel.balance(proc)
                    except OSError as e:
                        result = -e.errno
                    except Killed:
                        result = "?"
                    except _Unmodelled:
                        result = ev.result if ev.result is not None else 0
                pid = ev.pid
                if pid is None:
                    # _label(None), written out
                    pid = self.initial_label
                    if pid is None:
                        pid = procs[None].pid
                append(Outcome(ev, result, "", "", pid))
                if killed:
                    out += self._killed(ev)
            else:
                out += self.step(ev, i)
        self._base = i + 1
        return out

    def start(self) -> None:
        """Make the initial process, unless it exists."""
        if None not in self.procs:
            self._adopt(None, self.spawn_initial())
            self.procs[None].cwd = (
                "/" + posixpath.normpath(self.cwd).lstrip("/") if self.cwd
                else self._cwd_seen or proc_cwd_default())

    def step(self, ev: Event, index: int | None = None) -> Iterator[Outcome]:
        """The Outcomes of one event: a call (run now, or earlier when another thread's
        result pinned it), a dump or /proc line, or a ``+++`` exit; with
        ``dump_at_exit``, a call or exit that tears an address space down gives its
        smaps first."""
        if ev.kind == "call":
            before = self._smaps_before_teardown(ev)
            result = self._early.pop(index) if index in self._early else self.call(ev)
            yield from self._at_exit(ev, before)
            yield Outcome(ev, result, label=self._label(ev.pid))
            if self.kernel is not None and self.kernel.oom_killed:
                yield from self._killed(ev)
        elif ev.kind == "dump":
            yield self.dump(ev)
        elif ev.kind == "show":
            yield self.show(ev)
        elif ev.kind == "advance":
            if self.kernel is not None:   # (the live replayer has no simulated clock)
                self.kernel.advance(ev.args[0])
        elif ev.kind == "access":
            if self.kernel is not None:   # (nor does it fault pages for the log)
                result = self.access(ev)
                if result is not None:
                    # Only an access that faults is shown: the program would have got a
                    # signal there (simulator-defined: the replay goes on).
                    yield Outcome(ev, result, label=self._label(ev.pid))
                if self.kernel.oom_killed:
                    yield from self._killed(ev)
        elif ev.kind == "exit":
            before = self._smaps_before_teardown(ev)
            self._exited(ev)
            yield from self._at_exit(ev, before)

    def _killed(self, ev):
        """``+++ killed by SIGKILL +++`` for each process the OOM killer killed during
        ``ev``, as strace shows a process dying of a signal."""
        killed = self.kernel.oom_killed
        pids, killed[:] = list(killed), []
        for pid in pids:
            if pid not in self.names:
                continue   # not a process of the trace
            who = self.names[pid]
            label = self._label(who)
            prefix = label if ev.prefix is not None or who is not None else None
            yield Outcome(Event(ev.line, "exit", who, text="killed by SIGKILL", prefix=prefix),
                          label=label)

    def _smaps_before_teardown(self, ev):
        """With ``dump_at_exit``: (mm, its smaps) when ``ev`` may tear an address space
        down (an exit, an exec, a ``+++`` line), else None."""
        if not self.dump_at_exit or (ev.kind == "call" and ev.name not in TEARDOWN):
            return None
        proc = self.procs.get(ev.pid)
        mm = getattr(proc, "mm", None)
        if mm is None:
            return None
        return mm, self.kernel.proc_read(f"/proc/{proc.pid}/smaps")

    def _at_exit(self, ev, before):
        if before is not None and before[0].users == 0:
            # The address space just went (exit, exec): show it as it was.
            at = Event(ev.line, "dump", ev.pid, name="at exit", prefix=ev.prefix)
            yield Outcome(at, smaps=before[1], label=self._label(ev.pid))

    def show(self, ev: Event) -> Outcome:
        """``# meminfo``, ``# vmstat`` or ``# status``: that /proc file's text (none
        without a simulated kernel: the live replayer)."""
        if self.kernel is None:
            return Outcome(ev, label=self._label(ev.pid))
        if ev.name == "status":
            path = f"/proc/{self.procs[ev.pid].pid}/status"
        else:
            path = f"/proc/{ev.name}"
        return Outcome(ev, smaps=self.kernel.proc_read(path), label=self._label(ev.pid))

    def _exited(self, ev):
        """``+++ exited with N +++`` / ``+++ killed by SIG +++``: the process exits now
        (a thread alone after exit(), its whole group after exit_group() or a signal)."""
        proc = self.procs.get(ev.pid)
        if proc is None or getattr(proc, "state", "running") != "running":
            return   # gone with its group (a live helper keeps no state: it is running)
        call, status = self._exits.pop(ev.pid, (None, 0))
        words = ev.text.split()
        if call is None and words[:2] == ["exited", "with"] and len(words) > 2 \
                and words[2].isdigit():
            status, call = int(words[2]), "exit"
        elif call is None:
            call = "exit_group"      # killed by a signal: the whole group dies
        getattr(proc, call)(status)

    def _run_pinned(self, proc, ev):
        """Run first every pending call of another thread of this address space that
        ``ev``'s recorded result says ran before it: one that frees a range ``ev``
        recorded a new mapping at, or one that maps a range ``ev`` found mapped."""
        if not self._pending or proc.mm is None:
            return
        need = _needs(ev)
        if need is None:
            return
        kind, start, end = need
        mm = proc.mm
        if kind == "free" and mm.tree.find(start, end) is None:
            return
        if kind == "mapped" and _mapped(mm, start, end):
            return
        for j, other in sorted(self._pending.items()):
            if j not in self._pending:
                continue   # run already, by a call this loop pulled forward
            if other.pid == ev.pid or self.procs.get(other.pid) is None:
                continue
            if self.procs[other.pid].mm is not mm:
                continue
            spans = _frees(other) if kind == "free" else _maps(other)
            if any(s < end and start < e for s, e in spans):
                del self._pending[j]
                self._early[j] = self.call(other)

    def spawn_initial(self) -> Process:
        """The initial process: like a program started from a shell, it has standard
        input, output and error open (on a simulated /dev/null)."""
        init = self.kernel.spawn(cgroup=self.cgroup)
        null = self.kernel.files.get("/dev/null")
        if null is None:
            null = self.kernel.create_file("/dev/null", 0, dev=(0x00, 0x05))
        for fd in (0, 1, 2):
            init.fds[fd] = self.kernel.open_file(null, readable=True, writable=True)
        return init

    def _scan_mapping(self, ev, open_at):
        """For --follow, one call of the trace: how large each successfully opened file
        must be for every later mapping of its descriptor (until it is closed), so a
        file missing here can be simulated; and the same for mappings of descriptors
        whose open is not in the log (a filter hid it)."""
        if not isinstance(ev.result, int):
            return
        name, rec = ev.name, ev.result
        if name in ("open", "openat") and rec >= 0:
            open_at[(ev.pid, rec)] = ev.line
        elif name == "close" and ev.args and isinstance(ev.args[0], int):
            open_at.pop((ev.pid, ev.args[0]), None)
        elif name in FORKS and rec > 0:
            for (who, fd), line in list(open_at.items()):
                if who == ev.pid:
                    open_at[(rec, fd)] = line
        elif (name == "mmap" and rec >= 0 and len(ev.args) == 6
              and all(isinstance(a, int) for a in ev.args)
              and not ev.args[3] & uapi.MAP_ANONYMOUS and ev.args[4] >= 0):
            end = ev.args[5] + ev.args[1]
            line = open_at.get((ev.pid, ev.args[4]))
            if line is not None:
                self._need[line] = max(self._need.get(line, 0), end)
            else:
                key = (ev.pid, ev.args[4])
                self._hidden[key] = max(self._hidden.get(key, 0), end)

    def _label(self, who):
        if who is not None:
            return who
        if self.initial_label is not None:
            return self.initial_label
        return self.procs[None].pid

    def _adopt(self, who, proc):
        self.procs[who] = proc
        self.names[proc.pid] = who

    def dump(self, ev: Event) -> Outcome:
        """/proc/PID/smaps and the THP_enabled line of the event's process."""
        proc = self.procs.get(ev.pid)   # None: the fork that made it failed here
        kernel = self.kernel
        alive = proc is not None and proc.mm is not None
        smaps = kernel.proc_read(f"/proc/{proc.pid}/smaps") if alive else ""
        status = kernel.proc_read(f"/proc/{proc.pid}/status") if alive else ""
        thp = next((ln for ln in status.splitlines() if ln.startswith("THP_enabled:")), "")
        return Outcome(ev, smaps=smaps, thp_enabled=thp, label=self._label(ev.pid))

    def access(self, ev: Event) -> int | str | None:
        """A ``# access`` line: its process faults the pages as ``Process.touch`` does;
        None when it could, else the negative errno (EFAULT where the program would get
        SIGSEGV or SIGBUS, ENOMEM), or ``"?"`` when the OOM killer killed it."""
        proc = self.procs.get(ev.pid)
        if proc is None or proc.state != "running" or proc.mm is None:
            return -errno.ESRCH
        addr, length, write = ev.args
        try:
            proc.touch(addr, length, write)
        except OSError as e:
            return -e.errno
        except Killed:
            return "?"
        return None

    def finish(self, seconds: float, line: int = 0) -> Iterator[Outcome]:
        """``--advance-at-exit``: at the trace's end the clock advances ``seconds``
        (khugepaged and kswapd run), then every traced process still alive is dumped
        (``# dump pid N (at end)``)."""
        self.kernel.advance(seconds)
        for who, proc in list(self.procs.items()):
            if proc.mm is not None and proc.state == "running":
                ev = Event(line, "dump", who, name="at end")
                yield self.dump(ev)

    def call(self, ev: Event) -> int | str:
        """Run one call event; its actual result (negative errno on failure)."""
        proc = self.procs.get(ev.pid)
        name = ev.name
        if name not in EXECUTED and name not in FILE_CALLS:
            return ev.result if ev.result is not None else 0
        if proc is None:
            return -errno.ESRCH   # the fork that made it failed here: no such process
        if ev.result == "?" and (name not in NO_RETURN
                                 or getattr(proc, "state", "running") != "running"):
            # A call its thread died in (another thread's exit_group, a signal) or that a
            # signal interrupted: what it did is unknown, so it is not run.
            return "?"
        if getattr(proc, "state", "running") != "running":
            # Its group is gone (another thread's exit_group): as a Process answers.
            return -errno.ESRCH
        if self._pending:
            self._run_pinned(proc, ev)
        handler = self._handlers.get(name, _UNKNOWN)
        if handler is _UNKNOWN:
            handler = self._handlers[name] = self._handler(name)
        try:
            if handler is not None:
                result = handler(proc, ev, *ev.args)
            else:
                result = getattr(proc, name)(*ev.args)
            kernel = self.kernel
            if kernel is not None and kernel.pressure:
                # A direct handler ran the call without its syscall wrapper: what waits
                # for the call's end (reclaim, OOM kills) runs here.
                kernel.current = proc
                kernel.balance(proc)
            return result
        except OSError as e:
            return -e.errno
        except Killed:
            return "?"   # the call never returns: the OOM killer killed its process
        except _Unmodelled:
            return ev.result if ev.result is not None else 0

    def _handler(self, name):
        """How ``call`` runs a call named ``name``: the replayer's own ``_name`` method
        (None: the process' method of that name, as it is), or for the commonest memory
        calls on a simulated process a direct one (_DIRECT)."""
        own = getattr(self, "_" + name, None)
        make = _DIRECT.get(name)
        if make is None or self.follow or self.kernel is None:
            return own
        method = getattr(Process, name)
        # The syscall body under its @syscall wrapper (none: something replaced the
        # method, which then runs as it is).
        body = getattr(method, "__wrapped__", None)
        if body is None:
            return own
        if own is None:
            def own(proc, ev, *args):
                return getattr(proc, name)(*args)
        run = self._direct[name] = make(body, own)

        def direct(proc, ev, *args):
            return run(proc, ev, args)
        return direct

    # Calls whose arguments or results need translating.

    def _table(self, who):
        """Whose descriptor numbers ``who`` uses: threads sharing a table share them."""
        return self._tables.get(who, who)

    def _fd(self, ev, fd):
        return self.fds.get((self._table(ev.pid), fd), fd) if fd >= 0 else fd

    def _mmap(self, proc, ev, addr, length, prot, flags, fd, off):
        rec = ev.result
        if (self.follow and not flags & uapi.MAP_FIXED and isinstance(rec, int) and rec > 0
                and not addr and _free(proc.mm, rec, length)):
            addr = rec   # a hint the kernel takes when the range is free
        sim = self._fd(ev, fd)
        if (self.follow and sim not in proc.fds and not flags & uapi.MAP_ANONYMOUS
                and isinstance(rec, int) and rec >= 0 and (ev.pid, fd) in self._hidden):
            # A filter hid the open: a simulated file as large as the log maps it.
            path = f"/mmsim-hidden/pid{self._label(ev.pid)}-fd{fd}"
            inode = self.kernel.files.get(path) or self.kernel.create_file(
                path, self._hidden[(ev.pid, fd)])
            proc.fds[sim] = self.kernel.open_file(inode, readable=True, writable=True,
                                                  name=path)
        return proc.mmap(addr, length, prot, flags, sim, off)

    def _mremap(self, proc, ev, old, old_size, new_size, flags=0, new_addr=0):
        rec = ev.result
        if (self.follow and flags & uapi.MREMAP_MAYMOVE and not flags & uapi.MREMAP_FIXED
                and isinstance(rec, int) and rec > 0 and rec != old
                and _free(proc.mm, rec, new_size)):
            flags |= uapi.MREMAP_FIXED
            new_addr = rec
        return proc.mremap(old, old_size, new_size, flags, new_addr)

    def _brk(self, proc, ev, addr):
        rec = ev.result
        mm = proc.mm
        if (self.follow and addr == 0 and isinstance(rec, int) and 0 < rec < TASK_SIZE
                and not rec % PAGE_SIZE
                and mm not in self._brk_set and mm.brk == mm.start_brk):
            mm.start_brk = mm.brk = rec
        if mm not in self._brk_set:
            self._brk_set = {m for m in self._brk_set if m.users > 0}
            self._brk_set.add(mm)
        return proc.brk(addr)

    def _open(self, proc, ev, path, flags=0, mode=0):
        return self._openat(proc, ev, uapi.AT_FDCWD, path, flags, mode)

    def _openat(self, proc, ev, dirfd, path, flags=0, mode=0):
        if not isinstance(path, Str):
            return -errno.EFAULT     # strace shows a pointer it could not read as a number
        name = c_string(path)
        dirfd = self._fd(ev, dirfd)
        try:
            full = resolve_at(proc, dirfd, name)
        except OSError as e:
            return -e.errno
        kernel = self.kernel
        if full not in kernel.files:
            self._host_file(full)
        rec = ev.result
        if (self.follow and isinstance(rec, int) and rec >= 0 and full not in kernel.files
                and not kernel.is_dir(full)):
            # The log opened it; this machine lacks it: simulate it as the log saw it.
            if flags & uapi.O_DIRECTORY:
                kernel.make_dirs(full)
            else:
                kernel.make_dirs(posixpath.dirname(full))
                if not flags & uapi.O_CREAT:
                    kernel.create_file(full, self._need.get(ev.line, 0))
        return self._new_fd(ev, proc.openat(dirfd, name, flags, mode or 0o666))

    def _creat(self, proc, ev, path=None, mode=0o666, *rest):
        return self._openat(proc, ev, uapi.AT_FDCWD, path,
                            uapi.O_CREAT | uapi.O_WRONLY | uapi.O_TRUNC, _num(mode))

    def _truncate(self, proc, ev, path=None, length=0, *rest):
        """truncate(2): as an open for writing, ftruncate and close."""
        if not isinstance(path, Str):
            raise _Unmodelled
        full = resolve_at(proc, uapi.AT_FDCWD, c_string(path))
        if full not in self.kernel.files:
            self._host_file(full)
        fd = proc.open(c_string(path), uapi.O_WRONLY)
        try:
            return proc.ftruncate(fd, _num(length))
        finally:
            proc.close(fd)

    def _host_file(self, full):
        """Make the host file at ``full`` (under --root first) visible to open(), named
        in /proc/PID/maps by its resolved path, as the kernel prints it."""
        kernel = self.kernel
        host = kernel.host_path(full)
        if host is None:
            return
        try:
            st = os.stat(host)
        except OSError:
            return   # a dangling symlink: as missing as the kernel finds it
        if stat.S_ISDIR(st.st_mode):
            return   # Kernel.is_dir sees host directories
        real = os.path.realpath(host)
        root = kernel.root.rstrip("/") if kernel.root else None
        if root and real.startswith(root + "/"):
            real = real[len(root):]
        # A host file a real program opened: visible to the simulator under the name it
        # was opened by, its inode named by the resolved path.
        kernel.files[full] = binfmt_elf._inode_for(kernel, real, st)

    def _new_fd(self, ev, fd):
        """A descriptor takes the number the trace recorded for it (the simulator may
        have picked another: a descriptor of a call it does not model was free)."""
        rec = ev.result
        if isinstance(rec, int) and rec >= 0:
            if rec != fd:
                proc = self.procs[ev.pid]
                if isinstance(proc, Process):
                    self._move_fd(proc, fd, rec)
                else:
                    # A live process: its numbers are its own.
                    self.fds[(self._table(ev.pid), rec)] = fd
            return rec
        return fd

    @staticmethod
    def _move_fd(proc, fd, to):
        proc.fds[to] = proc.fds.pop(fd)
        if fd in proc.cloexec:
            proc.cloexec.discard(fd)
            proc.cloexec.add(to)
        else:
            proc.cloexec.discard(to)

    def _unknown(self, proc, ev, *fds):
        """Whether a call uses a descriptor some unmodelled call made (the log shows it
        worked): then it keeps its recorded result."""
        return (isinstance(ev.result, int) and ev.result >= 0
                and any(isinstance(fd, int) and fd not in proc.fds for fd in fds))

    # File calls (FILE_CALLS): sizes, offsets, descriptors and the working directory.

    def _count(self, ev, count):
        """The bytes a read or write moved: the recorded result where there is one."""
        rec = ev.result
        return rec if isinstance(rec, int) and rec >= 0 else _num(count)

    def _read(self, proc, ev, fd=None, buf=None, count=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        f = proc._file(fd)
        if not f.readable:
            raise OSError(errno.EBADF, "not open for reading")
        if isinstance(ev.result, int) and ev.result < 0:
            return ev.result   # no data, an interrupted read: nothing a size decides
        n = self._count(ev, count)
        if _regular(f) and f.pos + n <= f.inode.size:
            # Through the page cache: the bytes the log read (what a request reaching
            # EOF returns; readahead never reads past EOF either).  Bytes past the
            # size known here (a /proc file, a file another program grew) are the
            # log's: the offset just moves past them.
            return proc.read(fd, n)
        if f.inode.kind in (REG, DIR) and n > 0:
            proc.lseek(fd, n, 1)
        return n

    _readv = _read

    def _pread64(self, proc, ev, fd=None, buf=None, count=0, offset=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        offset = _num(offset)
        if isinstance(ev.result, int) and ev.result < 0:
            proc.pread(fd, 0, offset)
            return ev.result
        n = self._count(ev, count)
        f = proc._file(fd)
        if _regular(f) and offset + n > f.inode.size:
            proc.pread(fd, 0, offset)    # the descriptor's checks; the bytes are the log's
            return n
        return proc.pread(fd, n, offset)

    def _readahead(self, proc, ev, fd=None, offset=0, count=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.readahead(fd, _num(offset), _num(count))

    def _fadvise64(self, proc, ev, fd=None, offset=0, length=0, advice=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.fadvise(fd, _num(offset), _num(length), _num(advice))

    def _fsync(self, proc, ev, fd=None, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.fsync(fd)

    _fdatasync = _fsync

    def _write(self, proc, ev, fd=None, buf=None, count=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        if isinstance(ev.result, int) and ev.result < 0:
            # EPIPE, EAGAIN, ENOSPC: the far end and the disk are not modelled; the
            # descriptor's own checks still run (an empty write changes nothing).
            proc.write(fd, 0)
            return ev.result
        return proc.write(fd, self._count(ev, count))

    _writev = _write

    def _pwrite64(self, proc, ev, fd=None, buf=None, count=0, offset=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        if isinstance(ev.result, int) and ev.result < 0:
            proc.pwrite(fd, 0, _num(offset))
            return ev.result
        return proc.pwrite(fd, self._count(ev, count), _num(offset))

    def _lseek(self, proc, ev, fd=None, offset=0, whence=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.lseek(fd, _num(offset), _num(whence))

    def _ftruncate(self, proc, ev, fd=None, length=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.ftruncate(fd, _num(length))

    def _fallocate(self, proc, ev, fd=None, mode=0, offset=0, length=0, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return proc.fallocate(fd, _num(mode), _num(offset), _num(length))

    def _dup(self, proc, ev, fd=None, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        return self._new_fd(ev, proc.dup(fd))

    def _dup2(self, proc, ev, old=None, new=None, *rest):
        old, new = _num(old), _num(new)
        if self._unknown(proc, ev, old):
            proc.fds.pop(new, None)   # whatever was there is closed
            return ev.result
        return proc.dup2(old, new)

    def _dup3(self, proc, ev, old=None, new=None, flags=0, *rest):
        old, new, flags = _num(old), _num(new), _num(flags)
        if self._unknown(proc, ev, old):
            proc.fds.pop(new, None)
            return ev.result
        return proc.dup3(old, new, flags)

    def _fcntl(self, proc, ev, fd=None, cmd=None, arg=0, *rest):
        fd, cmd = _num(fd), _num(cmd)
        if cmd not in (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD):
            raise _Unmodelled   # locks, status flags, pipe sizes, seals: no memory effect
        if self._unknown(proc, ev, fd):
            return ev.result
        result = proc.fcntl(fd, cmd, _num(arg))
        return self._new_fd(ev, result) if cmd in (F_DUPFD, F_DUPFD_CLOEXEC) else result

    def _pipe2(self, proc, ev, fds=None, flags=0, *rest):
        r, w = proc.pipe2(_num(flags))
        if isinstance(fds, list) and len(fds) == 2 and all(isinstance(x, int) for x in fds):
            # The recorded descriptors: the ends move where the log shows them.
            ends = [(proc.fds.pop(fd), fd in proc.cloexec) for fd in (r, w)]
            proc.cloexec -= {r, w}
            for want, (f, cloexec) in zip(fds, ends):
                proc.fds[want] = f
                if cloexec:
                    proc.cloexec.add(want)
                else:
                    proc.cloexec.discard(want)
        return 0

    _pipe = _pipe2

    def _socket(self, proc, ev, family=None, type=None, protocol=0, *rest):
        return self._new_fd(ev, proc.socket(_num(family), _num(type)))

    def _eventfd2(self, proc, ev, count=0, flags=0, *rest):
        return self._new_fd(ev, proc.eventfd2(_num(count), _num(flags)))

    def _memfd_create(self, proc, ev, name=None, flags=0, *rest):
        if not isinstance(name, Str):
            raise _Unmodelled
        return self._new_fd(ev, proc.memfd_create(c_string(name), _num(flags)))

    def _chdir(self, proc, ev, path=None, *rest):
        if not isinstance(path, Str):
            raise _Unmodelled
        name = c_string(path)
        rec = ev.result
        if self.follow and rec == 0 and name:
            full = resolve_at(proc, uapi.AT_FDCWD, name)
            if not self.kernel.is_dir(full) and full not in self.kernel.files:
                self.kernel.make_dirs(full)   # a directory of the recording machine
        result = proc.chdir(name)
        self._cwd_known.add(proc)
        return result

    def _fchdir(self, proc, ev, fd=None, *rest):
        fd = _num(fd)
        if self._unknown(proc, ev, fd):
            return ev.result
        result = proc.fchdir(fd)
        self._cwd_known.add(proc)
        return result

    def _getcwd(self, proc, ev, buf=None, size=0, *rest):
        rec = ev.result
        if proc not in self._cwd_known and isinstance(buf, Str) and isinstance(rec, int) \
                and rec > 0 and buf.value.startswith("/"):
            # Before any chdir the log is the only witness of where the process runs.
            proc.cwd = "/" + posixpath.normpath(c_string(buf)).lstrip("/")
            self._cwd_known.add(proc)
        cwd = proc.getcwd()
        if isinstance(size, int) and len(cwd) + 1 > size:
            return -errno.ERANGE
        return len(os.fsencode(cwd)) + 1

    def _mkdirat(self, proc, ev, dirfd=None, path=None, *rest):
        """A directory the log made: it exists for later lookups (its success is the
        log's word: the simulation keeps no directory entries)."""
        if not isinstance(path, Str) or ev.result != 0:
            raise _Unmodelled
        self.kernel.make_dirs(resolve_at(proc, self._fd(ev, _num(dirfd)), c_string(path)))
        return 0

    def _mkdir(self, proc, ev, path=None, *rest):
        return self._mkdirat(proc, ev, uapi.AT_FDCWD, path)

    def _unlinkat(self, proc, ev, dirfd=None, path=None, *rest):
        """A file the log removed: later opens miss it, and its mappings show it as
        ``(deleted)`` in /proc/PID/maps."""
        if not isinstance(path, Str) or ev.result != 0:
            raise _Unmodelled
        full = resolve_at(proc, self._fd(ev, _num(dirfd)), c_string(path))
        inode = self.kernel.files.pop(full, None)
        if inode is not None and inode.kind == REG:
            for name in [n for n, i in self.kernel.files.items() if i is inode]:
                del self.kernel.files[name]
            inode.deleted = True
        return 0

    def _unlink(self, proc, ev, path=None, *rest):
        return self._unlinkat(proc, ev, uapi.AT_FDCWD, path)

    def _close_range(self, proc, ev, first=0, last=0, flags=0, *rest):
        first, last, flags = _num(first), _num(last), _num(flags)
        if flags & ~6 or first > last:
            return -errno.EINVAL
        for fd in [fd for fd in proc.fds if first <= fd <= last]:
            if flags & 4:
                proc.cloexec.add(fd)
            else:
                proc.close(fd)
        return 0

    def _close(self, proc, ev, fd):
        sim = self.fds.pop((self._table(ev.pid), fd), fd)
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
        return self._child(proc, ev, proc.clone(flags), flags)

    def _clone3(self, proc, ev, args, size=0):
        flags, exit_signal = clone_args(args, lineno=ev.line)
        if flags & 0xFF or exit_signal & ~0xFF:
            return -errno.EINVAL   # clone3 takes the exit signal in its own field
        return self._child(proc, ev, proc.clone(flags | exit_signal), flags)

    def _child(self, proc, ev, child, flags=0):
        who = ev.result if isinstance(ev.result, int) and ev.result > 0 else child.pid
        self._adopt(who, child)
        if proc in self._cwd_known:
            self._cwd_known.add(child)
        if flags & uapi.CLONE_FILES and child.fds is proc.fds:
            self._tables[who] = self._table(ev.pid)
            return who
        owner = self._table(ev.pid)
        for (table, tfd), sfd in list(self.fds.items()):
            if table == owner:
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
            args = (args[0], _mm_map(args[1].text, lineno=ev.line), *args[2:])
        return proc.prctl(option, *args)

    def _pidfd_open(self, proc, ev, pid, flags=0):
        return self._new_fd(ev, proc.pidfd_open(self._sim_pid(pid), flags))

    def _mctl(self, proc, ev, pidfd, action, flags):
        return proc.mctl(self._fd(ev, pidfd), action, flags)

    def _execve(self, proc, ev, path, argv=(), envp=0):
        if not isinstance(path, Str):
            return -errno.EFAULT     # an unreadable pointer, printed as a number
        if isinstance(argv, list):
            # strace ends a long array with "...": the strings it printed are the argv.
            if argv and argv[-1] == Raw("..."):
                argv = argv[:-1]
            if not all(isinstance(a, Str) for a in argv):
                return -errno.EFAULT
            argv = [c_string(a) for a in argv]
        elif argv == 0:
            argv = None              # NULL: the kernel takes it as an empty argv
        else:
            return -errno.EFAULT
        name = c_string(path)
        full = name
        if self.kernel is not None and not name.startswith("/"):
            full = posixpath.normpath(proc.cwd + "/" + name)
        if (self.kernel is not None and ev.result == 0 and name
                and self.kernel.host_path(full) is None):
            where = f" nor under --root {self.kernel.root}" if self.kernel.root else ""
            hint = "" if name.startswith("/") else (
                f" (looked up as {full}: give the directory the log started in with --cwd)")
            raise TraceError(self.file, ev.line,
                             f"execve needs the real ELF file {name}{hint}, found neither on "
                             f"this machine{where}; supply it with --root DIR (only execve "
                             f"needs the real file: others are simulated under --follow)")
        if not (self.follow and ev.result == 0):
            return proc.execve(name, argv)
        # Under --follow, exec takes the draws that give the layout the calls after it
        # show (mmsim/exec_follow.py); the stack top stays a seeded draw.
        evidence = exec_follow.gather(itertools.islice(self._window, 1, None), ev.pid)
        kernel = self.kernel
        kernel.exec_layout = lambda bprm, drawn: exec_follow.solve(
            bprm.program, bprm.interp, bprm.strings, drawn, evidence)
        try:
            return proc.execve(name, argv)
        finally:
            kernel.exec_layout = None

    def _exit(self, proc, ev, status=0):
        if ev.pid in self._exit_lines:
            self._exits[ev.pid] = (ev.name, status)   # exits at its "+++" line
        else:
            getattr(proc, ev.name)(status)
        return "?"

    _exit_group = _exit

    def _process_madvise(self, proc, ev, pidfd, iov, vlen, advice, flags=0):
        pairs = iovecs(iov, lineno=ev.line) if isinstance(iov, list) else []
        return proc.process_madvise(self._fd(ev, pidfd), pairs[:max(vlen, 0)], advice, flags)


_UNKNOWN = object()   # a call name not looked up in Replayer._handlers yet

# The direct handlers: a simulated Process' syscall body called with its arguments
# converted in line, as its @syscall wrapper converts them (ULONG: the low 64 bits; an
# INT already in range is itself), skipping the wrapper's generic loop.  The process is
# running (``call`` checked it).  Anything else (an argument that is no int, an INT out
# of range, a file mapping, whose descriptor needs translating) takes the ``slow`` path,
# called as a handler is: the replayer's own one, or the process' method.
_INT_MIN, _INT_END = -(1 << 31), 1 << 31
_MAP_ANONYMOUS = uapi.MAP_ANONYMOUS


# Each is made as a runner taking the call's arguments as one sequence (``run(proc, ev,
# args)``: _run_plain hands it the event's list as it is); ``call`` calls it through a
# handler taking them as separate arguments.
# Each tries the call's fused fast path (mmsim.fastpath, which Process' syscall body
# tries first too) before the body itself: one call fewer for the common shapes, and a
# failure is the negative errno ``call`` returns for it, without raising OSError.


def _direct_mmap(body, slow):
    fast = fastpath.mmap

    def mmap(proc, ev, args):
        if type(proc) is Process and len(args) == 6:
            addr, length, prot, flags, fd, off = args
            if (type(addr) is int and type(length) is int and type(prot) is int
                    and type(flags) is int and type(fd) is int and type(off) is int
                    and flags & _MAP_ANONYMOUS and _INT_MIN <= fd < _INT_END):
                addr &= U64
                length &= U64
                prot &= U64
                flags &= U64
                off &= U64
                held = (proc._shmem_held(addr, addr + length, fds=False)
                        if flags & uapi.MAP_FIXED and length else ())
                done = fast(proc.mm, addr, length, prot, flags, off)
                if done is not None:
                    if done < 0 and proc.kernel.pressure:
                        raise error(-done)   # call() balances only a call that returned
                    if done >= 0:
                        if held:
                            proc.kernel.release_shmem(held)
                    return done
                return body(proc, addr, length, prot, flags, fd, off)
        return slow(proc, ev, *args)
    return mmap


def _direct_munmap(body, slow):
    fast = fastpath.munmap

    def munmap(proc, ev, args):
        if type(proc) is Process and len(args) == 2:
            addr, length = args
            if type(addr) is int and type(length) is int:
                addr &= U64
                length &= U64
                held = proc._shmem_held(addr, addr + length, fds=False) if length else ()
                done = fast(proc.mm, addr, length)
                if done is not None:
                    if done < 0 and proc.kernel.pressure:
                        raise error(-done)   # call() balances only a call that returned
                    if done >= 0:
                        if held:
                            proc.kernel.release_shmem(held)
                    return done
                return body(proc, addr, length)
        return slow(proc, ev, *args)
    return munmap


def _direct_mprotect(body, slow):
    fast = fastpath.mprotect

    def mprotect(proc, ev, args):
        if type(proc) is Process and len(args) == 3:
            addr, length, prot = args
            if type(addr) is int and type(length) is int and type(prot) is int:
                addr &= U64
                length &= U64
                prot &= U64
                done = fast(proc.mm, addr, length, prot)
                if done is not None:
                    if done < 0 and proc.kernel.pressure:
                        raise error(-done)   # call() balances only a call that returned
                    return done
                return body(proc, addr, length, prot)
        return slow(proc, ev, *args)
    return mprotect


def _direct_madvise(body, slow):
    fast = fastpath.madvise

    def madvise(proc, ev, args):
        if type(proc) is Process and len(args) == 3:
            addr, length, advice = args
            if (type(addr) is int and type(length) is int and type(advice) is int
                    and _INT_MIN <= advice < _INT_END):
                addr &= U64
                length &= U64
                done = fast(proc.mm, addr, length, advice)
                if done is not None:
                    if done < 0 and proc.kernel.pressure:
                        raise error(-done)   # call() balances only a call that returned
                    return done
                return body(proc, addr, length, advice)
        return slow(proc, ev, *args)
    return madvise


_DIRECT = {"mmap": _direct_mmap, "munmap": _direct_munmap, "mprotect": _direct_mprotect,
           "madvise": _direct_madvise}


def _placed(ev):
    """The line an event runs at: a fork's start line, any other call's last line."""
    if ev.start is not None and ev.name in FORKS:
        return ev.start
    return ev.line


def _range(addr, length):
    """The pages [addr, addr + length) covers, or None when that is no range of user
    addresses (empty, negative, past TASK_SIZE)."""
    start, end = page_align_down(addr), page_align(addr + length)
    if length <= 0 or start < 0 or end > TASK_SIZE:
        return None
    return start, end


def _need(kind, span):
    return (kind, *span) if span is not None else None


def _needs(ev):
    """What ``ev``'s recorded success needs of the address space: ``("free", s, e)``
    for a new mapping it recorded at [s, e), ``("mapped", s, e)`` for a range it
    found mapped; None when its result pins nothing."""
    rec, a, name = ev.result, ev.args, ev.name
    if not isinstance(rec, int) or rec < 0 or not all(type(x) is int for x in a):
        return None
    if name == "mmap" and len(a) == 6 and not a[3] & uapi.MAP_FIXED and rec:
        return _need("free", _range(rec, a[1]))
    if name == "mremap" and len(a) >= 3:
        if len(a) > 3 and a[3] & uapi.MREMAP_FIXED:
            return None   # the target is replaced whatever is there
        if rec != a[0]:
            return _need("free", _range(rec, a[2]))
        if a[2] > a[1] > 0:
            return _need("free", _range(a[0] + a[1], a[2] - a[1]))
        return None
    if name in ("mprotect", "madvise", "mlock", "mlock2", "munlock") and len(a) >= 2 and a[1]:
        return _need("mapped", _range(a[0], a[1]))
    return None


def _frees(ev):
    """The ranges a call unmaps (munmap, a moving mremap's old range)."""
    a = ev.args
    if not all(type(x) is int for x in a):
        return []
    span = None
    if ev.name == "munmap" and len(a) == 2:
        span = _range(a[0], a[1])
    if (ev.name == "mremap" and len(a) >= 3 and isinstance(ev.result, int) and ev.result >= 0
            and not (len(a) > 3 and a[3] & uapi.MREMAP_DONTUNMAP)):
        span = _range(a[0], a[1])
    return [span] if span is not None else []


def _maps(ev):
    """The range a call recorded a new mapping at (mmap, mremap)."""
    a, rec = ev.args, ev.result
    if not isinstance(rec, int) or rec <= 0 or not all(type(x) is int for x in a):
        return []
    span = None
    if ev.name == "mmap" and len(a) == 6:
        span = _range(rec, a[1])
    if ev.name == "mremap" and len(a) >= 3:
        span = _range(rec, a[2])
    return [span] if span is not None else []


def _mapped(mm, start, end):
    """Whether every page of [start, end) is mapped."""
    a = start
    while a < end:
        vma = mm.vma_lookup(a)
        if vma is None:
            return False
        a = vma.end
    return True


def replay_trace(text: str, kernel: Kernel | None = None, file: str = "<trace>",
                 follow: bool = False, root: str | None = None) -> list[Outcome]:
    """Parse, check and replay a trace's text on ``kernel`` (a fresh ``Kernel()`` by
    default); the list of Outcomes.  TraceError for a malformed trace."""
    return Replayer(kernel if kernel is not None else Kernel(), follow, root,
                    file).run(parse(text, file))


def replay_file(path: str, kernel: Kernel | None = None, follow: bool = False,
                root: str | None = None) -> list[Outcome]:
    """Read a trace file ('-': standard input) and replay it as ``replay_trace`` does;
    TraceError for a malformed trace, OSError when the file cannot be read."""
    return replay_trace(read_trace(path), kernel, path, follow, root)


__all__ = ["replay_file", "replay_trace", "Replayer", "Outcome", "format_result", "ADDRESS_RESULTS"]

"""Replaying a parsed trace (mmsim.strace) on a simulated Kernel: one simulated process
per trace pid, each call's actual result next to the recorded one."""

import errno
import os

import attrs

from . import binfmt_elf, uapi
from .kernel import Kernel
from .defs import TASK_SIZE, page_align
from .task import Process
from .strace import EXECUTED, Event, Raw, Str, _mm_map, iovecs, parse, read_trace

ADDRESS_RESULTS = ("mmap", "mremap", "brk")
# Calls after which a process' address space may be gone (--dump-at-exit).
TEARDOWN = ("exit", "exit_group", "execve", "execveat")
# How far ahead the initial process' pid is looked for (Replayer.stream).
LOOKAHEAD = 4096




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
            return f"# dump pid {self.label}" + (" (at exit)" if ev.name == "at exit" else "")
        if ev.kind == "show":
            return f"# {ev.name}" + (f" pid {self.label}" if ev.name == "status" else "")
        return f"{prefix}{ev.name}({ev.text}) = {format_result(ev.name, self.result)}"

    def matches(self) -> bool:
        """The actual result is the one the trace recorded (or none was recorded)."""
        rec = self.event.result
        return self.event.kind != "call" or rec is None or rec == self.result


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


def c_string(s: Str) -> str:
    """A string argument as the kernel reads it: up to its first NUL."""
    return s.value.split("\0", 1)[0]


def _free(mm, addr, length):
    """Whether ``length`` bytes at ``addr`` are below TASK_SIZE and unmapped: where a
    recorded address can be followed."""
    end = addr + page_align(length)
    return end <= TASK_SIZE and mm.tree.find(addr, end) is None


class Replayer:
    """Runs checked events on a Kernel, one logical process per trace pid.

    Simulator-defined naming: a fork's child is known by the pid the trace recorded for
    it (its actual simulator pid is internal), so results that are pids (fork, clone,
    vfork, wait4) are reported as the trace's pids; file descriptors likewise map from
    the trace's numbers to the simulator's.  Calls that do not touch memory return the
    result the trace recorded (0 where none was).  ``follow`` places a non-fixed mmap
    or a moving mremap at its recorded address when that range is free, and the first
    recorded ``brk(NULL)`` sets the break, so a real program's layout reproduces."""

    def __init__(self, kernel: Kernel | None, follow: bool = False,
                 dump_at_exit: bool = False) -> None:
        self.kernel = kernel
        self.follow = follow
        self.dump_at_exit = dump_at_exit
        self.procs = {}      # logical pid (None: initial) -> Process
        self.names = {}      # simulator pid -> logical pid
        self.fds = {}        # (logical pid, trace fd) -> simulator fd
        self.initial_label = None
        # The address spaces whose first brk has been seen, by the Mm object itself: an
        # id() is reused once an exited process' Mm is freed, so a later process would
        # wrongly count as seen.  Torn-down ones (no users) are dropped as it grows.
        self._brk_set = set()

    def run(self, events: list[Event]) -> list[Outcome]:
        """Replay ``events`` (from ``parse``); a list of Outcomes, in trace order."""
        for ev in events:
            if ev.pid is None and ev.prefix is not None:
                self.initial_label = ev.prefix
                break
        return list(self.stream(events))

    def stream(self, events):
        """Replay an iterable of events (from ``parse`` or ``iter_parse``), yielding each
        Outcome as soon as it is known: memory stays flat in the trace's length.

        Simulator-defined: the initial process' pid as the trace names it is looked
        for in the first LOOKAHEAD events only (strace -f prefixes every line once
        there are two processes); before it is known, the simulator's pid labels it."""
        events = iter(events)
        head = []
        if self.initial_label is None:
            for ev in events:
                head.append(ev)
                if ev.pid is None and ev.prefix is not None:
                    self.initial_label = ev.prefix
                if self.initial_label is not None or len(head) >= LOOKAHEAD:
                    break
        self.start()
        for chain in (head, events):
            for ev in chain:
                yield from self.step(ev)

    def start(self) -> None:
        """Make the initial process, unless it exists."""
        if None not in self.procs:
            self._adopt(None, self.spawn_initial())

    def step(self, ev: Event):
        """The Outcomes of one event (a call at a process' end may first give that
        process' smaps, with ``dump_at_exit``)."""
        if ev.kind == "call":
            proc = self.procs[ev.pid]
            mm = proc.mm if self.dump_at_exit else None
            before = (self.kernel.proc_read(f"/proc/{proc.pid}/smaps")
                      if mm is not None and ev.name in TEARDOWN else None)
            result = self.call(ev)
            if before is not None and mm.users == 0:
                # The address space just went (exit, exec): show it as it was.
                at = Event(ev.line, "dump", ev.pid, name="at exit", prefix=ev.prefix)
                yield Outcome(at, smaps=before, label=self._label(ev.pid))
            yield Outcome(ev, result, label=self._label(ev.pid))
        elif ev.kind == "dump":
            yield self.dump(ev)
        elif ev.kind == "show":
            yield self.show(ev)

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

    def spawn_initial(self) -> Process:
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

    def dump(self, ev: Event) -> Outcome:
        """/proc/PID/smaps and the THP_enabled line of the event's process."""
        proc = self.procs[ev.pid]
        kernel = self.kernel
        smaps = kernel.proc_read(f"/proc/{proc.pid}/smaps") if proc.mm is not None else ""
        status = kernel.proc_read(f"/proc/{proc.pid}/status") if proc.mm is not None else ""
        thp = next((ln for ln in status.splitlines() if ln.startswith("THP_enabled:")), "")
        return Outcome(ev, smaps=smaps, thp_enabled=thp, label=self._label(ev.pid))

    def call(self, ev: Event) -> int | str:
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

    # Calls whose arguments or results need translating.

    def _fd(self, ev, fd):
        return self.fds.get((ev.pid, fd), fd) if fd >= 0 else fd

    def _mmap(self, proc, ev, addr, length, prot, flags, fd, off):
        rec = ev.result
        if (self.follow and not flags & uapi.MAP_FIXED and isinstance(rec, int) and rec > 0
                and not addr and _free(proc.mm, rec, length)):
            addr = rec   # a hint the kernel takes when the range is free
        return proc.mmap(addr, length, prot, flags, self._fd(ev, fd), off)

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
        if (self.follow and addr == 0 and isinstance(rec, int) and rec > 0
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
        if name not in self.kernel.files and os.path.exists(name):
            # A host file a real program opened: visible to the simulator read-only.
            binfmt_elf._inode_for(self.kernel, name, os.stat(name))
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
        return proc.execve(c_string(path), argv)

    def _exit(self, proc, ev, status=0):
        proc.exit(status)
        return "?"

    _exit_group = _exit

    def _process_madvise(self, proc, ev, pidfd, iov, vlen, advice, flags=0):
        pairs = iovecs(iov, lineno=ev.line) if isinstance(iov, list) else []
        return proc.process_madvise(self._fd(ev, pidfd), pairs[:max(vlen, 0)], advice, flags)


def replay_trace(text: str, kernel: Kernel | None = None, file: str = "<trace>",
                 follow: bool = False) -> list[Outcome]:
    """Parse, check and replay a trace's text on ``kernel`` (a fresh ``Kernel()`` by
    default); the list of Outcomes.  TraceError for a malformed trace."""
    return Replayer(kernel if kernel is not None else Kernel(), follow).run(parse(text, file))


def replay_file(path: str, kernel: Kernel | None = None, follow: bool = False) -> list[Outcome]:
    """Read a trace file ('-': standard input) and replay it as ``replay_trace`` does;
    TraceError for a malformed trace, OSError when the file cannot be read."""
    return replay_trace(read_trace(path), kernel, path, follow)


__all__ = ["replay_file", "replay_trace", "Replayer", "Outcome", "format_result", "ADDRESS_RESULTS"]

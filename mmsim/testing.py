"""The conformance kit: hypothesis strategies for memory calls, backends that run them
(mmsim, the live kernel, or your own), and a state machine that drives two backends
with the same calls and compares every result and every VMA in a window after each
step (docs/conformance.md).

A backend is any object with::

    name                  # shown in reports
    step(event) -> result # run one parsed trace call (mmsim.strace.Event); int, "?" or -errno
    vmas(pid) -> list     # the VMAs of process ``pid`` inside the window (dicts as
                          # mmsim.live.smaps_vmas returns them), or None once it has exited
    close()

Processes are named as in a trace: ``INITIAL`` is the first process, a fork's child is
the pid written in its ``fork() = N`` line.
"""

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from .errors import MmsimError
from .kernel import Kernel
from .live import VMA_FIELDS, WINDOW, LiveReplayer, host_thp, smaps_vmas
from .replay import Replayer, format_result
from .strace import Event, parse_line

INITIAL = 999          # the trace pid of the first process
PAGE = 4096
REGION = 32            # pages at the bottom of the window that calls aim at

PROTS = ["PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_READ|PROT_EXEC"]
MAP_FLAGS = ["MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED",
             "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED|MAP_NORESERVE",
             "MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED",
             "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE"]
ADVICE = ["MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_DONTNEED",
          "MADV_DONTFORK", "MADV_DOFORK", "MADV_DONTDUMP", "MADV_DODUMP", "MADV_HUGEPAGE",
          "MADV_NOHUGEPAGE", "MADV_WIPEONFORK", "MADV_KEEPONFORK", "MADV_COLD",
          "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_GUARD_INSTALL",
          "MADV_GUARD_REMOVE"]
REMOTE_ADVICE = ["MADV_COLD", "MADV_WILLNEED", "MADV_DONTNEED"]
# Memory calls a step draws from.  "file" opens the kit's data file, maps it and may
# close it; "brk" first moves the break into the window with PR_SET_MM_MAP.
CALLS = ("mmap", "munmap", "mprotect", "madvise", "mremap", "mlock", "mlock2", "munlock",
         "prctl", "brk", "file")
DATA_PAGES = 41        # the data file: 41 pages, the last one partial
CRED_CALLS = ["setuid(1000)", "setresuid(-1, 1000, -1)", "setgid(1000)",
              "setresgid(1000, 1000, 1000)", "unshare(CLONE_NEWUSER)"]


def prots() -> st.SearchStrategy[str]:
    """A protection, by its kernel names."""
    return st.sampled_from(PROTS)


def map_flags() -> st.SearchStrategy[str]:
    """mmap flags for a mapping placed inside the window, by their kernel names."""
    return st.sampled_from(MAP_FLAGS)


def advices() -> st.SearchStrategy[str]:
    """An madvise advice, by its kernel name."""
    return st.sampled_from(ADVICE)


def addresses(window: tuple[int, int] = WINDOW, unaligned: bool = True) -> st.SearchStrategy[int]:
    """An address in the first REGION pages of the window; now and then one byte past
    a page boundary, to exercise the alignment checks."""
    page = st.integers(0, REGION - 1).map(lambda p: window[0] + p * PAGE)
    if not unaligned:
        return page
    return st.one_of(page, page, page, page, page.map(lambda a: a + 1))


def lengths(unaligned: bool = True) -> st.SearchStrategy[int]:
    """A length of 1 to 8 pages; now and then not a page multiple."""
    pages = st.integers(1, 8).map(lambda n: n * PAGE)
    if not unaligned:
        return pages
    return st.one_of(pages, pages, pages, pages, pages.map(lambda n: n - 100))


def data_file() -> str:
    """The file the "file" steps map: always the same path and contents (41 pages, the
    last one partial), made on first use, so a written trace replays later."""
    path = os.path.join(tempfile.gettempdir(), "mmsim-conform-data.bin")
    size = (DATA_PAGES - 1) * PAGE + 100
    if not os.path.exists(path) or os.path.getsize(path) != size:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(bytes(range(256)) * (size // 256) + bytes(size % 256))
        os.replace(tmp, path)
    return path


@st.composite
def call_texts(draw, window=WINDOW, calls=CALLS):
    """One memory call as a trace line (without its result); the stateful ones ("brk",
    "file") are left to ``steps``."""
    name = draw(st.sampled_from([c for c in calls if c not in ("brk", "file")] or ["mmap"]))
    addr, length = draw(addresses(window)), draw(lengths())
    if name == "mmap":
        aligned = draw(addresses(window, unaligned=False))
        return (f"mmap({aligned:#x}, {length}, {draw(prots())}, {draw(map_flags())}, -1, 0)")
    if name == "mprotect":
        return f"mprotect({addr:#x}, {length}, {draw(prots())})"
    if name == "madvise":
        return f"madvise({addr:#x}, {length}, {draw(advices())})"
    if name == "mremap":
        new = draw(lengths(unaligned=False))
        if draw(st.booleans()):
            return f"mremap({addr:#x}, {length}, {new}, 0)"
        to = draw(addresses(window, unaligned=False))
        return f"mremap({addr:#x}, {length}, {new}, MREMAP_MAYMOVE|MREMAP_FIXED, {to:#x})"
    if name == "mlock2":
        return f"mlock2({addr:#x}, {length}, MLOCK_ONFAULT)"
    if name == "prctl":
        if draw(st.booleans()):
            return "prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)"
        return f"prctl(PR_SET_THP_DISABLE, {draw(st.integers(0, 1))}, 0, 0, 0)"
    return f"{name}({addr:#x}, {length})"


def errno_of(fn: Callable, *args: Any) -> int:
    """Call ``fn(*args)``: 0 if it succeeds, the errno of the OSError it raises if not."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return 0


# ---------------------------------------------------------------------- backends

class _ReplayerBackend:
    """A backend over a Replayer whose first process is trace pid INITIAL."""

    def _start(self, replayer):
        self.replayer = replayer
        replayer.initial_label = INITIAL
        replayer._adopt(None, replayer.spawn_initial())

    def step(self, event: Event) -> int | str:
        """Run one call; its result."""
        return self.replayer.call(event)

    def _proc(self, pid):
        return self.replayer.procs.get(None if pid == INITIAL else pid)


class SimBackend(_ReplayerBackend):
    """mmsim itself; ``kernel_options`` go to ``Kernel`` (by default the host's THP
    mode and no layout randomisation, to match the live kernel)."""

    name = "mmsim"

    def __init__(self, window=WINDOW, kernel=None, **kernel_options):
        opts = {"thp": host_thp(), "randomize": False, **kernel_options}
        self.window = window
        self._start(Replayer(kernel if kernel is not None else Kernel(**opts)))

    def vmas(self, pid: int) -> list[dict] | None:
        """The VMAs of ``pid`` inside the window, or None once it has exited."""
        proc = self._proc(pid)
        if proc is None or proc.mm is None:
            return None
        text = self.replayer.kernel.proc_read(f"/proc/{proc.pid}/smaps")
        return smaps_vmas(text, self.window)

    def close(self) -> None:
        """Nothing to release."""


class LiveBackend(_ReplayerBackend):
    """The live kernel: one real helper process per trace pid (see mmsim.live)."""

    name = "live kernel"

    def __init__(self, window=WINDOW):
        self._start(LiveReplayer(window))

    def vmas(self, pid: int) -> list[dict] | None:
        """The VMAs of ``pid`` inside the window, or None once it has exited."""
        proc = self._proc(pid)
        if proc is None or proc.sock.fileno() < 0:
            return None
        return proc.vmas()

    def close(self) -> None:
        """Stop the helper processes."""
        self.replayer.finish()


# ---------------------------------------------------------------------- sessions

class Difference(MmsimError, AssertionError):
    """The two backends parted ways; ``trace`` reproduces it."""

    def __init__(self, message, trace):
        super().__init__(message + "\n" + trace)
        self.message, self.trace = message, trace


def _vma_line(v):
    return (f"{v['start']:x}-{v['end']:x} {v['perms']} [{' '.join(v['flags'])}] rss "
            f"{v['rss_kb']} anon {v['anon_kb']} thp {v['anon_huge_kb']} locked {v['locked_kb']}"
            f" eligible {v['thp_eligible']}")


class Session:
    """Two backends driven with the same calls, compared after each one.  ``lines``
    is the trace so far, with the reference backend's (``b``'s) results written in."""

    def __init__(self, a: Any, b: Any, window: tuple[int, int] = WINDOW) -> None:
        self.a, self.b = a, b
        self.window = window
        self.alive = [INITIAL]
        self.next_pid = INITIAL + 1
        self.next_fd = 100
        self.lines = []
        # Per process: "brk" once PR_SET_MM_MAP has put its break in the window (until
        # exec); "no_exec" once it gave up root (set*id, unshare): a live helper could
        # no longer exec the interpreter, so the kit stops generating exec for it.
        self.state = {INITIAL: set()}

    def trace(self) -> str:
        """The calls so far as a replayable trace."""
        head = f"# {self.a.name} against {self.b.name}; results are {self.b.name}'s\n"
        return head + "".join(line + "\n" for line in self.lines)

    def do(self, pid: int, text: str) -> int | str:
        """Run ``text`` (a trace call without result, or with the result a fork or a
        descriptor is to be known by) as process ``pid`` on both; compare."""
        ev = parse_line(f"[pid {pid}] {text}", len(self.lines) + 1, "conform", {})
        ev.pid = None if pid == INITIAL else pid
        ra, rb = self.a.step(ev), self.b.step(ev)
        self.lines.append(f"[pid {pid}] {ev.name}({ev.text}) = {format_result(ev.name, rb)}")
        if ra != rb:
            raise Difference(f"line {len(self.lines)}: {ev.name}() returned "
                             f"{format_result(ev.name, ra)} on {self.a.name} but "
                             f"{format_result(ev.name, rb)} on {self.b.name}", self.trace())
        for who in self.alive:
            va, vb = self.a.vmas(who), self.b.vmas(who)
            if va is None or vb is None:
                continue
            sa = [{k: v[k] for k in VMA_FIELDS} for v in va]
            sb = [{k: v[k] for k in VMA_FIELDS} for v in vb]
            if sa != sb:
                lines = [f"after line {len(self.lines)}: the VMAs of pid {who} differ"]
                lines += [f"  {self.a.name}: {_vma_line(v)}" for v in sa if v not in sb]
                lines += [f"  {self.b.name}: {_vma_line(v)}" for v in sb if v not in sa]
                raise Difference("\n".join(lines), self.trace())
        return rb

    FORKS = {
        "fork": "fork()",
        "clone": ("clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID"
                  "|SIGCHLD, child_tidptr=0x7f0000000a10)"),
        "vfork": "vfork()",
        "clone3": "clone3({flags=0, exit_signal=SIGCHLD, stack=NULL, stack_size=0}, 88)",
    }

    def fork(self, pid: int, how: str = "fork") -> int:
        """Fork ``pid`` by fork(), clone() or clone3() without CLONE_VM, or vfork() (whose child
        execs at once, as it must); the child's trace pid."""
        child = self.next_pid
        self.next_pid += 1
        if self.do(pid, f"{self.FORKS[how]} = {child}") == child:
            self.alive.append(child)
            self.state[child] = set(self.state[pid])
            if how == "vfork":
                self.exec(child)
        return child

    def exit(self, pid: int, call: str = "exit_group") -> None:
        """exit_group(0) (or exit(0)) of ``pid``."""
        self.do(pid, f"{call}(0)")
        self.alive.remove(pid)

    def exec(self, pid: int, path: str = "/usr/bin/true") -> None:
        """execve of a real program: a fresh address space."""
        self.do(pid, f'execve("{path}", ["{path}"], NULL)')
        self.state[pid].discard("brk")

    def can_exec(self, pid):
        """Whether the kit may exec ``pid`` (it has not given up root)."""
        return "no_exec" not in self.state[pid]

    def wait(self, pid: int) -> int | str:
        """wait4(-1, NULL, WNOHANG, NULL): reap one exited child of ``pid``, if any."""
        return self.do(pid, "wait4(-1, NULL, WNOHANG, NULL)")

    def cred(self, pid: int, text: str) -> int | str:
        """A credential call (set*id, unshare) of ``pid``."""
        self.state[pid].add("no_exec")
        return self.do(pid, text)

    def brk(self, pid: int, addr: int, base: int) -> int | str:
        """brk(addr) of ``pid``; the first one since exec moves the break to ``base``
        with PR_SET_MM_MAP (code and data at the window's bottom)."""
        if "brk" not in self.state[pid]:
            w = self.window[0]
            top = w + REGION * PAGE
            fields = dict(start_code=w, end_code=w + PAGE, start_data=w + PAGE,
                          end_data=w + PAGE, start_brk=base, brk=base, start_stack=top,
                          arg_start=top, arg_end=top, env_start=top, env_end=top)
            body = ", ".join(f"{k}={v:#x}" for k, v in fields.items())
            if self.do(pid, f"prctl(PR_SET_MM, PR_SET_MM_MAP, {{{body}, auxv=NULL, "
                            f"auxv_size=0, exe_fd=-1}}, 104)") == 0:
                self.state[pid].add("brk")
        return self.do(pid, f"brk({addr:#x})" if addr else "brk(NULL)")

    def map_file(self, pid, addr, length, prot, shared, offset, rdwr, close, at=True):
        """Open the kit's data file (openat, or open), map ``length`` bytes of it at
        page ``offset`` with MAP_FIXED at ``addr``, then close it if ``close``."""
        fd = self.next_fd
        self.next_fd += 1
        mode = "O_RDWR" if rdwr else "O_RDONLY"
        opened = (f'openat(AT_FDCWD, "{data_file()}", {mode}) = {fd}' if at
                  else f'open("{data_file()}", {mode}) = {fd}')
        if self.do(pid, opened) != fd:
            return
        kind = "MAP_SHARED" if shared else "MAP_PRIVATE"
        self.do(pid, f"mmap({addr:#x}, {length}, {prot}, {kind}|MAP_FIXED, {fd}, "
                     f"{offset * PAGE:#x})")
        if close:
            self.do(pid, f"close({fd})")

    def process_madvise(self, pid, target, addr, length, advice):
        """pidfd_open of ``target`` then process_madvise of one range through it."""
        fd = self.next_fd
        self.next_fd += 1
        if self.do(pid, f"pidfd_open({target}, 0) = {fd}") == fd:
            self.do(pid, f"process_madvise({fd}, [{{iov_base={addr:#x}, iov_len={length}}}], "
                         f"1, {advice}, 0)")

    def close(self) -> None:
        """Release both backends."""
        self.a.close()
        self.b.close()


@st.composite
def steps(draw, session, window=WINDOW, calls=CALLS):
    """Draw one step and run it on ``session``."""
    kind = draw(st.sampled_from(["call"] * 8 + ["fork", "exit", "exec", "remote", "wait",
                                                "cred"]))
    pid = draw(st.sampled_from(session.alive))
    if kind == "fork" and len(session.alive) < 4:
        how = draw(st.sampled_from(["fork", "clone", "clone3", "vfork"] if session.can_exec(pid)
                                   else ["fork", "clone", "clone3"]))
        session.fork(pid, how)
    elif kind == "exit" and pid != INITIAL:
        session.exit(pid, draw(st.sampled_from(["exit_group", "exit"])))
    elif kind == "exec" and session.can_exec(pid):
        session.exec(pid)
    elif kind == "remote":
        target = draw(st.sampled_from(session.alive))
        session.process_madvise(pid, target, draw(addresses(window)), draw(lengths()),
                                draw(st.sampled_from(REMOTE_ADVICE)))
    elif kind == "wait":
        session.wait(pid)
    elif kind == "cred":
        session.cred(pid, draw(st.sampled_from(CRED_CALLS)))
    else:
        kind = "call"
        name = draw(st.sampled_from(calls))
        if name == "brk":
            addr = draw(st.one_of(st.just(0), addresses(window)))
            session.brk(pid, addr, draw(addresses(window, unaligned=False)))
        elif name == "file":
            session.map_file(pid, draw(addresses(window, unaligned=False)), draw(lengths()),
                             draw(prots()), draw(st.booleans()),
                             draw(st.integers(0, DATA_PAGES + 2)), draw(st.booleans()),
                             draw(st.booleans()), draw(st.booleans()))
        else:
            session.do(pid, draw(call_texts(window, (name,))))
    return kind


def conformance_machine(make_a: Callable[[], Any], make_b: Callable[[], Any],
                        window: tuple[int, int] = WINDOW, calls: Sequence[str] = CALLS) -> type:
    """A RuleBasedStateMachine comparing the backends ``make_a()`` and ``make_b()``
    after every step (memory calls drawn from ``calls``, plus fork, exit, exec and
    process_madvise); run it with ``run_state_machine_as_test`` or its ``TestCase``."""

    class Conformance(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.session = Session(make_a(), make_b(), window)

        # As in run(): most calls only do something where memory is mapped.
        @initialize(text=call_texts(window, ("mmap",) if "mmap" in calls else calls))
        def start(self, text):
            self.session.do(INITIAL, text)

        # One rule drawing its kind with steps()'s weights: with a rule per kind, hypothesis
        # picks kinds evenly and execs and forks crowd out the memory calls.
        @rule(data=st.data())
        def step(self, data):
            data.draw(steps(self.session, window, calls))

        def teardown(self):
            self.session.close()

    return Conformance


def run(make_a: Callable[[], Any], make_b: Callable[[], Any], examples: int = 100,
        seed: int | None = None, max_steps: int = 20, window: tuple[int, int] = WINDOW,
        calls: Sequence[str] = CALLS,
        progress: Callable[[int, int], None] | None = None) -> "Difference | None":
    """Run ``examples`` generated sequences on both backends.  Returns None when
    nothing differs, else the shrunk Difference (its ``trace`` reproduces it)."""
    last = {}
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    @given(data=st.data())
    def search(data):
        count[0] += 1
        if progress is not None:
            progress(count[0], examples)
        session = Session(make_a(), make_b(), window)
        try:
            if "mmap" in calls:
                # Most calls only do something where memory is mapped: start there.
                session.do(INITIAL, data.draw(call_texts(window, ("mmap",))))
            n = data.draw(st.integers(1, max_steps))
            for _ in range(n):
                data.draw(steps(session, window, calls))
        except Difference as diff:
            last["diff"] = diff
            raise
        finally:
            session.close()

    if seed is not None:
        search = with_seed(seed)(search)
    try:
        search()
    except Difference:
        return last["diff"]
    return None


__all__ = ["INITIAL", "CALLS", "data_file", "errno_of", "prots", "map_flags", "advices", "addresses", "lengths", "call_texts",
           "SimBackend", "LiveBackend", "Session", "Difference", "steps",
           "conformance_machine", "run"]

"""The ``mmsim`` command: replay strace-syntax traces, and a built-in demo of mctl."""

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from typing import TextIO

from .kernel import Kernel
from .live import available, diff_trace
from . import access, plot, procfs, sweep
from .defs import PAGE_SIZE
from .replay import Outcome, Replayer, format_result
from .strace import TraceError, iter_lines, iter_parse, parse, parse_line, read_trace
from .thp import MODES

DEMO = """\
# mmsim demo: a launcher (the initial process) and two workloads it forks, with THP
# "always".  Each workload maps 4 MiB and faults it in with MADV_POPULATE_WRITE.
fork() = 101
[pid 101] mmap(0x200000000000, 4194304, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0) = 0x200000000000
[pid 101] madvise(0x200000000000, 4194304, MADV_POPULATE_WRITE) = 0
# dump: without mctl, two PMD THPs (AnonHugePages: 4096 kB)
[pid 101] # dump
# The launcher turns THP off for itself and, persistently, for all it starts.
mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC) = 0
mctl(PIDFD_SELF, MCTL_GET, 0) = 2
fork() = 102
[pid 102] mmap(0x200000000000, 4194304, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0) = 0x200000000000
[pid 102] madvise(0x200000000000, 4194304, MADV_POPULATE_WRITE) = 0
# dump: the new VMA starts with nh (VmFlags), and no THP was used
[pid 102] # dump
# Without privilege, acting on another process is refused (the proposal's rule).
[pid 102] setuid(1000) = 0
[pid 102] pidfd_open(101, 0) = 3
[pid 102] mctl(3, MCTL_SET_NOHUGEPAGE, 0) = -1 EPERM (Operation not permitted)
"""


DEBUG_HELP = "on an internal error (a bug in mmsim), print the traceback"
INTERNAL_ERROR = 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mmsim`` command."""
    p = argparse.ArgumentParser(
        prog="mmsim",
        description="A userspace simulator of the Linux 6.18 memory-management subsystem.")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "replay", help="replay a trace in strace syntax and print each call's actual result",
        description="Replay TRACE (strace -f syntax, one call per line) in the simulator. "
                    "Each call is printed as strace would print it, with the simulator's "
                    "result; '# dump' or 'dump()' lines print that process' smaps and its "
                    "THP_enabled line, '# meminfo', '# vmstat' and '# status' those files.  "
                    "The trace is checked whole first, then each result is written as it "
                    "comes (memory stays flat in the trace's length).  Exit status: 0, 1 with --check when a result "
                    "differs from the trace's, 2 for a malformed trace, 3 for an internal "
                    "error (a bug in mmsim).")
    r.add_argument("trace", help="the trace file ('-' for standard input)")
    _common(r)
    r.add_argument("--check", action="store_true",
                   help="exit 1 when an actual result differs from the recorded one")
    r.add_argument("--root", metavar="DIR", default=None,
                   help="look every absolute path up under DIR first (a sysroot: the "
                        "recording machine's binaries and libraries)")
    r.add_argument("--cwd", metavar="DIR", default=None,
                   help="the directory the log started in (default: what its getcwd "
                        "calls show, else the current one)")
    r.add_argument("--follow", action="store_true",
                   help="place non-fixed mmap/mremap calls at their recorded addresses "
                        "when free, take the recorded initial break, and work exec's layout "
                        "under ASLR (program, interpreter, vDSO, break) out of the calls "
                        "after each execve")
    r.add_argument("--json", action="store_true",
                   help="write one JSON document (smaps and /proc fields parsed into "
                        "numbers, and the --check diagnostics)")
    r.add_argument("--dump-at-exit", action="store_true",
                   help="print each process' smaps just before its address space is torn "
                        "down (exit, exit_group, exec)")
    r.add_argument("--advance-at-exit", metavar="SECONDS", type=_seconds, default=None,
                   help="when the trace ends, let SECONDS of simulated time pass "
                        "(khugepaged and kswapd run), then dump every process still alive")
    r.add_argument("--before", metavar="FILE", action="append", default=[],
                   help="replay the trace FILE first, as the initial process, before the "
                        "first line of TRACE (repeatable)")
    r.add_argument("--prctl", metavar="OPTION,ARG...", action="append", default=[],
                   help="call prctl(OPTION, ARG...) in the initial process before the first "
                        "line, e.g. PR_SET_THP_DISABLE,1 (repeatable)")
    r.add_argument("--mctl", metavar="ACTION[,FLAG...]", action="append", default=[],
                   help="call mctl(PIDFD_SELF, ACTION, FLAG|...) in the initial process "
                        "before the first line, e.g. MCTL_SET_NOHUGEPAGE,MCTL_SET_DEFAULT_EXEC "
                        "(repeatable)")
    f = sub.add_parser(
        "diff", help="run a trace in the simulator and on the live kernel; print differences",
        description="Run TRACE in the simulator (with the host's THP mode and no layout "
                    "randomisation) and on the live Linux kernel, one real helper process "
                    "per trace pid driven in trace order, and print every difference: "
                    "call results, and the VMAs inside the window at each dump and at the "
                    "end.  Calls the live kernel lacks (mctl) are listed as not comparable. "
                    "Exit status: 0 when nothing differs, 1 when something does, 2 for a "
                    "malformed trace or when the live kernel cannot be used, 3 for an "
                    "internal error (a bug in mmsim).")
    f.add_argument("trace", help="the trace file")
    f.add_argument("--window", default="0x200000000000-0x300000000000",
                   help="the address window compared, LO-HI (default: %(default)s)")
    c = sub.add_parser(
        "conform", help="search for a call sequence where mmsim and the live kernel differ",
        description="Generate call sequences (hypothesis) over several processes (fork, "
                    "exec and exit included) and run each in mmsim and on the live kernel, "
                    "comparing every result and the window's VMAs after every call.  On the "
                    "first difference, the shrunk sequence is written as a trace with the "
                    "live kernel's results (replay it with 'mmsim replay --check' or "
                    "'mmsim diff') and the difference is printed.  Exit status: 0 when "
                    "nothing differs, 1 when something does, 2 when the live kernel cannot "
                    "be used, 3 for an internal error (a bug in mmsim).  Needs the test "
                    "extra (hypothesis).")
    c.add_argument("--examples", type=int, default=200, help="sequences to run (default 200)")
    c.add_argument("--seed", type=int, default=None, help="seed of the generator")
    c.add_argument("--calls", nargs="+", default=None, metavar="CALL",
                   help="memory calls to draw from (default: all of mmap munmap mprotect "
                        "madvise mremap mlock mlock2 munlock prctl brk file)")
    c.add_argument("--window", default="0x200000000000-0x300000000000",
                   help="the address window, LO-HI (default: %(default)s)")
    c.add_argument("--out", default="conform-difference.strace",
                   help="where to write the reproducing trace (default: %(default)s)")
    d = sub.add_parser("demo", help="replay a built-in scenario that shows mctl at work",
                       description="Replay the built-in mctl scenario (THP 'always').")
    d.add_argument("--json", action="store_true", help="write one JSON document")
    d.add_argument("--show-trace", action="store_true", help="print the scenario's trace")
    pl = sub.add_parser(
        "plot", help="draw the address-space map of a replayed trace's processes",
        description="Replay TRACE (or, with --demo, the built-in demo under THP 'always') "
                    "and draw the address space of every process alive at its end: one "
                    "bar per VMA, coloured by kind, with its resident and huge (PMD) "
                    "ranges.  The format follows OUT's suffix (.png, .svg, .pdf).  Needs "
                    "the sandbox extra (matplotlib).")
    pl.add_argument("trace", nargs="?", help="the trace file ('-' for standard input)")
    pl.add_argument("--demo", action="store_true", help="draw the demo's processes")
    pl.add_argument("-o", "--out", required=True, help="the picture to write")
    pl.add_argument("--max-vmas", type=int, default=40,
                    help="the largest VMAs drawn per process (default: %(default)s)")
    pl.add_argument("--follow", action="store_true", help="as for 'mmsim replay'")
    _common(pl)
    sw = sub.add_parser(
        "sweep", help="run a study over a grid of configurations on Dask",
        description="Expand SPEC's grid (a TOML file: [sweep] study, [grid], [params], "
                    "[plot]) and run every cell not yet in OUT on a dask.distributed "
                    "LocalCluster of WORKERS processes (or the cluster at --scheduler), "
                    "with a progress bar and ETA on a terminal; write OUT/results.parquet "
                    "(one row per cell) and OUT/heatmap.png, and print a summary.  A re-run "
                    "skips the cells already done.  Needs the sandbox extra.")
    sw.add_argument("spec", help="the sweep's TOML file")
    sw.add_argument("--workers", type=int, default=2,
                    help="LocalCluster worker processes (default: %(default)s)")
    sw.add_argument("--out", default="sweep-out", help="the output directory "
                                                        "(default: %(default)s)")
    sw.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="a running scheduler, e.g. tcp://HOST:8786, instead of a LocalCluster")
    ma = sub.add_parser(
        "merge-access", help="merge memory-access records into an strace log",
        description="Put the records of ACCESSES (JSONL or CSV of time,pid,addr,length,op; "
                    "'perf script' page-fault samples; 'damo report raw' output) into TRACE "
                    "as '# access ADDR LENGTH r|w' lines, each before the first call logged "
                    "after it (TRACE recorded with strace -ttt; give the clocks' difference "
                    "with --offset, or --offset auto to start both together).  'mmsim replay' then "
                    "faults those pages.  Exit status 2 for a malformed input.")
    ma.add_argument("trace", help="the strace log")
    ma.add_argument("accesses", help="the access records")
    ma.add_argument("--format", choices=("jsonl", "csv", "perf", "damo"), default=None,
                    help="the records' format (default: by suffix: .jsonl, .csv; else perf)")
    ma.add_argument("--offset", default="0",
                    help="seconds added to every record's time, or 'auto': line the first "
                         "record up with the log's first timed line (default 0)")
    ma.add_argument("--damon-target", metavar="ID:PID", action="append", default=[],
                    help="the log's pid of a DAMON target_id (repeatable; damo only)")
    ma.add_argument("-o", "--out", default="-", help="where to write the merged log")
    for each in (r, f, c, d, pl, sw, ma):
        # SUPPRESS: given before the command, --debug must survive the subparser.
        each.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=DEBUG_HELP)
    return p


def _seconds(text):
    """An --advance-at-exit argument: a finite number of seconds, >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be finite and >= 0: {text!r}")
    return value


def _common(p):
    p.add_argument("--thp", choices=MODES, default="madvise",
                   help="/sys/kernel/mm/transparent_hugepage/enabled (default: madvise)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the layout randomisation (default: 0)")
    p.add_argument("--norandmaps", action="store_true",
                   help="no layout randomisation (kernel.randomize_va_space=0), to match "
                        "a trace recorded under 'setarch -R'")


def run_replay(text: str, name: str, thp: str, seed: int, follow: bool = False,
               randomize: bool = True, root: str | None = None,
               cwd: str | None = None) -> list[Outcome]:
    """Parse and replay; the Outcomes (TraceError for a malformed trace)."""
    events = parse(text, name)
    return Replayer(Kernel(thp=thp, seed=seed, randomize=randomize), follow, root,
                    name, cwd).run(events)


def render(outcomes: list[Outcome], as_json: bool, out: TextIO) -> None:
    """Write the outcomes as text or as one JSON document."""
    writer = Writer(out, as_json)
    for o in outcomes:
        writer.outcome(o)
    writer.close()


# Mismatch diagnostics kept for the JSON document (all go to standard error with --check).
MAX_DIAGNOSTICS = 1000
ADDRESS_ARGS = ("munmap", "mprotect", "madvise", "mlock", "mlock2", "munlock", "mremap")


class Writer:
    """Writes Outcomes as they come: a line each (text), or one JSON document written
    piece by piece, so memory stays flat in the trace's length."""

    def __init__(self, out: TextIO, as_json: bool, check: bool = False,
                 file: str = "<trace>", follow: bool = False) -> None:
        self.out, self.as_json, self.check, self.file = out, as_json, check, file
        self.mismatches = 0
        self.diagnostics = []
        self.layout = LayoutWatch(follow)
        self._first = True
        if as_json:
            out.write('{"events": [')

    def outcome(self, o: Outcome) -> None:
        """Write one Outcome (and report it when it is a mismatch)."""
        if o.event.kind == "call":
            self.layout.seen(o)
            if not o.matches():
                self._mismatch(o)
        if not self.as_json:
            self.out.write(o.line() + "\n")
            if o.event.kind == "dump":
                self.out.write(o.smaps)
                if o.thp_enabled:
                    self.out.write(o.thp_enabled + "\n")
            elif o.event.kind == "show":
                self.out.write(o.smaps)
            return
        self.out.write(("\n " if self._first else ",\n ") + json.dumps(self._doc(o)))
        self._first = False

    def _doc(self, o):
        ev = o.event
        if ev.kind == "dump":
            doc = {"type": "dump", "line": ev.line, "pid": o.label,
                   "smaps": procfs.parse_smaps(o.smaps)}
            if ev.name == "at exit":
                doc["at_exit"] = True
            elif ev.name == "at end":
                doc["at_end"] = True
            if o.thp_enabled:
                doc["thp_enabled"] = int(o.thp_enabled.split("\t")[-1])
            return doc
        if ev.kind == "show":
            return {"type": ev.name, "line": ev.line, "pid": o.label,
                    "fields": procfs.parse_fields(o.smaps)}
        if ev.kind == "exit":
            return {"type": "exit", "line": ev.line, "pid": o.label, "text": o.line()}
        if ev.kind == "access":
            return {"type": "access", "line": ev.line, "pid": o.label, "text": o.line(),
                    "result": o.result}
        return {"type": "call", "line": ev.line, "pid": o.label, "call": ev.name,
                "text": o.line(), "result": o.result, "recorded": ev.result,
                "recorded_text": None if ev.result is None else
                format_result(ev.name, ev.result), "matches": o.matches()}

    def _mismatch(self, o):
        self.mismatches += 1
        ev = o.event
        msgs = [f"{self.file}:{ev.line}: {o.line()}, but the trace recorded "
                f"{format_result(ev.name, ev.result)}"]
        if self.mismatches == 1:
            advice = self.layout.advice(o)
            if advice:
                msgs.append(f"{self.file}:{ev.line}: {advice}")
        for msg in msgs:
            if self.check:
                print(f"mmsim: {msg}", file=sys.stderr)
            if len(self.diagnostics) < MAX_DIAGNOSTICS:
                self.diagnostics.append(msg)

    def close(self) -> None:
        """End the output (the JSON document's closing part)."""
        if self.as_json:
            self.out.write(f'\n], "mismatches": {self.mismatches}, "diagnostics": '
                           + json.dumps(self.diagnostics, indent=1))
            if len(self.diagnostics) >= MAX_DIAGNOSTICS:
                self.out.write(', "diagnostics_truncated": true')
            self.out.write("}\n")


class LayoutWatch:
    """Whether the first mismatch comes from the exec layout: the ranges the log showed
    being made (recorded mmap/mremap results, and the heap from the first recorded
    break), kept until the first mismatch."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow
        self.made = {}       # start -> end of a range a logged call made
        self.brk0 = {}       # pid -> first recorded break
        self.done = False

    def seen(self, o: Outcome) -> None:
        """Note what a call the trace recorded made (until the first mismatch)."""
        if self.done:
            return
        if not o.matches():
            self.done = True
            return
        ev, rec = o.event, o.event.result
        if not isinstance(rec, int) or rec <= 0:
            return
        if ev.name == "mmap" and len(ev.args) > 1 and isinstance(ev.args[1], int):
            self._add(rec, rec + ev.args[1])
        elif ev.name == "mremap" and len(ev.args) > 2 and isinstance(ev.args[2], int):
            self._add(rec, rec + ev.args[2])
        elif ev.name == "brk":
            start = self.brk0.setdefault(ev.pid, rec)
            if rec > start:
                self._add(start, rec)

    def _add(self, start, end):
        if end > self.made.get(start, 0):
            self.made[start] = end

    def _logged(self, addr):
        return any(start <= addr < end for start, end in self.made.items())

    def advice(self, o: Outcome) -> str | None:
        """What to do when ``o``, the first mismatch, is an exec-layout one."""
        ev = o.event
        what = None
        if ev.name == "brk":
            what = "the break, which exec placed"
        elif (ev.name in ("mmap", "mremap") and isinstance(ev.result, int) and ev.result > 0
              and isinstance(o.result, int) and o.result > 0):
            what = (f"a mapping placed at {ev.result:#x} in the trace, below an mmap_base "
                    "that exec chose")
        elif (ev.name in ADDRESS_ARGS and ev.args and isinstance(ev.args[0], int)
              and ev.args[0] and not ev.args[0] % PAGE_SIZE
              and isinstance(ev.result, int) and ev.result >= 0
              and not self._logged(ev.args[0])):
            # The trace's call worked on memory the log never showed being made.
            what = (f"{ev.args[0]:#x}, in no mapping the log shows being made (the program, "
                    "its interpreter, the vdso or the stack, which exec mapped)")
        if what is None:
            return None
        fix = ("record under 'setarch -R' and replay with --norandmaps" if self.follow else
               "replay with --follow to work the layout out from the log, or record under "
               "'setarch -R' and replay with --norandmaps")
        return f"this mismatch is about {what}: the log was recorded with another layout; {fix}"


def _policy_event(flag, text, call):
    """The call a --mctl/--prctl value stands for, parsed as a trace line."""
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise TraceError(flag, 1, f"bad value {text!r}")
    if call == "mctl":
        line = f"mctl(PIDFD_SELF, {parts[0]}, {'|'.join(parts[1:]) or '0'})"
    else:
        line = f"prctl({', '.join(parts)})"
    return parse_line(line, 1, flag)


def replay_streamed(args, out: TextIO) -> int:
    """``mmsim replay``: check the whole trace, then replay it line by line, writing
    each result as it comes; the exit status."""
    spool = None
    path = args.trace
    try:
        if path == "-":
            # Read twice (checked first, then replayed): standard input goes to a file.
            spool = tempfile.TemporaryFile()
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.flush()
            path = f"/proc/self/fd/{spool.fileno()}"
        return _replay_checked(args, path, out)
    except OSError as e:
        print(f"mmsim: {e.filename if e.filename and spool is None else args.trace}: "
              f"{e.strerror}", file=sys.stderr)
        return 2
    finally:
        if spool is not None:
            spool.close()


def _events(path, name):
    return iter_parse(iter_lines(path), name)


def _replay_checked(args, path, out):
    name = args.trace
    replayer = Replayer(Kernel(thp=args.thp, seed=args.seed, randomize=not args.norandmaps),
                        args.follow, args.root, name, args.cwd, dump_at_exit=args.dump_at_exit)
    try:
        for before in args.before:
            for _ in _events(before, before):
                pass
        # The main trace's pass over everything: a malformed line stops it here,
        # before anything runs.
        replayer.prescan(_events(path, name))
        policies = ([_policy_event("--prctl", t, "prctl") for t in args.prctl]
                    + [_policy_event("--mctl", t, "mctl") for t in args.mctl])
    except TraceError as e:
        print(f"mmsim: {e}", file=sys.stderr)
        return 2
    writer = Writer(out, args.json, args.check, name, args.follow)
    facts = replayer.facts()
    for before in args.before:
        writer.file = replayer.file = before
        replayer.prescan(_events(before, before))
        for o in replayer.stream(_events(before, before)):
            writer.outcome(o)
    replayer.restore(facts)
    replayer.file = name
    replayer.start()
    for ev in policies:
        result = replayer.call(ev)
        if isinstance(result, int) and result < 0:
            writer.close()
            flag = "--mctl" if ev.name == "mctl" else "--prctl"
            print(f"mmsim: {flag}: {ev.name}({ev.text}) = {format_result(ev.name, result)}",
                  file=sys.stderr)
            return 2
    writer.file = name
    for o in replayer.stream(_events(path, name)):
        writer.outcome(o)
    if args.advance_at_exit is not None:
        for o in replayer.finish(args.advance_at_exit):
            writer.outcome(o)
    writer.close()
    return 1 if args.check and writer.mismatches else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmsim`` console script; returns the exit status (3 when
    mmsim itself failed: a bug is never shown as a kernel's answer)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args, sys.stdout)
    except Exception as exc:
        # Everything the kernel can answer is an errno inside the outcomes; an exception
        # reaching here is a bug in mmsim and must not look like a result.
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(f"mmsim: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not args.debug:
            print("mmsim: run again with --debug for the traceback", file=sys.stderr)
        return INTERNAL_ERROR


def _run(args, out):
    """Run the parsed command; its exit status."""
    try:
        if args.command == "diff":
            return run_diff(args, out)
        if args.command == "conform":
            return run_conform(args, out)
        if args.command == "plot":
            return run_plot(args, out)
        if args.command == "sweep":
            return run_sweep(args, out)
        if args.command == "merge-access":
            return run_merge_access(args, out)
        if args.command == "demo":
            if args.show_trace:
                out.write(DEMO)
                return 0
            outcomes = run_replay(DEMO, "<demo>", "always", 0)
        else:
            return replay_streamed(args, out)
    except TraceError as e:
        print(f"mmsim: {e}", file=sys.stderr)
        return 2
    render(outcomes, args.json, out)
    return 0


def _live_window(args):
    """The --window as (lo, hi) when the live kernel can be used; else None, reported."""
    ok, why = available()
    if not ok:
        print(f"mmsim: {why}", file=sys.stderr)
        return None
    try:
        lo, hi = (int(x, 0) for x in args.window.split("-"))
    except ValueError:
        print(f"mmsim: bad --window {args.window!r}: expected LO-HI", file=sys.stderr)
        return None
    return lo, hi


def _read(path):
    """A trace file's text ('-': standard input), or None, reported."""
    try:
        return read_trace(path)
    except OSError as e:
        print(f"mmsim: {path}: {e.strerror}", file=sys.stderr)
        return None


def run_diff(args: argparse.Namespace, out: TextIO) -> int:
    """``mmsim diff``: print the differences; 0 when there are none."""
    window = _live_window(args)
    text = _read(args.trace) if window else None
    if text is None:
        return 2
    diffs, skipped = diff_trace(text, args.trace, window)
    for line in skipped:
        out.write(f"# {line}\n")
    for line in diffs:
        out.write(line + "\n")
    if not diffs:
        out.write(f"# {args.trace}: no difference from the live kernel\n")
    return 1 if diffs else 0


def run_conform(args: argparse.Namespace, out: TextIO) -> int:
    """``mmsim conform``: search for a difference from the live kernel."""
    window = _live_window(args)
    if window is None:
        return 2
    lo, hi = window
    # Here, not at the top: hypothesis and tqdm come with the optional test extra.
    from tqdm import tqdm
    from . import testing
    calls = tuple(args.calls) if args.calls else testing.CALLS
    unknown = [c for c in calls if c not in testing.CALLS]
    if unknown:
        print(f"mmsim: cannot generate {', '.join(unknown)}; choose from "
              f"{' '.join(testing.CALLS)}", file=sys.stderr)
        return 2

    # disable=None: the bar shows on a terminal only.
    bar = tqdm(total=args.examples, unit="seq", file=sys.stderr, leave=True, disable=None)

    def progress(i, n):
        # hypothesis may run a few more examples than asked (ones it discards): cap.
        bar.update(min(i, n) - bar.n)

    try:
        diff = testing.run(lambda: testing.SimBackend(window=(lo, hi)),
                           lambda: testing.LiveBackend(window=(lo, hi)),
                           examples=args.examples, seed=args.seed, window=(lo, hi),
                           calls=calls, progress=progress)
    finally:
        bar.close()    # end the progress bar, before any error message too
    if diff is None:
        out.write(f"# {args.examples} sequences: no difference from the live kernel\n")
        return 0
    with open(args.out, "w") as f:
        f.write(diff.trace)
    out.write(diff.message + "\n")
    out.write(f"# the shrunk sequence is in {args.out}\n")
    return 1


def run_plot(args: argparse.Namespace, out: TextIO) -> int:
    """``mmsim plot``: replay, then draw the address space of each live process."""
    if args.demo == (args.trace is not None):
        print("mmsim: plot needs a TRACE or --demo (not both)", file=sys.stderr)
        return 2
    if args.demo:
        text, name, thp_mode = DEMO, "<demo>", "always"
    else:
        text, name, thp_mode = _read(args.trace), args.trace, args.thp
        if text is None:
            return 2
    replayer = Replayer(Kernel(thp=thp_mode, seed=args.seed, randomize=not args.norandmaps),
                        args.follow, None, name)
    replayer.run(parse(text, name))
    shown = [(pid, p) for pid, p in replayer.procs.items()
             if p.state == "running" and p.mm is not None and any(True for _ in p.mm.vmas())]
    if not shown:
        print("mmsim: no process with a mapping is alive at the end", file=sys.stderr)
        return 2
    labels = [f"trace pid {pid}" if pid is not None else "initial process" for pid, _ in shown]
    fig = plot.address_space([p for _, p in shown], max_vmas=args.max_vmas, labels=labels,
                             title=f"{name} (THP {thp_mode})")
    plot.save(fig, args.out)
    out.write(f"# {len(shown)} address spaces drawn in {args.out}\n")
    return 0


def run_sweep(args: argparse.Namespace, out: TextIO) -> int:
    """``mmsim sweep``: run the spec's cells on Dask and write the table and heatmap."""
    try:
        sweep.load_spec(args.spec)
    except (OSError, ValueError) as e:
        print(f"mmsim: {e}", file=sys.stderr)
        return 2
    sweep.sweep(args.spec, args.out, workers=args.workers, scheduler=args.scheduler,
                log=lambda msg: out.write(msg + "\n"))
    return 0


def run_merge_access(args: argparse.Namespace, out: TextIO) -> int:
    """``mmsim merge-access``: write TRACE with the access records merged in."""
    trace, text = _read(args.trace), _read(args.accesses)
    if trace is None or text is None:
        return 2
    try:
        offset = None if args.offset == "auto" else float(args.offset)
    except ValueError:
        print(f"mmsim: --offset {args.offset!r}: a number of seconds or 'auto'",
              file=sys.stderr)
        return 2
    fmt = args.format or {"jsonl": "jsonl", "csv": "csv"}.get(
        args.accesses.rsplit(".", 1)[-1], "perf")
    try:
        targets = dict(tuple(int(x) for x in t.split(":")) for t in args.damon_target)
        records = {"jsonl": access.read_jsonl, "csv": access.read_csv,
                   "perf": access.from_perf_script,
                   "damo": lambda t: access.from_damon_raw(t, targets)}[fmt](text)
    except (ValueError, access.AccessFormatError) as e:
        print(f"mmsim: {args.accesses}: {e}", file=sys.stderr)
        return 2
    merged = access.merge(trace, records, offset)
    if args.out == "-":
        out.write(merged)
    else:
        with open(args.out, "w") as f:
            f.write(merged)
    return 0


def main_exit() -> None:
    """The console script: run ``main`` and exit with its status."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    main_exit()

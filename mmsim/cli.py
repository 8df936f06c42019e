"""The ``mmsim`` command: replay strace-syntax traces, and a built-in demo of mctl."""

import argparse
import json
import sys
import traceback
from typing import TextIO

from .kernel import Kernel
from .live import available, diff_trace
from .replay import Outcome, Replayer
from .strace import TraceError, parse, read_trace
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
                    "THP_enabled line.  Exit status: 0, 1 with --check when a result "
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
    r.add_argument("--json", action="store_true", help="write one JSON document")
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
    for each in (r, f, c, d):
        # SUPPRESS: given before the command, --debug must survive the subparser.
        each.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=DEBUG_HELP)
    return p


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
    if as_json:
        doc = []
        for o in outcomes:
            ev = o.event
            if ev.kind == "dump":
                doc.append({"type": "dump", "line": ev.line, "pid": o.label,
                            "smaps": o.smaps, "thp_enabled": o.thp_enabled})
            else:
                doc.append({"type": "call", "line": ev.line, "pid": o.label, "call": ev.name,
                            "text": o.line(), "result": o.result, "recorded": ev.result,
                            "matches": o.matches()})
        json.dump({"events": doc, "mismatches": sum(not o.matches() for o in outcomes)},
                  out, indent=1)
        out.write("\n")
        return
    for o in outcomes:
        out.write(o.line() + "\n")
        if o.event.kind == "dump":
            out.write(o.smaps)
            out.write(o.thp_enabled + "\n")


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
        if args.command == "demo":
            if args.show_trace:
                out.write(DEMO)
                return 0
            outcomes = run_replay(DEMO, "<demo>", "always", 0)
        else:
            text = _read(args.trace)
            if text is None:
                return 2
            outcomes = run_replay(text, args.trace, args.thp, args.seed, args.follow,
                                  not args.norandmaps, args.root, args.cwd)
    except TraceError as e:
        print(f"mmsim: {e}", file=sys.stderr)
        return 2
    render(outcomes, args.json, out)
    if args.command == "replay" and args.check:
        bad = [o for o in outcomes if not o.matches()]
        for o in bad:
            print(f"mmsim: {args.trace}:{o.event.line}: result {o.result!r}, "
                  f"trace recorded {o.event.result!r}", file=sys.stderr)
        return 1 if bad else 0
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
    from . import testing       # here, not at the top: hypothesis is an optional extra
    calls = tuple(args.calls) if args.calls else testing.CALLS
    unknown = [c for c in calls if c not in testing.CALLS]
    if unknown:
        print(f"mmsim: cannot generate {', '.join(unknown)}; choose from "
              f"{' '.join(testing.CALLS)}", file=sys.stderr)
        return 2

    def progress(i, n):
        # hypothesis may run a few more examples than asked (ones it discards): cap.
        i = min(i, n)
        width = 30
        done = width * i // max(n, 1)
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n}")
        sys.stderr.flush()

    try:
        diff = testing.run(lambda: testing.SimBackend(window=(lo, hi)),
                           lambda: testing.LiveBackend(window=(lo, hi)),
                           examples=args.examples, seed=args.seed, window=(lo, hi),
                           calls=calls, progress=progress)
    finally:
        sys.stderr.write("\n")    # end the progress bar, before any error message too
    if diff is None:
        out.write(f"# {args.examples} sequences: no difference from the live kernel\n")
        return 0
    with open(args.out, "w") as f:
        f.write(diff.trace)
    out.write(diff.message + "\n")
    out.write(f"# the shrunk sequence is in {args.out}\n")
    return 1


def main_exit() -> None:
    """The console script: run ``main`` and exit with its status."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    main_exit()

"""Command line for the benchmarks: ``python -m benchmarks {store,width} ...``."""

import argparse
import json
import platform
import sys
import time

from . import (fork, kernel, khugepaged, mctl_walk, mm_memory, reclaim, replay, replay_floor,
               store, store_floor, store_mmap)
from . import sweep as sweep_bench


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    """Parse the command line and run one benchmark."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("store", help="VmaTree against SortedDict, list+bisect, IntervalTree")
    st.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 65_530, 262_144])
    st.add_argument("--repeats", type=int, default=5)
    st.add_argument("--budget", type=float, default=2.0,
                    help="seconds per phase before it is sampled (default 2)")
    st.add_argument("--width", type=int, default=None, help="VmaTree node width")
    st.add_argument("--no-memory", action="store_true")
    st.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    wd = sub.add_parser("width", help="VmaTree at several node widths, against SortedDict")
    wd.add_argument("--sizes", type=int, nargs="+", default=[1_000, 65_530, 262_144])
    wd.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32, 48, 64, 128])
    wd.add_argument("--repeats", type=int, default=3)
    mem = sub.add_parser("mm-memory", help="peak memory of 65,530 unmergeable mmaps")
    mem.add_argument("--vmas", type=int, default=65_530)
    fk = sub.add_parser("fork", help="fork of 65,530 VMAs: mmsim against the live kernel")
    fk.add_argument("--vmas", type=int, default=65_530)
    fk.add_argument("--repeats", type=int, default=9)
    mw = sub.add_parser("mctl-walk", help="mctl SET over 65,530 VMAs against live madvise")
    mw.add_argument("--vmas", type=int, default=65_530)
    mw.add_argument("--repeats", type=int, default=5)
    fl = sub.add_parser("store-floor", help="the cheapest possible store method, against "
                                            "SortedDict and VmaTree")
    fl.add_argument("--size", type=int, default=1_000)
    fl.add_argument("--repeats", type=int, default=15)
    sm = sub.add_parser("store-mmap", help="top-down mmap and munmap, as a process does, "
                                           "against SortedDict and list+bisect")
    sm.add_argument("--repeats", type=int, default=5)
    rp = sub.add_parser("replay", help="trace replay speed against the Python API")
    rp.add_argument("--lines", type=int, default=100_000)
    rp.add_argument("--repeats", type=int, default=3)
    rf = sub.add_parser("replay-floor", help="the replay row's floor: the least parse + "
                                             "apply of its trace, against mmsim and the kernel")
    rf.add_argument("--lines", type=int, default=100_000)
    rf.add_argument("--repeats", type=int, default=3)
    kb = sub.add_parser("kernel", help="issue 13's Goals table: mmsim against the live "
                                       "kernel, same work, CPU time")
    kb.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    kb.add_argument("--repeats", type=int, default=3)
    rc = sub.add_parser("reclaim", help="pages scanned and reclaimed per CPU second: a 4 GiB "
                                        "read through a 1 GiB cgroup, mmsim and the kernel")
    rc.add_argument("--cache-mib", type=int, default=4096)
    rc.add_argument("--limit-mib", type=int, default=1024)
    rc.add_argument("--no-live", action="store_true", help="mmsim only")
    kh = sub.add_parser("khugepaged", help="khugepaged's pages scanned per CPU second over "
                                           "1 GiB of eligible anonymous memory")
    kh.add_argument("--mib", type=int, default=1024)
    kh.add_argument("--repeats", type=int, default=3)
    sp = sub.add_parser("sweep", help="cells per minute of a sweep on 1 and 2 Dask workers")
    sp.add_argument("--spec", default=sweep_bench.DEFAULT_SPEC)
    args = ap.parse_args(argv)

    cmd = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.cmd == "store":
        result = store.run(args.sizes, args.repeats, args.budget, _log, args.width,
                           memory=not args.no_memory)
        result["command"] = cmd
        result["python"] = platform.python_version()
        result["date"] = time.strftime("%Y-%m-%d")
        print(f"`{cmd}` (Python {result['python']}, {result['date']})\n")
        print(store.table(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0 if all(ok for *_, ok in store.criteria(result)) else 1
    if args.cmd == "replay":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        result = replay.run(args.lines, args.repeats)
        print(replay.table(result))
        return 0 if replay.criterion(result) else 1
    if args.cmd == "replay-floor":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        result = replay_floor.run(args.lines, args.repeats)
        print(replay_floor.table(result))
        return 0 if result["same"] else 1
    if args.cmd == "store-floor":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(store_floor.table(store_floor.run(args.size, args.repeats), args.size))
        return 0
    if args.cmd == "store-mmap":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(store_mmap.table(store_mmap.run(repeats=args.repeats)))
        return 0
    if args.cmd == "mm-memory":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(mm_memory.table(mm_memory.alternating_mmaps(args.vmas)))
        return 0
    if args.cmd == "mctl-walk":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(mctl_walk.table(mctl_walk.run(args.vmas, args.repeats)))
        return 0
    if args.cmd == "fork":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(fork.table(fork.run(args.vmas, args.repeats)))
        return 0
    if args.cmd == "kernel":
        if kernel.find_compiler() is None:
            print("benchmarks kernel: skipped, no C compiler (cc or gcc) to build the live "
                  "side's helper")
            return 0
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
              f"Linux {platform.release()})\n")
        rows = kernel.run(quick=args.quick, repeats=args.repeats, log=_log)
        print(kernel.table(rows))
        return 0
    if args.cmd == "reclaim":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
              f"Linux {platform.release()})\n")
        cache, limit = args.cache_mib << 20, args.limit_mib << 20
        rows, why = reclaim.run(cache, limit, live=not args.no_live)
        print(reclaim.table(rows, cache, limit))
        if why and not args.no_live:
            print(f"\nkernel side skipped: {why}")
        return 0
    if args.cmd == "khugepaged":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        size = args.mib << 20
        print(khugepaged.table(khugepaged.run(size, args.repeats), size))
        return 0
    if args.cmd == "sweep":
        print(f"`{cmd}` (Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")
        print(sweep_bench.table(sweep_bench.run(args.spec), args.spec))
        return 0
    if args.cmd == "width":
        print(store.width_table(args.sizes, args.widths, args.repeats, _log))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

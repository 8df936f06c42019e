"""THP policies of a launcher, over simulated time: what each costs and gives.

A launcher starts three services under one THP policy, with the system-wide THP mode
``always`` or ``madvise``:

* ``sparse``: a Redis-like heap, one page written in every 64 KiB of 128 MiB (the
  classic bloat case: a huge page there holds 32 used pages of 512);
* ``dense``: THP-friendly, it asks for huge pages (MADV_HUGEPAGE) and writes all of
  its 32 MiB;
* ``late``: writes all of its 32 MiB first, then asks for huge pages; only
  khugepaged, running in the background, can give them to it afterwards.

Policies: none; mctl(MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC) on the launcher (a
default that a service's own MADV_HUGEPAGE overrides); PR_SET_THP_DISABLE (no THP at
all); PR_SET_THP_DISABLE with PR_THP_DISABLE_EXCEPT_ADVISED (THP only where advised).
For each service the table shows RSS, huge pages, THP coverage (share of its
anonymous memory in PMD-mapped huge pages), mTHP coverage (share in large folios of
any size), bloat (pages of its large folios it never wrote) and the huge pages
collapse made for it, after ``--seconds`` of simulated time; ``--mthp KB`` also sets
that anonymous size (16 .. 1024) to ``always``; ``--plot DIR`` also draws RSS and
coverage over time for each configuration.

Run: python examples/thp_policies.py [--seconds N] [--plot DIR] [--small] [--mthp KB]
"""

import argparse
import os
import sys

import mmsim
from mmsim import metrics
from mmsim.uapi import MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from mmsim.workloads import start
from mmsim.workloads.anon import dense_toucher, sparse_toucher
from mmsim.workloads.processes import POLICIES, launcher

MiB = 1 << 20
MODES = ("always", "madvise")


def late_advised(proc, nbytes, interval=0.05):
    """Write all of ``nbytes`` of anonymous memory, then MADV_HUGEPAGE it."""
    addr = proc.mmap(0, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.touch(addr, nbytes, True)
    yield interval
    proc.madvise(addr, nbytes, MADV_HUGEPAGE)
    return addr


def services(scale):
    """The three services as (name, service, bytes written)."""
    sparse_size, stride, size = 128 * MiB // scale, 64 << 10, 32 * MiB // scale
    return [("sparse", lambda p: sparse_toucher(p, sparse_size, stride=stride, per_step=64),
             len(range(0, sparse_size, stride)) * 4096),
            ("dense", lambda p: dense_toucher(p, size, hugepage=True), size),
            ("late", lambda p: late_advised(p, size), size)]


def run(mode, policy, seconds, scale, every=5.0, mthp=None):
    """One configuration: the Recorder and, per service, its row of results."""
    k = mmsim.Kernel(thp=mode, seed=1)
    if mthp:
        k.proc_write(f"/sys/kernel/mm/transparent_hugepage/hugepages-{mthp}kB/enabled",
                     "always")
    root = k.spawn()
    rec = metrics.record(k, every=every)
    svc = services(scale)
    task = start(k, launcher(root, [(name, fn) for name, fn, _ in svc], policy), proc=root)
    k.advance(seconds)
    rows = {}
    for name, _, _written in svc:
        child, _ = task.result[name]
        m = metrics.process_metrics(child)
        rows[name] = {"rss_mib": m["rss_kb"] / 1024, "huge_mib": m["anon_huge_kb"] / 1024,
                      "coverage": m["thp_coverage"], "mthp": m["mthp_coverage"],
                      "bloat_mib": m["bloat_kb"] / 1024,
                      "collapsed": m["collapsed_khugepaged"] + m["collapsed_madvise"]}
    return rec, rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--plot", metavar="DIR", default=None)
    ap.add_argument("--small", action="store_true", help="every size divided by 4")
    ap.add_argument("--mthp", type=int, choices=(16, 32, 64, 128, 256, 512, 1024),
                    help="also set hugepages-<KB>kB/enabled to always")
    args = ap.parse_args(argv)
    scale = 4 if args.small else 1
    print(f"after {args.seconds:g} s of simulated time (collapsed: huge pages)")
    head = f"{'mode':<8}{'policy':<22}{'service':<8}"
    print(head + f"{'RSS MiB':>9}{'huge MiB':>10}{'coverage':>10}{'mTHP cov':>10}"
          f"{'bloat MiB':>11}{'collapsed':>11}")
    for mode in MODES:
        for policy in POLICIES:
            rec, rows = run(mode, policy, args.seconds, scale, mthp=args.mthp)
            for name in ("sparse", "dense", "late"):
                r = rows[name]
                print(f"{mode:<8}{policy:<22}{name:<8}{r['rss_mib']:>9.1f}{r['huge_mib']:>10.1f}"
                      f"{r['coverage']:>10.2f}{r['mthp']:>10.2f}{r['bloat_mib']:>11.1f}"
                      f"{r['collapsed']:>11}")
            if args.plot:
                from mmsim import plot
                os.makedirs(args.plot, exist_ok=True)
                procs = rec.processes()
                procs = procs[procs["comm"].isin(["sparse", "dense", "late"])]
                plot.save(plot.thp_over_time(procs, title=f"THP {mode}, policy {policy}"),
                          os.path.join(args.plot, f"thp_{mode}_{policy}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

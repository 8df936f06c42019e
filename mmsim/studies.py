"""Studies: functions of one configuration (a dict of parameters) that build a
machine, run workloads on it and return a flat dict of numbers: the cells of a sweep
(``mmsim sweep``, mmsim.sweep) and the examples' building blocks."""

from .kernel import Kernel
from .metrics import process_metrics
from .workloads import start
from .workloads.anon import sparse_toucher
from .workloads.fade import killed_app_study, readers_study
from .workloads.processes import apply_policy

MiB = 1 << 20
FADE_FIELDS = ("workingset_refault_file", "workingset_activate_file", "pgmajfault")


def fade(p):
    """The FADE_ON_DEATH studies: ``workload`` "readers" (FADE_ON_DEATH on every
    ``git log`` when ``fade``) or "killed_app" (on the killed app when ``fade``);
    ``scale`` divides every size, ``seed`` seeds the layout."""
    workload = p.get("workload", "readers")
    on = bool(p.get("fade", False))
    scale = int(p.get("scale", 1))
    seed = int(p.get("seed", 1))
    if workload == "readers":
        stat = readers_study(on, scale, runs=int(p.get("runs", 10)), seed=seed)
    elif workload == "killed_app":
        stat = killed_app_study(on, scale, rounds=int(p.get("rounds", 8)), seed=seed)
    else:
        raise ValueError(f"fade: unknown workload {workload!r}")
    return {f: stat[f] for f in FADE_FIELDS}


def thp_bloat(p):
    """A sparse toucher (a Redis-like heap: one page written in every ``stride_kb``
    of ``size_mib``) under THP mode ``thp`` and launcher ``policy``, after
    ``seconds`` of simulated time (khugepaged runs meanwhile): its RSS, huge pages,
    THP coverage and bloat (resident minus touched), in kB."""
    k = Kernel(thp=p.get("thp", "madvise"), seed=int(p.get("seed", 0)))
    size = int(p.get("size_mib", 64)) * MiB
    stride = int(p.get("stride_kb", 64)) << 10
    launcher = k.spawn()
    apply_policy(launcher, p.get("policy", "none"))
    proc = launcher.fork()
    start(k, sparse_toucher(proc, size, stride=stride, interval=0.01,
                            hugepage=bool(p.get("hugepage", False))), proc=proc)
    k.advance(float(p.get("seconds", 60)))
    m = process_metrics(proc)
    touched_kb = len(range(0, size, stride)) * 4
    return {"rss_kb": m["rss_kb"], "anon_huge_kb": m["anon_huge_kb"],
            "thp_coverage": m["thp_coverage"], "touched_kb": touched_kb,
            "bloat_kb": m["rss_kb"] - touched_kb}


STUDIES = {"fade": fade, "thp_bloat": thp_bloat}

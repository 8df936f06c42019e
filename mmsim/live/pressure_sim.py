"""The memory-pressure scenarios of ``mmsim.live.pressure`` run on the simulator, and
their comparison with the live kernel's spread (docs/pressure.md, "Agreement with the
live kernel").

``run_sim(scenario)`` runs a scenario's steps on a fresh ``Kernel`` through the
simulator's public API only (no live machinery: the scenario is plain data), with the
live runner's process structure, and records after every step the metrics
``run_live`` records, under the same (cgroup v1) names, so ``compare`` can put each
simulated value beside the live [min..max] with ``within``.
``python -m mmsim.live.pressure_sim [--load JSON]... [SCENARIO...]`` prints the
comparison (exit status 1 if anything disagrees).
"""

import argparse
import json
import os
import sys

from ..errors import Killed
from ..kernel import Kernel
from ..readahead import MAX_PAGECACHE_ORDER, BackingDev
from ..uapi import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from .pressure import (MiB, PAGE, SCENARIOS, SHOWN, VMSTAT, Scenario,
                       check_scenario, metrics, spread, within)

__all__ = ["HOST_BDI", "HOST_MEMORY", "LIVE_OVERHEAD", "run_sim", "compare", "format_comparison",
           "live_spread", "FIXTURE"]

#: The reference host's block device under /tmp: read_ahead_kb 8192 (ra_pages 2048),
#: max_sectors_kb 4096 (io_pages 1024), ext4 with large folios (docs/pressure.md).
HOST_BDI = BackingDev(ra_pages=8192 // 4, io_pages=4096 // 4, max_order=MAX_PAGECACHE_ORDER)
#: The pages each live scenario process has charged to the cgroup beyond the scenario's
#: own: the Python interpreter's pages (rss 60 to 200), its kernel memory and the
#: per-CPU charge stock.  Measured as memory.usage_in_bytes minus the cache and the
#: anon step's pages after the first step: 128 pages in the median of every scenario
#: (tests/data/pressure/live_spread.json).  Each simulated process touches that many
#: anonymous pages when it starts, so the cgroup reaches its limit where the live one
#: does (docs/pressure.md, "Agreement with the live kernel").
LIVE_OVERHEAD = 128
#: The reference host's RAM (MemTotal rounded: 24 GiB).
HOST_MEMORY = 24 << 30
#: The live spread the non-live test checks against (recorded from the documented runs).
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "pressure",
                       "live_spread.json")

POSIX_FADV_DONTNEED = 4
CGROUP = "mmsim-pressure"


def _v2_to_v1(kernel, cg):
    """The live runner's snapshot of cgroup ``cg``, read through the simulator's files:
    memory.stat's v2 names mapped to the v1 names the live side records."""
    base = f"/sys/fs/cgroup/{cg}"
    st = {}
    for line in kernel.proc_read(f"{base}/memory.stat").splitlines():
        key, _, value = line.partition(" ")
        st[key] = int(value)
    ev = dict((k, int(v)) for k, v in
              (line.split() for line in kernel.proc_read(f"{base}/memory.events").splitlines()))
    vm = dict((k, int(v)) for k, v in
              (line.split() for line in kernel.proc_read("/proc/vmstat").splitlines()))
    v1 = {"cache": st["file"], "rss": st["anon"], "mapped_file": st["file_mapped"],
          "active_file": st["active_file"], "inactive_file": st["inactive_file"],
          "workingset_refault_file": st["workingset_refault_file"],
          "pgmajfault": st["pgmajfault"]}
    return {"stat": v1,
            "usage": int(kernel.proc_read(f"{base}/memory.current")),
            # Kernel memory is not charged in the simulator (memory.stat's kernel is 0).
            "kmem": st["kernel"],
            # v1's failcnt counts the charges that failed at the limit; v2 counts each
            # as a "max" event before it reclaims (try_charge_memcg).
            "failcnt": ev["max"], "oom_kill": ev["oom_kill"], "under_oom": 0,
            "vm": {key: vm.get(key, 0) for key in VMSTAT},
            "files": {}}


def _snapshot(kernel, cg, inodes):
    snap = _v2_to_v1(kernel, cg)
    snap["files"] = {name: [len(ino.cache), len(ino.shadows), 0]
                     for name, ino in inodes.items()}
    return snap


def _read_range(proc, path, offset, length, bufsize, positional):
    fd = proc.open(path)
    try:
        if not positional:
            proc.lseek(fd, offset, os.SEEK_SET)
        done = 0
        while done < length:
            want = min(bufsize, length - done)
            got = proc.pread(fd, want, offset + done) if positional else proc.read(fd, want)
            if got <= 0:
                break
            done += got
    finally:
        proc.close(fd)


def _do_step(proc, step, paths, sizes):
    """Run one step in ``proc``; the major faults of the processes it ran."""
    op = step[0]
    before = proc.mm.maj_flt
    extra = 0
    if op in ("read", "pread"):
        _, name, offset, length, bufsize = step
        _read_range(proc, paths[name], offset, length, bufsize, op == "pread")
    elif op == "mmap_read":
        _, name, offset, length, keep = step
        fd = proc.open(paths[name])
        try:
            addr = proc.mmap(0, length, PROT_READ, MAP_SHARED, fd, offset)
        finally:
            proc.close(fd)
        proc.touch(addr, length, write=False)
        if not keep:
            proc.munmap(addr, length)
    elif op == "anon":
        addr = proc.mmap(0, step[1], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        proc.touch(addr, step[1], write=True)
    elif op == "stream":
        child = proc.fork()
        child_before = child.mm.maj_flt
        _read_range(child, paths[step[1]], 0, sizes[step[1]], step[2], False)
        extra = child.mm.maj_flt - child_before
        child.exit(0)
        proc.wait4(child.pid, 0)
    elif op == "fadvise_dontneed":
        fd = proc.open(paths[step[1]])
        try:
            proc.fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        finally:
            proc.close(fd)
    elif op == "exit":
        return 0
    return proc.mm.maj_flt - before + extra


def run_sim(sc: Scenario, bdi: BackingDev = HOST_BDI, memory: int = HOST_MEMORY,
            overhead: int = LIVE_OVERHEAD) -> dict:
    """Run ``sc`` once on a fresh simulated machine, each process starting with
    ``overhead`` anonymous pages of its own (the live interpreter's); a dict shaped as
    one ``run_live`` run (``records`` per step with ``m``, the metrics; ``total``;
    ``killed``)."""
    check_scenario(sc)
    k = Kernel(memory=memory)
    k.spawn()   # init, pid 1, in the root cgroup: the runner outside the cgroup
    k.mkdir(f"/sys/fs/cgroup/{CGROUP}")
    if sc.limit is not None:
        k.proc_write(f"/sys/fs/cgroup/{CGROUP}/memory.max", str(sc.limit))
    paths, inodes = {}, {}
    for name, size in sc.files:
        paths[name] = f"/tmp/mmsim-pressure/{name}"
        inodes[name] = k.create_file(paths[name], size)
        inodes[name].bdi = bdi
    sizes = dict(sc.files)
    start = prev = _snapshot(k, CGROUP, inodes)
    records = []
    for steps in sc.processes():
        proc = k.spawn(cgroup=CGROUP)
        if overhead:
            addr = proc.mmap(0, overhead * PAGE, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS)
            proc.touch(addr, overhead * PAGE)
        for index, step in steps:
            killed = 0
            majflt = None
            try:
                majflt = _do_step(proc, step, paths, sizes)
                if step[0] == "exit":
                    proc.exit(0)
            except Killed as e:
                killed = e.signal
            snap = _snapshot(k, CGROUP, inodes)
            m = metrics(prev, snap)
            if majflt is not None:
                m["majflt"] = majflt
            records.append({"index": index, "op": list(step), "majflt": majflt,
                            "killed": killed, "after": snap, "m": m})
            prev = snap
            if killed:
                break
    total = metrics(start, prev)
    return {"scenario": sc.name, "records": records, "start": start, "final": prev,
            "total": total, "killed": max([r["killed"] for r in records] or [0]),
            "disturbed": [], "attempts": 1, "discarded": []}


# ---------------------------------------------------------------- the comparison

def _with_majflt(run):
    """A run whose records carry the step's own major faults (``majflt``) among their
    metrics: runs saved by an earlier runner kept it beside them only."""
    records = []
    for rec in run["records"]:
        if "majflt" not in rec["m"] and rec.get("majflt") is not None:
            rec = dict(rec, m=dict(rec["m"], majflt=rec["majflt"]))
        records.append(rec)
    return dict(run, records=records)


def live_spread(runs: list[dict]) -> dict:
    """The live runs' spread, JSON-friendly: {step index as str or "total": {metric:
    [min, median, max]}}, plus "killed": the signals the runs ended with."""
    runs = [_with_majflt(r) for r in runs]
    sp = spread(runs)
    out = {str(step): {k: list(v) for k, v in per.items()} for step, per in sp.items()}
    out["killed"] = sorted({r["killed"] for r in runs})
    out["runs"] = len(runs)
    return out


# Metrics not compared: kernel memory is not modelled (the simulator's is 0; it is in
# the live usage, which is compared), and under_oom is not a metric.
NOT_COMPARED = ("kmem",)


def compare(sc: Scenario, sim: dict, live: dict) -> list[dict]:
    """Every (step, metric) of ``sc``: the simulated value, the live [min, median, max]
    (``live_spread``) and whether it agrees (``within``)."""
    rows = []
    steps = [(str(r["index"]), r["m"]) for r in sim["records"]] + [("total", sim["total"])]
    for step, m in steps:
        per = live.get(step)
        if per is None:
            rows.append({"step": step, "metric": "(step)", "sim": 1, "live": None,
                         "ok": False})
            continue
        for metric in sorted(set(per) | set(m)):
            if metric in NOT_COMPARED:
                continue
            if metric not in m or metric not in per:
                rows.append({"step": step, "metric": metric, "sim": m.get(metric),
                             "live": per.get(metric), "ok": False})
                continue
            lo, med, hi = per[metric]
            rows.append({"step": step, "metric": metric, "sim": m[metric],
                         "live": [lo, med, hi], "ok": within(metric, lo, hi, m[metric])})
    missing = [s for s in live if s not in ("killed", "runs")
               and s not in {step for step, _ in steps}]
    for step in missing:
        rows.append({"step": step, "metric": "(step)", "sim": None, "live": 1, "ok": False})
    if sim["killed"] not in live.get("killed", [sim["killed"]]):
        rows.append({"step": "total", "metric": "killed", "sim": sim["killed"],
                     "live": live["killed"], "ok": False})
    return rows


def _cell(value, live, ok):
    if live is None:
        return "-"
    lo, med, hi = live
    med = int(med) if float(med).is_integer() else med
    span = f"{med}" if lo == hi else f"{lo}..{hi}"
    return f"{value}{'' if ok else '!'} ({span})"


def format_comparison(sc: Scenario, rows: list[dict], live: dict) -> str:
    """A table per scenario: simulated value (live median or [min..max]) per step and
    shown metric, ``!`` marking a disagreement; then every disagreement listed."""
    files = [f"cached:{name}" for name, _ in sc.files]
    cols = list(SHOWN) + files
    cell = {(r["step"], r["metric"]): r for r in rows}
    limit = "none" if sc.limit is None else f"{sc.limit // MiB} MiB"
    head = [f"{sc.name}: {sc.about}",
            f"limit {limit}; simulated value (live min..max over {live.get('runs')} runs);"
            f" ! = outside the tolerance"]
    table = [["step"] + [c.replace("_file", "") for c in cols]]
    for step in sorted({r["step"] for r in rows}, key=lambda s: (s == "total",
                                                                  int(s) if s.isdigit() else 0)):
        name = "total" if step == "total" else f"{step} {sc.steps[int(step)][0]}"
        line = [name]
        for c in cols:
            r = cell.get((step, c))
            line.append("-" if r is None else _cell(r["sim"], r["live"], r["ok"]))
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(cols) + 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    bad = [r for r in rows if not r["ok"]]
    tail = [f"{len(bad)} disagreement(s) of {len(rows)} values"]
    for r in bad:
        tail.append(f"  step {r['step']} {r['metric']}: simulated {r['sim']}, "
                    f"live {r['live']}")
    return "\n".join(head + lines + tail)


#: The disagreements the simulator still has with the recorded spread, as
#: {scenario: ["step:metric", ...]}, each explained in docs/pressure.md ("Agreement
#: with the live kernel"); the non-live test fails on any disagreement not listed.
KNOWN = os.path.join(os.path.dirname(FIXTURE), "known_disagreements.json")


def disagreements(rows: list[dict]) -> list[str]:
    """The ``step:metric`` of every row of ``compare`` that does not agree."""
    return sorted(f"{r['step']}:{r['metric']}" for r in rows if not r["ok"])


def load_known(path: str = KNOWN) -> dict:
    """The documented known disagreements: {scenario: set of "step:metric"}."""
    with open(path) as f:
        return {name: set(v) for name, v in json.load(f).items()}


def load_fixture(path: str = FIXTURE) -> dict:
    """The recorded live spread: {scenario: ``live_spread``}."""
    with open(path) as f:
        return json.load(f)


def main_sim(names: list[str], loads: list[str]) -> int:
    """Print the comparison of the simulated runs with the live runs saved by --json in
    ``loads`` (without: with the recorded fixture); 1 if anything disagrees."""
    if loads:
        saved = {}
        for path in loads:
            with open(path) as f:
                for name, runs in json.load(f).items():
                    saved.setdefault(name, []).extend(runs)
        spreads = {name: live_spread(runs) for name, runs in saved.items()}
    else:
        spreads = load_fixture()
    bad = 0
    for name in names or [n for n in SCENARIOS if n in spreads]:
        sc = SCENARIOS[name]
        rows = compare(sc, run_sim(sc), spreads[name])
        bad += sum(1 for r in rows if not r["ok"])
        print(format_comparison(sc, rows, spreads[name]), end="\n\n", flush=True)
    return 1 if bad else 0


__all__ += ["main", "KNOWN", "disagreements", "load_known", "load_fixture", "main_sim",
            "NOT_COMPARED"]


def main(argv: list[str] | None = None) -> int:
    """``python -m mmsim.live.pressure_sim [--load JSON]... [SCENARIO...]``."""
    ap = argparse.ArgumentParser(prog="python -m mmsim.live.pressure_sim",
                                 description="run the memory-pressure scenarios on the "
                                             "simulator and compare them with live runs")
    ap.add_argument("--load", action="append", default=[], metavar="JSON",
                    help="live runs saved by python -m mmsim.live.pressure --json "
                         "(default: the recorded spread, tests/data/pressure)")
    ap.add_argument("scenario", nargs="*",
                    help=f"scenarios (default: all): {', '.join(SCENARIOS)}")
    args = ap.parse_args(argv)
    unknown = [name for name in args.scenario if name not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return main_sim(args.scenario, args.load)


if __name__ == "__main__":
    sys.exit(main())

